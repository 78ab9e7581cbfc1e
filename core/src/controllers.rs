//! Builds the controller a scenario names (the simulator's side of the
//! seam: the control core itself knows nothing of scenario files).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::control::analysis::{AnalysisConfig, RolloutAnalysis};
use crate::control::healing::HealingController;
use crate::control::hpa::{Hpa, HpaConfig, PolicyKind};
use crate::control::kpa::{Kpa, KpaConfig, KpaMetric};
use crate::control::orchestrator::OrchestratorConfig;
use crate::control::scaler::{AutonomousScaler, LatencySlo, ScalerConfig};
use crate::control::selector::StrategyForest;
use crate::control::{Controller, StaticController};
use crate::models::{self, TrainedPredictor};
use crate::rng::{Stream, Subsystem};
use crate::scenario::{ControllerKind, ControllerSpec, Scenario, Sizing};
use crate::time::Span;

/// A controller that cannot be built: a model or selector file that is
/// missing or unfit, named with its path.
#[derive(Debug, thiserror::Error)]
#[error("controller: {0}")]
pub struct ControllerError(pub String);

/// The default directory of the trained predictor.
pub const DEFAULT_MODEL: &str = "models/predictor";

type Cache<T> = OnceLock<Mutex<BTreeMap<String, Arc<T>>>>;

/// The value cached under `key`, loaded on first use: a sweep of thousands
/// of runs reads each model file once per process.
fn cached<T, E: ToString>(
    cache: &'static Cache<T>,
    key: &str,
    load: impl FnOnce(&std::path::Path) -> Result<T, E>,
) -> Result<Arc<T>, ControllerError> {
    let mut map = cache
        .get_or_init(Default::default)
        .lock()
        .expect("model cache lock");
    if let Some(v) = map.get(key) {
        return Ok(v.clone());
    }
    let v = Arc::new(load(std::path::Path::new(key)).map_err(|e| ControllerError(e.to_string()))?);
    map.insert(key.to_string(), v.clone());
    Ok(v)
}

/// A trained predictor by directory.
fn model(dir: &str) -> Result<Arc<TrainedPredictor>, ControllerError> {
    static CACHE: Cache<TrainedPredictor> = OnceLock::new();
    cached(&CACHE, dir, models::load_predictor)
}

/// A learned strategy selector by file.
fn selector(path: &str) -> Result<Arc<StrategyForest>, ControllerError> {
    static CACHE: Cache<StrategyForest> = OnceLock::new();
    cached(&CACHE, path, models::load_selector)
}

/// The scenario's controller: its scaler, with the predictor and the
/// healing orchestrator on top when `healing` is set.
pub fn build_for(s: &Scenario) -> Result<Box<dyn Controller>, ControllerError> {
    build_controller(
        &s.controller,
        s.seed,
        MetricsTiming::of(s),
        LatencySlo::new(s.slo.latency_ms, s.slo.objective),
        &KnativeSizing::of(s),
    )
}

/// What a Knative user sets on each service after load-testing one pod:
/// its `containerConcurrency` and, for the `rps` metric, its target.
/// Empty maps leave both to the cluster (each service's `max_connections`)
/// and Knative's defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KnativeSizing {
    pub container_concurrency: BTreeMap<String, u32>,
    /// `autoscaling.knative.dev/target` under `metric: rps`: the requests
    /// per second a pod serves with its CPU limit busy, `cpu_limit / S`
    /// for `S` the CPU time of a request (the utilisation factor then
    /// keeps 30 % headroom, as under concurrency).
    pub rps_target: BTreeMap<String, f64>,
}

impl KnativeSizing {
    pub fn of(s: &Scenario) -> Self {
        KnativeSizing {
            container_concurrency: knative_container_concurrency(s),
            rps_target: s
                .services
                .iter()
                .filter(|svc| svc.revision.service_time_ms > 0.0)
                .map(|svc| {
                    (
                        svc.name.clone(),
                        svc.cpu_limit * 1000.0 / svc.revision.service_time_ms,
                    )
                })
                .collect(),
        }
    }
}

/// The `containerConcurrency` a Knative user would give each service after
/// load-testing one pod: the requests it holds while its CPU limit is busy
/// and nothing queues, `cpu_limit x R / S`, where `S` is the CPU time of a
/// request and `R` its unloaded response time (`S`, its off-CPU wait and, for each call, its
/// probability times two network hops and the callee's own `R`). A pod that
/// only computes holds one request per core; one that waits on its
/// dependencies holds more. At least 1, at most `max_connections` (the
/// pod's hard limit, which is what `containerConcurrency` enforces).
pub fn knative_container_concurrency(s: &Scenario) -> BTreeMap<String, u32> {
    let index = s.service_index();
    // Unloaded response times in ms, computed callees first with an
    // explicit stack: call graphs can be deep, and a cycle (rejected by
    // validation) would count a callee's CPU time only.
    let mut response: Vec<Option<f64>> = vec![None; s.services.len()];
    for root in 0..s.services.len() {
        let mut stack = vec![(root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if response[i].is_some() {
                continue;
            }
            let svc = &s.services[i];
            let callees = svc.calls.iter().filter_map(|c| index.get(c.to.as_str()));
            if !expanded {
                stack.push((i, true));
                stack.extend(
                    callees
                        .filter(|&&j| response[j].is_none())
                        .map(|&j| (j, false)),
                );
                continue;
            }
            let wait: f64 = svc
                .calls
                .iter()
                .filter_map(|c| {
                    let j = *index.get(c.to.as_str())?;
                    let callee = response[j].unwrap_or(s.services[j].revision.service_time_ms);
                    Some(c.probability * (2.0 * c.network_latency_ms + callee))
                })
                .sum();
            response[i] = Some(svc.revision.service_time_ms + svc.revision.wait_ms + wait);
        }
    }
    s.services
        .iter()
        .zip(response)
        .map(|(svc, r)| {
            let cpu = svc.revision.service_time_ms;
            let held = svc.cpu_limit * r.unwrap_or(cpu) / cpu;
            let cc = if held.is_finite() { held.round() } else { 1.0 };
            (
                svc.name.clone(),
                (cc as u32).clamp(1, svc.max_connections.max(1)),
            )
        })
        .collect()
}

/// How often the cluster's metrics come and what their rates are over, in
/// seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricsTiming {
    /// Between two scrapes.
    pub scrape_s: f64,
    /// A pod's CPU sample.
    pub cpu_window_s: f64,
    /// A service's request rate.
    pub rate_window_s: f64,
    /// How long after a pod turns ready its CPU sample is judged (the
    /// healing core restarts a pod far below or above its peers): the
    /// sample must have begun after the pod was ready.
    pub pod_settle_s: f64,
}

impl MetricsTiming {
    /// A simulated cluster's: a pod's CPU sample covers the last scrape
    /// interval, and a pod is judged a scrape after its first full one.
    pub fn of(s: &Scenario) -> Self {
        let scrape_s = s.metrics.scrape_interval_s;
        MetricsTiming {
            scrape_s,
            cpu_window_s: scrape_s,
            rate_window_s: s.metrics.rate_window_s,
            pod_settle_s: Self::settle_s(scrape_s, scrape_s),
        }
    }

    /// How long after a pod turns ready its CPU sample began after it did:
    /// one CPU window, and a scrape's slack for when the sample was taken.
    pub fn settle_s(cpu_window_s: f64, scrape_s: f64) -> f64 {
        cpu_window_s + scrape_s
    }
}

/// The controller a spec names, for a cluster whose metrics come as
/// `timing` says, with the latency objective `slo` (what the live adapter
/// calls with its own configuration). Any scrape interval will do: the
/// predictor resamples onto its model's time base.
pub fn build_controller(
    spec: &ControllerSpec,
    seed: u64,
    timing: MetricsTiming,
    slo: LatencySlo,
    knative: &KnativeSizing,
) -> Result<Box<dyn Controller>, ControllerError> {
    let slo_latency_ms = slo.latency_ms;
    let mut scaler = build(spec, seed, timing, slo, knative);
    if spec.rollout_analysis {
        scaler = Box::new(RolloutAnalysis::new(scaler, AnalysisConfig::default()));
    }
    if !spec.healing {
        return Ok(scaler);
    }
    let dir = spec.healing_model.as_deref().unwrap_or(DEFAULT_MODEL);
    let bundle = model(dir)?;
    let mut predictor = bundle.config.clone();
    predictor.slo_latency_ms = slo_latency_ms;
    let orchestrator = OrchestratorConfig {
        dry_run: spec.healing_dry_run,
        max_replicas: spec.max_replicas,
        symptom_p99_ms: slo_latency_ms,
        first_strategy: spec.healing_first,
        pod_settle_s: timing.pod_settle_s,
        ..OrchestratorConfig::default()
    };
    let mut healing = HealingController::new(scaler, bundle.model.clone(), predictor, orchestrator);
    if let Some(path) = &spec.healing_selector {
        healing.orchestrator.set_selector(selector(path)?);
    }
    Ok(Box::new(healing))
}

/// The scaler a controller spec names. KPA reads each service's
/// `containerConcurrency` and `rps` target from `knative`, else from the
/// observed `max_connections` and Knative's defaults; selfheal sizing for
/// the SLO reads `slo`; the selfheal scaler reads the scrape interval and
/// the request rate's window from `timing`.
pub fn build(
    spec: &ControllerSpec,
    seed: u64,
    timing: MetricsTiming,
    slo: LatencySlo,
    knative: &KnativeSizing,
) -> Box<dyn Controller> {
    match spec.kind {
        ControllerKind::Static => Box::new(StaticController),
        ControllerKind::Hpa => Box::new(Hpa::new(hpa_config(spec))),
        ControllerKind::Kpa => Box::new(Kpa::new(KpaConfig {
            metric: spec.metric.unwrap_or_default(),
            target: spec.target_concurrency,
            targets: match spec.metric.unwrap_or_default() {
                KpaMetric::Rps => knative.rps_target.clone(),
                KpaMetric::Concurrency => BTreeMap::new(),
            },
            container_concurrency: knative.container_concurrency.clone(),
            min_scale: spec.min_replicas,
            max_scale: spec.max_replicas,
            scale_down_delay: Span::from_secs(spec.scale_down_delay_s.map_or(0, u64::from)),
            ..KpaConfig::default()
        })),
        ControllerKind::Selfheal => Box::new(AutonomousScaler::new(
            ScalerConfig {
                scrape_interval: Span::from_secs_f64(timing.scrape_s),
                rate_window: Span::from_secs_f64(timing.rate_window_s),
                ..scaler_config(spec, slo)
            },
            Stream::new(seed, Subsystem::Control).next_u64(),
        )),
    }
}

/// The HPA a controller spec describes: autoscaling/v2 defaults, with the
/// spec's CPU target, replica bounds and `behavior` settings.
pub fn hpa_config(spec: &ControllerSpec) -> HpaConfig {
    let d = HpaConfig::default();
    let mut behavior = d.behavior.clone().unwrap_or_default();
    let rules = [
        (
            &mut behavior.scale_up,
            spec.scale_up_stabilization_s,
            spec.scale_up_percent,
        ),
        (
            &mut behavior.scale_down,
            spec.scale_down_stabilization_s,
            spec.scale_down_percent,
        ),
    ];
    for (rules, window, percent) in rules {
        if let Some(w) = window {
            rules.stabilization = Span::from_secs(u64::from(w));
        }
        if let Some(pc) = percent {
            for p in &mut rules.policies {
                if p.kind == PolicyKind::Percent {
                    p.value = pc;
                }
            }
        }
    }
    HpaConfig {
        target_utilization: spec
            .target_cpu_percent
            .unwrap_or(crate::control::hpa::DEFAULT_CPU_PERCENT),
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        behavior: Some(behavior),
        ..d
    }
}

pub fn scaler_config(spec: &ControllerSpec, slo: LatencySlo) -> ScalerConfig {
    let d = match spec.sizing_or_default() {
        Sizing::Slo => ScalerConfig::for_slo(slo),
        Sizing::Cpu => ScalerConfig::default(),
    };
    let secs = |v: Option<f64>, default: Span| v.map_or(default, Span::from_secs_f64);
    let mut forecast = d.forecast.clone();
    if let Some(l) = spec.interval_level {
        forecast.interval_level = l;
    }
    ScalerConfig {
        horizon: secs(spec.horizon_s, d.horizon),
        forecast,
        capacity_rps: spec.capacity_rps,
        cpu_target: spec.cpu_target.unwrap_or(d.cpu_target),
        plan_on_upper: spec.plan_on_upper.unwrap_or(d.plan_on_upper),
        scale_up_cooldown: secs(spec.scale_up_cooldown_s, d.scale_up_cooldown),
        scale_down_cooldown: secs(spec.scale_down_cooldown_s, d.scale_down_cooldown),
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        ..d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::hpa::Behavior;

    #[test]
    fn an_hpa_spec_sets_only_the_behavior_it_names() {
        let plain = ControllerSpec::parse_short("hpa").unwrap();
        assert_eq!(
            hpa_config(&plain),
            HpaConfig {
                min_replicas: plain.min_replicas,
                max_replicas: plain.max_replicas,
                ..HpaConfig::default()
            }
        );
        let tuned = ControllerSpec {
            target_cpu_percent: Some(55),
            scale_down_stabilization_s: Some(120),
            scale_up_percent: Some(250),
            ..plain
        };
        let c = hpa_config(&tuned);
        let b = c.behavior.expect("autoscaling/v2 behavior");
        let d = Behavior::default();
        assert_eq!(c.target_utilization, 55);
        assert_eq!(b.scale_down.stabilization, Span::from_secs(120));
        assert_eq!(b.scale_up.stabilization, d.scale_up.stabilization);
        // The percent policy changes; the 4-pods policy beside it does not.
        let values = |r: &crate::control::hpa::ScalingRules| -> Vec<(PolicyKind, u32)> {
            r.policies.iter().map(|p| (p.kind, p.value)).collect()
        };
        assert_eq!(
            values(&b.scale_up),
            [(PolicyKind::Pods, 4), (PolicyKind::Percent, 250)]
        );
        assert_eq!(values(&b.scale_down), values(&d.scale_down));
    }
}
