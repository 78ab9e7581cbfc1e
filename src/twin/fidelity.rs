//! How close a twin is: the recorded load of a stretch replayed through
//! the twin, and each service's CPU (cores), request rate, p50 and p99
//! latency and error rate compared with what was recorded, scrape by
//! scrape (MAPE), after a warm-up of one rate window.
//!
//! The twin is a stochastic model: one run draws its own arrivals and
//! service times, whose scrape-to-scrape noise is not the recording's. Its
//! prediction for a scrape is the mean over runs at several seeds (the
//! scenario's seed, then the next ones); comparing one run counts the
//! twin's noise as an error on top of the recording's. A seed count of one
//! gives the single-run figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use super::TwinError;
use super::recording::Recording;
use crate::eval::median;
use crate::scenario::{CurveSpec, Scenario};
use crate::sim::load::Trace;

/// One service's recorded and simulated series at the compared scrapes
/// (times from the stretch's start).
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub t: Vec<f64>,
    /// `(recorded, twin)` per scrape.
    pub rate: Vec<(f64, f64)>,
    pub cores: Vec<(f64, f64)>,
    pub p50_ms: Vec<(f64, f64)>,
    pub p99_ms: Vec<(f64, f64)>,
    pub error: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct ServiceFidelity {
    pub service: String,
    /// Mean absolute percentage errors (NaN where nothing was measured).
    pub cpu_mape: f64,
    pub rate_mape: f64,
    pub p50_mape: f64,
    pub p99_mape: f64,
    /// The error of the stretch's means, twin over recorded minus one: what
    /// remains of the MAPE once scrape-to-scrape noise averages out.
    pub cpu_bias: f64,
    pub p99_bias: f64,
    /// The MAPE of the best flat line through the recorded series, chosen
    /// with hindsight (`flat_line_mape`): how much of the MAPE is the
    /// recording's own scrape-to-scrape noise, which no twin shown only
    /// the load can predict.
    pub cpu_flat_mape: f64,
    pub p99_flat_mape: f64,
    /// The MAPE of a flat line at the level the twin is built to match,
    /// chosen with hindsight: the recorded mean for CPU (work adds up, so
    /// a twin reproduces mean cores) and the recorded median for p99 (the
    /// calibration's target). Where the load explains none of the
    /// scrape-to-scrape variation, a twin that matched that level exactly
    /// scores this, not the best flat line, which MAPE puts below the
    /// level (it favours the low values).
    pub cpu_level_mape: f64,
    pub p99_level_mape: f64,
    /// Mean absolute difference of the failed share (not a percentage:
    /// error rates near zero make one meaningless).
    pub error_mae: f64,
    /// `(recorded, twin)` medians over the compared scrapes.
    pub median_p50_ms: (f64, f64),
    pub median_p99_ms: (f64, f64),
    pub series: Series,
}

#[derive(Clone, Debug)]
pub struct Fidelity {
    /// The stretch replayed, in recording seconds.
    pub window: (f64, f64),
    /// The runs (seeds) whose mean per scrape was compared.
    pub runs: u32,
    pub services: Vec<ServiceFidelity>,
}

impl Fidelity {
    /// The median over services of a per-service figure.
    pub fn median_of(&self, pick: fn(&ServiceFidelity) -> f64) -> f64 {
        let mut v: Vec<f64> = self.services.iter().map(pick).collect();
        median(&mut v).unwrap_or(f64::NAN)
    }
}

/// Replays `[from_s, to_s)` of the recording through `twin`: its loads
/// become the recorded rates of the services they enter at.
pub fn check(
    twin: &Scenario,
    rec: &Recording,
    from_s: f64,
    to_s: f64,
    seeds: u32,
) -> Result<Fidelity, TwinError> {
    let mut traces = BTreeMap::new();
    for l in &twin.loads {
        let CurveSpec::Trace { file, .. } = &l.curve else {
            continue;
        };
        let s = rec
            .service(&l.service)
            .ok_or_else(|| TwinError::NoLoadService(l.service.clone()))?;
        let w = super::build::window(s, from_s, to_s)?;
        traces.insert(file.clone(), Arc::new(super::build::load_trace(&w, from_s)));
    }
    compare(twin, &traces, rec, from_s, to_s, seeds)
}

/// Runs `twin` with `traces` for `to_s - from_s` seconds at `seeds` seeds
/// (at least one) and compares the runs' mean with the recording's
/// `[from_s, to_s)`.
pub(crate) fn compare(
    twin: &Scenario,
    traces: &BTreeMap<String, Arc<Trace>>,
    rec: &Recording,
    from_s: f64,
    to_s: f64,
    seeds: u32,
) -> Result<Fidelity, TwinError> {
    use rayon::prelude::*;
    let runs = (0..seeds.max(1) as u64)
        .into_par_iter()
        .map(|k| {
            let mut spec = twin.clone();
            spec.duration_s = to_s - from_s;
            spec.seed = twin.seed.wrapping_add(k);
            let loaded = crate::scenario::from_spec(spec, traces.clone())?;
            Ok(crate::sim::run(&loaded)?)
        })
        .collect::<Result<Vec<_>, TwinError>>()?;
    let warmup = twin
        .metrics
        .rate_window_s
        .max(2.0 * twin.metrics.scrape_interval_s);
    let mut services = Vec::new();
    for (i, name) in runs[0].services.iter().enumerate() {
        let Some(recorded) = rec.service(name) else {
            continue;
        };
        let spec = &twin.services[i];
        let cores = |m: &crate::metrics::ServiceMetrics| super::build::cores(m, spec.cpu_request);
        let per_run: Vec<Vec<&crate::metrics::ServiceMetrics>> = runs
            .iter()
            .map(|out| {
                out.metrics
                    .iter()
                    .filter(|(s, _)| *s == i)
                    .map(|(_, m)| m)
                    .collect()
            })
            .collect();
        let sim = mean_scrapes(&per_run);
        let mut series = Series::default();
        for m in &recorded.scrapes {
            let t = m.timestamp.as_secs_f64() - from_s;
            if t < warmup || t >= to_s - from_s {
                continue;
            }
            let k = sim.partition_point(|s| s.timestamp.as_secs_f64() < t);
            let Some(s) = [k.checked_sub(1), Some(k)]
                .into_iter()
                .flatten()
                .filter_map(|j| sim.get(j))
                .min_by(|a, b| {
                    (a.timestamp.as_secs_f64() - t)
                        .abs()
                        .total_cmp(&(b.timestamp.as_secs_f64() - t).abs())
                })
            else {
                continue;
            };
            series.t.push(t);
            series.rate.push((m.request_rate, s.request_rate));
            series.cores.push((cores(m), cores(s)));
            series.p50_ms.push((m.latency_p50, s.latency_p50));
            series.p99_ms.push((m.latency_p99, s.latency_p99));
            series.error.push((m.error_rate, s.error_rate));
        }
        let med = |pairs: &[(f64, f64)]| {
            let mut r: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let mut s: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            (
                median(&mut r).unwrap_or(f64::NAN),
                median(&mut s).unwrap_or(f64::NAN),
            )
        };
        let error_mae = {
            let d: Vec<f64> = series
                .error
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|p| (p.0 - p.1).abs())
                .collect();
            if d.is_empty() {
                f64::NAN
            } else {
                d.iter().sum::<f64>() / d.len() as f64
            }
        };
        services.push(ServiceFidelity {
            service: name.clone(),
            cpu_mape: mape(&series.cores),
            cpu_bias: bias(&series.cores),
            p99_bias: bias(&series.p99_ms),
            cpu_flat_mape: flat_line_mape(&series.cores),
            p99_flat_mape: flat_line_mape(&series.p99_ms),
            cpu_level_mape: flat_at_mape(&series.cores, |r| mean_of(r)),
            p99_level_mape: flat_at_mape(&series.p99_ms, median),
            rate_mape: mape(&series.rate),
            p50_mape: mape(&series.p50_ms),
            p99_mape: mape(&series.p99_ms),
            error_mae,
            median_p50_ms: med(&series.p50_ms),
            median_p99_ms: med(&series.p99_ms),
            series,
        });
    }
    Ok(Fidelity {
        window: (from_s, to_s),
        runs: runs.len() as u32,
        services,
    })
}

/// Per scrape, the mean over runs of the same scenario (their scrapes come
/// at the same times whatever the seed) of each rate, share and latency;
/// a latency without traffic in some runs is the mean of the others. The
/// replica counts are the first run's (a twin's are fixed).
fn mean_scrapes(
    runs: &[Vec<&crate::metrics::ServiceMetrics>],
) -> Vec<crate::metrics::ServiceMetrics> {
    let n = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|k| {
            let mean = |pick: fn(&crate::metrics::ServiceMetrics) -> f64| {
                let (sum, count) = runs
                    .iter()
                    .map(|r| pick(r[k]))
                    .filter(|v| v.is_finite())
                    .fold((0.0, 0u32), |(s, c), v| (s + v, c + 1));
                if count == 0 {
                    f64::NAN
                } else {
                    sum / count as f64
                }
            };
            crate::metrics::ServiceMetrics {
                cpu_usage: mean(|m| m.cpu_usage),
                memory_usage: mean(|m| m.memory_usage),
                request_rate: mean(|m| m.request_rate),
                error_rate: mean(|m| m.error_rate),
                latency_p50: mean(|m| m.latency_p50),
                latency_p99: mean(|m| m.latency_p99),
                ..runs[0][k].clone()
            }
        })
        .collect()
}

/// Mean |twin - recorded| / recorded over the scrapes where both are
/// measured and the recorded value is positive; NaN without one.
pub fn mape(pairs: &[(f64, f64)]) -> f64 {
    let e: Vec<f64> = pairs
        .iter()
        .filter(|p| counts(p))
        .map(|(r, s)| (s - r).abs() / r)
        .collect();
    if e.is_empty() {
        f64::NAN
    } else {
        e.iter().sum::<f64>() / e.len() as f64
    }
}

/// Whether [`mape`] counts a `(recorded, twin)` pair: both measured and
/// the recorded value positive.
fn counts(&(r, s): &(f64, f64)) -> bool {
    r.is_finite() && s.is_finite() && r > 0.0
}

/// The lowest MAPE a constant reaches against the recorded values (the
/// first of each pair) where the twin measured too, as [`mape`] counts
/// them: the constant is their median weighted by 1 / value, which
/// minimises the sum of |c - r| / r. NaN without a value.
pub fn flat_line_mape(pairs: &[(f64, f64)]) -> f64 {
    flat_at_mape(pairs, |r| {
        r.sort_by(f64::total_cmp);
        let total: f64 = r.iter().map(|v| 1.0 / v).sum();
        let mut seen = 0.0;
        r.iter()
            .find(|v| {
                seen += 1.0 / *v;
                seen >= 0.5 * total
            })
            .copied()
    })
}

/// The arithmetic mean, in the shape [`flat_at_mape`] takes a level (it
/// is never given an empty slice).
fn mean_of(values: &[f64]) -> Option<f64> {
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// The MAPE of the constant `level` picks from the recorded values that
/// [`mape`] counts (never empty when it is called); NaN without one.
pub fn flat_at_mape(pairs: &[(f64, f64)], level: fn(&mut Vec<f64>) -> Option<f64>) -> f64 {
    let mut r: Vec<f64> = pairs.iter().filter(|p| counts(p)).map(|p| p.0).collect();
    if r.is_empty() {
        return f64::NAN;
    }
    let Some(c) = level(&mut r) else {
        return f64::NAN;
    };
    mape(&r.iter().map(|&v| (v, c)).collect::<Vec<_>>())
}

/// mean(twin) / mean(recorded) - 1 over the scrapes where both are
/// measured; NaN without one.
pub fn bias(pairs: &[(f64, f64)]) -> f64 {
    let both: Vec<&(f64, f64)> = pairs
        .iter()
        .filter(|(r, s)| r.is_finite() && s.is_finite())
        .collect();
    let recorded: f64 = both.iter().map(|p| p.0).sum();
    let twin: f64 = both.iter().map(|p| p.1).sum();
    if both.is_empty() || recorded <= 0.0 {
        f64::NAN
    } else {
        twin / recorded - 1.0
    }
}

fn signed_pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:+.1} %", 100.0 * v)
    } else {
        "–".into()
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "–".into()
    }
}

/// The report as Markdown: one row per service, then the medians.
pub fn render(f: &Fidelity, title: &str) -> String {
    let mut md = format!(
        "# {title}\n\nThe recorded load of {}..{} s replayed through the twin ({}); per service the mean absolute percentage error against the recording, scrape by scrape after one rate window of warm-up.\n\n| service | scrapes | CPU | request rate | p50 | p99 | error rate (abs. diff.) | p99 median recorded / twin (ms) | mean CPU, twin vs recorded | mean p99, twin vs recorded | CPU, best flat line | p99, best flat line | CPU, flat at the recorded mean | p99, flat at the recorded median |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        f.window.0,
        f.window.1,
        match f.runs {
            1 => "one run".to_string(),
            n => format!("the mean of {n} runs at consecutive seeds"),
        }
    );
    for s in &f.services {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {:.1} / {:.1} | {} | {} | {} | {} | {} | {} |",
            s.service,
            s.series.t.len(),
            pct(s.cpu_mape),
            pct(s.rate_mape),
            pct(s.p50_mape),
            pct(s.p99_mape),
            s.error_mae,
            s.median_p99_ms.0,
            s.median_p99_ms.1,
            signed_pct(s.cpu_bias),
            signed_pct(s.p99_bias),
            pct(s.cpu_flat_mape),
            pct(s.p99_flat_mape),
            pct(s.cpu_level_mape),
            pct(s.p99_level_mape)
        );
    }
    let _ = writeln!(
        md,
        "\nMedian over services: CPU {}, request rate {}, p50 {}, p99 {}; of the means' errors, absolute: CPU {}, p99 {}. For scale, the best flat line through each recorded series, chosen with hindsight, scores CPU {}, p99 {}: the recording varies that much from scrape to scrape around its level. A flat line at the level the twin is built to match (the recorded mean CPU, the recorded median p99), also chosen with hindsight, scores CPU {}, p99 {}: where the load explains none of that variation, the best a twin can do.",
        pct(f.median_of(|s| s.cpu_mape)),
        pct(f.median_of(|s| s.rate_mape)),
        pct(f.median_of(|s| s.p50_mape)),
        pct(f.median_of(|s| s.p99_mape)),
        pct(f.median_of(|s| s.cpu_bias.abs())),
        pct(f.median_of(|s| s.p99_bias.abs())),
        pct(f.median_of(|s| s.cpu_flat_mape)),
        pct(f.median_of(|s| s.p99_flat_mape)),
        pct(f.median_of(|s| s.cpu_level_mape)),
        pct(f.median_of(|s| s.p99_level_mape))
    );
    md
}

/// One chart per service (`fidelity-<service>.png` and `.svg`): request
/// rate, CPU and p99, recorded against the twin.
pub fn charts(dir: &Path, f: &Fidelity) -> Result<(), TwinError> {
    use crate::sweep::charts::{Panels, panels};
    for s in &f.services {
        let split = |pairs: &[(f64, f64)]| -> [Vec<f64>; 2] {
            [
                pairs.iter().map(|p| p.0).collect(),
                pairs.iter().map(|p| p.1).collect(),
            ]
        };
        let [rr, rt] = split(&s.series.rate);
        let [cr, ct] = split(&s.series.cores);
        let [pr, pt] = split(&s.series.p99_ms);
        let chart = Panels {
            title: format!("{}: recorded and twin", s.service),
            t: s.series.t.clone(),
            panels: vec![
                (
                    "req/s".into(),
                    vec![("recorded".into(), rr), ("twin".into(), rt)],
                ),
                (
                    "cores".into(),
                    vec![("recorded".into(), cr), ("twin".into(), ct)],
                ),
                (
                    "p99 ms".into(),
                    vec![("recorded".into(), pr), ("twin".into(), pt)],
                ),
            ],
        };
        panels(dir, &format!("fidelity-{}", s.service), &chart)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_flat_line_is_the_median_weighted_by_one_over_the_value() {
        // Weights 1, 1/2, 1/4: the constant 1 scores (0 + 1/2 + 3/4) / 3,
        // below 2's (1 + 0 + 1/2) / 3 and 4's (3 + 1 + 0) / 3.
        let pairs = [(1.0, 9.0), (2.0, 9.0), (4.0, 9.0), (8.0, f64::NAN)];
        assert!((flat_line_mape(&pairs) - 1.25 / 3.0).abs() < 1e-12);
        assert!(flat_line_mape(&[]).is_nan());
    }

    #[test]
    fn a_flat_line_at_a_chosen_level_counts_what_mape_counts() {
        // The mean of 1, 2 and 4 (7/3) scores (4/3 + 1/6 + 5/12) / 3; the
        // uncounted pairs (no twin value, a zero) change nothing.
        let pairs = [
            (1.0, 9.0),
            (2.0, 9.0),
            (4.0, 9.0),
            (8.0, f64::NAN),
            (0.0, 1.0),
        ];
        let mean = flat_at_mape(&pairs, |r| mean_of(r));
        assert!((mean - (4.0 / 3.0 + 1.0 / 6.0 + 5.0 / 12.0) / 3.0).abs() < 1e-12);
        assert!(flat_at_mape(&pairs, median) > flat_line_mape(&pairs));
        assert!(flat_at_mape(&[], median).is_nan());
    }
}
