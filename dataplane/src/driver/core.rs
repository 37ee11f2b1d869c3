//! The handler side of a worker, identical under both drivers: feeding the handler its
//! inputs and routing what it produced to other workers and the links. Egress is the one
//! part each driver does its own way.

use super::config::DriverConfig;
use super::shared::Shared;
use super::stats::{Counters, bump};
use crate::engine::{Micros, Output, PacketHandler, WorkerId};
use crossbeam_channel::Receiver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub(crate) struct Core<H: PacketHandler> {
    pub id: WorkerId,
    pub handler: H,
    pub out: Output<H::Handoff>,
    pub shared: Arc<Shared<H::Handoff>>,
    commands: Receiver<H::Command>,
    /// Workers that got handoffs this turn: each is woken once, after all pushes.
    to_wake: Vec<bool>,
    /// Most handoffs taken from one queue per turn, so a flooding peer cannot starve the
    /// socket.
    budget: usize,
    /// Work is left that no eventfd or socket readiness will announce: a queue hit the
    /// budget, or this worker handed something to itself.
    local_work: bool,
}

impl<H: PacketHandler> Core<H> {
    pub fn new(
        id: WorkerId,
        handler: H,
        shared: Arc<Shared<H::Handoff>>,
        commands: Receiver<H::Command>,
        cfg: &DriverConfig,
    ) -> Self {
        let mut out = Output {
            egress: crate::engine::Egress::with_capacity(cfg.egress_capacity.max(1)),
            ..Output::default()
        };
        out.handoffs.reserve(cfg.egress_capacity);
        out.links.reserve(cfg.egress_capacity);
        let n = shared.workers;
        Self {
            id,
            handler,
            out,
            shared,
            commands,
            to_wake: vec![false; n],
            budget: cfg.batch.max(1) * 4,
            local_work: false,
        }
    }

    pub fn stats(&self) -> &Counters {
        &self.shared.stats[self.id]
    }

    pub fn now(&self) -> Micros {
        self.shared.now()
    }

    pub fn stopping(&self) -> bool {
        self.shared.stopping()
    }

    /// Whether the driver may block: nothing is waiting that only a poll of this core
    /// would find.
    pub fn idle(&self) -> bool {
        !self.local_work
    }

    pub fn datagram(&mut self, now: Micros, from: SocketAddr, buf: &mut [u8]) {
        let c = &self.shared.stats[self.id];
        bump(&c.rx_packets, 1);
        bump(&c.rx_bytes, buf.len() as u64);
        self.handler.handle_datagram(now, from, buf, &mut self.out);
    }

    /// The worker's eventfd fired.
    pub fn woken(&self) {
        self.shared.wakers[self.id].consumed();
        bump(&self.stats().wakeups, 1);
    }

    /// Commands and handoffs that arrived since the last turn.
    pub fn mail(&mut self, now: Micros) {
        let c = &self.shared.stats[self.id];
        while let Ok(cmd) = self.commands.try_recv() {
            bump(&c.commands, 1);
            self.handler.handle_command(now, cmd, &mut self.out);
        }
        self.local_work = false;
        for from in 0..self.shared.workers {
            let q = self.shared.queue(from, self.id);
            let mut taken = 0;
            while taken < self.budget {
                let Some(msg) = q.pop() else { break };
                taken += 1;
                self.handler.handle_handoff(now, msg, &mut self.out);
            }
            bump(&c.handoffs_in, taken as u64);
            if taken == self.budget && !q.is_empty() {
                self.local_work = true;
            }
        }
    }

    pub fn timers(&mut self, now: Micros) {
        if let Some(deadline) = self.handler.poll_timeout()
            && deadline <= now
        {
            bump(&self.shared.stats[self.id].timeouts, 1);
            self.handler.handle_timeout(now, &mut self.out);
        }
    }

    pub fn deadline(&self) -> Option<Micros> {
        self.handler.poll_timeout()
    }

    /// Pushes this turn's handoffs into the peers' queues (waking each peer once) and
    /// link packets into the link channel. A full queue drops and counts; the packet path
    /// never waits for another thread.
    pub fn dispatch(&mut self) {
        let shared = &*self.shared;
        let c = &shared.stats[self.id];
        let n = shared.workers;
        let (mut out, mut full, mut bad) = (0u64, 0u64, 0u64);
        for (to, msg) in self.out.handoffs.drain(..) {
            if to >= n {
                bad += 1;
                continue;
            }
            match shared.queue(self.id, to).push(msg) {
                Ok(()) => {
                    out += 1;
                    self.to_wake[to] = true;
                }
                Err(_dropped) => full += 1,
            }
        }
        if out > 0 {
            for (to, wake) in self.to_wake.iter_mut().enumerate() {
                if std::mem::take(wake) {
                    if to == self.id {
                        self.local_work = true;
                    } else {
                        shared.wakers[to].wake();
                    }
                }
            }
        }
        bump(&c.handoffs_out, out);
        bump(&c.handoff_queue_full, full);
        bump(&c.handoff_bad_worker, bad);

        if !self.out.links.is_empty() {
            let wanted = shared.links_wanted.load(Relaxed);
            let (mut sent, mut dropped) = (0u64, 0u64);
            for pkt in self.out.links.drain(..) {
                if wanted && shared.links.try_send(pkt).is_ok() {
                    sent += 1;
                } else {
                    dropped += 1;
                }
            }
            bump(&c.link_packets, sent);
            bump(&c.link_drops, dropped);
        }
    }
}
