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
//! clock hours the fault list does not name and at least [`SETTLE_S`] after
//! the latest injection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::control::anomaly::{AnomalyDetector, DetectorConfig};
use crate::time::{Time, parse_utc};

/// The metrics scored, by the recording's column names.
pub const METRICS: [&str; 5] = [
    "CpuUsageRate(%)",
    "MemoryUsageRate(%)",
    "PodServerLatencyP99(s)",
    "PodSuccessRate(%)",
    "PodWorkload(Ops)",
];
/// A fault counts as caught within this long after its injection.
pub const CATCH_WINDOW_S: f64 = 300.0;
/// Scrapes this soon after an injection are not fault-free.
pub const SETTLE_S: f64 = 900.0;
/// A gap between scrapes counts as observed time up to this long.
const MAX_GAP_S: f64 = 300.0;

#[derive(Debug, Error)]
pub enum IncidentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

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

/// Reads one `<pod>_metric.csv`.
pub fn read_service(path: &Path) -> Result<ServiceSeries, IncidentError> {
    let text = read(path)?;
    let bad = |line: usize, message: String| IncidentError::Parse {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad(1, "empty file".into()))?
        .split(',')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| bad(1, format!("no `{name}` column")))
    };
    let time = column("Time")?;
    let columns = METRICS
        .iter()
        .map(|m| column(m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let cell = |c: usize| cells.get(c).map_or("", |s| s.trim());
        let at = parse_utc(cell(time)).ok_or_else(|| {
            bad(
                i + 2,
                format!("Time {:?} is not a UTC timestamp", cell(time)),
            )
        })?;
        let mut values = [f64::NAN; METRICS.len()];
        for (k, &c) in columns.iter().enumerate() {
            let text = cell(c);
            if !text.is_empty() {
                values[k] = text
                    .parse()
                    .map_err(|e| bad(i + 2, format!("{} {text:?}: {e}", METRICS[k])))?;
            }
        }
        rows.push((at, values));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pod = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("_metric.csv"))
        .unwrap_or_default();
    Ok(ServiceSeries {
        service: service_of(pod).to_owned(),
        times: rows.iter().map(|r| Time::from_secs_f64(r.0)).collect(),
        values: rows.into_iter().map(|r| r.1).collect(),
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
            });
        }
    }
    faults.sort_by_key(|f| f.at);
    Ok((faults, named))
}

/// Each scrape's score (the largest over the metrics) and the metric that
/// gave it.
pub fn score_service(cfg: &DetectorConfig, s: &ServiceSeries) -> Vec<(f64, &'static str)> {
    let mut detectors: Vec<AnomalyDetector> = METRICS
        .iter()
        .map(|_| AnomalyDetector::new(cfg.clone()))
        .collect();
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
            best
        })
        .collect()
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
    let (faults, hours) = read_faults(&fault_list)?;
    let mut series = Vec::new();
    for p in &paths {
        let s = read_service(p)?;
        let scores = score_service(cfg, &s);
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
    let fault_free = |t: Time| {
        let secs = t.as_secs_f64();
        let hour = ((secs.rem_euclid(86_400.0)) / 3_600.0) as u32;
        let settled = faults
            .iter()
            .rev()
            .find(|f| f.at <= t)
            .is_none_or(|f| secs - f.at.as_secs_f64() >= SETTLE_S);
        !hours.contains(&hour) && settled
    };
    let (mut seconds, mut episodes) = (0.0, 0);
    for (s, scores) in &series {
        let mut alarming = false;
        for (i, &t) in s.times.iter().enumerate() {
            if !fault_free(t) {
                alarming = false;
                continue;
            }
            if let Some(&next) = s.times.get(i + 1) {
                seconds += (next.as_secs_f64() - t.as_secs_f64()).min(MAX_GAP_S);
            }
            let alarm = scores[i].0 >= threshold;
            if alarm && !alarming {
                episodes += 1;
            }
            alarming = alarm;
        }
    }
    Ok(IncidentReport {
        threshold,
        faults: outcomes,
        fault_free_service_hours: seconds / 3_600.0,
        false_alarm_episodes: episodes,
    })
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
