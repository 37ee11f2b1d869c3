//! `GET /rooms/{room}` and its event stream.

use super::ApiError;
use crate::node::Shared;
use crate::rooms::RoomEvent;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt, stream};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;

pub async fn list(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    shared.await_remote(&room, |r| r.room_exists(&room)).await;
    let publishers = shared
        .rooms()
        .publishers(&room)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown room {room:?}")))?;
    Ok(Json(json!({ "publishers": publishers })))
}

fn to_sse(ev: &RoomEvent) -> Event {
    Event::default()
        .event(ev.name())
        .json_data(ev.data())
        .unwrap_or_else(|_| Event::default().comment("unencodable event"))
}

/// Starts with a `publisher-joined` per current publisher, then follows joins and leaves.
/// While this node drains, a `move` (data `{"node", "url"}`) comes first and again when
/// the drain begins: clients connected here should POST again to `url`.
pub async fn events(
    State(shared): State<Arc<Shared>>,
    Path(room): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    shared.watch_room(&room);
    let (mut snapshot, rx) = shared.rooms().watch(&room);
    if shared.draining() {
        snapshot.insert(0, RoomEvent::Move(shared.move_target()));
    }
    let head = stream::iter(snapshot.iter().map(to_sse).collect::<Vec<_>>());
    // A listener that fell too far behind misses events; it is told to list the room
    // again rather than silently shown a wrong picture.
    let tail = BroadcastStream::new(rx).map(|item| match item {
        Ok(ev) => to_sse(&ev),
        Err(_) => Event::default().event("resync").data("{}"),
    });
    Sse::new(head.chain(tail).map(Ok)).keep_alive(KeepAlive::default())
}
