//! Congestion on a cascade link, by counts (no timing assertions).
//!
//! - The link shaper, handed a saturated link with a low estimate, keeps every audio
//!   and base-layer packet and sheds the upper layers whole; its steady state allocates
//!   nothing (counted by a global allocator wrapper on this thread).
//! - What shedding does on the far node: a simulcast publisher on A, a subscriber on B
//!   whose REMB allows the top layer. When the top layer stops crossing the link (what
//!   A's shaper does when it sheds it), B's router moves the subscriber to the layer
//!   that still arrives, with its sequence numbers contiguous; when the layer comes back
//!   so does the subscriber.
//! - The active speaker: the publisher on A whose audio level says they talk is the one
//!   whose video A's shaper favours.

use sluice_control::cascade::shaper::{
    LinkEstimate, Shaper, ShaperCommand, ShaperConfig, TrackKind, Verdict,
};
mod support;

use sluice_control::client::{self, ClientOptions, Subscriber, vp8_data};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{start_cluster, subscribe_when_listed, subscribe_when_listed_with};

// The dataplane tests' counting allocator: one copy for every zero-allocation test.
#[path = "../../dataplane/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const NODE: u32 = 2;
const AUDIO: u64 = 10;
const VIDEO: [u64; 2] = [20, 30];

/// Packets sent and shed per (track, layer).
type Tally = HashMap<(u64, u8, Verdict), u64>;

/// `ms` milliseconds of a call toward one node: two publishers' worth of audio (one
/// 100-byte packet per 20 ms, on one track) and two video tracks with three layers
/// (every 10 ms: one 300-byte, one 1000-byte and two 1100-byte packets).
fn run(shaper: &mut Shaper, now: &mut u64, ms: u64, tally: &mut Tally) {
    for _ in 0..ms / 10 {
        let mut send = |track, layer, size, key| {
            let v = shaper.handle_packet(*now, NODE, track, layer, key, size);
            *tally.entry((track, layer, v)).or_default() += 1;
        };
        let key = (*now / 10_000).is_multiple_of(100);
        if (*now / 10_000).is_multiple_of(2) {
            send(AUDIO, 0, 100, false);
        }
        for v in VIDEO {
            send(v, 0, 300, key);
            send(v, 1, 1000, key);
            send(v, 2, 1100, key);
            send(v, 2, 1100, false);
        }
        *now += 10_000;
        if shaper.poll_timeout().is_some_and(|t| t <= *now) {
            shaper.handle_timeout(*now);
        }
    }
}

fn count(t: &Tally, track: u64, layer: u8, v: Verdict) -> u64 {
    t.get(&(track, layer, v)).copied().unwrap_or(0)
}

#[test]
fn a_low_estimate_keeps_audio_and_base_layers_and_sheds_upper_layers_whole() {
    let mut shaper = Shaper::new(ShaperConfig::default());
    shaper.apply(ShaperCommand::Kind {
        track: AUDIO,
        kind: TrackKind::Audio,
    });
    let mut now = 1_000_000;
    let mut warm = Tally::new();
    run(&mut shaper, &mut now, 2_000, &mut warm);
    assert!(
        warm.keys().all(|k| k.2 == Verdict::Send),
        "nothing is shed before the link says anything"
    );
    // Offered: ~0.06 Mbit/s of audio, ~0.55 of base layers, ~1.7 of middle layers and
    // ~3.9 of top layers. The link backs up carrying 1.2 Mbit/s: 90% of it holds audio
    // and both base layers, and not one middle layer with them.
    shaper.handle_estimate(
        now,
        NODE,
        LinkEstimate {
            rate: Some(1_200_000),
            saturated: true,
        },
    );
    let mut t = Tally::new();
    run(&mut shaper, &mut now, 3_000, &mut t);
    assert_eq!(count(&t, AUDIO, 0, Verdict::Drop), 0);
    assert_eq!(count(&t, AUDIO, 0, Verdict::Send), 150);
    for v in VIDEO {
        assert_eq!(count(&t, v, 0, Verdict::Send), 300, "{t:?}");
        assert_eq!(count(&t, v, 0, Verdict::Drop), 0);
        // Whole layers: every packet of them, not a share.
        assert_eq!(count(&t, v, 1, Verdict::Send), 0, "{t:?}");
        assert_eq!(count(&t, v, 2, Verdict::Send), 0);
        assert_eq!(count(&t, v, 1, Verdict::Drop), 300);
        assert_eq!(count(&t, v, 2, Verdict::Drop), 600);
    }
    let s = shaper.stats();
    assert_eq!((s.audio_shed, s.layers_shed), (0, 4));
    assert_eq!(s.packets_shed, 2 * (300 + 600));

    // Steady shaping, ticks and estimates included, allocates nothing.
    let mut t = Tally::new();
    run(&mut shaper, &mut now, 100, &mut t);
    let allocs = allocations(|| {
        for k in 0..50u64 {
            for v in VIDEO {
                for layer in 0..3 {
                    let _ = shaper.handle_packet(now, NODE, v, layer, false, 1000);
                }
            }
            let _ = shaper.handle_packet(now, NODE, AUDIO, 0, false, 100);
            now += 10_000;
            if k % 10 == 0 {
                shaper.handle_estimate(
                    now,
                    NODE,
                    LinkEstimate {
                        rate: Some(1_200_000),
                        saturated: true,
                    },
                );
            }
            if shaper.poll_timeout().is_some_and(|t| t <= now) {
                shaper.handle_timeout(now);
            }
        }
    });
    assert_eq!(allocs, 0, "the shaper allocated in steady state");
}

const PT_VP8: u8 = 96;

/// Video frames (after `from`) the subscriber got from each layer, by our payloads
/// `L<layer>-<n>`.
fn frames_by_layer(s: &Subscriber, from: usize) -> [usize; 3] {
    let mut n = [0; 3];
    let Some(ssrc) = s
        .stats()
        .streams
        .iter()
        .find(|x| x.payload_type == PT_VP8 && x.packets > 0)
        .map(|x| x.ssrc)
    else {
        return n;
    };
    for p in s.packets(ssrc).iter().skip(from) {
        if let Some((_, _, d)) = vp8_data(&p.payload)
            && let Some(&[b'L', l, b'-']) = d.get(..3)
            && let Some(x) = n.get_mut(usize::from(l.wrapping_sub(b'0')))
        {
            *x += 1;
        }
    }
    n
}

fn video_packets(s: &Subscriber) -> usize {
    s.stats()
        .streams
        .iter()
        .find(|x| x.payload_type == PT_VP8)
        .map_or(0, |x| x.packets as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_subscribers_follow_the_layers_that_cross_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let opts = ClientOptions {
        audio: false,
        simulcast: true,
        ..ClientOptions::default()
    };
    let mut publisher = client::publish(&a.base_url(), "shaping", &opts)
        .await
        .expect("publish on A");
    let sub_opts = ClientOptions {
        remb: Some(50_000_000),
        rtcp_interval: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    let subscriber =
        subscribe_when_listed_with(&b.base_url(), "shaping", &publisher.id, &sub_opts).await;

    // Sends frames on `layers` (50 a second, a keyframe every 10) until `done`.
    let mut n = 0u32;
    macro_rules! send_until {
        ($layers:expr, $what:expr, $done:expr) => {{
            let start = n;
            while !$done {
                assert!(
                    n - start < 750,
                    "{}: subscriber {:?}, B {:?}",
                    $what,
                    subscriber.stats(),
                    b.router_stats()
                );
                for layer in $layers {
                    let data = format!("L{layer}-{n}");
                    publisher
                        .send_video(layer, data.as_bytes(), n.is_multiple_of(10))
                        .await
                        .unwrap();
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }};
    }

    // All three layers cross the link; the REMB takes the subscriber to the top.
    send_until!(
        0..3,
        "never on the top layer",
        frames_by_layer(&subscriber, 0)[2] >= 20
    );

    // The top layer stops crossing the link: the subscriber moves to the middle one.
    let shed_at = video_packets(&subscriber);
    send_until!(
        0..2,
        "never moved down",
        frames_by_layer(&subscriber, shed_at)[1] >= 20
    );
    let down = frames_by_layer(&subscriber, shed_at);
    assert_eq!(
        down[0], 0,
        "moved to the best layer still arriving: {down:?}"
    );

    // It crosses again: the subscriber goes back up (after the router's hold).
    let back_at = video_packets(&subscriber);
    send_until!(
        0..3,
        "never moved back up",
        frames_by_layer(&subscriber, back_at)[2] >= 20
    );

    let stats = subscriber.stats();
    let video = stats
        .streams
        .iter()
        .find(|x| x.payload_type == PT_VP8)
        .expect("video");
    assert_eq!(
        (
            video.gaps,
            video.missing_now,
            video.out_of_order,
            video.duplicates
        ),
        (0, 0, 0, 0),
        "one contiguous stream across both switches: {video:?}"
    );
    let switches: u64 = b.router_stats().iter().map(|s| s.layer_switches).sum();
    assert!(switches >= 3, "up, down, up again: {switches}");
    eprintln!(
        "far layers: top after {n} frames in all; down {down:?}; switches on B {switches}; A {:?}",
        a.cascade_counters()
    );

    subscriber.close().await.expect("WHEP DELETE");
    publisher.close().await.expect("WHIP DELETE");
    for n in nodes {
        n.shutdown().await;
    }
}

/// The room's active speaker, from the audio level extension, is the publisher whose
/// video A's link shaper favours: two publishers on A, subscribers on B; whoever talks
/// (-20 dBov against the other's -75) becomes the speaker once their lead holds, and the
/// shaper marks exactly that publisher's video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loudest_publisher_is_the_speaker_the_shaper_favours() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let opts = ClientOptions::default();
    let mut alice = client::publish(&a.base_url(), "speak", &opts)
        .await
        .expect("alice publishes on A");
    let mut bob = client::publish(&a.base_url(), "speak", &opts)
        .await
        .expect("bob publishes on A");
    let subs = [
        subscribe_when_listed(&b.base_url(), "speak", &alice.id).await,
        subscribe_when_listed(&b.base_url(), "speak", &bob.id).await,
    ];

    // Both send 20 ms audio packets at the given levels until `done`.
    macro_rules! talk_until {
        ($alice:expr, $bob:expr, $what:expr, $done:expr) => {{
            alice.set_audio_level($alice);
            bob.set_audio_level($bob);
            let mut n = 0;
            while !$done {
                n += 1;
                assert!(
                    n < 500,
                    "{}: speaker {:?}, shaper {:?}, cascade {:?}, subscribers {:?}",
                    $what,
                    a.active_speaker("speak"),
                    a.shaper_stats(),
                    a.cascade_counters(),
                    subs.iter().map(|s| s.stats().packets()).collect::<Vec<_>>()
                );
                alice.send_audio(b"alice").await.unwrap();
                bob.send_audio(b"bob").await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }};
    }
    let is_speaker = |who: &str| {
        a.active_speaker("speak").as_deref() == Some(who)
            && a.shaper_stats().is_some_and(|s| s.speaker_tracks == 1)
    };

    // Room tone on both: nobody speaks (a second of it, and the far side hears it).
    talk_until!(
        75,
        75,
        "room tone",
        subs.iter().all(|s| s.stats().packets() >= 50)
    );
    assert_eq!(a.active_speaker("speak"), None);
    assert_eq!(a.shaper_stats().unwrap().speaker_tracks, 0);

    talk_until!(
        20,
        75,
        "alice never became the speaker",
        is_speaker(&alice.id)
    );
    talk_until!(75, 20, "bob never took over", is_speaker(&bob.id));
    let changes = a.cascade_counters().unwrap().speaker_changes;
    assert_eq!(changes, 2, "nobody -> alice -> bob, no flapping");
    // B hosts no publisher: it judges nobody.
    assert_eq!(b.active_speaker("speak"), None);

    for s in subs {
        s.close().await.expect("WHEP DELETE");
    }
    // The speaker leaving clears the room's speaker and the shaper's mark.
    bob.close().await.expect("WHIP DELETE");
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.active_speaker("speak").is_some() {
        assert!(
            Instant::now() < deadline,
            "bob left but is still the speaker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice.close().await.expect("WHIP DELETE");
    for n in nodes {
        n.shutdown().await;
    }
}
