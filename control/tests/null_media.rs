//! A node with `media.null_forward` on, driven by real WebRTC clients (WHIP/WHEP,
//! ICE-lite, DTLS-SRTP): every datagram the publisher sends reaches each subscriber once,
//! still under the publisher's keys (so the subscriber counts it as an SRTP failure and
//! decrypts nothing), and the node counts it in and out.

mod support;

use sluice_control::client::{self, ClientOptions, Subscriber};
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::time::Duration;
use support::subscribe_when_listed;

/// Two workers, so that the subscribers may land on another worker than the publisher.
fn config() -> NodeConfig {
    let text = "[http]\nlisten = \"127.0.0.1:0\"\n\
                [media]\nbind = \"127.0.0.1:0\"\nworkers = 2\nnull_forward = true\n";
    toml::from_str(text).expect("test config parses")
}

fn rtp_counts(node: &Node) -> (u64, u64) {
    node.router_stats()
        .iter()
        .fold((0, 0), |(i, o), s| (i + s.rtp_in, o + s.rtp_out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_the_publishers_ciphertext_once_per_packet() {
    let node = Node::start(config()).await.expect("node starts");
    let base = node.base_url();
    let mut publisher = client::publish(&base, "null", &ClientOptions::default())
        .await
        .expect("publish");
    let subs: Vec<Subscriber> = vec![
        subscribe_when_listed(&base, "null", &publisher.id).await,
        subscribe_when_listed(&base, "null", &publisher.id).await,
    ];

    // Warm-up: until both subscribers' sessions are up and receiving.
    let mut warm = 0u32;
    while subs.iter().any(|s| s.stats().srtp_errors == 0) {
        assert!(warm < 500, "nothing forwarded after warm-up");
        publisher.send_audio(b"warm").await.unwrap();
        publisher.send_video(0, b"warm", true).await.unwrap();
        warm += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before: Vec<u64> = subs.iter().map(|s| s.stats().srtp_errors).collect();
    let (in_before, out_before) = rtp_counts(&node);

    const N: u64 = 200;
    for i in 0..N {
        publisher
            .send_audio(format!("a{i}").as_bytes())
            .await
            .unwrap();
        publisher
            .send_video(0, format!("v{i}").as_bytes(), i % 30 == 0)
            .await
            .unwrap();
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for (s, b) in subs.iter().zip(&before) {
        s.wait_for(Duration::from_secs(10), |st| st.srtp_errors >= b + 2 * N)
            .await
            .expect("every packet reaches every subscriber");
    }
    // Anything extra would have arrived by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (s, b) in subs.iter().zip(&before) {
        let st = s.stats();
        assert_eq!(st.srtp_errors - b, 2 * N, "each packet once: {st:?}");
        // Under the publisher's keys: not one packet opened as media.
        assert_eq!(st.packets(), 0, "{st:?}");
        assert_eq!(st.rtp_errors, 0);
    }
    let (rtp_in, rtp_out) = rtp_counts(&node);
    assert_eq!(rtp_in - in_before, 2 * N);
    assert_eq!(rtp_out - out_before, 2 * 2 * N);
    let handoffs: u64 = node.router_stats().iter().map(|s| s.handoffs_out).sum();
    eprintln!(
        "null media: warm-up {warm} rounds; then {} packets to each of 2 subscribers; \
         {handoffs} handed to the other worker",
        2 * N,
    );

    for s in subs {
        s.close().await.expect("WHEP DELETE");
    }
    publisher.close().await.expect("WHIP DELETE");
    node.shutdown().await;
}
