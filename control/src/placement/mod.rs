//! Placement: which node of the cluster should serve a client. Every node can answer
//! for the whole cluster from what gossip tells it (members, their load reports with
//! link RTTs), so a WHIP/WHEP POST that reaches a worse node is redirected (307) to the
//! best one.
//!
//! A candidate's score is a weighted mean of four costs, each 0 (best) to 1000:
//! - **proximity**: the RTT between the client's region and the node's region, from the
//!   configured matrix ([`PlacementSection::rtt_ms`]) or else the RTT measured on the
//!   links between nodes of those regions, over [`FAR_RTT_MS`];
//! - **load**: the higher of its session share of capacity and its CPU;
//! - **reliability**: how often it went down lately, and whether SWIM suspects it now;
//! - **cost**: the operator's per-region weight ([`PlacementSection::region_cost`]).
//!
//! Full, draining and down nodes are never candidates. Sans-IO: [`rank`] is a pure
//! function of its inputs, so the HTTP handler, `GET /placement` and the tests share it.

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An RTT at or beyond this costs a node the whole proximity share.
pub const FAR_RTT_MS: u32 = 300;

/// RTT assumed between two regions nobody configured or measured.
pub const UNKNOWN_RTT_MS: u32 = 150;

/// Down events that cost a node the whole reliability share.
const FAILURES_FULL: u32 = 3;

/// How each cost counts in the score (relative weights; only their ratios matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub proximity: u32,
    pub load: u32,
    pub reliability: u32,
    pub cost: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            proximity: 50,
            load: 30,
            reliability: 15,
            cost: 5,
        }
    }
}

/// `[placement]`: how clients are spread over the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementSection {
    /// Redirect POSTs to a better node. Off: every node serves whoever reaches it
    /// (until it is full).
    pub redirect: bool,
    pub weights: Weights,
    /// A node redirects only to a node whose score is better than its own by at least
    /// this much (of 1000), so stale load reports do not bounce clients around.
    pub margin: u32,
    /// Relative price of serving from a region, 0 to 1000 (unlisted regions: 0).
    pub region_cost: BTreeMap<String, u32>,
    /// Pinned region-to-region RTTs in ms, `rtt_ms.eu.us = 80` (either order);
    /// unpinned pairs use the RTT measured on the links.
    pub rtt_ms: BTreeMap<String, BTreeMap<String, u32>>,
}

impl Default for PlacementSection {
    fn default() -> Self {
        Self {
            redirect: true,
            weights: Weights::default(),
            margin: 50,
            region_cost: BTreeMap::new(),
            rtt_ms: BTreeMap::new(),
        }
    }
}

impl PlacementSection {
    /// The pinned RTT between two regions, in either order.
    pub fn pinned_rtt(&self, a: &str, b: &str) -> Option<u32> {
        let get = |x: &str, y: &str| self.rtt_ms.get(x).and_then(|m| m.get(y)).copied();
        get(a, b).or_else(|| get(b, a))
    }
}

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub region: String,
    /// Public HTTP base URL, without a trailing slash.
    pub http: String,
    pub sessions: u32,
    /// Sessions it accepts at most (0: unknown, treated as unlimited).
    pub capacity: u32,
    pub cpu_permille: u16,
    /// SWIM suspects it now.
    pub suspect: bool,
    pub draining: bool,
    /// Times it was declared down lately.
    pub failures: u32,
}

impl Candidate {
    pub fn full(&self) -> bool {
        self.capacity > 0 && self.sessions >= self.capacity
    }
}

/// Measured RTT between two nodes' regions (a link's RTT, as its node reported it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredRtt {
    pub a: String,
    pub b: String,
    pub rtt_ms: u32,
}

/// A candidate's score and why: each cost 0 (best) to 1000, `total` their weighted
/// mean; lower is better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Score {
    pub node: String,
    pub region: String,
    pub http: String,
    pub rtt_ms: Option<u32>,
    pub proximity: u32,
    pub load: u32,
    pub reliability: u32,
    pub cost: u32,
    pub total: u32,
}

/// The RTT between two regions: pinned, else the best measured, else none.
pub fn region_rtt(
    config: &PlacementSection,
    measured: &[MeasuredRtt],
    a: &str,
    b: &str,
) -> Option<u32> {
    if let Some(ms) = config.pinned_rtt(a, b) {
        return Some(ms);
    }
    if a == b {
        return Some(0);
    }
    measured
        .iter()
        .filter(|m| (m.a == a && m.b == b) || (m.a == b && m.b == a))
        .map(|m| m.rtt_ms)
        .min()
}

/// Scores every candidate that may take a session, best first (ties by id, so every
/// node ranks alike). `client_region` `None`: proximity counts the same for all.
pub fn rank(
    config: &PlacementSection,
    client_region: Option<&str>,
    candidates: &[Candidate],
    measured: &[MeasuredRtt],
) -> Vec<Score> {
    let mut scores: Vec<Score> = candidates
        .iter()
        .filter(|c| !c.full() && !c.draining)
        .map(|c| score(config, client_region, c, measured))
        .collect();
    scores.sort_by(|a, b| a.total.cmp(&b.total).then_with(|| a.node.cmp(&b.node)));
    scores
}

fn score(
    config: &PlacementSection,
    client_region: Option<&str>,
    c: &Candidate,
    measured: &[MeasuredRtt],
) -> Score {
    let rtt_ms =
        client_region.map(|r| region_rtt(config, measured, r, &c.region).unwrap_or(UNKNOWN_RTT_MS));
    let proximity = rtt_ms.map_or(0, |ms| ms.min(FAR_RTT_MS) * 1000 / FAR_RTT_MS);
    let sessions = match c.capacity {
        0 => 0,
        cap => (u64::from(c.sessions) * 1000 / u64::from(cap)).min(1000) as u32,
    };
    let load = sessions.max(u32::from(c.cpu_permille).min(1000));
    let reliability = if c.suspect {
        1000
    } else {
        c.failures.min(FAILURES_FULL) * 1000 / FAILURES_FULL
    };
    let cost = config
        .region_cost
        .get(&c.region)
        .copied()
        .unwrap_or(0)
        .min(1000);
    let w = config.weights;
    let sum = u64::from(w.proximity + w.load + w.reliability + w.cost).max(1);
    let total = (u64::from(w.proximity) * u64::from(proximity)
        + u64::from(w.load) * u64::from(load)
        + u64::from(w.reliability) * u64::from(reliability)
        + u64::from(w.cost) * u64::from(cost))
        / sum;
    Score {
        node: c.id.clone(),
        region: c.region.clone(),
        http: c.http.clone(),
        rtt_ms,
        proximity,
        load,
        reliability,
        cost,
        total: total as u32,
    }
}

/// What a node does with a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it here.
    Here,
    /// Send the client to this node.
    Redirect(Score),
    /// Nobody can take it.
    Full,
}

/// Whether `this` node keeps a session or sends it to a better node. Without a region
/// hint a node keeps what reaches it unless it is full or draining; a client that was
/// already `placed` by another node is kept unless this node cannot take it.
pub fn decide(
    config: &PlacementSection,
    this: &str,
    client_region: Option<&str>,
    placed: bool,
    candidates: &[Candidate],
    measured: &[MeasuredRtt],
) -> Decision {
    let ranked = rank(config, client_region, candidates, measured);
    let Some(best) = ranked.first() else {
        return Decision::Full;
    };
    let Some(here) = ranked.iter().find(|s| s.node == this) else {
        // This node is full or draining: anyone who can is better.
        return Decision::Redirect(best.clone());
    };
    if placed || client_region.is_none() || !config.redirect || best.node == this {
        return Decision::Here;
    }
    if here.total.saturating_sub(best.total) >= config.margin {
        Decision::Redirect(best.clone())
    } else {
        Decision::Here
    }
}
