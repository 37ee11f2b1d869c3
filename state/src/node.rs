//! One node's replicated state: membership, load gossip and room documents behind a
//! single sans-IO state machine.
//!
//! Drive it with `handle_datagram` / `handle_stream` / `handle_timeout(now)`, then drain
//! `poll_transmit` and `poll_event`, and call back at `poll_timeout`. `now` is the
//! driver's clock as a duration since its epoch (UNIX time in production, zero at the
//! start of a simulation); nothing in here reads a clock.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::auth::Authenticator;
use crate::identity::{NodeId, NodeIdentity};
use crate::load::{LoadPolicy, LoadPublisher, LoadSample, LoadView};
use crate::membership::{MemberEvent, MemberState, Membership, SwimTuning};
use crate::room::{RoomError, RoomEvent, RoomPolicy, RoomSnapshot, Rooms, Track};
use crate::stats::Stats;
use crate::transport::{Delivery, MAX_DATAGRAM, MAX_STREAM_MESSAGE, Transmit};
use crate::wire::{self, Incoming};

/// Everything a node needs to start.
#[derive(Debug)]
pub struct NodeConfig {
    pub identity: NodeIdentity,
    pub auth: Box<dyn Authenticator>,
    /// Link addresses of nodes to announce to on start.
    pub seeds: Vec<SocketAddr>,
    pub swim: SwimTuning,
    pub rooms: RoomPolicy,
    pub load: LoadPolicy,
    /// Seeds this node's own randomness (probe order, anti-entropy peers).
    pub rng_seed: u64,
}

impl NodeConfig {
    pub fn new(identity: NodeIdentity, auth: Box<dyn Authenticator>) -> Self {
        let rng_seed = identity.id.0 ^ (u64::from(identity.generation) << 48);
        Self {
            identity,
            auth,
            seeds: Vec::new(),
            swim: SwimTuning::lan(),
            rooms: RoomPolicy::default(),
            load: LoadPolicy::default(),
            rng_seed,
        }
    }
}

/// What a node tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    MemberUp(NodeIdentity),
    MemberDown(NodeIdentity),
    Rejoined(NodeIdentity),
    RoomChanged(String),
    RoomDropped(String),
}

/// Events kept for a driver that does not drain them; beyond this the oldest go.
const MAX_QUEUED_EVENTS: usize = 4096;

#[derive(Debug)]
pub struct Node {
    auth: Box<dyn Authenticator>,
    seeds: Vec<SocketAddr>,
    membership: Membership,
    load: LoadPublisher,
    rooms: Rooms,
    rng: StdRng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    alive: BTreeSet<NodeId>,
    left: bool,
}

impl Node {
    pub fn new(config: NodeConfig, now: Duration) -> Self {
        let identity = config.identity;
        let mut node = Self {
            auth: config.auth,
            seeds: config.seeds,
            membership: Membership::new(identity.clone(), &config.swim, config.rng_seed),
            load: LoadPublisher::new(config.load, &identity),
            rooms: Rooms::new(identity.id, identity.generation, config.rooms, now),
            rng: StdRng::seed_from_u64(config.rng_seed.rotate_left(17) ^ 0x5eed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            alive: BTreeSet::new(),
            left: false,
        };
        node.join(now);
        node
    }

    /// Announces to every seed. Called on start; call again if the node is isolated.
    pub fn join(&mut self, now: Duration) {
        for seed in self.seeds.clone() {
            if seed != self.identity().link_addr {
                let _ = self
                    .membership
                    .announce(now, NodeIdentity::seed_placeholder(seed));
            }
        }
        self.after_input(now);
    }

    /// Graceful leave: tells a few members we are going, then goes quiet.
    pub fn leave(&mut self, now: Duration) {
        let _ = self.membership.leave(now);
        self.left = true;
        self.after_input(now);
    }

    pub fn identity(&self) -> &NodeIdentity {
        self.membership.identity()
    }

    pub fn id(&self) -> NodeId {
        self.identity().id
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live members other than this node.
    pub fn members(&self) -> Vec<NodeIdentity> {
        self.membership.members().cloned().collect()
    }

    /// Every other node this one knows of, one entry per node id ordered by id, with
    /// its SWIM state: alive, suspect, or down (kept until SWIM forgets it, see
    /// [`SwimTuning::remove_down_after`]). This node itself is not listed.
    pub fn member_view(&self) -> Vec<(NodeIdentity, MemberState)> {
        self.membership.member_view()
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.alive.contains(&id)
    }

    // ---- inputs ----

    pub fn handle_datagram(&mut self, now: Duration, data: &[u8]) {
        self.stats.datagrams_in += 1;
        self.handle_message(now, data, MAX_DATAGRAM);
    }

    pub fn handle_stream(&mut self, now: Duration, data: &[u8]) {
        self.stats.streams_in += 1;
        self.handle_message(now, data, MAX_STREAM_MESSAGE);
    }

    fn handle_message(&mut self, now: Duration, data: &[u8], limit: usize) {
        self.stats.bytes_in += data.len() as u64;
        if self.left {
            return;
        }
        if data.len() > limit {
            self.stats.dropped_malformed += 1;
            return;
        }
        let body = match self.auth.open(data) {
            Ok(body) => body,
            Err(_) => {
                self.stats.dropped_unauthenticated += 1;
                return;
            }
        };
        match wire::decode(body) {
            Err(_) => self.stats.dropped_malformed += 1,
            Ok(Incoming::Swim(payload)) => {
                if self.membership.handle_data(now, payload).is_err() {
                    self.stats.swim_rejected += 1;
                }
            }
            Ok(Incoming::RoomSync(msg)) => {
                // Refuse state from nodes that are not (or no longer) members: a node
                // declared down must rejoin before it can write again.
                if !self.alive.contains(&msg.from)
                    || self.rooms.receive_sync(now, msg, &self.alive).is_err()
                {
                    self.stats.room_sync_rejected += 1;
                }
            }
            Ok(Incoming::RoomPush(msg)) => {
                if !self.alive.contains(&msg.from)
                    || self.rooms.receive_push(now, msg, &self.alive).is_err()
                {
                    self.stats.room_sync_rejected += 1;
                }
            }
            Ok(Incoming::RoomState(msg)) => {
                if !self.alive.contains(&msg.from) || self.rooms.receive_state(now, msg).is_err() {
                    self.stats.room_sync_rejected += 1;
                }
            }
            Ok(Incoming::RoomDigest(msg)) => {
                if self.alive.contains(&msg.from) {
                    self.rooms.receive_digest(now, msg);
                }
            }
        }
        self.after_input(now);
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        if self.left {
            return;
        }
        self.membership.handle_timeout(now);
        if let Some(report) = self.load.poll(now) {
            let _ = self.membership.add_broadcast(now, &report);
        }
        self.process_membership(now);
        self.rooms.handle_timeout(now, &self.alive, &mut self.rng);
        self.after_input(now);
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.left {
            return None;
        }
        let mut t = self.rooms.poll_timeout();
        if let Some(m) = self.membership.poll_timeout() {
            t = t.min(m);
        }
        if let Some(l) = self.load.poll_timeout() {
            t = t.min(l);
        }
        Some(t)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- load ----

    /// Records this node's current load; it is gossiped if it changed materially.
    pub fn set_load(&mut self, now: Duration, sample: LoadSample) {
        self.load.set(sample);
        self.handle_timeout(now);
    }

    /// The latest load report from a live member (or this node).
    pub fn load_of(&self, node: NodeId, now: Duration) -> Option<LoadView> {
        if node != self.id() && !self.alive.contains(&node) {
            return None;
        }
        self.membership.load_table().view(node, now)
    }

    // ---- rooms ----

    pub fn join_room(
        &mut self,
        now: Duration,
        room: &str,
        participant: &str,
    ) -> Result<(), RoomError> {
        let r = self.rooms.join(now, room, participant);
        self.after_input(now);
        r
    }

    pub fn leave_room(
        &mut self,
        now: Duration,
        room: &str,
        participant: &str,
    ) -> Result<bool, RoomError> {
        let r = self.rooms.leave(now, room, participant);
        self.after_input(now);
        r
    }

    pub fn publish_track(
        &mut self,
        now: Duration,
        room: &str,
        track: Track,
    ) -> Result<(), RoomError> {
        let r = self.rooms.publish(now, room, track);
        self.after_input(now);
        r
    }

    pub fn unpublish_track(
        &mut self,
        now: Duration,
        room: &str,
        track: &str,
    ) -> Result<bool, RoomError> {
        let r = self.rooms.unpublish(now, room, track);
        self.after_input(now);
        r
    }

    pub fn subscribe(
        &mut self,
        now: Duration,
        room: &str,
        track: &str,
        layer: u8,
    ) -> Result<(), RoomError> {
        let r = self.rooms.subscribe(now, room, track, layer);
        self.after_input(now);
        r
    }

    pub fn unsubscribe(
        &mut self,
        now: Duration,
        room: &str,
        track: &str,
        layer: u8,
    ) -> Result<bool, RoomError> {
        let r = self.rooms.unsubscribe(now, room, track, layer);
        self.after_input(now);
        r
    }

    pub fn set_room_metadata(
        &mut self,
        now: Duration,
        room: &str,
        key: &str,
        value: &str,
    ) -> Result<(), RoomError> {
        let r = self.rooms.set_metadata(now, room, key, value);
        self.after_input(now);
        r
    }

    pub fn room(&self, room: &str) -> Option<RoomSnapshot> {
        self.rooms.snapshot(room)
    }

    pub fn rooms(&self) -> Vec<String> {
        self.rooms.room_ids().cloned().collect()
    }

    /// The history epoch this node holds for a room (number, creator actor).
    pub fn room_epoch(&self, room: &str) -> Option<crate::wire::EpochId> {
        self.rooms.epoch_of(room)
    }

    /// Direct access for measurement (benchmarks report document sizes).
    pub fn room_doc(&mut self, room: &str) -> Option<&mut crate::room::RoomDoc> {
        self.rooms.doc_mut(room)
    }

    // ---- plumbing ----

    fn process_membership(&mut self, now: Duration) {
        while let Some(event) = self.membership.poll_event() {
            match event {
                MemberEvent::Up(id) => {
                    self.alive.insert(id.id);
                    self.rooms.node_up(id.id);
                    // The newcomer has none of our load; don't make it wait a refresh.
                    self.load.force();
                    self.push_event(Event::MemberUp(id));
                }
                MemberEvent::Down(id) => {
                    // A rename (same node, new generation) reports the old identity
                    // down after the new one is up; only a node with no live identity
                    // left is really gone.
                    if !self.membership.members().any(|m| m.id == id.id) {
                        self.alive.remove(&id.id);
                        self.rooms.remove_node(now, id.id);
                    }
                    // Spread the verdict now instead of at the next gossip tick: every
                    // node that learns it forwards it at once, so the whole cluster
                    // hears within a few network hops.
                    self.membership.gossip(now);
                    self.push_event(Event::MemberDown(id));
                }
                MemberEvent::Rejoined(id) => {
                    self.load.set_generation(id.generation);
                    self.rooms.set_generation(id.generation);
                    self.push_event(Event::Rejoined(id));
                }
            }
        }
    }

    fn after_input(&mut self, now: Duration) {
        self.process_membership(now);
        let received = self.membership.load_table().stamp(now);
        self.stats.load_reports_received += received;
        self.rooms.flush(now, &self.alive);
        while let Some((to, payload)) = self.membership.poll_send() {
            let mut body = Vec::with_capacity(payload.len() + 1 + 16);
            body.push(wire::KIND_SWIM);
            body.extend_from_slice(&payload);
            self.emit(
                to.link_addr,
                Some(to.id).filter(|id| id.0 != u64::MAX),
                body,
            );
        }
        while let Some((to, body)) = self.rooms.poll_out() {
            if let Some(addr) = self.membership.member(to).map(|m| m.link_addr) {
                self.emit(addr, Some(to), body);
            }
        }
        while let Some(e) = self.rooms.poll_event() {
            self.push_event(match e {
                RoomEvent::Changed(r) => Event::RoomChanged(r),
                RoomEvent::Dropped(r) => Event::RoomDropped(r),
            });
        }
        self.stats.room_sync_applied = self.rooms.sync_applied;
        self.stats.room_sync_rejected = self.stats.room_sync_rejected.max(self.rooms.sync_rejected);
        self.stats.rooms_dropped = self.rooms.dropped;
        self.stats.participants_removed_on_down = self.rooms.removed_on_down;
        self.stats.records_reasserted = self.rooms.reasserted;
        self.stats.room_compactions = self.rooms.compactions;
        self.stats.room_epochs_adopted = self.rooms.epochs_adopted;
    }

    fn emit(&mut self, to: SocketAddr, to_node: Option<NodeId>, mut body: Vec<u8>) {
        self.auth.seal(&mut body);
        let delivery = if body.len() <= MAX_DATAGRAM {
            Delivery::Datagram
        } else if body.len() <= MAX_STREAM_MESSAGE {
            Delivery::Stream
        } else {
            // Our own document grew past what a peer would accept in one message;
            // anti-entropy will keep retrying, and the stats show it.
            self.stats.dropped_malformed += 1;
            return;
        };
        self.stats.transmits_out += 1;
        self.stats.bytes_out += body.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            to_node,
            delivery,
            data: body,
        });
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.stats.events_overflowed += 1;
        }
        self.events.push_back(e);
    }
}
