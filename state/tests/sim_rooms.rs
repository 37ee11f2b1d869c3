//! Room documents in the simulator: push, anti-entropy, partitions, conflicts, node
//! failure, the room-drop rule and load gossip.

use std::time::Duration;

use sluice_state::sim::{LinkProfile, Sim, SimConfig};
use sluice_state::{LinkQuality, LoadSample, RoomSnapshot, Track, TrackKind};

fn formed(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::with_nodes(SimConfig::lan(seed), n);
    let ok = sim.run_until_formed(Duration::from_secs(20));
    assert!(ok.is_some(), "cluster did not form");
    sim
}

fn snapshots(sim: &Sim, nodes: &[usize], room: &str) -> Vec<Option<RoomSnapshot>> {
    nodes.iter().map(|&i| sim.node(i).room(room)).collect()
}

fn all_equal(sim: &Sim, nodes: &[usize], room: &str) -> bool {
    let s = snapshots(sim, nodes, room);
    s.windows(2).all(|w| w[0] == w[1])
}

fn track(id: &str, owner: &str) -> Track {
    Track {
        id: id.into(),
        owner: owner.into(),
        home: sluice_state::NodeId(0),
        kind: TrackKind::Video,
        codec: "VP8".into(),
        layers: vec!["q".into(), "h".into(), "f".into()],
    }
}

#[test]
fn a_change_reaches_every_interested_node() {
    let mut sim = formed(5, 1);
    let now = sim.now();
    for i in 0..5 {
        sim.node_mut(i)
            .join_room(now, "room", &format!("p{i}"))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(2));
    let now = sim.now();
    sim.node_mut(2)
        .publish_track(now, "room", track("cam", "p2"))
        .unwrap();
    sim.node_mut(4).subscribe(now, "room", "cam", 1).unwrap();
    sim.node_mut(0)
        .set_room_metadata(now, "room", "title", "standup")
        .unwrap();
    let t = sim.run_until_pred(now + Duration::from_secs(2), |sim| {
        all_equal(sim, &[0, 1, 2, 3, 4], "room")
            && sim.node(1).room("room").is_some_and(|r| {
                r.tracks.len() == 1 && r.subscriptions.len() == 1 && r.metadata.len() == 1
            })
    });
    assert!(t.expect("no convergence") - now < Duration::from_millis(50));
    let snap = sim.node(3).room("room").unwrap();
    assert_eq!(snap.participants.len(), 5);
    assert_eq!(snap.tracks["cam"].home, sim.node_id(2));
    assert_eq!(snap.tracks["cam"].layers.len(), 3);
    // A node with no stake in a room never hears about it.
    assert!(sim.node(0).rooms().contains(&"room".to_string()));
}

/// Every edit reaches every node in the room in one network trip (20 ms here), also
/// while the room's history is being compacted. Automerge's sync protocol alone would
/// take three trips whenever a new change hit a false positive in the peer's Bloom
/// filter (about one edit in 30-100 at 10 nodes).
#[test]
fn every_edit_crosses_in_one_trip() {
    let mut config = SimConfig::lan(5);
    config.link = LinkProfile::one_way(Duration::from_millis(20));
    config.rooms.compact_after_changes = 40;
    let n = 10;
    let mut sim = Sim::with_nodes(config, n);
    sim.run_for(Duration::from_secs(10));
    let now = sim.now();
    for i in 0..n {
        sim.node_mut(i)
            .join_room(now, "r", &format!("p{i}"))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(3));
    for k in 0..150 {
        let origin = (k * 7) % n;
        let now = sim.now();
        let value = format!("v{k}");
        sim.node_mut(origin)
            .set_room_metadata(now, "r", "topic", &value)
            .unwrap();
        let t = sim.run_until_pred(now + Duration::from_secs(5), |sim| {
            (0..n).all(|i| {
                sim.node(i)
                    .room("r")
                    .is_some_and(|r| r.metadata.get("topic") == Some(&value))
            })
        });
        let t = t.expect("edit never converged") - now;
        assert_eq!(t, Duration::from_millis(20), "edit {k} from node {origin}");
        sim.run_for(Duration::from_millis(100));
    }
    let compactions: u64 = (0..n).map(|i| sim.node(i).stats().room_compactions).sum();
    assert!(compactions >= 2, "{compactions}");
}

#[test]
fn concurrent_conflicting_edits_converge_to_one_value() {
    for seed in 0..5 {
        let mut sim = formed(4, seed);
        let now = sim.now();
        for i in 0..4 {
            sim.node_mut(i)
                .join_room(now, "r", &format!("p{i}"))
                .unwrap();
        }
        sim.run_for(Duration::from_secs(1));
        let now = sim.now();
        // Same instant, different values, on two nodes that cannot have seen each other.
        sim.node_mut(1)
            .set_room_metadata(now, "r", "layout", "grid")
            .unwrap();
        sim.node_mut(3)
            .set_room_metadata(now, "r", "layout", "speaker")
            .unwrap();
        sim.run_for(Duration::from_secs(3));
        assert!(all_equal(&sim, &[0, 1, 2, 3], "r"), "seed {seed}");
        let v = sim.node(0).room("r").unwrap().metadata["layout"].clone();
        assert!(v == "grid" || v == "speaker");
    }
}

#[test]
fn partition_keeps_both_sides_serving_and_heals_to_one_state() {
    let mut sim = formed(6, 42);
    let all = [0, 1, 2, 3, 4, 5];
    let now = sim.now();
    for i in all {
        sim.node_mut(i)
            .join_room(now, "call", &format!("a{i}"))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(2));
    assert!(all_equal(&sim, &all, "call"));

    sim.partition(&[0, 1, 2], &[3, 4, 5]);
    sim.run_for(Duration::from_secs(3));
    // Both sides keep serving: each edits, and each side converges on its own edits.
    let now = sim.now();
    sim.node_mut(0).join_room(now, "call", "late-left").unwrap();
    sim.node_mut(1)
        .set_room_metadata(now, "call", "title", "left")
        .unwrap();
    sim.node_mut(4)
        .join_room(now, "call", "late-right")
        .unwrap();
    sim.node_mut(5)
        .publish_track(now, "call", track("screen", "a5"))
        .unwrap();
    sim.node_mut(3).leave_room(now, "call", "a3").unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(all_equal(&sim, &[0, 1, 2], "call"));
    assert!(all_equal(&sim, &[3, 4, 5], "call"));
    let left = sim.node(0).room("call").unwrap();
    assert!(left.participants.contains_key("late-left"));
    assert!(!left.participants.contains_key("late-right"));
    // The left side declared the right side down and removed its participants.
    assert!(!left.participants.contains_key("a4"));

    sim.heal();
    let healed = sim.run_until_pred(sim.now() + Duration::from_secs(20), |sim| {
        all_equal(sim, &all, "call")
            && sim
                .node(0)
                .room("call")
                .is_some_and(|r| r.participants.len() == 7)
    });
    assert!(healed.is_some(), "{:#?}", snapshots(&sim, &all, "call"));
    let snap = sim.node(2).room("call").unwrap();
    for p in ["a0", "a1", "a2", "a4", "a5", "late-left", "late-right"] {
        assert!(snap.participants.contains_key(p), "{p} missing");
    }
    assert!(!snap.participants.contains_key("a3"));
    assert!(snap.tracks.contains_key("screen"));
    assert_eq!(snap.metadata["title"], "left");
}

#[test]
fn killed_node_leaves_every_room_on_every_survivor() {
    for seed in 0..3 {
        let mut sim = formed(5, seed);
        let now = sim.now();
        for room in ["r1", "r2", "r3"] {
            for i in 0..5 {
                sim.node_mut(i)
                    .join_room(now, room, &format!("{room}-p{i}"))
                    .unwrap();
            }
        }
        sim.node_mut(2)
            .publish_track(now, "r1", track("t2", "r1-p2"))
            .unwrap();
        sim.node_mut(2).subscribe(now, "r2", "x", 0).unwrap();
        sim.run_for(Duration::from_secs(2));
        let killed = sim.now();
        sim.kill(2);
        let victim = sim.node_id(2);
        let survivors = [0, 1, 3, 4];
        let done = sim.run_until_pred(killed + Duration::from_secs(5), |sim| {
            ["r1", "r2", "r3"].iter().all(|room| {
                all_equal(sim, &survivors, room)
                    && sim
                        .node(0)
                        .room(room)
                        .is_some_and(|r| r.participants.len() == 4)
            })
        });
        let t = done.expect("participants of the dead node not removed") - killed;
        assert!(t <= Duration::from_millis(1600), "seed {seed}: {t:?}");
        for room in ["r1", "r2", "r3"] {
            let snap = sim.node(3).room(room).unwrap();
            assert!(snap.participants.values().all(|p| p.home != victim));
            assert!(snap.tracks.values().all(|t| t.home != victim));
            assert!(snap.subscriptions.iter().all(|s| s.node != victim));
        }
    }
}

#[test]
fn anti_entropy_repairs_lost_pushes() {
    let mut config = SimConfig::lan(9);
    config.link.loss = 0.3;
    let mut sim = Sim::with_nodes(config, 4);
    sim.run_for(Duration::from_secs(5));
    let now = sim.now();
    for i in 0..4 {
        for k in 0..5 {
            sim.node_mut(i)
                .join_room(now, "lossy", &format!("n{i}-{k}"))
                .unwrap();
        }
    }
    let ok = sim.run_until_pred(now + Duration::from_secs(30), |sim| {
        all_equal(sim, &[0, 1, 2, 3], "lossy")
            && sim
                .node(0)
                .room("lossy")
                .is_some_and(|r| r.participants.len() == 20)
    });
    assert!(ok.is_some());
}

#[test]
fn empty_room_is_dropped_everywhere_and_can_be_recreated() {
    let mut sim = formed(3, 4);
    let now = sim.now();
    for i in 0..3 {
        sim.node_mut(i)
            .join_room(now, "brief", &format!("p{i}"))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    for cycle in 0..20 {
        let now = sim.now();
        sim.node_mut(cycle % 3)
            .join_room(now, "brief", &format!("churn{cycle}"))
            .unwrap();
        sim.run_for(Duration::from_millis(20));
        let now = sim.now();
        sim.node_mut(cycle % 3)
            .leave_room(now, "brief", &format!("churn{cycle}"))
            .unwrap();
    }
    let now = sim.now();
    for i in 0..3 {
        sim.node_mut(i)
            .leave_room(now, "brief", &format!("p{i}"))
            .unwrap();
    }
    // Grace period (3 s) plus propagation.
    sim.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert!(
            sim.node(i).rooms().is_empty(),
            "node {i} still holds {:?}",
            sim.node(i).rooms()
        );
        assert_eq!(sim.node(i).stats().rooms_dropped, 1);
    }
    // It stays dropped: nothing resurrects it.
    sim.run_for(Duration::from_secs(10));
    assert!((0..3).all(|i| sim.node(i).rooms().is_empty()));

    // A new call in the same room starts from an empty history.
    let now = sim.now();
    sim.node_mut(1).join_room(now, "brief", "again").unwrap();
    sim.node_mut(2).join_room(now, "brief", "too").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(all_equal(&sim, &[1, 2], "brief"));
    let snap = sim.node(2).room("brief").unwrap();
    assert_eq!(snap.participants.len(), 2);
    let fresh_size = sim.node_mut(2).room_doc("brief").unwrap().saved_len();
    assert!(
        fresh_size < 600,
        "history of the dropped incarnation survived: {fresh_size} bytes"
    );
}

#[test]
fn large_sync_messages_travel_as_streams() {
    let mut sim = formed(2, 8);
    let now = sim.now();
    // Enough state that the first full sync exceeds one datagram.
    for k in 0..200 {
        sim.node_mut(0)
            .join_room(now, "big", &format!("participant-with-a-long-id-{k:04}"))
            .unwrap();
    }
    sim.node_mut(1).join_room(now, "big", "late").unwrap();
    let ok = sim.run_until_pred(now + Duration::from_secs(5), |sim| {
        all_equal(sim, &[0, 1], "big")
    });
    assert!(ok.is_some());
    assert_eq!(sim.node(1).room("big").unwrap().participants.len(), 201);
    assert!(sim.traffic(0).streams > 0, "{:?}", sim.traffic(0));
}

#[test]
fn load_reports_reach_every_node_within_a_second() {
    let mut sim = formed(20, 2);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now();
    let sample = LoadSample {
        cpu_permille: 730,
        sessions: 41,
        egress_bps: 250_000_000,
        links: (0..40)
            .map(|p| LinkQuality {
                peer: sluice_state::NodeId(p),
                rtt_ms: p as u16,
                loss_permille: 0,
            })
            .collect(),
        draining: true,
    };
    sim.node_mut(7).set_load(now, sample);
    let id = sim.node_id(7);
    let t = sim.run_until_pred(now + Duration::from_secs(3), |sim| {
        sim.running().iter().all(|&i| {
            sim.node(i)
                .load_of(id, sim.now())
                .is_some_and(|v| v.report.sample.sessions == 41)
        })
    });
    let t = t.expect("load never spread") - now;
    assert!(t < Duration::from_secs(1), "{t:?}");
    let view = sim.node(0).load_of(id, sim.now()).unwrap();
    assert_eq!(
        view.report.sample.links.len(),
        sluice_state::load::MAX_LINKS_IN_REPORT
    );
    assert!(view.age < Duration::from_secs(1));
}

#[test]
fn a_failing_seed_replays_exactly() {
    let run = |seed| {
        let mut config = SimConfig::lan(seed);
        config.link = LinkProfile {
            loss: 0.05,
            jitter: Duration::from_millis(3),
            ..config.link
        };
        let mut sim = Sim::with_nodes(config, 5);
        sim.run_for(Duration::from_secs(2));
        let now = sim.now();
        sim.node_mut(1).join_room(now, "r", "x").unwrap();
        sim.node_mut(3).join_room(now, "r", "y").unwrap();
        sim.run_for(Duration::from_secs(1));
        sim.kill(4);
        sim.run_for(Duration::from_secs(3));
        let events: Vec<String> = sim.take_events().iter().map(|e| format!("{e:?}")).collect();
        let traffic: Vec<_> = (0..5).map(|i| sim.traffic(i)).collect();
        (events, traffic)
    };
    assert_eq!(run(77), run(77));
    assert_ne!(run(77).1, run(78).1);
}
