//! SWIM membership and failure detection: foca, driven sans-IO with absolute virtual
//! deadlines, carrying load reports as custom broadcasts.

mod config;
#[cfg(test)]
mod tests;
mod view;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use config::{SWIM_PAYLOAD_MAX, SwimTuning};
pub use view::MemberState;

use crate::identity::{NodeId, NodeIdentity};
use crate::load::{LoadHandler, LoadTable};

/// A membership change the node acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    Up(NodeIdentity),
    Down(NodeIdentity),
    /// We were declared down and came back under a new generation.
    Rejoined(NodeIdentity),
}

type SwimCore = Foca<NodeIdentity, PostcardCodec, StdRng, LoadHandler>;

pub(crate) struct Membership {
    foca: SwimCore,
    runtime: AccumulatingRuntime<NodeIdentity>,
    timers: BTreeMap<(Duration, u64), Timer<NodeIdentity>>,
    timer_seq: u64,
    loads: LoadHandler,
    events: Vec<MemberEvent>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", self.foca.identity())
            .field("members", &self.foca.num_members())
            .finish()
    }
}

/// Why foca refused an input; counted, never fatal.
#[derive(Debug, thiserror::Error)]
#[error("swim: {0}")]
pub(crate) struct SwimError(String);

impl From<foca::Error> for SwimError {
    fn from(e: foca::Error) -> Self {
        Self(e.to_string())
    }
}

impl Membership {
    pub(crate) fn new(identity: NodeIdentity, tuning: &SwimTuning, seed: u64) -> Self {
        let loads = LoadHandler::default();
        let foca = Foca::with_custom_broadcast(
            identity,
            tuning.to_foca(),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            loads.clone(),
        );
        Self {
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            loads,
            events: Vec::new(),
        }
    }

    pub(crate) fn identity(&self) -> &NodeIdentity {
        self.foca.identity()
    }

    pub(crate) fn load_table(&self) -> std::sync::MutexGuard<'_, LoadTable> {
        self.loads.lock()
    }

    pub(crate) fn announce(&mut self, now: Duration, to: NodeIdentity) -> Result<(), SwimError> {
        let r = self.foca.announce(to, &mut self.runtime);
        self.absorb(now);
        Ok(r?)
    }

    pub(crate) fn leave(&mut self, now: Duration) -> Result<(), SwimError> {
        let r = self.foca.leave_cluster(&mut self.runtime);
        self.absorb(now);
        Ok(r?)
    }

    pub(crate) fn gossip(&mut self, now: Duration) {
        let _ = self.foca.gossip(&mut self.runtime);
        self.absorb(now);
    }

    pub(crate) fn handle_data(&mut self, now: Duration, data: &[u8]) -> Result<(), SwimError> {
        let r = self.foca.handle_data(data, &mut self.runtime);
        self.absorb(now);
        Ok(r?)
    }

    pub(crate) fn add_broadcast(&mut self, now: Duration, data: &[u8]) -> Result<(), SwimError> {
        let r = self.foca.add_broadcast(data);
        self.absorb(now);
        r.map(|_| ()).map_err(Into::into)
    }

    pub(crate) fn handle_timeout(&mut self, now: Duration) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            // A timer failing (e.g. a stale probe) is routine for foca; it has already
            // recovered its state.
            let _ = self.foca.handle_timer(timer, &mut self.runtime);
            self.absorb(now);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    pub(crate) fn poll_send(&mut self) -> Option<(NodeIdentity, Bytes)> {
        self.runtime.to_send()
    }

    pub(crate) fn poll_event(&mut self) -> Option<MemberEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &NodeIdentity> {
        self.foca.iter_members().map(|m| m.id())
    }

    /// Every other node known, live or recently down, with its state.
    pub(crate) fn member_view(&self) -> Vec<(NodeIdentity, MemberState)> {
        view::member_view(self.foca.iter_membership_state(), self.identity().id)
    }

    pub(crate) fn member(&self, id: NodeId) -> Option<&NodeIdentity> {
        self.members().find(|m| m.id == id)
    }

    /// Moves foca's timers and notifications out of its runtime; sends stay queued for
    /// `poll_send`.
    fn absorb(&mut self, now: Duration) {
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => self.events.push(MemberEvent::Up(id)),
                OwnedNotification::MemberDown(id) => {
                    self.loads.lock().forget(id.id);
                    self.events.push(MemberEvent::Down(id));
                }
                OwnedNotification::Rejoin(id) => self.events.push(MemberEvent::Rejoined(id)),
                OwnedNotification::Rename(_, _)
                | OwnedNotification::Active
                | OwnedNotification::Idle
                | OwnedNotification::Defunct => {}
            }
        }
    }
}
