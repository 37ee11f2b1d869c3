use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use super::*;
use crate::cluster::name::node_name_from_cert;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(roots)
}

/// Verifies `node` as webpki will on both ends of a link: as a server for its DNS name
/// and as a client.
fn verify(ca: &CertificateDer<'static>, node: &NodeCert) -> Result<(), rustls::Error> {
    let server = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(node_dns_name(node.name())).unwrap();
    server.verify_server_cert(node.cert_der(), &[], &name, &[], UnixTime::now())?;
    let client = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    client.verify_client_cert(node.cert_der(), &[], UnixTime::now())?;
    Ok(())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issued_certificates_chain_to_their_ca_only() {
    let ca = ClusterCa::generate().unwrap();
    let node = ca.issue("edge-1").unwrap();
    assert_eq!(node.name(), "edge-1");
    assert_eq!(
        node_name_from_cert(node.cert_der()).as_deref(),
        Some("edge-1")
    );
    verify(ca.cert_der(), &node).unwrap();

    // Same name, another CA: refused by both verifiers.
    let other = ClusterCa::generate().unwrap();
    let foreign = other.issue("edge-1").unwrap();
    let err = verify(ca.cert_der(), &foreign).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );

    // The certificate is for its own name only.
    let server = WebPkiServerVerifier::builder_with_provider(roots(ca.cert_der()), provider())
        .build()
        .unwrap();
    let wrong = ServerName::try_from("edge-2.sluice.internal").unwrap();
    assert!(
        server
            .verify_server_cert(node.cert_der(), &[], &wrong, &[], UnixTime::now())
            .is_err()
    );
}

#[test]
fn the_ca_certificate_is_a_ca_and_not_a_node() {
    let ca = ClusterCa::ephemeral().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    assert_eq!(node_name_from_cert(ca.cert_der()), None);
    // A node certificate cannot sign: it is not a CA.
    let node = ca.issue("n1").unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(node.cert_der()).unwrap();
    assert!(
        !cert
            .basic_constraints()
            .unwrap()
            .is_some_and(|b| b.value.ca)
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
}

#[test]
fn bad_names_and_validities_are_refused() {
    let ca = ClusterCa::ephemeral().unwrap();
    for bad in ["", "a.b", "a_b", "-a", "x y"] {
        assert!(
            matches!(ca.issue(bad), Err(CaError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        ca.issue_for_days("ok", 0),
        Err(CaError::InvalidName(_))
    ));
}

#[test]
fn files_round_trip_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = ClusterCa::generate().unwrap();
    ca.save(&dir).unwrap();
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
    assert_eq!(mode(&dir), 0o700);

    // A loaded CA issues certificates that chain to the file as distributed.
    let loaded = ClusterCa::load(&dir).unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    let node = loaded.issue("edge-2").unwrap();
    let on_disk = load_ca_cert(&dir.join(CA_CERT_FILE)).unwrap();
    verify(&on_disk, &node).unwrap();

    let out = tmp.path().join("nodes");
    let (cert_path, key_path) = node.save(&out).unwrap();
    assert_eq!(cert_path, out.join("edge-2.pem"));
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&cert_path), 0o644);
    let back = NodeCert::load(&out, "edge-2").unwrap();
    assert_eq!(back.name(), "edge-2");
    assert_eq!(back.cert_der(), node.cert_der());
    assert_eq!(back.key_pem(), node.key_pem());
    verify(&on_disk, &back).unwrap();
}

#[test]
fn nothing_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = ClusterCa::generate().unwrap();
    ca.save(dir).unwrap();
    let before = fs::read(dir.join(CA_KEY_FILE)).unwrap();
    let again = ClusterCa::generate().unwrap().save(dir);
    assert!(matches!(again, Err(CaError::Exists(_))), "{again:?}");
    assert_eq!(fs::read(dir.join(CA_KEY_FILE)).unwrap(), before);

    // Only one of the pair present still refuses, and writes nothing.
    fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
    assert!(matches!(ca.save(dir), Err(CaError::Exists(_))));
    assert!(!dir.join(CA_CERT_FILE).exists());

    let node = ca.issue("n1").unwrap();
    node.save(dir).unwrap();
    let key = fs::read(dir.join("n1.key")).unwrap();
    assert!(matches!(
        ca.issue("n1").unwrap().save(dir),
        Err(CaError::Exists(_))
    ));
    assert_eq!(fs::read(dir.join("n1.key")).unwrap(), key);
}

#[test]
fn mismatched_or_garbled_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = ClusterCa::generate().unwrap();
    ca.save(dir).unwrap();

    // Another CA's key beside this CA's certificate.
    let other = tmp.path().join("other");
    ClusterCa::generate().unwrap().save(&other).unwrap();
    fs::remove_file(dir.join(CA_KEY_FILE)).unwrap();
    fs::copy(other.join(CA_KEY_FILE), dir.join(CA_KEY_FILE)).unwrap();
    let err = ClusterCa::load(dir).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");

    // A node certificate is not a CA.
    let node = ca.issue("n1").unwrap();
    node.save(&other).unwrap();
    fs::write(dir.join(CA_CERT_FILE), node.cert_pem()).unwrap();
    fs::write(dir.join(CA_KEY_FILE), node.key_pem()).unwrap();
    assert!(matches!(ClusterCa::load(dir), Err(CaError::BadFile { .. })));

    fs::write(dir.join(CA_CERT_FILE), "not pem").unwrap();
    assert!(matches!(ClusterCa::load(dir), Err(CaError::BadFile { .. })));
    assert!(matches!(
        ClusterCa::load(&tmp.path().join("missing")),
        Err(CaError::Io { .. })
    ));

    // The CA certificate is not a node certificate.
    let err =
        NodeCert::load_files(&other.join(CA_CERT_FILE), &other.join(CA_KEY_FILE)).unwrap_err();
    assert!(err.to_string().contains("not a node certificate"), "{err}");
    // A node key that is not the certificate's.
    let n2 = ca.issue("n2").unwrap();
    fs::write(other.join("n1.key"), n2.key_pem()).unwrap();
    assert!(NodeCert::load(&other, "n1").is_err());
}

#[test]
fn cli_init_then_issue() {
    use crate::cluster::cli::{CaCommand, run_ca_command};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = tmp.path().join("out");
    run_ca_command(&CaCommand::Init { dir: dir.clone() }).unwrap();
    assert!(run_ca_command(&CaCommand::Init { dir: dir.clone() }).is_err());
    let msg = run_ca_command(&CaCommand::Issue {
        dir: dir.clone(),
        node: "edge-9".to_owned(),
        out: Some(out.clone()),
        days: 30,
    })
    .unwrap();
    assert!(msg.contains("edge-9.pem"), "{msg}");
    let node = NodeCert::load(&out, "edge-9").unwrap();
    verify(&load_ca_cert(&dir.join(CA_CERT_FILE)).unwrap(), &node).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(node.cert_der()).unwrap();
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30); // 30 days plus the one-hour backdate, rounded down
}
