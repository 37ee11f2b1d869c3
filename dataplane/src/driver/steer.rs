//! One UDP port for all workers, and which worker a peer lands on.
//!
//! Every worker binds its own socket to the shared port with SO_REUSEPORT. Left alone the
//! kernel would spread peers by its own (unknowable) flow hash, so a classic-BPF program
//! attached to the reuseport group picks the socket instead, from the peer's source
//! address and port. [`worker_for`] is the same function in Rust: the control plane can
//! place a session on the worker that will receive its packets before the first one
//! arrives.
//!
//! The kernel numbers a group's sockets in bind order, which is worker order here. The
//! program sees the packet with `data` at the UDP payload, so addresses and the source
//! port are read relative to the network header (`SKF_NET_OFF`). IPv6 packets with
//! extension headers before UDP would be steered by the wrong port bytes; they do not
//! occur for media. A socket of another process (same user) that joins the group later
//! sits past index `workers - 1`, where the program never sends anything.

use super::config::DriverConfig;
use crate::engine::WorkerId;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Fibonacci hashing constant (2^32 / golden ratio): multiplying spreads the low bits
/// (loopback clients differ only in port) into the high ones that are kept.
const MIX: u32 = 0x9E37_79B1;

/// The worker whose socket the kernel delivers `remote`'s datagrams to, for a node of
/// `workers` workers. Identical to the BPF program below.
pub fn worker_for(remote: SocketAddr, workers: usize) -> WorkerId {
    if workers <= 1 {
        return 0;
    }
    let word = match remote.ip().to_canonical() {
        IpAddr::V4(ip) => u32::from_be_bytes(ip.octets()),
        IpAddr::V6(ip) => {
            let o = ip.octets();
            (0..4).fold(0, |acc, i| {
                acc ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    };
    let hash = (word ^ u32::from(remote.port())).wrapping_mul(MIX) >> 16;
    (hash % workers as u32) as usize
}

/// The reuseport program for `workers` sockets (`workers` >= 2).
fn program(workers: u32) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD,
        BPF_LDX, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_RET, BPF_RSH, BPF_ST, BPF_TAX,
        BPF_W, BPF_X, BPF_XOR,
    };
    let net = libc::SKF_NET_OFF as u32;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld_w = |off: u32| op(BPF_LD | BPF_W | BPF_ABS, 0, 0, net.wrapping_add(off));
    let v6_words = [8u32, 12, 16, 20];
    let mut p = vec![
        // A = IP version.
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, net),
        op(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4),
        // IPv6 -> skip the 5 IPv4 instructions.
        op(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, 6),
        // IPv4: M[0] = source address; A = source port, after the header of IHL words.
        ld_w(12),
        op(BPF_ST, 0, 0, 0),
        op(BPF_LDX | BPF_B | BPF_MSH, 0, 0, net),
        op(BPF_LD | BPF_H | BPF_IND, 0, 0, net),
        // Jump over the IPv6 block (12 instructions).
        op(BPF_JMP | BPF_JA, 0, 0, 12),
    ];
    // IPv6: M[0] = xor of the four source address words; A = source port at 40.
    p.push(ld_w(v6_words[0]));
    for &w in &v6_words[1..] {
        p.push(op(BPF_MISC | BPF_TAX, 0, 0, 0));
        p.push(ld_w(w));
        p.push(op(BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0));
    }
    p.push(op(BPF_ST, 0, 0, 0));
    p.push(op(BPF_LD | BPF_H | BPF_ABS, 0, 0, net + 40));
    // A = ((addr ^ port) * MIX >> 16) % workers.
    p.extend([
        op(BPF_LDX | BPF_MEM, 0, 0, 0),
        op(BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0),
        op(BPF_ALU | BPF_MUL | BPF_K, 0, 0, MIX),
        op(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 16),
        op(BPF_ALU | BPF_MOD | BPF_K, 0, 0, workers),
        op(BPF_RET | BPF_A, 0, 0, 0),
    ]);
    p
}

fn attach(socket: &Socket, workers: u32) -> io::Result<()> {
    let mut filter = program(workers);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds one socket per worker to one port and installs the steering program.
///
/// A group whose program cannot be attached is an error, not a silent fallback: without
/// it `worker_for` would be wrong for most peers and every session would pay a handoff.
pub(crate) fn bind_group(cfg: &DriverConfig) -> io::Result<(Vec<Socket>, SocketAddr)> {
    let n = cfg.workers.max(1);
    let mut addr = cfg.bind;
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // An ephemeral port (port 0) is picked by the first socket *before* it allows
        // reuse: the kernel's port-0 search does not count a same-user SO_REUSEPORT
        // socket as taking a port, so a reusing first socket could land in another
        // process's group. Allowing reuse after the bind lets ours join it.
        let ephemeral_first = i == 0 && addr.port() == 0;
        if !ephemeral_first {
            s.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            // Serve IPv4 peers too when bound to [::] (the distribution default, made
            // explicit).
            let _ = s.set_only_v6(false);
        }
        let got = set_buffers(&s, cfg.socket_buffer);
        if i == 0 {
            report_buffers(cfg.socket_buffer, got);
        }
        s.bind(&addr.into())?;
        if ephemeral_first {
            s.set_reuse_port(true)?;
        }
        // Later sockets join the port the first one got.
        addr = s
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no inet address"))?;
        sockets.push(s);
    }
    if n > 1 {
        attach(&sockets[0], n as u32).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("attaching the SO_REUSEPORT steering program failed: {e}"),
            )
        })?;
    }
    Ok((sockets, addr))
}

/// Receive and send buffer sizes a socket actually got, in bytes of payload it can hold
/// (half of what the kernel reports: it doubles the request to cover its bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferSizes {
    pub rcv: usize,
    pub snd: usize,
}

/// The kernel doubles a requested size in an int, so it grants at most this.
const MAX_BUFFER: usize = i32::MAX as usize / 2;

/// Asks for `bytes` of receive and send buffer and returns what the kernel granted
/// (0 where it cannot be read back).
fn set_buffers(s: &Socket, bytes: usize) -> BufferSizes {
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    let val = bytes.min(MAX_BUFFER) as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        // FORCE passes rmem_max/wmem_max with CAP_NET_ADMIN; otherwise the capped plain
        // option is the best there is.
        for opt in [force, plain] {
            // SAFETY: `val` is a c_int for the duration of the call.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&val as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
    BufferSizes {
        rcv: s.recv_buffer_size().map_or(0, |b| b / 2),
        snd: s.send_buffer_size().map_or(0, |b| b / 2),
    }
}

/// The kernel caps plain SO_RCVBUF silently at net.core.rmem_max (208 KiB on stock
/// kernels), so a node short of the buffer it was configured with says so once, at start,
/// rather than dropping bursts without a trace.
fn report_buffers(asked: usize, got: BufferSizes) {
    let asked = asked.min(MAX_BUFFER);
    if got.rcv >= asked && got.snd >= asked {
        tracing::info!(
            rcvbuf = got.rcv,
            sndbuf = got.snd,
            "media socket buffers as configured (media.socket_buffer)"
        );
    } else {
        tracing::warn!(
            rcvbuf = got.rcv,
            sndbuf = got.snd,
            asked,
            "media socket buffers capped below media.socket_buffer: raise \
             net.core.rmem_max and net.core.wmem_max (docs/deploy/sysctl.conf) or grant \
             CAP_NET_ADMIN; see docs/tuning.md#socket-buffers"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_buffer_the_kernel_granted() {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        let small = set_buffers(&s, 64 * 1024);
        // Granted sizes are what the socket now reports, so a later cap shows through.
        assert_eq!(small.rcv, s.recv_buffer_size().unwrap() / 2);
        assert_eq!(small.snd, s.send_buffer_size().unwrap() / 2);
        // 64 KiB is under every stock rmem_max/wmem_max, so it is granted in full.
        assert_eq!(
            small,
            BufferSizes {
                rcv: 64 * 1024,
                snd: 64 * 1024
            }
        );
        let capped = set_buffers(&s, usize::MAX);
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Either forced to the full size (CAP_NET_ADMIN) or capped at rmem_max, never
        // something in between that the report would misstate.
        assert!(
            capped.rcv == MAX_BUFFER || capped.rcv == rmem_max,
            "{capped:?}, rmem_max {rmem_max}"
        );
    }

    #[test]
    fn spreads_loopback_ports() {
        let mut seen = [0usize; 4];
        for port in 40000..40400u16 {
            seen[worker_for(SocketAddr::from(([127, 0, 0, 1], port)), 4)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40001".parse().unwrap();
        assert_eq!(
            worker_for(mapped, 4),
            worker_for(SocketAddr::from(([127, 0, 0, 1], 40001)), 4)
        );
        assert_eq!(worker_for(mapped, 1), 0);
    }

    #[test]
    fn program_jumps_land_where_meant() {
        let p = program(3);
        // jeq at 2 skips 5 to the IPv6 block at 8; ja at 7 skips 12 to the tail at 20.
        assert_eq!(p[2].jt, 5);
        assert_eq!(p[8].k, libc::SKF_NET_OFF as u32 + 8);
        assert_eq!(p[7].k, 12);
        assert_eq!(p[20].code as u32, libc::BPF_LDX | libc::BPF_MEM);
        assert_eq!(p.len(), 26);
    }
}
