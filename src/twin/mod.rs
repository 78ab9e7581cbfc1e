//! A twin of a real cluster, built from its recorded metrics, and a
//! measure of how close it is.
//!
//! - [`recording`]: what a recording holds (per-service metrics at any
//!   scrape interval, call edges, Deployments) and how it is read.
//! - [`build`]: a scenario whose services, call graph and load reproduce
//!   a stretch of the recording, calibrated by simulating it.
//! - [`fidelity`]: replays another stretch's load through the twin and
//!   compares each service's CPU, request rate, latency and errors with
//!   what was recorded.

pub mod build;
pub mod fidelity;
pub mod recording;

pub use build::{Twin, TwinOptions, build};
pub use fidelity::{Fidelity, ServiceFidelity, check};
pub use recording::{EDGES_CSV_HEADER, EdgeSeries, Recording, Shape};

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error(transparent)]
    File(#[from] crate::eval::FileError),
    #[error(transparent)]
    Recorded(#[from] crate::train::recorded::RecordedError),
    #[error(
        "the window {from_s}..{to_s} s holds {scrapes} scrape(s) of `{service}`; the twin's load needs at least two"
    )]
    ShortWindow {
        service: String,
        scrapes: usize,
        from_s: f64,
        to_s: f64,
    },
    #[error(
        "no service is called by no other: the load has nowhere to enter (edges.csv makes a cycle of every service)"
    )]
    NoEntry,
    #[error("{}: {source}", path.display())]
    Deployments {
        path: std::path::PathBuf,
        source: recording::DeploymentsError,
    },
    #[error("the twin's load enters at `{0}`, which the recording lacks")]
    NoLoadService(String),
    #[error("the twin is not a valid scenario: {0}")]
    Invalid(#[from] crate::scenario::Problem),
    #[error("the twin does not run: {0}")]
    Run(#[from] crate::sim::BuildError),
    #[error(transparent)]
    Chart(#[from] crate::sweep::charts::ChartError),
}
