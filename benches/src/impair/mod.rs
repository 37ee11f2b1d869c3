//! A link impairment relay for tests and benchmarks: delay, jitter, random loss and a
//! rate limit in user space, since this machine has no netem qdisc.
//!
//! - [`queue`]: one direction's model, sans-IO and virtual-time tested.
//! - [`relay`]: a UDP relay thread applying a queue to each direction.

pub mod queue;
pub mod relay;

pub use queue::{ImpairQueue, Impairment, QueueStats, Verdict};
pub use relay::{Relay, RelayConfig, RelayStats};
