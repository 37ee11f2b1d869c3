//! WHIP: answering a publisher's offer. We only receive, so each m-section is answered
//! recvonly with one codec (the offerer's first that we forward) and its RTX.

use sluice_dataplane::router::LayerConfig;
use sluice_dataplane::rtp::ExtensionIds;

use super::accept::{Reject, bundle_order, nothing_accepted, transport_check};
use super::codec::{is_supported, negotiated};
use super::extmap::{self, Answered, Known, Registry};
use super::offer::{Direction, MediaOffer, Offer};
use super::simulcast;
use super::writer::{self, SdpText};
use super::{CodecSpec, LocalDescription, MediaKind, SdpError};

/// A track the publisher will send, as the media plane needs it.
#[derive(Debug, Clone)]
pub struct PublishedTrack {
    pub mid: String,
    pub kind: MediaKind,
    pub codec: CodecSpec,
    pub rtx_payload_type: Option<u8>,
    /// Lowest quality first; one layer without simulcast.
    pub layers: Vec<LayerConfig>,
    pub simulcast: bool,
}

#[derive(Debug, Clone)]
pub struct PublishAnswer {
    pub sdp: String,
    pub extensions: ExtensionIds,
    /// Every negotiated (id, URI), by id; the subscribe side remaps from these.
    pub ext_uris: Vec<(u8, String)>,
    pub tracks: Vec<PublishedTrack>,
}

/// What one m-section's answer holds.
#[derive(Debug)]
enum Plan {
    Reject(Reject),
    Accept {
        direction: Direction,
        kind: MediaKind,
        codec: CodecSpec,
        rtx: Option<u8>,
        extensions: Vec<Answered>,
        /// Rids answered, in the offer's order; empty without simulcast.
        rids: Vec<String>,
    },
}

pub fn answer_publish(offer: &Offer, local: &LocalDescription) -> Result<PublishAnswer, SdpError> {
    let mut plans = Vec::with_capacity(offer.media.len());
    for (index, m) in offer.media.iter().enumerate() {
        plans.push(plan_section(offer, index, m)?);
    }

    let rejected: Vec<(usize, Reject)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Plan::Reject(r) => Some((i, *r)),
            Plan::Accept { .. } => None,
        })
        .collect();
    let accepted: Vec<bool> = plans
        .iter()
        .map(|p| matches!(p, Plan::Accept { .. }))
        .collect();
    if !accepted.contains(&true) {
        return Err(nothing_accepted(offer, &rejected));
    }

    let mut registry = Registry::new();
    for plan in &plans {
        if let Plan::Accept { extensions, .. } = plan {
            for ext in extensions {
                registry.add(ext)?;
            }
        }
    }

    let mut tracks = Vec::new();
    for (m, plan) in offer.media.iter().zip(&plans) {
        if let Plan::Accept {
            direction: Direction::RecvOnly,
            kind,
            codec,
            rtx,
            rids,
            ..
        } = plan
        {
            tracks.push(track(m, *kind, codec, *rtx, rids));
        }
    }
    if tracks.is_empty() {
        return Err(SdpError::Unsupported(
            "the offer sends no media (every usable m-section is inactive)".into(),
        ));
    }

    let mut out = SdpText::default();
    writer::session(&mut out, local, &bundle_order(offer, &accepted));
    for (m, plan) in offer.media.iter().zip(&plans) {
        match plan {
            Plan::Reject(_) => writer::rejected(&mut out, m),
            Plan::Accept {
                direction,
                codec,
                rtx,
                extensions,
                rids,
                ..
            } => {
                let mut pts = vec![codec.payload_type];
                pts.extend(*rtx);
                writer::section_head(&mut out, m, &pts, *direction, extensions);
                writer::codec(&mut out, codec);
                if let Some(rtx) = rtx {
                    writer::rtx(&mut out, *rtx, codec.payload_type, codec.clock_rate);
                }
                if !rids.is_empty() {
                    writer::simulcast_recv(&mut out, rids);
                }
                writer::candidates(&mut out, local);
            }
        }
    }

    Ok(PublishAnswer {
        sdp: out.finish(),
        extensions: registry.ids(),
        ext_uris: registry.uris(),
        tracks,
    })
}

fn plan_section(offer: &Offer, index: usize, m: &MediaOffer) -> Result<Plan, SdpError> {
    let kind = match transport_check(offer, index, m) {
        Ok(kind) => kind,
        Err(reject) => return Ok(Plan::Reject(reject)),
    };
    let direction = match m.direction {
        Direction::SendOnly | Direction::SendRecv => Direction::RecvOnly,
        Direction::Inactive => Direction::Inactive,
        Direction::RecvOnly => {
            return Err(SdpError::Unsupported(format!(
                "m-section {index} (mid {}) is recvonly: a WHIP offer must send",
                m.mid.as_deref().unwrap_or("-")
            )));
        }
    };
    let Some(offered) = m.codecs.iter().find(|c| is_supported(kind, c)) else {
        return Ok(Plan::Reject(Reject::NoCodec));
    };
    let codec = negotiated(kind, offered);
    // Audio gets no NACK, so RTX would never be used.
    let rtx = match kind {
        MediaKind::Video => m.rtx_for(codec.payload_type),
        MediaKind::Audio => None,
    };
    let extensions = extmap::select(m, extmap::PUBLISH, false);
    // Layers are told apart by the rid extension; without it the sender falls back to
    // one encoding when the answer has no simulcast.
    let rid_ext = extensions.iter().any(|e| e.known == Known::Rid);
    let rids = if kind == MediaKind::Video && rid_ext && direction == Direction::RecvOnly {
        simulcast::negotiate(m)
    } else {
        Vec::new()
    };
    Ok(Plan::Accept {
        direction,
        kind,
        codec,
        rtx,
        extensions,
        rids,
    })
}

fn track(
    m: &MediaOffer,
    kind: MediaKind,
    codec: &CodecSpec,
    rtx: Option<u8>,
    rids: &[String],
) -> PublishedTrack {
    let layers = if rids.is_empty() {
        // An `a=ssrc-group:FID` names media and RTX; otherwise the first `a=ssrc`. With
        // neither, the media plane learns the SSRC from the first packet.
        let (ssrc, rtx_ssrc) = match (m.fid_groups.first(), m.ssrcs.first()) {
            (Some((media, repair)), _) => (Some(*media), Some(*repair)),
            (None, Some(ssrc)) => (Some(*ssrc), None),
            (None, None) => (None, None),
        };
        vec![LayerConfig {
            ssrc,
            rtx_ssrc: rtx_ssrc.filter(|_| rtx.is_some()),
            rid: None,
        }]
    } else {
        simulcast::rank(rids)
            .into_iter()
            .map(|rid| LayerConfig {
                ssrc: None,
                rtx_ssrc: None,
                rid: Some(rid.into_bytes()),
            })
            .collect()
    };
    PublishedTrack {
        mid: m.mid.clone().unwrap_or_default(),
        kind,
        codec: codec.clone(),
        rtx_payload_type: rtx,
        simulcast: !rids.is_empty(),
        layers,
    }
}
