//! Honest validation of the failure predictor on held-out traces, next to
//! the baselines, at equal false-alarm rates.
//!
//! Every held-out (run, service) sequence is replayed scrape by scrape
//! through a [`ServiceWatch`], exactly as the control loop would see it, and
//! every `stride`-th full window is scored by each detector:
//!
//! - `lstm`: 1 - P(healthy) from the trained network;
//! - `persistence`: the worst state of the last horizon (the label of the
//!   window one horizon earlier), "the next five minutes look like the last";
//! - `thresholds`: the largest of error rate / 1 %, p99 / SLO latency,
//!   CPU / 90 % and memory / 90 % on the current scrape;
//! - `patterns`: the seed's rules alone (1 when a pattern matches);
//! - `forest`: a linfa random forest on summary statistics of the same
//!   normalised window (last, mean, std, min, max, slope per feature),
//!   scored as the fraction of trees that vote "not healthy".

use std::collections::BTreeMap;
use std::fmt::Write as _;

use linfa::prelude::*;
use linfa_ensemble::RandomForestParams;
use linfa_trees::DecisionTree;
use ndarray16::{Array1, Array2, Axis};
use rand08::SeedableRng;

use super::traces::{Dataset, Health, TRACES_SLO_LATENCY_MS};
use crate::control::departure::{Departure, DepartureConfig};
use crate::control::predictor::normalise::Normaliser;
use crate::control::predictor::patterns::{FailureType, trend};
use crate::control::predictor::{Model, PredictorConfig, ServiceWatch};
use crate::scenario::FaultKind;
use crate::time::Time;

/// `departure` is [`crate::control::departure`]'s score, here alarming on
/// every window at or above the threshold like the others.
pub const DETECTORS: [&str; 6] = [
    "lstm",
    "persistence",
    "thresholds",
    "patterns",
    "forest",
    "departure",
];

/// One scored window.
#[derive(Clone, Debug)]
pub struct Scored {
    pub run: u32,
    pub service: u8,
    pub t_s: f64,
    pub label: Health,
    pub lstm_class: Health,
    pub fault: Option<FaultKind>,
    pub pattern: Option<FailureType>,
    pub time_to_breach_s: Option<f64>,
    /// One score per [`DETECTORS`] entry, higher = more alarming.
    pub scores: [f64; 6],
}

/// Summary statistics of a normalised window for the forest.
pub fn summary_features(window: &[f32], features: usize) -> Vec<f64> {
    let steps = window.len() / features;
    let mut out = Vec::with_capacity(features * 6);
    for k in 0..features {
        let col: Vec<f64> = (0..steps)
            .map(|t| window[t * features + k] as f64)
            .collect();
        let mean = col.iter().sum::<f64>() / steps as f64;
        let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / steps as f64;
        out.push(col[steps - 1]);
        out.push(mean);
        out.push(var.sqrt());
        out.push(col.iter().copied().fold(f64::INFINITY, f64::min));
        out.push(col.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        out.push(trend(&col).0);
    }
    out
}

pub struct Forest {
    model: linfa_ensemble::EnsembleLearner<DecisionTree<f64, usize>>,
}

impl Forest {
    /// Fits on the training dataset's windows (every `stride` scrapes, at
    /// most `max_samples`, evenly spaced).
    pub fn fit(
        ds: &Dataset,
        norm: &Normaliser,
        stride: usize,
        max_samples: usize,
        seed: u64,
    ) -> Forest {
        let f = norm.features();
        let mut ends = ds.sample_ends(stride);
        if ends.len() > max_samples {
            let step = ends.len() as f64 / max_samples as f64;
            ends = (0..max_samples)
                .map(|i| ends[(i as f64 * step) as usize])
                .collect();
        }
        let width = f * 6;
        let mut x = Vec::with_capacity(ends.len() * width);
        let mut y = Vec::with_capacity(ends.len());
        let mut scratch = Vec::new();
        for &e in &ends {
            let mut w = ds.window(e, f);
            norm.network_input(&mut w, TRACES_SLO_LATENCY_MS, &mut scratch);
            x.extend(summary_features(&w, f));
            y.push(ds.rows[e].label.expect("labelled") as usize);
        }
        let x = Array2::from_shape_vec((ends.len(), width), x).expect("shape");
        let data = linfa::Dataset::new(x, Array1::from(y));
        let rng = rand08::rngs::SmallRng::seed_from_u64(seed);
        let model = RandomForestParams::new_fixed_rng(
            DecisionTree::params()
                .max_depth(Some(12))
                .min_weight_leaf(5.0),
            rng,
        )
        .ensemble_size(60)
        .bootstrap_proportion(0.7)
        .feature_proportion(0.4)
        .fit(&data)
        .expect("forest fit");
        Forest { model }
    }

    /// Fraction of trees voting "not healthy" on a window as the network
    /// reads it (normalised, row-major, `features` wide), such as
    /// [`ServiceWatch::last_input`].
    pub fn score_window(&self, window: &[f32], features: usize) -> f64 {
        self.score(&summary_features(window, features))
    }

    /// Fraction of trees voting "not healthy".
    pub fn score(&self, features: &[f64]) -> f64 {
        let row = Array2::from_shape_vec((1, features.len()), features.to_vec()).expect("shape");
        let mut votes = 0usize;
        for (tree, cols) in self.model.models.iter().zip(&self.model.model_features) {
            let sub = row.select(Axis(1), cols);
            let pred: Array1<usize> = tree.predict(&sub);
            votes += (pred[0] != Health::Healthy as usize) as usize;
        }
        votes as f64 / self.model.models.len().max(1) as f64
    }
}

/// Candidate thresholds tried for a false-alarm budget.
pub const BUDGET_STEPS: usize = 256;

/// [`BUDGET_STEPS`] evenly spaced quantiles of the distinct finite
/// `scores`, lowest first (none when there are none): the thresholds a
/// detector is tried at for a budget.
pub fn budget_candidates(scores: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut scores: Vec<f64> = scores.into_iter().filter(|v| v.is_finite()).collect();
    scores.sort_by(f64::total_cmp);
    scores.dedup();
    let n = scores.len();
    if n == 0 {
        return Vec::new();
    }
    (0..BUDGET_STEPS)
        .map(|i| scores[(i * n / BUDGET_STEPS).min(n - 1)])
        .collect()
}

/// A fault counts as warned of (or caught) within this long after its
/// injection.
pub const CATCH_WINDOW_S: f64 = 300.0;

/// Seconds from `at` to the first alarm within the catch window, when the
/// detector was not already alarming in the window before `at`.
pub fn newly_warned(times: &[Time], alarms: &[bool], at: Time) -> Option<f64> {
    let at = at.as_secs_f64();
    let mut first = None;
    for (t, &a) in times.iter().map(|t| t.as_secs_f64()).zip(alarms) {
        let after = t - at;
        if (-CATCH_WINDOW_S..0.0).contains(&after) && a {
            return None;
        }
        if (0.0..=CATCH_WINDOW_S).contains(&after) && a && first.is_none() {
            first = Some(after);
        }
    }
    first
}

/// Static thresholds as one score, alarming at 1: errors at 1 %, p99 at
/// the SLO latency, CPU or memory at 90 %.
pub fn threshold_score(row: &[f32; 8], slo_latency_ms: f64) -> f64 {
    let r = |k: usize| row[k] as f64;
    (r(3) / 0.01)
        .max(r(5) / slo_latency_ms)
        .max(r(0) / 0.9)
        .max(r(1) / 0.9)
}

/// Replays every (run, service) of `ds` and scores every `stride`-th
/// labelled window.
pub fn score_dataset(
    ds: &Dataset,
    model: &Model,
    cfg: &PredictorConfig,
    forest: Option<&Forest>,
    stride: usize,
) -> Vec<Scored> {
    use rayon::prelude::*;
    let f = model.normaliser.features();
    let lag = (ds.config.horizon_s / ds.config.scrape_interval_s).round() as usize;
    // Sequences: contiguous row ranges of one (run, service).
    let mut seqs = Vec::new();
    let mut start = 0;
    for i in 1..=ds.rows.len() {
        if i == ds.rows.len()
            || ds.rows[i].run != ds.rows[start].run
            || ds.rows[i].service != ds.rows[start].service
        {
            seqs.push((start, i));
            start = i;
        }
    }
    let per_seq: Vec<Vec<Scored>> = seqs
        .par_iter()
        .map(|&(a, b)| {
            let mut watch = ServiceWatch::new(model.window, cfg);
            let mut departure = Departure::of_recording(&DepartureConfig::default());
            let mut out = Vec::new();
            for i in a..b {
                let r = &ds.rows[i];
                let now = Time::from_secs_f64(r.t_s);
                watch.handle_row(now, r.features);
                // The row's CPU, memory, rate, errors and p99
                // (`scrape_row`'s columns), in `RECORDING_SCALES`' order.
                let x = |k: usize| r.features[k] as f64;
                let (departed, _, _) = departure.update(now, &[x(0), x(1), x(2), x(3), x(5)], &[]);
                let k = i - a;
                // The window fills in seconds; `predict` says when.
                if !(k + 1)
                    .saturating_sub(model.window)
                    .is_multiple_of(stride.max(1))
                {
                    continue;
                }
                let Some(label) = r.label else { continue };
                let Some(p) = watch.predict(model, cfg) else {
                    continue;
                };
                let persistence = if k >= lag {
                    ds.rows[i - lag]
                        .label
                        .map_or(0.0, |h| h as usize as f64 / 3.0)
                } else {
                    0.0
                };
                // The forest reads the window the network read, resampled
                // onto the same time base at any scrape interval.
                let forest_score =
                    forest.map_or(0.0, |forest| forest.score_window(watch.last_input(), f));
                // The prediction already ran the pattern detector.
                let pattern = p.failure_type;
                out.push(Scored {
                    run: r.run,
                    service: r.service,
                    t_s: r.t_s,
                    label,
                    lstm_class: p.status,
                    fault: r.fault,
                    pattern,
                    time_to_breach_s: r.time_to_breach_s,
                    scores: [
                        p.not_healthy as f64,
                        persistence,
                        threshold_score(&r.features, cfg.slo_latency_ms),
                        pattern.is_some() as u8 as f64,
                        forest_score,
                        departed,
                    ],
                });
            }
            out
        })
        .collect();
    per_seq.into_iter().flatten().collect()
}

/// Area under the ROC curve and under the precision-recall curve (average
/// precision) of `scores` for the positives in `pos`; ties are handled by
/// treating equal scores as one threshold.
pub fn roc_pr_auc(scores: &[f64], pos: &[bool]) -> (f64, f64) {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let p = pos.iter().filter(|&&x| x).count() as f64;
    let n = scores.len() as f64 - p;
    if p == 0.0 || n == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut roc, mut ap) = (0.0, 0.0);
    let (mut prev_tpr, mut prev_fpr, mut prev_recall) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if pos[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let (tpr, fpr) = (tp / p, fp / n);
        roc += (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0;
        let recall = tp / p;
        ap += (recall - prev_recall) * (tp / (tp + fp));
        prev_tpr = tpr;
        prev_fpr = fpr;
        prev_recall = recall;
    }
    (roc, ap)
}

/// Warned windows per service-hour on fault-free runs whose next horizon
/// stayed healthy: a false positive rate in the unit an operator pages on.
/// (Counting alarm *episodes* instead would reward a detector that never
/// stops alarming.)
pub fn false_alarms_per_hour(
    s: &[Scored],
    detector: usize,
    threshold: f64,
    fault_free: &[u32],
    hours: f64,
) -> f64 {
    let alarms = s
        .iter()
        .filter(|x| fault_free.binary_search(&x.run).is_ok())
        .filter(|x| x.scores[detector] >= threshold && x.label == Health::Healthy)
        .count();
    alarms as f64 / hours.max(1e-9)
}

/// The lowest threshold whose false-alarm rate is at most `target`.
pub fn threshold_for_rate(
    s: &[Scored],
    detector: usize,
    target: f64,
    fault_free: &[u32],
    hours: f64,
) -> f64 {
    let mut cands: Vec<f64> = s.iter().map(|x| x.scores[detector]).collect();
    cands.sort_by(|a, b| a.total_cmp(b));
    cands.dedup();
    cands.push(f64::INFINITY);
    // False alarms fall as the threshold rises: binary search the first
    // candidate that meets the target.
    let (mut lo, mut hi) = (0usize, cands.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if false_alarms_per_hour(s, detector, cands[mid], fault_free, hours) <= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    cands[lo]
}

/// Lead times (breach minus first warning at or after the fault's start)
/// per faulty run, and detection delays for faults that give no warning.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// (fault, lead seconds) per run whose SLO broke; 0 when the first
    /// warning came after the breach or never.
    pub leads: Vec<(FaultKind, f64)>,
    /// (fault, seconds from the fault's start to the first warning; None
    /// when never warned).
    pub delays: Vec<(FaultKind, Option<f64>)>,
}

pub fn timing(s: &[Scored], ds: &Dataset, detector: usize, threshold: f64) -> Timing {
    let mut by_run: BTreeMap<u32, Vec<&Scored>> = BTreeMap::new();
    for x in s {
        by_run.entry(x.run).or_default().push(x);
    }
    let mut out = Timing::default();
    for plan in &ds.runs {
        let Some((kind, at)) = plan.fault else {
            continue;
        };
        let Some(xs) = by_run.get(&plan.id) else {
            continue;
        };
        let first_warning = xs
            .iter()
            .filter(|x| x.t_s >= at && x.scores[detector] >= threshold)
            .map(|x| x.t_s)
            .fold(f64::INFINITY, f64::min);
        let breach = xs
            .iter()
            .filter(|x| x.t_s >= at - ds.config.horizon_s)
            .filter_map(|x| x.time_to_breach_s.map(|d| x.t_s + d))
            .filter(|&b| b >= at)
            .fold(f64::INFINITY, f64::min);
        let no_warning = matches!(kind, FaultKind::PodKill | FaultKind::NodeLoss);
        if no_warning {
            out.delays.push((
                kind,
                first_warning.is_finite().then_some(first_warning - at),
            ));
        } else if breach.is_finite() {
            out.leads.push((kind, (breach - first_warning).max(0.0)));
        }
    }
    out
}

pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    crate::metrics::quantile_of_sorted(v, q)
}

/// The confusion matrix of the LSTM's argmax, rows = truth.
pub fn confusion(s: &[Scored]) -> [[usize; 4]; 4] {
    let mut m = [[0usize; 4]; 4];
    for x in s {
        m[x.label as usize][x.lstm_class as usize] += 1;
    }
    m
}

/// Precision, recall, F1 per class from a confusion matrix.
pub fn per_class(m: &[[usize; 4]; 4]) -> [(f64, f64, f64); 4] {
    let mut out = [(0.0, 0.0, 0.0); 4];
    for c in 0..4 {
        let tp = m[c][c] as f64;
        let predicted: f64 = (0..4).map(|r| m[r][c] as f64).sum();
        let actual: f64 = m[c].iter().map(|&v| v as f64).sum();
        let p = if predicted > 0.0 {
            tp / predicted
        } else {
            f64::NAN
        };
        let r = if actual > 0.0 { tp / actual } else { f64::NAN };
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            f64::NAN
        };
        out[c] = (p, r, f1);
    }
    out
}

/// The false-alarm rates (per service-hour) detectors are compared at.
pub const FALSE_ALARM_TARGETS: [f64; 2] = [6.0, 36.0];

#[allow(clippy::too_many_arguments)]
fn operating_point(
    name: &str,
    s: &[Scored],
    pos: &[bool],
    ds: &Dataset,
    d: usize,
    th: f64,
    fault_free: &[u32],
    hours: f64,
) -> String {
    let fa = false_alarms_per_hour(s, d, th, fault_free, hours);
    let (mut tp, mut fp, mut fneg) = (0.0f64, 0.0f64, 0.0f64);
    for (x, &p) in s.iter().zip(pos) {
        match (x.scores[d] >= th, p) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    let t = timing(s, ds, d, th);
    let mut leads: Vec<f64> = t.leads.iter().map(|l| l.1).collect();
    let warned = leads.iter().filter(|&&l| l > 0.0).count();
    let n_leads = leads.len();
    let mut delays: Vec<f64> = t.delays.iter().filter_map(|d| d.1).collect();
    format!(
        "| {name} | {th:.3} | {fa:.1} | {:.3} | {:.3} | {:.0} | {:.0} | {warned}/{n_leads} | {:.0} |\n",
        tp / (tp + fneg).max(1.0),
        tp / (tp + fp).max(1.0),
        quantile(&mut leads, 0.5),
        quantile(&mut leads, 0.9),
        quantile(&mut delays, 0.5),
    )
}

/// The ids of `ds`'s runs without a fault, in run order.
pub fn fault_free_runs(ds: &Dataset) -> Vec<u32> {
    ds.runs
        .iter()
        .filter(|r| r.fault.is_none())
        .map(|r| r.id)
        .collect()
}

/// The fault-free runs of `ds` and their service-hours.
pub fn fault_free_hours(ds: &Dataset) -> (Vec<u32>, f64) {
    let fault_free = fault_free_runs(ds);
    let services = ds
        .rows
        .iter()
        .map(|r| r.service as usize + 1)
        .max()
        .unwrap_or(1);
    let hours = (fault_free.len() * services) as f64 * ds.config.duration_s / 3600.0;
    (fault_free, hours)
}

/// The lowest alarm threshold whose false-alarm rate on the fault-free runs
/// among `s` is at most `target` per service-hour.
pub fn calibrate(s: &[Scored], ds: &Dataset, target: f64) -> f64 {
    let (fault_free, hours) = fault_free_hours(ds);
    threshold_for_rate(s, 0, target, &fault_free, hours)
}

/// The runs of `ds` in `runs` (sorted) as a dataset of their own.
pub fn subset(ds: &Dataset, runs: &[u32]) -> Dataset {
    Dataset {
        runs: ds
            .runs
            .iter()
            .filter(|r| runs.binary_search(&r.id).is_ok())
            .cloned()
            .collect(),
        rows: ds
            .rows
            .iter()
            .filter(|r| runs.binary_search(&r.run).is_ok())
            .cloned()
            .collect(),
        ..ds.clone()
    }
}

/// The false-alarm rate (per service-hour) the shipped alarm threshold is
/// calibrated to on the training runs' validation split.
pub const CALIBRATION_FALSE_ALARMS: f64 = 6.0;

/// A model's alarm threshold for `false_alarms` per service-hour on the
/// validation runs `val_runs` of its training data, never on held-out data.
pub fn calibrate_on_validation(
    ds: &Dataset,
    val_runs: &[u32],
    model: &Model,
    false_alarms: f64,
    stride: usize,
) -> f64 {
    let val = subset(ds, val_runs);
    let scored = score_dataset(&val, model, &PredictorConfig::default(), None, stride);
    calibrate(&scored, &val, false_alarms)
}

/// [`calibrate_on_validation`] for a freshly trained model at the shipped
/// budget, [`CALIBRATION_FALSE_ALARMS`].
pub fn calibrate_trained(
    ds: &Dataset,
    t: &super::trainer::Trained,
    window: usize,
    stride: usize,
) -> f64 {
    let model = Model {
        net: t.fused.clone(),
        normaliser: t.normaliser.clone(),
        window,
    };
    calibrate_on_validation(ds, &t.val_runs, &model, CALIBRATION_FALSE_ALARMS, stride)
}

/// One held-out set's full report section, in Markdown.
pub fn report_section(
    title: &str,
    s: &[Scored],
    ds: &Dataset,
    alarm_threshold: f64,
    stride: usize,
) -> String {
    let stride_s = stride as f64 * ds.config.scrape_interval_s;
    let mut md = String::new();
    let (fault_free, hours) = fault_free_hours(ds);
    let _ = writeln!(
        md,
        "## {title}\n\n{} runs ({} fault-free, {:.1} service-hours of them), {} scored windows.\n",
        ds.runs.len(),
        fault_free.len(),
        hours,
        s.len()
    );
    let m = confusion(s);
    let _ = writeln!(
        md,
        "Confusion matrix of the LSTM (rows: truth, columns: predicted):\n\n| | healthy | degraded | unhealthy | critical |\n|---|---|---|---|---|"
    );
    for (r, row) in m.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            Health::from_index(r).as_str(),
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    let _ = writeln!(
        md,
        "\n| class | precision | recall | F1 |\n|---|---|---|---|"
    );
    for (c, (p, r, f1)) in per_class(&m).iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {p:.3} | {r:.3} | {f1:.3} |",
            Health::from_index(c).as_str()
        );
    }
    let pos: Vec<bool> = s.iter().map(|x| x.label != Health::Healthy).collect();
    let _ = writeln!(
        md,
        "\nThreshold-free: ROC-AUC and PR-AUC (average precision) of each detector's score for \"not healthy in the next horizon\".\n\n| detector | ROC-AUC | PR-AUC |\n|---|---|---|"
    );
    for (d, name) in DETECTORS.iter().enumerate() {
        let scores: Vec<f64> = s.iter().map(|x| x.scores[d]).collect();
        let (roc, pr) = roc_pr_auc(&scores, &pos);
        let _ = writeln!(md, "| {name} | {roc:.3} | {pr:.3} |");
    }
    for target in FALSE_ALARM_TARGETS {
        let _ = writeln!(
            md,
            "\nAt equal false-alarm rates, at most {target} per service-hour: a false alarm is a warned window (one per {stride_s} s) on a fault-free run whose next horizon stayed healthy; each detector gets the lowest threshold that meets the rate. Recall and precision are per window; lead time is the breach minus the first warning at or after the fault's start (0: warned only after the breach, or never); delay is for pod kill and node loss, which give no warning.\n\n| detector | threshold | false alarms / h | recall | precision | lead p50 s | lead p90 s | runs warned before breach | delay p50 s |\n|---|---|---|---|---|---|---|---|---|"
        );
        for (d, name) in DETECTORS.iter().enumerate() {
            let th = threshold_for_rate(s, d, target, &fault_free, hours);
            md.push_str(&operating_point(
                name,
                s,
                &pos,
                ds,
                d,
                th,
                &fault_free,
                hours,
            ));
        }
    }
    let _ = writeln!(
        md,
        "\nThe LSTM at the alarm threshold the predictor ships with ({alarm_threshold:.3}, calibrated on the training runs' validation split):\n\n| detector | threshold | false alarms / h | recall | precision | lead p50 s | lead p90 s | runs warned before breach | delay p50 s |\n|---|---|---|---|---|---|---|---|---|"
    );
    md.push_str(&operating_point(
        "lstm",
        s,
        &pos,
        ds,
        0,
        alarm_threshold,
        &fault_free,
        hours,
    ));
    // The LSTM's lead time by fault family.
    let t = timing(s, ds, 0, alarm_threshold);
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (k, l) in &t.leads {
        by.entry(k.as_str()).or_default().push(*l);
    }
    let _ = writeln!(
        md,
        "\nLSTM lead time by fault (seconds; runs whose SLO broke):\n\n| fault | runs | warned before breach | p10 | p50 | p90 |\n|---|---|---|---|---|---|"
    );
    for (k, v) in &mut by {
        let warned = v.iter().filter(|&&l| l > 0.0).count();
        let _ = writeln!(
            md,
            "| {k} | {} | {warned} | {:.0} | {:.0} | {:.0} |",
            v.len(),
            quantile(v, 0.1),
            quantile(v, 0.5),
            quantile(v, 0.9)
        );
    }
    let mut dl: BTreeMap<&str, (usize, Vec<f64>)> = BTreeMap::new();
    for (k, d) in &t.delays {
        let e = dl.entry(k.as_str()).or_default();
        e.0 += 1;
        if let Some(d) = d {
            e.1.push(*d);
        }
    }
    let _ = writeln!(
        md,
        "\nLSTM detection delay for faults without warning (seconds from the fault's start):\n\n| fault | runs | detected | p50 | p90 |\n|---|---|---|---|---|"
    );
    for (k, (n, v)) in &mut dl {
        let _ = writeln!(
            md,
            "| {k} | {n} | {} | {:.0} | {:.0} |",
            v.len(),
            quantile(v, 0.5),
            quantile(v, 0.9)
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Time {
        Time::from_secs(s)
    }

    #[test]
    fn a_warning_already_up_before_the_fault_is_not_new() {
        let times: Vec<Time> = (0..20).map(|i| at(60 * i)).collect();
        let mut alarms = vec![false; 20];
        alarms[12] = true;
        // Fault at 600 s: the alarm at 720 s is 120 s after.
        assert_eq!(newly_warned(&times, &alarms, at(600)), Some(120.0));
        alarms[8] = true;
        // An alarm at 480 s was already up in the 300 s before.
        assert_eq!(newly_warned(&times, &alarms, at(600)), None);
        // Beyond the catch window nothing counts.
        let mut late = vec![false; 20];
        late[16] = true;
        assert_eq!(newly_warned(&times, &late, at(600)), None);
    }
}
