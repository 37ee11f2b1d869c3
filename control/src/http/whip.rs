//! WHIP and WHEP resources (RFC 9725 and its WHEP sibling): POST an offer, get an answer
//! and a resource URL; DELETE the URL to leave; PATCH it for trickle ICE.

use super::ApiError;
use crate::auth::Action;
use crate::node::{PostError, Posted, Shared};
use crate::placement::Decision;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const SDP: &str = "application/sdp";
const TRICKLE: &str = "application/trickle-ice-sdpfrag";

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// The checks every POST shares: who may do it, and that the body is an offer.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    room: &str,
    action: Action,
    body: &str,
) -> Result<(), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    shared.auth.authorize(auth, room, action)?;
    if !content_type_is(headers, SDP) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        ));
    }
    if body.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty SDP offer"));
    }
    Ok(())
}

/// The client's region: the `region` query parameter, else the `Sluice-Region` header.
pub fn client_region(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    query_param(uri, "region")
        .or_else(|| {
            headers
                .get("sluice-region")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
        })
        .filter(|r| !r.is_empty())
}

/// The request's path and query as a URL (the host is a placeholder), for its query.
fn as_url(uri: &Uri) -> Option<reqwest::Url> {
    let path = uri.path_and_query()?.as_str();
    reqwest::Url::parse(&format!("http://placeholder{path}")).ok()
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    as_url(uri)?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Placement: `None` to serve the POST here, or the answer that sends it elsewhere
/// (307 to the best node, which keeps it: the redirect adds `placed=1`).
fn placement(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let region = client_region(uri, headers);
    let placed = query_param(uri, "placed").is_some_and(|v| v == "1");
    let Decision::Redirect(best) = shared.place(region.as_deref(), placed) else {
        return None;
    };
    let mut url = as_url(uri)?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "placed")
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("placed", "1");
    let location = format!("{}{}?{}", best.http, url.path(), url.query().unwrap_or(""));
    let mut resp = (
        StatusCode::TEMPORARY_REDIRECT,
        format!("placed on node {}\n", best.node),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Some(resp)
}

/// Logs a POST the node refused after admitting it. A full node is worth a warning; an
/// unknown room or publisher is what clients poll through while state spreads.
fn refused(room: &str, publisher: Option<&str>, role: &str, e: PostError) -> ApiError {
    let publisher = publisher.unwrap_or("");
    match &e {
        PostError::OverCapacity(_) => {
            tracing::warn!(%room, publisher, role, error = %e, "session refused")
        }
        _ => tracing::debug!(%room, publisher, role, error = %e, "session refused"),
    }
    e.into()
}

fn created(shared: &Shared, posted: Posted) -> Response {
    let location = format!("{}/resources/{}", shared.public_url, posted.resource);
    let mut resp = (StatusCode::CREATED, posted.answer).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    if let Some(id) = posted.publisher_id
        && let Ok(v) = HeaderValue::from_str(&id)
    {
        h.insert("x-publisher-id", v);
    }
    resp
}

pub async fn publish(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    admit(&shared, &headers, &room, Action::Publish, &body)?;
    if let Some(redirect) = placement(&shared, &uri, &headers) {
        return Ok(redirect);
    }
    let posted = shared
        .post_publish(&room, &body)
        .map_err(|e| refused(&room, None, "publisher", e))?;
    Ok(created(&shared, posted))
}

pub async fn subscribe(
    State(shared): State<Arc<Shared>>,
    Path((room, publisher)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    admit(&shared, &headers, &room, Action::Subscribe, &body)?;
    if let Some(redirect) = placement(&shared, &uri, &headers) {
        return Ok(redirect);
    }
    shared
        .await_remote(&room, |r| r.publisher(&room, &publisher).is_some())
        .await;
    let posted = shared
        .post_subscribe(&room, Some(&publisher), &body)
        .map_err(|e| refused(&room, Some(&publisher), "subscriber", e))?;
    Ok(created(&shared, posted))
}

pub async fn subscribe_latest(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    admit(&shared, &headers, &room, Action::Subscribe, &body)?;
    if let Some(redirect) = placement(&shared, &uri, &headers) {
        return Ok(redirect);
    }
    shared
        .await_remote(&room, |r| r.latest_publisher(&room).is_some())
        .await;
    let posted = shared
        .post_subscribe(&room, None, &body)
        .map_err(|e| refused(&room, None, "subscriber", e))?;
    Ok(created(&shared, posted))
}

/// The resource URL is the capability: whoever got it from the POST may end it.
pub async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if shared.close_resource(&id, "DELETE") {
        Ok(StatusCode::OK)
    } else {
        tracing::debug!(session = %id, "DELETE of an unknown resource");
        Err(ApiError::new(StatusCode::NOT_FOUND, "unknown resource"))
    }
}

/// Trickle ICE. The node is ICE-lite and learns client addresses from their checks
/// (peer-reflexive), so trickled candidates need no action: 204. An ICE restart (a new
/// ufrag) is not supported: 422, as RFC 9725 section 4.3.2 allows.
pub async fn patch(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<StatusCode, ApiError> {
    let Some(ufrag) = shared.resource_ufrag(&id) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown resource"));
    };
    if !content_type_is(&headers, TRICKLE) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH takes Content-Type: application/trickle-ice-sdpfrag",
        ));
    }
    let restart = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .any(|u| u.trim() != ufrag);
    if restart {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restart is not supported; POST a new offer",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A plain OPTIONS (not a CORS preflight, which the CORS layer answers) tells a WHIP
/// client what it may POST or PATCH.
pub async fn options() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert("accept-post", HeaderValue::from_static(SDP));
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    resp
}
