//! The typed room document.
//!
//! Layout: a flat root map, one key per record, each value a postcard-encoded struct.
//! Flat keys mean two nodes that create the same room concurrently never create rival
//! nested objects (which automerge would resolve by dropping one); concurrent writes to
//! the same record resolve last-writer-wins by automerge's op order, identically on
//! every node.
//!
//! ```text
//! p/<participant>                    Participant
//! t/<track>                          Track
//! s/<node>/<layer>/<track>           Subscription (value empty)
//! m/<key>                            metadata (UTF-8 string)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::CommitOptions;
use automerge::{
    ActorId, AutoCommit, Change, ChangeHash, ReadDoc, ScalarValue, Value, transaction::Transactable,
};
use serde::{Deserialize, Serialize};

use super::{MAX_ID_LEN, MAX_LAYERS, MAX_SYNC_MESSAGE, MAX_VALUE_LEN};
use crate::identity::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub home: NodeId,
    /// Milliseconds in the driver's clock (UNIX time in production).
    pub joined_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackKind {
    Audio,
    Video,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    pub id: String,
    /// Participant id of the publisher.
    pub owner: String,
    /// Node the publisher is connected to; media for this track enters the mesh there.
    pub home: NodeId,
    pub kind: TrackKind,
    pub codec: String,
    /// Simulcast layer rids, lowest first; empty for a single-layer track.
    pub layers: Vec<String>,
}

/// `node` forwards `layer` of `track` to its local subscribers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subscription {
    pub node: NodeId,
    pub track: String,
    pub layer: u8,
}

/// Everything a room document says, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomSnapshot {
    pub participants: BTreeMap<String, Participant>,
    pub tracks: BTreeMap<String, Track>,
    pub subscriptions: BTreeSet<Subscription>,
    pub metadata: BTreeMap<String, String>,
}

impl RoomSnapshot {
    /// Nodes with a stake in the room: they receive its changes eagerly.
    pub fn interested_nodes(&self) -> BTreeSet<NodeId> {
        let mut nodes: BTreeSet<NodeId> = self.participants.values().map(|p| p.home).collect();
        nodes.extend(self.tracks.values().map(|t| t.home));
        nodes.extend(self.subscriptions.iter().map(|s| s.node));
        nodes
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("id longer than {MAX_ID_LEN} bytes or empty")]
    BadId,
    #[error("value longer than {MAX_VALUE_LEN} bytes")]
    ValueTooLong,
    #[error("more than {MAX_LAYERS} simulcast layers")]
    TooManyLayers,
    #[error("sync message over {MAX_SYNC_MESSAGE} bytes")]
    SyncTooLarge,
    #[error("undecodable sync message")]
    SyncMalformed,
    #[error("automerge refused the change: {0}")]
    Rejected(String),
    #[error("no such room")]
    NoRoom,
    #[error("no such participant")]
    NoParticipant,
}

pub(crate) fn check_id(id: &str) -> Result<(), RoomError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        Err(RoomError::BadId)
    } else {
        Ok(())
    }
}

/// Decodes an automerge sync message from a peer, refusing oversized input before
/// automerge allocates for it.
pub fn decode_sync_message(data: &[u8]) -> Result<sync::Message, RoomError> {
    if data.len() > MAX_SYNC_MESSAGE {
        return Err(RoomError::SyncTooLarge);
    }
    sync::Message::decode(data).map_err(|_| RoomError::SyncMalformed)
}

pub(crate) fn participant_key(id: &str) -> String {
    format!("p/{id}")
}
pub(crate) fn track_key(id: &str) -> String {
    format!("t/{id}")
}
pub(crate) fn subscription_key(s: &Subscription) -> String {
    format!("s/{}/{}/{}", s.node.0, s.layer, s.track)
}
pub(crate) fn metadata_key(key: &str) -> String {
    format!("m/{key}")
}

/// One room's automerge document.
pub struct RoomDoc {
    doc: AutoCommit,
}

impl std::fmt::Debug for RoomDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomDoc").finish_non_exhaustive()
    }
}

impl RoomDoc {
    /// An empty document written by `actor`. The actor must never have written to this
    /// room before (see [`crate::Node`] for how actors are derived).
    pub fn new(actor: &[u8]) -> Self {
        Self {
            doc: AutoCommit::new().with_actor(ActorId::from(actor)),
        }
    }

    pub(crate) fn put_raw(&mut self, key: &str, value: &[u8]) -> Result<(), RoomError> {
        self.doc
            .put(automerge::ROOT, key, ScalarValue::Bytes(value.to_vec()))
            .map_err(|e| RoomError::Rejected(e.to_string()))
    }

    pub(crate) fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        match self.doc.get(automerge::ROOT, key) {
            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Bytes(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Deletes `key`; returns whether it was present.
    pub(crate) fn delete(&mut self, key: &str) -> Result<bool, RoomError> {
        if self.doc.get(automerge::ROOT, key).ok().flatten().is_none() {
            return Ok(false);
        }
        self.doc
            .delete(automerge::ROOT, key)
            .map_err(|e| RoomError::Rejected(e.to_string()))?;
        Ok(true)
    }

    /// Commits pending edits as one change stamped with the driver's time (seconds), so
    /// a simulated run is reproducible byte for byte.
    pub(crate) fn commit(&mut self, now: Duration) -> Option<ChangeHash> {
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.doc
            .commit_with(CommitOptions::default().with_time(secs))
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn has_participants(&self) -> bool {
        self.doc.keys(automerge::ROOT).any(|k| k.starts_with("p/"))
    }

    pub fn participant_count(&self) -> usize {
        self.doc
            .keys(automerge::ROOT)
            .filter(|k| k.starts_with("p/"))
            .count()
    }

    /// Decodes the whole document. Records a peer wrote in an unknown shape are skipped.
    pub fn snapshot(&self) -> RoomSnapshot {
        let mut snap = RoomSnapshot::default();
        for key in self.doc.keys(automerge::ROOT) {
            let Some(value) = self
                .get_raw(&key)
                .or_else(|| self.get_str(&key).map(String::into_bytes))
            else {
                continue;
            };
            if let Some(id) = key.strip_prefix("p/") {
                if let Ok(p) = postcard::from_bytes::<Participant>(&value)
                    && p.id == id
                {
                    snap.participants.insert(p.id.clone(), p);
                }
            } else if let Some(id) = key.strip_prefix("t/") {
                if let Ok(t) = postcard::from_bytes::<Track>(&value)
                    && t.id == id
                {
                    snap.tracks.insert(t.id.clone(), t);
                }
            } else if let Some(rest) = key.strip_prefix("s/") {
                if let Some(s) = parse_subscription(rest) {
                    snap.subscriptions.insert(s);
                }
            } else if let Some(k) = key.strip_prefix("m/")
                && let Ok(v) = String::from_utf8(value)
            {
                snap.metadata.insert(k.to_owned(), v);
            }
        }
        snap
    }

    fn get_str(&self, key: &str) -> Option<String> {
        match self.doc.get(automerge::ROOT, key) {
            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Str(v) => Some(v.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn generate_sync(&mut self, state: &mut sync::State) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(state)
            .map(sync::Message::encode)
    }

    pub(crate) fn receive_sync(
        &mut self,
        state: &mut sync::State,
        msg: sync::Message,
    ) -> Result<(), RoomError> {
        self.doc
            .sync()
            .receive_sync_message(state, msg)
            .map_err(|e| RoomError::Rejected(e.to_string()))
    }

    /// The change this node committed last, encoded for a push.
    pub(crate) fn last_local_change(&mut self) -> Option<Vec<u8>> {
        self.doc
            .get_last_local_change()
            .map(|mut c| c.bytes().into_owned())
    }

    /// Encoded changes added since `heads` (what a relay forwards after a sync).
    pub(crate) fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<Vec<u8>> {
        self.doc
            .get_changes(heads)
            .into_iter()
            .map(|mut c| c.bytes().into_owned())
            .collect()
    }

    /// Which of `heads` this history holds.
    pub(crate) fn known(&mut self, heads: &[[u8; 32]]) -> (Vec<ChangeHash>, bool) {
        let mut known = Vec::with_capacity(heads.len());
        for h in heads {
            let h = ChangeHash(*h);
            if self.doc.get_change_meta_by_hash(&h).is_some() {
                known.push(h);
            }
        }
        let all = known.len() == heads.len();
        (known, all)
    }

    /// Applies pushed changes; ones whose dependencies are missing wait inside
    /// automerge until those arrive. Returns whether one of them started a history
    /// (no dependencies): its author created the room without knowing ours.
    pub(crate) fn apply_changes(&mut self, changes: &[&[u8]]) -> Result<bool, RoomError> {
        let mut decoded = Vec::with_capacity(changes.len());
        for c in changes {
            if c.len() > MAX_SYNC_MESSAGE {
                return Err(RoomError::SyncTooLarge);
            }
            decoded.push(Change::from_bytes(c.to_vec()).map_err(|_| RoomError::SyncMalformed)?);
        }
        let rootless = decoded.iter().any(|c| c.deps().is_empty());
        self.doc
            .apply_changes(decoded)
            .map_err(|e| RoomError::Rejected(e.to_string()))?;
        Ok(rootless)
    }

    /// Whether changes we hold wait on dependencies we have not received.
    pub(crate) fn missing_deps(&mut self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// Changes in the history, applied or waiting.
    pub fn change_count(&self) -> u64 {
        self.doc.stats().num_changes
    }

    /// Highest sequence number per actor: exactly which changes this history holds,
    /// since an actor's changes form a chain.
    pub(crate) fn clock(&mut self) -> BTreeMap<Vec<u8>, u64> {
        let mut clock = BTreeMap::new();
        for meta in self.doc.get_changes_meta(&[]) {
            let seq = clock.entry(meta.actor.to_bytes().to_vec()).or_insert(0);
            *seq = (*seq).max(meta.seq);
        }
        clock
    }

    /// A new history holding the current state as one change by `actor`.
    pub(crate) fn compacted(&self, actor: &[u8], now: Duration) -> Result<Self, RoomError> {
        let mut fresh = Self::new(actor);
        for key in self.doc.keys(automerge::ROOT) {
            match self.doc.get(automerge::ROOT, &key) {
                Ok(Some((Value::Scalar(s), _))) => fresh
                    .doc
                    .put(automerge::ROOT, &key, s.into_owned())
                    .map_err(|e| RoomError::Rejected(e.to_string()))?,
                // The typed API only writes scalars; anything else is foreign and the
                // snapshot ignores it too.
                _ => continue,
            }
        }
        fresh.commit(now);
        Ok(fresh)
    }

    /// Loads a saved document (a peer's whole epoch); this node writes as `actor`.
    pub(crate) fn load(data: &[u8], actor: &[u8]) -> Result<Self, RoomError> {
        if data.len() > MAX_SYNC_MESSAGE {
            return Err(RoomError::SyncTooLarge);
        }
        let doc = AutoCommit::load(data).map_err(|_| RoomError::SyncMalformed)?;
        Ok(Self {
            doc: doc.with_actor(ActorId::from(actor)),
        })
    }

    /// Merges a saved document of the same epoch into this one.
    pub(crate) fn merge_saved(&mut self, data: &[u8]) -> Result<(), RoomError> {
        if data.len() > MAX_SYNC_MESSAGE {
            return Err(RoomError::SyncTooLarge);
        }
        self.doc
            .load_incremental(data)
            .map(|_| ())
            .map_err(|_| RoomError::SyncMalformed)
    }

    pub(crate) fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Size of the compacted document, as it would be stored or sent in full.
    pub fn saved_len(&mut self) -> usize {
        self.doc.save().len()
    }
}

fn parse_subscription(rest: &str) -> Option<Subscription> {
    let mut parts = rest.splitn(3, '/');
    let node = parts.next()?.parse().ok()?;
    let layer = parts.next()?.parse().ok()?;
    let track = parts.next()?.to_owned();
    Some(Subscription {
        node: NodeId(node),
        track,
        layer,
    })
}

pub(crate) fn encode_record<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_allocvec(record).unwrap_or_default()
}
