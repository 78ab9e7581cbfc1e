//! Measurement: scrapes, the per-second series, the SLO and the run summary.

use std::collections::VecDeque;

use serde::Serialize;

use super::engine::{Exit, Simulation};
use super::faults::FaultRecord;
use super::model::{Counters, Edge, Phase, Service};
use crate::control::Command;
use crate::metrics::{Buckets, EdgeMetrics, Histogram, ServiceMetrics};
use crate::scenario::Scenario;
use crate::time::Time;

/// Root-request outcomes completed within one second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RootSecond {
    pub arrivals: u64,
    pub ok: u64,
    /// Succeeded within the SLO latency.
    pub good: u64,
    pub failed: u64,
}

/// One service at whole second `t` (after that instant's events).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServiceSecond {
    pub ready: u32,
    pub desired: u32,
    /// Pods holding node resources (what replica-seconds count).
    pub scheduled: u32,
    /// Of those, pods draining after deletion (Kubernetes does not count them
    /// against `maxSurge`).
    pub terminating: u32,
    pub in_system: u32,
    /// Time-average of requests in system over the second that just ended.
    pub concurrency: f64,
    /// Attempts that reached the service during that second.
    pub requests: u32,
}

/// A pod lifecycle transition.
#[derive(Clone, Debug, PartialEq)]
pub struct PodEvent {
    pub t: Time,
    pub pod: String,
    pub kind: PodEventKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodEventKind {
    Scheduled,
    Started,
    Ready,
    NotReady,
    Exited(Exit),
    Deleted,
}

impl PodEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PodEventKind::Scheduled => "scheduled",
            PodEventKind::Started => "started",
            PodEventKind::Ready => "ready",
            PodEventKind::NotReady => "not_ready",
            PodEventKind::Exited(e) => e.as_str(),
            PodEventKind::Deleted => "deleted",
        }
    }
}

/// The run's headline figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub duration_s: f64,
    /// Root requests that arrived.
    pub requests: u64,
    pub served: u64,
    pub failed: u64,
    /// Still in flight when the run ended.
    pub unfinished: u64,
    /// Served within the SLO latency.
    pub good: u64,
    pub slo_latency_ms: f64,
    pub slo_objective: f64,
    pub slo_violation_s: f64,
    pub slo_windows: u64,
    pub slo_windows_violated: u64,
    /// Of served root requests, from the latency histogram.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub replica_seconds: f64,
    pub restarts: u64,
    pub liveness_restarts: u64,
    pub oom_kills: u64,
    pub pod_kills: u64,
    pub evictions: u64,
    pub timeouts: u64,
    pub rejections: u64,
    pub retries: u64,
    pub outlier_ejections: u64,
    pub circuit_breaker_overflows: u64,
    pub isolated_calls: u64,
    /// Events processed (superseded ones, skipped at no work, excluded).
    pub events: u64,
}

/// Whole-run per-service statistics, for analytic checks.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceStats {
    pub name: String,
    pub attempts: u64,
    pub failures: u64,
    pub completed: u64,
    pub started: u64,
    /// Mean time from arrival to answer.
    pub mean_sojourn_s: f64,
    /// Mean time from arrival to a connection slot.
    pub mean_wait_s: f64,
    /// Fraction of started requests that waited at all.
    pub wait_probability: f64,
    /// Time-average of requests queued or holding a slot.
    pub mean_in_system: f64,
    pub latency: Histogram,
}

pub struct RunOutput {
    pub summary: Summary,
    pub buckets: Buckets,
    pub services: Vec<String>,
    /// Every scrape: `(service index, metrics)`.
    pub metrics: Vec<(usize, ServiceMetrics)>,
    pub edge_metrics: Vec<EdgeMetrics>,
    pub root_seconds: Vec<RootSecond>,
    /// `service_seconds[t * services.len() + s]`.
    pub service_seconds: Vec<ServiceSecond>,
    pub service_stats: Vec<ServiceStats>,
    pub commands: Vec<(Time, String, Command)>,
    pub faults: Vec<FaultRecord>,
    pub pod_events: Vec<PodEvent>,
    /// The chaos experiment's verdict, when the scenario has one.
    pub verdict: Option<super::chaos::Verdict>,
    /// Every healing controller's events, in order, with their times.
    pub healing: Vec<(Time, crate::control::orchestrator::HealingEvent)>,
}

struct Snapshot {
    at: Time,
    attempts: u64,
    failures: u64,
    latency: Histogram,
}

impl Snapshot {
    fn of(at: Time, c: &Counters) -> Self {
        Snapshot {
            at,
            attempts: c.attempts,
            failures: c.failures,
            latency: c.latency.clone(),
        }
    }
}

pub struct Recorder {
    pub scrape_interval: f64,
    rate_window: f64,
    slo_latency: f64,
    slo_objective: f64,
    slo_window: f64,
    scenario: String,
    seed: u64,
    duration: f64,
    buckets: Buckets,
    roots: Vec<RootSecond>,
    service_seconds: Vec<ServiceSecond>,
    root_latency: Histogram,
    service_history: Vec<VecDeque<Snapshot>>,
    edge_history: Vec<VecDeque<Snapshot>>,
    latest: Vec<ServiceMetrics>,
    metrics: Vec<(usize, ServiceMetrics)>,
    edge_metrics: Vec<EdgeMetrics>,
    pub faults: Vec<FaultRecord>,
    pub pod_events: Vec<PodEvent>,
    pub restarts: u64,
    pub liveness_restarts: u64,
    pub oom_kills: u64,
    pub pod_kills: u64,
    pub evictions: u64,
    pub timeouts: u64,
    pub rejections: u64,
    pub retries: u64,
    pub ejections: u64,
    pub circuit_open: u64,
    /// Calls answered by the caller because their target was isolated.
    pub isolated_calls: u64,
    /// When each outlier ejection happened.
    pub ejection_times: Vec<Time>,
}

impl Recorder {
    pub fn new(s: &Scenario, services: &[Service], edges: &[Edge], buckets: &Buckets) -> Self {
        let seconds = s.duration_s.ceil() as usize;
        let empty = ServiceMetrics {
            timestamp: Time::ZERO,
            cpu_usage: 0.0,
            memory_usage: 0.0,
            request_rate: 0.0,
            error_rate: 0.0,
            latency_p50: f64::NAN,
            latency_p99: f64::NAN,
            active_connections: 0,
            ready_replicas: 0,
            desired_replicas: 0,
        };
        Recorder {
            scrape_interval: s.metrics.scrape_interval_s,
            rate_window: s.metrics.rate_window_s,
            slo_latency: s.slo.latency_ms / 1000.0,
            slo_objective: s.slo.objective,
            slo_window: s.slo.window_s,
            scenario: s.name.clone(),
            seed: s.seed,
            duration: s.duration_s,
            buckets: buckets.clone(),
            roots: vec![RootSecond::default(); seconds.max(1)],
            service_seconds: Vec::with_capacity(seconds * services.len()),
            root_latency: Histogram::new(buckets),
            service_history: services
                .iter()
                .map(|sv| VecDeque::from([Snapshot::of(Time::ZERO, &sv.counters)]))
                .collect(),
            edge_history: edges
                .iter()
                .map(|e| VecDeque::from([Snapshot::of(Time::ZERO, &e.counters)]))
                .collect(),
            latest: services
                .iter()
                .map(|sv| ServiceMetrics {
                    desired_replicas: sv.desired,
                    ..empty.clone()
                })
                .collect(),
            metrics: Vec::new(),
            edge_metrics: Vec::new(),
            faults: Vec::new(),
            pod_events: Vec::new(),
            restarts: 0,
            liveness_restarts: 0,
            oom_kills: 0,
            pod_kills: 0,
            evictions: 0,
            timeouts: 0,
            rejections: 0,
            retries: 0,
            ejections: 0,
            circuit_open: 0,
            isolated_calls: 0,
            ejection_times: Vec::new(),
        }
    }

    fn second(&self, t: Time) -> usize {
        (t.whole_secs() as usize).min(self.roots.len() - 1)
    }

    pub fn root_arrival(&mut self, now: Time) {
        let i = self.second(now);
        self.roots[i].arrivals += 1;
    }

    pub fn root_done(&mut self, now: Time, start: Time, ok: bool) {
        let i = self.second(now);
        let latency = (now - start).as_secs_f64();
        let r = &mut self.roots[i];
        if ok {
            r.ok += 1;
            r.good += (latency <= self.slo_latency) as u64;
            self.root_latency.observe(&self.buckets, latency);
        } else {
            r.failed += 1;
        }
    }

    pub(crate) fn note_exit(&mut self, why: Exit) {
        if why == Exit::Liveness {
            self.liveness_restarts += 1;
        }
    }

    /// Served client requests' latencies since the start.
    pub(crate) fn root_latency(&self) -> &Histogram {
        &self.root_latency
    }

    /// Client outcomes of the whole seconds `[from, to)`.
    pub(crate) fn roots_between(&self, from: u64, to: u64) -> &[RootSecond] {
        let n = self.roots.len();
        &self.roots[(from as usize).min(n)..(to as usize).min(n)]
    }

    /// The last scrape of call edge `edge` (none before the first scrape).
    pub(crate) fn latest_edge(&self, edge: usize) -> Option<&EdgeMetrics> {
        let n = self.edge_history.len();
        let len = self.edge_metrics.len();
        (len >= n && n > 0).then(|| &self.edge_metrics[len - n + edge])
    }

    pub fn latest(&self, service: usize) -> &ServiceMetrics {
        &self.latest[service]
    }

    /// The last `n` per-second concurrency averages of a service, oldest
    /// first (the sample at time zero is skipped: it covers no interval).
    pub fn recent_concurrency(&self, service: usize, n: usize) -> Vec<f64> {
        self.recent_seconds(service, n, |s| s.concurrency)
    }

    /// The last `n` per-second request counts of a service, oldest first,
    /// over the same seconds as [`Recorder::recent_concurrency`].
    pub fn recent_requests(&self, service: usize, n: usize) -> Vec<f64> {
        self.recent_seconds(service, n, |s| f64::from(s.requests))
    }

    fn recent_seconds(
        &self,
        service: usize,
        n: usize,
        value: impl Fn(&ServiceSecond) -> f64,
    ) -> Vec<f64> {
        let per_row = self.latest.len();
        let rows = self.service_seconds.len() / per_row.max(1);
        (rows.saturating_sub(n).max(1)..rows)
            .map(|t| value(&self.service_seconds[t * per_row + service]))
            .collect()
    }

    /// Rate, error ratio and percentiles over the rate window, from the
    /// counters' history (as `rate()` and `histogram_quantile` over a range).
    fn windowed(
        history: &mut VecDeque<Snapshot>,
        now: Time,
        c: &Counters,
        window: f64,
        buckets: &Buckets,
    ) -> (f64, f64, f64, f64) {
        history.push_back(Snapshot::of(now, c));
        while history.len() > 2 && (now - history[1].at).as_secs_f64() >= window - 1e-9 {
            history.pop_front();
        }
        let base = &history[0];
        let dt = (now - base.at).as_secs_f64();
        let attempts = c.attempts - base.attempts;
        let failures = c.failures - base.failures;
        let rate = if dt > 0.0 { attempts as f64 / dt } else { 0.0 };
        let error = if attempts > 0 {
            failures as f64 / attempts as f64
        } else {
            0.0
        };
        let delta = c.latency.delta(&base.latency);
        (
            rate,
            error,
            1000.0 * delta.quantile(buckets, 0.5),
            1000.0 * delta.quantile(buckets, 0.99),
        )
    }

    pub fn finish(
        self,
        now: Time,
        events: u64,
        replica_seconds: f64,
        services: &[Service],
        commands: Vec<(Time, String, Command)>,
    ) -> RunOutput {
        let totals = self.roots.iter().fold(RootSecond::default(), |mut a, r| {
            a.arrivals += r.arrivals;
            a.ok += r.ok;
            a.good += r.good;
            a.failed += r.failed;
            a
        });
        let (mut windows, mut violated, mut violation_s) = (0u64, 0u64, 0.0);
        let w = self.slo_window.max(1.0) as usize;
        for (k, chunk) in self.roots.chunks(w).enumerate() {
            windows += 1;
            let total: u64 = chunk.iter().map(|r| r.ok + r.failed).sum();
            let good: u64 = chunk.iter().map(|r| r.good).sum();
            if total > 0 && (good as f64) < self.slo_objective * total as f64 {
                violated += 1;
                let start = (k * w) as f64;
                violation_s += (self.duration - start).min(w as f64);
            }
        }
        let elapsed = now.as_secs_f64().max(1e-9);
        let service_stats = services
            .iter()
            .map(|s| ServiceStats {
                name: s.name.clone(),
                attempts: s.counters.attempts,
                failures: s.counters.failures,
                completed: s.completed,
                started: s.started,
                mean_sojourn_s: s.sojourn_sum / s.completed.max(1) as f64,
                mean_wait_s: s.wait_sum / s.started.max(1) as f64,
                wait_probability: s.waited as f64 / s.started.max(1) as f64,
                mean_in_system: s.in_system_integral / elapsed,
                latency: s.counters.latency.clone(),
            })
            .collect();
        let summary = Summary {
            scenario: self.scenario.clone(),
            seed: self.seed,
            duration_s: self.duration,
            requests: totals.arrivals,
            served: totals.ok,
            failed: totals.failed,
            unfinished: totals.arrivals - totals.ok - totals.failed,
            good: totals.good,
            slo_latency_ms: self.slo_latency * 1000.0,
            slo_objective: self.slo_objective,
            slo_violation_s: violation_s,
            slo_windows: windows,
            slo_windows_violated: violated,
            latency_p50_ms: 1000.0 * self.root_latency.quantile(&self.buckets, 0.5),
            latency_p99_ms: 1000.0 * self.root_latency.quantile(&self.buckets, 0.99),
            replica_seconds,
            restarts: self.restarts,
            liveness_restarts: self.liveness_restarts,
            oom_kills: self.oom_kills,
            pod_kills: self.pod_kills,
            evictions: self.evictions,
            timeouts: self.timeouts,
            rejections: self.rejections,
            retries: self.retries,
            outlier_ejections: self.ejections,
            circuit_breaker_overflows: self.circuit_open,
            isolated_calls: self.isolated_calls,
            events,
        };
        RunOutput {
            summary,
            buckets: self.buckets,
            services: services.iter().map(|s| s.name.clone()).collect(),
            metrics: self.metrics,
            edge_metrics: self.edge_metrics,
            root_seconds: self.roots,
            service_seconds: self.service_seconds,
            service_stats,
            commands,
            faults: self.faults,
            pod_events: self.pod_events,
            verdict: None,
            healing: Vec::new(),
        }
    }
}

impl Simulation {
    /// One Prometheus scrape of every service and edge.
    pub(crate) fn scrape(&mut self) {
        let now = self.now;
        for p in 0..self.pods.len() {
            let pod = &mut self.pods[p];
            if !pod.is_scheduled() {
                continue;
            }
            let limit = self.services[pod.service as usize].cpu_limit;
            pod.advance(now, limit);
            // cAdvisor's rate over the time since the previous sample.
            let dt = (now - pod.cpu_scrape_at).as_secs_f64();
            pod.cpu_sample = if dt > 0.0 {
                (pod.cpu_core_seconds - pod.cpu_at_scrape) / dt
            } else {
                0.0
            };
            pod.cpu_at_scrape = pod.cpu_core_seconds;
            pod.cpu_scrape_at = now;
            let running = pod.phase == Phase::Running && self.nodes[pod.node as usize].up;
            pod.cpu_sampled_at = if running { Some(now) } else { None };
        }
        let rec = &mut self.recorder;
        for (i, s) in self.services.iter().enumerate() {
            let (mut cpu, mut requested, mut mem, mut running, mut active) =
                (0.0, 0.0, 0.0, 0u32, 0u32);
            for &p in &s.pods {
                let pod = &self.pods[p as usize];
                active += (pod.holding.len() + pod.queue.len()) as u32;
                // A lost node's pods have no kubelet and no cAdvisor sample.
                if pod.phase == Phase::Running && self.nodes[pod.node as usize].up {
                    cpu += pod.cpu_sample;
                    requested += s.cpu_request;
                    mem += pod.memory(s.revision(pod.revision), now) / s.memory_limit;
                    running += 1;
                }
            }
            active += s.shared_queue.len() as u32;
            let ready = s
                .pods
                .iter()
                .filter(|&&p| {
                    self.pods[p as usize].ready && self.pods[p as usize].phase == Phase::Running
                })
                .count() as u32;
            let (rate, error, p50, p99) = Recorder::windowed(
                &mut rec.service_history[i],
                now,
                &s.counters,
                rec.rate_window,
                &rec.buckets,
            );
            let m = ServiceMetrics {
                timestamp: now,
                cpu_usage: if requested > 0.0 {
                    cpu / requested
                } else {
                    0.0
                },
                memory_usage: if running > 0 {
                    mem / running as f64
                } else {
                    0.0
                },
                request_rate: rate,
                error_rate: error,
                latency_p50: p50,
                latency_p99: p99,
                active_connections: active,
                ready_replicas: ready,
                desired_replicas: s.desired,
            };
            rec.latest[i] = m.clone();
            rec.metrics.push((i, m));
        }
        for (i, e) in self.edges.iter().enumerate() {
            let (rate, error, p50, p99) = Recorder::windowed(
                &mut rec.edge_history[i],
                now,
                &e.counters,
                rec.rate_window,
                &rec.buckets,
            );
            rec.edge_metrics.push(EdgeMetrics {
                timestamp: now,
                edge: e.label.clone(),
                request_rate: rate,
                error_rate: error,
                latency_p50: p50,
                latency_p99: p99,
            });
        }
    }

    pub(crate) fn sample_second(&mut self) {
        let now = self.now;
        for s in &mut self.services {
            s.track_in_system(now, 0);
            let concurrency = s.in_system_integral - s.in_system_at_second;
            s.in_system_at_second = s.in_system_integral;
            let requests = s.counters.attempts - s.attempts_at_second;
            s.attempts_at_second = s.counters.attempts;
            let mut row = ServiceSecond {
                desired: s.desired,
                in_system: s.in_system,
                concurrency,
                requests: u32::try_from(requests).unwrap_or(u32::MAX),
                ..Default::default()
            };
            for &p in &s.pods {
                let pod = &self.pods[p as usize];
                row.ready += (pod.ready && pod.phase == Phase::Running) as u32;
                row.scheduled += pod.is_scheduled() as u32;
                row.terminating += (pod.phase == Phase::Terminating) as u32;
            }
            self.recorder.service_seconds.push(row);
        }
    }
}
