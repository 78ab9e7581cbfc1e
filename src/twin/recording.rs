//! A cluster's recording as the twin reads it: the per-service metrics of
//! `train::recorded` (any scrape interval), and beside them, when the
//! source has them, the call edges' metrics (`edges.csv`) and the
//! Deployments (`deployments.json`, the API's own objects).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::TwinError;
use crate::ResourceError;
use crate::eval::FileError;
use crate::eval::median;
use crate::quantity;
use crate::scenario::{IntOrPercent, ProbeSpec, RollingUpdateSpec};
use crate::train::recorded::{self, ServiceRecording};

pub use crate::metrics::EDGES_CSV_HEADER;
pub use crate::train::recorded::EdgeSeries;

/// What a Deployment says about its pods; `None` where it says nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    pub replicas: Option<u32>,
    pub cpu_request: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub memory_request_mib: Option<f64>,
    pub memory_limit_mib: Option<f64>,
    pub readiness: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
    pub rolling_update: Option<RollingUpdateSpec>,
}

/// Everything a twin is built from.
#[derive(Clone, Debug)]
pub struct Recording {
    pub dir: PathBuf,
    pub services: Vec<ServiceRecording>,
    pub edges: Vec<EdgeSeries>,
    pub shapes: BTreeMap<String, Shape>,
}

impl Recording {
    /// Reads `dir`: every `<service>-metrics.csv` (required), `edges.csv`
    /// and `deployments.json` (both optional). A scrape without the
    /// service's own p50 takes its callers' view of it: the median p50 of
    /// the edges into it at that time (within half a scrape).
    pub fn read(dir: &Path) -> Result<Recording, TwinError> {
        let services = recorded::read_dir(dir)?;
        let edges = recorded::read_edges(dir)?;
        let deployments_path = dir.join("deployments.json");
        let shapes = match read_optional(&deployments_path)? {
            None => BTreeMap::new(),
            Some(text) => parse_deployments(&text).map_err(|source| TwinError::Deployments {
                path: deployments_path.clone(),
                source,
            })?,
        };
        let mut rec = Recording {
            dir: dir.to_owned(),
            services,
            edges,
            shapes,
        };
        let half = 0.5 * rec.scrape_interval_s();
        let Recording {
            services, edges, ..
        } = &mut rec;
        for s in services.iter_mut() {
            let into: Vec<&EdgeSeries> = edges.iter().filter(|e| e.callee == s.service).collect();
            for m in s.scrapes.iter_mut().filter(|m| m.latency_p50.is_nan()) {
                let t = m.timestamp.as_secs_f64();
                let mut seen: Vec<f64> = into
                    .iter()
                    .filter_map(|e| {
                        let i = e.t.partition_point(|x| *x < t - half);
                        (e.t.get(i)? - t <= half).then(|| e.latency_p50_ms[i])
                    })
                    .collect();
                m.latency_p50 = median(&mut seen).unwrap_or(f64::NAN);
            }
        }
        Ok(rec)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceRecording> {
        self.services.iter().find(|s| s.service == name)
    }

    /// The span every service's recording covers, in recording seconds.
    pub fn span(&self) -> (f64, f64) {
        let first = |s: &ServiceRecording| s.scrapes.first().map(|m| m.timestamp.as_secs_f64());
        let last = |s: &ServiceRecording| s.scrapes.last().map(|m| m.timestamp.as_secs_f64());
        let from = self
            .services
            .iter()
            .filter_map(first)
            .fold(f64::NEG_INFINITY, f64::max);
        let to = self
            .services
            .iter()
            .filter_map(last)
            .fold(f64::INFINITY, f64::min);
        (from, to)
    }

    /// The median time between scrapes over all services.
    pub fn scrape_interval_s(&self) -> f64 {
        let mut gaps: Vec<f64> = self
            .services
            .iter()
            .flat_map(|s| {
                s.scrapes
                    .windows(2)
                    .map(|w| (w[1].timestamp - w[0].timestamp).as_secs_f64())
            })
            .collect();
        median(&mut gaps).unwrap_or(15.0)
    }
}

/// A file's text, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Why `deployments.json` was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentsError {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("expected a list of Deployments (a JSON array, or an object with an `items` array)")]
    NotAList,
    #[error(transparent)]
    Field(#[from] ResourceError),
}

/// Reads Deployments as the API returns them (`kubectl get deployments -o
/// json`: a `List`, a `DeploymentList` or a JSON array of Deployments), by
/// name. The first container's resources and probes stand for the pod's.
pub fn parse_deployments(text: &str) -> Result<BTreeMap<String, Shape>, DeploymentsError> {
    let v: Value = serde_json::from_str(text)?;
    let items = match &v {
        Value::Array(a) => a.as_slice(),
        Value::Object(o) => o
            .get("items")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or(DeploymentsError::NotAList)?,
        _ => return Err(DeploymentsError::NotAList),
    };
    let mut out = BTreeMap::new();
    for (i, d) in items.iter().enumerate() {
        let at = |field: &str, e: String| ResourceError::new(format!("items[{i}].{field}"), e);
        let name = d["metadata"]["name"]
            .as_str()
            .ok_or_else(|| at("metadata.name", "missing".into()))?;
        let spec = &d["spec"];
        let container = &spec["template"]["spec"]["containers"][0];
        let res = &container["resources"];
        let read = |path: &str, v: &Value, parse: fn(&str) -> Option<f64>| match v {
            Value::Null => Ok(None),
            Value::Number(n) => Ok(n.as_f64()),
            Value::String(s) => parse(s)
                .map(Some)
                .ok_or_else(|| at(path, format!("{s:?} is not a quantity"))),
            other => Err(at(path, format!("{other} is not a quantity"))),
        };
        let shape = Shape {
            replicas: spec["replicas"].as_u64().map(|r| r as u32),
            cpu_request: read(
                "resources.requests.cpu",
                &res["requests"]["cpu"],
                quantity::cpu_cores,
            )?,
            cpu_limit: read(
                "resources.limits.cpu",
                &res["limits"]["cpu"],
                quantity::cpu_cores,
            )?,
            memory_request_mib: read(
                "resources.requests.memory",
                &res["requests"]["memory"],
                quantity::mib,
            )?,
            memory_limit_mib: read(
                "resources.limits.memory",
                &res["limits"]["memory"],
                quantity::mib,
            )?,
            readiness: probe(&container["readinessProbe"]),
            liveness: probe(&container["livenessProbe"]),
            rolling_update: rolling_update(&spec["strategy"]["rollingUpdate"]),
        };
        out.insert(name.to_owned(), shape);
    }
    Ok(out)
}

/// A probe's timing with Kubernetes' defaults for what it leaves out.
fn probe(v: &Value) -> Option<ProbeSpec> {
    if !v.is_object() {
        return None;
    }
    let d = ProbeSpec::default();
    let secs = |k: &str, d: f64| v[k].as_f64().unwrap_or(d);
    let count = |k: &str, d: u32| v[k].as_u64().map_or(d, |n| n as u32);
    Some(ProbeSpec {
        period_s: secs("periodSeconds", d.period_s),
        timeout_s: secs("timeoutSeconds", d.timeout_s),
        success_threshold: count("successThreshold", d.success_threshold),
        failure_threshold: count("failureThreshold", d.failure_threshold),
        initial_delay_s: secs("initialDelaySeconds", d.initial_delay_s),
    })
}

fn rolling_update(v: &Value) -> Option<RollingUpdateSpec> {
    let int_or_percent = |v: &Value| match v {
        Value::Number(n) => n.as_u64().map(|n| IntOrPercent::Int(n as u32)),
        Value::String(s) => Some(IntOrPercent::Percent(s.clone())),
        _ => None,
    };
    let d = RollingUpdateSpec::default();
    v.is_object().then(|| RollingUpdateSpec {
        max_surge: int_or_percent(&v["maxSurge"]).unwrap_or(d.max_surge),
        max_unavailable: int_or_percent(&v["maxUnavailable"]).unwrap_or(d.max_unavailable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_give_replicas_resources_probes_and_rollout() {
        let shapes = parse_deployments(
            r#"{"kind": "List", "items": [{"metadata": {"name": "api"}, "spec": {
                "replicas": 3,
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "0%"}},
                "template": {"spec": {"containers": [{
                    "resources": {"requests": {"cpu": "250m", "memory": "128Mi"},
                                  "limits": {"cpu": 1, "memory": "1Gi"}},
                    "readinessProbe": {"periodSeconds": 5}}]}}}}]}"#,
        )
        .unwrap();
        let api = &shapes["api"];
        assert_eq!(api.replicas, Some(3));
        assert_eq!(api.cpu_request, Some(0.25));
        assert_eq!(api.cpu_limit, Some(1.0));
        assert_eq!(api.memory_request_mib, Some(128.0));
        assert_eq!(api.memory_limit_mib, Some(1024.0));
        assert_eq!(api.readiness.as_ref().unwrap().period_s, 5.0);
        assert_eq!(
            api.readiness.as_ref().unwrap().failure_threshold,
            ProbeSpec::default().failure_threshold
        );
        assert_eq!(api.liveness, None);
        let ru = api.rolling_update.as_ref().unwrap();
        assert_eq!(ru.max_surge, IntOrPercent::Int(1));
        assert_eq!(ru.max_unavailable, IntOrPercent::Percent("0%".into()));
        let bad = parse_deployments(
            r#"[{"metadata": {"name": "a"}, "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "lots"}}}]}}}}]"#,
        );
        assert_eq!(
            bad.unwrap_err().to_string(),
            "items[0].resources.limits.cpu: \"lots\" is not a quantity"
        );
    }
}
