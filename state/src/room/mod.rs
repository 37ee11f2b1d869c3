//! Per-room replicated call state: one automerge document per room behind a typed API.

mod doc;
mod store;

pub use doc::{
    Participant, RoomDoc, RoomError, RoomSnapshot, Subscription, Track, TrackKind,
    decode_sync_message,
};
pub use store::RoomPolicy;
pub(crate) use store::{RoomEvent, Rooms};

/// Longest room, participant, track or metadata key id accepted.
pub const MAX_ID_LEN: usize = 64;
/// Simulcast layers per track (RFC 8853 practice: up to 3 spatial layers, plus slack).
pub const MAX_LAYERS: usize = 4;
/// Longest metadata value or codec name.
pub const MAX_VALUE_LEN: usize = 1024;
/// Largest automerge sync message we decode. Automerge allocates in proportion to
/// its input, so the cap bounds memory a peer can make us spend per message.
pub const MAX_SYNC_MESSAGE: usize = crate::transport::MAX_STREAM_MESSAGE;

/// Identifies a room cluster-wide.
pub type RoomId = String;
