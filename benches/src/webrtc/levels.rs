//! A target measured at one load, or ramped: rooms double from the start until a level
//! loses more than the limit (or sessions fail), then the gap between the last level that
//! passed and the first that did not is halved a few times, shrinking or growing the
//! same fleet. The highest passing level is the saturation point.

use super::fleet::{Fleet, Target};
use super::report::TargetResult;
use super::run::{LevelResult, measure};
use super::workload::Workload;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LevelPlan {
    pub rooms: usize,
    pub ramp: bool,
    pub max_rooms: usize,
    /// Loss (fraction) a level may have and pass.
    pub loss_limit: f64,
    /// Longest wait for every subscriber to receive before the warm-up.
    pub settle: Duration,
    pub warmup: Duration,
    pub window: Duration,
    /// Halvings of the gap after the first failing level.
    pub refine: u32,
    pub progress: bool,
}

/// A level passes when nothing failed or was corrupted, loss stayed under the limit, and
/// the publishers kept to at least 95% of their schedule (a generator that falls behind
/// offers less than the level claims).
fn passed(l: &LevelResult, plan: &LevelPlan, w: &Workload) -> bool {
    let scheduled = (l.rooms * w.publishers) as f64 * w.publisher_pps() * l.window_s;
    l.loss < plan.loss_limit
        && l.failed_sessions == 0
        && l.forwarded > 0
        && l.corrupt == 0
        && l.sent as f64 >= 0.95 * scheduled
}

/// Above this share of its core the load generator, not the server, may set the rate.
const BENCH_LIMIT_PCT: f64 = 90.0;

async fn level(
    fleet: &mut Fleet,
    target: &Target,
    w: &Workload,
    rooms: usize,
    plan: &LevelPlan,
    run_id: u64,
) -> LevelResult {
    let spinner = if plan.progress {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    spinner.set_message(format!("{}: setting up {rooms} room(s)", target.name));
    spinner.enable_steady_tick(Duration::from_millis(100));
    if rooms < fleet.rooms() {
        fleet.shrink(rooms).await;
    } else {
        fleet.grow(target, w, rooms, run_id).await;
    }
    spinner.finish_and_clear();
    let bar = if plan.progress {
        ProgressBar::new(plan.window.as_secs().max(1))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{} {rooms} room(s)", target.name));
    let result = measure(
        fleet,
        target.pid,
        target.opaque,
        plan.settle,
        plan.warmup,
        plan.window,
        |s| {
            bar.set_message(format!(
                "{:.0} pps, server {:.0}% CPU, bench {:.0}%",
                s.forwarded_pps, s.server_cpu_pct, s.bench_cpu_pct
            ));
            bar.inc(1);
        },
    )
    .await;
    bar.finish_and_clear();
    result
}

pub async fn run_target(
    target: &Target,
    w: &Workload,
    plan: &LevelPlan,
    run_id: u64,
) -> TargetResult {
    let mut result = TargetResult {
        target: target.name.clone(),
        levels: Vec::new(),
        saturation: None,
        notes: Vec::new(),
    };
    let mut fleet = Fleet::empty();
    let mut rooms = plan.rooms.max(1);
    let (mut good, mut bad): (Option<usize>, Option<usize>) = (None, None);
    let mut refinements = 0;
    loop {
        let l = level(&mut fleet, target, w, rooms, plan, run_id).await;
        let bench_limited = l.bench_cpu_pct > BENCH_LIMIT_PCT;
        // A level the generator could not drive says nothing about the server.
        let ok = passed(&l, plan, w) && !bench_limited;
        if bench_limited {
            result.notes.push(format!(
                "{}, {rooms} room(s): the load generator used {:.0}% of its core and may be the limit{}",
                target.name,
                l.bench_cpu_pct,
                if plan.ramp { "; the ramp stops there" } else { "" }
            ));
        }
        if plan.progress {
            eprintln!(
                "{}: {rooms} room(s), {:.0} forwarded pps, loss {:.3}%, server CPU {} ns/pkt{}",
                target.name,
                l.forwarded_pps,
                l.loss * 100.0,
                l.server_cpu_ns_per_packet
                    .map_or("-".into(), |v| format!("{v:.0}")),
                if ok { "" } else { " (fails)" }
            );
        }
        result.levels.push(l);
        let index = result.levels.len() - 1;
        if ok {
            let best = result.saturation.map_or(0, |i| result.levels[i].rooms);
            if rooms >= best {
                result.saturation = Some(index);
            }
            good = Some(rooms);
        } else {
            bad = Some(bad.map_or(rooms, |b| b.min(rooms)));
        }
        if !plan.ramp || bench_limited {
            break;
        }
        rooms = match (good, bad) {
            // Still climbing.
            (_, None) if rooms * 2 <= plan.max_rooms => rooms * 2,
            (_, None) => break,
            (Some(g), Some(b)) if b > g + 1 && refinements < plan.refine => {
                refinements += 1;
                g + (b - g) / 2
            }
            _ => break,
        };
    }
    if let Some(e) = &fleet.first_error {
        result
            .notes
            .push(format!("{}: sessions failed, the first: {e}", target.name));
    }
    if plan.ramp && result.saturation.is_none() {
        result.notes.push(format!(
            "{}: no level passed (loss under {}%)",
            target.name,
            plan.loss_limit * 100.0
        ));
    }
    fleet.close().await;
    result
}
