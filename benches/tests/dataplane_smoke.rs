//! End to end through the real driver: a tiny configuration of the dataplane benchmark,
//! through the reference and the router, both load shapes, both SRTP profiles, every
//! RTP sequence crossing its 16-bit wrap (an SRTP rollover). Correctness only (nothing
//! lost, nothing out of sequence, nothing corrupted); no timing is asserted.

use sluice_bench::dataplane::generator::Shape;
use sluice_bench::dataplane::node::{self, NodeOptions};
use sluice_bench::dataplane::report::ConfigReport;
use sluice_bench::dataplane::run::{RunConfig, RunResult, Target, Topology, run};
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
        // Each publisher sends over 1,000 packets: every sequence wraps.
        wrap_within: Some(300),
        seed: 7,
    }
}

fn check(r: &RunResult, verify_every: u32) {
    let what = format!("{:?}", r.target);
    assert!(r.expected >= 5_000, "{what}: {} expected", r.expected);
    assert_eq!(r.received, r.expected, "{what}: loss ({:?})", r.node_drops);
    assert_eq!(r.sinks.seq_gaps, 0, "{what}");
    assert_eq!(r.sinks.seq_errors, 0, "{what}");
    assert_eq!(r.sinks.verify_errors, 0, "{what}: {:?}", r.sinks);
    // Sampling verifies the first packet of each sink and then one in `verify_every`
    // (counted here from the end of priming, so give or take one per sink).
    assert!(
        r.sinks.verified >= r.received / u64::from(verify_every) - 12,
        "{what}: {:?}",
        r.sinks
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

fn start(t: &Topology) -> std::io::Result<Box<dyn sluice_bench::dataplane::run::Node>> {
    node::start(t, &NodeOptions::default())
}

#[test]
fn router_and_reference_deliver_everything_in_order() {
    for shape in [Shape::Batch, Shape::Paced] {
        let cfg = config(Target::Reference, shape, Profile::AeadAes128Gcm, 1200);
        let reference = run(&cfg, &start).unwrap();
        check(&reference, 1);
        let cfg = config(Target::Router, shape, Profile::AeadAes128Gcm, 1200);
        let router = run(&cfg, &start).unwrap();
        check(&router, 1);
        let row = ConfigReport::new(1200, 4, shape, 3, 2_500.0, router, reference);
        assert!(row.errors.is_empty(), "{:?}", row.errors);
        assert!(row.ratio > 0.0);
    }
}

/// AES-CM, small packets, and sinks verifying a sample (as throughput runs do): the
/// sampled SRTP contexts must still follow each stream across its wrap.
#[test]
fn small_packets_with_aes_cm_and_sampled_verification() {
    let profile = Profile::Aes128CmHmacSha1_80;
    for target in [Target::Router, Target::Reference] {
        let mut cfg = config(target, Shape::Paced, profile, 160);
        cfg.verify_every = 16;
        check(&run(&cfg, &start).unwrap(), 16);
    }
}
