//! The cluster CA: one self-signed ECDSA P-256 certificate whose key signs every node's
//! link certificate. A node trusts exactly this CA for links (never the system roots), so
//! holding a certificate from it is what makes a process a member of the cluster.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::name::{check_node_name, node_dns_name};

/// File names inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a CA made by `sluice ca init` is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a node certificate is valid unless asked otherwise.
pub const NODE_VALIDITY_DAYS: i64 = 825;
/// Ephemeral CAs live as long as the development cluster that made them; a week is
/// plenty and bounds the damage of a key left in a temporary directory.
const EPHEMERAL_VALIDITY_DAYS: i64 = 7;
/// Certificates start a little in the past so a peer whose clock lags still accepts them.
const BACKDATE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{} already exists; not overwriting", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The CA certificate and its signing key.
pub struct ClusterCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The certificate exactly as distributed (`ca.pem`); for a loaded CA this is the
    /// file's, not rcgen's re-encoding, so the trust anchor is byte-identical everywhere.
    cert_der: CertificateDer<'static>,
    validity_days: i64,
}

impl std::fmt::Debug for ClusterCa {
    // The signing key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new CA valid for [`CA_VALIDITY_DAYS`].
    pub fn generate() -> Result<Self, CaError> {
        Self::new("sluice cluster CA", CA_VALIDITY_DAYS)
    }

    /// A CA made in memory by a local development cluster: nothing is written unless the
    /// caller saves it, and it expires after a week.
    pub fn ephemeral() -> Result<Self, CaError> {
        Self::new("sluice ephemeral CA", EPHEMERAL_VALIDITY_DAYS)
    }

    fn new(common_name: &str, days: i64) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        // A random suffix keeps two CAs' subjects apart, so a chain from one can never
        // be mistaken for a chain from the other during path building.
        dn.push(
            DnType::OrganizationName,
            format!("sluice {:016x}", rand::random::<u64>()),
        );
        params.distinguished_name = dn;
        // Path length 0: the CA signs node certificates only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(days);
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        Ok(Self {
            cert,
            key,
            cert_der,
            validity_days: NODE_VALIDITY_DAYS.min(days),
        })
    }

    /// Loads `dir/ca.pem` and `dir/ca.key`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_error(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
        let bad_cert = |reason: String| CaError::BadFile {
            path: cert_path.clone(),
            reason,
        };
        let cert_der = single_pem_cert(&cert_pem).map_err(bad_cert)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::BadFile {
            path: key_path.clone(),
            reason: format!("not a private key: {e}"),
        })?;
        let params = CertificateParams::from_ca_cert_der(&cert_der)
            .map_err(|e| bad_cert(format!("not a CA certificate: {e}")))?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(bad_cert("not a CA certificate".to_owned()));
        }
        // rcgen only uses `params` as the issuer (subject name, key identifier) when
        // signing; re-signing it here never leaves this process.
        let cert = params.self_signed(&key)?;
        // webpki links a node certificate to its CA by comparing the encoded names byte
        // for byte, so the issuer we write must be the file's subject exactly.
        if raw_subject(cert.der()) != raw_subject(&cert_der) {
            return Err(bad_cert(
                "its subject name does not survive re-encoding; issue from a CA made by `sluice ca init`"
                    .to_owned(),
            ));
        }
        if !public_key_matches(&cert_der, &key) {
            return Err(CaError::BadFile {
                path: key_path,
                reason: format!("this key does not belong to {}", cert_path.display()),
            });
        }
        Ok(Self {
            cert,
            key,
            cert_der,
            validity_days: NODE_VALIDITY_DAYS,
        })
    }

    /// Writes `dir/ca.pem` (0644) and `dir/ca.key` (0600), creating `dir` (0700) if
    /// needed. Refuses if either file exists: overwriting a CA would orphan every node
    /// certificate it signed.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        create_dir(dir)?;
        refuse_existing(&[&cert_path, &key_path])?;
        write_new(&key_path, self.key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, self.cert_pem().as_bytes(), 0o644)
    }

    /// The CA certificate (the trust anchor every node is given).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// Issues a certificate for node `name`, valid for both ends of a link (TLS server
    /// and client auth), with SAN `<name>.sluice.internal`.
    pub fn issue(&self, name: &str) -> Result<NodeCert, CaError> {
        self.issue_for_days(name, self.validity_days)
    }

    /// As [`issue`](Self::issue), valid for `days` days from now.
    pub fn issue_for_days(&self, name: &str, days: i64) -> Result<NodeCert, CaError> {
        check_node_name(name).map_err(CaError::InvalidName)?;
        if days <= 0 {
            return Err(CaError::InvalidName(format!(
                "validity must be at least one day, not {days}"
            )));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![node_dns_name(name)])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(days);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(NodeCert {
            name: name.to_owned(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// A node's link certificate and private key.
pub struct NodeCert {
    name: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for NodeCert {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Clone for NodeCert {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl NodeCert {
    /// Loads `dir/<name>.pem` and `dir/<name>.key` as written by [`save`](Self::save).
    /// The name is read back from the certificate; the chain is checked when a link
    /// uses it, not here.
    pub fn load(dir: &Path, name: &str) -> Result<Self, CaError> {
        check_node_name(name).map_err(CaError::InvalidName)?;
        let (cert_path, key_path) = Self::paths(dir, name);
        Self::load_files(&cert_path, &key_path)
    }

    /// Loads a certificate and key from any two PEM files.
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = fs::read_to_string(cert_path).map_err(io_error(cert_path))?;
        let key_pem = fs::read_to_string(key_path).map_err(io_error(key_path))?;
        let cert_der = single_pem_cert(&cert_pem).map_err(|reason| CaError::BadFile {
            path: cert_path.to_owned(),
            reason,
        })?;
        let name = super::name::node_name_from_cert(&cert_der).ok_or_else(|| CaError::BadFile {
            path: cert_path.to_owned(),
            reason: format!(
                "no *{} name: not a node certificate",
                super::NODE_DNS_SUFFIX
            ),
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::BadFile {
            path: key_path.to_owned(),
            reason: format!("not a private key: {e}"),
        })?;
        if !public_key_matches(&cert_der, &key) {
            return Err(CaError::BadFile {
                path: key_path.to_owned(),
                reason: format!("this key does not belong to {}", cert_path.display()),
            });
        }
        Ok(Self {
            name,
            cert_der,
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// Writes `dir/<name>.pem` (0644) and `dir/<name>.key` (0600), creating `dir` (0700)
    /// if needed; refuses to overwrite either. Returns the two paths.
    pub fn save(&self, dir: &Path) -> Result<(PathBuf, PathBuf), CaError> {
        let (cert_path, key_path) = Self::paths(dir, &self.name);
        create_dir(dir)?;
        refuse_existing(&[&cert_path, &key_path])?;
        write_new(&key_path, self.key_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, self.cert_pem().as_bytes(), 0o644)?;
        Ok((cert_path, key_path))
    }

    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }

    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    pub fn key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", self.key_der.secret_pkcs8_der())
    }
}

/// Reads a CA certificate (the trust anchor alone) from a PEM file.
pub fn load_ca_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let pem = fs::read_to_string(path).map_err(io_error(path))?;
    single_pem_cert(&pem).map_err(|reason| CaError::BadFile {
        path: path.to_owned(),
        reason,
    })
}

fn single_pem_cert(pem: &str) -> Result<CertificateDer<'static>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!("PEM block is {:?}, not CERTIFICATE", block.label));
    }
    x509_parser::parse_x509_certificate(&block.contents)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(CertificateDer::from(block.contents))
}

fn raw_subject(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.tbs_certificate.subject.as_raw().to_vec())
}

fn public_key_matches(cert_der: &[u8], key: &KeyPair) -> bool {
    x509_parser::parse_x509_certificate(cert_der)
        .map(|(_, cert)| cert.public_key().raw == key.public_key_der().as_slice())
        .unwrap_or(false)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CaError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CaError::Exists((*p).to_owned())),
        None => Ok(()),
    }
}

/// `create_new` makes the no-overwrite rule hold even against a racing writer, and the
/// mode is set at creation, so a key is never readable by others, not even briefly.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CaError::Exists(path.to_owned()),
            _ => io_error(path)(e),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
