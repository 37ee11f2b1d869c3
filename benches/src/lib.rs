//! Sluice's benchmarks: shared fixtures for the micro-benchmarks, and the whole-node
//! media-plane benchmark (`sluice bench dataplane`), and the link impairment relay.

pub mod dataplane;
pub mod fixtures;
pub mod impair;
pub mod link;
pub mod webrtc;
