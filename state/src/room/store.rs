//! All rooms on one node: local edits, eager push, anti-entropy, down cleanup, history
//! compaction and the room-drop rule.
//!
//! Push: a local edit is committed and its change bytes are sent at once to every live
//! node with a stake in the room (participant homes, track homes, subscriber nodes,
//! sync peers, the coordinator). The change itself travels, not an automerge sync
//! message: the sync protocol picks what to send through the peer's Bloom filter, and
//! a false positive there (about 1% per check) turned one trip into three for about
//! one edit in 30-100 at 10 nodes. Pushes are not acknowledged; anti-entropy repairs
//! losses. A receiver missing a pushed change's dependencies catches up by a sync.
//!
//! Discovery: a node that joins a room knows nobody else in it yet, so every room has
//! a coordinator, the live node ranked first for it by rendezvous hashing. Everyone
//! pushes to the coordinator too, listing who else it sent to; the coordinator relays
//! to the interested nodes the author missed (none, once the author knows the room),
//! and sends a newcomer whose change starts a fresh history the whole room state.
//!
//! Anti-entropy: every [`RoomPolicy::anti_entropy_every`], for each non-empty room,
//! a node sends one random interested peer the room's epoch and heads. A peer whose
//! heads differ pushes back the changes not behind the heads it knows, and if it lacks
//! some of the sender's heads, answers with its own digest so the sender does the same.
//!
//! Epochs: automerge keeps every change (~200 bytes of heap each), so a long-lived
//! room's history is compacted. Once it holds [`RoomPolicy::compact_after_changes`]
//! changes, the coordinator writes the current state as the single change of a new
//! document, epoch N+1, named by its number and the compactor's fresh actor, and
//! sends that document with a clock (highest sequence per actor the epoch includes,
//! over the last [`CLOCK_EPOCHS`] epochs) to the interested nodes. Any message of a
//! lower epoch is answered with the current epoch's state; a node that sees a higher
//! epoch asks for it. Installing an epoch drops the old history, then restores what
//! the node alone is responsible for: its metadata writes the clock does not include
//! (kept in a small journal), its owned records, and the removal of nodes it knows are
//! down. Rival epochs (two compactions on both sides of a partition) are ordered by
//! (number, creator); the loser's nodes install the winner the same way, so both
//! sides' edits survive.
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
use crate::wire::{
    self, DigestEntry, EpochId, RoomDigestMsg, RoomPushMsg, RoomStateMsg, RoomSyncMsg,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    pub anti_entropy_every: Duration,
    pub drop_after: Duration,
    /// The coordinator starts a new epoch once the room's history holds this many
    /// changes. Automerge keeps ~200 bytes of heap per change, so this bounds a room
    /// document's memory whatever its age.
    pub compact_after_changes: u64,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            anti_entropy_every: Duration::from_millis(1000),
            drop_after: Duration::from_secs(3),
            compact_after_changes: 256,
        }
    }
}

/// Epoch exchanges (whole-state sends and requests for them) with one peer for one
/// room are at most this frequent; a lost one is retried on the peer's next message.
const EPOCH_EXCHANGE_EVERY: Duration = Duration::from_millis(100);

/// How many epochs back an epoch's clock (and a node's journal) reaches. A node that
/// comes back more epochs behind than this may lose metadata writes nobody else saw;
/// its owned records are reconciled whatever the distance.
const CLOCK_EPOCHS: u32 = 16;

/// A digest answer carries at most this many changes; beyond, the whole (compacted)
/// state is smaller.
const MAX_DIGEST_PUSH: usize = 32;

/// Pushes for an epoch we do not hold yet, kept until we adopt it (a push can overtake
/// the state message that announces its epoch).
const MAX_EARLY_PUSHES: usize = 64;

/// A room and its heads, queued for a digest.
type DigestItem = (RoomId, EpochId, Vec<[u8; 32]>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomEvent {
    Changed(RoomId),
    Dropped(RoomId),
}

#[derive(Debug, Clone)]
struct Epoch {
    id: EpochId,
    parent: EpochId,
    /// Which changes of its ancestors this epoch includes: actor -> (highest seq,
    /// epoch number it wrote in). Actors are unique per document, so one map covers
    /// the whole lineage; entries older than [`CLOCK_EPOCHS`] are dropped.
    clock: BTreeMap<Vec<u8>, (u64, u32)>,
}

impl Epoch {
    fn zero() -> Self {
        Self {
            id: EpochId::ZERO,
            parent: EpochId::ZERO,
            clock: BTreeMap::new(),
        }
    }
}

/// A metadata write this node made, kept so it can be replayed onto an epoch compacted
/// without it (a rival epoch, or one compacted before the write arrived). Owned
/// records need no journal: ownership reconciliation rewrites them.
#[derive(Debug, Clone)]
struct MetaWrite {
    epoch: EpochId,
    actor: [u8; 16],
    seq: u64,
    key: String,
    value: Vec<u8>,
}

#[derive(Debug)]
struct Room {
    doc: RoomDoc,
    actor: [u8; 16],
    /// Sequence number of this node's last change in `doc`.
    local_seq: u64,
    epoch: Epoch,
    peers: BTreeMap<NodeId, sync::State>,
    /// Records this node authored for sessions it still holds: key -> encoded value.
    owned: BTreeMap<String, Vec<u8>>,
    /// Metadata writes of the last [`CLOCK_EPOCHS`] epochs, the latest per key.
    journal: Vec<MetaWrite>,
    /// Changes committed here and not yet pushed.
    unpushed: Vec<Vec<u8>>,
    early: Vec<(EpochId, Vec<u8>)>,
    last_epoch_exchange: BTreeMap<NodeId, Duration>,
    last_digest_answer: BTreeMap<NodeId, Duration>,
    empty_since: Option<Duration>,
    dirty: bool,
}

impl Room {
    fn new(actor: [u8; 16], now: Duration) -> Self {
        Self {
            doc: RoomDoc::new(&actor),
            actor,
            local_seq: 0,
            epoch: Epoch::zero(),
            peers: BTreeMap::new(),
            owned: BTreeMap::new(),
            journal: Vec::new(),
            unpushed: Vec::new(),
            early: Vec::new(),
            last_epoch_exchange: BTreeMap::new(),
            last_digest_answer: BTreeMap::new(),
            empty_since: Some(now),
            dirty: false,
        }
    }

    fn commit(&mut self, now: Duration) -> bool {
        if self.doc.commit(now).is_none() {
            return false;
        }
        self.local_seq += 1;
        if let Some(change) = self.doc.last_local_change() {
            self.unpushed.push(change);
        }
        self.dirty = true;
        true
    }

    fn may_answer_digest(&mut self, now: Duration, peer: NodeId) -> bool {
        match self.last_digest_answer.get(&peer) {
            Some(&at) if now < at + EPOCH_EXCHANGE_EVERY => false,
            _ => {
                self.last_digest_answer.insert(peer, now);
                true
            }
        }
    }

    fn may_exchange_epoch(&mut self, now: Duration, peer: NodeId) -> bool {
        match self.last_epoch_exchange.get(&peer) {
            Some(&at) if now < at + EPOCH_EXCHANGE_EVERY => false,
            _ => {
                self.last_epoch_exchange.insert(peer, now);
                true
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Rooms {
    local: NodeId,
    actor_prefix: [u8; 12],
    actors_used: u32,
    policy: RoomPolicy,
    rooms: BTreeMap<RoomId, Room>,
    /// Nodes declared down and not back: their records are removed again from any
    /// epoch compacted by a node that had not heard.
    down: BTreeSet<NodeId>,
    next_anti_entropy: Duration,
    out: VecDeque<(NodeId, Vec<u8>)>,
    events: Vec<RoomEvent>,
    pub(crate) sync_applied: u64,
    pub(crate) sync_rejected: u64,
    pub(crate) dropped: u64,
    pub(crate) removed_on_down: u64,
    pub(crate) reasserted: u64,
    pub(crate) compactions: u64,
    pub(crate) epochs_adopted: u64,
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
            down: BTreeSet::new(),
            next_anti_entropy: now + policy.anti_entropy_every,
            out: VecDeque::new(),
            events: Vec::new(),
            sync_applied: 0,
            sync_rejected: 0,
            dropped: 0,
            removed_on_down: 0,
            reasserted: 0,
            compactions: 0,
            epochs_adopted: 0,
        }
    }

    /// A node that rejoined under a new generation writes under new actors.
    pub(crate) fn set_generation(&mut self, generation: u32) {
        self.actor_prefix[8..].copy_from_slice(&generation.to_be_bytes());
        // Rooms already open keep their actor and continue its sequence.
        self.actors_used = 0;
    }

    /// Every document this node writes to (each room incarnation, each epoch) gets its
    /// own actor: an old actor may live on in a stale peer's history, and reusing it
    /// would collide on sequence numbers. Node id and generation make it unique
    /// cluster-wide, so concurrent compactions never collide either.
    fn fresh_actor(&mut self) -> [u8; 16] {
        self.actors_used = self.actors_used.wrapping_add(1);
        let mut actor = [0u8; 16];
        actor[..12].copy_from_slice(&self.actor_prefix);
        actor[12..].copy_from_slice(&self.actors_used.to_be_bytes());
        actor
    }

    fn room_mut(&mut self, id: &str, now: Duration) -> &mut Room {
        if !self.rooms.contains_key(id) {
            let actor = self.fresh_actor();
            self.rooms.insert(id.to_owned(), Room::new(actor, now));
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

    pub(crate) fn epoch_of(&self, id: &str) -> Option<EpochId> {
        self.rooms.get(id).map(|r| r.epoch.id)
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
            && r.commit(now)
        {
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
        let key = metadata_key(key);
        r.doc.put_raw(&key, value.as_bytes())?;
        let write = MetaWrite {
            epoch: r.epoch.id,
            actor: r.actor,
            seq: r.local_seq + 1,
            key,
            value: value.as_bytes().to_vec(),
        };
        // The latest write per key decides what a replay must restore.
        r.journal.retain(|w| w.key != write.key);
        r.journal.push(write);
        self.committed(now, room);
        Ok(())
    }

    pub(crate) fn node_up(&mut self, node: NodeId) {
        self.down.remove(&node);
    }

    /// A node was declared down: remove its participants, their tracks and its
    /// subscriptions. The deleted keys depend only on the document and the node id, and
    /// concurrent deletes of one key merge to one delete, so survivors agree whoever
    /// does it first.
    pub(crate) fn remove_node(&mut self, now: Duration, node: NodeId) {
        self.down.insert(node);
        let ids: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for id in ids {
            let Some(r) = self.rooms.get_mut(&id) else {
                continue;
            };
            r.peers.remove(&node);
            let (keys, participants) = homed_keys(&r.doc.snapshot(), |n| n == node);
            self.removed_on_down += participants;
            let mut changed = false;
            for key in keys {
                changed |= r.doc.delete(&key).unwrap_or(false);
            }
            if changed {
                self.committed(now, &id);
            }
        }
    }

    /// Answers a message from `from` whose epoch is not ours. Returns whether the
    /// caller should go on (same epoch).
    fn check_epoch(&mut self, now: Duration, room: &str, from: NodeId, theirs: EpochId) -> bool {
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let ours = r.epoch.id;
        if theirs == ours {
            return true;
        }
        if r.may_exchange_epoch(now, from) {
            if theirs < ours {
                // They are behind: send them the whole current epoch.
                let body = self.state_body(room);
                self.out.push_back((from, body));
            } else {
                // We are behind: our heads under our epoch make them send theirs.
                self.send_digest(room, from);
            }
        }
        false
    }

    fn send_digest(&mut self, room: &str, to: NodeId) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let msg = RoomDigestMsg {
            from: self.local,
            rooms: vec![DigestEntry {
                room,
                epoch: r.epoch.id,
                heads: r.doc.heads().iter().map(|h| h.0).collect(),
            }],
        };
        self.out
            .push_back((to, wire::encode(wire::KIND_ROOM_DIGEST, &msg)));
    }

    fn state_body(&mut self, room: &str) -> Vec<u8> {
        let Some(r) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let doc = r.doc.save();
        let clock = r
            .epoch
            .clock
            .iter()
            .map(|(a, (s, e))| (a.as_slice(), *s, *e))
            .collect();
        wire::encode(
            wire::KIND_ROOM_STATE,
            &RoomStateMsg {
                from: self.local,
                room,
                epoch: r.epoch.id,
                parent: r.epoch.parent,
                clock,
                doc: &doc,
            },
        )
    }

    pub(crate) fn receive_push(
        &mut self,
        now: Duration,
        msg: RoomPushMsg<'_>,
        alive: &BTreeSet<NodeId>,
    ) -> Result<(), RoomError> {
        check_id(msg.room)?;
        let coordinating = coordinator(msg.room, self.local, alive) == self.local;
        let r = self.room_mut(msg.room, now);
        if msg.epoch > r.epoch.id && r.early.len() + msg.changes.len() <= MAX_EARLY_PUSHES {
            r.early
                .extend(msg.changes.iter().map(|c| (msg.epoch, c.to_vec())));
        }
        if !self.check_epoch(now, msg.room, msg.from, msg.epoch) {
            return Ok(());
        }
        let Some(r) = self.rooms.get_mut(msg.room) else {
            return Ok(());
        };
        let before = r.doc.heads();
        let rootless = match r.doc.apply_changes(&msg.changes) {
            Ok(rootless) => rootless,
            Err(e) => {
                self.sync_rejected += 1;
                return Err(e);
            }
        };
        self.sync_applied += 1;
        let changed = r.doc.heads() != before;
        if r.doc.missing_deps() {
            // We missed an earlier change: catch up with the sender by a sync that
            // makes it forget what it thinks we have.
            let mut state = sync::State::new();
            state.needs_reset = true;
            r.peers.insert(msg.from, state);
            self.reply(msg.room, msg.from);
        }
        if coordinating {
            if rootless && !before.is_empty() {
                // The author created the room without knowing it exists: give it
                // everything in one message instead of a multi-trip sync.
                let body = self.state_body(msg.room);
                self.out.push_back((msg.from, body));
            }
            if msg.relay {
                let Some(r) = self.rooms.get_mut(msg.room) else {
                    return Ok(());
                };
                let mut to = interested(msg.room, r, self.local, alive);
                to.remove(&msg.from);
                for n in &msg.sent_to {
                    to.remove(n);
                }
                queue_push(
                    &mut self.out,
                    RoomPushMsg {
                        from: self.local,
                        room: msg.room,
                        epoch: msg.epoch,
                        changes: msg.changes.clone(),
                        sent_to: Vec::new(),
                        relay: false,
                    },
                    to,
                );
            }
        }
        if changed {
            self.events.push(RoomEvent::Changed(msg.room.to_owned()));
            self.reassert(now, msg.room);
        }
        Ok(())
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
        self.room_mut(msg.room, now);
        if !self.check_epoch(now, msg.room, msg.from, msg.epoch) {
            return Ok(());
        }
        let Some(r) = self.rooms.get_mut(msg.room) else {
            return Ok(());
        };
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
        self.sync_applied += 1;
        if changed && coordinating {
            // Relay what this sync brought to everyone else interested: the sender
            // may be a newcomer nobody else knows yet.
            let changes = r.doc.changes_since(&before);
            let mut to = interested(msg.room, r, self.local, alive);
            to.remove(&msg.from);
            if !changes.is_empty() {
                queue_push(
                    &mut self.out,
                    RoomPushMsg {
                        from: self.local,
                        room: msg.room,
                        epoch: r.epoch.id,
                        changes: changes.iter().map(Vec::as_slice).collect(),
                        sent_to: Vec::new(),
                        relay: false,
                    },
                    to,
                );
            }
        }
        if changed {
            self.events.push(RoomEvent::Changed(msg.room.to_owned()));
            self.reassert(now, msg.room);
        }
        self.reply(msg.room, msg.from);
        Ok(())
    }

    /// A whole epoch from a peer: adopt it if newer, merge it if ours.
    pub(crate) fn receive_state(
        &mut self,
        now: Duration,
        msg: RoomStateMsg<'_>,
    ) -> Result<(), RoomError> {
        check_id(msg.room)?;
        let ours = self.room_mut(msg.room, now).epoch.id;
        if msg.epoch < ours {
            self.check_epoch(now, msg.room, msg.from, msg.epoch);
            return Ok(());
        }
        if msg.epoch == ours {
            let Some(r) = self.rooms.get_mut(msg.room) else {
                return Ok(());
            };
            let before = r.doc.heads();
            if let Err(e) = r.doc.merge_saved(msg.doc) {
                self.sync_rejected += 1;
                return Err(e);
            }
            self.sync_applied += 1;
            if r.doc.heads() != before {
                self.events.push(RoomEvent::Changed(msg.room.to_owned()));
                self.reassert(now, msg.room);
            }
            return Ok(());
        }
        if msg.parent >= msg.epoch {
            self.sync_rejected += 1;
            return Err(RoomError::SyncMalformed);
        }
        let actor = self.fresh_actor();
        let doc = match RoomDoc::load(msg.doc, &actor) {
            Ok(doc) => doc,
            Err(e) => {
                self.sync_rejected += 1;
                return Err(e);
            }
        };
        let epoch = Epoch {
            id: msg.epoch,
            parent: msg.parent,
            clock: msg
                .clock
                .iter()
                .map(|(a, s, e)| (a.to_vec(), (*s, *e)))
                .collect(),
        };
        self.sync_applied += 1;
        self.epochs_adopted += 1;
        self.install(now, msg.room, doc, actor, 0, epoch);
        Ok(())
    }

    /// Replaces a room's history with epoch `epoch` and carries over what this node
    /// wrote that the epoch may lack: metadata writes its clock does not include, the
    /// records this node owns, and the removal of nodes we know are down. Edits made
    /// on the old epoch by other nodes are carried over by those nodes when they adopt
    /// it, so an edit concurrent with a compaction is kept (and, being rewritten
    /// later, wins over a concurrent write to the same key in the compacted state).
    fn install(
        &mut self,
        now: Duration,
        room: &str,
        doc: RoomDoc,
        actor: [u8; 16],
        local_seq: u64,
        epoch: Epoch,
    ) {
        let local = self.local;
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.epoch = epoch;
        let new = r.epoch.clone();
        r.doc = doc;
        r.actor = actor;
        r.local_seq = local_seq;
        r.peers.clear();
        r.unpushed.clear();
        r.last_epoch_exchange.clear();
        let mut replay = Vec::new();
        let mut kept = Vec::new();
        for w in std::mem::take(&mut r.journal) {
            if w.epoch.number.saturating_add(CLOCK_EPOCHS) < new.id.number {
                // Too old for the clock to say; see [`CLOCK_EPOCHS`].
                continue;
            }
            let included = new
                .clock
                .get(&w.actor[..])
                .is_some_and(|&(s, _)| s >= w.seq);
            if included {
                // Still needed if a rival of the new epoch turns up.
                kept.push(w);
            } else {
                replay.push(w);
            }
        }
        r.journal = kept;
        for w in replay {
            if r.doc.put_raw(&w.key, &w.value).is_ok() {
                r.journal.push(MetaWrite {
                    epoch: new.id,
                    actor,
                    seq: r.local_seq + 1,
                    ..w
                });
            }
        }
        let snap = r.doc.snapshot();
        for (key, value) in &r.owned {
            if r.doc.get_raw(key).as_deref() != Some(value.as_slice()) {
                let _ = r.doc.put_raw(key, value);
            }
        }
        let down = &self.down;
        let (stale, _) = homed_keys(&snap, |n| n == local || down.contains(&n));
        for key in stale {
            if !r.owned.contains_key(&key) {
                let _ = r.doc.delete(&key);
            }
        }
        r.commit(now);
        let early = std::mem::take(&mut r.early);
        let ready: Vec<&[u8]> = early
            .iter()
            .filter(|(e, _)| *e == new.id)
            .map(|(_, c)| c.as_slice())
            .collect();
        if !ready.is_empty() {
            let _ = r.doc.apply_changes(&ready);
        }
        self.events.push(RoomEvent::Changed(room.to_owned()));
    }

    /// Starts a new epoch from this node's current state.
    fn compact(&mut self, now: Duration, room: &str) -> Result<(), RoomError> {
        let actor = self.fresh_actor();
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoRoom)?;
        let doc = r.doc.compacted(&actor, now)?;
        let number = r.epoch.id.number.saturating_add(1);
        let mut clock = r.epoch.clock.clone();
        clock.retain(|_, &mut (_, e)| e.saturating_add(CLOCK_EPOCHS) >= number);
        for (a, seq) in r.doc.clock() {
            clock.insert(a, (seq, r.epoch.id.number));
        }
        let epoch = Epoch {
            id: EpochId {
                number,
                creator: actor,
            },
            parent: r.epoch.id,
            clock,
        };
        let genesis_seq = u64::from(doc.change_count() > 0);
        self.compactions += 1;
        self.install(now, room, doc, actor, genesis_seq, epoch);
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
                    epoch: r.epoch.id,
                    data: &data,
                },
            );
            self.out.push_back((to, body));
        }
    }

    pub(crate) fn receive_digest(&mut self, now: Duration, msg: RoomDigestMsg<'_>) {
        for entry in msg.rooms {
            if check_id(entry.room).is_err() {
                continue;
            }
            self.room_mut(entry.room, now);
            if !self.check_epoch(now, entry.room, msg.from, entry.epoch) {
                continue;
            }
            let Some(r) = self.rooms.get_mut(entry.room) else {
                continue;
            };
            let ours: Vec<[u8; 32]> = r.doc.heads().iter().map(|h| h.0).collect();
            if ours == entry.heads {
                continue;
            }
            // Send what the peer may lack: everything not behind the heads of theirs we
            // know. Under churn heads mostly differ by pushes still in flight, and this
            // costs those few changes, where a fresh sync session would cost a Bloom
            // filter over the whole history and two more trips.
            let (known, all_known) = r.doc.known(&entry.heads);
            let changes = r.doc.changes_since(&known);
            let epoch = r.epoch.id;
            let answer = !all_known && r.may_answer_digest(now, msg.from);
            if changes.len() > MAX_DIGEST_PUSH {
                let body = self.state_body(entry.room);
                self.out.push_back((msg.from, body));
            } else if !changes.is_empty() {
                queue_push(
                    &mut self.out,
                    RoomPushMsg {
                        from: self.local,
                        room: entry.room,
                        epoch,
                        changes: changes.iter().map(Vec::as_slice).collect(),
                        sent_to: Vec::new(),
                        relay: false,
                    },
                    [msg.from],
                );
            }
            if answer {
                // We lack some of theirs: our heads make them send it the same way.
                self.send_digest(entry.room, msg.from);
            }
        }
    }

    /// Pushes every dirty room's new changes to its interested live peers, then
    /// compacts the rooms this node coordinates whose history is past the threshold.
    pub(crate) fn flush(&mut self, now: Duration, alive: &BTreeSet<NodeId>) {
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
            let changes = std::mem::take(&mut r.unpushed);
            if changes.is_empty() {
                continue;
            }
            let to = interested(&id, r, self.local, alive);
            queue_push(
                &mut self.out,
                RoomPushMsg {
                    from: self.local,
                    room: &id,
                    epoch: r.epoch.id,
                    changes: changes.iter().map(Vec::as_slice).collect(),
                    sent_to: to.iter().copied().collect(),
                    relay: true,
                },
                to,
            );
        }
        let due: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(id, r)| {
                r.doc.change_count() >= self.policy.compact_after_changes
                    && coordinator(id, self.local, alive) == self.local
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if self.compact(now, &id).is_err() {
                continue;
            }
            let Some(r) = self.rooms.get_mut(&id) else {
                continue;
            };
            // The compaction's own output (nothing, normally) travels inside the state.
            r.dirty = false;
            r.unpushed.clear();
            let to = interested(&id, r, self.local, alive);
            let body = self.state_body(&id);
            for peer in to {
                self.out.push_back((peer, body.clone()));
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
                let peer = peers[rng.random_range(0..peers.len())];
                let heads = r.doc.heads().iter().map(|h| h.0).collect();
                per_peer
                    .entry(peer)
                    .or_default()
                    .push((id.clone(), r.epoch.id, heads));
            }
            for (peer, entries) in per_peer {
                // Keep each digest within a datagram; a node with many shared rooms
                // sends several.
                for chunk in entries.chunks(12) {
                    let msg = RoomDigestMsg {
                        from: self.local,
                        rooms: chunk
                            .iter()
                            .map(|(room, epoch, heads)| DigestEntry {
                                room,
                                epoch: *epoch,
                                heads: heads.clone(),
                            })
                            .collect(),
                    };
                    self.out
                        .push_back((peer, wire::encode(wire::KIND_ROOM_DIGEST, &msg)));
                }
            }
        }
    }

    pub(crate) fn poll_out(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.out.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<RoomEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }
}

/// Keys of the records homed on nodes `on` selects, and how many are participants.
fn homed_keys(snap: &RoomSnapshot, on: impl Fn(NodeId) -> bool) -> (Vec<String>, u64) {
    let mut keys: Vec<String> = snap
        .participants
        .values()
        .filter(|p| on(p.home))
        .map(|p| participant_key(&p.id))
        .collect();
    let participants = keys.len() as u64;
    keys.extend(
        snap.tracks
            .values()
            .filter(|t| on(t.home))
            .map(|t| track_key(&t.id)),
    );
    keys.extend(
        snap.subscriptions
            .iter()
            .filter(|s| on(s.node))
            .map(subscription_key),
    );
    (keys, participants)
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

/// Encodes one push and queues it for every peer in `to`.
fn queue_push(
    out: &mut VecDeque<(NodeId, Vec<u8>)>,
    msg: RoomPushMsg<'_>,
    to: impl IntoIterator<Item = NodeId>,
) {
    let body = wire::encode(wire::KIND_ROOM_PUSH, &msg);
    for peer in to {
        out.push_back((peer, body.clone()));
    }
}
