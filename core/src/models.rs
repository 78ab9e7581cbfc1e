//! The trained models the control core runs, read from the files training
//! wrote, without the learning framework that trained them.
//!
//! A predictor directory holds `config.json` (the network's shape and the
//! training settings), `normaliser.json` (the per-feature transform and
//! statistics), `model.bpk` (burn's record, for the lab), `fused.json` (the
//! same weights as the plain arrays of [`FusedNet`]) and `training.json`
//! (how it was made, the measured times to breach, the calibrated alarm
//! threshold). The control core needs all of them but the record; the lab's
//! loader (`selfheal::train::store`) reads the record too and refuses a
//! `fused.json` that does not match it.
//!
//! Every check names the file and, where one is at fault, the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::control::predictor::lstm::FusedNet;
use crate::control::predictor::normalise::Normaliser;
use crate::control::predictor::{Model, PredictorConfig};
use crate::control::selector::StrategyForest;

/// The `format` a model's `training.json` declares.
pub const FORMAT: &str = "selfheal-predictor-1";

/// The longest window, in scrapes, a model may read: far beyond the
/// shipped model, and small enough to build.
pub const MAX_WINDOW: usize = 4096;

/// Files of a saved predictor directory: config, normaliser, record,
/// training metadata and the fused weights.
pub fn model_files(dir: &Path) -> [PathBuf; 5] {
    [
        dir.join("config.json"),
        dir.join("normaliser.json"),
        dir.join("model.bpk"),
        dir.join("training.json"),
        dir.join("fused.json"),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{path}: missing (train a model with `selfheal train`, or point --model at a directory with config.json, normaliser.json, model.bpk, fused.json and training.json)"
    )]
    Missing { path: PathBuf },
    #[error("{path}: unreadable or truncated: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: incompatible with this build: {message}")]
    Incompatible { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

pub fn io_error(path: &Path, e: impl ToString) -> ModelError {
    ModelError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A JSON file of a model directory, `Missing` when absent.
pub fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, ModelError> {
    if !p.exists() {
        return Err(ModelError::Missing { path: p.to_owned() });
    }
    let text = std::fs::read_to_string(p).map_err(|e| io_error(p, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
        path: p.to_owned(),
        message: e.to_string(),
    })
}

fn incompatible(path: &Path, message: String) -> ModelError {
    ModelError::Incompatible {
        path: path.to_owned(),
        message,
    }
}

/// `training.json`'s format, alarm threshold and times to breach.
pub fn check_training(
    path: &Path,
    format: &str,
    alarm_threshold: f32,
    median_time_to_breach_s: &[Option<f64>; 4],
) -> Result<(), ModelError> {
    if format != FORMAT {
        return Err(incompatible(
            path,
            format!("format {format:?}, this build reads {FORMAT:?}"),
        ));
    }
    if !(alarm_threshold > 0.0 && alarm_threshold <= 1.0) {
        return Err(incompatible(
            path,
            format!("field `alarm_threshold`: a probability in (0, 1], found {alarm_threshold}"),
        ));
    }
    if let Some((k, t)) = median_time_to_breach_s
        .iter()
        .enumerate()
        .find_map(|(k, t)| t.filter(|t| !(t.is_finite() && *t >= 0.0)).map(|t| (k, t)))
    {
        return Err(incompatible(
            path,
            format!("field `median_time_to_breach_s[{k}]`: seconds, zero or more, found {t}"),
        ));
    }
    Ok(())
}

/// `normaliser.json` against the network's input width: one transform and
/// finite statistics per feature, spreads above zero.
pub fn check_normaliser(path: &Path, n: &Normaliser, features: usize) -> Result<(), ModelError> {
    if n.features() != features
        || n.log1p.len() != n.features()
        || n.std.len() != n.features()
        || n.mean.len() != n.features()
    {
        return Err(incompatible(
            path,
            format!("{} features, the network takes {features}", n.features()),
        ));
    }
    let bad_stat = |name: &str, want: &str, v: &[f32], ok: fn(f32) -> bool| {
        v.iter().position(|&x| !ok(x)).map(|k| {
            incompatible(
                path,
                format!("field `{name}[{k}]`: must be {want}, found {}", v[k]),
            )
        })
    };
    match bad_stat("mean", "a finite number", &n.mean, f32::is_finite).or_else(|| {
        bad_stat("std", "a positive finite number", &n.std, |x| {
            x.is_finite() && x > 0.0
        })
    }) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The parts of `config.json` the control core reads.
#[derive(Deserialize)]
struct ConfigHead {
    net: NetHead,
}

#[derive(Deserialize)]
struct NetHead {
    features: usize,
    window: usize,
    classes: usize,
}

/// The parts of `training.json` the control core reads.
#[derive(Deserialize)]
struct TrainingHead {
    format: String,
    dataset_config: DatasetHead,
    #[serde(default)]
    median_time_to_breach_s: [Option<f64>; 4],
    #[serde(default = "half")]
    alarm_threshold: f32,
}

fn half() -> f32 {
    0.5
}

#[derive(Deserialize)]
struct DatasetHead {
    scrape_interval_s: f64,
}

/// The fused network of `fused.json`, checked for shape against the
/// network `config.json` describes and for weights that are numbers.
pub fn read_fused(dir: &Path, features: usize, classes: usize) -> Result<FusedNet, ModelError> {
    let path = dir.join("fused.json");
    let net: FusedNet = read_json(&path)?;
    if let Some(problem) = net.shape_problem() {
        return Err(ModelError::Corrupt {
            path,
            message: problem,
        });
    }
    let outputs = net.dense.last().map_or(0, |d| d.output);
    if net.input_features() != features || outputs != classes {
        return Err(incompatible(
            &path,
            format!(
                "the network takes {} features to {outputs} classes, config.json says {features} to {classes}",
                net.input_features()
            ),
        ));
    }
    if let Some(layer) = net.first_non_finite() {
        return Err(ModelError::Corrupt {
            path,
            message: format!("{layer} holds a weight that is not a finite number"),
        });
    }
    Ok(net)
}

/// A trained failure predictor as the control core runs it.
#[derive(Clone, Debug)]
pub struct TrainedPredictor {
    pub model: Model,
    /// The measured times to breach, the calibrated threshold and the
    /// training traces' scrape interval (the network's time base); the
    /// SLO and the pattern and anomaly settings are the defaults.
    pub config: PredictorConfig,
}

/// Loads the predictor in `dir` for the control core.
pub fn load_predictor(dir: &Path) -> Result<TrainedPredictor, ModelError> {
    let config_path = dir.join("config.json");
    let training_path = dir.join("training.json");
    let norm_path = dir.join("normaliser.json");
    let training: TrainingHead = read_json(&training_path)?;
    check_training(
        &training_path,
        &training.format,
        training.alarm_threshold,
        &training.median_time_to_breach_s,
    )?;
    let scrape = training.dataset_config.scrape_interval_s;
    if !(scrape.is_finite() && scrape > 0.0) {
        return Err(incompatible(
            &training_path,
            format!("field `dataset_config.scrape_interval_s`: seconds above 0, found {scrape}"),
        ));
    }
    let head: ConfigHead = read_json(&config_path)?;
    if !(1..=MAX_WINDOW).contains(&head.net.window) {
        return Err(incompatible(
            &config_path,
            format!(
                "field `window`: must be 1 to {MAX_WINDOW} scrapes, found {}",
                head.net.window
            ),
        ));
    }
    let normaliser: Normaliser = read_json(&norm_path)?;
    check_normaliser(&norm_path, &normaliser, head.net.features)?;
    let net = read_fused(dir, head.net.features, head.net.classes)?;
    Ok(TrainedPredictor {
        model: Model {
            net,
            normaliser,
            window: head.net.window,
        },
        config: trained_config(
            scrape,
            training.median_time_to_breach_s,
            training.alarm_threshold,
        ),
    })
}

/// The predictor's settings for a trained model, from its `training.json`:
/// the training traces' scrape interval (the network's time base), the
/// measured times to breach and the calibrated alarm threshold; the SLO,
/// pattern and anomaly settings are the defaults.
pub fn trained_config(
    scrape_interval_s: f64,
    median_time_to_breach_s: [Option<f64>; 4],
    alarm_threshold: f32,
) -> PredictorConfig {
    PredictorConfig {
        scrape_interval_s,
        median_time_to_breach_s,
        alarm_threshold,
        ..Default::default()
    }
}

/// A learned strategy selector (`selfheal learn-selector`) from its file.
pub fn load_selector(path: &Path) -> Result<StrategyForest, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io_error(
            path,
            format!("{e} (make one with `selfheal learn-selector`)"),
        )
    })?;
    let f: StrategyForest = serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    f.check().map_err(|e| incompatible(path, e.to_string()))?;
    Ok(f)
}
