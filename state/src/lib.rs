//! Sluice replicated state: membership (SWIM) and per-room CRDT documents, sans-IO.
