//! The API side against a recorded-expectation server (in the style of
//! kube-rs's `ApiServerVerifier`): each command sends exactly the expected
//! requests, dry-run sends no write, the kill switch stops every write, and
//! the RBAC manifest grants what the requests use and nothing more; and,
//! against the served simulation's API, an isolation's end kept on its
//! Service.

mod common;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use selfheal::control::Command;
use selfheal::time::Span;
use selfheal_k8s::api::{Executor, Outcome};
use selfheal_k8s::config::ServiceConfig;

fn services() -> Vec<ServiceConfig> {
    vec![ServiceConfig {
        name: "api".into(),
        deployment: None,
        max_connections: 100,
        backup_selector: Some([("app".to_string(), "api-standby".to_string())].into()),
        config_map: None,
        fallback_for: Vec::new(),
    }]
}

fn cluster(stop: bool) -> common::Server {
    let leased = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The reflectors' view: Deployment `api` at revision 2 of 3 replicas
    // (2 ready), its two ReplicaSets, and two pods of the new one.
    let namespace = common::Namespace {
        deployment: "api",
        revision: 2,
        replicas: 3,
        ready: 2,
        pods: vec![("api-2-a", true), ("api-2-b", false)],
    };
    common::serve(Box::new(move |r| {
        let p = r.path.split('?').next().unwrap_or("");
        let lease = "/apis/coordination.k8s.io/v1/namespaces/shop/leases/selfheal-k8s";
        if let Some(answer) = common::reflected(r, &namespace) {
            return answer;
        }
        match (r.method.as_str(), p) {
            ("GET", l) if l == lease && leased.load(std::sync::atomic::Ordering::SeqCst) => (
                200,
                json!({"metadata": {"resourceVersion": "3"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": "2026-12-01T10:00:00.000000Z"}})
                    .to_string(),
            ),
            ("GET", l) if l == lease => (
                404,
                json!({"kind": "Status", "reason": "NotFound", "code": 404}).to_string(),
            ),
            ("POST", "/apis/coordination.k8s.io/v1/namespaces/shop/leases") => {
                leased.store(true, std::sync::atomic::Ordering::SeqCst);
                (201, "{}".to_string())
            }
            ("GET", "/api/v1/namespaces/shop/configmaps/selfheal-kill-switch") if stop => {
                (200, json!({"data": {"stop": "true"}}).to_string())
            }
            ("GET", "/api/v1/namespaces/shop/configmaps/selfheal-kill-switch") => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
                    .to_string(),
            ),
            ("GET", "/apis/apps/v1/namespaces/shop/deployments/api") => {
                (200, json!({"metadata": {"name": "api", "uid": "u1"}}).to_string())
            }
            ("GET", "/apis/apps/v1/namespaces/shop/replicasets") => {
                let rs = |rev: &str, image: &str| json!({
                    "metadata": {"annotations": {"deployment.kubernetes.io/revision": rev}, "ownerReferences": [{"uid": "u1"}]},
                    "spec": {"template": {"metadata": {"labels": {"app": "api", "pod-template-hash": "x"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
                });
                (200, json!({"items": [rs("2", "api:2"), rs("1", "api:1")]}).to_string())
            }
            _ => (200, "{}".to_string()),
        }
    }))
}

async fn executor(server: &common::Server, apply: bool) -> Executor {
    executor_at(&server.addr, services(), apply)
}

/// An executor for namespace `shop` of the API server at `url`.
fn executor_at(url: &str, services: Vec<ServiceConfig>, apply: bool) -> Executor {
    let config = kube::Config::new(url.parse().unwrap());
    Executor {
        client: kube::Client::try_from(config).unwrap(),
        namespace: "shop".into(),
        services,
        apply,
        kill_switch: "selfheal-kill-switch".into(),
    }
}

fn commands() -> Vec<Command> {
    let r = || "test".to_string();
    vec![
        Command::Scale {
            service: "api".into(),
            replicas: 5,
            reason: r(),
        },
        Command::ReplacePod {
            service: "api".into(),
            pod: "api-7d9-x2".into(),
            reason: r(),
        },
        Command::RestartPod {
            service: "api".into(),
            pod: "api-7d9-x3".into(),
            reason: r(),
        },
        Command::Rollback {
            service: "api".into(),
            reason: r(),
        },
        Command::Isolate {
            service: "api".into(),
            hold: Span::from_secs(120),
            reason: r(),
        },
        Command::Failover {
            service: "api".into(),
            reason: r(),
        },
        Command::Reconfigure {
            service: "api".into(),
            max_connections: Some(150),
            timeout_ms: Some(250.0),
            reason: r(),
        },
    ]
}

/// (method, path, body) of the requests after the kill-switch reads.
fn writes(seen: &[common::Seen]) -> Vec<(String, String, Value)> {
    seen.iter()
        .filter(|s| s.method != "GET")
        .map(|s| {
            (
                s.method.clone(),
                s.path.clone(),
                serde_json::from_str(&s.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_command_sends_exactly_the_expected_request() {
    let server = cluster(false);
    let ex = executor(&server, true).await;
    for c in commands() {
        assert!(
            matches!(ex.execute(&c).await.unwrap(), Outcome::Sent(_)),
            "{c:?}"
        );
    }
    let seen = server.seen.lock().unwrap().clone();
    let expected: Vec<(&str, &str, Value)> = vec![
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/api/scale",
            json!({"spec": {"replicas": 5}}),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/shop/pods/api-7d9-x2",
            Value::Null,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/shop/pods/api-7d9-x3?gracePeriodSeconds=0",
            Value::Null,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/api",
            json!([{"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "app", "image": "api:1"}]}}}]),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/shop/services/api",
            json!({"spec": {"selector": {"selfheal.io/isolated": "true"}}}),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/shop/services/api",
            json!([{"op": "replace", "path": "/spec/selector", "value": {"app": "api-standby"}}]),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/shop/configmaps/api-selfheal",
            json!({"data": {"max_connections": "150", "timeout_ms": "250"}}),
        ),
    ];
    let got = writes(&seen);
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((m, p, b), (em, ep, eb)) in got.iter().zip(&expected) {
        assert_eq!((m.as_str(), p.as_str(), b), (*em, *ep, eb));
    }
    // Patches say which patch they are.
    for s in seen.iter().filter(|s| s.method == "PATCH") {
        let ct = s.content_type.as_deref().unwrap_or("");
        assert!(
            ct == "application/merge-patch+json" || ct == "application/json-patch+json",
            "{ct}"
        );
    }
    // Every command checked the kill switch first; roll back read its state.
    let reads: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "GET")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        reads
            .iter()
            .filter(|p| p.contains("selfheal-kill-switch"))
            .count(),
        7
    );
    assert!(reads.contains(&"/apis/apps/v1/namespaces/shop/replicasets"));
}

#[tokio::test]
async fn dry_run_sends_no_write() {
    let server = cluster(false);
    let ex = executor(&server, false).await;
    for c in commands() {
        let Outcome::WouldSend(w) = ex.execute(&c).await.unwrap() else {
            panic!("dry-run sent {c:?}")
        };
        assert!(!w.is_empty());
    }
    assert!(writes(&server.seen.lock().unwrap()).is_empty());
}

#[tokio::test]
async fn the_kill_switch_stops_every_write() {
    let server = cluster(true);
    let ex = executor(&server, true).await;
    for c in commands() {
        assert_eq!(ex.execute(&c).await.unwrap(), Outcome::Stopped);
    }
    let seen = server.seen.lock().unwrap().clone();
    assert!(writes(&seen).is_empty());
    assert!(seen.iter().all(|s| s.path.contains("selfheal-kill-switch")));
}

/// (apiGroup, resource, verb) triples a Role grants, read off the YAML
/// with a line parser (the manifest keeps one list per line).
/// One Role rule: groups, resources, verbs and, where set, the only
/// object names it grants.
#[derive(Debug, Default)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

/// The Role's rules, read off the manifest's flow lists.
fn rules(yaml: &str) -> Vec<Rule> {
    let list = |l: &str| -> Vec<String> {
        l.split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(inner, _)| {
                inner
                    .split(',')
                    .map(|x| x.trim().trim_matches('"').to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<Rule> = Vec::new();
    for line in yaml.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("- apiGroups:") {
            out.push(Rule {
                groups: list(rest),
                ..Rule::default()
            });
        } else if let Some(rule) = out.last_mut() {
            if t.starts_with("resources:") {
                rule.resources = list(t);
            } else if t.starts_with("verbs:") {
                rule.verbs = list(t);
            } else if t.starts_with("resourceNames:") {
                rule.names = list(t);
            }
        }
    }
    out
}

fn granted(yaml: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules(yaml) {
        for g in &rule.groups {
            for r in &rule.resources {
                for v in &rule.verbs {
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// Starts the reflectors against `server` and waits for their first lists
/// and for a watch on each resource.
async fn watched(server: &common::Server) -> selfheal_k8s::watch::ClusterState {
    let config = kube::Config::new(server.addr.parse().unwrap());
    let state = selfheal_k8s::watch::ClusterState::watch(
        kube::Client::try_from(config).unwrap(),
        "shop",
        |_| {},
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), state.ready())
        .await
        .expect("the first lists within 10 s")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ["pods", "deployments", "replicasets"].iter().any(|w| {
        !server
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path.contains(&format!("/{w}?")) && s.path.contains("watch=true"))
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no watch on every resource"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    state
}

#[tokio::test]
async fn pod_and_replica_state_come_from_watches_not_polled_lists() {
    let server = cluster(false);
    let state = watched(&server).await;
    let clock = selfheal_k8s::clock::Clock {
        origin: 0.0,
        time_scale: 1.0,
    };
    let r = state.replicas("api", &clock).unwrap();
    assert_eq!((r.desired, r.ready, r.revision), (3, 2, 1));
    let pods: Vec<_> = r
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.ready, p.revision))
        .collect();
    assert_eq!(pods, vec![("api-2-a", true, 1), ("api-2-b", false, 1)]);
    assert!(
        state
            .replicas("web", &clock)
            .unwrap_err()
            .to_string()
            .contains("no Deployment `web`")
    );
    // One list per resource, then watches: the reads are not a polling loop.
    let seen = server.seen.lock().unwrap().clone();
    for w in ["pods", "deployments", "replicasets"] {
        let lists = seen
            .iter()
            .filter(|s| {
                s.path.contains(&format!("/namespaces/shop/{w}?")) && !s.path.contains("watch=true")
            })
            .count();
        assert_eq!(lists, 1, "{w}: {seen:?}");
    }
}

#[tokio::test]
async fn rbac_grants_what_the_requests_use_and_nothing_more() {
    let server = cluster(false);
    let _state = watched(&server).await;
    let ex = executor(&server, true).await;
    ex.hpa_owned().await.unwrap();
    ex.isolations().await.unwrap();
    // Create the Lease, then renew it.
    ex.hold_lease("selfheal-k8s", "me", 1.8e9, 15)
        .await
        .unwrap();
    ex.hold_lease("selfheal-k8s", "me", 1.8e9 + 5.0, 15)
        .await
        .unwrap();
    for c in commands() {
        ex.execute(&c).await.unwrap();
    }
    let requests: Vec<(String, String, String, Option<String>)> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            let method: &'static str = match s.method.as_str() {
                "GET" => "GET",
                "PATCH" => "PATCH",
                "DELETE" => "DELETE",
                "POST" => "POST",
                "PUT" => "PUT",
                other => panic!("unexpected method {other}"),
            };
            let (g, r, v) = selfheal_k8s::actuate::ApiRequest {
                method,
                path: s.path.clone(),
                content_type: None,
                body: None,
            }
            .rbac();
            // The object a request names: the path segment after its
            // resource (`.../configmaps/<name>`), none for a collection.
            let segments: Vec<&str> = s.path.split('?').next().unwrap().split('/').collect();
            let plural = r.split('/').next().unwrap();
            let name = segments
                .iter()
                .position(|p| *p == plural)
                .and_then(|i| segments.get(i + 1))
                .map(|n| n.to_string());
            (g, r, v.to_string(), name)
        })
        .collect();
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml")).unwrap();
    // Where a rule names its objects, every request it grants names one of
    // them, and each of them is used.
    for rule in rules(&yaml).iter().filter(|r| !r.names.is_empty()) {
        let covered: Vec<&Option<String>> = requests
            .iter()
            .filter(|(g, r, v, _)| {
                rule.groups.contains(g) && rule.resources.contains(r) && rule.verbs.contains(v)
            })
            .map(|(_, _, _, name)| name)
            .collect();
        for name in &covered {
            assert!(
                name.as_ref().is_some_and(|n| rule.names.contains(n)),
                "{rule:?} does not grant a request on {name:?}"
            );
        }
        for n in &rule.names {
            assert!(
                covered.iter().any(|c| c.as_deref() == Some(n.as_str())),
                "{rule:?} names `{n}`, which no request uses"
            );
        }
    }
    let used: BTreeSet<(String, String, String)> =
        requests.into_iter().map(|(g, r, v, _)| (g, r, v)).collect();
    let grants = granted(&yaml);
    let missing: Vec<_> = used.difference(&grants).collect();
    assert!(missing.is_empty(), "the Role lacks {missing:?}");
    let unused: Vec<_> = grants.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "the Role grants more than the adapter uses: {unused:?}"
    );
}

/// An isolation's end is kept on its Service, where an adapter that
/// restarts (or takes over the Lease) finds it, and goes with the
/// isolation; here against the served simulation's API.
#[tokio::test]
async fn an_isolation_s_end_is_kept_on_the_served_service() {
    let shop = common::bundled_static("chaos/dependency-failure.toml");
    let served = selfheal::serve::Served::start(
        &shop,
        &selfheal::serve::ServeOptions {
            addr: "127.0.0.1:0".into(),
            speed: 1.0,
            namespace: "shop".into(),
            clock: selfheal::serve::ServeClock::Driven,
            token: None,
            faults: selfheal::serve::ServedFaults::Held,
        },
    )
    .unwrap();
    let recommendations = ServiceConfig {
        name: "recommendations".into(),
        backup_selector: None,
        ..services().remove(0)
    };
    let ex = executor_at(
        &format!("http://{}", served.addr),
        vec![recommendations],
        true,
    );
    assert!(ex.isolations().await.unwrap().is_empty());
    let isolate = Command::Isolate {
        service: "recommendations".into(),
        hold: Span::from_secs(120),
        reason: "test".into(),
    };
    assert!(matches!(ex.execute(&isolate).await, Ok(Outcome::Sent(_))));
    let until = 1_800_000_120.5;
    let keep = selfheal_k8s::actuate::isolation_end_at("shop", "recommendations", until);
    assert!(matches!(ex.send_write(&keep).await, Ok(Outcome::Sent(_))));
    assert_eq!(
        ex.isolations().await.unwrap(),
        [("recommendations".to_string(), Some(until))]
    );
    let end = selfheal_k8s::actuate::end_isolation("shop", "recommendations");
    assert!(matches!(ex.send_write(&end).await, Ok(Outcome::Sent(_))));
    assert!(ex.isolations().await.unwrap().is_empty());
}
