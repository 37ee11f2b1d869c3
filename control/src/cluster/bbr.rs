//! A BBR-style congestion controller for the links, as a quinn [`Controller`].
//!
//! quinn's own BBR (experimental) does not hold up on a 10 Mbit/s, 40 ms, 1%-loss path:
//! its bandwidth samples (bytes of one ACK over the time since the previous ACK) read
//! ack bunching as bandwidth, it estimated ~190 Mbit/s there, overflowed the queue and
//! then stalled in its loss recovery (see the link benchmark). This one follows the
//! BBR drafts where it matters for media links:
//!
//! - **Delivery rate**: per packet, how much had been delivered when it was sent; when
//!   it is acknowledged, delivered bytes since then over the longer of the send and
//!   ACK intervals (so ACK compression does not read as bandwidth). Samples shorter than
//!   the minimum RTT are discarded.
//! - **Model**: bottleneck bandwidth is the largest sample of the last 10 round trips
//!   (app-limited samples count only when they raise it); the round-trip propagation
//!   time is the smallest RTT sample, re-measured in ProbeRTT when 10 s pass without a
//!   sample near it.
//! - **Window**: quinn paces at 1.25 × window / smoothed RTT and does not take a pacing
//!   rate from its controller, so the model acts through the window: 2.89 × BDP while
//!   the pipe fills (Startup, left when the bandwidth grew less than 25% over 3 rounds),
//!   1 × BDP to drain the queue that built, then 2 × BDP (ProbeBW); in ProbeRTT half a
//!   BDP for 200 ms, gentler on media than BBRv1's four packets.
//! - **Loss**: loss never shrinks the model. A round losing more than 3% of its bytes
//!   caps the window at 85% of what it was, but never below 1.1 BDP, so the pipe stays
//!   full: random loss costs nothing, while a shallow queue that overflows every round
//!   stops being overflowed (the excess over one BDP is what fills and overflows it).
//!   Each clean round lifts the cap by a packet; persistent congestion starts over.
//!
//! The controller reports its bottleneck bandwidth as `metrics().pacing_rate`, which is
//! what the link shaper's estimator (`sluice_control::cascade::shaper::estimate`) reads
//! as the link's model rate.
//!
//! Every link runs it ([`super::transport::Congestion::Bbr`]); `scripts/bench-link.sh`
//! measures it beside quinn's BBR and Cubic through the impairment relay.

use quinn_proto::RttEstimator;
use quinn_proto::congestion::{Controller, ControllerFactory, ControllerMetrics};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STARTUP_GAIN: f64 = 2.89;
const PROBE_BW_GAIN: f64 = 2.0;
const PROBE_RTT_GAIN: f64 = 0.5;
/// Startup ends when the bandwidth grew less than this over...
const FULL_BW_GROWTH: f64 = 1.25;
/// ...this many rounds.
const FULL_BW_ROUNDS: u32 = 3;
const BW_WINDOW_ROUNDS: u64 = 10;
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// An RTT sample within this factor of the minimum keeps the minimum fresh.
const MIN_RTT_FRESH: f64 = 1.25;
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);
/// A round losing more than this share of its bytes caps the window...
const HEAVY_LOSS: f64 = 0.03;
/// ...to this share of what it was, never below this many BDPs (so the pipe stays
/// full and random loss costs no throughput)...
const LOSS_CAP: f64 = 0.85;
const CAP_FLOOR_GAIN: f64 = 1.1;
/// ...if the round carried at least this many packets (fewer say little).
const LOSS_MIN_PACKETS: u64 = 20;
/// Send records kept for delivery-rate samples; a path with more packets in flight
/// loses samples, not correctness.
const MAX_RECORDS: usize = 1 << 16;

/// Settings of [`LinkBbr`]; the factory quinn's transport config takes.
#[derive(Debug, Clone)]
pub struct LinkBbrConfig {
    /// Bytes in flight allowed before the first round trip.
    pub initial_window: u64,
}

impl Default for LinkBbrConfig {
    fn default() -> Self {
        // RFC 9002's recommendation for a 1200-byte datagram path.
        Self {
            initial_window: 14_720,
        }
    }
}

impl ControllerFactory for LinkBbrConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(LinkBbr::new(self.initial_window, now, current_mtu))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// What was true when a packet (or a batch sent at one instant) left.
#[derive(Debug, Clone, Copy)]
struct Sent {
    time: Instant,
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    app_limited: bool,
}

/// Largest value per round over the last [`BW_WINDOW_ROUNDS`] rounds. Old rounds leave
/// only when a new value arrives, so an app-limited stretch keeps the estimate.
#[derive(Debug, Clone, Default)]
struct MaxFilter {
    best: [(u64, u64); BW_WINDOW_ROUNDS as usize],
}

impl MaxFilter {
    fn update(&mut self, round: u64, value: u64) {
        let slot = &mut self.best[(round % BW_WINDOW_ROUNDS) as usize];
        if slot.0 != round {
            *slot = (round, value);
        } else if value > slot.1 {
            slot.1 = value;
        }
        for s in &mut self.best {
            if round.saturating_sub(s.0) >= BW_WINDOW_ROUNDS {
                *s = (0, 0);
            }
        }
    }

    fn get(&self) -> u64 {
        self.best.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// The controller; see the module docs.
#[derive(Debug, Clone)]
pub struct LinkBbr {
    initial_window: u64,
    mtu: u64,
    mode: Mode,
    cwnd: u64,
    /// Bottleneck bandwidth, bytes per second.
    bw: MaxFilter,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    probe_rtt_min: Option<Duration>,
    probe_rtt_done_at: Option<Instant>,
    probe_rtt_round: u64,
    // Delivery-rate sampling.
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    app_limited: bool,
    sent: VecDeque<Sent>,
    /// The most recently sent packet acknowledged in the current ACK batch.
    batch_latest: Option<Sent>,
    batch_min_rtt: Option<Duration>,
    // Rounds.
    round: u64,
    next_round_delivered: u64,
    full_bw: u64,
    full_bw_rounds: u32,
    filled_pipe: bool,
    round_lost: u64,
    round_delivered_from: u64,
    inflight_cap: Option<u64>,
    /// `delivered` at the end of the previous ACK batch.
    batch_delivered_mark: u64,
}

impl LinkBbr {
    pub fn new(initial_window: u64, now: Instant, mtu: u16) -> Self {
        let mtu = u64::from(mtu);
        Self {
            initial_window,
            mtu,
            mode: Mode::Startup,
            cwnd: initial_window.max(4 * mtu),
            bw: MaxFilter::default(),
            min_rtt: None,
            min_rtt_stamp: now,
            probe_rtt_min: None,
            probe_rtt_done_at: None,
            probe_rtt_round: 0,
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited: false,
            sent: VecDeque::new(),
            batch_latest: None,
            batch_min_rtt: None,
            round: 0,
            next_round_delivered: 0,
            full_bw: 0,
            full_bw_rounds: 0,
            filled_pipe: false,
            round_lost: 0,
            round_delivered_from: 0,
            inflight_cap: None,
            batch_delivered_mark: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Bottleneck bandwidth estimate, bytes per second (0 before the first sample).
    pub fn bandwidth(&self) -> u64 {
        self.bw.get()
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    fn min_cwnd(&self) -> u64 {
        4 * self.mtu
    }

    /// Bandwidth-delay product times `gain`, or the initial window before a model.
    fn bdp(&self, gain: f64) -> u64 {
        match (self.bw.get(), self.min_rtt) {
            (bw, Some(rtt)) if bw > 0 => {
                ((bw as f64 * rtt.as_secs_f64() * gain) as u64).max(self.min_cwnd())
            }
            _ => ((self.initial_window as f64 * gain / STARTUP_GAIN) as u64).max(self.min_cwnd()),
        }
    }

    fn sample_rtt(&mut self, now: Instant, rtt: Duration) {
        if self.mode == Mode::ProbeRtt {
            self.probe_rtt_min = Some(self.probe_rtt_min.map_or(rtt, |m| m.min(rtt)));
        }
        match self.min_rtt {
            Some(m) if rtt > m => {
                if rtt.as_secs_f64() <= m.as_secs_f64() * MIN_RTT_FRESH {
                    self.min_rtt_stamp = now;
                }
            }
            _ => {
                self.min_rtt = Some(rtt);
                self.min_rtt_stamp = now;
            }
        }
    }

    /// One delivery-rate sample from the latest packet of an ACK batch.
    fn sample_rate(&mut self, now: Instant, p: Sent) {
        self.first_sent_time = p.time;
        let send_elapsed = p.time.saturating_duration_since(p.first_sent_time);
        let ack_elapsed = now.saturating_duration_since(p.delivered_time);
        let interval = send_elapsed.max(ack_elapsed);
        if interval.is_zero() || self.min_rtt.is_some_and(|m| interval < m) {
            return;
        }
        let rate = ((self.delivered - p.delivered) as f64 / interval.as_secs_f64()) as u64;
        if !p.app_limited || rate >= self.bw.get() {
            self.bw.update(self.round, rate);
        }
    }

    /// Startup's exit test, once per round on samples that were not app-limited.
    fn check_full_pipe(&mut self, app_limited: bool) {
        if self.filled_pipe || app_limited {
            return;
        }
        let bw = self.bw.get();
        if bw as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
            self.full_bw = bw;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        if self.full_bw_rounds >= FULL_BW_ROUNDS {
            self.filled_pipe = true;
        }
    }

    /// Once per round: heavy loss caps the window, clean rounds lift the cap.
    fn check_loss(&mut self) {
        let delivered = self.delivered - self.round_delivered_from;
        let total = delivered + self.round_lost;
        let heavy = total >= LOSS_MIN_PACKETS * self.mtu
            && self.round_lost as f64 > total as f64 * HEAVY_LOSS;
        if heavy && self.filled_pipe {
            let cap = ((self.window() as f64 * LOSS_CAP) as u64).max(self.bdp(CAP_FLOOR_GAIN));
            self.inflight_cap = Some(cap);
        } else if let Some(c) = self.inflight_cap {
            let lifted = c + self.mtu;
            self.inflight_cap = (lifted < self.bdp(PROBE_BW_GAIN)).then_some(lifted);
        }
        self.round_lost = 0;
        self.round_delivered_from = self.delivered;
    }

    fn update_mode(&mut self, now: Instant, in_flight: u64) {
        if self.mode == Mode::Startup && self.filled_pipe {
            self.mode = Mode::Drain;
        }
        if self.mode == Mode::Drain && in_flight <= self.bdp(1.0) {
            self.mode = Mode::ProbeBw;
        }
        if self.mode != Mode::ProbeRtt
            && self.min_rtt.is_some()
            && now.saturating_duration_since(self.min_rtt_stamp) > MIN_RTT_WINDOW
        {
            self.mode = Mode::ProbeRtt;
            self.probe_rtt_min = None;
            self.probe_rtt_done_at = None;
        }
        if self.mode == Mode::ProbeRtt {
            match self.probe_rtt_done_at {
                None if in_flight <= self.bdp(PROBE_RTT_GAIN) => {
                    self.probe_rtt_done_at = Some(now + PROBE_RTT_TIME);
                    self.probe_rtt_round = self.round;
                }
                Some(done) if now >= done && self.round > self.probe_rtt_round => {
                    if let Some(m) = self.probe_rtt_min {
                        self.min_rtt = Some(m);
                    }
                    self.min_rtt_stamp = now;
                    self.mode = if self.filled_pipe {
                        Mode::ProbeBw
                    } else {
                        Mode::Startup
                    };
                }
                _ => {}
            }
        }
    }

    fn update_cwnd(&mut self, acked: u64) {
        let gain = match self.mode {
            Mode::Startup => STARTUP_GAIN,
            Mode::Drain => 1.0,
            Mode::ProbeBw => PROBE_BW_GAIN,
            Mode::ProbeRtt => return,
        };
        let target = self.bdp(gain);
        self.cwnd = if self.filled_pipe {
            (self.cwnd + acked).min(target)
        } else if self.cwnd < target {
            // Filling the pipe: grow by what was acknowledged, like slow start; the
            // target rises with each bandwidth sample.
            self.cwnd + acked
        } else {
            self.cwnd
        };
        self.cwnd = self.cwnd.max(self.min_cwnd());
    }
}

impl Controller for LinkBbr {
    fn on_sent(&mut self, now: Instant, _bytes: u64, _last_packet_number: u64) {
        if self.sent.is_empty() {
            // Nothing was in flight: sampling starts over from here.
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        if self.sent.back().is_some_and(|s| s.time == now) {
            return;
        }
        if self.sent.len() >= MAX_RECORDS {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            time: now,
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.app_limited,
        });
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        self.on_ack_sample(now, sent, bytes, app_limited);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        _largest_packet_num_acked: Option<u64>,
    ) {
        self.end_acks(now, in_flight, app_limited);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        _sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.on_loss(now, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = u64::from(new_mtu);
        self.cwnd = self.cwnd.max(self.min_cwnd());
    }

    fn window(&self) -> u64 {
        let w = match self.mode {
            Mode::ProbeRtt => self.bdp(PROBE_RTT_GAIN),
            _ => self.cwnd,
        };
        match self.inflight_cap {
            Some(cap) => w.min(cap).max(self.min_cwnd()),
            None => w,
        }
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut m = ControllerMetrics::default();
        m.congestion_window = self.window();
        m.pacing_rate = (self.bw.get() > 0).then(|| self.bw.get() * 8);
        m
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.initial_window
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl LinkBbr {
    /// [`Controller::on_ack`] without quinn's RTT estimator (the controller keeps its
    /// own RTT samples), so tests can drive it.
    pub fn on_ack_sample(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        self.app_limited = app_limited;
        self.delivered += bytes;
        self.delivered_time = now;
        let rtt = now.saturating_duration_since(sent);
        self.batch_min_rtt = Some(self.batch_min_rtt.map_or(rtt, |m| m.min(rtt)));
        let Ok(i) = self.sent.binary_search_by(|s| s.time.cmp(&sent)) else {
            return;
        };
        let Some(&p) = self.sent.get(i) else {
            return;
        };
        if self.batch_latest.is_none_or(|l| p.time > l.time) {
            self.batch_latest = Some(p);
        }
    }

    /// [`Controller::on_end_acks`].
    pub fn end_acks(&mut self, now: Instant, in_flight: u64, app_limited: bool) {
        self.app_limited = app_limited;
        if let Some(rtt) = self.batch_min_rtt.take() {
            self.sample_rtt(now, rtt);
        }
        let acked = self.delivered - self.batch_delivered_mark;
        self.batch_delivered_mark = self.delivered;
        if let Some(p) = self.batch_latest.take() {
            // Records up to this one are acknowledged or lost by now.
            while self.sent.front().is_some_and(|s| s.time <= p.time) {
                self.sent.pop_front();
            }
            self.sample_rate(now, p);
            if p.delivered >= self.next_round_delivered {
                self.next_round_delivered = self.delivered;
                self.round += 1;
                self.check_full_pipe(p.app_limited);
                self.check_loss();
            }
        }
        if in_flight == 0 {
            self.sent.clear();
        }
        self.update_mode(now, in_flight);
        self.update_cwnd(acked);
    }

    /// [`Controller::on_congestion_event`].
    pub fn on_loss(&mut self, now: Instant, persistent: bool, lost_bytes: u64) {
        // ECN marks arrive as zero lost bytes; links do not use ECN.
        if lost_bytes == 0 {
            return;
        }
        self.round_lost += lost_bytes;
        if persistent {
            *self = Self::new(self.initial_window, now, self.mtu as u16);
        }
    }
}

#[cfg(test)]
mod tests;
