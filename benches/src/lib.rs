//! Sluice's benchmarks: shared fixtures for the micro-benchmarks, and the whole-node
//! media-plane benchmark (`sluice bench dataplane`).

pub mod dataplane;
pub mod fixtures;
