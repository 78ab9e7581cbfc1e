//! The decision-quality experiment on top of [`super::suite`]: the real
//! traces read from disk, the HPA curve and the controllers scored, the
//! tuning of the selfheal settings on the training families, and the
//! held-out summary (`selfheal suite` writes what these return).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::suite::{self, Mean, Qos, Split, SuiteScenario, Traces};
use super::{FileError, read_trace};
use crate::scenario::{ControllerKind, ControllerSpec, Sizing};
use crate::sweep::SweepError;
use crate::sweep::headline::curve_at;
use crate::sweep::run::RunRecord;

/// The seeds the suite's tuning runs on.
pub const TUNE_SEEDS: [u64; 3] = [1, 2, 3];

/// A controller to run, under the label the tables use.
pub type Labelled = (String, ControllerSpec);

/// The suite's real traces ([`suite::TRACE_FILES`]) from `data`.
pub fn load_traces(data: &Path) -> Result<Traces, FileError> {
    let mut traces = Traces::new();
    for f in suite::TRACE_FILES {
        traces.insert(f.to_string(), Arc::new(read_trace(&data.join(f))?));
    }
    Ok(traces)
}

/// HPA at 30-80 % in steps of 5. Every 5 %: the curve is convex
/// (violations fall steeply with cost), and a straight line between points
/// 10 % apart lies above it, which would flatter whatever is compared with
/// it. Down to 30 %: a controller that spends more than HPA at 50 % is
/// compared with HPA at its own cost, not with HPA's cheapest-but-one
/// point.
pub fn hpa_curve() -> Vec<Labelled> {
    (30..=80)
        .step_by(5)
        .map(|t| {
            (
                format!("hpa-{t}"),
                ControllerSpec {
                    target_cpu_percent: Some(t),
                    ..ControllerSpec::parse_short("hpa").expect("a known controller")
                },
            )
        })
        .collect()
}

/// The selfheal settings the tuning chooses among: sizing for the CPU at
/// two targets, and for the SLO (where the CPU target is only the guard's
/// fallback), each on the forecast's bound or its point and with two
/// scale-down cooldowns.
pub fn tuning_candidates() -> Vec<Labelled> {
    let mut candidates = Vec::new();
    let sizings = [
        (Sizing::Cpu, Some(0.6)),
        (Sizing::Cpu, Some(0.7)),
        (Sizing::Slo, None),
    ];
    for (sizing, cpu) in sizings {
        for upper in [true, false] {
            for down in [300.0, 600.0] {
                let spec = ControllerSpec {
                    kind: ControllerKind::Selfheal,
                    sizing: Some(sizing),
                    cpu_target: cpu,
                    plan_on_upper: Some(upper),
                    scale_down_cooldown_s: Some(down),
                    ..ControllerSpec::default()
                };
                let target = cpu.map_or(String::new(), |c| format!(" cpu={c}"));
                candidates.push((
                    format!(
                        "selfheal {}{target} upper={upper} down={down}",
                        sizing.as_str()
                    ),
                    spec,
                ));
            }
        }
    }
    candidates
}

/// The settings the tuning chose, with its table.
pub struct Tuned {
    pub chosen: Labelled,
    /// How far below HPA's curve the choice lies on the training
    /// scenarios (violation-seconds, summed).
    pub below_s: f64,
    /// Every candidate's score, as a markdown table.
    pub table: String,
}

/// Chooses the candidate furthest below HPA's cost/violation curve on the
/// training scenarios ([`TUNE_SEEDS`], journal in `journal`).
pub fn tune(
    train: &[&SuiteScenario],
    hpas: &[Labelled],
    candidates: &[Labelled],
    journal: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Tuned, SweepError> {
    let mut controllers = hpas.to_vec();
    controllers.extend(candidates.iter().cloned());
    let tuning = suite::means(&suite::run_matrix(
        train,
        &controllers,
        &TUNE_SEEDS,
        journal,
        progress,
    )?);
    let below_hpa = |label: &str| -> f64 {
        train
            .iter()
            .map(|s| {
                let pts: Vec<(f64, f64)> = hpas
                    .iter()
                    .map(|(h, _)| {
                        let m = &tuning[&(s.name.clone(), h.clone())];
                        (m.replica_seconds, m.slo_violation_s)
                    })
                    .collect();
                let m = &tuning[&(s.name.clone(), label.to_string())];
                m.slo_violation_s - curve_at(&pts, m.replica_seconds).0
            })
            .sum()
    };
    let mut table = String::from(
        "| candidate | violation s minus HPA curve at equal cost (sum over training) |\n|---|---|\n",
    );
    let mut best: Option<(f64, &Labelled)> = None;
    for c in candidates {
        let score = below_hpa(&c.0);
        table.push_str(&format!("| {} | {:.1} |\n", c.0, score));
        if best.is_none_or(|(b, _)| score < b) {
            best = Some((score, c));
        }
    }
    let (score, chosen) = best.ok_or(SweepError::NoCandidates)?;
    Ok(Tuned {
        chosen: chosen.clone(),
        below_s: -score,
        table,
    })
}

/// The sizing `selfheal` does not default to, scored beside the default.
fn other_sizing() -> Sizing {
    match crate::scenario::DEFAULT_SIZING {
        Sizing::Cpu => Sizing::Slo,
        Sizing::Slo => Sizing::Cpu,
    }
}

/// Everything scored on the held-out scenarios: the tuned settings (as
/// `selfheal`) when there are some, the untuned sizings, HPA's curve, KPA
/// and static.
pub fn scored_controllers(tuned: Option<&Tuned>, hpas: &[Labelled]) -> Vec<Labelled> {
    let short = |label: &str, s: &str| {
        (
            label.to_string(),
            ControllerSpec::parse_short(s).expect("a known controller"),
        )
    };
    let mut controllers = Vec::new();
    if let Some(t) = tuned {
        controllers.push(("selfheal".to_string(), t.chosen.1.clone()));
    }
    let other = other_sizing().as_str();
    controllers.extend([
        short("selfheal-defaults", "selfheal"),
        short(&format!("selfheal-{other}"), &format!("selfheal:{other}")),
    ]);
    controllers.extend(hpas.iter().cloned());
    controllers.extend([
        short("kpa", "kpa"),
        short("kpa-2", "kpa:2"),
        short("kpa-rps", "kpa:rps"),
        // Knative's scale-down delay, at the five minutes HPA stabilises
        // a scale-down over: it holds a KPA that would follow every
        // crossing of a target multiple.
        short("kpa-rps-delay300", "kpa:rps,delay=300"),
        short("static", "static"),
    ]);
    controllers
}

/// Every run's figures, one CSV line each.
pub fn runs_csv(results: &[RunRecord]) -> String {
    let mut runs = String::from(
        "scenario,controller,seed,requests,failed,slo_violation_s,replica_seconds,scaling_actions\n",
    );
    for r in results {
        runs.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.scenario,
            r.controller,
            r.seed,
            r.requests,
            r.failed,
            r.slo_violation_s,
            r.replica_seconds,
            r.scaling_actions
        ));
    }
    runs
}

/// How a summary names the split it scored: (adjective, heading).
pub fn split_words(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("training", "Training"),
        Split::Test => ("held-out", "Held-out"),
    }
}

/// The controllers whose figures the per-scenario table shows beside
/// the verdict.
const BESIDE: [&str; 9] = [
    "hpa-50",
    "hpa-60",
    "hpa-70",
    "hpa-80",
    "kpa",
    "kpa-2",
    "kpa-rps",
    "kpa-rps-delay300",
    "static",
];

/// What the summary is about.
pub struct Summary<'a> {
    pub train: &'a [&'a SuiteScenario],
    /// The scored scenarios, and which split they are.
    pub test: &'a [&'a SuiteScenario],
    pub scored: Split,
    pub seeds: u64,
    pub qos: Qos,
    pub tuned: Option<&'a Tuned>,
    pub controllers: &'a [Labelled],
    pub hpas: &'a [Labelled],
}

fn families(set: &[&SuiteScenario]) -> String {
    let f: BTreeSet<&str> = set.iter().map(|s| s.family).collect();
    f.into_iter().collect::<Vec<_>>().join(", ")
}

impl Summary<'_> {
    /// The summary (`summary.md`) of the scored split from the per-seed means `m`:
    /// totals, both curves against HPA's, the aggregate and the verdict per
    /// scenario, and the tuning table.
    pub fn render(&self, m: &BTreeMap<(String, String), Mean>) -> String {
        let (train, test) = (self.train, self.test);
        let words = split_words(self.scored);
        // What the per-scenario verdicts are about.
        let subject = if self.tuned.is_some() {
            "selfheal"
        } else {
            "selfheal-defaults"
        };
        let mut md = format!(
            "# Decision quality on {} {} scenarios x {} seeds\n\n{}; HPA at 30-80 % in steps of 5 traces the curve.\n\n{} families: {}. {}`selfheal-defaults` (`{}` sizing) and `selfheal-{}` are untuned.\n\n",
            test.len(),
            words.0,
            self.seeds,
            self.qos.describe(),
            words.1,
            families(test),
            match self.tuned {
                Some(t) => format!(
                    "selfheal settings chosen on {} scenarios of the other families ({}): `{}`; ",
                    train.len(),
                    families(train),
                    t.chosen.0
                ),
                None => String::new(),
            },
            crate::scenario::DEFAULT_SIZING.as_str(),
            other_sizing().as_str()
        );
        md.push_str("## Totals (sum over scenarios of the per-seed means)\n\n| controller | SLO violation s | failed requests | replica-seconds | scaling actions |\n|---|---|---|---|---|\n");
        let mut hpa_pts = Vec::new();
        let mut subject_total = (0.0, 0.0);
        for (c, _) in self.controllers {
            let (v, f, r, a) = test.iter().fold((0.0, 0.0, 0.0, 0.0), |acc, s| {
                let x = &m[&(s.name.clone(), c.clone())];
                (
                    acc.0 + x.slo_violation_s,
                    acc.1 + x.failed,
                    acc.2 + x.replica_seconds,
                    acc.3 + x.scaling_actions,
                )
            });
            md.push_str(&format!("| {c} | {v:.0} | {f:.0} | {r:.0} | {a:.0} |\n"));
            if c.starts_with("hpa-") {
                hpa_pts.push((r, v));
            }
            if c == subject {
                subject_total = (v, r);
            }
        }
        let hpa_labels: Vec<String> = self.hpas.iter().map(|h| h.0.clone()).collect();
        md.push_str(&format!(
            "\n## Against HPA's curves at equal replica-seconds ({} families)\n\n",
            words.0
        ));
        md.push_str("| controller | violation s / HPA's | failed requests / HPA's | below HPA's violation curve |\n|---|---|---|---|\n");
        for (c, _) in self.controllers.iter().filter(|c| !c.0.starts_with("hpa-")) {
            let a = suite::against_hpa(m, test, &hpa_labels, c);
            md.push_str(&format!(
                "| {c} | {:.2}x ({:.0} / {:.0}) | {:.2}x ({:.0} / {:.0}) | {} of {} |\n",
                a.violation_s / a.hpa_violation_s.max(1e-9),
                a.violation_s,
                a.hpa_violation_s,
                a.failed / a.hpa_failed.max(1e-9),
                a.failed,
                a.hpa_failed,
                a.below,
                a.scenarios
            ));
        }
        let (sv, sr) = subject_total;
        let (hv, inside) = curve_at(&hpa_pts, sr);
        md.push_str(&format!(
            "\nAggregate: {subject} {sv:.0} violation s at {sr:.0} replica-seconds; HPA's curve at that cost: {hv:.0} s{}.\n\n",
            if inside { "" } else { " (outside HPA's cost range: nearest HPA point)" }
        ));
        md.push_str(&format!(
            "## Per scenario ({subject} against HPA's curve at equal cost)\n\n| scenario | family | {subject} viol. s | {subject} replica-s | HPA curve viol. s at that cost | verdict | {} |\n|---|---|---|---|---|---|{}\n",
            BESIDE.join(" | "),
            "---|".repeat(BESIDE.len())
        ));
        let mut wins = 0;
        for s in test {
            let get = |c: &str| &m[&(s.name.clone(), c.to_string())];
            let pts: Vec<(f64, f64)> = self
                .hpas
                .iter()
                .map(|(h, _)| (get(h).replica_seconds, get(h).slo_violation_s))
                .collect();
            let x = get(subject);
            let (cv, inside) = curve_at(&pts, x.replica_seconds);
            let verdict = if x.slo_violation_s < cv - 1e-9 {
                wins += 1;
                "wins"
            } else if (x.slo_violation_s - cv).abs() <= 1e-9 {
                "ties"
            } else {
                "loses"
            };
            let cells: Vec<String> = BESIDE
                .iter()
                .map(|c| {
                    let y = get(c);
                    format!("{:.0} s / {:.0}", y.slo_violation_s, y.replica_seconds)
                })
                .collect();
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0}{} | {} | {} |\n",
                s.name,
                s.family,
                x.slo_violation_s,
                x.replica_seconds,
                cv,
                if inside { "" } else { "*" },
                verdict,
                cells.join(" | ")
            ));
        }
        md.push_str(&format!(
            "\n{subject} is below HPA's curve on {wins} of {} {} scenarios. Cells: violation s / replica-seconds. * = outside HPA's cost range (nearest HPA point).\n",
            test.len(),
            words.0
        ));
        if let Some(t) = self.tuned {
            md.push_str(&format!(
                "\n## Tuning (training scenarios, {} seeds)\n\n{}",
                TUNE_SEEDS.len(),
                t.table
            ));
        }
        md
    }
}
