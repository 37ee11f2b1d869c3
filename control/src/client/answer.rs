//! Reading the node's answer with the `sdp` crate: the transport (ICE credentials,
//! fingerprint, candidates, DTLS role) and, per m-section, what media flows.

use super::ClientError;
use crate::dtls::ExpectedFingerprint;
use sdp::SessionDescription;
use sdp::description::media::MediaDescription;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// What the answer says about the transport and its media.
#[derive(Debug, Clone)]
pub struct Answer {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub ice_lite: bool,
    pub fingerprint: ExpectedFingerprint,
    /// `a=setup` of the answerer: "passive" (we are the DTLS client) or "active".
    pub setup: String,
    /// UDP candidates, in the answer's order.
    pub candidates: Vec<SocketAddr>,
    pub media: Vec<AnswerMedia>,
}

/// One answered m-section.
#[derive(Debug, Clone, Default)]
pub struct AnswerMedia {
    /// "audio", "video", ...
    pub kind: String,
    pub mid: Option<String>,
    /// Zero for a rejected m-section.
    pub port: u16,
    /// The m-line's protocol ("UDP/TLS/RTP/SAVPF") and formats, as written.
    pub protocol: String,
    pub formats: Vec<String>,
    /// "sendonly", "recvonly", "sendrecv", "inactive"; "sendrecv" when absent.
    pub direction: String,
    /// `a=rtpmap` entries: payload type, encoding name, clock rate.
    pub codecs: Vec<(u8, String, u32)>,
    /// RTX payload type -> the payload type it repairs (`a=fmtp:<rtx> apt=<pt>`).
    pub rtx: Vec<(u8, u8)>,
    /// `a=extmap` id and URI.
    pub extmaps: Vec<(u8, String)>,
    /// Distinct SSRCs named by `a=ssrc`, in order.
    pub ssrcs: Vec<u32>,
    /// `a=ssrc-group:FID <media> <rtx>` pairs.
    pub fid_groups: Vec<(u32, u32)>,
    /// `a=simulcast` value, if any (e.g. "recv q;h;f").
    pub simulcast: Option<String>,
}

impl AnswerMedia {
    pub fn extmap_id(&self, uri: &str) -> Option<u8> {
        self.extmaps
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }

    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// The payload type negotiated for `name` (case-insensitive), if any.
    pub fn payload_type(&self, name: &str) -> Option<u8> {
        self.codecs
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
            .map(|(pt, _, _)| *pt)
    }
}

impl Answer {
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let sd = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|e| ClientError::Answer(format!("SDP does not parse: {e}")))?;
        let session = |key: &str| sd.attribute(key).map(String::as_str);
        // Transport attributes sit in the first m-section (BUNDLE) or at session level.
        let first = sd.media_descriptions.first();
        let transport = |key: &str| -> Option<String> {
            first
                .and_then(|m| m.attribute(key).flatten())
                .or_else(|| session(key))
                .map(str::to_owned)
        };
        let missing = |what: &str| ClientError::Answer(format!("answer has no {what}"));
        let ice_ufrag = transport("ice-ufrag").ok_or_else(|| missing("a=ice-ufrag"))?;
        let ice_pwd = transport("ice-pwd").ok_or_else(|| missing("a=ice-pwd"))?;
        let fingerprint = transport("fingerprint").ok_or_else(|| missing("a=fingerprint"))?;
        let fingerprint = ExpectedFingerprint::parse(&fingerprint)
            .map_err(|e| ClientError::Answer(e.to_string()))?;
        let setup = transport("setup").unwrap_or_else(|| "active".to_owned());
        let ice_lite = sd.attributes.iter().any(|a| a.key == "ice-lite");
        let mut candidates = Vec::new();
        for m in &sd.media_descriptions {
            for value in values(m, "candidate") {
                if let Some(addr) = parse_candidate(value)
                    && !candidates.contains(&addr)
                {
                    candidates.push(addr);
                }
            }
        }
        let media = sd.media_descriptions.iter().map(parse_media).collect();
        Ok(Self {
            ice_ufrag,
            ice_pwd,
            ice_lite,
            fingerprint,
            setup,
            candidates,
            media,
        })
    }

    /// The m-section with this mid.
    pub fn section(&self, mid: &str) -> Option<&AnswerMedia> {
        self.media.iter().find(|m| m.mid.as_deref() == Some(mid))
    }

    /// The candidate to check: the first one of our address family.
    pub fn candidate_for(&self, local: IpAddr) -> Option<SocketAddr> {
        self.candidates
            .iter()
            .find(|c| c.is_ipv4() == local.is_ipv4())
            .copied()
    }
}

fn values<'a>(m: &'a MediaDescription, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    m.attributes
        .iter()
        .filter(move |a| a.key == key)
        .filter_map(|a| a.value.as_deref())
}

fn parse_media(m: &MediaDescription) -> AnswerMedia {
    let mut out = AnswerMedia {
        kind: m.media_name.media.clone(),
        mid: m.attribute("mid").flatten().map(str::to_owned),
        port: u16::try_from(m.media_name.port.value).unwrap_or(0),
        protocol: m.media_name.protos.join("/"),
        formats: m.media_name.formats.clone(),
        direction: ["sendonly", "recvonly", "sendrecv", "inactive"]
            .into_iter()
            .find(|d| m.attribute(d).is_some())
            .unwrap_or("sendrecv")
            .to_owned(),
        simulcast: m.attribute("simulcast").flatten().map(str::to_owned),
        ..AnswerMedia::default()
    };
    for v in values(m, "rtpmap") {
        // "96 VP8/90000" or "111 opus/48000/2"
        let Some((pt, rest)) = v.split_once(' ') else {
            continue;
        };
        let mut parts = rest.split('/');
        let (Ok(pt), Some(name), Some(Ok(rate))) = (
            pt.parse::<u8>(),
            parts.next(),
            parts.next().map(str::parse::<u32>),
        ) else {
            continue;
        };
        out.codecs.push((pt, name.to_owned(), rate));
    }
    for v in values(m, "fmtp") {
        let Some((pt, params)) = v.split_once(' ') else {
            continue;
        };
        let apt = params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == "apt")
            .and_then(|(_, v)| v.parse::<u8>().ok());
        if let (Ok(pt), Some(apt)) = (pt.parse::<u8>(), apt) {
            out.rtx.push((pt, apt));
        }
    }
    for v in values(m, "extmap") {
        // "3 uri" or "3/sendonly uri"
        let mut parts = v.split_whitespace();
        let (Some(id), Some(uri)) = (parts.next(), parts.next()) else {
            continue;
        };
        let id = id.split('/').next().and_then(|i| i.parse::<u8>().ok());
        if let Some(id) = id {
            out.extmaps.push((id, uri.to_owned()));
        }
    }
    for v in values(m, "ssrc") {
        if let Some(Ok(ssrc)) = v.split_whitespace().next().map(str::parse::<u32>)
            && !out.ssrcs.contains(&ssrc)
        {
            out.ssrcs.push(ssrc);
        }
    }
    for v in values(m, "ssrc-group") {
        let mut parts = v.split_whitespace();
        if parts.next() != Some("FID") {
            continue;
        }
        if let (Some(Ok(media)), Some(Ok(rtx))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u32>),
        ) {
            out.fid_groups.push((media, rtx));
        }
    }
    out
}

/// `foundation component transport priority address port typ type ...`: the address of
/// a UDP candidate.
fn parse_candidate(value: &str) -> Option<SocketAddr> {
    let v = value.strip_prefix("candidate:").unwrap_or(value);
    let parts: Vec<&str> = v.split_whitespace().collect();
    let transport = parts.get(2)?;
    if !transport.eq_ignore_ascii_case("udp") {
        return None;
    }
    let ip: IpAddr = parts.get(4)?.parse().ok()?;
    let port: u16 = parts.get(5)?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ANSWER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=ice-lite\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:srvu\r\n\
a=ice-pwd:server-password-0123456\r\n\
a=fingerprint:sha-256 AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:CD\r\n\
a=setup:passive\r\n\
a=mid:0\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=ssrc:5001 cname:sluice\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
a=candidate:2 1 udp 2130706431 ::1 50000 typ host\r\n\
a=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 6001 6002\r\n\
a=ssrc:6001 cname:sluice\r\n\
a=ssrc:6001 msid:s v\r\n\
a=ssrc:6002 cname:sluice\r\n\
m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n\
a=mid:2\r\n";

    #[test]
    fn reads_transport_and_media() {
        let a = Answer::parse(ANSWER).unwrap();
        assert_eq!(a.ice_ufrag, "srvu");
        assert_eq!(a.ice_pwd, "server-password-0123456");
        assert!(a.ice_lite);
        assert_eq!(a.setup, "passive");
        assert_eq!(a.fingerprint.algorithm, "sha-256");
        assert_eq!(a.fingerprint.value[31], 0xcd);
        assert_eq!(a.candidates.len(), 2);
        assert_eq!(
            a.candidate_for("127.0.0.1".parse().unwrap()),
            Some("127.0.0.1:50000".parse().unwrap())
        );
        assert_eq!(
            a.candidate_for("::1".parse().unwrap()),
            Some("[::1]:50000".parse().unwrap())
        );
        let audio = a.section("0").unwrap();
        assert_eq!(audio.direction, "sendonly");
        assert_eq!(audio.payload_type("OPUS"), Some(111));
        assert_eq!(audio.extmap_id(super::super::offer::URI_MID), Some(4));
        assert_eq!(audio.ssrcs, vec![5001]);
        let video = a.section("1").unwrap();
        assert_eq!(video.ssrcs, vec![6001, 6002]);
        assert_eq!(video.fid_groups, vec![(6001, 6002)]);
        assert_eq!(video.rtx, vec![(97, 96)]);
        assert_eq!(video.protocol, "UDP/TLS/RTP/SAVPF");
        assert_eq!(video.formats, vec!["96", "97"]);
        assert!(a.section("2").unwrap().is_rejected());
    }

    #[test]
    fn missing_credentials_are_an_error() {
        let text = ANSWER.replace("a=ice-pwd:server-password-0123456\r\n", "");
        let err = Answer::parse(&text).unwrap_err();
        assert!(err.to_string().contains("ice-pwd"), "{err}");
        assert!(Answer::parse("not sdp").is_err());
    }
}
