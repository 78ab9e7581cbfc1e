//! Builds the controller a scenario names (the simulator's side of the
//! seam: the control core itself knows nothing of scenario files).

use crate::control::hpa::{Hpa, HpaConfig};
use crate::control::kpa::{Kpa, KpaConfig};
use crate::control::scaler::{AutonomousScaler, ScalerConfig};
use crate::control::{Controller, StaticController};
use crate::rng::{Stream, Subsystem};
use crate::scenario::{ControllerKind, ControllerSpec};
use crate::time::Span;

pub fn build(spec: &ControllerSpec, seed: u64) -> Box<dyn Controller> {
    match spec.kind {
        ControllerKind::Static => Box::new(StaticController),
        ControllerKind::Hpa => Box::new(Hpa::new(HpaConfig {
            target_utilization: spec.target_cpu_percent.unwrap_or(80),
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            ..HpaConfig::default()
        })),
        ControllerKind::Kpa => Box::new(Kpa::new(KpaConfig {
            target: spec.target_concurrency,
            min_scale: spec.min_replicas,
            max_scale: spec.max_replicas,
            ..KpaConfig::default()
        })),
        ControllerKind::Selfheal => Box::new(AutonomousScaler::new(
            scaler_config(spec),
            Stream::new(seed, Subsystem::Control).next_u64(),
        )),
    }
}

pub fn scaler_config(spec: &ControllerSpec) -> ScalerConfig {
    let d = ScalerConfig::default();
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
