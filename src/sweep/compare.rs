//! Paired comparison of arms over chaos experiments.
//!
//! An arm is a controller together with the scenario variant it ran on
//! (`hpa:70`, `hpa:70+heal`, `hpa:70+argo [mesh...]`). Within a fault
//! scenario the first arm in matrix order is the baseline; every other arm
//! is compared with it seed by seed (the same seeds in every arm: common
//! random numbers), with percentile-bootstrap intervals over the seeds.
//! Unrecovered runs stay in: their MTTR is the time from the fault's start
//! to the end of the run, a lower bound, and the table counts them.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::run::RunRecord;
use super::stats::{Estimate, bootstrap_mean, percentile_interval};
use crate::rng::{Stream, Subsystem};

const RESAMPLES: usize = 2000;
const SEED: u64 = 0xC0A1;

/// One arm on one fault scenario.
#[derive(Clone, Debug)]
pub struct ArmRow {
    pub scenario: String,
    pub fault: String,
    pub arm: String,
    pub runs: usize,
    pub recovered: usize,
    pub aborted: usize,
    pub detection: Estimate,
    pub mttr: Estimate,
    pub failed: Estimate,
    pub violation: Estimate,
    pub healing_actions: Estimate,
    /// Every run's MTTR, by seed (for the distribution charts).
    pub mttr_samples: Vec<f64>,
    /// Against the baseline (None for the baseline itself): mean MTTR and
    /// mean failed requests as ratios arm / baseline, paired by seed.
    pub mttr_ratio: Option<Estimate>,
    pub failed_ratio: Option<Estimate>,
}

fn arm_label(r: &RunRecord) -> String {
    if r.params.is_empty() {
        r.controller.clone()
    } else {
        format!("{} [{}]", r.controller, r.params)
    }
}

/// Ratio of means `sum(arm) / sum(base)` over paired samples, with a
/// paired bootstrap (resampling seeds, both arms together).
pub fn paired_ratio(base: &[f64], arm: &[f64], seed: u64) -> Estimate {
    let n = base.len().min(arm.len());
    let ratio = |idx: &mut dyn Iterator<Item = usize>| {
        let (mut a, mut b) = (0.0, 0.0);
        for i in idx {
            a += arm[i];
            b += base[i];
        }
        if b > 0.0 {
            a / b
        } else if a > 0.0 {
            f64::INFINITY
        } else {
            1.0
        }
    };
    let mean = ratio(&mut (0..n));
    if n < 2 {
        return Estimate {
            mean,
            lo: mean,
            hi: mean,
            n,
        };
    }
    let mut rng = Stream::new_indexed(seed, Subsystem::Metrics, 0xC0A1);
    let rs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| rng.index(n)).collect();
            ratio(&mut picks.into_iter())
        })
        .collect();
    percentile_interval(mean, rs, n)
}

/// The comparison rows of every fault scenario with an experiment.
pub fn compare(records: &[RunRecord]) -> Vec<ArmRow> {
    // scenario -> arms in first-seen order, each with its runs by seed
    type Arms<'a> = Vec<(String, BTreeMap<u64, &'a RunRecord>)>;
    let mut by_scenario: BTreeMap<&str, Arms> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.outcome.is_empty()) {
        let arms = by_scenario.entry(&r.scenario).or_default();
        let label = arm_label(r);
        let i = match arms.iter().position(|(a, _)| *a == label) {
            Some(i) => i,
            None => {
                arms.push((label, BTreeMap::new()));
                arms.len() - 1
            }
        };
        arms[i].1.insert(r.seed, r);
    }
    let mut rows = Vec::new();
    for (scenario, arms) in by_scenario {
        let Some((_, base)) = arms.first() else {
            continue;
        };
        let base = base.clone();
        for (ai, (arm, runs)) in arms.iter().enumerate() {
            let rs: Vec<&RunRecord> = runs.values().copied().collect();
            let est = |f: &dyn Fn(&RunRecord) -> f64| {
                let xs: Vec<f64> = rs.iter().map(|r| f(r)).filter(|x| x.is_finite()).collect();
                bootstrap_mean(&xs, RESAMPLES, SEED)
            };
            let paired = |f: &dyn Fn(&RunRecord) -> f64| {
                let seeds: Vec<u64> = runs
                    .keys()
                    .filter(|s| base.contains_key(s))
                    .copied()
                    .collect();
                let b: Vec<f64> = seeds.iter().map(|s| f(base[s])).collect();
                let a: Vec<f64> = seeds.iter().map(|s| f(runs[s])).collect();
                paired_ratio(&b, &a, SEED)
            };
            rows.push(ArmRow {
                scenario: scenario.to_string(),
                fault: rs.first().map_or(String::new(), |r| r.faults.clone()),
                arm: arm.clone(),
                runs: rs.len(),
                recovered: rs.iter().filter(|r| r.outcome == "recovered").count(),
                aborted: rs.iter().filter(|r| r.outcome == "aborted").count(),
                detection: est(&|r| r.detection_s),
                mttr: est(&|r| r.mttr_s),
                failed: est(&|r| r.fault_failed as f64),
                violation: est(&|r| r.slo_violation_s),
                healing_actions: est(&|r| r.healing_actions as f64),
                mttr_samples: rs.iter().map(|r| r.mttr_s).collect(),
                mttr_ratio: (ai > 0).then(|| paired(&|r| r.mttr_s)),
                failed_ratio: (ai > 0).then(|| paired(&|r| r.fault_failed as f64)),
            });
        }
    }
    rows
}

/// False healings per simulated hour on fault-free runs, per controller.
pub fn false_healing_rates(records: &[RunRecord]) -> Vec<(String, u64, f64, f64)> {
    let mut by: BTreeMap<String, (u64, u64, f64)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.faults.is_empty()) {
        let e = by.entry(r.controller.clone()).or_default();
        e.0 += 1;
        e.1 += r.false_healings;
        e.2 += r.duration_s / 3600.0;
    }
    by.into_iter()
        .map(|(c, (runs, n, h))| (c, runs, h, if h > 0.0 { n as f64 / h } else { 0.0 }))
        .collect()
}

fn cell(e: &Estimate) -> String {
    if e.n == 0 {
        "–".into()
    } else {
        format!("{:.1} [{:.1}, {:.1}]", e.mean, e.lo, e.hi)
    }
}

fn ratio_cell(e: &Option<Estimate>) -> String {
    e.as_ref().map_or("baseline".into(), |e| {
        format!("{:.2}x [{:.2}, {:.2}]", e.mean, e.lo, e.hi)
    })
}

/// The comparison as a Markdown table (also embedded in the index page).
pub fn markdown(rows: &[ArmRow], false_healings: &[(String, u64, f64, f64)]) -> String {
    let mut out = String::from(
        "| scenario | fault | arm | runs | recovered | detection s | MTTR s | MTTR vs baseline | failed requests | failed vs baseline | SLO violation s | healing actions |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.fault,
            r.arm,
            r.runs,
            r.recovered,
            if r.aborted > 0 {
                format!(" ({} aborted)", r.aborted)
            } else {
                String::new()
            },
            cell(&r.detection),
            cell(&r.mttr),
            ratio_cell(&r.mttr_ratio),
            cell(&r.failed),
            ratio_cell(&r.failed_ratio),
            cell(&r.violation),
            cell(&r.healing_actions),
        );
    }
    if !false_healings.is_empty() {
        out.push_str("\n| controller | fault-free runs | simulated hours | false healings per hour |\n|---|---|---|---|\n");
        for (c, runs, h, rate) in false_healings {
            let _ = writeln!(out, "| {c} | {runs} | {h:.1} | {rate:.3} |");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratio_of_identical_arms_is_one_and_halving_is_half() {
        let base = [10.0, 20.0, 30.0, 40.0];
        let same = paired_ratio(&base, &base, 1);
        assert_eq!((same.mean, same.lo, same.hi), (1.0, 1.0, 1.0));
        let half: Vec<f64> = base.iter().map(|x| x / 2.0).collect();
        let h = paired_ratio(&base, &half, 1);
        assert!((h.mean - 0.5).abs() < 1e-12 && (h.lo - 0.5).abs() < 1e-12);
        let noisy = [4.0, 12.0, 14.0, 22.0];
        let n = paired_ratio(&base, &noisy, 1);
        assert!(n.lo < n.mean && n.mean < n.hi, "{n:?}");
    }
}
