//! With the same observations, the adapter and the simulator ask the
//! control core for the same decisions: the simulator drives a twin that
//! hands every observation both to the controller the simulator builds and
//! to the adapter's.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use selfheal::control::{Command, Controller, Observation};
use selfheal::scenario::{self, ControllerSpec};
use selfheal::sim::Simulation;
use selfheal::time::{Span, Time};
use selfheal_k8s::Adapter;
use selfheal_k8s::config::AdapterConfig;

type Log = Rc<RefCell<Vec<(Vec<Command>, Vec<Command>)>>>;

struct Twin {
    sim: Box<dyn Controller>,
    adapter: Adapter,
    log: Log,
    pending: VecDeque<Command>,
}

impl Controller for Twin {
    fn name(&self) -> &str {
        self.sim.name()
    }
    fn period(&self) -> Span {
        self.sim.period()
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        self.sim.handle_observation(now, obs);
        let mut from_sim = Vec::new();
        while let Some(c) = self.sim.poll_command() {
            from_sim.push(c);
        }
        let from_adapter = self.adapter.decide(obs);
        self.pending.extend(from_sim.iter().cloned());
        self.log.borrow_mut().push((from_sim, from_adapter));
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.pending.pop_front()
    }
}

fn twin_run(file: &str, controller: &str) -> Vec<(Vec<Command>, Vec<Command>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut l = scenario::load_file(&root.join(file)).expect("scenario");
    let mut spec = ControllerSpec::parse_short(controller).unwrap();
    if spec.healing {
        spec.healing_model = Some(root.join("models/predictor").display().to_string());
    }
    l.spec.use_controller(spec);
    let s = &l.spec;
    let mut cfg = AdapterConfig::parse(
        &format!(
            "prometheus = \"http://127.0.0.1:9\"\nnamespace = \"default\"\ninterval_s = {}\nslo_latency_ms = {}\nseed = {}\n[[service]]\nname = \"x\"\n",
            s.metrics.scrape_interval_s, s.slo.latency_ms, s.seed
        ),
        "parity.toml",
    )
    .unwrap();
    cfg.controller = s.controller.clone();
    let log: Log = Rc::default();
    let mut sim = Simulation::new(&l).unwrap();
    sim.attach(Box::new(Twin {
        sim: selfheal::sim::controllers::build_for(s).unwrap(),
        adapter: Adapter::new(cfg, 0.0).unwrap(),
        log: log.clone(),
        pending: VecDeque::new(),
    }));
    sim.run();
    Rc::try_unwrap(log).unwrap().into_inner()
}

#[test]
fn the_adapter_and_the_simulator_decide_alike() {
    for (file, controller) in [
        ("scenarios/flash-crowd.toml", "hpa:70"),
        ("scenarios/flash-crowd.toml", "selfheal"),
        ("scenarios/chaos/memory-leak.toml", "hpa:70+heal"),
    ] {
        let log = twin_run(file, controller);
        let commands: usize = log.iter().map(|(a, _)| a.len()).sum();
        assert!(commands > 0, "{file} {controller}: no decisions to compare");
        for (i, (a, b)) in log.iter().enumerate() {
            assert_eq!(a, b, "{file} {controller}: tick {i} differs");
        }
    }
}
