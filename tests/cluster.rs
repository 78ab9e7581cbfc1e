//! Behaviour of the simulated cluster: each fault's effect, Kubernetes
//! mechanisms, mesh resilience and the controller seam.

mod common;

use common::{bundled, scenario_text};
use selfheal::control::{Command, Controller, Observation};
use selfheal::sim::{self, PodEventKind, RunOutput, Simulation};
use selfheal::time::{Span, Time};

fn col(out: &RunOutput, service: &str, f: impl Fn(&sim::ServiceSecond) -> u32) -> Vec<u32> {
    let n = out.services.len();
    let i = out.services.iter().position(|s| s == service).unwrap();
    out.service_seconds
        .iter()
        .skip(i)
        .step_by(n)
        .map(f)
        .collect()
}

fn events(out: &RunOutput, kind: PodEventKind) -> Vec<(f64, String)> {
    out.pod_events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.t.as_secs_f64(), e.pod.clone()))
        .collect()
}

fn failed_between(out: &RunOutput, a: usize, b: usize) -> u64 {
    out.root_seconds[a..b].iter().map(|r| r.failed).sum()
}

fn failure_ratio(out: &RunOutput, a: usize, b: usize) -> f64 {
    let (f, t): (u64, u64) = out.root_seconds[a..b]
        .iter()
        .fold((0, 0), |(f, t), r| (f + r.failed, t + r.failed + r.ok));
    f as f64 / t as f64
}

fn mean_metric(
    out: &RunOutput,
    service: &str,
    a: f64,
    b: f64,
    f: impl Fn(&selfheal::metrics::ServiceMetrics) -> f64,
) -> f64 {
    let i = out.services.iter().position(|s| s == service).unwrap();
    let xs: Vec<f64> = out
        .metrics
        .iter()
        .filter(|(s, m)| *s == i && (a..b).contains(&m.timestamp.as_secs_f64()))
        .map(|(_, m)| f(m))
        .filter(|x| x.is_finite())
        .collect();
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[test]
fn pod_kill_deletes_and_replaces_pods() {
    let out = sim::run(&bundled("pod-kill.toml")).unwrap();
    let deleted = events(&out, PodEventKind::Deleted);
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|(t, _)| *t == 300.0));
    let scheduled_later = events(&out, PodEventKind::Scheduled)
        .iter()
        .filter(|(t, _)| *t == 300.0)
        .count();
    assert_eq!(scheduled_later, 2, "replacements are created at once");
    let ready = col(&out, "api", |s| s.ready);
    assert_eq!(ready[299], 5);
    assert_eq!(ready[300], 3);
    // Replacements pay their start-up time (lognormal, mean 10 s) and the
    // readiness probe period (10 s).
    let back = (300..400).find(|&t| ready[t] == 5).expect("ready again");
    assert!((305..=340).contains(&back), "ready again at {back}");
    assert_eq!(out.summary.pod_kills, 2);
}

#[test]
fn node_loss_follows_the_node_lifecycle_timings() {
    let out = sim::run(&bundled("node-loss.toml")).unwrap();
    // Pods on the lost node stop answering at once: failures (timeouts,
    // 2 s client timeout) only until the node is NotReady 40 s later.
    assert_eq!(failed_between(&out, 0, 300), 0);
    assert!(failed_between(&out, 300, 345) > 1000);
    assert_eq!(failed_between(&out, 345, 1800), 0);
    let ready = col(&out, "web", |s| s.ready);
    assert_eq!(ready[299], 6);
    assert_eq!(
        ready[345], 4,
        "node-0's two pods leave the endpoints at 340 s"
    );
    // Evicted after the 300 s toleration, replaced on the other nodes.
    let deleted = events(&out, PodEventKind::Deleted);
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|(t, _)| *t == 640.0), "{deleted:?}");
    assert_eq!(out.summary.evictions, 2);
    assert!(ready[700..].iter().all(|&r| r == 6));
}

#[test]
fn service_latency_fault_delays_requests_and_long_delays_fail_probes() {
    let mut sc = bundled("quickstart.toml");
    let text = r#"
[[fault]]
kind = "latency"
service = "catalog"
added_ms = 80
at_s = 200
duration_s = 200
"#;
    let extra: selfheal::scenario::Scenario = toml::from_str(&format!(
        "{}\n{text}",
        std::fs::read_to_string(common::repo().join("scenarios/quickstart.toml")).unwrap()
    ))
    .unwrap();
    sc.spec.faults = extra.faults;
    let out = sim::run(&sc).unwrap();
    let edge_p50 = |a: f64, b: f64| {
        let xs: Vec<f64> = out
            .edge_metrics
            .iter()
            .filter(|m| {
                m.edge == "frontend->catalog" && (a..b).contains(&m.timestamp.as_secs_f64())
            })
            .map(|m| m.latency_p50)
            .collect();
        xs.iter().sum::<f64>() / xs.len() as f64
    };
    let (before, during) = (edge_p50(60.0, 200.0), edge_p50(270.0, 400.0));
    assert!(
        during - before > 70.0 && during - before < 95.0,
        "p50 {before} -> {during}"
    );
    assert_eq!(
        out.summary.restarts, 0,
        "80 ms is far below the 1 s probe timeout"
    );

    // 1.5 s: probes time out, readiness empties the service, liveness restarts.
    let mut slow = bundled("quickstart.toml");
    let mut f = extra_fault("latency", "catalog", 200.0, Some(300.0));
    f.added_ms = Some(1500.0);
    slow.spec.faults = vec![f];
    let out = sim::run(&slow).unwrap();
    let ready = col(&out, "catalog", |s| s.ready);
    assert_eq!(ready[195], 3);
    assert_eq!(ready[240], 0, "3 failed readiness probes remove every pod");
    assert!(out.summary.liveness_restarts >= 3);
}

fn extra_fault(
    kind: &str,
    service: &str,
    at: f64,
    duration: Option<f64>,
) -> selfheal::scenario::FaultSpec {
    let dur = duration
        .map(|d| format!("duration_s = {d}\n"))
        .unwrap_or_default();
    let text = format!("kind = \"{kind}\"\nservice = \"{service}\"\nat_s = {at}\n{dur}");
    toml::from_str(&text).unwrap()
}

#[test]
fn cpu_stress_raises_cpu_and_latency() {
    let out = sim::run(&bundled("cpu-stress.toml")).unwrap();
    let cpu_before = mean_metric(&out, "worker", 100.0, 300.0, |m| m.cpu_usage);
    let cpu_during = mean_metric(&out, "worker", 360.0, 900.0, |m| m.cpu_usage);
    // Stressed pods run at their 1-core limit (2x their request).
    assert!(
        cpu_during > cpu_before * 1.3,
        "cpu {cpu_before} -> {cpu_during}"
    );
    let p99_before = mean_metric(&out, "worker", 100.0, 300.0, |m| m.latency_p99);
    let p99_during = mean_metric(&out, "worker", 360.0, 900.0, |m| m.latency_p99);
    assert!(
        p99_during > p99_before * 1.5,
        "p99 {p99_before} -> {p99_during}"
    );
    let p99_after = mean_metric(&out, "worker", 1000.0, 1200.0, |m| m.latency_p99);
    assert!(
        p99_after < p99_during / 1.5,
        "recovers after the fault: {p99_after}"
    );
}

#[test]
fn dependency_errors_propagate_to_callers() {
    let mut sc = bundled("dependency-failure.toml");
    sc.spec.faults[0].mode = Some(selfheal::scenario::DependencyMode::Errors);
    sc.spec.faults[0].error_rate = Some(0.4);
    let out = sim::run(&sc).unwrap();
    let r = failure_ratio(&out, 310, 590);
    assert!((r - 0.4).abs() < 0.02, "failure ratio {r}");
    assert_eq!(out.summary.timeouts, 0, "errors come back at once");
    // Blackhole: every call times out instead.
    let out = sim::run(&bundled("dependency-failure.toml")).unwrap();
    assert!(failure_ratio(&out, 310, 590) > 0.99);
    assert_eq!(out.summary.timeouts, out.summary.failed);
}

#[test]
fn memory_leak_oom_kills_then_the_restart_frees_the_leak() {
    let out = sim::run(&bundled("memory-leak.toml")).unwrap();
    assert_eq!(out.summary.oom_kills, 2);
    let ooms = events(&out, PodEventKind::Exited(sim::Exit::OutOfMemory));
    // (512 - 160) MiB at 1.5 MiB/s from t = 120 s: 355 s at the latest;
    // earlier as GC pressure piles up in-flight requests (0.5 MiB each).
    for (t, _) in &ooms {
        assert!((300.0..=356.0).contains(t), "OOM at {t}");
    }
    // GC pressure shows in latency before the kill.
    let p99_early = mean_metric(&out, "api", 60.0, 120.0, |m| m.latency_p99);
    let p99_pressure = mean_metric(&out, "api", 320.0, 350.0, |m| m.latency_p99);
    assert!(
        p99_pressure > 3.0 * p99_early,
        "{p99_early} -> {p99_pressure}"
    );
    let mem_late = mean_metric(&out, "api", 1000.0, 1800.0, |m| m.memory_usage);
    assert!(mem_late < 0.35, "leak freed by the restart: {mem_late}");
}

#[test]
fn hang_is_removed_by_readiness_and_restarted_by_liveness() {
    let out = sim::run(&bundled("hang.toml")).unwrap();
    let not_ready = events(&out, PodEventKind::NotReady);
    assert_eq!(not_ready.len(), 1, "{not_ready:?}");
    // Probes every 10 s from container start: the third failure lands within
    // 20-30 s of the hang, for readiness and liveness alike.
    assert!((220.0..=230.0).contains(&not_ready[0].0), "{not_ready:?}");
    let restarts = events(&out, PodEventKind::Exited(sim::Exit::Liveness));
    assert_eq!(restarts, not_ready);
    assert!(failed_between(&out, 200, 235) > 500);
    assert_eq!(failed_between(&out, 240, 900), 0);
}

#[test]
fn bad_deploy_rolls_out_within_surge_and_unavailability() {
    let out = sim::run(&bundled("bad-deploy.toml")).unwrap();
    let ready = col(&out, "orders", |s| s.ready);
    let active = col(&out, "orders", |s| s.scheduled - s.terminating);
    // 4 replicas, 25 % / 25 %: at most 5 pods (not counting pods still
    // draining, as Kubernetes does not), at least 3 ready.
    assert!(active.iter().all(|&s| s <= 5), "{active:?}");
    assert!(ready.iter().all(|&r| r >= 3), "{ready:?}");
    let started_new = out
        .pod_events
        .iter()
        .filter(|e| e.kind == PodEventKind::Started && e.pod.starts_with("orders-r1-"))
        .count();
    assert_eq!(started_new, 4);
    let deleted_old = out
        .pod_events
        .iter()
        .filter(|e| e.kind == PodEventKind::Deleted && e.pod.starts_with("orders-r0-"))
        .count();
    assert_eq!(deleted_old, 4);
    assert!(failure_ratio(&out, 100, 300) < 0.01);
    let r = failure_ratio(&out, 500, 1200);
    assert!((r - 0.15).abs() < 0.02, "after the rollout {r}");
}

/// series.csv read by its header's names gives the same columns as the
/// run's per-second series (a rollout has draining pods, so the
/// `_terminating` column is not all zeros).
#[test]
fn series_csv_columns_are_the_headers_columns() {
    let out = sim::run(&bundled("bad-deploy.toml")).unwrap();
    let csv = out.series_csv();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), out.root_seconds.len());
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let column = |name: &str| -> Vec<u32> {
        let i = header.iter().position(|h| *h == name).unwrap();
        rows.iter().map(|r| r[i].parse().unwrap()).collect()
    };
    type Field = fn(&sim::ServiceSecond) -> u32;
    let fields: [(&str, Field); 5] = [
        ("ready", |s| s.ready),
        ("desired", |s| s.desired),
        ("scheduled", |s| s.scheduled),
        ("terminating", |s| s.terminating),
        ("in_system", |s| s.in_system),
    ];
    for (name, field) in fields {
        let seconds = col(&out, "orders", field);
        let written = column(&format!("orders_{name}"));
        assert!(written == seconds[..rows.len()], "{name}");
    }
    assert!(column("orders_terminating").iter().any(|&n| n > 0));
}

#[test]
fn rollback_command_restores_the_previous_revision() {
    let sc = bundled("bad-deploy.toml");
    let mut sim = Simulation::new(&sc).unwrap();
    sim.run_until(Time::from_secs(600));
    sim.apply(&Command::Rollback {
        service: "orders".into(),
        reason: "test".into(),
    });
    let out = sim.run();
    let r = failure_ratio(&out, 900, 1200);
    assert!(r < 0.01, "after the rollback {r}");
    let started_r2 = out
        .pod_events
        .iter()
        .filter(|e| e.kind == PodEventKind::Started && e.pod.starts_with("orders-r2-"))
        .count();
    assert_eq!(started_r2, 4, "undo is a new rollout of the old template");
}

#[test]
fn pods_that_fit_no_node_stay_pending() {
    let text = r#"
name = "tight"
duration_s = 120
seed = 1
[cluster]
node = [{ name = "small", cpu = 1.2, memory_mib = 4096 }]
[slo]
latency_ms = 100
[[load]]
service = "a"
curve = { kind = "constant", rate = 20 }
[[service]]
name = "a"
replicas = 3
cpu_request = 0.5
revision = { service_time_ms = 5 }
"#;
    let out = sim::run(&scenario_text(text)).unwrap();
    let scheduled = col(&out, "a", |s| s.scheduled);
    assert!(
        scheduled.iter().all(|&s| s == 2),
        "two 0.5-core pods fit on 1.2 cores"
    );
    let sc = scenario_text(text);
    let sim = Simulation::new(&sc).unwrap();
    let pods = &sim.observe().services[0].pods;
    assert_eq!(
        pods.iter()
            .filter(|p| p.phase == selfheal::control::PodPhase::Pending)
            .count(),
        1
    );
}

#[test]
fn retries_multiply_load_on_a_failing_dependency() {
    let mut sc = bundled("dependency-failure.toml");
    sc.spec.faults[0].mode = Some(selfheal::scenario::DependencyMode::Errors);
    sc.spec.faults[0].error_rate = Some(1.0);
    sc.spec.mesh.retries.enabled = true;
    let out = sim::run(&sc).unwrap();
    let rate = |a: f64, b: f64| mean_metric(&out, "recommendations", a, b, |m| m.request_rate);
    let (before, during) = (rate(100.0, 290.0), rate(400.0, 590.0));
    // One attempt plus three retries.
    assert!((during / before - 4.0).abs() < 0.1, "{before} -> {during}");
    assert!(out.summary.retries > 0);
}

#[test]
fn outlier_ejection_routes_around_a_hung_pod() {
    let base = bundled("cascading-failure.toml");
    let mut sc = base.clone();
    sc.spec.faults = vec![{
        let mut f = extra_fault("hang", "payments", 200.0, Some(400.0));
        f.pods = Some(1);
        f
    }];
    let with = sim::run(&sc).unwrap();
    sc.spec.mesh.outlier_detection.enabled = false;
    let without = sim::run(&sc).unwrap();
    assert!(with.summary.outlier_ejections > 0);
    assert_eq!(without.summary.outlier_ejections, 0);
    assert!(
        with.summary.timeouts < without.summary.timeouts,
        "{} vs {}",
        with.summary.timeouts,
        without.summary.timeouts
    );
}

#[test]
fn circuit_breaker_overflows_fail_fast() {
    let mut sc = bundled("cascading-failure.toml");
    sc.spec.mesh.circuit_breaker.enabled = true;
    sc.spec.mesh.circuit_breaker.max_requests = 20;
    let out = sim::run(&sc).unwrap();
    assert!(out.summary.circuit_breaker_overflows > 0);
    sc.spec.mesh.circuit_breaker.enabled = false;
    assert_eq!(sim::run(&sc).unwrap().summary.circuit_breaker_overflows, 0);
}

/// Scales one service at a set time; records what it observed.
struct Scripted {
    at: Time,
    done: bool,
    queue: Vec<Command>,
    seen: Vec<(Time, Time)>,
}

impl Controller for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn period(&self) -> Span {
        Span::from_secs(30)
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        self.seen.push((now, obs.services[0].metrics.timestamp));
        if now >= self.at && !self.done {
            self.done = true;
            for service in ["web", "search"] {
                self.queue.push(Command::Scale {
                    service: service.into(),
                    replicas: 8,
                    reason: "scripted".into(),
                });
            }
        }
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.queue.pop()
    }
}

#[test]
fn controller_commands_have_their_real_effect() {
    let sc = bundled("flash-crowd.toml");
    let mut sim = Simulation::new(&sc).unwrap();
    sim.attach(Box::new(Scripted {
        at: Time::from_secs(300),
        done: false,
        queue: vec![],
        seen: vec![],
    }));
    let out = sim.run();
    assert_eq!(out.commands.len(), 2);
    assert_eq!(out.commands[0].0, Time::from_secs(300));
    let desired = col(&out, "web", |s| s.desired);
    let ready = col(&out, "web", |s| s.ready);
    assert_eq!((desired[299], desired[301]), (4, 8));
    assert_eq!(ready[301], 4, "new pods need their start-up time");
    let at = (300..400).find(|&t| ready[t] == 8).expect("scaled up");
    assert!(at > 305, "ready at {at}");
    let base = sim::run(&sc).unwrap();
    assert!(
        out.summary.failed < base.summary.failed / 2,
        "{} vs {}",
        out.summary.failed,
        base.summary.failed
    );
    assert!(out.summary.replica_seconds > base.summary.replica_seconds);
}
