use super::*;
use sluice_dataplane::router::SrtpKeys;
use sluice_dataplane::srtp::{Profile, SrtpContext};
use std::sync::atomic::AtomicUsize;
use tokio::sync::mpsc::Sender;

const T: Duration = Duration::from_secs(10);

fn forward(tx: Sender<Bytes>) -> SendFn {
    Arc::new(move |b| {
        let _ = tx.try_send(b);
    })
}

/// Two ends of an in-memory wire: (client incoming, client send, server incoming,
/// server send).
fn wire() -> (mpsc::Receiver<Bytes>, SendFn, mpsc::Receiver<Bytes>, SendFn) {
    let (to_client, client_rx) = mpsc::channel(256);
    let (to_server, server_rx) = mpsc::channel(256);
    (client_rx, forward(to_server), server_rx, forward(to_client))
}

type Outcome = Result<(SrtpSessionKeys, DtlsSession), DtlsError>;

async fn pair(
    client_id: &DtlsIdentity,
    server_id: &DtlsIdentity,
    client_expects: ExpectedFingerprint,
    server_expects: ExpectedFingerprint,
) -> (Outcome, Outcome) {
    let (crx, csend, srx, ssend) = wire();
    tokio::join!(
        connect(client_id, client_expects, crx, csend, T, FLIGHT_INTERVAL),
        accept(server_id, server_expects, srx, ssend, T),
    )
}

/// A 12-byte RTP header and payload, with room for the tag.
fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1234u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Protects with `tx` keys and unprotects with `rx` keys; true when the payload survives.
fn srtp_round_trip(tx: &SrtpKeys, rx: &SrtpKeys) -> bool {
    let mut sender = SrtpContext::new(tx.profile, &tx.key, &tx.salt).expect("keys");
    let mut receiver = SrtpContext::new(rx.profile, &rx.key, &rx.salt).expect("keys");
    let plain = rtp(7, 0x1122_3344, b"hello srtp");
    let mut buf = plain.clone();
    buf.resize(plain.len() + tx.profile.rtp_overhead(), 0);
    let n = sender.protect_rtp(&mut buf, plain.len()).expect("protect");
    buf.truncate(n);
    assert_ne!(
        &buf[12..plain.len()],
        &plain[12..],
        "payload must be encrypted"
    );
    match receiver.unprotect_rtp(&mut buf) {
        Ok(m) => buf[..m] == plain[..],
        Err(_) => false,
    }
}

fn assert_mirrored(client: &SrtpSessionKeys, server: &SrtpSessionKeys) {
    assert!(same_keys(&client.outbound, &server.inbound));
    assert!(same_keys(&client.inbound, &server.outbound));
    assert!(!same_keys(&client.inbound, &client.outbound));
    assert!(srtp_round_trip(&client.outbound, &server.inbound));
    assert!(srtp_round_trip(&server.outbound, &client.inbound));
    // Keys of the wrong direction must not decrypt.
    assert!(!srtp_round_trip(&client.outbound, &client.inbound));
}

#[tokio::test]
async fn ecdsa_handshake_derives_mirrored_keys() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let (client, server) = pair(&c, &s, s.expected_fingerprint(), c.expected_fingerprint()).await;
    let (ckeys, csess) = client.expect("client handshake");
    let (skeys, ssess) = server.expect("server handshake");
    assert_eq!(ckeys.inbound.profile, Profile::AeadAes128Gcm);
    assert_eq!(csess.profile(), Profile::AeadAes128Gcm);
    assert_eq!(ckeys.inbound.key.len(), 16);
    assert_eq!(ckeys.inbound.salt.len(), 12);
    assert_mirrored(&ckeys, &skeys);
    assert!(!ssess.is_closed());

    // close_notify from the client ends the server's session.
    csess.close().await;
    let reason = tokio::time::timeout(T, ssess.closed())
        .await
        .expect("server sees close");
    assert_eq!(reason, CloseReason::PeerClosed);
}

#[tokio::test]
async fn ed25519_client_certificate_is_accepted() {
    let c = DtlsIdentity::generate_ed25519().unwrap();
    let s = DtlsIdentity::generate().unwrap();
    let (client, server) = pair(&c, &s, s.expected_fingerprint(), c.expected_fingerprint()).await;
    let (ckeys, _cs) = client.expect("client handshake");
    let (skeys, _ss) = server.expect("server handshake");
    assert_mirrored(&ckeys, &skeys);
}

#[tokio::test]
async fn server_rejects_a_client_certificate_that_does_not_match() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let other = DtlsIdentity::generate().unwrap();
    let (client, server) = pair(
        &c,
        &s,
        s.expected_fingerprint(),
        other.expected_fingerprint(),
    )
    .await;
    assert!(
        matches!(server, Err(DtlsError::FingerprintMismatch)),
        "{server:?}"
    );
    // The client learns from the alert rather than by timing out.
    assert!(matches!(client, Err(DtlsError::Handshake(_))), "{client:?}");
}

#[tokio::test]
async fn client_rejects_a_server_certificate_that_does_not_match() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let mut wrong = s.expected_fingerprint();
    wrong.value[0] ^= 1;
    let (client, server) = pair(&c, &s, wrong, c.expected_fingerprint()).await;
    assert!(
        matches!(client, Err(DtlsError::FingerprintMismatch)),
        "{client:?}"
    );
    assert!(server.is_err());
}

#[tokio::test]
async fn other_fingerprint_hashes_are_checked() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let sha1 = ExpectedFingerprint {
        algorithm: "sha-1".into(),
        value: ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, c.certificate_der())
            .as_ref()
            .to_vec(),
    };
    let sha512 = ExpectedFingerprint {
        algorithm: "sha-512".into(),
        value: ring::digest::digest(&ring::digest::SHA512, s.certificate_der())
            .as_ref()
            .to_vec(),
    };
    let (client, server) = pair(&c, &s, sha512, sha1).await;
    assert!(client.is_ok() && server.is_ok());
}

#[tokio::test]
async fn silent_peer_times_out() {
    let s = DtlsIdentity::generate().unwrap();
    let (_tx, rx) = mpsc::channel(8);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let send: SendFn = Arc::new(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let started = std::time::Instant::now();
    let timeout = Duration::from_millis(300);
    let r = connect(
        &s,
        s.expected_fingerprint(),
        rx,
        send,
        timeout,
        FLIGHT_INTERVAL,
    )
    .await;
    assert!(matches!(r, Err(DtlsError::Timeout)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        sent.load(Ordering::Relaxed) >= 1,
        "the ClientHello went out"
    );

    let (_tx, rx) = mpsc::channel(8);
    let r = accept(&s, s.expected_fingerprint(), rx, Arc::new(|_| {}), timeout).await;
    assert!(matches!(r, Err(DtlsError::Timeout)), "{r:?}");
}

/// A server that drops a ClientHello arriving before it is ready (Janus, just before its
/// ICE completes) answers the client's next one: the client's interval, not the crate's
/// one second, is what that costs. In paused (virtual) time, so the count is exact.
#[tokio::test(start_paused = true)]
async fn a_dropped_client_hello_costs_the_clients_retransmit_interval() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let (to_client, crx) = mpsc::channel(256);
    let (to_server, srx) = mpsc::channel(256);
    let hellos = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hellos);
    // Lose the client's first datagram: its ClientHello.
    let client_send: SendFn = Arc::new(move |b: Bytes| {
        if h.fetch_add(1, Ordering::SeqCst) == 0 {
            return;
        }
        let _ = to_server.try_send(b);
    });
    let interval = Duration::from_millis(100);
    let started = tokio::time::Instant::now();
    let (client, server) = tokio::join!(
        connect(&c, s.expected_fingerprint(), crx, client_send, T, interval),
        accept(&s, c.expected_fingerprint(), srx, forward(to_client), T),
    );
    let (ckeys, _cs) = client.expect("client finishes after the resend");
    let (skeys, _ss) = server.expect("server handshake");
    assert_mirrored(&ckeys, &skeys);
    let took = started.elapsed();
    assert!(
        took >= interval && took < FLIGHT_INTERVAL,
        "one retransmission interval, not the default second: {took:?}"
    );
}

#[tokio::test]
async fn lost_final_flight_is_resent_when_the_client_retransmits() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let (to_client, crx) = mpsc::channel(256);
    let (to_server, srx) = mpsc::channel(256);
    let ccs_seen = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&ccs_seen);
    // The server's final flight starts with its ChangeCipherSpec record (type 20): lose
    // the first one.
    let server_send: SendFn = Arc::new(move |b: Bytes| {
        if b.first() == Some(&20) && d.fetch_add(1, Ordering::SeqCst) == 0 {
            return;
        }
        let _ = to_client.try_send(b);
    });
    let interval = Duration::from_millis(200);
    let (client, server) = tokio::join!(
        handshake(
            true,
            &c,
            s.expected_fingerprint(),
            crx,
            forward(to_server),
            T,
            interval
        ),
        handshake(
            false,
            &s,
            c.expected_fingerprint(),
            srx,
            server_send,
            T,
            interval
        ),
    );
    let (ckeys, _cs) = client.expect("client finishes after the resend");
    let (skeys, ss) = server.expect("server handshake");
    assert!(
        ccs_seen.load(Ordering::SeqCst) >= 2,
        "the lost flight was sent again"
    );
    assert!(ss.resent_final_flights() >= 1);
    assert_mirrored(&ckeys, &skeys);
}

#[tokio::test]
async fn closing_the_incoming_channel_ends_the_session() {
    let (c, s) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let (to_client, crx) = mpsc::channel(256);
    let (to_server, srx) = mpsc::channel::<Bytes>(256);
    let server_in = to_server.clone();
    let (client, server) = tokio::join!(
        connect(
            &c,
            s.expected_fingerprint(),
            crx,
            forward(to_server),
            T,
            FLIGHT_INTERVAL
        ),
        accept(&s, c.expected_fingerprint(), srx, forward(to_client), T),
    );
    let (_ck, cs) = client.expect("client");
    let (_sk, ss) = server.expect("server");
    // The media worker drops the session: every sender of the server's channel goes.
    drop(server_in);
    drop(cs);
    let reason = tokio::time::timeout(T, ss.closed()).await.expect("closed");
    assert_eq!(reason, CloseReason::TransportClosed);
}

#[test]
fn fingerprint_parsing() {
    let id = DtlsIdentity::generate().unwrap();
    let fp = ExpectedFingerprint::parse(&format!("sha-256 {}", id.fingerprint_sha256())).unwrap();
    assert_eq!(fp, id.expected_fingerprint());
    assert!(fp.matches(id.certificate_der()).unwrap());
    assert_eq!(id.fingerprint_sha256().len(), 32 * 3 - 1);
    assert_eq!(
        id.fingerprint_sha256(),
        id.fingerprint_sha256().to_uppercase()
    );
    let lower = ExpectedFingerprint::parse(&format!(
        "SHA-256 {}",
        id.fingerprint_sha256().to_lowercase()
    ))
    .unwrap();
    assert_eq!(lower, fp);
    assert!(matches!(
        ExpectedFingerprint::parse("md5 AB:CD"),
        Err(DtlsError::UnsupportedFingerprintAlgorithm(_))
    ));
    assert!(ExpectedFingerprint::parse("sha-256 AB:CD").is_err());
    assert!(ExpectedFingerprint::parse("sha-256").is_err());
    assert!(
        ExpectedFingerprint::parse(
            "sha-1 ZZ:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"
        )
        .is_err()
    );
    assert!(ExpectedFingerprint::parse("sha-256 ABC:D").is_err());
}

/// Interop with an independent DTLS stack: `openssl s_client` with an RSA-2048
/// certificate against `accept` over UDP, offering only AES_CM (so the second profile is
/// covered too). Its exported keying material must equal ours, and its close_notify must
/// end our session. Skipped (with a message) where no openssl binary exists.
#[tokio::test]
async fn openssl_rsa_client_against_accept() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no openssl binary");
        return;
    }
    openssl::rsa_client_against_accept().await;
}

mod openssl {
    use super::*;
    use std::net::SocketAddr;
    use std::process::Stdio;
    use tokio::net::UdpSocket;

    pub(super) async fn rsa_client_against_accept() {
        let dir = std::env::temp_dir().join(format!("sluice-dtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, cert) = (dir.join("rsa.key"), dir.join("rsa.crt"));
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=rsa-peer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let pem = std::fs::read(&cert).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let rsa_fp = ExpectedFingerprint {
            algorithm: "sha-256".into(),
            value: ring::digest::digest(&ring::digest::SHA256, &pem.contents)
                .as_ref()
                .to_vec(),
        };

        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let port = sock.local_addr().unwrap().port();
        let peer: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let (tx, rx) = mpsc::channel(256);
        let pump = tokio::spawn({
            let (sock, peer) = (Arc::clone(&sock), Arc::clone(&peer));
            async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                    *peer.lock().unwrap() = Some(from);
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        });
        let send: SendFn = {
            let (sock, peer) = (Arc::clone(&sock), Arc::clone(&peer));
            Arc::new(move |b: Bytes| {
                if let Some(to) = *peer.lock().unwrap() {
                    let _ = sock.try_send_to(&b, to);
                }
            })
        };

        let child = tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-dtls1_2",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(["-use_srtp", "SRTP_AES128_CM_SHA1_80"])
            .args(["-keymatexport", EXPORTER_LABEL, "-keymatexportlen", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = DtlsIdentity::generate().unwrap();
        let (keys, session) = accept(&server, rsa_fp, rx, send, T)
            .await
            .expect("handshake with openssl");
        let out = tokio::time::timeout(T, child.wait_with_output())
            .await
            .expect("openssl exits")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let material = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("Keying material: "))
            .unwrap_or_else(|| panic!("no keying material in:\n{stdout}"));
        let material = hex::decode(material.trim()).unwrap();
        assert_eq!(keys.inbound.profile, Profile::Aes128CmHmacSha1_80);
        assert_eq!(material[..16], keys.inbound.key[..], "client write key");
        assert_eq!(material[16..32], keys.outbound.key[..], "server write key");
        assert_eq!(material[32..46], keys.inbound.salt[..], "client salt");
        assert_eq!(material[46..60], keys.outbound.salt[..], "server salt");
        let reason = tokio::time::timeout(T, session.closed())
            .await
            .expect("closed");
        assert_eq!(
            reason,
            CloseReason::PeerClosed,
            "s_client sends close_notify at EOF"
        );
        pump.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
