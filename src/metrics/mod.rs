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
