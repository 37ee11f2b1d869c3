use super::*;

fn node(id: &str, region: &str) -> Candidate {
    Candidate {
        id: id.to_owned(),
        region: region.to_owned(),
        http: format!("http://{id}"),
        sessions: 0,
        capacity: 100,
        cpu_permille: 0,
        suspect: false,
        draining: false,
        failures: 0,
    }
}

/// Three regions with a synthetic matrix: eu-us 80 ms, us-ap 120 ms, eu-ap 200 ms.
fn world() -> (PlacementSection, Vec<Candidate>) {
    let toml = "[rtt_ms]\neu = { us = 80, ap = 200 }\nus = { ap = 120 }\n";
    let config: PlacementSection = toml::from_str(toml).unwrap();
    let nodes = vec![node("eu1", "eu"), node("us1", "us"), node("ap1", "ap")];
    (config, nodes)
}

fn order(scores: &[Score]) -> Vec<&str> {
    scores.iter().map(|s| s.node.as_str()).collect()
}

#[test]
fn the_nearest_node_wins_and_the_next_best_takes_over_when_it_is_full() {
    let (config, mut nodes) = world();
    assert_eq!(
        order(&rank(&config, Some("us"), &nodes, &[])),
        ["us1", "eu1", "ap1"]
    );
    assert_eq!(
        order(&rank(&config, Some("ap"), &nodes, &[])),
        ["ap1", "us1", "eu1"]
    );
    nodes[1].sessions = 100;
    let ranked = rank(&config, Some("us"), &nodes, &[]);
    assert_eq!(
        order(&ranked),
        ["eu1", "ap1"],
        "full nodes are never chosen"
    );
    // The components are there to read.
    let eu = &ranked[0];
    assert_eq!((eu.rtt_ms, eu.proximity, eu.load), (Some(80), 266, 0));
}

#[test]
fn a_post_is_redirected_only_when_another_node_is_clearly_better() {
    let (config, mut nodes) = world();
    let d =
        |nodes: &[Candidate], region, placed| decide(&config, "eu1", region, placed, nodes, &[]);
    match d(&nodes, Some("us"), false) {
        Decision::Redirect(s) => {
            assert_eq!((s.node.as_str(), s.http.as_str()), ("us1", "http://us1"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d(&nodes, Some("eu"), false), Decision::Here);
    // No hint, or already placed by another node: kept.
    assert_eq!(d(&nodes, None, false), Decision::Here);
    assert_eq!(d(&nodes, Some("us"), true), Decision::Here);
    // This node is full: even an unhinted client goes elsewhere.
    nodes[0].sessions = 100;
    assert!(matches!(d(&nodes, None, true), Decision::Redirect(_)));
    for n in &mut nodes {
        n.sessions = 100;
    }
    assert_eq!(d(&nodes, Some("us"), false), Decision::Full);
}

#[test]
fn load_reliability_and_cost_move_the_choice_within_a_region() {
    let (mut config, _) = world();
    let mut a = node("us-a", "us");
    let mut b = node("us-b", "us");
    let tie = rank(&config, Some("us"), &[a.clone(), b.clone()], &[]);
    assert_eq!(order(&tie), ["us-a", "us-b"], "ties break by id");
    a.cpu_permille = 900;
    assert_eq!(
        order(&rank(&config, Some("us"), &[a.clone(), b.clone()], &[])),
        ["us-b", "us-a"]
    );
    a.cpu_permille = 0;
    b.failures = 2;
    assert_eq!(
        order(&rank(&config, Some("us"), &[a.clone(), b.clone()], &[])),
        ["us-a", "us-b"]
    );
    b.failures = 0;
    a.suspect = true;
    assert_eq!(
        order(&rank(&config, Some("us"), &[a.clone(), b.clone()], &[])),
        ["us-b", "us-a"]
    );
    a.suspect = false;
    b.draining = true;
    assert_eq!(
        order(&rank(&config, Some("us"), &[a.clone(), b.clone()], &[])),
        ["us-a"]
    );
    b.draining = false;
    // A pricey region loses a near tie, not a clear proximity win.
    config.region_cost.insert("us".into(), 1000);
    let eu = node("eu1", "eu");
    let from_us = rank(&config, Some("us"), &[a.clone(), eu.clone()], &[]);
    assert_eq!(order(&from_us), ["us-a", "eu1"]);
    config.weights.cost = 200;
    let from_us = rank(&config, Some("us"), &[a, eu], &[]);
    assert_eq!(order(&from_us), ["eu1", "us-a"]);
}

#[test]
fn measured_link_rtts_fill_the_pairs_nobody_pinned() {
    let config = PlacementSection::default();
    let measured = [
        MeasuredRtt {
            a: "eu".into(),
            b: "us".into(),
            rtt_ms: 90,
        },
        MeasuredRtt {
            a: "us".into(),
            b: "eu".into(),
            rtt_ms: 85,
        },
    ];
    assert_eq!(region_rtt(&config, &measured, "eu", "us"), Some(85));
    assert_eq!(region_rtt(&config, &measured, "us", "us"), Some(0));
    assert_eq!(region_rtt(&config, &measured, "eu", "ap"), None);
    let nodes = [node("eu1", "eu"), node("ap1", "ap")];
    let ranked = rank(&config, Some("us"), &nodes, &measured);
    assert_eq!(order(&ranked), ["eu1", "ap1"]);
    assert_eq!(ranked[1].rtt_ms, Some(UNKNOWN_RTT_MS));
}
