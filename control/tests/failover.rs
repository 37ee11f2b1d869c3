//! Failover with real processes: three `sluice node`s (A, B, C) in one cascade, and C
//! is killed with SIGKILL mid-call.
//! - Subscribers on the survivors watching publishers on the survivors (A's on B, B's
//!   on A) see no sequence gap at all.
//! - C's subscriber (watching A's publisher) reconnects to a survivor by itself and hears
//!   A's publisher again within 3 s of the kill; C's publisher republishes on a survivor.
//! - Once SWIM declares C down, the survivors no longer list C's publisher.

mod support;

use sluice_control::client::{
    self, ClientOptions, Publisher, RoamingPublisher, RoamingSubscriber, Subscriber, origin,
};
use sluice_control::cluster::ClusterCa;
use std::time::{Duration, Instant};
use support::{
    alive_members, free_udp_port, spawn_node, subscribe_when_listed, write_cluster_config,
};

const PT_OPUS: u8 = 111;
const ROOM: &str = "failover";

fn audio(s: &Subscriber) -> Option<sluice_control::client::StreamStats> {
    s.stats()
        .streams
        .into_iter()
        .find(|x| x.payload_type == PT_OPUS && x.packets > 0)
}

fn roaming_audio(s: &RoamingSubscriber) -> u64 {
    s.with(|s| audio(s).map_or(0, |a| a.packets)).unwrap_or(0)
}

async fn send(publishers: &mut [&mut Publisher], roaming: &mut RoamingPublisher) {
    for p in publishers.iter_mut() {
        p.send_audio(b"voice").await.unwrap();
    }
    // A publisher whose node died may fail a send before it learns so.
    let _ = roaming.send_audio(b"roaming").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_costs_survivors_nothing_and_its_clients_move() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::ephemeral().unwrap();
    ca.save(dir.path()).unwrap();
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        ca.issue(name).unwrap().save(dir.path()).unwrap();
        let seed = (i > 0).then_some(ports[0]);
        let config = write_cluster_config(dir.path(), name, ports[i], seed);
        let (child, url) = spawn_node(&["--config", &config]).await;
        procs.push(child);
        urls.push(url);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for u in &urls {
        while alive_members(u).await < 3 {
            assert!(Instant::now() < deadline, "{u}: the cluster never formed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (a, b, c) = (&urls[0], &urls[1], &urls[2]);
    let opts = ClientOptions::default();
    let mut pa = client::publish(a, ROOM, &opts).await.expect("publish on A");
    let mut pb = client::publish(b, ROOM, &opts).await.expect("publish on B");
    let mut pc = RoamingPublisher::publish(c, ROOM, &opts)
        .await
        .expect("publish on C");
    let sb = subscribe_when_listed(b, ROOM, &pa.id).await;
    let sa = subscribe_when_listed(a, ROOM, &pb.id).await;
    let sc = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match RoamingSubscriber::subscribe(c, ROOM, Some(&pa.id), &opts).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "subscribe on C: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while audio(&sb).is_none_or(|x| x.packets < 20)
        || audio(&sa).is_none_or(|x| x.packets < 20)
        || roaming_audio(&sc) < 20
    {
        assert!(
            Instant::now() < deadline,
            "media never flowed before the kill"
        );
        send(&mut [&mut pa, &mut pb], &mut pc).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // SIGKILL C mid-call; everyone keeps sending.
    let c_publisher = pc.current().id.clone();
    procs[2].start_kill().unwrap();
    let killed = Instant::now();
    let heard_before = roaming_audio(&sc);
    let mut back_after = None;
    while back_after.is_none() || pc.moves() == 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "C's clients never came back: subscriber moves {} errors {:?}, publisher moves {}",
            sc.moves(),
            sc.errors(),
            pc.moves()
        );
        send(&mut [&mut pa, &mut pb], &mut pc).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        if back_after.is_none() && sc.moves() == 1 && roaming_audio(&sc) >= 20 {
            back_after = Some(killed.elapsed());
        }
    }
    let back_after = back_after.unwrap_or_default();
    let moved_to = sc.with(|s| origin(&s.location)).flatten();
    let republished = origin(&pc.current().location);
    eprintln!(
        "C killed: its subscriber heard A again after {back_after:?} (on {moved_to:?}, \
         {heard_before} packets before), its publisher moved to {republished:?}"
    );
    assert!(
        back_after < Duration::from_secs(3),
        "media back {back_after:?} after the kill"
    );
    assert!(moved_to.as_ref().is_some_and(|u| u == a || u == b));
    assert!(republished.as_ref().is_some_and(|u| u == a || u == b));

    // Survivors drop C's old publisher once SWIM declares C down.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = reqwest::get(format!("{a}/rooms/{ROOM}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let ids: Vec<&str> = v["publishers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        // A's, B's and the republished one; C's first session is gone.
        let want = [&pa.id, &pb.id, &pc.current().id].map(String::as_str);
        if !ids.contains(&c_publisher.as_str()) && want.iter().all(|w| ids.contains(w)) {
            eprintln!(
                "A dropped C's publisher {:?} after the kill",
                killed.elapsed()
            );
            break;
        }
        assert!(Instant::now() < deadline, "A still lists {ids:?}");
        send(&mut [&mut pa, &mut pb], &mut pc).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The survivors' call goes on; their streams never missed a packet.
    for _ in 0..150 {
        send(&mut [&mut pa, &mut pb], &mut pc).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, s) in [("B watching A", &sb), ("A watching B", &sa)] {
        let x = audio(s).unwrap();
        assert_eq!(
            (x.gaps, x.missing_now, x.out_of_order, x.duplicates),
            (0, 0, 0, 0),
            "{name}: {x:?}"
        );
        assert!(x.packets > 150, "{name}: {x:?}");
    }
    sc.close().await.unwrap();
    pc.close().await.unwrap();
    sa.close().await.unwrap();
    sb.close().await.unwrap();
    pa.close().await.unwrap();
    pb.close().await.unwrap();
}
