//! Key material as operators give it: secrets inline or `@/path`, PEM files.

use anyhow::Context;
use std::path::Path;

/// An HS256 secret from its configured form: the secret itself, or `@/path` to read it
/// from a file (one trailing newline stripped, as editors and `echo` add one).
pub(crate) fn secret_bytes(spec: &str) -> Result<Vec<u8>, String> {
    let bytes = match spec.strip_prefix('@') {
        Some(path) => {
            let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            bytes
        }
        None => spec.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        return Err("empty secret".to_owned());
    }
    Ok(bytes)
}

/// PEM text from a path, or the PEM text itself when it already is one.
pub(crate) fn pem_bytes(spec: &str) -> Result<Vec<u8>, String> {
    if spec.trim_start().starts_with("-----BEGIN") {
        return Ok(spec.as_bytes().to_vec());
    }
    std::fs::read(spec).map_err(|e| format!("cannot read {spec}: {e}"))
}

/// A fresh Ed25519 key pair for EdDSA tokens: (private key as PKCS#8 PEM, public key as
/// SubjectPublicKeyInfo PEM). The private key signs (`sluice token --eddsa-key`), the
/// public one goes in `auth.eddsa_public_keys`.
pub fn generate_ed25519_keypair() -> anyhow::Result<(String, String)> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .context("generating an Ed25519 key pair")?;
    Ok((pair.serialize_pem(), pair.public_key_pem()))
}

/// Writes a new key pair to `private` (mode 0600, never over an existing file) and
/// `private` + ".pub"; returns the public key's path.
pub(crate) fn write_ed25519_keypair(private: &Path) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let (private_pem, public_pem) = generate_ed25519_keypair()?;
    let mut public = private.as_os_str().to_owned();
    public.push(".pub");
    let public = std::path::PathBuf::from(public);
    for path in [private, public.as_path()] {
        anyhow::ensure!(
            !path.exists(),
            "{} already exists; not overwriting a key",
            path.display()
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private)
        .with_context(|| format!("creating {}", private.display()))?;
    file.write_all(private_pem.as_bytes())
        .with_context(|| format!("writing {}", private.display()))?;
    std::fs::write(&public, public_pem).with_context(|| format!("writing {}", public.display()))?;
    Ok(public)
}
