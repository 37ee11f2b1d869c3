//! Session lifecycle: what a WHIP/WHEP POST sets up, what the workers' ICE and DTLS
//! events move along, and how a session ends (DELETE, consent lost, handshake failed,
//! never connected).

use super::Shared;
use super::peer::{Peer, PeerState, Role};
use crate::cascade::catalog::{StreamId, StreamIds, TrackDescriptor, global_track_id, track_home};
use crate::cascade::handle::Command;
use crate::dtls::{self, ExpectedFingerprint, SendFn, SrtpSessionKeys};
use crate::rooms::{PublisherInfo, TrackInfo};
use crate::sdp::{self, LocalDescription, MediaKind, SdpError, SourceTrack};
use bytes::Bytes;
use rand::Rng;
use sluice_dataplane::engine::WorkerId;
use sluice_dataplane::router::{
    IceCredentials, RouterEvent, SessionConfig, SessionId, SubscribeConfig, TrackConfig,
};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// DTLS records queued for one handshake before further ones are dropped (a handshake
/// needs a handful; more is a misbehaving or hostile peer).
const DTLS_QUEUE: usize = 64;

/// What a successful POST returns.
#[derive(Debug)]
pub struct Posted {
    pub answer: String,
    pub resource: String,
    pub publisher_id: Option<String>,
}

/// Why a POST failed; the HTTP layer turns each into its status.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0}")]
    Sdp(#[from] SdpError),
    #[error("unknown room {0:?}")]
    UnknownRoom(String),
    #[error("unknown publisher {0:?}")]
    UnknownPublisher(String),
    #[error("node at capacity ({0} sessions)")]
    OverCapacity(usize),
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn random_hex_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

impl Shared {
    fn local_description(&self) -> (LocalDescription, String, String) {
        let ufrag = random_token(8);
        let pwd = random_token(24);
        let local = LocalDescription {
            ice_ufrag: ufrag.clone(),
            ice_pwd: pwd.clone(),
            fingerprint_sha256: self.identity.fingerprint_sha256().to_owned(),
            candidates: self.candidates.clone(),
        };
        (local, ufrag, pwd)
    }

    fn check_capacity(&self) -> Result<(), PostError> {
        let max = self.config.limits.max_sessions;
        if self.peers().by_session.len() >= max {
            return Err(PostError::OverCapacity(max));
        }
        Ok(())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Track ids are global in a cluster: other nodes install this node's tracks under
    /// the same ids.
    fn next_track_id(&self) -> u64 {
        let n = self.next_id();
        match &self.cascade {
            Some(c) => global_track_id(c.node(), n),
            None => n,
        }
    }

    /// Registers a peer whose answer is about to be sent, and tells every worker its ICE
    /// credentials so its checks are answered wherever they land.
    fn register(&self, peer: Peer, ufrag: String, pwd: String) {
        let creds = IceCredentials {
            session: peer.session,
            local_ufrag: ufrag,
            local_pwd: pwd,
            remote_ufrag: peer.remote_ufrag.clone(),
        };
        // Every line about a session names it by its resource id (what the client's
        // resource URL ends with) and its room.
        tracing::info!(
            room = %peer.room,
            session = %peer.resource,
            role = peer.kind(),
            publisher = peer.publisher(),
            "session offered"
        );
        let (room, resource) = (peer.room.clone(), peer.resource.clone());
        {
            let mut peers = self.peers();
            peers
                .by_resource
                .insert(peer.resource.clone(), peer.session);
            peers.by_session.insert(peer.session, peer);
        }
        if let Err(e) = self.media.lock().add_ice(creds) {
            tracing::error!(%room, session = %resource, error = %e, "cannot install ICE credentials");
        }
    }

    /// WHIP: answers a publisher's offer.
    pub fn post_publish(&self, room: &str, offer_text: &str) -> Result<Posted, PostError> {
        let offer = sdp::parse_offer(offer_text)?;
        self.check_capacity()?;
        let (local, ufrag, pwd) = self.local_description();
        let answer = sdp::answer_publish(&offer, &local)?;
        let session = self.next_id();
        let publisher_id = random_hex_id();
        let resource = random_hex_id();
        let peer = Peer {
            resource: resource.clone(),
            session,
            room: room.to_owned(),
            role: Role::Publisher {
                id: publisher_id.clone(),
                tracks: answer.tracks,
                ext_uris: answer.ext_uris,
                track_ids: Vec::new(),
            },
            remote_ufrag: offer.ice_ufrag.clone(),
            fingerprint: expected(&offer.fingerprint),
            extensions: answer.extensions,
            state: PeerState::Connecting,
            created: Instant::now(),
            selected: None,
            dtls_in: None,
            remote: None,
            dtls: None,
        };
        self.register(peer, ufrag, pwd);
        Ok(Posted {
            answer: answer.sdp,
            resource,
            publisher_id: Some(publisher_id),
        })
    }

    /// WHEP: answers a subscriber's offer for one publisher (the room's latest if none is
    /// named).
    pub fn post_subscribe(
        &self,
        room: &str,
        publisher: Option<&str>,
        offer_text: &str,
    ) -> Result<Posted, PostError> {
        let offer = sdp::parse_offer(offer_text)?;
        let (publisher_id, sources) = {
            let rooms = self.rooms();
            if !rooms.room_exists(room) {
                return Err(PostError::UnknownRoom(room.to_owned()));
            }
            let p = match publisher {
                Some(id) => rooms
                    .publisher(room, id)
                    .ok_or_else(|| PostError::UnknownPublisher(id.to_owned()))?,
                None => rooms
                    .latest_publisher(room)
                    .ok_or_else(|| PostError::UnknownRoom(room.to_owned()))?,
            };
            (p.info.id.clone(), p.sources.clone())
        };
        self.check_capacity()?;
        let (local, ufrag, pwd) = self.local_description();
        let answer = sdp::answer_subscribe(&offer, &local, &sources)?;
        let session = self.next_id();
        let resource = random_hex_id();
        let peer = Peer {
            resource: resource.clone(),
            session,
            room: room.to_owned(),
            role: Role::Subscriber {
                publisher: publisher_id,
                plan: answer.subscriptions,
                remote_tracks: Vec::new(),
            },
            remote_ufrag: offer.ice_ufrag.clone(),
            fingerprint: expected(&offer.fingerprint),
            extensions: answer.extensions,
            state: PeerState::Connecting,
            created: Instant::now(),
            selected: None,
            dtls_in: None,
            remote: None,
            dtls: None,
        };
        self.rooms().add_subscriber(room);
        self.register(peer, ufrag, pwd);
        Ok(Posted {
            answer: answer.sdp,
            resource,
            publisher_id: None,
        })
    }

    /// The peer behind a resource URL, for PATCH.
    pub fn resource_ufrag(&self, resource: &str) -> Option<String> {
        let peers = self.peers();
        let s = peers.by_resource.get(resource)?;
        peers.by_session.get(s).map(|p| p.remote_ufrag.clone())
    }

    /// Ends a session; false when there was none.
    pub fn close_resource(&self, resource: &str, why: &str) -> bool {
        let session = match self.peers().by_resource.get(resource) {
            Some(s) => *s,
            None => return false,
        };
        self.close_session(session, why)
    }

    fn close_session(&self, session: SessionId, why: &str) -> bool {
        let peer = {
            let mut peers = self.peers();
            let Some(peer) = peers.by_session.remove(&session) else {
                return false;
            };
            peers.by_resource.remove(&peer.resource);
            peer
        };
        let connected = peer.state == PeerState::Connected;
        let streams: Vec<u64> = match &peer.role {
            Role::Publisher { track_ids, .. } => track_ids.clone(),
            Role::Subscriber { plan, .. } if connected => plan.iter().map(|s| s.track_id).collect(),
            Role::Subscriber { .. } => Vec::new(),
        };
        tracing::info!(
            room = %peer.room,
            session = %peer.resource,
            role = peer.kind(),
            publisher = peer.publisher(),
            streams = %StreamIds(&streams),
            reason = why,
            "session ended"
        );
        let what = match peer.role {
            Role::Publisher { .. } => "stream unpublished",
            Role::Subscriber { .. } => "stream unsubscribed",
        };
        for &t in &streams {
            tracing::info!(
                room = %peer.room,
                session = %peer.resource,
                stream = %StreamId(t),
                reason = why,
                "{what}"
            );
        }
        match &peer.role {
            Role::Publisher { id, track_ids, .. } => {
                self.rooms().remove_publisher(&peer.room, id);
                let mut media = self.media.lock();
                for t in track_ids {
                    let _ = media.remove_track(*t);
                }
                if let Some(c) = &self.cascade
                    && !track_ids.is_empty()
                {
                    c.send(Command::Unpublish {
                        room: peer.room.clone(),
                        publisher: id.clone(),
                        tracks: track_ids.clone(),
                    });
                }
            }
            Role::Subscriber { remote_tracks, .. } => {
                self.rooms().remove_subscriber(&peer.room);
                if let Some(c) = &self.cascade {
                    for &track in remote_tracks {
                        c.send(Command::Want {
                            room: peer.room.clone(),
                            track,
                            more: false,
                        });
                    }
                }
            }
        }
        {
            let mut media = self.media.lock();
            if peer.state == PeerState::Connected {
                let _ = media.remove_session(session);
            }
            let _ = media.remove_ice(session);
        }
        if let Some(d) = peer.dtls {
            tokio::spawn(d.close());
        }
        true
    }

    fn on_event(self: &Arc<Self>, ev: RouterEvent) {
        match ev {
            RouterEvent::IceChecked {
                session,
                worker,
                remote,
                nominated,
            } => {
                let moved = {
                    let mut peers = self.peers();
                    let Some(p) = peers.by_session.get_mut(&session) else {
                        return;
                    };
                    let names = (p.room.clone(), p.resource.clone());
                    p.on_ice_checked(worker, remote, nominated);
                    // A client may nominate another pair after connecting (a multi-homed
                    // host picking a better local address): media follows the nomination.
                    let moved = nominated
                        && p.state == PeerState::Connected
                        && p.remote.is_some_and(|r| r != remote);
                    if moved {
                        p.remote = Some(remote);
                    }
                    moved.then_some(names)
                };
                if let Some((room, resource)) = moved {
                    tracing::info!(%room, session = %resource, %remote, "client nominated a new candidate pair");
                    if let Err(e) = self.media.lock().rebind_session(session, remote) {
                        tracing::warn!(%room, session = %resource, error = %e, "cannot move the session");
                    }
                }
            }
            RouterEvent::Dtls {
                session,
                worker,
                remote,
                packet,
            } => self.on_dtls(session, worker, remote, packet),
            RouterEvent::ConsentExpired { session, remote } => {
                let ours = self.peers().by_session.get(&session).is_some_and(|p| {
                    p.remote == Some(remote) || p.selected.is_some_and(|(_, r, _)| r == remote)
                });
                if ours {
                    self.close_session(session, "ICE consent expired");
                }
            }
        }
    }

    fn on_dtls(
        self: &Arc<Self>,
        session: SessionId,
        worker: WorkerId,
        remote: SocketAddr,
        pkt: Bytes,
    ) {
        let mut peers = self.peers();
        let Some(peer) = peers.by_session.get_mut(&session) else {
            return;
        };
        if let Some(tx) = &peer.dtls_in {
            // A full queue means the peer floods us; dropping is what DTLS tolerates.
            let _ = tx.try_send(pkt);
            return;
        }
        let (tx, rx) = mpsc::channel(DTLS_QUEUE);
        let _ = tx.try_send(pkt);
        peer.dtls_in = Some(tx);
        let expected = peer.fingerprint.clone();
        let (room, resource) = (peer.room.clone(), peer.resource.clone());
        drop(peers);
        let weak = Arc::downgrade(self);
        let send: SendFn = Arc::new(move |record: Bytes| {
            if let Some(shared) = weak.upgrade() {
                let _ = shared.media.lock().send_raw(worker, remote, record);
            }
        });
        let timeout = Duration::from_secs(self.config.limits.dtls_timeout_secs);
        let shared = Arc::downgrade(self);
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let result = dtls::accept(&identity, expected, rx, send, timeout).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match result {
                Ok((keys, dtls)) => shared.establish(session, worker, remote, keys, dtls),
                Err(e) => {
                    tracing::warn!(%room, session = %resource, %remote, error = %e, "DTLS handshake failed");
                    shared.close_session(session, "DTLS handshake failed");
                }
            }
        });
    }

    /// Installs the session's keys on its worker, then its tracks or subscriptions.
    fn establish(
        &self,
        session: SessionId,
        worker: WorkerId,
        remote: SocketAddr,
        keys: SrtpSessionKeys,
        dtls: dtls::DtlsSession,
    ) {
        let mut peers = self.peers();
        let Some(peer) = peers.by_session.get_mut(&session) else {
            // Ended while the handshake ran.
            tokio::spawn(dtls.close());
            return;
        };
        // Media goes where ICE nominated; before a nomination, where DTLS came from.
        let _ = worker;
        let remote = match peer.selected {
            Some((_, r, true)) => r,
            _ => remote,
        };
        let mut media = self.media.lock();
        let config = SessionConfig {
            id: session,
            remote,
            inbound: keys.inbound,
            outbound: keys.outbound,
            extensions: peer.extensions,
            rtcp_ssrc: rand::rng().random::<u32>() | 1,
        };
        if let Err(e) = media.add_session(config) {
            tracing::error!(room = %peer.room, session = %peer.resource, error = %e, "cannot install session");
            return;
        }
        peer.state = PeerState::Connected;
        peer.remote = Some(remote);
        peer.dtls = Some(dtls);
        tracing::info!(
            room = %peer.room,
            session = %peer.resource,
            %remote,
            role = peer.kind(),
            publisher = peer.publisher(),
            "session connected"
        );
        match &mut peer.role {
            Role::Publisher {
                id,
                tracks,
                ext_uris,
                track_ids,
            } => {
                let mut infos = Vec::new();
                let mut sources = Vec::new();
                let mut descriptors = Vec::new();
                for t in tracks.iter() {
                    let track_id = self.next_track_id();
                    let cfg = TrackConfig {
                        id: track_id,
                        publisher: session,
                        home: 0,
                        codec: t.codec.codec,
                        clock_rate: t.codec.clock_rate,
                        payload_type: t.codec.payload_type,
                        rtx_payload_type: t.rtx_payload_type,
                        layers: t.layers.clone(),
                    };
                    if let Err(e) = media.add_track(cfg) {
                        tracing::error!(
                            room = %peer.room,
                            session = %peer.resource,
                            stream = %StreamId(track_id),
                            error = %e,
                            "cannot announce track"
                        );
                        continue;
                    }
                    tracing::info!(
                        room = %peer.room,
                        session = %peer.resource,
                        publisher = %id,
                        stream = %StreamId(track_id),
                        kind = t.kind.as_str(),
                        codec = %t.codec.name,
                        layers = t.layers.len(),
                        "stream published"
                    );
                    track_ids.push(track_id);
                    infos.push(TrackInfo {
                        id: track_id,
                        kind: match t.kind {
                            MediaKind::Audio => "audio",
                            MediaKind::Video => "video",
                        },
                        codec: t.codec.name.clone(),
                        simulcast: t.simulcast,
                        layers: t.layers.len(),
                    });
                    descriptors.push(TrackDescriptor::from_published(track_id, id, t, ext_uris));
                    sources.push(SourceTrack {
                        track_id,
                        stream_id: id.clone(),
                        kind: t.kind,
                        codec: t.codec.clone(),
                        rtx_payload_type: t.rtx_payload_type,
                        ext_uris: ext_uris.clone(),
                    });
                }
                let info = PublisherInfo {
                    id: id.clone(),
                    tracks: infos,
                };
                drop(media);
                let room = peer.room.clone();
                let publisher = id.clone();
                drop(peers);
                self.rooms().add_publisher(&room, info, sources);
                if let Some(c) = &self.cascade {
                    c.send(Command::Publish {
                        room,
                        publisher,
                        tracks: descriptors,
                    });
                }
            }
            Role::Subscriber {
                publisher,
                plan,
                remote_tracks,
            } => {
                let mut rng = rand::rng();
                for s in plan.iter() {
                    let cfg = SubscribeConfig {
                        session,
                        track: s.track_id,
                        ssrc: s.ssrc,
                        payload_type: s.payload_type,
                        rtx: s.rtx,
                        initial_seq: rng.random(),
                        initial_ts: rng.random(),
                        layer: 0,
                        pinned: false,
                        ext_remap: Some(s.ext_remap.clone()),
                    };
                    if let Err(e) = media.subscribe(cfg) {
                        // The publisher left between the answer and the handshake.
                        tracing::info!(
                            room = %peer.room,
                            session = %peer.resource,
                            stream = %StreamId(s.track_id),
                            error = %e,
                            "track gone"
                        );
                        continue;
                    }
                    let far = self
                        .cascade
                        .as_ref()
                        .is_some_and(|c| track_home(s.track_id) != c.node());
                    tracing::info!(
                        room = %peer.room,
                        session = %peer.resource,
                        publisher = %publisher,
                        stream = %StreamId(s.track_id),
                        remote = far,
                        "stream subscribed"
                    );
                    if let Some(c) = &self.cascade
                        && far
                    {
                        remote_tracks.push(s.track_id);
                        c.send(Command::Want {
                            room: peer.room.clone(),
                            track: s.track_id,
                            more: true,
                        });
                    }
                }
            }
        }
    }

    /// Ends sessions that never connected: a client that posted and vanished.
    fn reap(&self) {
        let limit = Duration::from_secs(
            self.config
                .limits
                .dtls_timeout_secs
                .saturating_add(self.config.limits.consent_timeout_secs),
        );
        let stale: Vec<SessionId> = self
            .peers()
            .by_session
            .values()
            .filter(|p| p.state == PeerState::Connecting && p.created.elapsed() > limit)
            .map(|p| p.session)
            .collect();
        for s in stale {
            self.close_session(s, "never connected");
        }
    }
}

fn expected(f: &sdp::Fingerprint) -> ExpectedFingerprint {
    ExpectedFingerprint {
        algorithm: f.algorithm.clone(),
        value: f.value.clone(),
    }
}

/// Carries worker events to the sessions until the node stops.
pub async fn run_events(shared: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<RouterEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(s) = shared.upgrade() else {
            return;
        };
        s.on_event(ev);
    }
}

pub async fn run_reaper(shared: Weak<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(s) = shared.upgrade() else {
            return;
        };
        s.reap();
    }
}
