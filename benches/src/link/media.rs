//! Offered media above the link's rate, through the shaper.
//!
//! A room of publishers, each with audio and three simulcast layers, offers more than
//! the bottleneck carries. A media thread does what the node's link media thread does
//! (shaper verdict, frame, `LinkHandle::send_datagram`, a link reading into the
//! estimate every 100 ms); the bottleneck steps down and back up while it runs. Per
//! second: the bottleneck, the estimate, what was offered, what the shaper let through,
//! what arrived at b and which layers kept arriving (a far node's router chooses only
//! layers that arrive, so that is where its subscribers end up).

use super::pair::{Controller, Harness, PathSpec};
use super::synth::{Emitted, Source, room};
use crate::impair::Impairment;
use bytes::BytesMut;
use serde::Serialize;
use sluice_control::cascade::shaper::{
    LinkEstimator, Shaper, ShaperConfig, ShaperStats, TrackKind, Verdict,
};
use sluice_dataplane::engine::Micros;
use sluice_dataplane::link::{self, LinkFrame};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const NODE: u32 = 2;

#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub publishers: u64,
    /// RTP kbit/s of each publisher's three layers.
    pub layers_kbps: [u64; 3],
    /// (seconds, bottleneck bits per second), in order.
    pub phases: Vec<(u64, u64)>,
    /// Seconds at the start of each phase left out of its summary.
    pub settle: u64,
}

impl MediaConfig {
    pub fn standard(quick: bool, rate: u64) -> Self {
        let s = if quick { 1 } else { 2 };
        Self {
            publishers: 4,
            layers_kbps: [150, 500, 2500],
            phases: vec![(6 * s, rate), (6 * s, rate / 2), (8 * s, rate)],
            settle: 2 * s,
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: u64,
    pub link_bps: u64,
    pub estimate_bps: u64,
    /// The link was backing up at the second's end.
    pub saturated: bool,
    /// Offered media with link overhead (the shaper's meter).
    pub offered_bps: u64,
    /// The part of it the shaper was sending at the second's end.
    pub shaped_bps: u64,
    /// Frame bytes handed to the link, and refused by it (send buffer full).
    pub sent_bps: u64,
    pub refused: u64,
    /// Frame bytes b received.
    pub received_bps: u64,
    pub audio_offered: u64,
    pub audio_shed: u64,
    pub audio_refused: u64,
    pub audio_received: u64,
    /// Streams of each layer the shaper was sending at the second's end.
    pub layers_sending: [u32; 3],
    /// Streams of each layer that had packets arrive at b in the second.
    pub layers_arriving: [u32; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub link_bps: u64,
    pub seconds: u64,
    pub received_bps: u64,
    pub received_share: f64,
    /// Frame bits per second handed to the link (what did not arrive was lost on the
    /// path: the relay's random loss, or its queue overflowing).
    pub sent_bps: u64,
    pub estimate_bps: u64,
    /// Mean streams of each layer arriving per second.
    pub layers_arriving: [f64; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaResult {
    pub congestion: String,
    pub publishers: u64,
    pub offered_bps: u64,
    pub audio_offered: u64,
    pub audio_shed: u64,
    pub audio_refused: u64,
    pub audio_received: u64,
    pub layers_shed: u64,
    pub layers_restored: u64,
    pub probes: u64,
    pub probes_held: u64,
    pub refused: u64,
    pub phases: Vec<PhaseSummary>,
    pub seconds: Vec<Second>,
}

#[derive(Debug, Default)]
struct Arrivals {
    /// Per second: bytes, audio packets, (track, layer) seen.
    bytes: HashMap<u64, u64>,
    audio: HashMap<u64, u64>,
    streams: HashMap<u64, HashSet<(u64, u8)>>,
}

pub async fn run(
    controller: Controller,
    path: &PathSpec,
    config: &MediaConfig,
) -> Result<MediaResult, String> {
    let mut pair = Harness::open(controller, Some(path)).await?;
    let mut received = std::mem::replace(&mut pair.received, tokio::sync::mpsc::channel(1).1);
    let sources = room(config.publishers, config.layers_kbps);
    let audio_tracks: HashSet<u64> = sources
        .iter()
        .filter(|s| s.audio)
        .map(|s| s.track)
        .collect();
    let start = Instant::now();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let rx_arrivals = arrivals.clone();
    let receiver = tokio::spawn(async move {
        while let Some(data) = received.recv().await {
            let Ok(f) = link::decode(&data) else {
                continue;
            };
            let sec = start.elapsed().as_secs();
            let mut a = rx_arrivals.lock().unwrap_or_else(PoisonError::into_inner);
            *a.bytes.entry(sec).or_default() += data.len() as u64;
            if audio_tracks.contains(&f.track) {
                *a.audio.entry(sec).or_default() += 1;
            } else {
                a.streams.entry(sec).or_default().insert((f.track, f.layer));
            }
        }
    });

    let total: u64 = config.phases.iter().map(|p| p.0).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let pair = Arc::new(pair);
    let thread_pair = pair.clone();
    let thread_stop = stop.clone();
    let media = std::thread::Builder::new()
        .name("bench-link-media".into())
        .spawn(move || media_thread(&thread_pair, sources, start, total, &thread_stop))
        .map_err(|e| e.to_string())?;

    let relay = pair.relay.as_ref().ok_or("no relay")?;
    let mut schedule = Vec::new();
    for &(secs, rate) in &config.phases {
        let imp = Impairment {
            rate_bps: Some(rate),
            ..path.impairment.clone()
        };
        relay.set_impairment(Some(imp), None)?;
        for _ in 0..secs {
            schedule.push(rate);
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, stats) = tokio::task::spawn_blocking(move || media.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "media thread panicked")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.abort();
    if let Ok(pair) = Arc::try_unwrap(pair) {
        pair.close().await;
    }

    let a = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
    let mut seconds = Vec::new();
    for (t, mut s) in sent.into_iter().enumerate().take(total as usize) {
        let t = t as u64;
        s.t = t;
        s.link_bps = schedule.get(t as usize).copied().unwrap_or(0);
        s.received_bps = a.bytes.get(&t).copied().unwrap_or(0) * 8;
        s.audio_received = a.audio.get(&t).copied().unwrap_or(0);
        if let Some(streams) = a.streams.get(&t) {
            for &(_, l) in streams {
                if let Some(n) = s.layers_arriving.get_mut(usize::from(l)) {
                    *n += 1;
                }
            }
        }
        seconds.push(s);
    }
    let mut phases = Vec::new();
    let mut at = 0u64;
    for &(secs, rate) in &config.phases {
        let rows: Vec<&Second> = seconds
            .iter()
            .filter(|s| s.t >= at + config.settle && s.t < at + secs)
            .collect();
        at += secs;
        let n = rows.len().max(1) as u64;
        let received = rows.iter().map(|s| s.received_bps).sum::<u64>() / n;
        let mut layers = [0.0; 3];
        for (l, x) in layers.iter_mut().enumerate() {
            *x = rows
                .iter()
                .map(|s| f64::from(s.layers_arriving[l]))
                .sum::<f64>()
                / n as f64;
        }
        phases.push(PhaseSummary {
            link_bps: rate,
            seconds: rows.len() as u64,
            received_bps: received,
            received_share: received as f64 / rate as f64,
            sent_bps: rows.iter().map(|s| s.sent_bps).sum::<u64>() / n,
            estimate_bps: rows.iter().map(|s| s.estimate_bps).sum::<u64>() / n,
            layers_arriving: layers,
        });
    }
    let sum = |f: fn(&Second) -> u64| seconds.iter().map(f).sum::<u64>();
    Ok(MediaResult {
        congestion: controller.name().into(),
        publishers: config.publishers,
        offered_bps: seconds.iter().map(|s| s.offered_bps).max().unwrap_or(0),
        audio_offered: sum(|s| s.audio_offered),
        audio_shed: sum(|s| s.audio_shed),
        audio_refused: sum(|s| s.audio_refused),
        audio_received: sum(|s| s.audio_received),
        layers_shed: stats.layers_shed,
        layers_restored: stats.layers_restored,
        probes: stats.probes,
        probes_held: stats.probes_held,
        refused: sum(|s| s.refused),
        phases,
        seconds,
    })
}

/// What the node's media thread does, on a synthetic room: every millisecond the due
/// packets go through the shaper and onto the link; every 100 ms a link reading.
fn media_thread(
    link: &Harness,
    mut sources: Vec<Source>,
    start: Instant,
    total: u64,
    stop: &AtomicBool,
) -> (Vec<Second>, ShaperStats) {
    let mut shaper = Shaper::new(ShaperConfig::default());
    let mut estimator = LinkEstimator::default();
    let mut out: Vec<Emitted> = Vec::new();
    let mut buf = BytesMut::with_capacity(64 * link::MAX_FRAME);
    let mut seconds = vec![Second::default(); total as usize + 1];
    let mut next_sample: Micros = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_micros() as Micros;
        let sec = (now / 1_000_000) as usize;
        let Some(row) = seconds.get_mut(sec) else {
            break;
        };
        for s in &mut sources {
            s.poll(now, &mut out);
        }
        for e in out.drain(..) {
            if e.audio {
                row.audio_offered += 1;
            }
            let v = shaper.handle_packet(now, NODE, e.track, e.layer, e.keyframe, e.packet.len());
            if v == Verdict::Drop {
                if e.audio {
                    row.audio_shed += 1;
                }
                continue;
            }
            let frame = LinkFrame {
                track: e.track,
                layer: e.layer,
                keyframe: e.keyframe,
                rtp: &e.packet,
            };
            if link::encode_to(&frame, &mut buf).is_err() {
                buf.clear();
                continue;
            }
            let data = buf.split().freeze();
            let len = data.len() as u64;
            if link.send(data) {
                row.sent_bps += len * 8;
            } else {
                row.refused += 1;
                if e.audio {
                    row.audio_refused += 1;
                }
            }
        }
        if now >= next_sample {
            next_sample = now + 100_000;
            let estimate = estimator.on_sample(now, &link.sample());
            shaper.handle_estimate(now, NODE, estimate);
            row.estimate_bps = estimate.rate.unwrap_or(0);
            row.saturated = estimate.saturated;
            row.offered_bps = shaper.offered(now, NODE);
            row.shaped_bps = shaper.sending(now, NODE);
            row.layers_sending = [0; 3];
            for v in shaper.layers(now, NODE) {
                if v.sending
                    && v.kind == TrackKind::Video
                    && let Some(n) = row.layers_sending.get_mut(usize::from(v.layer))
                {
                    *n += 1;
                }
            }
        }
        if shaper.poll_timeout().is_some_and(|t| now >= t) {
            shaper.handle_timeout(now);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (seconds, shaper.stats())
}
