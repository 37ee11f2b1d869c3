//! A full ICE agent for one candidate pair, sans-IO (RFC 8445), with consent freshness
//! (RFC 7675): our host candidate against the peer's host candidate.
//!
//! Against an ICE-lite node we are controlling and only check: until the first success
//! every check carries USE-CANDIDATE (aggressive nomination; a lite agent selects the
//! pair it sees nominated). Against a full agent (Janus) we also answer the peer's
//! checks, signed with our password, for the whole session (its consent checks too),
//! and take the role the offer/answer gives: controlling when we offered, controlled
//! when the peer did. Controlled, the pair is ours once our own check succeeded and the
//! peer nominated it (USE-CANDIDATE). Role conflicts are resolved by tie-breaker
//! (RFC 8445 7.3.1.1, 7.2.5.1).
//!
//! After connecting a consent check goes out every few seconds; consent is lost after
//! 30 s without a valid response.

use rand::Rng;
use sluice_dataplane::stun::{
    BINDING_ERROR, BINDING_INDICATION, BINDING_REQUEST, BINDING_SUCCESS, StunMessage, StunWriter,
    binding_error, binding_success,
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
/// Room for a response: header, XOR-MAPPED-ADDRESS (IPv6), integrity, fingerprint.
const RESPONSE_BUF: usize = 128;
/// RFC 8445 7.3.1.1: the error a request gets when the peer should change its role.
const ROLE_CONFLICT: u16 = 487;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Checks sent, none answered yet (or, controlled, the pair not yet nominated).
    Checking,
    /// A check succeeded and the pair is nominated.
    Connected,
    /// No valid response within the consent timeout, or an error response.
    Failed,
}

/// Who nominates (RFC 8445 6.1.1): the offerer's agent controls, unless it is lite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    Controlling,
    Controlled,
}

/// Both sides' ICE credentials from the offer and answer.
#[derive(Debug, Clone)]
pub struct IceCredentials {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceStats {
    pub requests_sent: u64,
    pub responses: u64,
    pub error_responses: u64,
    /// The peer's checks we answered with a success (a full agent's checks and consent).
    pub requests_answered: u64,
    /// Binding indications (keepalives) from the peer.
    pub indications: u64,
    /// Role conflicts resolved (ours or the peer's switched role).
    pub role_conflicts: u64,
    /// STUN that did not parse, had a bad FINGERPRINT, USERNAME or MESSAGE-INTEGRITY, or
    /// answered no transaction of ours.
    pub discarded: u64,
}

#[derive(Debug)]
struct Transaction {
    id: [u8; 12],
    next_send: Instant,
    rto: Duration,
}

impl Transaction {
    fn new(now: Instant) -> Self {
        Self {
            id: rand::rng().random(),
            next_send: now,
            rto: INITIAL_RTO,
        }
    }
}

#[derive(Debug)]
pub struct IceAgent {
    /// USERNAME of our checks: "<remote ufrag>:<local ufrag>".
    username: String,
    /// USERNAME the peer's checks must carry: "<local ufrag>:<remote ufrag>".
    peer_username: String,
    local_pwd: String,
    remote_pwd: String,
    role: IceRole,
    tie_breaker: u64,
    remote: SocketAddr,
    state: IceState,
    /// The check in flight, retransmitted until answered.
    pending: Option<Transaction>,
    /// One of our checks succeeded: the pair is valid.
    valid: bool,
    /// Controlled: the peer sent USE-CANDIDATE on this pair.
    nominated: bool,
    next_consent: Option<Instant>,
    last_response: Instant,
    mapped: Option<SocketAddr>,
    last_error: Option<(u16, String)>,
    stats: IceStats,
}

impl IceAgent {
    pub fn new(now: Instant, role: IceRole, creds: &IceCredentials, remote: SocketAddr) -> Self {
        Self {
            username: format!("{}:{}", creds.remote_ufrag, creds.local_ufrag),
            peer_username: format!("{}:{}", creds.local_ufrag, creds.remote_ufrag),
            local_pwd: creds.local_pwd.clone(),
            remote_pwd: creds.remote_pwd.clone(),
            role,
            tie_breaker: rand::rng().random(),
            remote,
            state: IceState::Checking,
            pending: Some(Transaction::new(now)),
            valid: false,
            nominated: false,
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

    #[cfg(test)]
    pub fn role(&self) -> IceRole {
        self.role
    }

    pub fn stats(&self) -> IceStats {
        self.stats
    }

    /// Our address as the peer saw it (XOR-MAPPED-ADDRESS of the last success).
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
            self.pending = Some(Transaction::new(now));
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
            .priority(PRFLX_PRIORITY)?;
        match self.role {
            IceRole::Controlling => {
                w.ice_controlling(self.tie_breaker)?;
                if self.state == IceState::Checking {
                    w.use_candidate()?;
                }
            }
            IceRole::Controlled => {
                w.ice_controlled(self.tie_breaker)?;
            }
        }
        w.message_integrity(self.remote_pwd.as_bytes())?
            .fingerprint()?;
        let n = w.finish();
        buf.truncate(n);
        Ok(buf)
    }

    /// A STUN datagram from `from`. Responses to our check advance the state; the
    /// peer's checks are answered: the returned datagram goes back to `from`. Anything
    /// else is counted and dropped.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        datagram: &[u8],
        from: SocketAddr,
    ) -> Option<Vec<u8>> {
        let Ok(msg) = StunMessage::parse(datagram) else {
            self.stats.discarded += 1;
            return None;
        };
        if from != self.remote || msg.verify_fingerprint().is_err() {
            self.stats.discarded += 1;
            return None;
        }
        match msg.message_type() {
            BINDING_REQUEST => self.handle_request(now, &msg, from),
            BINDING_SUCCESS | BINDING_ERROR => {
                self.handle_response(now, &msg);
                None
            }
            // RFC 8445 11: keepalives (Janus sends them), nothing to do.
            BINDING_INDICATION => {
                self.stats.indications += 1;
                None
            }
            _ => {
                self.stats.discarded += 1;
                None
            }
        }
    }

    /// The peer's check (RFC 8445 7.3): authenticated with our password, answered with
    /// where it came from; a nomination is remembered, and a check of ours still
    /// waiting goes out at once (the triggered check).
    fn handle_request(
        &mut self,
        now: Instant,
        msg: &StunMessage<'_>,
        from: SocketAddr,
    ) -> Option<Vec<u8>> {
        if self.state == IceState::Failed
            || msg.username() != Some(self.peer_username.as_bytes())
            || msg.verify_integrity(self.local_pwd.as_bytes()).is_err()
        {
            self.stats.discarded += 1;
            return None;
        }
        let mut out = vec![0u8; RESPONSE_BUF];
        // RFC 8445 7.3.1.1: both claim the same role; the larger tie-breaker keeps it.
        let conflict = match self.role {
            IceRole::Controlling => msg.ice_controlling(),
            IceRole::Controlled => msg.ice_controlled(),
        };
        if let Some(theirs) = conflict {
            self.stats.role_conflicts += 1;
            let we_keep = self.tie_breaker >= theirs;
            let we_keep = match self.role {
                IceRole::Controlling => we_keep,
                // A controlled agent with the larger tie-breaker becomes controlling.
                IceRole::Controlled => !we_keep,
            };
            if we_keep {
                let n = binding_error(
                    &mut out,
                    msg,
                    ROLE_CONFLICT,
                    b"Role Conflict",
                    Some(self.local_pwd.as_bytes()),
                )
                .ok()?;
                out.truncate(n);
                return Some(out);
            }
            self.switch_role();
        }
        let n = binding_success(&mut out, msg, from, self.local_pwd.as_bytes()).ok()?;
        out.truncate(n);
        self.stats.requests_answered += 1;
        if self.role == IceRole::Controlled && msg.use_candidate() {
            self.nominated = true;
            self.update_connected();
        }
        if self.state == IceState::Checking
            && let Some(tx) = self.pending.as_mut()
        {
            tx.next_send = tx.next_send.min(now);
        }
        Some(out)
    }

    fn handle_response(&mut self, now: Instant, msg: &StunMessage<'_>) {
        let ours = self
            .pending
            .as_ref()
            .is_some_and(|tx| &tx.id == msg.transaction_id());
        if !ours {
            self.stats.discarded += 1;
            return;
        }
        if msg.message_type() == BINDING_ERROR {
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
            if code.as_ref().is_some_and(|(c, _)| *c == ROLE_CONFLICT) {
                // RFC 8445 7.2.5.1: switch and check again.
                self.stats.role_conflicts += 1;
                self.switch_role();
                self.pending = Some(Transaction::new(now));
                return;
            }
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
        self.valid = true;
        self.update_connected();
        let jitter = rand::rng().random_range(0.8..1.2);
        self.next_consent = Some(now + CONSENT_INTERVAL.mul_f64(jitter));
    }

    fn switch_role(&mut self) {
        self.role = match self.role {
            IceRole::Controlling => IceRole::Controlled,
            IceRole::Controlled => IceRole::Controlling,
        };
    }

    fn update_connected(&mut self) {
        let nominated = match self.role {
            // Our successful check carried USE-CANDIDATE.
            IceRole::Controlling => true,
            IceRole::Controlled => self.nominated,
        };
        if self.state == IceState::Checking && self.valid && nominated {
            self.state = IceState::Connected;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE_PWD: &str = "node-password-0123456789";

    const NODE: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);

    const LOCAL_PWD: &str = "client-password-0123456789";

    fn creds() -> IceCredentials {
        IceCredentials {
            local_ufrag: "cli1".into(),
            local_pwd: LOCAL_PWD.into(),
            remote_ufrag: "node1".into(),
            remote_pwd: REMOTE_PWD.into(),
        }
    }

    fn agent(now: Instant) -> IceAgent {
        IceAgent::new(now, IceRole::Controlling, &creds(), NODE)
    }

    /// A check as the peer (a full agent) would send it to us.
    fn peer_check(
        username: &str,
        pwd: &str,
        controlling: Option<u64>,
        controlled: Option<u64>,
        nominate: bool,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let id: [u8; 12] = rand::rng().random();
        let mut w = StunWriter::new(&mut buf, BINDING_REQUEST, &id).unwrap();
        w.username(username.as_bytes()).unwrap();
        w.priority(PRFLX_PRIORITY).unwrap();
        if let Some(t) = controlling {
            w.ice_controlling(t).unwrap();
        }
        if let Some(t) = controlled {
            w.ice_controlled(t).unwrap();
        }
        if nominate {
            w.use_candidate().unwrap();
        }
        w.message_integrity(pwd.as_bytes()).unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        buf.truncate(n);
        buf
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

    /// Against a full agent that offered (Janus's subscriber side): we answer its checks
    /// signed with our password, and connect once our check succeeded and it nominated.
    #[test]
    fn controlled_answers_checks_and_waits_for_nomination() {
        use stun::integrity::MessageIntegrity;
        use stun::message::Getter;
        use stun::message::Message;
        use stun::xoraddr::XorMappedAddress;

        let t0 = Instant::now();
        let mut a = IceAgent::new(t0, IceRole::Controlled, &creds(), NODE);
        let ours = a.poll_transmit(t0).unwrap();
        let req = StunMessage::parse(&ours).unwrap();
        assert!(req.ice_controlled().is_some() && req.ice_controlling().is_none());
        assert!(!req.use_candidate(), "a controlled agent does not nominate");

        // The peer's check, not nominating yet.
        let check = peer_check("cli1:node1", LOCAL_PWD, Some(7), None, false);
        let from: SocketAddr = NODE;
        let resp = a.handle_stun(t0, &check, from).expect("answered");
        let mut m = Message::new();
        m.raw = resp.clone();
        m.decode().expect("decodes");
        assert_eq!(m.typ, stun::message::BINDING_SUCCESS);
        assert_eq!(m.transaction_id.0[..], check[8..20]);
        MessageIntegrity::new_short_term_integrity(LOCAL_PWD.to_owned())
            .check(&mut m)
            .expect("signed with our password");
        stun::fingerprint::FINGERPRINT
            .check(&m)
            .expect("FINGERPRINT");
        let mut xor = XorMappedAddress::default();
        xor.get_from(&m).expect("XOR-MAPPED-ADDRESS");
        assert_eq!(SocketAddr::new(xor.ip, xor.port), from);
        assert_eq!(a.stats().requests_answered, 1);

        // The triggered check goes out at once rather than after the RTO.
        assert!(a.poll_transmit(t0).is_some());
        // Our check succeeds, but without a nomination we are not connected.
        let mut out = [0u8; 128];
        let n = binding_success(
            &mut out,
            &req,
            "127.0.0.1:6000".parse().unwrap(),
            REMOTE_PWD.as_bytes(),
        )
        .unwrap();
        a.handle_stun(t0, &out[..n], NODE);
        assert_eq!(a.stats().responses, 1);
        assert_eq!(a.state(), IceState::Checking);
        let nominate = peer_check("cli1:node1", LOCAL_PWD, Some(7), None, true);
        assert!(a.handle_stun(t0, &nominate, NODE).is_some());
        assert_eq!(a.state(), IceState::Connected);

        // Consent checks from the peer keep being answered while connected.
        let later = t0 + Duration::from_secs(20);
        let consent = peer_check("cli1:node1", LOCAL_PWD, Some(7), None, false);
        assert!(a.handle_stun(later, &consent, NODE).is_some());
        assert_eq!(a.stats().requests_answered, 3);
    }

    #[test]
    fn checks_with_wrong_credentials_or_source_are_dropped() {
        let t0 = Instant::now();
        let mut a = IceAgent::new(t0, IceRole::Controlled, &creds(), NODE);
        let bad_pwd = peer_check("cli1:node1", "not-our-password-at-all", Some(7), None, true);
        assert!(a.handle_stun(t0, &bad_pwd, NODE).is_none());
        let bad_user = peer_check("other:node1", LOCAL_PWD, Some(7), None, true);
        assert!(a.handle_stun(t0, &bad_user, NODE).is_none());
        let good = peer_check("cli1:node1", LOCAL_PWD, Some(7), None, true);
        assert!(
            a.handle_stun(t0, &good, "127.0.0.1:9".parse().unwrap())
                .is_none()
        );
        let mut truncated = good.clone();
        truncated.truncate(30);
        assert!(a.handle_stun(t0, &truncated, NODE).is_none());
        assert_eq!(a.stats().discarded, 4);
        assert_eq!(a.stats().requests_answered, 0);
        assert!(!a.nominated);
    }

    /// RFC 8445 7.3.1.1: both controlling; the larger tie-breaker keeps the role.
    #[test]
    fn role_conflicts_follow_the_tie_breaker() {
        let t0 = Instant::now();
        let mut a = agent(t0);
        a.tie_breaker = 100;
        // Theirs is smaller: they get 487 and we stay controlling.
        let check = peer_check("cli1:node1", LOCAL_PWD, Some(5), None, true);
        let resp = a.handle_stun(t0, &check, NODE).unwrap();
        let msg = StunMessage::parse(&resp).unwrap();
        assert_eq!(msg.message_type(), BINDING_ERROR);
        assert_eq!(msg.error_code().map(|e| e.0), Some(ROLE_CONFLICT));
        assert_eq!(a.role(), IceRole::Controlling);
        // Theirs is larger: we become controlled and answer.
        let check = peer_check("cli1:node1", LOCAL_PWD, Some(500), None, true);
        let resp = a.handle_stun(t0, &check, NODE).unwrap();
        assert_eq!(
            StunMessage::parse(&resp).unwrap().message_type(),
            BINDING_SUCCESS
        );
        assert_eq!(a.role(), IceRole::Controlled);

        // A 487 to our own check switches role and checks again.
        let mut b = agent(t0);
        let req_bytes = b.poll_transmit(t0).unwrap();
        let req = StunMessage::parse(&req_bytes).unwrap();
        let mut out = [0u8; 256];
        let n = binding_error(
            &mut out,
            &req,
            ROLE_CONFLICT,
            b"Role Conflict",
            Some(REMOTE_PWD.as_bytes()),
        )
        .unwrap();
        b.handle_stun(t0, &out[..n], NODE);
        assert_eq!(b.role(), IceRole::Controlled);
        assert_eq!(b.state(), IceState::Checking);
        let again = b.poll_transmit(t0).expect("a new check at once");
        assert!(
            StunMessage::parse(&again)
                .unwrap()
                .ice_controlled()
                .is_some()
        );
    }
}
