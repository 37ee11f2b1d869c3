//! The media thread of the cascade: link packets from every worker, through the link
//! shaper ([`crate::cascade::shaper`]), framed, onto their node's link as QUIC
//! datagrams. Every [`SAMPLE_INTERVAL`] it reads each link's transport state into that
//! link's estimate.

use super::cascade::{CascadeCounters, LinkTable};
use crate::cascade::shaper::{
    LinkEstimator, LinkSample, Shaper, ShaperCommand, ShaperConfig, ShaperStats, Verdict,
};
use crate::cluster::LinkHandle;
use bytes::BytesMut;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use sluice_dataplane::engine::{LinkPacket, Micros};
use sluice_dataplane::link;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often each link's state is read into its estimate.
pub const SAMPLE_INTERVAL: Micros = 100_000;

/// What the media thread takes beyond the link packets: the shaper's settings, what
/// the driver knows about tracks (kinds, the active speaker), and where the shaper's
/// counters are published (every tick).
#[derive(Debug, Default)]
pub(super) struct Shaping {
    pub config: ShaperConfig,
    pub commands: Option<Receiver<ShaperCommand>>,
    pub stats: Option<Arc<Mutex<ShaperStats>>>,
}

/// The media thread: link packets from every worker, shaped, framed, onto their node's
/// link. Returns when every sender of `rx` is gone.
pub(super) fn run(
    rx: &Receiver<LinkPacket>,
    table: &LinkTable,
    counters: &CascadeCounters,
    shaping: Shaping,
) {
    let start = Instant::now();
    let clock = || start.elapsed().as_micros() as Micros;
    let mut shaper = Shaper::new(shaping.config);
    let mut estimators: HashMap<u32, LinkEstimator> = HashMap::new();
    let mut next_sample = 0;
    let mut buf = BytesMut::with_capacity(64 * link::MAX_FRAME);
    loop {
        let now = clock();
        let due = shaper.poll_timeout().unwrap_or(u64::MAX).min(next_sample);
        let got = match due.checked_sub(now) {
            Some(wait) if wait > 0 => rx.recv_timeout(Duration::from_micros(wait)),
            _ => rx.try_recv().map_err(|e| match e {
                crossbeam_channel::TryRecvError::Empty => RecvTimeoutError::Timeout,
                crossbeam_channel::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            }),
        };
        let now = clock();
        match got {
            Ok(pkt) => send_one(now, &pkt, table, counters, &mut shaper, &mut buf),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(commands) = &shaping.commands {
            for cmd in commands.try_iter() {
                shaper.apply(cmd);
            }
        }
        if now >= next_sample {
            next_sample = now + SAMPLE_INTERVAL;
            sample_links(now, table, &mut shaper, &mut estimators);
        }
        if shaper.poll_timeout().is_some_and(|t| now >= t) {
            shaper.handle_timeout(now);
            if let Some(stats) = &shaping.stats {
                *stats.lock().unwrap_or_else(|p| p.into_inner()) = shaper.stats();
            }
        }
    }
}

fn send_one(
    now: Micros,
    pkt: &LinkPacket,
    table: &LinkTable,
    counters: &CascadeCounters,
    shaper: &mut Shaper,
    buf: &mut BytesMut,
) {
    let handle = table
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&pkt.node)
        .cloned();
    let Some(handle) = handle else {
        counters.media_out_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let verdict = shaper.handle_packet(
        now,
        pkt.node,
        pkt.track,
        pkt.layer,
        pkt.keyframe,
        pkt.packet.len(),
    );
    if verdict == Verdict::Drop {
        // Counted in the shaper's stats, apart from the link's own drops.
        return;
    }
    if buf.capacity() < link::MAX_FRAME {
        buf.reserve(64 * link::MAX_FRAME);
    }
    if link::encode_to(&link::LinkFrame::from(pkt), buf).is_err() {
        counters.media_out_dropped.fetch_add(1, Ordering::Relaxed);
        buf.clear();
        return;
    }
    let frame = buf.split().freeze();
    match handle.send_datagram(frame) {
        Ok(()) => counters.media_out.fetch_add(1, Ordering::Relaxed),
        Err(_) => counters.media_out_dropped.fetch_add(1, Ordering::Relaxed),
    };
}

/// Reads every link's state into its estimate and hands the estimate to the shaper;
/// forgets links that closed.
fn sample_links(
    now: Micros,
    table: &LinkTable,
    shaper: &mut Shaper,
    estimators: &mut HashMap<u32, LinkEstimator>,
) {
    let links: Vec<(u32, LinkHandle)> = table
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(n, h)| (*n, h.clone()))
        .collect();
    estimators.retain(|n, _| links.iter().any(|(m, _)| m == n));
    let gone: Vec<u32> = shaper
        .nodes()
        .filter(|n| !links.iter().any(|(m, _)| m == n))
        .collect();
    for n in gone {
        shaper.remove_node(n);
    }
    for (node, handle) in links {
        let estimate = estimators
            .entry(node)
            .or_default()
            .on_sample(now, &LinkSample::of(&handle));
        shaper.handle_estimate(now, node, estimate);
    }
}
