//! The anomaly detector on a real cluster's recorded metrics with labelled
//! fault injections (the Nezha OnlineBoutique layout, see
//! `datasets/incidents/README.md`): per-pod CSVs scraped about every 60 s
//! (`metric/<pod>_metric.csv`) and the injections grouped by hour
//! (`<day>-fault_list.json`).
//!
//! A service's score at a scrape is the largest of its metrics' scores.
//! A fault is *caught* when the faulty service's score reaches the
//! threshold within [`CATCH_WINDOW_S`] after the injection. False alarms
//! are counted as episodes (a run of consecutive scrapes at or above the
//! threshold) per service-hour over the *fault-free* scrapes: those in
//! clock hours the fault list does not name and at least 15 minutes after
//! the latest injection ([`FaultList::fault_free`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::control::anomaly::{AnomalyDetector, DetectorConfig};
use crate::control::callers::EveryCaller;
use crate::control::departure::CALLS;
use crate::metrics::ServiceMetrics;
use crate::time::{Time, parse_utc};
use crate::train::recorded::{CallsInto, EdgeSeries, parse_edges_csv};
use crate::train::validate::CATCH_WINDOW_S;

/// The metrics scored, by the recording's column names.
pub const METRICS: [&str; 5] = [
    "CpuUsageRate(%)",
    "MemoryUsageRate(%)",
    "PodServerLatencyP99(s)",
    "PodSuccessRate(%)",
    "PodWorkload(Ops)",
];
/// A gap between scrapes counts as observed time up to this long.
const MAX_GAP_S: f64 = 300.0;

/// A recording, fault list or Nezha file that could not be read.
pub type IncidentError = super::FileError;

/// One service's scrapes: times and, per scrape, each metric (NaN where
/// the cell is empty).
#[derive(Clone, Debug)]
pub struct ServiceSeries {
    pub service: String,
    pub times: Vec<Time>,
    pub values: Vec<[f64; METRICS.len()]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub at: Time,
    pub service: String,
    pub kind: String,
    /// When the injection stopped, where the list says.
    pub end: Option<Time>,
}

/// Faults with the time they make unfit for counting false alarms.
#[derive(Clone, Debug, Default)]
pub struct FaultList {
    /// In time order: the faults that are scored.
    pub faults: Vec<Fault>,
    /// Faults on services outside the recording ([`FaultList::retain_services`]):
    /// not scored, as nothing watched them, but their windows are no more
    /// fault-free for the services that were watched.
    pub elsewhere: Vec<Fault>,
    /// UTC clock hours set aside for injections (Nezha's grouping): none of
    /// their scrapes is fault-free.
    pub busy_hours: Vec<u32>,
}

/// Scrapes this long after a fault's end are fault-free again.
pub const AFTER_END_S: f64 = 600.0;

impl FaultList {
    /// Scores only the faults of the services `recorded` names and returns
    /// how many were set aside (into [`FaultList::elsewhere`]): a fault on
    /// a service without a recording cannot be warned of, and scored it
    /// would read as every detector's miss.
    pub fn retain_services(&mut self, recorded: impl Fn(&str) -> bool) -> usize {
        let (kept, elsewhere) = std::mem::take(&mut self.faults)
            .into_iter()
            .partition(|f| recorded(&f.service));
        self.faults = kept;
        self.elsewhere = elsewhere;
        self.elsewhere.len()
    }

    /// Reads a Nezha `<day>-fault_list.json`, or a CSV with the header
    /// `t_s,service,kind` and an optional fourth column `end_s` (seconds in
    /// the recording's time base, as its `t_s`).
    pub fn read(path: &Path) -> Result<FaultList, IncidentError> {
        if path.extension().is_some_and(|e| e == "json") {
            let (faults, busy_hours) = read_faults(path)?;
            return Ok(FaultList {
                faults,
                elsewhere: Vec::new(),
                busy_hours,
            });
        }
        let text = read(path)?;
        let bad = |line: usize, message: String| IncidentError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let mut lines = text.lines().enumerate();
        let header = lines.next().map_or("", |(_, h)| h.trim());
        let with_end = match header {
            "t_s,service,kind" => false,
            "t_s,service,kind,end_s" => true,
            _ => {
                return Err(bad(
                    1,
                    "expected the header `t_s,service,kind` or `t_s,service,kind,end_s`".into(),
                ));
            }
        };
        let mut faults = Vec::new();
        for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 3 + with_end as usize {
                return Err(bad(
                    i + 1,
                    format!("{} fields, expected {}", f.len(), 3 + with_end as usize),
                ));
            }
            let secs = |k: usize, name: &str| {
                f[k].parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        bad(
                            i + 1,
                            format!("field `{name}`: `{}` is not a time in seconds", f[k]),
                        )
                    })
            };
            let at = secs(0, "t_s")?;
            let end = match with_end && !f[3].is_empty() {
                true => Some(secs(3, "end_s")?),
                false => None,
            };
            if end.is_some_and(|e| e < at) {
                return Err(bad(i + 1, "field `end_s`: before `t_s`".into()));
            }
            faults.push(Fault {
                at: Time::from_secs_f64(at),
                service: f[1].to_owned(),
                kind: f[2].to_owned(),
                end: end.map(Time::from_secs_f64),
            });
        }
        faults.sort_by_key(|f| f.at);
        Ok(FaultList {
            faults,
            elsewhere: Vec::new(),
            busy_hours: Vec::new(),
        })
    }

    /// Outside every fault's window (its start to [`AFTER_END_S`] after
    /// its end; a fault without an end lasts [`CATCH_WINDOW_S`]) and
    /// outside the busy hours.
    pub fn fault_free(&self, t: Time) -> bool {
        let secs = t.as_secs_f64();
        let hour = (secs.rem_euclid(86_400.0) / 3_600.0) as u32;
        !self.busy_hours.contains(&hour)
            && self.faults.iter().chain(&self.elsewhere).all(|f| {
                let end = f
                    .end
                    .map_or(f.at.as_secs_f64() + CATCH_WINDOW_S, Time::as_secs_f64);
                secs < f.at.as_secs_f64() || secs >= end + AFTER_END_S
            })
    }

    /// False-alarm episodes (runs of consecutive fault-free scrapes that
    /// alarm) of one service, and the fault-free seconds observed (gaps
    /// between scrapes count up to five minutes).
    pub fn false_alarms(
        &self,
        times: &[Time],
        alarms: impl IntoIterator<Item = bool>,
    ) -> (usize, f64) {
        let (mut seconds, mut episodes, mut alarming) = (0.0, 0, false);
        for (i, alarm) in alarms.into_iter().enumerate() {
            let t = times[i];
            if !self.fault_free(t) {
                alarming = false;
                continue;
            }
            if let Some(&next) = times.get(i + 1) {
                seconds += (next.as_secs_f64() - t.as_secs_f64()).min(MAX_GAP_S);
            }
            if alarm && !alarming {
                episodes += 1;
            }
            alarming = alarm;
        }
        (episodes, seconds)
    }
}

/// One fault's outcome.
#[derive(Clone, Debug)]
pub struct FaultOutcome {
    pub fault: Fault,
    /// Whether the detector had warmed up on the service at the injection.
    pub after_warmup: bool,
    /// Seconds from the injection to the first scrape at or above the
    /// threshold, and the metric that scored highest there.
    pub caught: Option<(f64, &'static str)>,
}

#[derive(Clone, Debug)]
pub struct IncidentReport {
    pub threshold: f64,
    pub faults: Vec<FaultOutcome>,
    pub fault_free_service_hours: f64,
    pub false_alarm_episodes: usize,
}

impl IncidentReport {
    pub fn caught(&self) -> usize {
        self.faults.iter().filter(|f| f.caught.is_some()).count()
    }
    pub fn after_warmup(&self) -> usize {
        self.faults.iter().filter(|f| f.after_warmup).count()
    }
    pub fn caught_after_warmup(&self) -> usize {
        self.faults
            .iter()
            .filter(|f| f.after_warmup && f.caught.is_some())
            .count()
    }
    pub fn false_alarms_per_service_hour(&self) -> f64 {
        self.false_alarm_episodes as f64 / self.fault_free_service_hours
    }
}

fn read(path: &Path) -> Result<String, IncidentError> {
    std::fs::read_to_string(path).map_err(|source| IncidentError::Io {
        path: path.to_owned(),
        source,
    })
}

/// `frontend-579b9bff58-t2dbm` is a pod of `frontend`.
pub fn service_of(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (_, _, service) = (parts.next(), parts.next(), parts.next());
    service.unwrap_or(pod)
}

/// The positions of `names` in a CSV header line (cells trimmed); an error
/// names the file and the first missing column.
fn columns(path: &Path, header: Option<&str>, names: &[&str]) -> Result<Vec<usize>, IncidentError> {
    let header: Vec<&str> = header.unwrap_or("").split(',').map(str::trim).collect();
    names
        .iter()
        .map(|name| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| IncidentError::Parse {
                    path: path.to_owned(),
                    line: 1,
                    message: format!("no `{name}` column"),
                })
        })
        .collect()
}

/// Reads one `<pod>_metric.csv`.
pub fn read_service(path: &Path) -> Result<ServiceSeries, IncidentError> {
    let (_, rows) = read_wide(path, "Time", Some(&METRICS))?;
    let pod = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("_metric.csv"))
        .unwrap_or_default();
    Ok(ServiceSeries {
        service: service_of(pod).to_owned(),
        times: rows.iter().map(|r| Time::from_secs_f64(r.0)).collect(),
        values: rows
            .into_iter()
            .map(|(_, v)| std::array::from_fn(|k| v[k]))
            .collect(),
    })
}

/// Reads `<day>-fault_list.json`: hour -> [{inject_timestamp, inject_pod,
/// inject_type}]. Returns the faults in time order and the hours named.
pub fn read_faults(path: &Path) -> Result<(Vec<Fault>, Vec<u32>), IncidentError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        inject_timestamp: String,
        inject_pod: String,
        inject_type: String,
    }
    let text = read(path)?;
    let hours: BTreeMap<String, Vec<Entry>> =
        serde_json::from_str(&text).map_err(|e| IncidentError::Parse {
            path: path.to_owned(),
            line: e.line(),
            message: e.to_string(),
        })?;
    let mut faults = Vec::new();
    let mut named = Vec::new();
    for (hour, entries) in hours {
        named.push(hour.parse().map_err(|_| IncidentError::Parse {
            path: path.to_owned(),
            line: 1,
            message: format!("hour {hour:?} is not a number"),
        })?);
        for e in entries {
            let at: f64 = e
                .inject_timestamp
                .parse()
                .map_err(|_| IncidentError::Parse {
                    path: path.to_owned(),
                    line: 1,
                    message: format!(
                        "inject_timestamp {:?} is not unix seconds",
                        e.inject_timestamp
                    ),
                })?;
            faults.push(Fault {
                at: Time::from_secs_f64(at),
                service: service_of(&e.inject_pod).to_owned(),
                kind: e.inject_type,
                end: None,
            });
        }
    }
    faults.sort_by_key(|f| f.at);
    Ok((faults, named))
}

/// Each scrape's score (the largest over the metrics and the calls into
/// the service from `edges`, as every caller sees them) and the metric
/// that gave it (`calls` for the calls).
pub fn score_service(
    cfg: &DetectorConfig,
    s: &ServiceSeries,
    edges: &[EdgeSeries],
) -> Vec<(f64, &'static str)> {
    let mut detectors: Vec<AnomalyDetector> = METRICS
        .iter()
        .map(|_| AnomalyDetector::new(cfg.clone()))
        .collect();
    let mut calls = CallsInto::new(edges, &s.service, &s.times);
    let mut callers = EveryCaller::new(AnomalyDetector::new(cfg.clone()));
    s.times
        .iter()
        .zip(&s.values)
        .map(|(&t, row)| {
            let mut best = (0.0, METRICS[0]);
            for (k, d) in detectors.iter_mut().enumerate() {
                let score = d.update(t, row[k]);
                if score > best.0 {
                    best = (score, METRICS[k]);
                }
            }
            if let Some(score) = callers.update(t, calls.at(t))
                && score > best.0
            {
                best = (score, CALLS);
            }
            best
        })
        .collect()
}

/// The calls between services of a recording in this layout
/// (`metric/source_50.csv`, see [`import_edges`]); none without the file.
pub fn read_edges(dir: &Path) -> Result<Vec<EdgeSeries>, IncidentError> {
    let path = dir.join("metric").join("source_50.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    parse_edges_csv(&import_edges(dir)?).map_err(|e| IncidentError::Parse {
        path,
        line: e.line,
        message: e.message,
    })
}

/// Scores every service of the recording in `dir` and checks the faults.
pub fn evaluate(
    dir: &Path,
    cfg: &DetectorConfig,
    threshold: f64,
) -> Result<IncidentReport, IncidentError> {
    let metric_dir = dir.join("metric");
    let listing = std::fs::read_dir(&metric_dir).map_err(|source| IncidentError::Io {
        path: metric_dir.clone(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|n| n.ends_with("_metric.csv")))
        .collect();
    paths.sort();
    let fault_list = std::fs::read_dir(dir)
        .map_err(|source| IncidentError::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_str().is_some_and(|n| n.ends_with("-fault_list.json")))
        .ok_or_else(|| IncidentError::Parse {
            path: dir.to_owned(),
            line: 0,
            message: "no <day>-fault_list.json".into(),
        })?;
    let list = FaultList::read(&fault_list)?;
    let faults = &list.faults;
    let edges = read_edges(dir)?;
    let mut series = Vec::new();
    for p in &paths {
        let s = read_service(p)?;
        let scores = score_service(cfg, &s, &edges);
        series.push((s, scores));
    }
    let outcomes = faults
        .iter()
        .map(|f| {
            let found = series.iter().find(|(s, _)| s.service == f.service);
            let (after_warmup, caught) = match found {
                None => (false, None),
                Some((s, scores)) => {
                    let warm = s
                        .times
                        .first()
                        .is_some_and(|&t0| f.at.as_secs_f64() - t0.as_secs_f64() >= cfg.warmup_s);
                    let caught = s.times.iter().zip(scores).find_map(|(&t, &(v, m))| {
                        let after = t.as_secs_f64() - f.at.as_secs_f64();
                        ((0.0..=CATCH_WINDOW_S).contains(&after) && v >= threshold)
                            .then_some((after, m))
                    });
                    (warm, caught)
                }
            };
            FaultOutcome {
                fault: f.clone(),
                after_warmup,
                caught,
            }
        })
        .collect();
    let (mut seconds, mut episodes) = (0.0, 0);
    for (s, scores) in &series {
        let (e, secs) = list.false_alarms(&s.times, scores.iter().map(|v| v.0 >= threshold));
        episodes += e;
        seconds += secs;
    }
    Ok(IncidentReport {
        threshold,
        faults: outcomes,
        fault_free_service_hours: seconds / 3_600.0,
        false_alarm_episodes: episodes,
    })
}

/// The recording's per-pod metrics in the project's recording format (see
/// `train::recorded`), one service per pod:
/// - `cpu_usage`, `memory_usage`: `CpuUsageRate(%)` and
///   `MemoryUsageRate(%)` over 100 (a share of the pod's *limit*);
/// - `request_rate`: `PodWorkload(Ops)`;
/// - `latency_p99_ms`: `PodServerLatencyP99(s)` in ms;
/// - `error_rate`: 1 - `PodSuccessRate(%)` / 100, unmeasured when the
///   column never leaves 0 (not filled in this export); the frontend's
///   comes from `front_service.csv` (with its p50), matched to the nearest
///   scrape within 30 s;
/// - in-flight requests unmeasured; one ready and desired replica.
pub fn import(dir: &Path) -> Result<Vec<(String, Vec<ServiceMetrics>)>, IncidentError> {
    const CPU: usize = 0;
    const MEMORY: usize = 1;
    const P99: usize = 2;
    const SUCCESS: usize = 3;
    const WORKLOAD: usize = 4;
    let metric_dir = dir.join("metric");
    let paths = pod_files(&metric_dir)?;
    let front = front_service(&metric_dir.join("front_service.csv"))?;
    let mut out = Vec::new();
    for p in &paths {
        let s = read_service(p)?;
        let success_filled = s.values.iter().any(|v| v[SUCCESS] > 0.0);
        let scrapes = s
            .times
            .iter()
            .zip(&s.values)
            .map(|(&t, v)| {
                let mut m = ServiceMetrics {
                    timestamp: t,
                    cpu_usage: v[CPU] / 100.0,
                    memory_usage: v[MEMORY] / 100.0,
                    request_rate: v[WORKLOAD],
                    error_rate: if success_filled {
                        1.0 - v[SUCCESS] / 100.0
                    } else {
                        f64::NAN
                    },
                    latency_p50: f64::NAN,
                    latency_p99: v[P99] * 1000.0,
                    active_connections: 0,
                    ready_replicas: 1,
                    desired_replicas: 1,
                };
                if s.service == "frontend"
                    && let Some(&(_, success, p50)) = nearest(&front, t.as_secs_f64())
                {
                    m.error_rate = 1.0 - success / 100.0;
                    m.latency_p50 = p50 * 1000.0;
                }
                m
            })
            .collect();
        out.push((s.service, scrapes));
    }
    Ok(out)
}

/// The `<pod>_metric.csv` files of `metric_dir`, in name order; at least
/// one.
fn pod_files(metric_dir: &Path) -> Result<Vec<PathBuf>, IncidentError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(metric_dir)
        .map_err(|source| IncidentError::Io {
            path: metric_dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|n| n.ends_with("_metric.csv")))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(IncidentError::Parse {
            path: metric_dir.to_owned(),
            line: 0,
            message: "no <pod>_metric.csv files".into(),
        });
    }
    Ok(paths)
}

/// `front_service.csv`: (unix s, success %, p50 s) per row; empty when the
/// file is absent.
fn front_service(path: &Path) -> Result<Vec<(f64, f64, f64)>, IncidentError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let (_, rows) = read_wide(path, "Time", Some(&["SuccessRate(%)", "LatencyP50(s)"]))?;
    Ok(rows.into_iter().map(|(t, v)| (t, v[0], v[1])).collect())
}

/// The row nearest to `t` within 30 s.
fn nearest(rows: &[(f64, f64, f64)], t: f64) -> Option<&(f64, f64, f64)> {
    let i = rows.partition_point(|r| r.0 < t);
    [i.checked_sub(1), Some(i)]
        .into_iter()
        .flatten()
        .filter_map(|k| rows.get(k))
        .filter(|r| (r.0 - t).abs() <= 30.0)
        .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
}

/// The report as Markdown: the headline figures, then one row per fault.
pub fn render(dir: &Path, cfg: &DetectorConfig, r: &IncidentReport) -> String {
    let mut md = format!(
        "# Anomaly detector on {}\n\nDetector settings: `{cfg:?}`, threshold {:.2}.\n\n\
         - faults caught within {:.0} s on the faulty service: {} of {} ({} of the {} injected after the warm-up of {:.0} s)\n\
         - false alarm episodes in the fault-free hours: {} over {:.1} service-hours, {:.3} per service-hour\n\n\
         | injected (unix s) | service | fault | after warm-up | caught after (s) | metric |\n|---|---|---|---|---|---|\n",
        dir.display(),
        r.threshold,
        CATCH_WINDOW_S,
        r.caught(),
        r.faults.len(),
        r.caught_after_warmup(),
        r.after_warmup(),
        cfg.warmup_s,
        r.false_alarm_episodes,
        r.fault_free_service_hours,
        r.false_alarms_per_service_hour(),
    );
    for f in &r.faults {
        let (after, metric) = match f.caught {
            Some((s, m)) => (format!("{s:.0}"), m),
            None => ("-".into(), "-"),
        };
        md.push_str(&format!(
            "| {:.0} | {} | {} | {} | {after} | {metric} |\n",
            f.fault.at.as_secs_f64(),
            f.fault.service,
            f.fault.kind,
            if f.after_warmup { "yes" } else { "no" },
        ));
    }
    md
}

/// Column names and, per row, the Unix time and the values.
type WideTable = (Vec<String>, Vec<(f64, Vec<f64>)>);

/// A CSV with one UTC time column (as the `Time` columns) and numeric
/// columns: `wanted` ones in that order (an error names the first one
/// missing), or with `None` every column but the time and a `timestamp`
/// one; per row in time order, the Unix time and the values (NaN for an
/// empty cell).
fn read_wide(
    path: &Path,
    time_column: &str,
    wanted: Option<&[&str]>,
) -> Result<WideTable, IncidentError> {
    let text = read(path)?;
    let bad = |line: usize, message: String| IncidentError::Parse {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines();
    let header = lines.next();
    let time = columns(path, header, &[time_column])?[0];
    let keep: Vec<(usize, String)> = match wanted {
        Some(names) => columns(path, header, names)?
            .into_iter()
            .zip(names.iter().map(|n| n.to_string()))
            .collect(),
        None => header
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .enumerate()
            .filter(|(i, h)| *i != time && !h.eq_ignore_ascii_case("timestamp"))
            .map(|(i, h)| (i, h.to_owned()))
            .collect(),
    };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |c: usize| cells.get(c).copied().unwrap_or("");
        let at = parse_utc(cell(time)).ok_or_else(|| {
            bad(
                i + 2,
                format!("{time_column} {:?} is not a UTC timestamp", cell(time)),
            )
        })?;
        let values = keep
            .iter()
            .map(|(c, name)| match cell(*c) {
                "" => Ok(f64::NAN),
                text => text
                    .parse::<f64>()
                    .map_err(|e| bad(i + 2, format!("{name} {text:?}: {e}"))),
            })
            .collect::<Result<Vec<f64>, _>>()?;
        rows.push((at, values));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok((keep.into_iter().map(|(_, n)| n).collect(), rows))
}

/// The call edges' scrapes in the twin's `edges.csv` layout
/// (`crate::metrics::EDGES_CSV_HEADER`): `metric/source_50.csv` is the
/// caller's median latency per edge (`caller_callee` columns, seconds);
/// this export has no per-edge request or error rates, so those cells are
/// empty and the twin fits calls per request from the services' rates.
pub fn import_edges(dir: &Path) -> Result<String, IncidentError> {
    let path = dir.join("metric").join("source_50.csv");
    let (names, rows) = read_wide(&path, "time", None)?;
    let mut out = format!("{}\n", crate::metrics::EDGES_CSV_HEADER);
    let edges: Vec<Option<(&str, &str)>> = names.iter().map(|n| n.split_once('_')).collect();
    for (t, values) in &rows {
        for (edge, v) in edges.iter().zip(values) {
            let Some((caller, callee)) = edge else {
                continue;
            };
            let p50 = if v.is_finite() {
                format!("{}", v * 1000.0)
            } else {
                String::new()
            };
            let _ = writeln!(out, "{t},{caller}->{callee},,,{p50},");
        }
    }
    Ok(out)
}

/// One Deployment per service (`deployments.json`, as the API lists
/// them): one replica, and a CPU and memory limit recovered from each
/// pod's usage over its usage share of the limit (the median over
/// scrapes), given as the request too, since the importer's `cpu_usage` is
/// a share of the limit.
pub fn import_deployments(dir: &Path) -> Result<String, IncidentError> {
    let paths = pod_files(&dir.join("metric"))?;
    let mut items = Vec::new();
    for p in &paths {
        let usage = [
            "CpuUsage(m)",
            "CpuUsageRate(%)",
            "MemoryUsage(Mi)",
            "MemoryUsageRate(%)",
        ];
        let (_, rows) = read_wide(p, "Time", Some(&usage))?;
        let limit = |u: usize, s: usize| -> Option<f64> {
            let mut v: Vec<f64> = rows
                .iter()
                .filter(|r| r.1[s] > 0.0 && r.1[u] > 0.0)
                .map(|r| r.1[u] / r.1[s] * 100.0)
                .collect();
            super::median(&mut v)
        };
        let pod = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix("_metric.csv"))
            .unwrap_or_default();
        let mut resources = serde_json::Map::new();
        if let Some(m) = limit(0, 1) {
            resources.insert("cpu".into(), format!("{:.0}m", m.max(1.0)).into());
        }
        if let Some(mi) = limit(2, 3) {
            resources.insert("memory".into(), format!("{:.0}Mi", mi.max(1.0)).into());
        }
        items.push(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": service_of(pod)},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{
                "name": service_of(pod),
                "resources": {"requests": resources, "limits": resources},
            }]}}},
        }));
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    Ok(serde_json::to_string_pretty(&list).expect("JSON values serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_map_to_their_service() {
        assert_eq!(service_of("frontend-579b9bff58-t2dbm"), "frontend");
        assert_eq!(
            service_of("productcatalogservice-668d5f85fb-jhwx9"),
            "productcatalogservice"
        );
        assert_eq!(service_of("solo"), "solo");
    }
}
