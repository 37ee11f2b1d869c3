//! HTTP signaling: WHIP (RFC 9725) to publish, WHEP to watch, room listings and their
//! Server-Sent Events, and the demo page. Handlers only translate HTTP; what a POST sets
//! up lives in `node::sessions`.

mod cluster;
mod error;
mod health;
mod rooms;
mod status;
mod whip;

pub use error::ApiError;

use crate::node::Shared;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{get, post};
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// An SDP offer is a few kilobytes; anything far bigger is not one.
const MAX_BODY: usize = 64 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    let cors = cors(&shared.config.http.cors_origins);
    Router::new()
        .route("/whip/{room}", post(whip::publish).options(whip::options))
        .route(
            "/whep/{room}",
            post(whip::subscribe_latest).options(whip::options),
        )
        .route(
            "/whep/{room}/{publisher}",
            post(whip::subscribe).options(whip::options),
        )
        .route(
            "/resources/{id}",
            axum::routing::delete(whip::delete)
                .patch(whip::patch)
                .options(whip::options),
        )
        .route("/rooms/{room}", get(rooms::list))
        .route("/rooms/{room}/events", get(rooms::events))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/cluster", get(cluster::view))
        .route("/placement", get(cluster::placement))
        .route("/status", get(status::view))
        .route(
            "/drain",
            get(cluster::drain_status)
                .post(cluster::start_drain)
                .delete(cluster::cancel_drain),
        )
        .merge(crate::demo::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .with_state(shared)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
            HeaderName::from_static("x-publisher-id"),
        ])
}
