//! What hostile or broken clients cannot do to a node: a client whose certificate does
//! not match its offer never gets a session, and a flood of STUN requests and DTLS
//! ClientHellos from unknown addresses is rate-limited and counted while an established
//! session's media keeps flowing, every packet in order.

mod support;

use sluice_control::client::{self, ClientError, ClientOptions, Subscriber};
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use sluice_dataplane::router::RouterStats;
use std::net::UdpSocket;
use std::time::Duration;
use support::subscribe_when_listed;

const PT_OPUS: u8 = 111;

fn config() -> NodeConfig {
    let text = "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\nworkers = 2\n\
                [limits]\nhandshake_rate = 500\n";
    toml::from_str(text).expect("test config parses")
}

fn total(stats: &[RouterStats], f: impl Fn(&RouterStats) -> u64) -> u64 {
    stats.iter().map(f).sum()
}

/// A session that works, for checking the node still serves: publishes, subscribes, and
/// returns the subscriber's audio SSRC once audio flows.
async fn working_session(node: &Node, room: &str) -> (client::Publisher, Subscriber, u32) {
    let base = node.base_url();
    let opts = ClientOptions {
        video: false,
        ..ClientOptions::default()
    };
    let mut publisher = client::publish(&base, room, &opts).await.expect("publish");
    let subscriber = subscribe_when_listed(&base, room, &publisher.id).await;
    for _ in 0..500 {
        if let Some(s) = subscriber
            .stats()
            .streams
            .iter()
            .find(|s| s.payload_type == PT_OPUS && s.packets > 0)
        {
            return (publisher, subscriber, s.ssrc);
        }
        publisher.send_audio(b"warm").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no audio reached the subscriber: {:?}", subscriber.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_match_the_offer_gets_no_session() {
    let node = Node::start(config()).await.expect("node starts");
    let liar = ClientOptions {
        announced_fingerprint: Some("AB:".repeat(31) + "CD"),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let err = client::publish(&node.base_url(), "fp", &liar)
        .await
        .expect_err("the handshake must fail");
    assert!(
        !matches!(err, ClientError::Http { .. }),
        "the POST itself is fine, the handshake is not: {err}"
    );
    // The node dropped the session (it never appears in the room)...
    for _ in 0..100 {
        if node.peer_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.peer_count(), 0, "the failed session is gone");
    assert!(
        reqwest::get(format!("{}/rooms/fp", node.base_url()))
            .await
            .unwrap()
            .status()
            .as_u16()
            == 404
    );
    // ...and keeps serving honest clients.
    let (_p, _s, _ssrc) = working_session(&node, "fp").await;
    node.shutdown().await;
}

/// A STUN Binding request with a username no session has.
fn stranger_stun(i: u32) -> Vec<u8> {
    let user = format!("zz{i:06}:yy");
    let mut attrs = Vec::new();
    attrs.extend(0x0006u16.to_be_bytes());
    attrs.extend((user.len() as u16).to_be_bytes());
    attrs.extend(user.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend(0x2112_A442u32.to_be_bytes());
    m.extend(i.to_be_bytes());
    m.extend([7u8; 8]);
    m.extend(attrs);
    m
}

/// The start of a DTLS 1.2 ClientHello record (what a handshake flood sends).
fn stranger_client_hello(i: u32) -> Vec<u8> {
    let mut hs = vec![1, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 0, 40];
    hs.extend([0xfe, 0xfd]);
    hs.extend(i.to_be_bytes());
    hs.extend([3u8; 34]);
    let mut r = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
    r.extend((hs.len() as u16).to_be_bytes());
    r.extend(hs);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_is_limited_and_counted_while_media_flows() {
    let node = Node::start(config()).await.expect("node starts");
    let (mut publisher, subscriber, audio) = working_session(&node, "flood").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_media = subscriber.stats().stream(audio).expect("audio").packets;
    let before = node.router_stats();

    // Strangers: 64 source addresses, so the flood spreads over both workers.
    const SOURCES: u32 = 64;
    const PER_SOURCE: u32 = 300;
    let target = node.media_addr();
    let flood = std::thread::spawn(move || {
        let socks: Vec<UdpSocket> = (0..SOURCES)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut sent = (0u64, 0u64);
        for round in 0..PER_SOURCE {
            for (k, s) in socks.iter().enumerate() {
                let i = round * SOURCES + k as u32;
                if s.send_to(&stranger_stun(i), target).is_ok() {
                    sent.0 += 1;
                }
                if s.send_to(&stranger_client_hello(i), target).is_ok() {
                    sent.1 += 1;
                }
            }
            if round % 10 == 9 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent
    });

    // Meanwhile the established session keeps publishing.
    const AUDIO: u64 = 300;
    for i in 0..AUDIO {
        publisher
            .send_audio(format!("a{i}").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (stun_sent, dtls_sent) = flood.join().expect("flood thread");
    let after = subscriber
        .wait_for(Duration::from_secs(10), |s| {
            s.stream(audio)
                .is_some_and(|a| a.packets >= before_media + AUDIO)
        })
        .await
        .unwrap_or_else(|_| panic!("media stalled under the flood: {:?}", subscriber.stats()));
    let a = after.stream(audio).expect("audio");
    assert_eq!(
        (a.gaps, a.missing_now, a.out_of_order, a.duplicates),
        (0, 0, 0, 0),
        "every packet, in order: {a:?}"
    );
    assert_eq!(after.srtp_errors, 0);

    // Give the workers a moment to drain their sockets, then read the counters.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = node.router_stats();
    let delta = |f: fn(&RouterStats) -> u64| total(&stats, f) - total(&before, f);
    let stun_in = delta(|s| s.stun_in);
    let refused = delta(|s| s.stun_rejected) + delta(|s| s.drop_rate_limited);
    let dtls_unknown = delta(|s| s.dtls_unknown);
    eprintln!(
        "flood: sent {stun_sent} STUN + {dtls_sent} DTLS; node saw {stun_in} STUN, refused \
         {refused} ({} rate-limited), dropped {dtls_unknown} DTLS from strangers",
        delta(|s| s.drop_rate_limited)
    );
    // Loopback may drop some of a flood in the kernel; what reaches a worker is counted.
    assert!(
        stun_in >= stun_sent * 9 / 10,
        "STUN reached the node: {stun_in} of {stun_sent}"
    );
    assert!(
        refused >= stun_in - delta(|s| s.ice_responses),
        "every stranger check refused"
    );
    assert!(
        delta(|s| s.drop_rate_limited) > 0,
        "the flood hit the rate limit"
    );
    assert!(
        dtls_unknown >= dtls_sent * 9 / 10,
        "DTLS from strangers dropped and counted: {dtls_unknown} of {dtls_sent}"
    );
    assert_eq!(
        delta(|s| s.events_dropped),
        0,
        "nothing from the flood reached the control plane"
    );
    node.shutdown().await;
}
