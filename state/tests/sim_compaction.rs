//! History compaction by epochs: a long-lived room's document stays bounded, and
//! edits made while a compaction spreads, rival compactions on both sides of a
//! partition, and a node that comes back with an old epoch all end in one state
//! that holds every surviving edit.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_state::sim::{Sim, SimConfig};
use sluice_state::{RoomSnapshot, Track, TrackKind};

const THRESHOLD: u64 = 24;

fn formed(n: usize, seed: u64) -> Sim {
    let mut config = SimConfig::lan(seed);
    config.rooms.compact_after_changes = THRESHOLD;
    let mut sim = Sim::with_nodes(config, n);
    let ok = sim.run_until_formed(Duration::from_secs(20));
    assert!(ok.is_some(), "cluster did not form");
    sim
}

fn snapshots(sim: &Sim, nodes: &[usize], room: &str) -> Vec<Option<RoomSnapshot>> {
    nodes.iter().map(|&i| sim.node(i).room(room)).collect()
}

fn converged_to(sim: &Sim, nodes: &[usize], room: &str, expected: &Expected) -> bool {
    let s = snapshots(sim, nodes, room);
    s.windows(2).all(|w| w[0] == w[1]) && s[0].as_ref().is_some_and(|snap| expected.matches(snap))
}

/// What the room must say once everything has settled.
#[derive(Default, Debug)]
struct Expected {
    participants: BTreeMap<String, usize>,
    tracks: BTreeMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl Expected {
    /// Missing and unexpected keys of `snap`, for failure messages.
    fn diff(&self, snap: &RoomSnapshot) -> String {
        let mut out = String::new();
        let mut cmp = |what: &str, want: Vec<&String>, got: Vec<&String>| {
            let missing: Vec<_> = want.iter().filter(|k| !got.contains(k)).collect();
            let extra: Vec<_> = got.iter().filter(|k| !want.contains(k)).collect();
            if !missing.is_empty() || !extra.is_empty() {
                out += &format!("{what}: missing {missing:?} extra {extra:?}\n");
            }
        };
        cmp(
            "participants",
            self.participants.keys().collect(),
            snap.participants.keys().collect(),
        );
        cmp(
            "tracks",
            self.tracks.keys().collect(),
            snap.tracks.keys().collect(),
        );
        cmp(
            "metadata",
            self.metadata.keys().collect(),
            snap.metadata.keys().collect(),
        );
        for (k, v) in &self.metadata {
            if snap.metadata.get(k).is_some_and(|g| g != v) {
                out += &format!("metadata {k}: want {v} got {:?}\n", snap.metadata[k]);
            }
        }
        out
    }

    fn report(&self, sim: &Sim, nodes: &[usize], room: &str) -> String {
        let mut out = String::new();
        for &i in nodes {
            let snap = sim.node(i).room(room).unwrap_or_default();
            out += &format!(
                "node {i} epoch {:?} stats c{} a{}:\n{}",
                sim.node(i)
                    .room_epoch(room)
                    .map(|e| (e.number, e.creator[7], e.creator[15])),
                sim.node(i).stats().room_compactions,
                sim.node(i).stats().room_epochs_adopted,
                self.diff(&snap)
            );
        }
        out
    }

    fn matches(&self, snap: &RoomSnapshot) -> bool {
        snap.participants.keys().eq(self.participants.keys())
            && snap.tracks.keys().eq(self.tracks.keys())
            && snap.metadata == self.metadata
    }
}

fn track(id: &str, owner: &str) -> Track {
    Track {
        id: id.into(),
        owner: owner.into(),
        home: sluice_state::NodeId(0),
        kind: TrackKind::Audio,
        codec: "opus".into(),
        layers: Vec::new(),
    }
}

/// Every node edits at the same instant, round after round: joins, leaves, tracks and
/// metadata. With a small threshold the coordinator compacts every few rounds, so
/// every compaction has edits from other nodes in flight on the old epoch.
fn churn(sim: &mut Sim, nodes: &[usize], room: &str, rounds: usize, exp: &mut Expected, tag: &str) {
    for round in 0..rounds {
        let now = sim.now();
        for &i in nodes {
            let pid = format!("{tag}-n{i}-r{round}");
            sim.node_mut(i).join_room(now, room, &pid).unwrap();
            exp.participants.insert(pid.clone(), i);
            if round % 3 == 1 {
                let tid = format!("{pid}-mic");
                sim.node_mut(i)
                    .publish_track(now, room, track(&tid, &pid))
                    .unwrap();
                exp.tracks.insert(tid, i);
            }
            if round >= 2 && round % 2 == 0 {
                // Leaves the participant it added two rounds ago (and its track).
                let old = format!("{tag}-n{i}-r{}", round - 2);
                assert!(sim.node_mut(i).leave_room(now, room, &old).unwrap());
                exp.participants.remove(&old);
                exp.tracks.remove(&format!("{old}-mic"));
            }
            let key = format!("{tag}-by-{i}");
            let value = format!("round-{round}");
            sim.node_mut(i)
                .set_room_metadata(now, room, &key, &value)
                .unwrap();
            exp.metadata.insert(key, value);
        }
        sim.run_for(Duration::from_millis(3));
    }
}

fn compactions(sim: &Sim, nodes: &[usize]) -> u64 {
    nodes
        .iter()
        .map(|&i| sim.node(i).stats().room_compactions)
        .sum()
}

#[test]
fn concurrent_edits_during_compactions_all_survive() {
    for seed in 0..3 {
        let all = [0, 1, 2, 3, 4];
        let mut sim = formed(5, seed);
        let mut exp = Expected::default();
        churn(&mut sim, &all, "room", 40, &mut exp, "c");
        let ok = sim.run_until_pred(sim.now() + Duration::from_secs(5), |sim| {
            converged_to(sim, &all, "room", &exp)
        });
        assert!(
            ok.is_some(),
            "seed {seed}:\n{}",
            exp.report(&sim, &all, "room")
        );
        // 5 nodes x 40 rounds x ~2 changes: many epochs, every node moved with them.
        assert!(compactions(&sim, &all) >= 10, "seed {seed}");
        let epoch = sim.node(0).room_epoch("room").unwrap();
        for i in all {
            assert_eq!(sim.node(i).room_epoch("room"), Some(epoch), "seed {seed}");
            // Bounded history: never far past the threshold on any node.
            let changes = sim.node_mut(i).room_doc("room").unwrap().change_count();
            assert!(changes < 3 * THRESHOLD, "seed {seed} node {i}: {changes}");
        }
        assert!(sim.node(1).stats().room_epochs_adopted > 0);
    }
}

#[test]
fn rival_compactions_on_both_sides_of_a_partition_merge() {
    let left = [0, 1, 2];
    let right = [3, 4, 5];
    let all = [0, 1, 2, 3, 4, 5];
    for seed in 0..2 {
        let mut sim = formed(6, 100 + seed);
        let mut exp = Expected::default();
        churn(&mut sim, &all, "call", 4, &mut exp, "before");
        sim.run_for(Duration::from_secs(1));
        assert!(converged_to(&sim, &all, "call", &exp));

        sim.partition(&left, &right);
        sim.run_for(Duration::from_secs(3));
        // Each side declared the other down and removed its records; what each side
        // holds of its own must survive the heal.
        let mut l = Expected::default();
        let mut r = Expected::default();
        churn(&mut sim, &left, "call", 6, &mut l, "left");
        churn(&mut sim, &right, "call", 6, &mut r, "right");
        sim.run_for(Duration::from_secs(1));
        let el = sim.node(0).room_epoch("call").unwrap();
        let er = sim.node(3).room_epoch("call").unwrap();
        assert!(el.number > 0 && er.number > 0, "seed {seed}: no compaction");
        assert_ne!(el, er, "seed {seed}: sides should hold rival epochs");

        sim.heal();
        let mut want = Expected::default();
        for e in [&exp, &l, &r] {
            want.participants.extend(e.participants.clone());
            want.tracks.extend(e.tracks.clone());
            want.metadata.extend(e.metadata.clone());
        }
        let ok = sim.run_until_pred(sim.now() + Duration::from_secs(20), |sim| {
            converged_to(sim, &all, "call", &want)
        });
        assert!(
            ok.is_some(),
            "seed {seed}:\n{}",
            want.report(&sim, &all, "call")
        );
        let epoch = sim.node(0).room_epoch("call");
        assert!(all.iter().all(|&i| sim.node(i).room_epoch("call") == epoch));
    }
}

#[test]
fn node_back_with_an_old_epoch_catches_up() {
    let all = [0, 1, 2, 3];
    let rest = [0, 1, 2];
    for seed in 0..2 {
        let mut sim = formed(4, 200 + seed);
        let mut exp = Expected::default();
        churn(&mut sim, &all, "r", 3, &mut exp, "pre");
        sim.run_for(Duration::from_secs(1));
        assert!(converged_to(&sim, &all, "r", &exp));
        let old_epoch = sim.node(3).room_epoch("r").unwrap();

        sim.partition(&[3], &rest);
        sim.run_for(Duration::from_secs(2));
        // The others go through several epochs while node 3 is away.
        let mut others = Expected::default();
        churn(&mut sim, &rest, "r", 20, &mut others, "away");
        // Node 3 changes its own sessions meanwhile (few changes: no compaction).
        let now = sim.now();
        sim.node_mut(3).join_room(now, "r", "isolated").unwrap();
        sim.node_mut(3).leave_room(now, "r", "pre-n3-r1").unwrap();
        sim.node_mut(3)
            .set_room_metadata(now, "r", "note", "written while away")
            .unwrap();
        sim.run_for(Duration::from_secs(1));
        assert_eq!(sim.node(3).room_epoch("r"), Some(old_epoch));
        assert!(sim.node(0).room_epoch("r").unwrap().number >= old_epoch.number + 2);

        sim.heal();
        let mut want = Expected::default();
        // Each side declared the other down and removed its records; each side's own
        // records, and everything written on either side, come back.
        for (p, &home) in &exp.participants {
            want.participants.insert(p.clone(), home);
        }
        want.participants.remove("pre-n3-r1");
        want.participants.insert("isolated".into(), 3);
        want.tracks = exp.tracks.clone();
        want.tracks.remove("pre-n3-r1-mic");
        want.participants.extend(others.participants.clone());
        want.tracks.extend(others.tracks.clone());
        want.metadata = exp.metadata.clone();
        want.metadata.extend(others.metadata.clone());
        want.metadata
            .insert("note".into(), "written while away".into());
        let ok = sim.run_until_pred(sim.now() + Duration::from_secs(20), |sim| {
            converged_to(sim, &all, "r", &want)
        });
        assert!(
            ok.is_some(),
            "seed {seed}:\n{}",
            want.report(&sim, &all, "r")
        );
        assert!(sim.node(3).stats().room_epochs_adopted > 0);
    }
}

#[test]
fn a_long_lived_room_keeps_a_bounded_history() {
    let mut sim = formed(3, 7);
    let now = sim.now();
    sim.node_mut(0).join_room(now, "long", "host").unwrap();
    let mut max_changes = 0;
    for k in 0..400 {
        let node = k % 3;
        let now = sim.now();
        let pid = format!("guest-{k}");
        sim.node_mut(node).join_room(now, "long", &pid).unwrap();
        sim.run_for(Duration::from_millis(5));
        let now = sim.now();
        sim.node_mut(node).leave_room(now, "long", &pid).unwrap();
        sim.run_for(Duration::from_millis(5));
        for i in 0..3 {
            if let Some(doc) = sim.node_mut(i).room_doc("long") {
                max_changes = max_changes.max(doc.change_count());
            }
        }
    }
    sim.run_for(Duration::from_secs(2));
    // 800 changes went through; no node ever held more than a few thresholds' worth.
    assert!(max_changes < 3 * THRESHOLD, "{max_changes}");
    for i in 0..3 {
        let snap = sim.node(i).room("long").unwrap();
        assert_eq!(snap.participants.keys().collect::<Vec<_>>(), ["host"]);
    }
}
