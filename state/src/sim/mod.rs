//! Deterministic cluster simulator: N nodes in one process, virtual time, a simulated
//! network with per-link latency, jitter, loss and partitions, one seeded RNG.
//!
//! Everything that varies comes from the seed, and every collection is ordered, so a
//! failing seed replays exactly. Datagrams may be lost; stream messages are reliable
//! and ordered per link (like a QUIC stream) but, like any connection, do not cross a
//! partition.

mod network;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use network::LinkProfile;
use network::Network;

use crate::auth::ClusterKey;
use crate::identity::{NodeId, NodeIdentity};
use crate::load::LoadPolicy;
use crate::membership::SwimTuning;
use crate::node::{Event, Node, NodeConfig};
use crate::room::RoomPolicy;
use crate::transport::Delivery;

/// The shared secret every simulated node is configured with.
pub const SIM_CLUSTER_KEY: &[u8] = b"sluice-sim-cluster-key";

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub link: LinkProfile,
    pub swim: SwimTuning,
    pub rooms: RoomPolicy,
    pub load: LoadPolicy,
}

impl SimConfig {
    /// A LAN: 0.5 ms +- 0.25 ms one way, no loss.
    pub fn lan(seed: u64) -> Self {
        Self {
            seed,
            link: LinkProfile::lan(),
            swim: SwimTuning::lan(),
            rooms: RoomPolicy::default(),
            load: LoadPolicy::default(),
        }
    }
}

/// Counted per node, as sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams: u64,
    pub streams: u64,
    pub bytes: u64,
}

#[derive(Debug)]
struct Slot {
    node: Option<Node>,
    identity: NodeIdentity,
}

#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: Duration,
    rng: StdRng,
    slots: Vec<Slot>,
    by_addr: BTreeMap<SocketAddr, usize>,
    net: Network,
    traffic: Vec<Traffic>,
    events: Vec<(Duration, usize, Event)>,
    record_events: bool,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let net = Network::new(config.link);
        Self {
            config,
            now: Duration::ZERO,
            rng,
            slots: Vec::new(),
            by_addr: BTreeMap::new(),
            net,
            traffic: Vec::new(),
            events: Vec::new(),
            record_events: true,
        }
    }

    /// Starts `n` nodes; every node after the first uses node 0 as its seed.
    pub fn with_nodes(config: SimConfig, n: usize) -> Self {
        let mut sim = Self::new(config);
        for _ in 0..n {
            sim.add_node();
        }
        sim
    }

    /// Benchmarks with many nodes turn the event log off to save memory.
    pub fn set_record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    pub fn add_node(&mut self) -> usize {
        let i = self.slots.len();
        let octets = u16::try_from(i + 1).unwrap_or(u16::MAX).to_be_bytes();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, octets[0], octets[1]));
        let identity = NodeIdentity::new(
            NodeId(i as u64 + 1),
            if i.is_multiple_of(2) {
                "eu-west"
            } else {
                "us-east"
            },
            SocketAddr::new(ip, 5000),
            SocketAddr::new(ip, 7000),
            1000,
        );
        self.by_addr.insert(identity.link_addr, i);
        self.slots.push(Slot {
            node: None,
            identity: identity.clone(),
        });
        self.traffic.push(Traffic::default());
        self.start(i, identity);
        i
    }

    fn start(&mut self, i: usize, identity: NodeIdentity) {
        let mut config = NodeConfig::new(identity, Box::new(ClusterKey::new(SIM_CLUSTER_KEY)));
        config.swim = self.config.swim.clone();
        config.rooms = self.config.rooms;
        config.load = self.config.load;
        config.rng_seed = self.rng.random();
        if i > 0 {
            config.seeds = vec![self.slots[0].identity.link_addr];
        }
        self.slots[i].node = Some(Node::new(config, self.now));
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Indices of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].node.is_some())
            .collect()
    }

    /// Panics if node `i` was killed: a test asking for a dead node is a broken test.
    pub fn node(&self, i: usize) -> &Node {
        self.slots[i]
            .node
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    /// Edit a node directly; pass it [`Sim::now`]. Its output is sent on the next step.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.slots[i]
            .node
            .as_mut()
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    pub fn node_id(&self, i: usize) -> NodeId {
        self.slots[i].identity.id
    }

    /// Stops node `i` abruptly: no leave, messages to it vanish.
    pub fn kill(&mut self, i: usize) {
        self.slots[i].node = None;
    }

    /// Restarts a killed node under the next generation, as a real restart would.
    pub fn restart(&mut self, i: usize) {
        let identity = self.slots[i].identity.clone();
        let identity = identity.clone().with_generation(identity.generation + 1);
        self.slots[i].identity = identity.clone();
        self.start(i, identity);
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        self.net.partition(a, b);
    }

    pub fn heal(&mut self) {
        self.net.heal();
    }

    pub fn set_link(&mut self, from: usize, to: usize, profile: LinkProfile) {
        self.net.set_link(from, to, profile);
    }

    /// Delivers raw bytes to node `i` now, as if from the network (forgery tests).
    pub fn inject(&mut self, i: usize, delivery: Delivery, data: &[u8]) {
        let now = self.now;
        if let Some(node) = self.slots[i].node.as_mut() {
            match delivery {
                Delivery::Datagram => node.handle_datagram(now, data),
                Delivery::Stream => node.handle_stream(now, data),
            }
        }
    }

    pub fn traffic(&self, i: usize) -> Traffic {
        self.traffic[i]
    }

    pub fn take_events(&mut self) -> Vec<(Duration, usize, Event)> {
        std::mem::take(&mut self.events)
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub fn run_until(&mut self, until: Duration) {
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Runs until `pred` holds (checked after every instant with activity) or
    /// `deadline`; returns the virtual time it first held.
    pub fn run_until_pred(
        &mut self,
        deadline: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        self.collect();
        if pred(self) {
            return Some(self.now);
        }
        while self.step(deadline) {
            if pred(self) {
                return Some(self.now);
            }
        }
        self.now = self.now.max(deadline);
        None
    }

    /// True when every running node sees every other running node as a member.
    pub fn membership_converged(&self) -> bool {
        let running = self.running();
        running
            .iter()
            .all(|&i| self.node(i).members().len() == running.len() - 1)
    }

    /// Runs until membership has converged (see [`Self::membership_converged`]) or
    /// `deadline`; returns the virtual time it first held.
    pub fn run_until_formed(&mut self, deadline: Duration) -> Option<Duration> {
        self.run_until_pred(deadline, Sim::membership_converged)
    }

    fn collect(&mut self) {
        for i in 0..self.slots.len() {
            let Some(node) = self.slots[i].node.as_mut() else {
                continue;
            };
            while let Some(t) = node.poll_transmit() {
                let traffic = &mut self.traffic[i];
                traffic.bytes += t.data.len() as u64;
                match t.delivery {
                    Delivery::Datagram => traffic.datagrams += 1,
                    Delivery::Stream => traffic.streams += 1,
                }
                if let Some(&to) = self.by_addr.get(&t.to) {
                    self.net
                        .send(self.now, i, to, t.delivery, t.data, &mut self.rng);
                }
            }
            if self.record_events {
                while let Some(e) = node.poll_event() {
                    self.events.push((self.now, i, e));
                }
            } else {
                while node.poll_event().is_some() {}
            }
        }
    }

    fn next_activity(&self) -> Option<Duration> {
        let timers = self
            .slots
            .iter()
            .filter_map(|s| s.node.as_ref().and_then(Node::poll_timeout))
            .min();
        match (timers, self.net.next_delivery()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next instant with activity, if it is not after `limit`.
    fn step(&mut self, limit: Duration) -> bool {
        self.collect();
        let Some(next) = self.next_activity() else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(packet) = self.net.pop_due(now) {
            if let Some(node) = self.slots[packet.to].node.as_mut() {
                match packet.delivery {
                    Delivery::Datagram => node.handle_datagram(now, &packet.data),
                    Delivery::Stream => node.handle_stream(now, &packet.data),
                }
            }
        }
        for slot in &mut self.slots {
            if let Some(node) = slot.node.as_mut()
                && node.poll_timeout().is_some_and(|t| t <= now)
            {
                node.handle_timeout(now);
            }
        }
        self.collect();
        true
    }
}
