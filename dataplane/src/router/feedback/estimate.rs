//! How much a subscriber can take, how much each layer costs, and which layer fits.
//!
//! The estimate of a subscriber session is the smaller of two bounds, each present once
//! the subscriber has said something:
//!
//! - **REMB**: the bitrate the subscriber's own (delay-based) estimator announces, used
//!   as is.
//! - **Loss** (GCC's loss-based rule): on each loss report — the fraction lost of a
//!   receiver report, or a TWCC window's loss — over 10% loss sets the bound to
//!   `base * (1 - loss/2)`, where `base` is the smaller of the bound and the measured
//!   throughput (the TWCC delivered rate, else what we sent), so that a bound far above
//!   what is actually sent still falls at once; under 2% raises it by 8% per second
//!   since the previous report; in between holds it. It starts at the larger of
//!   [`FeedbackConfig::initial_estimate`] and 1.5x what we send, and stays within
//!   [`FeedbackConfig::min_estimate`], [`FeedbackConfig::max_estimate`]. While TWCC
//!   samples arrive (within 2 s), receiver-report loss is ignored: it is the same loss,
//!   coarser.
//!
//! There is no delay-based bound of our own: browsers put theirs in REMB, and a loss
//! rule with a throughput base is robust without probing. A session that never sends
//! feedback has no estimate, and its subscriptions keep the layer they were given.

use super::{FeedbackConfig, TwccSample};
use crate::engine::Micros;

/// Bitrate windows are this long...
pub const RATE_WINDOW: Micros = 1_000_000;
const BUCKETS: usize = 10;
/// ...in buckets of this.
const BUCKET: Micros = RATE_WINDOW / BUCKETS as Micros;

/// Bytes over a sliding one-second window, in ten fixed buckets: adding is a division
/// and an add, reading sums ten numbers.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    bytes: [u32; BUCKETS],
    /// Bucket number (time / BUCKET) of the newest bucket written.
    newest: u64,
    first_at: Option<Micros>,
}

impl RateMeter {
    pub fn add(&mut self, now: Micros, bytes: usize) {
        let b = now / BUCKET;
        if self.first_at.is_none() {
            self.first_at = Some(now);
            self.newest = b;
        }
        if b > self.newest {
            let stale = (b - self.newest).min(BUCKETS as u64);
            for k in 1..=stale {
                self.bytes[((self.newest + k) % BUCKETS as u64) as usize] = 0;
            }
            self.newest = b;
        }
        // A time before the newest bucket (not expected) counts in the newest.
        let slot = &mut self.bytes[(self.newest % BUCKETS as u64) as usize];
        *slot = slot.saturating_add(bytes.min(u32::MAX as usize) as u32);
    }

    /// Bits per second over the last second, or over the time since the first byte
    /// while that is shorter (but at least a bucket).
    pub fn rate(&self, now: Micros) -> u64 {
        let Some(first) = self.first_at else {
            return 0;
        };
        let b = now / BUCKET;
        let oldest = b.saturating_sub(BUCKETS as u64 - 1);
        let sum: u64 = (oldest.max(self.newest.saturating_sub(BUCKETS as u64 - 1))
            ..=self.newest.min(b))
            .map(|id| u64::from(self.bytes[(id % BUCKETS as u64) as usize]))
            .sum();
        let window = (BUCKETS as u64 - 1) * BUCKET + now % BUCKET;
        let span = window.min(now.saturating_sub(first)).max(BUCKET);
        sum * 8 * 1_000_000 / span
    }
}

/// Over this share of loss the bound falls...
const LOSS_HIGH: f64 = 0.10;
/// ...under this it rises...
const LOSS_LOW: f64 = 0.02;
/// ...by this much per second.
const INCREASE_PER_SEC: f64 = 0.08;
/// Receiver-report loss is ignored this long after a TWCC sample.
const TWCC_PREFERRED_FOR: Micros = 2_000_000;

/// One subscriber session's bandwidth estimate; see the module docs for the rule.
#[derive(Debug, Clone, Default)]
pub struct Estimator {
    remb: Option<u64>,
    loss_based: Option<u64>,
    last_loss_at: Micros,
    twcc_at: Option<Micros>,
    rtt: Option<Micros>,
}

impl Estimator {
    /// Bits per second, or `None` before the subscriber said anything.
    pub fn estimate(&self) -> Option<u64> {
        match (self.remb, self.loss_based) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    #[cfg(test)]
    pub fn loss_based(&self) -> Option<u64> {
        self.loss_based
    }

    /// Round-trip time from the last receiver report that echoed one of our SRs.
    pub fn rtt(&self) -> Option<Micros> {
        self.rtt
    }

    pub fn on_remb(&mut self, bitrate: u64) {
        self.remb = Some(bitrate);
    }

    pub fn on_rtt(&mut self, rtt: Micros) {
        self.rtt = Some(rtt);
    }

    /// Loss from receiver reports: `loss` 0 to 1; `sent` is our egress bitrate.
    pub fn on_report_loss(&mut self, now: Micros, loss: f64, sent: u64, config: &FeedbackConfig) {
        if self
            .twcc_at
            .is_some_and(|t| now.saturating_sub(t) < TWCC_PREFERRED_FOR)
        {
            return;
        }
        self.on_loss(now, loss, sent, config);
    }

    /// A window of the subscriber's TWCC feedback.
    pub fn on_twcc(
        &mut self,
        now: Micros,
        sample: &TwccSample,
        sent: u64,
        config: &FeedbackConfig,
    ) {
        self.twcc_at = Some(now);
        self.on_loss(now, sample.loss, sample.delivered.unwrap_or(sent), config);
    }

    fn on_loss(&mut self, now: Micros, loss: f64, throughput: u64, config: &FeedbackConfig) {
        let (current, since) = match self.loss_based {
            Some(b) => (b, now.saturating_sub(self.last_loss_at)),
            None => (config.initial_estimate.max(throughput * 3 / 2), 0),
        };
        let next = if loss > LOSS_HIGH {
            let base = match throughput {
                0 => current,
                t => current.min(t),
            };
            (base as f64 * (1.0 - 0.5 * loss.min(1.0))).round() as u64
        } else if loss < LOSS_LOW {
            let secs = since.min(1_000_000) as f64 / 1e6;
            (current as f64 * (1.0 + INCREASE_PER_SEC * secs)).round() as u64
        } else {
            current
        };
        self.loss_based = Some(next.clamp(config.min_estimate, config.max_estimate));
        self.last_loss_at = now;
    }
}

/// Layers the estimate chooses among; higher ones are never chosen.
pub const MAX_LAYERS: usize = 8;

/// The target layer for one adaptive subscription.
///
/// `rates[l]` is layer `l`'s bitrate, `None` when it is not live (no packet for
/// [`FeedbackConfig::layer_timeout`]); `budget` is the share of the estimate this
/// subscription may use. The target drops at once to the highest live layer that fits
/// the budget (the lowest live one when none does) if it no longer fits or died; it
/// rises to the highest live layer fitting [`FeedbackConfig::headroom_percent`] of the
/// budget once a higher layer has fitted continuously for
/// [`FeedbackConfig::layer_up_hold`] (`up_since` keeps that time). With no live layer
/// nothing changes.
pub fn choose_layer(
    now: Micros,
    target: u8,
    rates: &[Option<u64>],
    budget: u64,
    config: &FeedbackConfig,
    up_since: &mut Option<Micros>,
) -> u8 {
    let n = rates.len().min(MAX_LAYERS);
    let Some(lowest) = (0..n).find(|&l| rates[l].is_some()) else {
        *up_since = None;
        return target;
    };
    let fits = |l: usize, b: u64| rates[l].is_some_and(|r| r <= b);
    let keep = (0..n).rev().find(|&l| fits(l, budget)).unwrap_or(lowest);
    let t = usize::from(target);
    if t >= n || rates[t].is_none() || t > keep {
        *up_since = None;
        return keep as u8;
    }
    let up_budget = budget / 100 * u64::from(config.headroom_percent);
    let up = (0..n).rev().find(|&l| fits(l, up_budget)).unwrap_or(lowest);
    if up <= t {
        *up_since = None;
        return target;
    }
    let since = *up_since.get_or_insert(now);
    if now.saturating_sub(since) >= config.layer_up_hold {
        *up_since = None;
        up as u8
    } else {
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FeedbackConfig {
        FeedbackConfig {
            initial_estimate: 1_000_000,
            ..FeedbackConfig::default()
        }
    }

    #[test]
    fn rate_meter_windows() {
        let mut m = RateMeter::default();
        assert_eq!(m.rate(0), 0);
        // 1250 bytes every 10 ms = 1 Mbit/s.
        for i in 0..300u64 {
            m.add(5_000_000 + i * 10_000, 1250);
        }
        let r = m.rate(5_000_000 + 2_995_000);
        assert!((990_000..=1_010_000).contains(&r), "{r}");
        // Young: rate over the time since the first byte.
        let mut y = RateMeter::default();
        for i in 0..30u64 {
            y.add(i * 10_000, 1250);
        }
        let r = y.rate(300_000);
        assert!((990_000..=1_010_000).contains(&r), "{r}");
        // Silent for a while: the window empties.
        assert_eq!(m.rate(9_000_000), 0);
        m.add(9_000_000, 100);
        assert_eq!(m.rate(9_050_000), 100 * 8 * 1_000_000 / 950_000);
    }

    #[test]
    fn remb_sets_the_estimate() {
        let mut e = Estimator::default();
        assert_eq!(e.estimate(), None);
        e.on_remb(700_000);
        assert_eq!(e.estimate(), Some(700_000));
        e.on_remb(3_000_000);
        assert_eq!(e.estimate(), Some(3_000_000));
    }

    #[test]
    fn loss_drives_it_down_and_low_loss_back_up() {
        let c = config();
        let mut e = Estimator::default();
        // First report: seeded at 1.5x what is sent (above the initial value), no change.
        e.on_report_loss(1_000_000, 0.0, 2_000_000, &c);
        assert_eq!(e.estimate(), Some(3_000_000));
        // 30% loss: from what is actually sent, times 0.85.
        e.on_report_loss(2_000_000, 0.3, 2_000_000, &c);
        assert_eq!(e.estimate(), Some(1_700_000));
        e.on_report_loss(3_000_000, 0.3, 1_700_000, &c);
        assert_eq!(e.estimate(), Some(1_445_000));
        // 5%: held.
        e.on_report_loss(4_000_000, 0.05, 1_400_000, &c);
        assert_eq!(e.estimate(), Some(1_445_000));
        // No loss: +8% per second, pro rata.
        e.on_report_loss(5_000_000, 0.0, 1_400_000, &c);
        assert_eq!(e.estimate(), Some(1_560_600));
        e.on_report_loss(5_500_000, 0.0, 1_400_000, &c);
        assert_eq!(e.estimate(), Some(1_623_024));
        // REMB below caps it; the smaller bound wins.
        e.on_remb(900_000);
        assert_eq!(e.estimate(), Some(900_000));
        // Total loss bottoms out at the floor.
        for i in 0..40 {
            e.on_report_loss(6_000_000 + i * 1_000_000, 1.0, 0, &c);
        }
        assert_eq!(e.loss_based(), Some(c.min_estimate));
    }

    #[test]
    fn twcc_loss_takes_over_from_reports() {
        let c = config();
        let mut e = Estimator::default();
        let sample = TwccSample {
            loss: 0.5,
            delivered: Some(800_000),
            packets: 100,
            send_span: 500_000,
        };
        e.on_twcc(1_000_000, &sample, 2_000_000, &c);
        // Base: the delivered rate, not what was sent.
        assert_eq!(e.estimate(), Some(600_000));
        // A report of loss 1 s later is the same loss, coarser: ignored.
        e.on_report_loss(2_000_000, 0.5, 2_000_000, &c);
        assert_eq!(e.estimate(), Some(600_000));
        // Without TWCC for a while, reports count again.
        e.on_report_loss(4_000_000, 0.5, 400_000, &c);
        assert_eq!(e.estimate(), Some(300_000));
    }

    #[test]
    fn layer_choice_holds_before_going_up_and_drops_at_once() {
        let c = config();
        let rates = [Some(100_000), Some(500_000), Some(1_500_000)];
        let mut since = None;
        // Everything fits: up to 2, but only after the hold.
        assert_eq!(choose_layer(0, 0, &rates, 5_000_000, &c, &mut since), 0);
        assert_eq!(since, Some(0));
        assert_eq!(
            choose_layer(2_000_000, 0, &rates, 5_000_000, &c, &mut since),
            0
        );
        assert_eq!(
            choose_layer(2_500_000, 0, &rates, 5_000_000, &c, &mut since),
            2
        );
        assert_eq!(since, None);
        // 1.6 Mbit/s: layer 2 still fits the whole budget, kept.
        assert_eq!(
            choose_layer(3_000_000, 2, &rates, 1_600_000, &c, &mut since),
            2
        );
        // 1.4 Mbit/s: down to 1 at once.
        assert_eq!(
            choose_layer(3_050_000, 2, &rates, 1_400_000, &c, &mut since),
            1
        );
        // Fits 2 with headroom for a moment only: the hold restarts.
        assert_eq!(
            choose_layer(4_000_000, 1, &rates, 1_700_000, &c, &mut since),
            1
        );
        assert_eq!(
            choose_layer(5_000_000, 1, &rates, 1_500_000, &c, &mut since),
            1
        );
        assert_eq!(since, None);
        assert_eq!(
            choose_layer(6_000_000, 1, &rates, 1_700_000, &c, &mut since),
            1
        );
        assert_eq!(
            choose_layer(8_000_000, 1, &rates, 1_700_000, &c, &mut since),
            1
        );
        assert_eq!(
            choose_layer(8_500_000, 1, &rates, 1_700_000, &c, &mut since),
            2
        );
        // Nothing fits: the lowest layer.
        assert_eq!(
            choose_layer(9_000_000, 2, &rates, 10_000, &c, &mut since),
            0
        );
    }

    #[test]
    fn dead_layers_are_never_targets() {
        let c = config();
        let mut since = None;
        // The publisher stopped layer 2: drop at once to the best live one.
        let rates = [Some(100_000), Some(500_000), None];
        assert_eq!(choose_layer(0, 2, &rates, 5_000_000, &c, &mut since), 1);
        // And never go up to it.
        for t in 0..10 {
            assert_eq!(
                choose_layer(t * 1_000_000, 1, &rates, 5_000_000, &c, &mut since),
                1
            );
        }
        // Only layer 1 alive, tiny budget: it is the lowest live layer.
        let rates = [None, Some(500_000), None];
        assert_eq!(choose_layer(0, 0, &rates, 1_000, &c, &mut since), 1);
        // Nothing alive: unchanged.
        assert_eq!(
            choose_layer(0, 2, &[None, None, None], 1_000, &c, &mut since),
            2
        );
    }
}
