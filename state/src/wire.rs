//! The message envelope shared by datagrams and stream messages:
//! `kind (1 byte) | body | auth tag`. Bodies are postcard; room fields borrow from the
//! input, so decoding allocates nothing a peer controls beyond the digest list, which
//! is bounded by the message length.

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

pub(crate) const KIND_SWIM: u8 = 1;
pub(crate) const KIND_ROOM_SYNC: u8 = 2;
pub(crate) const KIND_ROOM_DIGEST: u8 = 3;
pub(crate) const KIND_ROOM_PUSH: u8 = 4;
pub(crate) const KIND_ROOM_STATE: u8 = 5;

/// Which history generation of a room a message belongs to. A room starts at
/// [`EpochId::ZERO`], shared by every node that creates it; each compaction starts a
/// new epoch named by its number and the actor that wrote its first change, so two
/// nodes that compact concurrently produce distinct, totally ordered epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EpochId {
    pub number: u32,
    pub creator: [u8; 16],
}

impl EpochId {
    pub const ZERO: Self = Self {
        number: 0,
        creator: [0; 16],
    };
}

/// An automerge sync message for one room (repair and catch-up).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomSyncMsg<'a> {
    pub from: NodeId,
    pub room: &'a str,
    pub epoch: EpochId,
    pub data: &'a [u8],
}

/// New changes, sent as they are committed. Carrying the changes themselves (rather
/// than a sync message) means a change crosses in one trip whatever the pair's sync
/// state says: automerge's sync protocol filters changes through the peer's Bloom
/// filter, and a false positive there costs two extra trips.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomPushMsg<'a> {
    pub from: NodeId,
    pub room: &'a str,
    pub epoch: EpochId,
    #[serde(borrow)]
    pub changes: Vec<&'a [u8]>,
    /// Nodes the author sent these changes to; the coordinator relays to the rest
    /// it knows are interested. Empty on a relayed copy, which is never relayed again.
    pub sent_to: Vec<NodeId>,
    pub relay: bool,
}

/// A whole epoch: its saved document and where it came from. Sent to a peer that is
/// behind (a lower epoch, or a first contact with the coordinator).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomStateMsg<'a> {
    pub from: NodeId,
    pub room: &'a str,
    pub epoch: EpochId,
    /// The epoch this one was compacted from (equal to `epoch` for epoch zero).
    pub parent: EpochId,
    /// Highest sequence number per actor included in this epoch's history, over
    /// this epoch's recent ancestors, with the epoch number the actor wrote in.
    #[serde(borrow)]
    pub clock: Vec<(&'a [u8], u64, u32)>,
    pub doc: &'a [u8],
}

/// Anti-entropy summary: the heads of rooms the sender believes we share.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomDigestMsg<'a> {
    pub from: NodeId,
    #[serde(borrow)]
    pub rooms: Vec<DigestEntry<'a>>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DigestEntry<'a> {
    pub room: &'a str,
    pub epoch: EpochId,
    pub heads: Vec<[u8; 32]>,
}

/// An authenticated body, split by kind.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Swim(&'a [u8]),
    RoomSync(RoomSyncMsg<'a>),
    RoomDigest(RoomDigestMsg<'a>),
    RoomPush(RoomPushMsg<'a>),
    RoomState(RoomStateMsg<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("undecodable body")]
    Body,
    #[error("field over its size limit")]
    TooLarge,
}

/// Decodes an already-authenticated body.
pub fn decode(body: &[u8]) -> Result<Incoming<'_>, WireError> {
    let (&kind, rest) = body.split_first().ok_or(WireError::Empty)?;
    match kind {
        KIND_SWIM => Ok(Incoming::Swim(rest)),
        KIND_ROOM_SYNC => {
            let msg: RoomSyncMsg<'_> = postcard::from_bytes(rest).map_err(|_| WireError::Body)?;
            if msg.room.len() > crate::room::MAX_ID_LEN {
                return Err(WireError::TooLarge);
            }
            Ok(Incoming::RoomSync(msg))
        }
        KIND_ROOM_DIGEST => {
            let msg: RoomDigestMsg<'_> = postcard::from_bytes(rest).map_err(|_| WireError::Body)?;
            if msg
                .rooms
                .iter()
                .any(|e| e.room.len() > crate::room::MAX_ID_LEN)
            {
                return Err(WireError::TooLarge);
            }
            Ok(Incoming::RoomDigest(msg))
        }
        KIND_ROOM_PUSH => {
            let msg: RoomPushMsg<'_> = postcard::from_bytes(rest).map_err(|_| WireError::Body)?;
            if msg.room.len() > crate::room::MAX_ID_LEN {
                return Err(WireError::TooLarge);
            }
            Ok(Incoming::RoomPush(msg))
        }
        KIND_ROOM_STATE => {
            let msg: RoomStateMsg<'_> = postcard::from_bytes(rest).map_err(|_| WireError::Body)?;
            if msg.room.len() > crate::room::MAX_ID_LEN {
                return Err(WireError::TooLarge);
            }
            Ok(Incoming::RoomState(msg))
        }
        other => Err(WireError::UnknownKind(other)),
    }
}

pub(crate) fn encode<T: Serialize>(kind: u8, body: &T) -> Vec<u8> {
    // Serialising our own plain structs into a Vec cannot fail; the fallback is an
    // empty body the receiver rejects, never a panic.
    postcard::to_extend(body, vec![kind]).unwrap_or_else(|_| vec![kind])
}
