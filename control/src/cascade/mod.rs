//! Rooms that span nodes: what this node tells the others about its publishers, which of
//! theirs it can serve, and which of its tracks cross which link.
//!
//! - [`catalog`]: the track descriptor a far node answers WHEP offers from, and global
//!   track ids.
//! - [`core`]: the sans-IO decisions over the replicated room documents.
//! - [`handle`]: what sessions send the cascade task.
//! - [`paths`]: whether a stream goes over the direct link or through a relay node.
//! - [`shaper`]: what crosses a link when it cannot carry everything.
//! - [`speaker`]: each room's active speaker, whose video the shaper favours.
//! - [`trust`]: gossip authenticated by the links' mutual TLS.

pub mod catalog;
pub mod core;
pub mod handle;
pub mod paths;
pub mod shaper;
pub mod speaker;
pub mod trust;

#[cfg(test)]
mod tests;
