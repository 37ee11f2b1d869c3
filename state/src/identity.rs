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

/// Longest node name accepted (one DNS label, as cluster certificates name nodes).
pub const MAX_NAME_LEN: usize = 63;

/// Longest public HTTP base URL accepted. Every SWIM message carries two identities and
/// each membership update one more, so this bounds how few updates fit in a datagram.
pub const MAX_HTTP_LEN: usize = 96;

/// A node's identity in the SWIM cluster.
///
/// `generation` changes on every restart or rejoin: SWIM refuses an identity it has
/// declared down, so a returning node must come back as a newer one. It also seeds the
/// automerge actor id, which must never repeat across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub id: NodeId,
    pub generation: u32,
    #[serde(deserialize_with = "bounded::<_, MAX_REGION_LEN>")]
    pub region: String,
    pub media_addr: SocketAddr,
    pub link_addr: SocketAddr,
    /// Sessions this node is provisioned for; placement divides load by it.
    pub capacity: u32,
    /// Operator-facing name (in a cascade, the name in the node's certificate); empty
    /// when unset. At most [`MAX_NAME_LEN`] bytes.
    #[serde(deserialize_with = "bounded::<_, MAX_NAME_LEN>")]
    pub name: String,
    /// Public HTTP base URL clients and operators reach this node at; empty when unset.
    /// At most [`MAX_HTTP_LEN`] bytes.
    #[serde(deserialize_with = "bounded::<_, MAX_HTTP_LEN>")]
    pub http: String,
}

/// Refuses a string longer than `MAX` bytes from the wire: a peer's identity must stay
/// as small as ours would be.
fn bounded<'de, D: serde::Deserializer<'de>, const MAX: usize>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() > MAX {
        return Err(serde::de::Error::invalid_length(
            s.len(),
            &"a shorter string",
        ));
    }
    Ok(s)
}

fn bounded_or_empty(s: &str, max: usize) -> String {
    if s.len() > max {
        String::new()
    } else {
        s.to_owned()
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

impl NodeIdentity {
    pub fn new(
        id: NodeId,
        region: &str,
        media_addr: SocketAddr,
        link_addr: SocketAddr,
        capacity: u32,
    ) -> Self {
        Self {
            id,
            generation: 0,
            region: truncated(region, MAX_REGION_LEN),
            media_addr,
            link_addr,
            capacity,
            name: String::new(),
            http: String::new(),
        }
    }

    /// Sets the name; one longer than [`MAX_NAME_LEN`] bytes leaves it empty (a cut
    /// name would name another node).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = bounded_or_empty(name, MAX_NAME_LEN);
        self
    }

    /// Sets the public HTTP base URL; one longer than [`MAX_HTTP_LEN`] bytes leaves it
    /// empty (a cut URL would point elsewhere).
    pub fn with_http(mut self, http: &str) -> Self {
        self.http = bounded_or_empty(http, MAX_HTTP_LEN);
        self
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
            name: String::new(),
            http: String::new(),
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
