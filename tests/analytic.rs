//! Analytic checks: the simulator against closed-form queueing results.
//!
//! Each test states its utilisation and sample count. Servers are pods with
//! one core and `max_connections = 1` (one request at a time, FIFO), or more
//! connections for processor sharing; no faults, no probes failing, initial
//! pods ready at time zero.

mod common;

use common::{rel_err, scenario_text};
use selfheal::sim;

/// A single-service queueing system with exponential service times.
struct Queue {
    pods: u32,
    lambda: f64,
    service_ms: f64,
    max_conn: u32,
    queue: &'static str,
    lb: &'static str,
    duration: f64,
    seed: u64,
}

impl Queue {
    /// One-request-at-a-time pods (FIFO servers) with per-pod queues.
    fn fifo(pods: u32, lambda: f64, service_ms: f64, duration: f64, seed: u64) -> Self {
        Queue {
            pods,
            lambda,
            service_ms,
            max_conn: 1,
            queue: "per_pod",
            lb: "round_robin",
            duration,
            seed,
        }
    }

    fn scenario(&self) -> selfheal::scenario::LoadedScenario {
        let Queue {
            pods,
            lambda,
            service_ms,
            max_conn,
            queue,
            lb,
            duration,
            seed,
        } = self;
        scenario_text(&format!(
            r#"
name = "analytic"
duration_s = {duration}
seed = {seed}
[slo]
latency_ms = 1000
[[load]]
service = "s"
timeout_ms = 1e9
curve = {{ kind = "constant", rate = {lambda} }}
[[service]]
name = "s"
replicas = {pods}
cpu_request = 1.0
cpu_limit = 1.0
max_connections = {max_conn}
queue = "{queue}"
queue_capacity = 1000000
lb = "{lb}"
revision = {{ service_time_ms = {service_ms}, service_time_cv = 1.0 }}
[cluster]
node = [{{ name = "n", cpu = 64, memory_mib = 262144 }}]
"#
        ))
    }
}

/// Erlang C: probability that an arrival waits in an M/M/c queue, and the
/// mean wait.
fn erlang_c(c: u32, lambda: f64, mu: f64) -> (f64, f64) {
    let a = lambda / mu;
    let rho = a / c as f64;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..c {
        term *= a / k as f64;
        sum += term;
    }
    let last = term * a / c as f64 / (1.0 - rho);
    let p_wait = last / (sum + last);
    (p_wait, p_wait / (c as f64 * mu - lambda))
}

#[test]
fn mmc_shared_queue_matches_erlang_c() {
    // c = 4, mu = 100/s per pod, rho = 0.8: lambda = 320/s; 3,000 s gives
    // about 960,000 requests.
    let (c, mu, lambda) = (4, 100.0, 320.0);
    let sc = Queue {
        queue: "shared",
        ..Queue::fifo(c, lambda, 1000.0 / mu, 3000.0, 11)
    }
    .scenario();
    let out = sim::run(&sc).unwrap();
    let st = &out.service_stats[0];
    assert!(st.started > 900_000, "{}", st.started);
    let (p_wait, wq) = erlang_c(c, lambda, mu);
    let (mp, mw) = (st.wait_probability, st.mean_wait_s);
    assert!(
        rel_err(mp, p_wait) < 0.03,
        "P(wait) {mp} vs Erlang C {p_wait}"
    );
    assert!(rel_err(mw, wq) < 0.03, "Wq {mw} vs Erlang C {wq}");
}

#[test]
fn mm1_p99_latency_is_ln100_over_mu_minus_lambda() {
    // rho = 0.5 (lambda 50/s, mu 100/s); 20,000 s gives about 1,000,000
    // requests. The sojourn time of M/M/1-FIFO is exponential with rate
    // mu - lambda, so p99 = ln(100) / 50 s = 92.1 ms. (At rho = 0.8 the
    // queue is so autocorrelated that a million samples scatter the p99 by
    // +-3 % from seed to seed; at 0.5 the scatter is +-1.5 %.)
    let sc = Queue::fifo(1, 50.0, 10.0, 20_000.0, 12).scenario();
    let out = sim::run(&sc).unwrap();
    let st = &out.service_stats[0];
    assert!(st.completed > 950_000, "{}", st.completed);
    let p99 = st.latency.quantile(&out.buckets, 0.99);
    let expected = 100f64.ln() / 50.0;
    assert!(rel_err(p99, expected) < 0.03, "p99 {p99} vs {expected}");
    assert!(
        rel_err(st.mean_sojourn_s, 1.0 / 50.0) < 0.03,
        "mean {}",
        st.mean_sojourn_s
    );
}

#[test]
fn mm1_processor_sharing_mean_matches() {
    // M/M/1-PS has the same mean sojourn as FIFO, 1 / (mu - lambda) = 50 ms,
    // at rho = 0.8; 5,000 s, about 400,000 requests.
    let sc = Queue {
        max_conn: 1000,
        ..Queue::fifo(1, 80.0, 10.0, 5000.0, 13)
    }
    .scenario();
    let out = sim::run(&sc).unwrap();
    let st = &out.service_stats[0];
    assert!(
        rel_err(st.mean_sojourn_s, 0.05) < 0.03,
        "mean {}",
        st.mean_sojourn_s
    );
}

#[test]
fn random_routing_behaves_as_independent_mm1_queues() {
    // 4 pods, random routing, lambda 4 x 50/s, mu 100/s: each pod is M/M/1 at
    // rho = 0.5. 5,000 s, about 1,000,000 requests.
    let sc = Queue {
        lb: "random",
        ..Queue::fifo(4, 200.0, 10.0, 5000.0, 14)
    }
    .scenario();
    let out = sim::run(&sc).unwrap();
    let st = &out.service_stats[0];
    assert!(st.completed > 950_000, "{}", st.completed);
    assert!(
        rel_err(st.mean_sojourn_s, 0.02) < 0.03,
        "mean sojourn {}",
        st.mean_sojourn_s
    );
    assert!(
        rel_err(st.wait_probability, 0.5) < 0.03,
        "P(wait) {}",
        st.wait_probability
    );
    let p99 = st.latency.quantile(&out.buckets, 0.99);
    assert!(rel_err(p99, 100f64.ln() / 50.0) < 0.03, "p99 {p99}");
    // Round robin over the same pods is far better than random (it smooths
    // arrivals), which shows the routing policy is really in effect.
    let rr = sim::run(&Queue::fifo(4, 200.0, 10.0, 1000.0, 14).scenario()).unwrap();
    assert!(rr.service_stats[0].mean_sojourn_s < 0.8 * st.mean_sojourn_s);
}

#[test]
fn littles_law_holds_for_active_connections() {
    // The quick-start call graph (processor sharing, parallel calls, errors):
    // time-average requests in system = throughput x mean time in system,
    // per service, within 2 %. 600 s, about 180,000 root requests.
    let out = sim::run(&common::bundled("quickstart.toml")).unwrap();
    let duration = out.summary.duration_s;
    for st in &out.service_stats {
        let l = st.mean_in_system;
        let lambda_w = st.completed as f64 / duration * st.mean_sojourn_s;
        assert!(
            rel_err(l, lambda_w) < 0.02,
            "{}: L {l} vs lambda W {lambda_w}",
            st.name
        );
    }
}

#[test]
fn crash_loop_restarts_follow_kubelet_backoff() {
    // A build that exits 1 s after every start: the kubelet waits 10, 20, 40,
    // ... capped at 300 s between an exit and the next start.
    let text = r#"
name = "crashloop"
duration_s = 2000
seed = 3
[slo]
latency_ms = 100
[[load]]
service = "s"
curve = { kind = "constant", rate = 1 }
[[service]]
name = "s"
replicas = 1
startup = { dist = "fixed", value_s = 0 }
revision = { service_time_ms = 1, crash_after_s = 1 }
"#;
    let out = sim::run(&scenario_text(text)).unwrap();
    let mut gaps = Vec::new();
    let mut last_exit = None;
    for e in &out.pod_events {
        match e.kind {
            sim::PodEventKind::Exited(sim::Exit::Crash) => last_exit = Some(e.t),
            sim::PodEventKind::Started => {
                if let Some(x) = last_exit.take() {
                    gaps.push((e.t - x).as_secs_f64().round() as u64);
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        &gaps[..8],
        &[10, 20, 40, 80, 160, 300, 300, 300],
        "{gaps:?}"
    );
    assert_eq!(out.summary.restarts as usize, gaps.len() + 1);
}
