//! A trained predictor on disk, one directory:
//!
//! - `config.json`: the [`TrainConfig`] (network shape included), burn's
//!   `Config` JSON;
//! - `normaliser.json`: the per-feature transform, mean and std fitted on
//!   the training runs;
//! - `model.bpk`: the network's parameters (burn's burnpack record);
//! - `fused.json`: the same parameters as the control core runs them
//!   (plain arrays, read without burn by `selfheal_core::models`);
//! - `training.json`: how it was made (dataset, seeds, per-epoch history).
//!
//! Loading checks that all five are present, that the record matches the
//! network the config describes and `fused.json` matches the record, and
//! that the normaliser has as many features as the network's input, and
//! says which file is at fault.

use std::path::Path;

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

pub use selfheal_core::models::{FORMAT, ModelError, model_files};
use selfheal_core::models::{
    check_normaliser, check_training, io_error as io, read_fused, read_json,
};

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
        selfheal_core::models::trained_config(
            self.meta.dataset_config.scrape_interval_s,
            self.meta.median_time_to_breach_s,
            self.meta.alarm_threshold,
        )
    }
}

pub fn save(
    dir: &Path,
    t: &Trained,
    cfg: &TrainConfig,
    meta: &TrainingMeta,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let [config, norm, record, training, fused] = model_files(dir);
    cfg.save(&config).map_err(|e| io(&config, e))?;
    write_json(&t.normaliser, &norm)?;
    write_json(meta, &training)?;
    write_fused(&t.fused, &fused)?;
    t.net
        .clone()
        .into_record()
        .save(&record)
        .map_err(|e| io(&record, e))?;
    Ok(())
}

/// Rewrites `training.json` of a saved model (after recalibration).
pub fn save_meta(dir: &Path, meta: &TrainingMeta) -> Result<(), ModelError> {
    let [_, _, _, training, _] = model_files(dir);
    write_json(meta, &training)
}

/// Compact: some 130,000 weights, each its shortest exact decimal.
fn write_fused(net: &FusedNet, p: &Path) -> Result<(), ModelError> {
    let text = serde_json::to_string(net).expect("plain data serialises");
    std::fs::write(p, text).map_err(|e| io(p, e))
}

fn write_json<T: Serialize>(v: &T, p: &Path) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(v).expect("plain data serialises");
    std::fs::write(p, text).map_err(|e| io(p, e))
}

/// Loads the network itself (for tests that compare it with the fused pass).
pub fn load_net(
    dir: &Path,
    device: &Device,
) -> Result<(TrainConfig, Normaliser, PredictorNet, TrainingMeta), ModelError> {
    let [config, norm, record, training, _] = model_files(dir);
    for p in [&config, &norm, &record, &training] {
        if !p.exists() {
            return Err(ModelError::Missing { path: p.clone() });
        }
    }
    let meta: TrainingMeta = read_json(&training)?;
    check_training(
        &training,
        &meta.format,
        meta.alarm_threshold,
        &meta.median_time_to_breach_s,
    )?;
    // serde_json directly: burn's `Config::load` reports any unreadable
    // file, random bytes included, as "File not found".
    let cfg: TrainConfig = read_json(&config)?;
    cfg.net
        .check()
        .map_err(|problem| ModelError::Incompatible {
            path: config.clone(),
            message: problem.to_string(),
        })?;
    let normaliser: Normaliser = read_json(&norm)?;
    check_normaliser(&norm, &normaliser, cfg.net.features)?;
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

/// Writes `fused.json` from the record of the model in `dir` (for models
/// saved before the file existed); returns its path.
pub fn export_fused(dir: &Path) -> Result<std::path::PathBuf, ModelError> {
    let (_, _, net, _) = load_net(dir, &Device::flex())?;
    let [.., fused] = model_files(dir);
    write_fused(&net.to_fused(), &fused)?;
    Ok(fused)
}

/// Loads a model with its record, and checks that `fused.json`, which the
/// control core runs, holds the record's weights.
pub fn load(dir: &Path) -> Result<ModelBundle, ModelError> {
    let (config, normaliser, net, meta) = load_net(dir, &Device::flex())?;
    let fused = net.to_fused();
    let shipped = read_fused(dir, config.net.features, config.net.classes)?;
    if shipped != fused {
        return Err(ModelError::Incompatible {
            path: dir.join("fused.json"),
            message: "its weights differ from model.bpk's (rewrite it with `selfheal export-fused --model DIR`)"
                .into(),
        });
    }
    Ok(ModelBundle {
        config,
        normaliser,
        fused,
        meta,
    })
}
