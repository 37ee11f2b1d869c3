//! Helpers for Sluice's integration tests (multi-node clusters, real clients).
