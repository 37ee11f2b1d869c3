//! The `sluice` binary. The node itself (`sluice node`) lands with the edge-node work;
//! today it runs the benchmarks that exist.

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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
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
    }
}
