//! CSV and TOML output of a run. Numbers print in Rust's shortest
//! round-trip form, so equal runs give equal bytes.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::recorder::RunOutput;
pub use selfheal_core::control::commands_csv;

use crate::metrics::ms;

impl RunOutput {
    /// Scraped service metrics, one row per service per scrape.
    pub fn metrics_csv(&self) -> String {
        crate::metrics::metrics_csv(
            self.metrics
                .iter()
                .map(|(i, m)| (self.services[*i].as_str(), m)),
        )
    }

    /// Scraped call-edge metrics (caller's view).
    pub fn edges_csv(&self) -> String {
        let mut out = format!("{}\n", crate::metrics::EDGES_CSV_HEADER);
        for m in &self.edge_metrics {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                m.timestamp.as_secs_f64(),
                m.edge,
                m.request_rate,
                m.error_rate,
                ms(m.latency_p50),
                ms(m.latency_p99)
            );
        }
        out
    }

    /// The per-second series: root outcomes, then each service's pods.
    pub fn series_csv(&self) -> String {
        let mut out = String::from("t_s,requests,ok,good,failed");
        for s in &self.services {
            let _ = write!(
                out,
                ",{s}_ready,{s}_desired,{s}_scheduled,{s}_terminating,{s}_in_system"
            );
        }
        out.push('\n');
        let n = self.services.len().max(1);
        for (t, r) in self.root_seconds.iter().enumerate() {
            let _ = write!(out, "{},{},{},{},{}", t, r.arrivals, r.ok, r.good, r.failed);
            for s in self
                .service_seconds
                .iter()
                .skip(t * n)
                .take(self.services.len())
            {
                let _ = write!(
                    out,
                    ",{},{},{},{},{}",
                    s.ready, s.desired, s.scheduled, s.terminating, s.in_system
                );
            }
            out.push('\n');
        }
        out
    }

    pub fn commands_csv(&self) -> String {
        commands_csv(&self.commands)
    }

    pub fn faults_csv(&self) -> String {
        let mut out = String::from("start_s,end_s,kind,target,pods\n");
        for f in &self.faults {
            let end = f
                .end
                .map(|e| e.as_secs_f64().to_string())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{}",
                f.start.as_secs_f64(),
                end,
                f.kind.as_str(),
                f.target,
                f.pods.join(" ")
            );
        }
        out
    }

    pub fn pod_events_csv(&self) -> String {
        let mut out = String::from("t_s,pod,event\n");
        for e in &self.pod_events {
            let _ = writeln!(out, "{},{},{}", e.t.as_secs_f64(), e.pod, e.kind.as_str());
        }
        out
    }

    pub fn summary_toml(&self) -> String {
        toml::to_string(&self.summary).unwrap_or_default()
    }

    /// Writes every table of the run into `dir` (created if needed).
    pub fn write_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, body) in [
            ("metrics.csv", self.metrics_csv()),
            ("edges.csv", self.edges_csv()),
            ("series.csv", self.series_csv()),
            ("commands.csv", self.commands_csv()),
            ("faults.csv", self.faults_csv()),
            ("pod_events.csv", self.pod_events_csv()),
            ("summary.toml", self.summary_toml()),
        ]
        .into_iter()
        .chain(self.verdict.iter().flat_map(|v| {
            [
                ("verdict.toml", toml::to_string(v).unwrap_or_default()),
                ("probes.csv", v.probes_csv()),
            ]
        })) {
            // Write then rename, so an interrupted run never leaves a
            // truncated file that looks complete.
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, dir.join(name))?;
        }
        Ok(())
    }

    /// A short human-readable report.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let verdict = self.verdict.as_ref().map_or(String::new(), |v| v.text());
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        format!(
            "scenario {} (seed {}), {} s simulated\n\
             requests    {} arrived, {} served ({:.3} %), {} failed, {} unfinished\n\
             SLO         {:.3} % good within {} ms (objective {} %), {} s in violation ({} of {} windows)\n\
             latency     p50 {:.1} ms, p99 {:.1} ms (served requests)\n\
             cost        {:.0} replica-seconds\n\
             pods        {} restarts ({} liveness, {} OOM kills), {} killed, {} evicted\n\
             mesh        {} timeouts, {} rejections, {} retries, {} ejections, {} breaker overflows\n\
             engine      {} events\n{}",
            s.scenario,
            s.seed,
            s.duration_s,
            s.requests,
            s.served,
            pct(s.served, s.requests),
            s.failed,
            s.unfinished,
            pct(s.good, s.served + s.failed),
            s.slo_latency_ms,
            s.slo_objective * 100.0,
            s.slo_violation_s,
            s.slo_windows_violated,
            s.slo_windows,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.replica_seconds,
            s.restarts,
            s.liveness_restarts,
            s.oom_kills,
            s.pod_kills,
            s.evictions,
            s.timeouts,
            s.rejections,
            s.retries,
            s.outlier_ejections,
            s.circuit_breaker_overflows,
            s.events,
            verdict,
        )
    }
}
