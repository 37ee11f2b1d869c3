//! `GET /status`: the cluster as this node sees it, for `sluice status` (the document is
//! described in `crate::status::view`).

use crate::node::Shared;
use crate::status::Status;
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

pub async fn view(State(shared): State<Arc<Shared>>) -> Json<Status> {
    Json(crate::status::status(&shared))
}
