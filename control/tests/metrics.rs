//! `GET /metrics` during a real session, parsed with a Prometheus text-format parser:
//! two cluster nodes, a publisher on A with subscribers on A and B. The counters move as
//! packets flow, the gauges describe the session, the call-quality histograms fill from
//! the subscribers' receiver reports, and forged packets land under their drop reasons.
//! Every metric the Grafana dashboard queries exists in the scrape.

mod support;

use prometheus_parse::{Scrape, Value};
use sluice_control::client::{self, ClientOptions, Publisher, Subscriber};
use std::collections::HashSet;
use std::time::Duration;
use support::{start_cluster, subscribe_when_listed};

const PT_OPUS: u8 = 111;
const PT_VP8: u8 = 96;

struct Metrics(Scrape);

impl Metrics {
    async fn scrape(base: &str) -> Self {
        let resp = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = resp.text().await.unwrap();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Self(Scrape::parse(lines).expect("the scrape parses as Prometheus text"))
    }

    /// The sum of `name`'s samples whose labels include `labels`; panics if none does.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(_) | Value::Summary(_) => panic!("{name} is not a number"),
            })
            .collect();
        assert!(!matching.is_empty(), "no sample of {name} with {labels:?}");
        matching.iter().sum()
    }

    /// Observations in histogram `name` (its +Inf bucket).
    fn observations(&self, name: &str) -> f64 {
        self.0
            .samples
            .iter()
            .find(|s| s.metric == name)
            .and_then(|s| match &s.value {
                Value::Histogram(buckets) => buckets.last().map(|b| b.count),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no histogram {name}"))
    }

    /// Every series name a query may use: histograms with their suffixes.
    fn names(&self) -> HashSet<String> {
        let mut names = HashSet::new();
        for s in &self.0.samples {
            if let Value::Histogram(_) = s.value {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{}{suffix}", s.metric));
                }
            }
            names.insert(s.metric.clone());
        }
        names
    }
}

fn ssrc_of(sub: &Subscriber, pt: u8) -> Option<u32> {
    sub.stats()
        .streams
        .iter()
        .find(|s| s.payload_type == pt && s.packets > 0)
        .map(|s| s.ssrc)
}

async fn send_round(publisher: &mut Publisher, round: u32) {
    publisher.send_audio(b"metrics").await.unwrap();
    publisher
        .send_video(0, b"metrics", round.is_multiple_of(10))
        .await
        .unwrap();
}

/// An RTP header with the publisher's SSRC and a tag that cannot authenticate.
fn forged_srtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, PT_OPUS];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&12_345u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x5a; 40]);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_a_session_and_count_injected_bad_packets() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let base = a.base_url();
    let mut publisher = client::publish(&base, "metrics", &ClientOptions::default())
        .await
        .expect("publish on A");
    let near = subscribe_when_listed(&base, "metrics", &publisher.id).await;
    let far = subscribe_when_listed(&b.base_url(), "metrics", &publisher.id).await;
    let mut round = 0;
    while [&near, &far]
        .iter()
        .any(|s| ssrc_of(s, PT_OPUS).is_none() || ssrc_of(s, PT_VP8).is_none())
    {
        assert!(round < 1500, "no media reached both subscribers");
        send_round(&mut publisher, round).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let before = Metrics::scrape(&base).await;
    // 3 s of media: the node sends sender reports every second and the subscribers echo
    // them in their receiver reports, so round trips get measured too.
    const ROUNDS: u32 = 150;
    for _ in 0..ROUNDS {
        send_round(&mut publisher, round).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Forged packets on the publisher's audio stream: ahead of it they fail
    // authentication; further behind than the replay window (128) they are refused as
    // replays before any crypto.
    let ssrc = publisher.audio_ssrc().unwrap();
    let next_seq = publisher
        .stats()
        .streams
        .iter()
        .find(|s| s.ssrc == ssrc)
        .map(|s| s.next_seq)
        .unwrap();
    const FORGED: u64 = 5;
    const REPLAYED: u64 = 4;
    for i in 0..FORGED {
        let seq = next_seq.wrapping_add(10 + i as u16);
        publisher.send_raw(&forged_srtp(ssrc, seq)).await.unwrap();
    }
    for i in 0..REPLAYED {
        let seq = next_seq.wrapping_sub(150 + i as u16);
        publisher.send_raw(&forged_srtp(ssrc, seq)).await.unwrap();
    }
    const STRANGERS: u64 = 3;
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..STRANGERS {
        stranger
            .send_to(&forged_srtp(0xdead_beef, i as u16), a.media_addr())
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = Metrics::scrape(&base).await;
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    // Packets and bytes through the workers; RTP in from the publisher, out to the
    // subscriber here.
    let sent = f64::from(ROUNDS * 2);
    for dir in ["rx", "tx"] {
        assert!(
            moved("sluice_worker_packets_total", &[("direction", dir)]) >= sent,
            "{dir}"
        );
        assert!(moved("sluice_worker_bytes_total", &[("direction", dir)]) >= sent * 20.0);
    }
    assert!(moved("sluice_rtp_packets_total", &[("direction", "in")]) >= sent);
    assert!(moved("sluice_rtp_packets_total", &[("direction", "out")]) >= sent);
    assert!(moved("sluice_rtcp_packets_total", &[("direction", "in")]) > 0.0);
    assert!(after.sum("sluice_worker_cpu_seconds_total", &[]) > 0.0);
    assert!(after.sum("sluice_process_cpu_seconds_total", &[]) > 0.0);
    assert_eq!(after.sum("sluice_worker_up", &[]), 1.0);

    // Each injected packet under its reason, and nothing else dropped meanwhile.
    let drops: Vec<(String, f64)> = after
        .0
        .samples
        .iter()
        .filter(|s| s.metric == "sluice_drops_total")
        .filter_map(|s| {
            let reason = s.labels.get("reason")?;
            let d = moved("sluice_drops_total", &[("reason", reason)]);
            (d != 0.0).then(|| (reason.to_owned(), d))
        })
        .collect();
    assert_eq!(
        moved("sluice_drops_total", &[("reason", "srtp_auth")]),
        FORGED as f64,
        "{drops:?}"
    );
    assert_eq!(
        moved("sluice_drops_total", &[("reason", "replay")]),
        REPLAYED as f64
    );
    assert_eq!(
        moved("sluice_drops_total", &[("reason", "unknown_session")]),
        STRANGERS as f64
    );
    assert_eq!(
        moved("sluice_drops_total", &[]),
        (FORGED + REPLAYED + STRANGERS) as f64,
        "other drops during a clean session: {drops:?}"
    );

    // The session as gauges.
    let connected = |role| after.sum("sluice_sessions", &[("role", role), ("state", "connected")]);
    assert_eq!(
        (connected("publisher"), connected("subscriber")),
        (1.0, 1.0)
    );
    assert_eq!(after.sum("sluice_tracks", &[]), 2.0);
    assert_eq!(after.sum("sluice_subscriptions", &[]), 2.0);
    assert_eq!(after.sum("sluice_rooms", &[]), 1.0);
    assert_eq!(after.sum("sluice_ready", &[]), 1.0);
    assert_eq!(after.sum("sluice_draining", &[]), 0.0);

    // Call quality from the near subscriber's reports: loss blocks every report, round
    // trips once a report echoes a sender report.
    assert!(
        after.observations("sluice_call_loss_ratio")
            > before.observations("sluice_call_loss_ratio")
    );
    assert!(after.observations("sluice_call_rtt_seconds") > 0.0);
    assert!(after.observations("sluice_call_jitter_seconds") > 0.0);

    // The link to B carried the far subscriber's media.
    assert!(after.sum("sluice_link_rtt_seconds", &[("peer", "b")]) > 0.0);
    assert!(after.sum("sluice_link_cwnd_bytes", &[("peer", "b")]) > 0.0);
    assert!(
        moved(
            "sluice_link_bytes_total",
            &[("peer", "b"), ("direction", "tx")]
        ) > 0.0
    );
    assert!(moved("sluice_cascade_packets_total", &[("direction", "out")]) >= sent);
    assert!(moved("sluice_link_datagrams_total", &[("direction", "out")]) >= sent);
    assert_eq!(after.sum("sluice_route_relayed", &[("peer", "b")]), 0.0);

    // Membership, gossip and placement.
    assert_eq!(after.sum("sluice_members", &[("state", "alive")]), 1.0);
    assert_eq!(after.sum("sluice_member_downs_total", &[]), 0.0);
    assert!(moved("sluice_gossip_bytes_total", &[("direction", "in")]) > 0.0);
    assert!(moved("sluice_gossip_bytes_total", &[("direction", "out")]) > 0.0);
    assert!(after.sum("sluice_gossip_report_age_seconds", &[("peer", "b")]) < 30.0);
    assert!(after.sum("sluice_placement_decisions_total", &[("outcome", "here")]) >= 2.0);
    for component in ["proximity", "load", "reliability", "cost", "total"] {
        after.sum(
            "sluice_placement_score",
            &[("node", "a"), ("component", component)],
        );
        after.sum(
            "sluice_placement_score",
            &[("node", "b"), ("component", component)],
        );
    }

    // Every series the dashboard queries exists.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/sluice.json"
    ))
    .expect("the Grafana dashboard");
    let names = after.names();
    let mut queried = 0;
    for (i, _) in dashboard.match_indices("sluice_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        queried += 1;
        assert!(
            names.contains(&name),
            "the dashboard queries {name}, which /metrics lacks"
        );
    }
    assert!(queried > 20, "the dashboard queries only {queried} series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_follow_a_drain() {
    let text = "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\nworkers = 2\n";
    let node = sluice_control::node::Node::start(toml::from_str(text).unwrap())
        .await
        .expect("node starts");
    let base = node.base_url();
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let resp = reqwest::get(url).await.expect("GET");
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["workers_up"], 2);
    assert_eq!(ready["reasons"], serde_json::json!([]));

    node.drain(Some(Duration::from_secs(30)));
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["reasons"], serde_json::json!(["draining"]));
    assert_eq!(Metrics::scrape(&base).await.sum("sluice_ready", &[]), 0.0);
    assert_eq!(get("/healthz").await.0, 200, "a draining node is alive");

    node.cancel_drain();
    assert_eq!(get("/readyz").await.0, 200);
    node.shutdown().await;
}
