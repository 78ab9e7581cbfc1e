//! The chaos platform's measurements, as the seed's
//! `ChaosEngineeringPlatform` meant them but measured in the simulation:
//! steady-state probes taken while the run goes on (so an abort condition
//! can stop the fault), and the experiment's verdict computed from them.
//!
//! A probe at whole second `t` looks at the client requests that finished
//! in `[t - window, t)`: their error rate, the p99 of the successful ones
//! (from the root latency histogram, as `histogram_quantile` over a range
//! would), and the ready replicas of the named services at `t`. Nothing is
//! random here; every figure follows from the seeded run.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::engine::{Exit, Simulation};
use super::recorder::{PodEventKind, RunOutput};
use crate::metrics::Histogram;
use crate::scenario::{ExperimentSpec, FaultKind};
use crate::time::Time;

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

pub(crate) struct ChaosState {
    spec: ExperimentSpec,
    interval: u64,
    window: u64,
    /// Root-latency histograms at past probe times, for windowed deltas.
    snapshots: VecDeque<(u64, Histogram)>,
    probes: Vec<Probe>,
    abort_since: Option<f64>,
    aborted_at: Option<f64>,
}

impl ChaosState {
    pub(crate) fn new(spec: ExperimentSpec) -> Self {
        ChaosState {
            interval: spec.hypothesis.probe_interval_s as u64,
            window: spec.hypothesis.window_s as u64,
            spec,
            snapshots: VecDeque::new(),
            probes: Vec::new(),
            abort_since: None,
            aborted_at: None,
        }
    }
}

impl Simulation {
    /// Called at every whole second: takes a probe when one is due and
    /// applies the abort condition.
    pub(crate) fn chaos_second(&mut self) {
        let Some(mut c) = self.chaos.take() else {
            return;
        };
        let t = self.now.whole_secs();
        if t.is_multiple_of(c.interval) {
            self.take_probe(&mut c, t);
        }
        self.chaos = Some(c);
    }

    fn take_probe(&mut self, c: &mut ChaosState, t: u64) {
        let latency = self.recorder.root_latency();
        if t < c.window {
            c.snapshots.push_back((t, latency.clone()));
            return;
        }
        while c.snapshots.len() > 1 && c.snapshots[1].0 <= t - c.window {
            c.snapshots.pop_front();
        }
        let window = latency.delta(&c.snapshots[0].1);
        c.snapshots.push_back((t, latency.clone()));
        let (mut ok, mut failed, mut arrivals) = (0u64, 0u64, 0u64);
        for r in self.recorder.roots_between(t - c.window, t) {
            ok += r.ok;
            failed += r.failed;
            arrivals += r.arrivals;
        }
        let error_rate = if ok + failed > 0 {
            failed as f64 / (ok + failed) as f64
        } else if arrivals > 0 {
            // Requests came and none finished: nothing is being answered.
            1.0
        } else {
            0.0
        };
        let p99_ms = if window.count() > 0 {
            1000.0 * window.quantile(&self.buckets, 0.99)
        } else {
            f64::NAN
        };
        let h = &c.spec.hypothesis;
        let ready_ok = h.min_ready.iter().all(|m| {
            self.services
                .iter()
                .find(|s| s.name == m.service)
                .is_some_and(|s| s.endpoints.len() as u32 >= m.replicas)
        });
        c.probes
            .push(Probe::judge(h, t as f64, error_rate, p99_ms, ready_ok));
        self.check_abort(c, t as f64, error_rate);
    }

    fn check_abort(&mut self, c: &mut ChaosState, t: f64, error_rate: f64) {
        let Some(abort) = c.spec.abort.clone() else {
            return;
        };
        let i = c.spec.fault;
        let running = self.faults[i].record.is_some() && !self.faults[i].ended;
        if c.aborted_at.is_some() || !running || error_rate <= abort.max_error_rate {
            c.abort_since = None;
            return;
        }
        let since = *c.abort_since.get_or_insert(t);
        if t - since >= abort.for_s {
            c.aborted_at = Some(t);
            if self.faults[i].spec.kind == FaultKind::BadDeploy {
                // The experiment made the deploy; aborting undoes it.
                if let Some(svc) = self.faults[i].service {
                    self.rollback(svc);
                }
            }
            self.end_fault(i as u32);
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
    /// The verdict, once the run is over: `out` is its output, `ejections`
    /// the outlier ejection times.
    pub(crate) fn measure(c: ChaosState, out: &RunOutput, ejections: &[Time]) -> Verdict {
        let name = if c.spec.name.is_empty() {
            out.summary.scenario.clone()
        } else {
            c.spec.name.clone()
        };
        let fault = out.faults.iter().find(|f| f.index == c.spec.fault);
        let (kind, start, end) = match fault {
            Some(f) => (
                f.kind.as_str().to_string(),
                f.start.as_secs_f64(),
                f.end.map(|e| e.as_secs_f64()),
            ),
            // The fault never started (the run ended first).
            None => (String::new(), f64::INFINITY, None),
        };
        let s = ProbeSummary::of(
            &c.probes,
            start,
            end,
            c.spec.hypothesis.passes_to_recover,
            fault.is_some(),
        );
        // A fault that never started has nothing after it.
        let start_t = fault.map_or(Time::MAX, |f| f.start);
        let after = |t: Time| (t >= start_t).then(|| t.saturating_sub(start_t).as_secs_f64());
        let first_command = out.commands.iter().find_map(|(t, _, _)| after(*t));
        let first_liveness = out.pod_events.iter().find_map(|e| match e.kind {
            PodEventKind::Exited(Exit::Liveness) => after(e.t),
            _ => None,
        });
        let first_ejection = ejections.iter().find_map(|&t| after(t));
        let detection_s = [first_command, first_liveness, first_ejection]
            .into_iter()
            .flatten()
            .min_by(f64::total_cmp);
        let healing: Vec<f64> = out
            .commands
            .iter()
            .filter(|(_, _, cmd)| cmd.is_healing())
            .filter_map(|(t, _, _)| after(*t))
            .collect();
        let from = (start.min(out.root_seconds.len() as f64)) as usize;
        let (mut total, mut good, mut failed) = (0u64, 0u64, 0u64);
        for r in &out.root_seconds[from..] {
            total += r.ok + r.failed;
            good += r.good;
            failed += r.failed;
        }
        let budget = (1.0 - out.summary.slo_objective) * total as f64;
        let slo_budget_burnt = if budget > 0.0 {
            (total - good) as f64 / budget
        } else {
            0.0
        };
        Verdict::assemble(
            name,
            kind,
            (start, end),
            s,
            Reactions {
                detection_s,
                healing_s: healing,
                failed_requests: failed,
                slo_budget_burnt,
                aborted_s: c.aborted_at.map(|t| t - start),
            },
            c.probes,
        )
    }

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
