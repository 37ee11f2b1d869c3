//! Sluice's control plane: configuration, HTTP signaling (WHIP/WHEP, rooms), SDP
//! offer/answer, DTLS-SRTP handshakes and the glue that installs sessions in the media
//! plane. The `sluice` binary is a thin CLI over it.

pub mod auth;
pub mod cascade;
pub mod client;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod dtls;
pub mod http;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod rooms;
pub mod sdp;
pub mod status;
