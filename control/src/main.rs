//! The `sluice` binary: run a node or a local cluster, mint tokens, manage the cluster
//! CA, run the benchmarks.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Cascaded WebRTC SFU")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run an edge node: WHIP/WHEP signaling over HTTP, media over one UDP port. With no
    /// options it serves http://127.0.0.1:8080/ (a demo page) and media on loopback.
    Node(Box<sluice_control::config::NodeArgs>),
    /// Mint a Bearer token (JWT) granting publish and/or subscribe in a room.
    Token(sluice_control::auth::TokenArgs),
    /// Run a local cascade of N nodes on this machine (one process and one region each,
    /// an ephemeral CA); prints one line per node once it is up. Ctrl-C stops them all.
    Cluster(sluice_control::cluster::local::ClusterArgs),
    /// The cluster CA: make one, issue node certificates for inter-node links.
    #[command(subcommand)]
    Ca(sluice_control::cluster::CaCommand),
    /// Drain a running node: it takes no new sessions, tells its clients to move to
    /// other nodes, and exits when empty or at the deadline. Run on the node's host.
    Drain(DrainArgs),
    /// Show the cluster as a running node sees it: members, regions, load, links with
    /// RTT and loss, routes, rooms.
    Status(StatusArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Debug, clap::Args)]
struct DrainArgs {
    /// The node's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Seconds until the node stops even with clients left (default: its
    /// `drain.deadline_secs`).
    #[arg(long, value_name = "SECS")]
    deadline: Option<u64>,
    /// Call a drain off: the node takes sessions again.
    #[arg(long, conflicts_with = "deadline")]
    cancel: bool,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The node's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Print the node's status document (JSON) instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Replicated state on the deterministic simulator: convergence, gossip bytes,
    /// room document memory.
    State {
        /// Also write the results as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Shorter runs, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Pool convergence samples over this many independent seeds.
        #[arg(long, value_name = "N")]
        seeds: Option<u32>,
    },
    /// The media plane on loopback: the router against the null-forwarder reference,
    /// worker CPU time per egress packet, loss and latency, for 1200/160-byte packets,
    /// fan-out 1/4/16, bursty and paced load. Pins the node's worker to CPU 0 and the
    /// load generator to CPU 1.
    Dataplane {
        /// Also write the results as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Shorter runs, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Further options for dataplane-bench, after `--` (`-- --help` lists them).
        #[arg(last = true, value_name = "ARGS")]
        extra: Vec<String>,
    },
    /// Real WebRTC sessions (WHIP/WHEP, ICE, DTLS, SRTP) against a node this starts
    /// (pinned to CPU 0, the load generator on CPU 1), the null-forwarder reference, or
    /// any WHIP/WHEP server: forwarded packets per second, loss, latency, set-up time and
    /// server CPU per forwarded packet; `-- --ramp` finds the highest load with loss
    /// under 0.5%.
    Webrtc {
        /// Also write the results as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Shorter runs, for a quick look.
        #[arg(long)]
        quick: bool,
        /// Further options for webrtc-bench, after `--` (`-- --help` lists them).
        #[arg(last = true, value_name = "ARGS")]
        extra: Vec<String>,
    },
}

/// The benchmarks live in their own executables beside this one: the state benchmark
/// measures memory with a counting global allocator, which the node binary must not
/// carry, and the dataplane benchmark brings its load generator and reference handler.
fn bench_exe(name: &str) -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot locate the sluice executable: {e}"))?;
    let path = exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found; build it beside sluice with `cargo build --release -p sluice-control -p sluice-bench`",
            path.display()
        ))
    }
}

/// Runs benchmark executable `name` with `args`, passing its exit status on.
fn run_bench(what: &str, name: &str, args: Vec<std::ffi::OsString>) -> ExitCode {
    let bench = match bench_exe(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Command::new(bench).args(args).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("sluice: {what} benchmark failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("sluice: cannot run the {what} benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--json FILE` and `--quick`, as every benchmark takes them.
fn common_args(json: Option<PathBuf>, quick: bool) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    if let Some(f) = json {
        args.push("--json".into());
        args.push(f.into());
    }
    if quick {
        args.push("--quick".into());
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Node(args) => run_node(&args),
        Cmd::Token(args) => match sluice_control::auth::run_token_command(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice token: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Cluster(args) => sluice_control::cluster::local::run(&args),
        Cmd::Drain(args) => run_drain(&args),
        Cmd::Status(args) => match sluice_control::status::run_command(&args.url, args.json) {
            Ok(text) => {
                println!("{}", text.trim_end());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice status: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Ca(cmd) => match sluice_control::cluster::run_ca_command(&cmd) {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice ca: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Bench(Bench::State { json, quick, seeds }) => {
            let mut args = common_args(json, quick);
            if let Some(n) = seeds {
                args.push("--seeds".into());
                args.push(n.to_string().into());
            }
            run_bench("state", "state-bench", args)
        }
        Cmd::Bench(Bench::Dataplane { json, quick, extra }) => {
            let mut args = common_args(json, quick);
            args.extend(extra.into_iter().map(Into::into));
            run_bench("dataplane", "dataplane-bench", args)
        }
        Cmd::Bench(Bench::Webrtc { json, quick, extra }) => {
            let mut args = common_args(json, quick);
            args.extend(extra.into_iter().map(Into::into));
            run_bench("webrtc", "webrtc-bench", args)
        }
    }
}

fn run_node(args: &sluice_control::config::NodeArgs) -> ExitCode {
    let config = match sluice_control::config::NodeConfig::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice node: {e}");
            return ExitCode::from(2);
        }
    };
    config.init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let node = match sluice_control::node::Node::start(config).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("cannot start: {e:#}");
                eprintln!("sluice node: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        println!("sluice node listening on {}/", node.base_url());
        run_until_stopped(&node).await;
        tracing::info!("stopping");
        node.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Ctrl-C stops at once; SIGTERM (what systemd sends) starts a graceful drain; a drain
/// (from SIGTERM or `sluice drain`) that completes stops the node.
async fn run_until_stopped(node: &sluice_control::node::Node) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGTERM: draining");
                node.drain(None);
            }
            () = node.drained() => return,
        }
    }
}

fn run_drain(args: &DrainArgs) -> ExitCode {
    let url = format!("{}/drain", args.url.trim_end_matches('/'));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice drain: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let http = reqwest::Client::new();
        let req = if args.cancel {
            http.delete(&url)
        } else {
            let body = match args.deadline {
                Some(s) => format!("{{\"deadline_secs\": {s}}}"),
                None => String::new(),
            };
            http.post(&url).body(body)
        };
        match req.send().await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let text = resp.text().await.unwrap_or_default();
                println!("{}", text.trim());
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("sluice drain: {url}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
