//! Counters a node exposes for metrics and tests. Every dropped input lands here.

/// Monotonic counters since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_in: u64,
    pub streams_in: u64,
    pub bytes_in: u64,
    pub transmits_out: u64,
    pub bytes_out: u64,
    /// Failed authentication: never parsed, never applied.
    pub dropped_unauthenticated: u64,
    /// Authenticated but undecodable or over a size limit.
    pub dropped_malformed: u64,
    /// Foca refused the SWIM payload (stale, from ourselves, wrong destination...).
    pub swim_rejected: u64,
    /// Automerge refused a sync message.
    pub room_sync_rejected: u64,
    pub room_sync_applied: u64,
    pub rooms_dropped: u64,
    pub participants_removed_on_down: u64,
    pub records_reasserted: u64,
    /// Epochs this node started by compacting a room's history.
    pub room_compactions: u64,
    /// Newer epochs received from peers and installed.
    pub room_epochs_adopted: u64,
    pub load_reports_received: u64,
    pub events_overflowed: u64,
}
