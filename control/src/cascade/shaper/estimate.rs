//! What a link can carry, from its QUIC connection's state.
//!
//! The model rate is the congestion controller's own: BBR's pacing rate (its bottleneck
//! bandwidth times a gain that cycles around 1 every eight round trips), kept while the
//! link is app-limited. Without one (Cubic), twice the window over the smoothed round
//! trip: a window-based controller grows its window only while the window is what
//! limits sending, so an estimate of window/RTT would keep media below it and the
//! window where it is for good; offering more lets the window grow, and the backlog
//! rule below says where the link really stops. Readings are averaged (BBR's gain
//! cycle and ack noise would otherwise shed and restore layers by turns).
//!
//! The model can be wrong in one way that matters: above what the path delivers. The
//! datagram send buffer shows it. When datagrams stay queued over two readings, quinn
//! has been sending as fast as its controller lets it all along, so the bytes it sent
//! since the backlog began (over the last second at most: one 100 ms reading can catch
//! a ProbeRTT dip) are what the link carries now, and the estimate falls to that at
//! once.

use crate::cluster::LinkHandle;
use crate::cluster::transport::DATAGRAM_SEND_BUFFER;
use sluice_dataplane::engine::Micros;
use std::collections::VecDeque;

/// One reading of a link's transport state (`cluster::LinkStats` plus the controller's
/// pacing rate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkSample {
    /// Smoothed round-trip time, µs.
    pub rtt: Micros,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// The controller's pacing rate in bits per second, if it has one (BBR does).
    pub pacing_bps: Option<u64>,
    /// UDP bytes sent on the link so far.
    pub tx_bytes: u64,
    /// Datagram bytes waiting in the send buffer.
    pub queued_bytes: u64,
}

impl LinkSample {
    /// Reads a link now.
    pub fn of(link: &LinkHandle) -> Self {
        let s = link.stats();
        LinkSample {
            rtt: s.rtt.as_micros() as Micros,
            cwnd: s.cwnd,
            pacing_bps: link.connection().congestion_state().metrics().pacing_rate,
            tx_bytes: s.udp_tx_bytes,
            queued_bytes: DATAGRAM_SEND_BUFFER.saturating_sub(s.datagram_send_buffer_space) as u64,
        }
    }
}

/// Readings closer together than this say too little about a rate.
const MIN_INTERVAL: Micros = 20_000;
/// The send buffer is backlogged when it holds more than this much time at the model
/// rate (a keyframe burst drains faster)...
const BACKLOG: Micros = 50_000;
/// ...never for less than two full datagrams, and always at a quarter of the send
/// buffer (a model far above the path, as quinn's BBR can have, must not put the
/// threshold beyond the buffer, where datagrams are refused instead).
const BACKLOG_MIN_BYTES: u64 = 2 * 1300;
const BACKLOG_MAX_BYTES: u64 = DATAGRAM_SEND_BUFFER as u64 / 4;
/// Window/RTT multiplier for controllers without a pacing rate (module docs).
const WINDOW_PROBE: u64 = 2;
/// A backlogged link's carried rate is measured over at most this long.
const CARRIED_WINDOW: Micros = 1_000_000;
/// Weight of a new model reading in the average (1/4: about four readings).
const NEW_WEIGHT: u64 = 4;

/// What a link carries, as the shaper takes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkEstimate {
    /// Bits per second: the controller's model, or what the link sent while backlogged;
    /// `None` until the connection has a model.
    pub rate: Option<u64>,
    /// Media has been waiting in the send buffer over two readings: more is offered
    /// than the link carries, and `rate` is what it does carry.
    pub saturated: bool,
}

/// One link's estimate, fed a [`LinkSample`] every tick or so.
#[derive(Debug, Clone, Default)]
pub struct LinkEstimator {
    average: Option<u64>,
    /// Recent readings (time, UDP bytes sent), oldest first, spanning at most
    /// [`CARRIED_WINDOW`].
    history: VecDeque<(Micros, u64)>,
    /// The last reading before the current backlog began.
    backlog_from: Option<Micros>,
    estimate: LinkEstimate,
}

impl LinkEstimator {
    pub fn estimate(&self) -> LinkEstimate {
        self.estimate
    }

    /// Takes a reading; returns the new estimate.
    pub fn on_sample(&mut self, now: Micros, s: &LinkSample) -> LinkEstimate {
        let previous = self.history.back().copied();
        if previous.is_some_and(|(at, _)| now < at + MIN_INTERVAL) {
            return self.estimate;
        }
        self.history.push_back((now, s.tx_bytes));
        while self
            .history
            .front()
            .is_some_and(|&(at, _)| at + CARRIED_WINDOW < now)
        {
            self.history.pop_front();
        }
        let model = s.pacing_bps.filter(|&r| r > 0).or_else(|| {
            (s.rtt > 0 && s.cwnd > 0)
                .then(|| s.cwnd.saturating_mul(WINDOW_PROBE * 8 * 1_000_000) / s.rtt)
        });
        let Some(model) = model else {
            return self.estimate;
        };
        let average = match self.average {
            None => model,
            Some(a) => a - a / NEW_WEIGHT + model / NEW_WEIGHT,
        };
        self.average = Some(average);
        let backlog_bytes =
            (average / 8 * BACKLOG / 1_000_000).clamp(BACKLOG_MIN_BYTES, BACKLOG_MAX_BYTES);
        let backlogged = s.queued_bytes > backlog_bytes;
        let was_backlogged = self.backlog_from.is_some();
        self.backlog_from = match (backlogged, self.backlog_from, previous) {
            (false, ..) => None,
            (true, Some(from), _) => Some(from),
            (true, None, Some((at, _))) => Some(at),
            (true, None, None) => None,
        };
        let mut rate = average;
        let mut saturated = false;
        if was_backlogged && let Some(carried) = self.carried(now, s.tx_bytes) {
            saturated = true;
            rate = rate.min(carried);
            // The average must not pull the estimate back above what the link carries.
            self.average = Some(rate);
        }
        self.estimate = LinkEstimate {
            rate: Some(rate),
            saturated,
        };
        self.estimate
    }

    /// What the link sent since the backlog began (over [`CARRIED_WINDOW`] at most),
    /// bits per second.
    fn carried(&self, now: Micros, tx_bytes: u64) -> Option<u64> {
        let from = self.backlog_from?;
        let &(at, bytes) = self.history.iter().find(|&&(at, _)| at >= from)?;
        (now > at).then(|| tx_bytes.saturating_sub(bytes) * 8 * 1_000_000 / (now - at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pacing: Option<u64>, tx: u64, queued: u64) -> LinkSample {
        LinkSample {
            rtt: 40_000,
            cwnd: 100_000,
            pacing_bps: pacing,
            tx_bytes: tx,
            queued_bytes: queued,
        }
    }

    #[test]
    fn nothing_before_a_model_then_the_pacing_rate_averaged() {
        let mut e = LinkEstimator::default();
        let none = LinkSample::default();
        assert_eq!(e.on_sample(0, &none).rate, None);
        assert_eq!(
            e.on_sample(100_000, &sample(Some(10_000_000), 0, 0)),
            LinkEstimate {
                rate: Some(10_000_000),
                saturated: false
            }
        );
        // BBR's gain cycle: one reading at 1.25x moves the estimate a quarter of the way.
        let r = e.on_sample(200_000, &sample(Some(12_500_000), 0, 0)).rate;
        assert_eq!(r, Some(10_625_000));
        // Readings too close together change nothing.
        assert_eq!(e.on_sample(205_000, &sample(Some(1), 0, 0)).rate, r);
    }

    #[test]
    fn window_over_rtt_without_a_pacing_rate() {
        let mut e = LinkEstimator::default();
        // 100 kB per 40 ms = 20 Mbit/s, doubled so that the window can grow.
        assert_eq!(e.on_sample(0, &sample(None, 0, 0)).rate, Some(40_000_000));
    }

    #[test]
    fn a_persistent_backlog_drops_the_estimate_to_what_the_link_sends() {
        let mut e = LinkEstimator::default();
        // The model says 20 Mbit/s; the link sends 1 MB/s = 8 Mbit/s.
        let model = Some(20_000_000);
        e.on_sample(0, &sample(model, 0, 0));
        // One backlogged reading (a burst) is not enough.
        assert_eq!(
            e.on_sample(100_000, &sample(model, 100_000, 200_000)),
            LinkEstimate {
                rate: Some(20_000_000),
                saturated: false
            }
        );
        assert_eq!(
            e.on_sample(200_000, &sample(model, 200_000, 200_000)),
            LinkEstimate {
                rate: Some(8_000_000),
                saturated: true
            }
        );
        // The average restarts from there: the model creeps back only while the
        // backlog is gone.
        let r = e.on_sample(300_000, &sample(model, 300_000, 0));
        assert_eq!(r.rate, Some(8_000_000 - 2_000_000 + 5_000_000));
        assert!(!r.saturated);
        // A small queue (under 50 ms at the rate) is not a backlog.
        let r2 = e.on_sample(400_000, &sample(model, 400_000, 10_000));
        let r3 = e.on_sample(500_000, &sample(model, 500_000, 10_000));
        assert!(r3.rate > r2.rate && r2.rate > r.rate, "{r:?} {r2:?} {r3:?}");
        assert!(!r3.saturated);
    }

    #[test]
    fn an_absurd_model_still_sees_a_backlog_before_the_buffer_is_full() {
        let mut e = LinkEstimator::default();
        // quinn's BBR on a lossy 10 Mbit/s path: a "pacing rate" of 1.6 Gbit/s, whose
        // 50 ms would be 10 MB, far beyond the 256 KiB send buffer.
        let model = Some(1_600_000_000);
        e.on_sample(0, &sample(model, 0, 0));
        e.on_sample(100_000, &sample(model, 125_000, 100_000));
        let r = e.on_sample(200_000, &sample(model, 250_000, 100_000));
        assert_eq!(
            r,
            LinkEstimate {
                rate: Some(10_000_000),
                saturated: true
            }
        );
    }
}
