//! The client's SDP offer, written as text the way Chromium writes one (BUNDLE, rtcp-mux,
//! one transport for all m-sections), so the node sees what a browser would send.

use std::fmt::Write;
use std::net::SocketAddr;

pub const URI_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const URI_TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
pub const URI_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const URI_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub const URI_REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// Extension ids we offer (Chromium's numbering). An answer may only accept or drop them.
pub const EXT_AUDIO_LEVEL: u8 = 1;
pub const EXT_TRANSPORT_CC: u8 = 3;
pub const EXT_MID: u8 = 4;
pub const EXT_RID: u8 = 10;
pub const EXT_REPAIRED_RID: u8 = 11;

pub const PT_OPUS: u8 = 111;
pub const PT_VP8: u8 = 96;
pub const PT_VP8_RTX: u8 = 97;

/// Simulcast stream ids, lowest layer first (what `send_video`'s `layer` indexes).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

pub const MID_AUDIO: &str = "0";
pub const MID_VIDEO: &str = "1";

/// Whether our m-sections send (WHIP) or receive (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferDirection {
    SendOnly,
    RecvOnly,
}

impl OfferDirection {
    fn as_str(self) -> &'static str {
        match self {
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
        }
    }
}

/// Everything the offer says.
#[derive(Debug, Clone)]
pub struct OfferSpec {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// SHA-256 of our certificate, "AB:CD:..." uppercase.
    pub fingerprint_sha256: String,
    pub direction: OfferDirection,
    /// Our host candidate.
    pub candidate: SocketAddr,
    pub cname: String,
    /// Audio m-section with this SSRC when sending (`Some(0)`-like values are fine for
    /// receiving: the SSRC is only written for `SendOnly`).
    pub audio: Option<u32>,
    /// Video m-section: one SSRC, or (with `simulcast`) none, and three rids instead.
    pub video: Option<u32>,
    pub simulcast: bool,
}

impl OfferSpec {
    pub fn to_sdp(&self) -> String {
        let mut s = String::with_capacity(2048);
        let mids: Vec<&str> = [self.audio.map(|_| MID_AUDIO), self.video.map(|_| MID_VIDEO)]
            .into_iter()
            .flatten()
            .collect();
        line(&mut s, "v=0");
        line(
            &mut s,
            &format!("o=- {} 2 IN IP4 127.0.0.1", session_id(&self.ice_ufrag)),
        );
        line(&mut s, "s=-");
        line(&mut s, "t=0 0");
        line(&mut s, &format!("a=group:BUNDLE {}", mids.join(" ")));
        line(&mut s, "a=extmap-allow-mixed");
        line(&mut s, "a=msid-semantic: WMS sluice");
        if let Some(ssrc) = self.audio {
            self.audio_section(&mut s, ssrc);
        }
        if let Some(ssrc) = self.video {
            self.video_section(&mut s, ssrc);
        }
        s
    }

    fn transport(&self, s: &mut String, mid: &str) {
        transport_lines(
            s,
            &self.ice_ufrag,
            &self.ice_pwd,
            &self.fingerprint_sha256,
            "actpass",
        );
        line(s, &format!("a=mid:{mid}"));
    }

    fn candidates(&self, s: &mut String) {
        host_candidate(s, self.candidate);
    }

    fn ssrc_lines(&self, s: &mut String, ssrc: u32, track: &str) {
        line(s, &format!("a=ssrc:{ssrc} cname:{}", self.cname));
        line(s, &format!("a=ssrc:{ssrc} msid:sluice {track}"));
    }

    fn audio_section(&self, s: &mut String, ssrc: u32) {
        line(s, &format!("m=audio 9 UDP/TLS/RTP/SAVPF {PT_OPUS}"));
        self.transport(s, MID_AUDIO);
        line(s, &format!("a=extmap:{EXT_AUDIO_LEVEL} {URI_AUDIO_LEVEL}"));
        line(
            s,
            &format!("a=extmap:{EXT_TRANSPORT_CC} {URI_TRANSPORT_CC}"),
        );
        line(s, &format!("a=extmap:{EXT_MID} {URI_MID}"));
        line(s, &format!("a={}", self.direction.as_str()));
        if self.direction == OfferDirection::SendOnly {
            line(s, "a=msid:sluice audio0");
        }
        line(s, "a=rtcp-mux");
        line(s, &format!("a=rtpmap:{PT_OPUS} opus/48000/2"));
        line(s, &format!("a=rtcp-fb:{PT_OPUS} transport-cc"));
        line(s, &format!("a=fmtp:{PT_OPUS} minptime=10;useinbandfec=1"));
        if self.direction == OfferDirection::SendOnly {
            self.ssrc_lines(s, ssrc, "audio0");
        }
        self.candidates(s);
    }

    fn video_section(&self, s: &mut String, ssrc: u32) {
        let sending = self.direction == OfferDirection::SendOnly;
        // A receiver offers RTX so the node can repair losses; our sender answers NACKs
        // by resending in the original stream, so it offers none.
        let formats = if sending {
            format!("{PT_VP8}")
        } else {
            format!("{PT_VP8} {PT_VP8_RTX}")
        };
        line(s, &format!("m=video 9 UDP/TLS/RTP/SAVPF {formats}"));
        self.transport(s, MID_VIDEO);
        line(
            s,
            &format!("a=extmap:{EXT_TRANSPORT_CC} {URI_TRANSPORT_CC}"),
        );
        line(s, &format!("a=extmap:{EXT_MID} {URI_MID}"));
        if sending && self.simulcast {
            line(s, &format!("a=extmap:{EXT_RID} {URI_RID}"));
            line(
                s,
                &format!("a=extmap:{EXT_REPAIRED_RID} {URI_REPAIRED_RID}"),
            );
        }
        line(s, &format!("a={}", self.direction.as_str()));
        if sending {
            line(s, "a=msid:sluice video0");
        }
        line(s, "a=rtcp-mux");
        line(s, "a=rtcp-rsize");
        line(s, &format!("a=rtpmap:{PT_VP8} VP8/90000"));
        for fb in ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"] {
            line(s, &format!("a=rtcp-fb:{PT_VP8} {fb}"));
        }
        if !sending {
            line(s, &format!("a=rtpmap:{PT_VP8_RTX} rtx/90000"));
            line(s, &format!("a=fmtp:{PT_VP8_RTX} apt={PT_VP8}"));
        }
        if sending && self.simulcast {
            for rid in SIMULCAST_RIDS {
                line(s, &format!("a=rid:{rid} send"));
            }
            line(s, &format!("a=simulcast:send {}", SIMULCAST_RIDS.join(";")));
        } else if sending {
            self.ssrc_lines(s, ssrc, "video0");
        }
        self.candidates(s);
    }
}

pub(super) fn line(s: &mut String, l: &str) {
    // Writing to a String cannot fail.
    let _ = write!(s, "{l}\r\n");
}

/// The lines every m-section of ours carries after its `m=` line: the placeholder
/// connection and RTCP addresses (ICE decides), our ICE credentials and certificate, and
/// our DTLS role (`actpass` offering, `active` answering).
pub(super) fn transport_lines(
    s: &mut String,
    ufrag: &str,
    pwd: &str,
    fingerprint: &str,
    setup: &str,
) {
    line(s, "c=IN IP4 0.0.0.0");
    line(s, "a=rtcp:9 IN IP4 0.0.0.0");
    line(s, &format!("a=ice-ufrag:{ufrag}"));
    line(s, &format!("a=ice-pwd:{pwd}"));
    line(s, &format!("a=fingerprint:sha-256 {fingerprint}"));
    line(s, &format!("a=setup:{setup}"));
}

/// RFC 8445 5.1.2.1 with host type preference 126, local preference 65535, component 1.
/// Our one host candidate, and that there will be no other.
pub(super) fn host_candidate(s: &mut String, c: std::net::SocketAddr) {
    line(
        s,
        &format!(
            "a=candidate:1 1 udp {} {} {} typ host",
            host_priority(),
            c.ip(),
            c.port()
        ),
    );
    line(s, "a=end-of-candidates");
}

pub const fn host_priority() -> u32 {
    (126 << 24) | (65535 << 8) | 255
}

/// A stable o= session id derived from the ufrag (any 63-bit number will do).
fn session_id(ufrag: &str) -> u64 {
    ufrag.bytes().fold(0x1234_5678_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    }) & 0x7fff_ffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn spec(direction: OfferDirection, simulcast: bool) -> OfferSpec {
        OfferSpec {
            ice_ufrag: "ufrag1".into(),
            ice_pwd: "a-password-of-22-chars!".into(),
            fingerprint_sha256: "AB:".repeat(31) + "CD",
            direction,
            candidate: "127.0.0.1:40000".parse().unwrap(),
            cname: "cname1".into(),
            audio: Some(1111),
            video: Some(2222),
            simulcast,
        }
    }

    fn parse(text: &str) -> sdp::SessionDescription {
        sdp::SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes())).expect("parses")
    }

    fn attrs<'a>(m: &'a sdp::description::media::MediaDescription, key: &str) -> Vec<&'a str> {
        m.attributes
            .iter()
            .filter(|a| a.key == key)
            .filter_map(|a| a.value.as_deref())
            .collect()
    }

    #[test]
    fn publish_offer_parses_with_the_sdp_crate() {
        let text = spec(OfferDirection::SendOnly, false).to_sdp();
        let sd = parse(&text);
        assert_eq!(
            sd.attribute("group").map(String::as_str),
            Some("BUNDLE 0 1")
        );
        assert_eq!(sd.media_descriptions.len(), 2);
        let (audio, video) = (&sd.media_descriptions[0], &sd.media_descriptions[1]);
        assert_eq!(audio.media_name.media, "audio");
        assert_eq!(audio.media_name.formats, vec!["111"]);
        assert_eq!(audio.attribute("mid"), Some(Some("0")));
        assert!(audio.attribute("sendonly").is_some());
        assert!(audio.attribute("rtcp-mux").is_some());
        assert_eq!(audio.attribute("ice-ufrag"), Some(Some("ufrag1")));
        assert_eq!(audio.attribute("setup"), Some(Some("actpass")));
        assert_eq!(attrs(audio, "ssrc")[0], "1111 cname:cname1");
        assert_eq!(video.media_name.formats, vec!["96"]);
        assert_eq!(attrs(video, "rtpmap"), vec!["96 VP8/90000"]);
        assert!(attrs(video, "rtcp-fb").contains(&"96 nack pli"));
        assert!(attrs(video, "ssrc").iter().any(|s| s.starts_with("2222 ")));
        assert!(attrs(video, "rid").is_empty());
        let candidate = attrs(video, "candidate")[0];
        assert_eq!(candidate, "1 1 udp 2130706431 127.0.0.1 40000 typ host");
        assert!(text.ends_with("\r\n") && !text.contains("\n\n"));
    }

    #[test]
    fn simulcast_offer_has_rids_and_no_video_ssrc() {
        let sd = parse(&spec(OfferDirection::SendOnly, true).to_sdp());
        let video = &sd.media_descriptions[1];
        assert_eq!(attrs(video, "rid"), vec!["q send", "h send", "f send"]);
        assert_eq!(attrs(video, "simulcast"), vec!["send q;h;f"]);
        assert!(attrs(video, "ssrc").is_empty());
        let extmaps = attrs(video, "extmap");
        assert!(extmaps.contains(&"10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"));
        assert!(extmaps.contains(&"4 urn:ietf:params:rtp-hdrext:sdes:mid"));
    }

    #[test]
    fn subscribe_offer_is_recvonly_with_rtx_and_no_ssrcs() {
        let sd = parse(&spec(OfferDirection::RecvOnly, false).to_sdp());
        for m in &sd.media_descriptions {
            assert!(m.attribute("recvonly").is_some());
            assert!(attrs(m, "ssrc").is_empty());
        }
        let video = &sd.media_descriptions[1];
        assert_eq!(video.media_name.formats, vec!["96", "97"]);
        assert_eq!(attrs(video, "fmtp"), vec!["97 apt=96"]);
    }

    #[test]
    fn audio_only_bundles_one_section() {
        let mut s = spec(OfferDirection::SendOnly, false);
        s.video = None;
        let sd = parse(&s.to_sdp());
        assert_eq!(sd.media_descriptions.len(), 1);
        assert_eq!(sd.attribute("group").map(String::as_str), Some("BUNDLE 0"));
    }
}
