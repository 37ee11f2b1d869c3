//! What an endpoint counts, shared by its tasks and readable at any time.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:expr])* $name:ident,)*) => {
        /// Endpoint-wide counters, updated with relaxed atomics from every link task.
        #[derive(Debug, Default)]
        pub struct LinkCounters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`LinkCounters`] at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct LinkCountersSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl LinkCounters {
            pub fn snapshot(&self) -> LinkCountersSnapshot {
                LinkCountersSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Handshakes that ended in a TLS alert: a certificate from another CA, an expired
    /// or otherwise invalid one, none at all, or a wrong ALPN; refused by either side.
    handshakes_refused,
    /// Handshakes that failed otherwise (timeout, unreachable, no hello).
    handshakes_failed,
    /// Connections that became a peer's active link.
    connections,
    /// Incoming connections refused because the pair already had one (simultaneous dial).
    duplicates_refused,
    /// Peer misbehaviour that closed a link: bad hello, oversize frame, wrong name.
    protocol_errors,
    datagrams_in,
    datagrams_out,
    /// Datagrams refused because they exceeded the link's `max_datagram_size()`.
    oversize_drops,
    /// Datagrams dropped on send: send buffer full, link gone, datagrams unsupported.
    send_drops,
    /// Datagrams received but dropped because the event channel was full.
    recv_drops,
    messages_in,
    messages_out,
    /// Payload bytes received on links (datagrams and messages, without framing).
    bytes_in,
    /// Payload bytes sent on links (datagrams and messages, without framing).
    bytes_out,
}

impl LinkCounters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
