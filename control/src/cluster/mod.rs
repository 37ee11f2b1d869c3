//! The cluster's inter-node plumbing: the cluster CA that certifies nodes, mutual TLS
//! from it, and the QUIC links that carry media datagrams and control messages between
//! nodes. See docs/cluster.md for the operator's view and the link protocol.

pub mod bbr;
pub mod ca;
pub mod cli;
pub mod link;
pub mod local;
pub mod name;
pub mod tls;
pub mod transport;

pub use ca::{CaError, ClusterCa, NodeCert};
pub use cli::{CaCommand, run_ca_command};
pub use link::{
    LinkCounters, LinkCountersSnapshot, LinkEndpoint, LinkError, LinkEvent, LinkHandle, LinkStats,
    PeerName,
};
pub use name::NODE_DNS_SUFFIX;
pub use tls::{LINK_ALPN, LinkTls, TlsError};
pub use transport::Congestion;
