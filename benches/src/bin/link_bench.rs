//! `link-bench`: the cascade's link benchmark (issue 6). Two cluster link endpoints
//! through the impairment relay (default 10 Mbit/s, 40 ms RTT, 1% random loss each
//! way): bulk datagram throughput for BBR and Cubic side by side; offered media above
//! the rate through the link shaper while the bottleneck halves and recovers; CPU per
//! relayed packet on the link path beside a raw UDP reference.
//!
//! Usage: `link-bench [--json FILE] [--quick] [options]`; `--help` lists them.

use sluice_bench::impair::Impairment;
use sluice_bench::link::pair::{Controller, PathSpec};
use sluice_bench::link::report::{
    LinkReport, PathDesc, bulk_table, cpu_table, media_summary, media_timeline,
};
use sluice_bench::link::{bulk, cpu, media};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: link-bench [--json FILE] [--quick] [--rate-mbit 10] [--rtt-ms 40]
    [--loss 0.01] [--jitter-ms 0] [--queue-kb 256] [--bulk-s 20] [--only bulk,media,cpu]
    [--controllers quinn-bbr,cubic,link-bbr] [--cpu-pps 10000] [--cpu-bytes 1200] [--timeline] [--trace]";

struct Args {
    json: Option<String>,
    quick: bool,
    rate: u64,
    rtt_ms: f64,
    loss: f64,
    jitter_ms: f64,
    queue: usize,
    bulk_s: u64,
    parts: Vec<String>,
    controllers: Vec<Controller>,
    cpu_pps: u64,
    cpu_bytes: usize,
    timeline: bool,
    trace: bool,
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut a = Args {
        json: None,
        quick,
        rate: 10_000_000,
        rtt_ms: 40.0,
        loss: 0.01,
        jitter_ms: 0.0,
        queue: 256 * 1024,
        bulk_s: if quick { 8 } else { 20 },
        parts: vec!["bulk".into(), "media".into(), "cpu".into()],
        controllers: vec![Controller::QuinnBbr, Controller::Cubic, Controller::LinkBbr],
        cpu_pps: 10_000,
        cpu_bytes: 1200,
        timeline: false,
        trace: false,
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        let f = |v: String| v.parse::<f64>().map_err(|_| format!("bad number {v:?}"));
        match arg.as_str() {
            "--quick" => {}
            "--timeline" => a.timeline = true,
            "--trace" => a.trace = true,
            "--json" => a.json = Some(val()?),
            "--rate-mbit" => a.rate = (f(val()?)? * 1e6) as u64,
            "--rtt-ms" => a.rtt_ms = f(val()?)?,
            "--loss" => a.loss = f(val()?)?,
            "--jitter-ms" => a.jitter_ms = f(val()?)?,
            "--queue-kb" => a.queue = (f(val()?)? * 1024.0) as usize,
            "--bulk-s" => a.bulk_s = f(val()?)? as u64,
            "--cpu-pps" => a.cpu_pps = f(val()?)? as u64,
            "--cpu-bytes" => a.cpu_bytes = f(val()?)? as usize,
            "--only" => a.parts = val()?.split(',').map(str::to_owned).collect(),
            "--controllers" => {
                a.controllers = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--help" | "-h" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    if a.rate == 0 || !(0.0..1.0).contains(&a.loss) || a.cpu_bytes < 12 || a.cpu_bytes > 1200 {
        return Err(format!("out-of-range option\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(ok) if ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("link-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<bool, String> {
    let one_way = Duration::from_secs_f64(args.rtt_ms / 2000.0);
    let path = PathSpec {
        impairment: Impairment {
            delay: one_way,
            jitter: Duration::from_secs_f64(args.jitter_ms / 1000.0),
            loss: args.loss,
            rate_bps: Some(args.rate),
            queue_bytes: args.queue,
            ..Impairment::default()
        },
    };
    let desc = PathDesc {
        rate_bps: args.rate,
        rtt_ms: args.rtt_ms,
        loss: args.loss,
        jitter_ms: args.jitter_ms,
        queue_bytes: args.queue,
    };
    let want = |p: &str| args.parts.iter().any(|x| x == p);
    let mut bulk_rows = Vec::new();
    if want("bulk") {
        let warmup = Duration::from_secs(if args.quick { 3 } else { 5 });
        for &c in &args.controllers {
            eprintln!("bulk: {} ...", c.name());
            bulk_rows.push(
                bulk::run(
                    c,
                    &path,
                    warmup,
                    Duration::from_secs(args.bulk_s),
                    args.trace,
                )
                .await?,
            );
        }
        println!("{}", bulk_table(&desc, &bulk_rows));
    }
    let mut media_rows = Vec::new();
    if want("media") {
        let config = media::MediaConfig::standard(args.quick, args.rate);
        for &c in &args.controllers {
            eprintln!("media: {} ...", c.name());
            media_rows.push(media::run(c, &path, &config).await?);
        }
        println!(
            "offered media above the rate, through the shaper (bottleneck steps {:?} Mbit/s; summaries leave out each step's first {} s):",
            config
                .phases
                .iter()
                .map(|p| p.1 as f64 / 1e6)
                .collect::<Vec<_>>(),
            config.settle
        );
        println!("{}", media_summary(&media_rows));
        if args.timeline {
            for m in &media_rows {
                println!("{}", media_timeline(m));
            }
        }
    }
    let mut cpu_row = None;
    if want("cpu") {
        eprintln!("cpu ...");
        let (warmup, window) = if args.quick { (1, 3) } else { (2, 8) };
        let c = cpu::run(
            args.cpu_pps,
            args.cpu_bytes,
            Duration::from_secs(warmup),
            Duration::from_secs(window),
        )
        .await?;
        println!("{}", cpu_table(&c));
        cpu_row = Some(c);
    }
    let report = LinkReport::new(desc, bulk_rows, media_rows, cpu_row);
    let a = &report.acceptance;
    println!(
        "acceptance ({}): goodput >= 85% of the bottleneck: {}; audio never dropped: {}; upper layers shed: {}",
        a.controller.as_deref().unwrap_or("-"),
        verdict(a.bbr_at_least_85),
        verdict(a.audio_never_dropped),
        verdict(a.upper_layers_shed)
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok([
        a.bbr_at_least_85,
        a.audio_never_dropped,
        a.upper_layers_shed,
    ]
    .iter()
    .all(|v| v.unwrap_or(true)))
}

fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "not run",
    }
}
