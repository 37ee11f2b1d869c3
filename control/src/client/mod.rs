//! A WebRTC client without a browser, for integration tests and the load generator.
//!
//! [`publish`] and [`subscribe`] do what a browser does against a WHIP/WHEP endpoint:
//! write an offer (Chromium's shape: BUNDLE, rtcp-mux, Opus 111, VP8 96, optional
//! three-layer simulcast with rids `q`, `h`, `f`), POST it, read the answer, run ICE as
//! the controlling full agent against the node's ICE-lite candidate (checks with
//! USE-CANDIDATE, retransmitted until answered, consent checks every ~5 s), complete
//! DTLS-SRTP ([`crate::dtls`]), then send or receive SRTP with the dataplane's
//! `SrtpContext`.
//!
//! [`janus::JanusRoom`] gives the same [`Publisher`] and [`Subscriber`] through Janus
//! VideoRoom's HTTP API instead. Janus is a full ICE agent: the client answers its checks
//! (and consent checks) too, and takes the controlled role and the DTLS client role when
//! Janus is the one offering (its subscribers), answering with `local_answer`.
//!
//! - A [`Publisher`] sends audio packets and one-packet VP8 frames (RFC 7741 descriptor,
//!   so keyframes are detectable) with the mid, rid and transport-cc header extensions,
//!   sends sender reports, and answers NACKs from a short history.
//! - A [`Subscriber`] decrypts everything, tracks each SSRC's sequence continuity
//!   ([`StreamStats`]), keeps payloads for verification, unwraps RTX, and sends receiver
//!   reports, NACKs and (on request) PLIs.
//!
//! A non-201 answer to the POST is [`ClientError::Http`] with the status and body.
//!
//! The module is layered as elsewhere: `offer`, `answer`, `local_answer`, `ice`, `rtp`
//! and `stats` are sans-IO; `transport`, `publisher`, `subscriber`, `http` and `janus`
//! drive them with tokio.

mod answer;
mod hangup;
mod http;
mod ice;
pub mod janus;
mod local_answer;
mod offer;
mod publisher;
mod roam;
mod rtp;
mod stats;
mod subscriber;
mod tasks;
mod transport;

#[cfg(test)]
mod tests;

pub use answer::{Answer, AnswerMedia};
pub use ice::{IceState, IceStats};
pub use offer::SIMULCAST_RIDS;
pub use publisher::{Publisher, PublisherStats, SentStream};
pub use roam::{MoveWatch, RoamingPublisher, RoamingSubscriber, origin};
pub use rtp::{vp8_continuation, vp8_data, vp8_payload};
pub use stats::{Arrival, RtcpCounts, StreamStats};
pub use subscriber::{ReceivedPacket, Subscriber, SubscriberStats};

use crate::dtls::{DtlsError, DtlsIdentity};
use rand::Rng;
use rand::distr::Alphanumeric;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key type of the client's DTLS certificate.
///
/// There is no RSA: the `dtls` crate refuses RSA keys for its own certificate. The node
/// accepts RSA peers (tested with `openssl s_client` in `crate::dtls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateKind {
    /// ECDSA P-256, what browsers use.
    #[default]
    Ecdsa,
    Ed25519,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub audio: bool,
    pub video: bool,
    /// Publish three VP8 layers with rids q, h, f (lowest first).
    pub simulcast: bool,
    pub certificate: CertificateKind,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Address of the client's UDP socket (port chosen by the OS).
    pub bind: IpAddr,
    /// For ICE and then DTLS to complete, together.
    pub timeout: Duration,
    /// Received packets kept per SSRC for [`Subscriber::packets`].
    pub keep_payloads: usize,
    /// How often reports (SR/RR, and NACKs) go out.
    pub rtcp_interval: Duration,
    /// Whether a subscriber NACKs missing packets.
    pub nack: bool,
    /// Announce this `a=fingerprint` (sha-256, "AB:CD:...") instead of the client's own:
    /// for tests of the server's certificate check.
    pub announced_fingerprint: Option<String>,
    /// A subscriber announces this receive bitrate (REMB, bits per second) with every
    /// report, as a browser's delay-based estimator would: the node's layer choice then
    /// follows it.
    pub remb: Option<u64>,
    /// The client's region, sent as the `region` query parameter of the POST so the
    /// cluster can place it (a redirect to a better node is followed).
    pub region: Option<String>,
    /// A subscriber shows every new packet it decrypts to this (load generators verify
    /// payloads here instead of keeping them).
    pub observer: Option<PacketObserver>,
    /// How long a DTLS flight waits for an answer before it is sent again (a fixed
    /// interval: the dtls crate does not back off). A server that drops a ClientHello
    /// arriving just before its own ICE is ready (Janus does) answers the next one.
    pub dtls_retransmit: Duration,
}

/// A new media packet as a subscriber received it: decrypted, repaired from RTX if it
/// came that way; duplicates are not shown.
#[derive(Debug, Clone, Copy)]
pub struct ObservedPacket<'a> {
    pub ssrc: u32,
    pub seq: u16,
    pub payload_type: u8,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// Called on the subscriber's receive task for each packet: keep it cheap.
#[derive(Clone)]
pub struct PacketObserver(pub std::sync::Arc<dyn Fn(&ObservedPacket<'_>) + Send + Sync>);

impl std::fmt::Debug for PacketObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketObserver")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            simulcast: false,
            certificate: CertificateKind::Ecdsa,
            token: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            timeout: Duration::from_secs(10),
            keep_payloads: 10_000,
            rtcp_interval: Duration::from_millis(500),
            nack: true,
            announced_fingerprint: None,
            region: None,
            remb: None,
            observer: None,
            dtls_retransmit: crate::dtls::FLIGHT_INTERVAL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The POST (or DELETE) got a status other than the expected one.
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("HTTP request failed: {0}")]
    Request(String),
    #[error("unusable answer: {0}")]
    Answer(String),
    #[error("ICE failed: {0}")]
    Ice(String),
    #[error("ICE timed out: no answer to our connectivity checks")]
    IceTimeout,
    #[error(transparent)]
    Dtls(#[from] DtlsError),
    #[error("SRTP: {0}")]
    Srtp(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Options(String),
    #[error("condition not met in time; last stats: {0}")]
    WaitTimeout(String),
    /// Janus refused a request: its error code (e.g. 428 "No such feed") and reason.
    #[error("Janus error {code}: {reason}")]
    Janus { code: i64, reason: String },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Http`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Publishes to `room` at `base_url` (POST `{base_url}/whip/{room}`).
pub async fn publish(
    base_url: &str,
    room: &str,
    opts: &ClientOptions,
) -> Result<Publisher, ClientError> {
    Publisher::start(base_url, room, opts).await
}

/// Subscribes to `room` (POST `{base_url}/whep/{room}`, or `.../{publisher_id}` to pick
/// one publisher).
pub async fn subscribe(
    base_url: &str,
    room: &str,
    publisher_id: Option<&str>,
    opts: &ClientOptions,
) -> Result<Subscriber, ClientError> {
    Subscriber::start(base_url, room, publisher_id, opts).await
}

/// Subscribes to `publisher_id` in `room`, retrying the 404 a node answers until it lists
/// the publisher, for up to `patience`. A node lists a publisher once its side of the DTLS
/// handshake is done, which can trail the publishing client's by a moment; a far node,
/// once the room's state has reached it. Other errors return at once.
pub async fn subscribe_when_listed(
    base_url: &str,
    room: &str,
    publisher_id: &str,
    opts: &ClientOptions,
    patience: Duration,
) -> Result<Subscriber, ClientError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match subscribe(base_url, room, Some(publisher_id), opts).await {
            Err(e) if e.status() == Some(404) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result,
        }
    }
}

/// Our per-session ICE credentials and DTLS identity.
struct Credentials {
    ufrag: String,
    pwd: String,
    cname: String,
    identity: DtlsIdentity,
}

impl Credentials {
    /// The `a=fingerprint` to put in our SDP: our certificate's, unless the options
    /// announce another (tests of the server's certificate check).
    fn announced_fingerprint(&self, opts: &ClientOptions) -> String {
        opts.announced_fingerprint
            .clone()
            .unwrap_or_else(|| self.identity.fingerprint_sha256().to_owned())
    }

    fn generate(opts: &ClientOptions) -> Result<Self, ClientError> {
        let identity = match opts.certificate {
            CertificateKind::Ecdsa => DtlsIdentity::generate()?,
            CertificateKind::Ed25519 => DtlsIdentity::generate_ed25519()?,
        };
        // RFC 8839: ufrag at least 4 characters, pwd at least 22, from ice-char.
        Ok(Self {
            ufrag: random_string(8),
            pwd: random_string(24),
            cname: random_string(16),
            identity,
        })
    }
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The current time as a 64-bit NTP timestamp (RFC 3550 section 4).
fn ntp_now() -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
