//! One direction of an impaired path, sans-IO: packets go in with the time they arrived
//! and come out at the time the path would deliver them.
//!
//! The model is a bottleneck link followed by a propagation delay, like `tbf` feeding
//! `netem`: random loss first, then a FIFO drained at `rate_bps` with a byte limit (tail
//! drop when full), then `delay` plus a uniform jitter. Jitter does not reorder unless
//! `reorder` is set: real paths mostly keep order, and a relay that shuffles every packet
//! measures the receiver's reordering tolerance rather than the link.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;

/// Microseconds on the driver's clock.
pub type Micros = u64;

#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// One-way propagation delay added to every packet.
    pub delay: Duration,
    /// Each packet's delay is `delay` plus a uniform value in `[-jitter, +jitter]`
    /// (never below zero).
    pub jitter: Duration,
    /// Probability that a packet is dropped, 0 to 1.
    pub loss: f64,
    /// Bottleneck rate in bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Bytes the bottleneck queue holds before it drops arrivals.
    pub queue_bytes: usize,
    /// Let jitter reorder packets.
    pub reorder: bool,
    /// Seeds the loss and jitter draws, so a run can be repeated exactly.
    pub seed: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue_bytes: 256 * 1024,
            reorder: false,
            seed: 1,
        }
    }
}

impl Impairment {
    /// Checks the values a caller could get wrong; the queue trusts them afterwards.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!("loss {} is not within 0..=1", self.loss));
        }
        if self.rate_bps == Some(0) {
            return Err("rate 0 would deliver nothing; leave it unset for no limit".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped_loss: u64,
    pub dropped_queue_full: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Queued { release_at: Micros },
    Lost,
    QueueFull,
}

#[derive(Debug)]
pub struct ImpairQueue {
    config: Impairment,
    rng: StdRng,
    /// Packets with their release time; sorted by release time, then arrival.
    queue: VecDeque<(Micros, Vec<u8>)>,
    /// When the bottleneck finishes sending what it already holds.
    link_free_at: Micros,
    last_release: Micros,
    stats: QueueStats,
}

impl ImpairQueue {
    pub fn new(config: Impairment) -> Self {
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            queue: VecDeque::new(),
            link_free_at: 0,
            last_release: 0,
            stats: QueueStats::default(),
        }
    }

    pub fn config(&self) -> &Impairment {
        &self.config
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// New settings from the next arrival on; packets already queued keep their release
    /// times, so a change never shows up as loss or reordering.
    pub fn reconfigure(&mut self, config: Impairment) {
        self.rng = StdRng::seed_from_u64(config.seed);
        self.config = config;
    }

    /// A packet arriving at `now`.
    pub fn push(&mut self, now: Micros, packet: Vec<u8>) -> Verdict {
        self.stats.packets_in += 1;
        self.stats.bytes_in += packet.len() as u64;
        if self.config.loss > 0.0 && self.rng.random::<f64>() < self.config.loss {
            self.stats.dropped_loss += 1;
            return Verdict::Lost;
        }
        let departs = match self.config.rate_bps {
            Some(rate) => {
                let start = self.link_free_at.max(now);
                let backlog_bytes = (start - now).saturating_mul(rate) / 8_000_000;
                if backlog_bytes as usize + packet.len() > self.config.queue_bytes {
                    self.stats.dropped_queue_full += 1;
                    return Verdict::QueueFull;
                }
                let serialize = (packet.len() as u64 * 8 * 1_000_000).div_ceil(rate);
                self.link_free_at = start + serialize;
                self.link_free_at
            }
            None => now,
        };
        let mut release = departs + self.delay_sample();
        if !self.config.reorder {
            release = release.max(self.last_release);
        }
        self.last_release = self.last_release.max(release);
        // Insert keeping release order (stable for equal times); without reordering this
        // is always the back.
        let at = self.queue.partition_point(|(t, _)| *t <= release);
        self.queue.insert(at, (release, packet));
        Verdict::Queued {
            release_at: release,
        }
    }

    fn delay_sample(&mut self) -> Micros {
        let delay = self.config.delay.as_micros() as i64;
        let jitter = self.config.jitter.as_micros() as i64;
        let offset = if jitter > 0 {
            self.rng.random_range(-jitter..=jitter)
        } else {
            0
        };
        (delay + offset).max(0) as Micros
    }

    /// The next packet due at or before `now`.
    pub fn poll(&mut self, now: Micros) -> Option<Vec<u8>> {
        if self.queue.front().is_some_and(|(t, _)| *t <= now) {
            let (_, packet) = self.queue.pop_front()?;
            self.stats.packets_out += 1;
            self.stats.bytes_out += packet.len() as u64;
            return Some(packet);
        }
        None
    }

    /// When the next packet is due.
    pub fn next_release(&self) -> Option<Micros> {
        self.queue.front().map(|(t, _)| *t)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut ImpairQueue, until: Micros) -> Vec<(Micros, Vec<u8>)> {
        let mut out = Vec::new();
        let mut now = 0;
        while now <= until {
            while let Some(p) = q.poll(now) {
                out.push((now, p));
            }
            now += 100;
        }
        out
    }

    #[test]
    fn delay_only_keeps_order_and_spacing() {
        let mut q = ImpairQueue::new(Impairment {
            delay: Duration::from_millis(20),
            ..Impairment::default()
        });
        for i in 0..5u8 {
            q.push(u64::from(i) * 1_000, vec![i]);
        }
        let out = drain(&mut q, 100_000);
        let times: Vec<_> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [20_000, 21_000, 22_000, 23_000, 24_000]);
        let order: Vec<_> = out.iter().map(|(_, p)| p[0]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn rate_serializes_packets_and_limits_throughput() {
        // 1 Mbit/s: a 1250-byte packet takes 10 ms.
        let mut q = ImpairQueue::new(Impairment {
            rate_bps: Some(1_000_000),
            queue_bytes: 1_000_000,
            ..Impairment::default()
        });
        for _ in 0..10 {
            assert!(matches!(q.push(0, vec![0; 1250]), Verdict::Queued { .. }));
        }
        let out = drain(&mut q, 200_000);
        let times: Vec<_> = out.iter().map(|(t, _)| *t).collect();
        let expected: Vec<Micros> = (1..=10).map(|k| k * 10_000).collect();
        assert_eq!(times, expected);
    }

    #[test]
    fn full_queue_tail_drops() {
        let mut q = ImpairQueue::new(Impairment {
            rate_bps: Some(1_000_000),
            queue_bytes: 5_000,
            ..Impairment::default()
        });
        let verdicts: Vec<_> = (0..10).map(|_| q.push(0, vec![0; 1000])).collect();
        let queued = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Queued { .. }))
            .count();
        assert_eq!(queued, 5);
        assert_eq!(q.stats().dropped_queue_full, 5);
        // Once the bottleneck drains, arrivals fit again.
        assert!(matches!(
            q.push(40_000, vec![0; 1000]),
            Verdict::Queued { .. }
        ));
    }

    #[test]
    fn loss_rate_is_close_to_configured_and_seeded() {
        let run = |seed| {
            let mut q = ImpairQueue::new(Impairment {
                loss: 0.01,
                seed,
                ..Impairment::default()
            });
            (0..100_000)
                .filter(|&i| q.push(i, vec![1]) == Verdict::Lost)
                .count()
        };
        let lost = run(7);
        assert!((800..=1200).contains(&lost), "{lost} of 100000 lost at 1%");
        assert_eq!(run(7), lost, "same seed, same drops");
    }

    #[test]
    fn jitter_stays_in_bounds_and_keeps_order_unless_asked() {
        for reorder in [false, true] {
            let mut q = ImpairQueue::new(Impairment {
                delay: Duration::from_millis(20),
                jitter: Duration::from_millis(5),
                reorder,
                ..Impairment::default()
            });
            let mut releases = Vec::new();
            for i in 0..1000u64 {
                if let Verdict::Queued { release_at } = q.push(i * 1_000, vec![0]) {
                    releases.push(release_at - i * 1_000);
                }
            }
            assert!(
                releases
                    .iter()
                    .all(|&d| (15_000..=25_000 + 5_000).contains(&d))
            );
            let mut order = Vec::new();
            let mut now = 0;
            while q.queued() > 0 {
                while let Some(p) = q.poll(now) {
                    order.push(p);
                }
                now += 100;
            }
            assert_eq!(order.len(), 1000);
        }
    }

    #[test]
    fn jitter_without_reorder_delivers_in_arrival_order() {
        let mut q = ImpairQueue::new(Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(8),
            ..Impairment::default()
        });
        for i in 0..500u32 {
            q.push(u64::from(i) * 500, i.to_be_bytes().to_vec());
        }
        let out = drain(&mut q, 1_000_000);
        let seq: Vec<u32> = out
            .iter()
            .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            .collect();
        assert_eq!(seq, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn bad_config_is_an_error() {
        let bad_loss = Impairment {
            loss: 1.5,
            ..Impairment::default()
        };
        assert!(bad_loss.validate().is_err());
        let zero_rate = Impairment {
            rate_bps: Some(0),
            ..Impairment::default()
        };
        assert!(zero_rate.validate().is_err());
        assert!(Impairment::default().validate().is_ok());
    }
}
