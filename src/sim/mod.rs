//! The discrete-event simulator of microservices on Kubernetes.
//!
//! Virtual time, one event queue, seeded streams: a scenario and its seed
//! determine every byte of the output. See `ARCHITECTURE.md` for the model
//! and its invariants.

pub mod api_objects;
mod backoff;
pub mod chaos;
mod engine;
pub mod exposition;
mod faults;
mod model;
mod output;
mod queue;
mod recorder;
pub mod rollout;
mod traffic;

pub use backoff::CrashLoopBackOff;
pub use engine::Exit;
pub use engine::{BuildError, Simulation};
pub use faults::FaultRecord;
pub use output::commands_csv;
pub use queue::EventQueue;
pub use recorder::{
    PodEvent, PodEventKind, RootSecond, RunOutput, ServiceSecond, ServiceStats, Summary,
};
pub use selfheal_core::{controllers, load};
pub use traffic::gc_factor;

use crate::scenario::LoadedScenario;

/// Runs a scenario to its end under the controller it names.
pub fn run(scenario: &LoadedScenario) -> Result<RunOutput, BuildError> {
    let mut sim = Simulation::new(scenario)?;
    sim.attach(controllers::build_for(&scenario.spec)?);
    Ok(sim.run())
}
