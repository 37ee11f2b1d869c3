//! How the sessions talk to the cascade task: fire-and-forget commands, applied in order.
//! A node without a cluster has no handle, and sessions skip every call.

use super::catalog::TrackDescriptor;
use sluice_dataplane::router::{TrackId, UpstreamEvent};
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum Command {
    Publish {
        room: String,
        publisher: String,
        tracks: Vec<TrackDescriptor>,
    },
    Unpublish {
        room: String,
        publisher: String,
        tracks: Vec<TrackId>,
    },
    /// One more (or one fewer) local subscriber of a track published elsewhere.
    Want {
        room: String,
        track: TrackId,
        more: bool,
    },
    /// Someone here is interested in a room: learn its publishers on other nodes.
    Watch { room: String },
    /// A keyframe request or lost packets of a remote track, for its home node.
    Upstream(UpstreamEvent),
}

#[derive(Debug, Clone)]
pub struct CascadeHandle {
    tx: mpsc::UnboundedSender<Command>,
    node: u64,
}

impl CascadeHandle {
    pub fn new(tx: mpsc::UnboundedSender<Command>, node: u64) -> Self {
        Self { tx, node }
    }

    /// This node's number: the top bits of the track ids it mints.
    pub fn node(&self) -> u64 {
        self.node
    }

    pub fn send(&self, cmd: Command) {
        // The task ends only with the node; a command after that has nothing to change.
        let _ = self.tx.send(cmd);
    }

    pub fn watch(&self, room: &str) {
        self.send(Command::Watch {
            room: room.to_owned(),
        });
    }
}

/// A node's number from its name: a name that is a small number is that number (an
/// operator numbering nodes gets the ids they chose), anything else is hashed (FNV-1a)
/// into the 24 bits global track ids hold. Never 0.
pub fn node_number(name: &str) -> u64 {
    const MASK: u64 = (1 << super::catalog::NODE_ID_BITS) - 1;
    if let Ok(n) = name.parse::<u64>()
        && (1..=MASK).contains(&n)
    {
        return n;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let folded = (h ^ (h >> 24) ^ (h >> 48)) & MASK;
    if folded == 0 { 1 } else { folded }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_nonzero_and_fit() {
        assert_eq!(node_number("7"), 7);
        assert_eq!(node_number("edge-fra-1"), node_number("edge-fra-1"));
        assert_ne!(node_number("edge-fra-1"), node_number("edge-fra-2"));
        for name in ["0", "node-a", "", "99999999999"] {
            let n = node_number(name);
            assert!((1..1 << 24).contains(&n), "{name}: {n}");
        }
    }
}
