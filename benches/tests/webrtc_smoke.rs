//! The WebRTC load generator end to end against an in-process node: real WHIP/WHEP,
//! ICE, DTLS and SRTP; three-layer VP8 and Opus. Below saturation nothing is lost or
//! corrupted and every packet verifies; a ramp measures every level; against the
//! null-forwarder reference every sent packet reaches every subscriber unopened.
//! Correctness only: no timing is asserted.

use sluice_bench::webrtc::fleet::{Signaling, Target};
use sluice_bench::webrtc::levels::{LevelPlan, run_target};
use sluice_bench::webrtc::workload::Workload;
use sluice_control::node::Node;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

async fn node(extra: &str) -> Node {
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n{extra}"
    );
    Node::start(toml::from_str(&text).expect("config"))
        .await
        .expect("node starts")
}

fn target(node: &Node, opaque: bool) -> Target {
    Target {
        name: if opaque { "null" } else { "sluice" }.into(),
        signaling: Signaling::Whip,
        url: node.base_url(),
        pid: Some(std::process::id()),
        verify_every: if opaque { 0 } else { 1 },
        opaque,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

fn workload() -> Workload {
    Workload {
        subscribers: 3,
        ..Workload::default()
    }
}

fn plan(ramp: bool) -> LevelPlan {
    LevelPlan {
        rooms: 1,
        ramp,
        max_rooms: 2,
        loss_limit: 0.005,
        settle: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        window: Duration::from_secs(2),
        refine: 0,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_below_saturation_loses_and_corrupts_nothing() {
    let node = node("").await;
    let r = run_target(&target(&node, false), &workload(), &plan(true), 1).await;
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert_eq!(r.levels.len(), 2, "1 room, then 2");
    assert_eq!(r.saturation, Some(1), "both levels pass");
    for (rooms, l) in [1, 2].iter().zip(&r.levels) {
        assert_eq!(l.rooms, *rooms);
        assert_eq!(
            l.sessions,
            rooms * 4,
            "1 publisher + 3 subscribers per room"
        );
        assert_eq!(l.failed_sessions, 0);
        assert!(l.forwarded > 0);
        assert_eq!(l.loss, 0.0, "{l:?}");
        assert_eq!(l.corrupt, 0);
        // Every packet verified: a subscriber counts a packet just before it checks
        // it, so one per subscriber may straddle a window edge.
        assert!(l.forwarded.abs_diff(l.verified) <= 6, "{l:?}");
        assert!(l.latency_p50_ms.is_some() && l.latency_p999_ms.is_some());
        assert!(l.setup_p50_ms.is_some() && l.setup_p99_ms.is_some());
        assert!(l.server_cpu_ns_per_packet.is_some_and(|ns| ns > 0.0));
        assert!(l.forwarded_bps.is_some_and(|b| b > 0.0));
        assert_eq!(l.samples.len(), 2);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_null_reference_delivers_every_packet_unopened() {
    let node = node("null_forward = true\n").await;
    let w = workload();
    let r = run_target(&target(&node, true), &w, &plan(false), 2).await;
    let l = &r.levels[0];
    assert_eq!(l.failed_sessions, 0, "{:?}", r.notes);
    // Every layer of every packet sent reaches all three subscribers.
    assert!(l.sent > 0);
    // A frame may cross a window edge on one side and not the other when the sending
    // task is descheduled for longer than the edge allows: a frame per subscriber.
    let slack = 3 * 32;
    assert!(l.forwarded.abs_diff(l.sent * 3) <= slack, "{l:?}");
    assert!(l.loss < 0.005, "{l:?}");
    assert_eq!((l.verified, l.corrupt), (0, 0));
    // Nothing opened, so no payload rate to claim.
    assert_eq!(l.forwarded_bps, None);
    node.shutdown().await;
}
