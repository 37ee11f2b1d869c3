//! The cascade's link benchmark (`link-bench`): two cluster link endpoints (QUIC,
//! mutual TLS from an ephemeral cluster CA) joined through the impairment relay.
//!
//! - [`bulk`]: datagram throughput as a share of the bottleneck, per congestion
//!   controller.
//! - [`media`]: synthetic audio and three-layer simulcast offered above the link's rate,
//!   through the link shaper, while the bottleneck changes; what is shed and what
//!   arrives.
//! - [`cpu`]: CPU time per relayed packet on the link path beside plain UDP sockets
//!   carrying the same frames, in the same run.
//! - the BBR-style controller the links run (`sluice_control::cluster::bbr`) is measured
//!   beside quinn's own.
//! - [`pair`]: the two endpoints and the relay; [`synth`]: the synthetic packets;
//!   [`report`]: tables and JSON.

pub mod bulk;
pub mod cpu;
pub mod media;
pub mod pair;
pub mod report;
pub mod synth;
