//! Parts of `selfheal validate`'s report beyond the per-set tables of
//! [`super::validate::report_section`]: each held-out set's charts, and the
//! table of models trained with one fault family left out in turn.

use std::collections::BTreeMap;
use std::path::Path;

use super::store::ModelBundle;
use super::traces::{self, Dataset, Health};
use super::trainer::{self, Progress};
use super::validate::{self as v, Scored};
use crate::sweep::charts::{self, ChartError};

/// The confusion matrix (`confusion-<key>`) and the lead-time histogram
/// (`lead-<key>`) of one held-out set, in `out`.
pub fn charts(
    out: &Path,
    key: &str,
    title: &str,
    scored: &[Scored],
    ds: &Dataset,
    threshold: f64,
) -> Result<(), ChartError> {
    let m = v::confusion(scored);
    charts::confusion(
        out,
        &format!("confusion-{key}"),
        &charts::Confusion {
            title: format!("LSTM confusion matrix: {title}"),
            classes: Health::ALL.iter().map(|h| h.as_str().to_string()).collect(),
            counts: m.iter().map(|r| r.to_vec()).collect(),
        },
    )?;
    let t = v::timing(scored, ds, 0, threshold);
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (k, l) in &t.leads {
        groups.entry(k.as_str()).or_default().push(*l);
    }
    charts::histogram(
        out,
        &format!("lead-{key}"),
        &charts::Histogram {
            title: format!("LSTM lead time before the SLO breach: {key}"),
            x_desc: "seconds from the first warning to the breach (0: none before it)".into(),
            bin: 30.0,
            groups: groups
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        },
    )
}

/// What [`leave_one_out`] trains and scores.
pub struct LeaveOneOut<'a> {
    /// The full model, whose configuration each left-out model copies.
    pub bundle: &'a ModelBundle,
    pub train: &'a Dataset,
    pub heldout: &'a Dataset,
    /// The full model's scores on `heldout`.
    pub full_scored: &'a [Scored],
    /// The most epochs each left-out model trains for.
    pub epochs: usize,
    pub stride: usize,
}

/// Trains one model per fault family without that family's training runs
/// and scores it on the held-out runs of that family and the fault-free
/// ones, beside the full model on the same windows: a markdown section.
/// `say` gets a line per family started; `progress` follows training.
pub fn leave_one_out(l: &LeaveOneOut, say: &dyn Fn(&str), progress: &mut dyn Progress) -> String {
    let mut md = format!(
        "## Each fault family left out of training in turn\n\nOne model per family, trained like the shipped one but for at most {} epochs, without the training runs of that family; scored on the held-out runs of that family and the fault-free ones. Each model warns at its own alarm threshold, calibrated on its own validation runs. The full model's figures on the same windows are beside it.\n\n| left out | windows | ROC-AUC (left out) | ROC-AUC (full) | recall (left out) | recall (full) | lead p50 s (left out) | lead p50 s (full) |\n|---|---|---|---|---|---|---|---|\n",
        l.epochs
    );
    let device = burn::prelude::Device::flex();
    let pcfg = l.bundle.predictor_config();
    for family in crate::scenario::FaultKind::ALL {
        let keep: Vec<u32> = l
            .train
            .runs
            .iter()
            .filter(|r| r.fault.map(|f| f.0) != Some(family))
            .map(|r| r.id)
            .collect();
        let subset = v::subset(l.train, &keep);
        let cfg = l.bundle.config.clone().with_max_epochs(l.epochs);
        say(&format!(
            "leave out {}: training on {} runs",
            family.as_str(),
            subset.runs.len()
        ));
        let t = trainer::train_with(&subset, &cfg, l.bundle.normaliser.inputs, &device, progress);
        let left_threshold = v::calibrate_trained(&subset, &t, cfg.net.window, l.stride);
        let model = crate::control::predictor::Model {
            net: t.fused,
            normaliser: t.normaliser,
            window: cfg.net.window,
        };
        let eval_runs: Vec<u32> = l
            .heldout
            .runs
            .iter()
            .filter(|r| r.fault.is_none_or(|f| f.0 == family))
            .map(|r| r.id)
            .collect();
        let eval = v::subset(l.heldout, &eval_runs);
        let scored = v::score_dataset(&eval, &model, &pcfg, None, l.stride);
        let full: Vec<Scored> = l
            .full_scored
            .iter()
            .filter(|x| eval_runs.binary_search(&x.run).is_ok())
            .cloned()
            .collect();
        let (lr, lrec, llead) = summarise(&scored, &eval, left_threshold);
        let (fr, frec, flead) = summarise(&full, &eval, l.bundle.meta.alarm_threshold as f64);
        md.push_str(&format!(
            "| {} | {} | {lr:.3} | {fr:.3} | {lrec:.3} | {frec:.3} | {llead:.0} | {flead:.0} |\n",
            family.as_str(),
            scored.len()
        ));
    }
    md
}

/// ROC-AUC for "not healthy", recall at `threshold` and the median lead
/// time of the LSTM's scores.
fn summarise(s: &[Scored], ds: &Dataset, threshold: f64) -> (f64, f64, f64) {
    let pos: Vec<bool> = s
        .iter()
        .map(|x| x.label != traces::Health::Healthy)
        .collect();
    let sc: Vec<f64> = s.iter().map(|x| x.scores[0]).collect();
    let (roc, _) = v::roc_pr_auc(&sc, &pos);
    let (tp, p) = s.iter().zip(&pos).fold((0.0, 0.0), |(tp, p), (x, &y)| {
        (
            tp + (y && x.scores[0] >= threshold) as u8 as f64,
            p + y as u8 as f64,
        )
    });
    let mut leads: Vec<f64> = v::timing(s, ds, 0, threshold)
        .leads
        .iter()
        .map(|l| l.1)
        .collect();
    (roc, tp / f64::max(p, 1.0), v::quantile(&mut leads, 0.5))
}
