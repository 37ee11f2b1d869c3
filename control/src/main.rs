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
}

/// The state benchmark measures memory with a counting global allocator, which the node
/// binary must not carry, so it lives in its own executable beside this one.
fn state_bench() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot locate the sluice executable: {e}"))?;
    let path = exe.with_file_name(format!("state-bench{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found; build it beside sluice with `cargo build --release -p sluice-control -p sluice-bench`",
            path.display()
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Bench(Bench::State { json, quick, seeds }) => {
            let bench = match state_bench() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("sluice: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut cmd = Command::new(bench);
            if let Some(f) = json {
                cmd.arg("--json").arg(f);
            }
            if quick {
                cmd.arg("--quick");
            }
            if let Some(n) = seeds {
                cmd.arg("--seeds").arg(n.to_string());
            }
            match cmd.status() {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(s) => {
                    eprintln!("sluice: state benchmark failed ({s})");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("sluice: cannot run the state benchmark: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
