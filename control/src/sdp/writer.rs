//! Writing answers. The layout satisfies the strictest readers we target:
//! - ICE credentials, fingerprint and `a=ice-lite` at session level only: webrtcbin
//!   rejects a fingerprint given at both levels, and needs one for every m-section,
//!   rejected ones included.
//! - `a=setup` and `a=mid` in every m-section (webrtcbin checks each one).
//! - rtcp-mux and an rtpmap'd codec even in rejected audio/video m-sections (aiortc
//!   checks both in every m-section of an answer).

use std::fmt::{self, Write};

use super::codec::is_supported;
use super::extmap::Answered;
use super::offer::{Direction, MediaOffer};
use super::{CodecSpec, LocalDescription};

/// ICE host candidate type preference (RFC 8445 5.1.2.2).
const HOST_TYPE_PREFERENCE: u32 = 126;
/// At most this many candidates are written (local preference is 16 bits).
const MAX_CANDIDATES: usize = 64;

#[derive(Debug, Default)]
pub(super) struct SdpText(String);

impl SdpText {
    pub(super) fn line(&mut self, args: fmt::Arguments<'_>) {
        // Writing into a String cannot fail.
        let _ = self.0.write_fmt(args);
        self.0.push_str("\r\n");
    }

    pub(super) fn finish(self) -> String {
        self.0
    }
}

macro_rules! line {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}

pub(super) fn session(out: &mut SdpText, local: &LocalDescription, bundle: &[&str]) {
    let session_id = rand::random::<u64>() >> 1;
    line!(out, "v=0");
    line!(out, "o=- {session_id} 2 IN IP4 127.0.0.1");
    line!(out, "s=-");
    line!(out, "t=0 0");
    line!(out, "a=ice-lite");
    if !bundle.is_empty() {
        line!(out, "a=group:BUNDLE {}", bundle.join(" "));
    }
    line!(out, "a=msid-semantic:WMS *");
    line!(out, "a=ice-ufrag:{}", local.ice_ufrag);
    line!(out, "a=ice-pwd:{}", local.ice_pwd);
    line!(out, "a=fingerprint:sha-256 {}", local.fingerprint_sha256);
    line!(out, "a=setup:passive");
}

/// The head of an accepted m-section, up to the codecs.
pub(super) fn section_head(
    out: &mut SdpText,
    m: &MediaOffer,
    payload_types: &[u8],
    direction: Direction,
    extensions: &[Answered],
) {
    let formats: Vec<String> = payload_types.iter().map(u8::to_string).collect();
    line!(out, "m={} 9 {} {}", m.media, m.protocol, formats.join(" "));
    line!(out, "c=IN IP4 0.0.0.0");
    if let Some(mid) = &m.mid {
        line!(out, "a=mid:{mid}");
    }
    line!(out, "a={}", direction.as_str());
    line!(out, "a=rtcp-mux");
    if m.rtcp_rsize {
        line!(out, "a=rtcp-rsize");
    }
    line!(out, "a=setup:passive");
    for ext in extensions {
        match ext.direction {
            Some(d) => line!(
                out,
                "a=extmap:{}/{} {}",
                ext.id,
                d.as_str(),
                ext.known.uri()
            ),
            None => line!(out, "a=extmap:{} {}", ext.id, ext.known.uri()),
        }
    }
}

fn rtpmap(out: &mut SdpText, c: &CodecSpec) {
    let pt = c.payload_type;
    match c.channels {
        Some(ch) => line!(out, "a=rtpmap:{pt} {}/{}/{ch}", c.name, c.clock_rate),
        None => line!(out, "a=rtpmap:{pt} {}/{}", c.name, c.clock_rate),
    }
}

pub(super) fn codec(out: &mut SdpText, c: &CodecSpec) {
    let pt = c.payload_type;
    rtpmap(out, c);
    for fb in &c.rtcp_fb {
        line!(out, "a=rtcp-fb:{pt} {fb}");
    }
    if let Some(fmtp) = c.fmtp.as_deref().filter(|f| !f.is_empty()) {
        line!(out, "a=fmtp:{pt} {fmtp}");
    }
}

pub(super) fn rtx(out: &mut SdpText, rtx_pt: u8, apt: u8, clock_rate: u32) {
    line!(out, "a=rtpmap:{rtx_pt} rtx/{clock_rate}");
    line!(out, "a=fmtp:{rtx_pt} apt={apt}");
}

pub(super) fn simulcast_recv(out: &mut SdpText, rids: &[String]) {
    for rid in rids {
        line!(out, "a=rid:{rid} recv");
    }
    line!(out, "a=simulcast:recv {}", rids.join(";"));
}

pub(super) fn send_source(
    out: &mut SdpText,
    stream_id: &str,
    track_id: u64,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
) {
    line!(out, "a=msid:{stream_id} {track_id}");
    if let Some(rtx) = rtx_ssrc {
        line!(out, "a=ssrc-group:FID {ssrc} {rtx}");
    }
    // The media SSRC first: aiortc takes the first as media and the second as RTX.
    line!(out, "a=ssrc:{ssrc} cname:sluice");
    if let Some(rtx) = rtx_ssrc {
        line!(out, "a=ssrc:{rtx} cname:sluice");
    }
}

pub(super) fn candidates(out: &mut SdpText, local: &LocalDescription) {
    for (i, addr) in local.candidates.iter().take(MAX_CANDIDATES).enumerate() {
        let local_preference = 65_535 - i as u32;
        let priority = (HOST_TYPE_PREFERENCE << 24) | (local_preference << 8) | 255;
        line!(
            out,
            "a=candidate:{} 1 udp {priority} {} {} typ host",
            i + 1,
            addr.ip(),
            addr.port()
        );
    }
    line!(out, "a=end-of-candidates");
}

/// A rejected m-section: port 0, the offer's mid, and for RTP media one format the
/// offerer knows (one we forward if it offered any).
pub(super) fn rejected(out: &mut SdpText, m: &MediaOffer) {
    let first_codec = m.kind.and_then(|kind| {
        m.codecs
            .iter()
            .find(|c| is_supported(kind, c))
            .or_else(|| m.codecs.first())
    });
    let formats = match first_codec {
        Some(c) => c.payload_type.to_string(),
        None if m.kind.is_some() => m.formats.first().cloned().unwrap_or_else(|| "0".into()),
        None => m.formats.join(" "),
    };
    line!(out, "m={} 0 {} {formats}", m.media, m.protocol);
    line!(out, "c=IN IP4 0.0.0.0");
    if let Some(mid) = &m.mid {
        line!(out, "a=mid:{mid}");
    }
    if m.kind.is_some() {
        line!(out, "a=inactive");
        if m.rtcp_mux {
            line!(out, "a=rtcp-mux");
        }
    }
    line!(out, "a=setup:passive");
    if let Some(c) = first_codec {
        rtpmap(out, c);
    }
}
