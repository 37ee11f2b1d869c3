//! Path selection across three nodes: the A–C link runs through the impairment relay
//! (two of them, one per dialing direction, since either node may open the link).
//! While it is clean the stream from A reaches C directly; made far worse (delay and
//! loss), the stream goes A→B→C through B, the link A–C carrying no media; clean again,
//! it comes back to the direct link (after the route's hold time, 5 s). The subscriber
//! on C keeps hearing the publisher throughout. Flapping under jitter near the margin is
//! covered by path selection's own tests (`control/src/cascade/paths/tests.rs`).

use sluice_bench::impair::{Impairment, Relay, RelayConfig};
use sluice_control::client::{self, ClientOptions, Subscriber};
use sluice_control::cluster::ClusterCa;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const ROOM: &str = "paths";
const PT_OPUS: u8 = 111;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

fn config(dir: &Path, name: &str, port: u16, seed: Option<SocketAddr>, dial: &str) -> NodeConfig {
    let seeds = seed.map_or(String::new(), |s| format!("\"{s}\""));
    let d = dir.display();
    let text = format!(
        "[node]\nid = \"{name}\"\nregion = \"r-{name}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [cluster]\nlisten = \"127.0.0.1:{port}\"\nseeds = [{seeds}]\n{dial}\n\
         ca_cert = \"{d}/ca.pem\"\ncert = \"{d}/{name}.pem\"\nkey = \"{d}/{name}.key\"\n"
    );
    toml::from_str(&text).expect("test config parses")
}

fn audio(s: &Subscriber) -> u64 {
    s.stats()
        .streams
        .iter()
        .filter(|x| x.payload_type == PT_OPUS)
        .map(|x| x.packets)
        .sum()
}

fn bad() -> Impairment {
    Impairment {
        delay: Duration::from_millis(60),
        loss: 0.08,
        ..Impairment::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_direct_link_is_relayed_through_the_third_node_and_recovers() {
    // RUST_LOG=sluice_control=debug shows the links and routes.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::ephemeral().unwrap();
    ca.save(dir.path()).unwrap();
    for n in ["a", "b", "c"] {
        ca.issue(n).unwrap().save(dir.path()).unwrap();
    }
    // Whichever of A and C dials the other, the A–C link runs through one of two
    // relays (one per direction of dialing), impaired alike; everyone joins through B.
    let (a_port, c_port) = (free_udp_port(), free_udp_port());
    let relay_to = |port: u16| {
        Relay::start(RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: SocketAddr::from(([127, 0, 0, 1], port)),
            forward: Impairment::default(),
            backward: Impairment::default(),
        })
        .unwrap()
    };
    let relays = [relay_to(c_port), relay_to(a_port)];
    let dial = |port: u16, relay: &Relay| {
        format!(
            "dial = {{ \"127.0.0.1:{port}\" = \"{}\" }}",
            relay.local_addr()
        )
    };
    let b = Node::start(config(dir.path(), "b", 0, None, ""))
        .await
        .unwrap();
    let b_link = b.link_addr().unwrap();
    let a = Node::start(config(
        dir.path(),
        "a",
        a_port,
        Some(b_link),
        &dial(c_port, &relays[0]),
    ))
    .await
    .unwrap();
    let c = Node::start(config(
        dir.path(),
        "c",
        c_port,
        Some(b_link),
        &dial(a_port, &relays[1]),
    ))
    .await
    .unwrap();
    // Datagrams from A to C, whichever relay carries the link.
    let a_to_c = || relays[0].stats().forward.packets_in + relays[1].stats().backward.packets_in;
    let impair = |imp: Impairment| {
        for r in &relays {
            r.set_impairment(Some(imp.clone()), Some(imp.clone()))
                .unwrap();
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while [&a, &b, &c].iter().any(|n| n.cluster_members() < 2) {
        assert!(
            Instant::now() < deadline,
            "the cluster never formed: {:?}",
            [&a, &b, &c].map(|n| n.cluster_members())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let opts = ClientOptions::default();
    let mut publisher = client::publish(&a.base_url(), ROOM, &opts).await.unwrap();
    let sub = client::subscribe_when_listed(
        &c.base_url(),
        ROOM,
        &publisher.id,
        &opts,
        Duration::from_secs(15),
    )
    .await
    .unwrap_or_else(|e| panic!("subscribe on C: {e}"));
    // Sends 20 ms audio until `done`, at most `limit`; returns how long it took.
    macro_rules! talk_until {
        ($limit:expr, $what:expr, $done:expr) => {{
            let start = Instant::now();
            while !$done {
                assert!(
                    start.elapsed() < $limit,
                    "{}: A {:?}, B {:?}, C {:?}, relay {:?}",
                    $what,
                    a.cascade_counters(),
                    b.cascade_counters(),
                    c.cascade_counters(),
                    relays.each_ref().map(|r| r.stats())
                );
                publisher.send_audio(b"voice").await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            start.elapsed()
        }};
    }
    let _ = talk_until!(Duration::from_secs(15), "no media on C", audio(&sub) >= 50);
    let relayed = |n: &Node| n.cascade_counters().unwrap().relays;
    assert_eq!(relayed(&b), 0, "a clean direct link is used");
    let b_in = b.cascade_counters().unwrap().media_in;
    assert_eq!(
        b_in, 0,
        "B hosts nobody and relays nothing: no media comes to it"
    );

    // The A–C link gets far worse: the stream moves through B.
    impair(bad());
    let took = talk_until!(Duration::from_secs(20), "never relayed", relayed(&b) >= 1);
    eprintln!("relayed through B {took:?} after the A-C link went bad");
    assert!(
        took < Duration::from_secs(2),
        "the stream took {took:?} to go through B"
    );
    let via_b = b.cascade_counters().unwrap().media_in;
    let heard = audio(&sub);
    let sent_at = a_to_c();
    let _ = talk_until!(
        Duration::from_secs(10),
        "nothing through B",
        audio(&sub) >= heard + 100
    );
    assert!(
        b.cascade_counters().unwrap().media_in >= via_b + 90,
        "through B: A {:?}, B {:?}, C {:?}, relay {:?}",
        a.cascade_counters(),
        b.cascade_counters(),
        c.cascade_counters(),
        relays.each_ref().map(|r| r.stats())
    );
    // What still crosses A–C is control and state, not 100 packets of media.
    let direct = a_to_c() - sent_at;
    eprintln!("{direct} datagrams from A to C while C's subscriber got 100 packets through B");
    assert!(
        direct < 50,
        "{direct} datagrams still went from A to C directly"
    );
    assert!(
        sent_at > 100,
        "the A-C link carried the media while it was clean: {sent_at}"
    );
    let s = sub
        .stats()
        .streams
        .into_iter()
        .find(|x| x.payload_type == PT_OPUS)
        .unwrap();
    eprintln!("C's audio: {s:?}");

    // Clean again: back to the direct link (after the route's hold time).
    impair(Impairment::default());
    let took = talk_until!(
        Duration::from_secs(30),
        "never back to direct",
        relayed(&b) == 0
    );
    eprintln!("back to direct {took:?} after the A-C link recovered");
    let routes = a.cascade_counters().unwrap().route_changes;
    assert!(routes >= 2, "relayed and back: {routes}");
    let heard = audio(&sub);
    let _ = talk_until!(
        Duration::from_secs(10),
        "nothing after the return",
        audio(&sub) >= heard + 50
    );

    // Jitter around the margin (a few ms each way against a relay path of about as
    // much): the route may move once, never back and forth.
    let before = a.cascade_counters().unwrap().route_changes;
    impair(Impairment {
        delay: Duration::from_millis(3),
        jitter: Duration::from_millis(3),
        ..Impairment::default()
    });
    let start = Instant::now();
    let _ = talk_until!(
        Duration::from_secs(11),
        "jitter",
        start.elapsed() >= Duration::from_secs(10)
    );
    let flips = a.cascade_counters().unwrap().route_changes - before;
    eprintln!("{flips} route changes in 10 s of jitter near the margin");
    assert!(flips <= 1, "{flips} route changes under jitter");

    // Relayed again, the relay crashes (no goodbye): the stream goes back to the (bad)
    // direct link as soon as SWIM declares B down.
    impair(bad());
    let _ = talk_until!(
        Duration::from_secs(20),
        "not relayed again",
        relayed(&b) >= 1
    );
    let heard = audio(&sub);
    let _ = talk_until!(
        Duration::from_secs(5),
        "relay silent",
        audio(&sub) >= heard + 20
    );
    b.crash();
    // From here B is gone: plain loops, since `talk_until!` reports on B.
    let start = Instant::now();
    while a.cluster_members() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "B never declared down"
        );
        publisher.send_audio(b"voice").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("B declared down {:?} after it crashed", start.elapsed());
    let heard = audio(&sub);
    let start = Instant::now();
    while audio(&sub) < heard + 10 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing after B died: A {:?}, C {:?}",
            a.cascade_counters(),
            c.cascade_counters()
        );
        publisher.send_audio(b"voice").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = start.elapsed();
    eprintln!("media on C again {resumed:?} after B was declared down");
    assert!(
        resumed < Duration::from_secs(1),
        "resumed after {resumed:?}"
    );

    sub.close().await.unwrap();
    publisher.close().await.unwrap();
    for n in [a, c] {
        n.shutdown().await;
    }
    for r in relays {
        r.stop().unwrap();
    }
}
