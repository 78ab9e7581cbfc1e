//! The twin recovers the scenario a recording came from: a simulation's
//! scrapes, edges and Deployments written as a cluster's recording are
//! turned back into a scenario, which must have the original's call graph
//! and replicas exactly, its CPU time per request within 10 %, and, on the
//! held-out hour's load, each service's p99 within 15 % of the original's.

use std::path::{Path, PathBuf};

use selfheal::twin::{self, Recording, TwinOptions};

const SOURCE: &str = r#"
name = "twin-source"
duration_s = 7200
seed = 5

[slo]
latency_ms = 200

[[load]]
service = "frontend"
curve = { kind = "diurnal", mean = 120, amplitude = 0.5, period_s = 7200, peak_s = 3600 }

[[service]]
name = "frontend"
replicas = 3
revision = { service_time_ms = 3 }
  [[service.call]]
  to = "catalog"
  [[service.call]]
  to = "cart"
  probability = 0.4

[[service]]
name = "catalog"
replicas = 4
revision = { service_time_ms = 8, background_cores = 0.05 }
  [[service.call]]
  to = "db"
  probability = 0.7

[[service]]
name = "cart"
replicas = 2
cpu_request = 0.25
revision = { service_time_ms = 5, service_time_cv = 0.5 }

[[service]]
name = "db"
replicas = 2
revision = { service_time_ms = 4 }

[metrics]
scrape_interval_s = 15
"#;

/// The run written as `selfheal-k8s record` writes a cluster, plus the
/// Deployments the served simulation lists.
fn record(dir: &Path) -> selfheal::scenario::Scenario {
    let loaded = selfheal::scenario::parse(SOURCE, "twin-source.toml", Path::new(".")).unwrap();
    let out = selfheal::sim::run(&loaded).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in out.services.iter().enumerate() {
        let rows = out
            .metrics
            .iter()
            .filter(|(s, _)| *s == i)
            .map(|(_, m)| (name.as_str(), m));
        std::fs::write(
            dir.join(format!("{name}-metrics.csv")),
            selfheal::metrics::metrics_csv(rows),
        )
        .unwrap();
    }
    std::fs::write(dir.join("edges.csv"), out.edges_csv()).unwrap();
    let items: Vec<serde_json::Value> = loaded
        .spec
        .services
        .iter()
        .map(|s| {
            serde_json::json!({"metadata": {"name": s.name}, "spec": {
                "replicas": s.replicas,
                "template": {"spec": {"containers": [{"resources": {
                    "requests": {"cpu": format!("{}m", s.cpu_request * 1000.0), "memory": format!("{}Mi", s.memory_request_mib)},
                    "limits": {"cpu": format!("{}m", s.cpu_limit * 1000.0), "memory": format!("{}Mi", s.memory_limit_mib)},
                }}]}},
            }})
        })
        .collect();
    std::fs::write(
        dir.join("deployments.json"),
        serde_json::json!({"kind": "DeploymentList", "items": items}).to_string(),
    )
    .unwrap();
    loaded.spec
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("selfheal-twin-{}", std::process::id()))
}

#[test]
fn a_twin_of_a_recorded_simulation_recovers_its_scenario() {
    let dir = scratch();
    let original = record(&dir);
    let rec = Recording::read(&dir).unwrap();
    let (start, end) = rec.span();
    let half = start + 0.5 * (end - start);
    let built = twin::build(
        &rec,
        &TwinOptions {
            from_s: Some(start),
            to_s: Some(half),
            ..TwinOptions::default()
        },
    )
    .unwrap();
    let t = &built.scenario;
    eprintln!(
        "calibration (median |p50|, |p99| error): {:?}",
        built.calibration
    );
    assert_eq!(t.loads.len(), 1);
    assert_eq!(t.loads[0].service, "frontend");
    for o in &original.services {
        let s = t.services.iter().find(|s| s.name == o.name).unwrap();
        assert_eq!(s.replicas, o.replicas, "{}", o.name);
        let st = s.revision.service_time_ms / o.revision.service_time_ms;
        eprintln!(
            "{}: CPU {:.3} ms (cv {:.2}), background {:.4} cores, wait {:.3} ms; original {} ms (cv {})",
            o.name,
            s.revision.service_time_ms,
            s.revision.service_time_cv,
            s.revision.background_cores,
            s.revision.wait_ms,
            o.revision.service_time_ms,
            o.revision.service_time_cv
        );
        assert!(
            (st - 1.0).abs() <= 0.10,
            "{}: CPU time {:.3} ms for {:.3}",
            o.name,
            s.revision.service_time_ms,
            o.revision.service_time_ms
        );
        // The CPU no request explains, per pod: the catalog's 0.05 cores,
        // and none elsewhere.
        let background = s.revision.background_cores;
        assert!(
            (background - o.revision.background_cores).abs() <= 0.01,
            "{}: background {background:.4} cores for {}",
            o.name,
            o.revision.background_cores
        );
        let graph = |calls: &[selfheal::scenario::CallSpec]| {
            let mut v: Vec<String> = calls.iter().map(|c| c.to.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(graph(&s.calls), graph(&o.calls), "{}'s calls", o.name);
        for c in &o.calls {
            let twin_call = s.calls.iter().find(|x| x.to == c.to).unwrap();
            assert!(
                (twin_call.probability - c.probability).abs() <= 0.03,
                "{}->{}: {} for {}",
                o.name,
                c.to,
                twin_call.probability,
                c.probability
            );
        }
    }
    // The held-out hour's load through the twin, against the original.
    let f = twin::check(t, &rec, half, end + 1e-6, 1).unwrap();
    eprint!("{}", twin::fidelity::render(&f, "held-out hour"));
    for s in &f.services {
        let (recorded, simulated) = s.median_p99_ms;
        assert!(
            (simulated / recorded - 1.0).abs() <= 0.15,
            "{}: p99 {simulated:.1} ms against {recorded:.1}",
            s.service
        );
        assert!(s.cpu_mape <= 0.10, "{}: CPU MAPE {}", s.service, s.cpu_mape);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_recording_without_its_metrics_names_the_directory() {
    let dir = scratch().with_extension("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let err = Recording::read(&dir).unwrap_err().to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    std::fs::write(
        dir.join("a-metrics.csv"),
        format!(
            "{}\n0,a,0.1,0.2,5,0,3,6,1,1,1\n",
            selfheal::metrics::METRICS_CSV_HEADER
        ),
    )
    .unwrap();
    std::fs::write(dir.join("edges.csv"), "t_s,edge\n").unwrap();
    let err = Recording::read(&dir).unwrap_err().to_string();
    assert!(
        err.contains("edges.csv: line 1: expected the header"),
        "{err}"
    );
    // One scrape is no load to replay: the window is refused before a
    // scenario is written, not when the written scenario is read back.
    std::fs::remove_file(dir.join("edges.csv")).unwrap();
    let rec = Recording::read(&dir).unwrap();
    let whole = TwinOptions {
        from_s: Some(0.0),
        to_s: Some(60.0),
        ..TwinOptions::default()
    };
    let Err(err) = twin::build(&rec, &whole) else {
        panic!("one scrape builds no twin");
    };
    let err = err.to_string();
    assert!(
        err.contains("holds 1 scrape(s) of `a`; the twin's load needs at least two"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The real day (`datasets/incidents/`): a twin built from three
/// fault-free hours (after the last injection, 16:54 UTC) and checked on
/// the next four. The bounds pin what the twin reaches today (median over
/// services: CPU 18.8 %, request rate 7.2 %, p99 32.6 % MAPE; the means'
/// errors CPU 0.6 %, p99 7.8 %) so that a change that loses fidelity
/// shows; they are not the issue's aims (15 % and 25 %), which this day
/// does not meet (see README "A twin of a cluster").
#[test]
fn a_twin_of_the_real_incident_day_holds_its_fidelity_on_held_out_hours() {
    let day = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/incidents/nezha-ob-2022-08-23");
    let dir = scratch().with_extension("nezha");
    std::fs::create_dir_all(&dir).unwrap();
    for (service, scrapes) in selfheal::eval::incidents::import(&day).unwrap() {
        std::fs::write(
            dir.join(format!("{service}-metrics.csv")),
            selfheal::metrics::metrics_csv(scrapes.iter().map(|m| (service.as_str(), m))),
        )
        .unwrap();
    }
    let edges = selfheal::eval::incidents::import_edges(&day).unwrap();
    std::fs::write(dir.join("edges.csv"), edges).unwrap();
    let deployments = selfheal::eval::incidents::import_deployments(&day).unwrap();
    std::fs::write(dir.join("deployments.json"), deployments).unwrap();
    let rec = Recording::read(&dir).unwrap();
    assert_eq!(rec.services.len(), 10);
    assert_eq!(rec.edges.len(), 14);
    assert_eq!(rec.shapes.len(), 10);
    // 2022-08-23 17:10 to 20:10 UTC, then to the end of the day's record.
    let (from, split, end) = (1_661_274_600.0, 1_661_285_400.0, 1_661_299_200.0);
    let built = twin::build(
        &rec,
        &TwinOptions {
            from_s: Some(from),
            to_s: Some(split),
            ..TwinOptions::default()
        },
    )
    .unwrap();
    let t = &built.scenario;
    assert_eq!(t.loads.len(), 1, "only the frontend takes outside load");
    assert_eq!(t.loads[0].service, "frontend");
    // recommendationservice's rate moves with the frontend's, so the rates
    // alone fit it three parallel calls into productcatalogservice; its own
    // latency, about productcatalogservice's, allows one.
    let recommendation = t
        .services
        .iter()
        .find(|s| s.name == "recommendationservice")
        .unwrap();
    let calls = |to: &str| recommendation.calls.iter().filter(|c| c.to == to).count();
    assert_eq!(calls("productcatalogservice"), 1);
    let f = twin::check(t, &rec, split, end, 1).unwrap();
    eprint!(
        "{}",
        twin::fidelity::render(&f, "held-out hours of the real day")
    );
    let cpu = f.median_of(|s| s.cpu_mape);
    let rate = f.median_of(|s| s.rate_mape);
    let p99 = f.median_of(|s| s.p99_mape);
    assert!(cpu <= 0.17, "CPU {cpu}");
    assert!(rate <= 0.10, "request rate {rate}");
    assert!(p99 <= 0.40, "p99 {p99}");
    let cpu_mean = f.median_of(|s| s.cpu_bias.abs());
    let p99_mean = f.median_of(|s| s.p99_bias.abs());
    assert!(cpu_mean <= 0.05, "mean CPU {cpu_mean}");
    assert!(p99_mean <= 0.15, "mean p99 {p99_mean}");
    // The recording's own scrape-to-scrape noise: the best flat line
    // through each series, chosen with hindsight, is not much better.
    let cpu_flat = f.median_of(|s| s.cpu_flat_mape);
    let p99_flat = f.median_of(|s| s.p99_flat_mape);
    assert!(
        cpu <= cpu_flat + 0.03,
        "CPU {cpu} against a flat line's {cpu_flat}"
    );
    assert!(
        p99 <= p99_flat + 0.10,
        "p99 {p99} against a flat line's {p99_flat}"
    );
    // The levels the twin is built to match (mean CPU, median p99), put
    // flat through the held-out series with hindsight: CPU is at that
    // floor (the load explains almost none of its minute-to-minute
    // variation); p99 is above it by the drift between the stretches
    // (today 15.5 % and 27.6 % against the twin's one run 15.9 % and
    // 32.8 %).
    let cpu_level = f.median_of(|s| s.cpu_level_mape);
    let p99_level = f.median_of(|s| s.p99_level_mape);
    assert!(cpu_flat < cpu_level && p99_flat < p99_level);
    assert!(
        cpu <= cpu_level + 0.01,
        "CPU {cpu} against a flat line at the mean's {cpu_level}"
    );
    assert!(
        p99 <= p99_level + 0.07,
        "p99 {p99} against a flat line at the median's {p99_level}"
    );
    // The twin's prediction, its mean over runs at 8 seeds, carries none
    // of one run's own arrival noise: closer, scrape by scrape (today CPU
    // 15.6 %, request rate 6.8 %, p99 32.6 %).
    let mean = twin::check(t, &rec, split, end, 8).unwrap();
    for (name, pick) in [
        ("CPU", (|s| s.cpu_mape) as fn(&twin::ServiceFidelity) -> f64),
        ("request rate", |s| s.rate_mape),
        ("p99", |s| s.p99_mape),
    ] {
        let (one, eight) = (f.median_of(pick), mean.median_of(pick));
        assert!(eight < one, "{name}: 8 runs {eight}, one {one}");
    }
    // With one call, its p99 is near the recorded (42.6 % scrape by
    // scrape today; 102.5 % with three calls).
    let recommendation = mean
        .services
        .iter()
        .find(|s| s.service == "recommendationservice")
        .unwrap();
    assert!(
        recommendation.p99_mape <= 0.6,
        "recommendationservice p99 {}",
        recommendation.p99_mape
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Off-CPU time adds to a request's latency and holds no core: at low
/// load a 2 ms CPU request that then waits a fixed 50 ms answers in about
/// 52 ms, and the service's CPU is what the 2 ms alone use. Background
/// work is the other way round: CPU at any load, and a little latency.
#[test]
fn off_cpu_wait_adds_latency_and_background_work_adds_cpu() {
    let run = |wait: &str| {
        let text = format!(
            "name = \"wait\"\nduration_s = 600\nseed = 3\n[slo]\nlatency_ms = 200\n[[load]]\nservice = \"api\"\ncurve = {{ kind = \"constant\", rate = 20 }}\n[[service]]\nname = \"api\"\nreplicas = 2\nrevision = {{ service_time_ms = 2, service_time_cv = 0{wait} }}\n"
        );
        let loaded = selfheal::scenario::parse(&text, "wait.toml", Path::new(".")).unwrap();
        let out = selfheal::sim::run(&loaded).unwrap();
        let late: Vec<&selfheal::metrics::ServiceMetrics> = out
            .metrics
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m.timestamp.as_secs_f64() > 120.0)
            .collect();
        let n = late.len() as f64;
        (
            late.iter().map(|m| m.latency_p50).sum::<f64>() / n,
            late.iter().map(|m| m.cpu_usage).sum::<f64>() / n,
        )
    };
    let (p50_cpu_only, cpu_only) = run("");
    let (p50_waiting, cpu_waiting) = run(", wait_ms = 50, wait_cv = 0");
    assert!((p50_cpu_only - 2.0).abs() < 0.3, "{p50_cpu_only}");
    assert!((p50_waiting - 52.0).abs() < 2.0, "{p50_waiting}");
    assert!(
        (cpu_waiting / cpu_only - 1.0).abs() < 0.05,
        "{cpu_waiting} against {cpu_only}"
    );
    // Background work is CPU at any load: 20 requests/s of 2 ms are 0.04
    // cores, two pods' 0.1 cores each add 0.2, all over 2 x 0.5 cores
    // requested. On a one-core limit a request then shares its core with
    // 0.1 cores of background, CFS-fashion: 2 ms of work take 2.2 ms.
    let (p50_background, cpu_background) = run(", background_cores = 0.1");
    assert!(
        (cpu_only - 0.04).abs() < 0.004,
        "{cpu_only} of the request without background"
    );
    assert!(
        (cpu_background - 0.24).abs() < 0.01,
        "{cpu_background} of the request with background"
    );
    assert!((p50_background - 2.2).abs() < 0.3, "{p50_background}");
}
