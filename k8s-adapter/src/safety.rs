//! The adapter's own guardrails, on top of the orchestrator's: no `--apply`
//! without a passing approval record for exactly this policy, no scaling of
//! a Deployment that an HPA owns, and a cap on writes per window.

use std::collections::{BTreeSet, VecDeque};

use serde_json::Value;

use selfheal_core::control::Command;
use selfheal_core::policy::policy_hash;
use selfheal_core::scenario::{ControllerSpec, FieldPath, locate_line, toml_error};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SafetyError {
    #[error("{file}:{line}: not an approval record from `selfheal approve` ({why})")]
    NotARecord {
        file: String,
        line: usize,
        why: String,
    },
    #[error(
        "{file}: approves policy {approved}, but this configuration's [controller] is {actual}; run `selfheal approve` for it"
    )]
    OtherPolicy {
        file: String,
        approved: String,
        actual: String,
    },
    #[error("{file}: the policy {hash} did not pass its approval (see the record's effects)")]
    NotApproved { file: String, hash: String },
}

/// Checks an approval record (`approval.toml`) against the policy the
/// adapter would run; the policy's hash on success.
pub fn check_approval(
    text: &str,
    file: &str,
    spec: &ControllerSpec,
) -> Result<String, SafetyError> {
    let not = |line: usize, why: String| SafetyError::NotARecord {
        file: file.to_string(),
        line,
        why,
    };
    let v: toml::Table = toml::from_str(text).map_err(|e| {
        let line = toml_error(text, file, &e).line().unwrap_or(1);
        not(line, e.message().trim().to_string())
    })?;
    // A missing field points at line 1, a wrong one at its own line.
    let at = |key: &str| locate_line(text, &FieldPath::default().key(key)).unwrap_or(1);
    let approved_hash = v
        .get("policy_hash")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| {
            not(
                at("policy_hash"),
                "field `policy_hash`: a string is required".into(),
            )
        })?;
    let approved = v
        .get("approved")
        .and_then(toml::Value::as_bool)
        .ok_or_else(|| {
            not(
                at("approved"),
                "field `approved`: true or false is required".into(),
            )
        })?;
    let (hash, _) = policy_hash(spec);
    if approved_hash != hash {
        return Err(SafetyError::OtherPolicy {
            file: file.to_string(),
            approved: approved_hash.to_string(),
            actual: hash,
        });
    }
    if !approved {
        return Err(SafetyError::NotApproved {
            file: file.to_string(),
            hash,
        });
    }
    Ok(hash)
}

/// Deployments that an HorizontalPodAutoscaler scales, from the list
/// `GET .../horizontalpodautoscalers` answers.
pub fn hpa_targets(list: &Value) -> BTreeSet<String> {
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|h| {
            h.pointer("/spec/scaleTargetRef/kind")
                .and_then(Value::as_str)
                == Some("Deployment")
        })
        .filter_map(|h| {
            h.pointer("/spec/scaleTargetRef/name")
                .and_then(Value::as_str)
        })
        .map(String::from)
        .collect()
}

/// Whether a command would fight an HPA over a replica count.
pub fn fights_hpa(
    cmd: &Command,
    deployment_of: impl Fn(&str) -> String,
    owned: &BTreeSet<String>,
) -> bool {
    matches!(cmd, Command::Scale { service, .. } if owned.contains(&deployment_of(service)))
}

/// At most `max` writes in any `window_s` (wall-clock seconds).
#[derive(Clone, Debug)]
pub struct RateLimit {
    pub max: usize,
    pub window_s: f64,
    sent: VecDeque<f64>,
}

impl RateLimit {
    pub fn new(max: usize, window_s: f64) -> Self {
        RateLimit {
            max,
            window_s,
            sent: VecDeque::new(),
        }
    }

    /// Takes one slot at `now` if there is one.
    pub fn try_take(&mut self, now: f64) -> bool {
        while self.sent.front().is_some_and(|&t| now - t >= self.window_s) {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.max {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::policy::policy_hash;

    #[test]
    fn apply_needs_a_passing_record_for_this_very_policy() {
        let spec = ControllerSpec::parse_short("hpa:70+heal").unwrap();
        let (hash, _) = policy_hash(&spec);
        let rec = |h: &str, ok: bool| format!("policy_hash = \"{h}\"\napproved = {ok}\n");
        assert_eq!(
            check_approval(&rec(&hash, true), "a.toml", &spec),
            Ok(hash.clone())
        );
        assert!(matches!(
            check_approval(&rec(&hash, false), "a.toml", &spec),
            Err(SafetyError::NotApproved { .. })
        ));
        let other = ControllerSpec::parse_short("hpa:60+heal").unwrap();
        assert!(matches!(
            check_approval(&rec(&hash, true), "a.toml", &other),
            Err(SafetyError::OtherPolicy { .. })
        ));
        assert!(matches!(
            check_approval("nonsense = 1", "a.toml", &spec),
            Err(SafetyError::NotARecord { line: 1, .. })
        ));
        let wrong = format!(
            "policy_hash = \"{}\"\napproved = \"yes\"\n",
            policy_hash(&spec).0
        );
        assert_eq!(
            check_approval(&wrong, "a.toml", &spec)
                .unwrap_err()
                .to_string(),
            "a.toml:2: not an approval record from `selfheal approve` (field `approved`: true or false is required)"
        );
    }

    #[test]
    fn deployments_an_hpa_scales_are_left_alone() {
        let list = serde_json::json!({"items": [
            {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}}},
            {"spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "db"}}}]});
        let owned = hpa_targets(&list);
        assert_eq!(owned.iter().collect::<Vec<_>>(), ["web"]);
        let scale = |s: &str| Command::Scale {
            service: s.into(),
            replicas: 3,
            reason: String::new(),
        };
        assert!(fights_hpa(&scale("web"), |s| s.to_string(), &owned));
        assert!(!fights_hpa(&scale("api"), |s| s.to_string(), &owned));
    }

    #[test]
    fn the_rate_limit_counts_a_sliding_window() {
        let mut r = RateLimit::new(2, 60.0);
        assert!(r.try_take(0.0) && r.try_take(10.0));
        assert!(!r.try_take(59.0));
        assert!(r.try_take(60.0));
    }
}
