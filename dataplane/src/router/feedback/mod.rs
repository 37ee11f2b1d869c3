//! RTCP the router originates, and what it learns from the RTCP it receives.
//!
//! Toward publishers: receiver reports per layer ([`ReceiveStats`]), transport-wide CC
//! feedback ([`TwccReceiver`]) and a REMB ceiling — browsers send their upper simulcast
//! layers only once they get congestion feedback. Toward subscribers: sender reports per
//! subscription ([`SendStats`]), which browsers need for audio/video sync, and our own
//! transport-wide sequence numbers on egress ([`TwccSender`]).
//!
//! From subscribers: REMB, receiver-report loss and TWCC feedback feed a per-session
//! [`Estimator`]; every tick the router fits each adaptive subscription's layer to it
//! ([`choose_layer`]). Per-layer incoming bitrates come from [`RateMeter`]s.
//!
//! Everything per packet works on state preallocated when the session, track or
//! subscription is created; the timer path writes into stack arrays and the egress slab.

mod estimate;
mod reports;
mod router;
mod twcc;

pub(crate) use router::twcc_offset;

pub use estimate::{Estimator, MAX_LAYERS, RateMeter, choose_layer};
pub use reports::{ReceiveStats, SendStats};
pub use twcc::{TWCC_MAX_STATUSES, TWCC_RING, TwccReceiver, TwccSample, TwccSender};

use crate::engine::Micros;

/// CNAME in the SDES of the node's receiver reports.
pub const CNAME: &[u8] = b"sluice";

/// NTP time of 2024-01-01T00:00:00Z in µs: the default [`FeedbackConfig::ntp_offset`].
pub const NTP_2024_US: Micros = 3_913_056_000 * 1_000_000;

#[derive(Debug, Clone)]
pub struct FeedbackConfig {
    /// Receiver reports to publishers and sender reports to subscribers, per session.
    pub report_interval: Micros,
    /// Transport-wide CC feedback to publishers that negotiated the extension (runs at
    /// tick granularity, so at most once per tick).
    pub twcc_interval: Micros,
    /// Added to `now` to get NTP time in µs since 1900. The driver sets it once at start
    /// (wall clock minus its monotonic clock); receivers only need it steady, since A/V
    /// sync compares the SRs of one sender with each other. Tests use 0.
    pub ntp_offset: Micros,
    /// REMB sent to publishers with each receiver report: a generous ceiling, so that a
    /// browser ramps up to its top layer. `None`: no REMB.
    pub publisher_remb: Option<u64>,
    /// Where the loss-based estimate starts when a subscriber's first loss report
    /// arrives before any REMB (bits per second; raised to 1.5x what it is being sent).
    pub initial_estimate: u64,
    pub min_estimate: u64,
    pub max_estimate: u64,
    /// A layer is moved up to only while its bitrate fits this share of the estimate;
    /// the current layer is kept while it fits the whole estimate.
    pub headroom_percent: u32,
    /// How long the estimate must keep fitting a higher layer before the subscription
    /// moves up (going down is immediate).
    pub layer_up_hold: Micros,
    /// A layer with no packet for this long is not chosen: the publisher stopped it.
    pub layer_timeout: Micros,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            report_interval: 1_000_000,
            twcc_interval: 50_000,
            ntp_offset: NTP_2024_US,
            publisher_remb: Some(10_000_000),
            initial_estimate: 2_000_000,
            min_estimate: 50_000,
            max_estimate: 50_000_000,
            headroom_percent: 90,
            layer_up_hold: 2_500_000,
            layer_timeout: 1_000_000,
        }
    }
}

/// 64-bit NTP timestamp (seconds since 1900 . 2^-32 fractions) for `now`.
pub fn ntp_time(now: Micros, offset: Micros) -> u64 {
    let us = now.wrapping_add(offset);
    let secs = us / 1_000_000;
    let frac = ((us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp, as LSR fields carry it.
pub fn ntp_mid32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Feedback state of one session (a transport: TWCC and the estimate are per transport).
#[derive(Debug, Default)]
pub struct SessionFeedback {
    /// Arrivals of the peer's transport-wide numbered packets, once it publishes.
    pub twcc_in: Option<TwccReceiver>,
    /// Our transport-wide numbers on what we send it, once it subscribes.
    pub twcc_out: Option<TwccSender>,
    pub estimator: Estimator,
    /// Bytes sent to the peer (SRTP), for the loss rule's throughput.
    pub egress: RateMeter,
    pub next_report: Micros,
    pub next_twcc: Micros,
}

impl SessionFeedback {
    pub fn new(now: Micros, config: &FeedbackConfig) -> Self {
        Self {
            next_report: now + config.report_interval,
            next_twcc: now + config.twcc_interval,
            ..Self::default()
        }
    }

    /// A datagram of `size` bytes went to the peer, numbered `twcc` if stamped.
    pub fn on_sent(&mut self, now: Micros, twcc: Option<u16>, size: usize) {
        self.egress.add(now, size);
        if let (Some(seq), Some(t)) = (twcc, &mut self.twcc_out) {
            t.on_sent(seq, now, size);
        }
    }
}

/// Feedback state of one subscription.
#[derive(Debug, Default)]
pub struct SubscriptionFeedback {
    pub sent: SendStats,
    /// Since when the estimate has fitted a layer above the target.
    pub up_since: Option<Micros>,
    /// Extended highest sequence number of the subscriber's last report block on us.
    pub rr_highest: Option<u32>,
}

#[cfg(test)]
mod tests;
