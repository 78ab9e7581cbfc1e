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
//! resources (`selfheal_core::chaos_mesh`), so they need Chaos Mesh installed
//! (or `selfheal serve`, which accepts them); `bad_deploy` is a change of
//! the Deployment's image to the revision a served simulation holds as
//! bad (a real cluster's bad revision is its own application's image,
//! which a replay cannot invent); `node_loss` cordons the node and deletes
//! the namespace's pods on it at once (and uncordons it when the fault
//! ends), which is how an operator takes a node out, not how one dies: the
//! pods are gone at once, where a lost node's pods stop answering and
//! leave only when the node controller evicts them; `dependency_failure`
//! and latency on a call edge create an Istio VirtualService with
//! `fault.abort` or `fault.delay` (`selfheal_core::istio`), deleted when the
//! fault ends, so they need Istio (or `selfheal serve`). `hang` is
//! reported as not replayed, with the reason.

use std::collections::BTreeMap;

use serde_json::Value;

use selfheal_core::chaos::{Probe, ProbeSummary, Reactions, Verdict};
use selfheal_core::chaos_mesh::{self, Unsupported};
use selfheal_core::control::Command;
use selfheal_core::istio;
use selfheal_core::scenario::{ExperimentSpec, FaultKind, FaultSpec, Scenario};
use selfheal_core::time::Time;

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
    /// Send this write (a Chaos Mesh resource, a Deployment's new image,
    /// a node's uncordon).
    Write(ApiRequest),
    /// Cordon the node, then delete the namespace's pods on it.
    DrainNode { node: String },
}

/// What the replay knows of a faulty service's Deployment on the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub deployment: String,
    /// The labels its ReplicaSets select pods by.
    pub selector: BTreeMap<String, String>,
    /// Its first container's image, if the Deployment was read.
    pub image: Option<String>,
}

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Its index in the scenario's `[[fault]]` list.
    pub index: usize,
    pub fault: FaultSpec,
    /// When it is due (replay seconds): the fault's start, or its end for
    /// a step that undoes it.
    pub at_s: f64,
    /// It undoes the fault (a node's uncordon, a VirtualService's deletion).
    pub ends: bool,
    pub injection: Result<Injection, Unsupported>,
}

impl Step {
    /// What the log calls it: the fault's kind, or its end.
    pub fn label(&self) -> String {
        match self.ends {
            true => format!("end of {}", self.fault.kind.as_str()),
            false => self.fault.kind.as_str().to_string(),
        }
    }
}

/// The schedule of `scenario` in `namespace`; `target_of` describes a
/// service's Deployment.
pub fn plan(scenario: &Scenario, namespace: &str, target_of: impl Fn(&str) -> Target) -> Vec<Step> {
    let mut steps = Vec::new();
    for (index, f) in scenario.faults.iter().enumerate() {
        let name = format!(
            "selfheal-replay-{}-{index}",
            f.kind.as_str().replace('_', "-")
        );
        let mesh = istio::virtual_service(f, namespace, &name);
        let vs_path = format!(
            "/apis/{}/namespaces/{namespace}/{}",
            istio::API_VERSION,
            istio::PLURAL
        );
        // What undoes the fault when it ends (Chaos Mesh ends its own).
        let undo = match (f.kind, &f.node, &mesh) {
            (FaultKind::NodeLoss, Some(node), _) => Some(cordon(node, false)),
            (_, _, Some(_)) => Some(ApiRequest {
                method: "DELETE",
                path: format!("{vs_path}/{name}"),
                content_type: None,
                body: None,
            }),
            _ => None,
        };
        if let (Some(undo), Some(d)) = (undo, f.duration_s) {
            steps.push(Step {
                index,
                fault: f.clone(),
                at_s: f.at_s + d,
                ends: true,
                injection: Ok(Injection::Write(undo)),
            });
        }
        steps.push({
            let Target {
                deployment,
                selector,
                image,
            } = target_of(f.service.as_deref().unwrap_or(""));
            let injection = match f.kind {
                FaultKind::PodKill => Ok(Injection::DeletePods {
                    selector,
                    pods: f.pods,
                    percent: f.percent,
                }),
                FaultKind::NodeLoss => match &f.node {
                    Some(node) => Ok(Injection::DrainNode { node: node.clone() }),
                    None => Err(Unsupported {
                        kind: "node_loss",
                        why: "the fault names no node",
                    }),
                },
                FaultKind::BadDeploy => {
                    bad_image(&deployment, image.as_deref(), index).map(|(current, bad)| {
                        Injection::Write(ApiRequest {
                            method: "PATCH",
                            path: format!(
                                "/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"
                            ),
                            content_type: Some("application/json-patch+json"),
                            // `test` first: a template someone changed
                            // meanwhile is left alone.
                            body: Some(serde_json::json!([
                                {"op": "test", "path": IMAGE_PATH, "value": current},
                                {"op": "replace", "path": IMAGE_PATH, "value": bad},
                            ])),
                        })
                    })
                }
                _ if mesh.is_some() => Ok(Injection::Write(ApiRequest {
                    method: "POST",
                    path: vs_path.clone(),
                    content_type: Some("application/json"),
                    body: mesh.clone(),
                })),
                _ => chaos_mesh::resource(f, namespace, &selector, &name).map(|(plural, body)| {
                    Injection::Write(ApiRequest {
                        method: "POST",
                        path: format!(
                            "/apis/{}/namespaces/{namespace}/{plural}",
                            chaos_mesh::API_VERSION
                        ),
                        content_type: Some("application/json"),
                        body: Some(body),
                    })
                }),
            };
            Step {
                index,
                fault: f.clone(),
                at_s: f.at_s,
                ends: false,
                injection,
            }
        });
    }
    steps
}

/// `kubectl cordon` (`true`) or `uncordon` of `node`, as kubectl patches it.
pub fn cordon(node: &str, unschedulable: bool) -> ApiRequest {
    ApiRequest {
        method: "PATCH",
        path: format!("/api/v1/nodes/{node}"),
        content_type: Some("application/strategic-merge-patch+json"),
        body: Some(serde_json::json!({"spec": {"unschedulable": unschedulable.then_some(true)}})),
    }
}

const IMAGE_PATH: &str = "/spec/template/spec/containers/0/image";

/// The current image and the bad one for bad deploy `index`: a served
/// simulation (its images are `selfheal.local/<deployment>:r<k>`) holds
/// the scenario's bad deploys as images of their own; nothing names a real
/// cluster's bad revision.
fn bad_image(
    deployment: &str,
    image: Option<&str>,
    index: usize,
) -> Result<(String, String), Unsupported> {
    match image {
        Some(current)
            if selfheal_core::images::revision_of_image(deployment, current).is_some() =>
        {
            Ok((
                current.to_string(),
                selfheal_core::images::fault_image(deployment, index),
            ))
        }
        _ => Err(Unsupported {
            kind: "bad_deploy",
            why: "a bad revision is the application's own image, which a replay cannot invent (against `selfheal serve --without-faults` it is a change of image to the revision the simulation holds as bad)",
        }),
    }
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
                s.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
                s
            },
        }
    }

    /// The faults due at replay second `t`, each handed out once.
    pub fn due(&mut self, t: f64) -> Vec<Step> {
        let mut out = Vec::new();
        while self.next < self.steps.len() && self.steps[self.next].at_s <= t {
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

    /// The replay second of what is due next: a fault to write, a probe to
    /// take or the end.
    pub fn next_at(&self) -> f64 {
        let step = self.steps.get(self.next).map_or(f64::INFINITY, |s| s.at_s);
        step.min(self.next_probe).min(self.until_s)
    }

    /// The experiment's verdict from the live measurements: the probes, the
    /// commands, and the client requests that failed from the fault's start
    /// (`failed_requests`, `budget_burnt` as measured by the caller).
    pub fn verdict(&self, failed_requests: u64, budget_burnt: f64) -> Option<Verdict> {
        let e = self.experiment.as_ref()?;
        let fault = self.steps.iter().find(|s| s.index == e.fault && !s.ends)?;
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

    /// A scenario of `scenarios/chaos/`.
    fn chaos(name: &str) -> Scenario {
        let path = format!(
            "{}/../scenarios/chaos/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        selfheal_core::scenario::load_file(std::path::Path::new(&path))
            .unwrap()
            .spec
    }

    fn leak() -> Scenario {
        chaos("memory-leak")
    }

    /// A service's Deployment as `selfheal serve` renders it.
    fn served(s: &str) -> Target {
        Target {
            deployment: s.into(),
            selector: BTreeMap::from([("app".into(), s.into())]),
            image: Some(format!("selfheal.local/{s}:r0")),
        }
    }

    #[test]
    fn a_bad_deploy_is_a_new_image_on_a_served_simulation_only() {
        let sc = chaos("bad-deploy");
        let steps = plan(&sc, "shop", served);
        let Ok(Injection::Write(r)) = &steps[0].injection else {
            panic!("{:?}", steps[0])
        };
        assert_eq!(
            (r.method, r.path.as_str(), r.content_type),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/orders",
                Some("application/json-patch+json")
            )
        );
        assert_eq!(
            r.body.as_ref().unwrap(),
            &json!([
                {"op": "test", "path": IMAGE_PATH, "value": "selfheal.local/orders:r0"},
                {"op": "replace", "path": IMAGE_PATH, "value": "selfheal.local/orders:fault-0"},
            ])
        );
        let real = plan(&sc, "shop", |s| Target {
            image: Some("registry.example/orders:1.4".into()),
            ..served(s)
        });
        let e = real[0].injection.as_ref().unwrap_err();
        assert!(
            e.to_string().starts_with(
                "bad_deploy is not replayed: a bad revision is the application's own image"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_lost_node_is_drained_and_uncordoned_when_the_fault_ends() {
        let sc = chaos("node-loss");
        let mut r = Replay::new(&sc, plan(&sc, "shop", served), None);
        assert!(r.due(299.0).is_empty());
        let start = r.due(300.0);
        assert_eq!(start.len(), 1);
        assert_eq!(
            start[0].injection,
            Ok(Injection::DrainNode {
                node: "node-0".into()
            })
        );
        assert!(!start[0].ends);
        assert!(r.due(1199.0).is_empty());
        let end = r.due(1200.0);
        assert!(end[0].ends);
        let Ok(Injection::Write(uncordon)) = &end[0].injection else {
            panic!("{:?}", end[0])
        };
        assert_eq!(uncordon.path, "/api/v1/nodes/node-0");
        assert_eq!(
            uncordon.body,
            Some(json!({"spec": {"unschedulable": null}}))
        );
        assert_eq!(
            cordon("node-0", true).body,
            Some(json!({"spec": {"unschedulable": true}}))
        );
        // The verdict is about the fault's start, not its undoing.
        r.started.insert(0, 300.0);
        let v = r.verdict(0, 0.0).unwrap();
        assert_eq!(
            (v.fault.as_str(), v.fault_start_s, v.fault_end_s),
            ("node_loss", 300.0, Some(1200.0))
        );
    }

    #[test]
    fn a_failing_dependency_is_a_virtual_service_for_its_duration() {
        let sc = chaos("dependency-failure");
        let mut r = Replay::new(&sc, plan(&sc, "shop", served), None);
        let start = r.due(300.0);
        let Ok(Injection::Write(create)) = &start[0].injection else {
            panic!("{:?}", start[0])
        };
        let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
        assert_eq!((create.method, create.path.as_str()), ("POST", vs));
        let body = create.body.as_ref().unwrap();
        assert_eq!(
            istio::fault(body).unwrap(),
            selfheal_core::scenario::FaultSpec {
                at_s: 0.0,
                duration_s: None,
                ..sc.faults[0].clone()
            }
        );
        let end = r.due(600.0);
        assert!(end[0].ends);
        let Ok(Injection::Write(delete)) = &end[0].injection else {
            panic!("{:?}", end[0])
        };
        assert_eq!(delete.method, "DELETE");
        assert_eq!(
            delete.path,
            format!("{vs}/{}", body["metadata"]["name"].as_str().unwrap())
        );
    }

    /// The adapter sleeps until `next_at` whatever its control loop waits
    /// for: a probe, a fault's start or end, or the end of the replay.
    #[test]
    fn the_next_wake_up_is_the_earliest_probe_fault_or_end() {
        let sc = chaos("dependency-failure");
        let mut r = Replay::new(&sc, plan(&sc, "shop", served), Some(700.0));
        // The first probe waits for a full window of the hypothesis.
        assert_eq!(r.next_at(), 30.0);
        r.probe(31.0, 0.0, 10.0, true);
        assert_eq!(r.next_at(), 35.0);
        for t in (35..=295).step_by(5) {
            r.probe(t as f64, 0.0, 10.0, true);
        }
        assert_eq!(r.next_at(), 300.0);
        assert_eq!(r.due(300.0).len(), 1);
        assert_eq!(r.next_at(), 300.0, "the probe at the fault's start");
        // A probe taken late does not hide the fault's end.
        r.probe(640.0, 0.0, 10.0, true);
        assert_eq!(r.next_at(), 600.0);
        assert_eq!(r.due(600.0).len(), 1);
        assert_eq!(r.next_at(), 645.0);
        for t in (645..=695).step_by(5) {
            r.probe(t as f64, 0.0, 10.0, true);
        }
        r.probe(702.0, 0.0, 10.0, true);
        assert_eq!(r.next_at(), 700.0, "the end comes before the next probe");
    }

    #[test]
    fn a_leak_becomes_a_stress_chaos_and_a_hang_is_not_replayed() {
        let mut sc = leak();
        let mut hang = sc.faults[0].clone();
        hang.kind = FaultKind::Hang;
        hang.leak_mib_per_s = None;
        sc.faults.push(hang);
        let steps = plan(&sc, "shop", served);
        let Ok(Injection::Write(r)) = &steps[0].injection else {
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
        let steps = plan(&sc, "shop", served);
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
                reason: format!("{} leak", selfheal_core::control::HEALING_REASON),
            },
        ));
        let v = r.verdict(12, 0.5).unwrap();
        assert_eq!(h.passes_to_recover, 3);
        assert_eq!((v.impact_s, v.mttr_s), (Some(28.0), Some(38.0)));
        assert_eq!((v.healing_s, v.healing_actions), (Some(53.0), 1));
        assert!(v.held_before && v.passed && v.failed_requests == 12);
    }
}
