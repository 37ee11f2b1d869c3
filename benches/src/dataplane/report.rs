//! Results: one row per configuration comparing the router with the reference run of
//! the same workload, warnings where a number should not be trusted, the table and the
//! JSON document.

use super::generator::Shape;
use super::run::RunResult;
use serde::Serialize;
use std::fmt::Write as _;

/// Acceptance: AEAD_AES_128_GCM, 1200-byte packets, fan-out 4.
pub const ACCEPT_SIZE: usize = 1200;
pub const ACCEPT_FANOUT: usize = 4;
pub const ACCEPT_RATIO: f64 = 1.35;
pub const ACCEPT_LOSS: f64 = 0.005;

/// Above this busy fraction the generator-and-sinks thread may be what limits a run.
const LOAD_BUSY_WARN: f64 = 0.85;
/// Above this the node's worker is saturated: the offered rate is too high for a
/// ratio measurement (queues, drops and batching change the per-packet cost).
const WORKER_BUSY_WARN: f64 = 0.95;

/// One reference/router pair of runs.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub reference_cpu_ns_per_egress_packet: f64,
    pub cpu_ns_per_egress_packet: f64,
    pub ratio: f64,
    pub disturbed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub packet_size: usize,
    pub fanout: usize,
    pub shape: Shape,
    pub publishers: usize,
    pub subscribers: usize,
    pub offered_ingress_pps: f64,
    /// Router run, as the sinks received it.
    pub egress_pps: f64,
    /// Router worker CPU per egress packet, ns.
    pub cpu_ns_per_egress_packet: f64,
    pub reference_cpu_ns_per_egress_packet: f64,
    pub ratio: f64,
    pub loss_ratio: f64,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub reference_egress_pps: f64,
    pub reference_loss_ratio: f64,
    pub reference_latency_p50_us: Option<f64>,
    pub reference_latency_p99_us: Option<f64>,
    /// The generator-and-sinks thread in the router run: busy share of the window and
    /// busy ns per egress packet.
    pub load_busy_fraction: f64,
    pub load_busy_ns_per_egress_packet: f64,
    pub reference_load_busy_fraction: f64,
    /// Pairs run, disturbed ones that were run again included.
    pub attempts: u32,
    /// Every pair kept; the row's figures come from the median run of each side (see
    /// `router` and `reference`), loss from all of them.
    pub pairs: Vec<Pair>,
    /// Time spent waiting for other processes to leave the cores before the runs.
    pub waited_for_quiet_s: f64,
    pub warnings: Vec<String>,
    /// Sequence or verification errors: a correctness failure, not a slow run.
    pub errors: Vec<String>,
    /// The median runs.
    pub router: RunResult,
    pub reference: RunResult,
}

impl ConfigReport {
    pub fn new(
        packet_size: usize,
        fanout: usize,
        shape: Shape,
        publishers: usize,
        offered_ingress_pps: f64,
        router: RunResult,
        reference: RunResult,
    ) -> Self {
        let mut warnings = Vec::new();
        let mut errors = Vec::new();
        for r in [&reference, &router] {
            let who = r.target.name();
            if r.load.busy_fraction > LOAD_BUSY_WARN {
                warnings.push(format!(
                    "{who}: load generator busy {:.0}% of the window: it may be the bottleneck",
                    r.load.busy_fraction * 100.0
                ));
            }
            let g = &r.load.generator;
            if g.late_events > 0 {
                warnings.push(format!(
                    "{who}: generator fell behind its schedule ({} events over 2 ms late, max {:.1} ms)",
                    g.late_events,
                    g.max_lag_us as f64 / 1000.0
                ));
            }
            if g.send_errors > 0 {
                warnings.push(format!("{who}: {} sends failed", g.send_errors));
            }
            if r.sink_socket_drops > 0 {
                warnings.push(format!(
                    "{who}: sink sockets dropped {} datagrams (the sink thread fell behind)",
                    r.sink_socket_drops
                ));
            }
            if r.node_socket_drops > 0 {
                warnings.push(format!(
                    "{who}: the node's socket dropped {} datagrams (worker fell behind)",
                    r.node_socket_drops
                ));
            }
            if r.worker_utilization > WORKER_BUSY_WARN {
                warnings.push(format!(
                    "{who}: worker busy {:.0}%: offered rate near saturation",
                    r.worker_utilization * 100.0
                ));
            }
            if let Some(d) = &r.disturbed {
                warnings.push(format!("{who}: {d}"));
            }
            if r.sinks.seq_errors > 0 {
                errors.push(format!(
                    "{who}: {} duplicated, reordered or foreign packets",
                    r.sinks.seq_errors
                ));
            }
            if r.sinks.rtcp_errors > 0 || g.feedback.rtcp_errors > 0 {
                errors.push(format!(
                    "{who}: {} SRTCP packets to sinks and {} to publishers failed authentication or parsing",
                    r.sinks.rtcp_errors, g.feedback.rtcp_errors
                ));
            }
            if r.sinks.verify_errors > 0 {
                let k = &r.sinks;
                errors.push(format!(
                    "{who}: {} packets failed verification ({} SRTP, {} numbering, {} payload)",
                    k.verify_errors,
                    k.decrypt_errors,
                    k.numbering_errors,
                    k.verify_errors - k.decrypt_errors - k.numbering_errors
                ));
            }
        }
        if router.egress_pps > 0.0
            && ((reference.egress_pps / router.egress_pps) - 1.0).abs() > 0.05
        {
            warnings.push(format!(
                "egress differs between runs ({:.0} vs {:.0} pps): not like for like",
                router.egress_pps, reference.egress_pps
            ));
        }
        Self {
            packet_size,
            fanout,
            shape,
            publishers,
            subscribers: publishers * fanout,
            offered_ingress_pps: offered_ingress_pps.round(),
            egress_pps: router.egress_pps.round(),
            cpu_ns_per_egress_packet: round1(router.cpu_ns_per_egress_packet),
            reference_cpu_ns_per_egress_packet: round1(reference.cpu_ns_per_egress_packet),
            ratio: round3(
                router.cpu_ns_per_egress_packet / reference.cpu_ns_per_egress_packet.max(1e-9),
            ),
            loss_ratio: router.loss_ratio,
            latency_p50_us: router.latency_p50_us.map(round1),
            latency_p99_us: router.latency_p99_us.map(round1),
            reference_egress_pps: reference.egress_pps.round(),
            reference_loss_ratio: reference.loss_ratio,
            reference_latency_p50_us: reference.latency_p50_us.map(round1),
            reference_latency_p99_us: reference.latency_p99_us.map(round1),
            load_busy_fraction: round3(router.load.busy_fraction),
            load_busy_ns_per_egress_packet: round1(router.load.busy_ns_per_egress_packet),
            reference_load_busy_fraction: round3(reference.load.busy_fraction),
            attempts: 1,
            pairs: Vec::new(),
            waited_for_quiet_s: 0.0,
            warnings,
            errors,
            router,
            reference,
        }
    }

    pub fn label(&self) -> String {
        format!(
            "{} B, fan-out {}, {}",
            self.packet_size,
            self.fanout,
            self.shape.name()
        )
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct Acceptance {
    pub config: String,
    pub ratio: f64,
    pub loss_ratio: f64,
    pub ratio_limit: f64,
    pub loss_limit: f64,
    pub pass: bool,
}

impl Acceptance {
    /// From the GCM, 1200-byte, fan-out 4 rows (the worst of its shapes).
    pub fn evaluate(profile_is_gcm: bool, rows: &[ConfigReport]) -> Option<Self> {
        if !profile_is_gcm {
            return None;
        }
        let rows: Vec<&ConfigReport> = rows
            .iter()
            .filter(|r| r.packet_size == ACCEPT_SIZE && r.fanout == ACCEPT_FANOUT)
            .collect();
        let worst = rows.iter().max_by(|a, b| a.ratio.total_cmp(&b.ratio))?;
        let loss = rows.iter().map(|r| r.loss_ratio).fold(0.0, f64::max);
        Some(Self {
            config: format!(
                "AEAD_AES_128_GCM, {ACCEPT_SIZE} B, fan-out {ACCEPT_FANOUT}, worst of {} shape(s)",
                rows.len()
            ),
            ratio: worst.ratio,
            loss_ratio: loss,
            ratio_limit: ACCEPT_RATIO,
            loss_limit: ACCEPT_LOSS,
            pass: worst.ratio <= ACCEPT_RATIO
                && loss < ACCEPT_LOSS
                && rows.iter().all(|r| r.errors.is_empty()),
        })
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// The table printed after a run.
pub fn table(rows: &[ConfigReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>3} {:>5} {:>5} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>7} {:>6} {:>6} {:>5}",
        "size",
        "fan",
        "shape",
        "subs",
        "egr kpps",
        "ns/pkt",
        "ref ns",
        "ratio",
        "loss %",
        "p50us",
        "p99us",
        "rloss %",
        "rp50",
        "rp99",
        "load"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>5} {:>3} {:>5} {:>5} {:>8.1} {:>8.0} {:>8.0} {:>6.3} {:>7.3} {:>6} {:>6} {:>7.3} {:>6} {:>6} {:>4.0}%",
            r.packet_size,
            r.fanout,
            r.shape.name(),
            r.subscribers,
            r.egress_pps / 1000.0,
            r.cpu_ns_per_egress_packet,
            r.reference_cpu_ns_per_egress_packet,
            r.ratio,
            r.loss_ratio * 100.0,
            opt(r.latency_p50_us),
            opt(r.latency_p99_us),
            r.reference_loss_ratio * 100.0,
            opt(r.reference_latency_p50_us),
            opt(r.reference_latency_p99_us),
            r.load_busy_fraction.max(r.reference_load_busy_fraction) * 100.0,
        );
    }
    s
}
