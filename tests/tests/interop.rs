//! Real WebRTC stacks against an in-process edge node: aiortc publishes and subscribes
//! (VP8 and H264), and a GStreamer webrtcbin publisher (RSA DTLS certificate, in a
//! network namespace) is watched by headless Chromium.
//!
//! The clients are the scripts in tests/interop; `scripts/install-interop-deps.sh`
//! installs what they need. A missing dependency fails the test with the command that
//! installs it: these are the acceptance tests, a skip would read as a pass.

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use sluice_control::config::NodeConfig;
use sluice_control::node::Node;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const INSTALL: &str = "run scripts/install-interop-deps.sh";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/interop").join(name)
}

/// The venv's python (aiortc), or `SLUICE_INTEROP_PYTHON`.
fn venv_python() -> Result<PathBuf> {
    let python = std::env::var_os("SLUICE_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/interop-venv/bin/python"));
    ensure!(
        python.exists(),
        "interop dependency missing: the aiortc venv ({}); {INSTALL}",
        python.display()
    );
    Ok(python)
}

/// The system python3 with the GStreamer gi bindings and the webrtcbin elements.
async fn gst_python() -> Result<PathBuf> {
    let python = PathBuf::from("/usr/bin/python3");
    let check = "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); \
                 from gi.repository import Gst; Gst.init(None); \
                 missing = [e for e in ('webrtcbin', 'nicesrc', 'vp8enc', 'opusenc') if Gst.ElementFactory.find(e) is None]; \
                 assert not missing, missing";
    let out = Command::new(&python)
        .args(["-c", check])
        .output()
        .await
        .with_context(|| {
            format!(
                "interop dependency missing: {}; {INSTALL}",
                python.display()
            )
        })?;
    ensure!(
        out.status.success(),
        "interop dependency missing: GStreamer webrtcbin with Python bindings ({}); {INSTALL}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(python)
}

fn chromium() -> Result<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    ensure!(
        path.exists(),
        "interop dependency missing: Chromium ({}); {INSTALL}",
        path.display()
    );
    Ok(path)
}

async fn start_node(http: &str, media: &str) -> Result<Node> {
    let config: NodeConfig = toml::from_str(&format!(
        "[http]\nlisten = \"{http}\"\n[media]\nbind = \"{media}\"\n[log]\nlevel = \"warn,dtls=error\"\n"
    ))
    .context("interop node config")?;
    // RUST_LOG=sluice_control=debug shows the node's side of a failing run.
    config.init_logging();
    Node::start(config).await.context("starting the node")
}

/// Runs a client script to completion and parses the JSON object on its last stdout line.
async fn run_json(mut cmd: Command, limit: Duration) -> Result<Value> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let out = timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{cmd:?} ran past {limit:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let Some(last) = last else {
        bail!(
            "{cmd:?} printed no JSON (exit {}); stderr:\n{}",
            out.status,
            tail(&stderr, 40)
        );
    };
    serde_json::from_str(last).with_context(|| format!("{cmd:?} printed bad JSON: {last}"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn num(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// What the node's routers did, for the failure messages.
fn router_summary(node: &Node) -> String {
    let stats = node.router_stats();
    let sum =
        |f: fn(&sluice_dataplane::router::RouterStats) -> u64| stats.iter().map(f).sum::<u64>();
    format!(
        "rtp_in {} rtp_out {} rtcp_in {} rtcp_out {} retransmits {} keyframe_requests {} stun_in {} ice_responses {} stun_rejected {} dtls_in {}",
        sum(|s| s.rtp_in),
        sum(|s| s.rtp_out),
        sum(|s| s.rtcp_in),
        sum(|s| s.rtcp_out),
        sum(|s| s.retransmits),
        sum(|s| s.keyframe_requests),
        sum(|s| s.stun_in),
        sum(|s| s.ice_responses),
        sum(|s| s.stun_rejected),
        sum(|s| s.dtls_in),
    )
}

/// Drops the bulky SDP from a report before it goes into a failure message; the SDP is
/// printed on its own.
fn brief(v: &Value) -> String {
    let mut v = v.clone();
    for path in [
        "/publish/offer",
        "/publish/answer",
        "/subscribe/offer",
        "/subscribe/answer",
        "/offer",
        "/answer",
    ] {
        if let Some(slot) = v.pointer_mut(path) {
            *slot = Value::String("<sdp>".into());
        }
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

async fn aiortc_round_trip(codec: &str, mime: &str) -> Result<()> {
    let python = venv_python()?;
    let node = start_node("127.0.0.1:0", "127.0.0.1:0").await?;
    let room = format!("aiortc-{codec}");
    let mut cmd = Command::new(python);
    cmd.arg(script("aiortc_client.py")).args([
        "--base",
        &node.base_url(),
        "--room",
        &room,
        "--codec",
        codec,
        "--seconds",
        "15",
        "--min-video-frames",
        "60",
        "--min-audio-frames",
        "50",
    ]);
    let report = run_json(cmd, Duration::from_secs(60)).await;
    let routers = router_summary(&node);
    let sessions_left = wait_for_no_sessions(&node).await;
    node.shutdown().await;
    let r = report?;
    // Shown with --nocapture: what a passing run looked like.
    println!("aiortc {codec} report:\n{}\nnode: {routers}", brief(&r));
    let context = || {
        format!(
            "aiortc {codec} report:\n{}\nnode: {routers}\npublish answer:\n{}\nsubscribe answer:\n{}",
            brief(&r),
            text(&r, "/publish/answer"),
            text(&r, "/subscribe/answer")
        )
    };
    ensure!(
        r["ok"] == Value::Bool(true),
        "aiortc round trip failed: {}\n{}",
        r["error"],
        context()
    );
    ensure!(
        num(&r, "/subscribe/video_frames") >= 60,
        "too few video frames\n{}",
        context()
    );
    ensure!(
        num(&r, "/subscribe/audio_frames") >= 50,
        "too few audio frames\n{}",
        context()
    );
    ensure!(
        text(&r, "/subscribe/video_codec").eq_ignore_ascii_case(mime),
        "the subscriber got {} rather than {mime}\n{}",
        r["subscribe"]["video_codec"],
        context()
    );
    // The room listing taken while publishing shows this publisher and its two tracks.
    let publisher = text(&r, "/publish/publisher_id").to_owned();
    let listed = r
        .pointer("/publish/room_listing/body/publishers")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find(|p| p["id"].as_str() == Some(&publisher)))
        .ok_or_else(|| {
            anyhow!(
                "publisher {publisher:?} not in the room listing\n{}",
                context()
            )
        })?;
    ensure!(
        listed["tracks"].as_array().map_or(0, Vec::len) == 2,
        "the listing should show an audio and a video track: {listed}\n{}",
        context()
    );
    for side in ["publish", "subscribe"] {
        ensure!(
            num(&r, &format!("/{side}/delete_status")) == 200,
            "DELETE of the {side} resource\n{}",
            context()
        );
    }
    ensure!(
        sessions_left == 0,
        "{sessions_left} sessions still on the node after both DELETEs"
    );
    Ok(())
}

/// The sessions the node still holds once the DELETEs had a moment to land.
async fn wait_for_no_sessions(node: &Node) -> usize {
    for _ in 0..20 {
        if node.peer_count() == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.peer_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_and_subscribes_vp8() -> Result<()> {
    aiortc_round_trip("vp8", "VP8/90000").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_and_subscribes_h264() -> Result<()> {
    aiortc_round_trip("h264", "H264/90000").await
}

// --- GStreamer in a network namespace, watched by Chromium ----------------------------

/// A network namespace joined to this one by a veth pair: `host_ip` on our side,
/// `ns_ip` inside. Deleted on drop (which also ends the veth pair), and any left by a
/// run that died is cleared by the next one.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

const NETNS_PREFIX: &str = "sluice-it-";

fn ip(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("interop dependency missing: iproute2 (`ip`); {INSTALL}"))?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

impl Netns {
    fn create() -> Result<Netns> {
        ensure!(
            is_root(),
            "the GStreamer interop test needs root (CAP_NET_ADMIN) to create a network namespace"
        );
        Self::clear_stale();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{pid}-{n}");
        // Interface names stop at 15 bytes: "sl" + pid (at most 7 digits) + side + n.
        let host_if = format!("sl{pid}h{n}");
        let ns_if = format!("sl{pid}n{n}");
        let subnet = Self::free_subnet(pid.wrapping_add(n))?;
        let host_ip = format!("10.77.{subnet}.1");
        let ns_ip = format!("10.77.{subnet}.2");
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            host_if,
            host_ip,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A 10.77.x.0/24 no interface here uses yet.
    fn free_subnet(seed: u32) -> Result<u32> {
        let used = ip(&["-o", "-4", "addr", "show"])?;
        (0..250)
            .map(|i| (seed.wrapping_add(i) % 250) + 1)
            .find(|x| !used.contains(&format!("10.77.{x}.")))
            .ok_or_else(|| anyhow!("no free 10.77.x.0/24 subnet"))
    }

    /// Namespaces from runs whose process is gone (killed before their drop ran).
    fn clear_stale() {
        let Ok(list) = ip(&["netns", "list"]) else {
            return;
        };
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
                continue;
            };
            let alive = rest
                .split('-')
                .next()
                .is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if !alive {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }

    fn exec(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Anything still running inside would keep the namespace's veth end alive.
        if let Ok(pids) = ip(&["netns", "pids", &self.name]) {
            for pid in pids.split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
        }
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// The GStreamer publisher: its event lines as they come, and its exit.
struct GstPublisher {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl GstPublisher {
    fn spawn(mut cmd: Command) -> Result<GstPublisher> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting the GStreamer publisher")?;
        let stdout = child.stdout.take().context("publisher stdout")?;
        let stderr = child.stderr.take().context("publisher stderr")?;
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            let mut all = String::new();
            while let Ok(Some(line)) = reader.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Ok(GstPublisher {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        })
    }

    /// Waits for an event line matching `want`; Err if the publisher reports an error or
    /// ends first.
    async fn wait_for(&mut self, limit: Duration, want: impl Fn(&Value) -> bool) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .map_err(|_| anyhow!("the publisher did not get there in {limit:?}"))?
                .ok_or_else(|| anyhow!("the publisher exited"))?;
            self.seen.push(line.clone());
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if want(&event) {
                return Ok(());
            }
            if event["event"] == "error" || event["event"] == "summary" {
                bail!("the publisher stopped: {}", event);
            }
        }
    }

    /// SIGTERM (the script DELETEs its resource and prints a summary), then its summary.
    async fn stop(mut self) -> (Option<Value>, String) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.start_kill();
        while let Ok(Some(line)) = timeout(Duration::from_secs(2), self.lines.recv()).await {
            self.seen.push(line);
        }
        let summary = self
            .seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "summary");
        let stderr = timeout(Duration::from_secs(2), self.stderr)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let mut log = self.seen.join("\n");
        log.push_str("\n--- stderr ---\n");
        log.push_str(&tail(&stderr, 60));
        (summary, log)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_publisher_watched_by_chromium() -> Result<()> {
    let python = gst_python().await?;
    let chromium = chromium()?;
    let ns = Netns::create()?;
    let node = start_node(&format!("{}:0", ns.host_ip), &format!("{}:0", ns.host_ip)).await?;
    let base = node.base_url();
    let room = "gst";

    let mut cmd = ns.exec(&python);
    cmd.arg(script("gst_whip_publish.py")).args([
        "--whip",
        &format!("{base}/whip/{room}"),
        "--seconds",
        "60",
    ]);
    let mut publisher = GstPublisher::spawn(cmd)?;
    let connected = publisher
        .wait_for(Duration::from_secs(20), |e| {
            e["event"] == "connection-state" && e["state"] == "connected"
        })
        .await;

    let watched = match &connected {
        Ok(()) => {
            let mut cmd = Command::new(&python);
            cmd.arg(script("chromium_watch.py")).args([
                "--whep",
                &format!("{base}/whep/{room}"),
                "--min-frames",
                "31",
                "--timeout",
                "30",
                "--chromium",
            ]);
            cmd.arg(&chromium);
            Some(run_json(cmd, Duration::from_secs(60)).await)
        }
        Err(_) => None,
    };
    let routers = router_summary(&node);
    let (summary, gst_log) = publisher.stop().await;
    node.shutdown().await;
    drop(ns);

    let answer = gst_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "answer")
        .map(|e| text(&e, "/sdp").to_owned())
        .unwrap_or_default();
    let gst_context =
        || format!("node: {routers}\nWHIP answer:\n{answer}\nGStreamer publisher log:\n{gst_log}");
    if let Err(e) = connected {
        bail!("webrtcbin did not connect: {e}\n{}", gst_context());
    }
    let w = match watched {
        Some(Ok(w)) => w,
        Some(Err(e)) => bail!("the Chromium watcher failed: {e:#}\n{}", gst_context()),
        None => bail!("unreachable: connected without a watcher run"),
    };
    println!(
        "Chromium report:\n{}\nnode: {routers}\nGStreamer summary:\n{}",
        brief(&w),
        summary.as_ref().map(brief).unwrap_or_default()
    );
    let watch_context = || {
        format!(
            "Chromium report:\n{}\nWHEP answer:\n{}\n{}",
            brief(&w),
            text(&w, "/answer"),
            gst_context()
        )
    };
    ensure!(
        w["ok"] == Value::Bool(true),
        "Chromium did not decode enough frames: {}\n{}",
        w["error"],
        watch_context()
    );
    ensure!(
        num(&w, "/stats/video/framesDecoded") > 30,
        "Chromium decoded {} frames\n{}",
        num(&w, "/stats/video/framesDecoded"),
        watch_context()
    );
    ensure!(
        text(&w, "/stats/codecs/video/mimeType").eq_ignore_ascii_case("video/VP8"),
        "Chromium decoded {} rather than VP8\n{}",
        w.pointer("/stats/codecs/video/mimeType")
            .unwrap_or(&Value::Null),
        watch_context()
    );
    ensure!(
        num(&w, "/stats/audio/packetsReceived") > 0,
        "Chromium got no audio\n{}",
        watch_context()
    );
    let s = summary.ok_or_else(|| anyhow!("no summary from the publisher\n{}", gst_context()))?;
    ensure!(
        s["ok"] == Value::Bool(true),
        "the publisher reports a failure: {}\n{}",
        s["error"],
        gst_context()
    );
    // The point of this client: webrtcbin's DTLS certificate is RSA.
    ensure!(
        text(&s, "/local_certificate_key") == "rsaEncryption",
        "webrtcbin's certificate key is {} (expected RSA)\n{}",
        s["local_certificate_key"],
        gst_context()
    );
    ensure!(
        num(&s, "/delete_status") == 200,
        "the publisher's DELETE answered {}\n{}",
        s["delete_status"],
        gst_context()
    );
    Ok(())
}
