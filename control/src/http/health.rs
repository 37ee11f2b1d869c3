//! `GET /healthz`, `GET /readyz` and `GET /metrics`: what operators and their tools
//! poll. Open like the rest of the API: none of it reveals a participant.

use crate::node::{Readiness, Shared};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Liveness: the process answers. Nothing is checked that a restart would not fix
/// better than waiting.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 with the checks when the node should get new clients, else 503 with
/// the reasons.
pub async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, Json<Readiness>) {
    let r = shared.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}

pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // A scrape waits on every worker's snapshot: keep it off the async threads.
    match tokio::task::spawn_blocking(move || crate::metrics::scrape(&shared)).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
