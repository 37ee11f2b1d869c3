//! What the workers of one node share: their wake-up eventfds, the handoff queues between
//! them, their counters, the link channel and the clock.

use super::stats::Counters;
use crate::engine::{LinkPacket, Micros, WorkerId};
use crossbeam_channel::Sender;
use crossbeam_queue::ArrayQueue;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Instant;

/// Wakes a worker blocked in its ring or ppoll.
///
/// `pending` coalesces wake-ups: only the first waker after the worker last consumed the
/// eventfd pays the write syscall. The worker clears `pending` after consuming the
/// eventfd and before draining its queues, so a push that misses the drain always finds
/// `pending` clear and writes.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // Blocking on purpose: io_uring answers a read of an O_NONBLOCK file with EAGAIN
        // instead of waiting for it, and the fallback only reads after ppoll said so.
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pending: AtomicBool::new(false),
        })
    }

    pub fn wake(&self) {
        if !self.pending.swap(true, SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64. An eventfd write only fails when the
            // counter would overflow, and then the worker is awake anyway.
            let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// The worker consumed the eventfd: the next `wake` must write again.
    pub fn consumed(&self) {
        self.pending.store(false, SeqCst);
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[derive(Debug)]
pub(crate) struct Shared<M> {
    pub workers: usize,
    pub stop: AtomicBool,
    epoch: Instant,
    pub wakers: Vec<Waker>,
    /// `queues[to * workers + from]`: one single-producer single-consumer queue per
    /// ordered pair, so no two threads ever contend on one.
    queues: Vec<ArrayQueue<M>>,
    pub stats: Vec<Counters>,
    pub links: Sender<LinkPacket>,
    /// Set once someone asked for the link receiver; until then link packets are dropped
    /// (counted) instead of filling a channel nobody reads.
    pub links_wanted: AtomicBool,
}

impl<M> Shared<M> {
    pub fn new(wakers: Vec<Waker>, queue_capacity: usize, links: Sender<LinkPacket>) -> Self {
        let n = wakers.len();
        Self {
            workers: n,
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
            wakers,
            queues: (0..n * n)
                .map(|_| ArrayQueue::new(queue_capacity.max(1)))
                .collect(),
            stats: (0..n).map(|_| Counters::default()).collect(),
            links,
            links_wanted: AtomicBool::new(false),
        }
    }

    pub fn queue(&self, from: WorkerId, to: WorkerId) -> &ArrayQueue<M> {
        &self.queues[to * self.workers + from]
    }

    /// Microseconds since the node started, on the monotonic clock all workers share.
    pub fn now(&self) -> Micros {
        self.epoch.elapsed().as_micros() as Micros
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(SeqCst)
    }
}
