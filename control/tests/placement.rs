//! Placement across three nodes in regions eu, us and ap with a synthetic RTT matrix
//! (eu-us 80 ms, us-ap 120 ms, eu-ap 200 ms): a client hinting `region=us` that posts to
//! the eu node is sent to the us node (307) and its session completes there; once us is
//! full, a us client goes to the next best node (eu), even when it posts to ap.

mod support;

use sluice_control::client::{self, ClientOptions};
use sluice_control::node::Node;
use std::time::{Duration, Instant};
use support::{start_cluster_with, subscribe_when_listed_with};

const MATRIX: &str = "[placement.rtt_ms]\neu = { us = 80, ap = 200 }\nus = { ap = 120 }\n";
const PT_OPUS: u8 = 111;

async fn ranking(node: &Node, region: &str) -> Vec<String> {
    let v: serde_json::Value =
        reqwest::get(format!("{}/placement?region={region}", node.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    v["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_redirected_to_the_best_node_and_never_to_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [("eu", 100), ("us", 1), ("ap", 100)].map(|(n, max)| {
        (
            n,
            n.to_owned(),
            format!("{MATRIX}[limits]\nmax_sessions = {max}\n"),
        )
    });
    let nodes = start_cluster_with(dir.path(), &nodes).await;
    let (eu, us, ap) = (&nodes[0], &nodes[1], &nodes[2]);
    assert_eq!(ranking(eu, "us").await, ["us", "eu", "ap"]);

    // The redirect itself: 307 to the us node's URL for the same resource, marked placed.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_follow
        .post(format!("{}/whip/globe?region=us", eu.base_url()))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("{}/whip/globe?region=us&placed=1", us.base_url())
    );

    // A WHIP client following it publishes on us.
    let us_client = ClientOptions {
        region: Some("us".into()),
        ..ClientOptions::default()
    };
    let mut publisher = client::publish(&eu.base_url(), "globe", &us_client)
        .await
        .expect("publish through the redirect");
    assert!(
        publisher.location.starts_with(&us.base_url()),
        "placed on us: {}",
        publisher.location
    );
    assert_eq!((eu.peer_count(), us.peer_count()), (0, 1));

    // us is now full (one session); once ap hears so, a us client goes to eu, the next
    // best, and watches the publisher on us from there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ranking(ap, "us").await != ["eu", "ap"] {
        assert!(
            Instant::now() < deadline,
            "ap never saw us full: {:?}",
            ranking(ap, "us").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subscriber =
        subscribe_when_listed_with(&ap.base_url(), "globe", &publisher.id, &us_client).await;
    assert_eq!((eu.peer_count(), ap.peer_count()), (1, 0), "served on eu");
    for _ in 0..500 {
        if subscriber
            .stats()
            .streams
            .iter()
            .any(|s| s.payload_type == PT_OPUS && s.packets >= 20)
        {
            break;
        }
        publisher.send_audio(b"hello").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = subscriber.stats();
    let audio = stats
        .streams
        .iter()
        .find(|s| s.payload_type == PT_OPUS)
        .unwrap_or_else(|| panic!("no audio on eu from us: {stats:?}"));
    assert!(audio.packets >= 20, "{audio:?}");
    assert_eq!((audio.gaps, stats.srtp_errors), (0, 0), "{stats:?}");

    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
    for n in nodes {
        n.shutdown().await;
    }
}
