//! The cascade's driver: one tokio task owns the cascade core and reads the link
//! endpoint's events and the sessions' commands; one thread carries the media plane's
//! link packets onto the links as QUIC datagrams.
//!
//! What rides a link, by first byte:
//! - datagrams: [`link::VERSION`] is a media frame (sluice_dataplane::link), [`STATE_DATAGRAM`]
//!   a state datagram (membership gossip, small room pushes);
//! - messages: [`MSG_STATE`] a state stream message, [`MSG_KEYFRAME`] a keyframe request
//!   for a track homed at the receiver, [`MSG_NACK`] lost packets of such a track.

use super::load::{LOAD_INTERVAL, LoadMeter};
use super::{Shared, link_media};
use crate::cascade::catalog::track_home;
use crate::cascade::catalog::{StreamId, StreamIds, TrackDescriptor};
use crate::cascade::core::{Action, Cascade};
use crate::cascade::handle::{CascadeHandle, Command, node_number};
use crate::cascade::paths::{PathConfig, PathSelector, PathStats, Route};
use crate::cascade::shaper::{ShaperCommand, ShaperConfig, ShaperStats, TrackKind};
use crate::cascade::speaker::{SpeakerChange, SpeakerConfig, SpeakerDetector};
use crate::cascade::trust::LinkTrust;
use crate::cluster::{Congestion, LinkEndpoint, LinkEvent, LinkHandle, LinkTls, NodeCert};
use crate::config::{LinkCongestion, NodeConfig};
use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use sluice_dataplane::link;
use sluice_dataplane::router::{TrackId, UpstreamEvent};
use sluice_state::membership::MemberState;
use sluice_state::{Delivery, LoadSample, LoadView, NodeId, NodeIdentity, Transmit, Transport};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

pub const STATE_DATAGRAM: u8 = 0xC5;
pub const MSG_STATE: u8 = 0x01;
pub const MSG_KEYFRAME: u8 = 0x02;
pub const MSG_NACK: u8 = 0x03;
/// Forward (or stop forwarding) a track layer this link brings on to a third node:
/// `op (1 start, 0 stop) | track u64 | layer u8 | to node u64 | room length u8 | room |
/// descriptor JSON (start)`. The room is for the relay's logs: it may hold no part of it.
pub const MSG_RELAY: u8 = 0x04;
const RELAY_HEADER: usize = 1 + 8 + 1 + 8;

/// State transmits held for a node being dialed; beyond this the oldest go (gossip
/// repeats itself, anti-entropy repairs the rest).
const PENDING_PER_PEER: usize = 64;

/// Counters of the cascade driver, for tests and metrics.
#[derive(Debug, Default)]
pub struct CascadeCounters {
    pub media_out: AtomicU64,
    pub media_in: AtomicU64,
    /// Link packets for a node with no link, or that the link refused (oversize, full).
    pub media_out_dropped: AtomicU64,
    /// Datagrams and messages from a peer that did not decode.
    pub malformed_in: AtomicU64,
    pub upstream_out: AtomicU64,
    pub upstream_in: AtomicU64,
    /// Times a room's active speaker changed (as this node judges its publishers).
    pub speaker_changes: AtomicU64,
    /// Route changes of this node's media toward another node (direct or relayed).
    pub route_changes: AtomicU64,
    /// Track layers this node forwards for another node's media, now.
    pub relays: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CascadeCountersSnapshot {
    pub media_out: u64,
    pub media_in: u64,
    pub media_out_dropped: u64,
    pub malformed_in: u64,
    pub upstream_out: u64,
    pub upstream_in: u64,
    pub speaker_changes: u64,
    pub route_changes: u64,
    pub relays: u64,
}

impl CascadeCounters {
    pub fn snapshot(&self) -> CascadeCountersSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CascadeCountersSnapshot {
            media_out: g(&self.media_out),
            media_in: g(&self.media_in),
            media_out_dropped: g(&self.media_out_dropped),
            malformed_in: g(&self.malformed_in),
            upstream_out: g(&self.upstream_out),
            upstream_in: g(&self.upstream_in),
            speaker_changes: g(&self.speaker_changes),
            route_changes: g(&self.route_changes),
            relays: g(&self.relays),
        }
    }
}

/// How stale `GET /cluster` may be: the view is rebuilt at most this often (the driver
/// steps on every link packet) and at once on a member going up or down.
const VIEW_REFRESH: Duration = Duration::from_millis(100);

/// This node and every other node it knows, as of the driver's last refresh.
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    pub this: NodeIdentity,
    /// One entry per other node, with its SWIM state (down ones until SWIM forgets them).
    pub members: Vec<(NodeIdentity, MemberState)>,
    /// The latest load report of each node (this one's own last sample included), by
    /// node number.
    pub loads: HashMap<u64, LoadSample>,
    /// Times each node was declared down within [`FAILURE_MEMORY`], by node number.
    pub failures: HashMap<u64, u32>,
    /// Members declared down since this node started.
    pub downs_total: u64,
    /// How long ago this node received each other node's latest load report, by node
    /// number: how far behind its view of that node may be.
    pub report_age: HashMap<u64, Duration>,
    /// The replicated state layer's counters (gossip bytes, rejected input, ...).
    pub state: sluice_state::Stats,
    /// Route changes of every pair, and the pairs relayed or unreachable now.
    pub paths: PathStats,
    /// How this node's media reaches each other node now, by node number.
    pub routes: Vec<(u64, Route)>,
}

/// How long a node's going down counts against it in placement.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// The snapshot the driver publishes and the HTTP handlers read.
pub type SharedMembers = Arc<RwLock<MemberSnapshot>>;

/// Each room's active speaker among this node's publishers: room to publisher id.
pub type SharedSpeakers = Arc<RwLock<HashMap<String, String>>>;

/// Links by node number, shared with the media thread.
pub(super) type LinkTable = Arc<RwLock<HashMap<u32, LinkHandle>>>;

/// What `Node::start` keeps of a started cascade.
#[derive(Debug)]
pub struct CascadeStarted {
    pub handle: CascadeHandle,
    pub endpoint: LinkEndpoint,
    pub counters: Arc<CascadeCounters>,
    /// Live members other than this node, as of the driver's last step.
    pub members: Arc<AtomicUsize>,
    pub view: SharedMembers,
    /// The link shaper's counters, published by the media thread.
    pub shaper_stats: Arc<Mutex<ShaperStats>>,
    pub speakers: SharedSpeakers,
    run: Option<RunParts>,
}

#[derive(Debug)]
struct RunParts {
    cascade: Cascade,
    events: mpsc::Receiver<LinkEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    links: LinkTable,
}

/// The cascade's clock: the wall clock read once, on the first call, advanced by the
/// monotonic clock. Membership probes, suspicion and refresh timers then neither fire
/// early when an operator or NTP steps the wall clock forward nor stall when it steps
/// back; a restarted process reads the wall clock afresh, so generations still grow.
fn unix_now() -> Duration {
    static ANCHOR: OnceLock<(Duration, Instant)> = OnceLock::new();
    let (wall, mono) = ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (wall, Instant::now())
    });
    *wall + mono.elapsed()
}

/// Binds the link endpoint and builds the state node; nothing runs until [`spawn`].
/// `http_url` is this node's public HTTP base URL, told to the other members.
pub fn prepare(
    config: &NodeConfig,
    media_addr: SocketAddr,
    http_url: &str,
) -> anyhow::Result<CascadeStarted> {
    let c = &config.cluster;
    let listen = c.listen.context("cluster.listen is not set")?;
    let (ca_path, cert_path, key_path) = match (&c.ca_cert, &c.cert, &c.key) {
        (Some(a), Some(b), Some(k)) => (a, b, k),
        _ => anyhow::bail!("cluster.ca_cert, cluster.cert and cluster.key are required"),
    };
    let ca = crate::cluster::ca::load_ca_cert(ca_path)
        .with_context(|| format!("reading cluster.ca_cert {}", ca_path.display()))?;
    let cert = NodeCert::load_files(cert_path, key_path).with_context(|| {
        format!(
            "reading cluster.cert {} / cluster.key {}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    let name = cert.name().to_owned();
    if let Some(id) = &config.node.id
        && *id != name
    {
        tracing::warn!(node_id = %id, cert = %name, "node.id differs from the name in cluster.cert; the cluster knows this node as {name}");
    }
    let tls = LinkTls::new(&ca, &cert).context("cluster TLS")?;
    let congestion = match c.congestion {
        LinkCongestion::Bbr => Congestion::Bbr,
        LinkCongestion::Cubic => Congestion::Cubic,
    };
    let (endpoint, events) = LinkEndpoint::bind(listen, tls, congestion)
        .with_context(|| format!("binding cluster.listen {listen}"))?;
    let link_addr = endpoint.local_addr()?;
    let number = node_number(&name);
    let now = unix_now();
    let identity = NodeIdentity::new(
        NodeId(number),
        &config.node.region,
        media_addr,
        link_addr,
        config.limits.max_sessions.min(u32::MAX as usize) as u32,
    )
    // A restarted node must come back as a newer identity (SWIM refuses a dead one).
    .with_generation(now.as_secs() as u32)
    .with_name(&name)
    .with_http(http_url);
    if identity.http.is_empty() {
        tracing::warn!(url = %http_url, "public HTTP URL too long to tell the cluster; GET /cluster on other nodes shows it empty");
    }
    let view = Arc::new(RwLock::new(MemberSnapshot {
        this: identity.clone(),
        members: Vec::new(),
        loads: HashMap::new(),
        failures: HashMap::new(),
        downs_total: 0,
        report_age: HashMap::new(),
        state: sluice_state::Stats::default(),
        paths: PathStats::default(),
        routes: Vec::new(),
    }));
    let mut state_cfg = sluice_state::NodeConfig::new(identity, Box::new(LinkTrust));
    state_cfg.seeds = c.seeds.clone();
    let cascade = Cascade::new(sluice_state::Node::new(state_cfg, now));
    let (tx, commands) = mpsc::unbounded_channel();
    tracing::info!(name = %name, number, link = %link_addr, seeds = ?c.seeds, "cluster link endpoint up");
    Ok(CascadeStarted {
        handle: CascadeHandle::new(tx, number),
        endpoint,
        counters: Arc::default(),
        members: Arc::default(),
        view,
        shaper_stats: Arc::default(),
        speakers: SharedSpeakers::default(),
        run: Some(RunParts {
            cascade,
            events,
            commands,
            links: LinkTable::default(),
        }),
    })
}

/// Starts the task and the media thread for a node whose `Shared` now exists.
pub fn spawn(
    started: &mut CascadeStarted,
    shared: &Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let parts = started.run.take().context("cascade already running")?;
    let links_rx = shared.media.lock().workers().links();
    let table = parts.links.clone();
    let counters = started.counters.clone();
    let (shaper_tx, shaper_rx) = crossbeam_channel::unbounded();
    let shaping = link_media::Shaping {
        config: ShaperConfig::default(),
        commands: Some(shaper_rx),
        stats: Some(started.shaper_stats.clone()),
    };
    std::thread::Builder::new()
        .name("sluice-links".into())
        .spawn(move || link_media::run(&links_rx, &table, &counters, shaping))?;
    let driver = Driver {
        shared: Arc::downgrade(shared),
        endpoint: started.endpoint.clone(),
        counters: started.counters.clone(),
        members: started.members.clone(),
        view: started.view.clone(),
        view_at: None,
        load: LoadMeter::default(),
        load_at: None,
        failures: HashMap::new(),
        downs_total: 0,
        paths: PathSelector::new(PathConfig::default()),
        dial_at: shared.config.cluster.dial.clone(),
        relays: HashMap::new(),
        relay_installed: HashSet::new(),
        shaper: shaper_tx,
        speakers: SpeakerDetector::new(SpeakerConfig::default()),
        speaker_video: HashMap::new(),
        speakers_view: started.speakers.clone(),
        cascade: parts.cascade,
        links: parts.links,
        by_addr: HashMap::new(),
        names: HashMap::new(),
        pending: HashMap::new(),
        dialing: HashSet::new(),
        dialed: mpsc::unbounded_channel(),
    };
    Ok(tokio::spawn(driver.run(parts.events, parts.commands, stop)))
}

/// sluice-state's transport bound to the links: gossip needs no tag of its own, since
/// every link is mutually authenticated ([`LinkTrust`]).
impl Transport for Driver {
    fn send_datagram(&mut self, to: SocketAddr, data: &[u8]) {
        self.deliver(to, Delivery::Datagram, data);
    }

    fn send_stream(&mut self, to: SocketAddr, data: &[u8]) {
        self.deliver(to, Delivery::Stream, data);
    }
}

/// A finished dial: the address, and the node found there if it worked.
type Dialed = (SocketAddr, Option<Arc<str>>);

struct Driver {
    shared: Weak<Shared>,
    endpoint: LinkEndpoint,
    counters: Arc<CascadeCounters>,
    members: Arc<AtomicUsize>,
    view: SharedMembers,
    /// When `view` was last rebuilt; `None` forces a rebuild at the next flush.
    view_at: Option<Instant>,
    load: LoadMeter,
    /// When this node's load was last published.
    load_at: Option<Instant>,
    /// When each node was declared down, within [`FAILURE_MEMORY`].
    failures: HashMap<u64, VecDeque<Instant>>,
    downs_total: u64,
    /// `cluster.dial`: where to reach members announcing these link addresses.
    dial_at: std::collections::BTreeMap<SocketAddr, SocketAddr>,
    /// Direct or relayed, per node pair, from the links' gossiped RTT and loss.
    paths: PathSelector,
    /// What this node forwards for others: track to (final node, layer).
    relays: HashMap<TrackId, BTreeSet<(u64, u8)>>,
    /// Tracks installed only to relay them (removed with their last relay).
    relay_installed: HashSet<TrackId>,
    /// Track kinds and the active speakers' video for the media thread's link shaper.
    shaper: crossbeam_channel::Sender<ShaperCommand>,
    speakers: SpeakerDetector,
    /// Local publishers' video tracks by (room, publisher): what a speaker change
    /// tells the shaper about.
    speaker_video: HashMap<(String, String), Vec<TrackId>>,
    speakers_view: SharedSpeakers,
    cascade: Cascade,
    links: LinkTable,
    /// Link address (a member's identity) to its peer name.
    by_addr: HashMap<SocketAddr, Arc<str>>,
    /// Node number to peer name.
    names: HashMap<u64, Arc<str>>,
    pending: HashMap<SocketAddr, VecDeque<Transmit>>,
    dialing: HashSet<SocketAddr>,
    /// Finished dials: the address and, when it worked, the node found there.
    dialed: (
        mpsc::UnboundedSender<Dialed>,
        mpsc::UnboundedReceiver<Dialed>,
    ),
}

impl Driver {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<LinkEvent>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let speakers_at = self.speakers.poll_timeout().map(Duration::from_micros);
            let paths_at = self.paths.poll_timeout().map(Duration::from_micros);
            let deadline = [self.cascade.poll_timeout(), speakers_at, paths_at]
                .into_iter()
                .flatten()
                .min()
                .map(|t| {
                    let wait = t.saturating_sub(unix_now());
                    tokio::time::Instant::now() + wait
                });
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_link_event(ev),
                    None => break,
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                Some((addr, peer)) = self.dialed.1.recv() => self.on_dialed(addr, peer),
                () = sleep_until(deadline) => self.on_timeout(),
                _ = stop.changed() => break,
            }
            self.flush();
        }
        let now = unix_now();
        self.cascade.state_mut().leave(now);
        self.flush();
        self.endpoint.shutdown().await;
    }

    fn on_timeout(&mut self) {
        let now = unix_now();
        self.cascade.handle_timeout(now);
        self.speakers.handle_timeout(now.as_micros() as u64);
        self.paths.handle_timeout(now.as_micros() as u64);
        self.apply_routes();
        while let Some(change) = self.speakers.poll_change() {
            self.on_speaker_change(change);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = unix_now();
        match cmd {
            Command::Publish {
                room,
                publisher,
                tracks,
            } => {
                for d in &tracks {
                    let kind = match d.media_kind() {
                        Ok(crate::sdp::MediaKind::Audio) => TrackKind::Audio,
                        _ => TrackKind::Video,
                    };
                    let _ = self.shaper.send(ShaperCommand::Kind { track: d.id, kind });
                    match kind {
                        TrackKind::Audio => self.speakers.add_track(d.id, &room, &publisher),
                        TrackKind::Video => self
                            .speaker_video
                            .entry((room.clone(), publisher.clone()))
                            .or_default()
                            .push(d.id),
                    }
                }
                self.cascade.publish(now, &room, &publisher, &tracks);
            }
            Command::Unpublish {
                room,
                publisher,
                tracks,
            } => {
                for &track in &tracks {
                    let _ = self.shaper.send(ShaperCommand::Forget { track });
                    self.speakers.remove_track(track);
                }
                let key = (room.clone(), publisher.clone());
                if let Some(video) = self.speaker_video.get_mut(&key) {
                    video.retain(|t| !tracks.contains(t));
                    if video.is_empty() {
                        self.speaker_video.remove(&key);
                    }
                }
                while let Some(change) = self.speakers.poll_change() {
                    self.on_speaker_change(change);
                }
                self.cascade.unpublish(now, &room, &publisher, &tracks);
            }
            Command::Want { room, track, more } => self.cascade.want(now, &room, track, more),
            Command::Watch { room } => self.cascade.watch(now, &room),
            Command::Upstream(UpstreamEvent::AudioLevel { track, loudness }) => {
                self.speakers
                    .on_level(now.as_micros() as u64, track, loudness);
            }
            Command::Upstream(ev) => self.send_upstream(ev),
        }
    }

    /// Moves the shaper's preference to the new speaker's video and publishes who
    /// speaks.
    fn on_speaker_change(&mut self, change: SpeakerChange) {
        self.counters
            .speaker_changes
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(room = %change.room, previous = ?change.previous, current = ?change.current, "active speaker");
        let hint = |publisher: &Option<String>, speaker: bool| {
            let Some(p) = publisher else {
                return;
            };
            let key = (change.room.clone(), p.clone());
            for &track in self.speaker_video.get(&key).into_iter().flatten() {
                let _ = self.shaper.send(ShaperCommand::Speaker { track, speaker });
            }
        };
        hint(&change.previous, false);
        hint(&change.current, true);
        let mut view = self
            .speakers_view
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match change.current {
            Some(p) => view.insert(change.room, p),
            None => view.remove(&change.room),
        };
    }

    fn send_upstream(&mut self, ev: UpstreamEvent) {
        let (track, msg) = match ev {
            UpstreamEvent::KeyframeRequest { track, layer } => {
                let mut m = BytesMut::with_capacity(10);
                m.put_u8(MSG_KEYFRAME);
                m.put_u64(track);
                m.put_u8(layer);
                (track, m)
            }
            UpstreamEvent::NackUpstream { track, layer, seqs } => {
                let mut m = BytesMut::with_capacity(10 + 2 * seqs.len());
                m.put_u8(MSG_NACK);
                m.put_u64(track);
                m.put_u8(layer);
                for s in seqs {
                    m.put_u16(s);
                }
                (track, m)
            }
            // Local loudness: `on_command` hands it to the speaker detector.
            UpstreamEvent::AudioLevel { .. } => return,
        };
        let Some(name) = self.names.get(&track_home(track)) else {
            return;
        };
        if self.endpoint.try_send_message(name, msg.freeze()).is_ok() {
            self.counters.upstream_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_link_event(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Connected {
                peer,
                remote,
                handle,
            } => {
                let number = node_number(&peer);
                tracing::info!(peer = %peer, %remote, number, "link up");
                // A member with a `cluster.dial` address is reached there, not over a
                // link it opened from its announced address.
                if !self.dial_at.contains_key(&remote) {
                    self.by_addr.insert(remote, peer.clone());
                }
                self.names.insert(number, peer.clone());
                self.links
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(number as u32, handle);
                if let Some(queued) = self.pending.remove(&remote) {
                    for t in queued {
                        self.send(&t);
                    }
                }
            }
            LinkEvent::Closed { peer, reason } => {
                tracing::info!(peer = %peer, %reason, "link down");
                let number = node_number(&peer);
                self.by_addr.retain(|_, p| *p != peer);
                self.names.remove(&number);
                self.links
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(number as u32));
            }
            LinkEvent::Datagram { peer, data } => self.on_datagram(&peer, data),
            LinkEvent::Message { peer, data } => self.on_message(&peer, &data),
        }
    }

    fn on_datagram(&mut self, _peer: &str, data: Bytes) {
        match data.first() {
            Some(&link::VERSION) => {
                let Ok(frame) = link::decode(&data) else {
                    self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let (track, layer, keyframe) = (frame.track, frame.layer, frame.keyframe);
                let rtp = data.slice(data.len() - frame.rtp.len()..);
                let Some(shared) = self.shared.upgrade() else {
                    return;
                };
                self.counters.media_in.fetch_add(1, Ordering::Relaxed);
                let _ = shared.media.lock().link_media(track, layer, keyframe, rtp);
            }
            Some(&STATE_DATAGRAM) => self.cascade.handle_datagram(unix_now(), &data[1..]),
            _ => {
                self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_message(&mut self, peer: &str, data: &[u8]) {
        let Some((&kind, body)) = data.split_first() else {
            self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match kind {
            MSG_STATE => self.cascade.handle_stream(unix_now(), body),
            MSG_RELAY => self.on_relay(body),
            MSG_KEYFRAME | MSG_NACK if body.len() >= 9 => {
                let track = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
                let layer = body[8];
                let Some(shared) = self.shared.upgrade() else {
                    return;
                };
                self.counters.upstream_in.fetch_add(1, Ordering::Relaxed);
                let media = shared.media.lock();
                let _ = if kind == MSG_KEYFRAME {
                    media.request_keyframe(track, layer)
                } else {
                    let seqs: Vec<u16> = body[9..]
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    media.link_nack(track, node_number(peer) as u32, layer, &seqs)
                };
            }
            _ => {
                self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Carries the core's transmits and applies its actions.
    fn flush(&mut self) {
        while let Some(t) = self.cascade.poll_transmit() {
            self.send(&t);
        }
        while let Some(a) = self.cascade.poll_action() {
            self.apply(a);
        }
        self.members
            .store(self.cascade.state().members().len(), Ordering::Relaxed);
        if self.load_at.is_none_or(|t| t.elapsed() >= LOAD_INTERVAL) {
            self.publish_load();
        }
        if self.view_at.is_none_or(|t| t.elapsed() >= VIEW_REFRESH) {
            let now = unix_now();
            let state = self.cascade.state();
            let this = state.identity().clone();
            let members = state.member_view();
            let views: Vec<(u64, LoadView)> = members
                .iter()
                .filter_map(|(m, _)| Some((m.id.0, state.load_of(m.id, now)?)))
                .collect();
            let report_age = views.iter().map(|(n, v)| (*n, v.age)).collect();
            let mut loads: HashMap<u64, LoadSample> = views
                .into_iter()
                .map(|(n, v)| (n, v.report.sample))
                .collect();
            loads.insert(this.id.0, self.load.last.clone());
            let micros = now.as_micros() as u64;
            for (node, load) in &loads {
                self.paths.update_node(micros, NodeId(*node), &load.links);
            }
            for (m, state) in &members {
                if *state == MemberState::Down {
                    self.paths.node_down(micros, m.id);
                } else {
                    self.paths.node_up(micros, m.id);
                    let draining = loads.get(&m.id.0).is_some_and(|l| l.draining);
                    self.paths.set_relay_allowed(micros, m.id, !draining);
                }
            }
            for times in self.failures.values_mut() {
                while times.front().is_some_and(|t| t.elapsed() > FAILURE_MEMORY) {
                    times.pop_front();
                }
            }
            self.failures.retain(|_, t| !t.is_empty());
            let routes = members
                .iter()
                .map(|(m, _)| (m.id.0, self.paths.route(this.id, m.id)))
                .collect();
            let snapshot = MemberSnapshot {
                downs_total: self.downs_total,
                report_age,
                state: state.stats().clone(),
                paths: self.paths.stats(),
                routes,
                this,
                members,
                loads,
                failures: self
                    .failures
                    .iter()
                    .map(|(n, t)| (*n, t.len() as u32))
                    .collect(),
            };
            *self.view.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
            self.view_at = Some(Instant::now());
            self.apply_routes();
            while let Some(a) = self.cascade.poll_action() {
                self.apply(a);
            }
        }
    }

    /// Follows path selection's changes for this node's media.
    fn apply_routes(&mut self) {
        let me = self.cascade.id();
        while let Some(change) = self.paths.poll_change() {
            if change.from != me {
                continue;
            }
            let via = match change.new {
                Route::Via(r) => Some(r),
                Route::Direct | Route::Unreachable => None,
            };
            if self.cascade.route(change.to) != via {
                tracing::info!(to = %change.to, old = ?change.old, new = ?change.new, "media route");
                self.counters.route_changes.fetch_add(1, Ordering::Relaxed);
                self.cascade.set_route(change.to, via);
            }
        }
    }

    fn send_relay(
        &mut self,
        room: &str,
        via: NodeId,
        to: NodeId,
        track: TrackId,
        layer: u8,
        descriptor: Option<&TrackDescriptor>,
    ) {
        let Some(name) = self.names.get(&via.0) else {
            return;
        };
        let json = descriptor.map(TrackDescriptor::to_json).unwrap_or_default();
        // Room names are short (validated at the HTTP edge); one cut short only costs
        // the relay's log lines their full room.
        let room = &room.as_bytes()[..room.len().min(usize::from(u8::MAX))];
        let mut m = BytesMut::with_capacity(RELAY_HEADER + 1 + room.len() + json.len());
        m.put_u8(MSG_RELAY);
        m.put_u8(u8::from(descriptor.is_some()));
        m.put_u64(track);
        m.put_u8(layer);
        m.put_u64(to.0);
        m.put_u8(room.len() as u8);
        m.put_slice(room);
        m.put_slice(json.as_bytes());
        let _ = self.endpoint.try_send_message(name, m.freeze());
    }

    /// A node asks this one to pass a track layer it sends here on to a third node.
    fn on_relay(&mut self, body: &[u8]) {
        let (Some(&op), Some(track), Some(&layer), Some(to)) = (
            body.first(),
            body.get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes),
            body.get(9),
            body.get(10..18)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes),
        ) else {
            self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let room_len = body.get(18).map_or(0, |&n| usize::from(n));
        // A room cut short at 255 bytes may end inside a character: lossy is enough for
        // a log field.
        let (Some(room), Some(rest)) = (
            body.get(19..19 + room_len).map(String::from_utf8_lossy),
            body.get(19 + room_len..),
        ) else {
            self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut media = shared.media.lock();
        if op == 1 {
            let descriptor = std::str::from_utf8(rest)
                .ok()
                .and_then(|j| TrackDescriptor::from_json(j).ok())
                .filter(|d| d.id == track);
            let Some(d) = descriptor else {
                self.counters.malformed_in.fetch_add(1, Ordering::Relaxed);
                return;
            };
            if media.add_remote_track(d.track_config()).is_ok() {
                self.relay_installed.insert(track);
            }
            match media.link_subscribe(track, to as u32, layer) {
                Ok(()) => {
                    tracing::info!(
                        %room,
                        stream = %StreamId(track),
                        layer,
                        home = %self.name_of(track_home(track)),
                        to = %self.name_of(to),
                        "relaying stream"
                    );
                    self.relays.entry(track).or_default().insert((to, layer));
                }
                Err(e) => tracing::warn!(
                    %room,
                    stream = %StreamId(track),
                    layer,
                    to = %self.name_of(to),
                    error = %e,
                    "cannot relay stream"
                ),
            }
        } else {
            tracing::info!(
                %room,
                stream = %StreamId(track),
                layer,
                to = %self.name_of(to),
                "no longer relaying stream"
            );
            let _ = media.link_unsubscribe(track, to as u32, layer);
            if let Some(set) = self.relays.get_mut(&track) {
                set.remove(&(to, layer));
                if set.is_empty() {
                    self.relays.remove(&track);
                    if self.relay_installed.remove(&track) {
                        let _ = media.remove_track(track);
                    }
                }
            }
        }
        let n: usize = self.relays.values().map(BTreeSet::len).sum();
        self.counters.relays.store(n as u64, Ordering::Relaxed);
    }

    /// A node's name for logs, while it has a link; its number otherwise.
    fn name_of(&self, node: u64) -> String {
        self.names
            .get(&node)
            .map_or_else(|| NodeId(node).to_string(), |n| n.to_string())
    }

    /// Measures this node's load and hands it to the load gossip.
    fn publish_load(&mut self) {
        self.load_at = Some(Instant::now());
        let (sessions, draining) = self
            .shared
            .upgrade()
            .map_or((0, false), |s| (s.session_count(), s.draining()));
        let links: Vec<(u32, LinkHandle)> = self
            .links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, h)| (*n, h.clone()))
            .collect();
        let sample = self.load.sample(sessions, draining, &links);
        self.cascade.state_mut().set_load(unix_now(), sample);
    }

    /// One state message onto the link to `to`; held (bounded) while that node is
    /// dialed when there is no link yet.
    fn deliver(&mut self, to: SocketAddr, delivery: Delivery, data: &[u8]) {
        if !self.by_addr.contains_key(&to) && !self.dial_at.contains_key(&to) {
            // A member we already have a link with, which it opened from elsewhere (a
            // relay or NAT in between): its announced address leads to that link, and
            // dialing it would only lose the tiebreak to the link we have. A member with
            // a `cluster.dial` address is dialed there, as configured.
            let known = self
                .cascade
                .state()
                .members()
                .into_iter()
                .find(|m| m.link_addr == to && !m.name.is_empty())
                .filter(|m| self.endpoint.link(&m.name).is_some())
                .map(|m| Arc::<str>::from(m.name.as_str()));
            if let Some(name) = known {
                self.by_addr.insert(to, name);
            }
        }
        let handle = self
            .by_addr
            .get(&to)
            .and_then(|name| self.endpoint.link(name));
        let Some(handle) = handle else {
            let q = self.pending.entry(to).or_default();
            if q.len() >= PENDING_PER_PEER {
                q.pop_front();
            }
            q.push_back(Transmit {
                to,
                to_node: None,
                delivery,
                data: data.to_vec(),
            });
            self.dial(to);
            return;
        };
        let mut b = BytesMut::with_capacity(1 + data.len());
        match delivery {
            Delivery::Datagram => {
                b.put_u8(STATE_DATAGRAM);
                b.put_slice(data);
                let _ = handle.send_datagram(b.freeze());
            }
            Delivery::Stream => {
                b.put_u8(MSG_STATE);
                b.put_slice(data);
                let _ = handle.try_send_message(b.freeze());
            }
        }
    }

    fn dial(&mut self, addr: SocketAddr) {
        if !self.dialing.insert(addr) {
            return;
        }
        let endpoint = self.endpoint.clone();
        let done = self.dialed.0.clone();
        let target = self.dial_at.get(&addr).copied().unwrap_or(addr);
        tokio::spawn(async move {
            let peer = match endpoint.connect_any(target).await {
                Ok(link) => Some(link.peer().clone()),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "cannot open a link");
                    None
                }
            };
            let _ = done.send((addr, peer));
        });
    }

    /// A dial by address ended. The node may already have had a link to us from another
    /// address (it dialed first, or through a relay or NAT): the address we dialed now
    /// leads to that link too, and what waited for it goes out.
    fn on_dialed(&mut self, addr: SocketAddr, peer: Option<Arc<str>>) {
        self.dialing.remove(&addr);
        let Some(peer) = peer else {
            return;
        };
        self.by_addr.insert(addr, peer);
        if let Some(queued) = self.pending.remove(&addr) {
            for t in queued {
                self.send(&t);
            }
        }
    }

    fn apply(&mut self, action: Action) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        match action {
            Action::LinkSubscribe { track, node, layer } => {
                // The core logged the decision, with the room. Refused when the track
                // went in between (its publisher left).
                if let Err(e) = shared
                    .media
                    .lock()
                    .link_subscribe(track, node.0 as u32, layer)
                {
                    tracing::info!(
                        stream = %StreamId(track),
                        layer,
                        to = %self.name_of(node.0),
                        error = %e,
                        "cannot send a stream over its link"
                    );
                }
            }
            Action::LinkUnsubscribe { track, node, layer } => {
                let _ = shared
                    .media
                    .lock()
                    .link_unsubscribe(track, node.0 as u32, layer);
            }
            Action::RemotePublisherJoined { room, publisher } => {
                let home = self.name_of(publisher.home.0);
                {
                    let mut media = shared.media.lock();
                    for d in &publisher.tracks {
                        // A track installed to relay it now serves this room too.
                        self.relay_installed.remove(&d.id);
                        match media.add_remote_track(d.track_config()) {
                            Ok(()) => tracing::info!(
                                %room,
                                stream = %StreamId(d.id),
                                publisher = %publisher.id,
                                %home,
                                kind = %d.kind,
                                "remote stream installed"
                            ),
                            // Already there: installed for a relay, or listed before.
                            Err(e) => tracing::debug!(
                                %room,
                                stream = %StreamId(d.id),
                                error = %e,
                                "remote track not added"
                            ),
                        }
                    }
                }
                let ids: Vec<TrackId> = publisher.tracks.iter().map(|d| d.id).collect();
                tracing::info!(
                    %room,
                    publisher = %publisher.id,
                    %home,
                    streams = %StreamIds(&ids),
                    "remote publisher listed"
                );
                shared
                    .rooms()
                    .add_publisher(&room, publisher.info(), publisher.sources());
            }
            Action::RemotePublisherLeft { room, publisher } => {
                let ids: Vec<TrackId> = publisher.tracks.iter().map(|d| d.id).collect();
                tracing::info!(
                    %room,
                    publisher = %publisher.id,
                    home = %self.name_of(publisher.home.0),
                    streams = %StreamIds(&ids),
                    "remote publisher unlisted"
                );
                shared.rooms().remove_publisher(&room, &publisher.id);
                let mut media = shared.media.lock();
                for d in &publisher.tracks {
                    let _ = media.remove_track(d.id);
                }
            }
            Action::RelayStart {
                room,
                via,
                to,
                track,
                layer,
                descriptor,
            } => self.send_relay(&room, via, to, track, layer, Some(&descriptor)),
            Action::RelayStop {
                room,
                via,
                to,
                track,
                layer,
            } => self.send_relay(&room, via, to, track, layer, None),
            Action::MemberUp(id) => {
                tracing::info!(member = %id, "cluster member up");
                self.view_at = None;
            }
            Action::MemberDown(id) => {
                tracing::info!(member = %id, "cluster member down");
                self.downs_total += 1;
                self.failures
                    .entry(id.0)
                    .or_default()
                    .push_back(Instant::now());
                // Routes through it are broken now, not at the next view refresh.
                self.paths.node_down(unix_now().as_micros() as u64, id);
                self.apply_routes();
                self.view_at = None;
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_clock_starts_at_the_wall_clock_and_never_goes_back() {
        let wall = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let (before, first, after) = (wall(), unix_now(), wall());
        // Anchored on some call in this process: at or before now, on the wall clock's
        // scale (this test's runtime bounds the gap).
        assert!(
            first <= after + Duration::from_millis(1),
            "{first:?} > {after:?}"
        );
        assert!(before.saturating_sub(first) < Duration::from_secs(600));
        let mut last = first;
        for _ in 0..1000 {
            let t = unix_now();
            assert!(t >= last);
            last = t;
        }
    }
}
