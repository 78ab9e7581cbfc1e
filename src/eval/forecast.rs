//! Rolling-origin evaluation of the load forecast against naive and
//! seasonal-naive forecasts at the same horizon.
//!
//! The forecaster sees the series one sample at a time, exactly as the
//! scaler does (retraining on its schedule on the last 1,000 samples), and
//! forecasts `horizon` samples ahead at every origin after a warm-up. Only
//! the request rate is known (the other six metrics are zero), so this
//! measures the forecast, not the simulator. Scores:
//! - MASE: mean absolute error over the mean absolute one-step naive error
//!   of the whole series (Hyndman and Koehler 2006); unlike MAPE it survives
//!   the zeros of the NASA outage.
//! - Coverage of the nominal 80 % interval. The baselines get intervals the
//!   same way the forest's are calibrated: the conformal quantile of their
//!   own last 200 absolute errors.

use std::collections::VecDeque;
use std::path::Path;

use super::{FileError, read_trace};
use crate::control::scaler::{ForecastConfig, Forecaster};
use crate::metrics::ServiceMetrics;
use crate::sim::load::Curve;
use crate::time::Time;

#[derive(Clone, Debug, PartialEq)]
pub struct MethodScore {
    pub mase: f64,
    pub coverage: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesScore {
    pub series: String,
    pub step_s: f64,
    pub horizon: usize,
    pub points: usize,
    pub forest: MethodScore,
    pub naive: MethodScore,
    /// `None` when the series is shorter than two seasons.
    pub seasonal: Option<MethodScore>,
}

/// Empirical-interval bookkeeping for one method.
struct Track {
    abs_errors: f64,
    covered: usize,
    n: usize,
    recent: VecDeque<f64>,
    level: f64,
}

impl Track {
    fn new(level: f64) -> Self {
        Track {
            abs_errors: 0.0,
            covered: 0,
            n: 0,
            recent: VecDeque::new(),
            level,
        }
    }

    fn half_width(&self) -> Option<f64> {
        if self.recent.len() < 20 {
            return None;
        }
        let mut s: Vec<f64> = self.recent.iter().copied().collect();
        s.sort_by(f64::total_cmp);
        let k = (((s.len() + 1) as f64 * self.level).ceil() as usize).clamp(1, s.len());
        Some(s[k - 1])
    }

    /// Scores a point forecast with its own empirical interval.
    fn score_point(&mut self, forecast: f64, actual: f64, counted: bool) {
        let hw = self.half_width();
        if counted {
            self.abs_errors += (actual - forecast).abs();
            self.n += 1;
            if hw.is_some_and(|w| (actual - forecast).abs() <= w) {
                self.covered += 1;
            }
        }
        self.recent.push_back((actual - forecast).abs());
        if self.recent.len() > 200 {
            self.recent.pop_front();
        }
    }

    fn score(&self, scale: f64) -> MethodScore {
        MethodScore {
            mase: self.abs_errors / self.n.max(1) as f64 / scale,
            coverage: self.covered as f64 / self.n.max(1) as f64,
        }
    }
}

/// Evaluates one series of `(t_seconds, rate)` samples.
pub fn evaluate(
    series: &str,
    t: &[f64],
    y: &[f64],
    horizon: usize,
    season: usize,
    cfg: &ForecastConfig,
) -> SeriesScore {
    let n = y.len();
    let mut cfg = cfg.clone();
    cfg.horizon = horizon;
    let warmup = cfg.min_train + 100;
    let mut forecaster = Forecaster::new(cfg.clone());
    let (mut forest, mut naive, mut seasonal) = (
        Track::new(cfg.interval_level),
        Track::new(cfg.interval_level),
        Track::new(cfg.interval_level),
    );
    let mut forest_covered = 0usize;
    // Forecasts made at origin i for i + horizon: (forest point, lower, upper).
    let mut made: VecDeque<(usize, f64, f64, f64)> = VecDeque::new();
    let step = if n > 1 {
        (t[n - 1] - t[0]) / (n - 1) as f64
    } else {
        0.0
    };
    for i in 0..n {
        let m = ServiceMetrics {
            timestamp: Time::from_secs_f64(t[i]),
            cpu_usage: 0.0,
            memory_usage: 0.0,
            request_rate: y[i],
            error_rate: 0.0,
            latency_p50: 0.0,
            latency_p99: 0.0,
            active_connections: 0,
            ready_replicas: 0,
            desired_replicas: 0,
        };
        forecaster.push(&m);
        // Score what was forecast for this sample.
        while let Some(&(due, point, lo, hi)) = made.front() {
            if due > i {
                break;
            }
            made.pop_front();
            if due == i {
                let origin = i - horizon;
                let counted = origin >= warmup && (season == 0 || origin + horizon >= season);
                forest.score_point(point, y[i], counted);
                if counted && (lo..=hi).contains(&y[i]) {
                    forest_covered += 1;
                }
                naive.score_point(y[origin], y[i], counted);
                if season > 0 && i >= season {
                    seasonal.score_point(y[i - season], y[i], counted);
                }
            }
        }
        if i + horizon < n
            && let Some(f) = forecaster.forecast()
        {
            made.push_back((i + horizon, f.rate, f.lower, f.upper));
        }
    }
    let scale = y.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (n.max(2) - 1) as f64;
    let scale = scale.max(1e-12);
    let mut forest_score = forest.score(scale);
    forest_score.coverage = forest_covered as f64 / forest.n.max(1) as f64;
    SeriesScore {
        series: series.to_string(),
        step_s: step,
        horizon,
        points: forest.n,
        forest: forest_score,
        naive: naive.score(scale),
        seasonal: (season > 0 && n >= 2 * season + warmup).then(|| seasonal.score(scale)),
    }
}

/// One series for the forecast evaluation: times, rates, season length.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub t: Vec<f64>,
    pub y: Vec<f64>,
    pub season: usize,
}

/// Rows `skip..skip + take` of the trace in `dir/file`.
fn trace_series(
    dir: &Path,
    file: &str,
    name: &str,
    skip: usize,
    take: usize,
    season: usize,
) -> Result<Series, FileError> {
    let tr = read_trace(&dir.join(file))?;
    let end = (skip + take).min(tr.t.len());
    let skip = skip.min(end);
    Ok(Series {
        name: name.into(),
        t: tr.t[skip..end].to_vec(),
        y: tr.value[skip..end].to_vec(),
        season,
    })
}

/// A synthetic curve observed through Poisson counting noise every `step` s.
fn synthetic(name: &str, curve: Curve, step: f64, n: usize, season: usize, seed: u64) -> Series {
    let mut rng = crate::rng::Stream::new(seed, crate::rng::Subsystem::Curves);
    let mut t = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let ti = i as f64 * step;
        let mean = curve.rate(ti) * step;
        // Normal approximation of Poisson counts (means are large here).
        let count = (mean + mean.sqrt() * rng.normal()).max(0.0).round();
        t.push(ti);
        y.push(count / step);
    }
    Series {
        name: name.into(),
        t,
        y,
        season,
    }
}

/// The benchmark's series: four real traces from `data` (the windows the
/// README's table reports) and four synthetic shapes under Poisson noise.
pub fn benchmark_series(data: &Path) -> Result<Vec<Series>, FileError> {
    let mut series = vec![
        trace_series(
            data,
            "nasa_http_1995_per_min.csv",
            "nasa-1995 (1 min)",
            1440,
            4320,
            1440,
        )?,
        trace_series(
            data,
            "wikipedia_en_hourly_2010_2015.csv",
            "wikipedia (1 h)",
            0,
            2500,
            24,
        )?,
        trace_series(
            data,
            "azure_fn2019_http_021589_per_min.csv",
            "azure-http (1 min)",
            0,
            1440,
            0,
        )?,
        trace_series(
            data,
            "azure_fn2019_queue_8203ff_per_min.csv",
            "azure-queue (1 min)",
            0,
            1440,
            0,
        )?,
    ];
    let day = 3600.0; // compressed "days" keep synthetic series short
    series.push(synthetic(
        "synthetic diurnal (30 s)",
        Curve::Diurnal {
            mean: 300.0,
            amplitude: 0.6,
            period: day,
            peak: 0.0,
        },
        30.0,
        2400,
        120,
        1,
    ));
    series.push(synthetic(
        "synthetic flash crowds (30 s)",
        Curve::Sum(vec![
            Curve::Constant(150.0),
            Curve::FlashCrowd {
                base: 0.0,
                peak: 700.0,
                start: 20_000.0,
                rise: 60.0,
                decay: 900.0,
            },
            Curve::FlashCrowd {
                base: 0.0,
                peak: 500.0,
                start: 50_000.0,
                rise: 30.0,
                decay: 600.0,
            },
        ]),
        30.0,
        2400,
        0,
        2,
    ));
    let mut burst_rng = crate::rng::Stream::new(3, crate::rng::Subsystem::Curves);
    series.push(synthetic(
        "synthetic bursts (30 s)",
        Curve::bursts(200.0, 3.0, 1800.0, 300.0, 80_000.0, &mut burst_rng),
        30.0,
        2400,
        0,
        3,
    ));
    series.push(synthetic(
        "synthetic ramp + steps (30 s)",
        Curve::Sum(vec![
            Curve::Ramp {
                from: 50.0,
                to: 400.0,
                start: 0.0,
                end: 70_000.0,
            },
            Curve::Step {
                before: 0.0,
                after: 200.0,
                at: 30_000.0,
            },
            Curve::Step {
                before: 0.0,
                after: -150.0,
                at: 55_000.0,
            },
        ]),
        30.0,
        2400,
        0,
        4,
    ));
    Ok(series)
}

/// Every series at every horizon, in parallel; in series-major order.
pub fn evaluate_all(
    series: &[Series],
    horizons: &[usize],
    cfg: &ForecastConfig,
) -> Vec<SeriesScore> {
    use rayon::prelude::*;
    let jobs: Vec<(&Series, usize)> = series
        .iter()
        .flat_map(|s| horizons.iter().map(move |&h| (s, h)))
        .collect();
    jobs.par_iter()
        .map(|&(s, h)| evaluate(&s.name, &s.t, &s.y, h, s.season, cfg))
        .collect()
}

/// The scores as CSV (full precision) and as a markdown table.
pub fn render(scores: &[SeriesScore]) -> (String, String) {
    let mut csv = String::from(
        "series,step_s,horizon,points,selfheal_mase,selfheal_coverage,naive_mase,naive_coverage,seasonal_mase,seasonal_coverage\n",
    );
    let mut md = String::from(
        "| series | h | points | selfheal MASE | selfheal 80% cov. | naive MASE | naive cov. | seasonal MASE | seasonal cov. |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in scores {
        let (sm, sc) =
            s.seasonal
                .as_ref()
                .map_or((String::from("n/a"), String::from("n/a")), |x| {
                    (
                        format!("{:.3}", x.mase),
                        format!("{:.1}%", 100.0 * x.coverage),
                    )
                });
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            s.series,
            s.step_s,
            s.horizon,
            s.points,
            s.forest.mase,
            s.forest.coverage,
            s.naive.mase,
            s.naive.coverage,
            s.seasonal
                .as_ref()
                .map_or(String::new(), |x| x.mase.to_string()),
            s.seasonal
                .as_ref()
                .map_or(String::new(), |x| x.coverage.to_string())
        ));
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.1}% | {:.3} | {:.1}% | {} | {} |\n",
            s.series,
            s.horizon,
            s.points,
            s.forest.mase,
            100.0 * s.forest.coverage,
            s.naive.mase,
            100.0 * s.naive.coverage,
            sm,
            sc
        ));
    }
    (csv, md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_80_percent_interval_covers_75_to_85_percent_of_held_out_outcomes() {
        // A noisy cycle (lognormal noise, cv 0.1) seen one sample at a time;
        // only forecasts after the warm-up are scored, against outcomes the
        // model had not seen when it forecast.
        let mut rng = crate::rng::Stream::new(5, crate::rng::Subsystem::Curves);
        let t: Vec<f64> = (0..1500).map(|i| i as f64 * 30.0).collect();
        let y: Vec<f64> = (0..1500)
            .map(|i| {
                (200.0 + 80.0 * (i as f64 * std::f64::consts::TAU / 240.0).sin())
                    * (0.1 * rng.normal() - 0.005).exp()
            })
            .collect();
        let s = evaluate("noisy", &t, &y, 1, 240, &ForecastConfig::default());
        assert!(s.points > 1000);
        assert!(
            (0.75..=0.85).contains(&s.forest.coverage),
            "coverage {}",
            s.forest.coverage
        );
        assert!(s.forest.mase < s.naive.mase, "{s:?}");
    }

    #[test]
    fn a_noiseless_daily_cycle_is_forecast_better_than_naive() {
        // A smooth cycle with a 100-sample period: the forest learns the
        // shape; naive lags one step.
        let t: Vec<f64> = (0..800).map(|i| i as f64 * 60.0).collect();
        let y: Vec<f64> = (0..800)
            .map(|i| 100.0 + 50.0 * (i as f64 * std::f64::consts::TAU / 100.0).sin())
            .collect();
        let cfg = ForecastConfig {
            retrain_every: 50,
            ..ForecastConfig::default()
        };
        let s = evaluate("sine", &t, &y, 3, 100, &cfg);
        assert!(s.points > 300);
        assert!(s.forest.mase < s.naive.mase, "{s:?}");
        // The seasonal-naive forecast is exact on a noiseless cycle.
        assert!(s.seasonal.as_ref().unwrap().mase < 1e-9);
    }
}
