//! Turns an [`Egress`] batch into msghdrs, one per send, for `sendmmsg` or io_uring
//! SendMsg SQEs alike.
//!
//! With GSO on, datagrams to one destination are gathered into one send with a
//! `UDP_SEGMENT` control message: all of the same length except a shorter last one, at
//! most 64 and 65507 bytes. Gathering looks across the whole batch, not only at
//! neighbours, because a fan-out handler interleaves subscribers (A1 B1 A2 B2 ...): the
//! groups come out as A1A2 B1B2. A destination's datagrams keep their order: a group is
//! closed before its destination gets a new one, and sends go out in group order.
//!
//! All storage is kept between batches and only grows, and every pointer is written after
//! the last resize, so the msghdrs stay valid until the next `build`.

use super::sockaddr::RawAddr;
use super::stats::{Counters, bump};
use crate::engine::{Egress, SLOT_LEN};
use std::mem::size_of;
use std::net::SocketAddr;

/// The kernel's UDP_MAX_SEGMENTS.
pub(crate) const MAX_SEGMENTS: u32 = 64;
/// With zerocopy every page a send touches becomes one skb fragment, and a send may have
/// at most MAX_SKB_FRAGS (17 by default) of them, or it fails with EMSGSIZE (measured: a
/// 54-segment zerocopy GSO send of 1200-byte slots did). A 2048-byte slot touches at
/// most two pages, so 8 segments stay within 16.
pub(crate) const MAX_SEGMENTS_ZEROCOPY: u32 = 8;
/// Largest UDP payload of one IPv4 packet, the bound on a whole GSO send.
const MAX_GSO_BYTES: u32 = 65_507;
const UDP_SEGMENT: libc::c_int = 103;
const SKIP: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Group {
    dest: SocketAddr,
    seg: u16,
    count: u32,
    bytes: u32,
    open: bool,
    /// Index of the group's first iovec, then (while filling) of its next one.
    iov: u32,
}

/// Room for one cmsghdr carrying a u16, 8-byte aligned as CMSG_* expect.
#[derive(Clone, Copy, Default)]
#[repr(C, align(8))]
struct Cmsg([u8; 32]);

/// `CMSG_SPACE(sizeof(u16))` and `CMSG_LEN(sizeof(u16))` on 64-bit Linux.
const CMSG_HDR: usize = size_of::<libc::cmsghdr>();
const CMSG_SPACE_U16: usize = CMSG_HDR + 8;
const CMSG_LEN_U16: usize = CMSG_HDR + 2;

pub(crate) struct SendBatch {
    v6_socket: bool,
    gso: bool,
    max_segments: u32,
    groups: Vec<Group>,
    group_of: Vec<u32>,
    /// Open-addressing map destination -> group, valid where the stamp equals `stamp`
    /// (bumping the stamp empties it without a pass over the table).
    table: Vec<(u32, u32)>,
    stamp: u32,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    cmsgs: Vec<Cmsg>,
    msgs: Vec<libc::mmsghdr>,
    built: usize,
    gso_failed_logged: bool,
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: a C struct of integers and nullable pointers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn dest_hash(d: &SocketAddr) -> u32 {
    let w = match d {
        SocketAddr::V4(a) => u32::from_ne_bytes(a.ip().octets()),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            (0..4).fold(0, |h, i| {
                h ^ u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    };
    (w ^ u32::from(d.port())).wrapping_mul(0x9E37_79B1)
}

impl SendBatch {
    pub fn new(v6_socket: bool, gso: bool, max_segments: u32, capacity: usize) -> Self {
        let mut b = Self {
            v6_socket,
            gso,
            max_segments: max_segments.clamp(1, MAX_SEGMENTS),
            groups: Vec::new(),
            group_of: Vec::new(),
            table: Vec::new(),
            stamp: 0,
            iovs: Vec::new(),
            addrs: Vec::new(),
            cmsgs: Vec::new(),
            msgs: Vec::new(),
            built: 0,
            gso_failed_logged: false,
        };
        b.reserve(capacity.max(1));
        b
    }

    fn reserve(&mut self, n: usize) {
        if self.msgs.len() >= n {
            return;
        }
        let dummy = Group {
            dest: SocketAddr::from(([0, 0, 0, 0], 0)),
            seg: 0,
            count: 0,
            bytes: 0,
            open: false,
            iov: 0,
        };
        self.groups.resize(n, dummy);
        self.group_of.resize(n, SKIP);
        self.iovs.resize(
            n,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        self.addrs.resize(n, RawAddr::default());
        self.cmsgs.resize(n, Cmsg::default());
        self.msgs.resize(n, zeroed_mmsghdr());
        // Load factor at most 1/2.
        let slots = (2 * n).next_power_of_two().max(16);
        self.table.clear();
        self.table.resize(slots, (0, 0));
        self.stamp = 0;
    }

    /// Builds one msghdr per send for `egress`; returns how many.
    pub fn build(&mut self, egress: &Egress, stats: &Counters) -> usize {
        let n = egress.len();
        self.reserve(n);
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.table.fill((0, 0));
            self.stamp = 1;
        }
        let mask = self.table.len() - 1;
        let mut groups = 0usize;
        let mut unroutable = 0u64;
        for (i, d) in egress.datagrams().iter().enumerate() {
            if d.dest.is_ipv6() && !self.v6_socket {
                self.group_of[i] = SKIP;
                unroutable += 1;
                continue;
            }
            let len = u32::from(d.len);
            if self.gso {
                let mut slot = dest_hash(&d.dest) as usize & mask;
                while self.table[slot].0 == self.stamp
                    && self.groups[self.table[slot].1 as usize].dest != d.dest
                {
                    slot = (slot + 1) & mask;
                }
                if self.table[slot].0 == self.stamp {
                    let g = &mut self.groups[self.table[slot].1 as usize];
                    if g.open
                        && len > 0
                        && len <= u32::from(g.seg)
                        && g.bytes + len <= MAX_GSO_BYTES
                    {
                        g.count += 1;
                        g.bytes += len;
                        // A shorter segment ends a GSO send; so do the kernel's limits.
                        g.open = len == u32::from(g.seg)
                            && g.count < self.max_segments
                            && g.bytes + len <= MAX_GSO_BYTES;
                        self.group_of[i] = self.table[slot].1;
                        continue;
                    }
                }
                self.table[slot] = (self.stamp, groups as u32);
            }
            self.groups[groups] = Group {
                dest: d.dest,
                seg: d.len,
                count: 1,
                bytes: len,
                open: self.gso && len > 0 && self.max_segments > 1,
                iov: 0,
            };
            self.group_of[i] = groups as u32;
            groups += 1;
        }
        bump(&stats.tx_unroutable, unroutable);

        // Lay each group's iovecs out contiguously, in datagram order.
        let mut next = 0u32;
        for g in &mut self.groups[..groups] {
            g.iov = next;
            next += g.count;
        }
        let base = egress.slab_ptr();
        for (i, d) in egress.datagrams().iter().enumerate() {
            let g = self.group_of[i];
            if g == SKIP {
                continue;
            }
            let g = &mut self.groups[g as usize];
            self.iovs[g.iov as usize] = libc::iovec {
                // SAFETY (of later use): slot `i` lies inside the slab, which the driver
                // leaves untouched until the sends complete.
                iov_base: base.wrapping_add(i * SLOT_LEN) as *mut libc::c_void,
                iov_len: usize::from(d.len),
            };
            g.iov += 1;
        }

        for (k, g) in self.groups[..groups].iter().enumerate() {
            let first = (g.iov - g.count) as usize;
            let addr = &mut self.addrs[k];
            let namelen = addr.write(g.dest, self.v6_socket).unwrap_or(0);
            let m = &mut self.msgs[k];
            m.msg_len = 0;
            let h = &mut m.msg_hdr;
            h.msg_name = addr.as_ptr();
            h.msg_namelen = namelen;
            h.msg_iov = &mut self.iovs[first];
            h.msg_iovlen = g.count as _;
            h.msg_flags = 0;
            if g.count > 1 {
                let c = &mut self.cmsgs[k];
                let hdr = libc::cmsghdr {
                    cmsg_len: CMSG_LEN_U16 as _,
                    cmsg_level: libc::SOL_UDP,
                    cmsg_type: UDP_SEGMENT,
                };
                // SAFETY: `Cmsg` is 32 bytes, 8-aligned: room for the header and a u16 at
                // CMSG_DATA (offset CMSG_HDR).
                unsafe {
                    std::ptr::write(c.0.as_mut_ptr().cast::<libc::cmsghdr>(), hdr);
                }
                c.0[CMSG_HDR..CMSG_HDR + 2].copy_from_slice(&g.seg.to_ne_bytes());
                h.msg_control = c.0.as_mut_ptr().cast();
                h.msg_controllen = CMSG_SPACE_U16 as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        self.built = groups;
        groups
    }

    pub fn msg(&self, k: usize) -> *const libc::msghdr {
        &self.msgs[k].msg_hdr
    }

    /// The built msghdrs from `k` on, for `sendmmsg`.
    pub fn mmsgs_from(&mut self, k: usize) -> &mut [libc::mmsghdr] {
        &mut self.msgs[k..self.built]
    }

    /// Accounts for send `k`: `res` is the byte count or a negative errno.
    pub fn complete(&mut self, k: usize, res: i32, stats: &Counters) {
        let g = &self.groups[k];
        let count = u64::from(g.count);
        if res >= 0 {
            bump(&stats.tx_packets, count);
            bump(&stats.tx_bytes, res as u64);
            if count > 1 {
                bump(&stats.gso_sends, 1);
                bump(&stats.gso_segments, count);
            }
            return;
        }
        bump(&stats.tx_errors, count);
        let errno = -res;
        if count > 1 && matches!(errno, libc::EIO | libc::EINVAL | libc::EOPNOTSUPP) {
            // The route's device cannot take UDP GSO (no checksum offload, xfrm, ...).
            self.gso = false;
            if !self.gso_failed_logged {
                self.gso_failed_logged = true;
                tracing::warn!(
                    errno,
                    "UDP GSO send refused ({}); this worker sends datagrams one by one from now on",
                    std::io::Error::from_raw_os_error(errno)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(datagrams: &[(u16, u16)], gso: bool) -> (Vec<Vec<(u16, u16)>>, Counters) {
        // (port, len) -> groups of (port, len), checking the msghdrs as built.
        let mut e = Egress::with_capacity(4);
        for &(port, len) in datagrams {
            let dest = SocketAddr::from(([127, 0, 0, 1], port));
            assert!(
                e.push(dest, |s| {
                    s[0] = len as u8;
                    Some(usize::from(len))
                })
                .is_some()
            );
        }
        let stats = Counters::default();
        let mut b = SendBatch::new(false, gso, MAX_SEGMENTS, 1);
        let n = b.build(&e, &stats);
        let mut out = Vec::new();
        for k in 0..n {
            // SAFETY: built above; egress alive.
            let h = unsafe { &*b.msg(k) };
            let iovs = unsafe { std::slice::from_raw_parts(h.msg_iov, h.msg_iovlen) };
            let port = b.groups[k].dest.port();
            assert_eq!(h.msg_controllen > 0, iovs.len() > 1);
            out.push(
                iovs.iter()
                    .map(|v| {
                        let i = (v.iov_base as usize - e.slab_ptr() as usize) / SLOT_LEN;
                        assert_eq!(e.datagrams()[i].dest.port(), port);
                        (port, v.iov_len as u16)
                    })
                    .collect(),
            );
        }
        (out, stats)
    }

    #[test]
    fn without_gso_one_send_per_datagram_in_order() {
        let d = [(1, 100), (1, 100), (2, 50)];
        let (g, _) = plan(&d, false);
        assert_eq!(g, vec![vec![(1, 100)], vec![(1, 100)], vec![(2, 50)]]);
    }

    #[test]
    fn gso_gathers_interleaved_destinations_and_keeps_their_order() {
        let d = [
            (1, 100),
            (2, 70),
            (1, 100),
            (2, 70),
            (1, 40), // shorter: closes port 1's group
            (1, 100),
            (2, 90), // longer than 70: starts a new group for port 2
            (3, 0),  // empty datagrams never join a group
            (3, 0),
        ];
        let (g, _) = plan(&d, true);
        assert_eq!(
            g,
            vec![
                vec![(1, 100), (1, 100), (1, 40)],
                vec![(2, 70), (2, 70)],
                vec![(1, 100)],
                vec![(2, 90)],
                vec![(3, 0)],
                vec![(3, 0)],
            ]
        );
    }

    #[test]
    fn gso_respects_segment_and_byte_limits() {
        let d = vec![(7u16, 10u16); 130];
        let (g, _) = plan(&d, true);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 64, 2]);
        let mut e = Egress::with_capacity(20);
        for _ in 0..20 {
            assert!(e.push_copy("127.0.0.1:9".parse().unwrap(), &[0; 1200]));
        }
        let mut b = SendBatch::new(false, true, MAX_SEGMENTS_ZEROCOPY, 1);
        assert_eq!(b.build(&e, &Counters::default()), 3, "8 + 8 + 4");
        let d = vec![(7u16, 2000u16); 40];
        let (g, _) = plan(&d, true);
        // 32 * 2000 = 64000 fits, a 33rd would not.
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![32, 8]);
    }

    #[test]
    fn ipv6_destination_on_ipv4_socket_is_counted_not_sent() {
        let mut e = Egress::with_capacity(2);
        assert!(e.push_copy("[::1]:5".parse().unwrap(), b"x"));
        assert!(e.push_copy("127.0.0.1:5".parse().unwrap(), b"y"));
        let stats = Counters::default();
        let mut b = SendBatch::new(false, true, MAX_SEGMENTS, 2);
        assert_eq!(b.build(&e, &stats), 1);
        assert_eq!(stats.snapshot().tx_unroutable, 1);
    }
}
