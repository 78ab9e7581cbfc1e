//! Metrics as a controller sees them, the same in simulation and live.

mod histogram;

pub use histogram::{Buckets, BucketsError, Histogram, histogram_fraction, histogram_quantile};

use crate::CsvError;
use crate::time::Time;

/// One scrape of one service (the seed's `ServiceMetrics`), plus replica
/// counts. Rates and percentiles are over the scenario's rate window.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceMetrics {
    pub timestamp: Time,
    /// CPU used by the service's running pods relative to their requests
    /// (HPA's utilisation; above 1.0 when pods burst up to their limit).
    pub cpu_usage: f64,
    /// Mean memory of running pods relative to their limit.
    pub memory_usage: f64,
    /// Attempts per second offered to the service: rejected and retried
    /// attempts included.
    pub request_rate: f64,
    /// Failed attempts (errors, timeouts, rejections) over all attempts.
    pub error_rate: f64,
    /// Server-side latency percentiles in milliseconds, NaN without traffic.
    pub latency_p50: f64,
    pub latency_p99: f64,
    /// Requests holding a connection slot or queued, at the scrape instant.
    pub active_connections: u32,
    pub ready_replicas: u32,
    pub desired_replicas: u32,
}

/// Scrapes as CSV, one row per `(service, scrape)`: the simulator's
/// `metrics.csv` and the live adapter's recordings share it.
pub fn metrics_csv<'a>(rows: impl IntoIterator<Item = (&'a str, &'a ServiceMetrics)>) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{METRICS_CSV_HEADER}\n");
    for (service, m) in rows {
        let _ = writeln!(
            out,
            "{},{service},{},{},{},{},{},{},{},{},{}",
            m.timestamp.as_secs_f64(),
            m.cpu_usage,
            m.memory_usage,
            m.request_rate,
            m.error_rate,
            ms(m.latency_p50),
            ms(m.latency_p99),
            m.active_connections,
            m.ready_replicas,
            m.desired_replicas
        );
    }
    out
}

/// The header of [`metrics_csv`].
pub const METRICS_CSV_HEADER: &str = "t_s,service,cpu_usage,memory_usage,request_rate,error_rate,latency_p50_ms,latency_p99_ms,active_connections,ready_replicas,desired_replicas";

/// Reads [`metrics_csv`] back; an error names the line and the field.
pub fn parse_metrics_csv(text: &str) -> Result<Vec<(String, ServiceMetrics)>, CsvError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == METRICS_CSV_HEADER => {}
        _ => {
            return Err(CsvError::new(
                1,
                format!("expected the header `{METRICS_CSV_HEADER}`"),
            ));
        }
    }
    let names: Vec<&str> = METRICS_CSV_HEADER.split(',').collect();
    let mut out = Vec::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 1;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != names.len() {
            return Err(CsvError::new(
                line_no,
                format!("{} fields, expected {}", f.len(), names.len()),
            ));
        }
        let num = |k: usize| -> Result<f64, CsvError> {
            // An empty cell is a metric the source did not measure (a
            // latency without traffic, a success rate nobody exported).
            if f[k].is_empty() && k > 0 {
                return Ok(f64::NAN);
            }
            f[k].parse::<f64>().map_err(|_| {
                CsvError::field(line_no, names[k], format!("`{}` is not a number", f[k]))
            })
        };
        let count = |k: usize| -> Result<u32, CsvError> {
            // Not measured: the count the predictor would see without it.
            if f[k].is_empty() {
                return Ok(0);
            }
            f[k].parse::<u32>().map_err(|_| {
                CsvError::field(line_no, names[k], format!("`{}` is not a count", f[k]))
            })
        };
        let t = num(0)?;
        if !(t.is_finite() && t >= 0.0) {
            return Err(CsvError::field(
                line_no,
                "t_s",
                format!("`{}` is not a time", f[0]),
            ));
        }
        out.push((
            f[1].to_string(),
            ServiceMetrics {
                timestamp: Time::ZERO + crate::time::Span::from_secs_f64(t),
                cpu_usage: num(2)?,
                memory_usage: num(3)?,
                request_rate: num(4)?,
                error_rate: num(5)?,
                latency_p50: num(6)?,
                latency_p99: num(7)?,
                active_connections: count(8)?,
                ready_replicas: count(9)?,
                desired_replicas: count(10)?,
            },
        ));
    }
    Ok(out)
}

/// The `q` quantile of sorted, non-empty values, between the two nearest
/// ranks (the usual linear interpolation; `q` is clamped to 0..=1).
pub fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (below, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(below + 1) {
        Some(&next) => sorted[below] + frac * (next - sorted[below]),
        None => sorted[below],
    }
}

/// A latency for CSV: empty when NaN (no traffic).
pub fn ms(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        format!("{x}")
    }
}

/// One scrape of one call edge, as the caller observes it.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeMetrics {
    pub timestamp: Time,
    /// `caller->callee`, `client->entry` for client load.
    pub edge: String,
    pub request_rate: f64,
    pub error_rate: f64,
    pub latency_p50: f64,
    pub latency_p99: f64,
}

/// The header of `sli.csv`: per scrape, the share of good client requests.
pub const SLI_HEADER: &str = "t_s,sli";

/// The header of `edges.csv`, as the simulator writes it: per scrape and
/// call edge (`caller->callee`, the caller's view), the attempts per second,
/// the failed share and the latency percentiles in ms. Rows of
/// `client->service` (a load's own edge) are read and ignored.
pub const EDGES_CSV_HEADER: &str = "t_s,edge,request_rate,error_rate,latency_p50_ms,latency_p99_ms";
