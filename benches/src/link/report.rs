//! The link benchmark's tables and JSON.

use super::bulk::BulkResult;
use super::cpu::CpuResult;
use super::media::MediaResult;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct PathDesc {
    pub rate_bps: u64,
    pub rtt_ms: f64,
    pub loss: f64,
    pub jitter_ms: f64,
    pub queue_bytes: usize,
}

/// The benchmark's acceptance lines (issue 6), judged on the links' BBR-style
/// controller (`link-bbr`), else on quinn's BBR.
#[derive(Debug, Clone, Serialize)]
pub struct Acceptance {
    pub controller: Option<String>,
    /// Its goodput share of the bottleneck, and whether it is at least 85%.
    pub bbr_goodput_share: Option<f64>,
    pub bbr_at_least_85: Option<bool>,
    /// With media offered above the rate: no audio packet shed or refused by the link,
    /// and upper layers shed (fewer top-layer streams arrive than are offered).
    pub audio_never_dropped: Option<bool>,
    pub upper_layers_shed: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub path: PathDesc,
    pub bulk: Vec<BulkResult>,
    pub media: Vec<MediaResult>,
    pub cpu: Option<CpuResult>,
    pub acceptance: Acceptance,
}

impl LinkReport {
    pub fn new(
        path: PathDesc,
        bulk: Vec<BulkResult>,
        media: Vec<MediaResult>,
        cpu: Option<CpuResult>,
    ) -> Self {
        let names: Vec<&str> = bulk
            .iter()
            .map(|b| b.congestion.as_str())
            .chain(media.iter().map(|m| m.congestion.as_str()))
            .collect();
        let judged = ["link-bbr", "quinn-bbr"]
            .into_iter()
            .find(|c| names.contains(c));
        let bbr = bulk.iter().find(|b| Some(b.congestion.as_str()) == judged);
        let bbr_media = media.iter().find(|m| Some(m.congestion.as_str()) == judged);
        let acceptance = Acceptance {
            controller: judged.map(str::to_owned),
            bbr_goodput_share: bbr.map(|b| b.goodput_share),
            bbr_at_least_85: bbr.map(|b| b.goodput_share >= 0.85),
            audio_never_dropped: bbr_media.map(|m| m.audio_shed == 0 && m.audio_refused == 0),
            upper_layers_shed: bbr_media.map(|m| {
                m.phases
                    .iter()
                    .all(|p| p.layers_arriving[2] < m.publishers as f64)
            }),
        };
        Self {
            path,
            bulk,
            media,
            cpu,
            acceptance,
        }
    }
}

fn mbit(bps: u64) -> f64 {
    bps as f64 / 1e6
}

pub fn bulk_table(path: &PathDesc, rows: &[BulkResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bulk datagrams through {:.0} Mbit/s, {:.0} ms RTT, {:.1}% loss each way, {} KiB queue",
        mbit(path.rate_bps),
        path.rtt_ms,
        path.loss * 100.0,
        path.queue_bytes / 1024
    );
    let _ = writeln!(
        s,
        "| controller | goodput Mbit/s | share of bottleneck | on the wire Mbit/s | wire share | srtt ms | cwnd KiB | lost pkts (relay loss / queue drops) | MTU | connection |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.1}% | {:.2} | {:.1}% | {:.0} | {} | {} ({} / {}) | {} | {} |",
            r.congestion,
            mbit(r.goodput_bps),
            r.goodput_share * 100.0,
            mbit(r.wire_bps),
            r.wire_share * 100.0,
            r.rtt_ms,
            r.cwnd / 1024,
            r.lost_packets,
            r.relay_lost,
            r.relay_queue_drops,
            r.mtu,
            r.closed.as_deref().unwrap_or("open")
        );
    }
    s
}

pub fn media_summary(rows: &[MediaResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| controller | bottleneck Mbit/s | sent Mbit/s | received Mbit/s (share of bottleneck) | lost on the path | estimate Mbit/s | video streams arriving L0 / L1 / L2 (of 4) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for m in rows {
        for p in &m.phases {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.2} | {:.2} ({:.0}%) | {:.1}% | {:.2} | {:.1} / {:.1} / {:.1} |",
                m.congestion,
                mbit(p.link_bps),
                mbit(p.sent_bps),
                mbit(p.received_bps),
                p.received_share * 100.0,
                100.0 * (1.0 - p.received_bps as f64 / p.sent_bps.max(1) as f64).max(0.0),
                mbit(p.estimate_bps),
                p.layers_arriving[0],
                p.layers_arriving[1],
                p.layers_arriving[2]
            );
        }
    }
    for m in rows {
        let _ = writeln!(
            s,
            "{}: {} publishers offering {:.1} Mbit/s; audio offered {}, shed {}, refused by the link {}, received {} ({:.2}% lost on the path); layers shed {} times, restored {}; trials {} ({} held); video packets refused by the link {}",
            m.congestion,
            m.publishers,
            mbit(m.offered_bps),
            m.audio_offered,
            m.audio_shed,
            m.audio_refused,
            m.audio_received,
            100.0 * (1.0 - m.audio_received as f64 / m.audio_offered.max(1) as f64),
            m.layers_shed,
            m.layers_restored,
            m.probes,
            m.probes_held,
            m.refused - m.audio_refused
        );
    }
    s
}

pub fn media_timeline(m: &MediaResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} timeline (Mbit/s):", m.congestion);
    let _ = writeln!(
        s,
        "   t  link  estimate sat  offered  shaped  sent  received  sending L0/L1/L2  arriving L0/L1/L2  audio sent/recv  refused"
    );
    for r in &m.seconds {
        let _ = writeln!(
            s,
            "{:>4} {:>5.1} {:>9.2} {:>3} {:>8.2} {:>7.2} {:>5.2} {:>9.2}  {:>5}/{}/{} {:>12}/{}/{} {:>12}/{} {:>8}",
            r.t,
            mbit(r.link_bps),
            mbit(r.estimate_bps),
            if r.saturated { "*" } else { "" },
            mbit(r.offered_bps),
            mbit(r.shaped_bps),
            mbit(r.sent_bps),
            mbit(r.received_bps),
            r.layers_sending[0],
            r.layers_sending[1],
            r.layers_sending[2],
            r.layers_arriving[0],
            r.layers_arriving[1],
            r.layers_arriving[2],
            r.audio_offered - r.audio_shed - r.audio_refused,
            r.audio_received,
            r.refused
        );
    }
    s
}

pub fn cpu_table(c: &CpuResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CPU per relayed packet, {} RTP bytes at {} packets/s on loopback (whole process):",
        c.rtp_bytes, c.pps
    );
    let _ = writeln!(
        s,
        "| path | packets received / sent | CPU ns per packet | of which the sending thread | vs raw UDP |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, p, ratio) in [
        (
            "QUIC link (shaper, frame, datagram, decode)",
            &c.link,
            c.ratio,
        ),
        ("raw UDP reference (frame, send, recv, decode)", &c.udp, 1.0),
    ] {
        let _ = writeln!(
            s,
            "| {} | {} / {} | {} | {} | {:.2}x |",
            name,
            p.packets_received,
            p.packets_sent,
            p.ns_per_packet,
            p.sender_ns_per_packet,
            ratio
        );
    }
    s
}
