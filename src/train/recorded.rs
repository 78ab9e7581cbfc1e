//! Recorded live metrics as a labelled dataset, so that the same trainer
//! and validation serve the live cluster: `selfheal-k8s record` writes, per
//! service, `<service>-metrics.csv` (the simulator's `metrics.csv` format)
//! and `<service>-sli.csv` (the share of requests that succeeded within the
//! SLO latency at each scrape). Each recording is one run of the dataset;
//! its labels come from the same health rules as simulated traces
//! (`HealthConfig::classify` on the SLI, worst state over the horizon).

use std::path::{Path, PathBuf};

use super::traces::{Dataset, Health, LoadFamily, Row, RunPlan, TracesConfig};
use crate::metrics::{ServiceMetrics, parse_metrics_csv};

pub const SLI_HEADER: &str = "t_s,sli";

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
pub fn parse_sli_csv(text: &str) -> Result<Vec<(f64, f64)>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == SLI_HEADER => {}
        _ => return Err(format!("line 1: expected the header `{SLI_HEADER}`")),
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let (t, v) = l
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected `t_s,sli`", i + 1))?;
            let t: f64 = t
                .parse()
                .map_err(|_| format!("line {}: field `t_s`: `{t}` is not a number", i + 1))?;
            let v: f64 = v
                .parse()
                .map_err(|_| format!("line {}: field `sli`: `{v}` is not a number", i + 1))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("line {}: field `sli`: {v} is not in [0, 1]", i + 1));
            }
            Ok((t, v))
        })
        .collect()
}

/// One recording's rows: features per scrape, the label of each scrape the
/// worst state over the scrapes in `(t, t + horizon]` (none when the
/// recording ends before `t + horizon`).
pub fn label(run: u32, scrapes: &[ServiceMetrics], sli: &[f64], cfg: &TracesConfig) -> Vec<Row> {
    let states: Vec<Health> = sli.iter().map(|&s| cfg.health.classify(s)).collect();
    let times: Vec<f64> = scrapes.iter().map(|m| m.timestamp.as_secs_f64()).collect();
    let end = times.last().copied().unwrap_or(0.0);
    scrapes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let t = times[i];
            let future = (i + 1..scrapes.len()).take_while(|&k| times[k] <= t + cfg.horizon_s);
            let label = (t + cfg.horizon_s <= end + 1e-9).then(|| {
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
            Row {
                run,
                service: 0,
                scrape: i as u32,
                t_s: t,
                features: crate::control::predictor::scrape_row(m),
                label,
                time_to_breach_s,
                fault: None,
            }
        })
        .collect()
}

/// Every recording in `dir` as one dataset, with `cfg`'s window, horizon
/// and health rules and the recordings' own scrape interval.
pub fn load_dir(dir: &Path, cfg: &TracesConfig) -> Result<Dataset, RecordedError> {
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
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    let mut intervals = Vec::new();
    let mut duration: f64 = 0.0;
    for path in metrics_files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let service = name.trim_end_matches("-metrics.csv");
        let sli_path = path.with_file_name(format!("{service}-sli.csv"));
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        let scrapes: Vec<ServiceMetrics> = parse_metrics_csv(&text)
            .map_err(|e| file_err(&path, e))?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let sli_text = std::fs::read_to_string(&sli_path).map_err(|e| {
            file_err(
                &sli_path,
                format!("{e} (every recording needs its SLI beside its metrics)"),
            )
        })?;
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
        if scrapes.windows(2).any(|w| w[1].timestamp <= w[0].timestamp) {
            return Err(file_err(&path, "scrape times must increase"));
        }
        intervals.extend(
            scrapes
                .windows(2)
                .map(|w| (w[1].timestamp - w[0].timestamp).as_secs_f64()),
        );
        if let (Some(a), Some(b)) = (scrapes.first(), scrapes.last()) {
            duration = duration.max((b.timestamp - a.timestamp).as_secs_f64());
        }
        let id = runs.len() as u32;
        let mean_rate =
            scrapes.iter().map(|m| m.request_rate).sum::<f64>() / scrapes.len().max(1) as f64;
        let sli: Vec<f64> = sli.into_iter().map(|(_, v)| v).collect();
        rows.extend(label(id, &scrapes, &sli, cfg));
        runs.push(RunPlan {
            id,
            seed: 0,
            load: LoadFamily::Trace,
            rate: mean_rate,
            fault: None,
            scenario: format!("recorded: {}", path.display()),
        });
    }
    if runs.is_empty() {
        return Err(RecordedError::Empty {
            dir: dir.to_owned(),
        });
    }
    intervals.sort_by(f64::total_cmp);
    let interval = intervals
        .get(intervals.len() / 2)
        .copied()
        .unwrap_or(cfg.scrape_interval_s);
    Ok(Dataset {
        config: TracesConfig {
            runs: runs.len(),
            duration_s: duration,
            scrape_interval_s: interval,
            fault_free_fraction: 1.0,
            faults: vec![],
            loads: vec![LoadFamily::Trace],
            controller: "recorded".into(),
            ..cfg.clone()
        },
        runs,
        controller: "recorded".into(),
        rows,
    })
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
        let rows = label(0, &scrapes, &sli, &cfg);
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
        assert!(parse_sli_csv("t,x\n").unwrap_err().contains("line 1"));
        let e = parse_sli_csv("t_s,sli\n0,1\n5,abc\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("`sli`"), "{e}");
        let e = parse_sli_csv("t_s,sli\n0,1.5\n").unwrap_err();
        assert!(e.contains("not in [0, 1]"), "{e}");
    }
}
