//! ICE-lite and the DTLS relay through a whole router, in virtual time. Checks are built,
//! and answers verified, with webrtc-rs's `stun` crate: an independent implementation.

use super::*;
use crate::engine::{Output, PacketHandler};
use crate::router::tests::harness::*;
use crate::router::{Router, RouterCommand, RouterConfig, RouterHandoff};
use ::stun::agent::TransactionId;
use ::stun::attributes::{
    ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING, ATTR_MESSAGE_INTEGRITY, ATTR_PRIORITY,
    ATTR_USE_CANDIDATE, ATTR_USERNAME,
};
use ::stun::error_code::ErrorCodeAttribute;
use ::stun::fingerprint::FINGERPRINT;
use ::stun::integrity::MessageIntegrity;
use ::stun::message::{BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Getter, Message, Setter};
use ::stun::xoraddr::XorMappedAddress;
use crossbeam_channel::Receiver;

const SESSION: SessionId = 7;
const UFRAG: &str = "sfuU";
const PWD: &str = "sfu-password-0123456789";
const REMOTE_UFRAG: &str = "brwsr";

fn creds() -> IceCredentials {
    IceCredentials {
        session: SESSION,
        local_ufrag: UFRAG.into(),
        local_pwd: PWD.into(),
        remote_ufrag: REMOTE_UFRAG.into(),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 7], port))
}

/// A browser's connectivity check, as webrtc-rs writes one.
fn check(username: &str, pwd: &str, nominate: bool, tid: u8) -> Vec<u8> {
    check_as(ATTR_ICE_CONTROLLING, username, pwd, nominate, tid)
}

/// A check claiming `role` (ICE-CONTROLLING or ICE-CONTROLLED).
fn check_as(
    role: ::stun::attributes::AttrType,
    username: &str,
    pwd: &str,
    nominate: bool,
    tid: u8,
) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = BINDING_REQUEST;
    m.transaction_id = TransactionId([tid; 12]);
    m.write_header();
    m.add(ATTR_USERNAME, username.as_bytes());
    m.add(ATTR_PRIORITY, &1_853_824_767u32.to_be_bytes());
    if nominate {
        m.add(ATTR_USE_CANDIDATE, &[]);
    }
    m.add(role, &0x1122_3344_5566_7788u64.to_be_bytes());
    MessageIntegrity::new_short_term_integrity(pwd.into())
        .add_to(&mut m)
        .unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    m.raw
}

fn good_check(nominate: bool, tid: u8) -> Vec<u8> {
    check(&format!("{UFRAG}:{REMOTE_UFRAG}"), PWD, nominate, tid)
}

/// A DTLS 1.2 handshake record header with some body.
fn dtls_record(tag: u8) -> Vec<u8> {
    vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, tag, 0, 3, 1, 2, tag]
}

struct Lite {
    h: Harness,
    events: Receiver<RouterEvent>,
}

impl Lite {
    fn new(config: RouterConfig) -> Self {
        let (tx, events) = crossbeam_channel::bounded(64);
        let router = Router::new(
            0,
            RouterConfig {
                events: Some(tx),
                ..config
            },
        );
        let mut ice = Self {
            h: Harness {
                router,
                out: Output::<RouterHandoff>::default(),
                now: 1_000_000,
            },
            events,
        };
        ice.h.command(RouterCommand::AddIce(Box::new(creds())));
        ice
    }

    fn send(&mut self, from: SocketAddr, mut datagram: Vec<u8>) {
        let h = &mut self.h;
        h.router
            .handle_datagram(h.now, from, &mut datagram, &mut h.out);
    }

    /// Datagrams queued for `to`, taken; the others stay.
    fn take(&mut self, to: SocketAddr) -> Vec<Vec<u8>> {
        let mut mine = Vec::new();
        let mut rest = Egress::default();
        for (dest, bytes) in self.h.out.egress.iter() {
            if dest == to {
                mine.push(bytes.to_vec());
            } else {
                rest.push_copy(dest, bytes);
            }
        }
        self.h.out.egress = rest;
        mine
    }

    fn take_all_strangers(&mut self) -> usize {
        let n = self
            .h
            .out
            .egress
            .iter()
            .filter(|(d, _)| matches!(d.ip(), std::net::IpAddr::V4(v) if v.octets()[..3] == [203, 0, 113]))
            .count();
        self.h.out.egress.clear();
        n
    }

    fn events(&self) -> Vec<RouterEvent> {
        self.events.try_iter().collect()
    }

    fn stats(&self) -> RouterStats {
        *self.h.router.stats()
    }

    /// Sends one good check from `from` and returns its answer, verified.
    fn validate(&mut self, from: SocketAddr, nominate: bool, tid: u8) -> Message {
        self.send(from, good_check(nominate, tid));
        let answers = self.take(from);
        assert_eq!(answers.len(), 1, "one answer per check");
        success(&answers[0], from, tid)
    }
}

fn decode(bytes: &[u8]) -> Message {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().unwrap();
    m
}

/// Checks a binding success the way the browser's stack would.
fn success(bytes: &[u8], from: SocketAddr, tid: u8) -> Message {
    let mut m = decode(bytes);
    assert_eq!(m.typ, BINDING_SUCCESS);
    assert_eq!(m.transaction_id.0, [tid; 12]);
    MessageIntegrity::new_short_term_integrity(PWD.into())
        .check(&mut m)
        .expect("signed with the local password");
    FINGERPRINT.check(&m).expect("fingerprint");
    let mut xor = XorMappedAddress::default();
    xor.get_from(&m).unwrap();
    assert_eq!((xor.ip, xor.port), (from.ip(), from.port()));
    m
}

fn checked(remote: SocketAddr, nominated: bool) -> RouterEvent {
    RouterEvent::IceChecked {
        session: SESSION,
        worker: 0,
        remote,
        nominated,
    }
}

#[test]
fn bucket_refills_at_rate_up_to_one_second() {
    let mut b = TokenBucket::full(10);
    let taken = (0..20).filter(|_| b.take(0, 10)).count();
    assert_eq!(taken, 10);
    // 100 ms at 10/s is one token.
    assert!(b.take(100_000, 10));
    assert!(!b.take(100_000, 10));
    // A long pause refills only to the burst.
    let taken = (0..20).filter(|_| b.take(100_000_000, 10)).count();
    assert_eq!(taken, 10);
    // Time going backwards (never from the driver) neither panics nor refills.
    assert!(!b.take(5, 10));
}

#[test]
fn username_splits_at_first_colon() {
    assert_eq!(
        split_username(b"sfu:peer"),
        Some((&b"sfu"[..], &b"peer"[..]))
    );
    assert_eq!(split_username(b"sfu:"), Some((&b"sfu"[..], &b""[..])));
    assert_eq!(split_username(b"nocolon"), None);
}

#[test]
fn valid_check_is_answered_and_reported_once_then_on_nomination() {
    let mut ice = Lite::new(RouterConfig::default());
    let remote = addr(40_000);
    ice.validate(remote, false, 1);
    assert_eq!(ice.events(), vec![checked(remote, false)]);
    assert_eq!(ice.h.router.ice.validated(&remote), Some(SESSION));
    // Further checks are answered but not reported again...
    ice.validate(remote, false, 2);
    assert_eq!(ice.events(), vec![]);
    // ...until the first one that nominates the pair, and only that one.
    ice.validate(remote, true, 3);
    assert_eq!(ice.events(), vec![checked(remote, true)]);
    ice.validate(remote, true, 4);
    assert_eq!(ice.events(), vec![]);
    // A second candidate pair nominating on its first check: one event, nominated.
    let other = addr(40_001);
    ice.validate(other, true, 5);
    assert_eq!(ice.events(), vec![checked(other, true)]);
    let s = ice.stats();
    assert_eq!((s.stun_in, s.ice_responses, s.stun_rejected), (5, 5, 0));
    assert_eq!(s.events_dropped, 0);
}

#[test]
fn ipv6_remote_gets_its_address_back() {
    let mut ice = Lite::new(RouterConfig::default());
    let remote: SocketAddr = "[2001:db8::77]:51000".parse().unwrap();
    ice.validate(remote, false, 9);
    assert_eq!(ice.events(), vec![checked(remote, false)]);
}

#[test]
fn wrong_password_gets_unsigned_401_and_no_event() {
    let mut ice = Lite::new(RouterConfig::default());
    let remote = addr(40_000);
    ice.send(
        remote,
        check(
            &format!("{UFRAG}:{REMOTE_UFRAG}"),
            "not-the-password",
            true,
            1,
        ),
    );
    let answers = ice.take(remote);
    assert_eq!(answers.len(), 1);
    let m = decode(&answers[0]);
    assert_eq!(m.typ, BINDING_ERROR);
    assert_eq!(m.transaction_id.0, [1; 12]);
    let mut code = ErrorCodeAttribute::default();
    code.get_from(&m).unwrap();
    assert_eq!(code.code.0, 401);
    assert!(!m.contains(ATTR_MESSAGE_INTEGRITY));
    FINGERPRINT.check(&m).unwrap();
    assert_eq!(ice.events(), vec![]);
    assert_eq!(ice.h.router.ice.validated(&remote), None);
    let s = ice.stats();
    assert_eq!((s.stun_in, s.ice_responses, s.stun_rejected), (1, 0, 1));
    // Its DTLS goes nowhere.
    ice.send(remote, dtls_record(1));
    assert_eq!(ice.events(), vec![]);
    assert_eq!(ice.stats().dtls_unknown, 1);
}

#[test]
fn a_peer_claiming_the_controlled_role_gets_a_signed_487_then_succeeds_as_controlling() {
    let mut ice = Lite::new(RouterConfig::default());
    let remote = addr(40_001);
    let user = format!("{UFRAG}:{REMOTE_UFRAG}");
    ice.send(remote, check_as(ATTR_ICE_CONTROLLED, &user, PWD, false, 1));
    let answers = ice.take(remote);
    assert_eq!(answers.len(), 1);
    let mut m = decode(&answers[0]);
    assert_eq!(m.typ, BINDING_ERROR);
    assert_eq!(m.transaction_id.0, [1; 12]);
    let mut code = ErrorCodeAttribute::default();
    code.get_from(&m).unwrap();
    assert_eq!(code.code.0, 487);
    MessageIntegrity::new_short_term_integrity(PWD.into())
        .check(&mut m)
        .expect("a 487 is signed with the local password");
    FINGERPRINT.check(&m).unwrap();
    // Not validated by a check in the wrong role.
    assert_eq!(ice.events(), vec![]);
    assert_eq!(ice.h.router.ice.validated(&remote), None);
    assert_eq!(ice.stats().ice_role_conflicts, 1);
    // The peer switches roles (RFC 8445 7.2.5.1) and checks again.
    ice.validate(remote, true, 2);
    assert_eq!(ice.events(), vec![checked(remote, true)]);
}

#[test]
fn unknown_or_foreign_checks_are_dropped_silently() {
    let mut ice = Lite::new(RouterConfig::default());
    let remote = addr(40_000);
    let mut bad_fingerprint = good_check(false, 4);
    let last = bad_fingerprint.len() - 1;
    bad_fingerprint[last] ^= 1;
    let mut no_username = Message::new();
    no_username.typ = BINDING_REQUEST;
    no_username.write_header();
    FINGERPRINT.add_to(&mut no_username).unwrap();
    for datagram in [
        // A ufrag no session has.
        check(&format!("nobody:{REMOTE_UFRAG}"), PWD, true, 1),
        // Signed with our password, but for another offer's ufrag.
        check(&format!("{UFRAG}:stale"), PWD, true, 2),
        // No colon: no ufrag pair at all.
        check(UFRAG, PWD, true, 3),
        bad_fingerprint,
        no_username.raw,
    ] {
        ice.send(remote, datagram);
    }
    assert_eq!(ice.take(remote), Vec::<Vec<u8>>::new());
    assert_eq!(ice.events(), vec![]);
    let s = ice.stats();
    assert_eq!((s.stun_in, s.stun_rejected, s.ice_responses), (5, 5, 0));
    // Garbage with a STUN first byte, and an indication: counted, not answered.
    ice.send(remote, vec![0, 1, 0, 0]);
    let mut ind = Message::new();
    ind.typ = ::stun::message::MessageType::new(
        ::stun::message::METHOD_BINDING,
        ::stun::message::CLASS_INDICATION,
    );
    ind.write_header();
    ice.send(remote, ind.raw);
    let s = ice.stats();
    assert_eq!((s.stun_in, s.drop_malformed, s.unhandled), (7, 1, 1));
    assert!(ice.take(remote).is_empty());
}

#[test]
fn dtls_is_relayed_only_from_validated_remotes() {
    let mut ice = Lite::new(RouterConfig::default());
    let (remote, stranger) = (addr(40_000), addr(40_001));
    ice.send(stranger, dtls_record(1));
    ice.validate(remote, true, 1);
    ice.events();
    ice.send(remote, dtls_record(2));
    assert_eq!(
        ice.events(),
        vec![RouterEvent::Dtls {
            session: SESSION,
            worker: 0,
            remote,
            packet: Bytes::from(dtls_record(2)),
        }]
    );
    ice.send(stranger, dtls_record(3));
    assert_eq!(ice.events(), vec![]);
    let s = ice.stats();
    assert_eq!((s.dtls_in, s.dtls_unknown), (3, 2));
    assert!(ice.take(stranger).is_empty());

    // The control plane's answer goes out as it is.
    let flight = Bytes::from(dtls_record(4));
    ice.h.command(RouterCommand::SendRaw {
        dest: remote,
        packet: flight.clone(),
    });
    assert_eq!(ice.take(remote), vec![flight.to_vec()]);
    assert_eq!(ice.stats().raw_out, 1);

    // Forgetting the session forgets its remotes and its ufrag.
    ice.h.command(RouterCommand::RemoveIce(SESSION));
    ice.send(remote, dtls_record(5));
    ice.send(remote, good_check(false, 2));
    assert_eq!(ice.events(), vec![]);
    assert!(ice.take(remote).is_empty());
    let s = ice.stats();
    assert_eq!((s.dtls_unknown, s.stun_rejected), (3, 1));
}

#[test]
fn snapshot_replies_with_live_counters() {
    let mut ice = Lite::new(RouterConfig::default());
    ice.validate(addr(40_000), false, 1);
    let (tx, rx) = crossbeam_channel::bounded(1);
    ice.h.command(RouterCommand::Snapshot(tx));
    let got = rx.try_recv().unwrap();
    assert_eq!(got, ice.stats());
    assert_eq!(got.ice_responses, 1);
}

#[test]
fn stranger_flood_is_limited_without_starving_known_remotes() {
    let mut ice = Lite::new(RouterConfig {
        handshake_rate: 20,
        ..RouterConfig::default()
    });
    // A browser mid-handshake, and established sessions (keys installed, not yet
    // validated on this worker).
    let handshaking = addr(40_000);
    ice.validate(handshaking, true, 1);
    let mut publisher = Peer::new(SESSION, 5001);
    let sub = Peer::new(2, 5002);
    ice.h.add(&publisher);
    ice.h.add(&sub);
    ice.h.command(RouterCommand::AddTrack(Box::new(video_track(
        9,
        SESSION,
        &[1000],
    ))));
    ice.h
        .command(RouterCommand::Subscribe(subscribe(2, 9, 0xABC0, 0)));
    ice.take(publisher.addr);
    ice.events();

    // 1000 checks and ClientHellos from 1000 strangers, some with a valid ufrag but a
    // guessed password, interleaved with media and the known remotes' traffic.
    let (mut media_out, mut consent_answers, mut relayed) = (0, 0, 0);
    for i in 0..1000u16 {
        let stranger = SocketAddr::from(([203, 0, 113, (i % 200) as u8], 20_000 + i));
        let user = if i % 2 == 0 {
            format!("{UFRAG}:{REMOTE_UFRAG}")
        } else {
            format!("x{i}:y")
        };
        ice.send(stranger, check(&user, "guess", false, i as u8));
        ice.send(stranger, dtls_record(i as u8));
        if i % 50 == 0 {
            let pkt = publisher.rtp(VIDEO_PT, 1000, i, 90 * u32::from(i), &vp8(i, true, i == 0));
            ice.h.send(&publisher, pkt);
            media_out += ice.take(sub.addr).len();
            // The established publisher's consent checks are answered: the first is
            // free, the next ones spend the bucket it got by passing.
            ice.send(publisher.addr, good_check(false, 100));
            consent_answers += ice.take(publisher.addr).len();
            ice.send(handshaking, dtls_record(200));
            relayed += ice
                .events()
                .iter()
                .filter(|e| matches!(e, RouterEvent::Dtls { .. }))
                .count();
        }
        ice.h.now += 100;
    }
    // 99.9 ms passed: the 19 tokens the handshaking browser's first check left, and one
    // refilled at 20/s (at i = 500).
    let s = ice.stats();
    assert_eq!(s.drop_rate_limited, 1000 - 20, "{s:?}");
    assert_eq!(s.dtls_unknown, 1000);
    assert_eq!((media_out, consent_answers, relayed), (20, 20, 20));
    // Of those 20, the even ones carried our ufrag and got a 401; nothing else went out.
    assert_eq!(ice.take_all_strangers(), 11);
    // A second later the strangers' bucket is full again.
    ice.h.now += 1_000_000;
    ice.send(addr(41_000), good_check(false, 7));
    assert_eq!(ice.take(addr(41_000)).len(), 1);
}

#[test]
fn one_validated_remote_cannot_flood_the_control_plane() {
    let mut ice = Lite::new(RouterConfig {
        remote_handshake_rate: 10,
        ..RouterConfig::default()
    });
    let remote = addr(40_000);
    ice.validate(remote, true, 1);
    ice.events();
    for i in 0..30 {
        ice.send(remote, dtls_record(i));
    }
    // Its first check came out of the strangers' bucket; its own starts full.
    assert_eq!(ice.events().len(), 10);
    assert_eq!(ice.stats().drop_rate_limited, 20);
    // A tenth of a second buys one more record.
    ice.h.now += 100_000;
    ice.send(remote, dtls_record(99));
    ice.send(remote, dtls_record(100));
    assert_eq!(ice.events().len(), 1);
}

#[test]
fn consent_expires_once_without_checks_and_holds_with_them() {
    let mut ice = Lite::new(RouterConfig {
        consent_timeout: 1_000_000,
        ..RouterConfig::default()
    });
    let (kept, lapsed) = (addr(40_000), addr(40_001));
    ice.validate(kept, true, 1);
    ice.validate(lapsed, false, 2);
    ice.events();
    // Three seconds in 50 ms ticks; `kept` checks every 500 ms.
    let mut expired = Vec::new();
    for step in 1..=60 {
        ice.h.advance(50_000);
        if step % 10 == 0 {
            ice.validate(kept, true, 3);
        }
        expired.extend(ice.events());
        if step == 19 {
            assert!(expired.is_empty(), "no expiry before the timeout");
        }
    }
    assert_eq!(
        expired,
        vec![RouterEvent::ConsentExpired {
            session: SESSION,
            remote: lapsed,
        }]
    );
    // The lapsed remote is forgotten: its DTLS is dropped; the kept one still relays.
    ice.send(lapsed, dtls_record(1));
    ice.send(kept, dtls_record(2));
    let events = ice.events();
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], RouterEvent::Dtls { remote, .. } if remote == kept));
    assert_eq!(ice.stats().dtls_unknown, 1);
    // A fresh check validates it again (and reports it again).
    ice.validate(lapsed, false, 4);
    assert_eq!(ice.events(), vec![checked(lapsed, false)]);
}

#[test]
fn full_event_channel_drops_and_counts() {
    let (tx, events) = crossbeam_channel::bounded(1);
    let mut h = Harness {
        router: Router::new(
            0,
            RouterConfig {
                events: Some(tx),
                ..RouterConfig::default()
            },
        ),
        out: Output::default(),
        now: 1_000_000,
    };
    h.command(RouterCommand::AddIce(Box::new(creds())));
    let remote = addr(40_000);
    let mut c = good_check(false, 1);
    h.router.handle_datagram(h.now, remote, &mut c, &mut h.out);
    for i in 0..5 {
        let mut d = dtls_record(i);
        h.router.handle_datagram(h.now, remote, &mut d, &mut h.out);
    }
    // The check was still answered.
    assert_eq!(h.out.egress.len(), 1);
    assert_eq!(events.try_iter().count(), 1);
    assert_eq!(h.router.stats().events_dropped, 5);
}

#[test]
fn ice_restart_replaces_credentials() {
    let mut ice = Lite::new(RouterConfig::default());
    ice.h
        .command(RouterCommand::AddIce(Box::new(IceCredentials {
            local_ufrag: "next".into(),
            local_pwd: "next-password-456".into(),
            ..creds()
        })));
    let remote = addr(40_000);
    ice.send(remote, good_check(false, 1));
    assert!(ice.take(remote).is_empty(), "the old ufrag is gone");
    ice.send(
        remote,
        check(
            &format!("next:{REMOTE_UFRAG}"),
            "next-password-456",
            false,
            2,
        ),
    );
    assert_eq!(ice.take(remote).len(), 1);
    assert_eq!(ice.events(), vec![checked(remote, false)]);
}

#[test]
fn remotes_per_session_are_capped() {
    let mut ice = Lite::new(RouterConfig::default());
    for i in 0..MAX_REMOTES_PER_SESSION as u16 + 3 {
        ice.send(addr(30_000 + i), good_check(false, 1));
    }
    assert_eq!(ice.events().len(), MAX_REMOTES_PER_SESSION);
    let s = ice.stats();
    assert_eq!(
        (s.ice_responses, s.stun_rejected),
        (MAX_REMOTES_PER_SESSION as u64, 3)
    );
}
