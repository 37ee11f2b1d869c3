//! SDP offers: arbitrary text through `parse_offer`, then both answers against a fixed
//! room. Every step returns an answer or an error; answers keep their invariants.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_control::sdp::{
    CodecSpec, LocalDescription, MediaKind, SourceTrack, URI_ABS_SEND_TIME, URI_AUDIO_LEVEL,
    URI_MID, URI_REPAIRED_RID, URI_RID, URI_TRANSPORT_CC, answer_publish, answer_subscribe,
    parse_offer,
};
use sluice_dataplane::router::Codec;

fn local() -> &'static LocalDescription {
    static LOCAL: OnceLock<LocalDescription> = OnceLock::new();
    LOCAL.get_or_init(|| LocalDescription {
        ice_ufrag: "sLu1".into(),
        ice_pwd: "sluicePwd0123456789abcdef".into(),
        fingerprint_sha256: ["AB"; 32].join(":"),
        candidates: vec![
            "192.0.2.10:3478".parse().unwrap(),
            "[2001:db8::10]:3478".parse().unwrap(),
        ],
    })
}

fn codec(
    codec: Codec,
    name: &str,
    pt: u8,
    clock: u32,
    channels: Option<u16>,
    fmtp: Option<&str>,
) -> CodecSpec {
    CodecSpec {
        codec,
        name: name.into(),
        payload_type: pt,
        clock_rate: clock,
        channels,
        fmtp: fmtp.map(str::to_owned),
        rtcp_fb: vec!["nack".into(), "nack pli".into(), "transport-cc".into()],
    }
}

/// A room with an Opus track, a VP8 track with RTX and an H.264 track.
fn sources() -> &'static [SourceTrack] {
    static SOURCES: OnceLock<Vec<SourceTrack>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let ext_uris: Vec<(u8, String)> = [
            (1, URI_AUDIO_LEVEL),
            (2, URI_ABS_SEND_TIME),
            (3, URI_TRANSPORT_CC),
            (4, URI_MID),
            (10, URI_RID),
            (11, URI_REPAIRED_RID),
        ]
        .into_iter()
        .map(|(id, uri)| (id, uri.to_owned()))
        .collect();
        let track = |track_id, kind, codec, rtx| SourceTrack {
            track_id,
            stream_id: "alice".into(),
            kind,
            codec,
            rtx_payload_type: rtx,
            ext_uris: ext_uris.clone(),
        };
        vec![
            track(
                1,
                MediaKind::Audio,
                codec(
                    Codec::Opus,
                    "opus",
                    111,
                    48_000,
                    Some(2),
                    Some("minptime=10;useinbandfec=1"),
                ),
                None,
            ),
            track(
                2,
                MediaKind::Video,
                codec(Codec::Vp8, "VP8", 96, 90_000, None, None),
                Some(97),
            ),
            track(
                3,
                MediaKind::Video,
                codec(
                    Codec::H264,
                    "H264",
                    106,
                    90_000,
                    None,
                    Some("packetization-mode=1;profile-level-id=42e01f"),
                ),
                Some(107),
            ),
        ]
    })
}

/// Lines end in CRLF, carry no other control character and start with a type letter.
fn check_text(sdp: &str, sections: usize) {
    assert!(sdp.ends_with("\r\n"));
    let mut m_lines = 0;
    for line in sdp.split_terminator("\r\n") {
        assert!(!line.bytes().any(|b| b < 0x20 || b == 0x7f), "{line:?}");
        let bytes = line.as_bytes();
        assert!(
            bytes.len() > 2 && bytes[0].is_ascii_lowercase() && bytes[1] == b'=',
            "{line:?}"
        );
        m_lines += usize::from(line.starts_with("m="));
    }
    assert_eq!(m_lines, sections, "one m-section per offered one");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = parse_offer(text) else { return };
    if let Ok(answer) = answer_publish(&offer, local()) {
        check_text(&answer.sdp, offer.media.len());
        assert!(!answer.tracks.is_empty());
        for t in &answer.tracks {
            assert!(!t.layers.is_empty());
            assert_eq!(t.simulcast, t.layers.len() > 1 || t.layers[0].rid.is_some());
        }
        for (id, _) in &answer.ext_uris {
            assert!((1..=14).contains(id));
        }
    }
    if let Ok(answer) = answer_subscribe(&offer, local(), sources()) {
        check_text(&answer.sdp, offer.media.len());
        assert!(!answer.subscriptions.is_empty());
        assert_eq!((answer.extensions.mid, answer.extensions.rid), (0, 0));
        let mut ssrcs = Vec::new();
        for s in &answer.subscriptions {
            ssrcs.push(s.ssrc);
            ssrcs.extend(s.rtx.map(|(ssrc, _)| ssrc));
            for (id, _) in &sources()[0].ext_uris {
                let to = s.ext_remap[usize::from(*id)];
                assert!((1..=14).contains(&to), "publisher id {id} mapped to {to}");
            }
        }
        let n = ssrcs.len();
        ssrcs.sort_unstable();
        ssrcs.dedup();
        assert!(ssrcs.len() == n && !ssrcs.contains(&0));
    }
});
