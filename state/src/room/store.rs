//! All rooms on one node: local edits, eager push, anti-entropy, down cleanup and the
//! room-drop rule.
//!
//! Push: a local edit is committed and immediately offered, via automerge's sync
//! protocol, to every live node with a stake in the room (participant homes, track
//! homes, subscriber nodes, and peers we already sync with). Once a pair has synced
//! once, a new change crosses in a single message.
//!
//! Discovery: a node that joins a room knows nobody else in it yet, so every room has
//! a coordinator, the live node ranked first for it by rendezvous hashing. Everyone
//! holding the room also syncs with the coordinator, and the coordinator relays the
//! changes it receives to everyone it knows is interested. Once a newcomer's record
//! is in everyone's document, pushes go direct (one hop).
//!
//! Anti-entropy: every [`RoomPolicy::anti_entropy_every`], for each non-empty room,
//! a node sends one random interested peer the room's heads. A peer whose heads differ
//! restarts the sync for that pair with a reset, which makes the other side resend
//! whatever a lost push carried.
//!
//! Ownership: a node is the authority for the records it wrote for its own sessions
//! (its participants, their tracks, its subscriptions). If a merge removes one while
//! the session is still here (a partition got this node declared down elsewhere), the
//! node writes it back; when it really is gone, it deletes it.
//!
//! Drop rule: a node drops its copy of a room (document, sync states) once the room
//! has had no participants for [`RoomPolicy::drop_after`] on its clock. Empty rooms
//! send no digests, so the drop spreads without resurrection ping-pong. If a later
//! join re-creates the room, it starts from an empty document under a fresh actor, so
//! the history of earlier incarnations is gone everywhere the drop has happened. A
//! stale copy that missed the drop (a node partitioned for the whole grace period)
//! can merge old history back; that is still correct, because ownership removes any
//! record its owner no longer holds, and it drops again when the room empties.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use automerge::sync;
use rand::RngExt;
use rand::rngs::StdRng;

use super::doc::{
    Participant, RoomDoc, RoomError, RoomSnapshot, Subscription, Track, check_id,
    decode_sync_message, encode_record, metadata_key, participant_key, subscription_key, track_key,
};
use super::{MAX_LAYERS, MAX_VALUE_LEN, RoomId};
use crate::identity::NodeId;
use crate::wire::{self, DigestEntry, RoomDigestMsg, RoomSyncMsg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    pub anti_entropy_every: Duration,
    pub drop_after: Duration,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            anti_entropy_every: Duration::from_millis(1000),
            drop_after: Duration::from_secs(3),
        }
    }
}

/// A room and its heads, queued for a digest.
type DigestItem = (RoomId, Vec<[u8; 32]>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomEvent {
    Changed(RoomId),
    Dropped(RoomId),
}

#[derive(Debug)]
struct Room {
    doc: RoomDoc,
    peers: BTreeMap<NodeId, sync::State>,
    /// Records this node authored for sessions it still holds: key -> encoded value.
    owned: BTreeMap<String, Vec<u8>>,
    empty_since: Option<Duration>,
    dirty: bool,
}

#[derive(Debug)]
pub(crate) struct Rooms {
    local: NodeId,
    actor_prefix: [u8; 12],
    actors_used: u32,
    policy: RoomPolicy,
    rooms: BTreeMap<RoomId, Room>,
    next_anti_entropy: Duration,
    out: Vec<(NodeId, Vec<u8>)>,
    events: Vec<RoomEvent>,
    pub(crate) sync_applied: u64,
    pub(crate) sync_rejected: u64,
    pub(crate) dropped: u64,
    pub(crate) removed_on_down: u64,
    pub(crate) reasserted: u64,
}

impl Rooms {
    pub(crate) fn new(local: NodeId, generation: u32, policy: RoomPolicy, now: Duration) -> Self {
        let mut actor_prefix = [0u8; 12];
        actor_prefix[..8].copy_from_slice(&local.0.to_be_bytes());
        actor_prefix[8..].copy_from_slice(&generation.to_be_bytes());
        Self {
            local,
            actor_prefix,
            actors_used: 0,
            policy,
            rooms: BTreeMap::new(),
            next_anti_entropy: now + policy.anti_entropy_every,
            out: Vec::new(),
            events: Vec::new(),
            sync_applied: 0,
            sync_rejected: 0,
            dropped: 0,
            removed_on_down: 0,
            reasserted: 0,
        }
    }

    /// A node that rejoined under a new generation writes under new actors.
    pub(crate) fn set_generation(&mut self, generation: u32) {
        self.actor_prefix[8..].copy_from_slice(&generation.to_be_bytes());
        // Rooms already open keep their actor and continue its sequence.
        self.actors_used = 0;
    }

    fn room_mut(&mut self, id: &str, now: Duration) -> &mut Room {
        if !self.rooms.contains_key(id) {
            // Every incarnation of a room on this node writes under its own actor: a
            // dropped room's old actor may still live in a stale peer's history, and
            // reusing it would collide on sequence numbers.
            self.actors_used = self.actors_used.wrapping_add(1);
            let mut actor = [0u8; 16];
            actor[..12].copy_from_slice(&self.actor_prefix);
            actor[12..].copy_from_slice(&self.actors_used.to_be_bytes());
            self.rooms.insert(
                id.to_owned(),
                Room {
                    doc: RoomDoc::new(&actor),
                    peers: BTreeMap::new(),
                    owned: BTreeMap::new(),
                    empty_since: Some(now),
                    dirty: false,
                },
            );
        }
        self.rooms.get_mut(id).unwrap_or_else(|| unreachable!())
    }

    pub(crate) fn snapshot(&self, id: &str) -> Option<RoomSnapshot> {
        self.rooms.get(id).map(|r| r.doc.snapshot())
    }

    pub(crate) fn room_ids(&self) -> impl Iterator<Item = &RoomId> {
        self.rooms.keys()
    }

    pub(crate) fn doc_mut(&mut self, id: &str) -> Option<&mut RoomDoc> {
        self.rooms.get_mut(id).map(|r| &mut r.doc)
    }

    fn write_owned(
        &mut self,
        now: Duration,
        room: &str,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), RoomError> {
        check_id(room)?;
        let r = self.room_mut(room, now);
        r.doc.put_raw(&key, &value)?;
        r.owned.insert(key, value);
        self.committed(now, room);
        Ok(())
    }

    fn delete_owned(&mut self, now: Duration, room: &str, key: &str) -> Result<bool, RoomError> {
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoRoom)?;
        r.owned.remove(key);
        let present = r.doc.delete(key)?;
        self.committed(now, room);
        Ok(present)
    }

    fn committed(&mut self, now: Duration, room: &str) {
        if let Some(r) = self.rooms.get_mut(room)
            && r.doc.commit(now).is_some()
        {
            r.dirty = true;
            self.events.push(RoomEvent::Changed(room.to_owned()));
        }
    }

    pub(crate) fn join(
        &mut self,
        now: Duration,
        room: &str,
        participant: &str,
    ) -> Result<(), RoomError> {
        check_id(participant)?;
        let record = Participant {
            id: participant.to_owned(),
            home: self.local,
            joined_at_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        };
        self.write_owned(
            now,
            room,
            participant_key(participant),
            encode_record(&record),
        )
    }

    /// Removes a participant and the tracks it published.
    pub(crate) fn leave(
        &mut self,
        now: Duration,
        room: &str,
        participant: &str,
    ) -> Result<bool, RoomError> {
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoRoom)?;
        let snap = r.doc.snapshot();
        for t in snap.tracks.values().filter(|t| t.owner == participant) {
            let key = track_key(&t.id);
            r.owned.remove(&key);
            r.doc.delete(&key)?;
        }
        self.delete_owned(now, room, &participant_key(participant))
    }

    pub(crate) fn publish(
        &mut self,
        now: Duration,
        room: &str,
        track: Track,
    ) -> Result<(), RoomError> {
        check_id(&track.id)?;
        check_id(&track.owner)?;
        if track.codec.len() > MAX_VALUE_LEN || track.layers.iter().any(|l| l.len() > MAX_VALUE_LEN)
        {
            return Err(RoomError::ValueTooLong);
        }
        if track.layers.len() > MAX_LAYERS {
            return Err(RoomError::TooManyLayers);
        }
        let track = Track {
            home: self.local,
            ..track
        };
        self.write_owned(now, room, track_key(&track.id), encode_record(&track))
    }

    pub(crate) fn unpublish(
        &mut self,
        now: Duration,
        room: &str,
        track: &str,
    ) -> Result<bool, RoomError> {
        self.delete_owned(now, room, &track_key(track))
    }

    pub(crate) fn subscribe(
        &mut self,
        now: Duration,
        room: &str,
        track: &str,
        layer: u8,
    ) -> Result<(), RoomError> {
        check_id(track)?;
        let s = Subscription {
            node: self.local,
            track: track.to_owned(),
            layer,
        };
        self.write_owned(now, room, subscription_key(&s), Vec::new())
    }

    pub(crate) fn unsubscribe(
        &mut self,
        now: Duration,
        room: &str,
        track: &str,
        layer: u8,
    ) -> Result<bool, RoomError> {
        let s = Subscription {
            node: self.local,
            track: track.to_owned(),
            layer,
        };
        self.delete_owned(now, room, &subscription_key(&s))
    }

    /// Room metadata is shared, not owned: concurrent writes resolve last-writer-wins.
    pub(crate) fn set_metadata(
        &mut self,
        now: Duration,
        room: &str,
        key: &str,
        value: &str,
    ) -> Result<(), RoomError> {
        check_id(room)?;
        check_id(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(RoomError::ValueTooLong);
        }
        let r = self.room_mut(room, now);
        r.doc.put_raw(&metadata_key(key), value.as_bytes())?;
        self.committed(now, room);
        Ok(())
    }

    /// A node was declared down: remove its participants, their tracks and its
    /// subscriptions. The deleted keys depend only on the document and the node id, and
    /// concurrent deletes of one key merge to one delete, so survivors agree whoever
    /// does it first.
    pub(crate) fn remove_node(&mut self, now: Duration, node: NodeId) {
        let ids: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for id in ids {
            let Some(r) = self.rooms.get_mut(&id) else {
                continue;
            };
            r.peers.remove(&node);
            let snap = r.doc.snapshot();
            let mut keys: Vec<String> = snap
                .participants
                .values()
                .filter(|p| p.home == node)
                .map(|p| participant_key(&p.id))
                .collect();
            self.removed_on_down += keys.len() as u64;
            keys.extend(
                snap.tracks
                    .values()
                    .filter(|t| t.home == node)
                    .map(|t| track_key(&t.id)),
            );
            keys.extend(
                snap.subscriptions
                    .iter()
                    .filter(|s| s.node == node)
                    .map(subscription_key),
            );
            let mut changed = false;
            for key in keys {
                changed |= r.doc.delete(&key).unwrap_or(false);
            }
            if changed {
                self.committed(now, &id);
            }
        }
    }

    pub(crate) fn receive_sync(
        &mut self,
        now: Duration,
        msg: RoomSyncMsg<'_>,
        alive: &BTreeSet<NodeId>,
    ) -> Result<(), RoomError> {
        let decoded = decode_sync_message(msg.data)?;
        check_id(msg.room)?;
        let coordinating = coordinator(msg.room, self.local, alive) == self.local;
        let r = self.room_mut(msg.room, now);
        let before = r.doc.heads();
        let state = r.peers.entry(msg.from).or_default();
        let result = r.doc.receive_sync(state, decoded);
        if result.is_err() {
            // A rejected message leaves the pair's sync state unknown; start over.
            r.peers.insert(msg.from, sync::State::new());
            self.sync_rejected += 1;
            return result;
        }
        let changed = r.doc.heads() != before;
        if changed && coordinating {
            r.dirty = true;
        }
        self.sync_applied += 1;
        if changed {
            self.events.push(RoomEvent::Changed(msg.room.to_owned()));
            self.reassert(now, msg.room);
        }
        self.reply(msg.room, msg.from);
        Ok(())
    }

    /// Writes back owned records a merge removed: this node still holds those sessions.
    fn reassert(&mut self, now: Duration, room: &str) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let mut wrote = 0;
        for (key, value) in &r.owned {
            if r.doc.get_raw(key).as_deref() != Some(value.as_slice())
                && r.doc.put_raw(key, value).is_ok()
            {
                wrote += 1;
            }
        }
        if wrote > 0 {
            self.reasserted += wrote;
            self.committed(now, room);
        }
    }

    fn reply(&mut self, room: &str, to: NodeId) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let state = r.peers.entry(to).or_default();
        if let Some(data) = r.doc.generate_sync(state) {
            let body = wire::encode(
                wire::KIND_ROOM_SYNC,
                &RoomSyncMsg {
                    from: self.local,
                    room,
                    data: &data,
                },
            );
            self.out.push((to, body));
        }
    }

    pub(crate) fn receive_digest(&mut self, now: Duration, msg: RoomDigestMsg<'_>) {
        for entry in msg.rooms {
            if check_id(entry.room).is_err() {
                continue;
            }
            let r = self.room_mut(entry.room, now);
            let ours: Vec<[u8; 32]> = r.doc.heads().iter().map(|h| h.0).collect();
            if ours == entry.heads {
                continue;
            }
            // Restart this pair's sync. `needs_reset` makes the peer forget which
            // changes it believes it already sent us, so a lost push is resent.
            let mut state = sync::State::new();
            state.needs_reset = true;
            r.peers.insert(msg.from, state);
            self.reply(entry.room, msg.from);
        }
    }

    /// Offers every dirty room's new changes to its interested live peers.
    pub(crate) fn flush(&mut self, alive: &BTreeSet<NodeId>) {
        let dirty: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.dirty)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dirty {
            let Some(r) = self.rooms.get_mut(&id) else {
                continue;
            };
            r.dirty = false;
            for peer in interested(&id, r, self.local, alive) {
                self.reply(&id, peer);
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Duration {
        let drop_at = self
            .rooms
            .values()
            .filter_map(|r| r.empty_since)
            .map(|since| since + self.policy.drop_after)
            .min();
        drop_at.map_or(self.next_anti_entropy, |d| d.min(self.next_anti_entropy))
    }

    pub(crate) fn handle_timeout(
        &mut self,
        now: Duration,
        alive: &BTreeSet<NodeId>,
        rng: &mut StdRng,
    ) {
        // Emptiness is tracked here rather than on every edit: cheap and exact enough
        // for a grace period measured in seconds.
        let mut to_drop = Vec::new();
        for (id, r) in &mut self.rooms {
            if r.doc.has_participants() {
                r.empty_since = None;
            } else {
                let since = *r.empty_since.get_or_insert(now);
                if now >= since + self.policy.drop_after && !r.dirty {
                    to_drop.push(id.clone());
                }
            }
        }
        for id in to_drop {
            self.rooms.remove(&id);
            self.dropped += 1;
            self.events.push(RoomEvent::Dropped(id));
        }

        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + self.policy.anti_entropy_every;
            let mut per_peer: BTreeMap<NodeId, Vec<DigestItem>> = BTreeMap::new();
            for (id, r) in &mut self.rooms {
                if r.empty_since.is_some() {
                    continue;
                }
                let peers: Vec<NodeId> = interested(id, r, self.local, alive).into_iter().collect();
                if peers.is_empty() {
                    continue;
                }
                // Open a sync session with every interested peer we have never synced
                // with: until both sides have exchanged heads, automerge cannot put a
                // change in the first message, and a push would take three trips.
                for &peer in &peers {
                    if !r.peers.contains_key(&peer) {
                        let state = r.peers.entry(peer).or_default();
                        if let Some(data) = r.doc.generate_sync(state) {
                            let body = wire::encode(
                                wire::KIND_ROOM_SYNC,
                                &RoomSyncMsg {
                                    from: self.local,
                                    room: id,
                                    data: &data,
                                },
                            );
                            self.out.push((peer, body));
                        }
                    }
                }
                let peer = peers[rng.random_range(0..peers.len())];
                let heads = r.doc.heads().iter().map(|h| h.0).collect();
                per_peer.entry(peer).or_default().push((id.clone(), heads));
            }
            for (peer, entries) in per_peer {
                // Keep each digest within a datagram; a node with many shared rooms
                // sends several.
                for chunk in entries.chunks(16) {
                    let msg = RoomDigestMsg {
                        from: self.local,
                        rooms: chunk
                            .iter()
                            .map(|(room, heads)| DigestEntry {
                                room,
                                heads: heads.clone(),
                            })
                            .collect(),
                    };
                    self.out
                        .push((peer, wire::encode(wire::KIND_ROOM_DIGEST, &msg)));
                }
            }
        }
    }

    pub(crate) fn poll_out(&mut self) -> Option<(NodeId, Vec<u8>)> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<RoomEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }
}

fn interested(room: &str, r: &Room, local: NodeId, alive: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    let mut nodes = r.doc.snapshot().interested_nodes();
    nodes.extend(r.peers.keys().copied());
    nodes.insert(coordinator(room, local, alive));
    nodes.remove(&local);
    nodes.retain(|n| alive.contains(n));
    nodes
}

/// The room's coordinator among `alive` and `local`: highest rendezvous score wins,
/// so every node with the same membership view picks the same one.
fn coordinator(room: &str, local: NodeId, alive: &BTreeSet<NodeId>) -> NodeId {
    let score = |node: NodeId| {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in room.as_bytes().iter().chain(&node.0.to_le_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h, node)
    };
    alive
        .iter()
        .copied()
        .chain([local])
        .max_by_key(|&n| score(n))
        .unwrap_or(local)
}
