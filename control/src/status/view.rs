//! What `GET /status` answers and `sluice status` reads: one JSON document, the same
//! types on both ends so the two cannot disagree.

use serde::{Deserialize, Serialize};

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The answering node's name.
    #[serde(rename = "self")]
    pub this: String,
    /// Every member this node knows, itself included, sorted by name.
    pub members: Vec<Member>,
    /// This node's live inter-node links, as its QUIC connections measure them.
    pub links: Vec<Link>,
    /// Every node's links as that node last reported them through the load gossip
    /// (this node's own last report included): the whole mesh, a gossip interval old.
    pub mesh: Vec<MeshLink>,
    /// Rooms with sessions on this node, sorted by name.
    pub rooms: Vec<Room>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// The node's number in the cluster (absent without a cluster).
    pub number: Option<u64>,
    pub region: String,
    /// SWIM's view: "alive", "suspect" or "down" (this node is always "alive").
    pub state: String,
    /// Public HTTP base URL, without a trailing slash; empty if the member did not say.
    pub http: String,
    /// Whether this entry is the answering node.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Absent when no load report from the member has arrived yet.
    pub load: Option<Load>,
    /// How this node's media reaches the member; absent for this node itself and
    /// without a cluster.
    pub route: Option<Route>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub sessions: u32,
    /// Share of all the node's cores in use, 0..=1000; absent when not measured.
    pub cpu_permille: Option<u16>,
    pub draining: bool,
    /// How long ago this node received the report (absent for this node's own).
    pub age_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Route {
    Direct,
    /// Relayed through `node`.
    Via {
        node: String,
    },
    Unreachable,
}

/// One of this node's links, cumulative over the QUIC connection's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub peer: String,
    /// Smoothed round-trip time.
    pub rtt_ms: f64,
    pub min_rtt_ms: f64,
    pub sent_packets: u64,
    pub lost_packets: u64,
    /// `lost_packets` per thousand `sent_packets`.
    pub loss_permille: u16,
    /// Congestion window, in bytes.
    pub cwnd_bytes: u64,
    /// UDP bytes, QUIC overhead included.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// A link as its sending node reported it: RTT and loss over its last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshLink {
    pub from: String,
    pub to: String,
    pub rtt_ms: u16,
    pub loss_permille: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    pub name: String,
    /// Publishing sessions on this node.
    pub publishers: usize,
    /// Subscribing sessions on this node.
    pub subscribers: usize,
    /// Publishers the room lists here, from every node (media flowing).
    pub room_publishers: usize,
}
