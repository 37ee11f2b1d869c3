//! Who a node is, as every other node sees it in membership.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Stable operator-assigned node id; room documents refer to nodes by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Longest region label accepted; keeps every SWIM header small and bounded.
pub const MAX_REGION_LEN: usize = 32;

/// A node's identity in the SWIM cluster.
///
/// `generation` changes on every restart or rejoin: SWIM refuses an identity it has
/// declared down, so a returning node must come back as a newer one. It also seeds the
/// automerge actor id, which must never repeat across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub id: NodeId,
    pub generation: u32,
    pub region: String,
    pub media_addr: SocketAddr,
    pub link_addr: SocketAddr,
    /// Sessions this node is provisioned for; placement divides load by it.
    pub capacity: u32,
}

impl NodeIdentity {
    pub fn new(
        id: NodeId,
        region: &str,
        media_addr: SocketAddr,
        link_addr: SocketAddr,
        capacity: u32,
    ) -> Self {
        let mut region = region.to_owned();
        if region.len() > MAX_REGION_LEN {
            let mut cut = MAX_REGION_LEN;
            while !region.is_char_boundary(cut) {
                cut -= 1;
            }
            region.truncate(cut);
        }
        Self {
            id,
            generation: 0,
            region,
            media_addr,
            link_addr,
            capacity,
        }
    }

    pub fn with_generation(mut self, generation: u32) -> Self {
        self.generation = generation;
        self
    }

    /// Placeholder used to announce to a seed we only know by address: foca accepts
    /// an announce whose destination shares the seed's address.
    pub(crate) fn seed_placeholder(link_addr: SocketAddr) -> Self {
        Self {
            id: NodeId(u64::MAX),
            generation: 0,
            region: String::new(),
            media_addr: link_addr,
            link_addr,
            capacity: 0,
        }
    }
}

impl foca::Identity for NodeIdentity {
    // One cluster member per link address: that is where its gossip goes.
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.link_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
