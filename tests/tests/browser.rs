//! Real browsers against an in-process edge node: headless Chromium publishes over WHIP
//! and watches over WHEP, and two Chromiums meet on the demo page.
//!
//! Each test runs one script from tests/browser (playwright-core drives the Debian
//! Chromium) and asserts on the JSON it prints. A missing Chromium or node_modules fails
//! the test with the command that installs it: these are acceptance tests, and a skip
//! would read as a pass.

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;
use sluice_control::cluster::ClusterCa;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::Mutex;

const INSTALL: &str = "run scripts/install-deps.sh";

/// Backstop only: the scripts time themselves out (150 s) and report why.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

/// Two Chromiums encoding 720p simulcast already load a small machine; the tests take
/// turns rather than run four at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("SLUICE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
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
    Ok(())
}

async fn start_node() -> Result<Node> {
    let config: NodeConfig = toml::from_str(
        "[http]\nlisten = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n[log]\nlevel = \"warn,dtls=error\"\n",
    )
    .context("browser test node config")?;
    // RUST_LOG=sluice_control=debug shows the node's side of a failing run. The dtls
    // crate warns about every TLS 1.3 extension in Chromium's ClientHello: noise here.
    config.init_logging();
    Node::start(config).await.context("starting the node")
}

/// What a script reported: its JSON line, exit status and stderr (progress and, on
/// failure, stats snapshots).
#[derive(Debug)]
struct ScriptRun {
    result: Option<Value>,
    success: bool,
    status: String,
    stderr: String,
}

async fn run_script(script: &str, base_urls: &[String]) -> Result<ScriptRun> {
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir().join(format!("{script}.mjs")))
        .args(base_urls)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let out = tokio::time::timeout(SCRIPT_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{script}.mjs ran past {SCRIPT_LIMIT:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    Ok(ScriptRun {
        result,
        success: out.status.success(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Starts a node, runs the script against it, and returns the script's success JSON; any
/// failure comes back as an error carrying the script's reason, its diagnostics and what
/// the node's routers counted.
async fn browser_test(script: &str) -> Result<Value> {
    check_prerequisites().await?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node().await?;
    let run = run_script(script, &[node.base_url()]).await;
    let routers = router_summary(&node);
    node.shutdown().await;
    script_result(script, run, &routers)
}

/// Like [`browser_test`], across a cascade of two nodes joined by a QUIC link: the
/// script's publisher uses node A, its viewer node B.
async fn cascade_browser_test(script: &str) -> Result<Value> {
    check_prerequisites().await?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir()?;
    let ca = ClusterCa::ephemeral()?;
    ca.save(dir.path())?;
    for name in ["a", "b"] {
        ca.issue(name)?.save(dir.path())?;
    }
    let a = start_cluster_node(dir.path(), "a", None).await?;
    let b = start_cluster_node(dir.path(), "b", a.link_addr()).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while a.cluster_members() < 1 || b.cluster_members() < 1 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the two nodes never saw each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = run_script(script, &[a.base_url(), b.base_url()]).await;
    let summary = format!(
        "A: {}; link {:?}\nB: {}; link {:?}",
        router_summary(&a),
        a.cascade_counters(),
        router_summary(&b),
        b.cascade_counters()
    );
    a.shutdown().await;
    b.shutdown().await;
    script_result(script, run, &summary)
}

async fn start_cluster_node(
    dir: &Path,
    name: &str,
    seed: Option<std::net::SocketAddr>,
) -> Result<Node> {
    let seeds = seed.map(|s| format!("\"{s}\"")).unwrap_or_default();
    let d = dir.display();
    let config: NodeConfig = toml::from_str(&format!(
        "[node]\nid = \"{name}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nbind = \"127.0.0.1:0\"\n[log]\nlevel = \"warn,dtls=error\"\n\
         [cluster]\nlisten = \"127.0.0.1:0\"\nseeds = [{seeds}]\n\
         ca_cert = \"{d}/ca.pem\"\ncert = \"{d}/{name}.pem\"\nkey = \"{d}/{name}.key\"\n"
    ))
    .context("cascade node config")?;
    config.init_logging();
    Node::start(config)
        .await
        .with_context(|| format!("starting node {name}"))
}

fn script_result(script: &str, run: Result<ScriptRun>, routers: &str) -> Result<Value> {
    let run = run?;
    eprintln!("{script}.mjs stderr:\n{}\nnode: {routers}", run.stderr);
    match run.result {
        Some(result) if run.success && result["ok"] == Value::Bool(true) => Ok(result),
        Some(result) => Err(anyhow!(
            "{script}.mjs failed ({}): {}\nnode: {routers}\ndiagnostics: {}",
            run.status,
            result["error"].as_str().unwrap_or("(no reason given)"),
            serde_json::to_string_pretty(&result["diagnostics"]).unwrap_or_default(),
        )),
        None => Err(anyhow!(
            "{script}.mjs printed no JSON result ({}); node: {routers}; stderr:\n{}",
            run.status,
            tail(&run.stderr, 40)
        )),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn router_summary(node: &Node) -> String {
    let stats = node.router_stats();
    let sum =
        |f: fn(&sluice_dataplane::router::RouterStats) -> u64| stats.iter().map(f).sum::<u64>();
    format!(
        "rtp_in {} rtp_out {} rtcp_in {} rtcp_out {} twcc_feedback {} keyframe_requests {} \
         layer_switches {} stun_in {} ice_responses {} stun_rejected {} dtls_in {} \
         drop_unknown_session {} drop_unknown_ssrc {} drop_srtp_auth {} drop_malformed {}",
        sum(|s| s.rtp_in),
        sum(|s| s.rtp_out),
        sum(|s| s.rtcp_in),
        sum(|s| s.rtcp_out),
        sum(|s| s.twcc_feedback),
        sum(|s| s.keyframe_requests),
        sum(|s| s.layer_switches),
        sum(|s| s.stun_in),
        sum(|s| s.ice_responses),
        sum(|s| s.stun_rejected),
        sum(|s| s.dtls_in),
        sum(|s| s.drop_unknown_session),
        sum(|s| s.drop_unknown_ssrc),
        sum(|s| s.drop_srtp_auth),
        sum(|s| s.drop_malformed),
    )
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Chromium publishes VP8 simulcast (three layers) and a microphone over WHIP; a second
/// Chromium watches over WHEP and decodes video and audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_watch() {
    let result = browser_test("publish_watch")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("publish_watch: {result}");
    // The script checked these; re-asserting keeps the contract visible here.
    assert!(num(&result, "/video/framesDecoded") >= 60.0, "{result}");
    assert!(num(&result, "/audio/packetsReceived") > 0.0, "{result}");
    for rid in ["q", "h", "f"] {
        assert_eq!(
            result.pointer(&format!("/layers/{rid}/growing")),
            Some(&Value::Bool(true)),
            "layer {rid}: {result}"
        );
    }
}

/// The cascade with real browsers: Chromium publishes simulcast on node A, a second
/// Chromium watches through node B, and the media crosses the QUIC link between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_publish_watch() {
    let result = cascade_browser_test("publish_watch")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("cascade_publish_watch: {result}");
    assert!(num(&result, "/video/framesDecoded") >= 60.0, "{result}");
    assert!(num(&result, "/audio/packetsReceived") > 0.0, "{result}");
}

/// The demo page across the cascade: one Chromium on node A's page, one on node B's, in
/// the same room; each shows the other's video (one publisher's media crosses the link
/// each way), and a Leave on B removes the tile on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_demo_page() {
    let result = cascade_browser_test("demo_page")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("cascade_demo_page: {result}");
    assert!(num(&result, "/x/sees/framesDecoded") >= 30.0, "{result}");
    assert!(num(&result, "/y/sees/framesDecoded") >= 30.0, "{result}");
    assert_eq!(num(&result, "/afterLeave/xTiles"), 0.0, "{result}");
}

/// Two Chromiums on the demo page in one room each end up showing the other's video, and
/// a Leave removes the leaver's tile from the other page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page() {
    let result = browser_test("demo_page")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("demo_page: {result}");
    assert!(num(&result, "/x/sees/framesDecoded") >= 30.0, "{result}");
    assert!(num(&result, "/y/sees/framesDecoded") >= 30.0, "{result}");
    assert_eq!(num(&result, "/afterLeave/xTiles"), 0.0, "{result}");
}
