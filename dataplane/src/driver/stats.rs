//! Per-worker counters and thread CPU time.
//!
//! Each worker is the only writer of its counters, so a bump is a plain load and store
//! (no locked read-modify-write on the packet path); readers on other threads see values
//! that are at most one batch old. Each worker's block sits on its own cache lines so two
//! workers never share one.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};

/// A snapshot of one worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Linux thread id of the worker (0 until it has started): read
    /// `/proc/self/task/<tid>/schedstat`, or call [`thread_cpu_ns`].
    pub tid: i32,
    /// Whether the worker's loop is running (false after shutdown or a fatal ring error).
    pub running: bool,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Datagrams handed to the kernel and accepted by it.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Drop: a datagram larger than a receive buffer (the kernel cut it).
    pub rx_truncated: u64,
    /// Receive errors other than truncation (counted, then the receive is re-armed).
    pub rx_errors: u64,
    /// io_uring only: the provided-buffer ring ran dry and the multishot receive was
    /// re-armed (packets wait in the socket buffer meanwhile; none are lost by this).
    pub rx_no_buffers: u64,
    /// Drop: the kernel refused a send (one per datagram of the refused send).
    pub tx_errors: u64,
    /// Drop: a datagram whose destination family the socket cannot reach (IPv6 on an
    /// IPv4 socket).
    pub tx_unroutable: u64,
    /// Sends that carried several datagrams as UDP GSO segments, and the datagrams in them.
    pub gso_sends: u64,
    pub gso_segments: u64,
    /// Cross-worker messages delivered to this worker's handler / pushed to others.
    pub handoffs_in: u64,
    pub handoffs_out: u64,
    /// Drop: the target worker's queue from this worker was full.
    pub handoff_queue_full: u64,
    /// Drop: a handoff named a worker that does not exist.
    pub handoff_bad_worker: u64,
    /// Link packets passed to the link channel / dropped (channel full or nobody reading).
    pub link_packets: u64,
    pub link_drops: u64,
    pub commands: u64,
    pub timeouts: u64,
    /// Wake-ups through the worker's eventfd (handoffs or commands from other threads).
    pub wakeups: u64,
    /// Turns of the worker loop (each turn: receive a batch, handle, flush).
    pub loops: u64,
}

#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub tid: AtomicI32,
    pub running: AtomicBool,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_truncated: AtomicU64,
    pub rx_errors: AtomicU64,
    pub rx_no_buffers: AtomicU64,
    pub tx_errors: AtomicU64,
    pub tx_unroutable: AtomicU64,
    pub gso_sends: AtomicU64,
    pub gso_segments: AtomicU64,
    pub handoffs_in: AtomicU64,
    pub handoffs_out: AtomicU64,
    pub handoff_queue_full: AtomicU64,
    pub handoff_bad_worker: AtomicU64,
    pub link_packets: AtomicU64,
    pub link_drops: AtomicU64,
    pub commands: AtomicU64,
    pub timeouts: AtomicU64,
    pub wakeups: AtomicU64,
    pub loops: AtomicU64,
}

/// Adds `n` to a counter only this thread writes.
#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            tid: self.tid.load(Relaxed),
            running: self.running.load(Relaxed),
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            rx_truncated: self.rx_truncated.load(Relaxed),
            rx_errors: self.rx_errors.load(Relaxed),
            rx_no_buffers: self.rx_no_buffers.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
            tx_unroutable: self.tx_unroutable.load(Relaxed),
            gso_sends: self.gso_sends.load(Relaxed),
            gso_segments: self.gso_segments.load(Relaxed),
            handoffs_in: self.handoffs_in.load(Relaxed),
            handoffs_out: self.handoffs_out.load(Relaxed),
            handoff_queue_full: self.handoff_queue_full.load(Relaxed),
            handoff_bad_worker: self.handoff_bad_worker.load(Relaxed),
            link_packets: self.link_packets.load(Relaxed),
            link_drops: self.link_drops.load(Relaxed),
            commands: self.commands.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            wakeups: self.wakeups.load(Relaxed),
            loops: self.loops.load(Relaxed),
        }
    }
}

/// CPU time (ns) a thread of this process has run, from `/proc/self/task/<tid>/schedstat`
/// (its first field). Works for any thread, including ones that are not ours, and keeps
/// counting after nothing else can name the thread; fails once the thread has exited.
pub fn thread_cpu_ns(tid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))?;
    text.split_ascii_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable schedstat"))
}

/// CPU time (ns) the calling thread has run (`CLOCK_THREAD_CPUTIME_ID`).
pub fn current_thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0)
}

pub(crate) fn clock_ns(clock: libc::clockid_t) -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
