//! The pattern detector: the seed's four failure patterns, made robust.
//!
//! The seed tests strict monotonicity over ten scrapes and fixed ratios of
//! the first and last five; one noisy scrape defeats the first and one spike
//! the second. Here every "increasing" is a least-squares trend over
//! `trend_window` scrapes with a minimum fit (R²), every "high" a threshold
//! from config, and the sudden changes are confirmed by the online anomaly
//! score of the metric concerned.

use serde::{Deserialize, Serialize};

/// Indices into a scrape row (see `train::traces::FEATURES`).
pub const CPU: usize = 0;
pub const MEMORY: usize = 1;
pub const RATE: usize = 2;
pub const ERRORS: usize = 3;
pub const P50: usize = 4;
pub const P99: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    MemoryLeak,
    CascadingFailure,
    ResourceExhaustion,
    DependencyFailure,
}

impl FailureType {
    pub const ALL: [FailureType; 4] = [
        FailureType::MemoryLeak,
        FailureType::CascadingFailure,
        FailureType::ResourceExhaustion,
        FailureType::DependencyFailure,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::MemoryLeak => "memory_leak",
            FailureType::CascadingFailure => "cascading_failure",
            FailureType::ResourceExhaustion => "resource_exhaustion",
            FailureType::DependencyFailure => "dependency_failure",
        }
    }
    /// The seed's remediation for the pattern.
    pub fn remediation(self) -> Remediation {
        match self {
            FailureType::MemoryLeak => Remediation::RestartService,
            FailureType::CascadingFailure => Remediation::CircuitBreaker,
            FailureType::ResourceExhaustion => Remediation::ScaleUp,
            FailureType::DependencyFailure => Remediation::FallbackService,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remediation {
    RestartService,
    CircuitBreaker,
    ScaleUp,
    FallbackService,
    Monitor,
}

impl Remediation {
    pub fn as_str(self) -> &'static str {
        match self {
            Remediation::RestartService => "restart_service",
            Remediation::CircuitBreaker => "circuit_breaker",
            Remediation::ScaleUp => "scale_up",
            Remediation::FallbackService => "fallback_service",
            Remediation::Monitor => "monitor",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatternConfig {
    /// Scrapes the trends are fitted over.
    pub trend_window: usize,
    /// Minimum R² for a trend to count.
    pub min_fit: f64,
    /// memory_leak: memory (fraction of the limit) must rise at least this
    /// much over the trend window ...
    pub leak_min_rise: f64,
    /// ... while the request rate changes by less than this fraction.
    pub leak_max_rate_change: f64,
    /// cascading_failure: errors and p99 latency of the window's second
    /// half at least this multiple of its first half ...
    pub cascade_ratio: f64,
    /// ... with errors above this rate.
    pub cascade_min_errors: f64,
    /// resource_exhaustion: CPU (of request) or memory (of limit) above this.
    pub high_cpu: f64,
    pub high_memory: f64,
    /// ... and p99 latency grown by this factor over the window.
    pub exhaustion_latency_ratio: f64,
    /// dependency_failure: errors or latency anomalous (score at least
    /// this) while CPU falls below this fraction of its earlier level.
    pub anomaly_threshold: f64,
    pub dependency_cpu_drop: f64,
}

impl Default for PatternConfig {
    fn default() -> Self {
        PatternConfig {
            trend_window: 24,
            min_fit: 0.6,
            leak_min_rise: 0.05,
            leak_max_rate_change: 0.3,
            cascade_ratio: 2.0,
            cascade_min_errors: 0.01,
            high_cpu: 0.9,
            high_memory: 0.9,
            exhaustion_latency_ratio: 2.0,
            anomaly_threshold: 0.51,
            dependency_cpu_drop: 0.7,
        }
    }
}

/// Least-squares line through `(i, y[i])`: (slope per sample, R²).
pub fn trend(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    if y.len() < 3 {
        return (0.0, 0.0);
    }
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (i, &v) in y.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (v - my);
        sxx += dx * dx;
        syy += (v - my) * (v - my);
    }
    let slope = sxy / sxx;
    let r2 = if syy <= 1e-18 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    (slope, r2)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// What the detector found and the trend that drives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub failure: FailureType,
    /// The driving metric's index, current value, slope per scrape and the
    /// limit it is heading for (for the time-to-failure estimate).
    pub metric: usize,
    pub value: f64,
    pub slope: f64,
    pub limit: f64,
}

/// Applies the rules to raw (not normalised) scrape rows, oldest first, and
/// the latest anomaly scores of error rate and p99 latency.
pub fn detect(
    cfg: &PatternConfig,
    rows: &[[f32; 8]],
    anomaly_errors: f64,
    anomaly_latency: f64,
    slo_latency_ms: f64,
) -> Option<Detection> {
    let n = cfg.trend_window.min(rows.len());
    if n < 6 {
        return None;
    }
    let recent = &rows[rows.len() - n..];
    let col = |k: usize| recent.iter().map(|r| r[k] as f64).collect::<Vec<f64>>();
    let (mem, rate, err, p99, cpu) = (col(MEMORY), col(RATE), col(ERRORS), col(P99), col(CPU));
    let half = n / 2;
    let last = |v: &[f64]| v[v.len() - 1];

    let (mem_slope, mem_fit) = trend(&mem);
    let rate_mean = mean(&rate).max(1e-9);
    let (rate_slope, _) = trend(&rate);
    if mem_fit >= cfg.min_fit
        && mem_slope * n as f64 >= cfg.leak_min_rise
        && (rate_slope * n as f64 / rate_mean).abs() < cfg.leak_max_rate_change
    {
        return Some(Detection {
            failure: FailureType::MemoryLeak,
            metric: MEMORY,
            value: last(&mem),
            slope: mem_slope,
            limit: 1.0,
        });
    }

    let (cpu_early, cpu_late) = (mean(&cpu[..half]), mean(&cpu[half..]));
    let (err_early, err_late) = (mean(&err[..half]), mean(&err[half..]));
    let (p99_early, p99_late) = (mean(&p99[..half]), mean(&p99[half..]));
    let (p99_slope, _) = trend(&p99);
    let latency_limit = slo_latency_ms;
    let anomalous = anomaly_errors.max(anomaly_latency) >= cfg.anomaly_threshold;
    let degrading = err_late >= cfg.cascade_min_errors || p99_late > latency_limit;
    if anomalous && degrading && cpu_early > 0.0 && cpu_late < cfg.dependency_cpu_drop * cpu_early {
        return Some(Detection {
            failure: FailureType::DependencyFailure,
            metric: ERRORS,
            value: last(&err),
            slope: trend(&err).0,
            limit: cfg.cascade_min_errors,
        });
    }
    if err_late >= cfg.cascade_min_errors
        && err_late > cfg.cascade_ratio * err_early
        && p99_late > cfg.cascade_ratio * p99_early.max(1e-9)
    {
        return Some(Detection {
            failure: FailureType::CascadingFailure,
            metric: P99,
            value: last(&p99),
            slope: p99_slope,
            limit: latency_limit,
        });
    }
    let hot = last(&cpu) > cfg.high_cpu || last(&mem) > cfg.high_memory;
    if hot && p99_late > cfg.exhaustion_latency_ratio * p99_early.max(1e-9) {
        return Some(Detection {
            failure: FailureType::ResourceExhaustion,
            metric: P99,
            value: last(&p99),
            slope: p99_slope,
            limit: latency_limit,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cpu: f32, mem: f32, rate: f32, err: f32, p99: f32) -> [f32; 8] {
        [cpu, mem, rate, err, p99 / 2.0, p99, 10.0, 3.0]
    }

    #[test]
    fn a_noisy_leak_is_found_where_the_seeds_monotone_test_fails() {
        let rows: Vec<_> = (0..30)
            .map(|i| {
                let wobble = if i % 4 == 0 { -0.01 } else { 0.0 };
                row(0.4, 0.4 + 0.006 * i as f32 + wobble, 150.0, 0.0, 20.0)
            })
            .collect();
        let d = detect(&PatternConfig::default(), &rows, 0.0, 0.0, 250.0).unwrap();
        assert_eq!(d.failure, FailureType::MemoryLeak);
        // (1.0 - 0.574) / 0.006 per scrape, about 70 scrapes to the limit.
        let ttf = (d.limit - d.value) / d.slope;
        assert!((60.0..80.0).contains(&ttf), "{ttf}");
    }

    #[test]
    fn flat_metrics_match_no_pattern() {
        let rows: Vec<_> = (0..30).map(|_| row(0.4, 0.4, 150.0, 0.0, 20.0)).collect();
        assert_eq!(
            detect(&PatternConfig::default(), &rows, 0.0, 0.0, 250.0),
            None
        );
    }

    #[test]
    fn rising_errors_and_latency_are_a_cascade() {
        let rows: Vec<_> = (0..24)
            .map(|i| {
                if i < 12 {
                    row(0.5, 0.4, 150.0, 0.001, 40.0)
                } else {
                    row(0.6, 0.4, 150.0, 0.08, 400.0)
                }
            })
            .collect();
        let d = detect(&PatternConfig::default(), &rows, 0.5, 0.5, 250.0).unwrap();
        assert_eq!(d.failure, FailureType::CascadingFailure);
    }

    #[test]
    fn errors_with_idle_cpu_and_an_anomaly_are_a_dependency_failure() {
        let rows: Vec<_> = (0..24)
            .map(|i| {
                if i < 12 {
                    row(0.5, 0.4, 150.0, 0.0, 40.0)
                } else {
                    row(0.1, 0.4, 150.0, 0.5, 1000.0)
                }
            })
            .collect();
        let d = detect(&PatternConfig::default(), &rows, 0.99, 0.99, 250.0).unwrap();
        assert_eq!(d.failure, FailureType::DependencyFailure);
    }
}
