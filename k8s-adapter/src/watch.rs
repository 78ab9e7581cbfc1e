//! Pod and replica state from the Kubernetes API, kept current by kube-rs
//! reflectors: one LIST, then a WATCH that streams every change (client-go's
//! informer pattern), never a list polled in a loop. Usage (CPU, memory)
//! still comes from Prometheus; the API says which pods exist, in which
//! phase, on which node, ready or not, restarted how often, from which
//! revision, and what they request.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use selfheal_core::control::{PodPhase, PodView};
use selfheal_core::quantity::{cpu_cores, mib};
use selfheal_core::time::Time;

use crate::clock::Clock;

/// The annotation the Deployment controller numbers revisions with.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// The reflected Pods, Deployments and ReplicaSets of one namespace.
#[derive(Clone)]
pub struct ClusterState {
    pods: reflector::Store<Pod>,
    deployments: reflector::Store<Deployment>,
    replica_sets: reflector::Store<ReplicaSet>,
}

/// Runs a reflector for `api` on the tokio runtime; the store fills as the
/// first list arrives and follows every watch event after. A failed list or
/// watch is retried with the watcher's jittered exponential back-off; `log`
/// hears when the watch of `kind` goes down and when a re-list brings it
/// back, once per change.
fn reflect<K>(kind: &'static str, api: Api<K>, log: fn(&str)) -> reflector::Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let mut stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .boxed();
    tokio::spawn(async move {
        let mut down = false;
        while let Some(event) = stream.next().await {
            match event {
                Err(e) if !down => {
                    down = true;
                    log(&format!("watch {kind}: down ({e}); retrying with back-off"));
                }
                Ok(watcher::Event::InitDone) if down => {
                    down = false;
                    log(&format!("watch {kind}: back (listed again)"));
                }
                _ => {}
            }
        }
    });
    reader
}

impl ClusterState {
    /// Starts the three watches on `namespace`; `log` hears each one go
    /// down and come back.
    pub fn watch(client: Client, namespace: &str, log: fn(&str)) -> ClusterState {
        ClusterState {
            pods: reflect("pods", Api::namespaced(client.clone(), namespace), log),
            deployments: reflect(
                "deployments",
                Api::namespaced(client.clone(), namespace),
                log,
            ),
            replica_sets: reflect("replicasets", Api::namespaced(client, namespace), log),
        }
    }

    /// Waits until every watch has delivered its first list.
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.pods.wait_until_ready().await?;
        self.deployments.wait_until_ready().await?;
        self.replica_sets.wait_until_ready().await
    }

    /// The state of `deployment` now, or why there is none.
    pub fn replicas(&self, deployment: &str, clock: &Clock) -> Result<ReplicaState, NoDeployment> {
        let dep = self
            .deployments
            .state()
            .into_iter()
            .find(|d| d.name_any() == deployment)
            .ok_or_else(|| NoDeployment(deployment.to_string()))?;
        Ok(replica_state(
            &dep,
            &self.replica_sets.state(),
            &self.pods.state(),
            clock,
        ))
    }
}

/// The watched namespace has no Deployment of this name.
#[derive(Debug, thiserror::Error)]
#[error("no Deployment `{0}` in the watched namespace")]
pub struct NoDeployment(pub String);

/// A Deployment's replicas as the API reports them; pods without usage
/// (Prometheus fills that in).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaState {
    pub desired: u32,
    pub ready: u32,
    /// The Deployment's revision as an index (0 = the first), as the
    /// simulator counts them.
    pub revision: u32,
    pub pods: Vec<PodView>,
}

fn revision_index(annotations: &std::collections::BTreeMap<String, String>) -> u32 {
    annotations
        .get(REVISION)
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(1)
        .saturating_sub(1)
}

fn unix(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

/// The phase the control core knows: a pod being deleted is terminating; a
/// pending one without a node is unscheduled; a scheduled one whose
/// containers are not all running (starting, or waiting in
/// CrashLoopBackOff) is starting.
pub fn phase(pod: &Pod) -> PodPhase {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodPhase::Terminating;
    }
    let status = pod.status.as_ref();
    let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => {
            let waiting = status
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_none()))
                });
            if waiting {
                PodPhase::Starting
            } else {
                PodPhase::Running
            }
        }
        Some("Succeeded") | Some("Failed") => PodPhase::Terminating,
        _ if scheduled => PodPhase::Starting,
        _ => PodPhase::Pending,
    }
}

/// One Deployment's state from the reflected objects: its pods are those
/// owned by a ReplicaSet it owns (the owner references, as the Deployment
/// controller itself follows them), each with the revision of its
/// ReplicaSet.
pub fn replica_state(
    dep: &Deployment,
    replica_sets: &[Arc<ReplicaSet>],
    pods: &[Arc<Pod>],
    clock: &Clock,
) -> ReplicaState {
    let owned_by = |refs: &[OwnerReference], kind: &str, name: &str| {
        refs.iter().any(|o| o.kind == kind && o.name == name)
    };
    let dep_name = dep.name_any();
    let sets: Vec<(String, u32)> = replica_sets
        .iter()
        .filter(|rs| owned_by(rs.owner_references(), "Deployment", &dep_name))
        .map(|rs| (rs.name_any(), revision_index(rs.annotations())))
        .collect();
    let mut views: Vec<PodView> = pods
        .iter()
        .filter_map(|p| {
            let revision = sets
                .iter()
                .find(|(rs, _)| owned_by(p.owner_references(), "ReplicaSet", rs))?
                .1;
            Some(pod_view(p, revision, clock))
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    ReplicaState {
        desired: dep.spec.replicas.unwrap_or(1).max(0) as u32,
        ready: dep
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            .max(0) as u32,
        revision: revision_index(dep.annotations()),
        pods: views,
    }
}

/// A pod as the core sees it, usage left at zero (no sample yet).
pub fn pod_view(pod: &Pod, revision: u32, clock: &Clock) -> PodView {
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Time::ZERO, |t| clock.core_time(unix(t)));
    let status = pod.status.as_ref();
    let started = status
        .and_then(|s| s.start_time.as_ref())
        .map_or(created, |t| clock.core_time(unix(t)));
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.resources.as_ref());
    let quantity = |limits: bool, key: &str| {
        container
            .and_then(|r| {
                if limits {
                    r.limits.as_ref()
                } else {
                    r.requests.as_ref()
                }
            })
            .and_then(|m| m.get(key))
            .map(|q| q.0.clone())
    };
    PodView {
        name: pod.name_any(),
        phase: phase(pod),
        ready: ready_condition.is_some_and(|c| c.status == "True"),
        revision,
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        cpu_cores: 0.0,
        cpu_sampled_at: None,
        cpu_request: quantity(false, "cpu")
            .as_deref()
            .and_then(cpu_cores)
            .unwrap_or(0.0),
        cpu_limit: quantity(true, "cpu")
            .as_deref()
            .and_then(cpu_cores)
            .unwrap_or(0.0),
        memory_mib: 0.0,
        memory_limit_mib: quantity(true, "memory")
            .as_deref()
            .and_then(mib)
            .unwrap_or(0.0),
        restarts: status
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count.max(0) as u32).sum()
            }),
        created,
        started,
        last_transition: ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(started, |t| clock.core_time(unix(t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock {
            origin: 1_700_000_000.0,
            time_scale: 1.0,
        }
    }

    fn pod(json: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    fn owned(kind: &str, name: &str) -> serde_json::Value {
        serde_json::json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": name}])
    }

    #[test]
    fn a_deployment_s_pods_come_through_its_replica_sets_with_their_revisions() {
        let dep: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "annotations": {REVISION: "2"}},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": {"readyReplicas": 1}
        }))
        .unwrap();
        let rs = |name: &str, rev: &str, owner: &str| {
            Arc::new(
                serde_json::from_value::<ReplicaSet>(serde_json::json!({
                    "metadata": {"name": name, "annotations": {REVISION: rev},
                                 "ownerReferences": owned("Deployment", owner)},
                    "spec": {"selector": {}}
                }))
                .unwrap(),
            )
        };
        let sets = vec![
            rs("api-old", "1", "api"),
            rs("api-new", "2", "api"),
            rs("web-1", "1", "web"),
        ];
        let t = "2023-11-14T22:13:30Z"; // 10 s after the clock's origin
        let pods = vec![
            pod(serde_json::json!({
                "metadata": {"name": "api-new-b", "creationTimestamp": t,
                             "ownerReferences": owned("ReplicaSet", "api-new")},
                "spec": {"nodeName": "node-1", "containers": [{"name": "app",
                    "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}}}]},
                "status": {"phase": "Running", "startTime": t,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2023-11-14T22:13:50Z"}],
                    "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true,
                        "restartCount": 2, "state": {"running": {}}}]}
            })),
            pod(serde_json::json!({
                "metadata": {"name": "api-old-a", "creationTimestamp": t, "deletionTimestamp": t,
                             "ownerReferences": owned("ReplicaSet", "api-old")},
                "spec": {"nodeName": "node-0", "containers": []},
                "status": {"phase": "Running"}
            })),
            pod(serde_json::json!({
                "metadata": {"name": "api-new-c", "creationTimestamp": t,
                             "ownerReferences": owned("ReplicaSet", "api-new")},
                "spec": {"containers": []},
                "status": {"phase": "Pending"}
            })),
            pod(serde_json::json!({
                "metadata": {"name": "api-new-d", "creationTimestamp": t,
                             "ownerReferences": owned("ReplicaSet", "api-new")},
                "spec": {"nodeName": "node-1", "containers": []},
                "status": {"phase": "Running", "containerStatuses": [{"name": "app", "image": "x",
                    "imageID": "", "ready": false, "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
            })),
            pod(serde_json::json!({
                "metadata": {"name": "web-1-a", "ownerReferences": owned("ReplicaSet", "web-1")},
                "spec": {"containers": []}
            })),
        ];
        let s = replica_state(&dep, &sets, &pods, &clock());
        assert_eq!((s.desired, s.ready, s.revision), (3, 1, 1));
        let got: Vec<_> = s
            .pods
            .iter()
            .map(|p| (p.name.as_str(), p.phase, p.ready, p.revision, p.restarts))
            .collect();
        assert_eq!(
            got,
            vec![
                ("api-new-b", PodPhase::Running, true, 1, 2),
                ("api-new-c", PodPhase::Pending, false, 1, 0),
                ("api-new-d", PodPhase::Starting, false, 1, 5),
                ("api-old-a", PodPhase::Terminating, false, 0, 0),
            ]
        );
        let b = &s.pods[0];
        assert_eq!(
            (b.node.as_str(), b.cpu_request, b.memory_limit_mib),
            ("node-1", 0.25, 512.0)
        );
        assert_eq!(b.created, Time::from_secs(10));
        assert_eq!(b.last_transition, Time::from_secs(30));
        assert_eq!(b.cpu_sampled_at, None);
    }
}
