//! Live metrics to files: `selfheal-k8s record` reads a span of history
//! back from Prometheus and writes, per service, the request rate as a
//! `t_seconds,value` trace (the format a scenario's `trace` load curve
//! replays) and every metric of every scrape as CSV (the simulator's
//! `metrics.csv` format, `selfheal::metrics::metrics_csv`).

use std::fmt::Write as _;

use selfheal::metrics::ServiceMetrics;

/// `t_seconds,value` with the request rate, times from the first scrape.
pub fn load_trace_csv(scrapes: &[ServiceMetrics]) -> String {
    let t0 = scrapes.first().map_or(0.0, |m| m.timestamp.as_secs_f64());
    let mut out = String::from("t_seconds,value\n");
    for m in scrapes {
        let _ = writeln!(out, "{},{}", m.timestamp.as_secs_f64() - t0, m.request_rate);
    }
    out
}
