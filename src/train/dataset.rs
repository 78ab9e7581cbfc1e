//! The trace dataset on disk: `<name>.parquet` holds one row per scrape of
//! one service (columns below), `<name>.toml` beside it the generator's
//! configuration (seed included), the runs' plans and the column meanings.
//!
//! Columns: `run` (u32), `service` (u32: 0 frontend, 1 backend), `scrape`
//! (u32, per run and service), `t_s` (f64), one f32 column per
//! [`FEATURES`] entry, `label` (u32 health class of the worst second in
//! the next `horizon_s`, null near the run's end), `time_to_breach_s` (f64,
//! null when the SLO holds over the horizon), `fault` (string, the fault
//! active or starting within the horizon, or empty), `controller` (string).

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::traces::{Dataset, FEATURES, Health, LoadFamily, Row, RunPlan, TracesConfig};
use crate::scenario::FaultKind;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

fn err(path: &Path, message: impl ToString) -> DatasetError {
    DatasetError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

#[derive(Serialize, Deserialize)]
struct RunMeta {
    id: u32,
    seed: u64,
    load: LoadFamily,
    rate: f64,
    fault: Option<FaultKind>,
    fault_at_s: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    format: String,
    features: Vec<String>,
    labels: Vec<String>,
    controller: String,
    rows: usize,
    config: TracesConfig,
    run: Vec<RunMeta>,
}

const FORMAT: &str = "selfheal-traces-1";

fn sidecar_path(parquet: &Path) -> PathBuf {
    parquet.with_extension("toml")
}

pub fn save(ds: &Dataset, parquet: &Path) -> Result<(), DatasetError> {
    let rows = &ds.rows;
    let mut cols = vec![
        Column::new(
            "run".into(),
            rows.iter().map(|r| r.run).collect::<Vec<u32>>(),
        ),
        Column::new(
            "service".into(),
            rows.iter().map(|r| r.service as u32).collect::<Vec<u32>>(),
        ),
        Column::new(
            "scrape".into(),
            rows.iter().map(|r| r.scrape).collect::<Vec<u32>>(),
        ),
        Column::new(
            "t_s".into(),
            rows.iter().map(|r| r.t_s).collect::<Vec<f64>>(),
        ),
    ];
    for (i, name) in FEATURES.iter().enumerate() {
        cols.push(Column::new(
            (*name).into(),
            rows.iter().map(|r| r.features[i]).collect::<Vec<f32>>(),
        ));
    }
    cols.push(Column::new(
        "label".into(),
        rows.iter()
            .map(|r| r.label.map(|h| h as u32))
            .collect::<Vec<Option<u32>>>(),
    ));
    cols.push(Column::new(
        "time_to_breach_s".into(),
        rows.iter()
            .map(|r| r.time_to_breach_s)
            .collect::<Vec<Option<f64>>>(),
    ));
    cols.push(Column::new(
        "fault".into(),
        rows.iter()
            .map(|r| r.fault.map_or("", |f| f.as_str()))
            .collect::<Vec<&str>>(),
    ));
    cols.push(Column::new(
        "controller".into(),
        vec![ds.controller.as_str(); rows.len()],
    ));
    let mut df = DataFrame::new_infer_height(cols).map_err(|e| err(parquet, e))?;
    if let Some(dir) = parquet.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    // Write to a temporary name and rename, so that an interrupted run never
    // leaves a truncated dataset under the real name.
    let tmp = parquet.with_extension("parquet.part");
    let f = File::create(&tmp).map_err(|e| err(&tmp, e))?;
    ParquetWriter::new(f)
        .finish(&mut df)
        .map_err(|e| err(&tmp, e))?;
    let side = Sidecar {
        format: FORMAT.into(),
        features: FEATURES.iter().map(|s| s.to_string()).collect(),
        labels: Health::ALL.iter().map(|h| h.as_str().to_string()).collect(),
        controller: ds.controller.clone(),
        rows: rows.len(),
        config: ds.config.clone(),
        run: ds
            .runs
            .iter()
            .map(|p| RunMeta {
                id: p.id,
                seed: p.seed,
                load: p.load,
                rate: p.rate,
                fault: p.fault.map(|f| f.0),
                fault_at_s: p.fault.map(|f| f.1),
            })
            .collect(),
    };
    let side_path = sidecar_path(parquet);
    let text = toml::to_string(&side).map_err(|e| err(&side_path, e))?;
    std::fs::write(&side_path, text).map_err(|e| err(&side_path, e))?;
    std::fs::rename(&tmp, parquet).map_err(|e| err(parquet, e))?;
    Ok(())
}

fn fault_from_str(s: &str) -> Option<FaultKind> {
    FaultKind::ALL.iter().copied().find(|f| f.as_str() == s)
}

pub fn load(parquet: &Path) -> Result<Dataset, DatasetError> {
    let side_path = sidecar_path(parquet);
    let text = std::fs::read_to_string(&side_path).map_err(|e| err(&side_path, e))?;
    let side: Sidecar = toml::from_str(&text).map_err(|e| err(&side_path, e))?;
    if side.format != FORMAT {
        return Err(err(
            &side_path,
            format!("format {:?}, expected {FORMAT:?}", side.format),
        ));
    }
    let f = File::open(parquet).map_err(|e| err(parquet, e))?;
    let df = ParquetReader::new(f)
        .finish()
        .map_err(|e| err(parquet, e))?;
    if df.height() != side.rows {
        return Err(err(
            parquet,
            format!("{} rows, the sidecar says {}", df.height(), side.rows),
        ));
    }
    let col = |name: &str| df.column(name).map_err(|e| err(parquet, e));
    let u32s = |name: &str| -> Result<Vec<Option<u32>>, DatasetError> {
        Ok(col(name)?
            .u32()
            .map_err(|e| err(parquet, format!("column {name}: {e}")))?
            .iter()
            .collect())
    };
    let f64s = |name: &str| -> Result<Vec<Option<f64>>, DatasetError> {
        Ok(col(name)?
            .f64()
            .map_err(|e| err(parquet, format!("column {name}: {e}")))?
            .iter()
            .collect())
    };
    let run = u32s("run")?;
    let service = u32s("service")?;
    let scrape = u32s("scrape")?;
    let t = f64s("t_s")?;
    let label = u32s("label")?;
    let ttb = f64s("time_to_breach_s")?;
    let mut feats = Vec::new();
    for name in FEATURES {
        feats.push(
            col(name)?
                .f32()
                .map_err(|e| err(parquet, format!("column {name}: {e}")))?
                .iter()
                .collect::<Vec<Option<f32>>>(),
        );
    }
    let fault_col = col("fault")?
        .str()
        .map_err(|e| err(parquet, format!("column fault: {e}")))?
        .iter()
        .map(|s| s.and_then(fault_from_str))
        .collect::<Vec<_>>();
    let rows = (0..df.height())
        .map(|i| {
            let mut features = [0f32; 8];
            for (k, f) in feats.iter().enumerate() {
                features[k] = f[i].unwrap_or(0.0);
            }
            Row {
                run: run[i].unwrap_or(0),
                service: service[i].unwrap_or(0) as u8,
                scrape: scrape[i].unwrap_or(0),
                t_s: t[i].unwrap_or(0.0),
                features,
                label: label[i].map(|l| Health::from_index(l as usize)),
                time_to_breach_s: ttb[i],
                fault: fault_col[i],
            }
        })
        .collect();
    let runs = side
        .run
        .iter()
        .map(|m| RunPlan {
            id: m.id,
            seed: m.seed,
            load: m.load,
            rate: m.rate,
            fault: m.fault.zip(m.fault_at_s),
            scenario: String::new(),
        })
        .collect();
    Ok(Dataset {
        config: side.config,
        controller: side.controller,
        runs,
        rows,
    })
}
