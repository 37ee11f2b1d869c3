//! Path selection on virtual time: a few nodes whose links are reported as gossip would
//! report them.

use super::*;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const D: NodeId = NodeId(4);
const MS: Micros = 1_000;
const S: Micros = 1_000_000;

fn lq(peer: NodeId, rtt_ms: u16, loss_permille: u16) -> LinkQuality {
    LinkQuality {
        peer,
        rtt_ms,
        loss_permille,
    }
}

/// Each link reported the same by both of its ends: `(a, b, rtt_ms, loss_permille)`.
fn mesh(p: &mut PathSelector, now: Micros, links: &[(NodeId, NodeId, u16, u16)]) {
    let mut by_node: BTreeMap<NodeId, Vec<LinkQuality>> = BTreeMap::new();
    for &(a, b, rtt, loss) in links {
        by_node.entry(a).or_default().push(lq(b, rtt, loss));
        by_node.entry(b).or_default().push(lq(a, rtt, loss));
    }
    for (node, links) in by_node {
        p.update_node(now, node, &links);
    }
}

/// A–B and B–C good (20 ms, a relay path costing 44), A–C as given.
fn triangle(p: &mut PathSelector, now: Micros, ac_rtt: u16, ac_loss: u16) {
    mesh(
        p,
        now,
        &[(A, B, 20, 0), (B, C, 20, 0), (A, C, ac_rtt, ac_loss)],
    );
}

fn changes(p: &mut PathSelector) -> Vec<PathChange> {
    std::iter::from_fn(|| p.poll_change()).collect()
}

fn changes_of(p: &mut PathSelector, from: NodeId, to: NodeId) -> Vec<(Route, Route, bool)> {
    changes(p)
        .into_iter()
        .filter(|c| c.from == from && c.to == to)
        .map(|c| (c.old, c.new, c.forced))
        .collect()
}

/// Deterministic noise in `lo..=hi`.
struct Lcg(u64);

impl Lcg {
    fn next_in(&mut self, lo: u16, hi: u16) -> u16 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let span = u64::from(hi - lo) + 1;
        lo + u16::try_from((self.0 >> 33) % span).unwrap_or(0)
    }
}

/// A reports its link to C with an RTT drawn from `lo..=hi` every 100 ms for `secs`;
/// returns how often A→C changed route.
fn jitter(p: &mut PathSelector, start: Micros, secs: u64, lo: u16, hi: u16) -> usize {
    swing(p, start, secs, 0, (lo, hi), (lo, hi))
}

/// Like [`jitter`], alternating every `half` 100 ms steps between RTTs drawn from
/// `first` and from `second` (never alternating when `half` is 0).
fn swing(
    p: &mut PathSelector,
    start: Micros,
    secs: u64,
    half: u64,
    first: (u16, u16),
    second: (u16, u16),
) -> usize {
    let mut rng = Lcg(7);
    let mut n = 0;
    let mut now = start;
    let mut step: u64 = 0;
    while now < start + secs * S {
        now += 100 * MS;
        step += 1;
        let (lo, hi) = match step.checked_div(half) {
            Some(h) if h % 2 == 1 => second,
            _ => first,
        };
        let rtt = rng.next_in(lo, hi);
        p.update_node(now, A, &[lq(B, 20, 0), lq(C, rtt, 0)]);
        if p.poll_timeout().is_some_and(|t| t <= now) {
            p.handle_timeout(now);
        }
        n += changes_of(p, A, C).len();
    }
    n
}

#[test]
fn the_cost_is_an_effective_rtt() {
    let mut p = PathSelector::default();
    mesh(
        &mut p,
        0,
        &[
            (A, B, 30, 0),
            (A, C, 30, 100),
            (B, C, 0, 0),
            (A, D, 30, 5000),
        ],
    );
    assert_eq!(p.link_cost(A, B), Some(32.0));
    // 10% loss: six times the delay.
    assert_eq!(p.link_cost(A, C), Some(192.0));
    // A LAN hop still costs the forwarding.
    assert_eq!(p.link_cost(B, C), Some(2.0));
    // Loss beyond 100% is clamped, not overflowed.
    assert_eq!(p.link_cost(A, D), Some(32.0 * 51.0));
    assert_eq!(p.route_cost(A, C, Route::Via(B)), Some(34.0));
    assert_eq!(p.route_cost(A, C, Route::Via(A)), None);
    assert_eq!(p.route_cost(A, A, Route::Direct), None);
    assert_eq!(p.link_cost(A, NodeId(99)), None);
}

#[test]
fn a_clearly_worse_direct_link_is_relayed_after_confirm_and_returns_after_dwell() {
    let cfg = PathConfig::default();
    let mut p = PathSelector::new(cfg.clone());
    triangle(&mut p, 0, 30, 0);
    assert_eq!(p.route(A, C), Route::Direct);
    assert_eq!(
        changes_of(&mut p, A, C),
        vec![(Route::Unreachable, Route::Direct, false)]
    );
    assert_eq!(p.poll_timeout(), None);

    // A–C degrades to 10% loss (cost 192 against 44 via B).
    let t = 10 * S;
    triangle(&mut p, t, 30, 100);
    assert_eq!(p.route(A, C), Route::Direct);
    assert_eq!(p.poll_timeout(), Some(t + cfg.confirm));
    p.handle_timeout(t + cfg.confirm - 1);
    assert_eq!(p.route(A, C), Route::Direct);
    p.handle_timeout(t + cfg.confirm);
    assert_eq!(p.route(A, C), Route::Via(B));
    assert_eq!(p.route(C, A), Route::Via(B));
    assert_eq!(
        changes_of(&mut p, A, C),
        vec![(Route::Direct, Route::Via(B), false)]
    );
    let switched = t + cfg.confirm;

    // Recovered only to within the margin of the relay (42 against 44): stays relayed.
    triangle(&mut p, switched + S, 40, 0);
    p.handle_timeout(switched + 30 * S);
    assert_eq!(p.route(A, C), Route::Via(B));
    assert_eq!(p.poll_timeout(), None);

    // Properly recovered (32): confirmed at once, but the dwell since the switch holds.
    let t = switched + 31 * S;
    triangle(&mut p, t, 30, 0);
    p.handle_timeout(t + cfg.confirm);
    assert_eq!(p.route(A, C), Route::Direct);
    assert!(changes_of(&mut p, A, C) == vec![(Route::Via(B), Route::Direct, false)]);

    // A fresh degradation right after: confirmed, then held by the dwell.
    let t2 = t + cfg.confirm + 100 * MS;
    triangle(&mut p, t2, 30, 100);
    p.handle_timeout(t2 + cfg.confirm);
    assert_eq!(p.route(A, C), Route::Direct);
    let due = t + cfg.confirm + cfg.min_dwell;
    assert_eq!(p.poll_timeout(), Some(due));
    p.handle_timeout(due - 1);
    assert_eq!(p.route(A, C), Route::Direct);
    p.handle_timeout(due);
    assert_eq!(p.route(A, C), Route::Via(B));

    let s = p.stats();
    // Per direction: appear, relay, return, relay again.
    assert_eq!(s.changes, 6 + 2 * 3);
    assert_eq!(s.to_relay, 4);
    assert_eq!(s.to_direct, 2);
    assert_eq!(s.forced, 0);
    assert_eq!(s.held, 2);
    assert_eq!(s.relayed, 2);
    assert_eq!(s.unreachable, 0);
}

#[test]
fn a_worse_report_that_does_not_last_confirm_changes_nothing() {
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 30, 0);
    changes(&mut p);
    let mut now = 10 * S;
    for _ in 0..20 {
        triangle(&mut p, now, 30, 100);
        now += 200 * MS;
        triangle(&mut p, now, 30, 0);
        p.handle_timeout(now + 200 * MS);
        now += 400 * MS;
    }
    assert_eq!(p.route(A, C), Route::Direct);
    assert!(changes(&mut p).is_empty());
}

#[test]
fn an_initial_clearly_worse_direct_link_is_relayed_at_once() {
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 150, 0);
    assert_eq!(p.route(A, C), Route::Via(B));
    // Not clearly worse: 52 is within 20% of 44.
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 50, 0);
    assert_eq!(p.route(A, C), Route::Direct);
}

#[test]
fn jitter_around_the_margin_changes_the_route_at_most_once() {
    // Direct costs 46..=62 against the relay's 44 times 1.2 = 52.8.
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 30, 0);
    changes(&mut p);
    assert!(jitter(&mut p, 0, 100, 44, 60) <= 1);

    // The margin's band alone does it, without confirm or dwell.
    let mut p = PathSelector::new(PathConfig {
        confirm: 0,
        min_dwell: 0,
        ..PathConfig::default()
    });
    triangle(&mut p, 0, 30, 0);
    changes(&mut p);
    assert!(jitter(&mut p, 0, 100, 44, 60) <= 1);
}

#[test]
fn without_hysteresis_the_same_jitter_flaps() {
    // The control for the test above: no margin, confirm or dwell, jitter around the
    // equal-cost point (direct 44).
    let mut p = PathSelector::new(PathConfig {
        margin_percent: 0,
        confirm: 0,
        min_dwell: 0,
        ..PathConfig::default()
    });
    triangle(&mut p, 0, 30, 0);
    changes(&mut p);
    assert!(jitter(&mut p, 0, 100, 34, 50) > 50);
}

#[test]
fn a_link_swinging_every_two_seconds_changes_at_most_once_per_dwell() {
    // Direct alternates between clearly better (cost 12..=32) and clearly worse
    // (102..=122) than the relay (44) every 2 s, each state lasting past confirm.
    let cfg = PathConfig::default();
    let mut p = PathSelector::new(cfg.clone());
    triangle(&mut p, 0, 30, 0);
    changes(&mut p);
    let n = swing(&mut p, 0, 100, 20, (10, 30), (100, 120));
    let bound = usize::try_from(100 * S / cfg.min_dwell).unwrap_or(0) + 1;
    assert!((2..=bound).contains(&n), "{n}");

    // Without the dwell it follows every swing.
    let mut p = PathSelector::new(PathConfig {
        min_dwell: 0,
        ..cfg
    });
    triangle(&mut p, 0, 30, 0);
    changes(&mut p);
    let n = swing(&mut p, 0, 100, 20, (10, 30), (100, 120));
    assert!(n >= 45, "{n}");
}

#[test]
fn a_relay_going_down_moves_its_routes_at_once() {
    let mut p = PathSelector::default();
    mesh(
        &mut p,
        0,
        &[
            (A, B, 20, 0),
            (B, C, 20, 0),
            (A, D, 30, 0),
            (D, C, 30, 0),
            (A, C, 30, 100),
        ],
    );
    assert_eq!(p.route(A, C), Route::Via(B));
    changes(&mut p);

    p.node_down(S, B);
    assert_eq!(p.route(A, C), Route::Via(D));
    assert_eq!(p.route(A, B), Route::Unreachable);
    assert_eq!(
        changes_of(&mut p, A, C),
        vec![(Route::Via(B), Route::Via(D), true)]
    );

    p.node_down(2 * S, D);
    assert_eq!(p.route(A, C), Route::Direct);
    assert_eq!(
        changes_of(&mut p, A, C),
        vec![(Route::Via(D), Route::Direct, true)]
    );

    // B is back and reports again: the better relay is taken after confirm and the
    // dwell since the last forced change.
    p.node_up(3 * S, B);
    mesh(
        &mut p,
        3 * S,
        &[(A, B, 20, 0), (B, C, 20, 0), (A, C, 30, 100)],
    );
    assert_eq!(p.route(A, C), Route::Direct);
    assert_eq!(p.poll_timeout(), Some(7 * S));
    p.handle_timeout(7 * S);
    assert_eq!(p.route(A, C), Route::Via(B));
    assert!(p.stats().forced >= 2);
}

#[test]
fn a_relay_going_down_with_no_direct_link_leaves_the_pair_unreachable() {
    let mut p = PathSelector::default();
    mesh(&mut p, 0, &[(A, B, 20, 0), (B, C, 20, 0)]);
    assert_eq!(p.route(A, C), Route::Via(B));
    changes(&mut p);
    p.node_down(S, B);
    assert_eq!(p.route(A, C), Route::Unreachable);
    assert_eq!(
        changes_of(&mut p, A, C),
        vec![(Route::Via(B), Route::Unreachable, true)]
    );
    assert_eq!(p.stats().unreachable, 6);
}

#[test]
fn a_removed_node_is_forgotten_with_its_pairs() {
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 30, 100);
    changes(&mut p);
    p.remove_node(S, B);
    let gone: Vec<_> = changes(&mut p)
        .into_iter()
        .filter(|c| c.from == B || c.to == B)
        .map(|c| (c.old, c.new))
        .collect();
    assert_eq!(gone, vec![(Route::Direct, Route::Unreachable); 4]);
    assert_eq!(p.route(A, C), Route::Direct);
    assert!(p.routes().all(|(f, t, _)| f != B && t != B));
    assert_eq!(p.routes().count(), 2);
    // Others' stale reports of links to it do not bring it back.
    p.update_node(2 * S, A, &[lq(B, 20, 0), lq(C, 30, 100)]);
    assert_eq!(p.route(A, B), Route::Unreachable);
    assert_eq!(p.route(A, C), Route::Direct);
}

#[test]
fn a_relay_that_may_not_relay_is_left_at_once() {
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 30, 100);
    assert_eq!(p.route(A, C), Route::Via(B));
    p.set_relay_allowed(S, B, false);
    assert_eq!(p.route(A, C), Route::Direct);
    // Its own streams still flow.
    assert_eq!(p.route(A, B), Route::Direct);
}

#[test]
fn the_source_or_destination_is_never_the_relay() {
    // Self-links at 0 ms would make "via A" look free if they were taken.
    let mut p = PathSelector::default();
    p.update_node(0, A, &[lq(A, 0, 0), lq(C, 200, 300)]);
    p.update_node(0, C, &[lq(C, 0, 0), lq(A, 200, 300)]);
    assert_eq!(p.route(A, C), Route::Direct);
    assert_eq!(p.route(C, A), Route::Direct);

    // A random mesh: every relay chosen is a third node, and is the cheapest one.
    let nodes: Vec<NodeId> = (1..=6).map(NodeId).collect();
    let mut rng = Lcg(11);
    let mut p = PathSelector::default();
    for &n in &nodes {
        let links: Vec<_> = nodes
            .iter()
            .map(|&peer| lq(peer, rng.next_in(0, 200), rng.next_in(0, 200)))
            .collect();
        p.update_node(0, n, &links);
    }
    let mut relayed = 0;
    for (f, t, r) in p.routes() {
        if let Route::Via(v) = r {
            relayed += 1;
            assert!(v != f && v != t);
            let cost = p.route_cost(f, t, r);
            for &o in &nodes {
                let other = p.route_cost(f, t, Route::Via(o));
                assert!(other.is_none() || other >= cost, "{f}->{t} via {v} vs {o}");
            }
        }
    }
    assert!(relayed > 0);
}

#[test]
fn an_unmeasured_link_is_unusable() {
    let mut p = PathSelector::default();
    // Only C measured the A–C link; A never reported it.
    p.update_node(0, A, &[]);
    p.update_node(0, C, &[lq(A, 30, 0)]);
    assert_eq!(p.route(A, C), Route::Unreachable);
    assert_eq!(p.route(C, A), Route::Direct);

    // A link dropped from the sender's next report is gone, at once.
    p.update_node(S, A, &[lq(C, 30, 0)]);
    assert_eq!(p.route(A, C), Route::Direct);
    changes(&mut p);
    p.update_node(2 * S, A, &[]);
    assert_eq!(p.route(A, C), Route::Unreachable);
    assert_eq!(
        changes_of(&mut p, A, C),
        vec![(Route::Direct, Route::Unreachable, true)]
    );

    // A relay whose second hop nobody measured is no route either.
    p.update_node(3 * S, A, &[lq(B, 20, 0)]);
    p.update_node(3 * S, B, &[]);
    assert_eq!(p.route(A, C), Route::Unreachable);
    p.update_node(4 * S, B, &[lq(C, 20, 0)]);
    assert_eq!(p.route(A, C), Route::Via(B));
}

#[test]
fn each_hop_uses_its_senders_report() {
    let mut p = PathSelector::default();
    p.update_node(0, A, &[lq(B, 20, 0), lq(C, 30, 100)]);
    p.update_node(0, B, &[lq(A, 20, 0), lq(C, 20, 0)]);
    p.update_node(0, C, &[lq(A, 30, 0), lq(B, 20, 0)]);
    // A sees loss toward C; C sees none toward A.
    assert_eq!(p.route(A, C), Route::Via(B));
    assert_eq!(p.route(C, A), Route::Direct);
}

#[test]
fn a_link_below_the_bandwidth_floor_is_unusable() {
    let floor = PathConfig::default().min_bandwidth_bps;
    let m = |rtt_ms, bandwidth_bps| LinkMeasurement {
        rtt_ms,
        loss_permille: 0,
        bandwidth_bps,
    };
    let mut p = PathSelector::default();
    triangle(&mut p, 0, 30, 0);
    p.update_links(0, A, &[(B, m(20, None)), (C, m(30, Some(floor - 1)))]);
    assert_eq!(p.link_cost(A, C), None);
    assert_eq!(p.route(A, C), Route::Via(B));
    assert_eq!(p.route(C, A), Route::Direct);
    // At the floor it is usable again (after confirm and the dwell since the forced
    // change), and bandwidth above it does not make it cheaper.
    p.update_links(S, A, &[(B, m(20, None)), (C, m(30, Some(floor)))]);
    assert_eq!(p.link_cost(A, C), Some(32.0));
    p.update_links(S, A, &[(B, m(20, None)), (C, m(30, Some(100 * floor)))]);
    assert_eq!(p.link_cost(A, C), Some(32.0));
    p.handle_timeout(10 * S);
    assert_eq!(p.route(A, C), Route::Direct);
}
