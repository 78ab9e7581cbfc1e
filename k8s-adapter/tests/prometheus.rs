//! The observation side against a real Prometheus server (the Debian
//! package `prometheus`; `.ci/run` installs it) scraping a metrics endpoint
//! that this test serves with known rates. Without the binary the test
//! says so and passes, unless `SELFHEAL_REQUIRE_PROMETHEUS=1` (CI sets it).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use selfheal_k8s::config::AdapterConfig;
use selfheal_k8s::{Adapter, Tick};

fn unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Counters that grow at fixed rates from the server's start.
fn exposition(t: f64, start: f64) -> String {
    let pods = [("api-7d9-a", 0.5, 1.0, 0.0), ("api-7d9-b", 0.3, 0.0, 4.0)];
    let mut s = String::new();
    for (pod, cores, ready, restarts) in pods {
        let l = format!(r#"namespace="shop",pod="{pod}""#);
        s += &format!(
            "container_cpu_usage_seconds_total{{{l},container=\"app\"}} {}\n",
            cores * t
        );
        s += &format!("kube_pod_container_resource_requests{{{l},resource=\"cpu\"}} 1\n");
        s += &format!(
            "container_memory_working_set_bytes{{{l},container=\"app\"}} {}\n",
            256.0 * 1048576.0
        );
        s += &format!(
            "kube_pod_container_resource_limits{{{l},resource=\"memory\"}} {}\n",
            512.0 * 1048576.0
        );
        s += &format!("kube_pod_status_ready{{{l},condition=\"true\"}} {ready}\n");
        s += &format!("kube_pod_container_status_restarts_total{{{l}}} {restarts}\n");
        s += &format!("kube_pod_start_time{{{l}}} {start}\n");
    }
    let h = r#"namespace="shop",service="api""#;
    s += &format!("http_requests_total{{{h},code=\"200\"}} {}\n", 90.0 * t);
    s += &format!("http_requests_total{{{h},code=\"500\"}} {}\n", 10.0 * t);
    s += &format!(
        "http_request_duration_seconds_bucket{{{h},le=\"0.05\"}} {}\n",
        50.0 * t
    );
    s += &format!(
        "http_request_duration_seconds_bucket{{{h},le=\"0.1\"}} {}\n",
        100.0 * t
    );
    s += &format!(
        "http_request_duration_seconds_bucket{{{h},le=\"+Inf\"}} {}\n",
        100.0 * t
    );
    s += &format!("http_requests_in_flight{{{h}}} 7\n");
    s += "kube_deployment_status_replicas_ready{namespace=\"shop\",deployment=\"api\"} 2\n";
    s += "kube_deployment_spec_replicas{namespace=\"shop\",deployment=\"api\"} 3\n";
    s
}

fn config(prometheus: &str) -> AdapterConfig {
    AdapterConfig::parse(
        &format!(
            "prometheus = \"{prometheus}\"\nnamespace = \"shop\"\ninterval_s = 1\nrate_window_s = 4\n[controller]\nkind = \"hpa\"\ntarget_cpu_percent = 70\n[[service]]\nname = \"api\"\n"
        ),
        "test.toml",
    )
    .unwrap()
}

#[tokio::test]
async fn the_queries_return_the_seven_metrics_from_a_real_prometheus() {
    let start = unix();
    let metrics = fixed_rate_target(start);
    let Some((_prom, url)) = common::start_prometheus(&metrics.addr, "1s") else {
        return;
    };
    let cfg = config(&url);
    let prom = selfheal_k8s::prom::Prometheus::new(&url, Duration::from_secs(2));
    let clock = selfheal_k8s::clock::Clock {
        origin: start,
        time_scale: 1.0,
    };
    // Wait for Prometheus and for enough samples for a 4 s rate.
    scraped(&prom, 7.0).await;
    let view =
        selfheal_k8s::observe::service_view(&prom, &cfg, &cfg.services[0], unix(), &clock, None)
            .await
            .expect("every query answers");
    let m = &view.metrics;
    let near = |x: f64, want: f64| (x - want).abs() <= 0.05 * want;
    assert!(near(m.cpu_usage, 0.4), "cpu {}", m.cpu_usage);
    assert!(near(m.memory_usage, 0.5), "memory {}", m.memory_usage);
    assert!(near(m.request_rate, 100.0), "rate {}", m.request_rate);
    assert!(near(m.error_rate, 0.1), "errors {}", m.error_rate);
    assert!(near(m.latency_p50, 50.0), "p50 {}", m.latency_p50);
    assert!(near(m.latency_p99, 99.0), "p99 {}", m.latency_p99);
    assert_eq!(
        (m.active_connections, m.ready_replicas, m.desired_replicas),
        (7, 2, 3)
    );
    assert_eq!(view.pods.len(), 2);
    let (a, b) = (&view.pods[0], &view.pods[1]);
    // With the API's watches, replicas and pods come from the reflected
    // objects (here 5 desired, 1 ready, revision 3, on node-1) and usage
    // still from Prometheus, matched by pod name.
    let api = common::serve(Box::new(|r| {
        common::reflected(
            r,
            &common::Namespace {
                deployment: "api",
                revision: 3,
                replicas: 5,
                ready: 1,
                pods: vec![("api-7d9-a", false), ("api-7d9-b", true)],
            },
        )
        .unwrap_or((404, "{}".into()))
    }));
    let state = selfheal_k8s::watch::ClusterState::watch(
        kube::Client::try_from(kube::Config::new(api.addr.parse().unwrap())).unwrap(),
        "shop",
        |_| {},
    );
    tokio::time::timeout(Duration::from_secs(10), state.ready())
        .await
        .expect("the first lists")
        .unwrap();
    let watched = selfheal_k8s::observe::service_view(
        &prom,
        &cfg,
        &cfg.services[0],
        unix(),
        &clock,
        Some(&state),
    )
    .await
    .expect("every query answers");
    let w = &watched.metrics;
    assert_eq!(
        (w.ready_replicas, w.desired_replicas, watched.revision),
        (1, 5, 2)
    );
    let got: Vec<_> = watched
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.ready, p.revision, p.node.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("api-7d9-a", false, 2, "node-1"),
            ("api-7d9-b", true, 2, "node-1")
        ]
    );
    assert!(near(watched.pods[0].cpu_cores, 0.5) && near(watched.pods[1].cpu_cores, 0.3));
    // The reflected pods have no resources in their spec: requests and
    // limits fall back to kube-state-metrics.
    let first = &watched.pods[0];
    assert_eq!(
        (
            first.memory_mib as u32,
            first.memory_limit_mib as u32,
            first.cpu_request
        ),
        (256, 512, 1.0)
    );
    assert!(a.ready && !b.ready);
    assert!(near(a.cpu_cores, 0.5) && near(b.cpu_cores, 0.3));
    assert_eq!(
        (b.restarts, a.memory_mib as u32, a.memory_limit_mib as u32),
        (4, 256, 512)
    );

    // The same metrics read back as history with range queries.
    let now = unix();
    // An SLO of 75 ms falls inside the (50, 100] ms bucket that holds half
    // the requests: 75 % are within it, and 90 % succeed.
    let cfg = selfheal_k8s::config::AdapterConfig {
        slo_latency_ms: 75.0,
        ..cfg
    };
    let scrapes =
        selfheal_k8s::observe::history(&prom, &cfg, &cfg.services[0], now - 3.0, now, &clock)
            .await
            .expect("range queries answer");
    assert!(scrapes.len() >= 3, "{scrapes:?}");
    assert!(
        scrapes
            .windows(2)
            .all(|w| w[0].metrics.timestamp < w[1].metrics.timestamp)
    );
    for s in &scrapes {
        assert!(near(s.sli, 0.9 * 0.75), "{s:?}");
    }
    let recorded_sli =
        selfheal::train::recorded::parse_sli_csv(&selfheal_k8s::record::sli_csv(&scrapes))
            .expect("the trainer reads the recording's SLI");
    assert_eq!(recorded_sli.len(), scrapes.len());
    let metrics_back = selfheal::metrics::parse_metrics_csv(&selfheal::metrics::metrics_csv(
        scrapes.iter().map(|s| ("api", &s.metrics)),
    ))
    .expect("the trainer reads the recording's metrics");
    assert_eq!(metrics_back.len(), scrapes.len());
    let past: Vec<_> = scrapes.iter().map(|s| s.metrics.clone()).collect();
    for m in &past {
        assert!(
            near(m.cpu_usage, 0.4) && near(m.request_rate, 100.0),
            "{m:?}"
        );
        assert!(
            near(m.latency_p99, 99.0) && m.desired_replicas == 3,
            "{m:?}"
        );
    }
    // Recorded, the request rate is a trace the simulator replays as load.
    let trace =
        selfheal::sim::load::Trace::parse_csv(&selfheal_k8s::record::load_trace_csv(&scrapes))
            .expect("the simulator reads the recording");
    assert_eq!(trace.t.len(), past.len());
    assert!(trace.value.iter().all(|&v| near(v, 100.0)));
}

#[tokio::test]
async fn unreachable_or_malformed_prometheus_means_no_action() {
    let down = format!("http://127.0.0.1:{}", common::closed_port());
    let mut adapter = Adapter::new(config(&down), unix()).unwrap();
    let Tick::Skipped(why) = adapter.tick(unix()).await else {
        panic!("decided without an observation")
    };
    assert!(why.contains("unreachable"), "{why}");

    let garbage = common::serve(Box::new(|_| (200, "<html>not the API</html>".into())));
    let mut adapter = Adapter::new(config(&garbage.addr), unix()).unwrap();
    let Tick::Skipped(why) = adapter.tick(unix()).await else {
        panic!("decided on garbage")
    };
    assert!(
        why.contains("malformed") && why.contains("container_cpu_usage_seconds_total"),
        "{why}"
    );

    let empty = common::serve(Box::new(|_| {
        (
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
        )
    }));
    let mut adapter = Adapter::new(config(&empty.addr), unix()).unwrap();
    let Tick::Skipped(why) = adapter.tick(unix()).await else {
        panic!("decided on missing series")
    };
    assert!(why.contains("no series"), "{why}");
}

/// Waits until Prometheus has scraped its target `n` times.
async fn scraped(prom: &selfheal_k8s::prom::Prometheus, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let scrapes = prom.query("count_over_time(up[30s])", unix()).await;
        if matches!(&scrapes, Ok(s) if s.first().is_some_and(|x| x.value >= n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped: {scrapes:?}"
        );
    }
}

#[tokio::test]
async fn the_adapter_observes_a_served_simulation_as_the_simulation_sees_itself() {
    // `selfheal serve` in-process at 10x on a driven clock: 150 requests
    // per simulated second on 3 static pods, advanced 5 simulated seconds
    // at a time, each instant scraped by a real Prometheus with its
    // simulated instant as the samples' timestamp. What Prometheus stores
    // is then a function of the scenario alone, however busy the machine.
    let speed = 10.0;
    let leak = common::bundled_static("chaos/memory-leak.toml");
    let served = selfheal::serve::Served::start(
        &leak,
        &selfheal::serve::ServeOptions {
            addr: "127.0.0.1:0".into(),
            speed,
            namespace: "shop".into(),
            clock: selfheal::serve::ServeClock::Driven,
            token: None,
            faults: selfheal::serve::ServedFaults::Scheduled,
        },
    )
    .unwrap();
    let Some((_prom, url)) = common::start_prometheus(&format!("http://{}", served.addr), "1s")
    else {
        return;
    };
    // The adapter at the served speed: its 40 s window is 4 s of wall time.
    let cfg = AdapterConfig {
        time_scale: speed,
        rate_window_s: 40.0,
        ..config(&url)
    };
    let prom = selfheal_k8s::prom::Prometheus::new(&url, Duration::from_secs(2));
    let clock = selfheal_k8s::clock::Clock {
        origin: served.wall_origin,
        time_scale: speed,
    };
    // 60 simulated seconds (before the leak at 300 s), every 5 s instant
    // scraped; the last one twice, so that the first is stored.
    let mut t = selfheal::time::Time::ZERO;
    for step in 1..=12 {
        t = served
            .advance_to(selfheal::time::Time::from_secs(5 * step))
            .unwrap();
        let scrapes = if step == 12 { 2 } else { 1 };
        assert!(
            served.wait_scraped(t, scrapes, Duration::from_secs(60)),
            "Prometheus never scraped {t:?}"
        );
    }
    // Both sides at the same simulated instant.
    let live = selfheal_k8s::observe::service_view(
        &prom,
        &cfg,
        &cfg.services[0],
        clock.unix(t),
        &clock,
        None,
    )
    .await
    .expect("every query answers");
    let truth = served.observation().expect("the simulation has run");
    let sim = &truth.services[0];
    let (m, s) = (&live.metrics, &sim.metrics);
    let near = |x: f64, want: f64, tol: f64| (x - want).abs() <= tol * want.abs().max(1e-9);
    // The adapter's window is 40 simulated seconds, the simulator's own
    // 30: at constant load they agree within noise.
    assert!(near(m.request_rate, 150.0, 0.1), "rate {}", m.request_rate);
    for (what, live, sim, tol) in [
        ("request rate", m.request_rate, s.request_rate, 0.1),
        ("cpu", m.cpu_usage, s.cpu_usage, 0.15),
        ("memory", m.memory_usage, s.memory_usage, 0.05),
        ("p50", m.latency_p50, s.latency_p50, 0.2),
    ] {
        assert!(near(live, sim, tol), "{what}: live {live} sim {sim}");
    }
    assert_eq!(m.error_rate, 0.0);
    assert_eq!(
        (m.ready_replicas, m.desired_replicas, live.pods.len()),
        (3, 3, 3)
    );
    let names = |v: &selfheal::control::ServiceView| {
        v.pods.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&live), names(sim));
    // Start times go through unix seconds and back to simulated time.
    for (l, t) in live.pods.iter().zip(&sim.pods) {
        assert!(l.ready && (l.started.as_secs_f64() - t.started.as_secs_f64()).abs() < 1.0);
    }
}

/// Each sample line of `text` with the timestamp `unix_ms`: Prometheus
/// then stores the values at the instant they were computed for, however
/// late it scrapes.
fn stamped(text: String, unix_ms: i64) -> String {
    text.lines().map(|l| format!("{l} {unix_ms}\n")).collect()
}

/// The fixture's metrics, stamped with the instant they describe.
fn fixed_rate_target(start: f64) -> common::Server {
    common::serve(Box::new(move |r| {
        if r.path == "/metrics" {
            let now = unix();
            (
                200,
                stamped(exposition(now - start, start), (now * 1000.0) as i64),
            )
        } else {
            (404, String::new())
        }
    }))
}

/// A Prometheus serving its API over TLS with basic auth (its
/// `--web.config.file`), read by the adapter with the CA and password
/// files its configuration names; refused without either.
#[tokio::test]
async fn the_adapter_reads_a_prometheus_with_tls_and_basic_auth() {
    use selfheal_k8s::config::{BasicAuth, PrometheusHttp};
    use selfheal_k8s::prom::{PromError, Prometheus};

    let start = unix();
    let metrics = fixed_rate_target(start);
    let dir = std::env::temp_dir().join(format!("selfheal-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("ca.pem"), server.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), server.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("password"), "correct horse\n").unwrap();
    std::fs::write(dir.join("wrong-password"), "battery staple\n").unwrap();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  selfheal: '{}'\n",
        dir.join("ca.pem").display(),
        dir.join("key.pem").display(),
        bcrypt::hash("correct horse", 4).unwrap()
    );
    let Some((_prom, url)) = common::start_prometheus_with(&metrics.addr, "1s", Some(&web)) else {
        return;
    };
    assert!(url.starts_with("https://"), "{url}");
    // The configuration names the files relative to itself.
    std::fs::write(
        dir.join("adapter.toml"),
        format!(
            "prometheus = \"{url}\"\nnamespace = \"shop\"\ninterval_s = 1\nrate_window_s = 4\n[prometheus_http]\nca_file = \"ca.pem\"\nbasic_auth = {{ username = \"selfheal\", password_file = \"password\" }}\n[controller]\nkind = \"hpa\"\ntarget_cpu_percent = 70\n[[service]]\nname = \"api\"\n"
        ),
    )
    .unwrap();
    let cfg = AdapterConfig::load(&dir.join("adapter.toml")).unwrap();
    assert_eq!(cfg.prometheus_http.ca_file, Some(dir.join("ca.pem")));
    let prom = Prometheus::connect(
        &cfg.prometheus,
        &cfg.prometheus_http,
        Duration::from_secs(2),
    )
    .unwrap();
    scraped(&prom, 7.0).await;
    let mut adapter = Adapter::new(cfg.clone(), unix()).unwrap();
    match adapter.tick(unix()).await {
        Tick::Decided(_) => {}
        Tick::Skipped(why) => panic!("no observation over TLS: {why}"),
    }
    let clock = selfheal_k8s::clock::Clock {
        origin: start,
        time_scale: 1.0,
    };
    let view =
        selfheal_k8s::observe::service_view(&prom, &cfg, &cfg.services[0], unix(), &clock, None)
            .await
            .expect("every query answers");
    assert!((view.metrics.request_rate / 100.0 - 1.0).abs() < 0.05);

    // Without the password, with a wrong one, and without the CA.
    let with = |basic_auth: Option<BasicAuth>, ca: bool| {
        Prometheus::connect(
            &url,
            &PrometheusHttp {
                ca_file: ca.then(|| dir.join("ca.pem")),
                basic_auth,
                ..PrometheusHttp::default()
            },
            Duration::from_secs(2),
        )
        .unwrap()
    };
    let wrong = BasicAuth {
        username: "selfheal".into(),
        password_file: dir.join("wrong-password"),
    };
    for client in [with(None, true), with(Some(wrong), true)] {
        match client.query("up", unix()).await {
            Err(PromError::Status { status: 401, .. }) => {}
            other => panic!("not refused: {other:?}"),
        }
    }
    match with(cfg.prometheus_http.basic_auth.clone(), false)
        .query("up", unix())
        .await
    {
        Err(PromError::Unreachable { why, .. }) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("an unknown CA was trusted: {other:?}"),
    }
    // A missing CA file is named at start.
    let missing = Prometheus::connect(
        &url,
        &PrometheusHttp {
            ca_file: Some(dir.join("nope.pem")),
            ..PrometheusHttp::default()
        },
        Duration::from_secs(2),
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("nope.pem"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bearer token from a file, read again for every request: a rotated
/// token is sent from the next query on.
#[tokio::test]
async fn a_bearer_token_file_is_sent_and_reread() {
    use selfheal_k8s::config::PrometheusHttp;
    use selfheal_k8s::prom::{PromError, Prometheus};

    let dir = std::env::temp_dir().join(format!("selfheal-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "first\n").unwrap();
    let api = common::serve(Box::new(|r| {
        if r.authorization.as_deref() == Some("Bearer second") {
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#.into(),
            )
        } else {
            (401, "Unauthorized".into())
        }
    }));
    let prom = Prometheus::connect(
        &api.addr,
        &PrometheusHttp {
            bearer_token_file: Some(token.clone()),
            ..PrometheusHttp::default()
        },
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(matches!(
        prom.query("up", unix()).await,
        Err(PromError::Status { status: 401, .. })
    ));
    std::fs::write(&token, "second\n").unwrap();
    assert_eq!(prom.query("up", unix()).await.unwrap()[0].value, 1.0);
    let seen: Vec<_> = api
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.authorization.clone())
        .collect();
    assert_eq!(
        seen,
        vec![Some("Bearer first".into()), Some("Bearer second".into())]
    );
    // A token file that is gone is an error naming it, not an anonymous
    // request.
    std::fs::remove_file(&token).unwrap();
    let err = prom.query("up", unix()).await.unwrap_err().to_string();
    assert!(err.contains("token"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
