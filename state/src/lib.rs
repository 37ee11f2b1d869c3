//! Sluice replicated state: membership (SWIM) and per-room CRDT documents, sans-IO.
//!
//! Every node holds the state it needs and changes spread node to node; there is no
//! central store. [`Node`] is the whole state machine; [`sim`] runs many of them in
//! one process on virtual time.

pub mod auth;
pub mod identity;
pub mod load;
pub mod membership;
mod node;
pub mod room;
pub mod sim;
pub mod stats;
pub mod transport;
pub mod wire;

pub use auth::{Authenticator, ClusterKey};
pub use identity::{NodeId, NodeIdentity};
pub use load::{LinkQuality, LoadSample, LoadView};
pub use node::{Event, Node, NodeConfig};
pub use room::{Participant, RoomSnapshot, Subscription, Track, TrackKind};
pub use stats::Stats;
pub use transport::{Delivery, Transmit, Transport};
