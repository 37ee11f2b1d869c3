//! Node load gossip for placement: CPU, sessions, egress and link quality per peer.
//!
//! Reports ride SWIM messages as foca custom broadcasts, so they cost no extra packets.
//! A node publishes when its load changes materially (at most every
//! [`LoadPolicy::min_interval`]), when a member joins, and otherwise every
//! [`LoadPolicy::refresh`] to repair losses. A report therefore describes its sender
//! to within the change thresholds, and reaches every member within a second (checked
//! in the simulator at 50 nodes); re-sending unchanged numbers every second would cost
//! N x max_transmissions copies per report, which the idle bandwidth budget cannot pay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::{NodeId, NodeIdentity};

/// Links reported per node. Bounds a report to about 100 bytes however large the mesh.
pub const MAX_LINKS_IN_REPORT: usize = 16;

/// Quality of this node's link to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkQuality {
    pub peer: NodeId,
    pub rtt_ms: u16,
    pub loss_permille: u16,
}

/// One node's load, as measured by its driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSample {
    pub cpu_permille: u16,
    pub sessions: u32,
    pub egress_bps: u64,
    /// Truncated to [`MAX_LINKS_IN_REPORT`], keeping the worst (highest loss, then RTT)
    /// since those are the ones placement must avoid.
    pub links: Vec<LinkQuality>,
    /// The node is draining: it takes no new sessions and is moving its clients away.
    pub draining: bool,
}

impl LoadSample {
    fn bounded(mut self) -> Self {
        if self.links.len() > MAX_LINKS_IN_REPORT {
            self.links
                .sort_by_key(|l| std::cmp::Reverse((l.loss_permille, l.rtt_ms)));
            self.links.truncate(MAX_LINKS_IN_REPORT);
        }
        self.links.sort_by_key(|l| l.peer);
        self
    }

    /// Whether `self` differs from `published` enough to be worth a broadcast.
    fn differs_materially(&self, published: &Self) -> bool {
        let egress_moved = {
            let (a, b) = (self.egress_bps, published.egress_bps);
            a.abs_diff(b) > a.max(b) / 10 && a.abs_diff(b) > 100_000
        };
        self.draining != published.draining
            || self.cpu_permille.abs_diff(published.cpu_permille) >= 50
            || self.sessions != published.sessions
            || egress_moved
            || self.links.len() != published.links.len()
            || self.links.iter().zip(&published.links).any(|(a, b)| {
                a.peer != b.peer
                    || a.rtt_ms.abs_diff(b.rtt_ms) >= 10
                    || a.loss_permille.abs_diff(b.loss_permille) >= 10
            })
    }
}

/// A sample as published: versioned by (generation, seq) so a restarted node's
/// reports replace its old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub node: NodeId,
    pub generation: u32,
    pub seq: u64,
    pub sample: LoadSample,
}

impl LoadReport {
    fn version(&self) -> (u32, u64) {
        (self.generation, self.seq)
    }
}

/// What placement reads: the latest report and how long ago it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadView {
    pub report: LoadReport,
    pub age: Duration,
}

/// When to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadPolicy {
    pub min_interval: Duration,
    pub refresh: Duration,
}

impl Default for LoadPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_millis(250),
            refresh: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct LoadTable {
    reports: BTreeMap<NodeId, (LoadReport, Option<Duration>)>,
    received: u64,
}

impl LoadTable {
    /// Stamps reports that arrived during the last foca call with the current time.
    pub(crate) fn stamp(&mut self, now: Duration) -> u64 {
        for (_, at) in self.reports.values_mut() {
            at.get_or_insert(now);
        }
        std::mem::take(&mut self.received)
    }

    pub(crate) fn view(&self, node: NodeId, now: Duration) -> Option<LoadView> {
        self.reports.get(&node).map(|(report, at)| LoadView {
            report: report.clone(),
            age: now.saturating_sub(at.unwrap_or(now)),
        })
    }

    pub(crate) fn forget(&mut self, node: NodeId) {
        self.reports.remove(&node);
    }
}

/// Dissemination key: a newer version of a node's report replaces an older one still
/// queued for retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadKey {
    node: NodeId,
    version: (u32, u64),
}

impl foca::Invalidates for LoadKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && self.version >= other.version
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoadDecodeError {
    #[error("undecodable load report")]
    Malformed,
    #[error("load report lists more than {MAX_LINKS_IN_REPORT} links")]
    TooManyLinks,
}

/// Decodes a report received from a peer.
pub fn decode_report(data: &[u8]) -> Result<LoadReport, LoadDecodeError> {
    let report: LoadReport = postcard::from_bytes(data).map_err(|_| LoadDecodeError::Malformed)?;
    if report.sample.links.len() > MAX_LINKS_IN_REPORT {
        return Err(LoadDecodeError::TooManyLinks);
    }
    Ok(report)
}

/// Foca's hook for custom broadcasts: stores new reports and tells foca whether to
/// keep disseminating them.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadHandler {
    pub(crate) table: Arc<Mutex<LoadTable>>,
}

impl LoadHandler {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LoadTable> {
        // The table is only touched from the node's own thread; a poisoned lock still
        // holds consistent data (every update is a single insert).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl foca::BroadcastHandler<NodeIdentity> for LoadHandler {
    type Key = LoadKey;
    type Error = LoadDecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeIdentity>,
    ) -> Result<Option<LoadKey>, LoadDecodeError> {
        let report = decode_report(data)?;
        let mut table = self.lock();
        if let Some((known, _)) = table.reports.get(&report.node)
            && known.version() >= report.version()
        {
            return Ok(None);
        }
        let key = LoadKey {
            node: report.node,
            version: report.version(),
        };
        table.received += 1;
        table.reports.insert(report.node, (report, None));
        Ok(Some(key))
    }
}

/// Decides when this node publishes its own load.
#[derive(Debug)]
pub(crate) struct LoadPublisher {
    policy: LoadPolicy,
    node: NodeId,
    generation: u32,
    seq: u64,
    current: LoadSample,
    published: Option<(Duration, LoadSample)>,
    force: bool,
}

impl LoadPublisher {
    pub(crate) fn new(policy: LoadPolicy, identity: &NodeIdentity) -> Self {
        Self {
            policy,
            node: identity.id,
            generation: identity.generation,
            seq: 0,
            current: LoadSample::default(),
            published: None,
            force: true,
        }
    }

    pub(crate) fn set(&mut self, sample: LoadSample) {
        self.current = sample.bounded();
    }

    pub(crate) fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
        self.force = true;
    }

    /// A new member needs our report now rather than at the next refresh.
    pub(crate) fn force(&mut self) {
        self.force = true;
    }

    fn due_at(&self) -> Option<Duration> {
        let Some((at, published)) = &self.published else {
            return Some(Duration::ZERO);
        };
        if self.force || self.current.differs_materially(published) {
            Some(*at + self.policy.min_interval)
        } else {
            Some(*at + self.policy.refresh)
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        self.due_at()
    }

    /// The encoded report to broadcast, if one is due.
    pub(crate) fn poll(&mut self, now: Duration) -> Option<Vec<u8>> {
        if self.due_at()? > now {
            return None;
        }
        self.seq += 1;
        self.force = false;
        self.published = Some((now, self.current.clone()));
        let report = LoadReport {
            node: self.node,
            generation: self.generation,
            seq: self.seq,
            sample: self.current.clone(),
        };
        postcard::to_allocvec(&report).ok()
    }
}
