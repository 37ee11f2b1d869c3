//! The real `sluice node` started the way operators confine it: inside a CPU affinity set
//! (taskset, `CPUAffinity=`, a cpuset) with `--pin-cores`, and under an RLIMIT_MEMLOCK too
//! small for its io_uring rings (a container's default) without CAP_IPC_LOCK.
//!
//! The confinement is applied between fork and exec, so the test process keeps its own.

mod support;

use sluice_control::client::{self, ClientOptions};
use sluice_dataplane::driver::allowed_cores;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::{start_node_command, subscribe_when_listed};

/// Enough for the driver's probe ring (a few pages) and far too little for a worker's
/// rings (about 70 KiB each on 6.x kernels): the case a probe alone does not catch.
const TIGHT_MEMLOCK: libc::rlim_t = 64 * 1024;

/// linux/capability.h (the libc crate does not export capability numbers).
const CAP_IPC_LOCK: libc::c_ulong = 14;

/// `sluice node ARGS` with `confine` run in the child before exec, its log (JSON lines)
/// in `log`.
fn node_command(
    args: &[&str],
    log: &Path,
    confine: impl Fn() -> std::io::Result<()> + Send + Sync + 'static,
) -> tokio::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("node")
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--media-bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"));
    // SAFETY: `confine` makes only async-signal-safe syscalls (no allocation, no locks).
    unsafe { cmd.pre_exec(confine) };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

/// The `node started` log line, parsed (flattened JSON: fields at the top level).
fn started_line(log: &Path) -> serde_json::Value {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "node started")
        .expect("a `node started` line")
}

/// Where each `sluice-wN` thread of `pid` may run, by thread name.
fn worker_affinity(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("sluice-w") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        out.push((comm.to_owned(), cpus));
    }
    out.sort();
    out
}

#[tokio::test]
async fn pinned_workers_stay_inside_the_cpus_the_node_was_given() {
    // The last CPU the test may use: unless the machine has one CPU, not CPU 0, which
    // pinning by index would pick.
    let cpu = *allowed_cores().unwrap().last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let cmd = node_command(&["--workers", "2", "--pin-cores"], &log, move || {
        // SAFETY: a zeroed cpu_set_t is the empty set; `cpu` came from the kernel.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    });
    let (child, _url) = start_node_command(cmd).await;
    let threads = worker_affinity(child.id().unwrap());
    let want: Vec<(String, String)> = ["sluice-w0", "sluice-w1"]
        .iter()
        .map(|w| (w.to_string(), cpu.to_string()))
        .collect();
    assert_eq!(
        threads, want,
        "both workers pinned to CPU {cpu}, the one allowed"
    );
}

/// Drops CAP_IPC_LOCK (with which io_uring charges nothing to the limit, as for root)
/// and sets a memlock limit only the probe's ring fits in.
fn tight_memlock() -> std::io::Result<()> {
    // SAFETY: plain syscalls on this (forked, single-threaded) child.
    unsafe {
        // EPERM without CAP_SETPCAP means we were never root: the capability is absent.
        libc::prctl(libc::PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
        let lim = libc::rlimit {
            rlim_cur: TIGHT_MEMLOCK,
            rlim_max: TIGHT_MEMLOCK,
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One test, not two: io_uring charges the limit per user, across processes, and frees a
/// ring's charge asynchronously, so two confined nodes at once would see each other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memlock_too_small_for_the_rings() {
    auto_driver_falls_back_to_mmsg().await;
    uring_driver_refuses_to_start_and_names_the_limit().await;
}

async fn auto_driver_falls_back_to_mmsg() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let cmd = node_command(&["--workers", "2", "--driver", "auto"], &log, tight_memlock);
    let (mut child, base) = start_node_command(cmd).await;
    let started = started_line(&log);
    let driver = started["driver"].as_str().unwrap().to_owned();
    assert!(driver.contains("Mmsg"), "fell back: {driver}");
    // The probe's small ring fitted; a worker's did not, and the reason says so.
    assert!(
        driver.contains("worker") && driver.contains("RLIMIT_MEMLOCK"),
        "says why: {driver}"
    );

    // And it serves: every packet sent reaches the subscriber.
    let mut publisher = client::publish(&base, "confined", &ClientOptions::default())
        .await
        .expect("publish");
    let sub = subscribe_when_listed(&base, "confined", &publisher.id).await;
    let mut warm = 0u32;
    while sub.stats().packets() == 0 {
        assert!(warm < 500, "nothing forwarded after warm-up");
        publisher.send_audio(b"warm").await.unwrap();
        warm += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = sub.stats().packets();
    const N: u64 = 100;
    for i in 0..N {
        publisher
            .send_audio(format!("a{i}").as_bytes())
            .await
            .unwrap();
    }
    sub.wait_for(Duration::from_secs(10), |st| st.packets() >= before + N)
        .await
        .expect("every packet forwarded");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.stats().packets(), before + N);
    child.kill().await.unwrap();
}

async fn uring_driver_refuses_to_start_and_names_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let mut cmd = node_command(
        &["--workers", "2", "--driver", "uring"],
        &log,
        tight_memlock,
    );
    let status = tokio::time::timeout(Duration::from_secs(30), cmd.status())
        .await
        .expect("exits within 30 s")
        .unwrap();
    assert!(!status.success(), "started without its rings");
    let text = std::fs::read_to_string(&log).unwrap();
    // Whether the probe's ring or a worker's hit the limit, the error names it.
    assert!(
        text.contains("RLIMIT_MEMLOCK") && text.contains("io_uring"),
        "the error names the limit: {text}"
    );
}
