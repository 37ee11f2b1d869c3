//! Loopback UDP sockets for the load generator and the sinks: large buffers, batched
//! sends and receives (sendmmsg/recvmmsg), and the kernel's drop counters.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;

/// Room for one datagram in a batch.
pub const SLOT: usize = 2048;

/// `SO_MEMINFO` (not in every libc release).
const SO_MEMINFO: libc::c_int = 55;

fn setsockopt_int(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket on 127.0.0.1 with an ephemeral port and `buf` bytes of receive and send
/// buffer (forced past `rmem_max` when running as root, as large as allowed otherwise).
pub fn bind_loopback(buf: usize) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let size = buf.min(i32::MAX as usize) as libc::c_int;
    if setsockopt_int(&sock, libc::SO_RCVBUFFORCE, size).is_err() {
        setsockopt_int(&sock, libc::SO_RCVBUF, size)?;
    }
    if setsockopt_int(&sock, libc::SO_SNDBUFFORCE, size).is_err() {
        setsockopt_int(&sock, libc::SO_SNDBUF, size)?;
    }
    Ok(sock)
}

/// Datagrams the kernel dropped at this socket (receive queue full).
pub fn socket_drops(sock: &UdpSocket) -> u64 {
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        u64::from(info[libc::SK_MEMINFO_DROPS as usize])
    } else {
        0
    }
}

/// Drops the kernel counted on every UDP socket bound to `port` (all of a node's
/// SO_REUSEPORT sockets), from `/proc/net/udp` and `/proc/net/udp6`.
pub fn port_drops(port: u16) -> u64 {
    let mut total = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                total += f.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

/// Fixed buffers for batched I/O on one socket at a time.
#[derive(Debug)]
pub struct Batch {
    bufs: Vec<u8>,
    lens: Vec<usize>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov`/`hdrs` only ever point into `bufs`, which moves with
// the batch; they are rebuilt before every system call.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(n: usize) -> Self {
        Self {
            bufs: vec![0; n * SLOT],
            lens: vec![0; n],
            iov: (0..n)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: an all-zero mmsghdr is a valid empty header.
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * SLOT..(i + 1) * SLOT]
    }

    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len;
    }

    /// Received datagram `i` (after [`Self::recv`]).
    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.lens[i];
        &mut self.bufs[i * SLOT..i * SLOT + len]
    }

    fn prepare(&mut self, n: usize, receive: bool) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: slot i lies inside `bufs` (n <= capacity).
            self.iov[i].iov_base = unsafe { base.add(i * SLOT) }.cast();
            self.iov[i].iov_len = if receive { SLOT } else { self.lens[i] };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Sends slots `0..n` (lengths from [`Self::set_len`]) on the connected socket,
    /// retrying partial sends. Returns how many went out.
    pub fn send(&mut self, sock: &UdpSocket, n: usize) -> io::Result<usize> {
        let n = n.min(self.capacity());
        self.prepare(n, false);
        let mut done = 0;
        while done < n {
            // SAFETY: headers `done..n` point at live iovecs and buffers.
            let rc = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if done > 0 {
                    return Ok(done);
                }
                return Err(e);
            }
            done += rc as usize;
        }
        Ok(done)
    }

    /// Receives what is queued on `sock` without blocking, up to the capacity; returns
    /// the count (0 when nothing was waiting).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.capacity();
        self.prepare(n, true);
        // SAFETY: every header points at a live SLOT-byte buffer.
        let rc = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = rc as usize;
        for i in 0..got {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(got)
    }
}

/// An epoll set polled without blocking: one system call says which of many sockets
/// have data.
#[derive(Debug)]
pub struct Poller {
    fd: libc::c_int,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    pub fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: plain system call.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    /// Watches `sock` for input, reporting it as `token`.
    pub fn add(&self, sock: &UdpSocket, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid event; the fd is open.
        let rc =
            unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut ev) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Tokens of the sockets with input now, without waiting.
    pub fn poll(&mut self) -> impl Iterator<Item = u64> + '_ {
        // SAFETY: `events` is writable for its length.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                0,
            )
        };
        self.events[..n.max(0) as usize].iter().map(|e| e.u64)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}
