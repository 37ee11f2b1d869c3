//! `GET /cluster`: this node and the cluster members it knows, as SWIM sees them.
//!
//! `{"self": "<id>", "members": [{"id", "region", "state", "http"}]}`, members sorted by
//! id and including this node (always "alive"). `state` is "alive", "suspect" or
//! "down"; `http` is the member's public HTTP base URL, without a trailing slash. A node
//! without a cluster lists only itself.

use crate::node::Shared;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use sluice_state::membership::MemberState;
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub struct ClusterView {
    #[serde(rename = "self")]
    pub this: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: String,
    pub region: String,
    pub state: &'static str,
    pub http: String,
}

pub async fn view(State(shared): State<Arc<Shared>>) -> Json<ClusterView> {
    Json(cluster_view(&shared))
}

/// `GET /placement[?region=R]`: the nodes that could take a session for a client in
/// region `R`, best first, with each score's components (0 best, 1000 worst), so an
/// operator can see why a client lands where it does.
#[derive(Debug, Serialize)]
pub struct PlacementView {
    #[serde(rename = "self")]
    pub this: String,
    pub region: Option<String>,
    pub ranking: Vec<crate::placement::Score>,
}

pub async fn placement(
    State(shared): State<Arc<Shared>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: axum::http::HeaderMap,
) -> Json<PlacementView> {
    let region = super::whip::client_region(&uri, &headers);
    Json(PlacementView {
        this: shared.node_name(),
        ranking: shared.placement_ranking(region.as_deref()),
        region,
    })
}

fn cluster_view(shared: &Shared) -> ClusterView {
    let Some(snapshot) = shared.member_snapshot() else {
        let id = shared.config.node.id.clone().unwrap_or_default();
        return ClusterView {
            this: id.clone(),
            members: vec![MemberView {
                id,
                region: shared.config.node.region.clone(),
                state: MemberState::Alive.as_str(),
                http: shared.public_url.clone(),
            }],
        };
    };
    let this = snapshot.this.name.clone();
    let mut members = vec![MemberView {
        id: this.clone(),
        region: snapshot.this.region,
        state: MemberState::Alive.as_str(),
        http: shared.public_url.clone(),
    }];
    members.extend(snapshot.members.into_iter().map(|(m, state)| MemberView {
        // A member that did not tell its name (it should always) is shown by number.
        id: if m.name.is_empty() {
            m.id.to_string()
        } else {
            m.name
        },
        region: m.region,
        state: state.as_str(),
        http: m.http,
    }));
    members.sort_by(|a, b| a.id.cmp(&b.id));
    ClusterView { this, members }
}

/// `POST /drain` (`{"deadline_secs": N}` optional), `DELETE /drain` and `GET /drain`:
/// start, call off and look at a graceful drain. Only from this node's own host: the
/// operator runs `sluice drain` there (or behind SIGTERM); the HTTP API is public.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DrainRequest {
    pub deadline_secs: Option<u64>,
}

/// Headers a reverse proxy adds to what it forwards. A proxy on the node's own host
/// connects from loopback, so a request carrying one of these came from further away.
const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

fn local_only(
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Result<(), super::ApiError> {
    let forbidden = |why: &str| {
        Err(super::ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("drain is only accepted from the node's own host: {why}"),
        ))
    };
    if !peer.ip().is_loopback() {
        return forbidden(&format!("{} is not loopback", peer.ip()));
    }
    if let Some(h) = PROXY_HEADERS.iter().find(|h| headers.contains_key(**h)) {
        return forbidden(&format!("the request came through a proxy ({h})"));
    }
    Ok(())
}

pub async fn start_drain(
    State(shared): State<Arc<Shared>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<crate::node::DrainStatus>, super::ApiError> {
    local_only(peer, &headers)?;
    let req: DrainRequest = if body.is_empty() {
        DrainRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            super::ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("expected {{\"deadline_secs\": N}}: {e}"),
            )
        })?
    };
    let secs = req
        .deadline_secs
        .unwrap_or(shared.config.drain.deadline_secs);
    Ok(Json(
        shared.start_drain(std::time::Duration::from_secs(secs)),
    ))
}

pub async fn cancel_drain(
    State(shared): State<Arc<Shared>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Result<Json<crate::node::DrainStatus>, super::ApiError> {
    local_only(peer, &headers)?;
    Ok(Json(shared.cancel_drain()))
}

pub async fn drain_status(State(shared): State<Arc<Shared>>) -> Json<crate::node::DrainStatus> {
    Json(shared.drain_status())
}
