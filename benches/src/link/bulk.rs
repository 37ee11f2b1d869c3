//! Bulk datagram throughput: a sends full-size link frames as fast as its congestion
//! controller lets it (waiting for send-buffer room, never dropping), b counts what
//! arrives. After a warm-up, the window's goodput (datagram bytes b received) and the
//! bottleneck's output (UDP bytes the relay delivered, QUIC overhead included) are
//! compared with the bottleneck rate.

use super::pair::{Controller, Harness, PathSpec};
use super::synth::rtp;
use bytes::BytesMut;
use serde::Serialize;
use sluice_dataplane::link::{self, LinkFrame, MAX_RTP};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    pub congestion: String,
    pub bottleneck_bps: u64,
    pub seconds: f64,
    /// Datagram payload bits per second received by b.
    pub goodput_bps: u64,
    pub goodput_share: f64,
    /// UDP payload bits per second the bottleneck delivered (QUIC overhead included).
    pub wire_bps: u64,
    pub wire_share: f64,
    pub datagrams_received: u64,
    /// Random loss and queue overflow at the relay, in the window.
    pub relay_lost: u64,
    pub relay_queue_drops: u64,
    /// The sender's view at the end: smoothed RTT, window, lost packets in the window.
    pub rtt_ms: f64,
    pub cwnd: u64,
    pub lost_packets: u64,
    pub sent_packets: u64,
    /// The path MTU at the end (quinn falls back to 1200 when it suspects a black hole).
    pub mtu: u16,
    /// The sender stopped (its connection failed) before the window ended, and why.
    pub sender_ended: bool,
    pub closed: Option<String>,
}

pub async fn run(
    controller: Controller,
    path: &PathSpec,
    warmup: Duration,
    window: Duration,
    trace: bool,
) -> Result<BulkResult, String> {
    let bottleneck = path
        .impairment
        .rate_bps
        .ok_or("bulk throughput needs a rate limit")?;
    let mut pair = Harness::open(controller, Some(path)).await?;
    let bytes = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let (b2, c2) = (bytes.clone(), count.clone());
    let mut received = std::mem::replace(&mut pair.received, tokio::sync::mpsc::channel(1).1);
    let receiver = tokio::spawn(async move {
        while let Some(data) = received.recv().await {
            if link::decode(&data).is_ok() {
                b2.fetch_add(data.len() as u64, Ordering::Relaxed);
                c2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut buf = BytesMut::new();
    let packet = rtp(1, 0, 0, MAX_RTP);
    link::encode_to(
        &LinkFrame {
            track: 1,
            layer: 0,
            keyframe: false,
            rtp: &packet,
        },
        &mut buf,
    )
    .map_err(|e| e.to_string())?;
    let frame = buf.split().freeze();
    let conn = pair.conn.clone();
    let sender =
        tokio::spawn(async move { while conn.send_datagram_wait(frame.clone()).await.is_ok() {} });

    let relay = pair.relay.as_ref().ok_or("no relay")?;
    if trace {
        let t0 = std::time::Instant::now();
        let mut last = (relay.stats(), link_stats(&pair.conn), 0u64);
        while t0.elapsed() < warmup {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = (
                relay.stats(),
                link_stats(&pair.conn),
                bytes.load(Ordering::Relaxed),
            );
            let pacing = pair.conn.congestion_state().metrics().pacing_rate;
            let mtu = pair.conn.stats().path.current_mtu;
            let closed = pair.conn.close_reason();
            eprintln!(
                "  {:>4.1}s  goodput {:>6.2} Mbit/s  relay in/out/lost/full {}/{}/{}/{}  sent {} lost {}  cwnd {} KiB  srtt {} ms  pacing {:?}  mtu {}  closed {:?}",
                t0.elapsed().as_secs_f64(),
                (now.2 - last.2) as f64 * 8.0 / 1e6,
                now.0.forward.packets_in - last.0.forward.packets_in,
                now.0.forward.packets_out - last.0.forward.packets_out,
                now.0.forward.dropped_loss - last.0.forward.dropped_loss,
                now.0.forward.dropped_queue_full - last.0.forward.dropped_queue_full,
                now.1.sent_packets - last.1.sent_packets,
                now.1.lost_packets - last.1.lost_packets,
                now.1.cwnd / 1024,
                now.1.rtt.as_millis(),
                pacing,
                mtu,
                closed,
            );
            last = now;
        }
    } else {
        tokio::time::sleep(warmup).await;
    }
    let (b0, c0, r0, s0) = (
        bytes.load(Ordering::Relaxed),
        count.load(Ordering::Relaxed),
        relay.stats(),
        link_stats(&pair.conn),
    );
    let start = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let secs = start.elapsed().as_secs_f64();
    let (b1, c1, r1, s1) = (
        bytes.load(Ordering::Relaxed),
        count.load(Ordering::Relaxed),
        relay.stats(),
        link_stats(&pair.conn),
    );
    let closed = pair.conn.close_reason().map(|r| r.to_string());
    let mtu = pair.conn.stats().path.current_mtu;
    let stalled = sender.is_finished();
    sender.abort();
    receiver.abort();
    pair.close().await;

    let goodput = ((b1 - b0) as f64 * 8.0 / secs) as u64;
    let wire = ((r1.forward.bytes_out - r0.forward.bytes_out) as f64 * 8.0 / secs) as u64;
    Ok(BulkResult {
        congestion: controller.name().into(),
        bottleneck_bps: bottleneck,
        seconds: secs,
        goodput_bps: goodput,
        goodput_share: goodput as f64 / bottleneck as f64,
        wire_bps: wire,
        wire_share: wire as f64 / bottleneck as f64,
        datagrams_received: c1 - c0,
        relay_lost: r1.forward.dropped_loss - r0.forward.dropped_loss,
        relay_queue_drops: r1.forward.dropped_queue_full - r0.forward.dropped_queue_full,
        rtt_ms: s1.rtt.as_secs_f64() * 1000.0,
        cwnd: s1.cwnd,
        lost_packets: s1.lost_packets - s0.lost_packets,
        sent_packets: s1.sent_packets - s0.sent_packets,
        mtu,
        sender_ended: stalled,
        closed,
    })
}

/// The sender's path state (the fields `LinkStats` has).
struct PathState {
    rtt: Duration,
    cwnd: u64,
    sent_packets: u64,
    lost_packets: u64,
}

fn link_stats(conn: &quinn::Connection) -> PathState {
    let s = conn.stats().path;
    PathState {
        rtt: s.rtt,
        cwnd: s.cwnd,
        sent_packets: s.sent_packets,
        lost_packets: s.lost_packets,
    }
}
