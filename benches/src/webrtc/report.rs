//! The results as people read them: a table, a JSON document, and an SVG plot of the
//! forwarded rate, CPU and latency over each run's window.

use super::run::LevelResult;
use super::workload::Workload;
use plotters::prelude::*;
use serde::Serialize;
use std::fmt::Write;

/// One target's measurement: a fixed load, or every level of a ramp.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: String,
    pub levels: Vec<LevelResult>,
    /// Ramp: the highest level with loss under the limit (index into `levels`).
    pub saturation: Option<usize>,
    pub notes: Vec<String>,
}

impl TargetResult {
    /// The level the table reports: the ramp's saturation point, else the last level.
    pub fn headline(&self) -> Option<&LevelResult> {
        self.saturation
            .and_then(|i| self.levels.get(i))
            .or(self.levels.last())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub verify_every: u64,
    pub targets: Vec<TargetResult>,
    /// Packets per server CPU-second, each target against the first.
    pub notes: Vec<String>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// The final table: one row per target (its headline level).
pub fn table(report: &Report) -> String {
    let mut rows = vec![
        [
            "target",
            "rooms",
            "sessions",
            "fwd pps",
            "fwd Mbit/s",
            "loss %",
            "corrupt",
            "lat p50/p99/p999 ms",
            "setup p50/p99 ms",
            "server CPU %",
            "CPU ns/pkt",
            "pkts/CPU-s",
            "bench CPU %",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in &report.targets {
        let Some(l) = t.headline() else {
            rows.push(vec![t.target.clone(), "no result".into()]);
            continue;
        };
        let server_pct = l.server_cpu_s.map(|s| s / l.window_s * 100.0);
        rows.push(vec![
            t.target.clone(),
            l.rooms.to_string(),
            format!(
                "{}{}",
                l.sessions,
                if l.failed_sessions > 0 {
                    format!(" ({} failed)", l.failed_sessions)
                } else {
                    String::new()
                }
            ),
            format!("{:.0}", l.forwarded_pps),
            l.forwarded_bps
                .map_or_else(|| "(opaque)".to_owned(), |b| format!("{:.1}", b / 1e6)),
            format!("{:.3}", l.loss * 100.0),
            l.corrupt.to_string(),
            format!(
                "{}/{}/{}",
                opt(l.latency_p50_ms, 2),
                opt(l.latency_p99_ms, 2),
                opt(l.latency_p999_ms, 2)
            ),
            format!("{}/{}", opt(l.setup_p50_ms, 0), opt(l.setup_p99_ms, 0)),
            opt(server_pct, 1),
            opt(l.server_cpu_ns_per_packet, 0),
            opt(l.server_cpu_ns_per_packet.map(|ns| 1e9 / ns), 0),
            format!("{:.0}", l.bench_cpu_pct),
        ]);
    }
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| format!("{v:>w$}", w = widths[c]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1))
            );
        }
    }
    for n in report
        .notes
        .iter()
        .chain(report.targets.iter().flat_map(|t| &t.notes))
    {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Three panels over time (forwarded packets/s, server CPU %, latency p50 and p99),
/// one line per target's headline level, as SVG.
pub fn plot_svg(report: &Report) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((3, 1));
        let series: Vec<(&str, &LevelResult)> = report
            .targets
            .iter()
            .filter_map(|t| Some((t.target.as_str(), t.headline()?)))
            .collect();
        let t_max = series
            .iter()
            .flat_map(|(_, l)| l.samples.iter().map(|s| s.t))
            .fold(1.0, f64::max);
        type Pick = fn(&super::run::Sample) -> Option<f64>;
        let charts: [(&str, Vec<(&str, Pick)>); 3] = [
            ("forwarded packets/s", vec![("", |s| Some(s.forwarded_pps))]),
            ("server CPU %", vec![("", |s| Some(s.server_cpu_pct))]),
            (
                "latency ms (p50, p99 dashed)",
                vec![("p50", |s| s.latency_p50_ms), ("p99", |s| s.latency_p99_ms)],
            ),
        ];
        for (area, (title, lines)) in panels.iter().zip(charts.iter()) {
            let y_max = series
                .iter()
                .flat_map(|(_, l)| l.samples.iter())
                .flat_map(|s| lines.iter().filter_map(move |(_, f)| f(s)))
                .fold(1.0, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(*title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..t_max, 0.0..y_max)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (name, l)) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                for (j, (suffix, f)) in lines.iter().enumerate() {
                    let points: Vec<(f64, f64)> = l
                        .samples
                        .iter()
                        .filter_map(|s| Some((s.t, f(s)?)))
                        .collect();
                    let label = if suffix.is_empty() {
                        (*name).to_owned()
                    } else {
                        format!("{name} {suffix}")
                    };
                    let style = if j == 0 {
                        color.stroke_width(2)
                    } else {
                        color.stroke_width(1)
                    };
                    chart
                        .draw_series(LineSeries::new(points, style))
                        .map_err(|e| e.to_string())?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
