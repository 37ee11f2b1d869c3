//! `sluice bench webrtc`: a load generator that speaks real WebRTC (WHIP/WHEP signaling,
//! ICE, DTLS, SRTP) to any server, so the same workload measures Sluice, the
//! null-forwarder reference and a peer SFU. Publishers send correctly packetized Opus
//! and VP8 (three simulcast layers, TWCC); subscribers verify what they receive end to
//! end ([`stamp`]); the server's CPU time is read from /proc by pid.

pub mod cpu;
pub mod fleet;
pub mod levels;
pub mod probe;
pub mod report;
pub mod run;
pub mod stamp;
pub mod workload;
