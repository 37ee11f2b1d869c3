//! Reading an offer: the `sdp` crate does the grammar, this module pulls out the meaning
//! (transport, codecs, header extensions, simulcast, SSRCs) and rejects what would make
//! the answer or the media plane wrong.

use std::collections::HashSet;
use std::io::Cursor;

use sdp::SessionDescription;
use sdp::description::common::Attribute;
use sdp::description::media::MediaDescription;

use super::codec::classify;
use super::simulcast::{RidDirection, parse_rid, parse_simulcast};
use super::{CodecSpec, MediaKind, SdpError};

/// Larger offers are refused before parsing. A browser offer is 3-6 KiB per m-section.
pub const MAX_OFFER_BYTES: usize = 256 * 1024;
/// More m-sections than this are refused: every one costs work in both answers.
pub const MAX_MEDIA_SECTIONS: usize = 64;
/// Per m-section caps on lists the peer controls.
const MAX_SSRCS: usize = 32;
const MAX_RIDS: usize = 16;
const MAX_EXTMAPS: usize = 64;
/// Longest `a=mid` we take: the MID header extension carries at most 16 bytes in the
/// one-byte form, the only form we negotiate.
const MAX_MID_LEN: usize = 16;
/// Longest ice-ufrag / ice-pwd (RFC 8839 grammar).
const MAX_ICE_CREDENTIAL_LEN: usize = 256;
/// Error messages quote at most this much of the peer's text.
const MAX_QUOTE: usize = 80;

/// A parsed offer. Transport fields come from the m-section that carries the transport
/// (the BUNDLE-tagged one), falling back to session level.
#[derive(Debug, Clone)]
pub struct Offer {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub fingerprint: Fingerprint,
    pub setup: Setup,
    /// Mids of the first BUNDLE group, in the offer's order (the first is the tagged one).
    pub bundle: Option<Vec<String>>,
    /// Index in `media` of the m-section whose transport the session uses.
    pub transport_section: usize,
    pub media: Vec<MediaOffer>,
}

/// A certificate fingerprint (RFC 8122).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lowercase hash name, e.g. "sha-256".
    pub algorithm: String,
    pub value: Vec<u8>,
}

/// The offerer's DTLS role. `passive` and `holdconn` offers are refused: we only answer
/// passive (the DTLS server), so the offerer must be able to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    ActPass,
    /// Also what a missing `a=setup` means (RFC 4145: the default is active).
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// Whether the offerer of this direction sends media.
    pub fn offerer_sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether the offerer of this direction receives media.
    pub fn offerer_receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

/// One `a=extmap` line (RFC 8285).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    pub id: u8,
    pub direction: Option<Direction>,
    pub uri: String,
}

/// One m-section of the offer.
#[derive(Debug, Clone)]
pub struct MediaOffer {
    /// `None` for anything but audio and video (data channels, text...).
    pub kind: Option<MediaKind>,
    /// The media type as written: "audio", "video", "application"...
    pub media: String,
    pub port: u16,
    /// "UDP/TLS/RTP/SAVPF" for WebRTC media.
    pub protocol: String,
    /// The m-line's format list as written.
    pub formats: Vec<String>,
    pub mid: Option<String>,
    /// `sendrecv` when the offer says nothing.
    pub direction: Direction,
    pub bundle_only: bool,
    pub rtcp_mux: bool,
    pub rtcp_rsize: bool,
    /// Every RTP payload format with an rtpmap, in the offerer's preference order.
    pub codecs: Vec<CodecSpec>,
    pub extensions: Vec<ExtMap>,
    /// `a=rid:<id> send`, in order.
    pub send_rids: Vec<String>,
    /// `a=simulcast:send ...`: the streams' rids (first alternative of each), paused
    /// streams left out, in order.
    pub simulcast_send: Vec<String>,
    /// Distinct SSRCs named by `a=ssrc`, in order.
    pub ssrcs: Vec<u32>,
    /// `a=ssrc-group:FID <media> <rtx>` pairs, in order.
    pub fid_groups: Vec<(u32, u32)>,
}

impl MediaOffer {
    /// Whether this is WebRTC RTP media (DTLS-SRTP with feedback).
    pub fn is_webrtc_rtp(&self) -> bool {
        matches!(
            self.protocol.as_str(),
            "UDP/TLS/RTP/SAVPF" | "RTP/SAVPF" | "UDP/TLS/RTP/SAVP"
        )
    }

    /// The offered RTX payload type for `apt`, if any.
    pub fn rtx_for(&self, apt: u8) -> Option<u8> {
        let base = self.codecs.iter().find(|c| c.payload_type == apt)?;
        self.codecs
            .iter()
            .find(|c| {
                c.name.eq_ignore_ascii_case("rtx")
                    && c.clock_rate == base.clock_rate
                    && super::codec::fmtp_param(c.fmtp.as_deref(), "apt")
                        .and_then(|v| v.parse::<u8>().ok())
                        == Some(apt)
            })
            .map(|c| c.payload_type)
    }
}

/// Transport attributes of one level (session or m-section).
#[derive(Debug, Default)]
struct Transport {
    ice_ufrag: Option<String>,
    ice_pwd: Option<String>,
    fingerprints: Vec<(String, String)>,
    setup: Option<String>,
}

impl Transport {
    /// Takes the attribute if it is a transport attribute; returns whether it was.
    fn take(&mut self, key: &str, value: Option<&str>) -> Result<bool, SdpError> {
        let slot = match key {
            "ice-ufrag" => &mut self.ice_ufrag,
            "ice-pwd" => &mut self.ice_pwd,
            "setup" => &mut self.setup,
            "fingerprint" => {
                let v = value.unwrap_or("");
                let mut parts = v.split_whitespace();
                let (Some(alg), Some(hex), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(malformed("a=fingerprint", v));
                };
                if self.fingerprints.len() < 8 {
                    self.fingerprints.push((alg.to_owned(), hex.to_owned()));
                }
                return Ok(true);
            }
            _ => return Ok(false),
        };
        if slot.is_none() {
            *slot = Some(value.unwrap_or("").to_owned());
        }
        Ok(true)
    }
}

/// Parses an offer. Work is bounded by [`MAX_OFFER_BYTES`] and the per-section caps;
/// nothing the peer writes can panic it.
pub fn parse_offer(text: &str) -> Result<Offer, SdpError> {
    if text.len() > MAX_OFFER_BYTES {
        return Err(SdpError::Malformed(format!(
            "offer is {} bytes, more than {MAX_OFFER_BYTES}",
            text.len()
        )));
    }
    check_characters(text)?;
    let desc = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| SdpError::Malformed(quote(&e.to_string(), 200)))?;
    if desc.media_descriptions.is_empty() {
        return Err(SdpError::Unsupported("offer has no m-section".into()));
    }
    if desc.media_descriptions.len() > MAX_MEDIA_SECTIONS {
        return Err(SdpError::Unsupported(format!(
            "offer has {} m-sections, more than {MAX_MEDIA_SECTIONS}",
            desc.media_descriptions.len()
        )));
    }

    let mut session = Transport::default();
    let mut bundle = None;
    for Attribute { key, value } in &desc.attributes {
        let value = value.as_deref();
        if session.take(key, value)? {
            continue;
        }
        match key.as_str() {
            "ice-lite" => {
                return Err(SdpError::Unsupported(
                    "the offerer is ICE-lite, like us: nobody would send checks".into(),
                ));
            }
            "group" => {
                let v = value.unwrap_or("");
                let mut tokens = v.split_whitespace();
                if tokens.next() == Some("BUNDLE") && bundle.is_none() {
                    let mids: Vec<String> =
                        tokens.take(MAX_MEDIA_SECTIONS).map(str::to_owned).collect();
                    bundle = Some(mids);
                }
            }
            _ => {}
        }
    }

    let mut media = Vec::with_capacity(desc.media_descriptions.len());
    let mut transports = Vec::with_capacity(desc.media_descriptions.len());
    for (index, md) in desc.media_descriptions.iter().enumerate() {
        let (m, t) = parse_media(index, md)?;
        media.push(m);
        transports.push(t);
    }

    let mut seen = HashSet::new();
    for m in &media {
        if let Some(mid) = &m.mid
            && !seen.insert(mid.as_str())
        {
            return Err(malformed("a=mid (used twice)", mid));
        }
    }
    // A BUNDLE group only names existing m-sections, each once.
    let bundle = bundle.map(|mids| {
        let mut kept = HashSet::new();
        mids.into_iter()
            .filter(|mid| seen.contains(mid.as_str()) && kept.insert(mid.clone()))
            .collect::<Vec<_>>()
    });
    let bundle = bundle.filter(|mids| !mids.is_empty());

    let transport_section = bundle
        .as_ref()
        .and_then(|mids| mids.first())
        .and_then(|tag| media.iter().position(|m| m.mid.as_deref() == Some(tag)))
        .or_else(|| media.iter().position(|m| m.port != 0))
        .unwrap_or(0);
    let media_transport = transports.get(transport_section);

    let pick = |f: fn(&Transport) -> Option<&String>| {
        media_transport.and_then(f).or_else(|| f(&session)).cloned()
    };
    let ice_ufrag = pick(|t| t.ice_ufrag.as_ref())
        .ok_or_else(|| SdpError::Unsupported("no a=ice-ufrag".into()))?;
    let ice_pwd =
        pick(|t| t.ice_pwd.as_ref()).ok_or_else(|| SdpError::Unsupported("no a=ice-pwd".into()))?;
    check_ice_credential("a=ice-ufrag", &ice_ufrag)?;
    check_ice_credential("a=ice-pwd", &ice_pwd)?;

    let setup = match pick(|t| t.setup.as_ref()).as_deref() {
        None | Some("active") => Setup::Active,
        Some("actpass") => Setup::ActPass,
        Some("passive") => {
            return Err(SdpError::Unsupported(
                "a=setup:passive: we are the DTLS server, the offerer must connect".into(),
            ));
        }
        Some("holdconn") => {
            return Err(SdpError::Unsupported("a=setup:holdconn".into()));
        }
        Some(other) => return Err(malformed("a=setup", other)),
    };

    let fingerprints = match media_transport {
        Some(t) if !t.fingerprints.is_empty() => &t.fingerprints,
        _ => &session.fingerprints,
    };
    let fingerprint = choose_fingerprint(fingerprints)?;

    Ok(Offer {
        ice_ufrag,
        ice_pwd,
        fingerprint,
        setup,
        bundle,
        transport_section,
        media,
    })
}

/// Control characters are refused up front: strings from the offer are echoed into the
/// answer, and a stray CR or NUL there would break its lines.
fn check_characters(text: &str) -> Result<(), SdpError> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ok = match b {
            b'\n' => true,
            b'\r' => bytes.get(i + 1) == Some(&b'\n'),
            0x00..=0x1f | 0x7f => false,
            _ => true,
        };
        if !ok {
            return Err(SdpError::Malformed(format!(
                "control character 0x{b:02x} at byte {i}"
            )));
        }
    }
    Ok(())
}

fn parse_media(index: usize, md: &MediaDescription) -> Result<(MediaOffer, Transport), SdpError> {
    let name = &md.media_name;
    let kind = match name.media.as_str() {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    };
    let port = u16::try_from(name.port.value)
        .map_err(|_| malformed("m= port", &name.port.value.to_string()))?;
    for f in &name.formats {
        if !is_token(f) {
            return Err(malformed("m= format", f));
        }
    }

    let mut m = MediaOffer {
        kind,
        media: name.media.clone(),
        port,
        protocol: name.protos.join("/"),
        formats: name.formats.clone(),
        mid: None,
        direction: Direction::SendRecv,
        bundle_only: false,
        rtcp_mux: false,
        rtcp_rsize: false,
        codecs: Vec::new(),
        extensions: Vec::new(),
        send_rids: Vec::new(),
        simulcast_send: Vec::new(),
        ssrcs: Vec::new(),
        fid_groups: Vec::new(),
    };
    let mut transport = Transport::default();
    let mut direction = None;
    // Payload type -> (name, clock, channels), fmtp, rtcp-fb; filled from attributes,
    // then laid out in the m-line's order.
    let mut rtpmaps: Vec<Option<(String, u32, Option<u16>)>> = vec![None; 128];
    let mut fmtps: Vec<Option<String>> = vec![None; 128];
    let mut feedback: Vec<(Option<u8>, String)> = Vec::new();
    let is_rtp = kind.is_some();

    for Attribute { key, value } in &md.attributes {
        let v = value.as_deref().unwrap_or("");
        if transport.take(key, value.as_deref())? {
            continue;
        }
        if let Some(d) = Direction::parse(key) {
            if direction.replace(d).is_some() {
                return Err(SdpError::Malformed(format!(
                    "m-section {index} has more than one direction attribute"
                )));
            }
            continue;
        }
        match key.as_str() {
            "mid" => {
                if !is_token(v) || v.len() > MAX_MID_LEN {
                    return Err(malformed("a=mid", v));
                }
                if m.mid.replace(v.to_owned()).is_some() {
                    return Err(SdpError::Malformed(format!(
                        "m-section {index} has more than one a=mid"
                    )));
                }
            }
            "rtcp-mux" => m.rtcp_mux = true,
            "rtcp-rsize" => m.rtcp_rsize = true,
            "bundle-only" => m.bundle_only = true,
            "rtpmap" if is_rtp => {
                let (pt, rest) = split_pt(v).ok_or_else(|| malformed("a=rtpmap", v))?;
                let map = parse_rtpmap(rest).ok_or_else(|| malformed("a=rtpmap", v))?;
                if let Some(slot) = rtpmaps.get_mut(usize::from(pt))
                    && slot.is_none()
                {
                    *slot = Some(map);
                }
            }
            "fmtp" if is_rtp => {
                let (pt, rest) = split_pt(v).ok_or_else(|| malformed("a=fmtp", v))?;
                if let Some(slot) = fmtps.get_mut(usize::from(pt))
                    && slot.is_none()
                {
                    *slot = Some(rest.trim().to_owned());
                }
            }
            "rtcp-fb" if is_rtp => {
                let (pt, rest) = v.split_once(' ').ok_or_else(|| malformed("a=rtcp-fb", v))?;
                let pt = if pt == "*" {
                    None
                } else {
                    Some(parse_pt(pt).ok_or_else(|| malformed("a=rtcp-fb", v))?)
                };
                let fb = rest.split_whitespace().collect::<Vec<_>>().join(" ");
                if !fb.is_empty() && feedback.len() < 16 * 128 {
                    feedback.push((pt, fb));
                }
            }
            "extmap" if is_rtp => {
                let ext = parse_extmap(v)?;
                if let Some(other) = m.extensions.iter().find(|e| e.id == ext.id) {
                    if other.uri != ext.uri {
                        return Err(SdpError::Malformed(format!(
                            "m-section {index}: extmap id {} names two URIs",
                            ext.id
                        )));
                    }
                } else if m.extensions.len() < MAX_EXTMAPS {
                    m.extensions.push(ext);
                }
            }
            "rid" if is_rtp => {
                let (id, dir) = parse_rid(v)?;
                if dir == RidDirection::Send
                    && m.send_rids.len() < MAX_RIDS
                    && !m.send_rids.contains(&id)
                {
                    m.send_rids.push(id);
                }
            }
            "simulcast" if is_rtp => {
                m.simulcast_send = parse_simulcast(v)?;
                m.simulcast_send.truncate(MAX_RIDS);
            }
            "ssrc" if is_rtp => {
                let ssrc = v
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| malformed("a=ssrc", v))?;
                if m.ssrcs.len() < MAX_SSRCS && !m.ssrcs.contains(&ssrc) {
                    m.ssrcs.push(ssrc);
                }
            }
            "ssrc-group" if is_rtp => {
                let mut tokens = v.split_whitespace();
                if tokens.next() == Some("FID") {
                    let mut ssrc = || tokens.next().and_then(|s| s.parse::<u32>().ok());
                    let (Some(media), Some(rtx)) = (ssrc(), ssrc()) else {
                        return Err(malformed("a=ssrc-group", v));
                    };
                    if m.fid_groups.len() < MAX_SSRCS {
                        m.fid_groups.push((media, rtx));
                    }
                }
            }
            _ => {}
        }
    }
    m.direction = direction.unwrap_or(Direction::SendRecv);

    if is_rtp {
        let mut listed = [false; 128];
        for f in &m.formats {
            let pt = parse_pt(f).ok_or_else(|| malformed("m= payload type", f))?;
            let Some(seen) = listed.get_mut(usize::from(pt)) else {
                continue;
            };
            if std::mem::replace(seen, true) {
                continue;
            }
            let Some(Some((name, clock_rate, channels))) = rtpmaps.get(usize::from(pt)) else {
                // Static payload types without rtpmap (PCMU, PCMA...) are nothing we
                // forward.
                continue;
            };
            let rtcp_fb = feedback
                .iter()
                .filter(|(p, _)| p.is_none() || *p == Some(pt))
                .map(|(_, fb)| fb.clone())
                .collect();
            m.codecs.push(CodecSpec {
                codec: classify(name),
                name: name.clone(),
                payload_type: pt,
                clock_rate: *clock_rate,
                channels: *channels,
                fmtp: fmtps.get(usize::from(pt)).cloned().flatten(),
                rtcp_fb,
            });
        }
    }
    Ok((m, transport))
}

/// "96 rest" -> (96, "rest").
fn split_pt(v: &str) -> Option<(u8, &str)> {
    let (pt, rest) = v.split_once(' ')?;
    Some((parse_pt(pt)?, rest))
}

/// RTP payload types are 7 bits.
fn parse_pt(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|pt| *pt < 128)
}

/// "VP8/90000" or "opus/48000/2".
fn parse_rtpmap(rest: &str) -> Option<(String, u32, Option<u16>)> {
    let mut parts = rest.trim().split('/');
    let name = parts.next().filter(|n| is_token(n))?;
    let clock = parts.next()?.parse::<u32>().ok().filter(|c| *c > 0)?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse::<u16>().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((name.to_owned(), clock, channels))
}

/// "<id>[/<direction>] <uri> [<attributes>]".
fn parse_extmap(v: &str) -> Result<ExtMap, SdpError> {
    let bad = || malformed("a=extmap", v);
    let mut tokens = v.split_whitespace();
    let head = tokens.next().ok_or_else(bad)?;
    let uri = tokens.next().ok_or_else(bad)?;
    let (id, direction) = match head.split_once('/') {
        Some((id, dir)) => (id, Some(Direction::parse(dir).ok_or_else(bad)?)),
        None => (head, None),
    };
    let id = id
        .parse::<u8>()
        .ok()
        .filter(|id| *id != 0)
        .ok_or_else(bad)?;
    Ok(ExtMap {
        id,
        direction,
        uri: uri.to_owned(),
    })
}

/// The sha-256 fingerprint if there is one (what our DTLS stack checks best), else the
/// first with a known hash; unknown hashes are skipped, a known one with the wrong
/// length or bad hex is an error.
fn choose_fingerprint(list: &[(String, String)]) -> Result<Fingerprint, SdpError> {
    let mut chosen: Option<Fingerprint> = None;
    for (alg, hex) in list {
        let alg = alg.to_ascii_lowercase();
        let len = match alg.as_str() {
            "sha-1" => 20,
            "sha-224" => 28,
            "sha-256" => 32,
            "sha-384" => 48,
            "sha-512" => 64,
            _ => continue,
        };
        let value = parse_fingerprint_hex(hex)
            .filter(|v| v.len() == len)
            .ok_or_else(|| malformed("a=fingerprint", hex))?;
        let is_sha256 = alg == "sha-256";
        let better = match &chosen {
            None => true,
            Some(c) => is_sha256 && c.algorithm != "sha-256",
        };
        if better {
            chosen = Some(Fingerprint {
                algorithm: alg,
                value,
            });
        }
    }
    chosen.ok_or_else(|| {
        SdpError::Unsupported("no a=fingerprint with a known hash (sha-1/224/256/384/512)".into())
    })
}

/// "AB:CD:..." (either case) -> bytes.
fn parse_fingerprint_hex(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|byte| {
            if byte.len() == 2 {
                u8::from_str_radix(byte, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/". Lengths below the RFC minimum are let
/// through: short credentials are weak, not broken, and some stacks use them.
fn check_ice_credential(what: &str, s: &str) -> Result<(), SdpError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ICE_CREDENTIAL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if ok { Ok(()) } else { Err(malformed(what, s)) }
}

/// RFC 4566 token characters.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

pub(super) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b)
}

pub(super) fn malformed(what: &str, value: &str) -> SdpError {
    SdpError::Malformed(format!("{what}: {:?}", quote(value, MAX_QUOTE)))
}

/// At most `max` characters of `s`.
fn quote(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}
