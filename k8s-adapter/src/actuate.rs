//! Commands as Kubernetes API requests. Planning is pure (a `Command` and
//! what the API said become the exact requests to send), so tests can pin
//! every request and the RBAC manifest can be checked against them; the
//! executor only sends what was planned.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use selfheal_core::control::Command;

use crate::config::ServiceConfig;

/// One request to the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRequest {
    pub method: &'static str,
    /// Path and query, e.g. `/apis/apps/v1/namespaces/shop/deployments/api/scale`.
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Option<Value>,
}

impl ApiRequest {
    /// The RBAC rule this request needs: (API group, resource, verb).
    pub fn rbac(&self) -> (String, String, &'static str) {
        let parts: Vec<&str> = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        // /api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]]
        // /apis/<group>/<version>/namespaces/<ns>/<resource>[/<name>[/<sub>]]
        let (group, rest) = match parts.first() {
            Some(&"api") => (String::new(), &parts[2.min(parts.len())..]),
            _ => (
                parts.get(1).copied().unwrap_or("").to_string(),
                &parts[3.min(parts.len())..],
            ),
        };
        let resource = match rest {
            [_, _, r, _, sub, ..] => format!("{r}/{sub}"),
            [_, _, r, ..] => r.to_string(),
            _ => String::new(),
        };
        let named = rest.len() >= 4;
        let watch = self
            .path
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let verb = match (self.method, named) {
            ("GET", false) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            _ => "unknown",
        };
        (group, resource, verb)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("service `{0}` is not in the adapter's configuration")]
    UnknownService(String),
    #[error("service `{0}` has no backup configured to fail over to")]
    NoBackup(String),
    #[error("deployment `{deployment}`: no earlier revision to roll back to")]
    NoPreviousRevision { deployment: String },
    #[error("the API's answer for `{what}` is malformed: {why}")]
    Malformed { what: String, why: String },
}

const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

/// The label an isolation adds to a Service's selector: no pod carries it,
/// so the Service has no endpoints and callers fail fast or fall back.
pub const ISOLATION_LABEL: &str = "selfheal.io/isolated";

/// The annotation that keeps an isolation's end on its Service (unix
/// seconds), so that an adapter that restarts, or another instance that
/// takes over the Lease, lifts the isolation on time instead of never.
pub const ISOLATED_UNTIL: &str = "selfheal.io/isolated-until";

/// The Services of namespace `ns` (a list, or with a name one of them).
pub fn services_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services")
}

fn service_path(ns: &str, service: &str) -> String {
    format!("{}/{service}", services_path(ns))
}

fn find<'a>(services: &'a [ServiceConfig], name: &str) -> Result<&'a ServiceConfig, PlanError> {
    services
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| PlanError::UnknownService(name.to_string()))
}

/// What a command needs to read first (roll back reads the Deployment and
/// its ReplicaSets, as `kubectl rollout undo` does).
pub fn reads_for(
    cmd: &Command,
    ns: &str,
    services: &[ServiceConfig],
) -> Result<Vec<ApiRequest>, PlanError> {
    match cmd {
        Command::Rollback { service, .. } => {
            let d = find(services, service)?.deployment();
            Ok(vec![
                get(format!("/apis/apps/v1/namespaces/{ns}/deployments/{d}")),
                get(format!("/apis/apps/v1/namespaces/{ns}/replicasets")),
            ])
        }
        _ => Ok(Vec::new()),
    }
}

/// A read of `path`.
pub fn get(path: String) -> ApiRequest {
    ApiRequest {
        method: "GET",
        path,
        content_type: None,
        body: None,
    }
}

fn patch(path: String, content_type: &'static str, body: Value) -> ApiRequest {
    ApiRequest {
        method: "PATCH",
        path,
        content_type: Some(content_type),
        body: Some(body),
    }
}

/// The writes a command becomes, given the answers to `reads_for`.
pub fn writes_for(
    cmd: &Command,
    ns: &str,
    services: &[ServiceConfig],
    reads: &[Value],
) -> Result<Vec<ApiRequest>, PlanError> {
    let svc = find(services, cmd.service())?;
    let d = svc.deployment();
    Ok(match cmd {
        Command::Scale { replicas, .. } => vec![patch(
            format!("/apis/apps/v1/namespaces/{ns}/deployments/{d}/scale"),
            MERGE,
            json!({"spec": {"replicas": replicas}}),
        )],
        // A graceful delete: the pod drains while the Deployment replaces it.
        Command::ReplacePod { pod, .. } => vec![ApiRequest {
            method: "DELETE",
            path: format!("/api/v1/namespaces/{ns}/pods/{pod}"),
            content_type: None,
            body: None,
        }],
        // Kubernetes has no in-place container restart through the API; the
        // closest is a delete without grace period.
        Command::RestartPod { pod, .. } => vec![ApiRequest {
            method: "DELETE",
            path: format!("/api/v1/namespaces/{ns}/pods/{pod}?gracePeriodSeconds=0"),
            content_type: None,
            body: None,
        }],
        Command::Rollback { .. } => {
            let [deployment, replicasets] = reads else {
                return Err(PlanError::Malformed {
                    what: d.to_string(),
                    why: "roll back needs the Deployment and its ReplicaSets".into(),
                });
            };
            vec![rollback_patch(ns, d, deployment, replicasets)?]
        }
        Command::Isolate { service, .. } => vec![patch(
            service_path(ns, service),
            MERGE,
            json!({"spec": {"selector": {ISOLATION_LABEL: "true"}}}),
        )],
        Command::Failover { service, .. } => {
            let backup = svc
                .backup_selector
                .as_ref()
                .ok_or_else(|| PlanError::NoBackup(service.clone()))?;
            vec![patch(
                service_path(ns, service),
                JSON_PATCH,
                json!([{"op": "replace", "path": "/spec/selector", "value": backup}]),
            )]
        }
        Command::Reconfigure {
            max_connections,
            timeout_ms,
            ..
        } => {
            let mut data = BTreeMap::new();
            if let Some(m) = max_connections {
                data.insert("max_connections", m.to_string());
            }
            if let Some(t) = timeout_ms {
                data.insert("timeout_ms", t.to_string());
            }
            vec![patch(
                format!("/api/v1/namespaces/{ns}/configmaps/{}", svc.config_map()),
                MERGE,
                json!({ "data": data }),
            )]
        }
    })
}

/// The write that keeps on the Service when its isolation ends (`until`,
/// unix seconds), sent after the isolation itself.
pub fn isolation_end_at(ns: &str, service: &str, until: f64) -> ApiRequest {
    patch(
        service_path(ns, service),
        MERGE,
        json!({"metadata": {"annotations": {ISOLATED_UNTIL: format!("{until:.3}")}}}),
    )
}

/// The write that ends an isolation after its hold.
pub fn end_isolation(ns: &str, service: &str) -> ApiRequest {
    patch(
        service_path(ns, service),
        MERGE,
        json!({
            "metadata": {"annotations": {ISOLATED_UNTIL: null}},
            "spec": {"selector": {ISOLATION_LABEL: null}},
        }),
    )
}

/// The isolated Services in a list of them (`GET .../services`) and when
/// each isolation ends; `None` where no end was kept (an adapter stopped
/// between the isolation and the write of its end) or it does not parse.
pub fn isolated_services(list: &Value) -> Vec<(String, Option<f64>)> {
    let items = list.get("items").and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|svc| {
            svc.pointer("/spec/selector")?.get(ISOLATION_LABEL)?;
            let name = svc.pointer("/metadata/name")?.as_str()?.to_string();
            let until = svc
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ISOLATED_UNTIL))
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|t| t.is_finite());
            Some((name, until))
        })
        .collect()
}

/// The isolations in force and when each ends, one per service. A service
/// isolated again while isolated takes the new end, as the simulator's
/// `isolated_until = now + hold` does: the hold runs from the latest
/// decision. (One end per isolation lifted the first hold's end while a
/// later decision still held the service: the replayed dependency failure
/// routed calls back to the dead service 71 s early and failed 41,000
/// requests where its pure simulation failed 27,000.)
#[derive(Debug, Default)]
pub struct IsolationHolds {
    ends: BTreeMap<String, f64>,
}

impl IsolationHolds {
    /// `service` is isolated until `until` (seconds on the caller's clock).
    pub fn isolate(&mut self, service: &str, until: f64) {
        self.ends.insert(service.to_string(), until);
    }

    /// Takes over the isolations found on the cluster's Services
    /// ([`isolated_services`]): each ends when its Service says, and one
    /// without a kept end is lifted at `now` (an isolation nobody holds
    /// must not outlive the adapter that made it).
    pub fn adopt(&mut self, found: Vec<(String, Option<f64>)>, now: f64) {
        for (service, until) in found {
            self.isolate(&service, until.unwrap_or(now));
        }
    }

    /// The services whose hold is over at `now`, no longer held; in name
    /// order, so that lifting them is deterministic.
    pub fn take_due(&mut self, now: f64) -> Vec<String> {
        let mut due = Vec::new();
        self.ends.retain(|service, until| {
            let over = *until <= now;
            if over {
                due.push(service.clone());
            }
            !over
        });
        due
    }
}

/// `kubectl rollout undo`: the Deployment's pod template becomes that of
/// the ReplicaSet with the previous revision (`rollbackTo` is gone from
/// apps/v1). Upstream: kubectl `polymorphichelpers/rollback.go`.
pub fn rollback_patch(
    ns: &str,
    deployment: &str,
    dep: &Value,
    replicasets: &Value,
) -> Result<ApiRequest, PlanError> {
    let malformed = |why: &str| PlanError::Malformed {
        what: deployment.to_string(),
        why: why.to_string(),
    };
    let uid = dep
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the Deployment has no metadata.uid"))?;
    let revision = |rs: &Value| {
        rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<u64>().ok())
    };
    let mut owned: Vec<(u64, &Value)> = replicasets
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("the ReplicaSet list has no items"))?
        .iter()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|o| {
                    o.iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                })
        })
        .filter_map(|rs| revision(rs).map(|r| (r, rs)))
        .collect();
    owned.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    let Some((_, previous)) = owned.get(1) else {
        return Err(PlanError::NoPreviousRevision {
            deployment: deployment.to_string(),
        });
    };
    let mut template = previous
        .pointer("/spec/template")
        .cloned()
        .ok_or_else(|| malformed("the previous ReplicaSet has no spec.template"))?;
    // The hash label belongs to the ReplicaSet, not to the template.
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    Ok(patch(
        format!("/apis/apps/v1/namespaces/{ns}/deployments/{deployment}"),
        JSON_PATCH,
        json!([{"op": "replace", "path": "/spec/template", "value": template}]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolation_of_an_isolated_service_moves_its_end() {
        let mut holds = IsolationHolds::default();
        holds.isolate("recommendations", 426.0);
        holds.isolate("catalog", 430.0);
        // Isolated again before the first hold is over: the end moves.
        holds.isolate("recommendations", 497.0);
        assert!(holds.take_due(425.0).is_empty());
        assert_eq!(holds.take_due(430.0), ["catalog"]);
        assert!(holds.take_due(496.0).is_empty());
        assert_eq!(holds.take_due(497.0), ["recommendations"]);
        assert!(holds.take_due(1e9).is_empty());
    }

    #[test]
    fn isolations_are_found_on_the_services_and_taken_over() {
        let svc = |name: &str, selector: Value, annotations: Value| json!({"metadata": {"name": name, "annotations": annotations}, "spec": {"selector": selector}});
        let list = json!({"items": [
            svc("cart", json!({"app": "cart"}), json!({})),
            svc("catalog", json!({"app": "catalog", ISOLATION_LABEL: "true"}), json!({ISOLATED_UNTIL: "1800000120.500"})),
            svc("search", json!({"app": "search", ISOLATION_LABEL: "true"}), json!({})),
            svc("ads", json!({"app": "ads", ISOLATION_LABEL: "true"}), json!({ISOLATED_UNTIL: "soon"})),
        ]});
        let found = isolated_services(&list);
        assert_eq!(
            found,
            [
                ("catalog".to_string(), Some(1_800_000_120.5)),
                ("search".to_string(), None),
                ("ads".to_string(), None),
            ]
        );
        let mut holds = IsolationHolds::default();
        holds.adopt(found, 1_800_000_000.0);
        // Without a kept end: lifted at once; with one: when it says.
        assert_eq!(holds.take_due(1_800_000_000.0), ["ads", "search"]);
        assert!(holds.take_due(1_800_000_120.0).is_empty());
        assert_eq!(holds.take_due(1_800_000_120.5), ["catalog"]);
        // The end is kept by the write after the isolation, and cleared
        // with the selector when the isolation ends.
        assert_eq!(
            isolation_end_at("shop", "catalog", 1_800_000_120.5).body,
            Some(json!({"metadata": {"annotations": {ISOLATED_UNTIL: "1800000120.500"}}}))
        );
        let end = end_isolation("shop", "catalog").body.unwrap();
        assert_eq!(end["metadata"]["annotations"][ISOLATED_UNTIL], Value::Null);
        assert_eq!(end["spec"]["selector"][ISOLATION_LABEL], Value::Null);
    }

    #[test]
    fn rbac_rules_are_read_off_the_paths() {
        let r = |m, p: &str| {
            ApiRequest {
                method: m,
                path: p.into(),
                content_type: None,
                body: None,
            }
            .rbac()
        };
        assert_eq!(
            r("PATCH", "/apis/apps/v1/namespaces/s/deployments/api/scale"),
            ("apps".into(), "deployments/scale".into(), "patch")
        );
        assert_eq!(
            r(
                "DELETE",
                "/api/v1/namespaces/s/pods/api-1?gracePeriodSeconds=0"
            ),
            ("".into(), "pods".into(), "delete")
        );
        assert_eq!(
            r("GET", "/apis/apps/v1/namespaces/s/replicasets"),
            ("apps".into(), "replicasets".into(), "list")
        );
        assert_eq!(
            r(
                "GET",
                "/api/v1/namespaces/s/pods?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=10"
            ),
            ("".into(), "pods".into(), "watch")
        );
        assert_eq!(
            r("GET", "/api/v1/namespaces/s/configmaps/k"),
            ("".into(), "configmaps".into(), "get")
        );
    }

    #[test]
    fn rollback_takes_the_previous_revisions_template() {
        let dep = json!({"metadata": {"uid": "d1"}});
        let rs = |rev: &str, image: &str, owner: &str| {
            json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": rev},
                                "ownerReferences": [{"uid": owner}]},
                   "spec": {"template": {"metadata": {"labels": {"app": "api", "pod-template-hash": "h"}},
                                         "spec": {"containers": [{"image": image}]}}}})
        };
        let list = json!({"items": [rs("3", "v3", "d1"), rs("2", "v2", "d1"), rs("9", "other", "x"), rs("1", "v1", "d1")]});
        let p = rollback_patch("s", "api", &dep, &list).unwrap();
        assert_eq!(p.path, "/apis/apps/v1/namespaces/s/deployments/api");
        let v = &p.body.unwrap()[0]["value"];
        assert_eq!(v["spec"]["containers"][0]["image"], "v2");
        assert!(v["metadata"]["labels"].get("pod-template-hash").is_none());
        let one = json!({"items": [rs("1", "v1", "d1")]});
        assert!(matches!(
            rollback_patch("s", "api", &dep, &one),
            Err(PlanError::NoPreviousRevision { .. })
        ));
    }
}
