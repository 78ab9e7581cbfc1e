//! The fields each served kind has, for the API server's field validation
//! (`?fieldValidation=Strict|Warn|Ignore`, KEP-2885): a write that names a
//! field the kind does not have is refused (`Strict`) or answered with a
//! `Warning` header (`Warn`, the server's default), as
//! `k8s.io/apiserver`'s strict decoding does. kubectl sends `Strict` once the
//! server's OpenAPI document says its writes take the parameter, and then
//! leaves the checking to the server, so without it a typo in a manifest
//! (`spec.replicsa`) would be silently dropped.
//!
//! The trees follow `k8s.io/api` v1.32. Parts the simulation never reads
//! (affinity, security contexts, volume sources, status) are `Any`: their
//! names are not checked below that point.

use serde_json::Value;

use super::store::Resource;

/// The shape of a field's value.
#[derive(Debug)]
pub enum Shape {
    /// A scalar (string, number, boolean) or a quantity.
    Leaf,
    /// Not checked below this point.
    Any,
    /// A string-keyed map (labels, `data`, resource lists).
    Map,
    /// An object with these fields.
    Object(&'static [(&'static str, Shape)]),
    /// A list of values of this shape.
    List(&'static Shape),
}

use Shape::{Any, Leaf, List, Map, Object};

const OBJECT_META: Shape = Object(&[
    ("name", Leaf),
    ("generateName", Leaf),
    ("namespace", Leaf),
    ("selfLink", Leaf),
    ("uid", Leaf),
    ("resourceVersion", Leaf),
    ("generation", Leaf),
    ("creationTimestamp", Leaf),
    ("deletionTimestamp", Leaf),
    ("deletionGracePeriodSeconds", Leaf),
    ("labels", Map),
    ("annotations", Map),
    ("ownerReferences", Any),
    ("finalizers", List(&Leaf)),
    ("managedFields", Any),
]);

const LABEL_SELECTOR: Shape = Object(&[
    ("matchLabels", Map),
    (
        "matchExpressions",
        List(&Object(&[
            ("key", Leaf),
            ("operator", Leaf),
            ("values", List(&Leaf)),
        ])),
    ),
]);

const PROBE: Shape = Object(&[
    ("exec", Any),
    ("httpGet", Any),
    ("tcpSocket", Any),
    ("grpc", Any),
    ("initialDelaySeconds", Leaf),
    ("timeoutSeconds", Leaf),
    ("periodSeconds", Leaf),
    ("successThreshold", Leaf),
    ("failureThreshold", Leaf),
    ("terminationGracePeriodSeconds", Leaf),
]);

const CONTAINER: Shape = Object(&[
    ("name", Leaf),
    ("image", Leaf),
    ("command", List(&Leaf)),
    ("args", List(&Leaf)),
    ("workingDir", Leaf),
    (
        "ports",
        List(&Object(&[
            ("name", Leaf),
            ("hostPort", Leaf),
            ("containerPort", Leaf),
            ("protocol", Leaf),
            ("hostIP", Leaf),
        ])),
    ),
    ("envFrom", Any),
    (
        "env",
        List(&Object(&[
            ("name", Leaf),
            ("value", Leaf),
            ("valueFrom", Any),
        ])),
    ),
    (
        "resources",
        Object(&[("limits", Map), ("requests", Map), ("claims", Any)]),
    ),
    ("resizePolicy", Any),
    ("restartPolicy", Leaf),
    ("volumeMounts", Any),
    ("volumeDevices", Any),
    ("livenessProbe", PROBE),
    ("readinessProbe", PROBE),
    ("startupProbe", PROBE),
    ("lifecycle", Any),
    ("terminationMessagePath", Leaf),
    ("terminationMessagePolicy", Leaf),
    ("imagePullPolicy", Leaf),
    ("securityContext", Any),
    ("stdin", Leaf),
    ("stdinOnce", Leaf),
    ("tty", Leaf),
]);

const POD_SPEC: Shape = Object(&[
    ("volumes", Any),
    ("initContainers", List(&CONTAINER)),
    ("containers", List(&CONTAINER)),
    ("ephemeralContainers", Any),
    ("restartPolicy", Leaf),
    ("terminationGracePeriodSeconds", Leaf),
    ("activeDeadlineSeconds", Leaf),
    ("dnsPolicy", Leaf),
    ("nodeSelector", Map),
    ("serviceAccountName", Leaf),
    ("serviceAccount", Leaf),
    ("automountServiceAccountToken", Leaf),
    ("nodeName", Leaf),
    ("hostNetwork", Leaf),
    ("hostPID", Leaf),
    ("hostIPC", Leaf),
    ("shareProcessNamespace", Leaf),
    ("securityContext", Any),
    ("imagePullSecrets", Any),
    ("hostname", Leaf),
    ("subdomain", Leaf),
    ("affinity", Any),
    ("schedulerName", Leaf),
    ("tolerations", Any),
    ("hostAliases", Any),
    ("priorityClassName", Leaf),
    ("priority", Leaf),
    ("dnsConfig", Any),
    ("readinessGates", Any),
    ("runtimeClassName", Leaf),
    ("enableServiceLinks", Leaf),
    ("preemptionPolicy", Leaf),
    ("overhead", Map),
    ("topologySpreadConstraints", Any),
    ("setHostnameAsFQDN", Leaf),
    ("os", Any),
    ("hostUsers", Leaf),
    ("schedulingGates", Any),
    ("resourceClaims", Any),
    ("resources", Any),
]);

const DEPLOYMENT_SPEC: Shape = Object(&[
    ("replicas", Leaf),
    ("selector", LABEL_SELECTOR),
    (
        "template",
        Object(&[("metadata", OBJECT_META), ("spec", POD_SPEC)]),
    ),
    (
        "strategy",
        Object(&[
            ("type", Leaf),
            (
                "rollingUpdate",
                Object(&[("maxSurge", Leaf), ("maxUnavailable", Leaf)]),
            ),
        ]),
    ),
    ("minReadySeconds", Leaf),
    ("revisionHistoryLimit", Leaf),
    ("paused", Leaf),
    ("progressDeadlineSeconds", Leaf),
]);

const SERVICE_SPEC: Shape = Object(&[
    (
        "ports",
        List(&Object(&[
            ("name", Leaf),
            ("protocol", Leaf),
            ("appProtocol", Leaf),
            ("port", Leaf),
            ("targetPort", Leaf),
            ("nodePort", Leaf),
        ])),
    ),
    ("selector", Map),
    ("clusterIP", Leaf),
    ("clusterIPs", List(&Leaf)),
    ("type", Leaf),
    ("externalIPs", List(&Leaf)),
    ("sessionAffinity", Leaf),
    ("loadBalancerIP", Leaf),
    ("loadBalancerSourceRanges", List(&Leaf)),
    ("externalName", Leaf),
    ("externalTrafficPolicy", Leaf),
    ("healthCheckNodePort", Leaf),
    ("publishNotReadyAddresses", Leaf),
    ("sessionAffinityConfig", Any),
    ("ipFamilies", List(&Leaf)),
    ("ipFamilyPolicy", Leaf),
    ("allocateLoadBalancerNodePorts", Leaf),
    ("loadBalancerClass", Leaf),
    ("internalTrafficPolicy", Leaf),
    ("trafficDistribution", Leaf),
]);

const LEASE_SPEC: Shape = Object(&[
    ("holderIdentity", Leaf),
    ("leaseDurationSeconds", Leaf),
    ("acquireTime", Leaf),
    ("renewTime", Leaf),
    ("leaseTransitions", Leaf),
    ("strategy", Leaf),
    ("preferredHolder", Leaf),
]);

macro_rules! kind {
    ($($field:expr),* $(,)?) => {
        Object(&[("apiVersion", Leaf), ("kind", Leaf), ("metadata", OBJECT_META), $($field),*])
    };
}

const POD: Shape = kind!(("spec", POD_SPEC), ("status", Any));
const SERVICE: Shape = kind!(("spec", SERVICE_SPEC), ("status", Any));
const CONFIG_MAP: Shape = kind!(("data", Map), ("binaryData", Map), ("immutable", Leaf));
const DEPLOYMENT: Shape = kind!(("spec", DEPLOYMENT_SPEC), ("status", Any));
const LEASE: Shape = kind!(("spec", LEASE_SPEC));
/// Kinds the simulation renders and never takes writes to, and Chaos
/// Mesh's, whose spec the fault parser reads and names its own errors for.
const SPEC_AND_STATUS: Shape = kind!(("spec", Any), ("status", Any));
const EVENT: Shape = kind!(
    ("involvedObject", Any),
    ("reason", Leaf),
    ("message", Leaf),
    ("source", Any),
    ("firstTimestamp", Leaf),
    ("lastTimestamp", Leaf),
    ("count", Leaf),
    ("type", Leaf),
    ("eventTime", Leaf),
    ("series", Any),
    ("action", Leaf),
    ("related", Any),
    ("reportingComponent", Leaf),
    ("reportingInstance", Leaf),
);
/// `autoscaling/v1` Scale, the `deployments/{name}/scale` subresource.
pub const SCALE: Shape = kind!(("spec", Object(&[("replicas", Leaf)])), ("status", Any));

/// The fields of `r`'s objects.
pub fn shape(r: Resource) -> &'static Shape {
    match r {
        Resource::Pods => &POD,
        Resource::Services => &SERVICE,
        Resource::ConfigMaps => &CONFIG_MAP,
        Resource::Deployments => &DEPLOYMENT,
        Resource::Leases => &LEASE,
        Resource::Events => &EVENT,
        Resource::ReplicaSets
        | Resource::HorizontalPodAutoscalers
        | Resource::StressChaos
        | Resource::NetworkChaos
        | Resource::VirtualServices
        | Resource::Nodes
        | Resource::Namespaces => &SPEC_AND_STATUS,
    }
}

fn field<'a>(fields: &'a [(&'static str, Shape)], name: &str) -> Option<&'a Shape> {
    fields.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
}

/// The fields of `v` that `shape` does not have, named as the API server
/// names them (`spec.template.spec.containers[0].imag`). Keys starting
/// with `$` are strategic merge patch directives (`$patch`,
/// `$setElementOrder/containers`, `$retainKeys`), not fields.
pub fn unknown_fields(shape: &Shape, v: &Value) -> Vec<String> {
    // An explicit stack instead of recursion: a hostile body may nest
    // deeper than the thread's stack (serde_json stops at 128 levels, but
    // nothing here should rely on that). Unknown fields go on the stack
    // too, so they come out in the order of the document.
    enum Todo<'a> {
        Check(&'a Shape, &'a Value, String),
        Unknown(String),
    }
    let mut out = Vec::new();
    let mut todo = vec![Todo::Check(shape, v, String::new())];
    while let Some(next) = todo.pop() {
        let (shape, v, at) = match next {
            Todo::Unknown(path) => {
                out.push(path);
                continue;
            }
            Todo::Check(shape, v, at) => (shape, v, at),
        };
        match (shape, v) {
            (Object(fields), Value::Object(members)) => {
                for (k, child) in members.iter().rev() {
                    if k.starts_with('$') {
                        continue;
                    }
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    todo.push(match field(fields, k) {
                        Some(s) => Todo::Check(s, child, path),
                        None => Todo::Unknown(path),
                    });
                }
            }
            (List(item), Value::Array(items)) => {
                for (i, child) in items.iter().enumerate().rev() {
                    todo.push(Todo::Check(item, child, format!("{at}[{i}]")));
                }
            }
            // Type mismatches are the decoder's to report; a `null` in a
            // patch deletes the field.
            _ => {}
        }
    }
    out
}

/// The fields named by a JSON patch (RFC 6902) that `shape` does not have:
/// each operation's `path` (and `from`), and the fields of the values it
/// adds or replaces.
pub fn unknown_in_json_patch(shape: &'static Shape, ops: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for op in ops.as_array().into_iter().flatten() {
        for key in ["path", "from"] {
            let Some(pointer) = op.get(key).and_then(Value::as_str) else {
                continue;
            };
            match walk_pointer(shape, pointer) {
                Ok(Some((at, s))) if key == "path" => {
                    if let Some(value) = op.get("value") {
                        out.extend(unknown_fields(s, value).into_iter().map(|f| {
                            if at.is_empty() {
                                f
                            } else if f.starts_with('[') {
                                format!("{at}{f}")
                            } else {
                                format!("{at}.{f}")
                            }
                        }));
                    }
                }
                Ok(_) => {}
                Err(UnknownField(unknown)) => out.push(unknown),
            }
        }
    }
    out
}

/// The path of a field the shape does not have.
struct UnknownField(String);

/// Follows a JSON pointer through `shape`: the field path and shape it ends
/// at (`None` below an `Any`), or the first unknown field on the way.
fn walk_pointer(
    mut shape: &'static Shape,
    pointer: &str,
) -> Result<Option<(String, &'static Shape)>, UnknownField> {
    let mut at = String::new();
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match shape {
            Object(fields) => {
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(&token);
                shape = field(fields, &token).ok_or_else(|| UnknownField(at.clone()))?;
            }
            List(item) => {
                at.push_str(&format!("[{token}]"));
                shape = item;
            }
            Map | Leaf | Any => return Ok(None),
        }
    }
    Ok(Some((at, shape)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_are_named_by_their_path_and_known_fields_pass() {
        let dep = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "labels": {"anything": "goes"}},
            "spec": {"replicsa": 3, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": {"containers": [
                                      {"name": "app", "image": "a:1"},
                                      {"name": "side", "imag": "b:1",
                                       "readinessProbe": {"periodSecond": 5, "httpGet": {"path": "/"}}}]}}},
            "status": {"whatever": 1}
        });
        assert_eq!(
            unknown_fields(shape(Resource::Deployments), &dep),
            [
                "spec.replicsa",
                "spec.template.spec.containers[1].imag",
                "spec.template.spec.containers[1].readinessProbe.periodSecond",
            ]
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                        "data": {"k": "v"}, "immutable": false});
        assert!(unknown_fields(shape(Resource::ConfigMaps), &cm).is_empty());
        assert_eq!(
            unknown_fields(shape(Resource::ConfigMaps), &json!({"dat": {}})),
            ["dat"]
        );
    }

    #[test]
    fn strategic_merge_patch_directives_are_not_fields() {
        // What `kubectl apply` sends after an image change.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "image": "a:2", "$patch": "merge"}]}}}});
        assert!(unknown_fields(shape(Resource::Deployments), &patch).is_empty());
    }

    #[test]
    fn json_patches_are_checked_by_path_and_value() {
        let s = shape(Resource::Deployments);
        let ops = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/template/spec/containers/0/env",
             "value": [{"name": "A", "valu": "1"}]},
            {"op": "add", "path": "/metadata/labels/any~1key", "value": "x"},
            {"op": "remove", "path": "/spec/paused2"},
            {"op": "add", "path": "/spec/strategy", "value": {"tyep": "Recreate"}},
        ]);
        assert_eq!(
            unknown_in_json_patch(s, &ops),
            [
                "spec.template.spec.containers[0].env[0].valu",
                "spec.paused2",
                "spec.strategy.tyep",
            ]
        );
    }

    #[test]
    fn a_scale_has_only_replicas_in_its_spec() {
        assert_eq!(
            unknown_fields(&SCALE, &json!({"spec": {"replicas": 2, "replica": 3}})),
            ["spec.replica"]
        );
    }
}
