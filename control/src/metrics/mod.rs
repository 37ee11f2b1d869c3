//! `GET /metrics`: the node's counters in the Prometheus text format (0.0.4), through
//! prometheus-client. Nothing is counted twice: the workers, links and cascade keep
//! their own lock-free counters, and a scrape copies them ([`gather`]) and writes them
//! out ([`encode`]). Every family is listed in the README's metrics section.

mod encode;
mod gather;

pub use encode::DROP_REASONS;
pub use gather::Scrape;

use crate::node::Shared;
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Scrape {
    /// The scrape as Prometheus text.
    pub fn render(self) -> String {
        let mut registry = Registry::with_prefix("sluice");
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// Copies every counter now and renders them. Blocks for up to a worker snapshot's
/// timeout: call it off the async threads.
pub fn scrape(shared: &Shared) -> String {
    Scrape::gather(shared).render()
}
