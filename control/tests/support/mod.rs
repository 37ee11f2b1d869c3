//! What the node tests share: clusters of in-process nodes and subscribing once a
//! publisher is listed. Each test crate uses part of it.
#![allow(dead_code)]

use sluice_control::client::{self, ClientOptions, Subscriber};
use sluice_control::cluster::ClusterCa;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A cluster member on loopback with one media worker and its certificate in `dir`.
pub fn cluster_node_config(dir: &Path, name: &str, seeds: &[SocketAddr]) -> NodeConfig {
    cluster_node_config_with(dir, name, &format!("r-{name}"), seeds, "")
}

/// As [`cluster_node_config`], in `region`, with `extra` TOML (whole tables) appended.
pub fn cluster_node_config_with(
    dir: &Path,
    name: &str,
    region: &str,
    seeds: &[SocketAddr],
    extra: &str,
) -> NodeConfig {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "[node]\nid = \"{name}\"\nregion = \"{region}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [cluster]\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\n\
         ca_cert = \"{d}/ca.pem\"\ncert = \"{d}/{name}.pem\"\nkey = \"{d}/{name}.key\"\n{extra}",
        seeds.join(", "),
        d = dir.display()
    );
    toml::from_str(&text).expect("test config parses")
}

/// Nodes `names` with certificates from one ephemeral CA, all seeded from the first;
/// returns once every node sees every other.
pub async fn start_cluster(dir: &Path, names: &[&str]) -> Vec<Node> {
    let nodes: Vec<(&str, String, String)> = names
        .iter()
        .map(|n| (*n, format!("r-{n}"), String::new()))
        .collect();
    start_cluster_with(dir, &nodes).await
}

/// As [`start_cluster`], each node given as (name, region, extra TOML).
pub async fn start_cluster_with(dir: &Path, nodes: &[(&str, String, String)]) -> Vec<Node> {
    let ca = ClusterCa::ephemeral().unwrap();
    ca.save(dir).unwrap();
    for (n, ..) in nodes {
        ca.issue(n).unwrap().save(dir).unwrap();
    }
    let (name, region, extra) = &nodes[0];
    let first = Node::start(cluster_node_config_with(dir, name, region, &[], extra))
        .await
        .expect("the first node starts");
    let seed = first
        .link_addr()
        .expect("a cluster node has a link address");
    let mut started = vec![first];
    for (name, region, extra) in &nodes[1..] {
        started.push(
            Node::start(cluster_node_config_with(dir, name, region, &[seed], extra))
                .await
                .expect("node starts"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while started
        .iter()
        .any(|n| n.cluster_members() < nodes.len() - 1)
    {
        assert!(
            Instant::now() < deadline,
            "membership did not form: {:?}",
            started
                .iter()
                .map(Node::cluster_members)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started
}

/// Subscribes to `publisher`, retrying the 404 a node answers until it lists the
/// publisher (see [`client::subscribe_when_listed`]); panics after 15 s or on another error.
pub async fn subscribe_when_listed_with(
    base: &str,
    room: &str,
    publisher: &str,
    opts: &ClientOptions,
) -> Subscriber {
    client::subscribe_when_listed(base, room, publisher, opts, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("subscribe to {publisher} on {base}: {e}"))
}

pub async fn subscribe_when_listed(base: &str, room: &str, publisher: &str) -> Subscriber {
    subscribe_when_listed_with(base, room, publisher, &ClientOptions::default()).await
}

/// Runs the real `sluice node` with `args` and returns it with the base URL it prints.
pub async fn spawn_node(args: &[&str]) -> (tokio::process::Child, String) {
    spawn_node_with(args, std::process::Stdio::inherit()).await
}

/// As [`spawn_node`], its stderr (the log) going to `stderr`.
pub async fn spawn_node_with(
    args: &[&str],
    stderr: std::process::Stdio,
) -> (tokio::process::Child, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("node")
        .args(args)
        // The node logs at the level its arguments give (a test may read its log).
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stderr(stderr);
    start_node_command(cmd).await
}

/// Runs `cmd` (a `sluice node` command line) with its stdout piped and returns it with
/// the base URL it prints first; panics if it exits before printing one.
pub async fn start_node_command(
    mut cmd: tokio::process::Command,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting `sluice node`");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("`sluice node` prints its URL within 30 s")
        .expect("reading its stdout")
        .expect("`sluice node` printed its URL before exiting (see its log)");
    let url = line
        .strip_prefix("sluice node listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// A free loopback UDP port (for a link address other nodes must know in advance).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// Writes `{name}.toml` in `dir` for the real binary: a cluster member on loopback
/// with its link on `link_port`, seeded from `seed`.
pub fn write_cluster_config(dir: &Path, name: &str, link_port: u16, seed: Option<u16>) -> String {
    let seeds = seed.map_or(String::new(), |p| format!("\"127.0.0.1:{p}\""));
    let d = dir.display();
    let text = format!(
        "[node]\nid = \"{name}\"\nregion = \"r-{name}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [cluster]\nlisten = \"127.0.0.1:{link_port}\"\nseeds = [{seeds}]\n\
         ca_cert = \"{d}/ca.pem\"\ncert = \"{d}/{name}.pem\"\nkey = \"{d}/{name}.key\"\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Members `GET /cluster` on `base` shows alive (itself included).
pub async fn alive_members(base: &str) -> usize {
    let Ok(resp) = reqwest::get(format!("{base}/cluster")).await else {
        return 0;
    };
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    v["members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["state"] == "alive").count())
}
