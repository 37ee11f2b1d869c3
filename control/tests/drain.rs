//! Graceful drain across three nodes: clients connected to the draining node move to
//! other nodes by themselves (the `move` event), the node is empty before its deadline,
//! new POSTs to it are redirected meanwhile, and once the drain is called off it serves
//! again. The real binary exits 0 on SIGTERM and after `sluice drain`.

mod support;

use sluice_control::client::{ClientOptions, RoamingPublisher, RoamingSubscriber, origin};
use std::time::{Duration, Instant};
use support::{alive_members, free_udp_port, spawn_node, start_cluster, write_cluster_config};

const PT_OPUS: u8 = 111;

fn audio_packets(s: &RoamingSubscriber) -> u64 {
    s.with(|s| {
        s.stats()
            .streams
            .iter()
            .filter(|x| x.payload_type == PT_OPUS)
            .map(|x| x.packets)
            .sum()
    })
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_draining_node_move_away_and_it_empties_before_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b", "c"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let opts = ClientOptions::default();
    let mut speaker = RoamingPublisher::publish(&a.base_url(), "drain", &opts)
        .await
        .expect("publish on A");
    let mut guest = RoamingPublisher::publish(&b.base_url(), "drain", &opts)
        .await
        .expect("publish on B");
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(15);
        let w = loop {
            match RoamingSubscriber::subscribe(
                &b.base_url(),
                "drain",
                Some(&speaker.current().id),
                &opts,
            )
            .await
            {
                Ok(w) => break w,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for B to list the publisher: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("subscribe on B: {e}"),
            }
        };
        watchers.push(w);
    }
    assert_eq!(b.peer_count(), 3);
    // Media flows before the drain.
    let deadline = Instant::now() + Duration::from_secs(15);
    while watchers.iter().any(|w| audio_packets(w) < 10) {
        assert!(Instant::now() < deadline, "no audio on B before the drain");
        speaker.send_audio(b"before").await.unwrap();
        guest.send_audio(b"guest").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let status = b.drain(Some(Duration::from_secs(20)));
    assert!(status.draining);
    let target = status.move_to.expect("somewhere to move");
    assert_ne!(target, b.base_url());

    // The clients keep going; they move by themselves.
    let drained_by = Instant::now() + Duration::from_secs(15);
    let before: Vec<u64> = watchers.iter().map(audio_packets).collect();
    loop {
        speaker.send_audio(b"during").await.unwrap();
        guest.send_audio(b"guest").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if b.peer_count() == 0 && watchers.iter().all(|w| w.moves() == 1) {
            break;
        }
        assert!(
            Instant::now() < drained_by,
            "B still has {} sessions; moves {:?}, errors {:?}",
            b.peer_count(),
            watchers
                .iter()
                .map(RoamingSubscriber::moves)
                .collect::<Vec<_>>(),
            watchers
                .iter()
                .map(RoamingSubscriber::errors)
                .collect::<Vec<_>>()
        );
    }
    tokio::time::timeout(Duration::from_secs(2), b.drained())
        .await
        .expect("the drain completes once B is empty");
    assert_eq!((speaker.moves(), guest.moves()), (0, 1));
    assert_ne!(origin(&guest.current().location), Some(b.base_url()));
    // Moved watchers hear the speaker again from their new node.
    let deadline = Instant::now() + Duration::from_secs(15);
    while watchers
        .iter()
        .zip(&before)
        .any(|(w, n)| audio_packets(w) < n + 20)
    {
        assert!(Instant::now() < deadline, "no audio after the move");
        speaker.send_audio(b"after").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in &watchers {
        let on = w.with(|s| origin(&s.location)).flatten();
        assert_ne!(on, Some(b.base_url()));
    }

    // Meanwhile a new POST to B is sent elsewhere...
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = || {
        no_follow
            .post(format!("{}/whip/drain", b.base_url()))
            .header("content-type", "application/sdp")
            .body("v=0\r\n")
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 307);
    // ...until B is returned to service.
    assert!(!b.cancel_drain().draining);
    let back = RoamingPublisher::publish(&b.base_url(), "drain", &opts)
        .await
        .expect("publish on B again");
    assert_eq!(origin(&back.current().location), Some(b.base_url()));

    back.close().await.unwrap();
    for w in watchers {
        w.close().await.unwrap();
    }
    guest.close().await.unwrap();
    speaker.close().await.unwrap();
    for n in nodes {
        n.shutdown().await;
    }
}

/// `sluice node` on free loopback ports, with its base URL.
async fn real_node() -> (tokio::process::Child, String) {
    spawn_node(&[
        "--http-listen",
        "127.0.0.1:0",
        "--media-bind",
        "127.0.0.1:0",
    ])
    .await
}

async fn exit_code(child: &mut tokio::process::Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the node exits")
        .unwrap()
        .code()
}

#[tokio::test]
async fn the_binary_exits_0_after_sigterm_and_after_sluice_drain() {
    let (mut node, _) = real_node().await;
    let pid = node.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        exit_code(&mut node).await,
        Some(0),
        "SIGTERM drains an empty node and exits 0"
    );

    let (mut node, url) = real_node().await;
    // What a reverse proxy on the node's host forwards comes from loopback too; its
    // headers give it away, and the node refuses (common proxies add one of these).
    let http = reqwest::Client::new();
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        for req in [
            http.post(format!("{url}/drain")),
            http.delete(format!("{url}/drain")),
        ] {
            let resp = req.header(header, "203.0.113.9").send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 403, "{header}");
            let body = resp.text().await.unwrap();
            assert!(body.contains("proxy"), "{header}: {body}");
        }
    }
    let status: serde_json::Value = http
        .get(format!("{url}/drain"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["draining"], false, "{status}");
    let drain = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["drain", "--url", &url, "--deadline", "5"])
        .output()
        .await
        .unwrap();
    assert!(drain.status.success(), "{drain:?}");
    let said: serde_json::Value = serde_json::from_slice(&drain.stdout).unwrap();
    assert_eq!(said["draining"], true, "{said}");
    assert_eq!(
        exit_code(&mut node).await,
        Some(0),
        "`sluice drain` ends with exit 0"
    );
}

/// The whole drain with real processes: two `sluice node`s in one cascade, clients
/// connected to the second; `sluice drain` on it moves them all to the first without
/// the test touching them, and the drained process exits 0 well before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_process_with_clients_empties_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let ca = sluice_control::cluster::ClusterCa::ephemeral().unwrap();
    ca.save(dir.path()).unwrap();
    let ports = [free_udp_port(), free_udp_port()];
    let mut nodes = Vec::new();
    for (i, name) in ["one", "two"].into_iter().enumerate() {
        ca.issue(name).unwrap().save(dir.path()).unwrap();
        let seed = (i > 0).then_some(ports[0]);
        let config = write_cluster_config(dir.path(), name, ports[i], seed);
        nodes.push(spawn_node(&["--config", &config]).await);
    }
    let (one, two) = (nodes[0].1.clone(), nodes[1].1.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    for u in [&one, &two] {
        while alive_members(u).await < 2 {
            assert!(Instant::now() < deadline, "{u}: the cluster never formed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let opts = ClientOptions::default();
    let mut speaker = RoamingPublisher::publish(&one, "exit", &opts)
        .await
        .unwrap();
    let mut guest = RoamingPublisher::publish(&two, "exit", &opts)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let watcher = loop {
        match RoamingSubscriber::subscribe(&two, "exit", Some(&speaker.current().id), &opts).await {
            Ok(w) => break w,
            Err(e) => {
                assert!(Instant::now() < deadline, "subscribe on two: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    while audio_packets(&watcher) < 10 {
        assert!(Instant::now() < deadline, "no audio on two");
        speaker.send_audio(b"x").await.unwrap();
        guest.send_audio(b"y").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let drain = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["drain", "--url", &two, "--deadline", "30"])
        .output()
        .await
        .unwrap();
    assert!(drain.status.success(), "{drain:?}");
    let started = Instant::now();
    let (mut process, _) = nodes.pop().unwrap();
    let exited = loop {
        speaker.send_audio(b"x").await.unwrap();
        guest.send_audio(b"y").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Some(status) = process.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "two never exited; moves: watcher {}, guest {}",
            watcher.moves(),
            guest.moves()
        );
    };
    eprintln!(
        "two drained and exited {:?} after `sluice drain`",
        started.elapsed()
    );
    assert_eq!(exited.code(), Some(0));
    assert_eq!((watcher.moves(), guest.moves()), (1, 1));
    let heard = audio_packets(&watcher);
    while audio_packets(&watcher) < heard + 20 {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "no audio on one"
        );
        speaker.send_audio(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        watcher.with(|s| origin(&s.location)).flatten(),
        Some(one.clone())
    );
    watcher.close().await.unwrap();
    guest.close().await.unwrap();
    speaker.close().await.unwrap();
}
