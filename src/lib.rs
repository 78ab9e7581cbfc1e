//! selfheal: a self-healing control plane for microservices, and the
//! discrete-event simulator that proves it.
//!
//! - [`sim`]: the simulated cluster (pods, deployments, services, call graph,
//!   load curves, faults, metrics).
//! - [`control`]: the sans-IO seam controllers plug into; the same calls are
//!   driven by the simulator and by the live adapter.
//! - [`metrics`]: metric types and the Prometheus-compatible histogram
//!   quantile shared by simulation and live adapter.
//! - [`scenario`]: the scenario file format and its validation.
//! - [`eval`]: offline evaluations of the control core's models.
//! - [`sweep`]: suites of runs in parallel, with polars reports and charts.
//! - [`twin`]: a scenario built from a real cluster's recorded metrics, and
//!   how close it comes to them.

pub mod eval;
pub mod serve;
pub mod sim;
pub mod sweep;
pub mod train;
pub mod twin;

// The shared core, re-exported so that `selfheal::control` and
// `crate::scenario` name the same items everywhere.
pub use selfheal_core::{
    CsvError, ResourceError, chaos_mesh, control, digest, error_chain, istio, metrics, quantity,
    rng, scenario, time,
};
