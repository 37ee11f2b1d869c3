//! Three nodes in one process, joined by QUIC links with certificates from one cluster
//! CA: a publisher on node A (full ICE/DTLS/SRTP test client), subscribers on B and C.
//! Every packet sent after the subscribers receive arrives at both, decrypted, in order,
//! payload intact; each track crosses each link once however many subscribe behind it;
//! and the room is listed on every node.

mod support;

use sluice_control::client::{self, ClientOptions, Publisher, Subscriber};
use sluice_control::node::Node;
use std::time::{Duration, Instant};
use support::{start_cluster, subscribe_when_listed};

const PT_OPUS: u8 = 111;
const PT_VP8: u8 = 96;

fn ssrc_of(sub: &Subscriber, pt: u8) -> Option<u32> {
    sub.stats()
        .streams
        .iter()
        .find(|s| s.payload_type == pt && s.packets > 0)
        .map(|s| s.ssrc)
}

/// Sends until every subscriber receives both streams (the far nodes forward video from
/// a keyframe on, and the links need a moment to be subscribed).
async fn warm_up(publisher: &mut Publisher, subs: &[&Subscriber]) -> Vec<(u32, u32)> {
    for round in 0..1500 {
        let ready: Vec<_> = subs
            .iter()
            .filter_map(|s| Some((ssrc_of(s, PT_OPUS)?, ssrc_of(s, PT_VP8)?)))
            .collect();
        if ready.len() == subs.len() {
            return ready;
        }
        publisher.send_audio(b"warm").await.unwrap();
        publisher
            .send_video(0, b"warm", round % 10 == 0)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "no media across the cascade after warm-up: {:?}",
        subs.iter().map(|s| s.stats()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_on_a_reaches_subscribers_on_b_and_c_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b", "c"]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut publisher = client::publish(&a.base_url(), "mesh", &ClientOptions::default())
        .await
        .expect("publish on A");

    // Every node lists the publisher.
    for n in [b, c] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let listed = reqwest::get(format!("{}/rooms/mesh", n.base_url()))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if listed.contains(&publisher.id) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never lists: {listed}",
                n.base_url()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let on_b = subscribe_when_listed(&b.base_url(), "mesh", &publisher.id).await;
    let on_c = subscribe_when_listed(&c.base_url(), "mesh", &publisher.id).await;
    let ssrcs = warm_up(&mut publisher, &[&on_b, &on_c]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept: Vec<(usize, usize)> = [&on_b, &on_c]
        .iter()
        .zip(&ssrcs)
        .map(|(s, (au, vi))| (s.packets(*au).len(), s.packets(*vi).len()))
        .collect();
    let before: Vec<u64> = [&on_b, &on_c].iter().map(|s| s.stats().packets()).collect();

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
    for (k, sub) in [&on_b, &on_c].into_iter().enumerate() {
        let want_total = before[k] + (AUDIO + VIDEO) as u64;
        let after = sub
            .wait_for(Duration::from_secs(15), |s| s.packets() >= want_total)
            .await
            .unwrap_or_else(|e| panic!("subscriber {k}: {e:?}; {:?}", sub.stats()));
        let (audio, video) = ssrcs[k];
        for ssrc in [audio, video] {
            let s = after.stream(ssrc).expect("stream");
            assert_eq!(
                (s.gaps, s.missing_now, s.out_of_order, s.duplicates, s.wild),
                (0, 0, 0, 0, 0),
                "subscriber {k}, continuity of {ssrc}: {s:?}"
            );
        }
        assert_eq!((after.srtp_errors, after.rtp_errors), (0, 0));
        let got: Vec<Vec<u8>> = sub.packets(audio)[kept[k].0..]
            .iter()
            .map(|p| p.payload.clone())
            .collect();
        let want: Vec<Vec<u8>> = (0..AUDIO).map(|i| format!("a{i}").into_bytes()).collect();
        assert_eq!(got, want, "subscriber {k}: audio payloads in order");
        let got: Vec<(bool, Vec<u8>)> = sub.packets(video)[kept[k].1..]
            .iter()
            .map(|p| {
                let (key, _, data) = client::vp8_data(&p.payload).expect("our VP8 framing");
                (key, data.to_vec())
            })
            .collect();
        let want: Vec<(bool, Vec<u8>)> = (0..VIDEO)
            .map(|n| (n % 30 == 0, format!("v{n}").into_bytes()))
            .collect();
        assert_eq!(got, want, "subscriber {k}: video frames in order");
    }
    let sent = a.cascade_counters().unwrap();
    let got_b = b.cascade_counters().unwrap();
    let got_c = c.cascade_counters().unwrap();
    eprintln!("cascade counters: A {sent:?}, B {got_b:?}, C {got_c:?}");
    assert!(got_b.media_in >= (AUDIO + VIDEO) as u64 && got_c.media_in >= (AUDIO + VIDEO) as u64);
    assert_eq!(sent.media_out_dropped, 0);
    // Every link packet went through A's link shaper, which had no reason to shed (its
    // counters are published on its tick).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut shaped = a.shaper_stats().unwrap();
    while shaped.packets_sent < sent.media_out && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        shaped = a.shaper_stats().unwrap();
    }
    eprintln!("shaper on A: {shaped:?}");
    assert!(shaped.packets_sent >= sent.media_out, "{shaped:?}");
    assert_eq!(
        (shaped.packets_shed, shaped.audio_shed),
        (0, 0),
        "{shaped:?}"
    );

    on_b.close().await.expect("WHEP DELETE on B");
    on_c.close().await.expect("WHEP DELETE on C");
    publisher.close().await.expect("WHIP DELETE on A");
    for n in nodes {
        n.shutdown().await;
    }
}

/// Sends `n` audio packets and `n / 3` video frames (one keyframe first).
async fn send_burst(publisher: &mut Publisher, tag: &str, n: usize) {
    for i in 0..n {
        publisher
            .send_audio(format!("{tag}a{i}").as_bytes())
            .await
            .unwrap();
        if i % 3 == 0 {
            publisher
                .send_video(0, format!("{tag}v{i}").as_bytes(), i == 0)
                .await
                .unwrap();
        }
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Waits until the cascade counters stop moving (everything sent has been counted).
async fn settled(node: &Node) -> sluice_control::node::CascadeCountersSnapshot {
    let mut last = node.cascade_counters().unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = node.cascade_counters().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// A track crosses a link only while the far node has a subscriber for it, and once
/// however many subscribe there: 1 and 20 subscribers on B cost the A→B link the same
/// media packets; with none, the link carries no media at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_carries_each_track_once_per_node_and_nothing_unwanted() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut publisher = client::publish(&a.base_url(), "acct", &ClientOptions::default())
        .await
        .expect("publish on A");
    // B knows the publisher (it watches the room) but nobody there subscribes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reqwest::get(format!("{}/rooms/acct", b.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains(&publisher.id)
    {
        assert!(Instant::now() < deadline, "B never lists the publisher");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    const N: usize = 300;
    let per_burst = (N + N / 3) as u64;
    send_burst(&mut publisher, "idle", N).await;
    let idle = settled(a).await;
    assert_eq!(
        idle.media_out, 0,
        "no subscriber on B, no media on the link"
    );

    let first = subscribe_when_listed(&b.base_url(), "acct", &publisher.id).await;
    warm_up(&mut publisher, &[&first]).await;
    let one_before = settled(a).await;
    send_burst(&mut publisher, "one", N).await;
    let one = settled(a).await;
    let with_one = one.media_out - one_before.media_out;

    let mut more = Vec::new();
    for _ in 0..19 {
        more.push(subscribe_when_listed(&b.base_url(), "acct", &publisher.id).await);
    }
    let refs: Vec<&Subscriber> = more.iter().collect();
    warm_up(&mut publisher, &refs).await;
    let twenty_before = settled(a).await;
    let received_before: Vec<u64> = more
        .iter()
        .chain([&first])
        .map(|s| s.stats().packets())
        .collect();
    send_burst(&mut publisher, "twenty", N).await;
    let twenty = settled(a).await;
    let with_twenty = twenty.media_out - twenty_before.media_out;
    eprintln!(
        "A->B media packets for one burst of {per_burst}: {with_one} with 1 subscriber on B, \
         {with_twenty} with 20; drops {}",
        twenty.media_out_dropped
    );
    assert_eq!(with_one, per_burst);
    assert_eq!(with_twenty, per_burst);
    // And each of the twenty got the whole burst.
    for (k, s) in more.iter().chain([&first]).enumerate() {
        let got = s
            .wait_for(Duration::from_secs(10), |st| {
                st.packets() >= received_before[k] + per_burst
            })
            .await;
        assert!(got.is_ok(), "subscriber {k}: {:?}", s.stats());
    }
    for s in more {
        s.close().await.unwrap();
    }
    first.close().await.unwrap();
    // With B's subscribers gone, the link goes quiet again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gone = settled(a).await;
    send_burst(&mut publisher, "gone", N).await;
    assert_eq!(settled(a).await.media_out, gone.media_out);
    publisher.close().await.unwrap();
    for n in nodes {
        n.shutdown().await;
    }
}
