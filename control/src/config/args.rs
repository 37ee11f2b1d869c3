use super::{Driver, LogFormat, NodeConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// `sluice node` flags. Each overrides the matching key of the file; a repeatable flag,
/// when given, replaces the file's whole list.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeArgs {
    /// TOML configuration file (docs/configuration.md lists every key).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// http.listen: address of the HTTP signaling server.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// media.bind: the UDP media address (one port for all media).
    #[arg(long, value_name = "ADDR")]
    pub media_bind: Option<SocketAddr>,
    /// media.announce: an address offered as ICE candidate (repeatable).
    #[arg(long, value_name = "IP")]
    pub announce: Vec<IpAddr>,
    /// media.workers: media worker threads, 0 = one per core.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// media.pin_cores: pin each worker to its own core (`--pin-cores=false` to turn off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub pin_cores: Option<bool>,
    /// media.driver: the media I/O driver.
    #[arg(long, value_enum)]
    pub driver: Option<Driver>,
    /// media.null_forward: benchmark reference only; subscribers get the publishers'
    /// SRTP unchanged and cannot decrypt it.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub null_forward: Option<bool>,
    /// node.region: this node's region label.
    #[arg(long)]
    pub region: Option<String>,
    /// node.id: this node's name (default: random).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// auth.hs256_secrets: an HS256 secret, or @FILE to read it from a file (repeatable).
    #[arg(long, value_name = "SECRET")]
    pub hs256_secret: Vec<String>,
    /// auth.eddsa_public_keys: an Ed25519 public key PEM file (repeatable).
    #[arg(long, value_name = "PEM")]
    pub eddsa_public_key: Vec<String>,
    /// limits.max_sessions: sessions accepted before answering 503.
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// log.format: text or json.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// log.level: tracing filter (RUST_LOG overrides it).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// `*target = value` when the flag was given.
fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

/// The list is replaced, not extended, so a flag can drop what the file lists.
fn set_list<T: Clone>(target: &mut Vec<T>, values: &[T]) {
    if !values.is_empty() {
        *target = values.to_vec();
    }
}

impl NodeArgs {
    /// Writes every given flag over `config`.
    pub fn apply(&self, config: &mut NodeConfig) {
        set(&mut config.http.listen, &self.http_listen);
        set(&mut config.media.bind, &self.media_bind);
        set_list(&mut config.media.announce, &self.announce);
        set(&mut config.media.workers, &self.workers);
        set(&mut config.media.pin_cores, &self.pin_cores);
        set(&mut config.media.driver, &self.driver);
        set(&mut config.media.null_forward, &self.null_forward);
        set(&mut config.node.region, &self.region);
        if self.node_id.is_some() {
            config.node.id = self.node_id.clone();
        }
        set_list(&mut config.auth.hs256_secrets, &self.hs256_secret);
        set_list(&mut config.auth.eddsa_public_keys, &self.eddsa_public_key);
        set(&mut config.limits.max_sessions, &self.max_sessions);
        set(&mut config.log.format, &self.log_format);
        set(&mut config.log.level, &self.log_level);
    }
}
