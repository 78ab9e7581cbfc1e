//! Offline evaluations of the control core's models.

pub mod backtest;
pub mod forecast;
pub mod incidents;
pub mod nab;
pub mod suite;
pub mod suite_report;

use std::path::{Path, PathBuf};

use crate::sim::load::Trace;

/// An input file of an evaluation that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// A `t_seconds,value` trace from `path`.
pub fn read_trace(path: &Path) -> Result<Trace, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Trace::parse_csv(&text).map_err(|e| FileError::Parse {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })
}

/// The median of the finite values, `None` without one.
pub fn median(values: &mut Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    })
}
