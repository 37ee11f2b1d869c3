//! Shared fixtures for Sluice's benchmarks.
