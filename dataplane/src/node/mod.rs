//! A node's media plane as the control plane sees it: the router on every worker of a
//! driver, and the bookkeeping that sends each command to the worker it concerns.
//!
//! Sessions live on the worker their 5-tuple is steered to; every worker learns every
//! track (so it can serve its own subscribers from handoffs), and a subscription goes to
//! the subscriber's worker, which tells the track's home worker by handoff. This is also
//! the bench session API: keys are installed directly, no DTLS.
//!
//! For browsers, ICE credentials go to every worker (the remote address is unknown until
//! the first check lands); a validated remote's DTLS records come up as events, the
//! control plane's go back out through `send_raw` on the worker that reported them.
//!
//! A session whose peer re-nominates another candidate pair keeps its worker (and its
//! SRTP state); if the new address steers elsewhere, the worker it lands on hands the
//! session's RTP and RTCP over (`rebind_session`).
//!
//! Cascade: a track published on another node is added with `add_remote_track` and homed
//! on worker `track id % workers`, so a link's receive path needs no table to find it;
//! its packets go in with `link_media`, and what its subscribers ask of the publisher
//! comes out as [`crate::router::UpstreamEvent`]s. On the publishing node, `link_*` and
//! `request_keyframe` serve the far nodes; their packets come out of `Workers::links`.

use crate::driver::{ActiveDriver, DriverConfig, WorkerStats, Workers};
use crate::engine::{Micros, WorkerId};
use crate::router::{
    IceCredentials, MAX_NACK_UPSTREAM, Router, RouterCommand, RouterConfig, RouterStats,
    SessionConfig, SessionId, SubscribeConfig, TrackConfig, TrackId,
};
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long [`MediaNode::router_stats`] waits for all workers together.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    #[error("unknown track {0}")]
    UnknownTrack(TrackId),
    #[error("track {0} exists already")]
    TrackExists(TrackId),
    #[error("worker {0} has stopped")]
    WorkerGone(WorkerId),
}

#[derive(Debug)]
pub struct MediaNode {
    workers: Workers<Router>,
    sessions: HashMap<SessionId, WorkerId>,
    tracks: HashMap<TrackId, WorkerId>,
    /// Sessions rebound to a remote steered to another worker: that worker and the
    /// remote it forwards.
    forwards: HashMap<SessionId, (WorkerId, SocketAddr)>,
}

impl MediaNode {
    pub fn start(driver: DriverConfig, router: RouterConfig) -> io::Result<Self> {
        let workers = Workers::start(driver, |id, _| Router::new(id, router.clone()))?;
        Ok(Self {
            workers,
            sessions: HashMap::new(),
            tracks: HashMap::new(),
            forwards: HashMap::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.workers.local_addr()
    }

    pub fn workers(&self) -> &Workers<Router> {
        &self.workers
    }

    pub fn driver(&self) -> &ActiveDriver {
        self.workers.kind()
    }

    pub fn now(&self) -> Micros {
        self.workers.now()
    }

    fn send(&self, worker: WorkerId, cmd: RouterCommand) -> Result<(), NodeError> {
        self.workers
            .command(worker, cmd)
            .map_err(|_| NodeError::WorkerGone(worker))
    }

    fn broadcast(&self, cmd: impl Fn() -> RouterCommand) -> Result<(), NodeError> {
        (0..self.workers.workers()).try_for_each(|w| self.send(w, cmd()))
    }

    /// The worker a remote address's datagrams land on, and so where its session lives.
    pub fn worker_for(&self, remote: SocketAddr) -> WorkerId {
        self.workers.worker_for(remote)
    }

    /// Lets every worker answer the session's ICE checks.
    pub fn add_ice(&mut self, creds: IceCredentials) -> Result<(), NodeError> {
        self.broadcast(|| RouterCommand::AddIce(Box::new(creds.clone())))
    }

    /// Forgets the session's ICE credentials and validated remotes on every worker.
    pub fn remove_ice(&mut self, session: SessionId) -> Result<(), NodeError> {
        self.broadcast(|| RouterCommand::RemoveIce(session))
    }

    /// Sends `packet` as it is from `worker`'s media socket: use the worker that reported
    /// the remote, so the datagram leaves from the socket the remote's 5-tuple uses.
    pub fn send_raw(
        &self,
        worker: WorkerId,
        dest: SocketAddr,
        packet: Bytes,
    ) -> Result<(), NodeError> {
        self.send(worker, RouterCommand::SendRaw { dest, packet })
    }

    /// Every worker's live counters, in worker order. A worker that does not answer
    /// within [`SNAPSHOT_TIMEOUT`] (stopped, or stuck) shows all zeros.
    pub fn router_stats(&self) -> Vec<RouterStats> {
        let replies: Vec<_> = (0..self.workers.workers())
            .map(|w| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.send(w, RouterCommand::Snapshot(tx)).ok().map(|_| rx)
            })
            .collect();
        let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
        replies
            .into_iter()
            .enumerate()
            .map(|(w, rx)| {
                let got = rx.and_then(|rx| rx.recv_deadline(deadline).ok());
                got.unwrap_or_else(|| {
                    tracing::warn!(worker = w, "no counters from worker");
                    RouterStats::default()
                })
            })
            .collect()
    }

    /// Installs a session on the worker its remote address is steered to; returns it.
    pub fn add_session(&mut self, config: SessionConfig) -> Result<WorkerId, NodeError> {
        let worker = self.workers.worker_for(config.remote);
        let id = config.id;
        self.send(worker, RouterCommand::AddSession(Box::new(config)))?;
        self.sessions.insert(id, worker);
        Ok(worker)
    }

    pub fn remove_session(&mut self, id: SessionId) -> Result<(), NodeError> {
        let worker = self
            .sessions
            .remove(&id)
            .ok_or(NodeError::UnknownSession(id))?;
        let unforwarded = self.unforward(id);
        self.send(worker, RouterCommand::RemoveSession(id))?;
        unforwarded
    }

    /// Moves an established session to another remote address (the peer re-nominated
    /// another candidate pair). The session stays on its worker; when `remote` is
    /// steered elsewhere, that worker passes its RTP and RTCP on. A later rebind
    /// replaces the forwarding, `remove_session` ends it.
    pub fn rebind_session(
        &mut self,
        session: SessionId,
        remote: SocketAddr,
    ) -> Result<(), NodeError> {
        let home = *self
            .sessions
            .get(&session)
            .ok_or(NodeError::UnknownSession(session))?;
        let steered = self.workers.worker_for(remote);
        let wanted = (steered != home).then_some((steered, remote));
        if self.forwards.get(&session).copied() != wanted {
            self.unforward(session)?;
        }
        self.send(home, RouterCommand::RebindSession { session, remote })?;
        if let Some((worker, remote)) = wanted {
            self.send(
                worker,
                RouterCommand::ForwardRemote {
                    remote,
                    worker: home,
                },
            )?;
            self.forwards.insert(session, (worker, remote));
        }
        Ok(())
    }

    fn unforward(&mut self, session: SessionId) -> Result<(), NodeError> {
        match self.forwards.remove(&session) {
            Some((worker, remote)) => self.send(worker, RouterCommand::UnforwardRemote { remote }),
            None => Ok(()),
        }
    }

    /// Announces a track on every worker, homed where its publisher's session lives.
    pub fn add_track(&mut self, mut config: TrackConfig) -> Result<(), NodeError> {
        let home = *self
            .sessions
            .get(&config.publisher)
            .ok_or(NodeError::UnknownSession(config.publisher))?;
        config.home = home;
        self.tracks.insert(config.id, home);
        for w in 0..self.workers.workers() {
            self.send(w, RouterCommand::AddTrack(Box::new(config.clone())))?;
        }
        Ok(())
    }

    /// Announces a track published on another node of the cascade on every worker,
    /// homed on [`MediaNode::remote_home`]. `config.publisher` and `config.home` are
    /// ignored. [`MediaNode::remove_track`] removes it.
    pub fn add_remote_track(&mut self, mut config: TrackConfig) -> Result<(), NodeError> {
        if self.tracks.contains_key(&config.id) {
            return Err(NodeError::TrackExists(config.id));
        }
        let home = self.remote_home(config.id);
        config.home = home;
        self.tracks.insert(config.id, home);
        self.broadcast(|| RouterCommand::AddRemoteTrack(Box::new(config.clone())))
    }

    /// The worker a remote track lives on: a function of its id alone.
    pub fn remote_home(&self, track: TrackId) -> WorkerId {
        (track % self.workers.workers() as u64) as WorkerId
    }

    /// Hands a remote track's packet from a link to its home worker, which sends it to
    /// the track's subscribers as if its publisher were here. A packet for a track that
    /// is not a remote track here is dropped and counted there
    /// (`RouterStats::drop_link_unknown_track`).
    pub fn link_media(
        &self,
        track: TrackId,
        layer: u8,
        keyframe: bool,
        packet: Bytes,
    ) -> Result<(), NodeError> {
        let cmd = RouterCommand::LinkMedia {
            track,
            layer,
            keyframe,
            packet,
        };
        self.send(self.remote_home(track), cmd)
    }

    fn home(&self, track: TrackId) -> Result<WorkerId, NodeError> {
        self.tracks
            .get(&track)
            .copied()
            .ok_or(NodeError::UnknownTrack(track))
    }

    /// Starts sending `layer` of `track` to `node`, once however many subscribers are
    /// behind it.
    pub fn link_subscribe(&self, track: TrackId, node: u32, layer: u8) -> Result<(), NodeError> {
        let cmd = RouterCommand::LinkSubscribe { track, node, layer };
        self.send(self.home(track)?, cmd)
    }

    pub fn link_unsubscribe(&self, track: TrackId, node: u32, layer: u8) -> Result<(), NodeError> {
        let cmd = RouterCommand::LinkUnsubscribe { track, node, layer };
        self.send(self.home(track)?, cmd)
    }

    /// A far node needs a keyframe of this layer: asked of the publisher, throttled with
    /// the local subscribers' requests (or passed further upstream, for a remote track).
    pub fn request_keyframe(&self, track: TrackId, layer: u8) -> Result<(), NodeError> {
        let cmd = RouterCommand::RequestKeyframe { track, layer };
        self.send(self.home(track)?, cmd)
    }

    /// A far node lost these packets (the publisher's sequence numbers) of a layer it
    /// subscribes to: resent to it from the cache as link packets. At most
    /// [`MAX_NACK_UPSTREAM`] are looked at.
    pub fn link_nack(
        &self,
        track: TrackId,
        node: u32,
        layer: u8,
        seqs: &[u16],
    ) -> Result<(), NodeError> {
        let cmd = RouterCommand::LinkNack {
            track,
            node,
            layer,
            seqs: seqs[..seqs.len().min(MAX_NACK_UPSTREAM)].to_vec(),
        };
        self.send(self.home(track)?, cmd)
    }

    pub fn remove_track(&mut self, id: TrackId) -> Result<(), NodeError> {
        self.tracks.remove(&id).ok_or(NodeError::UnknownTrack(id))?;
        for w in 0..self.workers.workers() {
            self.send(w, RouterCommand::RemoveTrack(id))?;
        }
        Ok(())
    }

    pub fn subscribe(&mut self, config: SubscribeConfig) -> Result<(), NodeError> {
        if !self.tracks.contains_key(&config.track) {
            return Err(NodeError::UnknownTrack(config.track));
        }
        let worker = *self
            .sessions
            .get(&config.session)
            .ok_or(NodeError::UnknownSession(config.session))?;
        self.send(worker, RouterCommand::Subscribe(config))
    }

    pub fn unsubscribe(&mut self, session: SessionId, track: TrackId) -> Result<(), NodeError> {
        let worker = *self
            .sessions
            .get(&session)
            .ok_or(NodeError::UnknownSession(session))?;
        self.send(worker, RouterCommand::Unsubscribe { session, track })
    }

    /// Pins a subscription to a layer, or returns it to the estimate.
    pub fn set_layer(
        &mut self,
        session: SessionId,
        track: TrackId,
        layer: Option<u8>,
    ) -> Result<(), NodeError> {
        let worker = *self
            .sessions
            .get(&session)
            .ok_or(NodeError::UnknownSession(session))?;
        self.send(
            worker,
            RouterCommand::SetLayer {
                session,
                track,
                layer,
            },
        )
    }

    pub fn stats(&self, worker: WorkerId) -> WorkerStats {
        self.workers.stats(worker)
    }

    /// CPU time the worker's thread has used.
    pub fn cpu_ns(&self, worker: WorkerId) -> io::Result<u64> {
        self.workers.cpu_ns(worker)
    }

    /// Stops the workers and returns their routers (with their counters).
    pub fn shutdown(self) -> std::thread::Result<Vec<Router>> {
        self.workers.shutdown()
    }
}
