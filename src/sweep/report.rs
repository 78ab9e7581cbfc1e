//! The report of a sweep: polars tables (Parquet and CSV), charts and a
//! static `index.html` that opens in a browser without a server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use super::charts::{self, ChartError, Marker, Pareto, Timeline};
use super::compare;
use super::headline;
use super::run::RunRecord;
use super::stats::{Estimate, bootstrap_mean};
use super::{SweepError, io_at};
use crate::CsvError;

const RESAMPLES: usize = 2000;
const BOOTSTRAP_SEED: u64 = 0x5EED;
/// Timelines drawn at most (one per selected run, in matrix order).
const MAX_TIMELINES: usize = 12;

/// Writes table `name` as `<name>.parquet` and `<name>.csv`; an error,
/// in building the frame or in writing it, names the table.
fn write_frame(dir: &Path, name: &str, df: PolarsResult<DataFrame>) -> Result<(), SweepError> {
    let table = |source| SweepError::Table {
        name: name.to_string(),
        source,
    };
    let mut df = df.map_err(table)?;
    let parquet = dir.join(format!("{name}.parquet"));
    let f = File::create(&parquet).map_err(io_at(&parquet))?;
    ParquetWriter::new(f).finish(&mut df).map_err(table)?;
    let csv = dir.join(format!("{name}.csv"));
    let f = File::create(&csv).map_err(io_at(&csv))?;
    CsvWriter::new(f)
        .include_header(true)
        .finish(&mut df)
        .map_err(table)?;
    Ok(())
}

fn runs_frame(rs: &[RunRecord]) -> PolarsResult<DataFrame> {
    use super::run::{Cell, CellKind};
    let columns = RunRecord::COLUMNS
        .iter()
        .zip(RunRecord::KINDS)
        .enumerate()
        .map(|(k, (&name, kind))| {
            let cells = rs.iter().map(|r| r.cell(k));
            match kind {
                CellKind::Text => Column::new(
                    name.into(),
                    cells
                        .map(|c| match c {
                            Cell::Text(t) => t.to_string(),
                            _ => unreachable!("a text column"),
                        })
                        .collect::<Vec<_>>(),
                ),
                CellKind::Int => Column::new(
                    name.into(),
                    cells
                        .map(|c| match c {
                            Cell::Int(i) => i,
                            _ => unreachable!("an integer column"),
                        })
                        .collect::<Vec<_>>(),
                ),
                CellKind::Num => Column::new(
                    name.into(),
                    cells
                        .map(|c| match c {
                            Cell::Num(x) => x,
                            _ => unreachable!("a number column"),
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect();
    DataFrame::new_infer_height(columns)
}

/// One aggregate row: a group's estimates of the headline figures.
struct Aggregate {
    group: Vec<String>,
    violation: Estimate,
    failed: Estimate,
    cost: Estimate,
    actions: Estimate,
}

fn aggregate(rs: &[RunRecord], key: impl Fn(&RunRecord) -> Vec<String>) -> Vec<Aggregate> {
    let mut groups: BTreeMap<Vec<String>, Vec<&RunRecord>> = BTreeMap::new();
    for r in rs {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(group, runs)| {
            let est = |f: fn(&RunRecord) -> f64| {
                bootstrap_mean(
                    &runs.iter().map(|r| f(r)).collect::<Vec<_>>(),
                    RESAMPLES,
                    BOOTSTRAP_SEED,
                )
            };
            Aggregate {
                group,
                violation: est(|r| r.slo_violation_s),
                failed: est(|r| r.failed as f64),
                cost: est(|r| r.replica_seconds),
                actions: est(|r| r.scaling_actions as f64),
            }
        })
        .collect()
}

fn aggregate_frame(names: &[&str], rows: &[Aggregate]) -> PolarsResult<DataFrame> {
    let mut cols: Vec<Column> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Column::new(
                (*n).into(),
                rows.iter().map(|r| r.group[i].clone()).collect::<Vec<_>>(),
            )
        })
        .collect();
    cols.push(Column::new(
        "runs".into(),
        rows.iter()
            .map(|r| r.violation.n as u64)
            .collect::<Vec<_>>(),
    ));
    for (name, f) in [
        (
            "slo_violation_s",
            (|a: &Aggregate| a.violation) as fn(&Aggregate) -> Estimate,
        ),
        ("failed", |a: &Aggregate| a.failed),
        ("replica_seconds", |a: &Aggregate| a.cost),
        ("scaling_actions", |a: &Aggregate| a.actions),
    ] {
        cols.push(Column::new(
            format!("{name}_mean").into(),
            rows.iter().map(|r| f(r).mean).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            format!("{name}_ci_lo").into(),
            rows.iter().map(|r| f(r).lo).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            format!("{name}_ci_hi").into(),
            rows.iter().map(|r| f(r).hi).collect::<Vec<_>>(),
        ));
    }
    DataFrame::new_infer_height(cols)
}

/// The long per-second table of every run that kept its series.
#[derive(Default)]
struct SeriesColumns {
    index: Vec<u64>,
    t: Vec<f64>,
    requests: Vec<f64>,
    ready: Vec<f64>,
    desired: Vec<f64>,
    p99_ms: Vec<f64>,
    error_ratio: Vec<f64>,
}

/// A run's saved series (see `run::series_csv`).
fn read_series(path: &Path, title: String) -> Result<Timeline, SweepError> {
    let text = std::fs::read_to_string(path).map_err(io_at(path))?;
    let mut tl = Timeline {
        title,
        t: vec![],
        requests: vec![],
        ready: vec![],
        desired: vec![],
        p99_ms: vec![],
        error_ratio: vec![],
        markers: vec![],
    };
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.splitn(9, ',').collect();
        if f.len() < 9 {
            return Err(SweepError::Line {
                path: path.to_path_buf(),
                error: CsvError::new(i + 1, "expected 9 fields"),
            });
        }
        let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
        let t = num(f[0]);
        let (ok, failed) = (num(f[2]), num(f[4]));
        tl.t.push(t);
        tl.requests.push(num(f[1]));
        tl.ready.push(num(f[5]));
        tl.desired.push(num(f[6]));
        tl.p99_ms.push(num(f[7]));
        tl.error_ratio.push(if ok + failed > 0.0 {
            failed / (ok + failed)
        } else {
            0.0
        });
        let marker = f[8].trim_matches('"');
        for m in marker.split(" / ").filter(|m| !m.is_empty()) {
            tl.markers.push((t, Marker::of_label(m), m.to_string()));
        }
    }
    Ok(tl)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn est_cell(e: &Estimate) -> String {
    format!("{:.1} <small>[{:.1}, {:.1}]</small>", e.mean, e.lo, e.hi)
}

/// Writes every table, chart and the index for a sweep's records.
pub fn write(
    dir: &Path,
    name: &str,
    description: &str,
    records: &[RunRecord],
) -> Result<(), SweepError> {
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(io_at(&charts_dir))?;
    write_frame(dir, "runs", runs_frame(records))?;

    let by_controller = aggregate(records, |r| vec![r.controller.clone()]);
    write_frame(
        dir,
        "aggregate_controller",
        aggregate_frame(&["controller"], &by_controller),
    )?;
    let by_scenario = aggregate(records, |r| {
        vec![r.scenario.clone(), r.params.clone(), r.controller.clone()]
    });
    write_frame(
        dir,
        "aggregate_scenario",
        aggregate_frame(&["scenario", "params", "controller"], &by_scenario),
    )?;
    let by_fault = aggregate(records, |r| {
        vec![
            if r.faults.is_empty() {
                "none".into()
            } else {
                r.faults.clone()
            },
            r.controller.clone(),
        ]
    });
    write_frame(
        dir,
        "aggregate_fault",
        aggregate_frame(&["fault", "controller"], &by_fault),
    )?;

    // Per-second series of the runs that kept one, as one long table.
    let mut cols = SeriesColumns::default();
    let mut timelines = Vec::new();
    for r in records {
        let path = dir.join("series").join(format!("{}.csv", r.index));
        if !path.exists() {
            continue;
        }
        let title = format!(
            "{} {} {} seed {}",
            r.scenario, r.params, r.controller, r.seed
        );
        let tl = read_series(&path, title)?;
        cols.index
            .extend(std::iter::repeat_n(r.index as u64, tl.t.len()));
        cols.t.extend(&tl.t);
        cols.requests.extend(&tl.requests);
        cols.ready.extend(&tl.ready);
        cols.desired.extend(&tl.desired);
        cols.p99_ms.extend(&tl.p99_ms);
        cols.error_ratio.extend(&tl.error_ratio);
        if timelines.len() < MAX_TIMELINES {
            timelines.push((r.index, tl));
        }
    }
    let ts = DataFrame::new_infer_height(vec![
        Column::new("index".into(), cols.index),
        Column::new("t_s".into(), cols.t),
        Column::new("requests".into(), cols.requests),
        Column::new("ready".into(), cols.ready),
        Column::new("desired".into(), cols.desired),
        Column::new("p99_ms".into(), cols.p99_ms),
        Column::new("error_ratio".into(), cols.error_ratio),
    ]);
    write_frame(dir, "timeseries", ts)?;

    let controllers: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in records {
            if !v.contains(&r.controller) {
                v.push(r.controller.clone());
            }
        }
        v
    };
    let ci = |c: &str| controllers.iter().position(|x| x == c).unwrap_or(0);
    let pareto = Pareto {
        controllers: controllers.clone(),
        points: by_scenario
            .iter()
            .map(|a| (ci(&a.group[2]), a.cost.mean, a.violation.mean))
            .collect(),
        means: by_controller
            .iter()
            .map(|a| (ci(&a.group[0]), a.cost.mean, a.violation.mean))
            .collect(),
    };
    charts::pareto(&charts_dir, "pareto", &pareto)?;
    for (index, tl) in &timelines {
        charts::timeline(&charts_dir, &format!("timeline_{index}"), tl)?;
    }

    // Chaos experiments: the paired comparison and MTTR distributions.
    let comparison = compare::compare(records);
    let false_healings = compare::false_healing_rates(records);
    let mut mttr_charts = Vec::new();
    if !comparison.is_empty() {
        let md = compare::markdown(&comparison, &false_healings);
        let comparison_md = dir.join("comparison.md");
        std::fs::write(&comparison_md, &md).map_err(io_at(&comparison_md))?;
        write_frame(dir, "comparison", comparison_frame(&comparison))?;
        // Rows come grouped by scenario, arms in matrix order.
        for (si, rows) in comparison
            .chunk_by(|a, b| a.scenario == b.scenario)
            .enumerate()
        {
            let sc = &rows[0].scenario;
            let groups: Vec<(String, Vec<f64>)> = rows
                .iter()
                .map(|r| (r.arm.clone(), r.mttr_samples.clone()))
                .collect();
            let max = groups
                .iter()
                .flat_map(|g| g.1.iter().copied())
                .fold(0.0, f64::max);
            let name = format!("mttr_{si}");
            charts::histogram(
                &charts_dir,
                &name,
                &charts::Histogram {
                    title: format!("MTTR, {sc}"),
                    x_desc:
                        "seconds from the fault's start to recovery (unrecovered: to the run's end)"
                            .into(),
                    bin: (max / 30.0).max(5.0).ceil(),
                    groups,
                },
            )?;
            mttr_charts.push((sc.to_string(), name));
        }
    }

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{n} - selfheal sweep</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f0f0f0}}td:first-child,th:first-child{{text-align:left}}small{{color:#666}}img{{max-width:100%;border:1px solid #ddd;margin:0.5em 0}}</style></head><body>\n<h1>Sweep <code>{n}</code></h1>\n<p>{d}</p><p>{runs} runs. Means over runs with 95&nbsp;% bootstrap intervals. Tables: <a href=\"runs.csv\">runs.csv</a> (<a href=\"runs.parquet\">parquet</a>), <a href=\"aggregate_controller.csv\">aggregate_controller.csv</a>, <a href=\"aggregate_scenario.csv\">aggregate_scenario.csv</a>, <a href=\"aggregate_fault.csv\">aggregate_fault.csv</a>, <a href=\"timeseries.parquet\">timeseries.parquet</a>.</p>\n",
        n = html_escape(name),
        d = html_escape(description),
        runs = records.len()
    );
    h.push_str(&headline_html(
        records,
        &comparison,
        &false_healings,
        &charts_dir,
    )?);
    h.push_str("<h2>Per controller</h2>\n<table><tr><th>controller</th><th>runs</th><th>SLO violation s</th><th>failed requests</th><th>replica-seconds</th><th>scaling actions</th></tr>\n");
    for a in &by_controller {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&a.group[0]),
            a.violation.n,
            est_cell(&a.violation),
            est_cell(&a.failed),
            est_cell(&a.cost),
            est_cell(&a.actions)
        );
    }
    h.push_str("</table>\n<h2>Cost against SLO violations</h2>\n<p>Small dots: one scenario variant (mean over seeds); triangles: the controller's mean.</p>\n<img src=\"charts/pareto.png\" alt=\"Pareto chart\"> <a href=\"charts/pareto.svg\">SVG</a>\n");
    h.push_str("<h2>Per fault type</h2>\n<table><tr><th>fault</th><th>controller</th><th>runs</th><th>SLO violation s</th><th>failed requests</th><th>replica-seconds</th></tr>\n");
    for a in &by_fault {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&a.group[0]),
            html_escape(&a.group[1]),
            a.violation.n,
            est_cell(&a.violation),
            est_cell(&a.failed),
            est_cell(&a.cost)
        );
    }
    h.push_str("</table>\n<h2>Per scenario</h2>\n<table><tr><th>scenario</th><th>parameters</th><th>controller</th><th>runs</th><th>SLO violation s</th><th>failed requests</th><th>replica-seconds</th></tr>\n");
    for a in &by_scenario {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&a.group[0]),
            html_escape(&a.group[1]),
            html_escape(&a.group[2]),
            a.violation.n,
            est_cell(&a.violation),
            est_cell(&a.failed),
            est_cell(&a.cost)
        );
    }
    h.push_str("</table>\n");
    if !comparison.is_empty() {
        h.push_str("<h2>Chaos experiments</h2>\n<p>Per fault scenario, each arm against the first (the baseline), paired by seed. MTTR runs from the fault's start to the first of N consecutive passing probes of the steady-state hypothesis; an unrecovered run counts with the time to the end of the run. Ratios are arm / baseline means with paired 95&nbsp;% bootstrap intervals. Tables: <a href=\"comparison.csv\">comparison.csv</a>, <a href=\"comparison.md\">comparison.md</a>.</p>\n<table><tr><th>scenario</th><th>arm</th><th>runs</th><th>recovered</th><th>detection s</th><th>MTTR s</th><th>MTTR ratio</th><th>failed requests</th><th>failed ratio</th><th>healing actions</th></tr>\n");
        for r in &comparison {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&r.scenario),
                html_escape(&r.arm),
                r.runs,
                r.recovered,
                est_cell(&r.detection),
                est_cell(&r.mttr),
                ratio_html(&r.mttr_ratio),
                est_cell(&r.failed),
                ratio_html(&r.failed_ratio),
                est_cell(&r.healing_actions)
            );
        }
        h.push_str("</table>\n");
        if !false_healings.is_empty() {
            h.push_str("<table><tr><th>controller</th><th>fault-free runs</th><th>simulated hours</th><th>false healings per hour</th></tr>\n");
            for (c, runs, hours, rate) in &false_healings {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{runs}</td><td>{hours:.1}</td><td>{rate:.3}</td></tr>",
                    html_escape(c)
                );
            }
            h.push_str("</table>\n");
        }
        for (sc, name) in &mttr_charts {
            let _ = writeln!(
                h,
                "<img src=\"charts/{name}.png\" alt=\"MTTR distribution, {}\"> <a href=\"charts/{name}.svg\">SVG</a>",
                html_escape(sc)
            );
        }
    }
    h.push_str("<h2>Timelines</h2>\n<p>Load, pods, p99 and error ratio per second; red lines: faults start and end; grey lines: scaling actions.</p>\n");
    for (index, tl) in &timelines {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<img src=\"charts/timeline_{index}.png\" alt=\"timeline of run {index}\"> <a href=\"charts/timeline_{index}.svg\">SVG</a>",
            html_escape(&tl.title)
        );
    }
    h.push_str("</body></html>\n");
    let index = dir.join("index.html");
    std::fs::write(&index, h).map_err(io_at(&index))
}

/// An arm's ratio to its baseline as a table cell (`None`: the baseline).
fn ratio_html(e: &Option<Estimate>) -> String {
    e.as_ref().map_or("baseline".to_string(), |e| {
        if e.mean.is_finite() {
            format!("{:.2}x <small>[{:.2}, {:.2}]</small>", e.mean, e.lo, e.hi)
        } else {
            "failures where the baseline had none".into()
        }
    })
}

fn counts_text(c: &[usize; 4], what: &str) -> String {
    format!(
        "{what} lower on {}, higher on {} and not clearly different on {}{}",
        c[0],
        c[1],
        c[2],
        if c[3] > 0 {
            format!(" (no runs to compare on {})", c[3])
        } else {
            String::new()
        }
    )
}

/// The top of the page: what the figures say, from the runs (healing
/// against its baseline; controllers against HPA's curve), with the two
/// headline charts. Empty for a sweep with neither.
fn headline_html(
    records: &[RunRecord],
    comparison: &[compare::ArmRow],
    false_healings: &[(String, u64, f64, f64)],
    charts_dir: &Path,
) -> Result<String, ChartError> {
    let healing = headline::healing(comparison);
    let curve = headline::against_hpa_curve(records);
    if healing.is_empty() && curve.is_none() {
        return Ok(String::new());
    }
    let mut h = String::from("<h2>What this shows</h2>\n");
    for s in &healing {
        let seeds = comparison
            .iter()
            .filter(|r| r.arm == s.arm)
            .map(|r| r.runs)
            .max()
            .unwrap_or(0);
        let _ = write!(
            h,
            "<p><b>Self-healing.</b> On {} fault experiments, <code>{}</code> against <code>{}</code>, paired over {seeds} seeds each: {}; {}. Time to recovery (MTTR) runs from the fault's start until the steady-state hypothesis holds again; failed requests are those that failed from the fault's start. Lower or higher means the whole 95&nbsp;% interval of the ratio (arm / baseline) lies below or above 1.",
            s.faults,
            html_escape(&s.arm),
            html_escape(&s.baseline),
            counts_text(&s.mttr, "MTTR"),
            counts_text(&s.failed, "failed requests"),
        );
        for (c, _, hours, rate) in false_healings.iter().filter(|f| f.0 == s.arm) {
            let _ = write!(
                h,
                " False healings (healing commands on fault-free runs) of <code>{}</code>: {rate:.3} per hour over {hours:.1} simulated hours.",
                html_escape(c)
            );
        }
        h.push_str("</p>\n");
    }
    if !healing.is_empty() {
        h.push_str("<table><tr><th>fault</th><th>arm</th><th>MTTR s, baseline</th><th>MTTR s, arm</th><th>MTTR ratio</th><th>failed requests, baseline</th><th>failed requests, arm</th><th>failed ratio</th></tr>\n");
        let mut categories = Vec::new();
        let (mut mttr, mut failed) = (Vec::new(), Vec::new());
        let bounds = |e: &Option<Estimate>| {
            e.as_ref()
                .filter(|e| e.mean.is_finite())
                .map(|e| (e.mean, e.lo, e.hi))
        };
        for group in comparison.chunk_by(|a, b| a.scenario == b.scenario) {
            let base = &group[0];
            for r in group.iter().skip(1).filter(|r| !r.fault.is_empty()) {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
                    html_escape(&r.fault),
                    html_escape(&r.arm),
                    base.mttr.mean,
                    r.mttr.mean,
                    ratio_html(&r.mttr_ratio),
                    base.failed.mean,
                    r.failed.mean,
                    ratio_html(&r.failed_ratio),
                );
                categories.push(if healing.len() > 1 {
                    format!("{} ({})", r.fault, r.arm)
                } else {
                    r.fault.clone()
                });
                mttr.push(bounds(&r.mttr_ratio));
                failed.push(bounds(&r.failed_ratio));
            }
        }
        h.push_str("</table>\n");
        charts::ratios(
            charts_dir,
            "healing",
            &charts::Ratios {
                title: "Self-healing against its baseline, per fault".into(),
                categories,
                measures: vec![("MTTR".into(), mttr), ("failed requests".into(), failed)],
            },
        )?;
        h.push_str("<img src=\"charts/healing.png\" alt=\"healing ratios per fault\"> <a href=\"charts/healing.svg\">SVG</a>\n");
    }
    if let Some(c) = curve {
        let targets: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
        let _ = write!(
            h,
            "<p><b>Scaling against HPA's curve.</b> HPA at {} % CPU traces, on each scenario, what a CPU-target scaler buys with replicas: a curve of replica-seconds against SLO-violation seconds. Every other controller is read off that curve at its own cost (linear interpolation; outside HPA's range, the nearest point). Below the curve means fewer violation seconds than HPA at the same cost.</p>\n<table><tr><th>controller</th><th>scenarios</th><th>below HPA's curve</th><th>SLO violation s</th><th>HPA's curve at that cost</th><th>ratio</th><th>failed requests</th><th>HPA's curve at that cost</th><th>replica-seconds</th></tr>\n",
            targets.join(", ")
        );
        for s in &c.summaries {
            let ratio = if s.curve_violation > 0.0 {
                format!("{:.2}x", s.violation / s.curve_violation)
            } else {
                "–".into()
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{ratio}</td><td>{:.1}</td><td>{:.1}</td><td>{:.0}</td></tr>",
                html_escape(&s.controller),
                s.variants,
                s.below,
                s.violation,
                s.curve_violation,
                s.failed,
                s.curve_failed,
                s.cost
            );
        }
        h.push_str("</table>\n<p><small>Sums over the scenarios with a curve (means over seeds in each).</small></p>\n");
        charts::curve(
            charts_dir,
            "hpa_curve",
            &charts::CurveChart {
                title: "Controllers against HPA's curve".into(),
                hpa: c
                    .hpa_means
                    .iter()
                    .map(|(t, p)| (*t, p.cost, p.violation))
                    .collect(),
                others: c
                    .other_means
                    .iter()
                    .map(|(n, p)| (n.clone(), p.cost, p.violation))
                    .collect(),
            },
        )?;
        h.push_str("<img src=\"charts/hpa_curve.png\" alt=\"controllers against HPA's curve\"> <a href=\"charts/hpa_curve.svg\">SVG</a>\n");
    }
    Ok(h)
}

fn comparison_frame(rows: &[compare::ArmRow]) -> PolarsResult<DataFrame> {
    let s = |f: fn(&compare::ArmRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let u = |f: fn(&compare::ArmRow) -> usize| rows.iter().map(|r| f(r) as u64).collect::<Vec<_>>();
    let mut cols = vec![
        Column::new("scenario".into(), s(|r| r.scenario.clone())),
        Column::new("fault".into(), s(|r| r.fault.clone())),
        Column::new("arm".into(), s(|r| r.arm.clone())),
        Column::new("runs".into(), u(|r| r.runs)),
        Column::new("recovered".into(), u(|r| r.recovered)),
        Column::new("aborted".into(), u(|r| r.aborted)),
    ];
    const NONE: Estimate = Estimate {
        mean: f64::NAN,
        lo: f64::NAN,
        hi: f64::NAN,
        n: 0,
    };
    for (name, f) in [
        (
            "detection_s",
            (|r: &compare::ArmRow| r.detection) as fn(&compare::ArmRow) -> Estimate,
        ),
        ("mttr_s", |r| r.mttr),
        ("fault_failed", |r| r.failed),
        ("slo_violation_s", |r| r.violation),
        ("healing_actions", |r| r.healing_actions),
        ("mttr_ratio", |r| r.mttr_ratio.unwrap_or(NONE)),
        ("failed_ratio", |r| r.failed_ratio.unwrap_or(NONE)),
    ] {
        for (suffix, g) in [
            ("mean", (|e: Estimate| e.mean) as fn(Estimate) -> f64),
            ("ci_lo", |e| e.lo),
            ("ci_hi", |e| e.hi),
        ] {
            cols.push(Column::new(
                format!("{name}_{suffix}").into(),
                rows.iter().map(|r| g(f(r))).collect::<Vec<_>>(),
            ));
        }
    }
    DataFrame::new_infer_height(cols)
}

/// The images `index.html` links, for checks that every one exists.
pub fn linked_images(index_html: &str) -> Vec<String> {
    index_html
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(String::from)
        .collect()
}
