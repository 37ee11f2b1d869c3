//! The README's quick start, literally: `sluice node` with no configuration serves the demo
//! page on http://127.0.0.1:8080/, and two headless Chromiums on that page see each other.
//!
//! It needs port 8080 free, Chromium, and tests/browser/node_modules (scripts/install-deps.sh
//! installs both). A missing prerequisite fails the test: a skip would read as a pass.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const BASE_URL: &str = "http://127.0.0.1:8080";
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Starts `sluice node` exactly as the quick start does (no flags, no file) and waits for
/// its demo page.
async fn start_node() -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("node")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting `sluice node`");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("polling `sluice node`") {
            panic!("`sluice node` exited early ({status}); is {BASE_URL} already in use?");
        }
        if let Ok(resp) = client.get(format!("{BASE_URL}/")).send().await {
            assert!(
                resp.status().is_success(),
                "GET / answered {}",
                resp.status()
            );
            let body = resp.text().await.expect("demo page body");
            assert!(
                body.contains("<html"),
                "GET / is not the demo page: {body:.200}"
            );
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "`sluice node` did not serve {BASE_URL}/ within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn num(v: &serde_json::Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_node_serves_a_working_demo_page() {
    let modules = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        modules.exists(),
        "missing {} (run scripts/install-deps.sh)",
        modules.display()
    );
    let mut node = start_node().await;
    let script = Command::new("node")
        .arg(browser_dir().join("demo_page.mjs"))
        .arg(BASE_URL)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node (Node.js); run scripts/install-deps.sh");
    let out = tokio::time::timeout(SCRIPT_LIMIT, script.wait_with_output())
        .await
        .expect("demo_page.mjs ran past its limit")
        .expect("demo_page.mjs output");
    let _ = node.kill().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .unwrap_or_else(|| panic!("demo_page.mjs printed no result ({})\n{stderr}", out.status));
    assert!(
        out.status.success(),
        "demo_page.mjs failed: {result}\n{stderr}"
    );
    assert!(num(&result, "/x/sees/framesDecoded") >= 30.0, "{result}");
    assert!(num(&result, "/y/sees/framesDecoded") >= 30.0, "{result}");
    assert_eq!(num(&result, "/afterLeave/xTiles"), 0.0, "{result}");
}
