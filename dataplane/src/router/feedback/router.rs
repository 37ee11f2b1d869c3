//! The router's side of feedback: taking in subscribers' and publishers' reports,
//! writing ours on the timer, and fitting layers to the estimates.

use super::{CNAME, MAX_LAYERS, TWCC_MAX_STATUSES, TWCC_RING, choose_layer, ntp_mid32, ntp_time};
use crate::engine::{Micros, Output};
use crate::router::session::{NO_LAYER, Session, Subscription};
use crate::router::track::Track;
use crate::router::{
    JITTER_US_BOUNDS, LOSS_PPM_BOUNDS, RTT_US_BOUNDS, Router, RouterHandoff, SessionId, SessionIdx,
    TrackId, send_rtcp,
};
use crate::rtcp::{ReportBlock, ReportBlocks, RtcpPacket};
use crate::rtp::RtpPacket;

/// Report blocks in one RR (the count field has five bits).
const MAX_BLOCKS: usize = 31;
/// SSRCs one REMB lists.
const MAX_REMB_SSRCS: usize = 16;
/// Sender reports packed into one datagram (28 bytes each).
const SRS_PER_DATAGRAM: usize = 16;
/// Room left in an egress slot for the SRTCP tag and index.
/// An RTT above this from an echoed SR is garbage (a wrong or very old LSR).
const MAX_RTT_US: Micros = 10_000_000;

/// Where the element `id` carrying a two-byte value (a transport-wide sequence number)
/// lies in `pkt`.
pub(crate) fn twcc_offset(pkt: &[u8], id: u8) -> Option<usize> {
    RtpPacket::parse_header(pkt)
        .ok()?
        .extensions()
        .map_while(Result::ok)
        .find(|e| e.id == id && e.data.len() == 2)
        .map(|e| e.offset)
}

/// Whether the estimate chooses this subscription's layer.
fn adaptive(sub: &Subscription, track: &Track) -> bool {
    !sub.pinned && track.layers.len() > 1
}

impl Router {
    /// A subscriber session's bandwidth estimate in bits per second, once it has sent
    /// REMB, receiver reports or TWCC feedback.
    pub fn estimate(&self, session: SessionId) -> Option<u64> {
        let si = *self.session_by_id.get(&session)?;
        self.session(si)?.feedback.estimator.estimate()
    }

    /// Round-trip time to a subscriber, from its reports on our SRs.
    pub fn rtt(&self, session: SessionId) -> Option<Micros> {
        let si = *self.session_by_id.get(&session)?;
        self.session(si)?.feedback.estimator.rtt()
    }

    /// Incoming bitrate of a track's layer as this worker sees it.
    pub fn layer_bitrate(&self, now: Micros, track: TrackId, layer: u8) -> Option<u64> {
        let ti = *self.track_by_id.get(&track)?;
        let l = self.tracks[ti].as_ref()?.layers.get(usize::from(layer))?;
        Some(l.rate.rate(now))
    }

    /// Feedback packets of an incoming compound RTCP: reports, REMB and TWCC.
    pub(crate) fn on_feedback_rtcp(
        &mut self,
        now: Micros,
        si: SessionIdx,
        packet: &RtcpPacket<'_>,
    ) {
        match packet {
            RtcpPacket::SenderReport(sr) => {
                self.on_sender_report(now, si, sr.ssrc, sr.ntp_time);
                self.on_report_blocks(now, si, sr.blocks);
            }
            RtcpPacket::ReceiverReport(rr) => self.on_report_blocks(now, si, rr.blocks),
            RtcpPacket::Remb(remb) => {
                if let Some(s) = self.sessions[si].as_mut() {
                    s.feedback.estimator.on_remb(remb.bitrate);
                }
            }
            RtcpPacket::TransportCc(fb) => {
                let Some(s) = self.sessions[si].as_mut() else {
                    return;
                };
                let sent = s.feedback.egress.rate(now);
                if let Some(sample) = s
                    .feedback
                    .twcc_out
                    .as_mut()
                    .and_then(|t| t.on_feedback(now, fb))
                {
                    s.feedback
                        .estimator
                        .on_twcc(now, &sample, sent, &self.config.feedback);
                }
            }
            _ => {}
        }
    }

    /// A publisher's SR: remembered on its layer for the LSR/DLSR of our reports.
    fn on_sender_report(&mut self, now: Micros, si: SessionIdx, ssrc: u32, ntp: u64) {
        let Some(sess) = self.sessions[si].as_ref() else {
            return;
        };
        for &ti in &sess.publishes {
            if let Some(track) = self.tracks[ti].as_mut()
                && let Some((layer, false)) = track.layer_of(ssrc)
            {
                track.layers[usize::from(layer)]
                    .recv
                    .on_sender_report(now, ntp);
                return;
            }
        }
    }

    /// A subscriber's report blocks on the streams we send it: loss for the estimate
    /// (weighted by the packets each stream expected since its last report), and the
    /// round-trip time when a block echoes one of our SRs.
    fn on_report_blocks(&mut self, now: Micros, si: SessionIdx, blocks: ReportBlocks<'_>) {
        let config = &self.config.feedback;
        let Some(sess) = self.sessions[si].as_mut() else {
            return;
        };
        let (mut lost, mut expected) = (0u64, 0u64);
        for b in blocks.iter() {
            let Some(sub) = sess.subscriptions.iter_mut().find(|s| s.ssrc == b.ssrc) else {
                continue;
            };
            let interval = match sub.fb.rr_highest {
                Some(prev) => u64::from(b.extended_highest_seq.wrapping_sub(prev).min(10_000)),
                // The first report's interval is unknown: count it as one packet.
                None => 1,
            };
            sub.fb.rr_highest = Some(b.extended_highest_seq);
            expected += interval;
            lost += interval * u64::from(b.fraction_lost);
            let quality = &mut self.stats.quality;
            quality.loss_ppm.observe(
                &LOSS_PPM_BOUNDS,
                u64::from(b.fraction_lost) * 1_000_000 / 256,
            );
            if let Some(track) = self.tracks.get(sub.track).and_then(Option::as_ref)
                && track.clock_rate > 0
            {
                let jitter = u64::from(b.jitter) * 1_000_000 / u64::from(track.clock_rate);
                quality.jitter_us.observe(&JITTER_US_BOUNDS, jitter);
            }
            if b.last_sr != 0 {
                let rtt = ntp_mid32(ntp_time(now, config.ntp_offset))
                    .wrapping_sub(b.last_sr)
                    .wrapping_sub(b.delay_since_last_sr);
                let rtt = (u64::from(rtt) * 1_000_000) >> 16;
                if rtt < MAX_RTT_US {
                    sess.feedback.estimator.on_rtt(rtt);
                    quality.rtt_us.observe(&RTT_US_BOUNDS, rtt);
                }
            }
        }
        if expected > 0 {
            let loss = lost as f64 / 256.0 / expected as f64;
            let sent = sess.feedback.egress.rate(now);
            sess.feedback
                .estimator
                .on_report_loss(now, loss, sent, config);
        }
    }

    /// Timer work: TWCC feedback and reports for every session that is due.
    pub(crate) fn send_feedback(&mut self, now: Micros, out: &mut Output<RouterHandoff>) {
        let Router {
            sessions,
            tracks,
            stats,
            config,
            ..
        } = self;
        let config = &config.feedback;
        for sess in sessions.iter_mut().flatten() {
            let Session {
                feedback,
                srtp_out,
                remote,
                rtcp_ssrc,
                publishes,
                subscriptions,
                ..
            } = sess;
            let (remote, rtcp_ssrc) = (*remote, *rtcp_ssrc);
            if let Some(twcc) = feedback.twcc_in.as_mut()
                && now >= feedback.next_twcc
            {
                feedback.next_twcc = now + config.twcc_interval;
                for _ in 0..TWCC_RING / TWCC_MAX_STATUSES + 2 {
                    if !twcc.pending() {
                        break;
                    }
                    // A failed write (a range with no arrival) still moved the
                    // receiver on; the loop is bounded either way.
                    if send_rtcp(&mut out.egress, remote, srtp_out, |w| {
                        twcc.write(w, rtcp_ssrc).ok().map(drop)
                    }) {
                        stats.rtcp_out += 1;
                        stats.twcc_feedback += 1;
                    }
                }
            }
            if now < feedback.next_report {
                continue;
            }
            feedback.next_report = now + config.report_interval;

            // Receiver report on every layer this session publishes, with a REMB ceiling.
            let mut blocks = [ReportBlock::default(); MAX_BLOCKS];
            let mut ssrcs = [0u32; MAX_REMB_SSRCS];
            let (mut nb, mut ns) = (0, 0);
            for &ti in publishes.iter() {
                let Some(track) = tracks[ti].as_mut() else {
                    continue;
                };
                for layer in &mut track.layers {
                    if let Some(ssrc) = layer.ssrc
                        && layer.recv.has_packets()
                        && nb < MAX_BLOCKS
                    {
                        blocks[nb] = layer.recv.report_block(ssrc, now);
                        nb += 1;
                        if ns < MAX_REMB_SSRCS {
                            ssrcs[ns] = ssrc;
                            ns += 1;
                        }
                    }
                }
            }
            if nb > 0 {
                let sent = send_rtcp(&mut out.egress, remote, srtp_out, |w| {
                    w.receiver_report(rtcp_ssrc, &blocks[..nb]).ok()?;
                    w.sdes_cname(rtcp_ssrc, CNAME).ok()?;
                    if let Some(bitrate) = config.publisher_remb {
                        w.remb(rtcp_ssrc, bitrate, &ssrcs[..ns]).ok()?;
                    }
                    Some(())
                });
                if sent {
                    stats.rtcp_out += 1;
                    stats.receiver_reports += 1;
                }
            }

            // Sender reports for every subscription that has sent something, packed.
            let ntp = ntp_time(now, config.ntp_offset);
            let mut i = 0;
            while i < subscriptions.len() {
                let (mut j, mut wrote) = (i, 0);
                let sent = send_rtcp(&mut out.egress, remote, srtp_out, |w| {
                    while j < subscriptions.len() && wrote < SRS_PER_DATAGRAM {
                        let sub = &subscriptions[j];
                        j += 1;
                        let Some(rtp_time) = tracks[sub.track]
                            .as_ref()
                            .and_then(|t| sub.fb.sent.rtp_time_at(now, t.clock_rate))
                        else {
                            continue;
                        };
                        let s = &sub.fb.sent;
                        if w.sender_report(sub.ssrc, ntp, rtp_time, s.packets, s.octets, &[])
                            .is_err()
                        {
                            j -= 1;
                            break;
                        }
                        wrote += 1;
                    }
                    Some(())
                });
                if sent {
                    stats.rtcp_out += 1;
                    stats.sender_reports += wrote as u64;
                }
                if j == i {
                    break;
                }
                i = j;
            }
        }
    }

    /// Fits every adaptive subscription's target layer to its session's estimate.
    ///
    /// A session's estimate is shared by its subscriptions: pinned and single-layer ones
    /// (audio) take what they use first, every adaptive one is granted its lowest live
    /// layer, and what remains goes to upgrades in subscription order.
    pub(crate) fn choose_layers(&mut self, now: Micros) {
        let Router {
            sessions,
            tracks,
            stats,
            config,
            ..
        } = self;
        let config = &config.feedback;
        let live =
            |t: Option<Micros>| t.is_some_and(|t| now.saturating_sub(t) < config.layer_timeout);
        for sess in sessions.iter_mut().flatten() {
            let Some(estimate) = sess.feedback.estimator.estimate() else {
                continue;
            };
            let (mut fixed, mut floors) = (0u64, 0u64);
            for sub in &sess.subscriptions {
                let Some(track) = tracks[sub.track].as_ref() else {
                    continue;
                };
                if adaptive(sub, track) {
                    floors += track
                        .layers
                        .iter()
                        .find(|l| live(l.last_packet_at))
                        .map_or(0, |l| l.rate.rate(now));
                } else {
                    let l = if sub.layer == NO_LAYER {
                        sub.target
                    } else {
                        sub.layer
                    };
                    fixed += track
                        .layers
                        .get(usize::from(l))
                        .map_or(0, |l| l.rate.rate(now));
                }
            }
            let mut spare = estimate.saturating_sub(fixed + floors);
            for sub in &mut sess.subscriptions {
                let Some(track) = tracks[sub.track].as_ref() else {
                    continue;
                };
                if !adaptive(sub, track) {
                    continue;
                }
                let mut rates = [None; MAX_LAYERS];
                let n = track.layers.len().min(MAX_LAYERS);
                for (r, l) in rates.iter_mut().zip(&track.layers) {
                    *r = live(l.last_packet_at).then(|| l.rate.rate(now));
                }
                let floor = rates.iter().flatten().next().copied().unwrap_or(0);
                let target = choose_layer(
                    now,
                    sub.target,
                    &rates[..n],
                    spare + floor,
                    config,
                    &mut sub.fb.up_since,
                );
                if target != sub.target {
                    sub.target = target;
                    stats.target_changes += 1;
                }
                let used = rates
                    .get(usize::from(target))
                    .copied()
                    .flatten()
                    .unwrap_or(0);
                spare = spare.saturating_sub(used.saturating_sub(floor));
            }
        }
    }
}
