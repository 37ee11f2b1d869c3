//! The message envelope shared by datagrams and stream messages:
//! `kind (1 byte) | body | auth tag`. Bodies are postcard; room fields borrow from the
//! input, so decoding allocates nothing a peer controls beyond the digest list, which
//! is bounded by the message length.

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

pub(crate) const KIND_SWIM: u8 = 1;
pub(crate) const KIND_ROOM_SYNC: u8 = 2;
pub(crate) const KIND_ROOM_DIGEST: u8 = 3;

/// An automerge sync message for one room.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomSyncMsg<'a> {
    pub from: NodeId,
    pub room: &'a str,
    pub data: &'a [u8],
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
    pub heads: Vec<[u8; 32]>,
}

/// An authenticated body, split by kind.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Swim(&'a [u8]),
    RoomSync(RoomSyncMsg<'a>),
    RoomDigest(RoomDigestMsg<'a>),
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
        other => Err(WireError::UnknownKind(other)),
    }
}

pub(crate) fn encode<T: Serialize>(kind: u8, body: &T) -> Vec<u8> {
    // Serialising our own plain structs into a Vec cannot fail; the fallback is an
    // empty body the receiver rejects, never a panic.
    postcard::to_extend(body, vec![kind]).unwrap_or_else(|_| vec![kind])
}
