//! `selfheal-k8s replay`: a scenario's fault schedule applied to a live
//! cluster while the control core heals it, and the scenario's
//! steady-state hypothesis measured live from Prometheus. This module is
//! the pure part: which request injects each fault, which probes are due,
//! and the verdict, with the very columns (`Verdict`, `probes.csv`,
//! `commands.csv`) of a simulated run's experiment.
//!
//! Times here are replay seconds: core seconds since the replay started,
//! the scenario's own clock (a fault at `at_s = 300` starts 300 s in).
//!
//! How each fault is applied: `pod_kill` deletes pods through the
//! Kubernetes API (grace period 0, the first pods by name that are ready);
//! `memory_leak`, `cpu_stress` and service `latency` create Chaos Mesh
//! resources (`selfheal::chaos_mesh`), so they need Chaos Mesh installed
//! (or `selfheal serve`, which accepts them); the others are reported as
//! not replayed, with the reason.

use std::collections::BTreeMap;

use serde_json::Value;

use selfheal::chaos_mesh::{self, Unsupported};
use selfheal::control::Command;
use selfheal::scenario::{ExperimentSpec, FaultKind, FaultSpec, Scenario};
use selfheal::sim::chaos::{Probe, ProbeSummary, Reactions, Verdict};
use selfheal::time::Time;

use crate::actuate::ApiRequest;

mod live;
pub use live::{Live, ReplayError};

/// What injects one fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Injection {
    /// Delete this many (or this percent) of the pods the selector picks.
    DeletePods {
        selector: BTreeMap<String, String>,
        pods: Option<u32>,
        percent: Option<f64>,
    },
    /// Create this resource (Chaos Mesh's).
    Create(ApiRequest),
}

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Its index in the scenario's `[[fault]]` list.
    pub index: usize,
    pub fault: FaultSpec,
    pub injection: Result<Injection, Unsupported>,
}

/// The schedule of `scenario` in `namespace`; `selector_of` gives the pod
/// labels of a service's Deployment.
pub fn plan(
    scenario: &Scenario,
    namespace: &str,
    selector_of: impl Fn(&str) -> BTreeMap<String, String>,
) -> Vec<Step> {
    scenario
        .faults
        .iter()
        .enumerate()
        .map(|(index, f)| {
            let selector = selector_of(f.service.as_deref().unwrap_or(""));
            let injection = match f.kind {
                FaultKind::PodKill => Ok(Injection::DeletePods {
                    selector,
                    pods: f.pods,
                    percent: f.percent,
                }),
                _ => {
                    let name = format!(
                        "selfheal-replay-{}-{index}",
                        f.kind.as_str().replace('_', "-")
                    );
                    chaos_mesh::resource(f, namespace, &selector, &name).map(|(plural, body)| {
                        Injection::Create(ApiRequest {
                            method: "POST",
                            path: format!(
                                "/apis/{}/namespaces/{namespace}/{plural}",
                                chaos_mesh::API_VERSION
                            ),
                            content_type: Some("application/json"),
                            body: Some(body),
                        })
                    })
                }
            };
            Step {
                index,
                fault: f.clone(),
                injection,
            }
        })
        .collect()
}

/// The pods a pod kill deletes from a pod list (the API's JSON): the
/// first `pods` (or `percent`, rounded up) of the ready, undeleted ones by
/// name, as the simulator takes them from its running pods.
pub fn pods_to_delete(list: &Value, pods: Option<u32>, percent: Option<f64>) -> Vec<String> {
    let mut names: Vec<String> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
        })
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(String::from)
        .collect();
    names.sort();
    let n = match (pods, percent) {
        (Some(k), _) => k as usize,
        (_, Some(pc)) => (pc / 100.0 * names.len() as f64).ceil() as usize,
        _ => names.len(),
    };
    names.truncate(n);
    names
}

/// A replay in progress: the faults still to start, the probes taken and
/// the commands sent.
pub struct Replay {
    pub name: String,
    steps: Vec<Step>,
    next: usize,
    experiment: Option<ExperimentSpec>,
    next_probe: f64,
    pub probes: Vec<Probe>,
    /// Replay seconds at which each fault (by index) started.
    pub started: BTreeMap<usize, f64>,
    /// Every command the core gave, at replay seconds.
    pub commands: Vec<(Time, String, Command)>,
    /// The replay ends here (replay seconds).
    pub until_s: f64,
}

impl Replay {
    pub fn new(scenario: &Scenario, steps: Vec<Step>, until_s: Option<f64>) -> Replay {
        let experiment = scenario.experiment.clone();
        Replay {
            name: experiment
                .as_ref()
                .map(|e| e.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| scenario.name.clone()),
            next: 0,
            next_probe: experiment
                .as_ref()
                .map_or(f64::INFINITY, |e| e.hypothesis.window_s),
            experiment,
            probes: Vec::new(),
            started: BTreeMap::new(),
            commands: Vec::new(),
            until_s: until_s.unwrap_or(scenario.duration_s),
            steps: {
                let mut s = steps;
                s.sort_by(|a, b| a.fault.at_s.total_cmp(&b.fault.at_s));
                s
            },
        }
    }

    /// The faults due at replay second `t`, each handed out once.
    pub fn due(&mut self, t: f64) -> Vec<Step> {
        let mut out = Vec::new();
        while self.next < self.steps.len() && self.steps[self.next].fault.at_s <= t {
            out.push(self.steps[self.next].clone());
            self.next += 1;
        }
        out
    }

    /// The hypothesis, when a probe is due at `t`.
    pub fn probe_due(&self, t: f64) -> Option<&ExperimentSpec> {
        self.experiment.as_ref().filter(|_| t >= self.next_probe)
    }

    /// Records a probe taken at `t` (on the probe grid, as the simulator
    /// takes them at whole multiples of the interval).
    pub fn probe(&mut self, t: f64, error_rate: f64, p99_ms: f64, ready_ok: bool) {
        let Some(e) = &self.experiment else {
            return;
        };
        let interval = e.hypothesis.probe_interval_s.max(1.0);
        let at = (t / interval).floor() * interval;
        self.probes.push(Probe::judge(
            &e.hypothesis,
            at,
            error_rate,
            p99_ms,
            ready_ok,
        ));
        self.next_probe = at + interval;
    }

    pub fn done(&self, t: f64) -> bool {
        t >= self.until_s
    }

    /// The experiment's verdict from the live measurements: the probes, the
    /// commands, and the client requests that failed from the fault's start
    /// (`failed_requests`, `budget_burnt` as measured by the caller).
    pub fn verdict(&self, failed_requests: u64, budget_burnt: f64) -> Option<Verdict> {
        let e = self.experiment.as_ref()?;
        let fault = self.steps.iter().find(|s| s.index == e.fault)?;
        let start = self.started.get(&e.fault).copied();
        let start_s = start.unwrap_or(f64::INFINITY);
        let end = start.and_then(|s| fault.fault.duration_s.map(|d| s + d));
        let s = ProbeSummary::of(
            &self.probes,
            start_s,
            end,
            e.hypothesis.passes_to_recover,
            start.is_some(),
        );
        let after = |t: Time| {
            let t = t.as_secs_f64();
            (t >= start_s).then_some(t - start_s)
        };
        let healing: Vec<f64> = self
            .commands
            .iter()
            .filter(|(_, _, c)| c.is_healing())
            .filter_map(|(t, _, _)| after(*t))
            .collect();
        Some(Verdict::assemble(
            self.name.clone(),
            fault.fault.kind.as_str().to_string(),
            (start_s, end),
            s,
            Reactions {
                // Live, the first reaction seen is the core's first command
                // (kubelet restarts and mesh ejections are not watched).
                detection_s: self.commands.iter().find_map(|(t, _, _)| after(*t)),
                healing_s: healing,
                failed_requests,
                slo_budget_burnt: budget_burnt,
                aborted_s: None,
            },
            self.probes.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn leak() -> Scenario {
        selfheal::scenario::load_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/chaos/memory-leak.toml"
        )))
        .unwrap()
        .spec
    }

    #[test]
    fn a_leak_becomes_a_stress_chaos_and_a_hang_is_not_replayed() {
        let mut sc = leak();
        let mut hang = sc.faults[0].clone();
        hang.kind = FaultKind::Hang;
        hang.leak_mib_per_s = None;
        sc.faults.push(hang);
        let steps = plan(&sc, "shop", |s| BTreeMap::from([("app".into(), s.into())]));
        let Ok(Injection::Create(r)) = &steps[0].injection else {
            panic!("{:?}", steps[0])
        };
        assert_eq!(
            r.path,
            "/apis/chaos-mesh.org/v1alpha1/namespaces/shop/stresschaos"
        );
        let body = r.body.as_ref().unwrap();
        assert_eq!(body["spec"]["mode"], "fixed");
        assert_eq!(body["spec"]["value"], "2");
        assert_eq!(body["spec"]["selector"]["labelSelectors"]["app"], "api");
        let e = steps[1].injection.as_ref().unwrap_err();
        assert!(e.to_string().starts_with("hang is not replayed"), "{e}");
    }

    #[test]
    fn pod_kills_take_the_first_ready_pods_by_name() {
        let pod = |n: &str, ready: bool, deleting: bool| {
            let mut p = json!({"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
            }
            p
        };
        let list = json!({"items": [pod("c", true, false), pod("a", true, true), pod("b", true, false), pod("d", false, false), pod("e", true, false)]});
        assert_eq!(pods_to_delete(&list, Some(2), None), ["b", "c"]);
        assert_eq!(pods_to_delete(&list, None, Some(50.0)), ["b", "c"]);
        assert_eq!(pods_to_delete(&list, None, None), ["b", "c", "e"]);
    }

    #[test]
    fn the_verdict_counts_from_the_fault_s_replayed_start() {
        let sc = leak();
        let steps = plan(&sc, "shop", |s| BTreeMap::from([("app".into(), s.into())]));
        let mut r = Replay::new(&sc, steps, Some(600.0));
        assert!(r.due(299.0).is_empty());
        assert_eq!(r.due(301.0).len(), 1);
        assert!(r.due(400.0).is_empty());
        r.started.insert(0, 302.0);
        let h = sc.experiment.as_ref().unwrap().hypothesis.clone();
        // Probes every 5 s: one failure at 330 s, passing again from 340 s.
        for k in 6..=120 {
            let t = k as f64 * 5.0;
            assert!(r.probe_due(t + 0.4).is_some());
            let bad = t == 330.0 || t == 335.0;
            r.probe(t + 0.4, if bad { 0.5 } else { 0.0 }, 50.0, true);
        }
        assert!(r.probe_due(603.0).is_none());
        r.commands.push((
            Time::from_secs(355),
            "hpa-70+heal".into(),
            Command::ReplacePod {
                service: "api".into(),
                pod: "api-r0-0".into(),
                reason: format!("{} leak", selfheal::control::HEALING_REASON),
            },
        ));
        let v = r.verdict(12, 0.5).unwrap();
        assert_eq!(h.passes_to_recover, 3);
        assert_eq!((v.impact_s, v.mttr_s), (Some(28.0), Some(38.0)));
        assert_eq!((v.healing_s, v.healing_actions), (Some(53.0), 1));
        assert!(v.held_before && v.passed && v.failed_requests == 12);
    }
}
