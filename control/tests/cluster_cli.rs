//! `sluice cluster` as a user runs it: the real binary starts N node processes, prints a
//! line per node, every node's `GET /cluster` lists them all, a stopped node is shown
//! down and alive again when it resumes, and SIGINT (or a node dying) stops every node
//! and removes the temporary directory.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Mirrors `cluster::local::LINK_PORT_OFFSET`.
const LINK_OFFSET: u16 = 100;

/// A base port in `range` whose HTTP, media and link ports for `n` nodes are all free now.
fn free_base(range: std::ops::Range<u16>, n: u16) -> u16 {
    for _ in 0..200 {
        let base = range.start + rand::random::<u16>() % (range.end - range.start);
        let free = (0..n).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && UdpSocket::bind(("127.0.0.1", base + i)).is_ok()
                && UdpSocket::bind(("127.0.0.1", base + LINK_OFFSET + i)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free port range in {range:?}");
}

struct Runner {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Runner {
    fn start(nodes: u16, base: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["cluster", "--nodes", &nodes.to_string()])
            .args(["--base-port", &base.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice cluster starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Runner {
            child,
            lines,
            stderr,
        }
    }

    fn line(&self, within: Duration) -> String {
        self.lines.recv_timeout(within).unwrap_or_else(|e| {
            panic!(
                "no line from sluice cluster ({e}); stderr:\n{}",
                self.stderr()
            )
        })
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The runner's stderr once it holds `needle` (its reader may lag the exit a bit).
    fn stderr_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let err = self.stderr();
            if err.contains(needle) || Instant::now() >= deadline {
                return err;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice cluster did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // A failed test must not leave a cluster behind: SIGINT makes it stop its nodes.
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid(), "INT");
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .status()
        .expect("sh runs")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Processes whose parent is `parent`, with their command lines.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(parent) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The temporary directory the nodes' `--config` files live in.
fn config_dir(cmdline: &str) -> PathBuf {
    let config = cmdline
        .split_whitespace()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .unwrap_or_else(|| panic!("no --config in {cmdline:?}"));
    PathBuf::from(config).parent().unwrap().to_owned()
}

async fn cluster_json(http: &reqwest::Client, port: u16) -> Value {
    http.get(format!("http://127.0.0.1:{port}/cluster"))
        .send()
        .await
        .expect("GET /cluster")
        .json()
        .await
        .expect("JSON")
}

/// `(id, state)` of every member in a `/cluster` answer.
fn states(v: &Value) -> Vec<(String, String)> {
    v["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap_or("").to_owned(),
                        m["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls node `port` until `want` holds for its `/cluster`, or panics after `within`.
async fn until(
    http: &reqwest::Client,
    port: u16,
    within: Duration,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = cluster_json(http, port).await;
        if want(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "node :{port}: {what}; last: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_local_nodes_list_each_other_and_stop_on_sigint() {
    let base = free_base(18000..24000, 3);
    let mut runner = Runner::start(3, base);
    for i in 0..3u16 {
        assert_eq!(
            runner.line(Duration::from_secs(20)),
            format!(
                "node n{n} region local-{n} http://127.0.0.1:{p}/",
                n = i + 1,
                p = base + i
            )
        );
    }
    let nodes = children_of(runner.pid());
    assert_eq!(nodes.len(), 3, "node processes: {nodes:?}");
    let dir = config_dir(&nodes[0].1);
    assert!(dir.join("ca.pem").is_file(), "{}", dir.display());

    let http = reqwest::Client::new();
    for i in 0..3u16 {
        let v = until(
            &http,
            base + i,
            Duration::from_secs(10),
            "three alive members",
            |v| states(v).iter().filter(|(_, s)| s == "alive").count() == 3,
        )
        .await;
        assert_eq!(v["self"], format!("n{}", i + 1));
        let members = v["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{v}");
        for (j, m) in members.iter().enumerate() {
            let j = j as u16;
            assert_eq!(m["id"], format!("n{}", j + 1), "{v}");
            assert_eq!(m["region"], format!("local-{}", j + 1), "{v}");
            assert_eq!(m["http"], format!("http://127.0.0.1:{}", base + j), "{v}");
            assert_eq!(m.as_object().unwrap().len(), 4, "{v}");
        }
    }

    // A node that stops answering is declared down by the others, and is alive again
    // once it resumes (it rejoins under a newer generation).
    let n3 = nodes
        .iter()
        .find(|(_, cmd)| cmd.contains("n3.toml"))
        .expect("n3's process")
        .0;
    signal(n3, "STOP");
    let n3_is = |state: &'static str| {
        move |v: &Value| states(v).contains(&("n3".to_owned(), state.to_owned()))
    };
    for port in [base, base + 1] {
        until(
            &http,
            port,
            Duration::from_secs(10),
            "n3 down",
            n3_is("down"),
        )
        .await;
    }
    signal(n3, "CONT");
    for port in [base, base + 1] {
        until(
            &http,
            port,
            Duration::from_secs(15),
            "n3 back",
            n3_is("alive"),
        )
        .await;
    }

    signal(runner.pid(), "INT");
    let status = runner.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}; stderr:\n{}", runner.stderr());
    for (pid, cmd) in &nodes {
        assert!(
            !alive(*pid),
            "node process {pid} ({cmd}) outlived the runner"
        );
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
    // Nothing but the three lines on stdout.
    assert!(runner.lines.try_recv().is_err());
}

#[test]
fn a_node_that_dies_stops_the_cluster_with_an_error() {
    let base = free_base(24000..30000, 2);
    let mut runner = Runner::start(2, base);
    runner.line(Duration::from_secs(20));
    runner.line(Duration::from_secs(20));
    let nodes = children_of(runner.pid());
    assert_eq!(nodes.len(), 2, "node processes: {nodes:?}");
    let victim = nodes.iter().find(|(_, c)| c.contains("n2.toml")).unwrap().0;
    signal(victim, "KILL");
    let status = runner.wait(Duration::from_secs(10));
    assert!(!status.success());
    let err = runner.stderr_with("node n2 exited");
    assert!(err.contains("node n2 exited"), "{err}");
    for (pid, _) in &nodes {
        assert!(!alive(*pid), "node process {pid} outlived the runner");
    }
}

#[test]
fn a_taken_port_is_refused_before_anything_starts() {
    let base = free_base(30000..32000, 2);
    let _taken = TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
    let mut runner = Runner::start(2, base);
    let status = runner.wait(Duration::from_secs(10));
    assert!(!status.success());
    let want = format!("HTTP (TCP) port {} for node n2", base + 1);
    let err = runner.stderr_with(&want);
    assert!(err.contains(&want), "{err}");
    assert!(runner.lines.try_recv().is_err(), "a node line was printed");
}
