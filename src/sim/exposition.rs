//! A running simulation in the Prometheus text exposition format, with the
//! metric names and labels of the exporters the live adapter's default
//! queries read: cAdvisor (per-container CPU and memory), kube-state-metrics
//! (requests, limits, readiness, restarts, start times, Deployment
//! replicas) and HTTP middleware (request counters by code, a latency
//! histogram, requests in flight).
//!
//! Served faster than real time by a factor `speed`, counters are divided
//! by it, so that PromQL's per-wall-second `rate()` reads the simulated
//! per-second rates; times are wall-clock unix seconds.

use std::fmt::Write as _;

use super::engine::Simulation;
use super::model::Phase;
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
}

impl Exposition {
    fn unix(&self, t: Time) -> f64 {
        self.wall_origin + t.as_secs_f64() / self.speed
    }
}

impl Simulation {
    /// Every metric of the simulation now.
    pub fn exposition(&self, ex: &Exposition) -> String {
        let ns = &ex.namespace;
        let per_wall = |v: f64| v / ex.speed;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        };
        let pods: Vec<(usize, u32)> = self
            .services
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.pods.iter().map(move |&p| (i, p)))
            .filter(|&(_, p)| self.pods[p as usize].is_alive())
            .collect();
        let pod_line = |name: &str, p: u32, extra: &str, value: f64| {
            let pod = self.pod_name(p);
            format!("{name}{{namespace=\"{ns}\",pod=\"{pod}\"{extra}}} {value}")
        };
        family(
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative CPU time consumed (cAdvisor).",
            pods.iter()
                .filter(|&&(_, p)| self.pods[p as usize].is_scheduled())
                .map(|&(i, p)| {
                    let used =
                        self.pods[p as usize].cpu_seconds_at(self.now, self.services[i].cpu_limit);
                    pod_line(
                        "container_cpu_usage_seconds_total",
                        p,
                        ",container=\"app\"",
                        per_wall(used),
                    )
                })
                .collect(),
        );
        family(
            "container_memory_working_set_bytes",
            "gauge",
            "Working set (cAdvisor).",
            pods.iter()
                .filter(|&&(_, p)| {
                    matches!(
                        self.pods[p as usize].phase,
                        Phase::Running | Phase::Terminating
                    )
                })
                .map(|&(i, p)| {
                    let s = &self.services[i];
                    let pod = &self.pods[p as usize];
                    let mib = pod.memory(s.revision(pod.revision), self.now);
                    pod_line(
                        "container_memory_working_set_bytes",
                        p,
                        ",container=\"app\"",
                        mib * 1048576.0,
                    )
                })
                .collect(),
        );
        family(
            "kube_pod_container_resource_requests",
            "gauge",
            "Requested resources (kube-state-metrics).",
            pods.iter()
                .map(|&(i, p)| {
                    pod_line(
                        "kube_pod_container_resource_requests",
                        p,
                        ",container=\"app\",resource=\"cpu\",unit=\"core\"",
                        self.services[i].cpu_request,
                    )
                })
                .collect(),
        );
        family(
            "kube_pod_container_resource_limits",
            "gauge",
            "Resource limits (kube-state-metrics).",
            pods.iter()
                .map(|&(i, p)| {
                    pod_line(
                        "kube_pod_container_resource_limits",
                        p,
                        ",container=\"app\",resource=\"memory\",unit=\"byte\"",
                        self.services[i].memory_limit * 1048576.0,
                    )
                })
                .collect(),
        );
        family(
            "kube_pod_status_ready",
            "gauge",
            "Whether the pod is ready (kube-state-metrics).",
            pods.iter()
                .map(|&(_, p)| {
                    let ready = self.pods[p as usize].ready as u8 as f64;
                    pod_line("kube_pod_status_ready", p, ",condition=\"true\"", ready)
                })
                .collect(),
        );
        family(
            "kube_pod_container_status_restarts_total",
            "counter",
            "Container restarts (kube-state-metrics).",
            pods.iter()
                .map(|&(_, p)| {
                    pod_line(
                        "kube_pod_container_status_restarts_total",
                        p,
                        ",container=\"app\"",
                        self.pods[p as usize].restarts as f64,
                    )
                })
                .collect(),
        );
        family(
            "kube_pod_start_time",
            "gauge",
            "Start time in unix seconds (kube-state-metrics).",
            pods.iter()
                .map(|&(_, p)| {
                    pod_line(
                        "kube_pod_start_time",
                        p,
                        "",
                        ex.unix(self.pods[p as usize].started),
                    )
                })
                .collect(),
        );
        family(
            "kube_deployment_spec_replicas",
            "gauge",
            "Desired replicas (kube-state-metrics).",
            self.services
                .iter()
                .map(|s| {
                    format!(
                        "kube_deployment_spec_replicas{{namespace=\"{ns}\",deployment=\"{}\"}} {}",
                        s.name, s.desired
                    )
                })
                .collect(),
        );
        family(
            "kube_deployment_status_replicas_ready",
            "gauge",
            "Ready replicas (kube-state-metrics).",
            self.services
                .iter()
                .map(|s| {
                    let ready = s
                        .pods
                        .iter()
                        .filter(|&&p| self.pods[p as usize].ready)
                        .count();
                    format!(
                        "kube_deployment_status_replicas_ready{{namespace=\"{ns}\",deployment=\"{}\"}} {ready}",
                        s.name
                    )
                })
                .collect(),
        );
        let http = |s: &str| format!("namespace=\"{ns}\",service=\"{s}\"");
        family(
            "http_requests_total",
            "counter",
            "Requests served, by status code.",
            self.services
                .iter()
                .flat_map(|s| {
                    let c = &s.counters;
                    [
                        format!(
                            "http_requests_total{{{},code=\"200\"}} {}",
                            http(&s.name),
                            per_wall((c.attempts - c.failures) as f64)
                        ),
                        format!(
                            "http_requests_total{{{},code=\"500\"}} {}",
                            http(&s.name),
                            per_wall(c.failures as f64)
                        ),
                    ]
                })
                .collect(),
        );
        family(
            "http_request_duration_seconds",
            "histogram",
            "Request latency.",
            self.services
                .iter()
                .flat_map(|s| {
                    let counts = s.counters.latency.counts();
                    let bounds = self.buckets.bounds();
                    let mut cumulative = 0u64;
                    let mut lines: Vec<String> = Vec::with_capacity(counts.len() + 2);
                    for (k, c) in counts.iter().enumerate() {
                        cumulative += c;
                        let le = bounds.get(k).map_or("+Inf".to_string(), |b| b.to_string());
                        lines.push(format!(
                            "http_request_duration_seconds_bucket{{{},le=\"{le}\"}} {}",
                            http(&s.name),
                            per_wall(cumulative as f64)
                        ));
                    }
                    lines.push(format!(
                        "http_request_duration_seconds_count{{{}}} {}",
                        http(&s.name),
                        per_wall(cumulative as f64)
                    ));
                    lines
                })
                .collect(),
        );
        family(
            "http_requests_in_flight",
            "gauge",
            "Requests holding a connection or queued.",
            self.services
                .iter()
                .map(|s| {
                    format!(
                        "http_requests_in_flight{{{}}} {}",
                        http(&s.name),
                        s.in_system
                    )
                })
                .collect(),
        );
        out
    }
}
