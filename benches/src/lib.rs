//! Shared fixtures for Sluice's benchmarks.

pub mod fixtures;
