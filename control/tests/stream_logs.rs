//! Logs that can be followed across nodes, with real processes: two `sluice node`s in
//! one cluster log JSON; a publisher on A is watched by a subscriber on B. Searching both
//! logs for one stream id (from A's "stream published" line) finds, each line with the
//! room: A publishing it, A sending it over the link to B, B installing it as a remote
//! track, B giving it to the subscriber, and then each side's end of it. Every line that
//! names a stream or a session in either log carries the room, and every line its node.

mod support;

use serde_json::Value;
use sluice_control::cascade::catalog::track_home;
use sluice_control::cascade::handle::node_number;
use sluice_control::client::{self, ClientOptions, Subscriber};
use sluice_control::cluster::ClusterCa;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{
    alive_members, free_udp_port, spawn_node_with, subscribe_when_listed, write_cluster_config,
};

const ROOM: &str = "logs-room";
const PT_OPUS: u8 = 111;

/// Runs `sluice node --config <config> --log-format json`, its stderr (the log) into
/// `log`; returns it with the base URL it prints.
async fn spawn_logged(config: &str, log: &Path) -> (tokio::process::Child, String) {
    let file = std::fs::File::create(log).unwrap();
    let args = [
        "--config",
        config,
        "--log-format",
        "json",
        "--log-level",
        "info",
    ];
    spawn_node_with(&args, file.into()).await
}

/// Every JSON line of a node's log so far (a line being written may be cut: skipped).
fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What an operator's search for `id` over one node's log finds: the lines naming it.
fn search<'a>(log: &'a [Value], id: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|l| {
            l["stream"] == id
                || l["streams"]
                    .as_str()
                    .is_some_and(|s| s.split(',').any(|x| x == id))
        })
        .collect()
}

fn has(found: &[&Value], message: &str, check: impl Fn(&Value) -> bool) -> bool {
    found
        .iter()
        .any(|l| l["message"] == message && l["room"] == ROOM && check(l))
}

fn audio_packets(s: &Subscriber) -> u64 {
    s.stats()
        .streams
        .iter()
        .find(|x| x.payload_type == PT_OPUS)
        .map_or(0, |x| x.packets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_search_follows_a_stream_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::ephemeral().unwrap();
    ca.save(dir.path()).unwrap();
    let ports = [free_udp_port(), free_udp_port()];
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        ca.issue(name).unwrap().save(dir.path()).unwrap();
        let seed = (i > 0).then_some(ports[0]);
        let config = write_cluster_config(dir.path(), name, ports[i], seed);
        let (child, url) = spawn_logged(&config, &logs[i]).await;
        procs.push(child);
        urls.push(url);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for u in &urls {
        while alive_members(u).await < 2 {
            assert!(Instant::now() < deadline, "{u}: the cluster never formed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (a, b) = (&urls[0], &urls[1]);

    let mut publisher = client::publish(a, ROOM, &ClientOptions::default())
        .await
        .expect("publish on A");
    let subscriber = subscribe_when_listed(b, ROOM, &publisher.id).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while audio_packets(&subscriber) < 10 {
        assert!(Instant::now() < deadline, "no media reached B's subscriber");
        publisher.send_audio(b"voice").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The stream ids, as an operator finds them: A's "stream published" lines.
    let a_log = read_log(&logs[0]);
    let published: Vec<&Value> = a_log
        .iter()
        .filter(|l| l["message"] == "stream published" && l["publisher"] == publisher.id.as_str())
        .collect();
    assert_eq!(
        published.len(),
        2,
        "one line per track (audio, video): {published:#?}"
    );
    let ids: Vec<String> = published
        .iter()
        .map(|l| l["stream"].as_str().expect("a stream id").to_owned())
        .collect();
    for id in &ids {
        assert!(
            id.len() == 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "stream ids are 16 hex digits: {id}"
        );
        let number = u64::from_str_radix(id, 16).unwrap();
        assert_eq!(track_home(number), node_number("a"), "minted by A: {id}");
    }
    // The ids `GET /rooms` gives, on both nodes, are the ones the logs use.
    for base in [a, b] {
        let listing: Value = reqwest::get(format!("{base}/rooms/{ROOM}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut listed: Vec<String> = listing["publishers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == publisher.id.as_str()))
            .and_then(|p| p["tracks"].as_array())
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        listed.sort();
        let mut logged = ids.clone();
        logged.sort();
        assert_eq!(listed, logged, "{base}: {listing}");
    }

    // Each side's end of it, once the clients leave.
    let pid = publisher.id.clone();
    // `session` is the resource id: the last segment of the client's resource URL.
    let resource = |url: &str| url.rsplit('/').next().unwrap_or_default().to_owned();
    let (a_session, b_session) = (
        resource(&publisher.location),
        resource(&subscriber.location),
    );
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (a_log, b_log) = loop {
        let (a_log, b_log) = (read_log(&logs[0]), read_log(&logs[1]));
        let done = ids.iter().all(|id| {
            has(&search(&a_log, id), "stream unpublished", |_| true)
                && has(&search(&b_log, id), "stream unsubscribed", |_| true)
                && has(
                    &search(&a_log, id),
                    "stream no longer sent over link",
                    |_| true,
                )
        });
        if done || Instant::now() > deadline {
            break (a_log, b_log);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for p in &mut procs {
        let _ = p.start_kill();
    }

    for id in &ids {
        let on_a = search(&a_log, id);
        let on_b = search(&b_log, id);
        let trail = || format!("A: {on_a:#?}\nB: {on_b:#?}");
        assert!(
            has(&on_a, "stream published", |l| l["publisher"] == pid
                && l["session"] == a_session),
            "A published {id}: {}",
            trail()
        );
        assert!(
            has(&on_a, "stream sent over link", |l| l["to"] == "b"),
            "A sent {id} over the link to B: {}",
            trail()
        );
        assert!(
            has(&on_b, "stream wanted from its home node", |l| l["home"]
                == "a"),
            "B asked A for {id}: {}",
            trail()
        );
        assert!(
            has(&on_b, "remote stream installed", |l| l["home"] == "a"
                && l["publisher"] == pid),
            "B installed {id} as a remote track: {}",
            trail()
        );
        assert!(
            has(&on_b, "stream subscribed", |l| l["remote"] == true
                && l["publisher"] == pid
                && l["session"] == b_session),
            "B gave {id} to its subscriber: {}",
            trail()
        );
        assert!(
            has(&on_b, "stream unsubscribed", |l| l["session"] == b_session),
            "B's subscriber left {id}: {}",
            trail()
        );
        assert!(
            has(&on_a, "stream no longer sent over link", |l| l["to"] == "b"),
            "A stopped sending {id} to B: {}",
            trail()
        );
        assert!(
            has(&on_a, "stream unpublished", |l| l["session"] == a_session),
            "A's publisher left {id}: {}",
            trail()
        );
    }

    // Merged, the lines still say where they were written; and nothing about a stream
    // or a session goes without its room.
    for (node, log) in [("a", &a_log), ("b", &b_log)] {
        assert!(
            log.iter().all(|l| l["node"] == node),
            "{node}: a line without its node"
        );
        let about: Vec<&Value> = log
            .iter()
            .filter(|l| l.get("stream").is_some() || l.get("session").is_some())
            .collect();
        assert!(about.len() >= 4, "{node}: {about:#?}");
        for l in about {
            assert_eq!(l["room"], ROOM, "{node}: a line without its room: {l}");
        }
    }
}
