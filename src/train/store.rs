//! A trained predictor on disk, one directory:
//!
//! - `config.json`: the [`TrainConfig`] (network shape included), burn's
//!   `Config` JSON;
//! - `normaliser.json`: the per-feature transform, mean and std fitted on
//!   the training runs;
//! - `model.bpk`: the network's parameters (burn's burnpack record);
//! - `training.json`: how it was made (dataset, seeds, per-epoch history).
//!
//! Loading checks that all four are present, that the record matches the
//! network the config describes and that the normaliser has as many
//! features as the network's input, and says which file is at fault.

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::prelude::Device;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use super::model::PredictorNet;
use super::traces::TracesConfig;
use super::trainer::{EpochStats, TrainConfig, Trained};
use crate::control::predictor::lstm::FusedNet;
use crate::control::predictor::normalise::Normaliser;

pub const FORMAT: &str = "selfheal-predictor-1";

/// Files of a saved model directory.
pub fn model_files(dir: &Path) -> [PathBuf; 4] {
    [
        dir.join("config.json"),
        dir.join("normaliser.json"),
        dir.join("model.bpk"),
        dir.join("training.json"),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{path}: missing (train a model with `selfheal train`, or point --model at a directory with config.json, normaliser.json, model.bpk and training.json)"
    )]
    Missing { path: PathBuf },
    #[error("{path}: unreadable or truncated: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: incompatible with this build: {message}")]
    Incompatible { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// How a model was made; `training.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainingMeta {
    pub format: String,
    pub dataset: String,
    pub dataset_config: TracesConfig,
    pub controller: String,
    pub train_runs: usize,
    pub val_runs: usize,
    pub train_samples: usize,
    pub best_epoch: usize,
    pub history: Vec<EpochStats>,
    /// The command that reproduces the model.
    pub command: String,
    /// Median seconds to the SLO breach of training windows by true class
    /// (the time-to-failure estimate when no trend points at a limit).
    #[serde(default)]
    pub median_time_to_breach_s: [Option<f64>; 4],
    /// P(not healthy) at which the predictor warns, calibrated on the
    /// validation runs to `validate::CALIBRATION_FALSE_ALARMS` per hour.
    #[serde(default = "half")]
    pub alarm_threshold: f32,
}

fn half() -> f32 {
    0.5
}

/// Median time to breach of the training runs' windows, by label.
pub fn median_time_to_breach(ds: &super::traces::Dataset, runs: &[u32]) -> [Option<f64>; 4] {
    let mut by: [Vec<f64>; 4] = Default::default();
    for r in &ds.rows {
        if let (Some(l), Some(t)) = (r.label, r.time_to_breach_s)
            && runs.binary_search(&r.run).is_ok()
        {
            by[l as usize].push(t);
        }
    }
    by.map(|mut v| (!v.is_empty()).then(|| super::validate::quantile(&mut v, 0.5)))
}

/// A loaded model: what the control core needs, and where it came from.
#[derive(Clone, Debug)]
pub struct ModelBundle {
    pub config: TrainConfig,
    pub normaliser: Normaliser,
    pub fused: FusedNet,
    pub meta: TrainingMeta,
}

impl ModelBundle {
    /// The network as the control core takes it.
    pub fn model(&self) -> crate::control::predictor::Model {
        crate::control::predictor::Model {
            net: self.fused.clone(),
            normaliser: self.normaliser.clone(),
            window: self.config.net.window,
        }
    }

    /// The predictor's settings for this model: the measured times to
    /// breach, the traces' scrape interval.
    pub fn predictor_config(&self) -> crate::control::predictor::PredictorConfig {
        crate::control::predictor::PredictorConfig {
            scrape_interval_s: self.meta.dataset_config.scrape_interval_s,
            median_time_to_breach_s: self.meta.median_time_to_breach_s,
            alarm_threshold: self.meta.alarm_threshold,
            ..Default::default()
        }
    }
}

fn io(path: &Path, e: impl ToString) -> ModelError {
    ModelError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

pub fn save(
    dir: &Path,
    t: &Trained,
    cfg: &TrainConfig,
    meta: &TrainingMeta,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let [config, norm, record, training] = model_files(dir);
    cfg.save(&config).map_err(|e| io(&config, e))?;
    write_json(&t.normaliser, &norm)?;
    write_json(meta, &training)?;
    t.net
        .clone()
        .into_record()
        .save(&record)
        .map_err(|e| io(&record, e))?;
    Ok(())
}

/// Rewrites `training.json` of a saved model (after recalibration).
pub fn save_meta(dir: &Path, meta: &TrainingMeta) -> Result<(), ModelError> {
    let [_, _, _, training] = model_files(dir);
    write_json(meta, &training)
}

fn write_json<T: Serialize>(v: &T, p: &Path) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(v).expect("plain data serialises");
    std::fs::write(p, text).map_err(|e| io(p, e))
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, ModelError> {
    if !p.exists() {
        return Err(ModelError::Missing { path: p.to_owned() });
    }
    let text = std::fs::read_to_string(p).map_err(|e| io(p, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
        path: p.to_owned(),
        message: e.to_string(),
    })
}

/// Loads the network itself (for tests that compare it with the fused pass).
pub fn load_net(
    dir: &Path,
    device: &Device,
) -> Result<(TrainConfig, Normaliser, PredictorNet, TrainingMeta), ModelError> {
    let [config, norm, record, training] = model_files(dir);
    for p in [&config, &norm, &record, &training] {
        if !p.exists() {
            return Err(ModelError::Missing { path: p.clone() });
        }
    }
    let meta: TrainingMeta = read_json(&training)?;
    if meta.format != FORMAT {
        return Err(ModelError::Incompatible {
            path: training,
            message: format!("format {:?}, this build reads {FORMAT:?}", meta.format),
        });
    }
    if !(meta.alarm_threshold > 0.0 && meta.alarm_threshold <= 1.0) {
        return Err(ModelError::Incompatible {
            path: training,
            message: format!(
                "field `alarm_threshold`: a probability in (0, 1], found {}",
                meta.alarm_threshold
            ),
        });
    }
    if let Some((k, t)) = meta
        .median_time_to_breach_s
        .iter()
        .enumerate()
        .find_map(|(k, t)| t.filter(|t| !(t.is_finite() && *t >= 0.0)).map(|t| (k, t)))
    {
        return Err(ModelError::Incompatible {
            path: training,
            message: format!(
                "field `median_time_to_breach_s[{k}]`: seconds, zero or more, found {t}"
            ),
        });
    }
    // serde_json directly: burn's `Config::load` reports any unreadable
    // file, random bytes included, as "File not found".
    let cfg: TrainConfig = read_json(&config)?;
    cfg.net
        .check()
        .map_err(|message| ModelError::Incompatible {
            path: config.clone(),
            message,
        })?;
    let normaliser: Normaliser = read_json(&norm)?;
    if normaliser.features() != cfg.net.features
        || normaliser.log1p.len() != normaliser.features()
        || normaliser.std.len() != normaliser.features()
        || normaliser.mean.len() != normaliser.features()
    {
        return Err(ModelError::Incompatible {
            path: norm,
            message: format!(
                "{} features, the network takes {}",
                normaliser.features(),
                cfg.net.features
            ),
        });
    }
    let bad_stat = |name: &str, want: &str, v: &[f32], ok: fn(f32) -> bool| {
        v.iter()
            .position(|&x| !ok(x))
            .map(|k| ModelError::Incompatible {
                path: norm.clone(),
                message: format!("field `{name}[{k}]`: must be {want}, found {}", v[k]),
            })
    };
    if let Some(e) =
        bad_stat("mean", "a finite number", &normaliser.mean, f32::is_finite).or_else(|| {
            bad_stat("std", "a positive finite number", &normaliser.std, |x| {
                x.is_finite() && x > 0.0
            })
        })
    {
        return Err(e);
    }
    let rec = ModuleRecord::load(&record).map_err(|e| ModelError::Corrupt {
        path: record.clone(),
        message: e.to_string(),
    })?;
    let net = cfg
        .net
        .init(device)
        .try_load_record(rec)
        .map_err(|e| ModelError::Incompatible {
            path: record.clone(),
            message: format!("the record does not fit the network in config.json: {e}"),
        })?;
    if let Some(layer) = net.to_fused().first_non_finite() {
        return Err(ModelError::Corrupt {
            path: record,
            message: format!("{layer} holds a weight that is not a finite number"),
        });
    }
    Ok((cfg, normaliser, net, meta))
}

pub fn load(dir: &Path) -> Result<ModelBundle, ModelError> {
    let (config, normaliser, net, meta) = load_net(dir, &Device::flex())?;
    Ok(ModelBundle {
        config,
        normaliser,
        fused: net.to_fused(),
        meta,
    })
}
