//! Which connection survives when a node pair ends up with two.
//!
//! Rule, applied by the accepting side once it has the initiator's hello (the
//! initiator only ever connects when it has nothing with that peer, pending or active):
//!
//! 1. Nothing with the peer: keep the incoming connection.
//! 2. An active connection to an earlier run of the peer (its hello had another
//!    instance): the peer restarted, the old connection is dead; the incoming replaces it.
//! 3. An active connection the peer itself initiated: the peer gave up on it (it would not
//!    have connected again otherwise); the incoming replaces it.
//! 4. Our own connection to the peer, pending or active (both nodes dialed at once): the
//!    connection initiated by the node whose name sorts first (bytewise) wins. If that is
//!    the peer, ours is abandoned and the incoming kept; otherwise the incoming is refused
//!    with the `duplicate` close code.
//!
//! Both nodes apply rule 4 to the same pair of connections and reach the same answer, and
//! the acceptor signals acceptance only by sending its hello, so the losing connection
//! never becomes active on either side and no message is sent on it.

/// What the accepting side currently has with the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// Our own outgoing attempt that has not completed.
    pub pending_outgoing: bool,
    /// The active connection, if any.
    pub active: Option<ActiveInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveInfo {
    pub initiated_locally: bool,
    pub peer_instance: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep the incoming connection; close the active one (if any) and abandon our
    /// pending attempt (if any).
    Accept,
    /// Close the incoming connection as a duplicate.
    Refuse,
}

pub fn decide_incoming(me: &str, peer: &str, peer_instance: u64, existing: Existing) -> Decision {
    let ours_conflicts = match existing.active {
        Some(a) if a.peer_instance != peer_instance => false,
        Some(a) => a.initiated_locally,
        None => existing.pending_outgoing,
    };
    if !ours_conflicts || peer.as_bytes() < me.as_bytes() {
        Decision::Accept
    } else {
        Decision::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Existing = Existing {
        pending_outgoing: false,
        active: None,
    };
    const PENDING: Existing = Existing {
        pending_outgoing: true,
        active: None,
    };

    fn active(initiated_locally: bool, peer_instance: u64) -> Existing {
        Existing {
            pending_outgoing: false,
            active: Some(ActiveInfo {
                initiated_locally,
                peer_instance,
            }),
        }
    }

    #[test]
    fn first_connection_is_kept() {
        assert_eq!(decide_incoming("b", "a", 1, NONE), Decision::Accept);
        assert_eq!(decide_incoming("a", "b", 1, NONE), Decision::Accept);
    }

    #[test]
    fn simultaneous_dials_agree_on_the_smaller_names_connection() {
        // a and b both dial. At b, a's connection arrives while b's own is pending: a's
        // wins. At a, b's arrives while a's own is pending: refused. Same survivor.
        assert_eq!(decide_incoming("b", "a", 1, PENDING), Decision::Accept);
        assert_eq!(decide_incoming("a", "b", 2, PENDING), Decision::Refuse);
        // Also when one side already activated its own before the other's arrived.
        assert_eq!(
            decide_incoming("a", "b", 2, active(true, 2)),
            Decision::Refuse
        );
        assert_eq!(
            decide_incoming("b", "a", 1, active(true, 1)),
            Decision::Accept
        );
    }

    #[test]
    fn a_restarted_peer_replaces_the_dead_connection() {
        // Whatever the names: a new instance means the old connection is dead.
        assert_eq!(
            decide_incoming("a", "b", 9, active(true, 2)),
            Decision::Accept
        );
        assert_eq!(
            decide_incoming("a", "b", 9, active(false, 2)),
            Decision::Accept
        );
    }

    #[test]
    fn a_peer_redialing_replaces_its_own_old_connection() {
        assert_eq!(
            decide_incoming("a", "b", 2, active(false, 2)),
            Decision::Accept
        );
    }

    #[test]
    fn names_compare_bytewise() {
        assert_eq!(decide_incoming("B", "a", 1, PENDING), Decision::Refuse);
        assert_eq!(decide_incoming("a", "B", 1, PENDING), Decision::Accept);
    }
}
