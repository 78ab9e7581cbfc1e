//! Scenario faults as Istio fault injection (a `networking.istio.io/v1`
//! VirtualService whose route carries `fault.delay` or `fault.abort`),
//! and back. `selfheal-k8s replay` writes them to a cluster with Istio;
//! `selfheal serve` accepts the same resources and starts the fault in the
//! simulation, and deleting the VirtualService ends it, as it does in a
//! mesh. Pure: values in, values out.
//!
//! The forms (upstream: Istio's "Fault Injection" task and the
//! `HTTPFaultInjection` reference):
//! - `dependency_failure`, mode `errors`: `abort` with HTTP 503 on
//!   `error_rate` of the requests to the service;
//! - `dependency_failure`, mode `blackhole`: `delay` of one hour on every
//!   request (Envoy holds the request; the callers' timeouts end it first:
//!   a mesh has no way to drop a request unanswered);
//! - `latency` on a call edge `caller->callee`: `delay` on the callee's
//!   route, matched on the caller's `app` label (`sourceLabels`).
//!
//! A service-wide `latency` stays NetworkChaos (`chaos_mesh`): it also
//! delays the kubelet's probes, which a mesh does not see.

use serde_json::{Value, json};

use crate::ResourceError;
use crate::chaos_mesh::{Unsupported, parse_duration};
use crate::scenario::{DependencyMode, FaultKind, FaultSpec};

pub const API_VERSION: &str = "networking.istio.io/v1";
pub const PLURAL: &str = "virtualservices";

/// What Envoy's delay stands in for a request never answered.
const BLACKHOLE_S: f64 = 3600.0;

/// The VirtualService that injects `f` into the traffic to its service
/// (`None`: the fault has no form in a mesh).
pub fn virtual_service(f: &FaultSpec, namespace: &str, name: &str) -> Option<Value> {
    let percent = |p: f64| json!({"value": p});
    let (host, source, fault) = match f.kind {
        FaultKind::DependencyFailure => {
            let host = f.service.clone()?;
            let fault = match f.mode? {
                DependencyMode::Errors => json!({"abort": {
                    "httpStatus": 503,
                    "percentage": percent(100.0 * f.error_rate.unwrap_or(1.0)),
                }}),
                DependencyMode::Blackhole => json!({"delay": {
                    "fixedDelay": format!("{BLACKHOLE_S}s"),
                    "percentage": percent(100.0),
                }}),
            };
            (host, None, fault)
        }
        FaultKind::Latency => {
            let (caller, callee) = crate::scenario::edge_ends(f.edge.as_deref()?)?;
            let ms = f.added_ms.unwrap_or(0.0);
            (
                callee.to_string(),
                Some(caller.to_string()),
                json!({"delay": {"fixedDelay": format!("{ms}ms"), "percentage": percent(100.0)}}),
            )
        }
        _ => return None,
    };
    let mut route = json!({"fault": fault, "route": [{"destination": {"host": host}}]});
    if let Some(app) = source {
        route["match"] = json!([{"sourceLabels": {"app": app}}]);
    }
    Some(json!({
        "apiVersion": API_VERSION, "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "http": [route]},
    }))
}

/// Why a fault has no mesh form, for the replay's report.
pub fn unsupported(f: &FaultSpec) -> Unsupported {
    Unsupported {
        kind: f.kind.as_str(),
        why: "it has no form in a mesh's fault injection",
    }
}

/// The fault a VirtualService injects: its first route's `fault`, on the
/// service its first host names (a short name, or `<name>.<namespace>...`).
pub fn fault(obj: &Value) -> Result<FaultSpec, ResourceError> {
    let host = obj
        .pointer("/spec/hosts/0")
        .and_then(Value::as_str)
        .ok_or_else(|| ResourceError::new("spec.hosts", "Required value"))?;
    let service = host.split('.').next().unwrap_or(host).to_string();
    let route = obj
        .pointer("/spec/http/0")
        .ok_or_else(|| ResourceError::new("spec.http", "a route with a fault is required"))?;
    let share = |f: &Value, field: &str| -> Result<f64, ResourceError> {
        match f.pointer("/percentage/value") {
            None => Ok(100.0),
            Some(v) => v
                .as_f64()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    ResourceError::new(
                        format!("spec.http[0].fault.{field}.percentage.value"),
                        format!("a percent in [0, 100], found {v}"),
                    )
                }),
        }
    };
    let source = route
        .pointer("/match/0/sourceLabels/app")
        .and_then(Value::as_str);
    if let Some(abort) = route.pointer("/fault/abort") {
        if source.is_some() {
            return Err(ResourceError::new(
                "spec.http[0].match",
                "the served simulation aborts every caller's requests to a service, not one caller's",
            ));
        }
        return Ok(FaultSpec {
            mode: Some(DependencyMode::Errors),
            error_rate: Some(share(abort, "abort")? / 100.0),
            ..FaultSpec::on(FaultKind::DependencyFailure, &service)
        });
    }
    let Some(delay) = route.pointer("/fault/delay") else {
        return Err(ResourceError::new(
            "spec.http[0].fault",
            "a delay or an abort is required",
        ));
    };
    let fixed = delay
        .get("fixedDelay")
        .and_then(Value::as_str)
        .and_then(parse_duration)
        .filter(|d| d.is_finite() && *d >= 0.0)
        .ok_or_else(|| {
            ResourceError::new(
                "spec.http[0].fault.delay.fixedDelay",
                "a duration such as 100ms is required",
            )
        })?;
    if share(delay, "delay")? < 100.0 {
        return Err(ResourceError::new(
            "spec.http[0].fault.delay.percentage",
            "the served simulation delays every request (100)",
        ));
    }
    match source {
        Some(caller) => Ok(FaultSpec {
            edge: Some(format!("{caller}->{service}")),
            service: None,
            added_ms: Some(fixed * 1000.0),
            ..FaultSpec::on(FaultKind::Latency, &service)
        }),
        None if fixed >= BLACKHOLE_S => Ok(FaultSpec {
            mode: Some(DependencyMode::Blackhole),
            ..FaultSpec::on(FaultKind::DependencyFailure, &service)
        }),
        None => Err(ResourceError::new(
            "spec.http[0].match",
            "a delay under an hour is served on one caller's calls (sourceLabels.app); a service-wide delay is a NetworkChaos",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_faults_round_trip_through_their_virtual_services() {
        let errors = FaultSpec {
            mode: Some(DependencyMode::Errors),
            error_rate: Some(0.25),
            ..FaultSpec::on(FaultKind::DependencyFailure, "orders")
        };
        let blackhole = FaultSpec {
            mode: Some(DependencyMode::Blackhole),
            ..FaultSpec::on(FaultKind::DependencyFailure, "orders")
        };
        let edge = FaultSpec {
            service: None,
            edge: Some("frontend->catalog".into()),
            added_ms: Some(250.0),
            ..FaultSpec::on(FaultKind::Latency, "x")
        };
        for f in [&errors, &blackhole, &edge] {
            let vs = virtual_service(f, "shop", "v").unwrap();
            assert_eq!(vs["apiVersion"], API_VERSION);
            assert_eq!(&fault(&vs).unwrap(), f, "{vs}");
        }
        let vs = virtual_service(&errors, "shop", "v").unwrap();
        assert_eq!(vs["spec"]["http"][0]["fault"]["abort"]["httpStatus"], 503);
        assert_eq!(
            vs["spec"]["http"][0]["fault"]["abort"]["percentage"]["value"],
            25.0
        );
        let vs = virtual_service(&edge, "shop", "v").unwrap();
        assert_eq!(vs["spec"]["hosts"][0], "catalog");
        assert_eq!(
            vs["spec"]["http"][0]["match"][0]["sourceLabels"]["app"],
            "frontend"
        );
        assert_eq!(
            vs["spec"]["http"][0]["fault"]["delay"]["fixedDelay"],
            "250ms"
        );
        // No mesh form: a pod kill, a service-wide latency.
        assert!(virtual_service(&FaultSpec::on(FaultKind::PodKill, "a"), "shop", "v").is_none());
        assert!(virtual_service(&FaultSpec::on(FaultKind::Latency, "a"), "shop", "v").is_none());
    }

    #[test]
    fn what_the_simulation_cannot_do_is_refused_by_field() {
        let vs = |route: Value| json!({"spec": {"hosts": ["orders.shop.svc.cluster.local"], "http": [route]}});
        let e = fault(&vs(json!({"fault": {"delay": {"fixedDelay": "100ms"}}}))).unwrap_err();
        assert_eq!(e.field, "spec.http[0].match", "{e}");
        let e = fault(&vs(
            json!({"fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 50}},},
                                 "match": [{"sourceLabels": {"app": "web"}}]}),
        ))
        .unwrap_err();
        assert_eq!(e.field, "spec.http[0].fault.delay.percentage", "{e}");
        let e = fault(&vs(
            json!({"fault": {"abort": {"httpStatus": 503, "percentage": {"value": 150}}}}),
        ))
        .unwrap_err();
        assert!(e.message.contains("a percent in [0, 100]"), "{e}");
        assert!(fault(&vs(json!({"route": []}))).is_err());
        // A fully qualified host names the service by its first label.
        let f = fault(&vs(json!({"fault": {"abort": {"httpStatus": 503}}}))).unwrap();
        assert_eq!(f.service.as_deref(), Some("orders"));
        assert_eq!(f.error_rate, Some(1.0));
    }
}
