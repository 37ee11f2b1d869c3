//! What a far node needs to know about a published track to answer a WHEP offer for it
//! and to install it in its media plane: the negotiated codec, RTX, the publisher's
//! header-extension ids and the simulcast layers. It travels in the room's replicated
//! document (one metadata entry per track), so every node that holds the room can serve
//! its subscribers without asking the publisher's node.

use crate::rooms::TrackInfo;
use crate::sdp::{CodecSpec, MediaKind, PublishedTrack, SourceTrack};
use serde::{Deserialize, Serialize};
use sluice_dataplane::router::{LayerConfig, TrackConfig, TrackId};

/// Metadata key prefix of a track's descriptor in the room document.
pub const METADATA_PREFIX: &str = "track/";

/// Global track ids: the node's number above a per-node counter, so ids from different
/// nodes never collide in a far node's media plane. 53 bits in all, so the ids in the
/// JSON of `GET /rooms` are exact in JavaScript (whose numbers are doubles); the counter
/// wraps after 2^29 ids, long after the tracks it numbered are gone.
pub const NODE_ID_BITS: u32 = 24;
const COUNTER_BITS: u32 = 29;

pub fn global_track_id(node: u64, counter: u64) -> TrackId {
    ((node & ((1 << NODE_ID_BITS) - 1)) << COUNTER_BITS) | (counter & ((1 << COUNTER_BITS) - 1))
}

/// The node a global track id was minted by.
pub fn track_home(track: TrackId) -> u64 {
    (track >> COUNTER_BITS) & ((1 << NODE_ID_BITS) - 1)
}

/// A global track id as logs print it, in the `stream` field: 16 hex digits, the same on
/// every node a stream passes (its publisher's, the relays', its subscribers'), so one
/// search over all nodes' logs follows it. Fixed width, so a search for one id never
/// matches a longer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub TrackId);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Several stream ids in one log field (`streams`), comma-separated.
#[derive(Debug, Clone, Copy)]
pub struct StreamIds<'a>(pub &'a [TrackId]);

impl std::fmt::Display for StreamIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            StreamId(*t).fmt(f)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx: Option<u32>,
}

/// One published track, as the room document carries it. Field names are short: the
/// document limits a value to 1 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackDescriptor {
    pub id: TrackId,
    /// The publisher's id (the msid stream of subscribers' answers).
    pub publisher: String,
    pub kind: String,
    pub codec: String,
    pub pt: u8,
    pub clock: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmtp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fb: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx_pt: Option<u8>,
    /// The publisher's negotiated header extensions, (id, URI).
    pub ext: Vec<(u8, String)>,
    pub layers: Vec<LayerDescriptor>,
    pub simulcast: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("track descriptor is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("track descriptor has unknown kind {0:?}")]
    Kind(String),
}

impl TrackDescriptor {
    pub fn from_published(
        id: TrackId,
        publisher: &str,
        track: &PublishedTrack,
        ext_uris: &[(u8, String)],
    ) -> Self {
        let c = &track.codec;
        Self {
            id,
            publisher: publisher.to_owned(),
            kind: track.kind.as_str().to_owned(),
            codec: c.name.clone(),
            pt: c.payload_type,
            clock: c.clock_rate,
            channels: c.channels,
            fmtp: c.fmtp.clone(),
            fb: c.rtcp_fb.clone(),
            rtx_pt: track.rtx_payload_type,
            ext: ext_uris.to_vec(),
            layers: track
                .layers
                .iter()
                .map(|l| LayerDescriptor {
                    rid: l
                        .rid
                        .as_ref()
                        .map(|r| String::from_utf8_lossy(r).into_owned()),
                    ssrc: l.ssrc,
                    rtx: l.rtx_ssrc,
                })
                .collect(),
            simulcast: track.simulcast,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Self, CatalogError> {
        let d: Self = serde_json::from_str(s)?;
        d.media_kind()?;
        Ok(d)
    }

    pub fn media_kind(&self) -> Result<MediaKind, CatalogError> {
        match self.kind.as_str() {
            "audio" => Ok(MediaKind::Audio),
            "video" => Ok(MediaKind::Video),
            other => Err(CatalogError::Kind(other.to_owned())),
        }
    }

    fn codec_spec(&self) -> CodecSpec {
        CodecSpec {
            codec: crate::sdp::classify_codec(&self.codec),
            name: self.codec.clone(),
            payload_type: self.pt,
            clock_rate: self.clock,
            channels: self.channels,
            fmtp: self.fmtp.clone(),
            rtcp_fb: self.fb.clone(),
        }
    }

    /// What the subscribe answer is written from.
    pub fn source(&self) -> Result<SourceTrack, CatalogError> {
        Ok(SourceTrack {
            track_id: self.id,
            stream_id: self.publisher.clone(),
            kind: self.media_kind()?,
            codec: self.codec_spec(),
            rtx_payload_type: self.rtx_pt,
            ext_uris: self.ext.clone(),
        })
    }

    /// The media-plane track on a far node: no local publisher.
    pub fn track_config(&self) -> TrackConfig {
        TrackConfig {
            id: self.id,
            publisher: 0,
            home: 0,
            codec: crate::sdp::classify_codec(&self.codec),
            clock_rate: self.clock,
            payload_type: self.pt,
            rtx_payload_type: self.rtx_pt,
            layers: self
                .layers
                .iter()
                .map(|l| LayerConfig {
                    ssrc: l.ssrc,
                    rtx_ssrc: l.rtx,
                    rid: l.rid.as_ref().map(|r| r.as_bytes().to_vec()),
                })
                .collect(),
        }
    }

    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id,
            kind: if self.kind == "audio" {
                "audio"
            } else {
                "video"
            },
            codec: self.codec.clone(),
            simulcast: self.simulcast,
            layers: self.layers.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{URI_ABS_SEND_TIME, URI_MID, URI_REPAIRED_RID, URI_RID, URI_TRANSPORT_CC};
    use sluice_dataplane::router::Codec;

    fn chromium_video() -> (PublishedTrack, Vec<(u8, String)>) {
        let track = PublishedTrack {
            mid: "1".into(),
            kind: MediaKind::Video,
            codec: CodecSpec {
                codec: Codec::Vp8,
                name: "VP8".into(),
                payload_type: 96,
                clock_rate: 90_000,
                channels: None,
                fmtp: None,
                rtcp_fb: vec![
                    "nack".into(),
                    "nack pli".into(),
                    "ccm fir".into(),
                    "goog-remb".into(),
                    "transport-cc".into(),
                ],
            },
            rtx_payload_type: Some(97),
            layers: ["q", "h", "f"]
                .iter()
                .map(|r| LayerConfig {
                    ssrc: None,
                    rtx_ssrc: None,
                    rid: Some(r.as_bytes().to_vec()),
                })
                .collect(),
            simulcast: true,
        };
        let ext = [
            URI_MID,
            URI_RID,
            URI_REPAIRED_RID,
            URI_ABS_SEND_TIME,
            URI_TRANSPORT_CC,
            crate::sdp::URI_AUDIO_LEVEL,
        ]
        .iter()
        .enumerate()
        .map(|(i, u)| (i as u8 + 1, (*u).to_owned()))
        .collect();
        (track, ext)
    }

    #[test]
    fn round_trips_and_fits_a_room_document_value() {
        let (track, ext) = chromium_video();
        let id = global_track_id(7, 42);
        let d = TrackDescriptor::from_published(id, "5f3c9a1b2d4e6f70", &track, &ext);
        let json = d.to_json();
        // sluice-state refuses metadata values over 1 KiB.
        assert!(
            json.len() <= sluice_state::room::MAX_VALUE_LEN,
            "{}",
            json.len()
        );
        let back = TrackDescriptor::from_json(&json).unwrap();
        assert_eq!(back, d);
        let cfg = back.track_config();
        assert_eq!(cfg.layers.len(), 3);
        assert_eq!(cfg.layers[1].rid.as_deref(), Some(&b"h"[..]));
        assert_eq!(
            (cfg.codec, cfg.payload_type, cfg.rtx_payload_type),
            (Codec::Vp8, 96, Some(97))
        );
        let src = back.source().unwrap();
        assert_eq!(src.codec, track.codec);
        assert_eq!(src.ext_uris, ext);
        assert_eq!(src.stream_id, "5f3c9a1b2d4e6f70");
    }

    #[test]
    fn ids_carry_their_node() {
        let id = global_track_id(0xAB_CDEF, 5);
        assert_eq!(track_home(id), 0xAB_CDEF);
        assert_ne!(global_track_id(1, 5), global_track_id(2, 5));
        // Exact as a JavaScript number.
        assert!(global_track_id(0xFF_FFFF, u64::MAX) < 1 << 53);
    }

    #[test]
    fn stream_ids_print_fixed_width_hex() {
        let id = global_track_id(0xAB_CDEF, 5);
        assert_eq!(StreamId(id).to_string(), format!("{id:016x}"));
        assert_eq!(StreamId(1).to_string(), "0000000000000001");
        assert_eq!(
            StreamIds(&[1, 0x2a]).to_string(),
            "0000000000000001,000000000000002a"
        );
        assert_eq!(StreamIds(&[]).to_string(), "");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(TrackDescriptor::from_json("{").is_err());
        let (track, ext) = chromium_video();
        let mut d = TrackDescriptor::from_published(1, "p", &track, &ext);
        d.kind = "smell".into();
        assert!(TrackDescriptor::from_json(&d.to_json()).is_err());
    }
}
