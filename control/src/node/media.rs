//! The media plane as the control plane holds it: the workers behind one lock (commands
//! are rare next to packets, and each is a channel send), and a thread that carries the
//! workers' events (ICE checks, DTLS records, consent expiry) into the async world.

use sluice_dataplane::driver::DriverConfig;
use sluice_dataplane::node::{MediaNode, NodeError};
use sluice_dataplane::router::{RouterConfig, RouterEvent, RouterStats};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Events the workers may queue before the control plane reads them; beyond that they
/// are counted as dropped by the router (a stalled control plane must not stall media).
const EVENT_QUEUE: usize = 8192;

#[derive(Debug)]
pub struct Media {
    node: Mutex<MediaNode>,
    addr: SocketAddr,
    workers: usize,
}

impl Media {
    /// Starts the workers and a thread that forwards their events to `events`.
    pub fn start(
        driver: DriverConfig,
        mut router: RouterConfig,
        events: mpsc::UnboundedSender<RouterEvent>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
        router.events = Some(tx);
        let node = MediaNode::start(driver, router)?;
        std::thread::Builder::new()
            .name("sluice-events".into())
            .spawn(move || {
                // Ends when every worker (and so every sender) is gone, or the control
                // plane stopped listening.
                while let Ok(ev) = rx.recv() {
                    if events.send(ev).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            addr: node.local_addr(),
            workers: node.workers().workers(),
            node: Mutex::new(node),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The node for one command. A worker that panicked poisons nothing we rely on: the
    /// map of sessions stays consistent because every method updates it after sending.
    pub fn lock(&self) -> MutexGuard<'_, MediaNode> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn router_stats(&self) -> Vec<RouterStats> {
        self.lock().router_stats()
    }

    pub fn shutdown(self) -> Result<Vec<RouterStats>, NodeError> {
        let node = self.node.into_inner().unwrap_or_else(|p| p.into_inner());
        match node.shutdown() {
            Ok(routers) => Ok(routers.iter().map(|r| *r.stats()).collect()),
            Err(_) => Err(NodeError::WorkerGone(0)),
        }
    }
}
