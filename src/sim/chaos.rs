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

use super::engine::{Exit, Simulation};
use super::recorder::{PodEventKind, RunOutput};
use crate::metrics::Histogram;
use crate::scenario::{ExperimentSpec, FaultKind};
use crate::time::Time;
pub use selfheal_core::chaos::{Probe, ProbeSummary, Reactions, Verdict};

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
