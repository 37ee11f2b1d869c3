//! The node under test: Sluice's router on the dataplane driver's workers, behind the
//! [`MediaNode`] facade, with every publisher and subscriber installed through the bench
//! session API (keys given directly, no ICE or DTLS); or the reference
//! ([`SourceFanout`]) on the same driver.

use super::payload::{CLOCK_RATE, EXTENSIONS, PAYLOAD_TYPE};
use super::reference::{FanoutCommand, SourceFanout};
use super::run::{Node, NodeCounters, Target, Topology};
use sluice_dataplane::driver::{DriverConfig, DriverKind, WorkerStats, Workers};
use sluice_dataplane::engine::PacketHandler;
use sluice_dataplane::node::MediaNode;
use sluice_dataplane::router::{
    Codec, LayerConfig, Router, RouterConfig, RouterStats, SessionConfig, SubscribeConfig,
    TrackConfig,
};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

/// How the node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub kind: DriverKind,
    /// Pin the (single) worker to this CPU.
    pub worker_cpu: Option<usize>,
    /// The router's RTCP (reports, transport-wide CC feedback, REMB) on its default
    /// intervals; off, it only forwards (to tell the two costs apart).
    pub router_feedback: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            kind: DriverKind::Auto,
            worker_cpu: None,
            router_feedback: true,
        }
    }
}

/// A started node: the reference on bare driver workers, or the router behind the
/// dataplane's [`MediaNode`] facade.
#[derive(Debug)]
pub enum BenchNode {
    Reference(Workers<SourceFanout>),
    Router(MediaNode),
}

impl BenchNode {
    fn stats(&self) -> Vec<WorkerStats> {
        match self {
            Self::Reference(w) => all_stats(w),
            Self::Router(n) => all_stats(n.workers()),
        }
    }
}

fn driver_config(opts: &NodeOptions) -> DriverConfig {
    DriverConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        workers: 1,
        pin_cores: opts.worker_cpu.map(|c| vec![c]),
        kind: opts.kind,
        ..DriverConfig::default()
    }
}

fn all_stats<H: PacketHandler>(w: &Workers<H>) -> Vec<WorkerStats> {
    (0..w.workers()).map(|i| w.stats(i)).collect()
}

impl Node for BenchNode {
    fn addr(&self) -> SocketAddr {
        match self {
            Self::Reference(w) => w.local_addr(),
            Self::Router(n) => n.local_addr(),
        }
    }

    fn worker_tids(&self) -> Vec<i32> {
        self.stats().iter().map(|s| s.tid).collect()
    }

    fn driver(&self) -> String {
        let a = match self {
            Self::Reference(w) => w.kind(),
            Self::Router(n) => n.driver(),
        };
        let name = match a.kind {
            DriverKind::Uring => "io_uring",
            DriverKind::Mmsg => "recvmmsg/sendmmsg",
            DriverKind::Auto => "auto",
        };
        match &a.fallback_reason {
            Some(why) => format!("{name} (io_uring unavailable: {why})"),
            None => name.to_string(),
        }
    }

    fn counters(&self) -> NodeCounters {
        let stats = self.stats();
        let sum = |f: fn(&WorkerStats) -> u64| stats.iter().map(f).sum();
        NodeCounters {
            rx_packets: sum(|s| s.rx_packets),
            tx_packets: sum(|s| s.tx_packets),
            loops: sum(|s| s.loops),
            wakeups: sum(|s| s.wakeups),
            timeouts: sum(|s| s.timeouts),
            rx_no_buffers: sum(|s| s.rx_no_buffers),
            gso_sends: sum(|s| s.gso_sends),
        }
    }

    fn shutdown(self: Box<Self>) -> Vec<(String, u64)> {
        let stats = self.stats();
        let sum = |f: fn(&WorkerStats) -> u64| stats.iter().map(f).sum::<u64>();
        let mut drops: Vec<(String, u64)> = [
            ("rx_truncated", sum(|s| s.rx_truncated)),
            ("rx_errors", sum(|s| s.rx_errors)),
            ("tx_errors", sum(|s| s.tx_errors)),
            ("tx_unroutable", sum(|s| s.tx_unroutable)),
            ("handoff_queue_full", sum(|s| s.handoff_queue_full)),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect();
        match *self {
            Self::Reference(w) => {
                if let Ok(h) = w.shutdown() {
                    drops.extend(fanout_drops(&h));
                }
            }
            Self::Router(n) => {
                if let Ok(r) = n.shutdown() {
                    drops.extend(router_drops(&r));
                }
            }
        }
        drops
    }
}

fn router_drops(routers: &[Router]) -> Vec<(String, u64)> {
    let mut t = RouterStats::default();
    for r in routers {
        let s = r.stats();
        t.drop_unknown_session += s.drop_unknown_session;
        t.drop_srtp_auth += s.drop_srtp_auth;
        t.drop_replay += s.drop_replay;
        t.drop_malformed += s.drop_malformed;
        t.drop_unknown_ssrc += s.drop_unknown_ssrc;
        t.drop_stale += s.drop_stale;
        t.drop_egress += s.drop_egress;
        t.drop_duplicate += s.drop_duplicate;
    }
    [
        ("router_unknown_session", t.drop_unknown_session),
        ("router_srtp_auth", t.drop_srtp_auth),
        ("router_replay", t.drop_replay),
        ("router_malformed", t.drop_malformed),
        ("router_unknown_ssrc", t.drop_unknown_ssrc),
        ("router_stale", t.drop_stale),
        ("router_egress", t.drop_egress),
        ("router_duplicate", t.drop_duplicate),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .map(|(k, n)| (k.to_string(), n))
    .collect()
}

fn fanout_drops(handlers: &[SourceFanout]) -> Vec<(String, u64)> {
    let n: u64 = handlers.iter().map(SourceFanout::unrouted).sum();
    if n > 0 {
        vec![("reference_unrouted".to_string(), n)]
    } else {
        Vec::new()
    }
}

/// Starts a node for `topology`: its workers, then every session, track and
/// subscription (or, for the reference, every route). Commands reach the workers
/// asynchronously; the run primes with keyframes until every sink hears its publisher.
pub fn start(topology: &Topology, opts: &NodeOptions) -> io::Result<Box<dyn Node>> {
    let cfg = driver_config(opts);
    match topology.target {
        Target::Reference => {
            let workers = Workers::start(cfg, |_, _| SourceFanout::new())?;
            for (i, p) in topology.publishers.iter().enumerate() {
                let sinks = topology
                    .sinks
                    .iter()
                    .filter(|s| s.publisher == i)
                    .map(|s| s.addr)
                    .collect();
                let w = workers.worker_for(p.addr);
                workers
                    .command(
                        w,
                        FanoutCommand::Route {
                            from: p.addr,
                            sinks,
                        },
                    )
                    .map_err(|_| io::Error::other(format!("worker {w} is gone")))?;
            }
            Ok(Box::new(BenchNode::Reference(workers)))
        }
        Target::Router => {
            let mut config = RouterConfig::default();
            if !opts.router_feedback {
                // Never due: no reports, no TWCC feedback (and so no REMB either).
                config.feedback.report_interval = u64::MAX / 4;
                config.feedback.twcc_interval = u64::MAX / 4;
            }
            let mut node = MediaNode::start(cfg, config)?;
            let err = |e: sluice_dataplane::node::NodeError| io::Error::other(e.to_string());
            let session = |id: u64, remote, keys: &super::run::PeerKeys| SessionConfig {
                id,
                remote,
                inbound: keys.to_node.clone(),
                outbound: keys.from_node.clone(),
                extensions: EXTENSIONS,
                rtcp_ssrc: 0x5155_1ce0 ^ id as u32,
            };
            // Session ids: publishers 1..=P, sinks after them; track i+1 is publisher i's.
            let pubs = topology.publishers.len() as u64;
            for (i, p) in topology.publishers.iter().enumerate() {
                node.add_session(session(i as u64 + 1, p.addr, &p.keys))
                    .map_err(err)?;
            }
            for (i, s) in topology.sinks.iter().enumerate() {
                node.add_session(session(pubs + 1 + i as u64, s.addr, &s.keys))
                    .map_err(err)?;
            }
            for (i, p) in topology.publishers.iter().enumerate() {
                node.add_track(TrackConfig {
                    id: i as u64 + 1,
                    publisher: i as u64 + 1,
                    home: 0, // MediaNode sets it to the publisher's worker.
                    codec: Codec::Vp8,
                    clock_rate: CLOCK_RATE,
                    payload_type: PAYLOAD_TYPE,
                    rtx_payload_type: None,
                    layers: vec![LayerConfig {
                        ssrc: Some(p.ssrc),
                        rtx_ssrc: None,
                        rid: None,
                    }],
                })
                .map_err(err)?;
            }
            for (i, s) in topology.sinks.iter().enumerate() {
                node.subscribe(SubscribeConfig {
                    session: pubs + 1 + i as u64,
                    track: s.publisher as u64 + 1,
                    ssrc: s.ssrc,
                    payload_type: PAYLOAD_TYPE,
                    rtx: None,
                    initial_seq: s.initial_seq,
                    initial_ts: s.initial_ts,
                    layer: 0,
                    pinned: true,
                    ext_remap: None,
                })
                .map_err(err)?;
            }
            Ok(Box::new(BenchNode::Router(node)))
        }
    }
}
