use std::path::PathBuf;

/// Why a configuration was refused. Each message names the file or the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown key, or a value of the wrong type. `message` is the
    /// parser's, with the line and the offending key.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A well-typed value that makes no sense; `key` is its dotted path
    /// (`media.announce`, `auth.hs256_secrets[1]`).
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
