//! The router's side of the cascade.
//!
//! On a node subscribing to a track published elsewhere, the track is *remote*: it has
//! no publisher session, its packets arrive from the link on its home worker
//! ([`RouterCommand::LinkMedia`]) and go from there exactly as a local publisher's would
//! (cache, rate, local subscribers, other workers, further links). What a subscriber
//! asks of the publisher cannot be sent to it from here: keyframe requests (throttled as
//! for a local publisher) and NACKs the cache cannot answer become [`UpstreamEvent`]s,
//! which the control plane sends up the link.
//!
//! On the publishing node, a far node's NACK is answered from the same cache, as link
//! packets to that node alone.
//!
//! [`RouterCommand::LinkMedia`]: super::RouterCommand::LinkMedia

use super::{Router, RouterHandoff, RouterStats, TrackId, TrackIdx, is_keyframe};
use crate::engine::{LinkPacket, Micros, Output};
use crate::rtp::RtpPacket;
use bytes::Bytes;
use crossbeam_channel::Sender;

/// Sequence numbers one [`UpstreamEvent::NackUpstream`] carries at most, and one
/// [`super::RouterCommand::LinkNack`] is answered for: a NACK this long means the link
/// lost a burst that retransmission would only make worse.
pub const MAX_NACK_UPSTREAM: usize = 64;

/// What the router hands the cascade's control plane: requests for the publisher of a
/// remote track, to send upstream, and local publishers' audio loudness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// A subscriber here needs a keyframe of this layer.
    KeyframeRequest { track: TrackId, layer: u8 },
    /// Subscribers here lost these packets and the cache does not hold them: the
    /// publisher's own sequence numbers, oldest first as asked.
    NackUpstream {
        track: TrackId,
        layer: u8,
        seqs: Vec<u16>,
    },
    /// A local publisher's audio over the last [`super::speech::SPEECH_INTERVAL`]:
    /// 127 minus its mean RFC 6464 level, so 0 is silence. What the control plane picks
    /// the room's active speaker from.
    AudioLevel { track: TrackId, loudness: u8 },
}

/// Slots in a layer's memory of recent upstream NACKs.
const NACK_MEMORY: usize = 64;

/// Which sequence numbers of a layer were asked upstream lately, so that several
/// subscribers losing the same packet (and each asking again before the repair can
/// arrive) cost the link one request. Fixed size: the NACK path allocates only the
/// event it emits.
#[derive(Debug)]
pub struct NackThrottle {
    asked: [(u16, Option<Micros>); NACK_MEMORY],
}

impl Default for NackThrottle {
    fn default() -> Self {
        Self {
            asked: [(0, None); NACK_MEMORY],
        }
    }
}

impl NackThrottle {
    /// Whether `seq` may be asked for now; if so, remembers that it was.
    pub fn admit(&mut self, now: Micros, seq: u16, interval: Micros) -> bool {
        let slot = &mut self.asked[usize::from(seq) % NACK_MEMORY];
        if slot.0 == seq && slot.1.is_some_and(|at| now.saturating_sub(at) < interval) {
            return false;
        }
        *slot = (seq, Some(now));
        true
    }
}

/// Sends without waiting: a full (or absent) channel drops and counts, as for
/// [`super::RouterEvent`]s.
pub(super) fn emit(
    events: Option<&Sender<UpstreamEvent>>,
    ev: UpstreamEvent,
    stats: &mut RouterStats,
) -> bool {
    match events {
        Some(tx) if tx.try_send(ev).is_ok() => true,
        _ => {
            stats.events_dropped += 1;
            false
        }
    }
}

/// Sequence numbers of one layer on their way into an upstream NACK.
#[derive(Debug, Default)]
pub(super) struct UpstreamNack {
    pending: Option<(u8, Vec<u16>)>,
}

impl UpstreamNack {
    /// Adds `seq` of `layer`; a different layer than the pending one sends that first.
    pub fn push(
        &mut self,
        track: TrackId,
        layer: u8,
        seq: u16,
        events: Option<&Sender<UpstreamEvent>>,
        stats: &mut RouterStats,
    ) {
        if self.pending.as_ref().is_some_and(|(l, _)| *l != layer) {
            self.flush(track, events, stats);
        }
        let (_, seqs) = self.pending.get_or_insert_with(|| (layer, Vec::new()));
        if seqs.len() < MAX_NACK_UPSTREAM {
            seqs.push(seq);
        }
    }

    pub fn flush(
        &mut self,
        track: TrackId,
        events: Option<&Sender<UpstreamEvent>>,
        stats: &mut RouterStats,
    ) {
        if let Some((layer, seqs)) = self.pending.take() {
            let n = seqs.len() as u64;
            let ev = UpstreamEvent::NackUpstream { track, layer, seqs };
            if emit(events, ev, stats) {
                stats.nack_upstream += n;
            }
        }
    }
}

impl Router {
    /// A packet of a remote track from the link, on the track's home worker.
    pub(super) fn on_link_media(
        &mut self,
        now: Micros,
        track: TrackId,
        layer: u8,
        keyframe: bool,
        packet: Bytes,
        out: &mut Output<RouterHandoff>,
    ) {
        let worker = self.worker;
        let Some((ti, t)) = self
            .track_by_id
            .get(&track)
            .and_then(|&ti| Some((ti, self.tracks[ti].as_mut()?)))
            .filter(|(_, t)| t.remote && t.home == worker)
        else {
            self.stats.drop_link_unknown_track += 1;
            return;
        };
        let (Ok(p), Some(l)) = (
            RtpPacket::parse(&packet),
            t.layers.get_mut(usize::from(layer)),
        ) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let (ssrc, seq) = (p.ssrc(), p.sequence_number());
        if p.payload().is_empty() {
            // The publishing node forwards no padding; nothing for subscribers anyway.
            self.stats.drop_malformed += 1;
            return;
        }
        if l.cache
            .get(seq)
            .is_some_and(|c| c.get(8..12) == Some(&ssrc.to_be_bytes()[..]))
        {
            // An upstream repair of a packet that got here after all, or one asked for
            // twice.
            self.stats.drop_duplicate += 1;
            return;
        }
        self.stats.link_in += 1;
        l.ssrc = Some(ssrc);
        l.cache.insert(seq, &packet);
        l.last_packet_at = Some(now);
        l.rate.add(now, packet.len());
        self.fan_out(now, ti, layer, keyframe, &packet, Some(&packet), out);
    }

    /// A far node lost these packets of a layer it subscribes to: resent from the cache
    /// to that node alone.
    pub(super) fn on_link_nack(
        &mut self,
        track: TrackId,
        node: u32,
        layer: u8,
        seqs: &[u16],
        out: &mut Output<RouterHandoff>,
    ) {
        let seqs = &seqs[..seqs.len().min(MAX_NACK_UPSTREAM)];
        let Self {
            tracks,
            track_by_id,
            stats,
            pool,
            worker,
            ..
        } = self;
        let Some(t) = track_by_id
            .get(&track)
            .and_then(|&ti| tracks[ti].as_ref())
            .filter(|t| t.home == *worker && t.links.contains(&(node, layer)))
        else {
            stats.link_nack_miss += seqs.len() as u64;
            return;
        };
        let Some(l) = t.layers.get(usize::from(layer)) else {
            stats.link_nack_miss += seqs.len() as u64;
            return;
        };
        let ssrc = l.ssrc.map(u32::to_be_bytes);
        for &seq in seqs {
            // The cache is indexed by sequence number alone: only the layer's current
            // stream answers.
            let cached = l
                .cache
                .get(seq)
                .filter(|p| ssrc.is_some_and(|s| p.get(8..12) == Some(&s[..])));
            let Some(pkt) = cached else {
                stats.link_nack_miss += 1;
                continue;
            };
            let keyframe = RtpPacket::parse(pkt).is_ok_and(|p| is_keyframe(t.codec, p.payload()));
            out.links.push(LinkPacket {
                node,
                track,
                layer,
                keyframe,
                packet: pool.share(pkt),
            });
            stats.link_retransmits += 1;
        }
    }

    /// On a remote track's home worker: the keyframe request [`Router::request_keyframe`]
    /// let through goes upstream.
    pub(super) fn keyframe_upstream(&mut self, ti: TrackIdx, layer: u8) {
        let Some(track) = self.tracks.get(ti).and_then(Option::as_ref) else {
            return;
        };
        let ev = UpstreamEvent::KeyframeRequest {
            track: track.id,
            layer,
        };
        if emit(self.config.upstream.as_ref(), ev, &mut self.stats) {
            self.stats.keyframe_requests_upstream += 1;
        }
    }
}
