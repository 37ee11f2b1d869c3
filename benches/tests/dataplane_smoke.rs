//! End to end through the real driver: a tiny configuration of the dataplane benchmark,
//! through the reference and the router, both load shapes, every packet verified.
//! Correctness only (nothing lost, nothing out of sequence, nothing corrupted); no
//! timing is asserted.

use sluice_bench::dataplane::generator::Shape;
use sluice_bench::dataplane::node::{self, NodeOptions};
use sluice_bench::dataplane::report::ConfigReport;
use sluice_bench::dataplane::run::{RunConfig, RunResult, Target, run};
use sluice_dataplane::srtp::Profile;
use std::time::Duration;

fn config(target: Target, shape: Shape, profile: Profile, packet_size: usize) -> RunConfig {
    RunConfig {
        target,
        profile,
        packet_size,
        fanout: 4,
        publishers: 3,
        shape,
        frame_packets: 8,
        ingress_pps: 2_500.0,
        warmup: Duration::from_millis(100),
        window: Duration::from_millis(500),
        verify_every: 1,
        load_cpu: None,
        worker_cpu: None,
        seed: 7,
    }
}

fn check(r: &RunResult) {
    let what = format!("{:?}", r.target);
    assert!(
        r.expected >= 5_000,
        "{what}: only {} packets expected",
        r.expected
    );
    assert_eq!(r.received, r.expected, "{what}: loss ({:?})", r.node);
    assert_eq!(r.sinks.seq_gaps, 0, "{what}");
    assert_eq!(r.sinks.seq_errors, 0, "{what}");
    assert_eq!(r.sinks.verify_errors, 0, "{what}");
    assert_eq!(
        r.sinks.verified, r.received,
        "{what}: not every packet verified"
    );
    assert!(
        r.latency_samples > 0 && r.latency_p50_us.is_some(),
        "{what}"
    );
    assert_eq!(r.sinks.rtcp_errors, 0, "{what}");
    assert_eq!(r.load.generator.feedback.rtcp_errors, 0, "{what}");
    if r.target == Target::Router {
        // At least the keyframe request each new subscription makes.
        assert!(r.load.generator.feedback.keyframe_requests > 0, "{what}");
    }
    assert!(r.worker_cpu_ns > 0, "{what}: no worker CPU time read");
    // Counters over the window: the node received and sent during it.
    assert!(
        r.node.rx_packets > 0 && r.node.tx_packets > 0,
        "{what}: {:?}",
        r.node
    );
}

#[test]
fn router_and_reference_deliver_everything_in_order() {
    let start = |t: &_| node::start(t, &NodeOptions::default());
    for shape in [Shape::Batch, Shape::Paced] {
        let reference = run(
            &config(Target::Reference, shape, Profile::AeadAes128Gcm, 1200),
            &start,
        )
        .unwrap();
        check(&reference);
        let router = run(
            &config(Target::Router, shape, Profile::AeadAes128Gcm, 1200),
            &start,
        )
        .unwrap();
        check(&router);
        let row = ConfigReport::new(1200, 4, shape, 3, 2_500.0, router, reference);
        assert!(row.errors.is_empty(), "{:?}", row.errors);
        assert!(row.ratio > 0.0);
    }
}

#[test]
fn small_packets_with_aes_cm() {
    let start = |t: &_| node::start(t, &NodeOptions::default());
    let profile = Profile::Aes128CmHmacSha1_80;
    check(&run(&config(Target::Router, Shape::Paced, profile, 160), &start).unwrap());
    check(
        &run(
            &config(Target::Reference, Shape::Batch, profile, 160),
            &start,
        )
        .unwrap(),
    );
}
