//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use selfheal::scenario::{self, LoadedScenario};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn scenario_text(text: &str) -> LoadedScenario {
    scenario::parse(text, "test.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

pub fn bundled(name: &str) -> LoadedScenario {
    scenario::load_file(&repo().join("scenarios").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// A running, ready pod of revision 0 on node `n`, started at time 0,
/// with a 1-core request and a 0-core sample taken at time 0; tests
/// override what they look at.
pub fn ready_pod(name: impl Into<String>) -> selfheal::control::PodView {
    use selfheal::time::Time;
    selfheal::control::PodView {
        name: name.into(),
        phase: selfheal::control::PodPhase::Running,
        ready: true,
        revision: 0,
        node: "n".into(),
        cpu_cores: 0.0,
        cpu_sampled_at: Some(Time::ZERO),
        cpu_request: 1.0,
        cpu_limit: 1.0,
        memory_mib: 100.0,
        memory_limit_mib: 512.0,
        restarts: 0,
        created: Time::ZERO,
        started: Time::ZERO,
        last_transition: Time::ZERO,
    }
}

pub fn rel_err(measured: f64, expected: f64) -> f64 {
    (measured / expected - 1.0).abs()
}

/// A training progress sink that keeps the epochs' figures.
pub struct Quiet(pub Vec<selfheal::train::trainer::EpochStats>);

impl selfheal::train::trainer::Progress for Quiet {
    fn batch(&mut self, _: usize, _: usize, _: usize, _: f64, _: f64) {}
    fn epoch(&mut self, s: &selfheal::train::trainer::EpochStats, _: bool) {
        self.0.push(s.clone());
    }
}
