//! The controller against a simulated bottleneck on virtual time: a sender limited by
//! the window and paced as quinn paces (1.25 x window / smoothed RTT), random loss, a
//! rate-limited FIFO with tail drop, a propagation delay each way, an ACK per packet,
//! and losses declared when a packet three later is acknowledged.

use super::*;
use std::collections::BTreeMap;

const MTU: u16 = 1300;
const SIZE: u64 = 1250;
const STEP: Duration = Duration::from_micros(100);

#[derive(Debug, Clone)]
struct Path {
    rate_bps: u64,
    one_way: Duration,
    queue_bytes: u64,
    loss: f64,
}

impl Path {
    fn standard() -> Self {
        Self {
            rate_bps: 10_000_000,
            one_way: Duration::from_millis(20),
            queue_bytes: 256 * 1024,
            loss: 0.01,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sent: u64,
    delivered_bytes: u64,
    random_lost: u64,
    tail_dropped: u64,
}

struct Sim {
    base: Instant,
    now: Duration,
    cc: LinkBbr,
    path: Path,
    rng: u64,
    pn: u64,
    /// pn -> (sent at, ACK arrives at, or None when lost).
    flight: BTreeMap<u64, (Duration, Option<Duration>)>,
    in_flight: u64,
    link_free_at: Duration,
    next_send: Duration,
    srtt: Duration,
    /// Application bytes per second; `None` is a bulk sender.
    app_rate: Option<u64>,
    app_credit: f64,
    counts: Counts,
}

impl Sim {
    fn new(path: Path) -> Self {
        let base = Instant::now();
        Self {
            base,
            now: Duration::ZERO,
            cc: LinkBbr::new(LinkBbrConfig::default().initial_window, base, MTU),
            path,
            rng: 0x2545_F491_4F6C_DD1D,
            pn: 0,
            flight: BTreeMap::new(),
            in_flight: 0,
            link_free_at: Duration::ZERO,
            next_send: Duration::ZERO,
            srtt: Duration::from_millis(100),
            app_rate: None,
            app_credit: 0.0,
            counts: Counts::default(),
        }
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn at(&self, d: Duration) -> Instant {
        self.base + d
    }

    fn run(&mut self, for_: Duration) -> Counts {
        let start = self.counts;
        let end = self.now + for_;
        while self.now < end {
            self.step();
            self.now += STEP;
        }
        Counts {
            sent: self.counts.sent - start.sent,
            delivered_bytes: self.counts.delivered_bytes - start.delivered_bytes,
            random_lost: self.counts.random_lost - start.random_lost,
            tail_dropped: self.counts.tail_dropped - start.tail_dropped,
        }
    }

    fn step(&mut self) {
        let now = self.at(self.now);
        // ACKs due now, oldest first.
        let due: Vec<(u64, Duration)> = self
            .flight
            .iter()
            .filter_map(|(&pn, &(sent, ack))| ack.filter(|&a| a <= self.now).map(|_| (pn, sent)))
            .collect();
        let app_limited = self.app_rate.is_some();
        if let Some(&(largest, _)) = due.last() {
            for &(pn, sent) in &due {
                self.flight.remove(&pn);
                self.in_flight -= SIZE;
                self.counts.delivered_bytes += SIZE;
                let sample = self.now - sent;
                self.srtt = (self.srtt * 7 + sample) / 8;
                self.cc.on_ack_sample(now, self.at(sent), SIZE, app_limited);
            }
            self.cc.end_acks(now, self.in_flight, app_limited);
            // Lost packets three behind the largest acknowledged are declared lost.
            let lost: Vec<u64> = self
                .flight
                .range(..largest.saturating_sub(2))
                .filter(|(_, (_, ack))| ack.is_none())
                .map(|(&pn, _)| pn)
                .collect();
            if !lost.is_empty() {
                for pn in &lost {
                    self.flight.remove(pn);
                    self.in_flight -= SIZE;
                }
                self.cc.on_loss(now, false, SIZE * lost.len() as u64);
            }
        }
        // Sending.
        if let Some(rate) = self.app_rate {
            self.app_credit += rate as f64 * STEP.as_secs_f64();
        }
        while self.in_flight + SIZE <= self.cc.window() && self.now >= self.next_send {
            if self.app_rate.is_some() {
                if self.app_credit < SIZE as f64 {
                    break;
                }
                self.app_credit -= SIZE as f64;
            }
            self.send(now);
            let pace = 1.25 * self.cc.window() as f64 / self.srtt.as_secs_f64();
            self.next_send =
                self.next_send.max(self.now) + Duration::from_secs_f64(SIZE as f64 / pace);
        }
        // An application that could not send for the window keeps no backlog beyond a
        // few packets (media is useless late).
        self.app_credit = self.app_credit.min(4.0 * SIZE as f64);
    }

    fn send(&mut self, now: Instant) {
        let pn = self.pn;
        self.pn += 1;
        self.counts.sent += 1;
        self.cc.on_sent(now, SIZE, pn);
        self.in_flight += SIZE;
        let ack = if self.random() < self.path.loss {
            self.counts.random_lost += 1;
            None
        } else {
            let start = self.link_free_at.max(self.now);
            let backlog =
                ((start - self.now).as_secs_f64() * self.path.rate_bps as f64 / 8.0) as u64;
            if backlog + SIZE > self.path.queue_bytes {
                self.counts.tail_dropped += 1;
                None
            } else {
                let departs =
                    start + Duration::from_secs_f64(SIZE as f64 * 8.0 / self.path.rate_bps as f64);
                self.link_free_at = departs;
                Some(departs + 2 * self.path.one_way)
            }
        };
        self.flight.insert(pn, (self.now, ack));
    }
}

fn mbit(bytes: u64, over: Duration) -> f64 {
    bytes as f64 * 8.0 / over.as_secs_f64() / 1e6
}

#[test]
fn bulk_fills_a_lossy_bottleneck_without_overflowing_it() {
    let mut sim = Sim::new(Path::standard());
    sim.run(Duration::from_secs(10));
    let window = Duration::from_secs(10);
    let c = sim.run(window);
    let goodput = mbit(c.delivered_bytes, window);
    // 1% random loss costs 1%; the rest of the bottleneck is used.
    assert!(goodput >= 9.0, "goodput {goodput:.2} Mbit/s, {c:?}");
    assert_eq!(c.tail_dropped, 0, "the queue never overflows: {c:?}");
    let bw = sim.cc.bandwidth() * 8;
    assert!(
        (9_000_000..=11_500_000).contains(&bw),
        "bandwidth estimate {bw}"
    );
    assert_eq!(sim.cc.mode(), Mode::ProbeBw);
    let rtt = sim.cc.min_rtt().unwrap();
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(45),
        "{rtt:?}"
    );
}

#[test]
fn without_loss_the_queue_stays_within_one_bdp() {
    let mut sim = Sim::new(Path {
        loss: 0.0,
        ..Path::standard()
    });
    sim.run(Duration::from_secs(5));
    let c = sim.run(Duration::from_secs(10));
    assert!(
        mbit(c.delivered_bytes, Duration::from_secs(10)) >= 9.5,
        "{c:?}"
    );
    assert_eq!(c.tail_dropped, 0);
    // The window stays near two BDPs (100 kB): one in the pipe, at most one queued.
    assert!(sim.cc.window() <= 130_000, "{}", sim.cc.window());
}

#[test]
fn a_shallow_queue_caps_the_window_instead_of_overflowing_every_round() {
    // 16 kB of queue, a third of the BDP: a 2 x BDP window would lose a third of
    // each round.
    let mut sim = Sim::new(Path {
        queue_bytes: 16 * 1024,
        loss: 0.0,
        ..Path::standard()
    });
    sim.run(Duration::from_secs(10));
    let c = sim.run(Duration::from_secs(10));
    let goodput = mbit(c.delivered_bytes, Duration::from_secs(10));
    let loss = c.tail_dropped as f64 / c.sent as f64;
    assert!(goodput >= 8.5, "goodput {goodput:.2}, {c:?}");
    assert!(loss < 0.05, "tail-drop loss {loss:.3}, {c:?}");
}

#[test]
fn an_app_limited_link_keeps_its_bandwidth_estimate() {
    let mut sim = Sim::new(Path::standard());
    sim.run(Duration::from_secs(5));
    let learned = sim.cc.bandwidth();
    // Media at 3 Mbit/s for 15 s.
    sim.app_rate = Some(375_000);
    let c = sim.run(Duration::from_secs(15));
    assert!(mbit(c.delivered_bytes, Duration::from_secs(15)) > 2.8);
    let kept = sim.cc.bandwidth();
    assert!(
        kept * 10 >= learned * 9,
        "learned {learned} B/s, kept {kept} B/s"
    );
    // Reported to the shaper as the link's rate.
    assert_eq!(sim.cc.metrics().pacing_rate, Some(kept * 8));
}

#[test]
fn the_estimate_follows_a_narrower_bottleneck() {
    let mut sim = Sim::new(Path::standard());
    sim.run(Duration::from_secs(8));
    sim.path.rate_bps = 5_000_000;
    sim.run(Duration::from_secs(5));
    let c = sim.run(Duration::from_secs(5));
    let bw = sim.cc.bandwidth() * 8;
    assert!((4_500_000..=5_750_000).contains(&bw), "estimate {bw}");
    assert!(
        mbit(c.delivered_bytes, Duration::from_secs(5)) >= 4.5,
        "{c:?}"
    );
}

#[test]
fn persistent_congestion_starts_over() {
    let mut sim = Sim::new(Path::standard());
    sim.run(Duration::from_secs(5));
    assert!(sim.cc.window() > 50_000);
    let now = sim.at(sim.now);
    sim.cc.on_loss(now, true, 100_000);
    assert_eq!(sim.cc.mode(), Mode::Startup);
    assert_eq!(sim.cc.bandwidth(), 0);
    assert_eq!(sim.cc.window(), LinkBbrConfig::default().initial_window);
    // An ECN signal (zero bytes) changes nothing.
    sim.cc.on_loss(now, true, 0);
    assert_eq!(sim.cc.mode(), Mode::Startup);
}
