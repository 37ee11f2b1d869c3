//! RTP header extensions (RFC 8285): which we answer, the session-wide id table BUNDLE
//! implies, and the id rewrite from a publisher's ids to a subscriber's.

use sluice_dataplane::rtp::ExtensionIds;

use super::SdpError;
use super::offer::{Direction, MediaOffer};

pub const URI_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const URI_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub const URI_REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
pub const URI_ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
pub const URI_TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
pub const URI_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Highest id of the one-byte form, the only form we negotiate (two-byte headers need
/// extmap-allow-mixed, which we do not answer).
pub(super) const MAX_ONE_BYTE_ID: u8 = 14;

/// The extensions the media plane reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    Mid,
    Rid,
    RepairedRid,
    TransportCc,
    AbsSendTime,
    AudioLevel,
}

/// A publisher's packets are routed by mid and rid, so it negotiates everything.
pub(super) const PUBLISH: &[Known] = &[
    Known::Mid,
    Known::Rid,
    Known::RepairedRid,
    Known::TransportCc,
    Known::AbsSendTime,
    Known::AudioLevel,
];
/// Forwarded packets carry the publisher's mid and rid; a subscriber that negotiated
/// those would demux by them and drop the packets, so they are never offered back.
pub(super) const SUBSCRIBE: &[Known] = &[Known::TransportCc, Known::AbsSendTime, Known::AudioLevel];

impl Known {
    pub(super) fn from_uri(uri: &str) -> Option<Self> {
        [
            Known::Mid,
            Known::Rid,
            Known::RepairedRid,
            Known::TransportCc,
            Known::AbsSendTime,
            Known::AudioLevel,
        ]
        .into_iter()
        .find(|k| k.uri() == uri)
    }

    pub(super) fn uri(self) -> &'static str {
        match self {
            Known::Mid => URI_MID,
            Known::Rid => URI_RID,
            Known::RepairedRid => URI_REPAIRED_RID,
            Known::TransportCc => URI_TRANSPORT_CC,
            Known::AbsSendTime => URI_ABS_SEND_TIME,
            Known::AudioLevel => URI_AUDIO_LEVEL,
        }
    }

    fn slot(self, ids: &mut ExtensionIds) -> &mut u8 {
        match self {
            Known::Mid => &mut ids.mid,
            Known::Rid => &mut ids.rid,
            Known::RepairedRid => &mut ids.repaired_rid,
            Known::TransportCc => &mut ids.transport_cc,
            Known::AbsSendTime => &mut ids.abs_send_time,
            Known::AudioLevel => &mut ids.audio_level,
        }
    }
}

/// One extmap line of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answered {
    pub id: u8,
    pub known: Known,
    /// Written after the id when the offer gave a direction (the mirror of it).
    pub direction: Option<Direction>,
}

/// The offered extensions of `m` that we answer, from `allowed`. `we_send` says which
/// way media flows; an extension only the other way is left out.
pub(super) fn select(m: &MediaOffer, allowed: &[Known], we_send: bool) -> Vec<Answered> {
    let mut out: Vec<Answered> = Vec::new();
    for ext in &m.extensions {
        let Some(known) = Known::from_uri(&ext.uri) else {
            continue;
        };
        if !allowed.contains(&known)
            || ext.id > MAX_ONE_BYTE_ID
            || out.iter().any(|a| a.known == known)
        {
            continue;
        }
        let offered = ext.direction.unwrap_or(Direction::SendRecv);
        let usable = if we_send {
            offered.offerer_receives()
        } else {
            offered.offerer_sends()
        };
        if !usable {
            continue;
        }
        let direction = match ext.direction {
            Some(Direction::SendOnly) => Some(Direction::RecvOnly),
            Some(Direction::RecvOnly) => Some(Direction::SendOnly),
            _ => None,
        };
        out.push(Answered {
            id: ext.id,
            known,
            direction,
        });
    }
    out
}

/// The answer's extension ids across m-sections: BUNDLE puts every m-section in one RTP
/// session, so an id means one URI everywhere and the media plane keeps one id per URI.
#[derive(Debug)]
pub(super) struct Registry {
    uri_of: [Option<Known>; 256],
    ids: ExtensionIds,
}

impl Registry {
    pub(super) fn new() -> Self {
        Self {
            uri_of: [None; 256],
            ids: ExtensionIds::default(),
        }
    }

    pub(super) fn add(&mut self, a: &Answered) -> Result<(), SdpError> {
        let Some(entry) = self.uri_of.get_mut(usize::from(a.id)) else {
            return Ok(());
        };
        if let Some(other) = *entry
            && other != a.known
        {
            return Err(SdpError::Malformed(format!(
                "extmap id {} names {} in one m-section and {} in another (BUNDLE shares one id space)",
                a.id,
                other.uri(),
                a.known.uri()
            )));
        }
        let slot = a.known.slot(&mut self.ids);
        if *slot != 0 && *slot != a.id {
            return Err(SdpError::Unsupported(format!(
                "{} has id {} in one m-section and {} in another",
                a.known.uri(),
                *slot,
                a.id
            )));
        }
        *slot = a.id;
        *entry = Some(a.known);
        Ok(())
    }

    pub(super) fn ids(&self) -> ExtensionIds {
        self.ids
    }

    /// (id, URI) of every negotiated extension, by id.
    pub(super) fn uris(&self) -> Vec<(u8, String)> {
        (0..=u8::MAX)
            .filter_map(|id| {
                let known = (*self.uri_of.get(usize::from(id))?)?;
                Some((id, known.uri().to_owned()))
            })
            .collect()
    }

    fn is_used(&self, id: u8) -> bool {
        matches!(self.uri_of.get(usize::from(id)), Some(Some(_)))
    }

    /// Publisher id -> subscriber id for one subscription. An extension the subscriber
    /// negotiated on this m-section keeps its meaning under the subscriber's id; every
    /// other id the publisher uses moves to a one-byte id the subscriber's session never
    /// negotiated, so the subscriber skips the element (RFC 8285 4.1.1) instead of
    /// misreading it. Entries the publisher does not use stay 0.
    pub(super) fn remap(&self, publisher: &[(u8, String)], here: &[Answered]) -> Box<[u8; 256]> {
        let mut map = Box::new([0u8; 256]);
        // At most SUBSCRIBE.len() ids are taken, so one of 1..=14 is always free.
        let free = (1..=MAX_ONE_BYTE_ID)
            .find(|id| !self.is_used(*id))
            .unwrap_or(0);
        for (pub_id, uri) in publisher {
            if *pub_id == 0 {
                continue;
            }
            let known = Known::from_uri(uri);
            let to = here
                .iter()
                .find(|a| Some(a.known) == known)
                .map_or(free, |a| a.id);
            if let Some(slot) = map.get_mut(usize::from(*pub_id)) {
                *slot = to;
            }
        }
        map
    }
}
