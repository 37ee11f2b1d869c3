//! What `GET /cluster` shows: every node this one knows of, with the state SWIM gives it.

use std::collections::BTreeMap;

use foca::{Member, State};

use crate::identity::{NodeId, NodeIdentity};

/// How this node currently sees another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    Alive,
    /// A probe went unanswered; the member is still treated as alive until it refutes
    /// the suspicion or is declared down.
    Suspect,
    /// Declared down. Shown until SWIM forgets it ([`super::SwimTuning::remove_down_after`]),
    /// or replaced at once when the node comes back under a newer generation.
    Down,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
        }
    }

    fn from_foca(s: State) -> Self {
        match s {
            State::Alive => Self::Alive,
            State::Suspect => Self::Suspect,
            State::Down => Self::Down,
        }
    }
}

/// One entry per node id other than `own`, ordered by id: the newest live identity
/// (alive or suspect), else the newest down one. A restart leaves the old generation
/// down beside the new one; only the node's current standing matters to an operator.
pub(super) fn member_view<'a>(
    members: impl Iterator<Item = &'a Member<NodeIdentity>>,
    own: NodeId,
) -> Vec<(NodeIdentity, MemberState)> {
    let mut by_id: BTreeMap<NodeId, (NodeIdentity, MemberState)> = BTreeMap::new();
    // Live beats down, then the newer generation beats the older.
    let rank = |id: &NodeIdentity, s: MemberState| (s != MemberState::Down, id.generation);
    for m in members {
        let id = m.id();
        // Our own past generations, and the placeholder announced to a seed by address.
        if id.id == own || id.id.0 == u64::MAX {
            continue;
        }
        let state = MemberState::from_foca(m.state());
        match by_id.get(&id.id) {
            Some((held, held_state)) if rank(held, *held_state) >= rank(id, state) => {}
            _ => {
                by_id.insert(id.id, (id.clone(), state));
            }
        }
    }
    by_id.into_values().collect()
}
