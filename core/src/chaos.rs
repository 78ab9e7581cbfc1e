//! The chaos platform's verdict: steady-state probes against an
//! experiment's hypothesis, and what they add up to. The simulator measures
//! its probes in the run (`selfheal::sim::chaos`), the live replay from
//! Prometheus; both assemble the same [`Verdict`].

use serde::{Deserialize, Serialize};

/// One check of the steady-state hypothesis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub t_s: f64,
    pub error_rate: f64,
    /// NaN when no request succeeded in the window.
    pub p99_ms: f64,
    pub ready_ok: bool,
    pub passed: bool,
}

impl Probe {
    /// A probe's measurements against the hypothesis `h`.
    pub fn judge(
        h: &crate::scenario::HypothesisSpec,
        t_s: f64,
        error_rate: f64,
        p99_ms: f64,
        ready_ok: bool,
    ) -> Probe {
        let passed = ready_ok
            && h.max_error_rate.is_none_or(|m| error_rate <= m)
            // No successful request in the window: no latency to fail on.
            && h.max_p99_ms.is_none_or(|m| p99_ms.is_nan() || p99_ms <= m);
        Probe {
            t_s,
            error_rate,
            p99_ms,
            ready_ok,
            passed,
        }
    }
}

/// What an experiment measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub experiment: String,
    pub fault: String,
    pub fault_start_s: f64,
    pub fault_end_s: Option<f64>,
    /// Every probe before the fault passed (the hypothesis held to begin
    /// with; otherwise the experiment says nothing about the fault).
    pub held_before: bool,
    pub probes_before: u32,
    pub probes_during: u32,
    pub failed_during: u32,
    pub probes_after: u32,
    pub failed_after: u32,
    /// Seconds from the fault's start to its first failing probe.
    pub impact_s: Option<f64>,
    /// Seconds from the fault's start to the first reaction of anything
    /// that watches the cluster: a controller's command, a liveness-probe
    /// restart or an outlier ejection.
    pub detection_s: Option<f64>,
    /// Seconds from the fault's start to the first healing command.
    pub healing_s: Option<f64>,
    pub healing_actions: u32,
    /// Seconds from the fault's start to the first of `passes_to_recover`
    /// consecutive passing probes after the first failing one; 0 when the
    /// hypothesis never failed; `None` when the run ended unrecovered.
    pub mttr_s: Option<f64>,
    /// Client requests that failed from the fault's start to the run's end.
    pub failed_requests: u64,
    /// Bad client requests (failed or slower than the SLO) from the
    /// fault's start, as a fraction of the error budget over that span.
    pub slo_budget_burnt: f64,
    pub aborted_s: Option<f64>,
    /// Held before, recovered, not aborted.
    pub passed: bool,
    /// Written as `probes.csv`.
    #[serde(skip)]
    pub probes: Vec<Probe>,
}

impl Verdict {
    pub fn probes_csv(&self) -> String {
        let mut out = String::from("t_s,error_rate,p99_ms,ready_ok,passed\n");
        for p in &self.probes {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                p.t_s, p.error_rate, p.p99_ms, p.ready_ok as u8, p.passed as u8
            ));
        }
        out
    }

    /// Two lines for the run's text summary.
    pub fn text(&self) -> String {
        let s = |v: Option<f64>| v.map_or("never".to_string(), |x| format!("{x:.0} s"));
        format!(
            "experiment  {} ({} at {} s): {}; hypothesis {} before, failed {} of {} probes during, {} of {} after\n\
             recovery    impact {}, detected {}, first healing {} ({} actions), MTTR {}, {} requests failed, {:.1}x the error budget{}\n",
            self.experiment,
            self.fault,
            self.fault_start_s,
            if self.passed { "passed" } else { "failed" },
            if self.held_before {
                "held"
            } else {
                "did not hold"
            },
            self.failed_during,
            self.probes_during,
            self.failed_after,
            self.probes_after,
            s(self.impact_s),
            s(self.detection_s),
            s(self.healing_s),
            self.healing_actions,
            s(self.mttr_s),
            self.failed_requests,
            self.slo_budget_burnt,
            self.aborted_s
                .map_or(String::new(), |a| format!(", aborted {a:.0} s in")),
        )
    }
}

impl Verdict {
    /// A verdict from its parts, however they were measured (the
    /// simulation's `measure`, or a live replay).
    pub fn assemble(
        experiment: String,
        fault: String,
        (start, end): (f64, Option<f64>),
        s: ProbeSummary,
        r: Reactions,
        probes: Vec<Probe>,
    ) -> Verdict {
        Verdict {
            experiment,
            fault,
            fault_start_s: start,
            fault_end_s: end,
            held_before: s.held_before,
            probes_before: s.probes_before,
            probes_during: s.probes_during,
            failed_during: s.failed_during,
            probes_after: s.probes_after,
            failed_after: s.failed_after,
            impact_s: s.impact_s,
            detection_s: r.detection_s,
            healing_s: r.healing_s.first().copied(),
            healing_actions: r.healing_s.len() as u32,
            mttr_s: s.mttr_s,
            failed_requests: r.failed_requests,
            slo_budget_burnt: r.slo_budget_burnt,
            aborted_s: r.aborted_s,
            passed: s.held_before && s.mttr_s.is_some() && r.aborted_s.is_none(),
            probes,
        }
    }
}

/// What reacted to a fault and what it cost, seconds from its start.
#[derive(Clone, Debug, PartialEq)]
pub struct Reactions {
    pub detection_s: Option<f64>,
    /// Every healing command's time.
    pub healing_s: Vec<f64>,
    pub failed_requests: u64,
    pub slo_budget_burnt: f64,
    pub aborted_s: Option<f64>,
}

/// What the probes of an experiment say, however they were taken (in the
/// simulation, or live from Prometheus by a replay).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSummary {
    pub held_before: bool,
    pub probes_before: u32,
    pub probes_during: u32,
    pub failed_during: u32,
    pub probes_after: u32,
    pub failed_after: u32,
    pub impact_s: Option<f64>,
    /// From the fault's start to the first of `passes` consecutive passing
    /// probes after the first failing one; 0 when none failed; `None` when
    /// it never recovered (or the fault never `started`).
    pub mttr_s: Option<f64>,
}

impl ProbeSummary {
    pub fn of(probes: &[Probe], start: f64, end: Option<f64>, passes: u32, started: bool) -> Self {
        let phase = |p: &Probe| {
            if p.t_s < start {
                0
            } else if end.is_none_or(|e| p.t_s < e) {
                1
            } else {
                2
            }
        };
        let count = |ph: u8, failed: bool| {
            probes
                .iter()
                .filter(|p| phase(p) == ph && (!failed || !p.passed))
                .count() as u32
        };
        let after_start: Vec<&Probe> = probes.iter().filter(|p| p.t_s >= start).collect();
        let first_fail = after_start.iter().position(|p| !p.passed);
        let mttr_s = match first_fail {
            None if started => Some(0.0),
            None => None,
            Some(k) => after_start[k..]
                .windows(passes.max(1) as usize)
                .find(|w| w.iter().all(|p| p.passed))
                .map(|w| w[0].t_s - start),
        };
        ProbeSummary {
            held_before: count(0, true) == 0,
            probes_before: count(0, false),
            probes_during: count(1, false),
            failed_during: count(1, true),
            probes_after: count(2, false),
            failed_after: count(2, true),
            impact_s: first_fail.map(|k| after_start[k].t_s - start),
            mttr_s,
        }
    }
}
