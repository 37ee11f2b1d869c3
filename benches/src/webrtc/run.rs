//! One measured load level: a warm-up once every subscriber receives, then a window
//! sampled every second: packets the subscribers received (forwarded by the server),
//! their loss by sequence accounting, corrupt packets, latency, and the CPU time of the
//! server and of the load generator.

use super::fleet::Fleet;
use super::probe::ProbeCounts;
use crate::dataplane::hist::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One second of a window.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the window began.
    pub t: f64,
    pub forwarded_pps: f64,
    pub server_cpu_pct: f64,
    pub bench_cpu_pct: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// A load level's results.
#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    pub rooms: usize,
    pub sessions: usize,
    pub failed_sessions: usize,
    pub window_s: f64,
    /// Packets the publishers sent in the window.
    pub sent: u64,
    /// Packets the subscribers received in the window: what the server forwarded.
    pub forwarded: u64,
    pub forwarded_pps: f64,
    /// Media payload bits per second the subscribers opened; `None` (JSON null) for an
    /// opaque target, whose packets they cannot open.
    pub forwarded_bps: Option<f64>,
    /// Packets missing from the subscribers' sequence numbers, of those expected.
    pub loss: f64,
    pub verified: u64,
    pub corrupt: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_p999_ms: Option<f64>,
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_ns_per_packet: Option<f64>,
    pub bench_cpu_pct: f64,
    pub samples: Vec<Sample>,
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|u| u as f64 / 1000.0)
}

/// The `q` quantile of set-up times, in ms.
fn setup_quantile(setup: &[Duration], q: f64) -> Option<f64> {
    let mut v: Vec<Duration> = setup.to_vec();
    v.sort();
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).map(|d| d.as_secs_f64() * 1000.0)
}

/// Longer than any packet takes from a publisher to a subscriber below saturation.
const TRANSIT: Duration = Duration::from_millis(100);

struct Point {
    at: Instant,
    counts: ProbeCounts,
    /// Packets subscribers received but could not open.
    unopened: u64,
    seq: (u64, u64),
    server: Option<Duration>,
    bench: Option<Duration>,
}

fn point(fleet: &Fleet, pid: Option<u32>) -> Point {
    Point {
        at: Instant::now(),
        counts: fleet.probe_counts(),
        unopened: fleet.unopened(),
        seq: fleet.expected_received(),
        server: super::cpu::process_cpu(pid),
        bench: super::cpu::process_cpu(None),
    }
}

fn pct(a: Option<Duration>, b: Option<Duration>, wall: Duration) -> Option<f64> {
    Some((b?.saturating_sub(a?)).as_secs_f64() / wall.as_secs_f64().max(1e-9) * 100.0)
}

/// Waits until every subscriber receives (at most `settle`), then `warmup`, then measures
/// `window`; `tick` is told each second's sample. `opaque`: the server forwards the
/// publishers' ciphertext unchanged (the null reference), so loss is counted against
/// what was sent.
pub async fn measure(
    fleet: &Fleet,
    pid: Option<u32>,
    opaque: bool,
    settle: Duration,
    warmup: Duration,
    window: Duration,
    mut tick: impl FnMut(&Sample),
) -> LevelResult {
    let deadline = Instant::now() + settle;
    while !fleet.all_receiving() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(warmup).await;
    for r in &fleet.subscribers {
        r.probe.take_latency();
    }
    // What was sent is read one transit time before what arrived, at both ends of the
    // window, so the packets in flight at the edges are counted on both sides or neither.
    let sent_start = fleet.sent();
    tokio::time::sleep(TRANSIT).await;
    let start = point(fleet, pid);
    let mut last = point(fleet, pid);
    let mut latency = Histogram::new();
    let mut samples = Vec::new();
    let seconds = window.as_secs().max(1);
    for i in 1..=seconds {
        let due = start.at + Duration::from_secs(i);
        tokio::time::sleep_until(due.into()).await;
        let now = point(fleet, pid);
        let mut second = Histogram::new();
        for r in &fleet.subscribers {
            second.merge(&r.probe.take_latency());
        }
        latency.merge(&second);
        let wall = now.at - last.at;
        let sample = Sample {
            t: (now.at - start.at).as_secs_f64(),
            forwarded_pps: (now.counts.since(&last.counts).received + now.unopened - last.unopened)
                as f64
                / wall.as_secs_f64(),
            server_cpu_pct: pct(last.server, now.server, wall).unwrap_or(0.0),
            bench_cpu_pct: pct(last.bench, now.bench, wall).unwrap_or(0.0),
            latency_p50_ms: ms(second.quantile(0.5)),
            latency_p99_ms: ms(second.quantile(0.99)),
        };
        tick(&sample);
        samples.push(sample);
        last = now;
    }
    let sent_end = fleet.sent();
    tokio::time::sleep(TRANSIT).await;
    let end = point(fleet, pid);
    let wall = end.at - start.at;
    let counts = end.counts.since(&start.counts);
    let unopened = end.unopened - start.unopened;
    let sent = sent_end - sent_start;
    let forwarded = counts.received + unopened;
    let (expected, received) = if opaque {
        // Ciphertext forwarded unchanged: no sequence numbers to read, but every
        // subscriber gets every packet its publisher sent (all layers).
        (sent * fleet.fan_out as u64, unopened)
    } else {
        (
            end.seq.0.saturating_sub(start.seq.0),
            end.seq.1.saturating_sub(start.seq.1),
        )
    };
    let server_cpu = match (start.server, end.server) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let secs = wall.as_secs_f64();
    LevelResult {
        rooms: fleet.rooms(),
        sessions: fleet.sessions(),
        failed_sessions: fleet.failed(),
        window_s: secs,
        sent,
        forwarded,
        forwarded_pps: forwarded as f64 / secs,
        forwarded_bps: (!opaque).then(|| counts.bytes as f64 * 8.0 / secs),
        loss: if expected == 0 {
            0.0
        } else {
            expected.saturating_sub(received) as f64 / expected as f64
        },
        verified: counts.verified,
        // What could not be opened counts as corrupt unless the server forwards
        // ciphertext by design.
        corrupt: counts.corrupt + if opaque { 0 } else { unopened },
        latency_p50_ms: ms(latency.quantile(0.5)),
        latency_p99_ms: ms(latency.quantile(0.99)),
        latency_p999_ms: ms(latency.quantile(0.999)),
        setup_p50_ms: setup_quantile(&fleet.setup, 0.5),
        setup_p99_ms: setup_quantile(&fleet.setup, 0.99),
        server_cpu_s: server_cpu.map(|d| d.as_secs_f64()),
        server_cpu_ns_per_packet: server_cpu
            .filter(|_| forwarded > 0)
            .map(|d| d.as_nanos() as f64 / forwarded as f64),
        bench_cpu_pct: pct(start.bench, end.bench, wall).unwrap_or(0.0),
        samples,
    }
}
