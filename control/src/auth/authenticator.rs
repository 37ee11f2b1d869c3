use super::keys::{pem_bytes, secret_bytes};
use super::{Action, AuthError, Claims};
use crate::config::{AuthSection, ConfigError};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::fmt;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// RFC 7518 3.2: an HS256 key should be at least as long as the hash.
const MIN_HS256_SECRET: usize = 32;

/// Verifies Bearer tokens against the configured keys; with none, allows everything.
pub struct Authenticator {
    hs256: Vec<DecodingKey>,
    eddsa: Vec<DecodingKey>,
    hs256_validation: Validation,
    eddsa_validation: Validation,
}

// Keys stay out of logs.
impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256_keys", &self.hs256.len())
            .field("eddsa_keys", &self.eddsa.len())
            .finish()
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v
}

impl Authenticator {
    /// Reads every configured key (secret files, PEM files) now, so a bad one stops the
    /// node at start rather than failing every request.
    pub fn from_config(section: &AuthSection) -> Result<Self, ConfigError> {
        let mut hs256 = Vec::with_capacity(section.hs256_secrets.len());
        for (i, spec) in section.hs256_secrets.iter().enumerate() {
            let key = format!("auth.hs256_secrets[{i}]");
            let secret = secret_bytes(spec).map_err(|r| ConfigError::invalid(&key, r))?;
            if secret.len() < MIN_HS256_SECRET {
                tracing::warn!(
                    key,
                    bytes = secret.len(),
                    "HS256 secret is shorter than {MIN_HS256_SECRET} bytes and easier to guess"
                );
            }
            hs256.push(DecodingKey::from_secret(&secret));
        }
        let mut eddsa = Vec::with_capacity(section.eddsa_public_keys.len());
        for (i, spec) in section.eddsa_public_keys.iter().enumerate() {
            let key = format!("auth.eddsa_public_keys[{i}]");
            let pem = pem_bytes(spec).map_err(|r| ConfigError::invalid(&key, r))?;
            let decoding = DecodingKey::from_ed_pem(&pem).map_err(|e| {
                ConfigError::invalid(&key, format!("not an Ed25519 public key PEM: {e}"))
            })?;
            eddsa.push(decoding);
        }
        Ok(Self {
            hs256,
            eddsa,
            hs256_validation: validation(Algorithm::HS256),
            eddsa_validation: validation(Algorithm::EdDSA),
        })
    }

    /// No keys configured: every request is allowed without a token.
    pub fn open() -> Self {
        Self {
            hs256: Vec::new(),
            eddsa: Vec::new(),
            hs256_validation: validation(Algorithm::HS256),
            eddsa_validation: validation(Algorithm::EdDSA),
        }
    }

    pub fn is_open(&self) -> bool {
        self.hs256.is_empty() && self.eddsa.is_empty()
    }

    /// Checks the `Authorization` header of a request to do `action` in `room`. Open
    /// mode allows anything and returns `None`; otherwise the verified claims.
    pub fn authorize(
        &self,
        authorization_header: Option<&str>,
        room: &str,
        action: Action,
    ) -> Result<Option<Claims>, AuthError> {
        if self.is_open() {
            return Ok(None);
        }
        let token = bearer_token(authorization_header)?;
        let claims = self.verify(token)?;
        claims.permits(room, action)?;
        Ok(Some(claims))
    }

    /// Verifies a token's signature (against every key of its algorithm), expiry and
    /// not-before, and returns its claims. Grants are not checked here.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        let (keys, validation) = match header.alg {
            Algorithm::HS256 => (&self.hs256, &self.hs256_validation),
            Algorithm::EdDSA => (&self.eddsa, &self.eddsa_validation),
            other => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {other:?} is not accepted (HS256 or EdDSA)"
                )));
            }
        };
        if keys.is_empty() {
            return Err(AuthError::Invalid(format!(
                "no {:?} keys are configured on this node",
                header.alg
            )));
        }
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => return Ok(data.claims),
                // Signed with another key, maybe the next one (key rotation).
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                // The signature checked out (it is verified first), the claims did not.
                Err(e) => return Err(AuthError::Invalid(describe(&e))),
            }
        }
        Err(AuthError::Invalid(
            "the signature matches no configured key".to_owned(),
        ))
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired".to_owned(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".to_owned(),
        ErrorKind::Json(j) => format!("bad claims: {j}"),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c:?}"),
        _ => e.to_string(),
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235). No header, or a
/// blank one, is `Missing`; anything else that is not a Bearer token is `Invalid`.
fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::Missing)?;
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Invalid(
            "the Authorization scheme must be Bearer".to_owned(),
        ));
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(AuthError::Invalid("empty Bearer token".to_owned()));
    }
    Ok(token)
}
