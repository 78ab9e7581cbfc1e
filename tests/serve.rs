//! `selfheal serve`: a scenario against the wall clock, scraped over HTTP
//! like a cluster's exporters and read and written through the Kubernetes
//! API like a cluster, by raw requests and by `kubectl` (the live adapter's
//! side is tested with a real Prometheus in `k8s-adapter/tests/`).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use selfheal::serve::{ServeClock, ServeOptions, Served, ServedFaults};
use selfheal::time::Time;

/// The raw answer to a GET with `headers` (each ending in CRLF), read
/// until the server closes the connection.
fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let text = raw_get(addr, path, "Connection: close\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// `name{labels}` -> (value, timestamp), for every sample line; panics on
/// a line that is not the text format.
fn stamped_samples(body: &str) -> BTreeMap<String, (f64, Option<i64>)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, rest) = l.split_once("} ").unwrap_or_else(|| panic!("bad line {l}"));
            assert!(k.contains('{'), "bad series {k}");
            let mut fields = rest.split(' ');
            let v = fields.next().unwrap().parse::<f64>();
            let ts = fields
                .next()
                .map(|t| t.parse::<i64>().expect("a timestamp"));
            assert!(fields.next().is_none(), "bad line {l}");
            (
                format!("{k}}}"),
                (v.unwrap_or_else(|_| panic!("bad value {l}")), ts),
            )
        })
        .collect()
}

fn samples(body: &str) -> BTreeMap<String, f64> {
    stamped_samples(body)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect()
}

fn sum(s: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    s.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// `scenario` served on a free loopback port, namespace `shop`, no token.
fn serve_on_loopback(
    scenario: &selfheal::scenario::LoadedScenario,
    speed: f64,
    clock: ServeClock,
    faults: ServedFaults,
) -> Served {
    Served::start(
        scenario,
        &ServeOptions {
            addr: "127.0.0.1:0".into(),
            speed,
            namespace: "shop".into(),
            clock,
            token: None,
            faults,
        },
    )
    .unwrap()
}

fn start_static_leak(speed: f64, clock: ServeClock) -> Served {
    // Static replicas, so that the count is known at any instant.
    let mut leak = common::bundled("chaos/memory-leak.toml");
    leak.spec
        .use_controller(selfheal::scenario::ControllerSpec::parse_short("static").unwrap());
    serve_on_loopback(&leak, speed, clock, ServedFaults::Scheduled)
}

#[test]
fn a_served_scenario_reads_like_a_cluster_s_exporters() {
    // A driven clock: the two scrapes read simulated seconds 60 and 75
    // exactly, however busy the machine is.
    let speed = 40.0;
    let served = start_static_leak(speed, ServeClock::Driven);
    served.advance_to(Time::from_secs(60)).unwrap();
    let (status, first) = get(served.addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        served.advance_to(Time::from_secs(75)).unwrap(),
        Time::from_secs(75)
    );
    let (_, second) = get(served.addr, "/metrics");
    // Every sample is stamped with its simulated instant in unix ms.
    let stamp = |t: f64| ((served.wall_origin + t / speed) * 1000.0).round() as i64;
    for (body, t) in [(&first, 60.0), (&second, 75.0)] {
        for (k, (_, ts)) in stamped_samples(body) {
            assert_eq!(ts, Some(stamp(t)), "{k}");
        }
    }
    let wall = 15.0 / speed;
    let (a, b) = (samples(&first), samples(&second));
    // 150 requests per simulated second; counters are divided by the
    // speed-up, so their rate per wall second reads 150.
    let rate = (sum(&b, "http_requests_total{") - sum(&a, "http_requests_total{")) / wall;
    assert!((rate / 150.0 - 1.0).abs() < 0.1, "rate {rate}");
    assert_eq!(
        b["kube_deployment_spec_replicas{namespace=\"shop\",deployment=\"api\"}"],
        3.0
    );
    // Three pods, each with every per-pod series the adapter reads.
    for family in [
        "container_cpu_usage_seconds_total{",
        "container_memory_working_set_bytes{",
        "kube_pod_container_resource_requests{",
        "kube_pod_container_resource_limits{",
        "kube_pod_status_ready{",
        "kube_pod_container_status_restarts_total{",
        "kube_pod_start_time{",
    ] {
        let n = b.keys().filter(|k| k.starts_with(family)).count();
        assert_eq!(n, 3, "{family}");
    }
    // CPU: 150 req/s x 8 ms = 1.2 cores in simulated time, the same per
    // wall second once divided by the speed-up.
    let cpu = (sum(&b, "container_cpu_usage_seconds_total{")
        - sum(&a, "container_cpu_usage_seconds_total{"))
        / wall;
    assert!((cpu / 1.2 - 1.0).abs() < 0.15, "cpu {cpu}");
    // The histogram is cumulative and ends with +Inf = _count.
    let inf =
        b["http_request_duration_seconds_bucket{namespace=\"shop\",service=\"api\",le=\"+Inf\"}"];
    assert_eq!(
        inf,
        b["http_request_duration_seconds_count{namespace=\"shop\",service=\"api\"}"]
    );
    assert_eq!(served.progress(), (Time::from_secs(75), false));
    assert_eq!(get(served.addr, "/").0, "HTTP/1.1 404 Not Found");
    // A speed of zero or a taken port is refused with the reason.
    let bad = Served::start(
        &common::bundled("chaos/memory-leak.toml"),
        &ServeOptions {
            addr: served.addr.to_string(),
            speed: 1.0,
            namespace: "shop".into(),
            clock: ServeClock::Wall,
            token: None,
            faults: ServedFaults::Scheduled,
        },
    );
    assert!(bad.err().unwrap().to_string().contains("cannot listen"));
}

/// Counters only rise, even under a total outage, where as many attempts
/// fail in a scrape interval as arrive: Prometheus reads any fall as a
/// reset, and `rate()` over it is wrong by the whole count.
#[test]
fn every_exported_counter_only_rises_through_a_total_outage() {
    // Recommendations blackholed from 300 to 600 s: every shop request
    // waits for its 800 ms call timeout and fails.
    let mut outage = common::bundled("chaos/dependency-failure.toml");
    outage
        .spec
        .use_controller(selfheal::scenario::ControllerSpec::parse_short("static").unwrap());
    let served = serve_on_loopback(&outage, 20.0, ServeClock::Driven, ServedFaults::Scheduled);
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    let (mut first_in_outage, mut last_in_outage) = (None, None);
    for t in (290..=580).step_by(5) {
        served.advance_to(Time::from_secs(t)).unwrap();
        let now = samples(&get(served.addr, "/metrics").1);
        for (k, v) in &now {
            let counter = ["_total{", "_count{", "_bucket{"]
                .iter()
                .any(|c| k.contains(c));
            if counter && let Some(before) = last.get(k) {
                assert!(v >= before, "{k} fell from {before} to {v} at {t} s");
            }
        }
        if t == 400 {
            first_in_outage = Some(now.clone());
        }
        if t == 580 {
            last_in_outage = Some(now.clone());
        }
        last = now;
    }
    // The outage reads as one: all of the shop's answers in it failed.
    let (a, b) = (first_in_outage.unwrap(), last_in_outage.unwrap());
    let code = |s: &BTreeMap<String, f64>, c: &str| {
        s[&format!("http_requests_total{{namespace=\"shop\",service=\"shop\",code=\"{c}\"}}")]
    };
    let (ok, failed) = (
        code(&b, "200") - code(&a, "200"),
        code(&b, "500") - code(&a, "500"),
    );
    assert_eq!(ok, 0.0);
    assert!(failed > 0.9 * 200.0 * 180.0 / 20.0, "{failed} failed");
}

#[test]
fn a_wall_clock_served_scenario_moves_on_its_own_and_stamps_nothing() {
    let served = start_static_leak(40.0, ServeClock::Wall);
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.progress().0 < Time::from_secs(10) {
        assert!(Instant::now() < deadline, "the simulation does not advance");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, body) = get(served.addr, "/metrics");
    assert!(stamped_samples(&body).values().all(|(_, ts)| ts.is_none()));
    assert!(matches!(
        served.advance_to(Time::from_secs(20)),
        Err(selfheal::serve::ServeError::NotDriven)
    ));
}

/// One request with a JSON answer: (status code, body).
/// The head and body of the answer to one request.
fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (head, body) = exchange(addr, method, path, content_type, body);
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// One service whose second revision (at 20 s) fails a quarter of its
/// requests, a caller with a fallback, and nothing that scales: every
/// change comes through the API.
const TWO_REVISIONS: &str = r#"
name = "served-api"
duration_s = 7200
seed = 1
[slo]
latency_ms = 200
[[load]]
service = "web"
curve = { kind = "constant", rate = 40 }
[[service]]
name = "web"
replicas = 1
revision = { service_time_ms = 2 }
  [[service.call]]
  to = "api"
  fallback = true
[[service]]
name = "api"
replicas = 2
startup = { dist = "fixed", value_s = 2 }
revision = { service_time_ms = 5 }
[[fault]]
kind = "bad_deploy"
service = "api"
at_s = 20
error_rate = 0.25
"#;

fn serve_two_revisions(speed: f64) -> Served {
    serve_on_loopback(
        &common::scenario_text(TWO_REVISIONS),
        speed,
        ServeClock::Wall,
        ServedFaults::Scheduled,
    )
}

/// Polls `what` until it holds (panics after 60 s with the last value: a
/// generous bound, the served simulation runs slower on a busy machine).
fn eventually<T: std::fmt::Debug>(mut what: impl FnMut() -> T, holds: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = what();
        if holds(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never held: {v:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn api_writes_act_on_the_served_simulation() {
    let served = serve_two_revisions(10.0);
    let a = served.addr;
    let ns = "/apis/apps/v1/namespaces/shop";
    let (code, deps) = call(a, "GET", &format!("{ns}/deployments"), "", "");
    assert_eq!(code, 200);
    let rv = deps["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(deps["items"][0]["metadata"]["name"], "api");
    // The scale subresource, as `kubectl scale` writes it.
    let (code, scale) = call(
        a,
        "PATCH",
        &format!("{ns}/deployments/api/scale"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":4}}"#,
    );
    assert_eq!(
        (code, &scale["kind"], &scale["spec"]["replicas"]),
        (200, &"Scale".into(), &4.into())
    );
    let desired = |s: &Served| {
        s.observation()
            .map(|o| (o.services[1].desired_replicas, o.services[1].pods.len()))
    };
    eventually(|| desired(&served), |d| *d == Some((4, 4)));
    // A watch from the list's version replays the change.
    let stream = raw_get(
        a,
        &format!("{ns}/deployments?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        "",
    );
    assert!(stream.contains("Transfer-Encoding: chunked"), "{stream}");
    assert!(
        stream.contains(r#""type":"MODIFIED""#) && stream.contains(r#""replicas":4"#),
        "{stream}"
    );
    // Deleting a pod: the ReplicaSet replaces it under a new name.
    let first = served.observation().unwrap().services[1].pods[0]
        .name
        .clone();
    let (code, _) = call(
        a,
        "DELETE",
        &format!("/api/v1/namespaces/shop/pods/{first}?gracePeriodSeconds=0"),
        "",
        "",
    );
    assert_eq!(code, 200);
    eventually(
        || {
            served.observation().unwrap().services[1]
                .pods
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        },
        |names| names.len() == 4 && !names.contains(&first),
    );
    // The connection limit through the service's ConfigMap.
    let (code, cm) = call(
        a,
        "PATCH",
        "/api/v1/namespaces/shop/configmaps/api-selfheal",
        "application/merge-patch+json",
        r#"{"data":{"max_connections":"7"}}"#,
    );
    assert_eq!((code, &cm["data"]["max_connections"]), (200, &"7".into()));
    assert_eq!(served.observation().unwrap().services[1].max_connections, 7);
    // A selector that matches no pod isolates the service: the caller's
    // fallback answers and `api` sees no more requests.
    let (code, _) = call(
        a,
        "PATCH",
        "/api/v1/namespaces/shop/services/api",
        "application/merge-patch+json",
        r#"{"spec":{"selector":{"selfheal.io/isolated":"true"}}}"#,
    );
    assert_eq!(code, 200);
    let served_requests = |s: &Served| {
        let (_, m) = get(s.addr, "/metrics");
        sum(
            &samples(&m),
            "http_requests_total{namespace=\"shop\",service=\"api\"",
        )
    };
    let before = served_requests(&served);
    std::thread::sleep(Duration::from_millis(600));
    assert!(served_requests(&served) - before < 1.0);
    // Writes the simulation cannot carry out are refused with the field.
    let (code, e) = call(
        a,
        "PATCH",
        &format!("{ns}/deployments/api"),
        "application/json-patch+json",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1"}]"#,
    );
    assert_eq!(code, 422);
    assert!(e["message"].as_str().unwrap().contains("nginx:1"), "{e}");
    let (code, _) = call(
        a,
        "DELETE",
        "/api/v1/namespaces/shop/pods/no-such-pod",
        "",
        "",
    );
    assert_eq!(code, 404);
    // Leases: created once, then updated only from the current version.
    let lease = r#"{"metadata":{"name":"l"},"spec":{"holderIdentity":"a"}}"#;
    let leases = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";
    assert_eq!(call(a, "POST", leases, "application/json", lease).0, 201);
    assert_eq!(call(a, "POST", leases, "application/json", lease).0, 409);
    let stale = r#"{"metadata":{"name":"l","resourceVersion":"1"},"spec":{"holderIdentity":"b"}}"#;
    assert_eq!(
        call(a, "PUT", &format!("{leases}/l"), "application/json", stale).0,
        409
    );
}

/// `kubectl get -w` asks for Tables: each watch event carries a one-row
/// Table with the columns `get` prints, the wide ones included.
#[test]
fn watch_events_are_tables_when_asked_for() {
    let served = serve_two_revisions(10.0);
    let a = served.addr;
    let stream = raw_get(
        a,
        "/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1",
        "Accept: application/json;as=Table;v=v1;g=meta.k8s.io\r\n",
    );
    let events: Vec<serde_json::Value> = stream
        .lines()
        // Chunk sizes parse as numbers: only the objects are events.
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(serde_json::Value::is_object)
        .collect();
    assert!(!events.is_empty(), "{stream}");
    for e in &events {
        let t = &e["object"];
        assert_eq!(t["kind"], "Table", "{e}");
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let cells = t["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), names.len(), "{e}");
    }
    let row = &events[0]["object"]["rows"][0]["cells"];
    assert!(row[5].as_str().unwrap().starts_with("10.244."), "{row}");
}

/// `kubectl set image` sends a strategic merge patch that names the
/// container: the rest of the template (its resources) is kept, so the
/// template is a known revision's and rolls out. The same body as a merge
/// patch replaces the container list, drops the resources and is refused.
#[test]
fn set_image_by_strategic_merge_patch_rolls_to_that_revision() {
    let served = serve_two_revisions(10.0);
    let a = served.addr;
    let api = |s: &Served| s.observation().map(|o| o.services[1].clone());
    eventually(|| api(&served).map(|a| a.revision), |r| *r == Some(1));
    let path = "/apis/apps/v1/namespaces/shop/deployments/api";
    let body = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"}],"containers":[{"image":"selfheal.local/api:r0","name":"app"}]}}}}"#;
    let (code, refused) = call(a, "PATCH", path, "application/merge-patch+json", body);
    assert_eq!(code, 422, "{refused}");
    let (code, d) = call(
        a,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        body,
    );
    assert_eq!(code, 200, "{d}");
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].is_object(),
        "{d}"
    );
    // A copy of the first revision rolls out, every pod replaced.
    eventually(
        || api(&served).unwrap(),
        |a| a.revision == 2 && a.pods.iter().all(|p| p.revision == 2 && p.ready),
    );
}

#[test]
fn a_held_bad_deploy_starts_when_its_image_is_set() {
    // `selfheal serve --without-faults`: the bad deploy due at 20 s waits
    // for a replay to set its image.
    let served = serve_on_loopback(
        &common::scenario_text(TWO_REVISIONS),
        10.0,
        ServeClock::Wall,
        ServedFaults::Held,
    );
    let a = served.addr;
    let api = |s: &Served| s.observation().map(|o| o.services[1].clone());
    eventually(|| served.progress().0, |t| *t > Time::from_secs(30));
    assert_eq!(api(&served).unwrap().revision, 0);
    let set = |deployment: &str, image: &str| {
        let patch = format!(
            r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"{image}"}}]"#
        );
        call(
            a,
            "PATCH",
            &format!("/apis/apps/v1/namespaces/shop/deployments/{deployment}"),
            "application/json-patch+json",
            &patch,
        )
    };
    // Only fault 0, and only on its own Deployment.
    let (code, refused) = set("api", "selfheal.local/api:fault-1");
    assert_eq!(code, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("fault 1 of the scenario is not a bad deploy of `api`"),
        "{refused}"
    );
    assert_eq!(set("web", "selfheal.local/web:fault-0").0, 422);
    let (code, d) = set("api", "selfheal.local/api:fault-0");
    assert_eq!(code, 200, "{d}");
    // The scenario's bad revision rolls out, and the Deployment names it
    // as the simulation does its revisions.
    eventually(
        || api(&served).unwrap(),
        |a| a.revision == 1 && a.pods.iter().all(|p| p.revision == 1 && p.ready),
    );
    // It fails a quarter of its requests, as the scenario says.
    eventually(
        || api(&served).unwrap().metrics.error_rate,
        |e| (0.15..0.35).contains(e),
    );
    let (_, d) = call(
        a,
        "GET",
        "/apis/apps/v1/namespaces/shop/deployments/api",
        "application/json",
        "",
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "selfheal.local/api:r1"
    );
    // Started once: the image names no waiting fault any more.
    assert_eq!(set("api", "selfheal.local/api:fault-0").0, 422);
}

#[test]
fn a_cordoned_node_takes_no_new_pods() {
    let mut lost = common::bundled("chaos/node-loss.toml");
    lost.spec
        .use_controller(selfheal::scenario::ControllerSpec::parse_short("static").unwrap());
    let served = serve_on_loopback(&lost, 10.0, ServeClock::Wall, ServedFaults::Held);
    let a = served.addr;
    let node = "/api/v1/nodes/node-0";
    let patch = |body: &str| {
        call(
            a,
            "PATCH",
            node,
            "application/strategic-merge-patch+json",
            body,
        )
    };
    let (code, refused) = patch(r#"{"spec":{"podCIDR":"10.0.0.0/24"}}"#);
    assert_eq!(code, 422, "{refused}");
    // `kubectl cordon node-0`, then its pods deleted at once.
    let (code, n) = patch(r#"{"spec":{"unschedulable":true}}"#);
    assert_eq!(code, 200, "{n}");
    assert_eq!(n["spec"]["unschedulable"], true);
    assert_eq!(
        n["spec"]["taints"][0]["key"], "node.kubernetes.io/unschedulable",
        "{n}"
    );
    let pods_on = |node: &str| -> Vec<String> {
        let (_, list) = call(
            a,
            "GET",
            "/api/v1/namespaces/shop/pods",
            "application/json",
            "",
        );
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"] == node && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let doomed = pods_on("node-0");
    assert_eq!(doomed.len(), 2, "six pods spread over three nodes");
    for p in &doomed {
        let (code, _) = call(
            a,
            "DELETE",
            &format!("/api/v1/namespaces/shop/pods/{p}?gracePeriodSeconds=0"),
            "application/json",
            "",
        );
        assert_eq!(code, 200);
    }
    // Replaced on the other nodes, none on the cordoned one.
    eventually(
        || pods_on("node-1").len() + pods_on("node-2").len(),
        |n| *n == 6,
    );
    assert!(pods_on("node-0").is_empty());
    // `kubectl uncordon node-0`.
    let (code, n) = patch(r#"{"spec":{"unschedulable":null}}"#);
    assert_eq!(code, 200, "{n}");
    assert!(n["spec"].get("unschedulable").is_none(), "{n}");
}

/// `kubectl` from `PATH` (or `KUBECTL_BIN`); `None` skips the test unless
/// `SELFHEAL_REQUIRE_KUBECTL` is set.
fn kubectl() -> Option<String> {
    let bin = std::env::var("KUBECTL_BIN").unwrap_or_else(|_| "kubectl".into());
    let runs = std::process::Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            std::env::var("SELFHEAL_REQUIRE_KUBECTL").is_err(),
            "SELFHEAL_REQUIRE_KUBECTL is set but `{bin}` does not run"
        );
        eprintln!("skipped: no `{bin}` (install kubectl, Debian's `kubernetes-client`)");
        return None;
    }
    Some(bin)
}

#[test]
fn kubectl_reads_writes_and_watches_a_served_simulation() {
    let Some(bin) = kubectl() else {
        return;
    };
    let served = serve_two_revisions(20.0);
    let dir = std::env::temp_dir().join(format!("selfheal-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, served.kubeconfig()).unwrap();
    let command = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.env("KUBECONFIG", &config)
            .arg(format!("--cache-dir={}", dir.join("cache").display()))
            .args(args);
        c
    };
    // stdout and stderr of a run that must succeed or (`fails`) fail.
    let outcome = |args: &[&str], fails: bool| {
        let o = command(args).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(!o.status.success(), fails, "kubectl {args:?}: {text}{err}");
        (text, err)
    };
    let run = |args: &[&str]| outcome(args, false).0;
    let api = |s: &Served| s.observation().map(|o| o.services[1].clone());
    // The bad revision rolls out at 20 simulated seconds.
    eventually(|| api(&served).map(|a| a.revision), |r| *r == Some(1));
    let listed = run(&["get", "deployments,pods"]);
    assert!(listed.contains("deployment.apps/api"), "{listed}");
    let wide = run(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("NODE") && wide.contains("10.244.") && wide.contains("node-"),
        "{wide}"
    );
    assert!(
        listed.contains("pod/web-r0-0") && listed.contains("Running"),
        "{listed}"
    );
    let out = run(&["scale", "deployment", "api", "--replicas=3"]);
    assert!(out.contains("scaled"), "{out}");
    eventually(
        || api(&served).map(|a| a.desired_replicas),
        |d| *d == Some(3),
    );
    let out = run(&["rollout", "undo", "deployment", "api"]);
    assert!(out.contains("rolled back"), "{out}");
    // A copy of the first revision rolls out, every pod replaced.
    let rolled = eventually(
        || api(&served).unwrap(),
        |a| {
            a.revision == 2
                && a.pods.len() == 3
                && a.pods.iter().all(|p| p.revision == 2 && p.ready)
        },
    );
    assert_eq!(rolled.desired_replicas, 3);
    let history = run(&["rollout", "history", "deployment", "api"]);
    assert!(history.contains('3'), "{history}");
    // `set image` back to the bad revision's image: a strategic merge
    // patch by container name, so the template is that revision's.
    let out = run(&[
        "set",
        "image",
        "deployment/api",
        "app=selfheal.local/api:r1",
    ]);
    assert!(out.contains("image updated"), "{out}");
    eventually(|| api(&served).map(|a| a.revision), |r| *r == Some(3));
    // kubectl's typed client writes protobuf (formerly "the body is not
    // JSON").
    let out = run(&["create", "configmap", "notes", "--from-literal=owner=sre"]);
    assert!(out.contains("created"), "{out}");
    let owner = run(&["get", "configmap", "notes", "-o", "jsonpath={.data.owner}"]);
    assert_eq!(owner, "sre");
    // A node taken out of scheduling and given back, as an operator (or a
    // node-loss replay) does it.
    let out = run(&["cordon", "node-1"]);
    assert!(out.contains("cordoned"), "{out}");
    let status = run(&[
        "get",
        "node",
        "node-1",
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(status, "true");
    let out = run(&["uncordon", "node-1"]);
    assert!(out.contains("uncordoned"), "{out}");
    // Labels and annotations are kept (formerly answered 200 and dropped),
    // and set-based selectors select by them.
    let out = run(&["label", "pod", "web-r0-0", "team=checkout"]);
    assert!(out.contains("labeled"), "{out}");
    let out = run(&["annotate", "deployment", "api", "owner=sre"]);
    assert!(out.contains("annotated"), "{out}");
    let picked = run(&[
        "get",
        "pods",
        "-l",
        "team in (checkout,search)",
        "-o",
        "name",
    ]);
    assert_eq!(picked.trim(), "pod/web-r0-0");
    let note = run(&[
        "get",
        "deployment",
        "api",
        "-o",
        "jsonpath={.metadata.annotations.owner}",
    ]);
    assert_eq!(note, "sre");
    // Nodes, the namespace and events (formerly "the server doesn't have a
    // resource type"): the simulated nodes, the scale and the roll back as
    // events on the Deployment, the pods' lifecycle on the pods.
    let nodes = run(&["get", "nodes"]);
    assert!(
        nodes.contains("node-0") && nodes.contains("Ready"),
        "{nodes}"
    );
    let cpu = run(&[
        "get",
        "node",
        "node-0",
        "-o",
        "jsonpath={.status.capacity.cpu}",
    ]);
    assert!(!cpu.is_empty(), "{cpu}");
    let namespaces = run(&["get", "namespaces"]);
    assert!(
        namespaces.contains("shop") && namespaces.contains("Active"),
        "{namespaces}"
    );
    let events = run(&["get", "events"]);
    assert!(
        events.contains("Scheduled")
            && events.contains("pod/")
            && events.contains("deployment/api"),
        "{events}"
    );
    let described = run(&["describe", "deployment", "api"]);
    assert!(
        described.contains("Replicas:") && described.contains("NewReplicaSet:"),
        "{described}"
    );
    let status = run(&["rollout", "status", "deployment/api", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    // `apply` and `edit` validate (formerly "failed to download openapi"):
    // the served OpenAPI document says writes take `fieldValidation`, so
    // kubectl asks the server to refuse unknown fields.
    let mut manifest: serde_json::Value =
        serde_json::from_str(&run(&["get", "deployment", "api", "-o", "json"])).unwrap();
    manifest.as_object_mut().unwrap().remove("status");
    manifest["spec"]["replicas"] = 4.into();
    let applied = dir.join("api.json");
    std::fs::write(&applied, manifest.to_string()).unwrap();
    let (out, err) = outcome(&["apply", "-f", applied.to_str().unwrap()], false);
    assert!(out.contains("configured"), "{out}");
    assert!(!err.contains("openapi"), "{err}");
    eventually(
        || api(&served).map(|a| a.desired_replicas),
        |d| *d == Some(4),
    );
    let mut typo = manifest.clone();
    typo["spec"]["replicsa"] = 5.into();
    std::fs::write(&applied, typo.to_string()).unwrap();
    let (_, err) = outcome(&["apply", "-f", applied.to_str().unwrap()], true);
    assert!(err.contains(r#"unknown field "spec.replicsa""#), "{err}");
    let fresh = dir.join("fresh.yaml");
    std::fs::write(
        &fresh,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\ndata: {a: \"1\"}\n",
    )
    .unwrap();
    let out = run(&["apply", "-f", fresh.to_str().unwrap()]);
    assert!(out.contains("configmap/fresh created"), "{out}");
    // kubectl runs $EDITOR on a YAML copy (spec before status) and patches
    // what changed.
    let editor = dir.join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i '0,/^  replicas: 4$/s//  replicas: 2/' \"$1\"\n",
    )
    .unwrap();
    let (out, err) = {
        let o = command(&["edit", "deployment", "api"])
            .env("KUBE_EDITOR", format!("sh {}", editor.display()))
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(o.status.success(), "kubectl edit: {out}{err}");
        (out, err)
    };
    assert!(out.contains("edited"), "{out}{err}");
    eventually(
        || api(&served).map(|a| a.desired_replicas),
        |d| *d == Some(2),
    );

    // `get -w` prints the columns of `get` (formerly NAME and AGE only)
    // as the watch streams; a deleted pod is replaced.
    let mut watch = command(&["get", "pods", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let until = |seen: &mut Vec<String>, what: &str, done: &dyn Fn(&[String]) -> bool| {
        while !done(seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("`get pods -w` never showed {what}: {seen:#?}"),
            }
        }
    };
    // The pod in the watch's first listing, then deleted and replaced.
    until(&mut seen, "web-r0-0", &|s| {
        s.iter().any(|l| l.starts_with("web-r0-0 "))
    });
    let listed = seen.len();
    let out = run(&["delete", "pod", "web-r0-0"]);
    assert!(out.contains(r#"pod "web-r0-0" deleted"#), "{out}");
    until(&mut seen, "a new web pod", &|s| {
        let before: Vec<&str> = s[..listed]
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        s[listed..].iter().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n.starts_with("web-") && !before.contains(&n))
        })
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let header: Vec<&str> = seen[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    for row in &seen[1..] {
        assert_eq!(row.split_whitespace().count(), 5, "{row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn labels_and_annotations_on_simulated_objects_are_kept() {
    let served = serve_two_revisions(10.0);
    let a = served.addr;
    let pod = "/api/v1/namespaces/shop/pods/web-r0-0";
    let (code, _) = call(
        a,
        "PATCH",
        pod,
        "application/strategic-merge-patch+json",
        r#"{"metadata":{"labels":{"team":"checkout"},"annotations":{"note":"x"}}}"#,
    );
    assert_eq!(code, 200);
    // Still there after the simulation moved on and rendered the pod again.
    let t0 = served.progress().0;
    eventually(
        || served.progress().0,
        |t| t.as_secs_f64() > t0.as_secs_f64() + 5.0,
    );
    let (_, p) = call(a, "GET", pod, "", "");
    assert_eq!(p["metadata"]["labels"]["team"], "checkout");
    assert_eq!(p["metadata"]["labels"]["app"], "web");
    assert_eq!(p["metadata"]["annotations"]["note"], "x");
    let (_, list) = call(
        a,
        "GET",
        "/api/v1/namespaces/shop/pods?labelSelector=team%20in%20(checkout),app%20notin%20(api)",
        "",
        "",
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-r0-0"]);
    // A patch that also changes what the simulation owns is refused whole.
    let (code, _) = call(
        a,
        "PATCH",
        pod,
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"team":"search"}},"spec":{"nodeName":"elsewhere"}}"#,
    );
    assert_eq!(code, 405);
    let (_, p) = call(a, "GET", pod, "", "");
    assert_eq!(p["metadata"]["labels"]["team"], "checkout");
    // Removing the label removes it; the simulation's own labels stay.
    let (code, p) = call(
        a,
        "PATCH",
        pod,
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"team":null,"app":null}}}"#,
    );
    assert_eq!(code, 200);
    assert!(p["metadata"]["labels"].get("team").is_none(), "{p}");
    assert_eq!(p["metadata"]["labels"]["app"], "web");
}

/// The status code answered to raw request bytes after which the client
/// closes its side: a request cut short.
fn status_of_cut_request(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn requests_cut_short_are_answered_400_not_dropped() {
    let served = start_static_leak(1.0, ServeClock::Wall);
    let a = served.addr;
    // Headers without their blank line, a body shorter than announced,
    // and bytes that are not UTF-8: formerly closed without an answer.
    for req in [
        &b"GET /metrics HTTP/1.1\r\nHost: x\r\n"[..],
        b"POST /api/v1/namespaces/shop/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"a\"",
        b"GET /metrics HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
    ] {
        assert_eq!(
            status_of_cut_request(a, req),
            400,
            "{}",
            String::from_utf8_lossy(req)
        );
    }
    let (status, _) = get(a, "/metrics");
    assert!(status.contains("200"), "{status}");
}

/// The status code answered to raw request bytes on a new connection.
fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[test]
fn hostile_requests_get_an_error_status_and_the_server_carries_on() {
    let served = serve_two_revisions(10.0);
    let a = served.addr;
    // A body announced at 100 GB: refused before anything is allocated
    // (formerly aborted the whole server).
    assert_eq!(
        raw_status(
            a,
            b"PATCH /api/v1/namespaces/shop/configmaps/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000000\r\n\r\n"
        ),
        413
    );
    // A header line without end, and a Content-Length that is no number.
    let mut long = b"GET /metrics HTTP/1.1\r\nX-Junk: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 64 * 1024));
    long.extend(b"\r\n\r\n");
    assert_eq!(raw_status(a, &long), 400);
    assert_eq!(
        raw_status(
            a,
            b"POST /api/v1/namespaces/shop/configmaps HTTP/1.1\r\nContent-Length: -1\r\n\r\n"
        ),
        400
    );
    // A watch timeout that is not a whole number of seconds (formerly a
    // panic in the connection's thread).
    for t in ["nan", "-1", "1e400", "inf"] {
        let (code, _) = call(
            a,
            "GET",
            &format!("/apis/apps/v1/namespaces/shop/deployments?watch=true&timeoutSeconds={t}"),
            "",
            "",
        );
        assert_eq!(code, 400, "timeoutSeconds={t}");
    }
    // Replicas beyond int32 (formerly wrapped to 1) or beyond what a
    // simulation holds are invalid, through the scale subresource and the
    // Deployment alike; the count stays.
    for path in [
        "/apis/apps/v1/namespaces/shop/deployments/api/scale",
        "/apis/apps/v1/namespaces/shop/deployments/api",
    ] {
        let (code, status) = call(
            a,
            "PATCH",
            path,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":4294967297}}"#,
        );
        assert_eq!(code, 422, "{path}: {status}");
    }
    assert_eq!(
        served.observation().unwrap().services[1].desired_replicas,
        2
    );
    // And the server still answers.
    assert_eq!(get(a, "/metrics").0, "HTTP/1.1 200 OK");
}

#[test]
fn cross_origin_and_unauthenticated_writes_are_refused() {
    let open = serve_two_revisions(10.0);
    let cm = r#"{"metadata":{"name":"planted"},"data":{"a":"b"}}"#;
    let post = |addr, headers: &str| {
        raw_status(
            addr,
            format!(
                "POST /api/v1/namespaces/shop/configmaps HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{cm}",
                cm.len()
            )
            .as_bytes(),
        )
    };
    // What a web page's form can send without asking: text/plain from
    // another origin. Refused, and so is JSON from another origin or under
    // a name that is not this server's (DNS rebinding).
    let host = format!("Host: {}\r\n", open.addr);
    assert_eq!(
        post(
            open.addr,
            &format!("{host}Origin: http://evil.example\r\nContent-Type: text/plain\r\n")
        ),
        403
    );
    assert_eq!(
        post(open.addr, &format!("{host}Content-Type: text/plain\r\n")),
        415
    );
    assert_eq!(
        post(
            open.addr,
            &format!("{host}Origin: http://evil.example\r\nContent-Type: application/json\r\n")
        ),
        403
    );
    assert_eq!(
        post(
            open.addr,
            "Host: evil.example:9464\r\nContent-Type: application/json\r\n"
        ),
        403
    );
    let (code, _) = call(
        open.addr,
        "GET",
        "/api/v1/namespaces/shop/configmaps/planted",
        "",
        "",
    );
    assert_eq!(code, 404, "a refused write left an object");
    // As kubectl writes it, it is created.
    assert_eq!(
        post(
            open.addr,
            &format!("{host}Content-Type: application/json\r\n")
        ),
        201
    );

    // With a token, nothing but a scrape is answered without it.
    let mut loaded = common::scenario_text(TWO_REVISIONS);
    loaded.spec.name = "served-with-token".into();
    let guarded = Served::start(
        &loaded,
        &ServeOptions {
            addr: "127.0.0.1:0".into(),
            speed: 10.0,
            namespace: "shop".into(),
            clock: ServeClock::Wall,
            token: Some("s3cret".into()),
            faults: ServedFaults::Scheduled,
        },
    )
    .unwrap();
    let host = format!("Host: {}\r\n", guarded.addr);
    assert_eq!(
        post(
            guarded.addr,
            &format!("{host}Content-Type: application/json\r\n")
        ),
        401
    );
    assert_eq!(
        post(
            guarded.addr,
            &format!("{host}Authorization: Bearer wrong\r\nContent-Type: application/json\r\n")
        ),
        401
    );
    assert_eq!(
        post(
            guarded.addr,
            &format!("{host}Authorization: Bearer s3cret\r\nContent-Type: application/json\r\n")
        ),
        201
    );
    assert_eq!(get(guarded.addr, "/metrics").0, "HTTP/1.1 200 OK");
    assert!(guarded.kubeconfig().contains("token: s3cret"));
}

/// The head and body of the answer to a POST of `body` to `path`.
fn post_raw(addr: std::net::SocketAddr, path: &str, body: &str) -> (String, String) {
    exchange(addr, "POST", path, "application/json", body)
}

#[test]
fn unknown_fields_are_warned_about_or_refused_as_the_client_asks() {
    let served = serve_two_revisions(1.0);
    let a = served.addr;
    let cm = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"dat":{{"a":"1"}}}}"#
        )
    };
    let collection = "/api/v1/namespaces/shop/configmaps";
    // The API server's default is Warn: created, with a warning kubectl prints.
    let (head, _) = post_raw(a, collection, &cm("warned"));
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert!(
        head.contains(r#"Warning: 299 - "unknown field \"dat\"""#),
        "{head}"
    );
    let (head, body) = post_raw(
        a,
        &format!("{collection}?fieldValidation=Strict"),
        &cm("refused"),
    );
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        body.contains(r#"strict decoding error: unknown field \"dat\""#),
        "{body}"
    );
    let (head, _) = post_raw(
        a,
        &format!("{collection}?fieldValidation=Ignore"),
        &cm("quiet"),
    );
    assert!(
        head.starts_with("HTTP/1.1 201") && !head.contains("Warning"),
        "{head}"
    );
    let (head, body) = post_raw(
        a,
        &format!("{collection}?fieldValidation=Loose"),
        &cm("odd"),
    );
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("supported values"), "{body}");
    // Only the write that was refused is missing.
    let (status, body) = get(a, collection);
    assert!(status.contains("200"), "{status}");
    for (name, present) in [
        ("warned", true),
        ("refused", false),
        ("quiet", true),
        ("odd", false),
    ] {
        assert_eq!(
            body.contains(&format!(r#""name":"{name}""#)),
            present,
            "{name}: {body}"
        );
    }
}

#[test]
fn call_edges_are_served_as_a_mesh_reports_them() {
    let speed = 20.0;
    let served = serve_on_loopback(
        &common::scenario_text(TWO_REVISIONS),
        speed,
        ServeClock::Driven,
        ServedFaults::Scheduled,
    );
    served.advance_to(Time::from_secs(5)).unwrap();
    let (_, first) = get(served.addr, "/metrics");
    served.advance_to(Time::from_secs(19)).unwrap();
    let (_, second) = get(served.addr, "/metrics");
    let (a, b) = (samples(&first), samples(&second));
    let wall = 14.0 / speed;
    let edge = "reporter=\"source\",source_workload=\"web\",source_workload_namespace=\"shop\",destination_workload=\"api\",destination_workload_namespace=\"shop\",destination_service_name=\"api\"";
    let calls = format!("istio_requests_total{{{edge},");
    // web calls api once per request: the edge carries api's whole load,
    // 40 per simulated second, none failed before the bad revision.
    let rate = (sum(&b, &calls) - sum(&a, &calls)) / wall;
    let served_rate = (sum(&b, "http_requests_total{namespace=\"shop\",service=\"api\"")
        - sum(&a, "http_requests_total{namespace=\"shop\",service=\"api\""))
        / wall;
    assert!((rate / 40.0 - 1.0).abs() < 0.15, "edge rate {rate}");
    assert!(
        (rate / served_rate - 1.0).abs() < 0.05,
        "{rate} vs {served_rate}"
    );
    assert_eq!(b[&format!("{calls}response_code=\"503\"}}")], 0.0);
    // Milliseconds, cumulative, ending with +Inf = _count.
    let prefix = format!("istio_request_duration_milliseconds_bucket{{{edge},le=\"");
    let mut buckets: Vec<(f64, f64)> = b
        .iter()
        .filter_map(|(k, &v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((le.parse().ok()?, v))
        })
        .collect();
    buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let total = b[&format!("istio_request_duration_milliseconds_count{{{edge}}}")];
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, total));
    // Exponential 5 ms of work (and nothing else on the way): a median
    // near 5 ln 2 = 3.5 ms reads right only in milliseconds.
    let p50 = selfheal::metrics::histogram_quantile(0.5, &buckets);
    assert!((2.0..6.0).contains(&p50), "p50 {p50} ms: {buckets:?}");
    // The client load has no caller: no edge for it.
    assert!(!second.contains("destination_workload=\"web\""));
}

#[test]
fn a_virtual_service_s_fault_holds_until_it_is_deleted() {
    let served = serve_on_loopback(
        &common::scenario_text(TWO_REVISIONS),
        20.0,
        ServeClock::Driven,
        ServedFaults::Held,
    );
    let a = served.addr;
    let collection = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
    let edge = "reporter=\"source\",source_workload=\"web\",source_workload_namespace=\"shop\",destination_workload=\"api\",destination_workload_namespace=\"shop\",destination_service_name=\"api\"";
    let at = |t: u64| {
        served.advance_to(Time::from_secs(t)).unwrap();
        samples(&get(a, "/metrics").1)
    };
    let failed = |s: &BTreeMap<String, f64>| {
        s[&format!("istio_requests_total{{{edge},response_code=\"503\"}}")]
    };
    let calls = |s: &BTreeMap<String, f64>| sum(s, &format!("istio_requests_total{{{edge},"));
    let post = |f: &selfheal::scenario::FaultSpec, name: &str| {
        let vs = selfheal::istio::virtual_service(f, "shop", name).unwrap();
        call(a, "POST", collection, "application/json", &vs.to_string())
    };
    let before = at(5);
    // Every call from web to api aborted with 503 while it exists.
    let abort = selfheal::scenario::FaultSpec {
        mode: Some(selfheal::scenario::DependencyMode::Errors),
        error_rate: Some(1.0),
        ..selfheal::scenario::FaultSpec::on(selfheal::scenario::FaultKind::DependencyFailure, "api")
    };
    let (code, created) = post(&abort, "abort-api");
    assert_eq!(code, 201, "{created}");
    let during = at(15);
    let (n, bad) = (
        calls(&during) - calls(&before),
        failed(&during) - failed(&before),
    );
    assert!(n > 0.0 && bad == n, "{bad} of {n} calls failed");
    let (code, _) = call(
        a,
        "DELETE",
        &format!("{collection}/abort-api"),
        "application/json",
        "",
    );
    assert_eq!(code, 200);
    let ended = at(16);
    let after = at(25);
    assert!(calls(&after) > calls(&ended));
    assert_eq!(failed(&after), failed(&ended), "503s after the delete");
    // A delay on one caller's calls; an edge the graph lacks is refused.
    let delay = |e: &str| selfheal::scenario::FaultSpec {
        service: None,
        edge: Some(e.into()),
        added_ms: Some(200.0),
        ..selfheal::scenario::FaultSpec::on(selfheal::scenario::FaultKind::Latency, "x")
    };
    let (code, refused) = post(&delay("api->web"), "backwards");
    assert!(code >= 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("call edge"),
        "{refused}"
    );
    let (code, created) = post(&delay("web->api"), "slow-edge");
    assert_eq!(code, 201, "{created}");
    let (x, y) = (at(26), at(36));
    let prefix = format!("istio_request_duration_milliseconds_bucket{{{edge},le=\"");
    let mut buckets: Vec<(f64, f64)> = y
        .iter()
        .filter_map(|(k, &v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((le.parse().ok()?, v - x[k]))
        })
        .collect();
    buckets.sort_by(|p, q| p.0.total_cmp(&q.0));
    let p50 = selfheal::metrics::histogram_quantile(0.5, &buckets);
    assert!(p50 > 200.0, "p50 {p50} ms: {buckets:?}");
}
