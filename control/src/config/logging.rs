use super::{LogFormat, NodeConfig};
use tracing_subscriber::EnvFilter;

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
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
    }
}
