//! Arbitrary bytes as room sync / digest messages from a member: rejected or applied,
//! never a panic; automerge input is capped before decoding.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sluice_state::auth::ClusterKey;
use sluice_state::{Authenticator, Node, NodeConfig, NodeId, NodeIdentity};

fuzz_target!(|data: &[u8]| {
    let addr = "127.0.0.1:7000".parse().unwrap();
    let identity = NodeIdentity::new(NodeId(1), "fuzz", addr, addr, 10);
    let key = ClusterKey::new(b"fuzz-cluster-key");
    let mut node = Node::new(
        NodeConfig::new(identity, Box::new(key.clone())),
        Duration::ZERO,
    );
    node.join_room(Duration::ZERO, "room", "local").unwrap();
    let _ = sluice_state::wire::decode(data);
    let _ = sluice_state::room::decode_sync_message(data);
    let mut sealed = data.to_vec();
    key.seal(&mut sealed);
    node.handle_stream(Duration::from_millis(1), &sealed);
    node.handle_datagram(Duration::from_millis(1), &sealed);
    node.handle_timeout(Duration::from_secs(2));
    let _ = node.room("room");
    while node.poll_transmit().is_some() {}
});
