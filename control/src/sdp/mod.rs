//! SDP offer/answer for the edge node, sans-IO: an offer's text in, an answer's text and
//! the plan for the media plane out (tracks to publish, subscriptions to install).
//!
//! - [`parse_offer`] reads an offer with the `sdp` crate and pulls out what negotiation
//!   needs (transport credentials, codecs, header extensions, simulcast, SSRCs).
//! - [`answer_publish`] answers a WHIP offer: we receive, the peer sends.
//! - [`answer_subscribe`] answers a WHEP offer: we send the room's tracks.
//!
//! The answers are written as text rather than built with the crate so that every line
//! an implementation is picky about is under our control (webrtcbin wants `a=setup` in
//! every m-section and the fingerprint only once, aiortc wants rtcp-mux and a codec even
//! in rejected m-sections); see `writer.rs`.

mod accept;
mod codec;
mod extmap;
mod offer;
mod publish;
mod simulcast;
mod subscribe;
mod writer;

#[cfg(test)]
mod tests;

pub(crate) use codec::classify as classify_codec;
pub use extmap::{
    URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_REPAIRED_RID, URI_RID, URI_TRANSPORT_CC,
};
pub use offer::{
    Direction, ExtMap, Fingerprint, MAX_MEDIA_SECTIONS, MAX_OFFER_BYTES, MediaOffer, Offer, Setup,
    parse_offer,
};
pub use publish::{PublishAnswer, PublishedTrack, answer_publish};
pub use subscribe::{PlannedSubscription, SourceTrack, SubscribeAnswer, answer_subscribe};

use std::net::SocketAddr;

/// Our side of the transport, the same for every answer of one session.
#[derive(Debug, Clone)]
pub struct LocalDescription {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// SHA-256 of our DTLS certificate, "AB:CD:..." in uppercase hex.
    pub fingerprint_sha256: String,
    /// Host candidates, in preference order.
    pub candidates: Vec<SocketAddr>,
}

/// Why an offer cannot be answered. Each kind maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not SDP, or SDP that breaks its own grammar (HTTP 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Valid SDP asking for something we do not do (HTTP 422).
    #[error("unsupported offer: {0}")]
    Unsupported(String),
    /// Nothing the offer can send or receive is something we can forward (HTTP 406).
    #[error("no common codec: {0}")]
    NoCommonCodec(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// One RTP payload format. In an [`Offer`] it is what the peer offered (name as written,
/// every rtcp-fb it listed, `codec` is `Other` for RTX, RED, FEC and unknown formats); in
/// an answer it is what was negotiated (canonical name, the rtcp-fb we answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    pub codec: sluice_dataplane::router::Codec,
    /// "opus", "VP8", "VP9", "H264", "AV1" once negotiated.
    pub name: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
    pub rtcp_fb: Vec<String>,
}
