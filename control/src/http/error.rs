//! Errors as clients see them: a status and a one-line plain-text reason.

use crate::auth::AuthError;
use crate::node::PostError;
use crate::sdp::SdpError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// How long a client turned away for capacity should wait before trying again.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // One line, whatever a parser's message contained.
        let line = self.reason.replace(['\r', '\n'], " ");
        let mut resp = (self.status, format!("{line}\n")).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut err = Self::new(status, e.to_string());
        if status == StatusCode::UNAUTHORIZED {
            err.reason = format!("unauthorized: {}", err.reason);
        }
        err
    }
}

impl From<SdpError> for ApiError {
    fn from(e: SdpError) -> Self {
        let status = match e {
            SdpError::Malformed(_) => StatusCode::BAD_REQUEST,
            SdpError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SdpError::NoCommonCodec(_) => StatusCode::NOT_ACCEPTABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl From<PostError> for ApiError {
    fn from(e: PostError) -> Self {
        match e {
            PostError::Sdp(s) => s.into(),
            PostError::UnknownRoom(_) | PostError::UnknownPublisher(_) => {
                Self::new(StatusCode::NOT_FOUND, e.to_string())
            }
            PostError::OverCapacity(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}
