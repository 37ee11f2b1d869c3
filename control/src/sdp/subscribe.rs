//! WHEP: answering a subscriber's offer with the room's tracks. Each source goes to the
//! first free m-section of its kind whose codecs can carry it unchanged (so, in order,
//! the first audio source to the first audio m-section...); m-sections left over are
//! answered inactive.

use std::collections::HashSet;

use rand::Rng;
use sluice_dataplane::rtp::ExtensionIds;

use super::accept::{Reject, bundle_order, nothing_accepted, transport_check};
use super::codec::{is_supported, negotiated, same_codec};
use super::extmap::{self, Answered, Registry};
use super::offer::{Direction, MediaOffer, Offer, is_token_char};
use super::writer::{self, SdpText};
use super::{CodecSpec, LocalDescription, MediaKind, SdpError};

/// A published track to offer to the subscriber.
#[derive(Debug, Clone)]
pub struct SourceTrack {
    pub track_id: u64,
    /// The msid stream: the publisher's id.
    pub stream_id: String,
    pub kind: MediaKind,
    pub codec: CodecSpec,
    pub rtx_payload_type: Option<u8>,
    /// The publisher's negotiated extmap ([`super::PublishAnswer::ext_uris`]).
    pub ext_uris: Vec<(u8, String)>,
}

/// One track sent to the subscriber, as the media plane installs it.
#[derive(Debug, Clone)]
pub struct PlannedSubscription {
    pub track_id: u64,
    /// The subscriber's m-section.
    pub mid: String,
    pub ssrc: u32,
    /// The subscriber's payload type for the codec.
    pub payload_type: u8,
    /// RTX SSRC and payload type, when the subscriber negotiated RTX.
    pub rtx: Option<(u32, u8)>,
    /// Header extension ids: index is the publisher's id, value the id to write for the
    /// subscriber (see `Registry::remap`).
    pub ext_remap: Box<[u8; 256]>,
}

#[derive(Debug, Clone)]
pub struct SubscribeAnswer {
    pub sdp: String,
    pub extensions: ExtensionIds,
    pub subscriptions: Vec<PlannedSubscription>,
}

#[derive(Debug)]
enum Plan {
    Reject(Reject),
    Inactive {
        codec: CodecSpec,
        rtx: Option<u8>,
        extensions: Vec<Answered>,
    },
    Send {
        source: usize,
        codec: CodecSpec,
        rtx: Option<u8>,
        extensions: Vec<Answered>,
    },
}

pub fn answer_subscribe(
    offer: &Offer,
    local: &LocalDescription,
    sources: &[SourceTrack],
) -> Result<SubscribeAnswer, SdpError> {
    let mut taken = vec![false; sources.len()];
    let mut plans = Vec::with_capacity(offer.media.len());
    for (index, m) in offer.media.iter().enumerate() {
        plans.push(plan_section(offer, index, m, sources, &mut taken)?);
    }

    let rejected: Vec<(usize, Reject)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Plan::Reject(r) => Some((i, *r)),
            _ => None,
        })
        .collect();
    let accepted: Vec<bool> = plans
        .iter()
        .map(|p| !matches!(p, Plan::Reject(_)))
        .collect();
    if !accepted.contains(&true) {
        return Err(nothing_accepted(offer, &rejected));
    }
    if !sources.is_empty() && !taken.contains(&true) {
        let kinds: Vec<String> = sources
            .iter()
            .take(8)
            .map(|s| format!("{} {}", s.kind.as_str(), s.codec.name))
            .collect();
        return Err(SdpError::NoCommonCodec(format!(
            "the offer can receive none of the room's tracks ({})",
            kinds.join(", ")
        )));
    }

    let mut registry = Registry::new();
    for plan in &plans {
        if let Plan::Inactive { extensions, .. } | Plan::Send { extensions, .. } = plan {
            for ext in extensions {
                registry.add(ext)?;
            }
        }
    }

    let mut ssrcs = SsrcAllocator::new(offer);
    let mut subscriptions = Vec::new();
    let mut out = SdpText::default();
    writer::session(&mut out, local, &bundle_order(offer, &accepted));
    for (m, plan) in offer.media.iter().zip(&plans) {
        match plan {
            Plan::Reject(_) => writer::rejected(&mut out, m),
            Plan::Inactive {
                codec,
                rtx,
                extensions,
            } => {
                section(&mut out, m, Direction::Inactive, codec, *rtx, extensions);
                writer::candidates(&mut out, local);
            }
            Plan::Send {
                source,
                codec,
                rtx,
                extensions,
            } => {
                let Some(source) = sources.get(*source) else {
                    continue;
                };
                let ssrc = ssrcs.next();
                let rtx = rtx.map(|pt| (ssrcs.next(), pt));
                section(
                    &mut out,
                    m,
                    Direction::SendOnly,
                    codec,
                    rtx.map(|(_, pt)| pt),
                    extensions,
                );
                writer::send_source(
                    &mut out,
                    &msid_token(&source.stream_id),
                    source.track_id,
                    ssrc,
                    rtx.map(|(ssrc, _)| ssrc),
                );
                writer::candidates(&mut out, local);
                subscriptions.push(PlannedSubscription {
                    track_id: source.track_id,
                    mid: m.mid.clone().unwrap_or_default(),
                    ssrc,
                    payload_type: codec.payload_type,
                    rtx,
                    ext_remap: registry.remap(&source.ext_uris, extensions),
                });
            }
        }
    }

    Ok(SubscribeAnswer {
        sdp: out.finish(),
        extensions: registry.ids(),
        subscriptions,
    })
}

fn plan_section(
    offer: &Offer,
    index: usize,
    m: &MediaOffer,
    sources: &[SourceTrack],
    taken: &mut [bool],
) -> Result<Plan, SdpError> {
    let kind = match transport_check(offer, index, m) {
        Ok(kind) => kind,
        Err(reject) => return Ok(Plan::Reject(reject)),
    };
    if m.direction == Direction::SendOnly {
        return Err(SdpError::Unsupported(format!(
            "m-section {index} (mid {}) is sendonly: a WHEP offer must receive",
            m.mid.as_deref().unwrap_or("-")
        )));
    }
    let extensions = extmap::select(m, extmap::SUBSCRIBE, true);
    let rtx_for = |c: &CodecSpec| match kind {
        MediaKind::Video => m.rtx_for(c.payload_type),
        MediaKind::Audio => None,
    };

    if m.direction.offerer_receives() {
        let found =
            sources
                .iter()
                .zip(taken.iter())
                .enumerate()
                .find_map(|(i, (source, taken))| {
                    if *taken || source.kind != kind {
                        return None;
                    }
                    let offered = m.codecs.iter().find(|c| same_codec(&source.codec, c))?;
                    Some((i, offered))
                });
        if let Some((i, offered)) = found {
            if let Some(t) = taken.get_mut(i) {
                *t = true;
            }
            let codec = negotiated(kind, offered);
            return Ok(Plan::Send {
                source: i,
                rtx: rtx_for(&codec),
                codec,
                extensions,
            });
        }
    }

    let Some(offered) = m.codecs.iter().find(|c| is_supported(kind, c)) else {
        return Ok(Plan::Reject(Reject::NoCodec));
    };
    let codec = negotiated(kind, offered);
    Ok(Plan::Inactive {
        rtx: rtx_for(&codec),
        codec,
        extensions,
    })
}

fn section(
    out: &mut SdpText,
    m: &MediaOffer,
    direction: Direction,
    codec: &CodecSpec,
    rtx: Option<u8>,
    extensions: &[Answered],
) {
    let mut pts = vec![codec.payload_type];
    pts.extend(rtx);
    writer::section_head(out, m, &pts, direction, extensions);
    writer::codec(out, codec);
    if let Some(rtx) = rtx {
        writer::rtx(out, rtx, codec.payload_type, codec.clock_rate);
    }
}

/// The stream id as an msid token (RFC 8830: 1 to 64 token characters). Publisher ids
/// are ours, but a space in one would break the answer's grammar.
fn msid_token(stream_id: &str) -> String {
    let token: String = stream_id
        .bytes()
        .filter(|b| is_token_char(*b))
        .take(64)
        .map(char::from)
        .collect();
    if token.is_empty() {
        "sluice".to_owned()
    } else {
        token
    }
}

/// Random nonzero SSRCs, distinct from each other and from every SSRC the offer names
/// (RFC 3550 8.1: a collision would make the subscriber drop one of the streams).
struct SsrcAllocator {
    used: HashSet<u32>,
}

impl SsrcAllocator {
    fn new(offer: &Offer) -> Self {
        let mut used = HashSet::new();
        used.insert(0);
        for m in &offer.media {
            used.extend(m.ssrcs.iter().copied());
            for (media, rtx) in &m.fid_groups {
                used.insert(*media);
                used.insert(*rtx);
            }
        }
        Self { used }
    }

    fn next(&mut self) -> u32 {
        let mut rng = rand::rng();
        loop {
            let ssrc = rng.random::<u32>();
            if self.used.insert(ssrc) {
                return ssrc;
            }
        }
    }
}
