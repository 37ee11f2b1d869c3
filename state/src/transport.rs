//! What the core asks its driver to send. Small messages go as datagrams (lossy,
//! unordered); anything larger than one datagram goes as a reliable stream message.
//! The simulator and the loopback test implement this; the cascade binds it to QUIC
//! (DATAGRAM frames and uni streams).

use std::net::SocketAddr;

use crate::identity::NodeId;

/// Largest authenticated message sent as a datagram: fits a 1280-byte IPv6 MTU path
/// after UDP/IP headers, and a QUIC DATAGRAM frame after QUIC's own overhead.
pub const MAX_DATAGRAM: usize = 1200;

/// Largest stream message accepted. Bounds what one peer can make us buffer and decode.
pub const MAX_STREAM_MESSAGE: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Datagram,
    Stream,
}

/// One authenticated message for the driver to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    /// Known for everything except announces to seeds.
    pub to_node: Option<NodeId>,
    pub delivery: Delivery,
    pub data: Vec<u8>,
}

/// A driver's way to put bytes on the wire.
pub trait Transport {
    fn send_datagram(&mut self, to: SocketAddr, data: &[u8]);
    fn send_stream(&mut self, to: SocketAddr, data: &[u8]);

    fn send(&mut self, transmit: &Transmit) {
        match transmit.delivery {
            Delivery::Datagram => self.send_datagram(transmit.to, &transmit.data),
            Delivery::Stream => self.send_stream(transmit.to, &transmit.data),
        }
    }
}
