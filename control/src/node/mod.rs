//! An edge node: the media workers, the HTTP signaling server, and the sessions that
//! connect them. `Node::start` is what `sluice node` runs and what the integration tests
//! start in-process.

mod cascade;
mod drain;
mod health;
pub use drain::DrainStatus;
pub use health::Readiness;
mod link_media;
mod load;
pub use load::{process_cpu, process_cpu_of};
mod media;
pub use media::Media;
mod peer;
mod placement;
mod sessions;

pub use cascade::{CascadeCounters, CascadeCountersSnapshot, MemberSnapshot};
pub use peer::{Peer, PeerState, Role};
pub use sessions::{PostError, Posted};

use crate::auth::Authenticator;
use crate::cascade::handle::CascadeHandle;
use crate::config::{Driver, NodeConfig};
use crate::dtls::DtlsIdentity;
use crate::rooms::Rooms;
use anyhow::Context;
use sluice_dataplane::driver::{DriverConfig, DriverKind, allowed_cores};
use sluice_dataplane::router::{RouterConfig, RouterStats, SessionId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Everything the HTTP handlers and the event loop share.
#[derive(Debug)]
pub struct Shared {
    pub config: NodeConfig,
    pub auth: Authenticator,
    pub identity: Arc<DtlsIdentity>,
    pub candidates: Vec<SocketAddr>,
    /// Base of the `Location` URLs handed to clients.
    pub public_url: String,
    media: Media,
    rooms: Mutex<Rooms>,
    peers: Mutex<Peers>,
    next_id: AtomicU64,
    /// The cascade task, when this node is part of a cluster.
    cascade: Option<CascadeHandle>,
    /// Cluster membership as the cascade last published it, when in a cluster.
    members: Option<cascade::SharedMembers>,
    drain: drain::DrainState,
    /// What `/metrics` and `sluice status` read of the cascade, when in a cluster.
    cluster: Option<ClusterView>,
    /// Placement decisions on WHIP/WHEP POSTs, by outcome.
    pub placements: PlacementCounters,
}

/// Live handles on the cascade's counters, shared with the driver and its threads.
#[derive(Debug)]
pub struct ClusterView {
    pub endpoint: crate::cluster::LinkEndpoint,
    pub counters: Arc<cascade::CascadeCounters>,
    pub shaper: Arc<Mutex<crate::cascade::shaper::ShaperStats>>,
}

/// How POSTs were placed: kept here, redirected to a better node, or refused because no
/// node could take them.
#[derive(Debug, Default)]
pub struct PlacementCounters {
    pub here: AtomicU64,
    pub redirected: AtomicU64,
    pub full: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Peers {
    by_session: HashMap<SessionId, Peer>,
    by_resource: HashMap<String, SessionId>,
}

impl Peers {
    /// Every session on this node, connecting or connected.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.by_session.values()
    }
}

impl Shared {
    pub fn rooms(&self) -> MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn peers(&self) -> MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node and the cluster members it knows (`None` without a cluster).
    pub fn member_snapshot(&self) -> Option<MemberSnapshot> {
        self.members
            .as_ref()
            .map(|m| m.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The cascade's live counters and links, when this node is in a cluster.
    pub fn cluster(&self) -> Option<&ClusterView> {
        self.cluster.as_ref()
    }

    pub fn media(&self) -> &Media {
        &self.media
    }

    /// Asks the cascade to follow `room` on the other nodes (no-op without a cluster).
    pub fn watch_room(&self, room: &str) {
        if let Some(c) = &self.cascade {
            c.watch(room);
        }
    }

    /// In a cluster, a request about a room this node has not seen yet may concern
    /// publishers on other nodes: watch the room and give the replicated state a moment
    /// to arrive (until `ready` holds, at most [`REMOTE_ROOM_WAIT`]).
    pub async fn await_remote(&self, room: &str, ready: impl Fn(&Rooms) -> bool) {
        if self.cascade.is_none() {
            return;
        }
        self.watch_room(room);
        let deadline = tokio::time::Instant::now() + REMOTE_ROOM_WAIT;
        while !ready(&self.rooms()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Upstream requests (keyframes, NACKs of remote tracks) queued for the cascade.
const UPSTREAM_QUEUE: usize = 4096;

/// How long a request waits for a room's state from other nodes. The room's coordinator
/// answers a newcomer within a round trip; this covers a slow link.
pub const REMOTE_ROOM_WAIT: Duration = Duration::from_secs(2);

/// A running node.
#[derive(Debug)]
pub struct Node {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    cascade: Option<cascade::CascadeStarted>,
}

impl Node {
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        config.validate().context("invalid configuration")?;
        let auth = Authenticator::from_config(&config.auth)
            .map_err(|e| anyhow::anyhow!("auth configuration: {e}"))?;
        if auth.is_open() {
            tracing::warn!(
                "no auth keys configured: anyone who can reach this node may publish and subscribe"
            );
        }
        let identity =
            Arc::new(DtlsIdentity::generate().context("generating the DTLS certificate")?);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let mut router = router_config(&config);
        let upstream = if config.cluster.enabled() {
            let (tx, rx) = crossbeam_channel::bounded(UPSTREAM_QUEUE);
            router.upstream = Some(tx);
            Some(rx)
        } else {
            None
        };
        let media = Media::start(driver_config(&config), router, ev_tx)
            .with_context(|| format!("starting media workers on {}", config.media.bind))?;
        let media_addr = media.local_addr();
        let candidates = if config.media.announce.is_empty() {
            vec![media_addr]
        } else {
            config
                .media
                .announce
                .iter()
                .map(|ip| SocketAddr::new(*ip, media_addr.port()))
                .collect()
        };
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let public_url = config
            .http
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_addr}"))
            .trim_end_matches('/')
            .to_owned();
        let mut cascade = if config.cluster.enabled() {
            Some(cascade::prepare(&config, media_addr, &public_url)?)
        } else {
            None
        };
        tracing::info!(
            http = %http_addr,
            media = %media_addr,
            workers = media.workers(),
            driver = ?media.lock().driver(),
            candidates = ?candidates,
            region = %config.node.region,
            "node started"
        );
        let shared = Arc::new(Shared {
            config,
            auth,
            identity,
            candidates,
            public_url,
            media,
            rooms: Mutex::new(Rooms::default()),
            peers: Mutex::new(Peers::default()),
            next_id: AtomicU64::new(1),
            cascade: cascade.as_ref().map(|c| c.handle.clone()),
            members: cascade.as_ref().map(|c| c.view.clone()),
            drain: drain::DrainState::default(),
            cluster: cascade.as_ref().map(|c| ClusterView {
                endpoint: c.endpoint.clone(),
                counters: c.counters.clone(),
                shaper: c.shaper_stats.clone(),
            }),
            placements: PlacementCounters::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let app = crate::http::router(shared.clone());
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let events = tokio::spawn(sessions::run_events(Arc::downgrade(&shared), ev_rx));
        let reaper = tokio::spawn(sessions::run_reaper(
            Arc::downgrade(&shared),
            stop_rx.clone(),
        ));
        let mut tasks = vec![http, events, reaper];
        if let Some(c) = &mut cascade {
            tasks.push(cascade::spawn(c, &shared, stop_rx.clone())?);
            if let Some(rx) = upstream {
                let handle = c.handle.clone();
                std::thread::Builder::new()
                    .name("sluice-upstream".into())
                    .spawn(move || {
                        while let Ok(ev) = rx.recv() {
                            handle.send(crate::cascade::handle::Command::Upstream(ev));
                        }
                    })?;
            }
        }
        Ok(Node {
            shared,
            http_addr,
            stop,
            tasks,
            cascade,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn media_addr(&self) -> SocketAddr {
        self.shared.media.local_addr()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Live counters of every worker's router.
    pub fn router_stats(&self) -> Vec<RouterStats> {
        self.shared.media.router_stats()
    }

    /// The cluster link endpoint's counters, when this node is in a cluster.
    pub fn link_counters(&self) -> Option<crate::cluster::LinkCountersSnapshot> {
        self.cascade
            .as_ref()
            .map(|c| c.endpoint.counters().snapshot())
    }

    /// The links to other nodes, when this node is in a cluster.
    pub fn links(&self) -> Vec<crate::cluster::LinkHandle> {
        self.cascade
            .as_ref()
            .map(|c| c.endpoint.links())
            .unwrap_or_default()
    }

    /// Media packets the cascade put on links and took from them, and drops.
    pub fn cascade_counters(&self) -> Option<CascadeCountersSnapshot> {
        self.cascade.as_ref().map(|c| c.counters.snapshot())
    }

    /// What the link shaper sent and shed, when this node is in a cluster.
    pub fn shaper_stats(&self) -> Option<crate::cascade::shaper::ShaperStats> {
        self.cascade
            .as_ref()
            .map(|c| *c.shaper_stats.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The active speaker of `room` among this node's publishers (a publisher id), when
    /// this node is in a cluster and someone here has spoken.
    pub fn active_speaker(&self, room: &str) -> Option<String> {
        let c = self.cascade.as_ref()?;
        let view = c.speakers.read().unwrap_or_else(|p| p.into_inner());
        view.get(room).cloned()
    }

    /// This node's link endpoint address, when it is in a cluster.
    pub fn link_addr(&self) -> Option<SocketAddr> {
        self.cascade
            .as_ref()
            .and_then(|c| c.endpoint.local_addr().ok())
    }

    /// Other live cluster members, as membership sees them.
    pub fn cluster_members(&self) -> usize {
        self.cascade
            .as_ref()
            .map_or(0, |c| c.members.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Starts a graceful drain ([`drain`]) ending within `within` at the latest
    /// (`None`: the configured `drain.deadline_secs`).
    pub fn drain(&self, within: Option<Duration>) -> DrainStatus {
        let within = within.unwrap_or(Duration::from_secs(self.shared.config.drain.deadline_secs));
        self.shared.start_drain(within)
    }

    pub fn cancel_drain(&self) -> DrainStatus {
        self.shared.cancel_drain()
    }

    /// Resolves once a drain (started here, by `POST /drain`, or by SIGTERM in the
    /// binary) has emptied the node or run out of time.
    pub async fn drained(&self) {
        self.shared.drained().await;
    }

    /// Sessions (publishers and subscribers, connecting or connected) on this node.
    pub fn peer_count(&self) -> usize {
        self.shared.peers().by_session.len()
    }

    /// Ends every session, stops serving, and returns the workers' final counters.
    /// Stops the node's tasks at once, as a killed process would: no goodbye to the
    /// cluster or the clients (SWIM has to find out). For failover tests in one process;
    /// the media workers stop when the last reference goes.
    pub fn crash(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(c) = &self.cascade {
            // What the kernel does for a killed process: its sockets are gone, so its
            // links end (here with a close frame, there by idle timeout); membership
            // still has to declare it down by itself.
            c.endpoint.abort();
        }
    }

    pub async fn shutdown(self) -> Vec<RouterStats> {
        let _ = self.stop.send(true);
        let resources: Vec<String> = self.shared.peers().by_resource.keys().cloned().collect();
        for r in resources {
            self.shared.close_resource(&r, "node shutting down");
        }
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let shared = match Arc::try_unwrap(self.shared) {
            Ok(s) => s,
            Err(shared) => {
                // A handshake task still holds a reference; give it a moment to notice.
                tokio::time::sleep(Duration::from_millis(200)).await;
                match Arc::try_unwrap(shared) {
                    Ok(s) => s,
                    Err(shared) => return shared.media.router_stats(),
                }
            }
        };
        shared.media.shutdown().unwrap_or_default()
    }
}

fn driver_config(config: &NodeConfig) -> DriverConfig {
    let m = &config.media;
    let defaults = DriverConfig::default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    DriverConfig {
        bind: m.bind,
        workers: if m.workers == 0 { cores } else { m.workers },
        pin_cores: m.pin_cores.then(|| pinnable_cores(cores)),
        kind: match m.driver {
            Driver::Auto => DriverKind::Auto,
            Driver::Uring => DriverKind::Uring,
            Driver::Mmsg => DriverKind::Mmsg,
        },
        socket_buffer: if m.socket_buffer == 0 {
            defaults.socket_buffer
        } else {
            m.socket_buffer
        },
        ..defaults
    }
}

/// The cores workers pin to: the ones this process is allowed (a cpuset, `taskset`,
/// `CPUAffinity=`), in order, so confining the node and pinning it compose.
fn pinnable_cores(cores: usize) -> Vec<usize> {
    allowed_cores().unwrap_or_else(|e| {
        tracing::warn!("reading the allowed CPU set failed ({e}); pinning to CPUs 0..{cores}");
        (0..cores).collect()
    })
}

fn router_config(config: &NodeConfig) -> RouterConfig {
    let l = &config.limits;
    if config.media.null_forward {
        tracing::warn!(
            "media.null_forward is on: THIS NODE FORWARDS NO USABLE MEDIA. Publishers' SRTP \
             goes to subscribers unchanged and they cannot decrypt it; a benchmark reference \
             only, never for real clients"
        );
    }
    RouterConfig {
        consent_timeout: l.consent_timeout_secs.saturating_mul(1_000_000),
        handshake_rate: l.handshake_rate,
        null_media: config.media.null_forward,
        ..RouterConfig::default()
    }
}
