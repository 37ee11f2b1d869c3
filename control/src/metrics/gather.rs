//! One scrape's worth of numbers, copied out of the node's live counters. Gathering
//! blocks briefly (each worker answers a snapshot request), so it runs off the async
//! threads; encoding then works on this plain copy.

use crate::cascade::paths::{PathStats, Route};
use crate::cascade::shaper::ShaperStats;
use crate::cluster::{LinkCountersSnapshot, LinkStats};
use crate::node::{CascadeCountersSnapshot, PeerState, Readiness, Role, Shared};
use crate::placement::Score;
use sluice_dataplane::driver::WorkerStats;
use sluice_dataplane::router::{CallQuality, RouterStats};
use sluice_state::membership::MemberState;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Scrape {
    pub workers: Vec<WorkerScrape>,
    pub sessions: SessionCounts,
    pub quality: CallQuality,
    pub process_cpu: Option<Duration>,
    pub readiness: Option<Readiness>,
    pub placements: [u64; 3],
    /// Candidates for a client of this node's region, best first.
    pub placement_scores: Vec<Score>,
    pub cluster: Option<ClusterScrape>,
}

#[derive(Debug, Default)]
pub struct WorkerScrape {
    pub io: WorkerStats,
    pub router: RouterStats,
    pub cpu: Option<Duration>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// (role, state) -> sessions.
    pub by_kind: [[u64; 2]; 2],
    pub tracks: u64,
    pub subscriptions: u64,
    pub rooms: u64,
}

#[derive(Debug, Default)]
pub struct ClusterScrape {
    pub links: Vec<(String, LinkStats)>,
    pub endpoint: LinkCountersSnapshot,
    pub cascade: CascadeCountersSnapshot,
    pub shaper: ShaperStats,
    /// Other members by SWIM state: alive, suspect, down.
    pub members: [u64; 3],
    pub downs: u64,
    pub state: sluice_state::Stats,
    pub report_age: Vec<(String, Duration)>,
    pub paths: PathStats,
    /// Each other member and whether this node's media reaches it through a relay.
    pub relayed: Vec<(String, bool)>,
}

impl Scrape {
    pub fn gather(shared: &Shared) -> Self {
        let router = shared.media().router_stats();
        let workers = {
            let media = shared.media().lock();
            router
                .into_iter()
                .enumerate()
                .map(|(w, router)| WorkerScrape {
                    io: media.stats(w),
                    router,
                    cpu: media.cpu_ns(w).ok().map(Duration::from_nanos),
                })
                .collect::<Vec<_>>()
        };
        let mut quality = CallQuality::default();
        for w in &workers {
            let q = &w.router.quality;
            quality.loss_ppm.merge(&q.loss_ppm);
            quality.jitter_us.merge(&q.jitter_us);
            quality.rtt_us.merge(&q.rtt_us);
        }
        let p = &shared.placements;
        Self {
            workers,
            sessions: session_counts(shared),
            quality,
            process_cpu: crate::node::process_cpu(),
            readiness: Some(shared.readiness()),
            placements: [
                p.here.load(Relaxed),
                p.redirected.load(Relaxed),
                p.full.load(Relaxed),
            ],
            placement_scores: shared.placement_ranking(Some(&shared.config.node.region)),
            cluster: cluster_scrape(shared),
        }
    }
}

fn session_counts(shared: &Shared) -> SessionCounts {
    let mut c = SessionCounts::default();
    let mut rooms = HashSet::new();
    for peer in shared.peers().iter() {
        let connected = peer.state == PeerState::Connected;
        let role = match &peer.role {
            Role::Publisher { tracks, .. } => {
                if connected {
                    c.tracks += tracks.len() as u64;
                }
                0
            }
            Role::Subscriber { plan, .. } => {
                if connected {
                    c.subscriptions += plan.len() as u64;
                }
                1
            }
        };
        c.by_kind[role][usize::from(connected)] += 1;
        rooms.insert(peer.room.as_str().to_owned());
    }
    c.rooms = rooms.len() as u64;
    c
}

fn cluster_scrape(shared: &Shared) -> Option<ClusterScrape> {
    let cluster = shared.cluster()?;
    let view = shared.member_snapshot()?;
    let name_of = |number: u64| {
        view.members
            .iter()
            .find(|(m, _)| m.id.0 == number)
            .map_or_else(|| number.to_string(), |(m, _)| m.name.clone())
    };
    let mut members = [0; 3];
    for (_, state) in &view.members {
        members[match state {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Down => 2,
        }] += 1;
    }
    let mut links: Vec<(String, LinkStats)> = cluster
        .endpoint
        .links()
        .iter()
        .filter(|l| !l.is_closed())
        .map(|l| (l.peer().to_string(), l.stats()))
        .collect();
    links.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report_age: Vec<(String, Duration)> = view
        .report_age
        .iter()
        .map(|(n, age)| (name_of(*n), *age))
        .collect();
    report_age.sort();
    let mut relayed: Vec<(String, bool)> = view
        .routes
        .iter()
        .map(|(n, r)| (name_of(*n), matches!(r, Route::Via(_))))
        .collect();
    relayed.sort();
    Some(ClusterScrape {
        links,
        endpoint: cluster.endpoint.counters().snapshot(),
        cascade: cluster.counters.snapshot(),
        shaper: *cluster.shaper.lock().unwrap_or_else(|p| p.into_inner()),
        members,
        downs: view.downs_total,
        state: view.state,
        report_age,
        paths: view.paths,
        relayed,
    })
}
