//! The whole-node media-plane benchmark (`sluice bench dataplane`): Sluice's router
//! and the null-forwarder reference, driven by the same synthetic publishers and sinks
//! over loopback in one run, compared as worker CPU time per egress packet.
//!
//! - [`generator`]: SRTP publishers sending VP8-shaped video, in bursts or paced.
//! - [`sink`]: subscribers checking sequence continuity and verifying (a sample of)
//!   packets end to end: decryption, checksum, latency.
//! - [`run`]: one run — priming, warm-up, measurement window, drain.
//! - [`node`]: the node under test on the dataplane driver: the router with sessions
//!   installed directly (no DTLS), or the reference ([`reference`]).
//! - [`suite`]: the configuration matrix; [`report`]: the table, JSON and acceptance.

pub mod cpu;
pub mod generator;
pub mod hist;
pub mod net;
pub mod node;
pub mod payload;
pub mod reference;
pub mod report;
pub mod run;
pub mod sink;
pub mod suite;
