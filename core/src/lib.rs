//! selfheal-core: what the simulator, the lab and the live adapter share.
//!
//! - [`control`]: the sans-IO control core (scalers, the failure predictor,
//!   the healing orchestrator) and the one driver step, [`control::drive`].
//! - [`controllers`], [`models`]: the controller a specification names,
//!   with its trained predictor and selector read from their files.
//! - [`time`], [`rng`]: virtual time as a value and seeded ChaCha streams,
//!   one per subsystem.
//! - [`metrics`]: metric types and the Prometheus-compatible histogram
//!   quantile.
//! - [`scenario`], [`load`]: the scenario file format, its validation and
//!   the load curves it compiles to.
//! - [`chaos`]: steady-state probes and an experiment's verdict.
//! - [`chaos_mesh`], [`istio`]: a scenario's faults as the resources real
//!   chaos tools apply.
//!
//! The crate depends on no learning framework, dataframe or plotting
//! library, and on nothing of the simulator: the compiler, not a test,
//! keeps the control core apart from its drivers.

pub mod chaos;
pub mod chaos_mesh;
pub mod control;
pub mod controllers;
pub mod digest;
pub mod images;
mod input_error;
pub mod istio;
pub mod load;
pub mod metrics;
pub mod models;
pub mod policy;
pub mod quantity;
pub mod rng;
pub mod scenario;
pub mod time;

pub use input_error::{CsvError, ResourceError, error_chain};
