//! The tuner: searches the selfheal scaler's thresholds, or the Kubernetes
//! HPA's CPU target, over a training suite and validates the best on a
//! held-out suite against the defaults.
//!
//! Each candidate replaces the training suite's controllers; the objective
//! (lower is better) is the mean over runs of SLO-violation seconds plus a
//! cost weight times replica-seconds. Every candidate's runs are a sweep of
//! their own, so an interrupted tune resumes like any sweep.

use std::path::Path;

use super::SweepError;
use super::plan::{Plan, RunSpec};
use super::run::RunRecord;
use crate::control::hpa::DEFAULT_CPU_PERCENT;
use crate::scenario::{ControllerKind, ControllerSpec};
pub use selfheal_core::policy::controller_toml;

#[derive(Clone, Debug)]
pub struct Candidate {
    pub label: String,
    pub spec: ControllerSpec,
}

/// What a tuning searches: its candidates, and the untuned settings they
/// must beat on the held-out suite.
#[derive(Clone, Debug)]
pub struct Search {
    /// What the report calls it.
    pub title: &'static str,
    pub candidates: Vec<Candidate>,
    /// The untuned contender: (label, settings).
    pub default: (String, ControllerSpec),
}

impl Search {
    /// The selfheal scaler's thresholds ([`grid`]) against its defaults.
    pub fn selfheal() -> Search {
        Search {
            title: "the selfheal scaler",
            candidates: grid(),
            default: (
                "selfheal-defaults".into(),
                ControllerSpec {
                    kind: ControllerKind::Selfheal,
                    ..ControllerSpec::default()
                },
            ),
        }
    }

    /// The HPA's CPU target ([`hpa_grid`]) against the 80 % that `kubectl
    /// autoscale` sets when given none.
    pub fn hpa() -> Search {
        Search {
            title: "the Kubernetes HPA",
            candidates: hpa_grid(),
            default: (
                format!("hpa:{DEFAULT_CPU_PERCENT}"),
                hpa_at(DEFAULT_CPU_PERCENT),
            ),
        }
    }
}

fn hpa_at(percent: u32) -> ControllerSpec {
    ControllerSpec {
        kind: ControllerKind::Hpa,
        target_cpu_percent: Some(percent),
        ..ControllerSpec::default()
    }
}

/// The HPA's CPU utilisation targets searched, in % of the pods' request.
pub fn hpa_grid() -> Vec<Candidate> {
    (2..=9)
        .map(|tenth| {
            let percent = 10 * tenth;
            Candidate {
                label: format!("target_cpu_percent={percent}"),
                spec: hpa_at(percent),
            }
        })
        .collect()
}

/// An `autoscaling/v2` HorizontalPodAutoscaler per Deployment, with the
/// CPU target and replica bounds of an HPA policy: what a user applies to
/// run the tuned HPA on a cluster.
pub fn hpa_manifest(spec: &ControllerSpec, deployments: &[String]) -> String {
    let percent = spec.target_cpu_percent.unwrap_or(DEFAULT_CPU_PERCENT);
    let mut out = String::new();
    for (i, d) in deployments.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {d}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {d}\n  minReplicas: {}\n  maxReplicas: {}\n  metrics:\n    - type: Resource\n      resource:\n        name: cpu\n        target:\n          type: Utilization\n          averageUtilization: {percent}\n",
            spec.min_replicas.max(1),
            spec.max_replicas.max(spec.min_replicas.max(1)),
        ));
    }
    out
}

/// The selfheal scaler's search space: the thresholds users tune by hand.
pub fn grid() -> Vec<Candidate> {
    let mut out = Vec::new();
    for cpu in [0.5, 0.6, 0.7] {
        for upper in [false, true] {
            for up_cooldown in [60.0, 180.0] {
                for down_cooldown in [300.0, 600.0] {
                    out.push(Candidate {
                        label: format!("cpu_target={cpu} plan_on_upper={upper} scale_up_cooldown_s={up_cooldown} scale_down_cooldown_s={down_cooldown}"),
                        spec: ControllerSpec {
                            kind: ControllerKind::Selfheal,
                            cpu_target: Some(cpu),
                            plan_on_upper: Some(upper),
                            scale_up_cooldown_s: Some(up_cooldown),
                            scale_down_cooldown_s: Some(down_cooldown),
                            ..ControllerSpec::default()
                        },
                    });
                }
            }
        }
    }
    out
}

/// The plan's distinct (scenario, parameters, seed) runs under one
/// controller, renumbered.
pub fn with_controller(plan: &Plan, label: &str, spec: &ControllerSpec) -> Plan {
    let first = plan
        .runs
        .first()
        .map(|r| r.controller.clone())
        .unwrap_or_default();
    let runs: Vec<RunSpec> = plan
        .runs
        .iter()
        .filter(|r| r.controller == first)
        .enumerate()
        .map(|(i, r)| {
            let mut l = r.loaded.clone();
            l.spec.use_controller(spec.clone());
            RunSpec {
                index: i,
                // The digest of the scenario as it runs, controller
                // included: a resumed tuning never answers a candidate from
                // another's journal line.
                id: RunSpec::id_for(&r.scenario, &r.params, label, &l),
                scenario: r.scenario.clone(),
                params: r.params.clone(),
                controller: label.to_string(),
                seed: r.seed,
                keep_series: r.keep_series,
                loaded: l,
            }
        })
        .collect();
    Plan {
        name: plan.name.clone(),
        description: plan.description.clone(),
        runs,
    }
}

/// Mean SLO-violation seconds plus `cost_weight` x replica-seconds.
pub fn objective(records: &[RunRecord], cost_weight: f64) -> f64 {
    let n = records.len().max(1) as f64;
    records
        .iter()
        .map(|r| r.slo_violation_s + cost_weight * r.replica_seconds)
        .sum::<f64>()
        / n
}

/// Runs a suite's distinct runs under one controller as a resumable sweep
/// in `dir`.
pub fn run_under(
    plan: &Plan,
    label: &str,
    spec: &ControllerSpec,
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<RunRecord>, SweepError> {
    super::run::execute(&with_controller(plan, label, spec), dir, None, progress)
}

/// Mean SLO-violation seconds and replica-seconds of some runs.
fn mean_violation_and_cost(records: &[RunRecord]) -> (f64, f64) {
    let n = records.len().max(1) as f64;
    let (v, c) = records.iter().fold((0.0, 0.0), |a, r| {
        (a.0 + r.slo_violation_s, a.1 + r.replica_seconds)
    });
    (v / n, c / n)
}

/// The suites a tuning runs on, with the paths the report names.
pub struct Suites {
    pub train: Plan,
    pub train_path: String,
    pub holdout: Plan,
    pub holdout_path: String,
}

impl Suites {
    /// Every service the training suite's scenarios run, by name: the
    /// Deployments a tuned policy applies to.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .train
            .runs
            .iter()
            .flat_map(|r| r.loaded.spec.services.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// One controller's figures on a suite.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub label: String,
    pub objective: f64,
    pub violation_s: f64,
    pub replica_seconds: f64,
}

impl Scored {
    fn of(label: &str, records: &[RunRecord], weight: f64) -> Self {
        let (violation_s, replica_seconds) = mean_violation_and_cost(records);
        Scored {
            label: label.to_string(),
            objective: objective(records, weight),
            violation_s,
            replica_seconds,
        }
    }
}

/// What a tuning chose and measured.
pub struct Tuned {
    /// `best-controller.toml`: the chosen settings, ready to paste.
    pub best_toml: String,
    /// `tune.md`: held-out and search tables.
    pub report_md: String,
    pub search: Vec<Scored>,
    /// The tuned settings, the defaults, then the holdout suite's own
    /// controllers.
    pub held_out: Vec<Scored>,
    /// The chosen settings.
    pub best: ControllerSpec,
}

/// Searches `search`'s candidates on the training suite (cost weight
/// `weight`), then runs the best, the defaults and the holdout suite's own
/// controllers on the holdout suite. Each controller's runs are a
/// resumable sweep under `out`; `say` gets a line per controller started.
pub fn tune(
    search_space: &Search,
    suites: &Suites,
    weight: f64,
    out: &Path,
    say: &dyn Fn(&str),
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Tuned, SweepError> {
    let candidates = &search_space.candidates;
    let mut search = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        say(&format!(
            "candidate {}/{}: {}",
            i + 1,
            candidates.len(),
            c.label
        ));
        let dir = out.join("train").join(format!("candidate-{i}"));
        let records = run_under(
            &suites.train,
            &format!("candidate-{i}"),
            &c.spec,
            &dir,
            progress,
        )?;
        search.push(Scored::of(&c.label, &records, weight));
    }
    let best = (0..search.len())
        .min_by(|&a, &b| search[a].objective.total_cmp(&search[b].objective))
        .ok_or(SweepError::NoCandidates)?;
    say(&format!("best on training: {}", candidates[best].label));

    // Held out: the best, the defaults, and the holdout suite's own controllers.
    let mut contenders: Vec<(String, ControllerSpec)> = vec![
        ("tuned".into(), candidates[best].spec.clone()),
        search_space.default.clone(),
    ];
    let mut own: Vec<&str> = Vec::new();
    for r in &suites.holdout.runs {
        if !own.contains(&r.controller.as_str()) {
            own.push(&r.controller);
        }
    }
    for c in own {
        contenders.push((c.to_string(), ControllerSpec::parse_short(c)?));
    }
    let mut held_out = Vec::new();
    for (label, spec) in &contenders {
        say(&format!("held out: {label}"));
        let dir = out.join("holdout").join(label.replace(':', "-"));
        let records = run_under(&suites.holdout, label, spec, &dir, progress)?;
        held_out.push(Scored::of(label, &records, weight));
    }
    let config = controller_toml(&candidates[best].spec);
    let best_toml = format!(
        "# Chosen by `selfheal tune` on {} (cost weight {weight}); paste into a scenario file.\n{config}",
        suites.train_path
    );
    let runs = |p: &Plan| with_controller(p, "x", &candidates[best].spec).runs.len();
    let mut md = format!(
        "# Tuning {}\n\nObjective: mean over runs of SLO-violation seconds + {weight} x replica-seconds (lower is better). Training suite `{}` ({} runs per candidate), held-out suite `{}` ({} runs per controller), same seeds for every contender.\n\n## Held out\n\n| controller | objective | SLO violation s | replica-seconds |\n|---|---|---|---|\n",
        search_space.title,
        suites.train_path,
        runs(&suites.train),
        suites.holdout_path,
        runs(&suites.holdout),
    );
    for s in &held_out {
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.0} |\n",
            s.label, s.objective, s.violation_s, s.replica_seconds
        ));
    }
    let (tuned, default) = (held_out[0].objective, held_out[1].objective);
    md.push_str(&format!(
        "\nThe tuned settings {} the defaults on the held-out suite: objective {tuned:.1} against {default:.1} ({:+.1} %).\n\nChosen: `{}`\n\n```toml\n{config}```\n\n## Search (training)\n\n| candidate | objective | SLO violation s | replica-seconds |\n|---|---|---|---|\n",
        if tuned < default { "beat" } else { "do not beat" },
        100.0 * (tuned - default) / default.abs().max(1e-9),
        candidates[best].label
    ));
    for (i, s) in search.iter().enumerate() {
        md.push_str(&format!(
            "| {}{} | {:.1} | {:.1} | {:.0} |\n",
            s.label,
            if i == best { " (best)" } else { "" },
            s.objective,
            s.violation_s,
            s.replica_seconds
        ));
    }
    Ok(Tuned {
        best_toml,
        report_md: md,
        search,
        held_out,
        best: candidates[best].spec.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two settings under one label are two runs: the journal of an earlier
    /// tuning (or approval) in the same directory cannot answer for them.
    #[test]
    fn runs_under_another_controller_have_other_ids() {
        let scenario = crate::scenario::load_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/quickstart.toml"
        )))
        .unwrap();
        let plan = Plan {
            name: "p".into(),
            description: String::new(),
            runs: vec![RunSpec {
                index: 0,
                id: "quickstart".into(),
                scenario: "quickstart".into(),
                params: String::new(),
                controller: "static".into(),
                seed: 1,
                keep_series: false,
                loaded: scenario,
            }],
        };
        let a = with_controller(&plan, "tuned", &hpa_at(30));
        let b = with_controller(&plan, "tuned", &hpa_at(40));
        assert_ne!(a.runs[0].id, b.runs[0].id);
        assert_eq!(
            a.runs[0].id,
            with_controller(&plan, "tuned", &hpa_at(30)).runs[0].id
        );
    }

    #[test]
    fn the_hpa_manifest_names_each_deployment_with_the_tuned_target() {
        let spec = ControllerSpec {
            min_replicas: 2,
            max_replicas: 30,
            ..hpa_at(55)
        };
        let m = hpa_manifest(&spec, &["api".into(), "db".into()]);
        let docs: Vec<&str> = m.split("---\n").collect();
        assert_eq!(docs.len(), 2);
        for (doc, name) in docs.iter().zip(["api", "db"]) {
            assert!(doc.contains(&format!("  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {name}\n")), "{doc}");
            assert!(doc.contains("averageUtilization: 55\n"), "{doc}");
            assert!(doc.contains("minReplicas: 2\n  maxReplicas: 30\n"), "{doc}");
        }
        assert!(
            hpa_grid()
                .iter()
                .any(|c| c.spec == hpa_at(DEFAULT_CPU_PERCENT))
        );
    }

    #[test]
    fn the_written_config_is_accepted_by_scenario_files() {
        let best = &grid()[5];
        let text = format!(
            "name = \"t\"\nduration_s = 60\nseed = 1\n[slo]\nlatency_ms = 100\n[[load]]\nservice = \"a\"\ncurve = {{ kind = \"constant\", rate = 1 }}\n[[service]]\nname = \"a\"\nrevision = {{ service_time_ms = 1 }}\n{}",
            controller_toml(&best.spec)
        );
        let sc = crate::scenario::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(sc.spec.controller, best.spec);
    }
}
