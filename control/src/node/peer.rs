//! One WebRTC peer (a WHIP publisher or a WHEP subscriber) from its POST to its end.
//!
//! The answer goes out at once; ICE checks then arrive at a worker, which reports them
//! here; the first DTLS record starts the handshake; its keys install the session on the
//! worker, and only then does a publisher appear in its room or a subscriber get media.

use crate::dtls::{DtlsSession, ExpectedFingerprint};
use crate::sdp::{PlannedSubscription, PublishedTrack};
use bytes::Bytes;
use sluice_dataplane::engine::WorkerId;
use sluice_dataplane::router::SessionId;
use sluice_dataplane::rtp::ExtensionIds;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum Role {
    Publisher {
        id: String,
        tracks: Vec<PublishedTrack>,
        ext_uris: Vec<(u8, String)>,
        /// Global ids of the tracks, once announced to the media plane.
        track_ids: Vec<u64>,
    },
    Subscriber {
        publisher: String,
        plan: Vec<PlannedSubscription>,
        /// Tracks published on other nodes this subscriber was given, once connected:
        /// the cascade brings them here while someone wants them.
        remote_tracks: Vec<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Answer sent; waiting for ICE and DTLS.
    Connecting,
    /// Keys installed, media flowing.
    Connected,
}

#[derive(Debug)]
pub struct Peer {
    pub resource: String,
    pub session: SessionId,
    pub room: String,
    pub role: Role,
    pub remote_ufrag: String,
    pub fingerprint: ExpectedFingerprint,
    pub extensions: ExtensionIds,
    pub state: PeerState,
    pub created: Instant,
    /// The candidate pair ICE settled on: the nominated one, else the first that worked.
    pub selected: Option<(WorkerId, SocketAddr, bool)>,
    /// Where the handshake runs: records from the worker go in here.
    pub dtls_in: Option<mpsc::Sender<Bytes>>,
    /// The remote the session's SRTP is bound to once connected.
    pub remote: Option<SocketAddr>,
    /// Kept open for the session's life: the peer may retransmit its last flight, and
    /// closing it tells the peer we are gone.
    pub dtls: Option<DtlsSession>,
}

impl Peer {
    pub fn kind(&self) -> &'static str {
        match self.role {
            Role::Publisher { .. } => "publisher",
            Role::Subscriber { .. } => "subscriber",
        }
    }

    /// The publisher this session is about: its own id for a publisher, the one it
    /// watches for a subscriber.
    pub fn publisher(&self) -> &str {
        match &self.role {
            Role::Publisher { id, .. } => id,
            Role::Subscriber { publisher, .. } => publisher,
        }
    }

    /// Records an ICE check; a nominated pair wins over one that merely worked.
    pub fn on_ice_checked(&mut self, worker: WorkerId, remote: SocketAddr, nominated: bool) {
        match self.selected {
            Some((_, _, true)) if !nominated => {}
            Some((_, r, n)) if r == remote && n == nominated => {}
            _ => self.selected = Some((worker, remote, nominated)),
        }
    }
}
