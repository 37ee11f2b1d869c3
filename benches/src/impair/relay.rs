//! The UDP driver for [`ImpairQueue`]: a relay between one client and one upstream, on
//! its own thread, impairing each direction with its own queue.
//!
//! The client sends to [`Relay::local_addr`]; the relay sends on from a second socket, so
//! the upstream sees the relay as its peer and its replies come back through the relay
//! (and are impaired too). Replies go to the address the client last sent from.

use super::queue::{ImpairQueue, Impairment, Micros, QueueStats};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

/// Longest a relay waits in poll(2) before looking at its stop flag and new settings.
const MAX_WAIT_MS: i32 = 20;
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where clients send (port 0 picks one).
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// Client to upstream.
    pub forward: Impairment,
    /// Upstream to client.
    pub backward: Impairment,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub forward: QueueStats,
    pub backward: QueueStats,
    /// Datagrams the relay could not send (socket errors), per direction.
    pub send_errors: u64,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    stats: Mutex<RelayStats>,
    /// New settings for (forward, backward), picked up by the relay thread.
    pending: Mutex<(Option<Impairment>, Option<Impairment>)>,
}

#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Relay {
    pub fn start(config: RelayConfig) -> io::Result<Self> {
        for imp in [&config.forward, &config.backward] {
            imp.validate()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let front = UdpSocket::bind(config.listen)?;
        let unspecified: SocketAddr = if config.upstream.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let back = UdpSocket::bind(unspecified)?;
        back.connect(config.upstream)?;
        front.set_nonblocking(true)?;
        back.set_nonblocking(true)?;
        let local_addr = front.local_addr()?;
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("impair-relay".into())
            .spawn(move || run(front, back, config, &thread_shared))?;
        Ok(Self {
            local_addr,
            shared,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> RelayStats {
        *self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the impairment of either direction from the next packet on (packets
    /// already queued keep their release times). An invalid setting is refused.
    pub fn set_impairment(
        &self,
        forward: Option<Impairment>,
        backward: Option<Impairment>,
    ) -> Result<(), String> {
        for imp in [&forward, &backward].into_iter().flatten() {
            imp.validate()?;
        }
        *self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (forward, backward);
        Ok(())
    }

    /// Stops the relay thread and reports how it ended.
    pub fn stop(mut self) -> io::Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("impairment relay thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn run(front: UdpSocket, back: UdpSocket, config: RelayConfig, shared: &Shared) -> io::Result<()> {
    let start = Instant::now();
    let now = || start.elapsed().as_micros() as Micros;
    let mut forward = ImpairQueue::new(config.forward);
    let mut backward = ImpairQueue::new(config.backward);
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut send_errors = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let pending = std::mem::take(
            &mut *shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if let Some(f) = pending.0 {
            forward.reconfigure(f);
        }
        if let Some(b) = pending.1 {
            backward.reconfigure(b);
        }

        let t = now();
        let wait = [forward.next_release(), backward.next_release()]
            .into_iter()
            .flatten()
            .min()
            .map_or(MAX_WAIT_MS, |due| {
                (due.saturating_sub(t).div_ceil(1000) as i32).min(MAX_WAIT_MS)
            });
        let mut fds = [
            libc::pollfd {
                fd: front.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: back.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        loop {
            match front.recv_from(&mut buf) {
                Ok((len, from)) => {
                    client = Some(from);
                    forward.push(now(), buf[..len].to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; the relay keeps going.
                Err(_) => break,
            }
        }
        loop {
            match back.recv(&mut buf) {
                Ok(len) => {
                    backward.push(now(), buf[..len].to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let t = now();
        while let Some(p) = forward.poll(t) {
            if back.send(&p).is_err() {
                send_errors += 1;
            }
        }
        while let Some(p) = backward.poll(t) {
            match client {
                Some(c) if front.send_to(&p, c).is_ok() => {}
                _ => send_errors += 1,
            }
        }
        *shared.stats.lock().unwrap_or_else(PoisonError::into_inner) = RelayStats {
            forward: forward.stats(),
            backward: backward.stats(),
            send_errors,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn echo_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let addr = s.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if &buf[..n] == b"quit" {
                    break;
                }
                s.send_to(&buf[..n], from).unwrap();
            }
        });
        (addr, h)
    }

    #[test]
    fn relays_both_ways_with_delay_and_counts() {
        let (upstream, server) = echo_server();
        let relay = Relay::start(RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream,
            forward: Impairment {
                delay: Duration::from_millis(15),
                ..Impairment::default()
            },
            backward: Impairment {
                delay: Duration::from_millis(15),
                ..Impairment::default()
            },
        })
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sent = Instant::now();
        for i in 0..20u8 {
            client.send_to(&[i; 100], relay.local_addr()).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..20 {
            let n = client.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        // The round trip cannot be shorter than the two delays; no upper bound is
        // asserted (shared machine).
        assert!(sent.elapsed() >= Duration::from_millis(30));
        assert_eq!(got, (0..20u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        // The relay publishes its counters after sending; give it a moment to.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut s = relay.stats();
        while s.backward.packets_out < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            s = relay.stats();
        }
        assert_eq!((s.forward.packets_out, s.backward.packets_out), (20, 20));
        client.send_to(b"quit", relay.local_addr()).unwrap();
        relay.stop().unwrap();
        server.join().unwrap();
    }

    #[test]
    fn total_loss_then_lifted_at_runtime() {
        let (upstream, server) = echo_server();
        let relay = Relay::start(RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream,
            forward: Impairment {
                loss: 1.0,
                ..Impairment::default()
            },
            backward: Impairment::default(),
        })
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        client.send_to(b"dropped", relay.local_addr()).unwrap();
        let mut buf = [0u8; 64];
        assert!(
            client.recv(&mut buf).is_err(),
            "nothing passes at 100% loss"
        );
        relay
            .set_impairment(Some(Impairment::default()), None)
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // The relay picks the setting up within its poll interval; retry a few times.
        let mut echoed = false;
        for _ in 0..20 {
            client.send_to(b"passes", relay.local_addr()).unwrap();
            if let Ok(n) = client.recv(&mut buf) {
                echoed = &buf[..n] == b"passes";
                break;
            }
        }
        assert!(echoed);
        assert!(relay.stats().forward.dropped_loss >= 1);
        assert!(
            relay
                .set_impairment(
                    Some(Impairment {
                        loss: 2.0,
                        ..Impairment::default()
                    }),
                    None
                )
                .is_err()
        );
        client.send_to(b"quit", relay.local_addr()).unwrap();
        relay.stop().unwrap();
        server.join().unwrap();
    }
}
