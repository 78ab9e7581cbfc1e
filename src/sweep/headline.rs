//! The headline of a sweep: what its figures say, in a few sentences and
//! two tables, computed from the runs (nothing here is fixed text about
//! results).
//!
//! - **Against HPA's curve.** HPA at several CPU targets (`hpa:50`,
//!   `hpa:60`, ...) on the same scenario variant traces what a CPU-target
//!   scaler buys with replicas: a (replica-seconds, SLO-violation seconds)
//!   curve. Any other controller on that variant is judged against the
//!   curve at its own cost, by linear interpolation between HPA's points.
//! - **Healing.** The chaos comparison (`compare`): each fault
//!   experiment's arms against its first, paired by seed.

use std::collections::BTreeMap;

use super::compare::ArmRow;
use super::run::RunRecord;
use super::stats::Estimate;

/// HPA's figure at a given cost, by linear interpolation between its
/// (cost, figure) points. Outside their range the nearest point is used
/// and `inside` is false.
pub fn curve_at(points: &[(f64, f64)], cost: f64) -> (f64, bool) {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (first, last) = (p[0], p[p.len() - 1]);
    if cost <= first.0 {
        return (first.1, cost == first.0);
    }
    if cost >= last.0 {
        return (last.1, cost == last.0);
    }
    for w in p.windows(2) {
        let ((c0, v0), (c1, v1)) = (w[0], w[1]);
        if cost >= c0 && cost <= c1 {
            let f = if c1 > c0 {
                (cost - c0) / (c1 - c0)
            } else {
                0.0
            };
            return (v0 + f * (v1 - v0), true);
        }
    }
    (last.1, false)
}

/// The CPU target of a plain HPA controller (`hpa:70`); `None` for any
/// other controller, HPA with add-ons (`hpa:70+heal`) included.
pub fn hpa_target(controller: &str) -> Option<f64> {
    controller
        .strip_prefix("hpa:")
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite())
}

/// Means over seeds of one controller on one scenario variant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub cost: f64,
    pub violation: f64,
    pub failed: f64,
    pub runs: usize,
}

/// One controller on one scenario variant against HPA's curve there.
#[derive(Clone, Debug, PartialEq)]
pub struct AgainstCurve {
    pub scenario: String,
    pub params: String,
    pub controller: String,
    pub at: Point,
    /// HPA's curve at the controller's cost.
    pub curve_violation: f64,
    pub curve_failed: f64,
    /// Whether the cost lies within HPA's range (else the nearest point).
    pub inside: bool,
}

impl AgainstCurve {
    pub fn below(&self) -> bool {
        self.at.violation < self.curve_violation
    }
}

/// One controller over every variant that has a curve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurveSummary {
    pub controller: String,
    pub variants: usize,
    pub below: usize,
    /// Sums over the variants.
    pub cost: f64,
    pub violation: f64,
    pub curve_violation: f64,
    pub failed: f64,
    pub curve_failed: f64,
}

/// Controllers' figures against HPA's curve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HpaCurve {
    pub rows: Vec<AgainstCurve>,
    pub summaries: Vec<CurveSummary>,
    /// Means over the variants with a curve, for the chart: HPA's points
    /// by target, then every other controller that ran on all of them.
    pub hpa_means: Vec<(f64, Point)>,
    pub other_means: Vec<(String, Point)>,
}

type Variant = (String, String);

fn means(records: &[RunRecord]) -> BTreeMap<Variant, BTreeMap<String, Point>> {
    let mut m: BTreeMap<Variant, BTreeMap<String, Point>> = BTreeMap::new();
    for r in records {
        let p = m
            .entry((r.scenario.clone(), r.params.clone()))
            .or_default()
            .entry(r.controller.clone())
            .or_default();
        p.cost += r.replica_seconds;
        p.violation += r.slo_violation_s;
        p.failed += r.failed as f64;
        p.runs += 1;
    }
    for p in m.values_mut().flat_map(|c| c.values_mut()) {
        let n = p.runs as f64;
        p.cost /= n;
        p.violation /= n;
        p.failed /= n;
    }
    m
}

fn mean_point(points: &[Point]) -> Point {
    let n = points.len().max(1) as f64;
    Point {
        cost: points.iter().map(|p| p.cost).sum::<f64>() / n,
        violation: points.iter().map(|p| p.violation).sum::<f64>() / n,
        failed: points.iter().map(|p| p.failed).sum::<f64>() / n,
        runs: points.iter().map(|p| p.runs).sum(),
    }
}

/// Every controller against HPA's curve on the scenario variants where at
/// least two plain HPA targets ran; `None` when no variant has a curve.
pub fn against_hpa_curve(records: &[RunRecord]) -> Option<HpaCurve> {
    let mut out = HpaCurve::default();
    let mut curve_variants: Vec<&BTreeMap<String, Point>> = Vec::new();
    let all = means(records);
    for ((scenario, params), controllers) in &all {
        let hpa: Vec<Point> = controllers
            .iter()
            .filter(|(c, _)| hpa_target(c).is_some())
            .map(|(_, p)| *p)
            .collect();
        if hpa.len() < 2 {
            continue;
        }
        curve_variants.push(controllers);
        let violation: Vec<(f64, f64)> = hpa.iter().map(|p| (p.cost, p.violation)).collect();
        let failed: Vec<(f64, f64)> = hpa.iter().map(|p| (p.cost, p.failed)).collect();
        for (c, p) in controllers.iter().filter(|(c, _)| hpa_target(c).is_none()) {
            let (curve_violation, inside) = curve_at(&violation, p.cost);
            out.rows.push(AgainstCurve {
                scenario: scenario.clone(),
                params: params.clone(),
                controller: c.clone(),
                at: *p,
                curve_violation,
                curve_failed: curve_at(&failed, p.cost).0,
                inside,
            });
        }
    }
    if curve_variants.is_empty() {
        return None;
    }
    let mut by_controller: BTreeMap<&str, CurveSummary> = BTreeMap::new();
    for r in &out.rows {
        let s = by_controller
            .entry(&r.controller)
            .or_insert_with(|| CurveSummary {
                controller: r.controller.clone(),
                ..CurveSummary::default()
            });
        s.variants += 1;
        s.below += r.below() as usize;
        s.cost += r.at.cost;
        s.violation += r.at.violation;
        s.curve_violation += r.curve_violation;
        s.failed += r.at.failed;
        s.curve_failed += r.curve_failed;
    }
    out.summaries = by_controller.into_values().collect();
    // The chart's means: over the variants with a curve, for controllers
    // that ran on every one of them.
    let mut names: Vec<&String> = curve_variants[0].keys().collect();
    names.retain(|c| curve_variants.iter().all(|v| v.contains_key(*c)));
    for c in names {
        let m = mean_point(&curve_variants.iter().map(|v| v[c]).collect::<Vec<_>>());
        match hpa_target(c) {
            Some(t) => out.hpa_means.push((t, m)),
            None => out.other_means.push((c.clone(), m)),
        }
    }
    out.hpa_means.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(out)
}

impl HpaCurve {
    /// The HPA targets that trace the curve, ascending.
    pub fn targets(&self) -> Vec<f64> {
        self.hpa_means.iter().map(|(t, _)| *t).collect()
    }
}

/// A ratio's verdict against 1 from its 95 % interval; its discriminant
/// indexes `HealingSummary`'s counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Lower,
    Higher,
    NoClearDifference,
    /// No runs to compare.
    Undefined,
}

pub fn verdict(ratio: &Estimate) -> Verdict {
    if ratio.n == 0 || ratio.mean.is_nan() {
        Verdict::Undefined
    } else if ratio.mean.is_infinite() {
        // Failures where the baseline had none.
        Verdict::Higher
    } else if ratio.hi < 1.0 {
        Verdict::Lower
    } else if ratio.lo > 1.0 {
        Verdict::Higher
    } else {
        Verdict::NoClearDifference
    }
}

/// One arm against its baseline over every fault experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct HealingSummary {
    pub arm: String,
    pub baseline: String,
    pub faults: usize,
    /// Counts by `Verdict`: lower, higher, no clear difference, undefined.
    pub mttr: [usize; 4],
    pub failed: [usize; 4],
}

/// Per arm (other than a baseline), how its MTTR and failed requests
/// compare with the baseline's over the fault experiments (not the
/// fault-free ones).
pub fn healing(rows: &[ArmRow]) -> Vec<HealingSummary> {
    let mut out: Vec<HealingSummary> = Vec::new();
    for group in rows.chunk_by(|a, b| a.scenario == b.scenario) {
        let baseline = &group[0].arm;
        for r in group.iter().skip(1).filter(|r| !r.fault.is_empty()) {
            let (Some(m), Some(f)) = (&r.mttr_ratio, &r.failed_ratio) else {
                continue;
            };
            let i = match out
                .iter()
                .position(|s| s.arm == r.arm && s.baseline == *baseline)
            {
                Some(i) => i,
                None => {
                    out.push(HealingSummary {
                        arm: r.arm.clone(),
                        baseline: baseline.clone(),
                        faults: 0,
                        mttr: [0; 4],
                        failed: [0; 4],
                    });
                    out.len() - 1
                }
            };
            let s = &mut out[i];
            s.faults += 1;
            s.mttr[verdict(m) as usize] += 1;
            s.failed[verdict(f) as usize] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_interpolates_inside_and_clamps_outside() {
        let pts = [(100.0, 50.0), (200.0, 10.0), (150.0, 20.0)];
        assert_eq!(curve_at(&pts, 125.0), (35.0, true));
        assert_eq!(curve_at(&pts, 175.0), (15.0, true));
        assert_eq!(curve_at(&pts, 50.0), (50.0, false));
        assert_eq!(curve_at(&pts, 500.0), (10.0, false));
    }

    #[test]
    fn only_plain_hpa_traces_the_curve() {
        assert_eq!(hpa_target("hpa:70"), Some(70.0));
        assert_eq!(hpa_target("hpa:70+heal"), None);
        assert_eq!(hpa_target("kpa:2"), None);
        assert_eq!(hpa_target("selfheal"), None);
    }

    fn record(scenario: &str, controller: &str, seed: u64, cost: f64, violation: f64) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            controller: controller.into(),
            seed,
            replica_seconds: cost,
            slo_violation_s: violation,
            failed: violation as u64,
            ..RunRecord::default()
        }
    }

    #[test]
    fn a_controller_below_the_curve_on_one_variant_of_two() {
        let rs = vec![
            record("a", "hpa:50", 1, 200.0, 10.0),
            record("a", "hpa:80", 1, 100.0, 50.0),
            // At cost 150 the curve is at 30: 20 is below.
            record("a", "selfheal", 1, 140.0, 20.0),
            record("a", "selfheal", 2, 160.0, 20.0),
            record("b", "hpa:50", 1, 200.0, 10.0),
            record("b", "hpa:80", 1, 100.0, 50.0),
            record("b", "selfheal", 1, 150.0, 40.0),
            // No curve: one HPA target only.
            record("c", "hpa:70", 1, 100.0, 0.0),
            record("c", "selfheal", 1, 100.0, 0.0),
        ];
        let c = against_hpa_curve(&rs).unwrap();
        assert_eq!(c.targets(), vec![50.0, 80.0]);
        assert_eq!(c.rows.len(), 2);
        let s = &c.summaries[0];
        assert_eq!(
            (s.controller.as_str(), s.variants, s.below),
            ("selfheal", 2, 1)
        );
        assert_eq!((s.violation, s.curve_violation), (60.0, 60.0));
        assert_eq!(c.other_means[0].1.cost, 150.0);
        assert!(against_hpa_curve(&rs[7..]).is_none());
    }

    #[test]
    fn verdicts_come_from_the_interval() {
        let e = |mean, lo, hi| Estimate { mean, lo, hi, n: 5 };
        assert_eq!(verdict(&e(0.5, 0.4, 0.6)), Verdict::Lower);
        assert_eq!(verdict(&e(1.5, 1.2, 1.8)), Verdict::Higher);
        assert_eq!(verdict(&e(1.0, 0.9, 1.1)), Verdict::NoClearDifference);
        assert_eq!(
            verdict(&e(f64::NAN, f64::NAN, f64::NAN)),
            Verdict::Undefined
        );
    }
}
