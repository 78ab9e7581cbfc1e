//! The served objects with their resourceVersions, and the log of changes
//! a watch replays. The simulation's objects are rendered afresh after
//! every step and diffed here (a change gets the next resourceVersion, a
//! spec change the next generation); objects that clients create (Leases,
//! ConfigMaps such as the kill switch) live only here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};

use crate::sim::api_objects::{ApiObject, SimResource};
use crate::time::rfc3339;

/// Every resource the served API knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Pods,
    Services,
    ConfigMaps,
    Deployments,
    ReplicaSets,
    Leases,
    HorizontalPodAutoscalers,
    /// Chaos Mesh's: creating one starts its fault in the simulation.
    StressChaos,
    NetworkChaos,
    /// Istio's: creating one starts its fault, deleting it ends it.
    VirtualServices,
    Nodes,
    Namespaces,
    Events,
}

/// A resource's place in discovery.
pub struct Info {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// False for cluster-scoped resources (nodes, namespaces).
    pub namespaced: bool,
}

const READ: &[&str] = &["get", "list", "watch"];
/// A chaos resource is created, read, and deleted to end its fault early.
const CHAOS: &[&str] = &["create", "delete", "get", "list", "watch"];
const ALL_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

impl Resource {
    pub const ALL: [Resource; 13] = [
        Resource::Pods,
        Resource::Services,
        Resource::ConfigMaps,
        Resource::Deployments,
        Resource::ReplicaSets,
        Resource::Leases,
        Resource::HorizontalPodAutoscalers,
        Resource::StressChaos,
        Resource::NetworkChaos,
        Resource::VirtualServices,
        Resource::Nodes,
        Resource::Namespaces,
        Resource::Events,
    ];

    /// Creating one starts a fault in the simulation; deleting it ends it.
    pub fn injects_faults(self) -> bool {
        matches!(
            self,
            Resource::StressChaos | Resource::NetworkChaos | Resource::VirtualServices
        )
    }

    pub fn info(self) -> Info {
        let (group, version, kind, plural, short_names, verbs): (_, _, _, _, &[&str], &[&str]) =
            match self {
                Resource::Pods => (
                    "",
                    "v1",
                    "Pod",
                    "pods",
                    &["po"],
                    &["delete", "get", "list", "watch"],
                ),
                Resource::Services => (
                    "",
                    "v1",
                    "Service",
                    "services",
                    &["svc"],
                    &["get", "list", "patch", "update", "watch"],
                ),
                Resource::ConfigMaps => ("", "v1", "ConfigMap", "configmaps", &["cm"], ALL_VERBS),
                Resource::Deployments => (
                    "apps",
                    "v1",
                    "Deployment",
                    "deployments",
                    &["deploy"],
                    &["get", "list", "patch", "update", "watch"],
                ),
                Resource::ReplicaSets => ("apps", "v1", "ReplicaSet", "replicasets", &["rs"], READ),
                Resource::Leases => (
                    "coordination.k8s.io",
                    "v1",
                    "Lease",
                    "leases",
                    &[],
                    ALL_VERBS,
                ),
                Resource::HorizontalPodAutoscalers => (
                    "autoscaling",
                    "v2",
                    "HorizontalPodAutoscaler",
                    "horizontalpodautoscalers",
                    &["hpa"],
                    READ,
                ),
                Resource::StressChaos => (
                    "chaos-mesh.org",
                    "v1alpha1",
                    "StressChaos",
                    "stresschaos",
                    &[],
                    CHAOS,
                ),
                Resource::NetworkChaos => (
                    "chaos-mesh.org",
                    "v1alpha1",
                    "NetworkChaos",
                    "networkchaos",
                    &[],
                    CHAOS,
                ),
                Resource::VirtualServices => (
                    "networking.istio.io",
                    "v1",
                    "VirtualService",
                    "virtualservices",
                    &["vs"],
                    CHAOS,
                ),
                Resource::Nodes => (
                    "",
                    "v1",
                    "Node",
                    "nodes",
                    &["no"],
                    &["get", "list", "patch", "update", "watch"],
                ),
                Resource::Namespaces => ("", "v1", "Namespace", "namespaces", &["ns"], READ),
                Resource::Events => ("", "v1", "Event", "events", &["ev"], READ),
            };
        Info {
            group,
            version,
            kind,
            plural,
            short_names,
            verbs,
            namespaced: !matches!(self, Resource::Nodes | Resource::Namespaces),
        }
    }

    pub fn api_version(self) -> String {
        let i = self.info();
        match i.group {
            "" => i.version.to_string(),
            g => format!("{g}/{}", i.version),
        }
    }

    pub fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| {
            let i = r.info();
            i.group == group && i.version == version && i.plural == plural
        })
    }

    fn of(r: SimResource) -> Resource {
        match r {
            SimResource::Deployment => Resource::Deployments,
            SimResource::ReplicaSet => Resource::ReplicaSets,
            SimResource::Pod => Resource::Pods,
            SimResource::Service => Resource::Services,
            SimResource::ConfigMap => Resource::ConfigMaps,
            SimResource::Node => Resource::Nodes,
            SimResource::Namespace => Resource::Namespaces,
            SimResource::Event => Resource::Events,
        }
    }
}

/// A failed API call, answered as a `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiStatus {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiStatus {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiStatus {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(r: Resource, name: &str) -> Self {
        ApiStatus::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", r.info().plural),
        )
    }

    pub fn to_json(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

pub struct Change {
    pub rv: u64,
    pub resource: Resource,
    pub kind: ChangeKind,
    pub object: Value,
}

type Key = (Resource, String);

/// An object's labels and annotations, the part of a simulated object a
/// client may change.
pub fn user_metadata_of(obj: &Value) -> (Option<Value>, Option<Value>) {
    (
        obj.pointer("/metadata/labels").cloned(),
        obj.pointer("/metadata/annotations").cloned(),
    )
}

/// How many changes a watch can resume from; older resourceVersions get
/// 410 Gone and the client lists again, as against a real API server.
const LOG_LEN: usize = 100_000;

pub struct Store {
    namespace: String,
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// The simulation's objects as last rendered (no resourceVersion).
    rendered: BTreeMap<Key, Value>,
    /// Labels and annotations clients set on simulated objects
    /// (`kubectl label`, `kubectl annotate`): laid over each rendering.
    user_metadata: BTreeMap<Key, (Option<Value>, Option<Value>)>,
    log: VecDeque<Change>,
    /// The newest resourceVersion dropped from the log.
    dropped: u64,
}

fn strip_server_fields(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    v
}

impl Store {
    pub fn new(namespace: &str) -> Self {
        Store {
            namespace: namespace.to_string(),
            rv: 0,
            objects: BTreeMap::new(),
            rendered: BTreeMap::new(),
            user_metadata: BTreeMap::new(),
            log: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn record(&mut self, resource: Resource, kind: ChangeKind, object: Value) {
        self.log.push_back(Change {
            rv: self.rv,
            resource,
            kind,
            object,
        });
        if self.log.len() > LOG_LEN
            && let Some(old) = self.log.pop_front()
        {
            self.dropped = old.rv;
        }
    }

    /// Takes the simulation's objects of the resources in `scope` as
    /// rendered now: a rendered object of the scope that is not among them
    /// is gone. (Events are synced apart, and only when there are new ones.)
    pub fn sync(&mut self, objects: Vec<ApiObject>, scope: impl Fn(Resource) -> bool) {
        let mut seen = BTreeSet::new();
        for o in objects {
            let key = (Resource::of(o.resource), o.name);
            seen.insert(key.clone());
            if self.rendered.get(&key) == Some(&o.body) {
                continue;
            }
            let previous = self.objects.get(&key);
            let generation = match (previous, self.rendered.get(&key)) {
                (Some(p), Some(r)) => {
                    let g = p.pointer("/metadata/generation").and_then(Value::as_u64);
                    g.unwrap_or(1) + u64::from(r.get("spec") != o.body.get("spec"))
                }
                _ => 1,
            };
            self.rv += 1;
            let mut served = o.body.clone();
            self.overlay(&key, &mut served);
            served["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            served["metadata"]["generation"] = json!(generation);
            if key.0 == Resource::Deployments {
                served["status"]["observedGeneration"] = json!(generation);
            }
            let kind = if previous.is_some() {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            self.rendered.insert(key.clone(), o.body);
            self.objects.insert(key.clone(), served.clone());
            self.record(key.0, kind, served);
        }
        let gone: Vec<Key> = self
            .rendered
            .keys()
            .filter(|k| scope(k.0) && !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.rendered.remove(&key);
            if let Some(mut last) = self.objects.remove(&key) {
                self.rv += 1;
                last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.record(key.0, ChangeKind::Deleted, last);
            }
        }
    }

    /// The labels and annotations a client set, over the rendered ones:
    /// the simulation's own labels stay (it selects pods by them).
    fn overlay(&self, key: &Key, obj: &mut Value) {
        let Some((labels, annotations)) = self.user_metadata.get(key) else {
            return;
        };
        for (field, user) in [("labels", labels), ("annotations", annotations)] {
            let Some(user) = user.as_ref().and_then(Value::as_object) else {
                continue;
            };
            let rendered = self
                .rendered
                .get(key)
                .and_then(|r| r.pointer(&format!("/metadata/{field}")))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut merged = user.clone();
            merged.extend(rendered);
            obj["metadata"][field] = Value::Object(merged);
        }
    }

    /// A client's labels and annotations on a simulated object (the whole
    /// maps, as a patch leaves them); a new version when they change.
    pub fn set_user_metadata(&mut self, r: Resource, name: &str, after: &Value) {
        let key = (r, name.to_string());
        self.user_metadata
            .insert(key.clone(), user_metadata_of(after));
        let Some(current) = self.objects.get(&key) else {
            return;
        };
        let mut served = current.clone();
        self.overlay(&key, &mut served);
        if &served == current {
            return;
        }
        self.rv += 1;
        served["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, served.clone());
        self.record(r, ChangeKind::Modified, served);
    }

    pub fn get(&self, r: Resource, name: &str) -> Option<&Value> {
        self.objects.get(&(r, name.to_string()))
    }

    pub fn list(&self, r: Resource) -> impl Iterator<Item = &Value> {
        self.objects
            .range((r, String::new())..)
            .take_while(move |((k, _), _)| *k == r)
            .map(|(_, v)| v)
    }

    /// Whether the simulation renders this object (writes to it go there).
    pub fn is_simulated(&self, r: Resource, name: &str) -> bool {
        self.rendered.contains_key(&(r, name.to_string()))
    }

    fn stamp(&mut self, r: Resource, mut obj: Value, uid: String, created: String) -> Value {
        self.rv += 1;
        let i = r.info();
        obj["apiVersion"] = json!(r.api_version());
        obj["kind"] = json!(i.kind);
        let m = &mut obj["metadata"];
        m["namespace"] = json!(self.namespace);
        m["uid"] = json!(uid);
        m["creationTimestamp"] = json!(created);
        m["resourceVersion"] = json!(self.rv.to_string());
        obj
    }

    fn name_of(obj: &Value) -> Result<String, ApiStatus> {
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .ok_or_else(|| ApiStatus::new(422, "Invalid", "metadata.name: Required value"))
    }

    /// A client's new object (`now` in unix seconds stamps it).
    pub fn create(&mut self, r: Resource, obj: Value, now: f64) -> Result<Value, ApiStatus> {
        let name = Self::name_of(&obj)?;
        let key = (r, name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiStatus::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.info().plural),
            ));
        }
        let uid = format!(
            "selfheal-{}-{name}-{}",
            r.info().kind.to_lowercase(),
            self.rv + 1
        );
        let obj = self.stamp(r, obj, uid, rfc3339(now));
        self.objects.insert(key, obj.clone());
        self.record(r, ChangeKind::Added, obj.clone());
        Ok(obj)
    }

    /// A client's replacement of its object; a resourceVersion in it must
    /// be the current one (optimistic concurrency, 409 otherwise).
    pub fn update(&mut self, r: Resource, name: &str, obj: Value) -> Result<Value, ApiStatus> {
        let key = (r, name.to_string());
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiStatus::not_found(r, name))?;
        let want = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let have = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if want.is_some_and(|w| Some(w) != have) {
            return Err(ApiStatus::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    r.info().plural
                ),
            ));
        }
        if Self::name_of(&obj)? != name {
            return Err(ApiStatus::new(
                422,
                "Invalid",
                "metadata.name: the name in the path differs",
            ));
        }
        let keep = |f: &str| {
            current
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (uid, created) = (keep("uid"), keep("creationTimestamp"));
        let obj = self.stamp(r, strip_server_fields(obj), uid, created);
        self.objects.insert(key, obj.clone());
        self.record(r, ChangeKind::Modified, obj.clone());
        Ok(obj)
    }

    pub fn delete(&mut self, r: Resource, name: &str) -> Result<Value, ApiStatus> {
        let mut obj = self
            .objects
            .remove(&(r, name.to_string()))
            .ok_or_else(|| ApiStatus::not_found(r, name))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(r, ChangeKind::Deleted, obj.clone());
        Ok(obj)
    }

    /// The changes of `r` after resourceVersion `rv`, or, when the log no
    /// longer reaches back that far, the oldest one it has.
    pub fn changes_after(&self, rv: u64, r: Resource) -> Result<Vec<&Change>, u64> {
        if rv < self.dropped {
            return Err(self.dropped + 1);
        }
        Ok(self
            .log
            .iter()
            .skip_while(|c| c.rv <= rv)
            .filter(|c| c.resource == r)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, replicas: u32, ready: u32) -> ApiObject {
        ApiObject {
            resource: SimResource::Deployment,
            name: name.into(),
            body: json!({"metadata": {"name": name}, "spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}),
        }
    }

    #[test]
    fn changes_get_versions_and_spec_changes_generations() {
        let mut s = Store::new("shop");
        s.sync(vec![obj("a", 1, 0), obj("b", 1, 0)], |_| true);
        assert_eq!(s.resource_version(), 2);
        // Unchanged: no new version.
        s.sync(vec![obj("a", 1, 0), obj("b", 1, 0)], |_| true);
        assert_eq!(s.resource_version(), 2);
        // A status change keeps the generation; a spec change bumps it.
        s.sync(vec![obj("a", 1, 1), obj("b", 2, 0)], |_| true);
        let a = s.get(Resource::Deployments, "a").unwrap();
        let b = s.get(Resource::Deployments, "b").unwrap();
        assert_eq!(a["metadata"]["generation"], 1);
        assert_eq!(b["metadata"]["generation"], 2);
        assert_eq!(b["status"]["observedGeneration"], 2);
        s.sync(vec![obj("b", 2, 0)], |_| true);
        let kinds: Vec<(u64, &str)> = s
            .changes_after(2, Resource::Deployments)
            .unwrap()
            .iter()
            .map(|c| (c.rv, c.kind.as_str()))
            .collect();
        assert_eq!(kinds, [(3, "MODIFIED"), (4, "MODIFIED"), (5, "DELETED")]);
        assert!(s.changes_after(5, Resource::Pods).unwrap().is_empty());
    }

    #[test]
    fn updates_need_the_current_resource_version() {
        let mut s = Store::new("shop");
        let l = s
            .create(
                Resource::Leases,
                json!({"metadata": {"name": "x"}, "spec": {"holderIdentity": "a"}}),
                0.0,
            )
            .unwrap();
        assert_eq!(l["metadata"]["resourceVersion"], "1");
        let stale = json!({"metadata": {"name": "x", "resourceVersion": "0"}, "spec": {}});
        assert_eq!(
            s.update(Resource::Leases, "x", stale).unwrap_err().code,
            409
        );
        let fresh = json!({"metadata": {"name": "x", "resourceVersion": "1"}, "spec": {"holderIdentity": "b"}});
        let l = s.update(Resource::Leases, "x", fresh).unwrap();
        assert_eq!(
            (
                l["metadata"]["resourceVersion"].as_str(),
                l["metadata"]["uid"].as_str()
            ),
            (Some("2"), Some("selfheal-lease-x-1"))
        );
        let again = json!({"metadata": {"name": "x"}});
        assert_eq!(
            s.create(Resource::Leases, again, 0.0).unwrap_err().code,
            409
        );
        assert_eq!(s.delete(Resource::Leases, "y").unwrap_err().code, 404);
    }
}
