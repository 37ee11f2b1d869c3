use crate::engine::WorkerId;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Which I/O driver runs the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverKind {
    /// io_uring when the kernel offers it (multishot receive and buffer rings work),
    /// recvmmsg/sendmmsg otherwise, with one log line saying why.
    #[default]
    Auto,
    /// io_uring or an error.
    Uring,
    /// recvmmsg/sendmmsg with an eventfd in ppoll.
    Mmsg,
}

/// Called on each worker thread before its loop starts (after pinning): a place for
/// per-thread setup such as marking the thread for a counting allocator.
pub type OnWorkerStart = Arc<dyn Fn(WorkerId) + Send + Sync>;

/// How a node's workers are run. `Default` gives a working configuration; only `bind`
/// usually needs setting.
#[derive(Clone)]
pub struct DriverConfig {
    /// The one media port, shared by every worker (SO_REUSEPORT). Port 0 picks one.
    /// An IPv6 address (e.g. `[::]`) also serves IPv4 peers as v4-mapped addresses;
    /// handlers always see and use plain IPv4 addresses for them.
    pub bind: SocketAddr,
    /// Worker threads (one socket, one ring each).
    pub workers: usize,
    /// Worker `i` is pinned to `pin_cores[i % len]`; `None` leaves placement to the kernel.
    pub pin_cores: Option<Vec<usize>>,
    pub kind: DriverKind,
    /// Send runs of datagrams to one destination as one UDP GSO send. The batch is
    /// regrouped by destination (order per destination kept), so fan-out batches that
    /// interleave subscribers still coalesce. If the kernel refuses a GSO send the
    /// worker counts those datagrams as `tx_errors`, logs once and stops using GSO.
    /// Off by default for that reason; measured on loopback at fan-out 4 it cuts worker
    /// CPU per forwarded datagram about 3.5x (see `uring.rs`).
    pub gso: bool,
    /// Datagrams received per turn of the loop before the batch is flushed.
    pub batch: usize,
    /// io_uring: provided receive buffers per worker (a power of two, at most 32768).
    pub ring_buffers: u16,
    /// io_uring: submission queue entries (completion queue is sized from this and
    /// `ring_buffers`).
    pub sq_entries: u32,
    /// Egress datagrams preallocated per worker (the slab grows past it if a handler
    /// ever produces more in one turn, and then keeps that size).
    pub egress_capacity: usize,
    /// Capacity of each (from, to) handoff queue; a full queue is a counted drop.
    pub handoff_queue: usize,
    /// Capacity of the link-packet channel; a full one is a counted drop.
    pub link_queue: usize,
    /// SO_RCVBUF / SO_SNDBUF of each worker socket (SO_*BUFFORCE when permitted).
    pub socket_buffer: usize,
    /// io_uring: send with SendMsgZc instead of SendMsg. Measured slower for 1200-byte
    /// datagrams on loopback (see `uring.rs`); kept for NICs where it may pay off.
    pub zerocopy: bool,
    pub on_worker_start: Option<OnWorkerStart>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_cores: None,
            kind: DriverKind::Auto,
            gso: false,
            batch: 64,
            ring_buffers: 1024,
            sq_entries: 256,
            egress_capacity: 1024,
            handoff_queue: 4096,
            link_queue: 4096,
            socket_buffer: 4 << 20,
            zerocopy: false,
            on_worker_start: None,
        }
    }
}

impl fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverConfig")
            .field("bind", &self.bind)
            .field("workers", &self.workers)
            .field("pin_cores", &self.pin_cores)
            .field("kind", &self.kind)
            .field("gso", &self.gso)
            .field("batch", &self.batch)
            .field("ring_buffers", &self.ring_buffers)
            .field("sq_entries", &self.sq_entries)
            .field("egress_capacity", &self.egress_capacity)
            .field("handoff_queue", &self.handoff_queue)
            .field("link_queue", &self.link_queue)
            .field("socket_buffer", &self.socket_buffer)
            .field("zerocopy", &self.zerocopy)
            .field("on_worker_start", &self.on_worker_start.is_some())
            .finish()
    }
}
