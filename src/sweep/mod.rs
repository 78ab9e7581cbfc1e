//! Sweeps: suites of scenarios x parameters x controllers x seeds, run in
//! parallel and resumably, reported with polars tables and plotters charts.

pub mod approve;
pub mod charts;
pub mod compare;
pub mod headline;
pub mod plan;
pub mod report;
pub mod run;
pub mod stats;
pub mod tune;

use std::path::PathBuf;

/// Why a sweep, its report or a tuning stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of a journal or of a run's saved series.
    #[error("{}:{}: {}", path.display(), error.line, error.message)]
    Line {
        path: PathBuf,
        error: crate::CsvError,
    },
    #[error("run {id}: {source}")]
    Run {
        id: String,
        source: crate::sim::BuildError,
    },
    #[error("table {name}: {source}")]
    Table {
        name: String,
        source: polars::error::PolarsError,
    },
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error(transparent)]
    Controller(#[from] crate::scenario::ShortFormError),
    #[error("no candidates to tune")]
    NoCandidates,
}

/// An IO error on `path`, for `map_err`.
pub(crate) fn io_at(path: &std::path::Path) -> impl Fn(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    }
}
