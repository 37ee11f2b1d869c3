//! `state-bench`: replicated-state benchmark on the deterministic simulator (virtual
//! time, so the numbers are properties of the protocol, not of this machine's CPU).
//!
//! Reports convergence time from a change on one node until every interested node has
//! it (3/10/50 nodes, 20 ms one-way), gossip bytes per node per second idle and under
//! churn at 50 nodes, and the memory one room document holds after 10,000 joins and
//! leaves. Usage: `state-bench [--json FILE] [--quick] [--seeds N]` (`--seeds` repeats
//! the convergence runs on N independent seeds and pools the samples).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sluice_state::auth::ClusterKey;
use sluice_state::sim::{LinkProfile, Sim, SimConfig};
use sluice_state::{LoadSample, Node, NodeConfig, NodeId, NodeIdentity};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn config(seed: u64) -> SimConfig {
    let mut c = SimConfig::lan(seed);
    c.link = LinkProfile {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(1),
        loss: 0.0,
    };
    c
}

fn formed(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::with_nodes(config(seed), n);
    sim.set_record_events(false);
    let ok = sim.run_until_formed(Duration::from_secs(60));
    assert!(ok.is_some(), "{n}-node cluster did not form");
    sim.run_for(Duration::from_secs(2));
    sim
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Convergence of single edits in one room every node takes part in: the time from
/// the edit on one node until every node in the room holds it. Returns the sorted
/// samples.
fn convergence(n: usize, samples: usize, seed: u64) -> Vec<f64> {
    let mut sim = formed(n, 1000 + n as u64 + seed * 7919);
    let now = sim.now();
    for i in 0..n {
        sim.node_mut(i)
            .join_room(now, "bench", &format!("p{i}"))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(3));
    let mut rng = StdRng::seed_from_u64(n as u64 + seed * 7919);
    let mut times = Vec::with_capacity(samples);
    for k in 0..samples {
        let origin = rng.random_range(0..n);
        let value = format!("v{k}");
        let now = sim.now();
        if k % 2 == 0 {
            sim.node_mut(origin)
                .set_room_metadata(now, "bench", "topic", &value)
                .unwrap();
        } else {
            sim.node_mut(origin)
                .join_room(now, "bench", &value)
                .unwrap();
        }
        let done = sim.run_until_pred(now + Duration::from_secs(10), |s| {
            (0..n).all(|i| {
                s.node(i).room("bench").is_some_and(|r| {
                    if k % 2 == 0 {
                        r.metadata.get("topic") == Some(&value)
                    } else {
                        r.participants.contains_key(&value)
                    }
                })
            })
        });
        let t = done.expect("edit never converged") - now;
        if std::env::var_os("STATE_BENCH_TRACE").is_some() && t > Duration::from_millis(30) {
            eprintln!("slow sample n={n} k={k} origin={origin}: {t:?}");
        }
        times.push(t.as_secs_f64() * 1000.0);
        // Independent edits, spaced out; the next starts from a settled cluster.
        sim.run_for(Duration::from_millis(150));
        if k % 2 == 1 {
            let now = sim.now();
            sim.node_mut(origin)
                .leave_room(now, "bench", &value)
                .unwrap();
            sim.run_for(Duration::from_millis(150));
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

fn summary(times: &[f64]) -> (f64, f64, f64) {
    (
        percentile(times, 0.5),
        percentile(times, 0.99),
        *times.last().unwrap(),
    )
}

fn bytes_per_node_per_sec(sim: &Sim, before: &[u64], secs: f64) -> f64 {
    let total: u64 = (0..sim.len())
        .map(|i| sim.traffic(i).bytes - before[i])
        .sum();
    total as f64 / sim.len() as f64 / secs
}

fn snapshot_bytes(sim: &Sim) -> Vec<u64> {
    (0..sim.len()).map(|i| sim.traffic(i).bytes).collect()
}

/// Returns (idle without rooms, idle with rooms, churn) bytes/node/s at `n` nodes.
fn bandwidth(n: usize, secs: u64) -> (f64, f64, f64) {
    let mut sim = formed(n, 7);
    sim.run_for(Duration::from_secs(10));
    let before = snapshot_bytes(&sim);
    sim.run_for(Duration::from_secs(secs));
    let idle = bytes_per_node_per_sec(&sim, &before, secs as f64);

    // 25 rooms, each with participants on 4 nodes.
    let rooms = 25;
    let mut rng = StdRng::seed_from_u64(3);
    let mut sessions = vec![0u32; n];
    let mut present: Vec<(usize, String, String)> = Vec::new();
    let mut next = 0u64;
    for r in 0..rooms {
        for _ in 0..4 {
            let node = rng.random_range(0..n);
            let now = sim.now();
            let pid = format!("u{next}");
            next += 1;
            sim.node_mut(node)
                .join_room(now, &format!("room-{r}"), &pid)
                .unwrap();
            sessions[node] += 1;
            present.push((node, format!("room-{r}"), pid));
        }
    }
    for (i, s) in sessions.iter().enumerate() {
        let now = sim.now();
        sim.node_mut(i).set_load(
            now,
            LoadSample {
                sessions: *s,
                cpu_permille: 100,
                ..Default::default()
            },
        );
    }
    sim.run_for(Duration::from_secs(10));
    let before = snapshot_bytes(&sim);
    sim.run_for(Duration::from_secs(secs));
    let idle_rooms = bytes_per_node_per_sec(&sim, &before, secs as f64);

    // Churn: 100 joins + 100 leaves per second, across the rooms and nodes; each
    // changes that node's session count, so load reports move too.
    let before = snapshot_bytes(&sim);
    let steps = secs * 100;
    for _ in 0..steps {
        let now = sim.now();
        let node = rng.random_range(0..n);
        let room = format!("room-{}", rng.random_range(0..rooms));
        let pid = format!("u{next}");
        next += 1;
        sim.node_mut(node).join_room(now, &room, &pid).unwrap();
        sessions[node] += 1;
        present.push((node, room, pid));
        let victim = rng.random_range(0..present.len());
        let (vnode, vroom, vpid) = present.swap_remove(victim);
        sim.node_mut(vnode).leave_room(now, &vroom, &vpid).unwrap();
        sessions[vnode] -= 1;
        for i in [node, vnode] {
            sim.node_mut(i).set_load(
                now,
                LoadSample {
                    sessions: sessions[i],
                    cpu_permille: 100,
                    ..Default::default()
                },
            );
        }
        sim.run_for(Duration::from_millis(10));
    }
    let churn = bytes_per_node_per_sec(&sim, &before, secs as f64);
    (idle, idle_rooms, churn)
}

/// Heap held by one room document during and after `cycles` joins and leaves (one
/// participant stays throughout, so the room is never dropped), and its saved size.
/// The heap is everything the node allocated since just before the room existed, as
/// counted by the global allocator, so it includes sync state, journal and queues, not
/// only automerge. Returns (after the last cycle, the peak over the second half of the
/// run — the steady state, compactions included — and the saved size).
fn room_memory(cycles: usize) -> (isize, isize, usize) {
    let addr = "127.0.0.1:7000".parse().unwrap();
    let identity = NodeIdentity::new(NodeId(1), "eu-west", addr, addr, 1000);
    let mut node = Node::new(
        NodeConfig::new(identity, Box::new(ClusterKey::new(b"k"))),
        Duration::ZERO,
    );
    let mut now = Duration::from_secs(1);
    let base = LIVE.load(Ordering::Relaxed);
    node.join_room(now, "big", "host").unwrap();
    let mut peak = 0;
    for k in 0..cycles {
        now += Duration::from_millis(10);
        let pid = format!("participant-{k}");
        node.join_room(now, "big", &pid).unwrap();
        node.leave_room(now, "big", &pid).unwrap();
        drop(pid);
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        if k >= cycles / 2 {
            peak = peak.max(LIVE.load(Ordering::Relaxed) - base);
        }
    }
    let held = LIVE.load(Ordering::Relaxed) - base;
    let saved = node.room_doc("big").unwrap().saved_len();
    assert_eq!(node.room("big").unwrap().participants.len(), 1);
    (held, peak, saved)
}

fn main() {
    let mut json_path = None;
    let mut quick = false;
    let mut seeds = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json_path = args.next(),
            "--quick" => quick = true,
            "--seeds" => {
                seeds = args.next().and_then(|v| v.parse().ok()).unwrap_or(0).max(1);
            }
            other => {
                eprintln!(
                    "unknown argument {other}; usage: state-bench [--json FILE] [--quick] [--seeds N]"
                );
                std::process::exit(2);
            }
        }
    }
    let samples = if quick { 30 } else { 200 };
    let mut conv = Vec::new();
    for n in [3usize, 10, 50] {
        let mut pooled = Vec::new();
        for seed in 0..seeds {
            let times = convergence(n, if n == 50 { samples / 2 } else { samples }, seed);
            if seeds > 1 {
                let (p50, p99, max) = summary(&times);
                println!(
                    "  seed {seed} n={n:>2}: p50 {p50:6.1} ms  p99 {p99:6.1} ms  max {max:6.1} ms"
                );
            }
            pooled.extend(times);
        }
        pooled.sort_by(f64::total_cmp);
        let (p50, p99, max) = summary(&pooled);
        println!(
            "convergence n={n:>2} one-way=20ms ({} samples, {seeds} seeds): p50 {p50:6.1} ms  p99 {p99:6.1} ms  max {max:6.1} ms",
            pooled.len()
        );
        conv.push((n, p50, p99, max));
    }
    let secs = if quick { 5 } else { 20 };
    let (idle, idle_rooms, churn) = bandwidth(50, secs);
    println!(
        "gossip n=50: idle {idle:.0} B/s/node, idle with 25 rooms {idle_rooms:.0} B/s/node, churn 100 joins+leaves/s {churn:.0} B/s/node"
    );
    let (held, peak, saved) = room_memory(10_000);
    println!(
        "room document after 10000 joins+leaves: {held} bytes heap (peak {peak} over the last 5000), {saved} bytes saved"
    );

    let conv_json: Vec<String> = conv
        .iter()
        .map(|(n, p50, p99, max)| {
            format!("{{\"nodes\":{n},\"one_way_ms\":20,\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2},\"max_ms\":{max:.2}}}")
        })
        .collect();
    let json = format!(
        "{{\"convergence\":[{}],\"gossip_50_nodes\":{{\"idle_bytes_per_node_per_s\":{idle:.1},\"idle_with_25_rooms_bytes_per_node_per_s\":{idle_rooms:.1},\"churn_100_joins_leaves_per_s_bytes_per_node_per_s\":{churn:.1}}},\"room_doc_after_10000_joins_leaves\":{{\"heap_bytes\":{held},\"peak_heap_bytes_last_5000\":{peak},\"saved_bytes\":{saved}}}}}\n",
        conv_json.join(",")
    );
    if let Some(path) = json_path
        && let Err(e) = std::fs::write(&path, &json)
    {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
}
