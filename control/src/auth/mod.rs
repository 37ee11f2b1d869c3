//! Who may publish and subscribe: Bearer tokens (JWT, HS256 or EdDSA/Ed25519) naming a
//! room and granting publish and/or subscribe. With no key configured the node is open:
//! every request is allowed (and the node warns at start).

mod authenticator;
mod keys;
mod token;

#[cfg(test)]
mod tests;

pub use authenticator::Authenticator;
pub use keys::generate_ed25519_keypair;
pub use token::{MintKey, TokenArgs, mint, run_token_command};

use serde::{Deserialize, Serialize};

/// The room a token names when it is good for every room.
pub const ANY_ROOM: &str = "*";

/// What a request wants to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

/// A token's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to; logged, not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The room the token is good for; `"*"` for any room.
    pub room: String,
    #[serde(default)]
    pub publish: bool,
    #[serde(default)]
    pub subscribe: bool,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

impl Claims {
    /// Whether these claims allow `action` in `room`, and if not, why.
    pub fn permits(&self, room: &str, action: Action) -> Result<(), AuthError> {
        if self.room != ANY_ROOM && self.room != room {
            return Err(AuthError::Forbidden(format!(
                "the token is for room {:?}, not {room:?}",
                self.room
            )));
        }
        let (granted, what) = match action {
            Action::Publish => (self.publish, "publish"),
            Action::Subscribe => (self.subscribe, "subscribe"),
        };
        if !granted {
            return Err(AuthError::Forbidden(format!(
                "the token does not grant {what}"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all (401).
    #[error("a Bearer token is required")]
    Missing,
    /// Credentials that do not verify: malformed, wrong key, expired (401).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A valid token that does not cover this room or action (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::Invalid(_) => 401,
            Self::Forbidden(_) => 403,
        }
    }
}
