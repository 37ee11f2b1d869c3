//! Path selection: for each (publishing node, subscribing node) pair, whether a stream
//! goes over the direct link or is relayed through one third node.
//!
//! - **Measurements** are per directed link, as the *sending* node of the hop reports
//!   them ([`PathSelector::update_node`] from a node's gossiped
//!   [`LoadSample::links`](sluice_state::LoadSample), or [`PathSelector::update_links`]
//!   with bandwidth from the local link estimates). The sender's QUIC connection sees the
//!   loss of what it sends, which is the loss media on that hop suffers; the reverse
//!   report describes the other direction, so it is never used in its place. A link
//!   nobody measured is unusable.
//! - A hop's **cost** is an effective RTT:
//!   `(rtt_ms + hop_ms) * (1 + loss_percent_per_permille * loss_permille / 100)`
//!   ([`PathConfig`]). Loss weighs heavily because a lost media packet costs a NACK round
//!   trip at best and a freeze plus keyframe at worst: by default 1% loss counts like
//!   +50% RTT and 10% like six times the RTT. `hop_ms` is what forwarding through one
//!   more node costs, so two LAN hops of 0 ms still cost more than one. Bandwidth gates
//!   only: a hop whose measured bandwidth is below [`PathConfig::min_bandwidth_bps`]
//!   is unusable. It does not rank hops because a link's estimate grows only with what
//!   it carries (an idle link measures little), so ranking by it would favour busy
//!   links.
//! - **Routes** are direct or via the best single relay, not a general shortest path:
//!   the cascade relays through *a* third node by design, every extra hop adds a
//!   forwarding delay and a node whose failure cuts the stream, and with one relay the
//!   best route is `min(direct, min over r of cost(from, r) + cost(r, to))`, which is
//!   what Dijkstra would find over paths of at most two hops anyway.
//! - **Preferred** route: direct unless the best relay beats it by
//!   [`PathConfig::margin_percent`] (`relayed * (1 + margin) < direct`).
//! - **Hysteresis**: a working route is left for the preferred one only when the
//!   preferred one beats it by the same margin (so after relaying, direct must beat
//!   the relay path by the margin too; jitter inside that band changes nothing), has
//!   done so at every evaluation for [`PathConfig::confirm`], and at least
//!   [`PathConfig::min_dwell`] has passed since the pair's last change. A route that
//!   stops working (a hop lost its measurement, its relay went down) is replaced at
//!   once: a broken path costs media every millisecond it is kept.
//!
//! Sans-IO: measurements and membership in, [`PathSelector::route`] and
//! [`PathSelector::poll_change`] out, [`PathSelector::handle_timeout`] when
//! [`PathSelector::poll_timeout`] says (a pending switch confirms with no new input).

#[cfg(test)]
mod tests;

use sluice_dataplane::engine::Micros;
use sluice_state::{LinkQuality, NodeId};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    /// Milliseconds added to each hop's RTT for forwarding through a node (a worker's
    /// batch, re-framing, queueing), so a relay is never free.
    pub hop_ms: u32,
    /// Cost added per permille of loss, in percent of the hop's cost.
    pub loss_percent_per_permille: u32,
    /// A hop whose measured bandwidth is below this is unusable: it could not carry
    /// audio and a base video layer. Unmeasured bandwidth does not gate.
    pub min_bandwidth_bps: u64,
    /// A route replaces another only when its cost times `1 + margin` is below the
    /// other's; direct is preferred unless the relay beats it by as much.
    pub margin_percent: u32,
    /// The preferred route must beat the current one by the margin for this long
    /// before the pair switches, so one noisy report does not move streams.
    pub confirm: Micros,
    /// No voluntary switch within this long after a pair's last change: bounds the
    /// change rate under any jitter. Replacing a broken route ignores it.
    pub min_dwell: Micros,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            hop_ms: 2,
            loss_percent_per_permille: 5,
            min_bandwidth_bps: 300_000,
            margin_percent: 20,
            confirm: 500_000,
            min_dwell: 5_000_000,
        }
    }
}

/// One directed link as its sending node measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkMeasurement {
    pub rtt_ms: u32,
    pub loss_permille: u16,
    /// Available bandwidth, when the link's congestion controller has an estimate.
    pub bandwidth_bps: Option<u64>,
}

impl From<&LinkQuality> for LinkMeasurement {
    fn from(l: &LinkQuality) -> Self {
        Self {
            rtt_ms: u32::from(l.rtt_ms),
            loss_permille: l.loss_permille,
            bandwidth_bps: None,
        }
    }
}

/// How a stream from one node reaches another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Direct,
    /// Relayed through this node (never the source or the destination).
    Via(NodeId),
    /// No usable path (or either end is down or unknown).
    Unreachable,
}

/// The route of streams from `from` to `to` changed from `old` to `new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathChange {
    pub from: NodeId,
    pub to: NodeId,
    pub old: Route,
    pub new: Route,
    /// The old route stopped working (rather than a better one being found).
    pub forced: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Route changes of any kind, becoming reachable and unreachable included.
    pub changes: u64,
    /// Of which because the old route stopped working.
    pub forced: u64,
    /// Of which to a relay.
    pub to_relay: u64,
    /// Of which back to the direct link.
    pub to_direct: u64,
    /// Pairs whose preferred route beat the current one but had to wait for
    /// [`PathConfig::min_dwell`], counted once per wait.
    pub held: u64,
    /// Pairs relayed now.
    pub relayed: u64,
    /// Pairs of known nodes with no route now.
    pub unreachable: u64,
}

#[derive(Debug, Default)]
struct Node {
    up: bool,
    relay_allowed: bool,
    links: BTreeMap<NodeId, LinkMeasurement>,
}

#[derive(Debug)]
struct Pair {
    route: Route,
    /// Last change away from a working route; `None` until then.
    changed_at: Option<Micros>,
    /// Since when the preferred route has beaten the current one by the margin.
    better_since: Option<Micros>,
    held: bool,
}

impl Default for Pair {
    fn default() -> Self {
        Self {
            route: Route::Unreachable,
            changed_at: None,
            better_since: None,
            held: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct PathSelector {
    config: PathConfig,
    nodes: BTreeMap<NodeId, Node>,
    pairs: BTreeMap<(NodeId, NodeId), Pair>,
    changes: VecDeque<PathChange>,
    stats: PathStats,
}

impl PathSelector {
    pub fn new(config: PathConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &PathConfig {
        &self.config
    }

    /// `node`'s links as its load report gossips them. Replaces everything known about
    /// its outgoing links (a peer it no longer reports becomes unmeasured). An unknown
    /// node becomes known and up; a node marked down stays down.
    pub fn update_node(&mut self, now: Micros, node: NodeId, links: &[LinkQuality]) {
        let links: Vec<_> = links
            .iter()
            .map(|l| (l.peer, LinkMeasurement::from(l)))
            .collect();
        self.update_links(now, node, &links);
    }

    /// Like [`Self::update_node`], with bandwidth where known (the local node's own
    /// links, from its link estimates).
    pub fn update_links(&mut self, now: Micros, node: NodeId, links: &[(NodeId, LinkMeasurement)]) {
        let n = self.nodes.entry(node).or_insert_with(|| Node {
            up: true,
            relay_allowed: true,
            links: BTreeMap::new(),
        });
        n.links = links
            .iter()
            .filter(|(peer, _)| *peer != node)
            .copied()
            .collect();
        self.evaluate(now);
    }

    /// Membership says `node` is alive (again). Its links count from its next report
    /// (marking it down dropped the old ones).
    pub fn node_up(&mut self, now: Micros, node: NodeId) {
        self.nodes
            .entry(node)
            .or_insert_with(|| Node {
                relay_allowed: true,
                ..Node::default()
            })
            .up = true;
        self.evaluate(now);
    }

    /// Membership declared `node` down: no route starts, ends or relays there, and its
    /// own link reports are dropped (a restarted node measures afresh). Routes through
    /// it are replaced at once.
    pub fn node_down(&mut self, now: Micros, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.up = false;
            n.links.clear();
        }
        self.evaluate(now);
    }

    /// `node` left the cluster: forgotten, with every pair it was an end of (each
    /// reported as a change to [`Route::Unreachable`] if it had a route).
    pub fn remove_node(&mut self, now: Micros, node: NodeId) {
        self.node_down(now, node);
        self.nodes.remove(&node);
        self.pairs.retain(|&(f, t), _| f != node && t != node);
    }

    /// Whether streams may be relayed through `node` (a draining node should not take
    /// new relayed streams it will soon have to give up). Routes through it are
    /// replaced at once when disallowed.
    pub fn set_relay_allowed(&mut self, now: Micros, node: NodeId, allowed: bool) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.relay_allowed = allowed;
        }
        self.evaluate(now);
    }

    /// How streams from `from` reach `to` now.
    pub fn route(&self, from: NodeId, to: NodeId) -> Route {
        self.pairs
            .get(&(from, to))
            .map_or(Route::Unreachable, |p| p.route)
    }

    /// Every pair of known nodes and its route, for metrics and logs.
    pub fn routes(&self) -> impl Iterator<Item = (NodeId, NodeId, Route)> + '_ {
        self.pairs.iter().map(|(&(f, t), p)| (f, t, p.route))
    }

    /// The cost of the hop `from -> to` (see the module doc), `None` when unusable.
    pub fn link_cost(&self, from: NodeId, to: NodeId) -> Option<f64> {
        let (src, dst) = (self.nodes.get(&from)?, self.nodes.get(&to)?);
        if !src.up || !dst.up {
            return None;
        }
        let m = src.links.get(&to)?;
        if m.bandwidth_bps
            .is_some_and(|bw| bw < self.config.min_bandwidth_bps)
        {
            return None;
        }
        let delay = f64::from(m.rtt_ms) + f64::from(self.config.hop_ms);
        let loss = f64::from(m.loss_permille.min(1000))
            * f64::from(self.config.loss_percent_per_permille)
            / 100.0;
        Some(delay * (1.0 + loss))
    }

    /// The cost of sending from `from` to `to` along `route`, `None` when unusable.
    pub fn route_cost(&self, from: NodeId, to: NodeId, route: Route) -> Option<f64> {
        if from == to {
            return None;
        }
        match route {
            Route::Direct => self.link_cost(from, to),
            Route::Via(r) if r != from && r != to => {
                if !self.nodes.get(&r).is_some_and(|n| n.relay_allowed) {
                    return None;
                }
                Some(self.link_cost(from, r)? + self.link_cost(r, to)?)
            }
            Route::Via(_) | Route::Unreachable => None,
        }
    }

    pub fn poll_change(&mut self) -> Option<PathChange> {
        self.changes.pop_front()
    }

    /// When a pending switch may be confirmed.
    pub fn poll_timeout(&self) -> Option<Micros> {
        self.pairs
            .values()
            .filter_map(|p| {
                let since = p.better_since?;
                let confirmed = since.saturating_add(self.config.confirm);
                let dwelt = p
                    .changed_at
                    .map_or(0, |c| c.saturating_add(self.config.min_dwell));
                Some(confirmed.max(dwelt))
            })
            .min()
    }

    pub fn handle_timeout(&mut self, now: Micros) {
        self.evaluate(now);
    }

    pub fn stats(&self) -> PathStats {
        let mut s = self.stats;
        s.relayed = 0;
        s.unreachable = 0;
        for p in self.pairs.values() {
            match p.route {
                Route::Via(_) => s.relayed += 1,
                Route::Unreachable => s.unreachable += 1,
                Route::Direct => {}
            }
        }
        s
    }

    /// The route the pair should take ignoring hysteresis, and its cost.
    fn preferred(&self, from: NodeId, to: NodeId) -> (Route, Option<f64>) {
        let direct = self.route_cost(from, to, Route::Direct);
        // Ties go to the lowest id: every node must pick the same relay.
        let relay = self
            .nodes
            .keys()
            .filter_map(|&r| Some((r, self.route_cost(from, to, Route::Via(r))?)))
            .fold(None, |best: Option<(NodeId, f64)>, (r, c)| match best {
                Some((_, b)) if b <= c => best,
                _ => Some((r, c)),
            });
        match (direct, relay) {
            (Some(d), Some((r, c))) if self.beats(c, d) => (Route::Via(r), Some(c)),
            (Some(d), _) => (Route::Direct, Some(d)),
            (None, Some((r, c))) => (Route::Via(r), Some(c)),
            (None, None) => (Route::Unreachable, None),
        }
    }

    /// `a` is better than `b` by the margin.
    fn beats(&self, a: f64, b: f64) -> bool {
        a * (1.0 + f64::from(self.config.margin_percent) / 100.0) < b
    }

    fn evaluate(&mut self, now: Micros) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &from in &ids {
            for &to in &ids {
                if from != to {
                    self.evaluate_pair(now, from, to);
                }
            }
        }
    }

    fn evaluate_pair(&mut self, now: Micros, from: NodeId, to: NodeId) {
        let (preferred, preferred_cost) = self.preferred(from, to);
        let pair = self.pairs.entry((from, to)).or_default();
        let current = pair.route;
        if preferred == current {
            pair.better_since = None;
            pair.held = false;
            return;
        }
        let current_cost = self.route_cost(from, to, current);
        let Some(current_cost) = current_cost else {
            // Reborn or broken: take the preferred route now. Leaving Unreachable does
            // not start the dwell, so a pair that just appeared can still improve soon.
            let Some(pair) = self.pairs.get_mut(&(from, to)) else {
                return;
            };
            if current != Route::Unreachable {
                pair.changed_at = Some(now);
            }
            self.switch(from, to, preferred, current != Route::Unreachable);
            return;
        };
        let better = preferred_cost.is_some_and(|c| self.beats(c, current_cost));
        let (confirm, dwell) = (self.config.confirm, self.config.min_dwell);
        let Some(pair) = self.pairs.get_mut(&(from, to)) else {
            return;
        };
        if !better {
            pair.better_since = None;
            pair.held = false;
            return;
        }
        let since = *pair.better_since.get_or_insert(now);
        if now.saturating_sub(since) < confirm {
            return;
        }
        if pair
            .changed_at
            .is_some_and(|c| now.saturating_sub(c) < dwell)
        {
            if !pair.held {
                pair.held = true;
                self.stats.held += 1;
            }
            return;
        }
        pair.changed_at = Some(now);
        self.switch(from, to, preferred, false);
    }

    fn switch(&mut self, from: NodeId, to: NodeId, new: Route, forced: bool) {
        let Some(pair) = self.pairs.get_mut(&(from, to)) else {
            return;
        };
        let old = pair.route;
        pair.route = new;
        pair.better_since = None;
        pair.held = false;
        self.stats.changes += 1;
        if forced {
            self.stats.forced += 1;
        }
        match new {
            Route::Via(_) => self.stats.to_relay += 1,
            Route::Direct if old != Route::Unreachable => self.stats.to_direct += 1,
            Route::Direct | Route::Unreachable => {}
        }
        self.changes.push_back(PathChange {
            from,
            to,
            old,
            new,
            forced,
        });
    }
}
