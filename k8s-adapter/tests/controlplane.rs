//! The adapter against a real Kubernetes control plane: kube-apiserver
//! with the RBAC authorizer, etcd, the controller-manager's Deployment,
//! ReplicaSet and garbage-collector controllers, the scheduler, and KWOK
//! running the pods on fake nodes. Opt-in, like the Prometheus tests:
//!
//! ```sh
//! bash k8s-adapter/controlplane/controlplane.sh test
//! ```
//!
//! builds the control plane once (cached under `target/controlplane/`),
//! starts it, runs this file with `SELFHEAL_CONTROLPLANE_KUBECONFIG` set to
//! its admin kubeconfig, and stops it. Without that variable every test
//! here skips, unless `SELFHEAL_REQUIRE_CONTROLPLANE` is set.
//!
//! What is checked against the real thing and not our idea of it:
//! - `deploy/rbac.yaml`, applied as is, allows every request the adapter
//!   plans and the real authorizer denies one outside it;
//! - a dry run sends no write (the API server's audit log);
//! - `--apply` scales, deletes pods, rolls back, patches the Service and
//!   the ConfigMap and holds the Lease, and the real controllers carry
//!   each out;
//! - an HorizontalPodAutoscaler on a Deployment keeps the adapter off it;
//! - the watches survive an API server restart with etcd compacted in
//!   between (`410 Gone`, then a fresh list);
//! - `control/hpa.rs` decides as the real HPA controller does: five CPU
//!   series (steady, ramp, spike, oscillating, pods not ready) go through
//!   the real controller, every sync's inputs are logged by the metrics API
//!   it reads (`controlplane/metrics`, in place of metrics-server), and the
//!   reimplementation, shown the same inputs, must answer every sync with
//!   the replicas the real one set;
//! - `selfheal-k8s replay` of the pod-kill and load-swing chaos scenarios
//!   against the control plane, with `selfheal-k8s follow` keeping a
//!   served copy of the scenario in step with it (KWOK's pods do no work),
//!   decides and ends as the same replay against `selfheal serve` alone
//!   (needs Prometheus, as `tests/e2e.rs` does).
//!
//! The tests share one API server and one restarts it, so they take turns.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use selfheal::control::Command;
use selfheal::time::Span;
use selfheal_k8s::actuate::{self, ApiRequest};
use selfheal_k8s::api::{ApiError, Executor, LeaseError, Outcome};
use selfheal_k8s::clock::Clock;
use selfheal_k8s::config::ServiceConfig;
use selfheal_k8s::safety;
use selfheal_k8s::watch::ClusterState;
use serde_json::Value;

/// One test at a time: one of them restarts the API server.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The namespace `deploy/rbac.yaml` names.
const NS: &str = "shop";
const SA_USER: &str = "system:serviceaccount:shop:selfheal-k8s";

fn kubeconfig() -> Option<PathBuf> {
    match std::env::var_os("SELFHEAL_CONTROLPLANE_KUBECONFIG") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("SELFHEAL_REQUIRE_CONTROLPLANE").is_some() => {
            panic!(
                "SELFHEAL_REQUIRE_CONTROLPLANE is set but SELFHEAL_CONTROLPLANE_KUBECONFIG is not"
            )
        }
        None => {
            eprintln!(
                "skipped: no control plane (bash k8s-adapter/controlplane/controlplane.sh test)"
            );
            None
        }
    }
}

/// Runs kubectl as the admin; `stdin` is a manifest for `apply -f -`.
fn kubectl(kc: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut p = Process::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(s) = stdin {
        p.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deletes a namespace left by an earlier run and waits until it is gone,
/// so that a test can run again on the same control plane.
fn remove_namespace(kc: &Path, ns: &str) {
    kubectl(
        kc,
        &[
            "delete",
            "namespace",
            ns,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ],
        None,
    );
}

/// Waits for the Deployment controller to finish api's roll-out.
fn rollout_done(kc: &Path) {
    kubectl(
        kc,
        &[
            "rollout",
            "status",
            "deployment/api",
            "-n",
            NS,
            "--timeout=60s",
        ],
        None,
    );
}

fn kubectl_json(kc: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(kc, &a, None)).unwrap()
}

async fn client_from(path: &Path) -> kube::Client {
    let k = kube::config::Kubeconfig::read_from(path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(k, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// A client that authenticates as the adapter's ServiceAccount, with a
/// token from the TokenRequest API (`kubectl create token`).
async fn adapter_client(kc: &Path, dir: &Path) -> kube::Client {
    let token = kubectl(kc, &["create", "token", "selfheal-k8s", "-n", NS], None);
    // The admin kubeconfig is the script's own: its server and CA lines
    // are read as text, not through a YAML parser.
    let admin = std::fs::read_to_string(kc).unwrap();
    let field = |key: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("{}: no {key}", kc.display()))
            .trim()
            .to_string()
    };
    let path = dir.join("adapter.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: adapter\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: adapter, namespace: {NS}}}\ncurrent-context: c\n",
            field("server:"),
            field("certificate-authority:"),
            token.trim()
        ),
    )
    .unwrap();
    client_from(&path).await
}

/// Polls `check` every 250 ms until it holds; fails after `limit_s`.
async fn eventually<F: FnMut() -> bool>(what: &str, limit_s: u64, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(limit_s);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not after {limit_s} s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: registry.example/api:v1
          resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api-standby, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: api, track: standby}}
  template:
    metadata: {labels: {app: api, track: standby}}
    spec:
      containers:
        - name: api
          image: registry.example/api:v1
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: api-selfheal, namespace: shop}
data: {max_connections: "100"}
"#;

fn services() -> Vec<ServiceConfig> {
    vec![ServiceConfig {
        name: "api".into(),
        deployment: None,
        max_connections: 100,
        backup_selector: Some([("track".to_string(), "standby".to_string())].into()),
        config_map: None,
        fallback_for: Vec::new(),
    }]
}

fn executor(client: kube::Client, apply: bool) -> Executor {
    Executor {
        client,
        namespace: NS.into(),
        services: services(),
        apply,
        kill_switch: "selfheal-kill-switch".into(),
    }
}

/// The writes the audit log holds from `user`.
fn audited_writes(kc: &Path, user: &str) -> Vec<String> {
    let log = kc.parent().unwrap().join("audit.log");
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e.pointer("/user/username").and_then(Value::as_str) == Some(user))
        .map(|e| {
            format!(
                "{} {} -> {}",
                e["verb"].as_str().unwrap_or("?"),
                e["requestURI"].as_str().unwrap_or("?"),
                e.pointer("/responseStatus/code").unwrap_or(&Value::Null)
            )
        })
        .collect()
}

fn ready_pods(kc: &Path, selector: &str) -> Vec<String> {
    ready_pods_in(kc, NS, selector)
}

fn image(kc: &Path) -> String {
    let d = kubectl_json(kc, &["get", "deployment", "api", "-n", NS]);
    d.pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap()
        .to_string()
}

fn r() -> String {
    "control-plane test".into()
}

/// Everything that runs as the adapter's ServiceAccount, in order, in the
/// one namespace its Role names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_under_its_own_role_against_a_real_api_server() {
    let Some(kc) = kubeconfig() else { return };
    let _turn = SERIAL.lock().await;
    let dir = kc.parent().unwrap().to_path_buf();
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml");

    // A fresh namespace, so that the test can run again on the same
    // control plane.
    remove_namespace(&kc, NS);
    let writes_before = audited_writes(&kc, SA_USER).len();
    kubectl(&kc, &["apply", "-f", "-"], Some(SHOP));
    kubectl(&kc, &["apply", "-f", manifests.to_str().unwrap()], None);
    eventually("2 ready api pods on KWOK nodes", 60, || {
        ready_pods(&kc, "app=api,!track").len() == 2
    })
    .await;
    // A second revision, so that a roll back has somewhere to go.
    kubectl(
        &kc,
        &[
            "set",
            "image",
            "deployment/api",
            "api=registry.example/api:v2",
            "-n",
            NS,
        ],
        None,
    );
    rollout_done(&kc);
    let client = adapter_client(&kc, &dir).await;

    // The watches list and watch under the Role.
    let state = ClusterState::watch(client.clone(), NS, |m| eprintln!("{m}"));
    tokio::time::timeout(Duration::from_secs(30), state.ready())
        .await
        .expect("the watches list within 30 s")
        .unwrap();
    let clock = Clock {
        origin: Clock::wall_now(),
        time_scale: 1.0,
    };
    eventually("the watched state shows 2 ready replicas", 30, || {
        state.replicas("api", &clock).is_ok_and(|s| s.ready == 2)
    })
    .await;

    // Reads: the kill switch is absent (404, not 403) and no HPA scales api.
    let dry = executor(client.clone(), false);
    let kill = dry
        .read(&actuate::get(format!(
            "/api/v1/namespaces/{NS}/configmaps/selfheal-kill-switch"
        )))
        .await;
    assert!(
        matches!(
            kill,
            Err(ApiError::Request {
                code: Some(404),
                ..
            })
        ),
        "{kill:?}"
    );
    assert!(dry.hpa_owned().await.unwrap().is_empty());

    // Dry run: every command is planned, with its reads sent, and no write
    // reaches the API server.
    let pod = ready_pods(&kc, "app=api,!track")[0].clone();
    let commands = [
        Command::Scale {
            service: "api".into(),
            replicas: 3,
            reason: r(),
        },
        Command::ReplacePod {
            service: "api".into(),
            pod: pod.clone(),
            reason: r(),
        },
        Command::RestartPod {
            service: "api".into(),
            pod: pod.clone(),
            reason: r(),
        },
        Command::Rollback {
            service: "api".into(),
            reason: r(),
        },
        Command::Isolate {
            service: "api".into(),
            hold: Span::from_secs(60),
            reason: r(),
        },
        Command::Failover {
            service: "api".into(),
            reason: r(),
        },
        Command::Reconfigure {
            service: "api".into(),
            max_connections: Some(50),
            timeout_ms: Some(800.0),
            reason: r(),
        },
    ];
    for c in &commands {
        let out = dry
            .execute(c)
            .await
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(
            matches!(out, Outcome::WouldSend(ref w) if !w.is_empty()),
            "{out:?}"
        );
    }
    assert_eq!(
        audited_writes(&kc, SA_USER)[writes_before..],
        [] as [String; 0],
        "a dry run wrote"
    );

    // Apply: each command, and the real controllers carry it out.
    let live = executor(client.clone(), true);
    let now = Clock::wall_now();
    live.hold_lease("selfheal-k8s", "test-instance", now, 30)
        .await
        .expect("the Lease is created under the Role");
    live.hold_lease("selfheal-k8s", "test-instance", now + 1.0, 30)
        .await
        .expect("and renewed");
    let taken = live
        .hold_lease("selfheal-k8s", "another-instance", now + 2.0, 30)
        .await;
    assert!(
        taken.as_ref().is_err_and(
            |e| matches!(e, LeaseError::HeldBy { holder, .. } if holder == "test-instance")
        ),
        "a second instance must not act while the Lease is held: {taken:?}"
    );
    let lease = kubectl_json(&kc, &["get", "lease", "selfheal-k8s", "-n", NS]);
    assert_eq!(lease["spec"]["holderIdentity"], "test-instance");

    live.execute(&commands[0]).await.unwrap();
    eventually("the scale to 3 carried out", 60, || {
        ready_pods(&kc, "app=api,!track").len() == 3
    })
    .await;

    let before = ready_pods(&kc, "app=api,!track");
    live.execute(&Command::ReplacePod {
        service: "api".into(),
        pod: before[0].clone(),
        reason: r(),
    })
    .await
    .unwrap();
    live.execute(&Command::RestartPod {
        service: "api".into(),
        pod: before[1].clone(),
        reason: r(),
    })
    .await
    .unwrap();
    eventually("both deleted pods replaced by new ones", 60, || {
        let now = ready_pods(&kc, "app=api,!track");
        now.len() == 3 && !now.contains(&before[0]) && !now.contains(&before[1])
    })
    .await;

    assert_eq!(image(&kc), "registry.example/api:v2");
    live.execute(&commands[3]).await.unwrap();
    assert_eq!(image(&kc), "registry.example/api:v1", "rolled back");
    rollout_done(&kc);
    let rs = kubectl_json(
        &kc,
        &["get", "replicasets", "-n", NS, "-l", "app=api,!track"],
    );
    let active: Vec<&Value> = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spec"]["replicas"].as_u64() > Some(0))
        .collect();
    assert_eq!(active.len(), 1, "one ReplicaSet runs after the roll back");
    assert_eq!(
        active[0]["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/api:v1",
        "the Deployment controller brought back the first revision's ReplicaSet"
    );

    live.execute(&commands[4]).await.unwrap();
    let svc = kubectl_json(&kc, &["get", "service", "api", "-n", NS]);
    assert_eq!(svc["spec"]["selector"][actuate::ISOLATION_LABEL], "true");
    eventually("the isolated Service selects no pod", 30, || {
        let ep = kubectl_json(
            &kc,
            &[
                "get",
                "endpointslices",
                "-n",
                NS,
                "-l",
                "kubernetes.io/service-name=api",
            ],
        );
        ep["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["endpoints"].as_array().is_none_or(Vec::is_empty))
    })
    .await;
    // The isolation's end is kept on the Service, where a restarted
    // adapter finds it (a list of Services under the Role), and goes with
    // the isolation.
    let until = now + 60.0;
    live.send_write(&actuate::isolation_end_at(NS, "api", until))
        .await
        .unwrap();
    let found = live.isolations().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "api");
    assert!((found[0].1.unwrap() - until).abs() < 1e-3, "{found:?}");
    live.send_write(&actuate::end_isolation(NS, "api"))
        .await
        .unwrap();
    assert_eq!(live.isolations().await.unwrap(), []);
    live.execute(&commands[5]).await.unwrap();
    let svc = kubectl_json(&kc, &["get", "service", "api", "-n", NS]);
    assert_eq!(
        svc["spec"]["selector"],
        serde_json::json!({"track": "standby"})
    );

    live.execute(&commands[6]).await.unwrap();
    let cm = kubectl_json(&kc, &["get", "configmap", "api-selfheal", "-n", NS]);
    assert_eq!(cm["data"]["max_connections"], "50");
    assert_eq!(cm["data"]["timeout_ms"], "800");

    // Every write went out under the adapter's identity and none was denied.
    let writes = audited_writes(&kc, SA_USER).split_off(writes_before);
    assert!(writes.len() >= 8, "{writes:#?}");
    assert!(
        writes
            .iter()
            .all(|w| w.ends_with("-> 200") || w.ends_with("-> 201")),
        "{writes:#?}"
    );

    // Outside the Role: the real authorizer says no.
    let denied = live
        .execute(&Command::Reconfigure {
            service: "web".into(),
            max_connections: Some(1),
            timeout_ms: None,
            reason: r(),
        })
        .await;
    assert!(
        denied.is_err(),
        "an unknown service is refused before any request"
    );
    let other = Executor {
        services: vec![ServiceConfig {
            name: "web".into(),
            deployment: None,
            max_connections: 1,
            backup_selector: None,
            config_map: None,
            fallback_for: Vec::new(),
        }],
        ..executor(client.clone(), true)
    };
    kubectl(
        &kc,
        &[
            "create",
            "configmap",
            "web-selfheal",
            "-n",
            NS,
            "--from-literal=max_connections=1",
        ],
        None,
    );
    for (what, res) in [
        (
            "a ConfigMap not named in the Role",
            other
                .execute(&Command::Reconfigure {
                    service: "web".into(),
                    max_connections: Some(2),
                    timeout_ms: None,
                    reason: r(),
                })
                .await
                .map(|_| ()),
        ),
        (
            "reading Secrets",
            live.read(&actuate::get(format!("/api/v1/namespaces/{NS}/secrets")))
                .await
                .map(|_| ()),
        ),
        (
            "lifting the kill switch",
            live.send_write(&ApiRequest {
                method: "PATCH",
                path: format!("/api/v1/namespaces/{NS}/configmaps/selfheal-kill-switch"),
                content_type: Some("application/merge-patch+json"),
                body: Some(serde_json::json!({"data": {"stop": "false"}})),
            })
            .await
            .map(|_| ()),
        ),
    ] {
        assert!(
            matches!(
                res,
                Err(ApiError::Request {
                    code: Some(403),
                    ..
                })
            ),
            "{what}: {res:?}"
        );
    }

    // An HPA on api: the adapter sees it and leaves api's scale alone.
    kubectl(
        &kc,
        &[
            "autoscale",
            "deployment",
            "api",
            "-n",
            NS,
            "--min=2",
            "--max=5",
            "--cpu-percent=70",
        ],
        None,
    );
    let owned = live.hpa_owned().await.unwrap();
    assert!(owned.contains("api"), "{owned:?}");
    assert!(safety::fights_hpa(&commands[0], |s| s.to_string(), &owned));

    // The kill switch, set by the admin, stops every write.
    kubectl(
        &kc,
        &[
            "create",
            "configmap",
            "selfheal-kill-switch",
            "-n",
            NS,
            "--from-literal=stop=true",
        ],
        None,
    );
    assert_eq!(live.execute(&commands[0]).await.unwrap(), Outcome::Stopped);
}

/// What the watches said about themselves (`ClusterState::watch`'s log).
static WATCH_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watches_survive_an_api_server_restart_and_a_compaction() {
    let Some(kc) = kubeconfig() else { return };
    let _turn = SERIAL.lock().await;
    let ns = "watched";
    remove_namespace(&kc, ns);
    kubectl(&kc, &["create", "namespace", ns], None);
    kubectl(
        &kc,
        &[
            "create",
            "deployment",
            "w",
            "-n",
            ns,
            "--image=registry.example/w:v1",
            "--replicas=2",
        ],
        None,
    );
    let state = ClusterState::watch(client_from(&kc).await, ns, |m| {
        eprintln!("{m}");
        WATCH_LOG.lock().unwrap().push(m.to_string());
    });
    tokio::time::timeout(Duration::from_secs(30), state.ready())
        .await
        .expect("the watches list within 30 s")
        .unwrap();
    let clock = Clock {
        origin: Clock::wall_now(),
        time_scale: 1.0,
    };
    let ready = |n: u32| state.replicas("w", &clock).is_ok_and(|s| s.ready == n);
    eventually("2 ready replicas watched", 60, || ready(2)).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("controlplane/controlplane.sh");
    let top = kc.parent().unwrap().parent().unwrap();
    // Blocking is fine here: the watches run on the runtime's workers, the
    // test body on its own thread.
    let status = Process::new("bash")
        .arg(&script)
        .args(["restart-apiserver", "--compact"])
        .env("SELFHEAL_CP_DIR", top)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{} restart-apiserver failed",
        script.display()
    );

    kubectl(
        &kc,
        &["scale", "deployment", "w", "-n", ns, "--replicas=4"],
        None,
    );
    eventually(
        "the scale to 4 seen through the resumed watches",
        90,
        || ready(4),
    )
    .await;
    let kinds = ["pods", "deployments", "replicasets"];
    let said = |what: &dyn Fn(&str) -> String| {
        let log = WATCH_LOG.lock().unwrap();
        kinds
            .iter()
            .all(|k| log.iter().any(|l| l.starts_with(&what(k))))
    };
    assert!(
        said(&|k| format!("watch {k}: down")),
        "every watch saw the API server go: {:#?}",
        WATCH_LOG.lock().unwrap()
    );
    // A watch resumed at a compacted revision gets 410 Gone and lists
    // again (a watch that simply reconnected would not say "back").
    eventually("every watch listed again after the compaction", 60, || {
        said(&|k| format!("watch {k}: back (listed again)"))
    })
    .await;
}

/// One fetch of the resource metrics API as `fake-metrics` logged it: what
/// the real HPA controller saw at one sync.
#[derive(serde::Deserialize, Debug)]
struct Fetch {
    time: f64,
    sampled: f64,
    level: f64,
    replicas: u32,
    #[serde(default)]
    pods: Vec<PodSeen>,
}

#[derive(serde::Deserialize, Debug)]
struct PodSeen {
    name: String,
    phase: String,
    deleting: bool,
    ready: bool,
    started: f64,
    ready_since: f64,
    request_milli: i64,
    usage_milli: Option<i64>,
}

/// The HPA both sides run: autoscaling/v2 with its defaults spelled out,
/// but a 9 s scale-down stabilisation so that scale-downs happen within
/// the test. No window is a whole number of 2 s syncs: a recommendation
/// is never within milliseconds of a window's edge, where the real
/// controller's clock (read a few ms after the fetch) and the fetch time
/// the replay uses could disagree.
const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: app}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app}
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      selectPolicy: Max
      policies: [{type: Pods, value: 4, periodSeconds: 15}, {type: Percent, value: 100, periodSeconds: 15}]
    scaleDown:
      stabilizationWindowSeconds: 9
      selectPolicy: Max
      policies: [{type: Percent, value: 100, periodSeconds: 15}]
"#;

/// `control/hpa.rs` configured as the control plane runs the real one
/// (`--horizontal-pod-autoscaler-sync-period=2s`, the other flags at their
/// defaults; fake-metrics' 1 s window) with `HPA`'s spec.
fn shadow_config() -> selfheal::control::hpa::HpaConfig {
    use selfheal::control::hpa::{Behavior, HpaConfig};
    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization = Span::from_secs(9);
    HpaConfig {
        target_utilization: 50,
        min_replicas: 1,
        max_replicas: 10,
        sync_period: Span::from_secs(2),
        metric_window: Span::from_secs(1),
        behavior: Some(behavior),
        ..HpaConfig::default()
    }
}

/// Replays the fetches through `control/hpa.rs`: at each sync the
/// reimplementation sees what the real controller saw (the target's
/// replicas, the pods, their samples) and keeps its own state; its answer
/// is compared with the replicas the real controller left for the next
/// sync.
fn shadow(fetches: &[Fetch]) -> Vec<u32> {
    use selfheal::control::hpa::{Hpa, HpaState};
    use selfheal::control::{PodPhase, PodView, ServiceView};
    use selfheal::metrics::ServiceMetrics;
    use selfheal::time::Time;
    let origin = fetches
        .iter()
        .flat_map(|f| {
            std::iter::once(f.time).chain(f.pods.iter().map(|p| p.started).filter(|s| *s > 0.0))
        })
        .fold(f64::INFINITY, f64::min)
        - 60.0;
    let t = |unix: f64| Time::from_secs_f64((unix - origin).max(0.0));
    let cfg = shadow_config();
    let mut state = HpaState::default();
    fetches
        .iter()
        .map(|f| {
            let pods = f
                .pods
                .iter()
                .map(|p| PodView {
                    name: p.name.clone(),
                    phase: match (p.deleting, p.phase.as_str()) {
                        (false, "Running") => PodPhase::Running,
                        (false, "Pending") => PodPhase::Pending,
                        // Deleted, failed or succeeded: upstream ignores it.
                        _ => PodPhase::Terminating,
                    },
                    ready: p.ready,
                    revision: 0,
                    node: String::new(),
                    cpu_cores: p.usage_milli.unwrap_or(0) as f64 / 1000.0,
                    cpu_sampled_at: p.usage_milli.map(|_| t(f.sampled)),
                    cpu_request: p.request_milli as f64 / 1000.0,
                    cpu_limit: 0.0,
                    memory_mib: 0.0,
                    memory_limit_mib: 0.0,
                    restarts: 0,
                    created: t(p.started),
                    started: t(p.started),
                    last_transition: t(p.ready_since),
                })
                .collect();
            let svc = ServiceView {
                name: "app".into(),
                metrics: ServiceMetrics {
                    timestamp: t(f.time),
                    cpu_usage: f.level,
                    memory_usage: 0.0,
                    request_rate: 0.0,
                    error_rate: 0.0,
                    latency_p50: 0.0,
                    latency_p99: 0.0,
                    active_connections: 0,
                    ready_replicas: f.pods.iter().filter(|p| p.ready).count() as u32,
                    desired_replicas: f.replicas,
                },
                desired_replicas: f.replicas,
                revision: 0,
                max_connections: 100,
                pods,
                concurrency: vec![],
                requests: vec![],
                dependencies: vec![],
                backup: None,
            };
            match Hpa::decide(&cfg, &mut state, &svc, t(f.time)) {
                Some(Command::Scale { replicas, .. }) => replicas,
                _ => f.replicas,
            }
        })
        .collect()
}

/// Five CPU series, as fractions of each pod's request, one value per
/// sync; the target is 50 %.
fn hpa_series() -> Vec<(&'static str, Vec<f64>, u32)> {
    let ramp: Vec<f64> = (0..25)
        .map(|k| 0.2 + 1.4 * f64::from(k) / 24.0)
        .chain([1.6; 5])
        .collect();
    let spike = [vec![0.3; 4], vec![2.0; 3], vec![0.3; 16]].concat();
    let oscillating = (0..28)
        .map(|k| if (k / 4) % 2 == 0 { 0.9 } else { 0.2 })
        .collect();
    let unready = [vec![1.0; 12], vec![0.3; 12]].concat();
    vec![
        ("steady", vec![0.53; 20], 3),
        ("ramp", ramp, 2),
        ("spike", spike, 2),
        ("oscillating", oscillating, 2),
        ("not-ready", unready, 4),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projects_hpa_decides_as_the_real_controller_does() {
    let Some(kc) = kubeconfig() else { return };
    let control = std::env::var("SELFHEAL_CONTROLPLANE_METRICS").expect(
        "SELFHEAL_CONTROLPLANE_METRICS: the fake-metrics control URL (controlplane.sh env)",
    );
    let _turn = SERIAL.lock().await;
    let http = reqwest::Client::new();
    let series = hpa_series();
    for (name, levels, replicas) in &series {
        let ns = format!("hpa-{name}");
        remove_namespace(&kc, &ns);
        kubectl(&kc, &["create", "namespace", &ns], None);
        kubectl(
            &kc,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: app}}}}\n  template:\n    metadata: {{labels: {{app: app}}}}\n    spec:\n      containers: [{{name: app, image: registry.example/app:v1, resources: {{requests: {{cpu: 200m}}}}}}]\n"
            )),
        );
        let selector = "app=app";
        eventually("the target's pods ready", 60, || {
            ready_pods_in(&kc, &ns, selector).len() == *replicas as usize
        })
        .await;
        if *name == "not-ready" {
            // Two pods fail their readiness check from now on (KWOK leaves a
            // pod's status alone once it has an IP).
            for pod in ready_pods_in(&kc, &ns, selector).iter().take(2) {
                kubectl(
                    &kc,
                    &[
                        "patch",
                        "pod",
                        pod,
                        "-n",
                        &ns,
                        "--subresource=status",
                        "--type=strategic",
                        "-p",
                        r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
                    ],
                    None,
                );
            }
        }
        let put = http
            .put(format!("{control}/series/{ns}?deployment=app"))
            .json(levels)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{put:?}");
        kubectl(&kc, &["apply", "-n", &ns, "-f", "-"], Some(HPA));
    }

    let mut report =
        String::from("| series | sync | level | real | control/hpa.rs |\n|---|---|---|---|---|\n");
    let mut differences = Vec::new();
    for (name, levels, _) in &series {
        let ns = format!("hpa-{name}");
        let want = levels.len() + 1;
        let deadline = Instant::now() + Duration::from_secs(180);
        let fetches: Vec<Fetch> = loop {
            let got: Vec<Fetch> = http
                .get(format!("{control}/log/{ns}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if got.len() >= want {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {} of {want} HPA syncs after 180 s",
                got.len()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let ours = shadow(&fetches[..levels.len()]);
        let real: Vec<u32> = fetches[1..=levels.len()]
            .iter()
            .map(|f| f.replicas)
            .collect();
        for (k, (r, o)) in real.iter().zip(&ours).enumerate() {
            report.push_str(&format!(
                "| {name} | {k} | {:.2} | {} -> {r} | {} -> {o} |\n",
                fetches[k].level, fetches[k].replicas, fetches[k].replicas
            ));
            if r != o {
                differences.push(format!(
                    "{name} sync {k}: real {r}, ours {o}; saw {:#?}",
                    fetches[k]
                ));
            }
        }
    }
    eprintln!("{report}");
    assert!(differences.is_empty(), "{differences:#?}");
}

fn ready_pods_in(kc: &Path, ns: &str, selector: &str) -> Vec<String> {
    let pods = kubectl_json(kc, &["get", "pods", "-n", ns, "-l", selector]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Served simulated seconds per wall second in the replays.
const SPEED: f64 = 20.0;

/// What a replay wrote.
struct Replayed {
    log: String,
    /// `(replay second, command, service, detail)` of `commands.csv`.
    commands: Vec<(f64, String, String, String)>,
    verdict: Option<selfheal::sim::chaos::Verdict>,
    /// The follower's log (against the control plane only).
    followed: String,
    /// The scenario's offered load, requests per simulated second at an
    /// instant: both replays of a scenario see the same curve.
    offered: Vec<selfheal_core::load::Curve>,
    /// Each service's replicas before the first scale command.
    initial: Vec<(String, u32)>,
}

impl Replayed {
    fn offered_at(&self, t: f64) -> f64 {
        self.offered.iter().map(|c| c.rate(t)).sum()
    }

    /// The replicas the replay had asked `service` for at replay second `t`.
    fn replicas_at(&self, service: &str, t: f64) -> u32 {
        let initial = self
            .initial
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("{service} is not in the scenario"));
        self.commands
            .iter()
            .rfind(|(at, kind, svc, _)| kind == "scale" && svc == service && *at <= t)
            .map_or(initial, |(_, _, _, n)| n.parse().unwrap())
    }
}

/// `selfheal-k8s replay` of `scenario` (under `scenarios/`) until replay
/// second `until`, configured with `services` and HPA at 70 % with
/// healing, against a served copy of the scenario (`serve
/// --without-faults`, no controller of its own). With `cluster`, the
/// replay acts on the control plane in namespace `ns`, and `selfheal-k8s
/// follow` keeps the served copy in step with it and serves its metrics
/// under the cluster's pod names to Prometheus; without, the replay acts
/// on the served copy's own API, as `tests/e2e.rs` does.
fn replay_on(
    scenario: &str,
    services: &str,
    until: f64,
    cluster: Option<&Path>,
    ns: &str,
) -> Option<Replayed> {
    let path = common::bundled_path(scenario);
    let loaded = common::bundled_static(scenario);
    let (served_port, follow_port) = (common::closed_port(), common::closed_port());
    let scraped = match cluster {
        Some(_) => follow_port,
        None => served_port,
    };
    let scrape = format!("{}ms", (5000.0 / SPEED) as u64);
    let (_prom, url) = common::start_prometheus(&format!("http://127.0.0.1:{scraped}"), &scrape)?;
    let dir = std::env::temp_dir().join(format!("selfheal-cp-replay-{}-{ns}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let served = selfheal::serve::Served::start(
        &loaded,
        &selfheal::serve::ServeOptions {
            addr: format!("127.0.0.1:{served_port}"),
            speed: SPEED,
            namespace: ns.into(),
            clock: selfheal::serve::ServeClock::Wall,
            token: None,
            faults: selfheal::serve::ServedFaults::Held,
        },
    )
    .unwrap();
    let served_kc = dir.join("served.kubeconfig");
    std::fs::write(&served_kc, served.kubeconfig()).unwrap();
    let mut follower = cluster.map(|kc| {
        remove_namespace(kc, ns);
        kubectl(kc, &["create", "namespace", ns], None);
        Process::new(env!("CARGO_BIN_EXE_selfheal-k8s"))
            .args(["follow", "--namespace", ns, "--metrics-addr"])
            .arg(format!("127.0.0.1:{follow_port}"))
            .arg("--served-kubeconfig")
            .arg(&served_kc)
            .env("KUBECONFIG", kc)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("follow.log")).unwrap())
            .spawn()
            .expect("the follower starts")
    });
    // The adapter reads 150 simulated seconds back as its history, once
    // Prometheus has them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !common::has_tried_its_target(&url) || served.progress().0.as_secs_f64() < 150.0 {
        assert!(Instant::now() < deadline, "no scrape or no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(
        dir.join("adapter.toml"),
        common::adapter_toml(
            &url,
            ns,
            // KWOK's pods are ready at once, the served pods that follow
            // them only after the scenario's start-up (and the follower's
            // lag, 20 simulated seconds per wall second): judged on CPU 30 s
            // after it was ready, one of the pod kill's replacements read as
            // stalled and was replaced 32 s after the kill (once, in CI),
            // which the replay against serve did not. So the CPU over the
            // rate's window, and pods judged a minute after they are ready.
            common::LoopTiming {
                backfill_s: 150.0,
                rate_window_s: 30.0,
                cpu_window_s: None,
                pod_settle_s: Some(60.0),
            },
            &loaded.spec.slo,
            "kind = \"hpa\"\ntarget_cpu_percent = 70\nmax_replicas = 12\nhealing = true",
            services,
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let log = dir.join("adapter.log");
    let status = Process::new(env!("CARGO_BIN_EXE_selfheal-k8s"))
        .args(["replay", &path, "--until-s", &until.to_string(), "--out"])
        .arg(&out)
        .args([
            "--apply",
            "--unapproved",
            "--time-scale",
            &SPEED.to_string(),
        ])
        .arg("--config")
        .arg(dir.join("adapter.toml"))
        .env("KUBECONFIG", cluster.unwrap_or(&served_kc))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    if let Some(f) = follower.as_mut() {
        let _ = f.kill();
        let _ = f.wait();
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the replay failed:\n{log}");
    let commands = std::fs::read_to_string(out.join("commands.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, ',').collect();
            (
                f[0].parse().unwrap(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].to_string(),
            )
        })
        .collect();
    let offered = selfheal_core::load::compile_loads(&loaded)
        .collect::<Result<_, _>>()
        .unwrap();
    let initial = loaded
        .spec
        .services
        .iter()
        .map(|s| (s.name.clone(), s.replicas))
        .collect();
    let replayed = Replayed {
        offered,
        initial,
        commands,
        verdict: std::fs::read_to_string(out.join("verdict.toml"))
            .ok()
            .map(|t| toml::from_str(&t).unwrap()),
        followed: std::fs::read_to_string(dir.join("follow.log")).unwrap_or_default(),
        log,
    };
    if let Some(kc) = cluster {
        remove_namespace(kc, ns);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(replayed)
}

/// The scale commands of a replay: `(replay second, service, replicas)`.
fn scales(r: &Replayed) -> Vec<(f64, String, String)> {
    r.commands
        .iter()
        .filter(|c| c.1 == "scale")
        .map(|c| (c.0, c.2.clone(), c.3.clone()))
        .collect()
}

#[test]
fn replays_against_the_control_plane_match_the_replays_against_serve() {
    let Some(kc) = kubeconfig() else {
        return;
    };
    let _turn = SERIAL.blocking_lock();
    let services = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("[[service]]\nname = \"{n}\"\n"))
            .collect::<String>()
    };
    // The pod kill: two of the cluster's pods deleted through the API, the
    // real ReplicaSet replacing them on KWOK's nodes, the simulation
    // following.
    let kill = |cluster: Option<&Path>| {
        replay_on(
            "chaos/pod-kill.toml",
            &services(&["api"]),
            450.0,
            cluster,
            "replay-kill",
        )
    };
    let (Some(on_cluster), Some(on_serve)) = (kill(Some(&kc)), kill(None)) else {
        return;
    };
    let (vc, vs) = (
        on_cluster.verdict.as_ref().expect("a verdict"),
        on_serve.verdict.as_ref().expect("a verdict"),
    );
    eprintln!(
        "pod kill, against the control plane:\n{}{:?}\nagainst serve:\n{}{:?}",
        vc.text(),
        on_cluster.commands,
        vs.text(),
        on_serve.commands
    );
    let deleted = on_cluster
        .log
        .lines()
        .find(|l| l.contains("replay: pod_kill at "))
        .unwrap_or_else(|| panic!("no pod kill:\n{}", on_cluster.log));
    assert_eq!(deleted.matches("Sent(").count(), 2, "{deleted}");
    assert_eq!(
        on_cluster.followed.matches("(\"api-r").count(),
        2,
        "the follower deleted the served pods of the two killed pods (and no other):\n{}",
        on_cluster.followed
    );
    assert_eq!(vc.passed, vs.passed, "{}\n{}", on_cluster.log, on_serve.log);
    assert_eq!(vc.healing_actions, vs.healing_actions);
    // The healing commands (everything but scaling) in the same order;
    // scaling is compared by `same_scales`.
    let kinds = |r: &Replayed| {
        r.commands
            .iter()
            .filter(|c| c.1 != "scale")
            .map(|c| (c.1.clone(), c.2.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&on_cluster), kinds(&on_serve));
    same_scales(&on_cluster, &on_serve);

    // A load swing: the HPA rule scales both services down and up again;
    // the cluster's Deployments scale, and the simulation's follow.
    let swing = |cluster: Option<&Path>| {
        replay_on(
            "chaos/steady.toml",
            &services(&["frontend", "api"]),
            1150.0,
            cluster,
            "replay-swing",
        )
    };
    let (Some(on_cluster), Some(on_serve)) = (swing(Some(&kc)), swing(None)) else {
        return;
    };
    eprintln!(
        "load swing, against the control plane: {:?}
against serve: {:?}",
        on_cluster.commands, on_serve.commands
    );
    assert!(scales(&on_cluster).len() >= 4, "{}", on_cluster.log);
    assert_eq!(kinds(&on_cluster), kinds(&on_serve));
    same_scales(&on_cluster, &on_serve);
}

/// Each replay's scale commands held against the other's replica counts:
/// every command of one replay (service, replicas, replay second) finds
/// the other replay asking for that service's replicas within one (or
/// within the HPA's 10 % tolerance where that is more) at an instant
/// within 30 replay seconds (two of the HPA rule's 15 s periods) of it, or
/// within 120 s where the offered load moved less than 10 % between the
/// two instants. The two replays measure the same load through different
/// paths (the follower's pods or the served ones, scraped at wall-clock
/// instants), so neither the count nor the instant is exact: a
/// utilisation measured at 112 % by one and at 114 % by the other
/// recommends 8 and 9 of 5 pods (ceil(5 x 1.12 / 0.7) and
/// ceil(5 x 1.14 / 0.7)), and on a slow ramp a utilisation that differs
/// inside the tolerance crosses the threshold minutes apart (the load
/// swing's diurnal curve climbs about 5 % in 45 s around 550 s).
fn same_scales(a: &Replayed, b: &Replayed) {
    for (x, y) in [(a, b), (b, a)] {
        for (at, service, n) in scales(x) {
            let n: u32 = n.parse().unwrap();
            let lx = x.offered_at(at);
            let near = |t: f64| {
                let ly = x.offered_at(t);
                let moved = (lx - ly).abs() / lx.max(ly).max(f64::MIN_POSITIVE);
                (at - t).abs() <= 30.0 || ((at - t).abs() <= 120.0 && moved < 0.1)
            };
            let close = |m: u32| {
                let (lo, hi) = (n.min(m), n.max(m));
                hi - lo <= 1 || f64::from(hi - lo) <= 0.1 * f64::from(hi)
            };
            let mut seen: Vec<u32> = (-120..=120)
                .map(|d| at + f64::from(d))
                .filter(|&t| t >= 0.0 && near(t))
                .map(|t| y.replicas_at(&service, t))
                .collect();
            seen.dedup();
            assert!(
                seen.iter().any(|&m| close(m)),
                "{service} scaled to {n} at {at:.0} s in one replay; the other asked for {seen:?} around it\n{}\n{}",
                a.log,
                b.log
            );
        }
    }
}

/// A replay of one `api` service of 5 pods scaling as `scales` says
/// (replay second, replicas), under no offered load.
fn scaled(scales: &[(f64, u32)]) -> Replayed {
    Replayed {
        log: String::new(),
        commands: scales
            .iter()
            .map(|(t, n)| (*t, "scale".into(), "api".into(), n.to_string()))
            .collect(),
        verdict: None,
        followed: String::new(),
        offered: Vec::new(),
        initial: vec![("api".into(), 5)],
    }
}

#[test]
fn scales_one_replica_and_a_period_apart_are_the_same() {
    // The CI run that found the comparison too strict: 112 % and 114 % of
    // the request measured through the two paths.
    same_scales(&scaled(&[(0.0008, 8)]), &scaled(&[(0.0004, 9)]));
    same_scales(
        &scaled(&[(100.0, 8), (400.0, 3)]),
        &scaled(&[(125.0, 8), (380.0, 2)]),
    );
}

#[test]
#[should_panic(expected = "api scaled to 9")]
fn a_scale_the_other_replay_never_made_differs() {
    same_scales(&scaled(&[(0.0, 9)]), &scaled(&[]));
}

#[test]
#[should_panic(expected = "api scaled to 3")]
fn a_scale_minutes_later_under_a_moving_load_differs() {
    let mut late = scaled(&[(100.0, 8), (500.0, 3)]);
    late.offered = vec![selfheal_core::load::Curve::Ramp {
        from: 10.0,
        to: 1000.0,
        start: 0.0,
        end: 1000.0,
    }];
    let early = Replayed {
        offered: late.offered.clone(),
        ..scaled(&[(100.0, 8), (300.0, 3)])
    };
    same_scales(&late, &early);
}
