//! Injected faults: scheduled data from the scenario, applied and reverted
//! by the simulation.
//!
//! How each fault shows on probes (the kubelet probes the pod directly):
//! - `pod_kill`: pods deleted with grace period 0; requests on them are reset.
//!   Replacements are created at once and pay their start-up time.
//! - `node_loss`: the node's pods stop answering at once (requests on them
//!   time out); no kubelet, no probes. After `node_monitor_grace_s` the node
//!   is NotReady and its pods leave the endpoints; after a further
//!   `not_ready_toleration_s` they are evicted and replaced elsewhere.
//! - `latency` on a service: every attempt and every probe is delayed; probes
//!   fail once the delay reaches their timeout. On an edge: only that edge.
//! - `cpu_stress`: a stressor competes for the pod's cores; requests and
//!   probe handlers slow down; probes fail only if starved past the timeout.
//! - `dependency_failure`: the target answers 5xx (errors) or nothing
//!   (blackhole) to callers; its own probes keep passing.
//! - `memory_leak`: memory grows until the pod is OOM-killed; latency suffers
//!   from GC pressure near the limit; probes pass until the kill. A restart
//!   frees the leak.
//! - `hang`: the process stops answering; requests and probes time out;
//!   readiness removes the pod after 3 failures, liveness restarts it (which
//!   ends the hang).
//! - `bad_deploy`: a rolling update to a revision that is slower and/or fails
//!   more; probes pass. It lasts until something rolls it back.

use super::engine::Simulation;
use super::model::{Phase, Revision};
use crate::scenario::{FaultKind, FaultSpec, Scenario};
use crate::time::{Span, Time};

pub(crate) struct ActiveFault {
    pub spec: FaultSpec,
    pub service: Option<u32>,
    pub edge_ends: Option<(u32, u32)>,
    pub node: Option<u32>,
    pub targets: Vec<u32>,
    /// Index of this fault's entry in the recorder's fault log.
    pub record: Option<usize>,
    /// Reverted (at its end, or by an experiment's abort).
    pub ended: bool,
    /// Not started on its schedule: only a write through the served API
    /// starts it (`Simulation::hold_faults`).
    pub held: bool,
    /// The served API object (`<plural>/<name>`) that injected it.
    pub object: Option<String>,
}

/// What an injected fault acts on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Service(u32),
    /// A call edge: (caller, callee).
    Edge((u32, u32)),
}

/// A fault as it happened, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRecord {
    /// Its index in the scenario's `[[fault]]` list.
    pub index: usize,
    pub start: Time,
    pub end: Option<Time>,
    pub kind: FaultKind,
    pub target: String,
    pub pods: Vec<String>,
}

pub(crate) fn schedule(s: &Scenario) -> Vec<ActiveFault> {
    let svc = |name: &str| {
        s.services
            .iter()
            .position(|x| x.name == name)
            .map(|i| i as u32)
    };
    let nodes: Vec<String> = s
        .cluster
        .nodes
        .iter()
        .flat_map(|n| crate::scenario::expand_node_names(&n.name, n.count))
        .collect();
    s.faults
        .iter()
        .map(|f| ActiveFault {
            spec: f.clone(),
            service: f.service.as_deref().and_then(svc),
            edge_ends: f.edge.as_deref().and_then(|e| {
                let (a, b) = crate::scenario::edge_ends(e)?;
                Some((svc(a)?, svc(b)?))
            }),
            node: f
                .node
                .as_deref()
                .and_then(|n| nodes.iter().position(|x| x == n).map(|i| i as u32)),
            targets: Vec::new(),
            record: None,
            ended: false,
            held: false,
            object: None,
        })
        .collect()
}

impl Simulation {
    /// The scenario's faults stay known but none starts on its schedule:
    /// a replay starts them through the served API instead (`selfheal
    /// serve --without-faults`). A held bad deploy starts when a client
    /// sets its Deployment's image to `api_objects::fault_image`.
    pub fn hold_faults(&mut self) {
        for f in &mut self.faults {
            f.held = true;
        }
    }

    /// Starts held fault `i` now, the one a write named.
    pub(crate) fn release_fault(&mut self, i: usize) {
        self.faults[i].held = false;
        self.start_fault(i as u32);
    }

    /// The held faults, by their index in the scenario.
    pub(crate) fn held_fault(&self, i: usize) -> Option<(&FaultSpec, Option<u32>)> {
        self.faults
            .get(i)
            .filter(|f| f.held && f.record.is_none())
            .map(|f| (&f.spec, f.service))
    }

    fn fault_targets(&mut self, svc: u32, pods: Option<u32>, percent: Option<f64>) -> Vec<u32> {
        let mut candidates: Vec<u32> = self.services[svc as usize]
            .pods
            .iter()
            .copied()
            .filter(|&p| self.pods[p as usize].phase == Phase::Running)
            .collect();
        let n = match (pods, percent) {
            (Some(k), _) => k as usize,
            (_, Some(pc)) => (pc / 100.0 * candidates.len() as f64).ceil() as usize,
            _ => candidates.len(),
        }
        .min(candidates.len());
        // Partial Fisher-Yates on the creation-ordered list.
        for i in 0..n {
            let j = i + self.rng_faults.index(candidates.len() - i);
            candidates.swap(i, j);
        }
        candidates.truncate(n);
        candidates.sort_unstable();
        candidates
    }

    pub(crate) fn start_fault(&mut self, i: u32) {
        let now = self.now;
        let f = self.faults[i as usize].spec.clone();
        let svc = self.faults[i as usize].service;
        let mut targets = Vec::new();
        let mut target = f
            .service
            .clone()
            .or(f.edge.clone())
            .or(f.node.clone())
            .unwrap_or_default();
        match f.kind {
            FaultKind::PodKill => {
                let svc = svc.expect("validated");
                targets = self.fault_targets(svc, f.pods, f.percent);
                let names = targets.iter().map(|&p| self.pod_name(p)).collect();
                self.recorder.faults.push(FaultRecord {
                    index: i as usize,
                    start: now,
                    end: Some(now),
                    kind: f.kind,
                    target,
                    pods: names,
                });
                for &p in &targets {
                    self.delete_pod_now(p, false);
                }
                self.recorder.pod_kills += targets.len() as u64;
                return;
            }
            FaultKind::NodeLoss => {
                let node = self.faults[i as usize].node.expect("validated");
                self.lose_node(node);
            }
            FaultKind::Latency => {
                let added = Span::from_secs_f64(f.added_ms.unwrap_or(0.0) / 1000.0);
                if let Some(s) = svc {
                    self.services[s as usize].added_latency =
                        self.services[s as usize].added_latency + added;
                } else if let Some((a, b)) = self.faults[i as usize].edge_ends {
                    for e in self
                        .edges
                        .iter_mut()
                        .filter(|e| e.from == Some(a) && e.to == b)
                    {
                        e.added_latency = e.added_latency + added;
                    }
                }
            }
            FaultKind::CpuStress => {
                let svc = svc.expect("validated");
                targets = self.fault_targets(svc, f.pods, f.percent);
                let cores = f.cores.unwrap_or(0.0);
                for &p in &targets {
                    self.change_pod(p, |pod| pod.stress_cores += cores);
                }
            }
            FaultKind::DependencyFailure => {
                let svc = svc.expect("validated");
                let mode = f.mode.expect("validated");
                self.services[svc as usize].dependency_failure =
                    Some((mode, f.error_rate.unwrap_or(1.0)));
            }
            FaultKind::MemoryLeak => {
                let svc = svc.expect("validated");
                targets = self.fault_targets(svc, f.pods, f.percent);
                let rate = f.leak_mib_per_s.unwrap_or(0.0);
                for &p in &targets {
                    let pod = &mut self.pods[p as usize];
                    pod.leak_held = pod.leaked(now);
                    pod.leak_since = now;
                    pod.leak_rate += rate;
                    self.schedule_oom(p);
                }
            }
            FaultKind::Hang => {
                let svc = svc.expect("validated");
                targets = self.fault_targets(svc, f.pods, f.percent);
                for &p in &targets {
                    self.change_pod(p, |pod| pod.hung = true);
                }
            }
            FaultKind::BadDeploy => {
                let svc = svc.expect("validated");
                let s = &self.services[svc as usize];
                let mut rev: Revision = s.revision(s.current).clone();
                rev.service_time_s *= f.service_time_factor.unwrap_or(1.0);
                if let Some(e) = f.error_rate {
                    rev.error_rate = e;
                }
                if let Some(c) = f.crash_after_s {
                    rev.crash_after = Some(Span::from_secs_f64(c));
                }
                let r = self.deploy(svc, rev);
                target = format!("{}@r{r}", s_name(self, svc));
            }
        }
        let end = f.duration_s.map(|d| now + Span::from_secs_f64(d));
        let names = targets.iter().map(|&p| self.pod_name(p)).collect();
        self.recorder.faults.push(FaultRecord {
            index: i as usize,
            start: now,
            end,
            kind: f.kind,
            target,
            pods: names,
        });
        self.faults[i as usize].record = Some(self.recorder.faults.len() - 1);
        self.faults[i as usize].targets = targets;
        if let Some(end) = end {
            self.queue
                .push(end, super::engine::Event::FaultEnd { fault: i });
        }
    }

    pub(crate) fn end_fault(&mut self, i: u32) {
        if self.faults[i as usize].ended || self.faults[i as usize].record.is_none() {
            return;
        }
        self.faults[i as usize].ended = true;
        let now = self.now;
        let f = self.faults[i as usize].spec.clone();
        let svc = self.faults[i as usize].service;
        let targets = std::mem::take(&mut self.faults[i as usize].targets);
        match f.kind {
            FaultKind::PodKill | FaultKind::BadDeploy => {}
            FaultKind::NodeLoss => {
                let node = self.faults[i as usize].node.expect("validated");
                self.restore_node(node);
            }
            FaultKind::Latency => {
                let added = Span::from_secs_f64(f.added_ms.unwrap_or(0.0) / 1000.0);
                let less =
                    |s: Span| Span::from_nanos(s.as_nanos().saturating_sub(added.as_nanos()));
                if let Some(s) = svc {
                    self.services[s as usize].added_latency =
                        less(self.services[s as usize].added_latency);
                } else if let Some((a, b)) = self.faults[i as usize].edge_ends {
                    for e in self
                        .edges
                        .iter_mut()
                        .filter(|e| e.from == Some(a) && e.to == b)
                    {
                        e.added_latency = less(e.added_latency);
                    }
                }
            }
            FaultKind::CpuStress => {
                let cores = f.cores.unwrap_or(0.0);
                for p in targets {
                    self.change_pod(p, |pod| {
                        pod.stress_cores = (pod.stress_cores - cores).max(0.0)
                    });
                }
            }
            FaultKind::DependencyFailure => {
                if let Some(s) = svc {
                    self.services[s as usize].dependency_failure = None;
                }
            }
            FaultKind::MemoryLeak => {
                // The leak stops growing; what leaked stays until a restart.
                for p in targets {
                    let pod = &mut self.pods[p as usize];
                    pod.leak_held = pod.leaked(now);
                    pod.leak_since = now;
                    pod.leak_rate = 0.0;
                }
            }
            FaultKind::Hang => {
                for p in targets {
                    self.change_pod(p, |pod| pod.hung = false);
                }
            }
        }
        if let Some(r) = self.faults[i as usize].record {
            self.recorder.faults[r].end = Some(now);
        }
    }

    /// Changes a pod's CPU-rate inputs with the integrals brought up to date
    /// first and its completion event re-armed after.
    fn change_pod(&mut self, p: u32, change: impl FnOnce(&mut super::model::Pod)) {
        let now = self.now;
        let pod = &mut self.pods[p as usize];
        if !pod.is_alive() {
            return;
        }
        let limit = self.services[pod.service as usize].cpu_limit;
        pod.advance(now, limit);
        change(pod);
        self.reschedule_cpu(p);
    }
}

fn s_name(sim: &Simulation, svc: u32) -> String {
    sim.services[svc as usize].name.clone()
}

impl Simulation {
    /// Starts `spec` now, as if the scenario had scheduled it (a fault
    /// injected from outside: a chaos resource written through the served
    /// API) on service `svc`. Its `at_s` is ignored.
    pub(crate) fn inject_fault(&mut self, mut spec: FaultSpec, target: Target, object: String) {
        spec.at_s = self.now.as_secs_f64();
        let (service, edge_ends) = match target {
            Target::Service(s) => (Some(s), None),
            Target::Edge(ends) => (None, Some(ends)),
        };
        self.faults.push(ActiveFault {
            spec,
            service,
            edge_ends,
            node: None,
            targets: Vec::new(),
            record: None,
            ended: false,
            held: false,
            object: Some(object),
        });
        self.start_fault(self.faults.len() as u32 - 1);
    }

    /// Ends the faults `object` injected that still hold.
    pub(crate) fn withdraw_fault(&mut self, object: &str) {
        for i in 0..self.faults.len() {
            if self.faults[i].object.as_deref() == Some(object) {
                self.end_fault(i as u32);
            }
        }
    }
}
