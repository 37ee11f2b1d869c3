//! `sluice status`: the cluster as one node sees it. The node answers `GET /status` with
//! a [`Status`] document (members, load, links, routes, rooms); the CLI fetches it and
//! prints it as tables, or as the JSON itself.

mod collect;
mod render;
pub mod view;

pub use collect::status;
pub use render::render;
pub use view::Status;

use anyhow::Context;
use std::time::Duration;

/// A node that takes longer than this to answer is as good as unreachable to an
/// operator at a terminal.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The status document from the node at `base_url` (its HTTP base URL), as the raw
/// JSON text and parsed.
pub async fn fetch(base_url: &str) -> anyhow::Result<(String, Status)> {
    let url = format!("{}/status", base_url.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .context("cannot set up the HTTP client")?;
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the node at {url}"))?;
    let code = resp.status();
    let body = resp
        .text()
        .await
        .with_context(|| format!("reading the answer from {url}"))?;
    if !code.is_success() {
        anyhow::bail!("{url} answered {code}: {}", body.trim());
    }
    let parsed = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer a status document"))?;
    Ok((body, parsed))
}

/// What `sluice status` prints: the tables, or with `json` the document pretty-printed.
pub fn run_command(base_url: &str, json: bool) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (raw, status) = rt.block_on(fetch(base_url))?;
    if json {
        // The node's own document, fields this CLI does not know included.
        let value: serde_json::Value =
            serde_json::from_str(&raw).context("the status document is not JSON")?;
        serde_json::to_string_pretty(&value).context("cannot print the status as JSON")
    } else {
        Ok(render(&status))
    }
}
