//! This node's placement inputs: the cluster as the driver last published it
//! ([`super::cascade::MemberSnapshot`]) turned into [`crate::placement`] candidates,
//! with this node's own numbers taken live.

use super::Shared;
use crate::placement::{self, Candidate, Decision, MeasuredRtt, Score};
use sluice_state::membership::MemberState;
use std::collections::HashMap;

impl Shared {
    /// Sessions (publishers and subscribers, connecting or connected) on this node.
    pub fn session_count(&self) -> usize {
        self.peers().by_session.len()
    }

    /// This node's name (as the cluster knows it) and every node that could take a
    /// session, this one first, with the measured region-to-region RTTs.
    fn candidates(&self) -> (String, Vec<Candidate>, Vec<MeasuredRtt>) {
        let snapshot = self.member_snapshot();
        let (name, region, cpu_permille) = match &snapshot {
            Some(s) => (
                s.this.name.clone(),
                s.this.region.clone(),
                s.loads.get(&s.this.id.0).map_or(0, |l| l.cpu_permille),
            ),
            None => (
                self.config.node.id.clone().unwrap_or_default(),
                self.config.node.region.clone(),
                0,
            ),
        };
        let mut candidates = vec![Candidate {
            id: name.clone(),
            region,
            http: self.public_url.clone(),
            sessions: self.session_count() as u32,
            capacity: self.config.limits.max_sessions.min(u32::MAX as usize) as u32,
            cpu_permille,
            suspect: false,
            draining: self.draining(),
            failures: 0,
        }];
        let Some(snapshot) = snapshot else {
            return (name, candidates, Vec::new());
        };
        let mut region_of: HashMap<u64, String> =
            HashMap::from([(snapshot.this.id.0, snapshot.this.region.clone())]);
        for (m, state) in &snapshot.members {
            region_of.insert(m.id.0, m.region.clone());
            if *state == MemberState::Down || m.http.is_empty() {
                continue;
            }
            let load = snapshot.loads.get(&m.id.0);
            candidates.push(Candidate {
                id: if m.name.is_empty() {
                    m.id.to_string()
                } else {
                    m.name.clone()
                },
                region: m.region.clone(),
                http: m.http.trim_end_matches('/').to_owned(),
                sessions: load.map_or(0, |l| l.sessions),
                capacity: m.capacity,
                cpu_permille: load.map_or(0, |l| l.cpu_permille),
                suspect: *state == MemberState::Suspect,
                draining: load.is_some_and(|l| l.draining),
                failures: snapshot.failures.get(&m.id.0).copied().unwrap_or(0),
            });
        }
        let measured = snapshot
            .loads
            .iter()
            .flat_map(|(node, load)| {
                let region_of = &region_of;
                load.links.iter().filter_map(move |l| {
                    Some(MeasuredRtt {
                        a: region_of.get(node)?.clone(),
                        b: region_of.get(&l.peer.0)?.clone(),
                        rtt_ms: u32::from(l.rtt_ms),
                    })
                })
            })
            .collect();
        (name, candidates, measured)
    }

    /// This node's name as the cluster knows it (its certificate's, in a cluster).
    pub fn node_name(&self) -> String {
        match self.member_snapshot() {
            Some(s) => s.this.name,
            None => self.config.node.id.clone().unwrap_or_default(),
        }
    }

    /// Every node that could take a session for a client in `region`, best first.
    pub fn placement_ranking(&self, region: Option<&str>) -> Vec<Score> {
        let (_, candidates, measured) = self.candidates();
        placement::rank(&self.config.placement, region, &candidates, &measured)
    }

    /// Whether a POST from a client in `region` is served here; `placed`: another node
    /// already chose this one.
    pub fn place(&self, region: Option<&str>, placed: bool) -> Decision {
        let (this, candidates, measured) = self.candidates();
        let decision = placement::decide(
            &self.config.placement,
            &this,
            region,
            placed,
            &candidates,
            &measured,
        );
        let counter = match &decision {
            Decision::Here => &self.placements.here,
            Decision::Redirect(_) => &self.placements.redirected,
            Decision::Full => &self.placements.full,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Decision::Redirect(best) = &decision {
            tracing::info!(
                region = region.unwrap_or("-"),
                to = %best.node,
                total = best.total,
                proximity = best.proximity,
                load = best.load,
                reliability = best.reliability,
                cost = best.cost,
                rtt_ms = ?best.rtt_ms,
                "placement: redirecting to a better node"
            );
        }
        decision
    }
}
