//! The fallback worker loop: recvmmsg/sendmmsg, sleeping in ppoll on the socket and the
//! worker's eventfd. Same turn as the io_uring loop: receive a batch, drain mail, run
//! timers, route handoffs and link packets, flush egress.
//!
//! The socket stays blocking (receives pass MSG_DONTWAIT); a send into a full socket
//! buffer waits for room exactly as an io_uring SendMsg would.

use super::batch::{MAX_SEGMENTS, SendBatch};
use super::config::DriverConfig;
use super::core::Core;
use super::sockaddr::{self, NAME_LEN, RawAddr};
use super::stats::bump;
use crate::engine::{PacketHandler, SLOT_LEN};
use socket2::Socket;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;

/// UIO_MAXIOV: the most messages one sendmmsg takes.
const MAX_MMSG: usize = 1024;

pub(crate) struct MmsgIo {
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    names: Vec<RawAddr>,
    msgs: Vec<libc::mmsghdr>,
    send: SendBatch,
    batch: usize,
}

impl MmsgIo {
    pub fn new(cfg: &DriverConfig, v6_socket: bool) -> Self {
        let batch = cfg.batch.max(1);
        let mut io = Self {
            bufs: vec![0; batch * SLOT_LEN],
            iovs: Vec::with_capacity(batch),
            names: vec![RawAddr::default(); batch],
            // SAFETY: all-zero is a valid mmsghdr.
            msgs: vec![unsafe { std::mem::zeroed() }; batch],
            send: SendBatch::new(v6_socket, cfg.gso, MAX_SEGMENTS, cfg.egress_capacity),
            batch,
        };
        for i in 0..batch {
            io.iovs.push(libc::iovec {
                iov_base: io.bufs[i * SLOT_LEN..].as_mut_ptr().cast(),
                iov_len: SLOT_LEN,
            });
        }
        // The vectors never grow again, so these pointers stay valid.
        for i in 0..batch {
            let h = &mut io.msgs[i].msg_hdr;
            h.msg_name = io.names[i].as_ptr();
            h.msg_iov = &mut io.iovs[i];
            h.msg_iovlen = 1;
        }
        io
    }

    pub fn run<H: PacketHandler>(mut self, mut core: Core<H>, socket: Socket) -> H {
        let fd = socket.as_raw_fd();
        let wake_fd = core.shared.wakers[core.id].raw_fd();
        core.stats().running.store(true, Relaxed);
        if let Err(e) = self.turns(&mut core, fd, wake_fd) {
            tracing::error!(worker = core.id, "recvmmsg worker stopped: {e}");
        }
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
            if core.stopping() {
                return Ok(());
            }
            let now = core.now();
            let got = self.receive(core, fd, now);
            core.mail(now);
            core.timers(now);
            core.dispatch();
            self.flush(core, fd)?;
            bump(&core.stats().loops, 1);
            if got == self.batch || !core.idle() {
                // More is probably waiting; look again before sleeping.
                continue;
            }
            self.sleep(core, fd, wake_fd)?;
        }
    }

    fn receive<H: PacketHandler>(&mut self, core: &mut Core<H>, fd: RawFd, now: u64) -> usize {
        for m in &mut self.msgs {
            m.msg_hdr.msg_namelen = NAME_LEN;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: `msgs` describes `batch` live buffers and names (see `new`).
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                bump(&core.stats().rx_errors, 1);
            }
            return 0;
        }
        let got = rc as usize;
        for i in 0..got {
            let m = &self.msgs[i];
            let len = (m.msg_len as usize).min(SLOT_LEN);
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                bump(&core.stats().rx_truncated, 1);
                continue;
            }
            let namelen = (m.msg_hdr.msg_namelen as usize).min(NAME_LEN as usize);
            // SAFETY: `names[i]` is NAME_LEN bytes, `namelen` of them written by the kernel.
            let name =
                unsafe { std::slice::from_raw_parts(self.names[i].as_ptr().cast::<u8>(), namelen) };
            let Some(from) = sockaddr::read(name) else {
                bump(&core.stats().rx_errors, 1);
                continue;
            };
            core.datagram(now, from, &mut self.bufs[i * SLOT_LEN..i * SLOT_LEN + len]);
        }
        got
    }

    fn flush<H: PacketHandler>(&mut self, core: &mut Core<H>, fd: RawFd) -> io::Result<()> {
        if core.out.egress.is_empty() {
            return Ok(());
        }
        let stats = &core.shared.stats[core.id];
        let n = self.send.build(&core.out.egress, stats);
        let mut k = 0;
        while k < n {
            let chunk = self.send.mmsgs_from(k);
            let len = chunk.len().min(MAX_MMSG);
            // SAFETY: the msghdrs were built for the egress slab, untouched until we return.
            let rc = unsafe { libc::sendmmsg(fd, chunk.as_mut_ptr(), len as libc::c_uint, 0) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(errno) => {
                        // Message k was refused: count it and carry on with the rest.
                        self.send.complete(k, -errno, stats);
                        k += 1;
                    }
                    None => return Err(e),
                }
                continue;
            }
            let sent = rc as usize;
            for j in k..k + sent {
                let bytes = self.send.mmsgs_from(j)[0].msg_len as i32;
                self.send.complete(j, bytes, stats);
            }
            k += sent;
        }
        core.out.egress.clear();
        Ok(())
    }

    fn sleep<H: PacketHandler>(
        &mut self,
        core: &mut Core<H>,
        fd: RawFd,
        wake_fd: RawFd,
    ) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts;
        let timeout = match core.deadline() {
            None => std::ptr::null(),
            Some(d) => {
                let us = d.saturating_sub(core.now());
                ts = libc::timespec {
                    tv_sec: (us / 1_000_000) as libc::time_t,
                    tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
                };
                &ts as *const libc::timespec
            }
        };
        // SAFETY: two live pollfds; `timeout` is null or points at `ts`.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, timeout, std::ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        if fds[1].revents & libc::POLLIN != 0 {
            let mut count = 0u64;
            // SAFETY: reads 8 bytes into a live u64; ppoll said the eventfd is readable
            // and only this thread reads it, so this does not block.
            unsafe { libc::read(wake_fd, (&mut count as *mut u64).cast(), 8) };
            core.woken();
        }
        Ok(())
    }
}
