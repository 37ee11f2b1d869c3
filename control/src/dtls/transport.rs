//! A `webrtc_util::Conn` over the media worker's channel: DTLS records come in on an mpsc
//! receiver (the worker demuxed them off the media socket) and go out through a callback
//! (the worker sends them from the same socket, so the peer sees one 5-tuple).
//!
//! It also answers a retransmitted final flight after the handshake. The `dtls` crate
//! stops running its handshake state machine once it has sent its last flight, so if that
//! flight is lost the peer would retransmit its own forever and never finish. We remember
//! the datagrams sent since the peer last spoke (at completion: our final flight) and
//! send them again, byte for byte, when an epoch-0 handshake record arrives afterwards.

use super::SendFn;
use async_trait::async_trait;
use bytes::Bytes;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use webrtc_util::Conn;

/// A flight is a handful of datagrams; more means the peer is talking to us mid-flight
/// and what we hold is no longer one flight.
const MAX_FLIGHT_DATAGRAMS: usize = 16;
/// Datagrams of one retransmitted flight arrive together; answer the flight once.
const RESEND_HOLDOFF: Duration = Duration::from_millis(50);

const CONTENT_HANDSHAKE: u8 = 22;

#[derive(Debug, Default)]
struct Flight {
    datagrams: Vec<Bytes>,
    /// The peer sent something since our last send: our next send starts a new flight.
    peer_spoke: bool,
    last_resend: Option<Instant>,
}

pub(super) struct ChannelConn {
    incoming: tokio::sync::Mutex<mpsc::Receiver<Bytes>>,
    send: SendFn,
    flight: Mutex<Flight>,
    handshake_done: AtomicBool,
    closed: AtomicBool,
    closed_notify: Notify,
    resent_flights: AtomicU64,
}

impl ChannelConn {
    pub(super) fn new(incoming: mpsc::Receiver<Bytes>, send: SendFn) -> Self {
        Self {
            incoming: tokio::sync::Mutex::new(incoming),
            send,
            flight: Mutex::new(Flight::default()),
            handshake_done: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            resent_flights: AtomicU64::new(0),
        }
    }

    /// Freezes the remembered flight: from now on it is our final one.
    pub(super) fn handshake_finished(&self) {
        self.handshake_done.store(true, Ordering::SeqCst);
    }

    /// Resolves once the incoming channel has closed (the media worker dropped the
    /// session) or `close` was called.
    pub(super) async fn transport_closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn resent_flights(&self) -> u64 {
        self.resent_flights.load(Ordering::Relaxed)
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_notify.notify_waiters();
    }

    fn lock_flight(&self) -> std::sync::MutexGuard<'_, Flight> {
        // A poisoned lock only means another task panicked mid-update of a cache.
        self.flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_received(&self, datagram: &[u8]) {
        let done = self.handshake_done.load(Ordering::SeqCst);
        let mut flight = self.lock_flight();
        if !done {
            flight.peer_spoke = true;
            return;
        }
        if !is_epoch0_handshake(datagram) || flight.datagrams.is_empty() {
            return;
        }
        let now = Instant::now();
        if flight
            .last_resend
            .is_some_and(|t| now.duration_since(t) < RESEND_HOLDOFF)
        {
            return;
        }
        flight.last_resend = Some(now);
        for d in &flight.datagrams {
            (self.send)(d.clone());
        }
        self.resent_flights.fetch_add(1, Ordering::Relaxed);
    }

    fn on_sent(&self, datagram: &Bytes) {
        if self.handshake_done.load(Ordering::SeqCst) {
            return;
        }
        let mut flight = self.lock_flight();
        if flight.peer_spoke {
            flight.datagrams.clear();
            flight.peer_spoke = false;
        }
        if flight.datagrams.len() < MAX_FLIGHT_DATAGRAMS {
            flight.datagrams.push(datagram.clone());
        }
    }
}

/// The first record is a handshake record of epoch 0: the peer is (re)sending a flight
/// from before the cipher change.
fn is_epoch0_handshake(datagram: &[u8]) -> bool {
    datagram.first() == Some(&CONTENT_HANDSHAKE) && datagram.get(3..5) == Some(&[0, 0])
}

type UtilResult<T> = Result<T, webrtc_util::Error>;

/// The media socket is not ours: these addresses only satisfy the trait.
const UNSPECIFIED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

#[async_trait]
impl Conn for ChannelConn {
    async fn connect(&self, _addr: SocketAddr) -> UtilResult<()> {
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> UtilResult<usize> {
        let mut incoming = self.incoming.lock().await;
        loop {
            let Some(datagram) = incoming.recv().await else {
                self.mark_closed();
                // The dtls crate's reader loop retries on every error, so an error here
                // would spin it; it exits when the DTLSConn is closed or dropped instead.
                drop(incoming);
                std::future::pending::<()>().await;
                return Err(webrtc_util::Error::ErrUseClosedNetworkConn);
            };
            // Larger than the dtls crate's receive buffer: not a record it could parse.
            let Some(dst) = buf.get_mut(..datagram.len()) else {
                continue;
            };
            dst.copy_from_slice(&datagram);
            self.on_received(&datagram);
            return Ok(datagram.len());
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> UtilResult<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, UNSPECIFIED))
    }

    async fn send(&self, buf: &[u8]) -> UtilResult<usize> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(webrtc_util::Error::ErrUseClosedNetworkConn);
        }
        let datagram = Bytes::copy_from_slice(buf);
        self.on_sent(&datagram);
        (self.send)(datagram);
        Ok(buf.len())
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> UtilResult<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> UtilResult<SocketAddr> {
        Ok(UNSPECIFIED)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> UtilResult<()> {
        self.mark_closed();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::is_epoch0_handshake;

    #[test]
    fn epoch0_handshake_detection() {
        // type 22, version fe fd, epoch 0.
        assert!(is_epoch0_handshake(&[22, 0xfe, 0xfd, 0, 0, 0, 0]));
        assert!(!is_epoch0_handshake(&[22, 0xfe, 0xfd, 0, 1, 0, 0]));
        assert!(!is_epoch0_handshake(&[20, 0xfe, 0xfd, 0, 0]));
        assert!(!is_epoch0_handshake(&[22, 0xfe]));
        assert!(!is_epoch0_handshake(&[]));
    }
}
