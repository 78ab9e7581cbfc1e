//! Live metrics to files: `selfheal-k8s record` reads a span of history
//! back from Prometheus and writes, per service, the request rate as a
//! `t_seconds,value` trace (the format a scenario's `trace` load curve
//! replays) and every metric of every scrape as CSV (the simulator's
//! `metrics.csv` format, `selfheal_core::metrics::metrics_csv`).

use std::fmt::Write as _;

use crate::observe::Scrape;

/// `t_seconds,value` with the request rate, times from the first scrape.
pub fn load_trace_csv(scrapes: &[Scrape]) -> String {
    let t0 = scrapes
        .first()
        .map_or(0.0, |s| s.metrics.timestamp.as_secs_f64());
    let mut out = String::from("t_seconds,value\n");
    for s in scrapes {
        let m = &s.metrics;
        let _ = writeln!(out, "{},{}", m.timestamp.as_secs_f64() - t0, m.request_rate);
    }
    out
}

/// `t_s,sli` per scrape (times as in the metrics file): what
/// `selfheal train --from-recorded` labels health with.
pub fn sli_csv(scrapes: &[Scrape]) -> String {
    let mut out = format!("{}\n", selfheal_core::metrics::SLI_HEADER);
    for s in scrapes {
        let _ = writeln!(out, "{},{}", s.metrics.timestamp.as_secs_f64(), s.sli);
    }
    out
}
