//! Raw socket addresses for msghdrs, written into preallocated storage (socket2's
//! `SockAddr` would do, but building it per datagram is more work than these few stores).

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for either family; what a receive names and a send points at.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl Default for RawAddr {
    fn default() -> Self {
        // SAFETY: all-zero is a valid value of both plain C structs.
        unsafe { std::mem::zeroed() }
    }
}

/// The bytes a receive reserves for the peer's name (fits both families).
pub(crate) const NAME_LEN: u32 = size_of::<libc::sockaddr_in6>() as u32;

impl RawAddr {
    pub fn as_ptr(&mut self) -> *mut libc::c_void {
        (self as *mut Self).cast()
    }

    /// Writes `addr` for a socket of family `v6_socket`; IPv4 destinations on an IPv6
    /// socket become v4-mapped. Returns the length, or `None` for an IPv6 destination on
    /// an IPv4 socket.
    pub fn write(&mut self, addr: SocketAddr, v6_socket: bool) -> Option<libc::socklen_t> {
        match (addr, v6_socket) {
            (SocketAddr::V4(a), false) => {
                self.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                Some(size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            (SocketAddr::V4(a), true) => {
                let mapped = SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0);
                self.write(SocketAddr::V6(mapped), true)
            }
            (SocketAddr::V6(a), true) => {
                self.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                Some(size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
            (SocketAddr::V6(_), false) => None,
        }
    }
}

/// Reads a peer name as the kernel wrote it (`len` bytes of `name`). v4-mapped IPv6
/// peers come back as IPv4, so a handler sees one address per peer whatever the socket.
pub(crate) fn read(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
    match i32::from(family) {
        libc::AF_INET if name.len() >= size_of::<libc::sockaddr_in>() => {
            let port = u16::from_be_bytes([name[2], name[3]]);
            let ip = Ipv4Addr::new(name[4], name[5], name[6], name[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if name.len() >= size_of::<libc::sockaddr_in6>() => {
            let port = u16::from_be_bytes([name[2], name[3]]);
            let flow = u32::from_be_bytes([name[4], name[5], name[6], name[7]]);
            let octets: [u8; 16] = name[8..24].try_into().ok()?;
            let scope = u32::from_ne_bytes([name[24], name[25], name[26], name[27]]);
            let ip = Ipv6Addr::from(octets);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(addr: SocketAddr, v6_socket: bool) -> Option<SocketAddr> {
        let mut raw = RawAddr::default();
        let len = raw.write(addr, v6_socket)? as usize;
        // SAFETY: `raw` is `len` initialised bytes long at least.
        let bytes = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), len) };
        read(bytes)
    }

    #[test]
    fn both_families_and_mapping() {
        let v4: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
        assert_eq!(round_trip(v4, false), Some(v4));
        assert_eq!(round_trip(v4, true), Some(v4), "v4-mapped comes back as v4");
        assert_eq!(round_trip(v6, true), Some(v6));
        assert_eq!(round_trip(v6, false), None);
        assert_eq!(read(&[0; 3]), None);
    }
}
