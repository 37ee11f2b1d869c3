//! A subscriber's view of what it receives: every new packet counted, a sample (or all)
//! of them verified end to end by their trailer, and the one-way latency of the verified
//! ones. The observer runs on the subscriber's receive task, so it only adds and
//! records; the sampler takes the numbers from another task.

use super::stamp;
use crate::dataplane::cpu::monotonic_ns;
use crate::dataplane::hist::Histogram;
use sluice_control::client::{ObservedPacket, PacketObserver};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Probe {
    verify_every: u64,
    received: AtomicU64,
    bytes: AtomicU64,
    verified: AtomicU64,
    corrupt: AtomicU64,
    /// One-way latency (µs) of packets verified since the last [`Probe::take_latency`].
    latency: Mutex<Histogram>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    pub received: u64,
    pub bytes: u64,
    pub verified: u64,
    pub corrupt: u64,
}

impl ProbeCounts {
    pub fn add(&mut self, o: &ProbeCounts) {
        self.received += o.received;
        self.bytes += o.bytes;
        self.verified += o.verified;
        self.corrupt += o.corrupt;
    }

    pub fn since(&self, before: &ProbeCounts) -> ProbeCounts {
        ProbeCounts {
            received: self.received - before.received,
            bytes: self.bytes - before.bytes,
            verified: self.verified - before.verified,
            corrupt: self.corrupt - before.corrupt,
        }
    }
}

impl Probe {
    /// Verifies one packet in `verify_every` (0: none, for a server that forwards
    /// ciphertext the subscriber cannot open).
    pub fn new(verify_every: u64) -> Arc<Self> {
        Arc::new(Self {
            verify_every,
            received: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new()),
        })
    }

    pub fn observer(self: &Arc<Self>) -> PacketObserver {
        let me = Arc::clone(self);
        PacketObserver(Arc::new(move |p: &ObservedPacket<'_>| me.on_packet(p)))
    }

    fn on_packet(&self, p: &ObservedPacket<'_>) {
        let n = self.received.fetch_add(1, Relaxed);
        self.bytes.fetch_add(p.payload.len() as u64, Relaxed);
        if self.verify_every == 0 || !n.is_multiple_of(self.verify_every) {
            return;
        }
        match stamp::verify(p.payload) {
            Ok(s) => {
                self.verified.fetch_add(1, Relaxed);
                let us = monotonic_ns().saturating_sub(s.send_ns) / 1000;
                self.latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(us);
            }
            Err(_) => {
                self.corrupt.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn counts(&self) -> ProbeCounts {
        ProbeCounts {
            received: self.received.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            verified: self.verified.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
        }
    }

    /// The latencies recorded since the last call, leaving an empty histogram.
    pub fn take_latency(&self) -> Histogram {
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *h)
    }
}
