//! A running simulation as the Kubernetes API shows a cluster: one
//! Deployment per service, a ReplicaSet per revision, its Pods, a Service
//! and a `<service>-selfheal` ConfigMap, in the JSON of apps/v1 and core/v1;
//! and the writes the API accepts, each with its real effect in the
//! simulation. The objects carry no resourceVersion: `serve` numbers the
//! changes between two renderings.
//!
//! Names follow the Deployment controller's: revision `k` (from 0, as the
//! simulator counts them) is ReplicaSet `<service>-r<k>` with
//! `pod-template-hash: r<k>` and `deployment.kubernetes.io/revision: k+1`;
//! its image, `selfheal.local/<service>:r<k>`, is how a written pod template
//! names the revision to run.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::engine::Simulation;
use super::exposition::Exposition;
use super::faults::Target;
use super::model::{Phase, Service};
use crate::control::Command;
use crate::scenario::{FaultKind, IntOrPercent};
use crate::time::{Span, Time, rfc3339};
pub use selfheal_core::images::{fault_image, fault_of_image, image, revision_of_image};

/// The resources the simulation owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimResource {
    Deployment,
    ReplicaSet,
    Pod,
    Service,
    ConfigMap,
    /// Cluster-scoped: the simulated nodes.
    Node,
    /// Cluster-scoped: the one namespace everything is served in.
    Namespace,
    /// Pod lifecycle and controllers' commands, the newest `EVENTS_KEPT`.
    Event,
}

/// How many events are served: the newest, as the API server's event TTL
/// keeps only the recent ones.
pub const EVENTS_KEPT: usize = 200;

/// One rendered object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiObject {
    pub resource: SimResource,
    pub name: String,
    pub body: Value,
}

/// One event before it is rendered: on a pod or on a Deployment.
struct EventRow<'a> {
    t: Time,
    name: String,
    pod: bool,
    object: &'a str,
    warning: bool,
    reason: &'static str,
    message: String,
    component: &'a str,
}

/// Where a Service's selector sends its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Its own pods.
    Own,
    /// No pods: callers fail fast or use their fallback (isolation).
    Nowhere,
    /// The pods of its standby (fail-over).
    Standby,
}

/// A write through the API, as the simulation can carry it out.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiWrite {
    Scale {
        deployment: String,
        replicas: u32,
    },
    /// `grace_zero`: deleted at once, its requests failed (a forced
    /// delete); otherwise it drains for the termination grace period.
    DeletePod {
        pod: String,
        grace_zero: bool,
    },
    /// The Deployment's template now names revision `revision`: a rolling
    /// update to a copy of it (`kubectl rollout undo` is one).
    RollTo {
        deployment: String,
        revision: u32,
    },
    /// A Service's selector: its own pods, none (isolation) or its
    /// standby's (fail-over).
    Select {
        service: String,
        selector: BTreeMap<String, String>,
    },
    Configure {
        service: String,
        max_connections: Option<u32>,
        timeout_ms: Option<f64>,
    },
    /// A chaos resource's fault (Chaos Mesh's, or a mesh's fault
    /// injection), started now; `object` (`<plural>/<name>`) names the
    /// resource, whose deletion ends it.
    Inject {
        fault: crate::scenario::FaultSpec,
        object: String,
    },
    /// The resource that injected a fault is deleted: the fault ends now.
    Withdraw {
        object: String,
    },
    /// `kubectl cordon` (`true`) or `uncordon`: the node takes no new pods.
    Cordon {
        node: String,
        unschedulable: bool,
    },
    /// The Deployment's template names held bad deploy `fault` of the
    /// scenario (`fault_image`): it starts now, as it would have on its
    /// schedule.
    StartFault {
        deployment: String,
        fault: usize,
    },
}

/// Why the simulation cannot carry a write out (the API answers 422).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("no {what} `{name}` in the simulation")]
    Unknown { what: &'static str, name: String },
    #[error("{0}")]
    Unsupported(String),
}

/// A Node's spec: cordoned or not, and the taints the node controller
/// gives an unreachable or a cordoned node.
fn node_spec(ready: bool, unschedulable: bool) -> Value {
    let mut taints = Vec::new();
    if !ready {
        taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}));
    }
    if unschedulable {
        taints.push(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}));
    }
    let mut spec = Map::new();
    if unschedulable {
        spec.insert("unschedulable".into(), Value::Bool(true));
    }
    if !taints.is_empty() {
        spec.insert("taints".into(), Value::Array(taints));
    }
    Value::Object(spec)
}

/// Quantities in their canonical form (whole cores without `m`, the
/// largest binary unit that is whole), as Go clients write them back.
fn quantity_cpu(cores: f64) -> String {
    match (cores.max(0.0) * 1000.0).round() as u64 {
        m if m.is_multiple_of(1000) => (m / 1000).to_string(),
        m => format!("{m}m"),
    }
}

fn quantity_mib(mib: f64) -> String {
    let mut n = mib.max(0.0).round() as u64;
    for unit in ["Mi", "Gi", "Ti"] {
        if !n.is_multiple_of(1024) || n == 0 || unit == "Ti" {
            return format!("{n}{unit}");
        }
        n /= 1024;
    }
    unreachable!("the loop returns at Ti")
}

fn int_or_percent(v: &IntOrPercent) -> Value {
    match v {
        IntOrPercent::Int(n) => json!(n),
        IntOrPercent::Percent(p) => json!(p),
    }
}

fn uid(kind: &str, name: &str) -> String {
    format!("selfheal-{kind}-{name}")
}

/// A Service's pods' labels (without the template hash).
pub fn app_labels(service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), service.to_string())])
}

impl Simulation {
    fn template(&self, s: &Service, k: u32) -> Value {
        json!({
            "metadata": {"labels": {"app": s.name}},
            "spec": {"containers": [{
                "name": "app",
                "image": image(&s.name, k),
                "resources": {
                    "requests": {"cpu": quantity_cpu(s.cpu_request), "memory": quantity_mib(s.memory_request)},
                    "limits": {"cpu": quantity_cpu(s.cpu_limit), "memory": quantity_mib(s.memory_limit)},
                },
            }]},
        })
    }

    /// Every object of the simulation now but its Events (`events`).
    /// `selectors` are the Services' selectors as last written (a Service
    /// without one selects its pods).
    pub fn api_objects(
        &self,
        ex: &Exposition,
        selectors: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Vec<ApiObject> {
        let ns = &ex.namespace;
        let at = |t: Time| rfc3339(ex.wall_origin + t.as_secs_f64() / ex.speed);
        let origin = at(Time::ZERO);
        let mut out = Vec::new();
        let meta = |kind: &str, name: &str| json!({"name": name, "namespace": ns, "uid": uid(kind, name), "creationTimestamp": origin});
        out.push(ApiObject {
            resource: SimResource::Namespace,
            name: ns.clone(),
            body: json!({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": ns, "uid": uid("namespace", ns), "creationTimestamp": origin,
                                      "labels": {"kubernetes.io/metadata.name": ns}},
                         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        });
        for n in &self.nodes {
            let ready = n.up && !n.not_ready;
            let capacity = json!({"cpu": quantity_cpu(n.cpu), "memory": quantity_mib(n.memory), "pods": "110"});
            out.push(ApiObject {
                resource: SimResource::Node,
                name: n.name.clone(),
                body: json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": n.name, "uid": uid("node", &n.name), "creationTimestamp": origin,
                                 "labels": {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux"}},
                    "spec": node_spec(ready, n.unschedulable),
                    "status": {
                        "capacity": capacity, "allocatable": capacity,
                        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" },
                                        "reason": if ready { "KubeletReady" } else { "NodeStatusUnknown" }}],
                        "nodeInfo": {"kubeletVersion": "v1.32.0-selfheal-serve", "operatingSystem": "linux",
                                     "architecture": "amd64"},
                    },
                }),
            });
        }
        for (i, s) in self.services.iter().enumerate() {
            let alive: Vec<&super::model::Pod> = s
                .pods
                .iter()
                .map(|&p| &self.pods[p as usize])
                .filter(|p| p.is_alive())
                .collect();
            let counting = |k: Option<u32>, ready: bool| {
                alive
                    .iter()
                    .filter(|p| p.phase != Phase::Terminating)
                    .filter(|p| k.is_none_or(|k| p.revision == k))
                    .filter(|p| !ready || p.ready)
                    .count()
            };
            let mut dep = meta("deployment", &s.name);
            dep["labels"] = json!(app_labels(&s.name));
            dep["annotations"] =
                json!({"deployment.kubernetes.io/revision": (s.current + 1).to_string()});
            out.push(ApiObject {
                resource: SimResource::Deployment,
                name: s.name.clone(),
                body: json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": dep,
                    "spec": {
                        "replicas": s.desired,
                        "selector": {"matchLabels": app_labels(&s.name)},
                        "template": self.template(s, s.current),
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                            "maxSurge": int_or_percent(&s.max_surge),
                            "maxUnavailable": int_or_percent(&s.max_unavailable),
                        }},
                    },
                    "status": {
                        "replicas": counting(None, false),
                        "updatedReplicas": counting(Some(s.current), false),
                        "readyReplicas": counting(None, true),
                        "availableReplicas": counting(None, true),
                    },
                }),
            });
            for k in 0..s.revisions.len() as u32 {
                let name = format!("{}-r{k}", s.name);
                let mut m = meta("replicaset", &name);
                let hash = format!("r{k}");
                m["labels"] = json!({"app": s.name, "pod-template-hash": hash});
                m["annotations"] =
                    json!({"deployment.kubernetes.io/revision": (k + 1).to_string()});
                m["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": s.name,
                    "uid": uid("deployment", &s.name), "controller": true, "blockOwnerDeletion": true,
                }]);
                let mut template = self.template(s, k);
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let desired = if k == s.current {
                    s.desired as usize
                } else {
                    counting(Some(k), false)
                };
                out.push(ApiObject {
                    resource: SimResource::ReplicaSet,
                    name,
                    body: json!({
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "metadata": m,
                        "spec": {
                            "replicas": desired,
                            "selector": {"matchLabels": {"app": s.name, "pod-template-hash": hash}},
                            "template": template,
                        },
                        "status": {
                            "replicas": counting(Some(k), false),
                            "readyReplicas": counting(Some(k), true),
                            "availableReplicas": counting(Some(k), true),
                        },
                    }),
                });
            }
            for &p in &s.pods {
                let pod = &self.pods[p as usize];
                if !pod.is_alive() {
                    continue;
                }
                let name = self.pod_name(p);
                let rs = format!("{}-r{}", s.name, pod.revision);
                let mut m = meta("pod", &name);
                m["creationTimestamp"] = json!(at(pod.created));
                m["labels"] =
                    json!({"app": s.name, "pod-template-hash": format!("r{}", pod.revision)});
                m["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                    "uid": uid("replicaset", &rs), "controller": true, "blockOwnerDeletion": true,
                }]);
                if pod.phase == Phase::Terminating {
                    m["deletionTimestamp"] = json!(at(pod.last_transition));
                }
                let mut spec = self.template(s, pod.revision)["spec"].clone();
                let mut status = Map::new();
                let scheduled = pod.is_scheduled();
                if scheduled {
                    spec["nodeName"] = json!(self.nodes[pod.node as usize].name);
                    status.insert("startTime".into(), json!(at(pod.started)));
                    // One address per pod slot, reused as a CNI reuses
                    // addresses, from the pod CIDR kubeadm and kind default to.
                    let ip = format!("10.244.{}.{}", p / 250, p % 250 + 2);
                    status.insert("podIP".into(), json!(ip));
                    status.insert("podIPs".into(), json!([{"ip": ip}]));
                }
                status.insert(
                    "phase".into(),
                    json!(if scheduled { "Running" } else { "Pending" }),
                );
                status.insert(
                    "conditions".into(),
                    json!([
                        {"type": "PodScheduled", "status": if scheduled { "True" } else { "False" }},
                        {"type": "Ready", "status": if pod.ready { "True" } else { "False" },
                         "lastTransitionTime": at(pod.last_transition)},
                    ]),
                );
                if scheduled {
                    let state = match pod.phase {
                        Phase::BackOff => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                        _ => json!({"running": {"startedAt": at(pod.container_started)}}),
                    };
                    status.insert(
                        "containerStatuses".into(),
                        json!([{
                            "name": "app", "image": image(&s.name, pod.revision), "imageID": "",
                            "ready": pod.ready, "restartCount": pod.restarts,
                            "started": pod.phase == Phase::Running, "state": state,
                        }]),
                    );
                }
                out.push(ApiObject {
                    resource: SimResource::Pod,
                    name,
                    body: json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec, "status": status}),
                });
            }
            let selector = selectors
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| app_labels(&s.name));
            out.push(ApiObject {
                resource: SimResource::Service,
                name: s.name.clone(),
                body: json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta("service", &s.name),
                    "spec": {"type": "ClusterIP", "selector": selector,
                             "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
                }),
            });
            let cm = format!("{}-selfheal", s.name);
            let mut data = BTreeMap::from([("max_connections", s.max_connections.to_string())]);
            if let Some(t) = self.inbound_timeout(i as u32) {
                data.insert("timeout_ms", format!("{}", t.as_secs_f64() * 1000.0));
            }
            out.push(ApiObject {
                resource: SimResource::ConfigMap,
                name: cm.clone(),
                body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("configmap", &cm), "data": data}),
            });
        }
        out
    }

    /// How many events there have been: `events` renders the same objects
    /// until it grows.
    pub fn event_count(&self) -> usize {
        self.recorder.pod_events.len() + self.command_log.len() + self.api_write_log.len()
    }

    /// The newest `EVENTS_KEPT` pod lifecycle events, commands and API
    /// writes as core/v1 Events, named by their place in the simulation's
    /// logs so that an event keeps its name from one rendering to the next.
    pub fn events(&self, ex: &Exposition) -> Vec<ApiObject> {
        use super::recorder::PodEventKind as K;
        let ns = &ex.namespace;
        let at = |t: Time| rfc3339(ex.wall_origin + t.as_secs_f64() / ex.speed);
        let newest = |len: usize| len.saturating_sub(EVENTS_KEPT);
        let mut all = Vec::new();
        let pods = &self.recorder.pod_events;
        for (i, e) in pods.iter().enumerate().skip(newest(pods.len())) {
            let (warning, reason, message) = match e.kind {
                K::Scheduled => (
                    false,
                    "Scheduled",
                    format!("Successfully assigned {ns}/{}", e.pod),
                ),
                K::Started => (false, "Started", "Started container app".to_string()),
                K::Ready => continue,
                K::NotReady => (true, "Unhealthy", "Readiness probe failed".to_string()),
                K::Exited(x) => (
                    true,
                    "BackOff",
                    format!("Container app exited ({})", x.as_str()),
                ),
                K::Deleted => (false, "Killing", "Stopping container app".to_string()),
            };
            all.push(EventRow {
                t: e.t,
                name: format!("{}.p{i:x}", e.pod),
                pod: true,
                object: &e.pod,
                warning,
                reason,
                message,
                component: "kubelet",
            });
        }
        let commands = &self.command_log;
        for (i, (t, who, c)) in commands.iter().enumerate().skip(newest(commands.len())) {
            // Reasons in the API's CamelCase; a scale as the Deployment
            // controller reports one.
            let reason = match c {
                Command::Scale { .. } => "ScalingReplicaSet",
                Command::RestartPod { .. } => "RestartPod",
                Command::ReplacePod { .. } => "ReplacePod",
                Command::Rollback { .. } => "DeploymentRollback",
                Command::Isolate { .. } => "Isolate",
                Command::Failover { .. } => "Failover",
                Command::Reconfigure { .. } => "Reconfigure",
            };
            all.push(EventRow {
                t: *t,
                name: format!("{}.c{i:x}", c.service()),
                pod: false,
                object: c.service(),
                warning: false,
                reason,
                message: c.reason().to_string(),
                component: who,
            });
        }
        // What the Deployment controller reports when a client scales or
        // changes the template.
        let writes = &self.api_write_log;
        for (i, (t, w)) in writes.iter().enumerate().skip(newest(writes.len())) {
            let (d, message) = match w {
                ApiWrite::Scale {
                    deployment,
                    replicas,
                } => (
                    deployment,
                    format!("Scaled deployment {deployment} to {replicas}"),
                ),
                ApiWrite::RollTo {
                    deployment,
                    revision,
                } => (
                    deployment,
                    format!("Rolled out ReplicaSet {deployment}-r{revision}"),
                ),
                _ => continue,
            };
            all.push(EventRow {
                t: *t,
                name: format!("{d}.w{i:x}"),
                pod: false,
                object: d,
                warning: false,
                reason: "ScalingReplicaSet",
                message,
                component: "deployment-controller",
            });
        }
        all.sort_by_key(|e| e.t);
        let skip = newest(all.len());
        all.into_iter()
            .skip(skip)
            .map(|e| {
                let (kind, api_version) = if e.pod {
                    ("Pod", "v1")
                } else {
                    ("Deployment", "apps/v1")
                };
                ApiObject {
                    resource: SimResource::Event,
                    body: json!({
                        "apiVersion": "v1", "kind": "Event",
                        "metadata": {"name": e.name, "namespace": ns, "uid": uid("event", &e.name),
                                     "creationTimestamp": at(e.t)},
                        "involvedObject": {"kind": kind, "name": e.object, "namespace": ns,
                                           "apiVersion": api_version},
                        "type": if e.warning { "Warning" } else { "Normal" },
                        "reason": e.reason, "message": e.message, "count": 1,
                        "firstTimestamp": at(e.t), "lastTimestamp": at(e.t),
                        "source": {"component": e.component}, "reportingComponent": e.component,
                    }),
                    name: e.name,
                }
            })
            .collect()
    }

    /// The timeout of the first call edge into service `svc` from another.
    fn inbound_timeout(&self, svc: u32) -> Option<Span> {
        self.edges
            .iter()
            .find(|e| e.to == svc && e.from.is_some())
            .map(|e| e.timeout)
    }

    /// The services at the ends of call edge `caller->callee`, which the
    /// call graph must have.
    fn edge_ends(&self, edge: &str) -> Result<(u32, u32), WriteError> {
        let unknown = || WriteError::Unknown {
            what: "call edge",
            name: edge.to_string(),
        };
        let (a, b) = crate::scenario::edge_ends(edge).ok_or_else(unknown)?;
        let (a, b) = (
            self.service_index(a, "service")?,
            self.service_index(b, "service")?,
        );
        self.edges
            .iter()
            .any(|e| e.from == Some(a) && e.to == b)
            .then_some((a, b))
            .ok_or_else(unknown)
    }

    fn service_index(&self, name: &str, what: &'static str) -> Result<u32, WriteError> {
        self.services
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u32)
            .ok_or_else(|| WriteError::Unknown {
                what,
                name: name.to_string(),
            })
    }

    /// Carries out one write now.
    pub fn apply_api_write(&mut self, w: &ApiWrite) -> Result<(), WriteError> {
        match w {
            ApiWrite::Scale {
                deployment,
                replicas,
            } => {
                let svc = self.service_index(deployment, "Deployment")?;
                self.set_desired(svc, *replicas);
                self.api_write_log.push((self.now, w.clone()));
            }
            ApiWrite::DeletePod { pod, grace_zero } => {
                let found = (0..self.pods.len() as u32)
                    .find(|&p| self.pods[p as usize].is_alive() && self.pod_name(p) == *pod)
                    .ok_or_else(|| WriteError::Unknown {
                        what: "Pod",
                        name: pod.clone(),
                    })?;
                let svc = self.pods[found as usize].service;
                if *grace_zero {
                    self.delete_pod_now(found, false);
                } else {
                    self.terminate_pod(found);
                }
                self.reconcile(svc);
            }
            ApiWrite::RollTo {
                deployment,
                revision,
            } => {
                let svc = self.service_index(deployment, "Deployment")?;
                let s = &self.services[svc as usize];
                let Some(rev) = s.revisions.get(*revision as usize).cloned() else {
                    return Err(WriteError::Unsupported(format!(
                        "Deployment `{deployment}` has revisions r0..r{} (image {}); the simulation cannot run another image",
                        s.revisions.len() - 1,
                        image(deployment, s.current)
                    )));
                };
                if *revision != s.current {
                    self.deploy(svc, rev);
                    self.api_write_log.push((self.now, w.clone()));
                }
            }
            ApiWrite::Select { service, selector } => {
                let svc = self.service_index(service, "Service")?;
                match self.route(svc, selector)? {
                    Route::Own => self.services[svc as usize].isolated_until = self.now,
                    Route::Nowhere => self.services[svc as usize].isolated_until = Time::MAX,
                    Route::Standby => {
                        self.apply(&Command::Failover {
                            service: service.clone(),
                            reason: "a Service selector written through the API".into(),
                        });
                    }
                }
            }
            ApiWrite::Configure {
                service,
                max_connections,
                timeout_ms,
            } => {
                self.service_index(service, "Service")?;
                self.apply(&Command::Reconfigure {
                    service: service.clone(),
                    max_connections: *max_connections,
                    timeout_ms: *timeout_ms,
                    reason: "a ConfigMap written through the API".into(),
                });
            }
            ApiWrite::Cordon {
                node,
                unschedulable,
            } => {
                let n = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.name == *node)
                    .ok_or_else(|| WriteError::Unknown {
                        what: "Node",
                        name: node.clone(),
                    })?;
                n.unschedulable = *unschedulable;
                // Uncordoned: pods waiting for room may fit now.
                if !*unschedulable {
                    self.retry_unscheduled();
                }
            }
            ApiWrite::StartFault { deployment, fault } => {
                let svc = self.service_index(deployment, "Deployment")?;
                match self.held_fault(*fault) {
                    Some((spec, Some(s))) if spec.kind == FaultKind::BadDeploy && s == svc => {
                        self.release_fault(*fault);
                        // Reported as the roll-out it is.
                        let revision = self.services[svc as usize].current;
                        self.api_write_log.push((
                            self.now,
                            ApiWrite::RollTo {
                                deployment: deployment.clone(),
                                revision,
                            },
                        ));
                    }
                    _ => {
                        return Err(WriteError::Unsupported(format!(
                            "image {}: fault {fault} of the scenario is not a bad deploy of `{deployment}` that waits to be started",
                            fault_image(deployment, *fault)
                        )));
                    }
                }
            }
            ApiWrite::Inject { fault, object } => {
                let target = match (&fault.service, &fault.edge) {
                    (Some(name), _) => Target::Service(self.service_index(name, "service")?),
                    (None, Some(edge)) => Target::Edge(self.edge_ends(edge)?),
                    (None, None) => {
                        return Err(WriteError::Unsupported(format!(
                            "an injected {} needs a service or a call edge",
                            fault.kind.as_str()
                        )));
                    }
                };
                self.inject_fault(fault.clone(), target, object.clone());
            }
            ApiWrite::Withdraw { object } => self.withdraw_fault(object),
        }
        Ok(())
    }

    /// Which route `selector` gives service `svc`: its own pods' labels,
    /// its standby's, or none of the simulation's.
    fn route(&self, svc: u32, selector: &BTreeMap<String, String>) -> Result<Route, WriteError> {
        let matches = |name: &str| {
            let labels = app_labels(name);
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        let s = &self.services[svc as usize];
        if matches(&s.name) {
            return Ok(Route::Own);
        }
        if let Some(b) = s.failover_to
            && matches(&self.services[b as usize].name)
        {
            return Ok(Route::Standby);
        }
        match self.services.iter().find(|x| matches(&x.name)) {
            Some(other) => Err(WriteError::Unsupported(format!(
                "Service `{}` can select its own pods, its standby's or none, not `{}`'s",
                s.name, other.name
            ))),
            None => Ok(Route::Nowhere),
        }
    }
}
