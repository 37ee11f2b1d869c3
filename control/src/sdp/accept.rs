//! Which m-sections can join the session at all, whatever the media: one ICE/DTLS
//! transport on one port, so every accepted m-section must share it through BUNDLE.

use std::fmt;

use super::offer::{MediaOffer, Offer};
use super::{MediaKind, SdpError};

/// Why an m-section is answered with port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reject {
    /// The offerer itself set port 0 (a stopped transceiver).
    OffererRejected,
    NotMedia,
    Protocol,
    NoMid,
    NotBundled,
    NoRtcpMux,
    NoCodec,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reject::OffererRejected => "port 0 in the offer",
            Reject::NotMedia => "not audio or video",
            Reject::Protocol => "not UDP/TLS/RTP/SAVPF",
            Reject::NoMid => "no a=mid",
            Reject::NotBundled => "outside the BUNDLE group",
            Reject::NoRtcpMux => "no a=rtcp-mux",
            Reject::NoCodec => "no codec we forward",
        })
    }
}

/// Whether the m-section at `index` can share our transport; its kind if so.
pub(super) fn transport_check(
    offer: &Offer,
    index: usize,
    m: &MediaOffer,
) -> Result<MediaKind, Reject> {
    let kind = m.kind.ok_or(Reject::NotMedia)?;
    if m.port == 0 && !m.bundle_only {
        return Err(Reject::OffererRejected);
    }
    if !m.is_webrtc_rtp() {
        return Err(Reject::Protocol);
    }
    let mid = m.mid.as_deref().ok_or(Reject::NoMid)?;
    match &offer.bundle {
        Some(group) if !group.iter().any(|g| g == mid) => return Err(Reject::NotBundled),
        // Without BUNDLE each m-section would need its own transport: only the one
        // carrying the offer's transport can be accepted.
        None if index != offer.transport_section => return Err(Reject::NotBundled),
        _ => {}
    }
    if !m.rtcp_mux {
        return Err(Reject::NoRtcpMux);
    }
    Ok(kind)
}

/// The error when no m-section was accepted: NoCommonCodec if codecs were the only
/// obstacle, Unsupported otherwise; the message says what each m-section lacked.
pub(super) fn nothing_accepted(offer: &Offer, reasons: &[(usize, Reject)]) -> SdpError {
    let mut detail = String::new();
    for (index, reason) in reasons.iter().take(8) {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        let mid = offer
            .media
            .get(*index)
            .and_then(|m| m.mid.as_deref())
            .unwrap_or("-");
        detail.push_str(&format!("m-section {index} (mid {mid}): {reason}"));
    }
    let codec_only = reasons
        .iter()
        .filter(|(_, r)| *r != Reject::NotMedia && *r != Reject::OffererRejected)
        .all(|(_, r)| *r == Reject::NoCodec)
        && reasons.iter().any(|(_, r)| *r == Reject::NoCodec);
    if codec_only {
        SdpError::NoCommonCodec(detail)
    } else {
        SdpError::Unsupported(format!(
            "no m-section can be bundled on our transport: {detail}"
        ))
    }
}

/// The answer's BUNDLE group: the accepted mids in the order of the offer's group (its
/// tagged mid first when accepted). Empty when the offer had no group: an answer may not
/// add one.
pub(super) fn bundle_order<'a>(offer: &'a Offer, accepted: &[bool]) -> Vec<&'a str> {
    let is_accepted = |mid: &str| {
        offer
            .media
            .iter()
            .zip(accepted)
            .any(|(m, ok)| *ok && m.mid.as_deref() == Some(mid))
    };
    match &offer.bundle {
        Some(group) => group
            .iter()
            .map(String::as_str)
            .filter(|mid| is_accepted(mid))
            .collect(),
        None => Vec::new(),
    }
}
