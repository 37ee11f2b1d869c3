//! ICE-lite (RFC 8445 section 2.5) on the media port: answers the browser's
//! connectivity checks, remembers which remotes proved they hold a session's password,
//! relays their DTLS records to the control plane, and forgets remotes whose consent
//! checks stop (RFC 7675).
//!
//! Credentials are broadcast to every worker (the remote address is unknown until the
//! first check), so each worker validates only the remotes steered to it. Handshake
//! traffic from strangers is rate-limited by one bucket per worker; a validated remote
//! has its own bucket, so a flood from strangers cannot starve a handshake under way or
//! an established session's consent checks.

use super::{RouterStats, SessionId};
use crate::engine::{Egress, Micros, WorkerId};
use crate::stun::{self, StunMessage};
use bytes::Bytes;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::net::SocketAddr;

/// A session's ICE credentials: ours from the SDP answer, the peer's ufrag from its offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub session: SessionId,
    pub local_ufrag: String,
    pub local_pwd: String,
    /// The ufrag a check's USERNAME must end with; empty accepts any (when the offer
    /// carried none, which browsers never do).
    pub remote_ufrag: String,
}

/// What a worker's router tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// First valid check from `remote`, and again when a check carries USE-CANDIDATE the
    /// first time.
    IceChecked {
        session: SessionId,
        worker: WorkerId,
        remote: SocketAddr,
        nominated: bool,
    },
    /// A DTLS record from an ICE-validated remote.
    Dtls {
        session: SessionId,
        worker: WorkerId,
        remote: SocketAddr,
        packet: Bytes,
    },
    /// No valid check from this validated remote for `consent_timeout` (RFC 7675 consent
    /// freshness). The remote is forgotten: its DTLS is no longer relayed.
    ConsentExpired {
        session: SessionId,
        remote: SocketAddr,
    },
}

/// Remote addresses one session may have validated on one worker: a browser checks a
/// handful of candidate pairs; more is someone with the password spraying source ports.
pub const MAX_REMOTES_PER_SESSION: usize = 16;

/// A token bucket in micro-tokens, so refill needs no division and loses nothing to
/// rounding. Holds at most one second's worth.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    micro_tokens: u64,
    last: Micros,
}

const TOKEN: u64 = 1_000_000;

impl TokenBucket {
    fn full(rate: u32) -> Self {
        Self {
            micro_tokens: u64::from(rate) * TOKEN,
            last: 0,
        }
    }

    /// Takes one token if there is one, refilling at `rate` per second since last time.
    fn take(&mut self, now: Micros, rate: u32) -> bool {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        let cap = u64::from(rate) * TOKEN;
        self.micro_tokens = self
            .micro_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(rate)))
            .min(cap);
        if self.micro_tokens >= TOKEN {
            self.micro_tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Credentials {
    session: SessionId,
    local_pwd: Box<[u8]>,
    remote_ufrag: Box<[u8]>,
}

/// A remote that answered a check with the right password.
#[derive(Debug)]
struct Remote {
    session: SessionId,
    last_check: Micros,
    nominated: bool,
    bucket: TokenBucket,
}

#[derive(Debug, Clone)]
pub(super) struct IceConfig {
    pub worker: WorkerId,
    pub events: Option<Sender<RouterEvent>>,
    pub consent_timeout: Micros,
    pub handshake_rate: u32,
    pub remote_handshake_rate: u32,
}

#[derive(Debug)]
pub(super) struct Ice {
    config: IceConfig,
    /// By local ufrag, which is what a check's USERNAME leads with.
    by_ufrag: HashMap<Box<[u8]>, Credentials>,
    ufrag_of: HashMap<SessionId, Box<[u8]>>,
    remotes: HashMap<SocketAddr, Remote>,
    strangers: TokenBucket,
}

impl Ice {
    pub fn new(config: IceConfig) -> Self {
        Self {
            strangers: TokenBucket::full(config.handshake_rate),
            config,
            by_ufrag: HashMap::new(),
            ufrag_of: HashMap::new(),
            remotes: HashMap::new(),
        }
    }

    /// Installs (or, for an ICE restart, replaces) a session's credentials. A ufrag
    /// already held by another session passes to the newer one.
    pub fn add(&mut self, c: &IceCredentials) {
        self.forget_credentials(c.session);
        let ufrag: Box<[u8]> = c.local_ufrag.as_bytes().into();
        if let Some(old) = self.by_ufrag.remove(&ufrag) {
            self.ufrag_of.remove(&old.session);
        }
        self.ufrag_of.insert(c.session, ufrag.clone());
        self.by_ufrag.insert(
            ufrag,
            Credentials {
                session: c.session,
                local_pwd: c.local_pwd.as_bytes().into(),
                remote_ufrag: c.remote_ufrag.as_bytes().into(),
            },
        );
    }

    /// Forgets a session's credentials and every remote it validated.
    pub fn remove(&mut self, session: SessionId) {
        self.forget_credentials(session);
        self.remotes.retain(|_, r| r.session != session);
    }

    fn forget_credentials(&mut self, session: SessionId) {
        if let Some(ufrag) = self.ufrag_of.remove(&session) {
            self.by_ufrag.remove(&ufrag);
        }
    }

    /// The session a validated remote belongs to.
    #[cfg(test)]
    pub fn validated(&self, remote: &SocketAddr) -> Option<SessionId> {
        self.remotes.get(remote).map(|r| r.session)
    }

    /// Whether handshake traffic from `from` may be processed now. A validated remote
    /// spends its own bucket; an established session's remote (not validated: the bench
    /// API, or consent just expired) spends nothing, so its re-check always gets through;
    /// everyone else shares the strangers' bucket.
    fn admit(&mut self, now: Micros, from: &SocketAddr, established: bool) -> bool {
        if let Some(r) = self.remotes.get_mut(from) {
            return r.bucket.take(now, self.config.remote_handshake_rate);
        }
        established || self.strangers.take(now, self.config.handshake_rate)
    }

    /// A STUN datagram on the media port.
    pub fn on_stun(
        &mut self,
        now: Micros,
        from: SocketAddr,
        buf: &[u8],
        established: bool,
        egress: &mut Egress,
        stats: &mut RouterStats,
    ) {
        stats.stun_in += 1;
        if !self.admit(now, &from, established) {
            stats.drop_rate_limited += 1;
            return;
        }
        let Ok(msg) = StunMessage::parse(buf) else {
            stats.drop_malformed += 1;
            return;
        };
        if !msg.is_binding_request() {
            // Indications (keepalives) and stray responses: an ICE-lite agent sends no
            // requests, so nothing here expects them.
            stats.unhandled += 1;
            return;
        }
        if msg.verify_fingerprint().is_err() {
            stats.stun_rejected += 1;
            return;
        }
        // USERNAME is "<our ufrag>:<their ufrag>" (RFC 8445 7.2.2).
        let Some((local, remote_ufrag)) = msg.username().and_then(split_username) else {
            stats.stun_rejected += 1;
            return;
        };
        let Some(creds) = self.by_ufrag.get(local) else {
            // Not answered: an unauthenticated reply would make the port a reflector.
            stats.stun_rejected += 1;
            return;
        };
        if msg.verify_integrity(&creds.local_pwd).is_err() {
            stats.stun_rejected += 1;
            // RFC 8445 7.3 / RFC 8489 9.1.3: 401, unsigned since the key did not match.
            egress.push(from, |slot| {
                stun::binding_error(slot, &msg, 401, b"Unauthorized", None).ok()
            });
            return;
        }
        if !creds.remote_ufrag.is_empty() && *creds.remote_ufrag != *remote_ufrag {
            // Signed with our password but meant for another offer (a stale tab, an
            // ICE restart racing the new answer).
            stats.stun_rejected += 1;
            return;
        }
        if msg.ice_controlled().is_some() && msg.ice_controlling().is_none() {
            // RFC 8445 6.1.1 and 7.3.1.1: against a lite agent the full agent must control.
            // A lite agent cannot take that role, so a peer that also claims to be
            // controlled is told of the conflict (signed: it holds our password) and
            // switches.
            stats.ice_role_conflicts += 1;
            egress.push(from, |slot| {
                stun::binding_error(slot, &msg, 487, b"Role Conflict", Some(&creds.local_pwd)).ok()
            });
            return;
        }
        let session = creds.session;
        let nominate = msg.use_candidate();
        let event = match self.remotes.get_mut(&from) {
            Some(r) if r.session == session => {
                r.last_check = now;
                let first_nomination = nominate && !r.nominated;
                r.nominated |= nominate;
                first_nomination.then_some(true)
            }
            known => {
                // A remote moving to another session (a new PeerConnection on a reused
                // port) is validated afresh for it.
                let others = known.is_some();
                if !others
                    && self
                        .remotes
                        .values()
                        .filter(|r| r.session == session)
                        .count()
                        >= MAX_REMOTES_PER_SESSION
                {
                    stats.stun_rejected += 1;
                    return;
                }
                self.remotes.insert(
                    from,
                    Remote {
                        session,
                        last_check: now,
                        nominated: nominate,
                        bucket: TokenBucket {
                            last: now,
                            ..TokenBucket::full(self.config.remote_handshake_rate)
                        },
                    },
                );
                Some(nominate)
            }
        };
        if egress
            .push(from, |slot| {
                stun::binding_success(slot, &msg, from, &creds.local_pwd).ok()
            })
            .is_some()
        {
            stats.ice_responses += 1;
        } else {
            stats.drop_egress += 1;
        }
        if let Some(nominated) = event {
            let ev = RouterEvent::IceChecked {
                session,
                worker: self.config.worker,
                remote: from,
                nominated,
            };
            emit(self.config.events.as_ref(), ev, stats);
        }
    }

    /// A DTLS datagram on the media port: relayed when its remote is validated.
    pub fn on_dtls(&mut self, now: Micros, from: SocketAddr, buf: &[u8], stats: &mut RouterStats) {
        stats.dtls_in += 1;
        let rate = self.config.remote_handshake_rate;
        let Some(remote) = self.remotes.get_mut(&from) else {
            // Cheap to drop, so not charged to the strangers' bucket: a ClientHello
            // flood must not use up the checks of browsers about to connect.
            stats.dtls_unknown += 1;
            return;
        };
        if !remote.bucket.take(now, rate) {
            stats.drop_rate_limited += 1;
            return;
        }
        let ev = RouterEvent::Dtls {
            session: remote.session,
            worker: self.config.worker,
            remote: from,
            packet: Bytes::copy_from_slice(buf),
        };
        emit(self.config.events.as_ref(), ev, stats);
    }

    /// Forgets remotes whose consent checks stopped, telling the control plane once.
    pub fn expire(&mut self, now: Micros, stats: &mut RouterStats) {
        let Self {
            config, remotes, ..
        } = self;
        let timeout = config.consent_timeout;
        remotes.retain(|&remote, r| {
            if now.saturating_sub(r.last_check) < timeout {
                return true;
            }
            let ev = RouterEvent::ConsentExpired {
                session: r.session,
                remote,
            };
            emit(config.events.as_ref(), ev, stats);
            false
        });
    }
}

fn split_username(username: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = username.iter().position(|&b| b == b':')?;
    let (local, rest) = username.split_at(colon);
    Some((local, rest.get(1..)?))
}

/// Queues an event without waiting: a stalled control plane must not stall media.
fn emit(events: Option<&Sender<RouterEvent>>, ev: RouterEvent, stats: &mut RouterStats) {
    match events {
        Some(tx) if tx.try_send(ev).is_ok() => {}
        _ => stats.events_dropped += 1,
    }
}

#[cfg(test)]
mod tests;
