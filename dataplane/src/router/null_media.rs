//! Null-media mode ([`RouterConfig::null_media`]): the null-forwarder reference measured
//! through the whole WebRTC stack. Sessions stay real (ICE checks answered, DTLS relayed,
//! keys installed, subscriptions made, RTCP handled as in normal mode), but a publisher's
//! RTP is neither decrypted nor rewritten nor re-encrypted: each datagram is copied as it
//! arrived to every session subscribed to any track of that publisher (all layers, once
//! per session), so subscribers get ciphertext they cannot open. For measuring only.
//!
//! The fan-out lists are rebuilt when sessions, tracks, subscriptions or other workers'
//! interest change, never per packet: per datagram there is one lookup by source address
//! and one copy per sink, as in [`crate::engine::NullForwarder`], plus one shared buffer
//! handed to each other worker with subscribers. Tracks published on other nodes of the
//! cascade still take the normal path, and nothing of a local publisher crosses links.

use super::{Router, RouterCommand, RouterStats, SessionId, TrackId};
use crate::engine::{BytesPool, Output, WorkerId};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;

use super::RouterHandoff;

/// A local publisher's fan-out.
#[derive(Debug, Default)]
struct Route {
    publisher: SessionId,
    /// Remotes of this worker's subscriber sessions, each once.
    sinks: Vec<SocketAddr>,
    /// Other workers with subscribers of any of the publisher's tracks.
    workers: Vec<WorkerId>,
}

/// One worker's null-mode fan-out tables.
#[derive(Debug, Default)]
pub(super) struct NullRoutes {
    /// Local publishers with at least one track, by their remote address.
    local: HashMap<SocketAddr, Route>,
    /// Where each local publisher's entry in `local` is keyed now.
    local_addr: HashMap<SessionId, SocketAddr>,
    /// Publishers on other workers: this worker's sinks for them.
    remote: HashMap<SessionId, Vec<SocketAddr>>,
    /// Local tracks by publisher, and back, from the track commands (every worker gets
    /// them, whichever worker the publisher is on).
    tracks_of: HashMap<SessionId, Vec<TrackId>>,
    publisher_of: HashMap<TrackId, SessionId>,
}

impl NullRoutes {
    /// Copies an RTP datagram from `from` to its publisher's sinks, and hands it to the
    /// other workers that have some. Returns false when `from` is no local publisher
    /// (the datagram then takes the normal path).
    pub(super) fn forward(
        &self,
        from: SocketAddr,
        buf: &[u8],
        pool: &mut BytesPool,
        out: &mut Output<RouterHandoff>,
        stats: &mut RouterStats,
    ) -> bool {
        let Some(route) = self.local.get(&from) else {
            return false;
        };
        stats.rtp_in += 1;
        copy_to(&route.sinks, buf, out, stats);
        if !route.workers.is_empty() {
            let packet = pool.share(buf);
            for &w in &route.workers {
                out.handoffs.push((
                    w,
                    RouterHandoff::NullMedia {
                        publisher: route.publisher,
                        packet: packet.clone(),
                    },
                ));
                stats.handoffs_out += 1;
            }
        }
        true
    }

    /// A datagram of `publisher` from its home worker: to this worker's sinks.
    pub(super) fn forward_handed(
        &self,
        publisher: SessionId,
        packet: &Bytes,
        out: &mut Output<RouterHandoff>,
        stats: &mut RouterStats,
    ) {
        if let Some(sinks) = self.remote.get(&publisher) {
            copy_to(sinks, packet, out, stats);
        }
    }
}

fn copy_to(
    sinks: &[SocketAddr],
    buf: &[u8],
    out: &mut Output<RouterHandoff>,
    stats: &mut RouterStats,
) {
    for &sink in sinks {
        if out.egress.push_copy(sink, buf) {
            stats.rtp_out += 1;
        } else {
            stats.drop_egress += 1;
        }
    }
}

impl Router {
    /// Before `cmd` runs: notes the tracks it adds or removes, and returns the publishers
    /// whose fan-out it may change, to be rebuilt by [`Router::null_refresh`] after it.
    pub(super) fn null_touched(&mut self, cmd: &RouterCommand) -> Vec<SessionId> {
        let routes = &mut self.null;
        match cmd {
            RouterCommand::AddTrack(c) => {
                if routes.publisher_of.insert(c.id, c.publisher).is_none() {
                    routes.tracks_of.entry(c.publisher).or_default().push(c.id);
                }
                vec![c.publisher]
            }
            RouterCommand::RemoveTrack(id) => {
                let Some(p) = routes.publisher_of.remove(id) else {
                    return Vec::new();
                };
                if let Some(ts) = routes.tracks_of.get_mut(&p) {
                    ts.retain(|t| t != id);
                    if ts.is_empty() {
                        routes.tracks_of.remove(&p);
                    }
                }
                vec![p]
            }
            RouterCommand::Subscribe(c) => self.null_publisher_of(c.track).into_iter().collect(),
            RouterCommand::Unsubscribe { track, .. } => {
                self.null_publisher_of(*track).into_iter().collect()
            }
            RouterCommand::AddSession(c) => self.null_session_touches(c.id),
            RouterCommand::RemoveSession(id) => self.null_session_touches(*id),
            RouterCommand::RebindSession { session, .. } => self.null_session_touches(*session),
            _ => Vec::new(),
        }
    }

    pub(super) fn null_publisher_of(&self, track: TrackId) -> Option<SessionId> {
        self.null.publisher_of.get(&track).copied()
    }

    /// A session's own entry, and those of the publishers it subscribes to.
    fn null_session_touches(&self, id: SessionId) -> Vec<SessionId> {
        let mut touched = vec![id];
        let subs = self
            .session_by_id
            .get(&id)
            .and_then(|&si| self.session(si))
            .map(|s| s.subscriptions.as_slice())
            .unwrap_or_default();
        for sub in subs {
            if let Some(p) = self.tracks[sub.track]
                .as_ref()
                .and_then(|t| self.null_publisher_of(t.id))
                && !touched.contains(&p)
            {
                touched.push(p);
            }
        }
        touched
    }

    /// Rebuilds the fan-out of each of `publishers` from the sessions and tracks as
    /// they are now.
    pub(super) fn null_refresh(&mut self, publishers: &[SessionId]) {
        for &p in publishers {
            let mut sinks = Vec::new();
            let mut workers = Vec::new();
            let tracks = self.null.tracks_of.get(&p).map_or(&[][..], Vec::as_slice);
            for id in tracks {
                let Some(track) = self
                    .track_by_id
                    .get(id)
                    .and_then(|&ti| self.tracks[ti].as_ref())
                else {
                    continue;
                };
                for sess in track.subscribers.iter().filter_map(|&si| self.session(si)) {
                    if !sinks.contains(&sess.remote) {
                        sinks.push(sess.remote);
                    }
                }
                for &(w, _) in &track.workers {
                    if !workers.contains(&w) {
                        workers.push(w);
                    }
                }
            }
            let has_tracks = !tracks.is_empty();
            let local = self
                .session_by_id
                .get(&p)
                .and_then(|&si| self.session(si))
                .map(|s| s.remote);
            let routes = &mut self.null;
            if let Some(old) = routes.local_addr.remove(&p) {
                routes.local.remove(&old);
            }
            routes.remote.remove(&p);
            match local {
                Some(addr) if has_tracks => {
                    routes.local_addr.insert(p, addr);
                    let route = Route {
                        publisher: p,
                        sinks,
                        workers,
                    };
                    routes.local.insert(addr, route);
                }
                Some(_) => {}
                None if !sinks.is_empty() => {
                    routes.remote.insert(p, sinks);
                }
                None => {}
            }
        }
    }
}
