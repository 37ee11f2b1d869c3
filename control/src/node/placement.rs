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

    /// This node's name and every node that could take a session, with the measured
    /// region-to-region RTTs.
    fn candidates(&self) -> (String, Vec<Candidate>, Vec<MeasuredRtt>) {
        let this_name = self.config.node.id.clone().unwrap_or_default();
        let capacity = self.config.limits.max_sessions.min(u32::MAX as usize) as u32;
        let Some(snapshot) = self.member_snapshot() else {
            let this = Candidate {
                id: this_name.clone(),
                region: self.config.node.region.clone(),
                http: self.public_url.clone(),
                sessions: self.session_count() as u32,
                capacity,
                cpu_permille: 0,
                suspect: false,
                draining: self.draining(),
                failures: 0,
            };
            return (this_name, vec![this], Vec::new());
        };
        let this_load = snapshot.loads.get(&snapshot.this.id.0);
        let mut candidates = vec![Candidate {
            id: snapshot.this.name.clone(),
            region: snapshot.this.region.clone(),
            http: self.public_url.clone(),
            sessions: self.session_count() as u32,
            capacity,
            cpu_permille: this_load.map_or(0, |l| l.cpu_permille),
            suspect: false,
            draining: self.draining(),
            failures: 0,
        }];
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
        (snapshot.this.name, candidates, measured)
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
