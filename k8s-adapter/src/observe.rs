//! Observations from Prometheus (and the Kubernetes API's reflected pod
//! state, see `watch`): the same `Observation` the simulator hands the
//! control core, built from PromQL answers.

use std::collections::BTreeMap;

use selfheal_core::control::{Dependency, Observation, PodPhase, PodView, ServiceView};
use selfheal_core::metrics::{ServiceMetrics, histogram_fraction, histogram_quantile};
use selfheal_core::time::Time;

use crate::clock::Clock;
use crate::config::{AdapterConfig, ServiceConfig};
use crate::prom::{PromError, Prometheus, Sample, Series};
use crate::watch::{ClusterState, ReplicaState};

const MIB: f64 = 1024.0 * 1024.0;

/// The single value of a query that must answer (a missing series means a
/// missing exporter or a wrong query: no decision is made on it).
fn one(samples: &[Sample], query: &str) -> Result<f64, PromError> {
    samples
        .first()
        .map(|s| s.value)
        .ok_or_else(|| PromError::Empty {
            query: query.to_string(),
        })
}

/// A rate or ratio that is legitimately absent or NaN without traffic.
fn zero_if_idle(samples: &[Sample]) -> f64 {
    samples
        .first()
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

fn by_pod(samples: Vec<Sample>) -> BTreeMap<String, f64> {
    samples
        .into_iter()
        .filter_map(|s| s.labels.get("pod").cloned().map(|p| (p, s.value)))
        .collect()
}

/// Percentiles in ms from per-bucket rates `by (le)`, NaN without traffic.
pub fn latency_ms(buckets: &[Sample], q: f64) -> f64 {
    1000.0 * histogram_quantile(q, &cumulative(buckets))
}

/// `(le, rate)` pairs sorted by bound, `+Inf` last.
fn cumulative(buckets: &[Sample]) -> Vec<(f64, f64)> {
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .filter_map(|s| {
            let le = s.labels.get("le")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, s.value))
        })
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    b
}

/// Why there is no observation this tick.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Prometheus(#[from] PromError),
    #[error("Kubernetes API: {0}")]
    Cluster(#[from] crate::watch::NoDeployment),
}

/// One service's view at wall-clock `at` (unix seconds). With `state`, its
/// replicas and pods (phase, readiness, node, restarts, revision, requests
/// and limits) come from the Kubernetes API's reflected objects and only
/// usage from Prometheus; without, from kube-state-metrics series.
pub async fn service_view(
    prom: &Prometheus,
    cfg: &AdapterConfig,
    svc: &ServiceConfig,
    at: f64,
    clock: &Clock,
    state: Option<&ClusterState>,
) -> Result<ServiceView, ObserveError> {
    let q = &cfg.queries;
    let ask = |t: &str| {
        let query = cfg.query(t, svc);
        async move { prom.query(&query, at).await.map(|s| (query, s)) }
    };
    let (cpu_q, cpu) = ask(&q.cpu_usage).await?;
    let (mem_q, mem) = ask(&q.memory_usage).await?;
    let (_, rate) = ask(&q.request_rate).await?;
    let (_, errors) = ask(&q.error_rate).await?;
    let (_, buckets) = ask(&q.latency_buckets).await?;
    let (_, active) = ask(&q.active_connections).await?;
    let now = clock.core_time(at);
    let cpu_by_pod = by_pod(ask(&q.pod_cpu).await?.1);
    let mem_by_pod = by_pod(ask(&q.pod_memory).await?.1);
    let request_by_pod = by_pod(ask(&q.pod_cpu_request).await?.1);
    let limit_by_pod = by_pod(ask(&q.pod_memory_limit).await?.1);
    // Usage from Prometheus; requests and limits from the pod spec when it
    // has them, else from kube-state-metrics.
    let usage = |mut p: PodView| {
        if let Some(&c) = cpu_by_pod.get(&p.name) {
            p.cpu_cores = c;
            p.cpu_sampled_at = Some(now);
        }
        p.memory_mib = mem_by_pod.get(&p.name).copied().unwrap_or(0.0) / MIB;
        if p.cpu_request == 0.0 {
            p.cpu_request = request_by_pod.get(&p.name).copied().unwrap_or(0.0);
        }
        if p.memory_limit_mib == 0.0 {
            p.memory_limit_mib = limit_by_pod.get(&p.name).copied().unwrap_or(0.0) / MIB;
        }
        p
    };
    let replicas = match state {
        Some(state) => {
            let r = state.replicas(svc.deployment(), clock)?;
            ReplicaState {
                pods: r.pods.into_iter().map(usage).collect(),
                ..r
            }
        }
        None => {
            let (ready_q, ready) = ask(&q.ready_replicas).await?;
            let (desired_q, desired) = ask(&q.desired_replicas).await?;
            let ready_by_pod = by_pod(ask(&q.pod_ready).await?.1);
            let restarts_by_pod = by_pod(ask(&q.pod_restarts).await?.1);
            let start_by_pod = by_pod(ask(&q.pod_start_time).await?.1);
            let pods = ready_by_pod
                .iter()
                .map(|(name, &ready)| {
                    let started = start_by_pod
                        .get(name)
                        .map_or(Time::ZERO, |&s| clock.core_time(s));
                    usage(PodView {
                        name: name.clone(),
                        phase: PodPhase::Running,
                        ready: ready >= 1.0,
                        revision: 0,
                        node: String::new(),
                        cpu_cores: 0.0,
                        cpu_sampled_at: None,
                        cpu_request: 0.0,
                        cpu_limit: 0.0,
                        memory_mib: 0.0,
                        memory_limit_mib: 0.0,
                        restarts: restarts_by_pod.get(name).copied().unwrap_or(0.0) as u32,
                        created: started,
                        started,
                        last_transition: started,
                    })
                })
                .collect();
            ReplicaState {
                desired: one(&desired, &desired_q)?.max(0.0) as u32,
                ready: one(&ready, &ready_q)?.max(0.0) as u32,
                revision: 0,
                pods,
            }
        }
    };
    let metrics = ServiceMetrics {
        timestamp: now,
        cpu_usage: one(&cpu, &cpu_q)?,
        memory_usage: one(&mem, &mem_q)?,
        request_rate: zero_if_idle(&rate),
        error_rate: zero_if_idle(&errors),
        latency_p50: latency_ms(&buckets, 0.5),
        latency_p99: latency_ms(&buckets, 0.99),
        active_connections: zero_if_idle(&active).max(0.0) as u32,
        ready_replicas: replicas.ready,
        desired_replicas: replicas.desired,
    };
    Ok(ServiceView {
        name: svc.name.clone(),
        metrics,
        desired_replicas: replicas.desired,
        revision: replicas.revision,
        max_connections: svc.max_connections,
        pods: replicas.pods,
        concurrency: Vec::new(),
        requests: Vec::new(),
        dependencies: dependencies(
            cfg,
            svc,
            ask(&q.edge_request_rate).await?.1,
            ask(&q.edge_error_rate).await?.1,
            ask(&q.edge_latency_buckets_ms).await?.1,
        ),
        // The orchestrator needs to know there is a standby; the fail-over
        // itself points the Service at `backup_selector`.
        backup: svc.backup_selector.as_ref().map(|sel| {
            sel.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }),
    })
}

/// The configured services `svc` calls, from the mesh's per-edge answers
/// keyed by `destination_workload` (a Deployment): every callee with a
/// request-rate series, its error ratio (0 without traffic) and p99 in ms
/// (NaN without traffic), as the simulator's edge metrics give them.
/// Callees that are not configured services are left out: the core can
/// act only on those.
pub fn dependencies(
    cfg: &AdapterConfig,
    svc: &ServiceConfig,
    rates: Vec<Sample>,
    errors: Vec<Sample>,
    buckets_ms: Vec<Sample>,
) -> Vec<Dependency> {
    let by_callee = |samples: Vec<Sample>| -> BTreeMap<String, Vec<Sample>> {
        let mut m: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for s in samples {
            if let Some(d) = s.labels.get("destination_workload").cloned() {
                m.entry(d).or_default().push(s);
            }
        }
        m
    };
    let errors = by_callee(errors);
    let buckets = by_callee(buckets_ms);
    by_callee(rates)
        .into_keys()
        .filter_map(|deployment| {
            let callee = cfg.services.iter().find(|c| c.deployment() == deployment)?;
            Some(Dependency {
                service: callee.name.clone(),
                fallback: svc.fallback_for.contains(&callee.name),
                error_rate: errors.get(&deployment).map_or(0.0, |e| zero_if_idle(e)),
                latency_p99: buckets
                    .get(&deployment)
                    .map_or(f64::NAN, |b| histogram_quantile(0.99, &cumulative(b))),
            })
        })
        .collect()
}

/// The value of every series of a range answer at each timestamp.
fn at_times(series: &[Series]) -> BTreeMap<u64, f64> {
    series
        .first()
        .map(|s| {
            s.points
                .iter()
                .map(|&(t, v)| ((t * 1000.0).round() as u64, v))
                .collect()
        })
        .unwrap_or_default()
}

/// A scrape read back from Prometheus, with its SLI: the share of requests
/// over the rate window that succeeded within the SLO latency, taken as
/// (1 - error rate) x the latency histogram's fraction at or below
/// `slo_latency_ms` (`histogram_fraction`, the inverse of the percentiles'
/// interpolation); 1 without traffic, as the simulator's SLI.
#[derive(Clone, Debug, PartialEq)]
pub struct Scrape {
    pub metrics: ServiceMetrics,
    pub sli: f64,
}

/// The share of `buckets` (per-bucket rates `by (le)`) at or below `ms`.
pub fn fraction_within(buckets: &[Sample], ms: f64) -> f64 {
    histogram_fraction(ms / 1000.0, &cumulative(buckets))
}

/// One service's scrapes from `from` to `to` (unix seconds) every
/// `interval_s`, read back with range queries: the history the models need
/// at start. Steps where a required series has no point are left out.
pub async fn history(
    prom: &Prometheus,
    cfg: &AdapterConfig,
    svc: &ServiceConfig,
    from: f64,
    to: f64,
    clock: &Clock,
) -> Result<Vec<Scrape>, PromError> {
    let q = &cfg.queries;
    let range = |template| range_of(prom, cfg, svc, template, from, to);
    let cpu = at_times(&range(&q.cpu_usage).await?);
    let mem = at_times(&range(&q.memory_usage).await?);
    let rate = at_times(&range(&q.request_rate).await?);
    let errors = at_times(&range(&q.error_rate).await?);
    let active = at_times(&range(&q.active_connections).await?);
    let ready = at_times(&range(&q.ready_replicas).await?);
    let desired = at_times(&range(&q.desired_replicas).await?);
    let buckets = range(&q.latency_buckets).await?;
    let finite = |m: &BTreeMap<u64, f64>, t: u64| m.get(&t).copied().filter(|v| v.is_finite());
    Ok(cpu
        .keys()
        .filter_map(|&t| {
            let at_t: Vec<Sample> = buckets
                .iter()
                .filter_map(|s| {
                    let v = s
                        .points
                        .iter()
                        .find(|p| (p.0 * 1000.0).round() as u64 == t)?
                        .1;
                    Some(Sample {
                        labels: s.labels.clone(),
                        value: v,
                    })
                })
                .collect();
            let error_rate = finite(&errors, t).unwrap_or(0.0);
            let within = fraction_within(&at_t, cfg.slo_latency_ms);
            let sli = if within.is_nan() {
                1.0
            } else {
                (1.0 - error_rate).clamp(0.0, 1.0) * within
            };
            let metrics = ServiceMetrics {
                timestamp: clock.core_time(t as f64 / 1000.0),
                cpu_usage: finite(&cpu, t)?,
                memory_usage: finite(&mem, t)?,
                request_rate: finite(&rate, t).unwrap_or(0.0),
                error_rate,
                latency_p50: latency_ms(&at_t, 0.5),
                latency_p99: latency_ms(&at_t, 0.99),
                active_connections: finite(&active, t).unwrap_or(0.0).max(0.0) as u32,
                ready_replicas: finite(&ready, t)?.max(0.0) as u32,
                desired_replicas: finite(&desired, t)?.max(0.0) as u32,
            };
            Some(Scrape { metrics, sli })
        })
        .collect())
}

/// Every configured service at `at`; the first failure fails the whole
/// observation, so the core never decides on half a picture.
pub async fn observe(
    prom: &Prometheus,
    cfg: &AdapterConfig,
    at: f64,
    clock: &Clock,
    state: Option<&ClusterState>,
) -> Result<Observation, ObserveError> {
    let mut services = Vec::with_capacity(cfg.services.len());
    for svc in &cfg.services {
        services.push(service_view(prom, cfg, svc, at, clock, state).await?);
    }
    Ok(Observation {
        now: clock.core_time(at),
        services,
    })
}

/// `template` filled for `svc` and asked over `[from, to]` (wall seconds)
/// at the scrape interval.
async fn range_of(
    prom: &Prometheus,
    cfg: &AdapterConfig,
    svc: &ServiceConfig,
    template: &str,
    from: f64,
    to: f64,
) -> Result<Vec<Series>, PromError> {
    let query = cfg.query(template, svc);
    prom.query_range(&query, from, to, cfg.wall(cfg.interval_s))
        .await
}

/// The calls `svc` made over `[from, to]`, read back like [`history`]:
/// per scrape and callee (by `destination_workload`, configured services
/// only) the request rate, error ratio and p50 / p99 in ms, as rows of
/// `selfheal_core::metrics::EDGES_CSV_HEADER` with times in core seconds.
pub async fn edge_history(
    prom: &Prometheus,
    cfg: &AdapterConfig,
    svc: &ServiceConfig,
    from: f64,
    to: f64,
    clock: &Clock,
) -> Result<Vec<String>, PromError> {
    let q = &cfg.queries;
    let range = |template| range_of(prom, cfg, svc, template, from, to);
    let rates = range(&q.edge_request_rate).await?;
    let errors = range(&q.edge_error_rate).await?;
    let buckets = range(&q.edge_latency_buckets_ms).await?;
    let callee = |s: &Series| {
        let d = s.labels.get("destination_workload")?;
        cfg.services.iter().find(|c| c.deployment() == *d)
    };
    let at = |s: &Series, t: u64| {
        s.points
            .iter()
            .find(|p| (p.0 * 1000.0).round() as u64 == t)
            .map(|p| p.1)
            .filter(|v| v.is_finite())
    };
    let mut rows = Vec::new();
    for r in &rates {
        let Some(to_svc) = callee(r) else { continue };
        let dest = r.labels.get("destination_workload");
        for &(wall, rate) in &r.points {
            let t = (wall * 1000.0).round() as u64;
            let error = errors
                .iter()
                .find(|e| e.labels.get("destination_workload") == dest)
                .and_then(|e| at(e, t))
                .unwrap_or(0.0);
            let at_t: Vec<Sample> = buckets
                .iter()
                .filter(|b| b.labels.get("destination_workload") == dest)
                .filter_map(|b| {
                    Some(Sample {
                        labels: b.labels.clone(),
                        value: at(b, t)?,
                    })
                })
                .collect();
            let ms = |q: f64| histogram_quantile(q, &cumulative(&at_t));
            let cell = |v: f64| {
                if v.is_finite() {
                    v.to_string()
                } else {
                    String::new()
                }
            };
            rows.push((
                t,
                format!(
                    "{},{}->{},{},{},{},{}",
                    clock.core_time(t as f64 / 1000.0).as_secs_f64(),
                    svc.name,
                    to_svc.name,
                    rate,
                    error,
                    cell(ms(0.5)),
                    cell(ms(0.99))
                ),
            ));
        }
    }
    rows.sort_by_key(|r| r.0);
    Ok(rows.into_iter().map(|r| r.1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(le: &str, v: f64) -> Sample {
        Sample {
            labels: [("le".to_string(), le.to_string())].into(),
            value: v,
        }
    }

    #[test]
    fn percentiles_come_from_the_shared_histogram_quantile() {
        // 10/s under 50 ms, 10/s more under 100 ms: the median is at 50 ms,
        // the p99 interpolates inside the second bucket.
        let b = [
            bucket("0.1", 20.0),
            bucket("+Inf", 20.0),
            bucket("0.05", 10.0),
        ];
        assert!((latency_ms(&b, 0.5) - 50.0).abs() < 1e-9);
        assert!((latency_ms(&b, 0.99) - 99.0).abs() < 1e-9);
        assert!(latency_ms(&[], 0.5).is_nan());
    }

    fn edge(to: &str, le: Option<&str>, v: f64) -> Sample {
        let mut labels: BTreeMap<String, String> =
            [("destination_workload".to_string(), to.to_string())].into();
        if let Some(le) = le {
            labels.insert("le".into(), le.into());
        }
        Sample { labels, value: v }
    }

    #[test]
    fn dependencies_are_the_configured_callees_the_mesh_reports() {
        let cfg = AdapterConfig::parse(
            r#"
prometheus = "http://prometheus:9090"
namespace = "shop"
[[service]]
name = "web"
fallback_for = ["search"]
[[service]]
name = "api"
deployment = "api-v2"
[[service]]
name = "search"
"#,
            "a.toml",
        )
        .unwrap();
        let web = &cfg.services[0];
        let deps = dependencies(
            &cfg,
            web,
            // A callee outside the configuration (a database) is left out;
            // an idle call is still a route.
            vec![
                edge("api-v2", None, 10.0),
                edge("search", None, 0.0),
                edge("postgres", None, 3.0),
            ],
            vec![edge("api-v2", None, 0.25), edge("search", None, f64::NAN)],
            vec![
                edge("api-v2", Some("50"), 5.0),
                edge("api-v2", Some("100"), 10.0),
                edge("api-v2", Some("+Inf"), 10.0),
                edge("search", Some("+Inf"), 0.0),
            ],
        );
        assert_eq!(deps.len(), 2, "{deps:?}");
        let (api, search) = (&deps[0], &deps[1]);
        assert_eq!(
            (api.service.as_str(), api.fallback, api.error_rate),
            ("api", false, 0.25)
        );
        // Milliseconds, interpolated in the (50, 100] bucket.
        assert!((api.latency_p99 - 99.0).abs() < 1e-9, "{api:?}");
        assert_eq!(
            (search.service.as_str(), search.fallback, search.error_rate),
            ("search", true, 0.0)
        );
        assert!(search.latency_p99.is_nan());
        let err = AdapterConfig::parse(
            "prometheus = \"http://p:9090\"\nnamespace = \"shop\"\n[[service]]\nname = \"web\"\nfallback_for = [\"serach\"]\n",
            "b.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("b.toml:5")
                && err.contains("service[0].fallback_for")
                && err.contains("serach"),
            "{err}"
        );
    }
}
