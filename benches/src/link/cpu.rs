//! CPU time per relayed packet on the link path, beside plain UDP.
//!
//! The link path, as a node runs it: the shaper's verdict, the frame encoded, handed to
//! `LinkHandle::send_datagram`; quinn encrypts and sends it, the far endpoint receives,
//! decrypts and acknowledges it, and its reader hands it over; the frame is decoded.
//! The reference sends the same frames, at the same pace, from one plain UDP socket to
//! another and decodes them: same packets, no QUIC. Both run on loopback (no relay)
//! in the same process, one after the other; CPU is the whole process's (every thread:
//! both endpoints' tokio tasks, sender, receiver) over the measurement window, divided
//! by packets received.

use super::synth::rtp;
use bytes::BytesMut;
use serde::Serialize;
use sluice_control::cascade::shaper::{Shaper, ShaperConfig, Verdict};
use sluice_control::cluster::{ClusterCa, Congestion, LinkEndpoint, LinkEvent, LinkTls};
use sluice_dataplane::engine::Micros;
use sluice_dataplane::link::{self, LinkFrame};
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct PathCpu {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub seconds: f64,
    /// Process CPU per packet received.
    pub ns_per_packet: u64,
    /// The sending thread's share (shaper, encode, send call).
    pub sender_ns_per_packet: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuResult {
    pub pps: u64,
    pub rtp_bytes: usize,
    pub link: PathCpu,
    pub udp: PathCpu,
    /// Link path CPU per packet over the reference's.
    pub ratio: f64,
}

fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the process CPU clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Counters a paced sender and its receiver share.
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    received: AtomicU64,
    sender_cpu: AtomicU64,
}

/// Calls `send` for `pps` packets a second, in 1 ms batches, until `stop`; keeps the
/// calling thread's CPU time in `counts`.
fn paced(pps: u64, stop: &AtomicBool, counts: &Counts, mut send: impl FnMut(Micros) -> bool) {
    let start = Instant::now();
    let mut due = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_micros() as Micros;
        let target = now * pps / 1_000_000;
        while due < target {
            if send(now) {
                counts.sent.fetch_add(1, Ordering::Relaxed);
            }
            due += 1;
        }
        counts.sender_cpu.store(
            crate::dataplane::cpu::current_thread_cpu_ns(),
            Ordering::Relaxed,
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `counts`' sender for `warmup + window` and measures the window.
async fn measure(counts: &Counts, warmup: Duration, window: Duration) -> PathCpu {
    tokio::time::sleep(warmup).await;
    let snap = || {
        (
            counts.sent.load(Ordering::Relaxed),
            counts.received.load(Ordering::Relaxed),
            counts.sender_cpu.load(Ordering::Relaxed),
            process_cpu_ns(),
        )
    };
    let (s0, r0, t0, p0) = snap();
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let (s1, r1, t1, p1) = snap();
    let received = (r1 - r0).max(1);
    PathCpu {
        packets_sent: s1 - s0,
        packets_received: r1 - r0,
        seconds: start.elapsed().as_secs_f64(),
        ns_per_packet: (p1 - p0) / received,
        sender_ns_per_packet: (t1 - t0) / received,
    }
}

fn frame_for(packet: &[u8], buf: &mut BytesMut) -> bool {
    let f = LinkFrame {
        track: 1,
        layer: 0,
        keyframe: false,
        rtp: packet,
    };
    link::encode_to(&f, buf).is_ok()
}

pub async fn run(
    pps: u64,
    rtp_bytes: usize,
    warmup: Duration,
    window: Duration,
) -> Result<CpuResult, String> {
    let link = link_path(pps, rtp_bytes, warmup, window).await?;
    let udp = udp_path(pps, rtp_bytes, warmup, window).await?;
    Ok(CpuResult {
        pps,
        rtp_bytes,
        ratio: link.ns_per_packet as f64 / udp.ns_per_packet.max(1) as f64,
        link,
        udp,
    })
}

async fn link_path(
    pps: u64,
    rtp_bytes: usize,
    warmup: Duration,
    window: Duration,
) -> Result<PathCpu, String> {
    // The cluster's endpoints as a node runs them, on loopback.
    let ca = ClusterCa::ephemeral().map_err(|e| e.to_string())?;
    let tls = |name: &str| -> Result<LinkTls, String> {
        let cert = ca.issue(name).map_err(|e| e.to_string())?;
        LinkTls::new(ca.cert_der(), &cert).map_err(|e| e.to_string())
    };
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let (b, mut events) =
        LinkEndpoint::bind(any, tls("b")?, Congestion::Bbr).map_err(|e| e.to_string())?;
    let (a, mut a_events) =
        LinkEndpoint::bind(any, tls("a")?, Congestion::Bbr).map_err(|e| e.to_string())?;
    tokio::spawn(async move { while a_events.recv().await.is_some() {} });
    let link = a
        .connect(b.local_addr().map_err(|e| e.to_string())?, "b")
        .await
        .map_err(|e| e.to_string())?;
    let counts = Arc::new(Counts::default());
    let rx_counts = counts.clone();
    let receiver = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let LinkEvent::Datagram { data, .. } = ev
                && link::decode(&data).is_ok()
            {
                rx_counts.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (tx_counts, tx_stop, handle) = (counts.clone(), stop.clone(), link.clone());
    let sender = std::thread::spawn(move || {
        let packet = rtp(1, 0, 0, rtp_bytes);
        let mut shaper = Shaper::new(ShaperConfig::default());
        let mut buf = BytesMut::with_capacity(64 * link::MAX_FRAME);
        paced(pps, &tx_stop, &tx_counts, |now| {
            if shaper.poll_timeout().is_some_and(|t| now >= t) {
                shaper.handle_timeout(now);
            }
            if shaper.handle_packet(now, 2, 1, 0, false, packet.len()) == Verdict::Drop {
                return false;
            }
            if buf.capacity() < link::MAX_FRAME {
                buf.reserve(64 * link::MAX_FRAME);
            }
            frame_for(&packet, &mut buf) && handle.send_datagram(buf.split().freeze()).is_ok()
        });
    });
    let result = measure(&counts, warmup, window).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || sender.join()).await;
    receiver.abort();
    a.shutdown().await;
    b.shutdown().await;
    Ok(result)
}

async fn udp_path(
    pps: u64,
    rtp_bytes: usize,
    warmup: Duration,
    window: Duration,
) -> Result<PathCpu, String> {
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    tx.connect(rx.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (rx_counts, rx_stop) = (counts.clone(), stop.clone());
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        while !rx_stop.load(Ordering::Relaxed) {
            if let Ok(n) = rx.recv(&mut buf)
                && link::decode(&buf[..n]).is_ok()
            {
                rx_counts.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let (tx_counts, tx_stop) = (counts.clone(), stop.clone());
    let sender = std::thread::spawn(move || {
        let packet = rtp(1, 0, 0, rtp_bytes);
        let mut buf = BytesMut::with_capacity(link::MAX_FRAME);
        paced(pps, &tx_stop, &tx_counts, |_| {
            buf.clear();
            frame_for(&packet, &mut buf) && tx.send(&buf).is_ok()
        });
    });
    let result = measure(&counts, warmup, window).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = sender.join();
        let _ = receiver.join();
    })
    .await;
    Ok(result)
}
