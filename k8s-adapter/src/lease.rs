//! One active adapter at a time, held by a `coordination.k8s.io/v1` Lease,
//! as client-go's leader election does: create it when absent, renew it
//! while ours, take it over only once its holder has let it expire.
//! Planning is pure, as for commands; `api::Executor::hold_lease` sends.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::actuate::ApiRequest;

/// What to do about the Lease now.
#[derive(Debug, PartialEq)]
pub enum LeaseStep {
    /// Write this (create, renew or take over); we hold it if it succeeds.
    Write(ApiRequest),
    /// Another live instance holds it until the given unix time.
    HeldBy { holder: String, until: f64 },
}

/// A `MicroTime` as the API writes it: RFC 3339 in UTC with six
/// fractional digits.
fn micro_time(unix: f64) -> String {
    let t = Timestamp::from_microsecond((unix * 1e6) as i64).unwrap_or(Timestamp::UNIX_EPOCH);
    format!("{t:.6}")
}

fn parse_time(s: &str) -> Option<f64> {
    s.parse::<Timestamp>()
        .ok()
        .map(|t| t.as_microsecond() as f64 / 1e6)
}

pub fn path(ns: &str, name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")
}

/// The step for `me` at unix time `now`, given the Lease the API returned
/// (`None`: it does not exist).
pub fn step(
    lease: Option<&Value>,
    ns: &str,
    name: &str,
    me: &str,
    now: f64,
    duration_s: u32,
) -> LeaseStep {
    let spec = |acquired: String| {
        json!({
            "holderIdentity": me,
            "leaseDurationSeconds": duration_s,
            "acquireTime": acquired,
            "renewTime": micro_time(now),
        })
    };
    let Some(l) = lease else {
        return LeaseStep::Write(ApiRequest {
            method: "POST",
            path: format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
            content_type: Some("application/json"),
            body: Some(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec(micro_time(now)),
            })),
        });
    };
    let holder = l
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or("");
    let renewed = l
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .unwrap_or(0.0);
    let held_for = l
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0) as f64;
    let until = renewed + held_for;
    if !holder.is_empty() && holder != me && now < until {
        return LeaseStep::HeldBy {
            holder: holder.to_string(),
            until,
        };
    }
    let acquired = if holder == me {
        l.pointer("/spec/acquireTime")
            .and_then(Value::as_str)
            .map_or_else(|| micro_time(now), String::from)
    } else {
        micro_time(now)
    };
    // The resourceVersion makes a concurrent take-over fail (409) rather
    // than leave two holders.
    let version = l
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    LeaseStep::Write(ApiRequest {
        method: "PUT",
        path: path(ns, name),
        content_type: Some("application/json"),
        body: Some(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": version},
            "spec": spec(acquired),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_times_are_rfc3339_utc_with_six_fractional_digits() {
        assert_eq!(micro_time(1_700_000_000.5), "2023-11-14T22:13:20.500000Z");
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Some(1_700_000_000.25)
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    fn lease(holder: &str, renewed: f64) -> Value {
        json!({"metadata": {"resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "acquireTime": micro_time(renewed - 100.0), "renewTime": micro_time(renewed)}})
    }

    #[test]
    fn create_renew_wait_and_take_over() {
        let now = 1_800_000_000.0;
        let LeaseStep::Write(c) = step(None, "s", "selfheal", "me", now, 15) else {
            panic!()
        };
        assert_eq!(
            (c.method, c.path.as_str()),
            ("POST", "/apis/coordination.k8s.io/v1/namespaces/s/leases")
        );
        // Ours: renewed, keeping the acquire time.
        let LeaseStep::Write(r) = step(
            Some(&lease("me", now - 5.0)),
            "s",
            "selfheal",
            "me",
            now,
            15,
        ) else {
            panic!()
        };
        let b = r.body.unwrap();
        assert_eq!(b["spec"]["acquireTime"], micro_time(now - 105.0));
        assert_eq!(b["metadata"]["resourceVersion"], "7");
        assert_eq!(
            parse_time(b["spec"]["renewTime"].as_str().unwrap()),
            Some(now)
        );
        // Someone else's and fresh: wait.
        assert_eq!(
            step(
                Some(&lease("other", now - 5.0)),
                "s",
                "selfheal",
                "me",
                now,
                15
            ),
            LeaseStep::HeldBy {
                holder: "other".into(),
                until: now + 10.0
            }
        );
        // Someone else's and expired: take over.
        assert!(matches!(
            step(
                Some(&lease("other", now - 20.0)),
                "s",
                "selfheal",
                "me",
                now,
                15
            ),
            LeaseStep::Write(ApiRequest { method: "PUT", .. })
        ));
    }
}
