//! Node-to-node links: one QUIC connection per peer node, mutual TLS from the cluster CA.
//!
//! Media rides DATAGRAM frames (lossy, never retransmitted, never truncated); control
//! messages ride one unidirectional stream per direction, each message a u32 big-endian
//! length and its bytes. The first frame on each stream is a [`hello`]; see `tiebreak`
//! for how two nodes dialing each other at once end up with one connection.
//!
//! The endpoint is a thin tokio driver around quinn: the decisions (framing, hello,
//! which duplicate survives, whether a datagram may be sent) are plain functions in the
//! submodules.

mod counters;
mod endpoint;
mod frame;
mod hello;
mod stats;
mod tiebreak;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use counters::{LinkCounters, LinkCountersSnapshot};
pub use endpoint::LinkEndpoint;
pub use frame::MAX_MESSAGE;
pub use stats::LinkStats;

/// Application close codes a link uses (QUIC CONNECTION_CLOSE, application variant).
pub mod close_code {
    /// Closed on purpose: `disconnect` or shutdown.
    pub const NORMAL: u32 = 0;
    /// The pair already has a connection (simultaneous dial); this one lost.
    pub const DUPLICATE: u32 = 1;
    /// The peer broke the link protocol (bad hello, oversize frame, wrong name).
    pub const PROTOCOL: u32 = 2;
    /// A newer connection from the same peer took this one's place.
    pub const REPLACED: u32 = 3;
}

/// Node names are shared by every event of a link: cloning one costs a refcount.
pub type PeerName = Arc<str>;

/// What an endpoint reports, in order per peer: `Connected`, then its datagrams and
/// messages, then `Closed`; and again if the peer reconnects. A datagram that was being
/// delivered as its connection closed may still follow that `Closed`.
#[derive(Debug)]
pub enum LinkEvent {
    Connected {
        peer: PeerName,
        remote: SocketAddr,
        handle: LinkHandle,
    },
    Datagram {
        peer: PeerName,
        data: Bytes,
    },
    Message {
        peer: PeerName,
        data: Bytes,
    },
    Closed {
        peer: PeerName,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("cannot bind the link endpoint: {0}")]
    Bind(String),
    #[error("{0:?} is not a valid peer: {1}")]
    BadPeer(String, String),
    #[error("no link to {0}")]
    NotConnected(String),
    #[error("connecting to {peer}: {reason}")]
    Connect { peer: String, reason: String },
    #[error("{peer} refused our certificate or we refused its: {reason}")]
    Refused { peer: String, reason: String },
    #[error("connecting to {0} timed out")]
    Timeout(String),
    #[error("{0} already had a connection with us; this one was dropped")]
    Duplicate(String),
    #[error("datagram of {len} bytes exceeds the link's {max}-byte limit")]
    DatagramTooLarge { len: usize, max: usize },
    #[error("datagram send buffer full")]
    SendBufferFull,
    #[error("the peer does not accept datagrams")]
    DatagramsUnsupported,
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    MessageTooLarge { len: usize, max: usize },
    #[error("message queue full")]
    MessageQueueFull,
    #[error("the link to {0} is closed")]
    Closed(String),
}

/// Messages queued per link before `send_message` waits (`try_send_message` fails).
const MESSAGE_QUEUE: usize = 1024;

/// One live link to a peer. Cheap to clone; stays bound to its connection, so after
/// `Closed` (or a replacement) its sends fail and a fresh handle comes with the next
/// `Connected`. The endpoint's by-name methods always use the current one.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    peer: PeerName,
    conn: quinn::Connection,
    initiated_locally: bool,
    messages: mpsc::Sender<Bytes>,
    counters: Arc<LinkCounters>,
}

/// Whether a datagram of `len` bytes may be handed to quinn now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Send,
    TooLarge { max: usize },
    BufferFull,
    Unsupported,
}

/// quinn would silently drop the *oldest* queued datagrams to make room; refusing the
/// new one instead keeps every drop counted.
fn admit_datagram(len: usize, max: Option<usize>, buffer_space: usize) -> Admission {
    match max {
        None => Admission::Unsupported,
        Some(max) if len > max => Admission::TooLarge { max },
        Some(_) if len > buffer_space => Admission::BufferFull,
        Some(_) => Admission::Send,
    }
}

impl LinkHandle {
    pub fn peer(&self) -> &PeerName {
        &self.inner.peer
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.inner.conn.remote_address()
    }

    /// Whether this node dialed the connection (for simultaneous dials: whether our
    /// name sorts first).
    pub fn initiated_locally(&self) -> bool {
        self.inner.initiated_locally
    }

    /// Largest datagram that can be sent now (it follows the path MTU); `None` if the
    /// peer does not take datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.inner.conn.max_datagram_size()
    }

    /// Sends one datagram, whole or not at all. Oversize (counted in `oversize_drops`),
    /// full send buffer and closed link (counted in `send_drops`) are errors the media
    /// path may ignore: datagrams are lossy by design.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), LinkError> {
        let c = &self.inner.counters;
        let conn = &self.inner.conn;
        let len = data.len();
        match admit_datagram(
            len,
            conn.max_datagram_size(),
            conn.datagram_send_buffer_space(),
        ) {
            Admission::Send => {}
            Admission::TooLarge { max } => {
                LinkCounters::inc(&c.oversize_drops);
                return Err(LinkError::DatagramTooLarge { len, max });
            }
            Admission::BufferFull => {
                LinkCounters::inc(&c.send_drops);
                return Err(LinkError::SendBufferFull);
            }
            Admission::Unsupported => {
                LinkCounters::inc(&c.send_drops);
                return Err(LinkError::DatagramsUnsupported);
            }
        }
        match conn.send_datagram(data) {
            Ok(()) => {
                LinkCounters::inc(&c.datagrams_out);
                LinkCounters::add(&c.bytes_out, len);
                Ok(())
            }
            // The path MTU shrank between the check and the send.
            Err(quinn::SendDatagramError::TooLarge) => {
                LinkCounters::inc(&c.oversize_drops);
                Err(LinkError::DatagramTooLarge {
                    len,
                    max: conn.max_datagram_size().unwrap_or(0),
                })
            }
            Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                LinkCounters::inc(&c.send_drops);
                Err(LinkError::Closed(self.inner.peer.to_string()))
            }
            Err(_) => {
                LinkCounters::inc(&c.send_drops);
                Err(LinkError::DatagramsUnsupported)
            }
        }
    }

    /// Queues a reliable, ordered control message, waiting while the link's queue is full.
    pub async fn send_message(&self, data: Bytes) -> Result<(), LinkError> {
        self.check_message(&data)?;
        self.inner
            .messages
            .send(data)
            .await
            .map_err(|_| LinkError::Closed(self.inner.peer.to_string()))
    }

    /// As [`send_message`](Self::send_message), for callers that cannot wait (a sans-IO
    /// core's poll loop): fails with `MessageQueueFull` instead.
    pub fn try_send_message(&self, data: Bytes) -> Result<(), LinkError> {
        self.check_message(&data)?;
        self.inner.messages.try_send(data).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::MessageQueueFull,
            mpsc::error::TrySendError::Closed(_) => LinkError::Closed(self.inner.peer.to_string()),
        })
    }

    fn check_message(&self, data: &Bytes) -> Result<(), LinkError> {
        if data.len() > MAX_MESSAGE {
            return Err(LinkError::MessageTooLarge {
                len: data.len(),
                max: MAX_MESSAGE,
            });
        }
        if self.is_closed() {
            return Err(LinkError::Closed(self.inner.peer.to_string()));
        }
        Ok(())
    }

    /// Path RTT, congestion window, losses and byte counts of this link.
    pub fn stats(&self) -> LinkStats {
        LinkStats::of(&self.inner.conn)
    }

    pub fn is_closed(&self) -> bool {
        self.inner.conn.close_reason().is_some()
    }

    /// Closes this link; the endpoint reports `Closed` for it.
    pub fn close(&self) {
        self.inner.conn.close(close_code::NORMAL.into(), b"closed");
    }

    /// quinn's connection, for what this API does not cover.
    pub fn connection(&self) -> &quinn::Connection {
        &self.inner.conn
    }
}

#[cfg(test)]
mod tests;
