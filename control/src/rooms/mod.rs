//! Rooms as this node sees them: who publishes what, and a feed of joins and leaves for
//! `GET /rooms/{room}/events`.
//!
//! A room exists while it has a publisher or a subscriber, or someone listening to its
//! events; it needs no creation step, so a demo page can wait in an empty room.

use crate::sdp::SourceTrack;
use serde::Serialize;
use std::collections::HashMap;
use tokio::sync::broadcast;

/// How many events a slow SSE listener may fall behind before it is told to resync.
const EVENT_BACKLOG: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct TrackInfo {
    /// The global track id, written as logs write it (`stream`, 16 hex digits), so an
    /// id read off `GET /rooms` finds the stream's lines on every node. A string also
    /// keeps it whole in JavaScript, whose numbers lose ids past 2^53.
    #[serde(serialize_with = "stream_id")]
    pub id: u64,
    pub kind: &'static str,
    pub codec: String,
    pub simulcast: bool,
    pub layers: usize,
}

fn stream_id<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::cascade::catalog::StreamId(*id))
}

#[derive(Debug, Clone, Serialize)]
pub struct PublisherInfo {
    pub id: String,
    pub tracks: Vec<TrackInfo>,
}

#[derive(Debug, Clone)]
pub enum RoomEvent {
    PublisherJoined(PublisherInfo),
    PublisherLeft(PublisherInfo),
    /// This node is draining: whoever is connected here should POST again to `url`.
    Move(MoveTo),
}

/// Where a draining node sends its clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveTo {
    /// The draining node.
    pub node: String,
    /// Base URL of the node to move to (`None`: no other node can take them now; the
    /// client should retry this node's URL later and follow its redirect).
    pub url: Option<String>,
}

impl RoomEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::PublisherJoined(_) => "publisher-joined",
            Self::PublisherLeft(_) => "publisher-left",
            Self::Move(_) => "move",
        }
    }

    /// The event's JSON data.
    pub fn data(&self) -> serde_json::Value {
        match self {
            Self::PublisherJoined(p) | Self::PublisherLeft(p) => {
                serde_json::to_value(p).unwrap_or_default()
            }
            Self::Move(m) => serde_json::to_value(m).unwrap_or_default(),
        }
    }
}

/// A publisher whose media is flowing: what subscribers can be given.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub info: PublisherInfo,
    pub sources: Vec<SourceTrack>,
    /// Order of arrival, so `POST /whep/{room}` can pick the most recent.
    pub joined: u64,
}

#[derive(Debug)]
struct Room {
    publishers: HashMap<String, Publisher>,
    subscribers: usize,
    events: broadcast::Sender<RoomEvent>,
}

impl Room {
    fn new() -> Self {
        Self {
            publishers: HashMap::new(),
            subscribers: 0,
            events: broadcast::channel(EVENT_BACKLOG).0,
        }
    }

    fn is_idle(&self) -> bool {
        self.publishers.is_empty() && self.subscribers == 0 && self.events.receiver_count() == 0
    }
}

#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    joins: u64,
}

impl Rooms {
    /// The room's publishers, most recent last; `None` when the room does not exist.
    pub fn publishers(&self, room: &str) -> Option<Vec<PublisherInfo>> {
        let r = self.rooms.get(room)?;
        let mut list: Vec<&Publisher> = r.publishers.values().collect();
        list.sort_by_key(|p| p.joined);
        Some(list.into_iter().map(|p| p.info.clone()).collect())
    }

    pub fn publisher(&self, room: &str, id: &str) -> Option<&Publisher> {
        self.rooms.get(room)?.publishers.get(id)
    }

    pub fn latest_publisher(&self, room: &str) -> Option<&Publisher> {
        self.rooms
            .get(room)?
            .publishers
            .values()
            .max_by_key(|p| p.joined)
    }

    pub fn room_exists(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    pub fn add_publisher(&mut self, room: &str, info: PublisherInfo, sources: Vec<SourceTrack>) {
        self.joins += 1;
        let r = self.rooms.entry(room.to_owned()).or_insert_with(Room::new);
        // No listener is not an error: the event is only for whoever is watching.
        let _ = r.events.send(RoomEvent::PublisherJoined(info.clone()));
        r.publishers.insert(
            info.id.clone(),
            Publisher {
                info,
                sources,
                joined: self.joins,
            },
        );
    }

    pub fn remove_publisher(&mut self, room: &str, id: &str) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(p) = r.publishers.remove(id) {
            let _ = r.events.send(RoomEvent::PublisherLeft(p.info));
        }
        self.gc(room);
    }

    pub fn add_subscriber(&mut self, room: &str) {
        self.rooms
            .entry(room.to_owned())
            .or_insert_with(Room::new)
            .subscribers += 1;
    }

    pub fn remove_subscriber(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.subscribers = r.subscribers.saturating_sub(1);
        }
        self.gc(room);
    }

    /// A feed of the room's events, starting with a join for every current publisher so a
    /// listener needs no separate listing.
    pub fn watch(&mut self, room: &str) -> (Vec<RoomEvent>, broadcast::Receiver<RoomEvent>) {
        let r = self.rooms.entry(room.to_owned()).or_insert_with(Room::new);
        let mut current: Vec<&Publisher> = r.publishers.values().collect();
        current.sort_by_key(|p| p.joined);
        let snapshot = current
            .into_iter()
            .map(|p| RoomEvent::PublisherJoined(p.info.clone()))
            .collect();
        (snapshot, r.events.subscribe())
    }

    /// Drops rooms nobody is in any more (listeners that went away count as gone).
    pub fn gc(&mut self, room: &str) {
        if self.rooms.get(room).is_some_and(Room::is_idle) {
            self.rooms.remove(room);
        }
    }

    /// Sends `ev` to every room's listeners.
    pub fn broadcast(&self, ev: &RoomEvent) {
        for r in self.rooms.values() {
            let _ = r.events.send(ev.clone());
        }
    }

    pub fn publisher_count(&self) -> usize {
        self.rooms.values().map(|r| r.publishers.len()).sum()
    }
}

#[cfg(test)]
mod tests;
