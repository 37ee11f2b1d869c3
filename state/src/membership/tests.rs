//! The member view: states as SWIM moves a member through them, identities' names and
//! HTTP URLs carried in gossip, and bounds on what a peer may send.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::MemberState;
use crate::auth::ClusterKey;
use crate::identity::{MAX_HTTP_LEN, MAX_NAME_LEN, NodeId, NodeIdentity};
use crate::node::{Node, NodeConfig};
use crate::sim::{Sim, SimConfig};

fn state_of(sim: &Sim, observer: usize, id: NodeId) -> Option<MemberState> {
    sim.node(observer)
        .member_view()
        .into_iter()
        .find(|(m, _)| m.id == id)
        .map(|(_, s)| s)
}

#[test]
fn a_killed_node_goes_suspect_then_down_and_returns_alive() {
    let mut sim = Sim::with_nodes(SimConfig::lan(7), 4);
    assert!(sim.run_until_formed(Duration::from_secs(20)).is_some());
    sim.run_for(Duration::from_secs(1));
    for i in sim.running() {
        let view = sim.node(i).member_view();
        assert_eq!(view.len(), 3, "node {i}: {view:?}");
        assert!(
            view.iter()
                .all(|(m, s)| *s == MemberState::Alive && m.id != sim.node_id(i))
        );
    }

    let victim = 3;
    let victim_id = sim.node_id(victim);
    sim.kill(victim);
    // Every state each survivor shows for the victim, in order, without repeats.
    let mut seen: BTreeMap<usize, Vec<MemberState>> = BTreeMap::new();
    let deadline = sim.now() + Duration::from_secs(3);
    sim.run_until_pred(deadline, |sim| {
        for i in sim.running() {
            let s = state_of(sim, i, victim_id).unwrap_or_else(|| panic!("node {i} forgot it"));
            let states = seen.entry(i).or_default();
            if states.last() != Some(&s) {
                states.push(s);
            }
        }
        false
    });
    assert_eq!(seen.len(), 3);
    for (i, states) in &seen {
        assert_eq!(
            states.last(),
            Some(&MemberState::Down),
            "node {i}: {states:?}"
        );
        // Never back from down without a restart.
        let first_down = states.iter().position(|s| *s == MemberState::Down);
        assert_eq!(first_down, Some(states.len() - 1), "node {i}: {states:?}");
    }
    assert!(
        seen.values().any(|s| s.contains(&MemberState::Suspect)),
        "nobody saw it suspect first: {seen:?}"
    );
    // Down members stay listed (until SWIM forgets them), beside the live ones.
    for i in sim.running() {
        let view = sim.node(i).member_view();
        assert_eq!(view.len(), 3, "node {i}: {view:?}");
        assert_eq!(
            view.iter()
                .filter(|(_, s)| *s == MemberState::Alive)
                .count(),
            2
        );
    }

    // A restart is a newer generation: it replaces the down entry, one per node id.
    sim.restart(victim);
    let back = sim.run_until_pred(sim.now() + Duration::from_secs(5), |sim| {
        [0, 1, 2]
            .iter()
            .all(|&i| state_of(sim, i, victim_id) == Some(MemberState::Alive))
    });
    assert!(back.is_some(), "restarted node not alive again everywhere");
    for i in [0, 1, 2] {
        let view = sim.node(i).member_view();
        assert_eq!(view.len(), 3, "node {i}: {view:?}");
        let (m, _) = view.iter().find(|(m, _)| m.id == victim_id).unwrap();
        assert_eq!(m.generation, 1);
    }
}

fn named_node(id: u64, seeds: Vec<SocketAddr>) -> Node {
    let addr: SocketAddr = format!("127.0.0.{id}:7000").parse().unwrap();
    let identity = NodeIdentity::new(NodeId(id), "local", addr, addr, 10)
        .with_name(&format!("node-{id}"))
        .with_http(&format!("http://127.0.0.1:{}", 8080 + id));
    let mut c = NodeConfig::new(identity, Box::new(ClusterKey::new(b"k")));
    c.seeds = seeds;
    Node::new(c, Duration::ZERO)
}

#[test]
fn names_and_http_urls_travel_in_membership() {
    let mut a = named_node(1, vec![]);
    let mut b = named_node(2, vec![a.identity().link_addr]);
    let mut now = Duration::ZERO;
    for _ in 0..100 {
        now += Duration::from_millis(10);
        for t in std::iter::from_fn(|| a.poll_transmit()).collect::<Vec<_>>() {
            b.handle_datagram(now, &t.data);
        }
        for t in std::iter::from_fn(|| b.poll_transmit()).collect::<Vec<_>>() {
            a.handle_datagram(now, &t.data);
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    let seen_by_a = a.member_view();
    assert_eq!(seen_by_a.len(), 1, "{seen_by_a:?}");
    assert_eq!(seen_by_a[0].0.name, "node-2");
    assert_eq!(seen_by_a[0].0.http, "http://127.0.0.1:8082");
    assert_eq!(seen_by_a[0].1, MemberState::Alive);
    let seen_by_b = b.member_view();
    assert_eq!(seen_by_b.len(), 1, "{seen_by_b:?}");
    assert_eq!(seen_by_b[0].0.name, "node-1");
    assert_eq!(seen_by_b[0].0.http, "http://127.0.0.1:8081");
}

#[test]
fn oversize_names_and_urls_are_left_empty_and_refused_from_the_wire() {
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let base = NodeIdentity::new(NodeId(1), "r", addr, addr, 1);
    assert_eq!(base.name, "");
    assert_eq!(base.http, "");
    let long_name = "n".repeat(MAX_NAME_LEN + 1);
    let long_url = format!("http://{}", "h".repeat(MAX_HTTP_LEN));
    assert_eq!(base.clone().with_name(&long_name).name, "");
    assert_eq!(base.clone().with_http(&long_url).http, "");
    let fits = base.clone().with_name(&"n".repeat(MAX_NAME_LEN));
    assert_eq!(fits.name.len(), MAX_NAME_LEN);

    let ok = postcard::to_allocvec(&fits).unwrap();
    assert_eq!(postcard::from_bytes::<NodeIdentity>(&ok).unwrap(), fits);
    // Built by hand, as a misbehaving peer would: each field past its bound is refused.
    let mut forged = base.clone();
    forged.name = long_name;
    let bytes = postcard::to_allocvec(&forged).unwrap();
    assert!(postcard::from_bytes::<NodeIdentity>(&bytes).is_err());
    let mut forged = base.clone();
    forged.http = long_url;
    let bytes = postcard::to_allocvec(&forged).unwrap();
    assert!(postcard::from_bytes::<NodeIdentity>(&bytes).is_err());
    let mut forged = base;
    forged.region = "r".repeat(crate::identity::MAX_REGION_LEN + 1);
    let bytes = postcard::to_allocvec(&forged).unwrap();
    assert!(postcard::from_bytes::<NodeIdentity>(&bytes).is_err());
}
