//! The tuner: searches the selfheal scaler's thresholds over a training
//! suite and validates the best on a held-out suite.
//!
//! Each candidate replaces the training suite's controllers; the objective
//! (lower is better) is the mean over runs of SLO-violation seconds plus a
//! cost weight times replica-seconds. Every candidate's runs are a sweep of
//! their own, so an interrupted tune resumes like any sweep.

use super::plan::{Plan, RunSpec};
use super::run::RunRecord;
use crate::scenario::{ControllerKind, ControllerSpec};

#[derive(Clone, Debug)]
pub struct Candidate {
    pub label: String,
    pub spec: ControllerSpec,
}

/// The search space: the thresholds users tune by hand.
pub fn grid() -> Vec<Candidate> {
    let mut out = Vec::new();
    for cpu in [0.5, 0.6, 0.7] {
        for upper in [false, true] {
            for up_cooldown in [60.0, 180.0] {
                for down_cooldown in [300.0, 600.0] {
                    out.push(Candidate {
                        label: format!("cpu_target={cpu} plan_on_upper={upper} scale_up_cooldown_s={up_cooldown} scale_down_cooldown_s={down_cooldown}"),
                        spec: ControllerSpec {
                            kind: ControllerKind::Selfheal,
                            cpu_target: Some(cpu),
                            plan_on_upper: Some(upper),
                            scale_up_cooldown_s: Some(up_cooldown),
                            scale_down_cooldown_s: Some(down_cooldown),
                            ..ControllerSpec::default()
                        },
                    });
                }
            }
        }
    }
    out
}

/// The plan's distinct (scenario, parameters, seed) runs under one
/// controller, renumbered.
pub fn with_controller(plan: &Plan, label: &str, spec: &ControllerSpec) -> Plan {
    let first = plan
        .runs
        .first()
        .map(|r| r.controller.clone())
        .unwrap_or_default();
    let runs: Vec<RunSpec> = plan
        .runs
        .iter()
        .filter(|r| r.controller == first)
        .enumerate()
        .map(|(i, r)| {
            let mut l = r.loaded.clone();
            l.spec.use_controller(spec.clone());
            RunSpec {
                index: i,
                id: format!("{}|{}|{label}|{}", r.scenario, r.params, r.seed),
                scenario: r.scenario.clone(),
                params: r.params.clone(),
                controller: label.to_string(),
                seed: r.seed,
                keep_series: r.keep_series,
                loaded: l,
            }
        })
        .collect();
    Plan {
        name: plan.name.clone(),
        description: plan.description.clone(),
        runs,
    }
}

/// Mean SLO-violation seconds plus `cost_weight` x replica-seconds.
pub fn objective(records: &[RunRecord], cost_weight: f64) -> f64 {
    let n = records.len().max(1) as f64;
    records
        .iter()
        .map(|r| r.slo_violation_s + cost_weight * r.replica_seconds)
        .sum::<f64>()
        / n
}

/// The `[controller]` table of a spec, as scenario files take it.
pub fn controller_toml(spec: &ControllerSpec) -> String {
    #[derive(serde::Serialize)]
    struct Wrap<'a> {
        controller: &'a ControllerSpec,
    }
    toml::to_string(&Wrap { controller: spec }).expect("a controller spec serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_is_accepted_by_scenario_files() {
        let best = &grid()[5];
        let text = format!(
            "name = \"t\"\nduration_s = 60\nseed = 1\n[slo]\nlatency_ms = 100\n[[load]]\nservice = \"a\"\ncurve = {{ kind = \"constant\", rate = 1 }}\n[[service]]\nname = \"a\"\nrevision = {{ service_time_ms = 1 }}\n{}",
            controller_toml(&best.spec)
        );
        let sc = crate::scenario::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(sc.spec.controller, best.spec);
    }
}
