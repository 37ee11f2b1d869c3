//! The simulated network: per-link delay and loss, partitions, in-flight messages.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

use crate::transport::Delivery;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    /// One-way base latency.
    pub latency: Duration,
    /// Uniform extra delay in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability a datagram is lost (streams retransmit, so they are only delayed).
    pub loss: f64,
}

impl LinkProfile {
    pub fn lan() -> Self {
        Self {
            latency: Duration::from_micros(500),
            jitter: Duration::from_micros(250),
            loss: 0.0,
        }
    }

    pub fn one_way(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Packet {
    pub(crate) to: usize,
    pub(crate) delivery: Delivery,
    pub(crate) data: Vec<u8>,
    from: usize,
}

#[derive(Debug)]
pub(crate) struct Network {
    default: LinkProfile,
    links: BTreeMap<(usize, usize), LinkProfile>,
    cut: BTreeSet<(usize, usize)>,
    in_flight: BTreeMap<(Duration, u64), Packet>,
    seq: u64,
    stream_tail: BTreeMap<(usize, usize), Duration>,
}

impl Network {
    pub(crate) fn new(default: LinkProfile) -> Self {
        Self {
            default,
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            stream_tail: BTreeMap::new(),
        }
    }

    pub(crate) fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    pub(crate) fn set_link(&mut self, from: usize, to: usize, profile: LinkProfile) {
        self.links.insert((from, to), profile);
    }

    pub(crate) fn send(
        &mut self,
        now: Duration,
        from: usize,
        to: usize,
        delivery: Delivery,
        data: Vec<u8>,
        rng: &mut StdRng,
    ) {
        if self.cut.contains(&(from, to)) {
            return;
        }
        let link = self.links.get(&(from, to)).copied().unwrap_or(self.default);
        // Draw both numbers for every message so loss settings don't shift the
        // random sequence of unrelated links.
        let lost = rng.random::<f64>() < link.loss;
        let jitter = link.jitter.mul_f64(rng.random::<f64>());
        let mut at = now + link.latency + jitter;
        match delivery {
            Delivery::Datagram if lost => return,
            Delivery::Datagram => {}
            Delivery::Stream => {
                let tail = self.stream_tail.entry((from, to)).or_default();
                at = at.max(*tail);
                *tail = at;
            }
        }
        self.seq += 1;
        self.in_flight.insert(
            (at, self.seq),
            Packet {
                to,
                delivery,
                data,
                from,
            },
        );
    }

    pub(crate) fn next_delivery(&self) -> Option<Duration> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// The next message due by `now` that is still deliverable (a partition that
    /// started while it was in flight swallows it).
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<Packet> {
        loop {
            let entry = self.in_flight.first_entry()?;
            if entry.key().0 > now {
                return None;
            }
            let packet = entry.remove();
            if !self.cut.contains(&(packet.from, packet.to)) {
                return Some(packet);
            }
        }
    }
}
