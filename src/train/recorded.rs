//! Recorded live metrics as a labelled dataset, so that the same trainer
//! and validation serve the live cluster: `selfheal-k8s record` writes, per
//! service, `<service>-metrics.csv` (the simulator's `metrics.csv` format)
//! and `<service>-sli.csv` (the share of requests that succeeded within the
//! SLO latency at each scrape). Each recording is one run of the dataset;
//! its labels come from the same health rules as simulated traces
//! (`HealthConfig::classify` on the SLI, worst state over the horizon).
//! A recording from elsewhere may lack the SLI file; its states then come
//! from the error rate and the p99 against the SLO latency
//! ([`ServiceRecording::states`]). Scrapes may come at any interval; a
//! model with relative inputs trains on them held onto the traces' time
//! base, in the traces' latency units ([`load_dir_on_time_base`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::traces::{Dataset, Health, HealthConfig, LoadFamily, Row, RunPlan, TracesConfig};
use crate::CsvError;
use crate::control::predictor::patterns::{P50, P99};
use crate::metrics::{ServiceMetrics, parse_metrics_csv};
use crate::time::Time;

pub use crate::metrics::{EDGES_CSV_HEADER, SLI_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "{dir}: no recordings (expected <service>-metrics.csv beside <service>-sli.csv, as `selfheal-k8s record` writes them)"
    )]
    Empty { dir: PathBuf },
}

fn file_err(path: &Path, message: impl ToString) -> RecordedError {
    RecordedError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Reads `t_s,sli` lines; an error names the line.
pub fn parse_sli_csv(text: &str) -> Result<Vec<(f64, f64)>, CsvError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == SLI_HEADER => {}
        _ => {
            return Err(CsvError::new(
                1,
                format!("expected the header `{SLI_HEADER}`"),
            ));
        }
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let (t, v) = l
                .split_once(',')
                .ok_or_else(|| CsvError::new(line, "expected `t_s,sli`"))?;
            let t: f64 = t
                .parse()
                .map_err(|_| CsvError::field(line, "t_s", format!("`{t}` is not a number")))?;
            let v: f64 = v
                .parse()
                .map_err(|_| CsvError::field(line, "sli", format!("`{v}` is not a number")))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(CsvError::field(
                    line,
                    "sli",
                    format!("{v} is not in [0, 1]"),
                ));
            }
            Ok((t, v))
        })
        .collect()
}

/// One service's recording: its scrapes (any interval; empty cells are
/// unmeasured metrics) and, when the source has one, its SLI per scrape.
#[derive(Clone, Debug)]
pub struct ServiceRecording {
    pub service: String,
    pub path: PathBuf,
    pub scrapes: Vec<ServiceMetrics>,
    pub sli: Option<Vec<f64>>,
}

/// Without an SLO latency, a service's objective is this multiple of its
/// median p99 over the recording: "about three times slower than usual".
pub const DEFAULT_SLO_LATENCY_FACTOR: f64 = 3.0;

impl ServiceRecording {
    /// The latency objective: `given`, or [`DEFAULT_SLO_LATENCY_FACTOR`]
    /// times the recording's median p99 (NaN without any latency).
    pub fn slo_latency_ms(&self, given: Option<f64>) -> f64 {
        if let Some(ms) = given {
            return ms;
        }
        let mut p99: Vec<f64> = self
            .scrapes
            .iter()
            .map(|m| m.latency_p99)
            .filter(|x| x.is_finite())
            .collect();
        if p99.is_empty() {
            return f64::NAN;
        }
        p99.sort_by(f64::total_cmp);
        DEFAULT_SLO_LATENCY_FACTOR * p99[p99.len() / 2]
    }

    /// Each scrape's health: from the SLI where the recording has one;
    /// otherwise from the error rate as if it were the SLI, and at least
    /// degraded while the p99 exceeds the SLO latency (more than 1 % of
    /// requests are then slower than the objective). Unmeasured metrics
    /// count as healthy.
    pub fn states(&self, slo_latency_ms: f64, health: &HealthConfig) -> Vec<Health> {
        match &self.sli {
            Some(sli) => sli.iter().map(|&s| health.classify(s)).collect(),
            None => self
                .scrapes
                .iter()
                .map(|m| {
                    let errors = if m.error_rate.is_finite() {
                        health.classify(1.0 - m.error_rate)
                    } else {
                        Health::Healthy
                    };
                    if m.latency_p99 > slo_latency_ms {
                        errors.max(Health::Degraded)
                    } else {
                        errors
                    }
                })
                .collect(),
        }
    }
}

/// Each scrape's label: the worst state over the scrapes in
/// `(t, t + horizon]` (none when the recording ends before `t + horizon`),
/// and the seconds to the first scrape in that span that is not healthy.
pub fn worst_ahead(
    times: &[f64],
    states: &[Health],
    horizon_s: f64,
) -> Vec<(Option<Health>, Option<f64>)> {
    let end = times.last().copied().unwrap_or(0.0);
    times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let future = (i + 1..times.len()).take_while(|&k| times[k] <= t + horizon_s);
            let label = (t + horizon_s <= end + 1e-9).then(|| {
                future
                    .clone()
                    .map(|k| states[k])
                    .max()
                    .unwrap_or(Health::Healthy)
            });
            let time_to_breach_s = future
                .clone()
                .find(|&k| states[k] != Health::Healthy)
                .map(|k| times[k] - t);
            (label, time_to_breach_s)
        })
        .collect()
}

/// One recording's rows: features per scrape, labelled by [`worst_ahead`].
pub fn label(
    run: u32,
    scrapes: &[ServiceMetrics],
    states: &[Health],
    cfg: &TracesConfig,
) -> Vec<Row> {
    let times: Vec<f64> = scrapes.iter().map(|m| m.timestamp.as_secs_f64()).collect();
    scrapes
        .iter()
        .zip(worst_ahead(&times, states, cfg.horizon_s))
        .enumerate()
        .map(|(i, (m, (label, time_to_breach_s)))| Row {
            run,
            service: 0,
            scrape: i as u32,
            t_s: times[i],
            features: crate::control::predictor::scrape_row(m),
            label,
            time_to_breach_s,
            fault: None,
        })
        .collect()
}

/// Catches the usual unit mistakes: shares written as percentages, and
/// negative values.
fn check_units(line: usize, m: &ServiceMetrics) -> Result<(), CsvError> {
    let shares = [
        ("memory_usage", m.memory_usage, 2.0),
        ("error_rate", m.error_rate, 1.0),
    ];
    for (name, v, max) in shares {
        if v > max {
            return Err(CsvError::field(
                line,
                name,
                format!(
                    "{v} is not a share (a memory share of the limit, an error share of requests; percentages must be divided by 100)"
                ),
            ));
        }
    }
    let all = [
        ("cpu_usage", m.cpu_usage),
        ("memory_usage", m.memory_usage),
        ("request_rate", m.request_rate),
        ("error_rate", m.error_rate),
        ("latency_p50_ms", m.latency_p50),
        ("latency_p99_ms", m.latency_p99),
    ];
    match all.iter().find(|(_, v)| *v < 0.0 || v.is_infinite()) {
        Some((name, v)) => Err(CsvError::field(line, name, format!("{v} is out of range"))),
        None => Ok(()),
    }
}

/// Every `<service>-metrics.csv` in `dir` with its `<service>-sli.csv` when
/// there is one, by service name.
pub fn read_dir(dir: &Path) -> Result<Vec<ServiceRecording>, RecordedError> {
    let mut metrics_files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| file_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-metrics.csv"))
        })
        .collect();
    metrics_files.sort();
    let mut out = Vec::new();
    for path in metrics_files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let service = name.trim_end_matches("-metrics.csv").to_owned();
        let sli_path = path.with_file_name(format!("{service}-sli.csv"));
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        let rows = parse_metrics_csv(&text).map_err(|e| file_err(&path, e))?;
        if rows.is_empty() {
            return Err(file_err(&path, "no scrapes (a header and nothing else)"));
        }
        // One service per file: rows of several (a simulator's
        // metrics.csv of all services, copied whole) would read as one
        // service's scrapes.
        if let Some(i) = rows.iter().position(|(s, _)| *s != rows[0].0) {
            return Err(file_err(
                &path,
                CsvError::field(
                    i + 2,
                    "service",
                    format!(
                        "`{}` after `{}` on line 2 (one service per file, `<service>-metrics.csv`)",
                        rows[i].0, rows[0].0
                    ),
                ),
            ));
        }
        let scrapes: Vec<ServiceMetrics> = rows.into_iter().map(|(_, m)| m).collect();
        if let Some(i) = scrapes
            .windows(2)
            .position(|w| w[1].timestamp <= w[0].timestamp)
        {
            return Err(file_err(
                &path,
                format!("line {}: scrape times must increase", i + 3),
            ));
        }
        for (i, m) in scrapes.iter().enumerate() {
            check_units(i + 2, m).map_err(|e| file_err(&path, e))?;
        }
        let sli = match std::fs::read_to_string(&sli_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(file_err(&sli_path, e)),
            Ok(sli_text) => {
                let sli = parse_sli_csv(&sli_text).map_err(|e| file_err(&sli_path, e))?;
                if sli.len() != scrapes.len()
                    || sli
                        .iter()
                        .zip(&scrapes)
                        .any(|((t, _), m)| (t - m.timestamp.as_secs_f64()).abs() > 1e-3)
                {
                    return Err(file_err(
                        &sli_path,
                        format!(
                            "its {} times do not match the {} scrapes of {}",
                            sli.len(),
                            scrapes.len(),
                            path.display()
                        ),
                    ));
                }
                Some(sli.into_iter().map(|(_, v)| v).collect())
            }
        };
        out.push(ServiceRecording {
            service,
            path,
            scrapes,
            sli,
        });
    }
    if out.is_empty() {
        return Err(RecordedError::Empty {
            dir: dir.to_owned(),
        });
    }
    Ok(out)
}

/// One call edge's scrapes; an empty cell is NaN (not measured).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EdgeSeries {
    pub caller: String,
    pub callee: String,
    pub t: Vec<f64>,
    pub request_rate: Vec<f64>,
    pub error_rate: Vec<f64>,
    pub latency_p50_ms: Vec<f64>,
    pub latency_p99_ms: Vec<f64>,
}

/// Reads [`EDGES_CSV_HEADER`] rows into one series per edge.
pub fn parse_edges_csv(text: &str) -> Result<Vec<EdgeSeries>, CsvError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == EDGES_CSV_HEADER => {}
        _ => {
            return Err(CsvError::new(
                1,
                format!("expected the header `{EDGES_CSV_HEADER}`"),
            ));
        }
    }
    let names: Vec<&str> = EDGES_CSV_HEADER.split(',').collect();
    let mut by_edge: BTreeMap<(String, String), EdgeSeries> = BTreeMap::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 1;
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != names.len() {
            return Err(CsvError::new(
                line_no,
                format!("{} fields, expected {}", f.len(), names.len()),
            ));
        }
        let Some((caller, callee)) = crate::scenario::edge_ends(f[1]) else {
            return Err(CsvError::field(
                line_no,
                "edge",
                format!("{:?} is not `caller->callee`", f[1]),
            ));
        };
        if caller == "client" {
            continue;
        }
        let num = |k: usize| -> Result<f64, CsvError> {
            if f[k].is_empty() {
                return Ok(f64::NAN);
            }
            match f[k].parse::<f64>() {
                Ok(v) if v >= 0.0 || v.is_nan() => Ok(v),
                Ok(v) => Err(CsvError::field(
                    line_no,
                    names[k],
                    format!("{v} is negative"),
                )),
                Err(e) => Err(CsvError::field(
                    line_no,
                    names[k],
                    format!("{:?}: {e}", f[k]),
                )),
            }
        };
        let t = num(0)?;
        let (rate, err, p50, p99) = (num(2)?, num(3)?, num(4)?, num(5)?);
        let e = by_edge
            .entry((caller.to_owned(), callee.to_owned()))
            .or_insert_with(|| EdgeSeries {
                caller: caller.to_owned(),
                callee: callee.to_owned(),
                ..Default::default()
            });
        if e.t.last().is_some_and(|&last| t <= last) {
            return Err(CsvError::field(
                line_no,
                "t_s",
                format!("{t} does not follow {caller}->{callee}'s last scrape"),
            ));
        }
        e.t.push(t);
        e.request_rate.push(rate);
        e.error_rate.push(err);
        e.latency_p50_ms.push(p50);
        e.latency_p99_ms.push(p99);
    }
    Ok(by_edge.into_values().collect())
}

/// Reads `dir/edges.csv` ([`EDGES_CSV_HEADER`]: the calls between
/// services as their callers see them) when the source has one; no edges
/// without it.
pub fn read_edges(dir: &Path) -> Result<Vec<EdgeSeries>, RecordedError> {
    let path = dir.join("edges.csv");
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(file_err(&path, e)),
        Ok(text) => parse_edges_csv(&text).map_err(|e| file_err(&path, e)),
    }
}

/// The calls into one service, read scrape by scrape: at a scrape, each
/// caller's latency of its calls (p99, else p50 where the source has only
/// that) from its edge sample within half a scrape interval, each sample
/// once; NaN for a caller without a fresh one.
pub struct CallsInto<'a> {
    edges: Vec<&'a EdgeSeries>,
    /// Per edge, its next sample not yet read.
    next: Vec<usize>,
    half_interval_s: f64,
    values: Vec<(&'a str, f64)>,
}

impl<'a> CallsInto<'a> {
    /// The calls into `service`, to be read at its scrape `times`.
    pub fn new(edges: &'a [EdgeSeries], service: &str, times: &[Time]) -> Self {
        let edges: Vec<&EdgeSeries> = edges.iter().filter(|e| e.callee == service).collect();
        let mut gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        gaps.sort_by(f64::total_cmp);
        let interval_s = if gaps.is_empty() {
            0.0
        } else {
            crate::metrics::quantile_of_sorted(&gaps, 0.5)
        };
        CallsInto {
            next: vec![0; edges.len()],
            values: Vec::with_capacity(edges.len()),
            half_interval_s: 0.5 * interval_s,
            edges,
        }
    }

    /// Each caller's latency at the scrape at `now`.
    pub fn at(&mut self, now: Time) -> &[(&'a str, f64)] {
        let (from, until) = (
            now.as_secs_f64() - self.half_interval_s,
            now.as_secs_f64() + self.half_interval_s,
        );
        self.values.clear();
        for (e, next) in self.edges.iter().zip(&mut self.next) {
            let end = e.t.partition_point(|&t| t <= until);
            let latency = match end.checked_sub(1) {
                Some(k) if k >= *next && e.t[k] >= from => {
                    let p99 = e.latency_p99_ms[k];
                    if p99.is_finite() {
                        p99
                    } else {
                        e.latency_p50_ms[k]
                    }
                }
                _ => f64::NAN,
            };
            *next = (*next).max(end);
            self.values.push((e.caller.as_str(), latency));
        }
        &self.values
    }
}

/// Every recording in `dir` as one dataset, with `cfg`'s window, horizon
/// and health rules and the recordings' own scrape interval. Recordings
/// without an SLI are labelled by [`ServiceRecording::states`] with
/// `slo_latency_ms` or each service's default objective.
pub fn load_dir(
    dir: &Path,
    cfg: &TracesConfig,
    slo_latency_ms: Option<f64>,
) -> Result<Dataset, RecordedError> {
    load_dir_scaled(dir, cfg, slo_latency_ms, None)
}

/// [`load_dir`] with each service's latencies rescaled so that its SLO
/// latency reads as the traces' `traces_slo_latency_ms`: how `validate`
/// reads a recording, since it scores every detector against the traces'
/// objective (relative inputs divide by it, the thresholds compare with
/// it).
pub fn load_dir_in_traces_units(
    dir: &Path,
    cfg: &TracesConfig,
    slo_latency_ms: Option<f64>,
    traces_slo_latency_ms: f64,
) -> Result<Dataset, RecordedError> {
    load_dir_scaled(dir, cfg, slo_latency_ms, Some(traces_slo_latency_ms))
}

fn load_dir_scaled(
    dir: &Path,
    cfg: &TracesConfig,
    slo_latency_ms: Option<f64>,
    traces_slo_latency_ms: Option<f64>,
) -> Result<Dataset, RecordedError> {
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    let mut intervals = Vec::new();
    let mut duration: f64 = 0.0;
    for rec in read_dir(dir)? {
        let scrapes = &rec.scrapes;
        intervals.extend(
            scrapes
                .windows(2)
                .map(|w| (w[1].timestamp - w[0].timestamp).as_secs_f64()),
        );
        if let (Some(a), Some(b)) = (scrapes.first(), scrapes.last()) {
            duration = duration.max((b.timestamp - a.timestamp).as_secs_f64());
        }
        let id = runs.len() as u32;
        let slo = rec.slo_latency_ms(slo_latency_ms);
        let states = rec.states(slo, &cfg.health);
        let mut labelled = label(id, scrapes, &states, cfg);
        if let Some(traces_slo) = traces_slo_latency_ms {
            scale_latencies(&mut labelled, latency_scale(&rec, slo, traces_slo)?);
        }
        rows.extend(labelled);
        runs.push(recorded_run(id, &rec, scrapes));
    }
    intervals.sort_by(f64::total_cmp);
    let interval = intervals
        .get(intervals.len() / 2)
        .copied()
        .unwrap_or(cfg.scrape_interval_s);
    Ok(recorded_dataset(cfg, interval, duration, runs, rows))
}

/// The plan of a recorded run: no seed, no fault, the recording's mean rate.
fn recorded_run(id: u32, rec: &ServiceRecording, scrapes: &[ServiceMetrics]) -> RunPlan {
    RunPlan {
        id,
        seed: 0,
        load: LoadFamily::Trace,
        rate: scrapes.iter().map(|m| m.request_rate).sum::<f64>() / scrapes.len().max(1) as f64,
        fault: None,
        scenario: format!("recorded: {}", rec.path.display()),
    }
}

fn recorded_dataset(
    cfg: &TracesConfig,
    interval_s: f64,
    duration_s: f64,
    runs: Vec<RunPlan>,
    rows: Vec<Row>,
) -> Dataset {
    Dataset {
        config: TracesConfig {
            runs: runs.len(),
            duration_s,
            scrape_interval_s: interval_s,
            fault_free_fraction: 1.0,
            faults: vec![],
            loads: vec![LoadFamily::Trace],
            controller: "recorded".into(),
            ..cfg.clone()
        },
        runs,
        controller: "recorded".into(),
        rows,
    }
}

/// Every recording in `dir` as a dataset on the time base of `cfg`'s
/// traces (`cfg.scrape_interval_s`), for a model with relative inputs,
/// alone or beside generated traces ([`Dataset::append`]): every scrape
/// held until the next, as such a model reads coarse scrapes; a gap
/// longer than a window's span starts a new run (nothing is held across
/// it); the latencies rescaled so that the service's SLO latency
/// (`slo_latency_ms`, or its default objective) reads as the traces'
/// `traces_slo_latency_ms`, because the trainer divides every window's
/// latencies by the traces' objective. Labels come from the recording's
/// own scrapes, held the same way.
pub fn load_dir_on_time_base(
    dir: &Path,
    cfg: &TracesConfig,
    slo_latency_ms: Option<f64>,
    traces_slo_latency_ms: f64,
) -> Result<Dataset, RecordedError> {
    let step = cfg.scrape_interval_s;
    // A window's span: 295 s for 60 scrapes 5 s apart.
    let window_s = cfg.window.saturating_sub(1) as f64 * step;
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    let mut duration: f64 = 0.0;
    for rec in read_dir(dir)? {
        let slo = rec.slo_latency_ms(slo_latency_ms);
        let scale = latency_scale(&rec, slo, traces_slo_latency_ms)?;
        let states = rec.states(slo, &cfg.health);
        for segment in held_segments(&rec.scrapes, step, window_s) {
            let id = runs.len() as u32;
            let held: Vec<ServiceMetrics> = segment
                .iter()
                .map(|&(t, k)| ServiceMetrics {
                    timestamp: t,
                    ..rec.scrapes[k].clone()
                })
                .collect();
            let held_states: Vec<Health> = segment.iter().map(|&(_, k)| states[k]).collect();
            let mut labelled = label(id, &held, &held_states, cfg);
            scale_latencies(&mut labelled, scale);
            rows.extend(labelled);
            duration = duration.max((segment.len() - 1) as f64 * step);
            runs.push(recorded_run(id, &rec, &held));
        }
    }
    Ok(recorded_dataset(cfg, step, duration, runs, rows))
}

/// The factor that makes the service's SLO latency `slo` read as
/// `traces_slo`.
fn latency_scale(rec: &ServiceRecording, slo: f64, traces_slo: f64) -> Result<f32, RecordedError> {
    if !(slo.is_finite() && slo > 0.0) {
        return Err(file_err(
            &rec.path,
            "no p99 latency to set the service's SLO latency from (three times its median p99)",
        ));
    }
    Ok((traces_slo / slo) as f32)
}

fn scale_latencies(rows: &mut [Row], scale: f32) {
    for r in rows {
        r.features[P50] *= scale;
        r.features[P99] *= scale;
    }
}

/// The times of a grid every `step_s` from the first scrape to the last,
/// each with the scrape it holds (the latest at or before it), cut where
/// the held scrape is older than `max_hold_s`: the grid resumes at the next
/// scrape as a new segment.
fn held_segments(
    scrapes: &[ServiceMetrics],
    step_s: f64,
    max_hold_s: f64,
) -> Vec<Vec<(Time, usize)>> {
    let mut segments: Vec<Vec<(Time, usize)>> = Vec::new();
    let mut current: Vec<(Time, usize)> = Vec::new();
    let Some(first) = scrapes.first() else {
        return segments;
    };
    let secs = |k: usize| scrapes[k].timestamp.as_secs_f64();
    let end = secs(scrapes.len() - 1);
    // Grid times as start + n steps, so that no rounding accumulates.
    let (mut start, mut n, mut k) = (first.timestamp.as_secs_f64(), 0u32, 0);
    loop {
        let t = start + n as f64 * step_s;
        if t > end + 1e-9 {
            break;
        }
        while k + 1 < scrapes.len() && secs(k + 1) <= t + 1e-9 {
            k += 1;
        }
        if t - secs(k) > max_hold_s {
            segments.push(std::mem::take(&mut current));
            // The grid resumes on the next scrape's own time.
            k += 1;
            (start, n) = (secs(k), 0);
            continue;
        }
        current.push((Time::from_secs_f64(t), k));
        n += 1;
    }
    // Every segment holds its first scrape (held for no time at all).
    segments.push(current);
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Span, Time};

    fn scrape(t: f64) -> ServiceMetrics {
        ServiceMetrics {
            timestamp: Time::ZERO + Span::from_secs_f64(t),
            cpu_usage: 0.5,
            memory_usage: 0.4,
            request_rate: 100.0,
            error_rate: 0.0,
            latency_p50: 10.0,
            latency_p99: 40.0,
            active_connections: 3,
            ready_replicas: 2,
            desired_replicas: 2,
        }
    }

    #[test]
    fn labels_are_the_worst_sli_state_ahead_with_the_time_to_breach() {
        let cfg = TracesConfig {
            horizon_s: 10.0,
            ..TracesConfig::default()
        };
        let scrapes: Vec<_> = (0..6).map(|i| scrape(5.0 * i as f64)).collect();
        // Healthy, healthy, degraded at 10 s, critical at 15 s, healthy.
        let sli = [1.0, 0.995, 0.97, 0.5, 1.0, 1.0];
        let states: Vec<Health> = sli.iter().map(|&s| cfg.health.classify(s)).collect();
        let rows = label(0, &scrapes, &states, &cfg);
        let got: Vec<_> = rows.iter().map(|r| (r.label, r.time_to_breach_s)).collect();
        assert_eq!(
            got,
            vec![
                (Some(Health::Degraded), Some(10.0)),
                (Some(Health::Critical), Some(5.0)),
                (Some(Health::Critical), Some(5.0)),
                (Some(Health::Healthy), None),
                // The recording ends before these scrapes' horizon.
                (None, None),
                (None, None),
            ]
        );
        assert_eq!(rows[2].features[0], 0.5);
    }

    #[test]
    fn bad_sli_files_name_the_line_and_field() {
        assert_eq!(parse_sli_csv("t,x\n").unwrap_err().line, 1);
        let e = parse_sli_csv("t_s,sli\n0,1\n5,abc\n").unwrap_err();
        assert!(e.line == 3 && e.message.contains("`sli`"), "{e}");
        let e = parse_sli_csv("t_s,sli\n0,1.5\n").unwrap_err();
        assert!(e.message.contains("not in [0, 1]"), "{e}");
    }

    #[test]
    fn edges_group_by_caller_and_callee_and_skip_the_client() {
        let edges = parse_edges_csv(&format!(
            "{EDGES_CSV_HEADER}\n0,a->b,10,0,5,9\n0,client->a,10,0,7,12\n5,a->b,12,,6,10\n"
        ))
        .unwrap();
        assert_eq!(edges.len(), 1);
        assert_eq!(
            (edges[0].caller.as_str(), edges[0].callee.as_str()),
            ("a", "b")
        );
        assert_eq!(edges[0].request_rate, vec![10.0, 12.0]);
        assert!(edges[0].error_rate[1].is_nan());
        let err = parse_edges_csv(&format!("{EDGES_CSV_HEADER}\n0,ab,1,0,1,1\n")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("`edge`"), "{err}");
    }

    #[test]
    fn the_calls_into_a_service_are_read_once_each_within_half_a_scrape() {
        let edge = |caller: &str, t: Vec<f64>, p50: Vec<f64>, p99: Vec<f64>| EdgeSeries {
            caller: caller.into(),
            callee: "b".into(),
            request_rate: vec![f64::NAN; t.len()],
            error_rate: vec![f64::NAN; t.len()],
            t,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
        };
        let edges = [
            // p99 where measured, else p50.
            edge(
                "a",
                vec![1.0, 61.0, 200.0],
                vec![4.0, 5.0, 6.0],
                vec![9.0, f64::NAN, 8.0],
            ),
            // Not into `b`.
            EdgeSeries {
                callee: "c".into(),
                ..edge("a", vec![0.0], vec![1.0], vec![1.0])
            },
        ];
        let times: Vec<Time> = [0.0, 60.0, 120.0, 180.0].map(Time::from_secs_f64).to_vec();
        let mut calls = CallsInto::new(&edges, "b", &times);
        let mut read = |t: f64| calls.at(Time::from_secs_f64(t)).to_vec();
        assert_eq!(read(0.0), vec![("a", 9.0)]);
        assert_eq!(read(60.0), vec![("a", 5.0)]);
        // Nothing new within half a scrape (30 s) of 120 s; at 180 s the
        // sample at 200 s is 20 s ahead, within half a scrape.
        assert!(read(120.0)[0].1.is_nan());
        assert_eq!(read(180.0), vec![("a", 8.0)]);
        assert!(read(180.0)[0].1.is_nan());
    }
}
