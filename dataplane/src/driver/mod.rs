//! I/O drivers: run any [`PacketHandler`](crate::engine::PacketHandler) on worker threads
//! that share one UDP port.
//!
//! - One thread per worker, optionally pinned, each with its own SO_REUSEPORT socket; a
//!   classic-BPF program steers each peer to the worker [`worker_for`] names (`steer`).
//! - io_uring (`uring`): multishot RecvMsg into a provided-buffer ring, SendMsg SQEs per
//!   flush, an eventfd read for wake-ups, timers as the wait's timeout. Fallback (`mmsg`):
//!   recvmmsg/sendmmsg and ppoll. [`DriverKind::Auto`] probes io_uring once (`probe`)
//!   and logs why when it falls back.
//! - Handoffs between workers ride one bounded SPSC queue per (from, to) pair and wake
//!   the target's eventfd once per turn; commands ride a channel per worker and wake it
//!   too; link packets go to one bounded channel (`Workers::links`). Full means a counted
//!   drop, never a wait.
//! - The steady-state loop allocates nothing: receive buffers, the egress slab, msghdrs,
//!   iovecs and completion scratch are sized at start and only grow when a turn is larger
//!   than any before. `DriverConfig::on_worker_start` lets a test mark worker threads for
//!   a counting allocator (see `tests/driver_zero_alloc.rs`).

mod affinity;
mod batch;
mod bufring;
mod config;
mod core;
mod mmsg;
mod probe;
mod shared;
mod sockaddr;
mod stats;
mod steer;
mod uring;
mod workers;

pub use affinity::allowed_cores;
pub use config::{DriverConfig, DriverKind, OnWorkerStart};
pub use probe::probe_uring;
pub use stats::{WorkerStats, current_thread_cpu_ns, thread_cpu_ns};
pub use steer::worker_for;
pub use workers::{ActiveDriver, Workers};
