//! Our SDP answer to a server's offer (Janus offers to its subscribers): receive-only,
//! the offer's m-sections in order, each either accepted with the codecs and header
//! extensions we understand (at the offer's payload types and ids) or rejected with port
//! 0; BUNDLE over the accepted ones; `a=setup:active`, so we are the DTLS client.

use super::ClientError;
use super::answer::{Answer, AnswerMedia};
use super::offer::{
    URI_AUDIO_LEVEL, URI_MID, URI_REPAIRED_RID, URI_RID, URI_TRANSPORT_CC, host_candidate, line,
    transport_lines,
};
use std::net::SocketAddr;

/// Extensions we accept from an offer; the subscriber reads mid and rid, the rest are
/// what a browser would accept (so the server writes what it writes for browsers).
const ACCEPTED_EXTENSIONS: [&str; 6] = [
    URI_AUDIO_LEVEL,
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    URI_TRANSPORT_CC,
    URI_MID,
    URI_RID,
    URI_REPAIRED_RID,
];

/// What the answer says about us.
#[derive(Debug, Clone)]
pub struct AnswerSpec {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// SHA-256 of our certificate, "AB:CD:..." uppercase.
    pub fingerprint_sha256: String,
    /// Our host candidate.
    pub candidate: SocketAddr,
    pub audio: bool,
    pub video: bool,
}

impl AnswerSpec {
    /// The answer to `offer`; an error when it leaves nothing we can receive.
    pub fn to_sdp(&self, offer: &Answer) -> Result<String, ClientError> {
        let sections: Vec<(&AnswerMedia, Option<Vec<u8>>)> = offer
            .media
            .iter()
            .map(|m| (m, self.accepted_formats(m)))
            .collect();
        let bundle: Vec<&str> = sections
            .iter()
            .filter(|(_, f)| f.is_some())
            .filter_map(|(m, _)| m.mid.as_deref())
            .collect();
        if bundle.is_empty() {
            return Err(ClientError::Answer(
                "the offer has no audio (Opus) or video (VP8) we can receive".into(),
            ));
        }
        let mut s = String::with_capacity(2048);
        line(&mut s, "v=0");
        line(&mut s, "o=- 1 1 IN IP4 127.0.0.1");
        line(&mut s, "s=-");
        line(&mut s, "t=0 0");
        line(&mut s, &format!("a=group:BUNDLE {}", bundle.join(" ")));
        line(&mut s, "a=msid-semantic: WMS");
        for (m, formats) in sections {
            match formats {
                Some(pts) => self.accepted(&mut s, m, &pts),
                None => rejected(&mut s, m),
            }
        }
        Ok(s)
    }

    /// The payload types we take from `m`, or `None` to reject it: Opus for audio, VP8
    /// and its RTX for video, in sections the server sends on.
    fn accepted_formats(&self, m: &AnswerMedia) -> Option<Vec<u8>> {
        let wanted = match m.kind.as_str() {
            "audio" if self.audio => "opus",
            "video" if self.video => "VP8",
            _ => return None,
        };
        if m.is_rejected()
            || m.mid.is_none()
            || !matches!(m.direction.as_str(), "sendonly" | "sendrecv")
        {
            return None;
        }
        let pt = m.payload_type(wanted)?;
        let mut pts = vec![pt];
        pts.extend(
            m.rtx
                .iter()
                .filter(|(_, apt)| *apt == pt)
                .map(|(rtx, _)| *rtx),
        );
        Some(pts)
    }

    fn accepted(&self, s: &mut String, m: &AnswerMedia, pts: &[u8]) {
        let formats: Vec<String> = pts.iter().map(u8::to_string).collect();
        line(
            s,
            &format!("m={} 9 UDP/TLS/RTP/SAVPF {}", m.kind, formats.join(" ")),
        );
        transport_lines(
            s,
            &self.ice_ufrag,
            &self.ice_pwd,
            &self.fingerprint_sha256,
            "active",
        );
        if let Some(mid) = &m.mid {
            line(s, &format!("a=mid:{mid}"));
        }
        for (id, uri) in &m.extmaps {
            if ACCEPTED_EXTENSIONS.contains(&uri.as_str()) {
                line(s, &format!("a=extmap:{id} {uri}"));
            }
        }
        line(s, "a=recvonly");
        line(s, "a=rtcp-mux");
        let media_pt = pts.first().copied();
        for &pt in pts {
            let Some((_, name, rate)) = m.codecs.iter().find(|(p, _, _)| *p == pt) else {
                continue;
            };
            if name.eq_ignore_ascii_case("opus") {
                line(s, &format!("a=rtpmap:{pt} {name}/{rate}/2"));
                line(s, &format!("a=fmtp:{pt} minptime=10;useinbandfec=1"));
            } else if Some(pt) == media_pt {
                line(s, &format!("a=rtpmap:{pt} {name}/{rate}"));
                for fb in ["goog-remb", "ccm fir", "nack", "nack pli"] {
                    line(s, &format!("a=rtcp-fb:{pt} {fb}"));
                }
            } else if let Some(apt) = media_pt {
                line(s, &format!("a=rtpmap:{pt} {name}/{rate}"));
                line(s, &format!("a=fmtp:{pt} apt={apt}"));
            }
        }
        host_candidate(s, self.candidate);
    }
}

/// RFC 8829 5.3.1: a rejected section keeps its kind, protocol and formats, with port 0.
fn rejected(s: &mut String, m: &AnswerMedia) {
    let formats = if m.formats.is_empty() {
        "0".to_owned()
    } else {
        m.formats.join(" ")
    };
    let protocol = if m.protocol.is_empty() {
        "UDP/TLS/RTP/SAVPF"
    } else {
        &m.protocol
    };
    line(s, &format!("m={} 0 {protocol} {formats}", m.kind));
    line(s, "c=IN IP4 0.0.0.0");
    if let Some(mid) = &m.mid {
        line(s, &format!("a=mid:{mid}"));
    }
    line(s, "a=inactive");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber offer as Janus 1.1.2 writes one (docs/janus.md), plus a data channel.
    pub(crate) const JANUS_OFFER: &str = "v=0\r\n\
o=- 1732470000000000 1 IN IP4 10.77.0.2\r\n\
s=VideoRoom 1234\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:CD\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS *\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 10.77.0.2\r\n\
a=sendonly\r\n\
a=mid:0\r\n\
a=rtcp-mux\r\n\
a=ice-ufrag:jAnU\r\n\
a=ice-pwd:janus-password-0123456789\r\n\
a=ice-options:trickle\r\n\
a=setup:actpass\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=msid:janus janusa0\r\n\
a=ssrc:11111 cname:janus\r\n\
a=candidate:1 1 udp 2015363327 10.77.0.2 23456 typ host\r\n\
a=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 10.77.0.2\r\n\
a=sendonly\r\n\
a=mid:1\r\n\
a=rtcp-mux\r\n\
a=ice-ufrag:jAnU\r\n\
a=ice-pwd:janus-password-0123456789\r\n\
a=setup:actpass\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 ccm fir\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 transport-cc\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:13 urn:3gpp:video-orientation\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 22222 33333\r\n\
a=msid:janus janusv1\r\n\
a=ssrc:22222 cname:janus\r\n\
a=ssrc:33333 cname:janus\r\n\
a=candidate:1 1 udp 2015363327 10.77.0.2 23456 typ host\r\n\
a=end-of-candidates\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 10.77.0.2\r\n\
a=sendrecv\r\n\
a=mid:2\r\n\
a=sctp-port:5000\r\n";

    fn spec() -> AnswerSpec {
        AnswerSpec {
            ice_ufrag: "ours".into(),
            ice_pwd: "our-password-0123456789".into(),
            fingerprint_sha256: "12:".repeat(31) + "34",
            candidate: "10.77.0.1:40000".parse().unwrap(),
            audio: true,
            video: true,
        }
    }

    #[test]
    fn answers_janus_offer_receive_only_with_its_ids() {
        let offer = Answer::parse(JANUS_OFFER).unwrap();
        assert!(!offer.ice_lite);
        assert_eq!(offer.setup, "actpass");
        let text = spec().to_sdp(&offer).unwrap();
        // Our own reader (and so the sdp crate) reads it back.
        let a = Answer::parse(&text).unwrap();
        assert_eq!(a.setup, "active");
        assert_eq!(a.ice_ufrag, "ours");
        assert_eq!(
            a.candidates,
            vec!["10.77.0.1:40000".parse::<SocketAddr>().unwrap()]
        );
        assert!(text.contains("a=group:BUNDLE 0 1\r\n"), "{text}");
        let audio = a.section("0").unwrap();
        assert_eq!(audio.direction, "recvonly");
        assert_eq!(audio.payload_type("opus"), Some(111));
        assert_eq!(audio.extmap_id(URI_AUDIO_LEVEL), Some(1));
        assert_eq!(audio.extmap_id(URI_MID), Some(4));
        let video = a.section("1").unwrap();
        assert_eq!(video.formats, vec!["96", "97"]);
        assert_eq!(video.rtx, vec![(97, 96)]);
        assert_eq!(video.extmap_id(URI_TRANSPORT_CC), Some(3));
        assert_eq!(video.extmap_id(URI_MID), Some(4));
        assert_eq!(video.extmap_id("urn:3gpp:video-orientation"), None);
        assert!(video.ssrcs.is_empty());
        let data = a.section("2").unwrap();
        assert!(data.is_rejected());
        assert_eq!(data.protocol, "UDP/DTLS/SCTP");
        assert!(text.ends_with("\r\n") && !text.contains("\n\n"));
    }

    #[test]
    fn unwanted_or_unknown_media_is_rejected() {
        let offer = Answer::parse(JANUS_OFFER).unwrap();
        let mut audio_only = spec();
        audio_only.video = false;
        let a = Answer::parse(&audio_only.to_sdp(&offer).unwrap()).unwrap();
        assert!(a.section("1").unwrap().is_rejected());
        assert!(!a.section("0").unwrap().is_rejected());

        let h264 = JANUS_OFFER
            .replace("opus/48000/2", "PCMU/8000")
            .replace("VP8/90000", "H264/90000");
        let offer = Answer::parse(&h264).unwrap();
        let err = spec().to_sdp(&offer).unwrap_err();
        assert!(err.to_string().contains("Opus"), "{err}");
    }
}
