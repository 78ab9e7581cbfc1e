//! With the same observations, the adapter and the simulator ask the
//! control core for the same decisions at the same moments: the simulator
//! drives a twin that hands every observation both to the controller the
//! simulator builds and to the adapter's, and wakes the twin when the
//! adapter would tick next.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use selfheal::control::{Command, Controller, Observation, drive};
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
    /// The adapter's wait after the last observation, in (unscaled) seconds.
    adapter_wait: Option<f64>,
}

impl Controller for Twin {
    fn name(&self) -> &str {
        self.sim.name()
    }
    /// The adapter's own wake-up, checked against the simulator's.
    fn period(&self) -> Span {
        let sim = self.sim.period();
        match self.adapter_wait {
            Some(w) => {
                assert_eq!(
                    w,
                    sim.as_secs_f64(),
                    "the adapter ticks off the simulator's period"
                );
                Span::from_secs_f64(w)
            }
            None => sim,
        }
    }
    fn handle_start(&mut self, now: Time) {
        self.sim.handle_start(now);
        self.adapter.start(self.adapter.clock.unix(now));
    }
    fn handle_observation(&mut self, now: Time, obs: &Observation) {
        let from_sim = drive(self.sim.as_mut(), now, obs).commands;
        let from_adapter = self.adapter.decide(obs);
        // Time scale 1: the adapter's wall-clock wait is in core seconds.
        let at = self.adapter.clock.unix(now);
        self.adapter_wait = Some(self.adapter.wait_s(at));
        self.pending.extend(from_sim.iter().cloned());
        self.log.borrow_mut().push((from_sim, from_adapter));
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.pending.pop_front()
    }
}

fn adapter_config(controller: &str, interval_s: f64, slo_ms: f64, seed: u64) -> AdapterConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut spec = ControllerSpec::parse_short(controller).unwrap();
    if spec.healing {
        spec.healing_model = Some(root.join("models/predictor").display().to_string());
    }
    let mut cfg = AdapterConfig::parse(
        &format!(
            "prometheus = \"http://127.0.0.1:9\"\nnamespace = \"default\"\ninterval_s = {interval_s}\nslo_latency_ms = {slo_ms}\nseed = {seed}\n[[service]]\nname = \"x\"\n"
        ),
        "parity.toml",
    )
    .unwrap();
    cfg.controller = spec;
    cfg
}

fn twin_run(file: &str, controller: &str) -> Vec<(Vec<Command>, Vec<Command>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut l = scenario::load_file(&root.join(file)).expect("scenario");
    // Prometheus at 1 s: never slower than a controller here, so the
    // adapter ticks exactly when the simulator does. The simulated cluster
    // is scraped at the same interval: the scaler counts its forecast's
    // horizon in scrapes of the interval it is configured with.
    l.spec.metrics.scrape_interval_s = 1.0;
    let mut cfg = adapter_config(controller, 1.0, l.spec.slo.latency_ms, l.spec.seed);
    // Its rates over the simulated cluster's window.
    cfg.rate_window_s = l.spec.metrics.rate_window_s;
    l.spec.use_controller(cfg.controller.clone());
    let s = &l.spec;
    cfg.controller = s.controller.clone();
    let log: Log = Rc::default();
    let mut sim = Simulation::new(&l).unwrap();
    sim.attach(Box::new(Twin {
        sim: selfheal::sim::controllers::build_for(s).unwrap(),
        adapter: Adapter::new(cfg, 0.0).unwrap(),
        log: log.clone(),
        pending: VecDeque::new(),
        adapter_wait: None,
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

/// The adapter's next tick is its controller's period after the last one
/// (or the scrape interval, where that is longer), and shortens as wall
/// time passes.
#[test]
fn the_adapter_wakes_when_its_controller_asks() {
    for (controller, interval_s, period_s) in [
        ("hpa:70", 1.0, 15.0),
        ("kpa", 1.0, 2.0),
        ("hpa:70+heal", 1.0, 1.0),
        ("hpa:70", 5.0, 15.0),
        // Faster than Prometheus scrapes: every scrape, not more often.
        ("kpa", 5.0, 5.0),
        ("hpa:70+heal", 5.0, 5.0),
    ] {
        for time_scale in [1.0, 10.0] {
            let mut cfg = adapter_config(controller, interval_s, 100.0, 1);
            cfg.time_scale = time_scale;
            let start = 1_000.0;
            let mut adapter = Adapter::new(cfg, start).unwrap();
            let wall = period_s / time_scale;
            let case = format!("{controller} at {interval_s} s x{time_scale}");
            assert_eq!(adapter.period_s(), wall, "{case}");
            assert_eq!(adapter.wait_s(start), wall, "{case}: before the first tick");
            let now = adapter.clock.core_time(start + 3.0);
            adapter.decide(&Observation {
                now,
                services: Vec::new(),
            });
            let ticked = adapter.clock.unix(now);
            assert!((adapter.wait_s(ticked) - wall).abs() < 1e-9, "{case}");
            let later = adapter.wait_s(ticked + 0.5 * wall);
            assert!((later - 0.5 * wall).abs() < 1e-9, "{case}: {later}");
            assert_eq!(adapter.wait_s(ticked + 2.0 * wall), 0.0, "{case}: overdue");
        }
    }
}
