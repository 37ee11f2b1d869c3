//! `sluice status`: the real binary against one node of a three-node cluster shows all
//! three members and that node's links to the other two with their RTT; the rendering of
//! a fixed document; a node that cannot be reached is a clear error and a failing exit.

mod support;

use sluice_control::client::{self, ClientOptions};
use sluice_control::status::render;
use sluice_control::status::view::{Link, Load, Member, MeshLink, Room, Route, Status};
use std::time::{Duration, Instant};
use support::{start_cluster, subscribe_when_listed};

fn sluice_status(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("status")
        .args(args)
        .output()
        .expect("running `sluice status`")
}

async fn get_status(base: &str) -> Option<Status> {
    reqwest::get(format!("{base}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Every member alive with a load report, this node's links to both others up with an
/// RTT, and both others' reported links arrived.
fn formed(s: &Status) -> bool {
    s.members.len() == 3
        && s.members
            .iter()
            .all(|m| m.state == "alive" && m.load.is_some())
        && s.links.len() == 2
        && s.links.iter().all(|l| l.rtt_ms > 0.0)
        && s.mesh.iter().filter(|l| l.from != s.this).count() >= 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_three_node_cluster_shows_every_member_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b", "c"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let publisher = client::publish(&a.base_url(), "hall", &ClientOptions::default())
        .await
        .expect("publish on A");
    let _watcher = subscribe_when_listed(&b.base_url(), "hall", &publisher.id).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let doc = loop {
        let s = get_status(&b.base_url()).await;
        if let Some(s) = s.as_ref().filter(|s| formed(s)) {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "the cluster never formed: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(doc.this, "b");
    let names: Vec<&str> = doc.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let me = &doc.members[1];
    assert!(me.is_self && me.route.is_none());
    assert_eq!(me.http, b.base_url());
    for m in [&doc.members[0], &doc.members[2]] {
        assert_eq!(m.region, format!("r-{}", m.name));
        assert_eq!(m.route, Some(Route::Direct), "{m:?}");
    }
    assert_eq!(doc.members[0].load.as_ref().unwrap().sessions, 1);
    assert_eq!(
        doc.rooms,
        [Room {
            name: "hall".into(),
            publishers: 0,
            subscribers: 1,
            room_publishers: 1
        }]
    );

    // The real CLI, as an operator runs it.
    let out = sluice_status(&["--url", &b.base_url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let section = |name: &str| -> Vec<&str> {
        text.split(&format!("\n{name}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} section in:\n{text}"))
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .lines()
            .skip(1)
            .collect()
    };
    let members = section("MEMBERS");
    assert_eq!(members.len(), 3, "{text}");
    for (line, name) in members.iter().zip(["a ", "b (self) ", "c "]) {
        assert!(line.starts_with(name), "{line:?} in:\n{text}");
        assert!(line.contains(" alive "), "{line:?}");
    }
    let links = section("LINKS");
    assert!(
        links[0].starts_with("b -> a ") && links[1].starts_with("b -> c "),
        "{text}"
    );
    for peer in ["a", "c"] {
        let line = links
            .iter()
            .find(|l| l.starts_with(&format!("b -> {peer} ")))
            .unwrap_or_else(|| panic!("no link b -> {peer} in:\n{text}"));
        let cells: Vec<&str> = line.split("  ").filter(|c| !c.is_empty()).collect();
        let rtt: f64 = cells[1]
            .trim()
            .strip_suffix(" ms")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no RTT in {line:?}"));
        assert!(rtt > 0.0, "{line:?}");
        assert!(
            line.contains(" direct ") && line.ends_with("measured"),
            "{line:?}"
        );
    }
    // The other nodes' links, as they report them: the whole mesh.
    for pair in ["a -> b ", "a -> c ", "c -> a ", "c -> b "] {
        assert!(
            links
                .iter()
                .any(|l| l.starts_with(pair) && l.ends_with("reported")),
            "no {pair} in:\n{text}"
        );
    }
    let rooms = section("ROOMS");
    assert_eq!(rooms.len(), 1, "{text}");
    assert!(rooms[0].starts_with("hall "), "{text}");

    // --json prints the node's document.
    let out = sluice_status(&["--url", &a.base_url(), "--json"]);
    assert!(out.status.success());
    let json: Status = serde_json::from_slice(&out.stdout).expect("--json prints the document");
    assert_eq!(json.this, "a");
    assert_eq!(json.members.len(), 3);
    assert_eq!(json.rooms[0].publishers, 1);
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_cluster_shows_itself_and_its_rooms() {
    let config: sluice_control::config::NodeConfig = toml::from_str(
        "[node]\nid = \"solo\"\nregion = \"lab\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind = \"127.0.0.1:0\"\nworkers = 1\n",
    )
    .unwrap();
    let node = sluice_control::node::Node::start(config).await.unwrap();
    let _publisher = client::publish(&node.base_url(), "lab-room", &ClientOptions::default())
        .await
        .expect("publish");
    let doc = get_status(&node.base_url()).await.expect("GET /status");
    assert_eq!(doc.this, "solo");
    assert_eq!(doc.members.len(), 1);
    let me = &doc.members[0];
    assert!(me.is_self && me.number.is_none() && me.route.is_none());
    assert_eq!((me.name.as_str(), me.region.as_str()), ("solo", "lab"));
    assert_eq!(
        me.load.as_ref().map(|l| (l.sessions, l.draining)),
        Some((1, false))
    );
    assert!(doc.links.is_empty() && doc.mesh.is_empty());
    assert_eq!(doc.rooms.len(), 1);
    assert_eq!(
        (doc.rooms[0].name.as_str(), doc.rooms[0].publishers),
        ("lab-room", 1)
    );
}

#[test]
fn an_unreachable_node_is_a_clear_error() {
    // A port nobody listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let out = sluice_status(&["--url", &format!("http://127.0.0.1:{port}")]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "sluice status: cannot reach the node at http://127.0.0.1:{port}/status"
        )),
        "{err}"
    );
}

fn fixed() -> Status {
    let member = |name: &str, state: &str, load: Option<Load>, route: Option<Route>| Member {
        name: name.into(),
        number: Some(u64::from(name.as_bytes()[0])),
        region: format!("eu-{name}"),
        state: state.into(),
        http: format!("http://{name}.example:8080"),
        is_self: name == "a",
        load,
        route,
    };
    Status {
        this: "a".into(),
        members: vec![
            member(
                "a",
                "alive",
                Some(Load {
                    sessions: 12,
                    cpu_permille: Some(253),
                    draining: false,
                    age_ms: None,
                }),
                None,
            ),
            member(
                "b",
                "alive",
                Some(Load {
                    sessions: 3,
                    cpu_permille: Some(7),
                    draining: true,
                    age_ms: Some(400),
                }),
                Some(Route::Direct),
            ),
            member("c", "suspect", None, Some(Route::Via { node: "b".into() })),
        ],
        links: vec![Link {
            peer: "b".into(),
            rtt_ms: 12.5,
            min_rtt_ms: 10.0,
            sent_packets: 1000,
            lost_packets: 15,
            loss_permille: 15,
            cwnd_bytes: 64_000,
            tx_bytes: 1_000_000,
            rx_bytes: 2_000_000,
        }],
        mesh: vec![
            MeshLink {
                from: "a".into(),
                to: "b".into(),
                rtt_ms: 12,
                loss_permille: 15,
            },
            MeshLink {
                from: "b".into(),
                to: "c".into(),
                rtt_ms: 140,
                loss_permille: 0,
            },
        ],
        rooms: vec![Room {
            name: "town-hall".into(),
            publishers: 2,
            subscribers: 10,
            room_publishers: 3,
        }],
    }
}

#[test]
fn rendering_a_fixed_document() {
    let expected = "\
node a: 3 members, 2 alive

MEMBERS
NAME      REGION  STATE    SESSIONS  CPU    DRAINING  HTTP
a (self)  eu-a    alive    12        25.3%  no        http://a.example:8080
b         eu-b    alive    3         0.7%   yes       http://b.example:8080
c         eu-c    suspect  -         -      -         http://c.example:8080

LINKS
LINK    RTT       MIN RTT   LOSS  ROUTE   SOURCE
a -> b  12.50 ms  10.00 ms  1.5%  direct  measured
a -> c  -         -         -     via b   no link
b -> c  140 ms    -         0.0%  -       reported

ROOMS
ROOM       PUBLISHERS  SUBSCRIBERS  ROOM PUBLISHERS
town-hall  2           10           3
";
    assert_eq!(render(&fixed()), expected);
}

#[test]
fn an_empty_cluster_view_renders_none() {
    let mut s = fixed();
    s.members.truncate(1);
    s.links.clear();
    s.mesh.clear();
    s.rooms.clear();
    let text = render(&s);
    assert!(text.starts_with("node a: 1 member, 1 alive\n"), "{text}");
    assert!(
        text.contains("\nLINKS\n(none)\n\nROOMS\n(none)\n"),
        "{text}"
    );
}
