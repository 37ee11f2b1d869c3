//! The seam between the sans-IO packet handlers (the router, the null forwarder) and the
//! I/O drivers that run them on worker threads.
//!
//! A handler never touches a socket, a clock or a thread: a driver hands it datagrams,
//! cross-core messages, commands and the time, and it answers by filling an [`Output`].
//! The same handler therefore runs under the io_uring driver, the recvmmsg/sendmmsg
//! fallback and the virtual-time tests.

mod egress;
mod null;
mod pool;

pub use egress::{Datagram, Egress, SLOT_LEN};
pub use null::{NullCommand, NullForwarder};
pub use pool::BytesPool;

use bytes::Bytes;
use std::net::SocketAddr;

/// Microseconds on the driver's monotonic clock (virtual time in tests).
pub type Micros = u64;

/// Identifies a worker (core) inside one node: an index into the driver's worker list.
pub type WorkerId = usize;

/// A decrypted RTP packet leaving toward another node of the cascade, once per node and
/// layer; the link driver frames it into a QUIC datagram.
#[derive(Debug, Clone)]
pub struct LinkPacket {
    pub node: u32,
    pub track: u64,
    pub layer: u8,
    /// The packet starts a keyframe: where the far node's subscribers may switch layers.
    pub keyframe: bool,
    pub packet: Bytes,
}

/// Everything a handler produced while handling one input. The driver owns it, drains it
/// after each batch and keeps its capacity, so steady-state handling allocates nothing.
#[derive(Debug)]
pub struct Output<H> {
    /// Datagrams for this worker's socket.
    pub egress: Egress,
    /// Messages for other workers of this node (their SPSC queues).
    pub handoffs: Vec<(WorkerId, H)>,
    /// Packets for other nodes.
    pub links: Vec<LinkPacket>,
}

impl<H> Default for Output<H> {
    fn default() -> Self {
        Self {
            egress: Egress::default(),
            handoffs: Vec::with_capacity(256),
            links: Vec::with_capacity(64),
        }
    }
}

impl<H> Output<H> {
    pub fn is_empty(&self) -> bool {
        self.egress.is_empty() && self.handoffs.is_empty() && self.links.is_empty()
    }

    pub fn clear(&mut self) {
        self.egress.clear();
        self.handoffs.clear();
        self.links.clear();
    }
}

/// A per-worker packet handler: the router, or the null-forwarder reference.
///
/// Drivers call it from exactly one thread; it holds the worker's sessions and keys and
/// needs no lock.
pub trait PacketHandler: Send + 'static {
    /// Control commands (add session, subscribe, ...) that arrive by channel.
    type Command: Send + 'static;
    /// Cross-core messages between workers of one node.
    type Handoff: Send + 'static;

    /// One datagram received on the media socket. `buf` is the driver's receive buffer,
    /// which the handler may decrypt and rewrite in place; it is reused after the call.
    fn handle_datagram(
        &mut self,
        now: Micros,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<Self::Handoff>,
    );

    /// A message another worker of this node produced for this one.
    fn handle_handoff(&mut self, now: Micros, msg: Self::Handoff, out: &mut Output<Self::Handoff>);

    fn handle_command(&mut self, now: Micros, cmd: Self::Command, out: &mut Output<Self::Handoff>);

    /// Timers (RTCP reports, feedback, estimates) whose deadline has passed.
    fn handle_timeout(&mut self, now: Micros, out: &mut Output<Self::Handoff>);

    /// When `handle_timeout` next wants to run; `None` for never.
    fn poll_timeout(&self) -> Option<Micros>;
}
