//! A controlling full ICE agent for one candidate pair, sans-IO: our host candidate
//! against the node's ICE-lite host candidate (RFC 8445), with consent freshness
//! (RFC 7675).
//!
//! Until the first success every check carries USE-CANDIDATE (aggressive nomination; a
//! lite agent selects the pair it sees nominated). Afterwards a consent check goes out
//! every few seconds; consent is lost after 30 s without a valid response.

use rand::Rng;
use sluice_dataplane::stun::{
    BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, StunMessage, StunWriter,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// First retransmission of a check, doubling up to `MAX_RTO` (RFC 8489 6.2.1 spacing).
const INITIAL_RTO: Duration = Duration::from_millis(100);
const MAX_RTO: Duration = Duration::from_millis(1600);
/// RFC 7675: checks every 5 s on average (randomized 0.8-1.2), consent lost after 30 s.
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 8445 5.1.2.1: priority a peer-reflexive candidate would get (type preference 110).
const PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Checks sent, none answered yet.
    Checking,
    /// A check succeeded and the pair is nominated.
    Connected,
    /// No valid response within the consent timeout, or an error response.
    Failed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceStats {
    pub requests_sent: u64,
    pub responses: u64,
    pub error_responses: u64,
    /// STUN that did not parse, had a bad FINGERPRINT or MESSAGE-INTEGRITY, or answered
    /// no transaction of ours.
    pub discarded: u64,
}

#[derive(Debug)]
struct Transaction {
    id: [u8; 12],
    next_send: Instant,
    rto: Duration,
}

#[derive(Debug)]
pub struct IceAgent {
    /// USERNAME of our checks: "<remote ufrag>:<local ufrag>".
    username: String,
    remote_pwd: String,
    tie_breaker: u64,
    remote: SocketAddr,
    state: IceState,
    /// The check in flight, retransmitted until answered.
    pending: Option<Transaction>,
    next_consent: Option<Instant>,
    last_response: Instant,
    mapped: Option<SocketAddr>,
    last_error: Option<(u16, String)>,
    stats: IceStats,
}

impl IceAgent {
    pub fn new(
        now: Instant,
        local_ufrag: &str,
        remote_ufrag: &str,
        remote_pwd: &str,
        remote: SocketAddr,
    ) -> Self {
        Self {
            username: format!("{remote_ufrag}:{local_ufrag}"),
            remote_pwd: remote_pwd.to_owned(),
            tie_breaker: rand::rng().random(),
            remote,
            state: IceState::Checking,
            pending: Some(Transaction {
                id: rand::rng().random(),
                next_send: now,
                rto: INITIAL_RTO,
            }),
            next_consent: None,
            last_response: now,
            mapped: None,
            last_error: None,
            stats: IceStats::default(),
        }
    }

    pub fn state(&self) -> IceState {
        self.state
    }

    pub fn stats(&self) -> IceStats {
        self.stats
    }

    /// Our address as the node saw it (XOR-MAPPED-ADDRESS of the last success).
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The error code and reason of the last error response.
    pub fn last_error(&self) -> Option<&(u16, String)> {
        self.last_error.as_ref()
    }

    /// A binding request due at `now`, written into a new buffer.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.state == IceState::Failed {
            return None;
        }
        if now.duration_since(self.last_response) >= CONSENT_TIMEOUT {
            self.state = IceState::Failed;
            return None;
        }
        if self.pending.is_none() && self.next_consent.is_some_and(|t| t <= now) {
            self.next_consent = None;
            self.pending = Some(Transaction {
                id: rand::rng().random(),
                next_send: now,
                rto: INITIAL_RTO,
            });
        }
        let tx = self.pending.as_mut()?;
        if tx.next_send > now {
            return None;
        }
        tx.next_send = now + tx.rto;
        tx.rto = (tx.rto * 2).min(MAX_RTO);
        let id = tx.id;
        self.stats.requests_sent += 1;
        self.binding_request(&id).ok()
    }

    /// When `poll_transmit` next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == IceState::Failed {
            return None;
        }
        let consent_deadline = self.last_response + CONSENT_TIMEOUT;
        let next = match &self.pending {
            Some(tx) => Some(tx.next_send),
            None => self.next_consent,
        };
        Some(next.map_or(consent_deadline, |t| t.min(consent_deadline)))
    }

    fn binding_request(&self, id: &[u8; 12]) -> Result<Vec<u8>, sluice_dataplane::stun::StunError> {
        let mut buf = vec![0u8; 256];
        let mut w = StunWriter::new(&mut buf, BINDING_REQUEST, id)?;
        w.username(self.username.as_bytes())?
            .priority(PRFLX_PRIORITY)?
            .ice_controlling(self.tie_breaker)?;
        if self.state == IceState::Checking {
            w.use_candidate()?;
        }
        w.message_integrity(self.remote_pwd.as_bytes())?
            .fingerprint()?;
        let n = w.finish();
        buf.truncate(n);
        Ok(buf)
    }

    /// A STUN datagram from `from`. Responses to our check advance the state; anything
    /// else is counted and dropped (a lite agent sends no requests of its own).
    pub fn handle_stun(&mut self, now: Instant, datagram: &[u8], from: SocketAddr) {
        let Ok(msg) = StunMessage::parse(datagram) else {
            self.stats.discarded += 1;
            return;
        };
        let ours = self
            .pending
            .as_ref()
            .is_some_and(|tx| &tx.id == msg.transaction_id());
        let kind = msg.message_type();
        if !ours
            || from != self.remote
            || !(kind == BINDING_SUCCESS || kind == BINDING_ERROR)
            || msg.verify_fingerprint().is_err()
        {
            self.stats.discarded += 1;
            return;
        }
        if kind == BINDING_ERROR {
            // 401 cannot be signed (the credential was wrong); other errors must be.
            let code = msg
                .error_code()
                .map(|(c, r)| (c, String::from_utf8_lossy(r).into_owned()));
            if code.as_ref().is_some_and(|(c, _)| *c != 401)
                && msg.verify_integrity(self.remote_pwd.as_bytes()).is_err()
            {
                self.stats.discarded += 1;
                return;
            }
            self.stats.error_responses += 1;
            self.last_error = code;
            self.pending = None;
            self.state = IceState::Failed;
            return;
        }
        if msg.verify_integrity(self.remote_pwd.as_bytes()).is_err() {
            self.stats.discarded += 1;
            return;
        }
        self.stats.responses += 1;
        self.mapped = msg.xor_mapped_address().and_then(Result::ok);
        self.pending = None;
        self.last_response = now;
        self.state = IceState::Connected;
        let jitter = rand::rng().random_range(0.8..1.2);
        self.next_consent = Some(now + CONSENT_INTERVAL.mul_f64(jitter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataplane::stun::{binding_error, binding_success};

    const REMOTE_PWD: &str = "node-password-0123456789";

    const NODE: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);

    fn agent(now: Instant) -> IceAgent {
        IceAgent::new(now, "cli1", "node1", REMOTE_PWD, NODE)
    }

    /// The request as the independent `stun` crate reads it.
    #[test]
    fn request_verifies_with_the_stun_crate() {
        use stun::attributes::{
            ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USE_CANDIDATE, ATTR_USERNAME,
        };
        use stun::integrity::MessageIntegrity;
        use stun::message::{BINDING_REQUEST as REQ, Message};

        let now = Instant::now();
        let mut a = agent(now);
        let req = a.poll_transmit(now).expect("first check is due at once");
        let mut m = Message::new();
        m.raw = req.clone();
        m.decode().expect("decodes");
        assert_eq!(m.typ, REQ);
        assert_eq!(m.get(ATTR_USERNAME).unwrap(), b"node1:cli1");
        MessageIntegrity::new_short_term_integrity(REMOTE_PWD.to_owned())
            .check(&mut m)
            .expect("MESSAGE-INTEGRITY with the node's password");
        stun::fingerprint::FINGERPRINT
            .check(&m)
            .expect("FINGERPRINT");
        assert!(m.contains(ATTR_USE_CANDIDATE));
        assert!(m.contains(ATTR_ICE_CONTROLLING));
        let prio = m.get(ATTR_PRIORITY).unwrap();
        assert_eq!(
            u32::from_be_bytes(prio[..4].try_into().unwrap()),
            PRFLX_PRIORITY
        );
        // A wrong key must not verify.
        assert!(
            MessageIntegrity::new_short_term_integrity("wrong".to_owned())
                .check(&mut m)
                .is_err()
        );
    }

    #[test]
    fn retransmits_until_answered_then_checks_consent() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let first = a.poll_transmit(t0).unwrap();
        assert!(a.poll_transmit(t0).is_none(), "no resend before the RTO");
        let t1 = a.poll_timeout().unwrap();
        assert_eq!(t1 - t0, INITIAL_RTO);
        let second = a.poll_transmit(t1).unwrap();
        assert_eq!(first[8..20], second[8..20], "same transaction");
        let t2 = a.poll_timeout().unwrap();
        assert_eq!(t2 - t1, INITIAL_RTO * 2);

        // The node answers (as the dataplane's ICE-lite responder would).
        let req = StunMessage::parse(&second).unwrap();
        let me: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let mut out = [0u8; 128];
        let n = binding_success(&mut out, &req, me, REMOTE_PWD.as_bytes()).unwrap();
        // From the wrong address: ignored.
        a.handle_stun(t1, &out[..n], "127.0.0.1:5001".parse().unwrap());
        assert_eq!(a.state(), IceState::Checking);
        a.handle_stun(t1, &out[..n], NODE);
        assert_eq!(a.state(), IceState::Connected);
        assert_eq!(a.mapped_address(), Some(me));
        // A replay of the same response no longer matches a transaction.
        a.handle_stun(t1, &out[..n], NODE);
        assert_eq!(a.stats().discarded, 2);

        let consent_at = a.poll_timeout().unwrap();
        let wait = consent_at - t1;
        assert!(
            wait >= Duration::from_secs(4) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        let check = a.poll_transmit(consent_at).unwrap();
        let msg = StunMessage::parse(&check).unwrap();
        assert!(!msg.use_candidate(), "consent checks do not nominate again");
        assert_ne!(check[8..20], second[8..20]);
    }

    #[test]
    fn consent_lost_after_30_s_without_responses() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let mut now = t0;
        while let Some(t) = a.poll_timeout() {
            now = t;
            let _ = a.poll_transmit(now);
            if now - t0 > Duration::from_secs(60) {
                break;
            }
        }
        assert_eq!(a.state(), IceState::Failed);
        assert!(now - t0 >= CONSENT_TIMEOUT && now - t0 < CONSENT_TIMEOUT + MAX_RTO * 2);
        // Spacing capped: roughly 30 s / 1.6 s checks, not thousands.
        assert!(a.stats().requests_sent < 30, "{}", a.stats().requests_sent);
    }

    #[test]
    fn error_responses_fail_and_bad_integrity_is_ignored() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        let req_bytes = a.poll_transmit(t0).unwrap();
        let req = StunMessage::parse(&req_bytes).unwrap();
        let mut out = [0u8; 256];
        // Signed with the wrong password: dropped.
        let n = binding_success(&mut out, &req, "127.0.0.1:1".parse().unwrap(), b"wrong").unwrap();
        a.handle_stun(t0, &out[..n], NODE);
        assert_eq!(a.state(), IceState::Checking);
        let n = binding_error(&mut out, &req, 401, b"Unauthorized", None).unwrap();
        a.handle_stun(t0, &out[..n], NODE);
        assert_eq!(a.state(), IceState::Failed);
        assert_eq!(a.last_error().map(|e| e.0), Some(401));
        assert!(a.poll_transmit(t0 + MAX_RTO).is_none());
    }
}
