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
