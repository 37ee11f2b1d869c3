//! Per-link transport statistics, the inputs a bandwidth manager needs.

use std::time::Duration;

/// One link's path and congestion state as quinn sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Lowest RTT seen (BBR's propagation-delay estimate).
    pub min_rtt: Duration,
    /// Congestion window in bytes: what the controller allows in flight.
    pub cwnd: u64,
    pub congestion_events: u64,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub lost_bytes: u64,
    /// UDP bytes sent and received, QUIC overhead included: what the link costs.
    pub udp_tx_bytes: u64,
    pub udp_rx_bytes: u64,
    /// Largest UDP payload the path supports now (after MTU discovery).
    pub current_mtu: u16,
    /// Largest datagram payload that can be sent now; `None` if the peer disabled them.
    pub max_datagram_size: Option<usize>,
    /// Room left in the datagram send buffer, in bytes.
    pub datagram_send_buffer_space: usize,
}

impl LinkStats {
    pub(crate) fn of(conn: &quinn::Connection) -> Self {
        let s = conn.stats();
        Self {
            rtt: s.path.rtt,
            min_rtt: s.path.min_rtt,
            cwnd: s.path.cwnd,
            congestion_events: s.path.congestion_events,
            sent_packets: s.path.sent_packets,
            lost_packets: s.path.lost_packets,
            lost_bytes: s.path.lost_bytes,
            udp_tx_bytes: s.udp_tx.bytes,
            udp_rx_bytes: s.udp_rx.bytes,
            current_mtu: s.path.current_mtu,
            max_datagram_size: conn.max_datagram_size(),
            datagram_send_buffer_space: conn.datagram_send_buffer_space(),
        }
    }
}
