//! `dataplane-bench`: the whole-node media-plane benchmark behind `sluice bench
//! dataplane`. Synthetic SRTP publishers send over loopback to a node's worker;
//! synthetic subscribers receive, check sequence continuity and verify a sample of
//! packets end to end. Every configuration runs twice in one invocation — through the
//! null-forwarder reference (same driver, no SRTP, no routing) and through Sluice's
//! router — and the table compares worker CPU time per egress packet.
//!
//! Usage: `dataplane-bench [--json FILE] [--quick] [options]`; `--help` lists them.

use sluice_bench::dataplane::cpu::{available_cpus, load_average};
use sluice_bench::dataplane::generator::Shape;
use sluice_bench::dataplane::node::{self, NodeOptions};
use sluice_bench::dataplane::report::{Acceptance, ConfigReport, table};
use sluice_bench::dataplane::run::Topology;
use sluice_bench::dataplane::suite::{SuiteConfig, run_suite};
use sluice_dataplane::driver::DriverKind;
use sluice_dataplane::srtp::Profile;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: dataplane-bench [--json FILE] [--quick] [--profile gcm|cm]
    [--sizes 1200,160] [--fanouts 1,4,16] [--shapes batch,paced] [--egress-kpps N]
    [--warmup-ms N] [--window-ms N] [--repeats N] [--verify-every N] [--frame-packets N]
    [--driver auto|uring|mmsg] [--router-feedback on|off] [--worker-cpu N] [--load-cpu N] [--retries N]
    [--quiet-wait-s N] [--random-seq] [--seed N]";

struct Args {
    json: Option<String>,
    suite: SuiteConfig,
    node: NodeOptions,
}

fn list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|x| x.trim().parse().map_err(|_| format!("bad value {x:?}")))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut suite = SuiteConfig::standard(quick);
    let cpus = available_cpus();
    // One worker core for the node (CPU 0), the generator and the sinks on another.
    let pinned = cpus >= 2;
    suite.load_cpu = pinned.then_some(1);
    suite.worker_cpu = pinned.then_some(0);
    let mut node = NodeOptions {
        kind: DriverKind::Auto,
        worker_cpu: pinned.then_some(0),
        router_feedback: true,
    };
    let mut json = None;
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|_| format!("bad number {v:?}"));
        match a.as_str() {
            "--quick" => {}
            "--json" => json = Some(val()?),
            "--profile" => {
                suite.profile = match val()?.as_str() {
                    "gcm" => Profile::AeadAes128Gcm,
                    "cm" => Profile::Aes128CmHmacSha1_80,
                    v => return Err(format!("unknown profile {v}")),
                }
            }
            "--sizes" => suite.sizes = list(&val()?)?,
            "--fanouts" => suite.fanouts = list(&val()?)?,
            "--shapes" => {
                suite.shapes = val()?
                    .split(',')
                    .map(|s| match s {
                        "batch" => Ok(Shape::Batch),
                        "paced" => Ok(Shape::Paced),
                        _ => Err(format!("unknown shape {s}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--egress-kpps" => suite.egress_pps = Some(num(val()?)? as f64 * 1000.0),
            "--warmup-ms" => suite.warmup = Duration::from_millis(num(val()?)?),
            "--window-ms" => suite.window = Duration::from_millis(num(val()?)?),
            "--verify-every" => suite.verify_every = num(val()?)?.max(1) as u32,
            "--frame-packets" => suite.frame_packets = num(val()?)?.max(1) as u32,
            "--seed" => suite.seed = num(val()?)?,
            "--worker-cpu" => node.worker_cpu = Some(num(val()?)? as usize),
            "--router-feedback" => {
                node.router_feedback = match val()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--router-feedback takes on or off, not {v}")),
                }
            }
            "--random-seq" => suite.wrap_within = None,
            "--repeats" => suite.repeats = num(val()?)?.max(1) as u32,
            "--retries" => suite.retries = num(val()?)? as u32,
            "--quiet-wait-s" => suite.quiet_wait = Duration::from_secs(num(val()?)?),
            "--load-cpu" => suite.load_cpu = Some(num(val()?)? as usize),
            "--driver" => {
                node.kind = match val()?.as_str() {
                    "auto" => DriverKind::Auto,
                    "uring" => DriverKind::Uring,
                    "mmsg" => DriverKind::Mmsg,
                    v => return Err(format!("unknown driver {v}")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    suite.worker_cpu = node.worker_cpu;
    Ok(Args { json, suite, node })
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::AeadAes128Gcm => "AEAD_AES_128_GCM",
        Profile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dataplane-bench: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let Args { json, suite, node } = args;
    let load_before = load_average();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    println!(
        "dataplane benchmark: {}, one node worker on CPU {}, generator and sinks on CPU {} ({} CPUs, kernel {kernel})",
        profile_name(suite.profile),
        node.worker_cpu.map_or("any".into(), |c| c.to_string()),
        suite.load_cpu.map_or("any".into(), |c| c.to_string()),
        available_cpus(),
    );
    if node.worker_cpu.is_none() || suite.load_cpu.is_none() {
        println!("warning: fewer than 2 CPUs: node and load generator are not separated");
    }
    if let Some(l) = load_before.filter(|&l| l > 0.5) {
        println!("warning: load average {l:.2} before the run: other work shares these cores");
    }
    println!(
        "each config: {} reference/router pair(s), alternating, median run of each side; {} ms warm-up, {} ms window; frames of {} packets at {} fps per publisher",
        suite.repeats,
        suite.warmup.as_millis(),
        suite.window.as_millis(),
        suite.frame_packets,
        sluice_bench::dataplane::payload::FRAME_RATE,
    );
    println!(
        "router: VP8 track per publisher, subscriptions pinned to its one layer, RTCP feedback {}",
        if node.router_feedback {
            "on (reports, TWCC feedback, REMB at their default intervals)"
        } else {
            "off"
        }
    );
    println!(
        "sinks check every packet's RTP sequence; they decrypt and verify (checksum, publisher sequence, latency) only 1 in {} packets",
        suite.verify_every
    );
    println!(
        "cpu ns/pkt: node worker thread CPU time over the window / packets the sinks received in it\n"
    );
    let driver_used = std::cell::RefCell::new(None::<String>);
    let start = |t: &Topology| {
        let n = node::start(t, &node)?;
        driver_used.borrow_mut().get_or_insert_with(|| n.driver());
        Ok(n)
    };
    let mut progress = |r: &ConfigReport| {
        println!(
            "{:<28} ratio {:.3}  ({:.0} vs {:.0} ns/pkt at {:.0} kpps)  loss {:.3}%  p50 {} µs  p99 {} µs",
            r.label(),
            r.ratio,
            r.cpu_ns_per_egress_packet,
            r.reference_cpu_ns_per_egress_packet,
            r.egress_pps / 1000.0,
            r.loss_ratio * 100.0,
            r.latency_p50_us.map_or("-".into(), |v| format!("{v:.0}")),
            r.latency_p99_us.map_or("-".into(), |v| format!("{v:.0}")),
        );
        if r.waited_for_quiet_s >= 1.0 {
            println!(
                "    (waited {:.0} s for other work to leave the cores)",
                r.waited_for_quiet_s
            );
        }
        if r.pairs.len() > 1 {
            let ratios: Vec<String> = r.pairs.iter().map(|p| format!("{:.3}", p.ratio)).collect();
            println!("    pair ratios: {}", ratios.join(", "));
        }
        if r.attempts as usize > r.pairs.len() {
            println!(
                "    ({} more pair(s) were run: other work disturbed them)",
                r.attempts as usize - r.pairs.len()
            );
        }
        for w in &r.warnings {
            println!("    warning: {w}");
        }
        for e in &r.errors {
            println!("    ERROR: {e}");
        }
    };
    let rows = match run_suite(&suite, &start, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dataplane-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let driver = driver_used.borrow().clone().unwrap_or_default();
    println!("\ndriver: {driver}\n");
    print!("{}", table(&rows));
    println!(
        "(egr kpps: router run's egress; ns/pkt: router; ref: reference; loss, p50, p99: router; \
rloss, rp50, rp99: reference; load: generator-and-sinks thread busy share, worse of the two runs)"
    );
    let acceptance = Acceptance::evaluate(suite.profile == Profile::AeadAes128Gcm, &rows);
    if let Some(a) = &acceptance {
        println!(
            "\nacceptance ({}): ratio {:.3} (limit {}), loss {:.3}% (limit {}%): {}",
            a.config,
            a.ratio,
            a.ratio_limit,
            a.loss_ratio * 100.0,
            a.loss_limit * 100.0,
            if a.pass { "PASS" } else { "FAIL" }
        );
    }
    let errors = rows.iter().any(|r| !r.errors.is_empty());
    if let Some(path) = json {
        let doc = serde_json::json!({
            "benchmark": "dataplane",
            "profile": profile_name(suite.profile),
            "driver": driver,
            "workers": 1,
            "router_feedback": node.router_feedback,
            "worker_cpu": node.worker_cpu,
            "load_cpu": suite.load_cpu,
            "cpus": available_cpus(),
            "kernel": kernel,
            "load_average_before": load_before,
            "warmup_s": suite.warmup.as_secs_f64(),
            "window_s": suite.window.as_secs_f64(),
            "repeats": suite.repeats,
            "frame_packets": suite.frame_packets,
            "frame_rate": sluice_bench::dataplane::payload::FRAME_RATE,
            "verify_every": suite.verify_every,
            "sampling": format!(
                "sinks check the RTP sequence of every packet and decrypt and verify 1 in {} (latency percentiles come from those)",
                suite.verify_every
            ),
            "cpu_measure": "node worker thread CPU time (/proc/self/task/<tid>/schedstat) over the window, per packet the sinks received in the window",
            "acceptance": acceptance,
            "configs": rows,
        });
        let text = serde_json::to_string_pretty(&doc).expect("report serializes");
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("dataplane-bench: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {path}");
    }
    if errors {
        eprintln!("dataplane-bench: sequence or verification errors (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
