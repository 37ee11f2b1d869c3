//! Arbitrary bytes as a membership datagram (authenticated or not): rejected or
//! applied, never a panic, memory bounded by the input.
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
    // Unauthenticated: must be dropped by the auth layer.
    node.handle_datagram(Duration::from_millis(1), data);
    // Authenticated: exercises the envelope, foca and load-report decoding.
    let mut sealed = data.to_vec();
    key.seal(&mut sealed);
    node.handle_datagram(Duration::from_millis(2), &sealed);
    node.handle_timeout(Duration::from_millis(500));
    while node.poll_transmit().is_some() {}
    let _ = sluice_state::load::decode_report(data);
});
