//! A scrape written as Prometheus families. Names follow the Prometheus conventions:
//! the `sluice_` prefix comes from the registry, base units (seconds, bytes, ratios),
//! `_total` on counters (added by the encoder). Labels are bounded: a worker index, a
//! cluster member's name, a fixed reason or state; never a participant.

use super::gather::Scrape;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use sluice_dataplane::driver::WorkerStats;
use sluice_dataplane::router::{
    HISTOGRAM_BOUNDS, Histogram, JITTER_US_BOUNDS, LOSS_PPM_BOUNDS, RTT_US_BOUNDS, RouterStats,
};
use std::fmt;

type Labels = Vec<(&'static str, String)>;

fn none() -> Labels {
    Vec::new()
}

fn one(key: &'static str, value: impl ToString) -> Labels {
    vec![(key, value.to_string())]
}

fn two(k1: &'static str, v1: impl ToString, k2: &'static str, v2: impl ToString) -> Labels {
    vec![(k1, v1.to_string()), (k2, v2.to_string())]
}

/// Where a drop reason is counted, in a worker's I/O or router counters.
type DropCount = fn(&WorkerStats, &RouterStats) -> u64;

/// Each drop reason an operator can tell apart, and where it is counted.
pub const DROP_REASONS: &[(&str, DropCount)] = &[
    ("srtp_auth", |_, r| r.drop_srtp_auth),
    ("replay", |_, r| r.drop_replay),
    ("unknown_session", |_, r| r.drop_unknown_session),
    ("unknown_ssrc", |_, r| r.drop_unknown_ssrc),
    ("malformed", |_, r| r.drop_malformed),
    ("oversize", |w, _| w.rx_truncated),
    ("queue_full", |w, _| w.handoff_queue_full + w.link_drops),
    ("rate_limited", |_, r| r.drop_rate_limited),
    ("stale", |_, r| r.drop_stale),
    ("duplicate", |_, r| r.drop_duplicate),
    ("egress", |_, r| r.drop_egress),
    ("send_error", |w, _| w.tx_errors),
    ("receive_error", |w, _| w.rx_errors),
    ("unroutable", |w, _| w.tx_unroutable),
    ("link_unknown_track", |_, r| r.drop_link_unknown_track),
    ("dtls_unvalidated", |_, r| r.dtls_unknown),
    ("stun_rejected", |_, r| r.stun_rejected),
    ("events", |_, r| r.events_dropped),
];

struct Families<'a>(DescriptorEncoder<'a>);

impl Families<'_> {
    fn counter<V: EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, V)>,
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in samples {
            if labels.is_empty() {
                m.encode_counter::<NoLabelSet, _, f64>(&v, None)?;
            } else {
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, f64>(&v, None)?;
            }
        }
        Ok(())
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in samples {
            if labels.is_empty() {
                m.encode_gauge(&v)?;
            } else {
                m.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        Ok(())
    }

    /// `h` counts integers in `1/scale` of the base unit (microseconds for seconds).
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        h: &Histogram,
        bounds: &[u64; HISTOGRAM_BOUNDS],
        scale: f64,
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .zip(h.buckets)
            .map(|(b, n)| (*b as f64 / scale, n))
            .collect();
        buckets.push((f64::INFINITY, h.buckets[HISTOGRAM_BOUNDS]));
        m.encode_histogram::<NoLabelSet>(h.sum as f64 / scale, h.count, &buckets, None)
    }
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut f = Families(encoder);
        self.encode_media(&mut f)?;
        self.encode_sessions(&mut f)?;
        self.encode_cluster(&mut f)?;
        self.encode_placement(&mut f)
    }
}

impl Scrape {
    fn per_worker<T>(&self, value: impl Fn(&super::gather::WorkerScrape) -> T) -> Vec<(Labels, T)> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| (one("worker", i), value(w)))
            .collect()
    }

    fn per_worker_dir(
        &self,
        dirs: [&'static str; 2],
        value: impl Fn(&super::gather::WorkerScrape, usize) -> u64,
    ) -> Vec<(Labels, u64)> {
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            for (d, dir) in dirs.iter().enumerate() {
                out.push((two("worker", i, "direction", dir), value(w, d)));
            }
        }
        out
    }

    fn encode_media(&self, f: &mut Families<'_>) -> fmt::Result {
        f.gauge(
            "worker_up",
            "Whether the media worker's loop is running.",
            self.per_worker(|w| f64::from(u8::from(w.io.running))),
        )?;
        f.counter(
            "worker_cpu_seconds",
            "CPU time the media worker's thread has used.",
            self.per_worker(|w| w.cpu.map_or(0.0, secs)),
        )?;
        f.counter(
            "worker_packets",
            "UDP datagrams the worker received (rx) and the kernel accepted for sending (tx).",
            self.per_worker_dir(["rx", "tx"], |w, d| [w.io.rx_packets, w.io.tx_packets][d]),
        )?;
        f.counter(
            "worker_bytes",
            "UDP payload bytes the worker received (rx) and sent (tx).",
            self.per_worker_dir(["rx", "tx"], |w, d| [w.io.rx_bytes, w.io.tx_bytes][d]),
        )?;
        let mut drops = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            for (reason, count) in DROP_REASONS {
                drops.push((two("worker", i, "reason", reason), count(&w.io, &w.router)));
            }
        }
        f.counter(
            "drops",
            "Packets dropped, by reason (see the README's metrics section).",
            drops,
        )?;
        f.counter(
            "rtp_packets",
            "RTP packets taken in from publishers and links (in) and sent to subscribers (out).",
            self.per_worker_dir(["in", "out"], |w, d| [w.router.rtp_in, w.router.rtp_out][d]),
        )?;
        f.counter(
            "rtcp_packets",
            "RTCP packets received (in) and sent (out).",
            self.per_worker_dir(["in", "out"], |w, d| {
                [w.router.rtcp_in, w.router.rtcp_out][d]
            }),
        )?;
        f.counter(
            "layer_switches",
            "Simulcast layer switches made for subscribers.",
            self.per_worker(|w| w.router.layer_switches),
        )?;
        f.counter(
            "keyframe_requests",
            "Keyframe requests (PLI/FIR) sent to publishers.",
            self.per_worker(|w| w.router.keyframe_requests),
        )?;
        f.counter(
            "retransmits",
            "Packets resent to subscribers that NACKed them.",
            self.per_worker(|w| w.router.retransmits),
        )
    }

    fn encode_sessions(&self, f: &mut Families<'_>) -> fmt::Result {
        let s = &self.sessions;
        let mut by_kind = Vec::new();
        for (r, role) in ["publisher", "subscriber"].iter().enumerate() {
            for (c, state) in ["connecting", "connected"].iter().enumerate() {
                by_kind.push((two("role", role, "state", state), s.by_kind[r][c] as f64));
            }
        }
        f.gauge("sessions", "WebRTC sessions on this node.", by_kind)?;
        f.gauge(
            "tracks",
            "Tracks published by connected publishers on this node.",
            [(none(), s.tracks as f64)],
        )?;
        f.gauge(
            "subscriptions",
            "Tracks connected subscribers on this node receive.",
            [(none(), s.subscriptions as f64)],
        )?;
        f.gauge(
            "rooms",
            "Rooms with a session on this node.",
            [(none(), s.rooms as f64)],
        )?;
        let q = &self.quality;
        f.histogram(
            "call_loss_ratio",
            "Fraction lost that subscribers report per stream (RTCP receiver reports).",
            &q.loss_ppm,
            &LOSS_PPM_BOUNDS,
            1e6,
        )?;
        f.histogram(
            "call_jitter_seconds",
            "Interarrival jitter that subscribers report per stream.",
            &q.jitter_us,
            &JITTER_US_BOUNDS,
            1e6,
        )?;
        f.histogram(
            "call_rtt_seconds",
            "Round-trip time to subscribers, from their reports on our sender reports.",
            &q.rtt_us,
            &RTT_US_BOUNDS,
            1e6,
        )?;
        f.counter(
            "process_cpu_seconds",
            "CPU time of the whole process (user and system).",
            [(none(), self.process_cpu.map_or(0.0, secs))],
        )?;
        if let Some(r) = &self.readiness {
            f.gauge(
                "draining",
                "1 while the node is draining.",
                [(none(), f64::from(u8::from(r.draining)))],
            )?;
            f.gauge(
                "ready",
                "1 when the node takes new sessions (GET /readyz).",
                [(none(), f64::from(u8::from(r.ready)))],
            )?;
        }
        Ok(())
    }

    fn encode_cluster(&self, f: &mut Families<'_>) -> fmt::Result {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let per_link = |v: fn(&crate::cluster::LinkStats) -> f64| {
            c.links
                .iter()
                .map(move |(peer, s)| (one("peer", peer), v(s)))
                .collect::<Vec<_>>()
        };
        f.gauge(
            "link_rtt_seconds",
            "Smoothed round-trip time of the link to each member.",
            per_link(|s| secs(s.rtt)),
        )?;
        f.gauge(
            "link_min_rtt_seconds",
            "Lowest round-trip time seen on the link.",
            per_link(|s| secs(s.min_rtt)),
        )?;
        f.gauge(
            "link_cwnd_bytes",
            "Congestion window of the link.",
            per_link(|s| s.cwnd as f64),
        )?;
        let per_link_n = |v: fn(&crate::cluster::LinkStats) -> u64| {
            c.links
                .iter()
                .map(move |(peer, s)| (one("peer", peer), v(s)))
                .collect::<Vec<_>>()
        };
        f.counter(
            "link_sent_packets",
            "QUIC packets sent on the link.",
            per_link_n(|s| s.sent_packets),
        )?;
        f.counter(
            "link_lost_packets",
            "QUIC packets the link declared lost.",
            per_link_n(|s| s.lost_packets),
        )?;
        f.counter(
            "link_congestion_events",
            "Congestion events on the link.",
            per_link_n(|s| s.congestion_events),
        )?;
        let mut bytes = Vec::new();
        for (peer, s) in &c.links {
            bytes.push((two("peer", peer, "direction", "tx"), s.udp_tx_bytes));
            bytes.push((two("peer", peer, "direction", "rx"), s.udp_rx_bytes));
        }
        f.counter(
            "link_bytes",
            "UDP bytes on the link, QUIC overhead included.",
            bytes,
        )?;
        let e = &c.endpoint;
        f.counter(
            "link_datagrams",
            "Datagrams received from (in) and sent to (out) other members.",
            [
                (one("direction", "in"), e.datagrams_in),
                (one("direction", "out"), e.datagrams_out),
            ],
        )?;
        f.counter(
            "link_datagrams_dropped",
            "Link datagrams dropped: over the path's size, send buffer full, receive queue full.",
            [
                (one("reason", "oversize"), e.oversize_drops),
                (one("reason", "send"), e.send_drops),
                (one("reason", "receive"), e.recv_drops),
            ],
        )?;
        f.counter(
            "link_handshakes_failed",
            "Link handshakes refused (TLS alert) or failed otherwise.",
            [
                (one("reason", "refused"), e.handshakes_refused),
                (one("reason", "failed"), e.handshakes_failed),
            ],
        )?;
        let k = &c.cascade;
        f.counter(
            "cascade_packets",
            "Media packets taken from (in) and put on (out) links.",
            [
                (one("direction", "in"), k.media_in),
                (one("direction", "out"), k.media_out),
            ],
        )?;
        f.counter(
            "cascade_dropped",
            "Media packets for a member with no link, or that its link refused.",
            [(none(), k.media_out_dropped + c.shaper.packets_shed)],
        )?;
        f.gauge(
            "cascade_relayed_layers",
            "Track layers this node forwards for other members' media now.",
            [(none(), k.relays as f64)],
        )?;
        f.counter(
            "route_changes",
            "Changes of the route this node's media takes to another member.",
            [(none(), k.route_changes)],
        )?;
        f.gauge(
            "route_relayed",
            "1 when this node's media reaches the member through a relay.",
            c.relayed
                .iter()
                .map(|(peer, r)| (one("peer", peer), f64::from(u8::from(*r))))
                .collect::<Vec<_>>(),
        )?;
        f.counter(
            "path_changes",
            "Route changes of every member pair this node tracks.",
            [(none(), c.paths.changes)],
        )?;
        f.counter(
            "path_forced_changes",
            "Route changes because the route in use stopped working.",
            [(none(), c.paths.forced)],
        )?;
        f.counter(
            "speaker_changes",
            "Active speaker changes among this node's publishers.",
            [(none(), k.speaker_changes)],
        )?;
        f.gauge(
            "members",
            "Other cluster members, by SWIM state.",
            ["alive", "suspect", "down"]
                .iter()
                .zip(c.members)
                .map(|(s, n)| (one("state", s), n as f64))
                .collect::<Vec<_>>(),
        )?;
        f.counter(
            "member_downs",
            "Members declared down (failovers).",
            [(none(), c.downs)],
        )?;
        let st = &c.state;
        f.counter(
            "gossip_bytes",
            "Membership and room-state bytes received (in) and sent (out).",
            [
                (one("direction", "in"), st.bytes_in),
                (one("direction", "out"), st.bytes_out),
            ],
        )?;
        f.counter(
            "gossip_dropped",
            "Gossip refused, by reason.",
            [
                (one("reason", "unauthenticated"), st.dropped_unauthenticated),
                (one("reason", "malformed"), st.dropped_malformed),
                (one("reason", "swim_rejected"), st.swim_rejected),
                (one("reason", "room_sync_rejected"), st.room_sync_rejected),
            ],
        )?;
        f.counter(
            "room_syncs",
            "Room-state sync messages applied.",
            [(none(), st.room_sync_applied)],
        )?;
        f.gauge(
            "gossip_report_age_seconds",
            "Time since this node received each member's latest load report: how far behind its view of that member may be.",
            c.report_age
                .iter()
                .map(|(peer, age)| (one("peer", peer), secs(*age)))
                .collect::<Vec<_>>(),
        )
    }

    fn encode_placement(&self, f: &mut Families<'_>) -> fmt::Result {
        f.counter(
            "placement_decisions",
            "WHIP/WHEP POSTs kept here, redirected to a better node, or refused (no node could take them).",
            ["here", "redirected", "full"]
                .iter()
                .zip(self.placements)
                .map(|(o, n)| (one("outcome", o), n))
                .collect::<Vec<_>>(),
        )?;
        let mut scores = Vec::new();
        for s in &self.placement_scores {
            for (component, v) in [
                ("proximity", s.proximity),
                ("load", s.load),
                ("reliability", s.reliability),
                ("cost", s.cost),
                ("total", s.total),
            ] {
                scores.push((two("node", &s.node, "component", component), f64::from(v)));
            }
        }
        f.gauge(
            "placement_score",
            "Each candidate's placement score for a client of this node's region, by component (0 best, 1000 worst).",
            scores,
        )
    }
}
