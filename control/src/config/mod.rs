//! The node's configuration: built-in defaults, then a TOML file (`--config`), then
//! command-line flags, each overriding the one before. With nothing given the node runs
//! for local use: HTTP on 127.0.0.1:8080, media on loopback, no auth.
//!
//! Every key is listed in `docs/configuration.md`; a test keeps the two in step.

mod args;
mod error;
mod logging;
mod validate;

#[cfg(test)]
mod tests;

pub use args::NodeArgs;
pub use error::ConfigError;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The whole configuration of one node. `Default` is the no-configuration local setup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub http: HttpSection,
    pub media: MediaSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub log: LogSection,
    pub cluster: ClusterSection,
    pub placement: crate::placement::PlacementSection,
    pub drain: DrainSection,
}

/// Graceful drain (`sluice drain`, SIGTERM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainSection {
    /// A drain ends after this long even if clients are still connected.
    pub deadline_secs: u64,
}

impl Default for DrainSection {
    fn default() -> Self {
        Self { deadline_secs: 60 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// This node's name in the cluster. `NodeConfig::load` fills in a random one when
    /// none is configured, so after loading it is always `Some`.
    pub id: Option<String>,
    /// Region label, used by placement to prefer nearby nodes.
    pub region: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            id: None,
            region: "local".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address of the signaling/API server.
    pub listen: SocketAddr,
    /// Origins browsers may call the API from; `"*"` alone allows any.
    pub cors_origins: Vec<String>,
    /// Base URL of the `Location` headers handed to clients, for a node behind a proxy
    /// or NAT; `None` means `http://<listen>`.
    pub public_url: Option<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            cors_origins: vec!["*".to_owned()],
            public_url: None,
        }
    }
}

/// The media plane's I/O driver (mirrors `sluice_dataplane::driver::DriverKind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring when the kernel offers it, recvmmsg/sendmmsg otherwise.
    #[default]
    Auto,
    /// io_uring or fail at start.
    Uring,
    /// recvmmsg/sendmmsg.
    Mmsg,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// The one UDP port all media uses (shared by the workers). Port 0 picks one.
    pub bind: SocketAddr,
    /// Addresses offered to clients as ICE candidates, each with the bind port. Empty
    /// means the bind address itself, which only works when it is a specific address:
    /// `validate` requires this list when `bind` is unspecified (0.0.0.0 or ::).
    pub announce: Vec<IpAddr>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Pin worker `i` to the `i`-th core of the process's allowed CPU set.
    pub pin_cores: bool,
    pub driver: Driver,
    /// SO_RCVBUF/SO_SNDBUF of each worker socket, in bytes.
    pub socket_buffer: usize,
    /// Benchmark reference only: publishers' SRTP is copied unchanged to their
    /// subscribers, who cannot decrypt it (`RouterConfig::null_media`).
    pub null_forward: bool,
}

/// The driver's own default socket buffer (4 MiB).
pub const DEFAULT_SOCKET_BUFFER: usize = 4 << 20;

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 50000)),
            announce: Vec::new(),
            workers: 0,
            pin_cores: false,
            driver: Driver::Auto,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            null_forward: false,
        }
    }
}

/// Keys that verify client tokens. None at all means open mode: no token is required.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Shared secrets for HS256 tokens, each either the secret itself or `@/path` to
    /// read it from a file (one trailing newline stripped).
    pub hs256_secrets: Vec<String>,
    /// Ed25519 public keys for EdDSA tokens: paths of PEM files (SubjectPublicKeyInfo),
    /// or the PEM text itself.
    pub eddsa_public_keys: Vec<String>,
}

// Secrets stay out of logs and panic messages.
impl fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSection")
            .field(
                "hs256_secrets",
                &format_args!("[{} redacted]", self.hs256_secrets.len()),
            )
            .field("eddsa_public_keys", &self.eddsa_public_keys)
            .finish()
    }
}

impl AuthSection {
    /// True when no key is configured (open mode).
    pub fn is_empty(&self) -> bool {
        self.hs256_secrets.is_empty() && self.eddsa_public_keys.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Sessions (publishers plus subscribers) this node accepts; more get 503.
    pub max_sessions: usize,
    /// STUN checks and DTLS handshakes per second per worker from remotes not yet
    /// validated.
    pub handshake_rate: u32,
    /// A session with no valid ICE check for this long is closed (RFC 7675 consent).
    pub consent_timeout_secs: u64,
    /// A DTLS handshake must finish within this.
    pub dtls_timeout_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_sessions: 1000,
            handshake_rate: 2000,
            consent_timeout_secs: 30,
            dtls_timeout_secs: 10,
        }
    }
}

/// Congestion control of the links to other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LinkCongestion {
    /// BBR: a model of bottleneck bandwidth and round-trip time.
    #[default]
    Bbr,
    Cubic,
}

/// Joining other nodes into one cascade. Off (a single node) unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// UDP address of this node's QUIC link endpoint; other nodes connect here.
    pub listen: Option<SocketAddr>,
    /// Link addresses of nodes to join through (any live member will do).
    pub seeds: Vec<SocketAddr>,
    /// The cluster CA's certificate (PEM); peers must present a certificate it signed.
    pub ca_cert: Option<PathBuf>,
    /// This node's certificate (PEM), issued by the cluster CA for `node.id`
    /// (`sluice ca issue`).
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key: Option<PathBuf>,
    pub congestion: LinkCongestion,
    /// Reach the member announcing link address K at address V instead (NAT, a
    /// dedicated interconnect, or an impairment relay in tests).
    pub dial: std::collections::BTreeMap<SocketAddr, SocketAddr>,
}

impl ClusterSection {
    pub fn enabled(&self) -> bool {
        self.listen.is_some()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter: a level (`info`) or directives (`info,sluice_control=debug`).
    /// `RUST_LOG`, when set, takes precedence.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            // The dtls crate warns about every TLS 1.3 extension in a browser's ClientHello.
            level: "info,dtls=error".to_owned(),
        }
    }
}

impl NodeConfig {
    /// Defaults, overridden by the file named by `--config` (if any), overridden by the
    /// other flags; then a node id is chosen if none was given, and the result is
    /// validated.
    pub fn load(args: &NodeArgs) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        args.apply(&mut config);
        if config.node.id.is_none() {
            config.node.id = Some(random_node_id());
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file (without validating it).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text (without validating it). Unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        // The path tracker names the full key (`media.workers`); toml's own message
        // gives the line and column.
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            ConfigError::Parse {
                path: "<config>".into(),
                message: if key == "." {
                    message
                } else {
                    format!("{key}: {message}")
                },
            }
        })
    }
}

fn random_node_id() -> String {
    format!("node-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}
