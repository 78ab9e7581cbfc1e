//! The IO half of a replay: faults written through the Kubernetes API when
//! due, probes of the hypothesis read from Prometheus, and the files of
//! the verdict. The adapter's run loop drives it between its ticks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use selfheal_core::control::Command;
use selfheal_core::scenario::Scenario;
use selfheal_core::time::Time;

use super::{Injection, Replay, Target, plan, pods_to_delete};
use crate::Adapter;
use crate::actuate::{self, ApiRequest};
use crate::api::{ApiError, Executor, Outcome};
use crate::config::{AdapterConfig, ServiceConfig};
use crate::observe::{self, ObserveError};
use crate::prom::{PromError, Prometheus};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("service `{0}` ({1}) is not in the adapter's configuration: add a [[service]] for it")]
    NotConfigured(String, &'static str),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("measuring the failed requests: {0}")]
    Prom(#[from] PromError),
}

/// A replay against the cluster the adapter acts on.
pub struct Live {
    replay: Replay,
    /// Core seconds at replay second 0.
    origin: f64,
    out: PathBuf,
    prom: Prometheus,
    /// The adapter's configuration with the hypothesis's window.
    probe_cfg: AdapterConfig,
    /// The services the load enters (the client requests' first hop).
    entries: Vec<ServiceConfig>,
    min_ready: Vec<(ServiceConfig, u32)>,
    slo_objective: f64,
    log: fn(&str),
}

fn configured(
    cfg: &AdapterConfig,
    name: &str,
    role: &'static str,
) -> Result<ServiceConfig, ReplayError> {
    cfg.service(name)
        .cloned()
        .ok_or_else(|| ReplayError::NotConfigured(name.to_string(), role))
}

impl Live {
    /// Plans `scenario`'s faults on the adapter's cluster; replay second 0
    /// is now. `log` reports what the replay does.
    pub async fn start(
        scenario: &Scenario,
        until_s: Option<f64>,
        out: PathBuf,
        adapter: &Adapter,
        executor: &Executor,
        log: fn(&str),
    ) -> Result<Live, ReplayError> {
        let cfg = &adapter.cfg;
        let mut entries = Vec::new();
        for l in &scenario.loads {
            if !entries.iter().any(|e: &ServiceConfig| e.name == l.service) {
                entries.push(configured(cfg, &l.service, "a load's entry service")?);
            }
        }
        let mut min_ready = Vec::new();
        let window_s = match &scenario.experiment {
            Some(e) => {
                for m in &e.hypothesis.min_ready {
                    min_ready.push((
                        configured(cfg, &m.service, "named by min_ready")?,
                        m.replicas,
                    ));
                }
                e.hypothesis.window_s
            }
            None => cfg.rate_window_s,
        };
        // Pods are picked by their Deployment's selector, as its
        // ReplicaSets pick them.
        let mut targets = BTreeMap::new();
        for f in &scenario.faults {
            let Some(svc) = f.service.as_deref() else {
                continue;
            };
            let deployment = cfg.deployment_of(svc);
            let read = actuate::get(format!(
                "/apis/apps/v1/namespaces/{}/deployments/{deployment}",
                cfg.namespace
            ));
            let d = executor.read(&read).await.ok();
            let selector = d
                .as_ref()
                .and_then(|d| d.pointer("/spec/selector/matchLabels").cloned())
                .and_then(|m| serde_json::from_value(m).ok())
                .unwrap_or_else(|| BTreeMap::from([("app".to_string(), deployment.clone())]));
            let image = d
                .as_ref()
                .and_then(|d| d.pointer("/spec/template/spec/containers/0/image"))
                .and_then(serde_json::Value::as_str)
                .map(String::from);
            targets.insert(
                svc.to_string(),
                Target {
                    deployment,
                    selector,
                    image,
                },
            );
        }
        let steps = plan(scenario, &cfg.namespace, |s| {
            targets.get(s).cloned().unwrap_or_default()
        });
        for s in &steps {
            match &s.injection {
                Ok(_) => log(&format!(
                    "replay: {} on {} at {} s",
                    s.label(),
                    s.fault
                        .service
                        .as_deref()
                        .or(s.fault.node.as_deref())
                        .unwrap_or("-"),
                    s.at_s
                )),
                Err(e) => log(&format!("replay: {e}")),
            }
        }
        // The pure simulation's controller judges latency against the
        // scenario's SLO; a different one here is a different policy.
        if cfg.slo_latency_ms != scenario.slo.latency_ms
            || cfg.slo_objective != scenario.slo.objective
        {
            log(&format!(
                "replay: the scenario's SLO is {} of requests within {} ms, this configuration's {} within {} ms: the controller judges latency against the latter (set slo_latency_ms and slo_objective to compare with the simulation)",
                scenario.slo.objective,
                scenario.slo.latency_ms,
                cfg.slo_objective,
                cfg.slo_latency_ms
            ));
        }
        let now = crate::clock::Clock::wall_now();
        Ok(Live {
            replay: Replay::new(scenario, steps, until_s),
            origin: adapter.clock.core_time(now).as_secs_f64(),
            out,
            prom: adapter.prom.clone(),
            probe_cfg: AdapterConfig {
                rate_window_s: window_s,
                ..cfg.clone()
            },
            entries,
            min_ready,
            slo_objective: scenario.slo.objective,
            log,
        })
    }

    /// Replay seconds at unix time `now`.
    fn t(&self, now: f64, adapter: &Adapter) -> f64 {
        adapter.clock.core_time(now).as_secs_f64() - self.origin
    }

    /// Writes the faults due now.
    pub async fn inject_due(&mut self, now: f64, adapter: &Adapter, executor: &Executor) {
        let t = self.t(now, adapter);
        for step in self.replay.due(t) {
            let result = match &step.injection {
                Err(_) => continue,
                Ok(Injection::Write(r)) => executor.send_write(r).await.map(|o| vec![o]),
                Ok(Injection::DeletePods {
                    selector,
                    pods,
                    percent,
                }) => {
                    delete_pods(executor, &adapter.cfg.namespace, selector, *pods, *percent).await
                }
                Ok(Injection::DrainNode { node }) => {
                    drain(executor, &adapter.cfg.namespace, node).await
                }
            };
            let what = step.label();
            match result {
                Ok(outcomes) => {
                    let sent = outcomes.iter().any(|o| matches!(o, Outcome::Sent(_)));
                    if sent && !step.ends {
                        self.replay.started.insert(step.index, t);
                    }
                    (self.log)(&format!("replay: {what} at {t:.0} s: {outcomes:?}"));
                }
                Err(e) => (self.log)(&format!("replay: {what} at {t:.0} s failed: {e}")),
            }
        }
    }

    /// Records a command the core gave at `now`.
    pub fn decided(&mut self, now: f64, adapter: &Adapter, c: &Command) {
        let t = self.t(now, adapter).max(0.0);
        self.replay.commands.push((
            Time::from_secs_f64(t),
            adapter.controller_name().to_string(),
            c.clone(),
        ));
    }

    /// Takes a probe of the hypothesis when one is due.
    pub async fn probe_if_due(&mut self, now: f64, adapter: &Adapter) {
        let t = self.t(now, adapter);
        if self.replay.probe_due(t).is_none() {
            return;
        }
        match self.measure(now, adapter).await {
            Ok((error_rate, p99_ms, ready_ok)) => {
                self.replay.probe(t, error_rate, p99_ms, ready_ok)
            }
            Err(e) => (self.log)(&format!("replay: no probe at {t:.0} s: {e}")),
        }
    }

    /// The client requests' error rate and p99 over the window (entry
    /// services weighted by their request rates), and the ready replicas.
    async fn measure(&self, now: f64, adapter: &Adapter) -> Result<(f64, f64, bool), ObserveError> {
        let (mut rate, mut failed, mut p99) = (0.0, 0.0, f64::NAN);
        for svc in &self.entries {
            let m =
                observe::service_view(&self.prom, &self.probe_cfg, svc, now, &adapter.clock, None)
                    .await?
                    .metrics;
            rate += m.request_rate;
            failed += m.request_rate * m.error_rate;
            p99 = if p99.is_nan() {
                m.latency_p99
            } else {
                p99.max(m.latency_p99)
            };
        }
        let mut ready_ok = true;
        for (svc, want) in &self.min_ready {
            let m =
                observe::service_view(&self.prom, &self.probe_cfg, svc, now, &adapter.clock, None)
                    .await?
                    .metrics;
            ready_ok &= m.ready_replicas >= *want;
        }
        let error_rate = if rate > 0.0 { failed / rate } else { 0.0 };
        Ok((error_rate, p99, ready_ok))
    }

    /// Wall seconds from `now` until the replay has something to do.
    pub fn wall_until_next(&self, now: f64, adapter: &Adapter) -> f64 {
        adapter
            .cfg
            .wall(self.replay.next_at() - self.t(now, adapter))
            .max(0.0)
    }

    pub fn done(&self, now: f64, adapter: &Adapter) -> bool {
        self.replay.done(self.t(now, adapter))
    }

    /// Client requests that failed, and all of them, from the fault's
    /// start to `now` (Prometheus counters; times `time_scale` because a
    /// served simulation divides its counters by its speed-up).
    async fn requests_since(
        &self,
        start_t: f64,
        now: f64,
        adapter: &Adapter,
    ) -> Result<(f64, f64), PromError> {
        let span = (self.t(now, adapter) - start_t) / adapter.cfg.time_scale;
        let services = self
            .entries
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
            .join("|");
        let ns = &adapter.cfg.namespace;
        let q = |codes: &str| {
            format!(
                "sum(increase(http_requests_total{{namespace=\"{ns}\",service=~\"{services}\"{codes}}}[{}ms]))",
                (span * 1000.0).round().max(1.0) as u64
            )
        };
        let one = |v: Vec<crate::prom::Sample>| {
            v.first().map_or(0.0, |s| s.value) * adapter.cfg.time_scale
        };
        let failed = one(self.prom.query(&q(",code=~\"5..\""), now).await?);
        let total = one(self.prom.query(&q(""), now).await?);
        Ok((failed, total))
    }

    /// Writes the verdict (if the scenario has an experiment), its probes
    /// and every command to the output folder.
    pub async fn finish(&mut self, now: f64, adapter: &Adapter) -> Result<(), ReplayError> {
        let write = |name: &str, body: String| {
            let path = self.out.join(name);
            std::fs::create_dir_all(&self.out)
                .and_then(|_| std::fs::write(&path, body))
                .map_err(|source| ReplayError::Write {
                    path: path.display().to_string(),
                    source,
                })
        };
        write(
            "commands.csv",
            selfheal_core::control::commands_csv(&self.replay.commands),
        )?;
        let start = self.replay.started.values().copied().min_by(f64::total_cmp);
        let (failed, total) = match start {
            Some(s) => self.requests_since(s, now, adapter).await?,
            None => (0.0, 0.0),
        };
        let budget = (1.0 - self.slo_objective) * total;
        let burnt = if budget > 0.0 { failed / budget } else { 0.0 };
        if let Some(v) = self.replay.verdict(failed.round() as u64, burnt) {
            write("verdict.toml", toml::to_string(&v).unwrap_or_default())?;
            write("probes.csv", v.probes_csv())?;
            for line in v.text().lines() {
                (self.log)(line);
            }
        }
        (self.log)(&format!("replay written to {}", self.out.display()));
        Ok(())
    }
}

/// Cordons `node`, then deletes the namespace's pods on it at once (grace
/// period 0), as `kubectl drain --force --grace-period 0` would without
/// waiting.
async fn drain(executor: &Executor, namespace: &str, node: &str) -> Result<Vec<Outcome>, ApiError> {
    let mut out = vec![executor.send_write(&super::cordon(node, true)).await?];
    let list = executor
        .read(&actuate::get(format!(
            "/api/v1/namespaces/{namespace}/pods"
        )))
        .await?;
    let on_node = list
        .get("items")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| {
            p.pointer("/spec/nodeName")
                .and_then(serde_json::Value::as_str)
                == Some(node)
        })
        .filter_map(|p| {
            p.pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
        });
    for pod in on_node {
        out.push(executor.send_write(&delete_now(namespace, pod)).await?);
    }
    Ok(out)
}

fn delete_now(namespace: &str, pod: &str) -> ApiRequest {
    ApiRequest {
        method: "DELETE",
        path: format!("/api/v1/namespaces/{namespace}/pods/{pod}?gracePeriodSeconds=0"),
        content_type: None,
        body: None,
    }
}

/// Deletes the pods a pod kill picks, at once (grace period 0).
async fn delete_pods(
    executor: &Executor,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    pods: Option<u32>,
    percent: Option<f64>,
) -> Result<Vec<Outcome>, ApiError> {
    let labels = selector
        .iter()
        .map(|(k, v)| format!("{k}%3D{v}"))
        .collect::<Vec<_>>()
        .join("%2C");
    let list = executor
        .read(&actuate::get(format!(
            "/api/v1/namespaces/{namespace}/pods?labelSelector={labels}"
        )))
        .await?;
    let mut out = Vec::new();
    for pod in pods_to_delete(&list, pods, percent) {
        out.push(executor.send_write(&delete_now(namespace, &pod)).await?);
    }
    Ok(out)
}
