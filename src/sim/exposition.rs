//! A running simulation in the Prometheus text exposition format, with the
//! metric names and labels of the exporters the live adapter's default
//! queries read: cAdvisor (per-container CPU and memory), kube-state-metrics
//! (requests, limits, readiness, restarts, start times, Deployment
//! replicas), HTTP middleware (request counters by code, a latency
//! histogram, requests in flight) and a service mesh's client-side proxies
//! (Istio's per-edge request counter and latency histogram).
//!
//! Served faster than real time by a factor `speed`, counters are divided
//! by it, so that PromQL's per-wall-second `rate()` reads the simulated
//! per-second rates; times are wall-clock unix seconds.

use std::fmt::Write as _;

use super::engine::Simulation;
use super::model::{Phase, Pod, Service};
use crate::time::Time;

/// How simulated time maps to the wall clock of the scrapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Exposition {
    /// The `namespace` label.
    pub namespace: String,
    /// Unix time of simulated time zero.
    pub wall_origin: f64,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// Give every sample its simulated instant (as unix milliseconds) as an
    /// explicit timestamp, so a scraper stores it where it belongs however
    /// late it scrapes. Prometheus marks no series with explicit
    /// timestamps stale (a deleted pod's series then lingers for the
    /// lookback window), so only a driven clock uses it.
    pub stamp_samples: bool,
}

impl Exposition {
    fn unix(&self, t: Time) -> f64 {
        self.wall_origin + t.as_secs_f64() / self.speed
    }
}

/// `# HELP` / `# TYPE` and then the family's sample lines, each with the
/// timestamp `stamp` (unix milliseconds) where there is one.
fn family(
    out: &mut String,
    stamp: Option<i64>,
    name: &str,
    kind: &str,
    help: &str,
    lines: impl IntoIterator<Item = String>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for l in lines {
        match stamp {
            Some(ms) => writeln!(out, "{l} {ms}"),
            None => writeln!(out, "{l}"),
        }
        .expect("writing to a String");
    }
}

/// A per-pod family: its name, type, help, extra labels, and the value of
/// one pod (`None`: the exporter has no series for it).
type PodFamily<'a> = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Box<dyn Fn(&Service, &Pod) -> Option<f64> + 'a>,
);

impl Simulation {
    /// Every metric of the simulation now.
    pub fn exposition(&self, ex: &Exposition) -> String {
        let ns = &ex.namespace;
        let per_wall = |v: f64| v / ex.speed;
        let now = self.now;
        let stamp = ex
            .stamp_samples
            .then(|| (ex.unix(now) * 1000.0).round() as i64);
        let mut out = String::new();
        let pods: Vec<(&Service, u32)> = self
            .services
            .iter()
            .flat_map(|s| s.pods.iter().map(move |&p| (s, p)))
            .filter(|&(_, p)| self.pods[p as usize].is_alive())
            .collect();
        let container = ",container=\"app\"";
        let per_pod: [PodFamily; 7] = [
            (
                "container_cpu_usage_seconds_total",
                "counter",
                "Cumulative CPU time consumed (cAdvisor).",
                container,
                Box::new(|s, p| {
                    p.is_scheduled()
                        .then(|| per_wall(p.cpu_seconds_at(now, s.cpu_limit)))
                }),
            ),
            (
                "container_memory_working_set_bytes",
                "gauge",
                "Working set (cAdvisor).",
                container,
                Box::new(|s, p| {
                    matches!(p.phase, Phase::Running | Phase::Terminating)
                        .then(|| p.memory(s.revision(p.revision), now) * 1048576.0)
                }),
            ),
            (
                "kube_pod_container_resource_requests",
                "gauge",
                "Requested resources (kube-state-metrics).",
                ",container=\"app\",resource=\"cpu\",unit=\"core\"",
                Box::new(|s, _| Some(s.cpu_request)),
            ),
            (
                "kube_pod_container_resource_limits",
                "gauge",
                "Resource limits (kube-state-metrics).",
                ",container=\"app\",resource=\"memory\",unit=\"byte\"",
                Box::new(|s, _| Some(s.memory_limit * 1048576.0)),
            ),
            (
                "kube_pod_status_ready",
                "gauge",
                "Whether the pod is ready (kube-state-metrics).",
                ",condition=\"true\"",
                Box::new(|_, p| Some(p.ready as u8 as f64)),
            ),
            (
                "kube_pod_container_status_restarts_total",
                "counter",
                "Container restarts (kube-state-metrics).",
                container,
                Box::new(|_, p| Some(p.restarts as f64)),
            ),
            (
                "kube_pod_start_time",
                "gauge",
                "Start time in unix seconds (kube-state-metrics).",
                "",
                Box::new(|_, p| Some(ex.unix(p.started))),
            ),
        ];
        for (name, kind, help, extra, value) in &per_pod {
            let lines = pods.iter().filter_map(|&(s, p)| {
                let v = value(s, &self.pods[p as usize])?;
                let pod = self.pod_name(p);
                Some(format!(
                    "{name}{{namespace=\"{ns}\",pod=\"{pod}\"{extra}}} {v}"
                ))
            });
            family(&mut out, stamp, name, kind, help, lines);
        }
        let deployment = |name: &str, value: &dyn Fn(&Service) -> usize| {
            self.services
                .iter()
                .map(|s| {
                    format!(
                        "{name}{{namespace=\"{ns}\",deployment=\"{}\"}} {}",
                        s.name,
                        value(s)
                    )
                })
                .collect::<Vec<_>>()
        };
        family(
            &mut out,
            stamp,
            "kube_deployment_spec_replicas",
            "gauge",
            "Desired replicas (kube-state-metrics).",
            deployment("kube_deployment_spec_replicas", &|s| s.desired as usize),
        );
        family(
            &mut out,
            stamp,
            "kube_deployment_status_replicas_ready",
            "gauge",
            "Ready replicas (kube-state-metrics).",
            deployment("kube_deployment_status_replicas_ready", &|s| {
                s.pods
                    .iter()
                    .filter(|&&p| self.pods[p as usize].ready)
                    .count()
            }),
        );
        let http = |s: &str| format!("namespace=\"{ns}\",service=\"{s}\"");
        family(
            &mut out,
            stamp,
            "http_requests_total",
            "counter",
            "Requests served, by status code.",
            self.services.iter().flat_map(|s| {
                let c = &s.counters;
                [("200", c.successes), ("500", c.failures)].map(|(code, n)| {
                    format!(
                        "http_requests_total{{{},code=\"{code}\"}} {}",
                        http(&s.name),
                        per_wall(n as f64)
                    )
                })
            }),
        );
        family(
            &mut out,
            stamp,
            "http_request_duration_seconds",
            "histogram",
            "Request latency.",
            self.services.iter().flat_map(|s| {
                self.histogram_lines(
                    "http_request_duration_seconds",
                    &http(&s.name),
                    &s.counters,
                    1.0,
                    ex.speed,
                )
            }),
        );
        self.mesh_families(&mut out, ex, stamp);
        family(
            &mut out,
            stamp,
            "http_requests_in_flight",
            "gauge",
            "Requests holding a connection or queued.",
            self.services.iter().map(|s| {
                format!(
                    "http_requests_in_flight{{{}}} {}",
                    http(&s.name),
                    s.in_system
                )
            }),
        );
        out
    }

    /// Each call edge as a service mesh's client-side proxy reports it,
    /// under Istio's standard metric names and labels
    /// (`istio_requests_total`, `istio_request_duration_milliseconds`,
    /// `reporter="source"`): the calls one workload makes to another,
    /// failed ones (errors, timeouts, refusals) as 503, the code Envoy
    /// gives a failed upstream.
    fn mesh_families(&self, out: &mut String, ex: &Exposition, stamp: Option<i64>) {
        let ns = &ex.namespace;
        let per_wall = |v: f64| v / ex.speed;
        let edges: Vec<(&str, &str, &super::model::Counters)> = self
            .edges
            .iter()
            .filter_map(|e| {
                let from = e.from?;
                Some((
                    self.services[from as usize].name.as_str(),
                    self.services[e.to as usize].name.as_str(),
                    &e.counters,
                ))
            })
            .collect();
        let labels = |from: &str, to: &str| {
            format!(
                "reporter=\"source\",source_workload=\"{from}\",source_workload_namespace=\"{ns}\",destination_workload=\"{to}\",destination_workload_namespace=\"{ns}\",destination_service_name=\"{to}\""
            )
        };
        family(
            out,
            stamp,
            "istio_requests_total",
            "counter",
            "Requests from one workload to another, by response code (Istio, client side).",
            edges.iter().flat_map(|&(from, to, c)| {
                [("200", c.successes), ("503", c.failures)].map(|(code, n)| {
                    format!(
                        "istio_requests_total{{{},response_code=\"{code}\"}} {}",
                        labels(from, to),
                        per_wall(n as f64)
                    )
                })
            }),
        );
        family(
            out,
            stamp,
            "istio_request_duration_milliseconds",
            "histogram",
            "Call latency as the caller's proxy sees it (Istio, client side).",
            edges.iter().flat_map(|&(from, to, c)| {
                self.histogram_lines(
                    "istio_request_duration_milliseconds",
                    &labels(from, to),
                    c,
                    1000.0,
                    ex.speed,
                )
            }),
        );
    }

    /// The `_bucket` lines (cumulative, bounds times `unit`, `+Inf` last)
    /// and the `_count` line of one latency histogram, counts divided by
    /// the speed-up.
    fn histogram_lines(
        &self,
        name: &str,
        labels: &str,
        counters: &super::model::Counters,
        unit: f64,
        speed: f64,
    ) -> Vec<String> {
        let bounds = self.buckets.bounds();
        let mut cumulative = 0u64;
        let mut lines: Vec<String> = counters
            .latency
            .counts()
            .iter()
            .enumerate()
            .map(|(k, n)| {
                cumulative += n;
                // `b * 1.0` is `b`: seconds print exactly as before.
                let le = bounds
                    .get(k)
                    .map_or("+Inf".to_string(), |b| (b * unit).to_string());
                format!(
                    "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                    cumulative as f64 / speed
                )
            })
            .collect();
        lines.push(format!(
            "{name}_count{{{labels}}} {}",
            cumulative as f64 / speed
        ));
        lines
    }
}
