//! The cascade's decisions, sans-IO: which of this node's tracks the room documents say
//! other nodes want (so the media plane sends them over links), which publishers on other
//! nodes this node's subscribers can be given, and what to write into the room documents
//! when local publishers and subscribers come and go.
//!
//! It wraps the replicated-state node ([`sluice_state::Node`]); the driver feeds it link
//! traffic and time, carries its transmits, and applies its [`Action`]s to the media plane
//! and the local room registry.

use super::catalog::{METADATA_PREFIX, StreamId, TrackDescriptor, track_home};
use crate::rooms::PublisherInfo;
use crate::sdp::SourceTrack;
use sluice_dataplane::router::TrackId;
use sluice_state::{Event, Node, NodeId, RoomSnapshot, Track, TrackKind};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// Prefix of the participant ids nodes watch rooms under.
pub const WATCHER_PREFIX: &str = "~node-";

/// A publisher on another node, as this node's subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePublisher {
    pub id: String,
    pub home: NodeId,
    pub tracks: Vec<TrackDescriptor>,
}

impl RemotePublisher {
    pub fn info(&self) -> PublisherInfo {
        PublisherInfo {
            id: self.id.clone(),
            tracks: self.tracks.iter().map(TrackDescriptor::info).collect(),
        }
    }

    /// Sources for subscribe answers; descriptors that do not convert are left out.
    pub fn sources(&self) -> Vec<SourceTrack> {
        self.tracks.iter().filter_map(|d| d.source().ok()).collect()
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this node's `layer` of `track` to `node` over its link (or stop).
    LinkSubscribe {
        track: TrackId,
        node: NodeId,
        layer: u8,
    },
    LinkUnsubscribe {
        track: TrackId,
        node: NodeId,
        layer: u8,
    },
    /// A publisher on another node appeared in a room this node holds: install its
    /// tracks (no media flows until a local subscriber wants them) and list it.
    RemotePublisherJoined {
        room: String,
        publisher: RemotePublisher,
    },
    /// Remove its tracks and unlist it.
    RemotePublisherLeft {
        room: String,
        publisher: RemotePublisher,
    },
    /// Ask `via` to forward `layer` of `track` (which this node sends it) on to `to`:
    /// path selection found the direct link to `to` clearly worse than through `via`.
    RelayStart {
        room: String,
        via: NodeId,
        to: NodeId,
        track: TrackId,
        layer: u8,
        descriptor: Box<TrackDescriptor>,
    },
    RelayStop {
        room: String,
        via: NodeId,
        to: NodeId,
        track: TrackId,
        layer: u8,
    },
    MemberUp(NodeId),
    MemberDown(NodeId),
}

/// (relay, final node, track, layer).
type Relayed = (NodeId, NodeId, TrackId, u8);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CascadeStats {
    /// Descriptors in room documents that did not parse (counted per sighting).
    pub bad_descriptors: u64,
    /// Writes the state layer refused (ids too long, value over 1 KiB, ...).
    pub state_errors: u64,
}

#[derive(Debug)]
pub struct Cascade {
    state: Node,
    /// Per room: remote publishers as last reported to the driver.
    remote: HashMap<String, BTreeMap<String, RemotePublisher>>,
    /// Per room: this node's tracks sent to other nodes, (track, next hop, layer).
    sending: HashMap<String, BTreeSet<(TrackId, NodeId, u8)>>,
    /// Per room: what relays forward for this node.
    relaying: HashMap<String, BTreeSet<Relayed>>,
    /// Subscribing nodes reached through a relay: final node to relay.
    via: BTreeMap<NodeId, NodeId>,
    /// Local subscribers per remote track, with the room and layers to ask for.
    wanted: HashMap<TrackId, (String, u32, Vec<u8>)>,
    watching: BTreeSet<String>,
    actions: VecDeque<Action>,
    stats: CascadeStats,
}

impl Cascade {
    pub fn new(state: Node) -> Self {
        Self {
            state,
            remote: HashMap::new(),
            sending: HashMap::new(),
            relaying: HashMap::new(),
            via: BTreeMap::new(),
            wanted: HashMap::new(),
            watching: BTreeSet::new(),
            actions: VecDeque::new(),
            stats: CascadeStats::default(),
        }
    }

    pub fn state(&self) -> &Node {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut Node {
        &mut self.state
    }

    pub fn id(&self) -> NodeId {
        self.state.id()
    }

    pub fn stats(&self) -> CascadeStats {
        self.stats
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The publishers on other nodes in `room`, as last reported.
    pub fn remote_publishers(&self, room: &str) -> Vec<RemotePublisher> {
        self.remote
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts and logs a write the state layer refused, with the room and the stream it
    /// was about.
    fn check<T, E: std::fmt::Display>(
        &mut self,
        r: Result<T, E>,
        room: &str,
        stream: Option<TrackId>,
        what: &str,
    ) -> Option<T> {
        let e = match r {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        self.stats.state_errors += 1;
        match stream {
            Some(t) => {
                tracing::warn!(%room, stream = %StreamId(t), error = %e, "cascade: cannot {what}")
            }
            None => tracing::warn!(%room, error = %e, "cascade: cannot {what}"),
        }
        None
    }

    /// A node's name for logs; its number when it is no member (any more).
    fn name_of(&self, id: NodeId) -> String {
        self.state
            .members()
            .into_iter()
            .find(|m| m.id == id && !m.name.is_empty())
            .map_or_else(|| id.to_string(), |m| m.name)
    }

    /// A local publisher's media is flowing: its tracks go into the room document.
    pub fn publish(
        &mut self,
        now: Duration,
        room: &str,
        publisher: &str,
        tracks: &[TrackDescriptor],
    ) {
        let r = self.state.join_room(now, room, publisher);
        self.check(r, room, None, "join a room");
        let home = self.id();
        for d in tracks {
            let key = format!("{METADATA_PREFIX}{}", d.id);
            let r = self.state.set_room_metadata(now, room, &key, &d.to_json());
            if self
                .check(r, room, Some(d.id), "describe a track")
                .is_none()
            {
                continue;
            }
            let track = Track {
                id: d.id.to_string(),
                owner: publisher.to_owned(),
                home,
                kind: if d.kind == "audio" {
                    TrackKind::Audio
                } else {
                    TrackKind::Video
                },
                codec: d.codec.clone(),
                layers: d
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| l.rid.clone().unwrap_or_else(|| i.to_string()))
                    .collect(),
            };
            let r = self.state.publish_track(now, room, track);
            self.check(r, room, Some(d.id), "publish a track");
        }
        self.after_state(now);
    }

    pub fn unpublish(&mut self, now: Duration, room: &str, publisher: &str, tracks: &[TrackId]) {
        for t in tracks {
            let r = self.state.unpublish_track(now, room, &t.to_string());
            self.check(r, room, Some(*t), "unpublish a track");
        }
        let r = self.state.leave_room(now, room, publisher);
        self.check(r, room, None, "leave a room");
        self.after_state(now);
    }

    /// One more (`true`) or one fewer local subscriber of a remote track. The first asks
    /// the room document for every layer (so the estimate can switch between them
    /// locally); the last withdraws.
    pub fn want(&mut self, now: Duration, room: &str, track: TrackId, more: bool) {
        let layers = self
            .remote
            .get(room)
            .and_then(|m| m.values().flat_map(|p| &p.tracks).find(|d| d.id == track))
            .map(|d| (0..d.layers.len().max(1) as u8).collect::<Vec<u8>>());
        let Some(layers) = layers else {
            return;
        };
        let id = track.to_string();
        if more {
            let entry = self
                .wanted
                .entry(track)
                .or_insert_with(|| (room.to_owned(), 0, layers.clone()));
            entry.1 += 1;
            if entry.1 == 1 {
                tracing::info!(
                    %room,
                    stream = %StreamId(track),
                    home = %self.name_of(NodeId(track_home(track))),
                    layers = layers.len(),
                    "stream wanted from its home node"
                );
                for &l in &layers {
                    let r = self.state.subscribe(now, room, &id, l);
                    self.check(r, room, Some(track), "subscribe");
                }
            }
        } else if let Some(entry) = self.wanted.get_mut(&track) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                let (room, _, layers) = self.wanted.remove(&track).unwrap_or_default();
                tracing::info!(
                    %room,
                    stream = %StreamId(track),
                    home = %self.name_of(NodeId(track_home(track))),
                    "stream no longer wanted from its home node"
                );
                for l in layers {
                    let r = self.state.unsubscribe(now, &room, &id, l);
                    self.check(r, &room, Some(track), "unsubscribe");
                }
            }
        }
        self.after_state(now);
    }

    /// Someone here watches `room` (a subscriber, an event stream, a listing): this node
    /// joins the room's document under a watcher id, so the room's coordinator sends it
    /// the whole room and every later change. Idempotent.
    pub fn watch(&mut self, now: Duration, room: &str) {
        if self.watching.insert(room.to_owned()) {
            let r = self.state.join_room(now, room, &self.watcher_id());
            self.check(r, room, None, "watch a room");
            self.after_state(now);
        }
    }

    pub fn unwatch(&mut self, now: Duration, room: &str) {
        if self.watching.remove(room) {
            let r = self.state.leave_room(now, room, &self.watcher_id());
            self.check(r, room, None, "stop watching a room");
            self.after_state(now);
        }
    }

    /// Participant ids starting with `~` are nodes watching, not people.
    fn watcher_id(&self) -> String {
        format!("{WATCHER_PREFIX}{}", self.id().0)
    }

    /// A state datagram or stream message from a link.
    pub fn handle_datagram(&mut self, now: Duration, data: &[u8]) {
        self.state.handle_datagram(now, data);
        self.after_state(now);
    }

    pub fn handle_stream(&mut self, now: Duration, data: &[u8]) {
        self.state.handle_stream(now, data);
        self.after_state(now);
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        self.state.handle_timeout(now);
        self.after_state(now);
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.state.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<sluice_state::Transmit> {
        self.state.poll_transmit()
    }

    fn after_state(&mut self, _now: Duration) {
        while let Some(ev) = self.state.poll_event() {
            match ev {
                Event::RoomChanged(room) => self.room_changed(&room),
                Event::RoomDropped(room) => self.room_gone(&room),
                Event::MemberUp(id) => self.actions.push_back(Action::MemberUp(id.id)),
                Event::MemberDown(id) => self.actions.push_back(Action::MemberDown(id.id)),
                Event::Rejoined(_) => {}
            }
        }
    }

    /// Routes this node's media to `to` through `via` (`None`: directly), as path
    /// selection decided; every room's sends follow at once.
    pub fn set_route(&mut self, to: NodeId, via: Option<NodeId>) {
        let changed = match via {
            Some(v) if v != to && v != self.id() => self.via.insert(to, v) != Some(v),
            _ => self.via.remove(&to).is_some(),
        };
        if changed {
            let rooms: BTreeSet<String> = self
                .sending
                .keys()
                .chain(self.relaying.keys())
                .cloned()
                .collect();
            for room in rooms {
                self.room_changed(&room);
            }
        }
    }

    /// The relay this node's media to `to` goes through, if any.
    pub fn route(&self, to: NodeId) -> Option<NodeId> {
        self.via.get(&to).copied()
    }

    fn room_changed(&mut self, room: &str) {
        let Some(snap) = self.state.room(room) else {
            self.room_gone(room);
            return;
        };
        let me = self.id();
        let mut sending = BTreeSet::new();
        let mut relayed = BTreeSet::new();
        let mut descriptors = BTreeMap::new();
        for (track, node, layer) in wanted_from_me(&snap, me) {
            match self.via.get(&node) {
                Some(&via) => {
                    sending.insert((track, via, layer));
                    relayed.insert((via, node, track, layer));
                    if let Some(d) = snap
                        .metadata
                        .get(&format!("{METADATA_PREFIX}{track}"))
                        .and_then(|j| TrackDescriptor::from_json(j).ok())
                    {
                        descriptors.insert(track, d);
                    }
                }
                None => {
                    sending.insert((track, node, layer));
                }
            }
        }
        // The relay must be sent the stream before it is asked to pass it on, and
        // stop passing it on before it stops coming.
        let stops = self.diff_relays(room, relayed, &descriptors);
        self.diff_sending(room, sending);
        self.actions.extend(stops);
        let publishers = self.remote_from(&snap, me);
        self.diff_remote(room, publishers);
    }

    fn room_gone(&mut self, room: &str) {
        let stops = self.diff_relays(room, BTreeSet::new(), &BTreeMap::new());
        self.actions.extend(stops);
        self.diff_sending(room, BTreeSet::new());
        self.diff_remote(room, BTreeMap::new());
    }

    /// Queues the relay starts and returns the stops (for after the sends changed).
    fn diff_relays(
        &mut self,
        room: &str,
        want: BTreeSet<Relayed>,
        descriptors: &BTreeMap<TrackId, TrackDescriptor>,
    ) -> Vec<Action> {
        let have = self.relaying.remove(room).unwrap_or_default();
        let stops = have
            .difference(&want)
            .map(|&(via, to, track, layer)| {
                tracing::info!(
                    %room,
                    stream = %StreamId(track),
                    layer,
                    via = %self.name_of(via),
                    to = %self.name_of(to),
                    "stream no longer relayed"
                );
                Action::RelayStop {
                    room: room.to_owned(),
                    via,
                    to,
                    track,
                    layer,
                }
            })
            .collect();
        let mut kept = BTreeSet::new();
        for &(via, to, track, layer) in &want {
            if have.contains(&(via, to, track, layer)) {
                kept.insert((via, to, track, layer));
                continue;
            }
            // Without a descriptor the relay cannot install the track; try again when
            // the room changes.
            let Some(d) = descriptors.get(&track) else {
                continue;
            };
            tracing::info!(
                %room,
                stream = %StreamId(track),
                layer,
                via = %self.name_of(via),
                to = %self.name_of(to),
                "stream relayed"
            );
            self.actions.push_back(Action::RelayStart {
                room: room.to_owned(),
                via,
                to,
                track,
                layer,
                descriptor: Box::new(d.clone()),
            });
            kept.insert((via, to, track, layer));
        }
        if !kept.is_empty() {
            self.relaying.insert(room.to_owned(), kept);
        }
        stops
    }

    fn diff_sending(&mut self, room: &str, want: BTreeSet<(TrackId, NodeId, u8)>) {
        let have = self.sending.remove(room).unwrap_or_default();
        // `node` is the next hop: the subscribing node, or the relay toward it.
        for &(track, node, layer) in have.difference(&want) {
            tracing::info!(
                %room,
                stream = %StreamId(track),
                layer,
                to = %self.name_of(node),
                "stream no longer sent over link"
            );
            self.actions
                .push_back(Action::LinkUnsubscribe { track, node, layer });
        }
        for &(track, node, layer) in want.difference(&have) {
            tracing::info!(
                %room,
                stream = %StreamId(track),
                layer,
                to = %self.name_of(node),
                "stream sent over link"
            );
            self.actions
                .push_back(Action::LinkSubscribe { track, node, layer });
        }
        if !want.is_empty() {
            self.sending.insert(room.to_owned(), want);
        }
    }

    fn remote_from(
        &mut self,
        snap: &RoomSnapshot,
        me: NodeId,
    ) -> BTreeMap<String, RemotePublisher> {
        let mut out: BTreeMap<String, RemotePublisher> = BTreeMap::new();
        for t in snap.tracks.values().filter(|t| t.home != me) {
            let key = format!("{METADATA_PREFIX}{}", t.id);
            let Some(json) = snap.metadata.get(&key) else {
                // The track record can arrive before its descriptor; wait for both.
                continue;
            };
            let d = match TrackDescriptor::from_json(json) {
                Ok(d) if d.id.to_string() == t.id => d,
                _ => {
                    self.stats.bad_descriptors += 1;
                    continue;
                }
            };
            out.entry(t.owner.clone())
                .or_insert_with(|| RemotePublisher {
                    id: t.owner.clone(),
                    home: t.home,
                    tracks: Vec::new(),
                })
                .tracks
                .push(d);
        }
        out
    }

    fn diff_remote(&mut self, room: &str, now: BTreeMap<String, RemotePublisher>) {
        let before = self.remote.remove(room).unwrap_or_default();
        for (id, p) in &before {
            if now.get(id) != Some(p) {
                self.actions.push_back(Action::RemotePublisherLeft {
                    room: room.to_owned(),
                    publisher: p.clone(),
                });
            }
        }
        for (id, p) in &now {
            if before.get(id) != Some(p) {
                self.actions.push_back(Action::RemotePublisherJoined {
                    room: room.to_owned(),
                    publisher: p.clone(),
                });
            }
        }
        if !now.is_empty() {
            self.remote.insert(room.to_owned(), now);
        }
    }
}

/// (track, node, layer) for every subscription in the room to a track homed here, from
/// another node.
fn wanted_from_me(snap: &RoomSnapshot, me: NodeId) -> BTreeSet<(TrackId, NodeId, u8)> {
    snap.subscriptions
        .iter()
        .filter(|s| s.node != me)
        .filter(|s| snap.tracks.get(&s.track).is_some_and(|t| t.home == me))
        .filter_map(|s| Some((s.track.parse().ok()?, s.node, s.layer)))
        .collect()
}
