//! What the node tests share: clusters of in-process nodes and subscribing once a
//! publisher is listed. Each test crate uses part of it.
#![allow(dead_code)]

use sluice_control::client::{self, ClientError, ClientOptions, Subscriber};
use sluice_control::cluster::ClusterCa;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A cluster member on loopback with one media worker and its certificate in `dir`.
pub fn cluster_node_config(dir: &Path, name: &str, seeds: &[SocketAddr]) -> NodeConfig {
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

/// Nodes `names` with certificates from one ephemeral CA, all seeded from the first;
/// returns once every node sees every other.
pub async fn start_cluster(dir: &Path, names: &[&str]) -> Vec<Node> {
    let ca = ClusterCa::ephemeral().unwrap();
    ca.save(dir).unwrap();
    for n in names {
        ca.issue(n).unwrap().save(dir).unwrap();
    }
    let first = Node::start(cluster_node_config(dir, names[0], &[]))
        .await
        .expect("the first node starts");
    let seed = first
        .link_addr()
        .expect("a cluster node has a link address");
    let mut nodes = vec![first];
    for n in &names[1..] {
        nodes.push(
            Node::start(cluster_node_config(dir, n, &[seed]))
                .await
                .expect("node starts"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while nodes.iter().any(|n| n.cluster_members() < names.len() - 1) {
        assert!(
            Instant::now() < deadline,
            "membership did not form: {:?}",
            nodes.iter().map(Node::cluster_members).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes
}

/// Subscribes to `publisher`, retrying the 404 a node answers until it lists the
/// publisher: after the publisher's DTLS handshake on its own node, and on a far node
/// once the room's state arrived.
pub async fn subscribe_when_listed_with(
    base: &str,
    room: &str,
    publisher: &str,
    opts: &ClientOptions,
) -> Subscriber {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client::subscribe(base, room, Some(publisher), opts).await {
            Ok(s) => return s,
            Err(ClientError::Http { status: 404, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("subscribe to {publisher} on {base}: {e}"),
        }
    }
}

pub async fn subscribe_when_listed(base: &str, room: &str, publisher: &str) -> Subscriber {
    subscribe_when_listed_with(base, room, publisher, &ClientOptions::default()).await
}
