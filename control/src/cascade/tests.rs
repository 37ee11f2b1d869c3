//! Three cascade cores over an in-memory network on virtual time: a publisher's tracks
//! reach the other nodes' listings, and subscriptions turn into link sends on the
//! publisher's node exactly while someone far away wants them.

use super::catalog::{LayerDescriptor, TrackDescriptor, global_track_id};
use super::core::{Action, Cascade};
use super::trust::LinkTrust;
use sluice_state::{Delivery, Node, NodeConfig, NodeId, NodeIdentity};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

struct Net {
    nodes: Vec<Cascade>,
    addrs: Vec<SocketAddr>,
    now: Duration,
    in_flight: VecDeque<(usize, Delivery, Vec<u8>)>,
    actions: Vec<Vec<Action>>,
}

impl Net {
    fn new(n: usize) -> Self {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)))
            .collect();
        let now = Duration::from_secs(1_000);
        let nodes = (0..n)
            .map(|i| {
                let identity = NodeIdentity::new(
                    NodeId(i as u64 + 1),
                    &format!("region-{i}"),
                    SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16)),
                    addrs[i],
                    100,
                );
                let mut cfg = NodeConfig::new(identity, Box::new(LinkTrust));
                cfg.seeds = vec![addrs[0]];
                Cascade::new(Node::new(cfg, now))
            })
            .collect();
        Self {
            nodes,
            addrs,
            now,
            in_flight: VecDeque::new(),
            actions: vec![Vec::new(); n],
        }
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = node.poll_transmit() {
                    if let Some(to) = self.addrs.iter().position(|a| *a == t.to) {
                        self.in_flight.push_back((to, t.delivery, t.data));
                    }
                }
                while let Some(a) = node.poll_action() {
                    self.actions[i].push(a);
                }
            }
            let Some((to, delivery, data)) = self.in_flight.pop_front() else {
                return;
            };
            match delivery {
                Delivery::Datagram => self.nodes[to].handle_datagram(self.now, &data),
                Delivery::Stream => self.nodes[to].handle_stream(self.now, &data),
            }
        }
        panic!("network never went quiet");
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for node in &mut self.nodes {
                if node.poll_timeout().is_some_and(|t| t <= self.now) {
                    node.handle_timeout(self.now);
                }
            }
            self.pump();
        }
    }

    fn take(&mut self, i: usize) -> Vec<Action> {
        std::mem::take(&mut self.actions[i])
    }
}

fn video(id: u64, publisher: &str) -> TrackDescriptor {
    TrackDescriptor {
        id,
        publisher: publisher.into(),
        kind: "video".into(),
        codec: "VP8".into(),
        pt: 96,
        clock: 90_000,
        channels: None,
        fmtp: None,
        fb: vec!["nack".into(), "nack pli".into()],
        rtx_pt: Some(97),
        ext: vec![(4, "urn:ietf:params:rtp-hdrext:sdes:mid".into())],
        layers: ["q", "h", "f"]
            .iter()
            .map(|r| LayerDescriptor {
                rid: Some((*r).into()),
                ssrc: None,
                rtx: None,
            })
            .collect(),
        simulcast: true,
    }
}

fn joined(actions: &[Action]) -> Vec<(String, Vec<u64>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RemotePublisherJoined { publisher, .. } => Some((
                publisher.id.clone(),
                publisher.tracks.iter().map(|t| t.id).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn link_changes(actions: &[Action]) -> Vec<(bool, u64, u64, u8)> {
    let mut v: Vec<_> = actions
        .iter()
        .filter_map(|a| match *a {
            Action::LinkSubscribe { track, node, layer } => Some((true, track, node.0, layer)),
            Action::LinkUnsubscribe { track, node, layer } => Some((false, track, node.0, layer)),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn remote_publishers_are_listed_and_links_follow_far_subscribers() {
    let mut net = Net::new(3);
    net.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(
            net.nodes[i].state().members().len(),
            2,
            "node {i} sees the others"
        );
    }
    let track = global_track_id(1, 1);
    let now = net.now;
    net.nodes[0].publish(now, "room", "alice", &[video(track, "alice")]);
    net.nodes[1].watch(now, "room");
    net.nodes[2].watch(now, "room");
    net.run_for(Duration::from_secs(2));
    for i in [1, 2] {
        assert_eq!(
            joined(&net.take(i)),
            vec![("alice".to_string(), vec![track])],
            "node {i} lists alice"
        );
        let listed = net.nodes[i].remote_publishers("room");
        assert_eq!(listed[0].home, NodeId(1));
        assert_eq!(listed[0].sources().len(), 1);
    }
    assert!(link_changes(&net.take(0)).is_empty(), "nobody wants it yet");

    // Two subscribers on node 2, one on node 3: each layer once per node.
    let now = net.now;
    net.nodes[1].want(now, "room", track, true);
    net.nodes[1].want(now, "room", track, true);
    net.nodes[2].want(now, "room", track, true);
    net.run_for(Duration::from_secs(1));
    let subs = link_changes(&net.take(0));
    let expected: Vec<_> = [2u64, 3]
        .into_iter()
        .flat_map(|n| (0..3u8).map(move |l| (true, track, n, l)))
        .collect();
    assert_eq!(subs, expected);

    // One of node 2's two leaves: nothing changes; the other leaves: node 2's stop.
    let now = net.now;
    net.nodes[1].want(now, "room", track, false);
    net.run_for(Duration::from_secs(1));
    assert!(link_changes(&net.take(0)).is_empty());
    let now = net.now;
    net.nodes[1].want(now, "room", track, false);
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        link_changes(&net.take(0)),
        (0..3u8).map(|l| (false, track, 2, l)).collect::<Vec<_>>()
    );

    // The publisher leaves: listings drop it and node 3's link subscription ends.
    let now = net.now;
    net.nodes[0].unpublish(now, "room", "alice", &[track]);
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        link_changes(&net.take(0)),
        (0..3u8).map(|l| (false, track, 3, l)).collect::<Vec<_>>()
    );
    for i in [1, 2] {
        let left = net
            .take(i)
            .iter()
            .filter(|a| matches!(a, Action::RemotePublisherLeft { .. }))
            .count();
        assert_eq!(left, 1, "node {i} unlists alice");
        assert!(net.nodes[i].remote_publishers("room").is_empty());
    }
}

fn relay_changes(actions: &[Action]) -> Vec<(bool, u64, u64, u64, u8)> {
    let mut v: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::RelayStart {
                room,
                via,
                to,
                track,
                layer,
                descriptor,
            } => {
                assert_eq!(room, "room", "the relay is told the room");
                assert_eq!(
                    descriptor.id, *track,
                    "the relay gets the track's descriptor"
                );
                Some((true, via.0, to.0, *track, *layer))
            }
            Action::RelayStop {
                via,
                to,
                track,
                layer,
                ..
            } => Some((false, via.0, to.0, *track, *layer)),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v
}

/// Path selection routes node 3's copy through node 2: the publisher's node sends each
/// layer to node 2 once (which also serves its own subscriber with it), asks node 2 to
/// pass it on, and stops sending to node 3; back to direct, the reverse. The relay is
/// told to start only with a stream it already receives and to stop before the stream
/// to it stops.
#[test]
fn a_relayed_route_sends_through_the_relay_once_per_link() {
    let mut net = Net::new(3);
    net.run_for(Duration::from_secs(5));
    let track = global_track_id(1, 1);
    let now = net.now;
    net.nodes[0].publish(now, "room", "alice", &[video(track, "alice")]);
    for i in [1, 2] {
        net.nodes[i].watch(now, "room");
    }
    net.run_for(Duration::from_secs(2));
    let now = net.now;
    net.nodes[1].want(now, "room", track, true);
    net.nodes[2].want(now, "room", track, true);
    net.run_for(Duration::from_secs(1));
    let _ = net.take(0);

    net.nodes[0].set_route(NodeId(3), Some(NodeId(2)));
    assert_eq!(net.nodes[0].route(NodeId(3)), Some(NodeId(2)));
    net.pump();
    let actions = net.take(0);
    assert_eq!(
        link_changes(&actions),
        (0..3u8).map(|l| (false, track, 3, l)).collect::<Vec<_>>(),
        "node 2 already gets every layer: only node 3's direct sends stop"
    );
    assert_eq!(
        relay_changes(&actions),
        (0..3u8).map(|l| (true, 2, 3, track, l)).collect::<Vec<_>>()
    );
    // Setting the same route again changes nothing.
    net.nodes[0].set_route(NodeId(3), Some(NodeId(2)));
    net.pump();
    assert!(net.take(0).is_empty());

    net.nodes[0].set_route(NodeId(3), None);
    net.pump();
    let actions = net.take(0);
    assert_eq!(
        link_changes(&actions),
        (0..3u8).map(|l| (true, track, 3, l)).collect::<Vec<_>>()
    );
    assert_eq!(
        relay_changes(&actions),
        (0..3u8)
            .map(|l| (false, 2, 3, track, l))
            .collect::<Vec<_>>()
    );
    // Direct sends resume before the relay is told to stop.
    let first_stop = actions
        .iter()
        .position(|a| matches!(a, Action::RelayStop { .. }))
        .unwrap();
    let last_sub = actions
        .iter()
        .rposition(|a| matches!(a, Action::LinkSubscribe { .. }))
        .unwrap();
    assert!(last_sub < first_stop, "{actions:?}");

    // Relayed, node 2's own subscriber leaving keeps the stream to node 2 for node 3.
    net.nodes[0].set_route(NodeId(3), Some(NodeId(2)));
    net.pump();
    let _ = net.take(0);
    let now = net.now;
    net.nodes[1].want(now, "room", track, false);
    net.run_for(Duration::from_secs(1));
    let actions = net.take(0);
    assert!(link_changes(&actions).is_empty(), "{actions:?}");
    assert!(relay_changes(&actions).is_empty(), "{actions:?}");
}
