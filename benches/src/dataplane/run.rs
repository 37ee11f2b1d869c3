//! One measured run: a node under test (the router or the reference), the publishers
//! and sinks around it, priming, warm-up, a measurement window, and a drain.
//!
//! The load generator and every sink share one thread (pinned to its own core when
//! asked): it sends what the schedule says is due, then drains whichever sockets
//! `epoll_wait(0)` reports, and never sleeps. Its CPU time is therefore the whole
//! window; what tells whether it kept up is its busy fraction (time spent in iterations
//! that moved packets) and how late it sent.

use super::cpu::{
    cpu_busy_ns, current_thread_cpu_ns, gettid, monotonic_ns, pin_current_thread, thread_cpu_ns,
    thread_wait_ns,
};
use super::generator::{Generator, GeneratorStats, Publisher, Shape};
use super::net::{Poller, bind_loopback, port_drops};
use super::payload::{FRAME_RATE, MIN_RTP_LEN, PacketWriter};
use super::sink::{Sink, SinkCounts, Sinks};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sluice_dataplane::router::SrtpKeys;
use sluice_dataplane::srtp::Profile;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Socket buffers of the generator's and sinks' sockets.
const SOCKET_BUFFER: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Sluice's router: SRTP in and out, per-subscriber rewriting.
    Router,
    /// The null forwarder: same driver, datagrams copied unchanged.
    Reference,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Router => "router",
            Self::Reference => "reference",
        }
    }
}

/// One peer's two directions of keys.
#[derive(Debug, Clone)]
pub struct PeerKeys {
    /// What the peer sends the node.
    pub to_node: SrtpKeys,
    /// What the node sends the peer.
    pub from_node: SrtpKeys,
}

#[derive(Debug, Clone)]
pub struct PublisherPeer {
    pub addr: SocketAddr,
    pub ssrc: u32,
    pub keys: PeerKeys,
}

#[derive(Debug, Clone)]
pub struct SinkPeer {
    pub addr: SocketAddr,
    /// Index into [`Topology::publishers`].
    pub publisher: usize,
    /// The SSRC and first sequence number the router gives this subscriber.
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_ts: u32,
    pub keys: PeerKeys,
}

/// Who sends what to whom; what a node under test needs to set up its sessions.
#[derive(Debug, Clone)]
pub struct Topology {
    pub target: Target,
    pub profile: Profile,
    pub publishers: Vec<PublisherPeer>,
    pub sinks: Vec<SinkPeer>,
}

/// The node's driver counters (summed over workers): what was received and sent, and
/// what explains the cost per packet — loop turns (packets per turn is the batching),
/// wake-ups, timer runs, an empty receive-buffer ring.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct NodeCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub loops: u64,
    pub wakeups: u64,
    pub timeouts: u64,
    pub rx_no_buffers: u64,
    pub gso_sends: u64,
}

impl NodeCounters {
    /// `self - earlier`, counter by counter.
    pub fn since(&self, e: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets - e.rx_packets,
            tx_packets: self.tx_packets - e.tx_packets,
            loops: self.loops - e.loops,
            wakeups: self.wakeups - e.wakeups,
            timeouts: self.timeouts - e.timeouts,
            rx_no_buffers: self.rx_no_buffers - e.rx_no_buffers,
            gso_sends: self.gso_sends - e.gso_sends,
        }
    }
}

/// The node under test, started on its own worker threads.
pub trait Node {
    /// The media port publishers send to.
    fn addr(&self) -> SocketAddr;
    /// Kernel thread ids of the worker threads whose CPU time is measured.
    fn worker_tids(&self) -> Vec<i32>;
    /// Which I/O driver runs the workers.
    fn driver(&self) -> String;
    /// The driver's counters so far.
    fn counters(&self) -> NodeCounters;
    /// Stops the workers; returns the datagrams they dropped over the run, by reason
    /// (driver and handler counters, only those that are not zero).
    fn shutdown(self: Box<Self>) -> Vec<(String, u64)>;
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub profile: Profile,
    /// Size of every SRTP datagram, in and out.
    pub packet_size: usize,
    pub fanout: usize,
    pub publishers: usize,
    pub shape: Shape,
    pub frame_packets: u32,
    /// Packets per second the publishers offer in all.
    pub ingress_pps: f64,
    pub warmup: Duration,
    pub window: Duration,
    /// Sinks decrypt and verify one packet in this many (1: every packet).
    pub verify_every: u32,
    /// Core for the generator-and-sinks thread.
    pub load_cpu: Option<usize>,
    /// Core the node's worker is pinned to (to watch for other work on it).
    pub worker_cpu: Option<usize>,
    /// Start every RTP sequence (publishers' and, in the router, subscribers') 100 to
    /// 100 + this many packets before it wraps, so every run crosses an SRTP rollover
    /// after priming (`None`: random starts, as real senders pick them).
    pub wrap_within: Option<u16>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadStats {
    /// CPU time of the generator-and-sinks thread over the window, in ns.
    pub cpu_ns: u64,
    /// Share of the window it spent moving packets rather than polling idle sockets;
    /// near 1 it is the bottleneck.
    pub busy_fraction: f64,
    /// Busy time per egress packet (sending, encrypting, receiving, verifying), in ns.
    pub busy_ns_per_egress_packet: f64,
    pub generator: GeneratorStats,
}

/// Signs that something else used the run's cores during the window.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Interference {
    /// Time the worker / the load thread was runnable but waiting for its CPU, ns.
    pub worker_runqueue_wait_ns: u64,
    pub load_runqueue_wait_ns: u64,
    /// Busy time of the worker's / the load thread's core not spent by that thread
    /// (other processes, or softirq work deferred to ksoftirqd), ns; clock-tick
    /// resolution. `None` when the thread is not pinned.
    pub worker_core_foreign_ns: Option<u64>,
    pub load_core_foreign_ns: Option<u64>,
}

impl Interference {
    /// Whether the window was disturbed enough to distrust its numbers: a thread kept
    /// off its CPU for over 2% of the window, or over 5% of a core used by others.
    pub fn disturbed(&self, window_ns: f64) -> Option<String> {
        let wait = self.worker_runqueue_wait_ns.max(self.load_runqueue_wait_ns) as f64;
        let foreign = self
            .worker_core_foreign_ns
            .unwrap_or(0)
            .max(self.load_core_foreign_ns.unwrap_or(0)) as f64;
        (wait > 0.02 * window_ns || foreign > 0.05 * window_ns).then(|| {
            format!(
                "other work on the cores: run-queue wait worker {:.1}% / load {:.1}%, foreign busy time worker core {:.1}% / load core {:.1}%",
                self.worker_runqueue_wait_ns as f64 * 100.0 / window_ns,
                self.load_runqueue_wait_ns as f64 * 100.0 / window_ns,
                self.worker_core_foreign_ns.unwrap_or(0) as f64 * 100.0 / window_ns,
                self.load_core_foreign_ns.unwrap_or(0) as f64 * 100.0 / window_ns,
            )
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub target: Target,
    pub window_s: f64,
    pub ingress_pps: f64,
    /// Packets the sinks received per second over the window.
    pub egress_pps: f64,
    /// CPU time of the node's worker threads over the window, in ns.
    pub worker_cpu_ns: u64,
    /// Worker CPU time per packet the sinks received in the window.
    pub cpu_ns_per_egress_packet: f64,
    /// Worker CPU time over window length (1.0: one core saturated).
    pub worker_utilization: f64,
    /// Packets the publishers sent after priming, times the fan-out.
    pub expected: u64,
    pub received: u64,
    pub loss_ratio: f64,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub latency_max_us: Option<f64>,
    pub latency_samples: u64,
    pub sinks: SinkCounts,
    /// Drops at the node's socket (its receive queue overflowed: the node is too slow).
    pub node_socket_drops: u64,
    /// Drops at the sinks' sockets (the sink thread is too slow).
    pub sink_socket_drops: u64,
    pub load: LoadStats,
    pub interference: Interference,
    /// Why this run's numbers may not be trusted (see [`Interference::disturbed`]).
    pub disturbed: Option<String>,
    /// The node's counters over the window.
    pub node: NodeCounters,
    /// Datagrams the node dropped over the whole run (priming included), by reason.
    pub node_drops: Vec<(String, u64)>,
}

fn keys(rng: &mut StdRng, profile: Profile) -> SrtpKeys {
    let mut key = vec![0u8; profile.master_key_len()];
    let mut salt = vec![0u8; profile.master_salt_len()];
    rng.fill_bytes(&mut key);
    rng.fill_bytes(&mut salt);
    SrtpKeys { profile, key, salt }
}

fn peer_keys(rng: &mut StdRng, profile: Profile) -> PeerKeys {
    PeerKeys {
        to_node: keys(rng, profile),
        from_node: keys(rng, profile),
    }
}

/// A first RTP sequence number: random, or 100 to 100 + `wrap_within` before the wrap.
fn first_seq(rng: &mut StdRng, wrap_within: Option<u16>) -> u16 {
    let r = rng.next_u32() as u16;
    match wrap_within {
        Some(w) => 0u16.wrapping_sub(100).wrapping_sub(r % w.max(1)),
        None => r,
    }
}

/// Runs one configuration against the node `start_node` brings up for the topology.
pub fn run(
    cfg: &RunConfig,
    start_node: &dyn Fn(&Topology) -> io::Result<Box<dyn Node>>,
) -> io::Result<RunResult> {
    let rtp_len = cfg
        .packet_size
        .checked_sub(cfg.profile.rtp_overhead())
        .filter(|&n| n >= MIN_RTP_LEN)
        .ok_or_else(|| {
            io::Error::other(format!(
                "packets must be at least {} bytes",
                MIN_RTP_LEN + cfg.profile.rtp_overhead()
            ))
        })?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut pub_socks = Vec::new();
    let mut publishers = Vec::new();
    for _ in 0..cfg.publishers.max(1) {
        let sock = bind_loopback(SOCKET_BUFFER)?;
        publishers.push(PublisherPeer {
            addr: sock.local_addr()?,
            ssrc: rng.next_u32() | 1,
            keys: peer_keys(&mut rng, cfg.profile),
        });
        pub_socks.push(sock);
    }
    let mut sink_socks = Vec::new();
    let mut sinks = Vec::new();
    for p in 0..publishers.len() {
        for _ in 0..cfg.fanout.max(1) {
            let sock = bind_loopback(SOCKET_BUFFER)?;
            sinks.push(SinkPeer {
                addr: sock.local_addr()?,
                publisher: p,
                ssrc: rng.next_u32() | 1,
                initial_seq: first_seq(&mut rng, cfg.wrap_within),
                initial_ts: rng.next_u32(),
                keys: peer_keys(&mut rng, cfg.profile),
            });
            sink_socks.push(sock);
        }
    }
    let topology = Topology {
        target: cfg.target,
        profile: cfg.profile,
        publishers,
        sinks,
    };
    let node = start_node(&topology)?;
    let node_addr = node.addr();
    let tids = node.worker_tids();
    let drops_before = port_drops(node_addr.port());

    let mut pubs = Vec::new();
    for (sock, p) in pub_socks.into_iter().zip(&topology.publishers) {
        sock.connect(node_addr)?;
        let writer = PacketWriter::new(
            pubs.len() as u32,
            p.ssrc,
            first_seq(&mut rng, cfg.wrap_within),
            rng.next_u32(),
            rtp_len,
        );
        pubs.push(Publisher::new(
            sock,
            &p.keys.to_node,
            &p.keys.from_node,
            writer,
        )?);
    }
    let mut sink_list = Vec::new();
    for (sock, s) in sink_socks.into_iter().zip(&topology.sinks) {
        // The router re-encrypts for each subscriber; the reference forwards the
        // publisher's packet as it came.
        let (ssrc, keys) = match cfg.target {
            Target::Router => (s.ssrc, &s.keys.from_node),
            Target::Reference => {
                let p = &topology.publishers[s.publisher];
                (p.ssrc, &p.keys.to_node)
            }
        };
        sink_list.push(Sink::new(sock, s.publisher as u32, ssrc, keys)?);
    }
    let generator = Generator::new(pubs, cfg.shape, cfg.frame_packets, cfg.ingress_pps);
    let sinks = Sinks::new(sink_list, cfg.verify_every);

    // The load thread marks the window's start and end; the node's counters are read
    // here at each mark.
    let (mark_tx, mark_rx) = std::sync::mpsc::channel::<()>();
    let (outcome, marks) = std::thread::scope(|scope| {
        let load = std::thread::Builder::new()
            .name("bench-load".into())
            .spawn_scoped(scope, || load_thread(cfg, generator, sinks, &tids, mark_tx))?;
        let mut marks = Vec::with_capacity(2);
        while mark_rx.recv().is_ok() {
            marks.push(node.counters());
        }
        let outcome = load
            .join()
            .map_err(|_| io::Error::other("load thread panicked"))?;
        Ok::<_, io::Error>((outcome, marks))
    })?;
    let node_socket_drops = port_drops(node_addr.port()).saturating_sub(drops_before);
    let drops = node.shutdown();
    let mut result = outcome?;
    if let [a, b] = marks[..] {
        result.node = b.since(&a);
    }
    result.node_drops = drops;
    result.node_socket_drops = node_socket_drops;
    Ok(result)
}

/// The generator and the sinks around one poller.
struct Load {
    generator: Generator,
    sinks: Sinks,
    poller: Poller,
    n_sinks: usize,
}

impl Load {
    /// Drains every socket with input; returns the packets received.
    fn service(&mut self) -> usize {
        let mut got = 0;
        let Self {
            poller,
            sinks,
            generator,
            n_sinks,
            ..
        } = self;
        for token in poller.poll() {
            let i = token as usize;
            if i < *n_sinks {
                got += sinks.on_readable(i, monotonic_ns);
            } else {
                generator.on_readable(i - *n_sinks);
            }
        }
        got
    }

    /// Services sockets until nothing arrived for `quiet`, or `limit` passed.
    fn drain(&mut self, quiet: Duration, limit: Duration) {
        let start = monotonic_ns();
        let mut last = start;
        loop {
            let now = monotonic_ns();
            if self.service() > 0 {
                last = now;
            }
            if now - last > quiet.as_nanos() as u64 || now - start > limit.as_nanos() as u64 {
                return;
            }
        }
    }
}

fn workers_cpu_ns(tids: &[i32]) -> u64 {
    tids.iter().filter_map(|&t| thread_cpu_ns(t).ok()).sum()
}

fn workers_wait_ns(tids: &[i32]) -> u64 {
    tids.iter().filter_map(|&t| thread_wait_ns(t)).sum()
}

fn load_thread(
    cfg: &RunConfig,
    generator: Generator,
    sinks: Sinks,
    tids: &[i32],
    window_marks: std::sync::mpsc::Sender<()>,
) -> io::Result<RunResult> {
    if let Some(cpu) = cfg.load_cpu {
        pin_current_thread(cpu)?;
    }
    let n_sinks = sinks.sinks().len();
    let poller = Poller::new(256)?;
    for (i, s) in sinks.sinks().iter().enumerate() {
        poller.add(s.socket(), i as u64)?;
    }
    for (i, p) in generator.publishers().iter().enumerate() {
        poller.add(p.socket(), (n_sinks + i) as u64)?;
    }
    let mut load = Load {
        generator,
        sinks,
        poller,
        n_sinks,
    };

    // Priming: keyframes until every subscription is open (commands reach the workers
    // asynchronously, and the router forwards from a keyframe on), then quiet.
    let deadline = monotonic_ns() + 10_000_000_000;
    loop {
        load.generator.send_keyframes()?;
        load.drain(Duration::from_millis(20), Duration::from_millis(20));
        if load.sinks.silent() == 0 {
            break;
        }
        if monotonic_ns() > deadline {
            return Err(io::Error::other(format!(
                "{} of {} sinks received nothing in 10 s of priming",
                load.sinks.silent(),
                n_sinks
            )));
        }
    }
    load.drain(Duration::from_millis(50), Duration::from_secs(1));
    let sent0 = load.generator.stats().sent;
    let recv0 = load.sinks.totals();
    let sink_drops0 = load.sinks.socket_drops();

    let t0 = monotonic_ns();
    let window_start = t0 + cfg.warmup.as_nanos() as u64;
    let window_end = window_start + cfg.window.as_nanos() as u64;
    load.generator.start(t0);
    let mut busy = 0u64;
    let mut at_start = None;
    let at_end = loop {
        let now = monotonic_ns();
        if at_start.is_none() && now >= window_start {
            load.sinks.record_latency(true);
            at_start = Some(Snapshot::take(&load, cfg, tids, busy, now));
            let _ = window_marks.send(());
        }
        if now >= window_end {
            let _ = window_marks.send(());
            break Snapshot::take(&load, cfg, tids, busy, now);
        }
        let work = load.generator.poll(now) + load.service();
        if work > 0 {
            busy += monotonic_ns() - now;
        }
    };
    let (a, b) = (at_start.expect("window started"), at_end);
    // Packets still in flight when the window closed are counted (and their latency
    // recorded) during the drain.
    load.drain(Duration::from_millis(200), Duration::from_secs(3));
    load.sinks.record_latency(false);

    let window_ns = (b.time - a.time).max(1);
    let window_s = window_ns as f64 / 1e9;
    let egress = b.sinks.received - a.sinks.received;
    let worker_cpu_ns = b.worker_cpu - a.worker_cpu;
    let busy_ns = b.busy - a.busy;
    let totals = load.sinks.totals();
    let gen_stats = load.generator.stats();
    let expected = (gen_stats.sent - sent0) * cfg.fanout.max(1) as u64;
    let sinks_delta = totals.since(&recv0);
    let lat = load.sinks.latency();
    let us = |v: Option<u64>| v.map(|ns| ns as f64 / 1000.0);
    let foreign = |core: (Option<u64>, Option<u64>), own: u64| match core {
        (Some(x), Some(y)) => Some((y - x).saturating_sub(own)),
        _ => None,
    };
    let interference = Interference {
        worker_runqueue_wait_ns: b.worker_wait - a.worker_wait,
        load_runqueue_wait_ns: b.load_wait - a.load_wait,
        worker_core_foreign_ns: foreign((a.worker_core, b.worker_core), worker_cpu_ns),
        load_core_foreign_ns: foreign((a.load_core, b.load_core), b.load_cpu - a.load_cpu),
    };
    let disturbed = interference.disturbed(window_ns as f64);
    Ok(RunResult {
        target: cfg.target,
        window_s,
        ingress_pps: (b.sent - a.sent) as f64 / window_s,
        egress_pps: egress as f64 / window_s,
        worker_cpu_ns,
        cpu_ns_per_egress_packet: worker_cpu_ns as f64 / egress.max(1) as f64,
        worker_utilization: worker_cpu_ns as f64 / window_ns as f64,
        expected,
        received: sinks_delta.received,
        loss_ratio: if expected == 0 {
            0.0
        } else {
            (1.0 - sinks_delta.received as f64 / expected as f64).max(0.0)
        },
        latency_p50_us: us(lat.quantile(0.5)),
        latency_p99_us: us(lat.quantile(0.99)),
        latency_max_us: us((lat.count() > 0).then(|| lat.max())),
        latency_samples: lat.count(),
        sinks: sinks_delta,
        node_socket_drops: 0,
        sink_socket_drops: load.sinks.socket_drops() - sink_drops0,
        load: LoadStats {
            cpu_ns: b.load_cpu - a.load_cpu,
            busy_fraction: busy_ns as f64 / window_ns as f64,
            busy_ns_per_egress_packet: busy_ns as f64 / egress.max(1) as f64,
            generator: gen_stats,
        },
        interference,
        disturbed,
        node: NodeCounters::default(),
        node_drops: Vec::new(),
    })
}

struct Snapshot {
    time: u64,
    worker_cpu: u64,
    worker_wait: u64,
    load_cpu: u64,
    load_wait: u64,
    worker_core: Option<u64>,
    load_core: Option<u64>,
    busy: u64,
    sent: u64,
    sinks: SinkCounts,
}

impl Snapshot {
    fn take(load: &Load, cfg: &RunConfig, tids: &[i32], busy: u64, time: u64) -> Self {
        Self {
            time,
            worker_cpu: workers_cpu_ns(tids),
            worker_wait: workers_wait_ns(tids),
            load_cpu: current_thread_cpu_ns(),
            load_wait: thread_wait_ns(gettid()).unwrap_or(0),
            worker_core: cfg.worker_cpu.and_then(cpu_busy_ns),
            load_core: cfg.load_cpu.and_then(cpu_busy_ns),
            busy,
            sent: load.generator.stats().sent,
            sinks: load.sinks.totals(),
        }
    }
}

/// Publishers needed to offer `ingress_pps` as frames of `frame_packets` packets at
/// about 30 frames per second each (a video sender's cadence).
pub fn publishers_for(ingress_pps: f64, frame_packets: u32) -> usize {
    ((ingress_pps / (f64::from(frame_packets.max(1)) * f64::from(FRAME_RATE))).round() as usize)
        .max(1)
}
