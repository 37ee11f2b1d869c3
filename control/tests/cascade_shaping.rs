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

use sluice_control::cascade::shaper::{
    LinkEstimate, Shaper, ShaperCommand, ShaperConfig, TrackKind, Verdict,
};
use sluice_control::client::{self, ClientError, ClientOptions, Subscriber, vp8_data};
use sluice_control::cluster::ClusterCa;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

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

fn node_config(dir: &Path, name: &str, seeds: &[SocketAddr]) -> NodeConfig {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "[node]\nid = \"{name}\"\nregion = \"r-{name}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [cluster]\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\n\
         ca_cert = \"{d}/ca.pem\"\ncert = \"{d}/{name}.pem\"\nkey = \"{d}/{name}.key\"\n",
        seeds.join(", "),
        d = dir.display()
    );
    toml::from_str(&text).expect("test config parses")
}

async fn two_nodes(dir: &Path) -> (Node, Node) {
    let ca = ClusterCa::ephemeral().unwrap();
    ca.save(dir).unwrap();
    for n in ["a", "b"] {
        ca.issue(n).unwrap().save(dir).unwrap();
    }
    let a = Node::start(node_config(dir, "a", &[]))
        .await
        .expect("A starts");
    let seed = a.link_addr().expect("A has a link address");
    let b = Node::start(node_config(dir, "b", &[seed]))
        .await
        .expect("B starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.cluster_members() < 1 || b.cluster_members() < 1 {
        assert!(Instant::now() < deadline, "membership did not form");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (a, b)
}

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
    let (a, b) = two_nodes(dir.path()).await;
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
    let deadline = Instant::now() + Duration::from_secs(15);
    let subscriber = loop {
        match client::subscribe(&b.base_url(), "shaping", Some(&publisher.id), &sub_opts).await {
            Ok(s) => break s,
            Err(ClientError::Http { status: 404, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("subscribe on B: {e}"),
        }
    };

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
    a.shutdown().await;
    b.shutdown().await;
}
