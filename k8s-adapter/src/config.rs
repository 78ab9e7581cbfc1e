//! The adapter's configuration file (TOML). Unknown fields are errors, and
//! every error names the file and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use selfheal_core::scenario::{ControllerSpec, FieldPath, Problem, ScenarioError, toml_error};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    /// A syntax error, or a field at fault with its line, reported as a
    /// scenario file's are.
    #[error(transparent)]
    Invalid(#[from] ScenarioError),
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// The Prometheus server, e.g. `http://prometheus.monitoring:9090` or
    /// `https://prometheus.example.com`.
    pub prometheus: String,
    /// How to reach a secured Prometheus: a CA, a bearer token or basic
    /// auth.
    #[serde(default)]
    pub prometheus_http: PrometheusHttp,
    /// The only namespace the adapter reads and acts in.
    pub namespace: String,
    /// Prometheus's scrape interval: the step of the history read back at
    /// start, the base of the retry back-off, and the shortest time
    /// between control ticks. Otherwise ticks follow the controller's own
    /// period, as in the simulator.
    #[serde(default = "d_interval")]
    pub interval_s: f64,
    /// The `[w]` of `rate(...[w])`: `{window}` in the queries.
    #[serde(default = "d_window")]
    pub rate_window_s: f64,
    /// The window of the pods' CPU rate (`{cpu_window}` in the default
    /// CPU queries), `rate_window_s` when unset. What an HPA reads is
    /// metrics-server's CPU over the last scrapes, shorter than a request
    /// rate's minute; the simulator's CPU sample covers one scrape interval
    /// (three scrapes, 15 s at 5 s, is what replays compare best with).
    #[serde(default)]
    pub cpu_window_s: Option<f64>,
    /// How long after a pod turns Ready the healing core judges it on its
    /// CPU (a pod far below or above its peers is restarted): by default
    /// the CPU window and one scrape interval, so the sample began after
    /// the pod was ready. Raise it where pods report Ready before they
    /// serve (no readiness probe, or KWOK's pods, whose served copies
    /// start up later).
    #[serde(default)]
    pub pod_settle_s: Option<f64>,
    /// The SLO: `slo_objective` of requests within `slo_latency_ms`. The
    /// healing orchestrator treats a p99 above the latency as a symptom;
    /// the selfheal scaler sizing for the SLO (`sizing = "slo"`) plans for
    /// both.
    #[serde(default = "d_slo")]
    pub slo_latency_ms: f64,
    #[serde(default = "d_objective")]
    pub slo_objective: f64,
    /// Seconds of control-core time per wall-clock second (for a served
    /// simulation running faster than real time). Every duration here
    /// (`interval_s`, `rate_window_s`, `backfill_s`) is in core seconds;
    /// the adapter divides it by this for its wall-clock waits and PromQL
    /// windows.
    #[serde(default = "d_one")]
    pub time_scale: f64,
    /// Seed of the controller's own random stream.
    #[serde(default)]
    pub seed: u64,
    /// History read back from Prometheus at start (range queries), so the
    /// models begin with full windows: the predictor's 60 scrapes of 5 s.
    #[serde(default = "d_backfill")]
    pub backfill_s: f64,
    #[serde(default)]
    pub controller: ControllerSpec,
    /// The departure score's settings (`[departure]`, windows in core
    /// seconds): its alarms are logged beside the controller's decisions
    /// and act on nothing.
    #[serde(default)]
    pub departure: selfheal_core::control::departure::DepartureConfig,
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub queries: Queries,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The name the control core knows (and the `service` label of the
    /// request metrics).
    pub name: String,
    /// Its Deployment (default: the same name); pods are `<deployment>-*`.
    pub deployment: Option<String>,
    /// Per-pod connection limit the application enforces.
    #[serde(default = "d_connections")]
    pub max_connections: u32,
    /// The pod labels of a standby Deployment: a fail-over points the
    /// Service's selector at them.
    pub backup_selector: Option<BTreeMap<String, String>>,
    /// The ConfigMap a reconfigure writes `max_connections` and
    /// `timeout_ms` into (default `<name>-selfheal`).
    pub config_map: Option<String>,
    /// The services it calls that it has a fallback answer for: isolating
    /// one of them degrades its answers instead of failing them.
    #[serde(default)]
    pub fallback_for: Vec<String>,
}

impl ServiceConfig {
    pub fn deployment(&self) -> &str {
        self.deployment.as_deref().unwrap_or(&self.name)
    }

    pub fn config_map(&self) -> String {
        self.config_map
            .clone()
            .unwrap_or_else(|| format!("{}-selfheal", self.name))
    }
}

/// A secured Prometheus, with the names of Prometheus's own client
/// configuration (`tls_config.ca_file`, `bearer_token_file`, `basic_auth`).
/// Secrets are read from files, never written in the configuration;
/// relative paths are relative to the configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrometheusHttp {
    /// PEM certificates of the CA(s) that sign the server's certificate,
    /// trusted besides the bundled web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// A file holding a bearer token, read again for every request, since
    /// projected service-account tokens rotate.
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// A file holding the password (a trailing newline is ignored).
    pub password_file: PathBuf,
}

impl PrometheusHttp {
    /// The same with relative paths made relative to `dir`.
    fn relative_to(mut self, dir: &Path) -> Self {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        self.ca_file.as_mut().map(fix);
        self.bearer_token_file.as_mut().map(fix);
        if let Some(b) = self.basic_auth.as_mut() {
            fix(&mut b.password_file);
        }
        self
    }
}

/// PromQL for each metric; `{namespace}`, `{service}`, `{deployment}`,
/// `{window}` (`rate_window_s`) and `{cpu_window}` (`cpu_window_s`) are
/// filled in. The defaults fit cAdvisor (through the
/// kubelet), kube-state-metrics and application metrics named as the
/// Prometheus client libraries' HTTP middleware names them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Queries {
    pub cpu_usage: String,
    pub memory_usage: String,
    pub request_rate: String,
    pub error_rate: String,
    /// Per-bucket rates `by (le)`; quantiles come from selfheal's
    /// `histogram_quantile`, the one the simulator uses.
    pub latency_buckets: String,
    pub active_connections: String,
    pub ready_replicas: String,
    pub desired_replicas: String,
    /// Per pod (`by (pod)`).
    pub pod_ready: String,
    pub pod_cpu: String,
    pub pod_cpu_request: String,
    pub pod_memory: String,
    pub pod_memory_limit: String,
    pub pod_restarts: String,
    pub pod_start_time: String,
    /// The calls a service makes, as the mesh's client-side proxies report
    /// them, `by (destination_workload)`: the request rate (which names
    /// the call graph), the error ratio and per-bucket latency rates `by
    /// (destination_workload, le)` in milliseconds. Empty answers (no mesh,
    /// no calls yet) leave the service without dependencies.
    pub edge_request_rate: String,
    pub edge_error_rate: String,
    pub edge_latency_buckets_ms: String,
}

impl Default for Queries {
    fn default() -> Self {
        // A Deployment's pods are `<deployment>-<hash>-<suffix>`: two
        // segments exactly, so that `catalog` does not take in the pods of
        // `catalog-standby`.
        let pods = r#"namespace="{namespace}",pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+""#;
        let http = r#"namespace="{namespace}",service="{service}""#;
        // Istio's standard metrics, as the calling pod's sidecar reports
        // them; for Linkerd: `response_total` / `response_latency_ms_bucket`
        // with `direction="outbound"`, `deployment` and `dst_deployment`.
        let mesh = r#"reporter="source",source_workload_namespace="{namespace}",source_workload="{deployment}""#;
        Queries {
            cpu_usage: format!(
                r#"sum(rate(container_cpu_usage_seconds_total{{{pods},container!=""}}[{{cpu_window}}])) / sum(kube_pod_container_resource_requests{{{pods},resource="cpu"}})"#
            ),
            memory_usage: format!(
                r#"sum(container_memory_working_set_bytes{{{pods},container!=""}}) / sum(kube_pod_container_resource_limits{{{pods},resource="memory"}})"#
            ),
            request_rate: format!(r#"sum(rate(http_requests_total{{{http}}}[{{window}}]))"#),
            error_rate: format!(
                r#"sum(rate(http_requests_total{{{http},code=~"5.."}}[{{window}}])) / sum(rate(http_requests_total{{{http}}}[{{window}}]))"#
            ),
            latency_buckets: format!(
                r#"sum by (le) (rate(http_request_duration_seconds_bucket{{{http}}}[{{window}}]))"#
            ),
            active_connections: format!(r#"sum(http_requests_in_flight{{{http}}})"#),
            ready_replicas: r#"sum(kube_deployment_status_replicas_ready{namespace="{namespace}",deployment="{deployment}"})"#.into(),
            desired_replicas: r#"sum(kube_deployment_spec_replicas{namespace="{namespace}",deployment="{deployment}"})"#.into(),
            pod_ready: format!(r#"sum by (pod) (kube_pod_status_ready{{{pods},condition="true"}})"#),
            pod_cpu: format!(
                r#"sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods},container!=""}}[{{cpu_window}}]))"#
            ),
            pod_cpu_request: format!(
                r#"sum by (pod) (kube_pod_container_resource_requests{{{pods},resource="cpu"}})"#
            ),
            pod_memory: format!(r#"sum by (pod) (container_memory_working_set_bytes{{{pods},container!=""}})"#),
            pod_memory_limit: format!(
                r#"sum by (pod) (kube_pod_container_resource_limits{{{pods},resource="memory"}})"#
            ),
            pod_restarts: format!(r#"sum by (pod) (kube_pod_container_status_restarts_total{{{pods}}})"#),
            pod_start_time: format!(r#"max by (pod) (kube_pod_start_time{{{pods}}})"#),
            edge_request_rate: format!(
                r#"sum by (destination_workload) (rate(istio_requests_total{{{mesh}}}[{{window}}]))"#
            ),
            edge_error_rate: format!(
                r#"sum by (destination_workload) (rate(istio_requests_total{{{mesh},response_code=~"5.."}}[{{window}}])) / sum by (destination_workload) (rate(istio_requests_total{{{mesh}}}[{{window}}]))"#
            ),
            edge_latency_buckets_ms: format!(
                r#"sum by (destination_workload, le) (rate(istio_request_duration_milliseconds_bucket{{{mesh}}}[{{window}}]))"#
            ),
        }
    }
}

/// A PromQL duration: whole seconds where exact, else milliseconds.
fn prom_duration(s: f64) -> String {
    let ms = (s * 1000.0).round().max(1.0) as u64;
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl AdapterConfig {
    /// Wall-clock seconds of `core_s` core seconds.
    pub fn wall(&self, core_s: f64) -> f64 {
        core_s / self.time_scale
    }

    /// The pods' CPU rate window in core seconds.
    pub fn cpu_window_s(&self) -> f64 {
        self.cpu_window_s.unwrap_or(self.rate_window_s)
    }

    /// How long after a pod turns Ready it is judged on its CPU, in core
    /// seconds.
    pub fn pod_settle_s(&self) -> f64 {
        self.pod_settle_s.unwrap_or_else(|| {
            selfheal_core::controllers::MetricsTiming::settle_s(
                self.cpu_window_s(),
                self.interval_s,
            )
        })
    }

    /// A query of [`Queries`] filled in for `svc`, its windows in wall
    /// seconds.
    pub fn query(&self, template: &str, svc: &ServiceConfig) -> String {
        Queries::fill(
            template,
            &self.namespace,
            svc,
            (
                self.wall(self.rate_window_s),
                self.wall(self.cpu_window_s()),
            ),
        )
    }

    /// The configured service `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The Deployment of service `name` (its own name when unconfigured).
    pub fn deployment_of(&self, name: &str) -> String {
        self.service(name)
            .map_or(name, ServiceConfig::deployment)
            .to_string()
    }
}

impl Queries {
    /// `template` with the placeholders filled in for one service; the
    /// windows in wall seconds.
    pub fn fill(
        template: &str,
        namespace: &str,
        svc: &ServiceConfig,
        (window_s, cpu_window_s): (f64, f64),
    ) -> String {
        template
            .replace("{namespace}", namespace)
            .replace("{service}", &svc.name)
            .replace("{deployment}", svc.deployment())
            .replace("{window}", &prom_duration(window_s))
            .replace("{cpu_window}", &prom_duration(cpu_window_s))
    }
}

fn d_interval() -> f64 {
    5.0
}
fn d_window() -> f64 {
    30.0
}
fn d_slo() -> f64 {
    500.0
}
fn d_objective() -> f64 {
    0.99
}
fn d_backfill() -> f64 {
    300.0
}
fn d_one() -> f64 {
    1.0
}
fn d_connections() -> u32 {
    100
}

impl AdapterConfig {
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let invalid = |path: FieldPath, message: String| {
            ConfigError::Invalid(Problem { path, message }.in_file(text, file))
        };
        let mut cfg: AdapterConfig =
            toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
        let root = FieldPath::default();

        for (name, v) in [
            ("interval_s", cfg.interval_s),
            ("rate_window_s", cfg.rate_window_s),
            ("cpu_window_s", cfg.cpu_window_s()),
            ("pod_settle_s", cfg.pod_settle_s()),
            ("slo_latency_ms", cfg.slo_latency_ms),
            ("time_scale", cfg.time_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(
                    root.key(name),
                    format!("must be a positive number, found {v}"),
                ));
            }
        }
        if !(cfg.slo_objective > 0.0 && cfg.slo_objective < 1.0) {
            return Err(invalid(
                root.key("slo_objective"),
                format!(
                    "must be a share between 0 and 1 (0.99 for 99 %), found {}",
                    cfg.slo_objective
                ),
            ));
        }
        if !(cfg.backfill_s.is_finite() && cfg.backfill_s >= 0.0) {
            return Err(invalid(
                root.key("backfill_s"),
                format!("must be zero or positive, found {}", cfg.backfill_s),
            ));
        }
        if cfg.services.is_empty() {
            return Err(invalid(
                root.key("service"),
                "needs at least one [[service]]".into(),
            ));
        }
        for (i, svc) in cfg.services.iter().enumerate() {
            if let Some(unknown) = svc.fallback_for.iter().find(|f| cfg.service(f).is_none()) {
                return Err(invalid(
                    root.key("service").index(i).key("fallback_for"),
                    format!("`{unknown}` is not a configured service"),
                ));
            }
        }
        if cfg.controller.kind == selfheal_core::scenario::ControllerKind::Kpa {
            // KPA reads what Knative's queue-proxies report each second,
            // which no Prometheus query here provides: it would never
            // decide.
            return Err(invalid(
                root.key("controller").key("kind"),
                "`kpa` reads the per-second concurrency or request counts of Knative's queue-proxies, which the adapter does not collect; a Knative service scales with Knative's own autoscaler (use `hpa`, `selfheal` or `static` here)".into(),
            ));
        }
        if !(cfg.prometheus.starts_with("http://") || cfg.prometheus.starts_with("https://")) {
            return Err(invalid(
                root.key("prometheus"),
                format!("`{}` is not an http:// or https:// address", cfg.prometheus),
            ));
        }
        let http = &cfg.prometheus_http;
        if http.bearer_token_file.is_some() && http.basic_auth.is_some() {
            return Err(invalid(
                root.key("prometheus_http").key("basic_auth"),
                "set `bearer_token_file` or `basic_auth`, not both".into(),
            ));
        }
        if http.ca_file.is_some() && !cfg.prometheus.starts_with("https://") {
            return Err(invalid(
                root.key("prometheus_http").key("ca_file"),
                format!("`{}` is not an https:// address", cfg.prometheus),
            ));
        }
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        cfg.prometheus_http = cfg.prometheus_http.relative_to(dir);
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_core_seconds_and_windows_wall_seconds() {
        assert_eq!(prom_duration(30.0), "30s");
        assert_eq!(prom_duration(0.4), "400ms");
        assert_eq!(prom_duration(2.5), "2500ms");
        let cfg = AdapterConfig::parse(
            "prometheus = \"http://p:9090\"\nnamespace = \"n\"\ntime_scale = 10\n[[service]]\nname = \"api\"\n",
            "a.toml",
        )
        .unwrap();
        // The default 30 s window of a cluster served at 10x is 3 s of wall
        // time.
        let q = cfg.query(&cfg.queries.request_rate, &cfg.services[0]);
        assert!(q.ends_with("[3s]))"), "{q}");
        // The CPU's window is the rate's unless set apart.
        let cpu = cfg.query(&cfg.queries.pod_cpu, &cfg.services[0]);
        assert!(cpu.ends_with("[3s]))"), "{cpu}");
        let apart = AdapterConfig::parse(
            "prometheus = \"http://p:9090\"\nnamespace = \"n\"\ntime_scale = 10\ncpu_window_s = 10\n[[service]]\nname = \"api\"\n",
            "a.toml",
        )
        .unwrap();
        let cpu = apart.query(&apart.queries.pod_cpu, &apart.services[0]);
        assert!(cpu.ends_with("[1s]))"), "{cpu}");
        let rate = apart.query(&apart.queries.request_rate, &apart.services[0]);
        assert!(rate.ends_with("[3s]))"), "{rate}");
        assert_eq!(cfg.wall(cfg.backfill_s), 30.0);
        // A pod is judged a CPU window and a scrape after it is ready
        // (core seconds; 5 s scrapes by default).
        assert_eq!((cfg.pod_settle_s(), apart.pod_settle_s()), (35.0, 15.0));
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let head = "prometheus = \"http://p:9090\"\nnamespace = \"default\"\n";
        for (body, prefix, field) in [
            (
                "intervl_s = 5\n[[service]]\nname = \"api\"\n",
                "a.toml:3:",
                "intervl_s",
            ),
            (
                "interval_s = -1\n[[service]]\nname = \"api\"\n",
                "a.toml:3:",
                "interval_s",
            ),
            (
                "pod_settle_s = 0\n[[service]]\nname = \"api\"\n",
                "a.toml:3:",
                "pod_settle_s",
            ),
            (
                "[controller]\nkind = \"kpa\"\n[[service]]\nname = \"api\"\n",
                "a.toml:4:",
                "controller.kind",
            ),
            // A type error inside a table names the table's field.
            (
                "[[service]]\nname = \"api\"\nmax_connections = \"ten\"\n",
                "a.toml:5: field `service[0].max_connections`: invalid type",
                "max_connections",
            ),
        ] {
            let e = AdapterConfig::parse(&format!("{head}{body}"), "a.toml")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(prefix) && e.contains(field), "{e}");
        }
    }

    #[test]
    fn the_example_configuration_loads() {
        let c = AdapterConfig::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/config.example.toml"
        )))
        .unwrap();
        assert!(c.controller.healing && c.services[0].backup_selector.is_some());
        let served = AdapterConfig::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/served.example.toml"
        )))
        .unwrap();
        assert_eq!(
            (served.namespace.as_str(), served.backfill_s),
            ("shop", 150.0)
        );
    }

    #[test]
    fn queries_are_filled_per_service() {
        let svc = ServiceConfig {
            name: "api".into(),
            deployment: Some("api-v2".into()),
            max_connections: 100,
            backup_selector: None,
            config_map: None,
            fallback_for: Vec::new(),
        };
        let q = Queries::fill(&Queries::default().pod_cpu, "shop", &svc, (60.0, 30.0));
        assert_eq!(
            q,
            r#"sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="shop",pod=~"api-v2-[a-z0-9]+-[a-z0-9]+",container!=""}[30s]))"#
        );
    }
}
