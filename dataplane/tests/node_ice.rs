//! ICE-lite and the DTLS relay through a real node on loopback: a browser-like client's
//! check is answered on the worker its address is steered to, the answer verifies with
//! webrtc-rs's `stun` crate, DTLS goes up as an event and back out with `send_raw`, and
//! the live counters say so. Nothing asserts on time; timeouts turn a hang into a failure.

use bytes::Bytes;
use sluice_dataplane::driver::{DriverConfig, DriverKind, probe_uring};
use sluice_dataplane::node::MediaNode;
use sluice_dataplane::router::{IceCredentials, RouterConfig, RouterEvent};
use std::net::UdpSocket;
use std::time::Duration;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USE_CANDIDATE, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Getter, Message, Setter};
use stun::xoraddr::XorMappedAddress;

const WAIT: Duration = Duration::from_secs(5);

fn kinds() -> Vec<DriverKind> {
    let mut k = vec![DriverKind::Mmsg];
    match probe_uring() {
        Ok(()) => k.push(DriverKind::Uring),
        Err(why) => eprintln!("io_uring driver not tested here: {why}"),
    }
    k
}

fn check(username: &str, pwd: &str, tid: u8) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = BINDING_REQUEST;
    m.transaction_id = TransactionId([tid; 12]);
    m.write_header();
    m.add(ATTR_USERNAME, username.as_bytes());
    m.add(ATTR_PRIORITY, &2_130_706_431u32.to_be_bytes());
    m.add(ATTR_USE_CANDIDATE, &[]);
    m.add(ATTR_ICE_CONTROLLING, &42u64.to_be_bytes());
    MessageIntegrity::new_short_term_integrity(pwd.into())
        .add_to(&mut m)
        .unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    m.raw
}

fn recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("an answer before the timeout");
    buf[..n].to_vec()
}

#[test]
fn check_is_answered_and_dtls_is_relayed_through_a_node() {
    for kind in kinds() {
        let (tx, events) = crossbeam_channel::bounded(64);
        let driver = DriverConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            workers: 2,
            kind,
            ..DriverConfig::default()
        };
        let router = RouterConfig {
            events: Some(tx),
            ..RouterConfig::default()
        };
        let mut node = MediaNode::start(driver, router).unwrap();
        node.add_ice(IceCredentials {
            session: 5,
            local_ufrag: "node".into(),
            local_pwd: "node-password-0123456789".into(),
            remote_ufrag: "tab".into(),
        })
        .unwrap();
        // Commands and datagrams take separate paths; a snapshot is answered after the
        // commands queued before it, so the credentials are in place once it comes back
        // (the control plane installs them before its answer leaves, long before).
        node.router_stats();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.connect(node.local_addr()).unwrap();
        let me = client.local_addr().unwrap();
        let worker = node.worker_for(me);

        // A guessed password: an unsigned 401, and nothing reported.
        client.send(&check("node:tab", "guess", 1)).unwrap();
        let mut resp = Message::new();
        resp.raw = recv(&client);
        resp.decode().unwrap();
        assert_eq!(resp.typ, BINDING_ERROR, "{kind:?}");
        let mut code = ErrorCodeAttribute::default();
        code.get_from(&resp).unwrap();
        assert_eq!(code.code.0, 401);

        // The right one: a signed success carrying our address, and an event.
        client
            .send(&check("node:tab", "node-password-0123456789", 2))
            .unwrap();
        let mut resp = Message::new();
        resp.raw = recv(&client);
        resp.decode().unwrap();
        assert_eq!(resp.typ, BINDING_SUCCESS, "{kind:?}");
        assert_eq!(resp.transaction_id.0, [2; 12]);
        MessageIntegrity::new_short_term_integrity("node-password-0123456789".into())
            .check(&mut resp)
            .expect("integrity with the local password");
        FINGERPRINT.check(&resp).unwrap();
        let mut xor = XorMappedAddress::default();
        xor.get_from(&resp).unwrap();
        assert_eq!((xor.ip, xor.port), (me.ip(), me.port()));
        assert_eq!(
            events.recv_timeout(WAIT).unwrap(),
            RouterEvent::IceChecked {
                session: 5,
                worker,
                remote: me,
                nominated: true,
            },
            "{kind:?}"
        );

        // DTLS up to the control plane, and its answer back out.
        let hello = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0];
        client.send(&hello).unwrap();
        assert_eq!(
            events.recv_timeout(WAIT).unwrap(),
            RouterEvent::Dtls {
                session: 5,
                worker,
                remote: me,
                packet: Bytes::from(hello),
            },
            "{kind:?}"
        );
        let flight = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 2, 0, 0];
        node.send_raw(worker, me, Bytes::from(flight.clone()))
            .unwrap();
        assert_eq!(recv(&client), flight, "{kind:?}");

        // Live counters, while the node runs.
        let stats = node.router_stats();
        assert_eq!(stats.len(), 2);
        let w = &stats[worker];
        assert_eq!(
            (
                w.stun_in,
                w.ice_responses,
                w.stun_rejected,
                w.dtls_in,
                w.raw_out
            ),
            (2, 1, 1, 1, 1),
            "{kind:?}"
        );
        assert_eq!(stats[1 - worker].stun_in, 0);

        node.remove_ice(5).unwrap();
        node.router_stats();
        client.send(&[22, 0xfe, 0xfd, 0, 0]).unwrap();
        let mut unknown = 0;
        for _ in 0..500 {
            unknown = node.router_stats()[worker].dtls_unknown;
            if unknown > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(unknown, 1, "{kind:?}: DTLS after remove_ice is dropped");
        assert_eq!(events.try_recv().ok(), None);
        node.shutdown().unwrap();
    }
}
