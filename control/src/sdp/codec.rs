//! Which payload formats we forward, and when two formats are the same codec. An SFU
//! never decodes, so "supported" means: the media plane knows the payload well enough
//! to find keyframes and layers, and a subscriber can decode what the publisher sent.

use sluice_dataplane::router::Codec;

use super::{CodecSpec, MediaKind};

/// Feedback we answer for video: loss repair, keyframe requests and both estimators.
const VIDEO_FEEDBACK: &[&str] = &["nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"];
/// Audio gets congestion feedback only: no NACK for Opus (FEC covers loss).
const AUDIO_FEEDBACK: &[&str] = &["transport-cc"];

pub(crate) fn classify(name: &str) -> Codec {
    if name.eq_ignore_ascii_case("opus") {
        Codec::Opus
    } else if name.eq_ignore_ascii_case("VP8") {
        Codec::Vp8
    } else if name.eq_ignore_ascii_case("VP9") {
        Codec::Vp9
    } else if name.eq_ignore_ascii_case("H264") {
        Codec::H264
    } else if name.eq_ignore_ascii_case("AV1") {
        Codec::Av1
    } else {
        Codec::Other
    }
}

fn canonical_name(codec: Codec) -> Option<&'static str> {
    match codec {
        Codec::Opus => Some("opus"),
        Codec::Vp8 => Some("VP8"),
        Codec::Vp9 => Some("VP9"),
        Codec::H264 => Some("H264"),
        Codec::Av1 => Some("AV1"),
        Codec::Other => None,
    }
}

/// A `key=value` parameter of an fmtp line (keys compared without case).
pub(super) fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp?.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// H.264 profiles as libwebrtc tells them apart (profile_idc plus the constraint flags
/// of profile-iop); the level is deliberately ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    PredictiveHigh444,
}

/// (profile_idc, mask of profile-iop bits that matter, their value, profile).
const H264_PATTERNS: &[(u8, u8, u8, H264Profile)] = &[
    (0x42, 0x4f, 0x40, H264Profile::ConstrainedBaseline), // x1xx0000
    (0x4d, 0x8f, 0x80, H264Profile::ConstrainedBaseline), // 1xxx0000
    (0x58, 0xcf, 0xc0, H264Profile::ConstrainedBaseline), // 11xx0000
    (0x42, 0x4f, 0x00, H264Profile::Baseline),            // x0xx0000
    (0x58, 0xcf, 0x80, H264Profile::Baseline),            // 10xx0000
    (0x4d, 0xaf, 0x00, H264Profile::Main),                // 0x0x0000
    (0x64, 0xff, 0x00, H264Profile::High),                // 00000000
    (0x64, 0xff, 0x0c, H264Profile::ConstrainedHigh),     // 00001100
    (0xf4, 0xff, 0x00, H264Profile::PredictiveHigh444),   // 00000000
];

/// The profile of an H.264 format. A missing profile-level-id means constrained
/// baseline, as in libwebrtc and aiortc (older WebRTC stacks omitted it).
pub(super) fn h264_profile(fmtp: Option<&str>) -> Option<H264Profile> {
    let plid = fmtp_param(fmtp, "profile-level-id").unwrap_or("42e01f");
    if plid.len() != 6 {
        return None;
    }
    let idc = u8::from_str_radix(plid.get(0..2)?, 16).ok()?;
    let iop = u8::from_str_radix(plid.get(2..4)?, 16).ok()?;
    u8::from_str_radix(plid.get(4..6)?, 16).ok()?;
    H264_PATTERNS
        .iter()
        .find(|(p_idc, mask, value, _)| *p_idc == idc && iop & mask == *value)
        .map(|(_, _, _, profile)| *profile)
}

fn h264_packetization_mode(fmtp: Option<&str>) -> &str {
    fmtp_param(fmtp, "packetization-mode").unwrap_or("0")
}

/// Whether we take this offered format as the primary codec of a `kind` m-section.
pub(super) fn is_supported(kind: MediaKind, c: &CodecSpec) -> bool {
    match (kind, c.codec) {
        (MediaKind::Audio, Codec::Opus) => c.clock_rate == 48_000 && c.channels == Some(2),
        (MediaKind::Video, Codec::Vp8 | Codec::Vp9 | Codec::Av1) => c.clock_rate == 90_000,
        (MediaKind::Video, Codec::H264) => {
            let fmtp = c.fmtp.as_deref();
            // Mode 0 (one NAL unit per packet) cannot carry what browsers send.
            c.clock_rate == 90_000
                && h264_packetization_mode(fmtp) == "1"
                && matches!(
                    h264_profile(fmtp),
                    Some(
                        H264Profile::ConstrainedBaseline
                            | H264Profile::Baseline
                            | H264Profile::Main
                            | H264Profile::High
                    )
                )
        }
        _ => false,
    }
}

/// Whether a subscriber's offered format decodes a source's stream as forwarded.
pub(super) fn same_codec(source: &CodecSpec, offered: &CodecSpec) -> bool {
    if source.codec != offered.codec
        || source.codec == Codec::Other
        || source.clock_rate != offered.clock_rate
    {
        return false;
    }
    let (s, o) = (source.fmtp.as_deref(), offered.fmtp.as_deref());
    match source.codec {
        Codec::Opus => source.channels == offered.channels,
        Codec::H264 => {
            h264_packetization_mode(s) == h264_packetization_mode(o)
                && h264_profile(s).is_some()
                && h264_profile(s) == h264_profile(o)
        }
        // VP9 profiles 1-3 and AV1 profiles 1-2 need decoders a profile-0 peer may lack.
        Codec::Vp9 => {
            fmtp_param(s, "profile-id").unwrap_or("0") == fmtp_param(o, "profile-id").unwrap_or("0")
        }
        Codec::Av1 => {
            fmtp_param(s, "profile").unwrap_or("0") == fmtp_param(o, "profile").unwrap_or("0")
        }
        Codec::Vp8 | Codec::Other => true,
    }
}

/// The offered feedback we answer, in the offer's order, each once.
fn answer_feedback(kind: MediaKind, offered: &[String]) -> Vec<String> {
    let allowed = match kind {
        MediaKind::Audio => AUDIO_FEEDBACK,
        MediaKind::Video => VIDEO_FEEDBACK,
    };
    let mut out: Vec<String> = Vec::new();
    for fb in offered {
        if allowed.contains(&fb.as_str()) && !out.contains(fb) {
            out.push(fb.clone());
        }
    }
    out
}

/// The answered form of an offered format: canonical name, our feedback subset, the
/// offer's fmtp (the parameters describe what the offerer sends or can decode).
pub(super) fn negotiated(kind: MediaKind, offered: &CodecSpec) -> CodecSpec {
    CodecSpec {
        codec: offered.codec,
        name: canonical_name(offered.codec).map_or_else(|| offered.name.clone(), str::to_owned),
        payload_type: offered.payload_type,
        clock_rate: offered.clock_rate,
        channels: offered.channels,
        fmtp: offered.fmtp.clone(),
        rtcp_fb: answer_feedback(kind, &offered.rtcp_fb),
    }
}
