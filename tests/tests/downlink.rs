//! Downlink adaptation with real Chromium: a watcher whose downlink is limited is moved to
//! a lower simulcast layer and keeps decoding; when the limit lifts it goes back up.
//!
//! The watcher Chromium runs in a network namespace of its own, joined to the node by a
//! veth pair; the node listens on the root namespace's end, and the limit is a tbf qdisc
//! on that end's egress (node to watcher only). The publisher Chromium stays in the root
//! namespace, unlimited. tests/browser/downlink.mjs drives both browsers and the qdisc;
//! this side owns the namespace, the node and the router counters.
//!
//! Needs root (network namespaces, tc), iproute2, Chromium and the node modules; a
//! missing piece fails the test with what to install rather than skipping it.

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use sluice_dataplane::router::RouterStats;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

const INSTALL: &str = "run scripts/install-deps.sh";

/// Backstop only: the script times itself out (270 s) and reports why.
const SCRIPT_LIMIT: Duration = Duration::from_secs(330);

/// The watcher's downlink while limited (tc rate syntax): well under the top layer
/// (~0.8 Mbit/s from Chromium's fake camera at 720p), about the middle one (~0.35), over
/// the bottom one (~0.15).
const LIMIT: &str = "400kbit";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("SLUICE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Runs a command to completion; a failure carries its stderr.
fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} (iproute2; {INSTALL})"))?;
    ensure!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn check_prerequisites() -> Result<()> {
    let chromium = chromium();
    ensure!(
        chromium.exists(),
        "browser test dependency missing: Chromium ({}); {INSTALL}",
        chromium.display()
    );
    let node = Command::new("node")
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("browser test dependency missing: node (Node.js); {INSTALL}"))?;
    ensure!(
        node.status.success(),
        "browser test dependency broken: `node --version` exited {}",
        node.status
    );
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    ensure!(
        playwright.exists(),
        "browser test dependency missing: {} (npm ci in tests/browser); {INSTALL}",
        playwright.display()
    );
    sh("tc", &["-V"]).context("the downlink test shapes with tc (iproute2)")?;
    Ok(())
}

/// A network namespace holding one end of a veth pair, the other end in the root
/// namespace with `host` on it. Dropping it deletes both (the qdisc goes with the veth),
/// also when the test panics.
struct Netns {
    name: String,
    host_dev: String,
    host: Ipv4Addr,
}

impl Netns {
    fn create() -> Result<Netns> {
        remove_dead_runs();
        let pid = std::process::id();
        let subnet = free_subnet()?;
        let lab = Netns {
            name: format!("sluice-dl-{pid}"),
            host_dev: format!("sldl{pid}h"),
            host: Ipv4Addr::new(10, 78, subnet, 1),
        };
        let peer_dev = format!("sldl{pid}w");
        let peer = format!("10.78.{subnet}.2/24");
        let host = format!("{}/24", lab.host);
        let (ns, hd) = (lab.name.as_str(), lab.host_dev.as_str());
        sh("ip", &["netns", "add", ns]).context("creating a network namespace (needs root)")?;
        sh(
            "ip",
            &["link", "add", hd, "type", "veth", "peer", "name", &peer_dev],
        )?;
        sh("ip", &["link", "set", &peer_dev, "netns", ns])?;
        sh("ip", &["addr", "add", &host, "dev", hd])?;
        sh("ip", &["link", "set", hd, "up"])?;
        sh("ip", &["-n", ns, "addr", "add", &peer, "dev", &peer_dev])?;
        sh("ip", &["-n", ns, "link", "set", &peer_dev, "up"])?;
        sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        Ok(lab)
    }
}

/// Namespaces (and their veths) left by runs whose process is gone: a test killed
/// before its drop ran.
fn remove_dead_runs() {
    let Ok(list) = sh("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix("sluice-dl-") else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let _ = sh("ip", &["link", "del", &format!("sldl{pid}h")]);
        if let Err(e) = sh("ip", &["netns", "del", name]) {
            eprintln!("removing a dead run's namespace: {e:#}");
        }
    }
}

/// A 10.78.N.0/24 no interface of the root namespace uses (other tests and tools on the
/// machine may have taken some).
fn free_subnet() -> Result<u8> {
    let used = sh("ip", &["-4", "-o", "addr", "show"]).context("listing addresses")?;
    let routes = sh("ip", &["-4", "route", "show"]).context("listing routes")?;
    (0..=255u8)
        .map(|n| n.wrapping_add((std::process::id() % 256) as u8))
        .find(|n| {
            let prefix = format!("10.78.{n}.");
            !used.contains(&prefix) && !routes.contains(&prefix)
        })
        .ok_or_else(|| anyhow!("no free 10.78.N.0/24 subnet for the test's veth"))
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; the namespace goes after.
        for args in [
            vec!["link", "del", self.host_dev.as_str()],
            vec!["netns", "del", self.name.as_str()],
        ] {
            if let Err(e) = sh("ip", &args) {
                eprintln!("cleanup: {e:#}");
            }
        }
    }
}

async fn start_node(host: Ipv4Addr) -> Result<Node> {
    let config: NodeConfig = toml::from_str(&format!(
        "[http]\nlisten = \"{host}:0\"\n[media]\nbind = \"{host}:0\"\nannounce = [\"{host}\"]\n\
         [log]\nlevel = \"warn,dtls=error\"\n"
    ))
    .context("downlink test node config")?;
    config.init_logging();
    Node::start(config).await.context("starting the node")
}

/// The routers' counters summed over workers, once a second, for the failure report and
/// for the assertions on what the node did.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    stats: RouterStats,
}

fn sum(stats: &[RouterStats]) -> RouterStats {
    let mut t = RouterStats::default();
    for s in stats {
        t.rtp_in += s.rtp_in;
        t.rtp_out += s.rtp_out;
        t.rtcp_in += s.rtcp_in;
        t.rtcp_out += s.rtcp_out;
        t.keyframe_requests += s.keyframe_requests;
        t.layer_switches += s.layer_switches;
        t.target_changes += s.target_changes;
        t.receiver_reports += s.receiver_reports;
        t.sender_reports += s.sender_reports;
        t.twcc_feedback += s.twcc_feedback;
        t.retransmits += s.retransmits;
        t.nack_miss += s.nack_miss;
        t.drop_egress += s.drop_egress;
        t.drop_srtp_auth += s.drop_srtp_auth;
        t.drop_malformed += s.drop_malformed;
        t.drop_unknown_ssrc += s.drop_unknown_ssrc;
        t.drop_unknown_session += s.drop_unknown_session;
        t.drop_replay += s.drop_replay;
        t.drop_stale += s.drop_stale;
    }
    t
}

fn format_samples(samples: &[Sample]) -> String {
    let mut out = String::from(
        "    t  rtp_in rtp_out rtcp_in rtcp_out kf_req switch target retrans nack_miss \
         | drop: egress srtp_auth replay malformed unknown_ssrc unknown_session stale\n",
    );
    for s in samples {
        let t = &s.stats;
        out += &format!(
            "{:5.1} {:7} {:7} {:7} {:8} {:6} {:6} {:6} {:7} {:9} |       {:6} {:9} {:6} {:9} {:12} {:15} {:5}\n",
            s.secs,
            t.rtp_in,
            t.rtp_out,
            t.rtcp_in,
            t.rtcp_out,
            t.keyframe_requests,
            t.layer_switches,
            t.target_changes,
            t.retransmits,
            t.nack_miss,
            t.drop_egress,
            t.drop_srtp_auth,
            t.drop_replay,
            t.drop_malformed,
            t.drop_unknown_ssrc,
            t.drop_unknown_session,
            t.drop_stale,
        );
    }
    out
}

async fn run_script(base_url: &str, lab: &Netns) -> Result<(Option<Value>, bool, String)> {
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir().join("downlink.mjs"))
        .arg(base_url)
        .env("SLUICE_DOWNLINK_NETNS", &lab.name)
        .env("SLUICE_DOWNLINK_DEV", &lab.host_dev)
        .env("SLUICE_DOWNLINK_RATE", LIMIT)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let out = tokio::time::timeout(SCRIPT_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("downlink.mjs ran past {SCRIPT_LIMIT:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    Ok((
        result,
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The whole run; returns the script's result and the counters timeline.
async fn downlink() -> Result<(Value, Vec<Sample>)> {
    check_prerequisites().await?;
    let lab = Netns::create()?;
    let node = start_node(lab.host).await?;
    let mut samples = Vec::new();
    let run = {
        let base_url = node.base_url();
        let script = run_script(&base_url, &lab);
        tokio::pin!(script);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                run = &mut script => break run,
                _ = tick.tick() => samples.push(Sample {
                    secs: started.elapsed().as_secs_f64(),
                    stats: sum(&node.router_stats()),
                }),
            }
        }
    };
    node.shutdown().await;
    drop(lab);
    let (result, success, stderr) = run?;
    eprintln!("downlink.mjs stderr:\n{stderr}");
    match result {
        Some(result) if success && result["ok"] == Value::Bool(true) => Ok((result, samples)),
        Some(result) => Err(anyhow!(
            "downlink.mjs failed: {}\nnode counters:\n{}diagnostics: {}",
            result["error"].as_str().unwrap_or("(no reason given)"),
            format_samples(&samples),
            serde_json::to_string_pretty(&result["diagnostics"]).unwrap_or_default(),
        )),
        None => Err(anyhow!(
            "downlink.mjs printed no JSON result; node counters:\n{}stderr:\n{}",
            format_samples(&samples),
            tail(&stderr, 40),
        )),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Up to the top layer unlimited, down to a lower one (still decoding) under a 400 kbit/s
/// downlink, back up to the top once the limit is lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_downlink_switches_down_and_back_up() {
    let (result, samples) = downlink().await.unwrap_or_else(|e| panic!("{e:#}"));
    let last = samples.last().map(|s| s.stats).unwrap_or_default();
    println!(
        "downlink: {result}\nnode counters:\n{}",
        format_samples(&samples)
    );
    // The script checked the browsers' side; the contract, restated.
    assert!(
        num(&result, "/unlimited/width") >= num(&result, "/limited/width") * 1.5,
        "{result}"
    );
    assert!(num(&result, "/limited/framesDecoded") >= 20.0, "{result}");
    assert_eq!(
        num(&result, "/lifted/width"),
        num(&result, "/unlimited/width"),
        "{result}"
    );
    // And the node's: the estimate moved the target up, down and up again (at least three
    // changes), and the forwarded layer followed on keyframes.
    assert!(last.target_changes >= 3, "target changes: {last:?}");
    assert!(last.layer_switches >= 3, "layer switches: {last:?}");
}
