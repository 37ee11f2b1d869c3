//! The configuration matrix: packet sizes × fan-outs × load shapes, each run through
//! the reference and then the router with the same generator, sinks, shape and rate.

use super::cpu::wait_for_quiet;
use super::generator::Shape;
use super::report::{ConfigReport, Pair};
use super::run::{Node, RunConfig, RunResult, Target, Topology, publishers_for, run};
use sluice_dataplane::srtp::Profile;
use std::io;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub profile: Profile,
    pub sizes: Vec<usize>,
    pub fanouts: Vec<usize>,
    pub shapes: Vec<Shape>,
    /// Egress packets per second to offer at each fan-out (`None`: the default for it).
    pub egress_pps: Option<f64>,
    pub frame_packets: u32,
    pub warmup: Duration,
    pub window: Duration,
    pub verify_every: u32,
    pub load_cpu: Option<usize>,
    pub worker_cpu: Option<usize>,
    /// Reference/router pairs per configuration (alternating); the median run of each
    /// side is reported.
    pub repeats: u32,
    /// Runs a pair again when another process disturbed either run, at most this many
    /// times per configuration.
    pub retries: u32,
    /// Before each pair, wait up to this long for the pinned cores to be quiet (other
    /// processes under 10% busy).
    pub quiet_wait: Duration,
    /// See [`RunConfig::wrap_within`].
    pub wrap_within: Option<u16>,
    pub seed: u64,
}

impl SuiteConfig {
    /// The full matrix; `quick` shortens each run.
    pub fn standard(quick: bool) -> Self {
        Self {
            profile: Profile::AeadAes128Gcm,
            sizes: vec![1200, 160],
            fanouts: vec![1, 4, 16],
            shapes: vec![Shape::Batch, Shape::Paced],
            egress_pps: None,
            frame_packets: 16,
            warmup: Duration::from_millis(if quick { 300 } else { 1000 }),
            window: Duration::from_millis(if quick { 1000 } else { 2000 }),
            repeats: if quick { 1 } else { 3 },
            verify_every: 16,
            load_cpu: None,
            worker_cpu: None,
            retries: if quick { 2 } else { 3 },
            quiet_wait: Duration::from_secs(60),
            wrap_within: Some(1000),
            seed: 1,
        }
    }

    /// The egress rate offered at `fanout`: well below saturation of one worker core
    /// (about 60-75% busy on this kind of machine, so neither run is in the regime where
    /// queues build and batching changes the cost per packet), and within what one
    /// generator core can send and receive. Fan-out 1 costs the most per egress packet
    /// (every egress packet is also an ingress packet), so it gets less.
    pub fn egress_for(&self, fanout: usize) -> f64 {
        self.egress_pps
            .unwrap_or(if fanout <= 1 { 75_000.0 } else { 150_000.0 })
    }
}

/// Runs the reference and the router alternately, `cfg.repeats` pairs (a disturbed
/// pair is run again, at most `cfg.retries` times in all), and reports the median run
/// of each side; loss is counted over every run kept.
fn run_pairs(
    cfg: &SuiteConfig,
    rc: &mut RunConfig,
    start_node: &dyn Fn(&Topology) -> io::Result<Box<dyn Node>>,
) -> io::Result<ConfigReport> {
    let cores: Vec<usize> = cfg
        .worker_cpu
        .iter()
        .chain(&cfg.load_cpu)
        .copied()
        .collect();
    let (mut refs, mut routers) = (Vec::new(), Vec::new());
    let (mut retries, mut waited) = (0, 0.0);
    while refs.len() < cfg.repeats.max(1) as usize {
        if !cores.is_empty() {
            waited += wait_for_quiet(&cores, 0.1, cfg.quiet_wait).0;
        }
        rc.target = Target::Reference;
        let reference = run(rc, start_node)?;
        rc.target = Target::Router;
        let router = run(rc, start_node)?;
        let disturbed = reference.disturbed.is_some() || router.disturbed.is_some();
        if disturbed && retries < cfg.retries {
            retries += 1;
            continue;
        }
        refs.push(reference);
        routers.push(router);
    }
    let pairs: Vec<Pair> = refs
        .iter()
        .zip(&routers)
        .map(|(a, b)| Pair {
            reference_cpu_ns_per_egress_packet: a.cpu_ns_per_egress_packet.round(),
            cpu_ns_per_egress_packet: b.cpu_ns_per_egress_packet.round(),
            ratio: (b.cpu_ns_per_egress_packet / a.cpu_ns_per_egress_packet.max(1e-9) * 1000.0)
                .round()
                / 1000.0,
            disturbed: a.disturbed.is_some() || b.disturbed.is_some(),
        })
        .collect();
    let loss = |runs: &[RunResult]| {
        let expected: u64 = runs.iter().map(|r| r.expected).sum();
        let received: u64 = runs.iter().map(|r| r.received).sum();
        if expected == 0 {
            0.0
        } else {
            (1.0 - received as f64 / expected as f64).max(0.0)
        }
    };
    let (ref_loss, router_loss) = (loss(&refs), loss(&routers));
    let mut row = ConfigReport::new(
        rc.packet_size,
        rc.fanout,
        rc.shape,
        rc.publishers,
        rc.ingress_pps,
        median(routers),
        median(refs),
    );
    row.loss_ratio = router_loss;
    row.reference_loss_ratio = ref_loss;
    row.attempts = pairs.len() as u32 + retries;
    row.pairs = pairs;
    row.waited_for_quiet_s = (waited * 10.0).round() / 10.0;
    Ok(row)
}

/// The run with the median CPU time per egress packet.
fn median(mut runs: Vec<RunResult>) -> RunResult {
    runs.sort_by(|a, b| {
        a.cpu_ns_per_egress_packet
            .total_cmp(&b.cpu_ns_per_egress_packet)
    });
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Runs every configuration; `progress` hears about each finished row.
pub fn run_suite(
    cfg: &SuiteConfig,
    start_node: &dyn Fn(&Topology) -> io::Result<Box<dyn Node>>,
    progress: &mut dyn FnMut(&ConfigReport),
) -> io::Result<Vec<ConfigReport>> {
    let mut rows = Vec::new();
    for &size in &cfg.sizes {
        for &fanout in &cfg.fanouts {
            for &shape in &cfg.shapes {
                let ingress = cfg.egress_for(fanout) / fanout.max(1) as f64;
                let publishers = publishers_for(ingress, cfg.frame_packets);
                let mut rc = RunConfig {
                    target: Target::Reference,
                    profile: cfg.profile,
                    packet_size: size,
                    fanout,
                    publishers,
                    shape,
                    frame_packets: cfg.frame_packets,
                    ingress_pps: ingress,
                    warmup: cfg.warmup,
                    window: cfg.window,
                    verify_every: cfg.verify_every,
                    load_cpu: cfg.load_cpu,
                    worker_cpu: cfg.worker_cpu,
                    wrap_within: cfg.wrap_within,
                    seed: cfg.seed,
                };
                let row = run_pairs(cfg, &mut rc, start_node)?;
                progress(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}
