//! Sluice's control plane: configuration, HTTP signaling (WHIP/WHEP, rooms), SDP
//! offer/answer, DTLS-SRTP handshakes and the glue that installs sessions in the media
//! plane. The `sluice` binary is a thin CLI over it.

pub mod client;
pub mod dtls;
pub mod auth;
pub mod config;
pub mod demo;
pub mod sdp;
