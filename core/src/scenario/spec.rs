//! The scenario file format (TOML). Every field has a documented default;
//! unknown fields are errors, so a typo never silently falls back to one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Master seed: every subsystem's stream derives from it.
    pub seed: u64,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(rename = "service")]
    pub services: Vec<ServiceSpec>,
    #[serde(rename = "load")]
    pub loads: Vec<LoadSpec>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    #[serde(default)]
    pub mesh: MeshSpec,
    pub slo: SloSpec,
    #[serde(default)]
    pub metrics: MetricsSpec,
    #[serde(default)]
    pub kubernetes: KubernetesSpec,
    #[serde(default)]
    pub controller: ControllerSpec,
    /// A chaos experiment around one of the faults: its steady-state
    /// hypothesis, abort conditions and the verdict's measurements.
    pub experiment: Option<ExperimentSpec>,
}

/// A chaos experiment (the seed's `ChaosExperiment`): the fault under test
/// is one of the scenario's `[[fault]]` entries, which already name its
/// type, target, blast radius (`pods` or `percent`), start and duration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    #[serde(default)]
    pub name: String,
    /// Index of the fault under test in the `[[fault]]` list.
    #[serde(default)]
    pub fault: usize,
    pub hypothesis: HypothesisSpec,
    pub abort: Option<AbortSpec>,
}

/// The steady state: probes every `probe_interval_s` over the client
/// requests of the last `window_s`, checked before, during and after the
/// fault.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HypothesisSpec {
    #[serde(default = "d_probe_interval")]
    pub probe_interval_s: f64,
    #[serde(default = "d_probe_window")]
    pub window_s: f64,
    /// Consecutive passing probes that count as recovered (MTTR ends at
    /// the first of them).
    #[serde(default = "d_passes")]
    pub passes_to_recover: u32,
    /// Failed over all finished client requests in the window.
    pub max_error_rate: Option<f64>,
    /// p99 of successful client requests in the window.
    pub max_p99_ms: Option<f64>,
    #[serde(default, rename = "min_ready")]
    pub min_ready: Vec<MinReadySpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MinReadySpec {
    pub service: String,
    pub replicas: u32,
}

/// Stop the fault (revert it; roll back a bad deploy) when the client
/// error rate stays above `max_error_rate` for `for_s`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AbortSpec {
    pub max_error_rate: f64,
    #[serde(default = "d_abort_for")]
    pub for_s: f64,
}

fn d_probe_interval() -> f64 {
    5.0
}
fn d_probe_window() -> f64 {
    30.0
}
fn d_passes() -> u32 {
    3
}
fn d_abort_for() -> f64 {
    60.0
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(rename = "node")]
    pub nodes: Vec<NodeSpec>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: vec![NodeSpec {
                name: "node".into(),
                count: 4,
                cpu: 16.0,
                memory_mib: 65536.0,
            }],
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// Several identical nodes named `name-0`, `name-1`, ... (a single node
    /// keeps its name).
    #[serde(default = "one")]
    pub count: u32,
    /// Allocatable cores.
    pub cpu: f64,
    pub memory_mib: f64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// The load balancer picks a pod on arrival; each pod queues its own
    /// requests (Envoy/Kubernetes behaviour).
    #[default]
    PerPod,
    /// One FIFO queue per service feeding whichever pod frees a slot first
    /// (the M/M/c configuration).
    Shared,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default = "one")]
    pub replicas: u32,
    /// Cores requested per pod (what HPA utilisation is relative to).
    #[serde(default = "d_cpu_request")]
    pub cpu_request: f64,
    /// Cores a pod may use at most.
    #[serde(default = "d_cpu_limit")]
    pub cpu_limit: f64,
    #[serde(default = "d_mem_request")]
    pub memory_request_mib: f64,
    /// A pod above this is OOM-killed.
    #[serde(default = "d_mem_limit")]
    pub memory_limit_mib: f64,
    /// Requests a pod holds at once (CPU phase plus waiting on dependencies).
    #[serde(default = "d_max_connections")]
    pub max_connections: u32,
    #[serde(default)]
    pub queue: QueueKind,
    /// Requests waiting per pod (per-pod queue) or per service (shared);
    /// arrivals beyond it are rejected with 503.
    #[serde(default = "d_queue_capacity")]
    pub queue_capacity: u32,
    #[serde(default)]
    pub lb: LbPolicy,
    /// Container start-up time (image pull excluded).
    #[serde(default = "d_startup")]
    pub startup: DistSpec,
    pub revision: RevisionSpec,
    #[serde(default, rename = "call")]
    pub calls: Vec<CallSpec>,
    #[serde(default)]
    pub readiness: ProbeSpec,
    #[serde(default)]
    pub liveness: ProbeSpec,
    #[serde(default)]
    pub rolling_update: RollingUpdateSpec,
    /// A standby service (another `[[service]]`) that a fail-over sends
    /// this service's traffic to; it must make the same calls or none.
    pub failover_to: Option<String>,
}

/// A deployment revision's behaviour.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RevisionSpec {
    /// Mean CPU time per request at one core, in ms.
    pub service_time_ms: f64,
    /// Coefficient of variation of the CPU time: 1 is exponential, 0 constant,
    /// anything else lognormal.
    #[serde(default = "one_f")]
    pub service_time_cv: f64,
    /// Probability that a request fails (5xx) after its CPU work.
    #[serde(default)]
    pub error_rate: f64,
    /// Mean off-CPU time per request after its CPU work, in ms: I/O, locks,
    /// sleeps. It holds the request's connection slot and no core; a twin
    /// built from a real cluster's metrics puts here the latency its CPU
    /// does not explain.
    #[serde(default)]
    pub wait_ms: f64,
    /// Coefficient of variation of the off-CPU time, as `service_time_cv`.
    #[serde(default = "one_f")]
    pub wait_cv: f64,
    /// Cores each running pod uses whatever its load: the runtime, its
    /// collector, timers, health checks. They count in the pod's CPU
    /// usage and compete with requests for its cores as a stressor does;
    /// a twin built from a real cluster's metrics puts here the CPU its
    /// requests do not explain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub background_cores: f64,
    #[serde(default = "d_mem_base")]
    pub memory_base_mib: f64,
    #[serde(default = "d_mem_per_req")]
    pub memory_per_request_mib: f64,
    /// A leak in this revision's code (MiB/s while running); unlike an
    /// injected leak it comes back after every restart.
    #[serde(default)]
    pub leak_mib_per_s: f64,
    /// The process exits this long after it starts (a crash-looping build).
    pub crash_after_s: Option<f64>,
}

/// A call from this service to a dependency, made after the caller's own
/// CPU work; a request's calls run in parallel.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    pub to: String,
    /// Probability that a request makes this call.
    #[serde(default = "one_f")]
    pub probability: f64,
    /// Caller-side per-attempt timeout.
    #[serde(default = "d_call_timeout")]
    pub timeout_ms: f64,
    /// One-way network latency added to each attempt on this edge.
    #[serde(default)]
    pub network_latency_ms: f64,
    /// The caller has a degraded answer ready (a cache, a default) and
    /// uses it instead of failing while the callee is isolated.
    #[serde(default)]
    pub fallback: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "dist", rename_all = "snake_case")]
pub enum DistSpec {
    Fixed { value_s: f64 },
    Uniform { min_s: f64, max_s: f64 },
    Lognormal { mean_s: f64, cv: f64 },
}

/// Kubernetes probe settings; defaults from `pkg/apis/core/v1/defaults.go`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    #[serde(default = "d_probe_period")]
    pub period_s: f64,
    #[serde(default = "one_f")]
    pub timeout_s: f64,
    #[serde(default = "one")]
    pub success_threshold: u32,
    #[serde(default = "d_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default)]
    pub initial_delay_s: f64,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            period_s: 10.0,
            timeout_s: 1.0,
            success_threshold: 1,
            failure_threshold: 3,
            initial_delay_s: 0.0,
        }
    }
}

/// `maxSurge` / `maxUnavailable`: an absolute count or a percent string.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u32),
    Percent(String),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RollingUpdateSpec {
    #[serde(default = "d_quarter")]
    pub max_surge: IntOrPercent,
    #[serde(default = "d_quarter")]
    pub max_unavailable: IntOrPercent,
}

impl Default for RollingUpdateSpec {
    fn default() -> Self {
        RollingUpdateSpec {
            max_surge: d_quarter(),
            max_unavailable: d_quarter(),
        }
    }
}

/// Client load entering the call graph at one service.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    pub service: String,
    /// Client-side timeout of a root request.
    #[serde(default = "d_client_timeout")]
    pub timeout_ms: f64,
    pub curve: CurveSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum CurveSpec {
    Constant {
        rate: f64,
    },
    Ramp {
        from: f64,
        to: f64,
        start_s: f64,
        end_s: f64,
    },
    Step {
        before: f64,
        after: f64,
        at_s: f64,
    },
    Diurnal {
        mean: f64,
        /// Relative swing: 0.5 means between 50 % and 150 % of the mean.
        amplitude: f64,
        #[serde(default = "d_day")]
        period_s: f64,
        #[serde(default = "d_peak")]
        peak_s: f64,
    },
    FlashCrowd {
        base: f64,
        peak: f64,
        start_s: f64,
        rise_s: f64,
        decay_s: f64,
    },
    Bursts {
        base: f64,
        multiplier: f64,
        mean_gap_s: f64,
        mean_length_s: f64,
    },
    /// Multiplicative lognormal noise with mean 1; use inside `product`.
    Noise {
        cv: f64,
        #[serde(default = "one_f")]
        step_s: f64,
    },
    /// Replay of a `t_seconds,value` CSV, relative to the scenario file.
    Trace {
        file: String,
        /// Multiply raw values (give at most one of scale, peak, mean).
        scale: Option<f64>,
        /// Rescale so the trace's maximum becomes this rate.
        peak: Option<f64>,
        /// Rescale so the trace's mean becomes this rate.
        mean: Option<f64>,
        /// Trace seconds per simulated second.
        #[serde(default = "one_f")]
        speedup: f64,
        /// Trace time at simulated time zero.
        #[serde(default)]
        offset_s: f64,
        #[serde(default, rename = "loop")]
        looped: bool,
    },
    Sum {
        parts: Vec<CurveSpec>,
    },
    Product {
        parts: Vec<CurveSpec>,
    },
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    PodKill,
    NodeLoss,
    Latency,
    CpuStress,
    DependencyFailure,
    MemoryLeak,
    Hang,
    BadDeploy,
}

impl FaultKind {
    /// Every kind, in declaration order (`ALL[k.index()] == k`).
    pub const ALL: [FaultKind; 8] = [
        FaultKind::PodKill,
        FaultKind::NodeLoss,
        FaultKind::Latency,
        FaultKind::CpuStress,
        FaultKind::DependencyFailure,
        FaultKind::MemoryLeak,
        FaultKind::Hang,
        FaultKind::BadDeploy,
    ];

    /// The kind's place in [`FaultKind::ALL`]: a new kind does not compile
    /// until it has one (the tests check that `ALL` lists each kind there).
    pub const fn index(self) -> usize {
        match self {
            FaultKind::PodKill => 0,
            FaultKind::NodeLoss => 1,
            FaultKind::Latency => 2,
            FaultKind::CpuStress => 3,
            FaultKind::DependencyFailure => 4,
            FaultKind::MemoryLeak => 5,
            FaultKind::Hang => 6,
            FaultKind::BadDeploy => 7,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::PodKill => "pod_kill",
            FaultKind::NodeLoss => "node_loss",
            FaultKind::Latency => "latency",
            FaultKind::CpuStress => "cpu_stress",
            FaultKind::DependencyFailure => "dependency_failure",
            FaultKind::MemoryLeak => "memory_leak",
            FaultKind::Hang => "hang",
            FaultKind::BadDeploy => "bad_deploy",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DependencyMode {
    /// The dependency answers 5xx at once.
    Errors,
    /// The dependency never answers; callers wait for their timeout.
    Blackhole,
}

/// One scheduled fault. Which fields apply depends on `kind`; validation
/// rejects fields that do not apply, so a misplaced field is never ignored.
/// `FaultSpec::on(kind, service)` is one with no other field set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub at_s: f64,
    /// Omit for faults that last until something repairs them.
    pub duration_s: Option<f64>,
    pub service: Option<String>,
    /// A call edge `caller->callee` (latency only).
    pub edge: Option<String>,
    pub node: Option<String>,
    /// Target this many pods of the service ...
    pub pods: Option<u32>,
    /// ... or this percent of them (default: all).
    pub percent: Option<f64>,
    /// latency: added one-way delay.
    pub added_ms: Option<f64>,
    /// cpu_stress: cores burnt per targeted pod.
    pub cores: Option<f64>,
    /// dependency_failure.
    pub mode: Option<DependencyMode>,
    /// dependency_failure (errors mode) and bad_deploy: probability a request fails.
    pub error_rate: Option<f64>,
    /// memory_leak: growth per targeted pod.
    pub leak_mib_per_s: Option<f64>,
    /// bad_deploy: the new revision's CPU time relative to the current one.
    pub service_time_factor: Option<f64>,
    /// bad_deploy: the new revision crashes this long after each start.
    pub crash_after_s: Option<f64>,
}

impl FaultSpec {
    /// A `kind` fault on `service` at time 0, every other field unset.
    pub fn on(kind: FaultKind, service: &str) -> FaultSpec {
        FaultSpec {
            kind,
            at_s: 0.0,
            duration_s: None,
            service: Some(service.to_string()),
            edge: None,
            node: None,
            pods: None,
            percent: None,
            added_ms: None,
            cores: None,
            mode: None,
            error_rate: None,
            leak_mib_per_s: None,
            service_time_factor: None,
            crash_after_s: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[derive(Default)]
pub struct MeshSpec {
    #[serde(default)]
    pub retries: RetrySpec,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerSpec,
    #[serde(default)]
    pub outlier_detection: OutlierSpec,
}

/// Envoy retry policy defaults (`route_components.proto`): 3 retries, full
/// jitter back-off from 25 ms capped at 250 ms, on 5xx, reset and timeout.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "d_retries")]
    pub max_retries: u32,
    #[serde(default = "d_retry_base")]
    pub base_ms: f64,
    #[serde(default = "d_retry_max")]
    pub max_ms: f64,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            enabled: false,
            max_retries: 3,
            base_ms: 25.0,
            max_ms: 250.0,
        }
    }
}

/// Envoy cluster circuit breaker (`circuit_breaker.proto`): overflow of
/// outstanding requests or pending requests fails fast with 503.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "d_cb_limit")]
    pub max_requests: u32,
    #[serde(default = "d_cb_limit")]
    pub max_pending: u32,
}

impl Default for CircuitBreakerSpec {
    fn default() -> Self {
        CircuitBreakerSpec {
            enabled: false,
            max_requests: 1024,
            max_pending: 1024,
        }
    }
}

/// Envoy outlier detection (`outlier_detection.proto`) defaults.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutlierSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "d_consecutive_5xx")]
    pub consecutive_5xx: u32,
    #[serde(default = "d_probe_period")]
    pub interval_s: f64,
    #[serde(default = "d_base_ejection")]
    pub base_ejection_s: f64,
    #[serde(default = "d_max_ejection")]
    pub max_ejection_s: f64,
    #[serde(default = "d_max_ejection_percent")]
    pub max_ejection_percent: f64,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            enabled: false,
            consecutive_5xx: 5,
            interval_s: 10.0,
            base_ejection_s: 30.0,
            max_ejection_s: 300.0,
            max_ejection_percent: 10.0,
        }
    }
}

/// The request-based SLO: the fraction of root requests that succeed within
/// `latency_ms`, per window, against `objective`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    pub latency_ms: f64,
    #[serde(default = "d_objective")]
    pub objective: f64,
    #[serde(default = "d_slo_window")]
    pub window_s: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    #[serde(default = "d_scrape")]
    pub scrape_interval_s: f64,
    /// The `rate(...[w])` window for rates and percentiles.
    #[serde(default = "d_slo_window")]
    pub rate_window_s: f64,
    /// Latency bucket bounds in seconds (default: 8 per doubling, 0.1 ms to 2 min).
    pub buckets_s: Option<Vec<f64>>,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            scrape_interval_s: 15.0,
            rate_window_s: 60.0,
            buckets_s: None,
        }
    }
}

/// Cluster-wide Kubernetes timings (upstream defaults).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// kube-controller-manager `--node-monitor-grace-period`.
    #[serde(default = "d_node_grace")]
    pub node_monitor_grace_s: f64,
    /// Default `node.kubernetes.io/not-ready` toleration of a pod.
    #[serde(default = "d_toleration")]
    pub not_ready_toleration_s: f64,
    /// kubelet CrashLoopBackOff: initial and maximum delay, and the clean
    /// running time after which the back-off resets.
    #[serde(default = "d_backoff_initial")]
    pub backoff_initial_s: f64,
    #[serde(default = "d_backoff_max")]
    pub backoff_max_s: f64,
    #[serde(default = "d_backoff_reset")]
    pub backoff_reset_s: f64,
    #[serde(default = "d_grace")]
    pub termination_grace_s: f64,
}

impl Default for KubernetesSpec {
    fn default() -> Self {
        KubernetesSpec {
            node_monitor_grace_s: 40.0,
            not_ready_toleration_s: 300.0,
            backoff_initial_s: 10.0,
            backoff_max_s: 300.0,
            backoff_reset_s: 600.0,
            termination_grace_s: 30.0,
        }
    }
}

impl Scenario {
    /// Each service's position in `services`, by name.
    pub fn service_index(&self) -> BTreeMap<&str, usize> {
        self.services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect()
    }

    /// Runs the scenario under another controller, keeping the scenario's
    /// replica bounds (a CLI or suite names a kind and its settings, not the
    /// service's limits).
    pub fn use_controller(&mut self, spec: ControllerSpec) {
        let (min, max) = (self.controller.min_replicas, self.controller.max_replicas);
        self.controller = ControllerSpec {
            min_replicas: min,
            max_replicas: max,
            ..spec
        };
    }
}

/// Where `+learned` finds the strategy selector.
pub const DEFAULT_SELECTOR: &str = "models/selector/selector.json";

/// Which controller scales the services, and its settings. Settings that
/// do not apply to the kind are rejected.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControllerSpec {
    #[serde(default)]
    pub kind: ControllerKind,
    #[serde(default = "one")]
    pub min_replicas: u32,
    #[serde(default = "d_max_replicas")]
    pub max_replicas: u32,
    /// hpa: target CPU utilisation, percent of requests (default 80).
    pub target_cpu_percent: Option<u32>,
    /// hpa: `behavior.scaleUp.stabilizationWindowSeconds` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_stabilization_s: Option<u32>,
    /// hpa: `behavior.scaleDown.stabilizationWindowSeconds` (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_stabilization_s: Option<u32>,
    /// hpa: the scale-up `Percent` policy's value per 15 s (default 100;
    /// the 4-pods policy stays beside it, the larger of the two applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_percent: Option<u32>,
    /// hpa: the scale-down `Percent` policy's value per 15 s (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_percent: Option<u32>,
    /// kpa: `autoscaling.knative.dev/metric`, `concurrency` (default) or
    /// `rps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<crate::control::kpa::KpaMetric>,
    /// kpa: `autoscaling.knative.dev/target` before Knative's 70 %
    /// utilisation factor: in-flight requests per pod, capped at the
    /// service's `max_connections` (its `containerConcurrency`), or under
    /// `metric = "rps"` requests per second per pod. Default: that
    /// `containerConcurrency`, as Knative derives it, or under `rps` the
    /// requests per second a pod serves with its CPU limit busy.
    pub target_concurrency: Option<f64>,
    /// kpa: `autoscaling.knative.dev/scale-down-delay` in seconds (default
    /// 0): a decrease waits until it has held this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_s: Option<u32>,
    /// selfheal: CPU utilisation to size for (default 0.7).
    pub cpu_target: Option<f64>,
    /// selfheal: requests per second per replica (default: measured).
    pub capacity_rps: Option<f64>,
    /// selfheal: forecast horizon (default 30 s).
    pub horizon_s: Option<f64>,
    /// selfheal: cooldowns (defaults 30 s and 300 s).
    pub scale_up_cooldown_s: Option<f64>,
    pub scale_down_cooldown_s: Option<f64>,
    /// selfheal: nominal coverage of the forecast interval (default 0.95
    /// sized for the SLO, 0.8 for the CPU).
    pub interval_level: Option<f64>,
    /// selfheal: size for the interval's upper bound (default true).
    pub plan_on_upper: Option<bool>,
    /// selfheal: what a replica count is chosen for (`selfheal:slo` or
    /// `selfheal:cpu` on the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<Sizing>,
    /// Run the failure predictor and the healing orchestrator on top of
    /// this scaler (`hpa:70+heal` on the command line), at any scrape
    /// interval (the predictor resamples onto its model's time base).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub healing: bool,
    /// healing: record what would be done, command nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub healing_dry_run: bool,
    /// healing: the trained predictor's directory (default
    /// `models/predictor`, relative to the working directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healing_model: Option<String>,
    /// healing: take this strategy first on every incident (`+heal@restart`):
    /// how the outcomes a strategy selector learns from are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healing_first: Option<crate::control::orchestrator::Strategy>,
    /// healing: a learned strategy selector (`selfheal learn-selector`'s
    /// JSON file) that may override the rules' first strategy (`+learned`
    /// uses `models/selector/selector.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healing_selector: Option<String>,
    /// Argo-Rollouts-style analysis on every new revision, rolling back on
    /// the first failed measurement (`hpa:70+argo`): the progressive
    /// delivery baseline of the chaos comparisons.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollout_analysis: bool,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        ControllerSpec {
            kind: ControllerKind::Static,
            min_replicas: 1,
            max_replicas: d_max_replicas(),
            target_cpu_percent: None,
            scale_up_stabilization_s: None,
            scale_down_stabilization_s: None,
            scale_up_percent: None,
            scale_down_percent: None,
            metric: None,
            target_concurrency: None,
            scale_down_delay_s: None,
            cpu_target: None,
            capacity_rps: None,
            horizon_s: None,
            scale_up_cooldown_s: None,
            scale_down_cooldown_s: None,
            healing: false,
            healing_dry_run: false,
            healing_model: None,
            healing_first: None,
            healing_selector: None,
            rollout_analysis: false,
            interval_level: None,
            plan_on_upper: None,
            sizing: None,
        }
    }
}

/// What `selfheal` sizes for when the spec does not say: the SLO, chosen
/// on the decision-quality suite's training families (a third of HPA's
/// violation seconds at equal cost where sizing for the CPU matched HPA's
/// curve), never on its held-out ones.
pub const DEFAULT_SIZING: Sizing = Sizing::Slo;

/// What the selfheal scaler sizes a service for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Sizing {
    /// The CPU target at the forecast rate.
    Cpu,
    /// The fewest replicas whose predicted latency quantile meets the
    /// scenario's SLO across the call graph, the CPU as a guard.
    Slo,
}

impl Sizing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sizing::Cpu => "cpu",
            Sizing::Slo => "slo",
        }
    }
}

/// Why a controller's short form (`hpa:60+heal`) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShortFormError {
    #[error("unknown strategy `{0}` after +heal@ ({names})", names = strategy_names())]
    UnknownStrategy(String),
    #[error(
        "unknown controller `{0}` (static, hpa[:target%], kpa[:concurrency], kpa:rps[:per-second], selfheal[:slo|cpu]; kpa takes ,delay=<seconds>; add +heal for the orchestrator or +argo for rollout analysis)"
    )]
    UnknownController(String),
    #[error("`{arg}` is not a {what}")]
    NotANumber { arg: String, what: &'static str },
    #[error("`{0}`: selfheal sizes for `slo` or `cpu`")]
    UnknownSizing(String),
    #[error("`{0}` takes no argument")]
    TakesNoArgument(String),
    #[error("`{0}`: only kpa takes `,delay=` (Knative's scale-down delay)")]
    DelayOnlyForKpa(String),
    #[error("`{arg}` is not a usable setting: {problem}")]
    Unusable {
        arg: String,
        problem: super::Problem,
    },
}

fn strategy_names() -> String {
    crate::control::orchestrator::Strategy::ALL
        .map(|st| st.as_str())
        .join(", ")
}

impl ControllerSpec {
    /// The short form the CLI takes: `static`, `hpa`, `hpa:60`, `kpa`,
    /// `kpa:50`, `kpa:rps`, `kpa:rps:90` (the `rps` metric, with a
    /// target), `kpa:rps,delay=300` (any kpa form with
    /// `autoscaling.knative.dev/scale-down-delay` in seconds), `selfheal`, `selfheal:slo`, `selfheal:cpu`, each optionally with `+argo` (rollout analysis
    /// with automatic rollback) and then `+heal` (the healing
    /// orchestrator), `+heal@<strategy>` (the orchestrator, taking that
    /// strategy first) or `+learned` (the orchestrator with the learned
    /// strategy selector).
    pub fn parse_short(s: &str) -> Result<ControllerSpec, ShortFormError> {
        use crate::control::orchestrator::Strategy;
        let (mut healing_first, mut healing_selector) = (None, None);
        let (s, healing) = if let Some(base) = s.strip_suffix("+heal") {
            (base, true)
        } else if let Some(base) = s.strip_suffix("+learned") {
            healing_selector = Some(DEFAULT_SELECTOR.to_string());
            (base, true)
        } else if let Some((base, first)) = s.rsplit_once("+heal@") {
            let strategy = Strategy::ALL
                .into_iter()
                .find(|st| st.as_str() == first)
                .ok_or_else(|| ShortFormError::UnknownStrategy(first.to_string()))?;
            healing_first = Some(strategy);
            (base, true)
        } else {
            (s, false)
        };
        let (s, rollout_analysis) = match s.strip_suffix("+argo") {
            Some(base) => (base, true),
            None => (s, false),
        };
        let (s, delay) = match s.split_once(",delay=") {
            Some((base, d)) => (base, Some(d)),
            None => (s, None),
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let kind_value = match kind {
            "static" => ControllerKind::Static,
            "hpa" => ControllerKind::Hpa,
            "kpa" => ControllerKind::Kpa,
            "selfheal" => ControllerKind::Selfheal,
            other => return Err(ShortFormError::UnknownController(other.to_string())),
        };
        let mut spec = ControllerSpec {
            kind: kind_value,
            healing,
            healing_first,
            healing_selector,
            rollout_analysis,
            ..ControllerSpec::default()
        };
        if let Some(d) = delay {
            if spec.kind != ControllerKind::Kpa {
                return Err(ShortFormError::DelayOnlyForKpa(kind.to_string()));
            }
            spec.scale_down_delay_s = Some(d.parse().map_err(|_| ShortFormError::NotANumber {
                arg: d.to_string(),
                what: "scale-down delay in whole seconds",
            })?);
            super::check_controller(&spec).map_err(|problem| ShortFormError::Unusable {
                arg: d.to_string(),
                problem,
            })?;
        }
        if let Some(a) = arg {
            match spec.kind {
                ControllerKind::Hpa => {
                    spec.target_cpu_percent =
                        Some(a.parse().map_err(|_| ShortFormError::NotANumber {
                            arg: a.to_string(),
                            what: "CPU percent",
                        })?)
                }
                ControllerKind::Kpa => {
                    let (what, target) = match a.strip_prefix("rps") {
                        Some(rest) => {
                            spec.metric = Some(crate::control::kpa::KpaMetric::Rps);
                            // `kpa:rpsx` is not `kpa:rps`.
                            let target = match rest {
                                "" => None,
                                r => Some(r.strip_prefix(':').unwrap_or(a)),
                            };
                            ("request rate", target)
                        }
                        None => ("concurrency", Some(a)),
                    };
                    if let Some(t) = target {
                        spec.target_concurrency =
                            Some(t.parse().map_err(|_| ShortFormError::NotANumber {
                                arg: t.to_string(),
                                what,
                            })?)
                    }
                }
                ControllerKind::Selfheal => {
                    spec.sizing = Some(match a {
                        "slo" => Sizing::Slo,
                        "cpu" => Sizing::Cpu,
                        _ => return Err(ShortFormError::UnknownSizing(a.to_string())),
                    })
                }
                _ => return Err(ShortFormError::TakesNoArgument(kind.to_string())),
            }
            // The same checks as a scenario's [controller] table.
            super::check_controller(&spec).map_err(|problem| ShortFormError::Unusable {
                arg: a.to_string(),
                problem,
            })?;
        }
        Ok(spec)
    }

    /// A short label: `static`, `hpa-60`, `kpa-70`, `selfheal`, with
    /// `+argo` and `+heal` for what runs on top.
    pub fn label(&self) -> String {
        let mut label = self.scaler_label();
        if self.rollout_analysis {
            label.push_str("+argo");
        }
        match (self.healing, self.healing_first, &self.healing_selector) {
            (false, ..) => {}
            (true, Some(first), _) => label.push_str(&format!("+heal@{}", first.as_str())),
            (true, None, Some(_)) => label.push_str("+learned"),
            (true, None, None) => label.push_str("+heal"),
        }
        label
    }

    /// What the selfheal scaler sizes for: the spec's choice, else
    /// [`DEFAULT_SIZING`].
    pub fn sizing_or_default(&self) -> Sizing {
        self.sizing.unwrap_or(DEFAULT_SIZING)
    }

    fn scaler_label(&self) -> String {
        match self.kind {
            ControllerKind::Static => "static".into(),
            ControllerKind::Hpa => format!(
                "hpa-{}",
                self.target_cpu_percent
                    .unwrap_or(crate::control::hpa::DEFAULT_CPU_PERCENT)
            ),
            ControllerKind::Kpa => {
                let kpa = match self.metric {
                    Some(crate::control::kpa::KpaMetric::Rps) => "kpa-rps",
                    _ => "kpa",
                };
                let kpa = self
                    .target_concurrency
                    .map_or(kpa.into(), |c| format!("{kpa}-{c}"));
                match self.scale_down_delay_s {
                    Some(d) if d > 0 => format!("{kpa}-delay{d}"),
                    _ => kpa,
                }
            }
            ControllerKind::Selfheal => self
                .sizing
                .map_or("selfheal".into(), |s| format!("selfheal-{}", s.as_str())),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ControllerKind {
    /// The scenario's replica counts, never changed.
    #[default]
    Static,
    /// Kubernetes HorizontalPodAutoscaler on CPU.
    Hpa,
    /// Knative Pod Autoscaler on concurrency or requests per second.
    Kpa,
    /// The autonomous scaler with its random-forest forecast.
    Selfheal,
}

fn one() -> u32 {
    1
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn one_f() -> f64 {
    1.0
}
fn d_cpu_request() -> f64 {
    0.5
}
fn d_cpu_limit() -> f64 {
    1.0
}
fn d_mem_request() -> f64 {
    256.0
}
fn d_mem_limit() -> f64 {
    512.0
}
fn d_max_connections() -> u32 {
    100
}
fn d_queue_capacity() -> u32 {
    1000
}
fn d_startup() -> DistSpec {
    DistSpec::Lognormal {
        mean_s: 10.0,
        cv: 0.3,
    }
}
fn d_mem_base() -> f64 {
    128.0
}
fn d_mem_per_req() -> f64 {
    0.5
}
fn d_call_timeout() -> f64 {
    1000.0
}
fn d_client_timeout() -> f64 {
    10_000.0
}
fn d_probe_period() -> f64 {
    10.0
}
fn d_failure_threshold() -> u32 {
    3
}
fn d_quarter() -> IntOrPercent {
    IntOrPercent::Percent("25%".into())
}
fn d_day() -> f64 {
    86_400.0
}
fn d_peak() -> f64 {
    14.0 * 3600.0
}
fn d_retries() -> u32 {
    3
}
fn d_retry_base() -> f64 {
    25.0
}
fn d_retry_max() -> f64 {
    250.0
}
fn d_cb_limit() -> u32 {
    1024
}
fn d_consecutive_5xx() -> u32 {
    5
}
fn d_base_ejection() -> f64 {
    30.0
}
fn d_max_ejection() -> f64 {
    300.0
}
fn d_max_ejection_percent() -> f64 {
    10.0
}
fn d_objective() -> f64 {
    0.99
}
fn d_slo_window() -> f64 {
    60.0
}
fn d_scrape() -> f64 {
    15.0
}
fn d_node_grace() -> f64 {
    40.0
}
fn d_toleration() -> f64 {
    300.0
}
fn d_backoff_initial() -> f64 {
    10.0
}
fn d_backoff_max() -> f64 {
    300.0
}
fn d_backoff_reset() -> f64 {
    600.0
}
fn d_grace() -> f64 {
    30.0
}
fn d_max_replicas() -> u32 {
    50
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::kpa::KpaMetric;

    #[test]
    fn every_fault_kind_is_listed_once_in_its_place() {
        for (i, k) in FaultKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{}", k.as_str());
        }
    }

    #[test]
    fn short_controller_targets_out_of_range_are_refused() {
        for bad in [
            "kpa:nan",
            "kpa:-1",
            "kpa:0",
            "kpa:inf",
            "hpa:0",
            "hpa:-5",
            "hpa:7.5",
            "kpa:rps:0",
            "kpa:rpsx",
            "kpa:rps:",
        ] {
            let err = ControllerSpec::parse_short(bad).expect_err(bad).to_string();
            assert!(err.contains("is not a"), "{bad}: {err}");
        }
        assert_eq!(
            ControllerSpec::parse_short("kpa:2.5+heal")
                .unwrap()
                .target_concurrency,
            Some(2.5)
        );
        assert_eq!(
            ControllerSpec::parse_short("hpa:150")
                .unwrap()
                .target_cpu_percent,
            Some(150)
        );
        let rps = ControllerSpec::parse_short("kpa:rps:90").unwrap();
        assert_eq!(
            (rps.metric, rps.target_concurrency, rps.label().as_str()),
            (Some(KpaMetric::Rps), Some(90.0), "kpa-rps-90")
        );
        let rps = ControllerSpec::parse_short("kpa:rps").unwrap();
        assert_eq!(
            (rps.metric, rps.target_concurrency, rps.label().as_str()),
            (Some(KpaMetric::Rps), None, "kpa-rps")
        );
    }

    #[test]
    fn a_short_kpa_takes_knatives_scale_down_delay() {
        let k = ControllerSpec::parse_short("kpa:rps:90,delay=300+heal").unwrap();
        assert_eq!(
            (k.metric, k.target_concurrency, k.scale_down_delay_s),
            (Some(KpaMetric::Rps), Some(90.0), Some(300))
        );
        assert_eq!(k.label(), "kpa-rps-90-delay300+heal");
        assert_eq!(
            ControllerSpec::parse_short("kpa,delay=60").unwrap().label(),
            "kpa-delay60"
        );
        let err = |s: &str| ControllerSpec::parse_short(s).expect_err(s).to_string();
        assert!(err("hpa:70,delay=300").contains("only kpa"));
        assert!(err("kpa,delay=5m").contains("`5m` is not a scale-down delay"));
        assert!(err("kpa,delay=7200").contains("`7200` is not a usable setting: field `controller.scale_down_delay_s`: must be at most 3600"));
    }
}
