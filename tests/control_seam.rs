//! The control core's seam: it is sans-IO, and it decides the same way
//! whoever drives it.

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use selfheal::control::scaler::LatencySlo;
use selfheal::control::{Command, Controller, Observation, drive};
use selfheal::scenario::ControllerSpec;
use selfheal::sim::{Simulation, controllers};
use selfheal::time::{Span, Time};

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// What the compiler cannot see: `selfheal-core` may read files (models,
/// scenarios), but its control core may not, nor read a clock, nor draw
/// from a global random generator, nor reach the scenario format or the
/// chaos resources beside it in the same crate. That the core reaches
/// nothing of the simulator, the lab or the adapter is the crate graph's
/// doing: `selfheal-core` does not depend on them.
#[test]
fn control_does_no_io_reads_no_clock_and_owns_no_global_rng() {
    let mut files = Vec::new();
    rust_files(&common::repo().join("core/src/control"), &mut files);
    assert!(files.len() >= 5, "{files:?}");
    let forbidden = [
        "Instant::now",
        "SystemTime",
        "std::time::Instant",
        "thread_rng",
        "rand::rng(",
        "OsRng",
        "getrandom",
        "std::fs",
        "std::net",
        "std::env",
        "std::io",
        "std::thread",
        "println!",
        "eprintln!",
        "crate::scenario",
        "crate::load",
        "crate::chaos_mesh",
        "crate::istio",
    ];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for bad in forbidden {
            assert!(!text.contains(bad), "{} uses `{bad}`", f.display());
        }
    }
}

/// The core's dependencies stay free of IO runtimes, dataframes, plotting
/// and learning frameworks: the adapter links it, and the predictor runs
/// trained weights as plain arrays.
#[test]
fn the_core_crate_depends_on_no_runtime_dataframe_plot_or_learning_framework() {
    let manifest = std::fs::read_to_string(common::repo().join("core/Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap();
    let deps: Vec<&String> = ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|k| manifest.get(*k).and_then(|d| d.as_table()))
        .flat_map(|t| t.keys())
        .collect();
    assert!(deps.iter().any(|d| *d == "serde"), "{deps:?}");
    for d in &deps {
        for bad in [
            "tokio",
            "kube",
            "k8s-openapi",
            "polars",
            "plotters",
            "reqwest",
            "hyper",
            "burn",
            "linfa",
            "rayon",
            "selfheal",
        ] {
            assert!(
                !(d.as_str() == bad || d.starts_with(&format!("{bad}-"))),
                "selfheal-core depends on `{d}`"
            );
        }
    }
}

/// The root crate's modules are layered, so none of them forms a cycle
/// with another: the simulator at the bottom (it depends on the core only),
/// then the served simulation and the sweeps, training, the evaluations
/// and the twin. A module may name only modules of lower layers.
#[test]
fn the_root_crates_modules_depend_downwards_only() {
    let layers = [
        ("sim", 0),
        ("serve", 1),
        ("sweep", 1),
        ("train", 2),
        ("eval", 3),
        ("twin", 4),
    ];
    for (module, layer) in layers {
        let mut files = Vec::new();
        rust_files(&common::repo().join("src").join(module), &mut files);
        assert!(!files.is_empty(), "src/{module}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for (other, other_layer) in layers {
                if other != module && other_layer >= layer {
                    let path = format!("crate::{other}::");
                    assert!(
                        !text.contains(&path),
                        "{} ({module}) names `{path}`, a module of its own layer or above",
                        f.display()
                    );
                }
            }
        }
    }
}

/// Library errors are typed (ARCHITECTURE.md): no function of the three
/// crates' libraries returns `Result<_, String>`; the binaries may.
#[test]
fn no_library_function_returns_a_string_error() {
    let repo = common::repo();
    let mut files = Vec::new();
    for dir in ["core/src", "src", "k8s-adapter/src"] {
        rust_files(&repo.join(dir), &mut files);
    }
    let binaries = [repo.join("src/bin"), repo.join("k8s-adapter/src/main.rs")];
    let mut found = Vec::new();
    for f in files
        .iter()
        .filter(|f| !binaries.iter().any(|b| f.starts_with(b)))
    {
        let text = std::fs::read_to_string(f).unwrap();
        for (at, _) in text.match_indices("fn ") {
            if at > 0 && text.as_bytes()[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let end = text[at..].find(['{', ';']).map_or(text.len(), |e| at + e);
            let signature: String = text[at..end].split_whitespace().collect();
            let Some((_, ret)) = signature.split_once("->") else {
                continue;
            };
            let ret = ret.split("where").next().unwrap_or(ret);
            if ret.starts_with("Result<") && ret.ends_with(",String>") {
                let line = text[..at].matches('\n').count() + 1;
                found.push(format!(
                    "{}:{line}",
                    f.strip_prefix(&repo).unwrap().display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "library functions returning Result<_, String>:\n{}",
        found.join("\n")
    );
}

type Log = Rc<RefCell<Vec<(Time, Observation, Vec<Command>)>>>;

/// Passes through to the real controller and records what it saw and said.
struct Recording {
    inner: Box<dyn Controller>,
    log: Log,
    out: Vec<Command>,
}

impl Controller for Recording {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn period(&self) -> Span {
        self.inner.period()
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        let cmds = drive(self.inner.as_mut(), now, obs).commands;
        self.log.borrow_mut().push((now, obs.clone(), cmds.clone()));
        self.out = cmds;
        self.out.reverse();
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.out.pop()
    }
}

#[test]
fn the_simulator_and_a_plain_driver_get_the_same_commands() {
    let sc = common::bundled("flash-crowd.toml");
    let slo = LatencySlo::new(sc.spec.slo.latency_ms, sc.spec.slo.objective);
    let timing = controllers::MetricsTiming::of(&sc.spec);
    for short in ["hpa:60", "kpa:2", "selfheal", "selfheal:cpu"] {
        let spec = ControllerSpec::parse_short(short).unwrap();
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        let mut sim = Simulation::new(&sc).unwrap();
        sim.attach(Box::new(Recording {
            inner: controllers::build(&spec, sc.spec.seed, timing, slo, &Default::default()),
            log: log.clone(),
            out: vec![],
        }));
        let out = sim.run();
        let log = log.borrow();
        let from_sim: Vec<Command> = log.iter().flat_map(|(_, _, c)| c.clone()).collect();
        assert!(!from_sim.is_empty(), "{short} never acted");
        assert_eq!(from_sim.len(), out.commands.len());
        // A plain loop: the same observations, a fresh controller.
        let mut fresh = controllers::build(&spec, sc.spec.seed, timing, slo, &Default::default());
        let mut from_driver = Vec::new();
        for (now, obs, _) in log.iter() {
            from_driver.extend(drive(fresh.as_mut(), *now, obs).commands);
        }
        assert_eq!(from_sim, from_driver, "{short}");
    }
}

/// An inner scaler that notes when it is asked.
struct Ticks(Rc<RefCell<Vec<f64>>>);

impl Controller for Ticks {
    fn name(&self) -> &str {
        "ticks"
    }
    fn period(&self) -> Span {
        Span::from_secs(15)
    }
    fn handle_observation(&mut self, now: Time, _obs: &Observation) {
        self.0.borrow_mut().push(now.as_secs_f64());
    }
    fn poll_command(&mut self) -> Option<Command> {
        None
    }
}

/// A wrapper keeps its inner scaler's period from the driver's start, as a
/// simulated run does from time zero: the live adapter starts a backfill
/// after its core time zero, and an inner HPA that synced at once there
/// ran its stabilization window out 15 s before a simulated run's.
#[test]
fn a_wrapped_scaler_counts_its_period_from_the_drivers_start() {
    use selfheal::control::analysis::{AnalysisConfig, RolloutAnalysis};
    let ticks = Rc::new(RefCell::new(Vec::new()));
    let mut wrapped =
        RolloutAnalysis::new(Box::new(Ticks(ticks.clone())), AnalysisConfig::default());
    let start = Time::from_secs(200);
    wrapped.handle_start(start);
    for s in (200..=245).step_by(5) {
        let now = Time::from_secs(s);
        drive(
            &mut wrapped,
            now,
            &Observation {
                now,
                services: vec![],
            },
        );
    }
    assert_eq!(*ticks.borrow(), [215.0, 230.0, 245.0]);
}
