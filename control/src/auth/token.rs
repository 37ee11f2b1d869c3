//! Minting tokens: the `sluice token` command and a function for tests and tools.

use super::keys::{secret_bytes, write_ed25519_keypair};
use super::{AuthError, Claims};
use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// A key to sign tokens with.
#[derive(Clone)]
pub enum MintKey {
    /// The shared secret itself (raw bytes).
    Hs256(Vec<u8>),
    /// An Ed25519 private key, PKCS#8 PEM text.
    EdDsa(Vec<u8>),
}

impl fmt::Debug for MintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            Self::EdDsa(_) => f.write_str("EdDsa(<redacted>)"),
        }
    }
}

/// Signs `claims` into a JWT.
pub fn mint(key: &MintKey, claims: &Claims) -> Result<String, AuthError> {
    let (alg, encoding) = match key {
        MintKey::Hs256(secret) => {
            if secret.is_empty() {
                return Err(AuthError::Invalid("empty HS256 secret".to_owned()));
            }
            (Algorithm::HS256, EncodingKey::from_secret(secret))
        }
        MintKey::EdDsa(pem) => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(pem)
                .map_err(|e| AuthError::Invalid(format!("not an Ed25519 private key PEM: {e}")))?,
        ),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &encoding)
        .map_err(|e| AuthError::Invalid(format!("cannot sign the token: {e}")))
}

/// `sluice token`: mint a token for a room, or generate an EdDSA key pair.
#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("key")
        .required(true)
        .args(["hs256_secret", "eddsa_key", "generate_eddsa_key"])
))]
pub struct TokenArgs {
    /// Sign with this HS256 secret, or @FILE to read it from a file (as the node's
    /// auth.hs256_secrets).
    #[arg(long, value_name = "SECRET")]
    pub hs256_secret: Option<String>,
    /// Sign with this Ed25519 private key (PKCS#8 PEM file), as EdDSA.
    #[arg(long, value_name = "PEM")]
    pub eddsa_key: Option<PathBuf>,
    /// Instead of a token, write a new Ed25519 key pair: the private key to FILE (mode
    /// 0600) and the public key to FILE.pub (for the node's auth.eddsa_public_keys).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["room", "publish", "subscribe", "sub"])]
    pub generate_eddsa_key: Option<PathBuf>,
    /// The room the token is good for ("*" for any room).
    #[arg(long, required_unless_present = "generate_eddsa_key")]
    pub room: Option<String>,
    /// Grant publishing (WHIP).
    #[arg(long)]
    pub publish: bool,
    /// Grant subscribing (WHEP).
    #[arg(long)]
    pub subscribe: bool,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,
    /// Subject: who the token is for (shows in the node's logs).
    #[arg(long)]
    pub sub: Option<String>,
}

/// Runs `sluice token`; returns what to print on stdout: the token, or with
/// `--generate-eddsa-key` a line saying where the keys went.
pub fn run_token_command(args: &TokenArgs) -> anyhow::Result<String> {
    if let Some(private) = &args.generate_eddsa_key {
        let public = write_ed25519_keypair(private)?;
        return Ok(format!(
            "private key: {} (sign with `sluice token --eddsa-key {}`)\n\
             public key:  {} (give the node `--eddsa-public-key {}`)",
            private.display(),
            private.display(),
            public.display(),
            public.display()
        ));
    }
    let room = args
        .room
        .as_deref()
        .filter(|r| !r.is_empty())
        .context("--room is required (\"*\" for any room)")?;
    anyhow::ensure!(
        args.publish || args.subscribe,
        "the token would grant nothing: add --publish and/or --subscribe"
    );
    anyhow::ensure!(args.ttl > 0, "--ttl must be at least 1 second");
    let key = if let Some(spec) = &args.hs256_secret {
        MintKey::Hs256(secret_bytes(spec).map_err(|r| anyhow::anyhow!("--hs256-secret: {r}"))?)
    } else if let Some(path) = &args.eddsa_key {
        MintKey::EdDsa(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
    } else {
        anyhow::bail!("give --hs256-secret or --eddsa-key");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = Claims {
        sub: args.sub.clone(),
        room: room.to_owned(),
        publish: args.publish,
        subscribe: args.subscribe,
        exp: now.saturating_add(args.ttl),
        nbf: None,
    };
    Ok(mint(&key, &claims)?)
}
