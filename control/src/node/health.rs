//! Readiness: whether a load balancer or orchestrator should send this node new clients.
//! Liveness needs nothing here: a process that answers HTTP is alive.

use super::Shared;
use serde::Serialize;
use sluice_state::membership::MemberState;
use std::collections::HashSet;

/// Why this node is (not) ready, as `GET /readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub workers: usize,
    pub workers_up: usize,
    /// Other cluster members not declared down.
    pub peers_known: usize,
    /// Of those, the ones this node has a live link to.
    pub peers_linked: usize,
    pub draining: bool,
    /// What keeps the node out of service, empty when ready.
    pub reasons: Vec<String>,
}

impl Readiness {
    /// Every worker running, links to a majority of the peers membership knows (a node
    /// cut off from most of its cluster cannot reach most publishers), and not draining.
    pub fn judge(
        workers: usize,
        workers_up: usize,
        peers_known: usize,
        peers_linked: usize,
        draining: bool,
    ) -> Self {
        let mut reasons = Vec::new();
        if workers_up < workers {
            reasons.push(format!(
                "{} of {workers} media workers down",
                workers - workers_up
            ));
        }
        if peers_known > 0 && peers_linked * 2 <= peers_known {
            reasons.push(format!(
                "links to {peers_linked} of {peers_known} known peers, short of a majority"
            ));
        }
        if draining {
            reasons.push("draining".to_owned());
        }
        Self {
            ready: reasons.is_empty(),
            workers,
            workers_up,
            peers_known,
            peers_linked,
            draining,
            reasons,
        }
    }
}

impl Shared {
    pub fn readiness(&self) -> Readiness {
        let (workers, workers_up) = {
            let media = self.media.lock();
            let n = self.media.workers();
            let up = (0..n).filter(|&w| media.stats(w).running).count();
            (n, up)
        };
        let (known, linked) = match (self.member_snapshot(), self.cluster()) {
            (Some(view), Some(cluster)) => {
                let linked: HashSet<String> = cluster
                    .endpoint
                    .links()
                    .iter()
                    .filter(|l| !l.is_closed())
                    .map(|l| l.peer().to_string())
                    .collect();
                let known: Vec<&str> = view
                    .members
                    .iter()
                    .filter(|(_, s)| *s != MemberState::Down)
                    .map(|(m, _)| m.name.as_str())
                    .collect();
                let reached = known.iter().filter(|n| linked.contains(**n)).count();
                (known.len(), reached)
            }
            _ => (0, 0),
        };
        Readiness::judge(workers, workers_up, known, linked, self.draining())
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn ready_needs_every_worker_a_majority_of_links_and_no_drain() {
        assert!(Readiness::judge(2, 2, 0, 0, false).ready, "alone");
        assert!(Readiness::judge(2, 2, 3, 2, false).ready, "2 of 3 linked");
        assert!(Readiness::judge(2, 2, 1, 1, false).ready);
        let cut_off = Readiness::judge(2, 2, 2, 1, false);
        assert!(!cut_off.ready);
        assert_eq!(cut_off.reasons.len(), 1, "{:?}", cut_off.reasons);
        assert!(!Readiness::judge(2, 1, 0, 0, false).ready, "a worker down");
        let draining = Readiness::judge(2, 2, 0, 0, true);
        assert_eq!(draining.reasons, vec!["draining".to_owned()]);
    }
}
