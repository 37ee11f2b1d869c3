//! The sessions of one load level: publishers sending their synthetic media from their
//! own tasks, subscribers with their probes. Set up through the target's signaling (WHIP
//! and WHEP, following placement redirects), each session timed from its POST until ICE
//! and DTLS are done.

use super::probe::{Probe, ProbeCounts};
use super::stamp::{self, Stamp};
use super::workload::{AUDIO_INTERVAL, Workload};
use crate::dataplane::cpu::monotonic_ns;
use sluice_control::client::janus::JanusRoom;
use sluice_control::client::{self, ClientOptions, Publisher, Subscriber};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// ICE and DTLS must complete within this; an overloaded server fails sessions rather
/// than stalling the ramp.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How sessions are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signaling {
    /// WHIP and WHEP: `{url}/whip/{room}`, `{url}/whep/{room}/{publisher}`.
    Whip,
    /// Janus VideoRoom through its HTTP API at `url` (`http://host:8088/janus`).
    Janus,
}

/// Where the sessions go.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub signaling: Signaling,
    /// The WHIP/WHEP base URL, or the Janus API URL.
    pub url: String,
    /// The server's process, for its CPU time.
    pub pid: Option<u32>,
    /// Verify one received packet in this many (0: none).
    pub verify_every: u64,
    /// The server forwards the publishers' ciphertext unchanged (the null-forwarder
    /// reference): subscribers count what arrives but can open none of it.
    pub opaque: bool,
    /// Address the clients bind (the server must reach it).
    pub bind: std::net::IpAddr,
}

/// A publisher's sending task and its counters.
#[derive(Debug)]
struct Sender {
    room: usize,
    task: JoinHandle<Option<Publisher>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// A subscriber session and what it saw.
#[derive(Debug)]
pub struct Receiver {
    pub room: usize,
    pub session: Subscriber,
    pub probe: Arc<Probe>,
}

#[derive(Debug)]
pub struct Fleet {
    senders: Vec<Sender>,
    pub subscribers: Vec<Receiver>,
    /// Packets sent by publishers that have left (shrunk rooms), so `sent` stays
    /// monotonic.
    sent_before: u64,
    /// Subscribers per room, each receiving every publisher of its room.
    pub fan_out: usize,
    /// Set-up time of every session, in order of completion.
    pub setup: Vec<Duration>,
    /// Sessions of each room that could not be set up; with the first error.
    failed: Vec<usize>,
    pub first_error: Option<String>,
    rooms: usize,
    /// Janus rooms by index, destroyed with their sessions.
    janus: Vec<Option<JanusRoom>>,
}

/// Sequence and position of subscriber loss accounting: (expected, received).
pub fn expected_received(sub: &Subscriber) -> (u64, u64) {
    sub.stats().streams.iter().fold((0, 0), |(e, r), s| {
        let expected = s.highest_seq.saturating_sub(s.first_seq) + 1;
        (e + expected.max(s.packets), r + s.packets)
    })
}

impl Fleet {
    pub fn empty() -> Self {
        Self {
            senders: Vec::new(),
            subscribers: Vec::new(),
            setup: Vec::new(),
            failed: Vec::new(),
            first_error: None,
            rooms: 0,
            janus: Vec::new(),
            sent_before: 0,
            fan_out: 0,
        }
    }

    pub fn rooms(&self) -> usize {
        self.rooms
    }

    /// Sessions up now.
    pub fn sessions(&self) -> usize {
        self.senders.len() + self.subscribers.len()
    }

    /// Sessions of the rooms now present that could not be set up.
    pub fn failed(&self) -> usize {
        self.failed.iter().sum()
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        if let Some(n) = self.failed.last_mut() {
            *n += 1;
        }
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// Adds rooms until there are `rooms`, each with the workload's publishers sending
    /// and subscribers receiving.
    pub async fn grow(&mut self, target: &Target, w: &Workload, rooms: usize, run_id: u64) {
        self.fan_out = w.subscribers;
        while self.rooms < rooms {
            // A server refusing most sessions is past saturation: stop adding rooms.
            if self.failed() >= 16 && self.failed() * 2 > self.setup.len() {
                break;
            }
            let index = self.rooms;
            self.failed.push(0);
            let room = format!("bench-{run_id:x}-{index}");
            self.rooms += 1;
            let janus = match target.signaling {
                Signaling::Whip => None,
                Signaling::Janus => {
                    // Room ids unique to this run: the low bits of the run, then the room.
                    let id = ((run_id & 0xff_ffff) << 20) | index as u64 | 1 << 44;
                    match JanusRoom::create(&target.url, id).await {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.fail(format!("janus room: {e}"));
                            self.janus.push(None);
                            continue;
                        }
                    }
                }
            };
            let mut ids = Vec::new();
            for _ in 0..w.publishers {
                let opts = ClientOptions {
                    audio: w.audio,
                    video: w.video,
                    simulcast: w.simulcast && w.video,
                    bind: target.bind,
                    keep_payloads: 0,
                    timeout: SETUP_TIMEOUT,
                    dtls_retransmit: Duration::from_millis(w.dtls_retransmit_ms),
                    ..ClientOptions::default()
                };
                let started = Instant::now();
                let published = match &janus {
                    Some(r) => r.publish(&opts).await,
                    None => client::publish(&target.url, &room, &opts).await,
                };
                match published {
                    Ok(publisher) => {
                        self.setup.push(started.elapsed());
                        ids.push(publisher.id.clone());
                        let stream_base = (self.senders.len() as u32) << 2;
                        self.senders
                            .push(spawn_sender(index, publisher, w.clone(), stream_base));
                    }
                    Err(e) => self.fail(format!("publish: {e}")),
                }
            }
            let mut pending = Vec::new();
            for _ in 0..w.subscribers {
                for id in &ids {
                    let probe = Probe::new(target.verify_every);
                    let opts = ClientOptions {
                        bind: target.bind,
                        keep_payloads: 0,
                        // A generous receive estimate, so the server forwards the top
                        // layer (as to a browser on a good network).
                        remb: Some(50_000_000),
                        timeout: SETUP_TIMEOUT,
                        dtls_retransmit: Duration::from_millis(w.dtls_retransmit_ms),
                        observer: Some(probe.observer()),
                        ..ClientOptions::default()
                    };
                    let (url, room, id) = (target.url.as_str(), room.as_str(), id.as_str());
                    let janus = janus.as_ref();
                    pending.push(async move {
                        let started = Instant::now();
                        let s = match janus {
                            Some(r) => r.subscribe(id, &opts).await,
                            None => {
                                client::subscribe_when_listed(url, room, id, &opts, SETUP_TIMEOUT)
                                    .await
                            }
                        };
                        (s.map(|s| (s, probe)), started.elapsed())
                    });
                }
            }
            // Concurrently, as a room's participants arrive together.
            for result in futures_util::future::join_all(pending).await {
                match result {
                    (Ok((session, probe)), took) => {
                        self.setup.push(took);
                        self.subscribers.push(Receiver {
                            room: index,
                            session,
                            probe,
                        });
                    }
                    (Err(e), _) => self.fail(format!("subscribe: {e}")),
                }
            }
            self.janus.push(janus);
        }
    }

    /// Packets every publisher has sent so far.
    pub fn sent(&self) -> u64 {
        self.sent_before
            + self
                .senders
                .iter()
                .map(|s| s.sent.load(Relaxed))
                .sum::<u64>()
    }

    pub fn probe_counts(&self) -> ProbeCounts {
        let mut c = ProbeCounts::default();
        for r in &self.subscribers {
            c.add(&r.probe.counts());
        }
        c
    }

    /// Sequence accounting over every subscriber: (expected, received).
    pub fn expected_received(&self) -> (u64, u64) {
        self.subscribers
            .iter()
            .map(|r| expected_received(&r.session))
            .fold((0, 0), |(a, b), (e, r)| (a + e, b + r))
    }

    /// Whether every subscriber has received something (opened or not).
    pub fn all_receiving(&self) -> bool {
        self.subscribers
            .iter()
            .all(|r| r.probe.counts().received > 0 || r.session.stats().srtp_errors > 0)
    }

    /// Packets subscribers could not open: forged or corrupted, or the ciphertext of
    /// another session when the server forwards it unchanged (the null reference).
    pub fn unopened(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|r| r.session.stats().srtp_errors)
            .sum()
    }

    /// Closes the sessions of rooms `rooms..`, keeping the first `rooms`.
    pub async fn shrink(&mut self, rooms: usize) {
        let (keep, gone): (Vec<Sender>, Vec<Sender>) = std::mem::take(&mut self.senders)
            .into_iter()
            .partition(|s| s.room < rooms);
        self.senders = keep;
        let (keep, leaving): (Vec<Receiver>, Vec<Receiver>) = std::mem::take(&mut self.subscribers)
            .into_iter()
            .partition(|r| r.room < rooms);
        self.subscribers = keep;
        self.sent_before += gone.iter().map(|s| s.sent.load(Relaxed)).sum::<u64>();
        close_all(gone, leaving).await;
        self.rooms = self.rooms.min(rooms);
        self.failed.truncate(self.rooms);
        destroy_rooms(self.janus.split_off(self.rooms.min(self.janus.len()))).await;
    }

    /// Stops sending and closes every session.
    pub async fn close(self) {
        close_all(self.senders, self.subscribers).await;
        destroy_rooms(self.janus).await;
    }
}

async fn destroy_rooms(rooms: Vec<Option<JanusRoom>>) {
    for r in rooms.into_iter().flatten() {
        let _ = r.destroy().await;
    }
}

async fn close_all(senders: Vec<Sender>, receivers: Vec<Receiver>) {
    let mut closing = Vec::new();
    for s in senders {
        s.stop.store(true, Relaxed);
        if let Ok(Some(p)) = s.task.await {
            closing.push(tokio::spawn(async move {
                let _ = p.close().await;
            }));
        }
    }
    for r in receivers {
        closing.push(tokio::spawn(async move {
            let _ = r.session.close().await;
        }));
    }
    for c in closing {
        let _ = c.await;
    }
}

/// Sends the workload's media for one publisher until `stop`: audio every 20 ms, a frame
/// per layer every 1/fps, keyframes at the interval and whenever the server asks (PLI or
/// FIR). Each packet carries a trailer (`stream_base | layer`, audio as layer 3).
fn spawn_sender(room: usize, mut publisher: Publisher, w: Workload, stream_base: u32) -> Sender {
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (stopped, counter) = (Arc::clone(&stop), Arc::clone(&sent));
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let frame = Duration::from_secs(1) / w.fps.max(1);
        let layers = w.layers();
        let mut seq = [0u64; 4];
        let (mut next_audio, mut next_frame) = (Duration::ZERO, Duration::ZERO);
        let mut next_key = Duration::ZERO;
        let mut asked = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut buf = Vec::with_capacity(2048);
        while !stopped.load(Relaxed) {
            tick.tick().await;
            let now = start.elapsed();
            if w.audio && now >= next_audio {
                next_audio += AUDIO_INTERVAL;
                buf.clear();
                let stamp = Stamp {
                    stream: stream_base | 3,
                    seq: seq[3],
                    send_ns: monotonic_ns(),
                };
                seq[3] += 1;
                stamp::seal(&mut buf, w.audio_bytes.max(stamp::TRAILER_LEN), stamp);
                // Counted before it goes, so no subscriber can see a packet that the
                // count does not include yet (the window edges rely on it).
                counter.fetch_add(1, Relaxed);
                if publisher.send_audio(&buf).await.is_err() {
                    return None;
                }
            }
            if layers > 0 && now >= next_frame {
                // After a stall, carry on at the frame rate instead of bursting to
                // catch up.
                next_frame = if now > next_frame + 3 * frame {
                    now + frame
                } else {
                    next_frame + frame
                };
                let pli = publisher.stats().rtcp;
                let requests = pli.pli + pli.fir;
                let keyframe = now >= next_key || requests != asked;
                asked = requests;
                if keyframe {
                    next_key = now + w.keyframe_interval;
                }
                for (layer, next) in seq.iter_mut().enumerate().take(layers) {
                    let sizes = w.chunks(w.frame_bytes(layer, keyframe));
                    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(sizes.len());
                    for size in sizes {
                        let mut c = Vec::with_capacity(size);
                        let stamp = Stamp {
                            stream: stream_base | layer as u32,
                            seq: *next,
                            send_ns: monotonic_ns(),
                        };
                        *next += 1;
                        stamp::seal(&mut c, size, stamp);
                        chunks.push(c);
                    }
                    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                    counter.fetch_add(refs.len() as u64, Relaxed);
                    if publisher
                        .send_video_frame(layer, &refs, keyframe)
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
            }
        }
        Some(publisher)
    });
    Sender {
        room,
        task,
        sent,
        stop,
    }
}
