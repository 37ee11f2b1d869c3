//! `webrtc-bench`, behind `sluice bench webrtc`: real WebRTC sessions (WHIP/WHEP, ICE,
//! DTLS, SRTP) against Sluice, the null-forwarder reference, or any WHIP/WHEP server;
//! N publishers x M subscribers per room, R rooms; a fixed load or a ramp to the highest
//! load with loss under 0.5%. Prints a table, writes JSON and an SVG plot.

use clap::Parser;
use sluice_bench::webrtc::fleet::{Signaling, Target};
use sluice_bench::webrtc::levels::{LevelPlan, run_target};
use sluice_bench::webrtc::report::{Report, TargetResult, plot_svg, table};
use sluice_bench::webrtc::workload::Workload;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "webrtc-bench",
    about = "Real-WebRTC load against Sluice, the null-forwarder reference, or any WHIP/WHEP server"
)]
struct Args {
    /// What to measure, in order, in one run: `sluice` and `null` start a `sluice node`
    /// (the second with `--null-forward`) pinned to --server-cpu; `janus` (re)starts
    /// Janus VideoRoom in a network namespace with --janus-script, pinned likewise;
    /// `url=URL` loads a running WHIP/WHEP server (give --server-pid for its CPU time).
    #[arg(long, value_delimiter = ',', default_value = "sluice")]
    targets: Vec<String>,
    /// The server process of a `url=` target, for its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per room (each subscribes to every publisher of the room).
    #[arg(long, default_value_t = 16)]
    subscribers: usize,
    /// One VP8 layer instead of three simulcast layers.
    #[arg(long)]
    no_simulcast: bool,
    #[arg(long)]
    no_audio: bool,
    /// Video layer bitrates in kbit/s, lowest first.
    #[arg(long, value_delimiter = ',', default_value = "150,500,1500")]
    layer_kbps: Vec<u32>,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// The clients' DTLS retransmission interval (fixed, in ms). The dtls crate's default
    /// of 1000 lets one early ClientHello that a server drops cost a second of set-up.
    #[arg(long, default_value_t = 100)]
    dtls_retransmit_ms: u64,
    /// Seconds of load before the window (the server raises subscribers to the top
    /// layer as their estimate grows).
    #[arg(long, default_value_t = 8.0)]
    warmup: f64,
    /// Seconds measured at each load level.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Verify one received packet in N (1: all of them).
    #[arg(long, default_value_t = 1)]
    verify_every: u64,
    /// Double the rooms from --rooms until a level loses --loss-limit or more (or reaches
    /// --max-rooms), then narrow down between the last level that passed and the first
    /// that did not.
    #[arg(long)]
    ramp: bool,
    #[arg(long, default_value_t = 64)]
    max_rooms: usize,
    /// Loss (fraction) a ramp level may have and still pass.
    #[arg(long, default_value_t = 0.005)]
    loss_limit: f64,
    /// CPU for the spawned node, and for this load generator.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// The script that sets Janus up for the `janus` target.
    #[arg(long, default_value = "scripts/janus-peer.sh")]
    janus_script: PathBuf,
    /// The `sluice` executable for spawned targets (default: beside this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
    /// SVG plot of rate, CPU and latency over time.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Measure every target this many times, alternating, and report each target's
    /// median run (fixed load only).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Short windows, for a quick look.
    #[arg(long)]
    quick: bool,
}

/// A node this run started, stopped when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_node(args: &Args, null: bool) -> Result<(Spawned, String, u32), String> {
    let exe = match &args.sluice {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("sluice"),
    };
    let port = free_port().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&exe);
    cmd.args(["node", "--http-listen", &format!("127.0.0.1:{port}")])
        .args([
            "--max-sessions",
            "100000",
            "--media-bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null());
    if null {
        cmd.arg("--null-forward");
    }
    let cpu = args.server_cpu;
    // SAFETY: sched_setaffinity is async-signal-safe; the set lives on this stack.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            // The node goes when the bench does, however it ends.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let pid = child.id();
    let node = Spawned(child);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{} did not start serving on {addr}", exe.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((node, format!("http://{addr}"), pid))
}

/// The host side of the Janus namespace (scripts/janus-peer.sh): clients bind it.
const JANUS_HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const JANUS_API: &str = "http://10.77.0.2:8088/janus";

/// (Re)starts Janus VideoRoom in its network namespace, pinned to the server CPU, with
/// scripts/janus-peer.sh; returns its API URL and pid.
fn start_janus(args: &Args) -> Result<(String, u32), String> {
    let script = args.janus_script.clone();
    let run = |what: &str| -> Result<String, String> {
        let out = Command::new(&script)
            .arg(what)
            .env("SLUICE_JANUS_CPUS", args.server_cpu.to_string())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {what} failed ({})",
                script.display(),
                out.status
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // A fresh instance, pinned, with no rooms left from earlier runs.
    run("down")?;
    run("up")?;
    let pid = run("pid")?
        .parse()
        .map_err(|_| "janus-peer.sh pid printed no pid".to_owned())?;
    Ok((JANUS_API.to_owned(), pid))
}

/// Of a target's repeated runs, the one with the median CPU per forwarded packet, with
/// every run's figure in a note.
fn median_run(mut runs: Vec<TargetResult>) -> TargetResult {
    let ns = |r: &TargetResult| {
        r.headline()
            .and_then(|l| l.server_cpu_ns_per_packet)
            .unwrap_or(f64::MAX)
    };
    runs.sort_by(|a, b| ns(a).total_cmp(&ns(b)));
    let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", ns(r))).collect();
    let n = runs.len();
    let mut median = runs.swap_remove(n / 2);
    if n > 1 {
        median.notes.push(format!(
            "{}: median of {n} runs; CPU ns per packet of each: {}",
            median.target,
            all.join(", ")
        ));
    }
    median
}

async fn run(args: Args) -> Result<Report, String> {
    let workload = Workload {
        rooms: args.rooms,
        publishers: args.publishers,
        subscribers: args.subscribers,
        audio: !args.no_audio,
        video: true,
        simulcast: !args.no_simulcast,
        layer_kbps: args.layer_kbps.clone(),
        fps: args.fps,
        dtls_retransmit_ms: args.dtls_retransmit_ms,
        ..Workload::default()
    };
    let run_id = std::process::id() as u64;
    let (warmup, window) = if args.quick {
        (Duration::from_secs(2), Duration::from_secs(3))
    } else {
        (
            Duration::from_secs_f64(args.warmup),
            Duration::from_secs(args.window),
        )
    };
    let plan = LevelPlan {
        rooms: args.rooms,
        ramp: args.ramp,
        max_rooms: args.max_rooms,
        loss_limit: args.loss_limit,
        settle: Duration::from_secs(10),
        warmup,
        window,
        refine: 3,
        progress: true,
    };
    let repeats = if args.ramp { 1 } else { args.repeats.max(1) };
    let mut runs: Vec<Vec<TargetResult>> = vec![Vec::new(); args.targets.len()];
    for round in 0..repeats {
        for (ti, t) in args.targets.iter().enumerate() {
            let (spawned, target) = match t.as_str() {
                "sluice" | "null" => {
                    let null = t == "null";
                    let (node, url, pid) = spawn_node(&args, null)?;
                    let target = Target {
                        name: t.clone(),
                        signaling: Signaling::Whip,
                        url,
                        pid: Some(pid),
                        verify_every: if null { 0 } else { args.verify_every },
                        opaque: null,
                        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    };
                    (Some(node), target)
                }
                "janus" => {
                    let (url, pid) = start_janus(&args)?;
                    let target = Target {
                        name: t.clone(),
                        signaling: Signaling::Janus,
                        url,
                        pid: Some(pid),
                        verify_every: args.verify_every,
                        opaque: false,
                        bind: IpAddr::V4(JANUS_HOST_IP),
                    };
                    (None, target)
                }
                other => {
                    let url = other.strip_prefix("url=").ok_or_else(|| {
                        format!("unknown target {other:?} (sluice, null, janus, url=URL)")
                    })?;
                    let target = Target {
                        name: url.to_owned(),
                        signaling: Signaling::Whip,
                        url: url.trim_end_matches('/').to_owned(),
                        pid: args.server_pid,
                        verify_every: args.verify_every,
                        opaque: false,
                        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    };
                    (None, target)
                }
            };
            let result = run_target(&target, &workload, &plan, run_id + round as u64).await;
            drop(spawned);
            runs[ti].push(result);
        }
    }
    let targets: Vec<TargetResult> = runs.into_iter().map(median_run).collect();
    let mut notes = vec![format!(
        "offered: {} publisher(s) x {} subscriber(s) per room, {:.0} packets/s per subscriber per publisher; subscribers verify {}",
        workload.publishers,
        workload.subscribers,
        workload.subscriber_pps(),
        match args.verify_every {
            0 => "nothing".to_owned(),
            1 => "every packet (checksum, latency)".to_owned(),
            n => format!("one packet in {n} (checksum, latency)"),
        }
    )];
    let ns = |t: &TargetResult| t.headline().and_then(|l| l.server_cpu_ns_per_packet);
    if let Some(first) = targets.first()
        && let Some(base) = ns(first)
    {
        for t in targets.iter().skip(1) {
            if let Some(other) = ns(t) {
                notes.push(format!(
                    "{}: {:.2}x the CPU per forwarded packet of {}; {:.2}x its packets per CPU-second",
                    first.target,
                    base / other,
                    t.target,
                    other / base
                ));
            }
        }
    }
    Ok(Report {
        workload,
        verify_every: args.verify_every,
        targets,
        notes,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = sluice_bench::webrtc::cpu::pin_process(args.load_cpu) {
        eprintln!(
            "webrtc-bench: cannot pin to CPU {}: {e} (running unpinned)",
            args.load_cpu
        );
    }
    let (json, plot) = (args.json.clone(), args.plot.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("webrtc-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(run(args)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("webrtc-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", table(&report));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("webrtc-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = plot {
        match plot_svg(&report).map(|svg| std::fs::write(&path, svg)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("webrtc-bench: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("webrtc-bench: plot: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let bad = report
        .targets
        .iter()
        .any(|t| t.headline().is_none_or(|l| l.corrupt > 0));
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
