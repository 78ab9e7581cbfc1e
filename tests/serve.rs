//! `selfheal serve`: a scenario against the wall clock, scraped over HTTP
//! like a cluster's exporters (the live adapter's side is tested with a
//! real Prometheus in `k8s-adapter/tests/prometheus.rs`).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use selfheal::serve::{ServeOptions, Served};

fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// `name{labels}` -> value, for every sample line; panics on a line that
/// is not the text format.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            assert!(k.ends_with('}') && k.contains('{'), "bad series {k}");
            (
                k.to_string(),
                v.parse::<f64>().unwrap_or_else(|_| panic!("bad value {l}")),
            )
        })
        .collect()
}

fn sum(s: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    s.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn a_served_scenario_reads_like_a_cluster_s_exporters() {
    let speed = 40.0;
    // Static replicas, so that the count is known at any instant.
    let mut leak = common::bundled("chaos/memory-leak.toml");
    leak.spec
        .use_controller(selfheal::scenario::ControllerSpec::parse_short("static").unwrap());
    let served = Served::start(
        &leak,
        &ServeOptions {
            addr: "127.0.0.1:0".into(),
            speed,
            namespace: "shop".into(),
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let (status, first) = get(served.addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, second) = get(served.addr, "/metrics");
    let wall = t0.elapsed().as_secs_f64();
    let (a, b) = (samples(&first), samples(&second));
    // 150 requests per simulated second; counters are divided by the
    // speed-up, so their rate per wall second reads 150 (the served state
    // moves in 50 ms steps).
    let rate = (sum(&b, "http_requests_total{") - sum(&a, "http_requests_total{")) / wall;
    assert!((rate / 150.0 - 1.0).abs() < 0.15, "rate {rate}");
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
    assert!((cpu / 1.2 - 1.0).abs() < 0.2, "cpu {cpu}");
    // The histogram is cumulative and ends with +Inf = _count.
    let inf =
        b["http_request_duration_seconds_bucket{namespace=\"shop\",service=\"api\",le=\"+Inf\"}"];
    assert_eq!(
        inf,
        b["http_request_duration_seconds_count{namespace=\"shop\",service=\"api\"}"]
    );
    let (sim_t, finished) = served.progress();
    assert!(!finished && sim_t.as_secs_f64() > 60.0, "{sim_t:?}");
    assert_eq!(get(served.addr, "/").0, "HTTP/1.1 404 Not Found");
    // A speed of zero or a taken port is refused with the reason.
    let bad = Served::start(
        &common::bundled("chaos/memory-leak.toml"),
        &ServeOptions {
            addr: served.addr.to_string(),
            speed: 1.0,
            namespace: "shop".into(),
        },
    );
    assert!(bad.err().unwrap().to_string().contains("cannot listen"));
}
