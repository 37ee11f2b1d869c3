//! Graceful drain: the node stops taking sessions (placement sends new POSTs to other
//! nodes, and gossip tells them this one is draining), tells connected clients to move
//! (a `move` event on every room's event stream), and is done when the last session is
//! gone or the deadline passes, whichever is first. A drain can be called off until then.

use super::Shared;
use crate::rooms::{MoveTo, RoomEvent};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a waiter looks at the session count.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct DrainState {
    deadline: Mutex<Option<Instant>>,
}

impl DrainState {
    fn get(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `GET /drain` and the drain calls answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrainStatus {
    pub draining: bool,
    /// Seconds left before the node stops regardless.
    pub deadline_secs: Option<f64>,
    pub sessions: usize,
    /// Where clients are sent.
    pub move_to: Option<String>,
}

impl Shared {
    pub fn draining(&self) -> bool {
        self.drain.get().is_some()
    }

    /// Starts draining with `within` to go (a drain already under way keeps the sooner
    /// deadline) and tells every connected client where to move.
    pub fn start_drain(&self, within: Duration) -> DrainStatus {
        {
            let mut d = self
                .drain
                .deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let proposed = Instant::now() + within;
            *d = Some(d.map_or(proposed, |t| t.min(proposed)));
        }
        let target = self.move_target();
        tracing::info!(within = ?within, sessions = self.session_count(), move_to = ?target.url, "draining");
        self.rooms().broadcast(&RoomEvent::Move(target));
        self.drain_status()
    }

    /// Returns the node to service.
    pub fn cancel_drain(&self) -> DrainStatus {
        let was = self
            .drain
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if was.is_some() {
            tracing::info!("drain called off; taking sessions again");
        }
        self.drain_status()
    }

    pub fn drain_status(&self) -> DrainStatus {
        let deadline = self.drain.get();
        DrainStatus {
            draining: deadline.is_some(),
            deadline_secs: deadline
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64()),
            sessions: self.session_count(),
            move_to: deadline.and_then(|_| self.move_target().url),
        }
    }

    /// Where this node's clients should go: the best other node for a client of no
    /// particular region.
    pub fn move_target(&self) -> MoveTo {
        let this = self.node_name();
        let url = self
            .placement_ranking(None)
            .into_iter()
            .find(|s| s.node != this)
            .map(|s| s.http);
        MoveTo { node: this, url }
    }

    /// Resolves once a drain is under way and the node is empty or out of time.
    pub async fn drained(&self) {
        loop {
            if let Some(deadline) = self.drain.get() {
                let now = Instant::now();
                if self.session_count() == 0 || now >= deadline {
                    tracing::info!(left_behind = self.session_count(), "drain complete");
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
