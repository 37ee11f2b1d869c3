//! WHIP/WHEP signaling over HTTP: POST the offer, read the answer and the resource URL,
//! DELETE it to leave.

use super::ClientError;
use reqwest::header;

/// What a successful POST returned.
#[derive(Debug, Clone)]
pub struct Posted {
    pub answer: String,
    /// The resource URL, absolute.
    pub location: String,
    pub publisher_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Signaling {
    http: reqwest::Client,
    token: Option<String>,
    region: Option<String>,
}

impl Signaling {
    pub fn new(token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            token,
            region: None,
        }
    }

    /// POSTs carry `region=<region>`, the placement hint.
    pub fn with_region(mut self, region: Option<String>) -> Self {
        self.region = region;
        self
    }

    /// `base` + path segments, each percent-encoded.
    pub fn url(base: &str, segments: &[&str]) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(base)
            .map_err(|e| ClientError::Request(format!("bad base URL {base:?}: {e}")))?;
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                ClientError::Request(format!("base URL {base:?} cannot be a base"))
            })?;
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// POSTs an SDP offer, following redirects to the node placement chose. Anything
    /// but 201 Created is [`ClientError::Http`] with the status and the body (the
    /// node's reason).
    pub async fn post_offer(
        &self,
        mut url: reqwest::Url,
        offer: String,
    ) -> Result<Posted, ClientError> {
        if let Some(r) = &self.region {
            url.query_pairs_mut().append_pair("region", r);
        }
        let mut req = self
            .http
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/sdp")
            .body(offer);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(request_error)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // After a redirect, a relative Location is relative to where it ended.
        let url = resp.url().clone();
        let body = resp.text().await.map_err(request_error)?;
        if status != 201 {
            return Err(ClientError::Http { status, body });
        }
        let location = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Answer("201 without a Location header".into()))?;
        // Location may be relative (RFC 9725 allows either).
        let location = url
            .join(location)
            .map_err(|e| ClientError::Answer(format!("bad Location {location:?}: {e}")))?
            .to_string();
        let publisher_id = headers
            .get("x-publisher-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Posted {
            answer: body,
            location,
            publisher_id,
        })
    }

    /// DELETEs the resource. 2xx is success; anything else is [`ClientError::Http`].
    pub async fn delete(&self, location: &str) -> Result<(), ClientError> {
        let mut req = self.http.delete(location);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(request_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(ClientError::Http {
            status: status.as_u16(),
            body,
        })
    }
}

fn request_error(e: reqwest::Error) -> ClientError {
    ClientError::Request(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_the_base_path() {
        let u = Signaling::url("http://127.0.0.1:8080", &["whip", "room 1"]).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/whip/room%201");
        let u = Signaling::url("http://h/api/", &["whep", "r", "p1"]).unwrap();
        assert_eq!(u.as_str(), "http://h/api/whep/r/p1");
        assert!(Signaling::url("not a url", &["x"]).is_err());
    }
}
