//! Scenario faults as Chaos Mesh resources (`chaos-mesh.org/v1alpha1`),
//! and back. `selfheal-k8s replay` writes them to a cluster with Chaos Mesh
//! installed; `selfheal serve` accepts the same resources and starts the
//! fault in the simulation, so a replay against it goes through the very
//! requests a real cluster gets. Pure: values in, values out.
//!
//! Which faults have a Chaos Mesh form (upstream: the StressChaos and
//! NetworkChaos documentation, chaos-mesh.org/docs):
//! - `memory_leak`: StressChaos with a memory stressor that grows linearly
//!   to `size` over `time` (the documented linear growth model; the CRD of
//!   Chaos Mesh 2.6.3 rejects `time`, chaos-mesh issue 4424, so it needs a
//!   release that accepts it). The leak rate is `size / time`.
//! - `cpu_stress`: StressChaos with a CPU stressor, `workers` x `load` % of
//!   a core each.
//! - `latency` on a service: NetworkChaos `delay`.
//! - `pod_kill` needs no Chaos Mesh: the replay deletes pods through the
//!   Kubernetes API.
//! - `node_loss`, `hang`, `dependency_failure`, `bad_deploy` and latency on
//!   one call edge have no form here (see `Unsupported`); a failing
//!   dependency and latency on a call edge are a mesh's fault injection
//!   (`istio`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::ResourceError;
use crate::scenario::{FaultKind, FaultSpec};

pub const API_VERSION: &str = "chaos-mesh.org/v1alpha1";

/// Why a fault cannot be replayed on a cluster.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind} is not replayed: {why}")]
pub struct Unsupported {
    pub kind: &'static str,
    pub why: &'static str,
}

/// How long a leak with no end of its own is given to grow: an hour.
const OPEN_ENDED_S: f64 = 3600.0;

fn seconds(s: f64) -> String {
    format!("{}s", s.round().max(1.0) as u64)
}

/// A Go duration (`600s`, `10m`, `1h30m`, `250ms`) in seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// MiB of a Chaos Mesh size (`256MB`, `1GiB`, `512Mi`).
fn parse_mib(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let v: f64 = s[..split].parse().ok()?;
    let bytes = match s[split..].to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "KIB" | "KI" => 1024.0,
        "MIB" | "MI" => 1048576.0,
        "GIB" | "GI" => 1073741824.0,
        _ => return None,
    };
    Some(v * bytes / 1048576.0)
}

/// The `mode` and `value` that pick a fault's pods.
fn mode(f: &FaultSpec) -> (&'static str, Option<String>) {
    match (f.pods, f.percent) {
        (Some(n), _) => ("fixed", Some(n.to_string())),
        (_, Some(p)) => ("fixed-percent", Some(format!("{}", p.round() as u64))),
        _ => ("all", None),
    }
}

/// The resource (its plural and body) that injects `f` into the pods
/// `selector` matches in `namespace`; `name` names it.
pub fn resource(
    f: &FaultSpec,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    name: &str,
) -> Result<(&'static str, Value), Unsupported> {
    let unsupported = |why| Unsupported {
        kind: f.kind.as_str(),
        why,
    };
    let (m, value) = mode(f);
    let mut spec =
        json!({"mode": m, "selector": {"namespaces": [namespace], "labelSelectors": selector}});
    if let Some(v) = value {
        spec["value"] = json!(v);
    }
    if let Some(d) = f.duration_s {
        spec["duration"] = json!(seconds(d));
    }
    let (kind, plural) = match f.kind {
        FaultKind::MemoryLeak => {
            let rate = f.leak_mib_per_s.unwrap_or(0.0);
            let time = f.duration_s.unwrap_or(OPEN_ENDED_S);
            spec["stressors"] = json!({"memory": {"workers": 1,
                "size": format!("{}MiB", (rate * time).round() as u64), "time": seconds(time)}});
            ("StressChaos", "stresschaos")
        }
        FaultKind::CpuStress => {
            let cores = f.cores.unwrap_or(0.0);
            let workers = cores.ceil().max(1.0);
            let load = (cores / workers * 100.0).round() as u64;
            spec["stressors"] = json!({"cpu": {"workers": workers as u64, "load": load}});
            ("StressChaos", "stresschaos")
        }
        FaultKind::Latency if f.edge.is_none() => {
            spec["action"] = json!("delay");
            spec["delay"] =
                json!({"latency": format!("{}ms", f.added_ms.unwrap_or(0.0).round() as u64)});
            ("NetworkChaos", "networkchaos")
        }
        FaultKind::Latency => {
            return Err(unsupported(
                "latency on one call edge is a mesh's fault injection (an Istio VirtualService), not a NetworkChaos here",
            ));
        }
        FaultKind::PodKill => {
            return Err(unsupported(
                "pods are deleted through the Kubernetes API instead",
            ));
        }
        FaultKind::NodeLoss => {
            return Err(unsupported(
                "losing a node takes the cloud provider's API, which Chaos Mesh does not drive",
            ));
        }
        FaultKind::Hang => {
            return Err(unsupported(
                "a process that stops answering while it keeps running has no Chaos Mesh action",
            ));
        }
        FaultKind::DependencyFailure => {
            return Err(unsupported(
                "a failing dependency is a mesh's fault injection (an Istio VirtualService), not a Chaos Mesh resource here",
            ));
        }
        FaultKind::BadDeploy => {
            return Err(unsupported(
                "a bad revision is the application's own image, which a replay cannot invent",
            ));
        }
    };
    Ok((
        plural,
        json!({"apiVersion": API_VERSION, "kind": kind,
               "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
    ))
}

/// The most CPU stress workers a resource may ask for (each stands for a
/// core kept busy).
pub const MAX_STRESS_WORKERS: u64 = 1024;

/// The fault a Chaos Mesh resource asks for, on the service its
/// `app` label selects.
pub fn fault(plural: &str, obj: &Value) -> Result<FaultSpec, ResourceError> {
    let spec = obj
        .get("spec")
        .ok_or_else(|| ResourceError::new("spec", "Required value"))?;
    let service = spec
        .pointer("/selector/labelSelectors/app")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ResourceError::new(
                "spec.selector.labelSelectors.app",
                "the served simulation selects pods by their `app` label",
            )
        })?
        .to_string();
    // The bounds Chaos Mesh's admission webhook enforces: a fixed count is
    // a whole number of at least 1, a percent lies in (0, 100].
    let value = || spec.get("value").and_then(Value::as_str).unwrap_or("");
    let (pods, percent) = match spec.get("mode").and_then(Value::as_str).unwrap_or("all") {
        "all" => (None, None),
        "one" => (Some(1), None),
        "fixed" => (
            Some(
                value()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        ResourceError::new(
                            "spec.value",
                            format!(
                                "mode fixed needs a whole number of pods, at least 1, found `{}`",
                                value()
                            ),
                        )
                    })?,
            ),
            None,
        ),
        "fixed-percent" => (
            None,
            Some(
                value()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        ResourceError::new(
                            "spec.value",
                            format!(
                                "mode fixed-percent needs a percent in (0, 100], found `{}`",
                                value()
                            ),
                        )
                    })?,
            ),
        ),
        other => {
            return Err(ResourceError::new(
                "spec.mode",
                format!("`{other}` is not served (all, one, fixed, fixed-percent are)"),
            ));
        }
    };
    let duration_s = match spec.get("duration").and_then(Value::as_str) {
        Some(d) => Some(
            parse_duration(d)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    ResourceError::new("spec.duration", format!("`{d}` is not a duration"))
                })?,
        ),
        None => None,
    };
    let mut f = FaultSpec {
        duration_s,
        pods,
        percent,
        ..FaultSpec::on(FaultKind::PodKill, &service)
    };
    match plural {
        "stresschaos" => {
            if let Some(m) = spec.pointer("/stressors/memory") {
                let size = m
                    .get("size")
                    .and_then(Value::as_str)
                    .and_then(parse_mib)
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        ResourceError::new(
                            "spec.stressors.memory.size",
                            "a size such as 256MiB is required",
                        )
                    })?;
                let time = m
                    .get("time")
                    .and_then(Value::as_str)
                    .and_then(parse_duration)
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .ok_or_else(|| ResourceError::new("spec.stressors.memory.time", "the served simulation grows memory linearly and needs the time to reach the size"))?;
                f.kind = FaultKind::MemoryLeak;
                f.leak_mib_per_s = Some(size / time);
            } else if let Some(c) = spec.pointer("/stressors/cpu") {
                let workers = match c.get("workers") {
                    None => 1,
                    Some(w) => w
                        .as_u64()
                        .filter(|w| (1..=MAX_STRESS_WORKERS).contains(w))
                        .ok_or_else(|| {
                            ResourceError::new(
                                "spec.stressors.cpu.workers",
                                format!("1 to {MAX_STRESS_WORKERS}, found {w}"),
                            )
                        })?,
                };
                let load = match c.get("load") {
                    None => 100.0,
                    Some(l) => l
                        .as_f64()
                        .filter(|l| *l > 0.0 && *l <= 100.0)
                        .ok_or_else(|| {
                            ResourceError::new(
                                "spec.stressors.cpu.load",
                                format!("a percent in (0, 100], found {l}"),
                            )
                        })?,
                };
                f.kind = FaultKind::CpuStress;
                f.cores = Some(workers as f64 * load / 100.0);
            } else {
                return Err(ResourceError::new(
                    "spec.stressors",
                    "a memory or cpu stressor is required",
                ));
            }
        }
        "networkchaos" => {
            if spec.get("action").and_then(Value::as_str) != Some("delay") {
                return Err(ResourceError::new("spec.action", "only `delay` is served"));
            }
            let latency = spec
                .pointer("/delay/latency")
                .and_then(Value::as_str)
                .and_then(parse_duration)
                .filter(|l| l.is_finite() && *l >= 0.0 && *l <= 3600.0)
                .ok_or_else(|| {
                    ResourceError::new(
                        "spec.delay.latency",
                        "a duration such as 100ms, at most 1h, is required",
                    )
                })?;
            f.kind = FaultKind::Latency;
            f.added_ms = Some(latency * 1000.0);
        }
        other => {
            return Err(ResourceError::new("kind", format!("{other} is not served")));
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            at_s: 300.0,
            ..FaultSpec::on(kind, "api")
        }
    }

    #[test]
    fn faults_round_trip_through_their_resources() {
        let sel = BTreeMap::from([("app".to_string(), "api".to_string())]);
        let leak = FaultSpec {
            pods: Some(2),
            leak_mib_per_s: Some(1.5),
            ..spec(FaultKind::MemoryLeak)
        };
        let cpu = FaultSpec {
            percent: Some(75.0),
            cores: Some(1.5),
            duration_s: Some(600.0),
            ..spec(FaultKind::CpuStress)
        };
        let slow = FaultSpec {
            added_ms: Some(120.0),
            duration_s: Some(600.0),
            ..spec(FaultKind::Latency)
        };
        for f in [leak, cpu, slow] {
            let (plural, obj) = resource(&f, "shop", &sel, "x").unwrap();
            let back = fault(plural, &obj).unwrap();
            assert_eq!(
                back,
                FaultSpec {
                    at_s: 0.0,
                    ..f.clone()
                },
                "{obj}"
            );
        }
        let (_, obj) = resource(
            &FaultSpec {
                pods: Some(2),
                leak_mib_per_s: Some(1.5),
                ..spec(FaultKind::MemoryLeak)
            },
            "shop",
            &sel,
            "x",
        )
        .unwrap();
        assert_eq!(
            obj["spec"]["stressors"]["memory"],
            json!({"workers": 1, "size": "5400MiB", "time": "3600s"})
        );
        assert!(resource(&spec(FaultKind::Hang), "shop", &sel, "x").is_err());
    }

    #[test]
    fn out_of_range_resources_are_refused_with_their_field() {
        // Formerly accepted: negative or infinite cores, a fixed count of
        // -3 (which became 0 pods), a percent of 1e9.
        let base = |mode: &str, value: &str, stressor: Value| {
            json!({"spec": {"mode": mode, "value": value,
                "selector": {"labelSelectors": {"app": "api"}},
                "stressors": stressor}})
        };
        let cpu = |w: Value, l: Value| json!({"cpu": {"workers": w, "load": l}});
        for (obj, field) in [
            (base("fixed", "-3", cpu(json!(1), json!(50))), "spec.value"),
            (base("fixed", "0", cpu(json!(1), json!(50))), "spec.value"),
            (base("fixed", "1.5", cpu(json!(1), json!(50))), "spec.value"),
            (
                base("fixed-percent", "1e9", cpu(json!(1), json!(50))),
                "spec.value",
            ),
            (
                base("fixed-percent", "0", cpu(json!(1), json!(50))),
                "spec.value",
            ),
            (
                base("all", "", cpu(json!(-3), json!(50))),
                "spec.stressors.cpu.workers",
            ),
            (
                base("all", "", cpu(json!(1e12), json!(50))),
                "spec.stressors.cpu.workers",
            ),
            (
                base("all", "", cpu(json!(1), json!(-10))),
                "spec.stressors.cpu.load",
            ),
            (
                base("all", "", cpu(json!(1), json!(1e308))),
                "spec.stressors.cpu.load",
            ),
            (
                base(
                    "all",
                    "",
                    json!({"memory": {"size": "-5MiB", "time": "60s"}}),
                ),
                "spec.stressors.memory.size",
            ),
        ] {
            let e = fault("stresschaos", &obj).unwrap_err();
            assert_eq!(e.field, field, "{obj}: {e}");
        }
        let ok = fault("stresschaos", &base("fixed", "2", cpu(json!(2), json!(50)))).unwrap();
        assert_eq!((ok.pods, ok.cores), (Some(2), Some(1.0)));
    }

    #[test]
    fn durations_and_sizes_parse_as_chaos_mesh_writes_them() {
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("250ms"), Some(0.25));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_mib("256MB"), Some(256e6 / 1048576.0));
        assert_eq!(parse_mib("1GiB"), Some(1024.0));
    }
}
