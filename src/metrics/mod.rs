//! Metrics as a controller sees them, the same in simulation and live.

mod histogram;

pub use histogram::{Buckets, Histogram, histogram_quantile};

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
    let mut out = String::from(
        "t_s,service,cpu_usage,memory_usage,request_rate,error_rate,latency_p50_ms,latency_p99_ms,active_connections,ready_replicas,desired_replicas\n",
    );
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
