//! The io_uring worker loop.
//!
//! One ring per worker. A multishot RecvMsg fills buffers from a provided-buffer ring;
//! a Read on the worker's eventfd stands for handoffs and commands. A turn of the loop:
//! wait (bounded by the handler's next timer), hand every ready completion (up to `batch`
//! receives) to the handler, drain mail, run timers, route handoffs and link packets,
//! then flush egress as one SQE per send, submitted together, and reap those
//! sends before the egress slab can be written again. Anything else that completes while
//! the sends are reaped waits in `deferred` for the next turn, in order.
//!
//! Sends: a single datagram goes out as IORING_OP_SEND with a destination address (no
//! msghdr for the kernel to copy in: 5-7% less worker CPU per forwarded datagram than
//! SendMsg at fan-out 4); a GSO group as SendMsg with its UDP_SEGMENT cmsg.
//!
//! SendMsg vs SendMsgZc (`DriverConfig::zerocopy`), measured with the `driver_io` test
//! `measure_send_modes` (release; 200k 1200-byte datagrams through NullForwarder, one
//! worker, bursts of 256; 2-core VM, Linux 6.18): worker CPU per forwarded datagram,
//! range of three runs, recvmmsg driver for reference:
//!
//! | fan-out | GSO | Send/SendMsg | SendMsgZc    | recvmmsg driver |
//! |---------|-----|--------------|--------------|-----------------|
//! | 1       | off | 3.46-3.73 us | 4.22-5.14 us | 3.32-3.57 us    |
//! | 1       | on  | 3.23-3.31 us | 3.30-3.34 us | 3.12-3.19 us    |
//! | 4       | off | 3.26-3.43 us | 4.09-4.18 us | 3.15-3.16 us    |
//! | 4       | on  | 0.88-1.04 us | 1.39-1.45 us | 0.87-0.89 us    |
//!
//! Nearly all of it is the kernel's loopback path (perf: the send's delivery into the
//! receiving socket and the wake-up of its reader); the driver's own code is under 1%.
//!
//! Zerocopy is never faster here: loopback copies the pages to the receiver anyway, so it
//! only adds the notification completion and page pinning, and it caps GSO sends at 8
//! segments (see `batch.rs`). SendMsg stays the default; the option stays for NICs where
//! it may pay off at larger sizes.

use super::batch::{MAX_SEGMENTS, MAX_SEGMENTS_ZEROCOPY, SendBatch};
use super::bufring::BufRing;
use super::config::DriverConfig;
use super::core::Core;
use super::sockaddr::{self, NAME_LEN};
use super::stats::bump;
use crate::engine::{Micros, PacketHandler, SLOT_LEN};
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use socket2::Socket;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const TAG: u64 = 0xF << 60;
const RECV: u64 = 1 << 60;
const WAKE: u64 = 2 << 60;
const SEND: u64 = 3 << 60;
const BGID: u16 = 0;
/// `struct io_uring_recvmsg_out`, which heads every multishot receive buffer.
const OUT_HDR: usize = 16;
/// A receive buffer: header, the peer's name, and a full egress slot of payload (so what
/// a handler receives it can always send).
pub(crate) const BUF_LEN: usize = OUT_HDR + NAME_LEN as usize + SLOT_LEN;

pub(crate) fn build_ring(sq: u32, cq: u32) -> io::Result<IoUring> {
    // A ring only its own thread uses: single issuer saves the kernel's locking, and
    // cooperative task running saves an interrupt per completion (5.19+/6.0+; older
    // kernels get a plain ring). Deferred task running (6.1) measured equal within 2%
    // (`measure_send_modes`, fan-out 1 and 4, three runs each) and asks more of the
    // loop, so it is not used.
    IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(sq)
        .or_else(|_| IoUring::builder().setup_cqsize(cq).build(sq))
}

pub(crate) struct UringIo {
    // Dropped first: the kernel lets go of the buffers below before they are unmapped.
    ring: IoUring,
    bufs: BufRing,
    recv_msg: Box<libc::msghdr>,
    wake_buf: Box<u64>,
    send: SendBatch,
    /// Completions taken off the ring but not yet handled (see the module docs).
    deferred: Vec<cqueue::Entry>,
    batch: usize,
    zerocopy: bool,
    recv_armed: bool,
    wake_armed: bool,
}

enum RecvDrop {
    Truncated,
    Malformed,
}

/// Reads a multishot receive buffer: the peer and the payload's range.
fn parse_recv(buf: &[u8]) -> Result<(SocketAddr, Range<usize>), RecvDrop> {
    let word = |i: usize| {
        buf.get(i..i + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (Some(namelen), Some(payloadlen), Some(flags)) = (word(0), word(8), word(12)) else {
        return Err(RecvDrop::Malformed);
    };
    if flags & libc::MSG_TRUNC as usize != 0 {
        return Err(RecvDrop::Truncated);
    }
    let name_end = OUT_HDR + namelen.min(NAME_LEN as usize);
    let from = buf
        .get(OUT_HDR..name_end)
        .and_then(sockaddr::read)
        .ok_or(RecvDrop::Malformed)?;
    // No control data is asked for, so the payload follows the name field directly.
    let start = OUT_HDR + NAME_LEN as usize;
    let end = (start + payloadlen).min(buf.len());
    if start > end {
        return Err(RecvDrop::Malformed);
    }
    Ok((from, start..end))
}

fn benign(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
    )
}

impl UringIo {
    pub fn new(cfg: &DriverConfig, v6_socket: bool) -> io::Result<Self> {
        let sq = cfg.sq_entries.max(8);
        let cq = (u32::from(cfg.ring_buffers) + 2 * sq).next_power_of_two();
        let ring = build_ring(sq, cq)?;
        let mut bufs = BufRing::new(cfg.ring_buffers, BUF_LEN, BGID)?;
        bufs.register(&ring.submitter())?;
        // SAFETY: all-zero is a valid msghdr; a multishot receive reads only the name
        // and control lengths from it.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = NAME_LEN;
        let batch = cfg.batch.max(1);
        Ok(Self {
            ring,
            bufs,
            recv_msg,
            wake_buf: Box::new(0),
            send: SendBatch::new(
                v6_socket,
                cfg.gso,
                if cfg.zerocopy {
                    MAX_SEGMENTS_ZEROCOPY
                } else {
                    MAX_SEGMENTS
                },
                cfg.egress_capacity,
            ),
            deferred: Vec::with_capacity(usize::from(cfg.ring_buffers) + batch + 16),
            batch,
            zerocopy: cfg.zerocopy,
            recv_armed: false,
            wake_armed: false,
        })
    }

    /// Runs the loop until the node stops (or the ring fails), then tears down.
    pub fn run<H: PacketHandler>(mut self, mut core: Core<H>, socket: Socket) -> H {
        let fd = socket.as_raw_fd();
        let wake_fd = core.shared.wakers[core.id].raw_fd();
        core.stats().running.store(true, Relaxed);
        if let Err(e) = self.turns(&mut core, fd, wake_fd) {
            tracing::error!(worker = core.id, "io_uring worker stopped: {e}");
        }
        self.teardown();
        drop(self);
        drop(socket);
        core.stats().running.store(false, Relaxed);
        core.handler
    }

    fn turns<H: PacketHandler>(
        &mut self,
        core: &mut Core<H>,
        fd: RawFd,
        wake_fd: RawFd,
    ) -> io::Result<()> {
        loop {
            // Checked before arming, so that on the way out nothing sits unsubmitted in
            // the queue, out of reach of the cancellation in `teardown`.
            if core.stopping() {
                return Ok(());
            }
            self.arm(fd, wake_fd)?;
            self.wait(core)?;
            let now = core.now();
            self.reap(core, now);
            core.mail(now);
            core.timers(now);
            core.dispatch();
            self.flush(core, fd)?;
            self.bufs.publish();
            bump(&core.stats().loops, 1);
        }
    }

    fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: callers pass entries whose pointers outlive the operation.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if benign(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn arm(&mut self, fd: RawFd, wake_fd: RawFd) -> io::Result<()> {
        if !self.recv_armed {
            let e = opcode::RecvMsgMulti::new(Fd(fd), &*self.recv_msg, BGID)
                .build()
                .user_data(RECV);
            self.push(&e)?;
            self.recv_armed = true;
        }
        if !self.wake_armed {
            let e = opcode::Read::new(Fd(wake_fd), (&mut *self.wake_buf as *mut u64).cast(), 8)
                .build()
                .user_data(WAKE);
            self.push(&e)?;
            self.wake_armed = true;
        }
        Ok(())
    }

    /// Submits what is queued and, with nothing else to do, sleeps until a completion or
    /// the handler's next deadline.
    fn wait<H: PacketHandler>(&mut self, core: &Core<H>) -> io::Result<()> {
        let busy = !self.deferred.is_empty() || !core.idle() || !self.ring.completion().is_empty();
        let deadline: Option<Micros> = core.deadline();
        let res = if busy {
            self.ring.submit()
        } else {
            match deadline {
                None => self.ring.submit_and_wait(1),
                Some(d) => {
                    let now = core.now();
                    if d <= now {
                        self.ring.submit()
                    } else {
                        let us = d - now;
                        let ts = Timespec::new()
                            .sec(us / 1_000_000)
                            .nsec((us % 1_000_000) as u32 * 1000);
                        let args = SubmitArgs::new().timespec(&ts);
                        self.ring.submitter().submit_with_args(1, &args)
                    }
                }
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) if benign(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reap<H: PacketHandler>(&mut self, core: &mut Core<H>, now: Micros) {
        let room = self.batch.saturating_sub(self.deferred.len());
        if room > 0 {
            self.deferred.extend(self.ring.completion().take(room));
        }
        for i in 0..self.deferred.len() {
            let cqe = self.deferred[i].clone();
            self.on_cqe(core, now, &cqe);
        }
        self.deferred.clear();
    }

    fn on_cqe<H: PacketHandler>(&mut self, core: &mut Core<H>, now: Micros, cqe: &cqueue::Entry) {
        match cqe.user_data() & TAG {
            RECV => {
                let flags = cqe.flags();
                if !cqueue::more(flags) {
                    // The multishot receive ended (buffers ran out, or the kernel chose
                    // to): `arm` starts another after this turn's buffers are back.
                    self.recv_armed = false;
                }
                let res = cqe.result();
                if res < 0 {
                    let c = core.stats();
                    match -res {
                        libc::ENOBUFS => bump(&c.rx_no_buffers, 1),
                        libc::ECANCELED => {}
                        _ => bump(&c.rx_errors, 1),
                    }
                    return;
                }
                let Some(bid) = cqueue::buffer_select(flags) else {
                    bump(&core.stats().rx_errors, 1);
                    return;
                };
                let len = (res as usize).min(self.bufs.buf_len());
                let buf = self.bufs.get(bid, len);
                match parse_recv(buf) {
                    Ok((from, range)) => core.datagram(now, from, &mut buf[range]),
                    Err(RecvDrop::Truncated) => bump(&core.stats().rx_truncated, 1),
                    Err(RecvDrop::Malformed) => bump(&core.stats().rx_errors, 1),
                }
                self.bufs.recycle(bid);
            }
            WAKE => {
                self.wake_armed = false;
                core.woken();
            }
            // Send completions are all reaped inside `flush`.
            _ => {}
        }
    }

    /// Sends this turn's egress and waits until the kernel is done with the slab.
    fn flush<H: PacketHandler>(&mut self, core: &mut Core<H>, fd: RawFd) -> io::Result<()> {
        if core.out.egress.is_empty() {
            return Ok(());
        }
        let stats = &core.shared.stats[core.id];
        let n = self.send.build(&core.out.egress, stats);
        let (mut next, mut inflight) = (0usize, 0usize);
        let mut progressed = true;
        while next < n || inflight > 0 {
            {
                let mut sq = self.ring.submission();
                while next < n {
                    let msg = self.send.msg(next);
                    // SAFETY: built by `send.build` above.
                    let h = unsafe { &*msg };
                    let e = if self.zerocopy {
                        opcode::SendMsgZc::new(Fd(fd), msg).build()
                    } else if h.msg_iovlen == 1 && h.msg_controllen == 0 {
                        // SAFETY: one iovec, built above.
                        let iov = unsafe { &*h.msg_iov };
                        opcode::Send::new(Fd(fd), iov.iov_base.cast(), iov.iov_len as u32)
                            .dest_addr(h.msg_name.cast())
                            .dest_addr_len(h.msg_namelen)
                            .build()
                    } else {
                        opcode::SendMsg::new(Fd(fd), msg).build()
                    }
                    .user_data(SEND | next as u64);
                    // SAFETY: the msghdr, its iovecs, address and control data, and the
                    // egress slab they point into stay untouched until this send's
                    // completion is reaped below.
                    if unsafe { sq.push(&e) }.is_err() {
                        break;
                    }
                    next += 1;
                    inflight += 1;
                }
            }
            // UDP sends normally complete inside the submit; only stragglers (a full
            // socket buffer) are waited for.
            match self.ring.submit_and_wait(if progressed { 0 } else { 1 }) {
                Ok(_) => {}
                Err(e) if benign(&e) => {}
                Err(e) => return Err(e),
            }
            progressed = false;
            for cqe in self.ring.completion() {
                let ud = cqe.user_data();
                if ud & TAG != SEND {
                    self.deferred.push(cqe);
                    continue;
                }
                progressed = true;
                let flags = cqe.flags();
                if cqueue::notif(flags) {
                    // Zerocopy: the kernel no longer reads the slab for this send.
                    inflight -= 1;
                    continue;
                }
                self.send
                    .complete((ud & !TAG) as usize, cqe.result(), stats);
                if !cqueue::more(flags) {
                    inflight -= 1;
                }
            }
        }
        core.out.egress.clear();
        Ok(())
    }

    /// Cancels the receive and the eventfd read and waits for their last completions, so
    /// the kernel stops writing into our buffers and lets go of the socket before they go.
    /// A cancelled request can finish as task work that runs only when this thread next
    /// enters the ring; until then it holds the socket open, and the port would stay
    /// bound for a moment after `shutdown` returned.
    fn teardown(&mut self) {
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(Some(Timespec::new().sec(1)), CancelBuilder::any());
        let last = |armed: &mut (bool, bool), cqe: &cqueue::Entry| match cqe.user_data() & TAG {
            RECV if !cqueue::more(cqe.flags()) => armed.0 = false,
            WAKE => armed.1 = false,
            _ => {}
        };
        let mut armed = (self.recv_armed, self.wake_armed);
        // Completions set aside by the last flush count too.
        for cqe in self.deferred.drain(..) {
            last(&mut armed, &cqe);
        }
        let give_up = Instant::now() + Duration::from_secs(1);
        while (armed.0 || armed.1) && Instant::now() < give_up {
            let ts = Timespec::new().nsec(10_000_000);
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            for cqe in self.ring.completion() {
                last(&mut armed, &cqe);
            }
        }
        (self.recv_armed, self.wake_armed) = armed;
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}
