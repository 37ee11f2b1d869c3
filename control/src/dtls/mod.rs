//! DTLS-SRTP (RFC 5763/5764) over the media worker's channel, using the `dtls` crate.
//!
//! The node answers with `a=setup:passive`, so the browser is the DTLS client and the
//! node calls [`accept`]; the test client calls [`connect`]. Both sides:
//! - present a self-signed [`DtlsIdentity`] and require one from the peer;
//! - check the peer's certificate against the SDP's `a=fingerprint`
//!   ([`ExpectedFingerprint`]) instead of a CA chain; a mismatch fails the handshake
//!   with a bad_certificate alert and [`DtlsError::FingerprintMismatch`];
//! - negotiate SRTP_AEAD_AES_128_GCM or SRTP_AES128_CM_HMAC_SHA1_80 and require the
//!   extended master secret (RFC 7627);
//! - export the SRTP master keys with "EXTRACTOR-dtls_srtp" ([`SrtpSessionKeys`]).
//!
//! Records come in on an mpsc receiver and go out through a [`SendFn`]; the
//! [`DtlsSession`] returned keeps the association alive (close_notify, peer close,
//! answers to a retransmitted final flight).

mod hello;
mod identity;
mod keys;
mod session;
mod transport;

#[cfg(test)]
mod tests;

pub use identity::{DtlsIdentity, ExpectedFingerprint, format_fingerprint};
pub use keys::{EXPORTER_LABEL, SrtpSessionKeys, same_keys};
pub use session::{CloseReason, DtlsSession};

use bytes::Bytes;
use dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use transport::ChannelConn;
use webrtc_util::{Conn, KeyingMaterialExporter};

/// Sends one DTLS datagram to the peer (through the media socket).
pub type SendFn = Arc<dyn Fn(Bytes) + Send + Sync>;

/// The dtls crate's default, and RFC 6347's initial timer: a flight not answered within
/// a second is sent again (the crate repeats at this fixed interval).
pub const FLIGHT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    #[error("the peer's certificate does not match the SDP fingerprint")]
    FingerprintMismatch,
    #[error("DTLS handshake timed out")]
    Timeout,
    #[error("no common SRTP protection profile")]
    NoSrtpProfile,
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    #[error("unsupported fingerprint hash {0:?}")]
    UnsupportedFingerprintAlgorithm(String),
    #[error("malformed fingerprint {0:?}")]
    BadFingerprint(String),
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("SRTP key export failed: {0}")]
    Export(String),
}

/// Server side: waits for the peer's ClientHello on `incoming`.
pub async fn accept(
    identity: &DtlsIdentity,
    expected: ExpectedFingerprint,
    incoming: mpsc::Receiver<Bytes>,
    send: SendFn,
    timeout: Duration,
) -> Result<(SrtpSessionKeys, DtlsSession), DtlsError> {
    handshake(
        false,
        identity,
        expected,
        incoming,
        send,
        timeout,
        FLIGHT_INTERVAL,
    )
    .await
}

/// Client side: sends the ClientHello and retransmits it every `flight_interval` until
/// answered (see [`FLIGHT_INTERVAL`]).
pub async fn connect(
    identity: &DtlsIdentity,
    expected: ExpectedFingerprint,
    incoming: mpsc::Receiver<Bytes>,
    send: SendFn,
    timeout: Duration,
    flight_interval: Duration,
) -> Result<(SrtpSessionKeys, DtlsSession), DtlsError> {
    handshake(
        true,
        identity,
        expected,
        incoming,
        send,
        timeout,
        flight_interval,
    )
    .await
}

/// Waits for the client's first record and picks the SRTP profiles to accept from it;
/// the record is then replayed to the handshake in front of the rest.
async fn peek_profiles(
    mut incoming: mpsc::Receiver<Bytes>,
    timeout: Duration,
) -> Result<(mpsc::Receiver<Bytes>, Vec<SrtpProtectionProfile>), DtlsError> {
    let first = tokio::time::timeout(timeout, incoming.recv())
        .await
        .map_err(|_| DtlsError::Timeout)?
        .ok_or_else(|| DtlsError::Handshake("channel closed before the ClientHello".into()))?;
    let profiles = hello::server_profiles(&first);
    let (tx, rx) = mpsc::channel(incoming.max_capacity().max(1));
    let _ = tx.try_send(first);
    tokio::spawn(async move {
        while let Some(p) = incoming.recv().await {
            if tx.send(p).await.is_err() {
                break;
            }
        }
    });
    Ok((rx, profiles))
}

pub(crate) async fn handshake(
    is_client: bool,
    identity: &DtlsIdentity,
    expected: ExpectedFingerprint,
    incoming: mpsc::Receiver<Bytes>,
    send: SendFn,
    timeout: Duration,
    flight_interval: Duration,
) -> Result<(SrtpSessionKeys, DtlsSession), DtlsError> {
    // Refuse an unusable fingerprint before talking to anyone.
    expected.validate()?;
    let mismatch = Arc::new(AtomicBool::new(false));
    let (incoming, profiles) = if is_client {
        (incoming, keys::OFFERED.to_vec())
    } else {
        peek_profiles(incoming, timeout).await?
    };
    let config = Config {
        certificates: vec![identity.certificate().clone()],
        srtp_protection_profiles: profiles,
        client_auth: ClientAuthType::RequireAnyClientCert,
        extended_master_secret: ExtendedMasterSecretType::Require,
        // Identity is the SDP fingerprint, checked below; there is no CA chain.
        insecure_skip_verify: true,
        verify_peer_certificate: Some(fingerprint_verifier(expected, Arc::clone(&mismatch))),
        flight_interval,
        server_name: "sluice".to_owned(),
        ..Config::default()
    };
    let transport = Arc::new(ChannelConn::new(incoming, send));
    let run = async {
        let conn = DTLSConn::new(
            Arc::clone(&transport) as Arc<dyn Conn + Send + Sync>,
            config,
            is_client,
            None,
        )
        .await
        .map_err(|e| classify(e, &mismatch))?;
        transport.handshake_finished();
        let profile = match keys::profile_of(conn.selected_srtpprotection_profile()) {
            Ok(p) => p,
            Err(e) => {
                // The peer completed a handshake without use_srtp: tell it we are done.
                let _ = conn.close().await;
                return Err(e);
            }
        };
        let state = conn.connection_state().await;
        let material = state
            .export_keying_material(EXPORTER_LABEL, &[], keys::material_len(profile))
            .await
            .map_err(|e| DtlsError::Export(e.to_string()))?;
        let keys = keys::split(profile, &material, is_client)?;
        Ok((
            keys,
            DtlsSession::start(conn, Arc::clone(&transport), profile),
        ))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        // Dropping the unfinished DTLSConn stops the dtls crate's tasks.
        Err(_) => Err(DtlsError::Timeout),
    }
}

type VerifyFn<T> = Arc<dyn Fn(&[Vec<u8>], &[T]) -> Result<(), dtls::Error> + Send + Sync>;

/// The dtls crate's peer-certificate hook, comparing the leaf certificate's hash with the
/// SDP fingerprint. Generic over the chain type so we need not name rustls' types.
fn fingerprint_verifier<T>(
    expected: ExpectedFingerprint,
    mismatch: Arc<AtomicBool>,
) -> VerifyFn<T> {
    Arc::new(move |certificates: &[Vec<u8>], _chains: &[T]| {
        let Some(leaf) = certificates.first() else {
            return Err(dtls::Error::ErrInvalidCertificate);
        };
        match expected.matches(leaf) {
            Ok(true) => Ok(()),
            Ok(false) => {
                mismatch.store(true, Ordering::SeqCst);
                Err(dtls::Error::Other(
                    "certificate fingerprint mismatch".to_owned(),
                ))
            }
            Err(e) => Err(dtls::Error::Other(e.to_string())),
        }
    })
}

fn classify(e: dtls::Error, mismatch: &AtomicBool) -> DtlsError {
    if mismatch.load(Ordering::SeqCst) {
        return DtlsError::FingerprintMismatch;
    }
    match e {
        dtls::Error::ErrServerNoMatchingSrtpProfile
        | dtls::Error::ErrClientNoMatchingSrtpProfile
        | dtls::Error::ErrRequestedButNoSrtpExtension => DtlsError::NoSrtpProfile,
        other => DtlsError::Handshake(other.to_string()),
    }
}
