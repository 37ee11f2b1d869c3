//! Sluice media plane.
//!
//! Every parser here is a view over `&[u8]`: no copies, no allocation, no panics; a
//! malformed packet is an `Err` with the precise reason, which the caller counts and drops.

pub mod demux;
pub mod driver;
pub mod engine;
pub mod link;
pub mod node;
pub mod rewrite;
pub mod router;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod stun;
