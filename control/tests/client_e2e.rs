//! The test client against a real in-process node: a publisher and a subscriber go
//! through WHIP/WHEP, ICE-lite, DTLS-SRTP and the forwarding plane, and every packet the
//! publisher sends after the subscriber is receiving arrives decrypted, in order, with
//! its payload intact.

mod support;

use sluice_control::client::{self, ClientError, ClientOptions, Subscriber, vp8_data};
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::time::Duration;
use support::subscribe_when_listed;

const PT_OPUS: u8 = 111;
const PT_VP8: u8 = 96;

fn config() -> NodeConfig {
    let text = "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n";
    toml::from_str(text).expect("test config parses")
}

fn ssrc_of(sub: &Subscriber, pt: u8) -> Option<u32> {
    sub.stats()
        .streams
        .iter()
        .find(|s| s.payload_type == pt && s.packets > 0)
        .map(|s| s.ssrc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_media_reaches_a_subscriber_decrypted_and_in_order() {
    let node = Node::start(config()).await.expect("node starts");
    let base = node.base_url();
    let mut publisher = client::publish(&base, "e2e", &ClientOptions::default())
        .await
        .expect("publish");
    assert!(!publisher.id.is_empty(), "X-Publisher-Id");
    let subscriber = subscribe_when_listed(&base, "e2e", &publisher.id).await;

    // Warm-up: the node forwards video from a keyframe on; send until both streams flow.
    let mut warm = 0u32;
    let (audio, video) = loop {
        if let (Some(a), Some(v)) = (ssrc_of(&subscriber, PT_OPUS), ssrc_of(&subscriber, PT_VP8)) {
            break (a, v);
        }
        assert!(
            warm < 500,
            "no media after warm-up: {:?}",
            subscriber.stats()
        );
        publisher.send_audio(b"warm").await.unwrap();
        publisher.send_video(0, b"warm", true).await.unwrap();
        warm += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Let the warm-up tail drain so the measured window starts clean.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = subscriber.stats();
    let kept_audio = subscriber.packets(audio).len();
    let kept_video = subscriber.packets(video).len();

    const AUDIO: usize = 300;
    const VIDEO: usize = 100;
    for i in 0..AUDIO {
        publisher
            .send_audio(format!("a{i}").as_bytes())
            .await
            .unwrap();
        if i % 3 == 0 {
            let n = i / 3;
            publisher
                .send_video(0, format!("v{n}").as_bytes(), n % 30 == 0)
                .await
                .unwrap();
        }
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let after = subscriber
        .wait_for(Duration::from_secs(10), |s| {
            s.packets() >= before.packets() + (AUDIO + VIDEO) as u64
        })
        .await
        .expect("every packet arrives");

    for ssrc in [audio, video] {
        let s = after.stream(ssrc).expect("stream");
        assert_eq!(
            (s.gaps, s.missing_now, s.out_of_order, s.duplicates, s.wild),
            (0, 0, 0, 0, 0),
            "continuity of {ssrc}: {s:?}"
        );
    }
    assert_eq!(after.srtp_errors, 0);
    assert_eq!(after.rtp_errors, 0);

    let audio_pkts = subscriber.packets(audio);
    let got: Vec<&[u8]> = audio_pkts[kept_audio..]
        .iter()
        .map(|p| p.payload.as_slice())
        .collect();
    let want: Vec<Vec<u8>> = (0..AUDIO).map(|i| format!("a{i}").into_bytes()).collect();
    assert_eq!(got.len(), AUDIO);
    assert!(
        got.iter().zip(&want).all(|(g, w)| *g == w.as_slice()),
        "audio payloads"
    );
    for w in audio_pkts[kept_audio..].windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "audio numbering");
    }

    let video_pkts = subscriber.packets(video);
    let got: Vec<(bool, Vec<u8>)> = video_pkts[kept_video..]
        .iter()
        .map(|p| {
            let (key, _, data) = vp8_data(&p.payload).expect("our VP8 framing");
            (key, data.to_vec())
        })
        .collect();
    let want: Vec<(bool, Vec<u8>)> = (0..VIDEO)
        .map(|n| (n % 30 == 0, format!("v{n}").into_bytes()))
        .collect();
    assert_eq!(got, want, "video frames and keyframe flags");
    for w in video_pkts[kept_video..].windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "video numbering");
        assert_eq!(
            w[1].timestamp.wrapping_sub(w[0].timestamp),
            3000,
            "video timestamps"
        );
    }
    // Our numbering is the node's: the subscriber sees its own SSRCs, not ours.
    assert!(!publisher.ssrcs().contains(&audio) && !publisher.ssrcs().contains(&video));
    eprintln!(
        "e2e: warm-up {warm} rounds; then {AUDIO} audio + {VIDEO} video packets, all received; \
         publisher RTCP from node {:?}; subscriber RTCP from node {:?}",
        publisher.stats().rtcp,
        after.rtcp
    );

    subscriber.close().await.expect("WHEP DELETE");
    publisher.close().await.expect("WHIP DELETE");
    node.shutdown().await;
}

/// Three simulcast layers in, one stream out: the subscriber's numbering stays
/// contiguous across whatever layer switches the node makes, no frame is lost, and every
/// run of one layer starts at a keyframe of that layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_subscriber_sees_one_contiguous_stream() {
    let node = Node::start(config()).await.expect("node starts");
    let base = node.base_url();
    let opts = ClientOptions {
        audio: false,
        simulcast: true,
        ..ClientOptions::default()
    };
    let mut publisher = client::publish(&base, "sim", &opts).await.expect("publish");
    assert_eq!(publisher.video_ssrcs().len(), 3);
    let subscriber = subscribe_when_listed(&base, "sim", &publisher.id).await;

    const FRAMES: u32 = 300;
    let mut first_seen = None;
    for n in 0..FRAMES {
        let key = n % 10 == 0;
        for layer in 0..3 {
            let data = format!("L{layer}-{n}");
            publisher
                .send_video(layer, data.as_bytes(), key)
                .await
                .unwrap();
        }
        if first_seen.is_none() && ssrc_of(&subscriber, PT_VP8).is_some() {
            first_seen = Some(n);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let first_seen = first_seen.expect("video reaches the subscriber");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let video = ssrc_of(&subscriber, PT_VP8).expect("one video stream");
    let stats = subscriber.stats();
    let s = stats.stream(video).expect("stream");
    assert_eq!(
        (s.gaps, s.missing_now, s.out_of_order, s.duplicates),
        (0, 0, 0, 0),
        "{s:?}"
    );
    let frames: Vec<(usize, u32, bool)> = subscriber
        .packets(video)
        .iter()
        .map(|p| {
            let (key, _, data) = vp8_data(&p.payload).expect("our VP8 framing");
            let text = std::str::from_utf8(data).expect("text");
            let (layer, n) = text[1..].split_once('-').expect("L<layer>-<n>");
            (layer.parse().unwrap(), n.parse().unwrap(), key)
        })
        .collect();
    let pkts = subscriber.packets(video);
    for w in pkts.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "numbering");
    }
    let mut switches = Vec::new();
    for (i, w) in frames.windows(2).enumerate() {
        let ((l0, n0, _), (l1, n1, key1)) = (w[0], w[1]);
        assert!(
            n1 == n0 || n1 == n0 + 1,
            "frames in order, none lost: {n0} -> {n1}"
        );
        if l1 != l0 {
            assert!(key1, "switch {l0} -> {l1} at frame {n1} is a keyframe");
            switches.push((i + 1, l0, l1, n1));
        }
    }
    assert!(frames[0].2, "the stream starts at a keyframe");
    assert_eq!(
        frames.last().map(|f| f.1),
        Some(FRAMES - 1),
        "up to the last frame"
    );
    eprintln!(
        "simulcast e2e: first video after frame {first_seen}; {} packets from frame {} on, \
         starting on layer {}; layer switches (index, from, to, frame): {switches:?}; publisher saw {:?}",
        frames.len(),
        frames[0].1,
        frames[0].0,
        publisher.stats().rtcp
    );
    subscriber.close().await.expect("WHEP DELETE");
    publisher.close().await.expect("WHIP DELETE");
    node.shutdown().await;
}

#[tokio::test]
async fn post_errors_surface_status_and_reason() {
    let node = Node::start(config()).await.expect("node starts");
    let base = node.base_url();
    let err = client::subscribe(&base, "nobody-here", None, &ClientOptions::default())
        .await
        .expect_err("no publisher to watch");
    assert_eq!(err.status(), Some(404), "{err}");
    let ClientError::Http { body, .. } = &err else {
        panic!("{err}");
    };
    assert!(!body.trim().is_empty(), "the node says why");
    node.shutdown().await;
}

/// A subscriber announcing a generous REMB (as a browser's estimator would) is moved up
/// to the top simulcast layer once it has fitted for the node's hold time; one announcing
/// less than any layer costs stays on the lowest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remb_from_the_subscriber_moves_it_to_the_top_layer() {
    let node = Node::start(config()).await.expect("node starts");
    let base = node.base_url();
    let opts = ClientOptions {
        audio: false,
        simulcast: true,
        ..ClientOptions::default()
    };
    let mut publisher = client::publish(&base, "remb", &opts)
        .await
        .expect("publish");
    let subscribe = |remb: u64| {
        let base = base.clone();
        let id = publisher.id.clone();
        async move {
            let opts = ClientOptions {
                remb: Some(remb),
                rtcp_interval: Duration::from_millis(100),
                ..ClientOptions::default()
            };
            client::subscribe_when_listed(&base, "remb", &id, &opts, Duration::from_secs(2))
                .await
                .unwrap_or_else(|e| panic!("subscribe: {e}"))
        }
    };
    let subscriber = subscribe(50_000_000).await;
    let starved = subscribe(1_000).await;
    let top_layer_frames = |s: &Subscriber| {
        ssrc_of(s, PT_VP8).map_or(0, |v| {
            s.packets(v)
                .iter()
                .filter(|p| vp8_data(&p.payload).is_some_and(|(_, _, d)| d.starts_with(b"L2-")))
                .count()
        })
    };
    // Up to 12 s of 3-layer video at 50 frames/s, keyframes every 10 frames.
    let mut n = 0u32;
    while top_layer_frames(&subscriber) < 20 {
        assert!(
            n < 600,
            "never on the top layer; node: {:?}; subscriber: {:?}",
            node.router_stats(),
            subscriber.stats()
        );
        for layer in 0..3 {
            let data = format!("L{layer}-{n}");
            publisher
                .send_video(layer, data.as_bytes(), n.is_multiple_of(10))
                .await
                .unwrap();
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("remb e2e: top layer after {n} frames");
    assert_eq!(
        top_layer_frames(&starved),
        0,
        "1 kbit/s fits no upper layer"
    );
    assert!(
        ssrc_of(&starved, PT_VP8).is_some(),
        "but the lowest still flows"
    );
    starved.close().await.expect("WHEP DELETE");
    subscriber.close().await.expect("WHEP DELETE");
    publisher.close().await.expect("WHIP DELETE");
    node.shutdown().await;
}
