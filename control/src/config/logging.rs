//! The node's log: text for people reading one node, JSON for a search over every
//! node's logs at once. Lines about a stream or a session carry the same fields on every
//! node, so one search follows a stream from its publisher's node across every link to
//! its subscribers:
//! - `room`: the room name;
//! - `stream`: the stream's cluster-wide id, its global track id as 16 hex digits
//!   ([`crate::cascade::catalog::StreamId`]); `streams`: several, comma-separated;
//! - `session`: the WHIP/WHEP resource id (the end of the client's resource URL);
//! - `publisher`: the publisher id subscribers name;
//! - `to`, `home`, `via`: the node a stream is sent to, was published on, is relayed by.
//!
//! Every JSON line also carries `node`, this node's `node.id`, so merged logs say where
//! each line was written.

use super::{LogFormat, NodeConfig};
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::registry::LookupSpan;

impl NodeConfig {
    /// Installs the global tracing subscriber (to stderr): `log.format`, filtered by
    /// `RUST_LOG` when set, by `log.level` otherwise. Does nothing if a subscriber is
    /// already installed (tests, or a second call).
    pub fn init_logging(&self) {
        let filter = match std::env::var("RUST_LOG") {
            Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(&env).unwrap_or_else(|e| {
                // No subscriber yet to log through.
                eprintln!("sluice: ignoring RUST_LOG ({e}); using log.level");
                EnvFilter::new(&self.log.level)
            }),
            _ => EnvFilter::new(&self.log.level),
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        // Err only means a subscriber is already set; the first one stays.
        let _ = match self.log.format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder
                .fmt_fields(format::JsonFields::new())
                .event_format(WithNode::new(
                    self.node.id.as_deref(),
                    format().json().flatten_event(true),
                ))
                .try_init(),
        };
    }
}

/// A JSON event format with `"node": <name>` first on every line.
#[derive(Debug)]
struct WithNode<F> {
    /// `"node":"<name>",`, escaped once; empty without a name.
    field: String,
    inner: F,
}

impl<F> WithNode<F> {
    fn new(node: Option<&str>, inner: F) -> Self {
        let field = node
            .and_then(|n| serde_json::to_string(n).ok())
            .map_or_else(String::new, |n| format!("\"node\":{n},"));
        Self { field, inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithNode<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) if !self.field.is_empty() => {
                writer.write_char('{')?;
                writer.write_str(&self.field)?;
                writer.write_str(rest)
            }
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    fn lines(node: Option<&str>) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .fmt_fields(format::JsonFields::new())
            .event_format(WithNode::new(node, format().json().flatten_event(true)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(room = "r", stream = "000000000000002a", "stream published");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_json_line_names_its_node() {
        let got = lines(Some("edge \"1\""));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["node"], "edge \"1\"");
        assert_eq!(got[0]["room"], "r");
        assert_eq!(got[0]["stream"], "000000000000002a");
        assert_eq!(got[0]["message"], "stream published");
    }

    #[test]
    fn no_name_no_field() {
        let got = lines(None);
        assert_eq!(got.len(), 1);
        assert!(got[0].get("node").is_none());
        assert_eq!(got[0]["room"], "r");
    }
}
