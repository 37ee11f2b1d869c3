//! Our certificate and the peer's expected fingerprint (RFC 8122 `a=fingerprint`).

use super::DtlsError;
use dtls::crypto::{Certificate, CryptoPrivateKey};
use ring::digest;

/// A self-signed certificate and its key. WebRTC authenticates certificates by the
/// fingerprint in the signaled SDP, never by a CA, so a fresh self-signed one is enough.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: Certificate,
    fingerprint_sha256: String,
}

impl std::fmt::Debug for DtlsIdentity {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .finish_non_exhaustive()
    }
}

impl DtlsIdentity {
    /// An ECDSA P-256 certificate, what browsers use and what every DTLS stack accepts.
    pub fn generate() -> Result<Self, DtlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        Self::self_signed(&key)
    }

    /// An Ed25519 certificate: a second key type for tests of the peer-certificate path.
    ///
    /// There is no `generate_rsa`: the `dtls` crate refuses RSA keys for its own
    /// certificate (`validate_config` allows only ECDSA P-256 and Ed25519) and rcgen's ring
    /// backend cannot generate RSA keys. RSA *peer* certificates are accepted by [`accept`]
    /// (tested against `openssl s_client`).
    ///
    /// [`accept`]: super::accept
    pub fn generate_ed25519() -> Result<Self, DtlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        Self::self_signed(&key)
    }

    fn self_signed(key: &rcgen::KeyPair) -> Result<Self, DtlsError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sluice");
        let cert = params
            .self_signed(key)
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        let private_key = CryptoPrivateKey::from_key_pair(key)
            .map_err(|e| DtlsError::Certificate(e.to_string()))?;
        let der = cert.der().to_owned();
        let fingerprint_sha256 = format_fingerprint(digest::digest(&digest::SHA256, &der).as_ref());
        Ok(Self {
            certificate: Certificate {
                certificate: vec![der],
                private_key,
            },
            fingerprint_sha256,
        })
    }

    /// SHA-256 of the certificate as SDP writes it: `AB:CD:...`, uppercase.
    pub fn fingerprint_sha256(&self) -> &str {
        &self.fingerprint_sha256
    }

    /// The fingerprint the peer must expect of us.
    pub fn expected_fingerprint(&self) -> ExpectedFingerprint {
        let der = self
            .certificate
            .certificate
            .first()
            .map(|c| c.as_ref())
            .unwrap_or_default();
        ExpectedFingerprint {
            algorithm: "sha-256".to_owned(),
            value: digest::digest(&digest::SHA256, der).as_ref().to_vec(),
        }
    }

    /// The DER certificate.
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate
            .certificate
            .first()
            .map(|c| c.as_ref())
            .unwrap_or_default()
    }

    pub(super) fn certificate(&self) -> &Certificate {
        &self.certificate
    }
}

/// The peer's certificate fingerprint from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFingerprint {
    /// Lowercase hash name: "sha-1", "sha-256", "sha-384" or "sha-512".
    pub algorithm: String,
    pub value: Vec<u8>,
}

impl ExpectedFingerprint {
    /// Parses an `a=fingerprint` value, e.g. `sha-256 AB:CD:...` (RFC 8122 section 5).
    pub fn parse(attribute: &str) -> Result<Self, DtlsError> {
        let bad = || DtlsError::BadFingerprint(attribute.chars().take(200).collect());
        let (algorithm, hex_value) = attribute.trim().split_once(' ').ok_or_else(bad)?;
        let algorithm = algorithm.to_ascii_lowercase();
        let value = hex_value
            .trim()
            .split(':')
            .map(|pair| {
                if pair.len() == 2 {
                    u8::from_str_radix(pair, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let fp = Self { algorithm, value };
        fp.validate()?;
        Ok(fp)
    }

    /// A known hash whose output length matches the value.
    pub fn validate(&self) -> Result<(), DtlsError> {
        let want = digest_algorithm(&self.algorithm)?.output_len();
        if self.value.len() != want {
            return Err(DtlsError::BadFingerprint(format!(
                "{} bytes of {}, expected {want}",
                self.value.len(),
                self.algorithm
            )));
        }
        Ok(())
    }

    /// True when `der` hashes to this fingerprint.
    pub fn matches(&self, der: &[u8]) -> Result<bool, DtlsError> {
        let algorithm = digest_algorithm(&self.algorithm)?;
        Ok(digest::digest(algorithm, der).as_ref() == self.value.as_slice())
    }
}

fn digest_algorithm(name: &str) -> Result<&'static digest::Algorithm, DtlsError> {
    match name.to_ascii_lowercase().as_str() {
        "sha-1" => Ok(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        "sha-256" => Ok(&digest::SHA256),
        "sha-384" => Ok(&digest::SHA384),
        "sha-512" => Ok(&digest::SHA512),
        other => Err(DtlsError::UnsupportedFingerprintAlgorithm(
            other.chars().take(32).collect(),
        )),
    }
}

/// Uppercase colon-separated hex, as `a=fingerprint` carries it.
pub fn format_fingerprint(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}
