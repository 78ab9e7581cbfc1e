//! The simulation: construction, the event loop, pods, deployments and the
//! controller seam. Request handling lives in `traffic.rs`, faults in
//! `faults.rs`, measurement in `recorder.rs`.

use std::collections::VecDeque;

use super::backoff::CrashLoopBackOff;
use super::load::ArrivalProcess;
use super::model::*;
use super::queue::EventQueue;
use super::recorder::{PodEvent, PodEventKind, Recorder, RunOutput};
use super::rollout::{self, RolloutState};
use crate::control::{
    Command, Controller, Dependency, Observation, PodPhase, PodView, ServiceView,
};
use crate::metrics::Buckets;
use crate::rng::{Stream, Subsystem};
use crate::scenario::{
    ControllerKind, DistSpec, KubernetesSpec, LoadedScenario, MeshSpec, QueueKind, Scenario,
};
use crate::time::{Span, Time};
use selfheal_core::controllers::knative_container_concurrency;

/// Events are small and `Copy`; every handle carries the generation it was
/// scheduled for, so cancelled work is skipped instead of searched for.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Arrive {
        req: u32,
        epoch: u32,
    },
    Retry {
        req: u32,
        epoch: u32,
    },
    CpuDone {
        pod: u32,
        epoch: u32,
    },
    /// A request's off-CPU time is over.
    WaitDone {
        req: u32,
        epoch: u32,
    },
    EdgeTimer {
        edge: u32,
        epoch: u32,
    },
    Probe {
        pod: u32,
        epoch: u32,
        liveness: bool,
    },
    ContainerStart {
        pod: u32,
        epoch: u32,
    },
    OutOfMemory {
        pod: u32,
        epoch: u32,
    },
    Crash {
        pod: u32,
        epoch: u32,
    },
    GraceEnd {
        pod: u32,
        epoch: u32,
    },
    NodeNotReady {
        node: u32,
        epoch: u32,
    },
    NodeEvict {
        node: u32,
        epoch: u32,
    },
    FaultStart {
        fault: u32,
    },
    FaultEnd {
        fault: u32,
    },
    Scrape,
    Control {
        controller: u32,
    },
    Second,
}

/// Scrapes come before control decisions at equal timestamps; everything
/// else keeps insertion order.
pub(crate) const LANE_SCRAPE: u8 = 0;
pub(crate) const LANE_CONTROL: u8 = 2;

pub(crate) struct LoadSource {
    pub edge: u32,
    pub arrivals: ArrivalProcess,
    pub rng: Stream,
    /// The next client arrival (kept out of the event queue).
    pub next: Option<Time>,
}

/// Why a container stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Liveness,
    OutOfMemory,
    /// The process exited by itself.
    Crash,
    /// Asked for by a controller.
    Restart,
}

impl Exit {
    pub fn as_str(self) -> &'static str {
        match self {
            Exit::Liveness => "liveness",
            Exit::OutOfMemory => "oom_killed",
            Exit::Crash => "crashed",
            Exit::Restart => "restarted",
        }
    }
}

/// A runnable simulation of one scenario.
pub struct Simulation {
    pub(crate) now: Time,
    pub(crate) end: Time,
    pub(crate) queue: EventQueue<Event>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) services: Vec<Service>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) pods: Vec<Pod>,
    pub(crate) requests: Requests,
    pub(crate) loads: Vec<LoadSource>,
    pub(crate) unscheduled: VecDeque<u32>,
    pub(crate) rng_pods: Stream,
    pub(crate) rng_traffic: Stream,
    pub(crate) rng_faults: Stream,
    pub(crate) k8s: KubernetesSpec,
    pub(crate) mesh: MeshSpec,
    pub(crate) buckets: Buckets,
    pub(crate) faults: Vec<super::faults::ActiveFault>,
    pub(crate) recorder: Recorder,
    pub(crate) controllers: Vec<Box<dyn Controller>>,
    pub(crate) command_log: Vec<(Time, String, Command)>,
    /// Scales and roll-outs written through the served API, for its events.
    pub(crate) api_write_log: Vec<(Time, super::api_objects::ApiWrite)>,
    healing_log: Vec<(Time, crate::control::orchestrator::HealingEvent)>,
    /// Pods holding node resources, and its time integral (cost).
    pub(crate) scheduled_pods: u32,
    pub(crate) replica_seconds: f64,
    pub(crate) cost_since: Time,
    pub(crate) pod_serial: u32,
    /// Popped events that had been superseded (generation mismatch).
    pub(crate) stale_events: u64,
    /// Client arrivals processed (events that never enter the heap).
    pub(crate) arrivals_processed: u64,
    pub(crate) chaos: Option<super::chaos::ChaosState>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("load {load}: trace `{file}` was not loaded with the scenario")]
    MissingTrace { load: usize, file: String },
    #[error(transparent)]
    Controller(#[from] selfheal_core::controllers::ControllerError),
}

/// Knative's data plane, which comes with its autoscaler. Each pod's
/// queue-proxy lets `containerConcurrency` requests in at a time (the
/// value a Knative user would set, [`knative_container_concurrency`]),
/// and the activator, in the request path while the revision's spare
/// capacity is below target-burst-capacity, holds the rest in one queue
/// per revision and sends each to a pod with a free slot ("it will fully
/// load all replicas up to containerConcurrency", Knative's docs on target
/// burst capacity). At the default 211 the activator leaves the path only
/// once the pods have room for 211 requests beyond the load; it is modelled
/// as always in the path (target-burst-capacity -1), which a simulated
/// service (a few pods of a few slots) does not tell apart. The queue
/// holds `breakerQueueDepth` (10,000) requests, as the activator's
/// throttler does (knative/serving `pkg/activator/net/throttler.go`), and a
/// request whose caller gave up while it waited leaves the queue unserved
/// (the throttler's wait ends with the request's context).
fn knative_data_plane(s: &Scenario, services: &mut [Service]) {
    const ACTIVATOR_QUEUE_DEPTH: u32 = 10_000;
    let concurrency = knative_container_concurrency(s);
    for svc in services {
        if let Some(&cc) = concurrency.get(&svc.name) {
            svc.max_connections = cc;
            svc.queue_kind = QueueKind::Shared;
            svc.queue_capacity = ACTIVATOR_QUEUE_DEPTH;
            svc.drop_abandoned = true;
        }
    }
}

impl Simulation {
    /// Builds the simulation at time zero, with the scenario's initial pods
    /// scheduled and booting.
    pub fn new(sc: &LoadedScenario) -> Result<Self, BuildError> {
        let s: &Scenario = &sc.spec;
        let seed = s.seed;
        let buckets = match &s.metrics.buckets_s {
            Some(b) => Buckets::new(b.clone()).unwrap_or_else(|_| Buckets::default_latency()),
            None => Buckets::default_latency(),
        };
        let mut nodes = Vec::new();
        for n in &s.cluster.nodes {
            for name in crate::scenario::expand_node_names(&n.name, n.count) {
                nodes.push(Node {
                    name,
                    cpu: n.cpu,
                    memory: n.memory_mib,
                    cpu_used: 0.0,
                    memory_used: 0.0,
                    up: true,
                    not_ready: false,
                    unschedulable: false,
                    epoch: 0,
                });
            }
        }
        let index = |name: &str| {
            s.services
                .iter()
                .position(|x| x.name == name)
                .expect("validated service name") as u32
        };
        let mut services: Vec<Service> = s
            .services
            .iter()
            .map(|sv| Service {
                name: sv.name.clone(),
                cpu_request: sv.cpu_request,
                cpu_limit: sv.cpu_limit,
                memory_request: sv.memory_request_mib,
                memory_limit: sv.memory_limit_mib,
                max_connections: sv.max_connections,
                queue_kind: sv.queue,
                queue_capacity: sv.queue_capacity,
                lb: sv.lb,
                startup: sv.startup.clone(),
                readiness: sv.readiness.clone(),
                liveness: sv.liveness.clone(),
                max_surge: sv.rolling_update.max_surge.clone(),
                max_unavailable: sv.rolling_update.max_unavailable.clone(),
                revisions: vec![Revision::from(&sv.revision)],
                current: 0,
                desired: sv.replicas,
                pods: Vec::new(),
                endpoints: Vec::new(),
                endpoints_dirty: false,
                reconciling: false,
                reconcile_again: false,
                rr: 0,
                shared_queue: VecDeque::new(),
                drop_abandoned: false,
                calls: Vec::new(),
                added_latency: Span::ZERO,
                dependency_failure: None,
                isolated_until: Time::ZERO,
                failover_to: sv.failover_to.as_deref().map(index),
                counters: Counters::new(&buckets),
                in_system: 0,
                in_system_integral: 0.0,
                in_system_since: Time::ZERO,
                in_system_at_second: 0.0,
                attempts_at_second: 0,
                completed: 0,
                sojourn_sum: 0.0,
                wait_sum: 0.0,
                waited: 0,
                started: 0,
            })
            .collect();
        if s.controller.kind == ControllerKind::Kpa {
            knative_data_plane(s, &mut services);
        }
        let mut edges = Vec::new();
        let new_edge = |from: Option<u32>,
                        to: u32,
                        p: f64,
                        (timeout_ms, lat_ms, fallback): (f64, f64, bool),
                        label: String| {
            Edge {
                from,
                to,
                probability: p,
                timeout: Span::from_secs_f64(timeout_ms / 1000.0),
                latency: Span::from_secs_f64(lat_ms / 1000.0),
                added_latency: Span::ZERO,
                outstanding: 0,
                pending: 0,
                outliers: Default::default(),
                deadlines: VecDeque::new(),
                timer_armed: false,
                timer_epoch: 0,
                fallback,
                counters: Counters::new(&buckets),
                label,
            }
        };
        for (i, sv) in s.services.iter().enumerate() {
            for c in &sv.calls {
                let to = index(&c.to);
                services[i].calls.push(edges.len() as u32);
                edges.push(new_edge(
                    Some(i as u32),
                    to,
                    c.probability,
                    (c.timeout_ms, c.network_latency_ms, c.fallback),
                    format!("{}->{}", sv.name, c.to),
                ));
            }
        }
        let end = Time::from_secs_f64(s.duration_s);
        let mut loads = Vec::new();
        for ((i, l), curve) in s
            .loads
            .iter()
            .enumerate()
            .zip(super::load::compile_loads(sc))
        {
            let curve = curve.map_err(|e| BuildError::MissingTrace { load: i, file: e.0 })?;
            let edge = edges.len() as u32;
            edges.push(new_edge(
                None,
                index(&l.service),
                1.0,
                (l.timeout_ms, 0.0, false),
                format!("client->{}", l.service),
            ));
            loads.push(LoadSource {
                edge,
                arrivals: ArrivalProcess::new(curve, end),
                rng: Stream::new_indexed(seed, Subsystem::Load, i as u64),
                next: None,
            });
        }
        let mut metrics_rng = Stream::new(seed, Subsystem::Metrics);
        let scrape_phase = Span::from_secs_f64(metrics_rng.uniform() * s.metrics.scrape_interval_s);
        let recorder = Recorder::new(s, &services, &edges, &buckets);
        let mut sim = Simulation {
            now: Time::ZERO,
            end,
            queue: EventQueue::default(),
            nodes,
            services,
            edges,
            pods: Vec::new(),
            requests: Requests::default(),
            loads,
            unscheduled: VecDeque::new(),
            rng_pods: Stream::new(seed, Subsystem::Pods),
            rng_traffic: Stream::new(seed, Subsystem::Traffic),
            rng_faults: Stream::new(seed, Subsystem::Faults),
            k8s: s.kubernetes.clone(),
            mesh: s.mesh.clone(),
            buckets,
            faults: super::faults::schedule(s),
            recorder,
            controllers: Vec::new(),
            command_log: Vec::new(),
            api_write_log: Vec::new(),
            healing_log: Vec::new(),
            scheduled_pods: 0,
            replica_seconds: 0.0,
            cost_since: Time::ZERO,
            pod_serial: 0,
            stale_events: 0,
            arrivals_processed: 0,
            chaos: s.experiment.clone().map(super::chaos::ChaosState::new),
        };
        for (i, f) in s.faults.iter().enumerate() {
            sim.queue.push(
                Time::from_secs_f64(f.at_s),
                Event::FaultStart { fault: i as u32 },
            );
        }
        for svc in 0..sim.services.len() as u32 {
            sim.reconcile(svc);
        }
        // The initial pods were running before the run starts: skip their
        // boot so time zero is steady state, not a cold start.
        for p in 0..sim.pods.len() {
            if sim.pods[p].phase == Phase::Running {
                sim.pods[p].app_ready_at = Time::ZERO;
                sim.pods[p].ready_successes = 1;
                sim.set_ready(p as u32, true);
            }
        }
        for l in 0..sim.loads.len() as u32 {
            sim.schedule_root_arrival(l);
        }
        sim.queue
            .push_lane(Time::ZERO + scrape_phase, LANE_SCRAPE, Event::Scrape);
        sim.queue.push(Time::ZERO, Event::Second);
        Ok(sim)
    }

    /// Attaches a controller; it is first called one period into the run.
    pub fn attach(&mut self, mut controller: Box<dyn Controller>) {
        controller.handle_start(self.now);
        let period = controller.period();
        self.controllers.push(controller);
        let i = (self.controllers.len() - 1) as u32;
        self.queue.push_lane(
            self.now + period,
            LANE_CONTROL,
            Event::Control { controller: i },
        );
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Runs to the end of the scenario and returns what was measured.
    pub fn run(mut self) -> RunOutput {
        self.run_until(self.end);
        self.finish()
    }

    /// Processes every event up to and including `t`.
    pub fn run_until(&mut self, t: Time) {
        let t = t.min(self.end);
        loop {
            // Each load source's next arrival lives outside the heap (one
            // per source, always known): it saves a push and a pop per
            // client request. At equal times heap events go first.
            let heap = self.queue.peek_time();
            let arrival = self.next_arrival();
            match (heap, arrival) {
                (Some(h), Some((a, load))) if a < h && a <= t => {
                    self.now = a;
                    self.arrivals_processed += 1;
                    self.root_arrival(load);
                }
                (None, Some((a, load))) if a <= t => {
                    self.now = a;
                    self.arrivals_processed += 1;
                    self.root_arrival(load);
                }
                (Some(h), _) if h <= t => {
                    let (time, ev) = self.queue.pop().expect("peeked");
                    self.now = time;
                    self.handle(ev);
                }
                _ => break,
            }
        }
        self.now = t;
    }

    /// The earliest pending client arrival and its load source.
    fn next_arrival(&self) -> Option<(Time, u32)> {
        let mut best: Option<(Time, u32)> = None;
        for (i, l) in self.loads.iter().enumerate() {
            if let Some(a) = l.next
                && best.is_none_or(|(b, _)| a < b)
            {
                best = Some((a, i as u32));
            }
        }
        best
    }

    fn handle(&mut self, ev: Event) {
        let live = match ev {
            Event::Arrive { req, epoch } | Event::Retry { req, epoch } => {
                self.requests.valid(req, epoch)
            }
            Event::CpuDone { pod, epoch } => self.pods[pod as usize].cpu.event_epoch == epoch,
            Event::WaitDone { req, epoch } => {
                self.requests.valid(req, epoch)
                    && !self.requests.slots[req as usize].has(flags::SERVER_DONE)
            }
            Event::EdgeTimer { edge, epoch } => self.edges[edge as usize].timer_epoch == epoch,
            Event::Probe { pod, epoch, .. }
            | Event::ContainerStart { pod, epoch }
            | Event::OutOfMemory { pod, epoch }
            | Event::Crash { pod, epoch } => self.pods[pod as usize].epoch == epoch,
            Event::GraceEnd { pod, epoch } => {
                self.pods[pod as usize].epoch == epoch
                    && self.pods[pod as usize].phase == Phase::Terminating
            }
            Event::NodeNotReady { node, epoch } | Event::NodeEvict { node, epoch } => {
                self.nodes[node as usize].epoch == epoch
            }
            _ => true,
        };
        if !live {
            self.stale_events += 1;
            return;
        }
        match ev {
            Event::Arrive { req, .. } => self.arrive(req),
            Event::Retry { req, .. } => self.transmit(req),
            Event::CpuDone { pod, .. } => self.cpu_done(pod),
            Event::WaitDone { req, .. } => self.call_dependencies(req),
            Event::EdgeTimer { edge, .. } => self.edge_timer(edge),
            Event::Probe { pod, liveness, .. } => self.probe(pod, liveness),
            Event::ContainerStart { pod, .. } => self.start_container(pod),
            Event::OutOfMemory { pod, .. } => self.check_memory(pod),
            Event::Crash { pod, .. } => self.exit_container(pod, Exit::Crash),
            Event::GraceEnd { pod, .. } => {
                self.kill_requests(pod, false);
                self.remove_pod(pod);
            }
            Event::NodeNotReady { node, .. } => self.node_not_ready(node),
            Event::NodeEvict { node, .. } => self.evict_node(node),
            Event::FaultStart { fault } => {
                if !self.faults[fault as usize].held {
                    self.start_fault(fault)
                }
            }
            Event::FaultEnd { fault } => self.end_fault(fault),
            Event::Scrape => {
                self.scrape();
                let next = self.now + Span::from_secs_f64(self.recorder.scrape_interval);
                self.queue.push_lane(next, LANE_SCRAPE, Event::Scrape);
            }
            Event::Control { controller } => self.control_tick(controller),
            Event::Second => {
                self.sample_second();
                self.chaos_second();
                self.queue
                    .push(self.now + Span::from_secs(1), Event::Second);
            }
        }
    }

    fn finish(mut self) -> RunOutput {
        self.account_cost();
        let now = self.now;
        for s in &mut self.services {
            s.track_in_system(now, 0);
        }
        let events = self.queue.popped() - self.stale_events + self.arrivals_processed;
        let ejections = std::mem::take(&mut self.recorder.ejection_times);
        let chaos = self.chaos.take();
        let mut out = self.recorder.finish(
            now,
            events,
            self.replica_seconds,
            &self.services,
            std::mem::take(&mut self.command_log),
        );
        out.verdict = chaos.map(|c| super::chaos::measure(c, &out, &ejections));
        out.healing = std::mem::take(&mut self.healing_log);
        out
    }

    // ----- pods -----------------------------------------------------------

    pub(crate) fn account_cost(&mut self) {
        self.replica_seconds +=
            self.scheduled_pods as f64 * (self.now - self.cost_since).as_secs_f64();
        self.cost_since = self.now;
    }

    fn create_pod(&mut self, svc: u32) {
        let s = &self.services[svc as usize];
        let k = &self.k8s;
        let pod = Pod {
            service: svc,
            revision: s.current,
            serial: self.pod_serial,
            node: NONE,
            phase: Phase::Unscheduled,
            ready: false,
            last_transition: self.now,
            epoch: 0,
            created: self.now,
            started: self.now,
            container_started: self.now,
            app_ready_at: Time::MAX,
            restarts: 0,
            backoff: CrashLoopBackOff::new(
                Span::from_secs_f64(k.backoff_initial_s),
                Span::from_secs_f64(k.backoff_max_s),
                Span::from_secs_f64(k.backoff_reset_s),
            ),
            ready_successes: 0,
            ready_failures: 0,
            live_failures: 0,
            hung: false,
            stress_cores: 0.0,
            background_cores: s.revision(s.current).background_cores,
            leak_rate: 0.0,
            leak_since: self.now,
            leak_held: 0.0,
            holding: Vec::new(),
            queue: VecDeque::new(),
            cpu: CpuShare::new(self.now),
            cpu_core_seconds: 0.0,
            cpu_at_scrape: 0.0,
            cpu_scrape_at: self.now,
            cpu_sampled_at: None,
            cpu_sample: 0.0,
        };
        self.pod_serial += 1;
        let id = self.pods.len() as u32;
        self.pods.push(pod);
        self.services[svc as usize].pods.push(id);
        if !self.try_schedule(id) {
            self.unscheduled.push_back(id);
        }
    }

    /// Places a pod on the node with the most free CPU that fits its
    /// requests (LeastAllocated scoring; ties by node order).
    fn try_schedule(&mut self, pod: u32) -> bool {
        let s = &self.services[self.pods[pod as usize].service as usize];
        let (cpu, mem) = (s.cpu_request, s.memory_request);
        let best = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.up && !n.not_ready
                    && !n.unschedulable
                    && n.cpu - n.cpu_used >= cpu - 1e-9
                    && n.memory - n.memory_used >= mem - 1e-9
            })
            .max_by(|a, b| {
                (a.1.cpu - a.1.cpu_used)
                    .total_cmp(&(b.1.cpu - b.1.cpu_used))
                    .then(b.0.cmp(&a.0))
            })
            .map(|(i, _)| i);
        let Some(n) = best else { return false };
        self.nodes[n].cpu_used += cpu;
        self.nodes[n].memory_used += mem;
        self.account_cost();
        self.scheduled_pods += 1;
        let p = &mut self.pods[pod as usize];
        p.node = n as u32;
        p.started = self.now;
        self.log_pod(pod, PodEventKind::Scheduled);
        self.start_container(pod);
        true
    }

    pub(crate) fn retry_unscheduled(&mut self) {
        let waiting: Vec<u32> = self.unscheduled.drain(..).collect();
        for pod in waiting {
            if self.pods[pod as usize].phase != Phase::Unscheduled {
                continue;
            }
            if !self.try_schedule(pod) {
                self.unscheduled.push_back(pod);
            }
        }
    }

    fn draw(&mut self, d: &DistSpec) -> Span {
        let secs = match d {
            DistSpec::Fixed { value_s } => *value_s,
            DistSpec::Uniform { min_s, max_s } => min_s + (max_s - min_s) * self.rng_pods.uniform(),
            DistSpec::Lognormal { mean_s, cv } => {
                let s2 = (1.0 + cv * cv).ln();
                (mean_s.ln() - 0.5 * s2 + s2.sqrt() * self.rng_pods.normal()).exp()
            }
        };
        Span::from_secs_f64(secs)
    }

    fn start_container(&mut self, pod: u32) {
        let svc = self.pods[pod as usize].service as usize;
        let startup = self.services[svc].startup.clone();
        let boot = self.draw(&startup);
        let now = self.now;
        let (r_delay, l_delay) = (
            self.services[svc].readiness.initial_delay_s,
            self.services[svc].liveness.initial_delay_s,
        );
        let p = &mut self.pods[pod as usize];
        p.epoch = p.epoch.wrapping_add(1);
        p.phase = Phase::Running;
        p.container_started = now;
        p.app_ready_at = now + boot;
        p.live_failures = 0;
        p.ready_failures = 0;
        p.ready_successes = 0;
        p.cpu.last = now;
        p.cpu.v = 0.0;
        p.cpu_sampled_at = None;
        p.cpu_at_scrape = p.cpu_core_seconds;
        p.cpu_scrape_at = now;
        let rev = self.services[svc].revision(p.revision);
        p.leak_rate = rev.leak_rate;
        p.leak_since = now;
        p.leak_held = 0.0;
        let crash = rev.crash_after;
        let epoch = p.epoch;
        self.queue.push(
            now + Span::from_secs_f64(r_delay),
            Event::Probe {
                pod,
                epoch,
                liveness: false,
            },
        );
        self.queue.push(
            now + Span::from_secs_f64(l_delay),
            Event::Probe {
                pod,
                epoch,
                liveness: true,
            },
        );
        if let Some(after) = crash {
            self.queue.push(now + after, Event::Crash { pod, epoch });
        }
        self.schedule_oom(pod);
        self.log_pod(pod, PodEventKind::Started);
    }

    /// A leaking pod gets an event at the moment its base memory plus the
    /// leak crosses the limit; request memory is checked on each arrival.
    pub(crate) fn schedule_oom(&mut self, pod: u32) {
        let p = &self.pods[pod as usize];
        if p.leak_rate <= 0.0 || p.phase != Phase::Running {
            return;
        }
        let s = &self.services[p.service as usize];
        let rev = s.revision(p.revision);
        let headroom = s.memory_limit
            - rev.memory_base
            - rev.memory_per_request * p.holding.len() as f64
            - p.leaked(self.now);
        // At least 1 ns on: a leak faster than the clock's resolution would
        // otherwise reschedule its check at the same instant forever.
        let wait = Span::from_secs_f64(headroom.max(0.0) / p.leak_rate);
        let at = self.now + wait.max(Span::from_nanos(1));
        let epoch = p.epoch;
        self.queue.push(at, Event::OutOfMemory { pod, epoch });
    }

    pub(crate) fn check_memory(&mut self, pod: u32) {
        let p = &self.pods[pod as usize];
        if p.phase != Phase::Running {
            return;
        }
        let s = &self.services[p.service as usize];
        if p.memory(s.revision(p.revision), self.now) >= s.memory_limit - 1e-9 {
            self.recorder.oom_kills += 1;
            self.exit_container(pod, Exit::OutOfMemory);
        } else {
            self.schedule_oom(pod);
        }
    }

    /// Can the kubelet's HTTP probe get an answer within its timeout?
    fn probe_succeeds(&self, pod: u32, timeout_s: f64) -> bool {
        let p = &self.pods[pod as usize];
        let s = &self.services[p.service as usize];
        if p.phase != Phase::Running || self.now < p.app_ready_at || p.hung {
            return false;
        }
        // A service latency fault delays the probe too (netem on the pod's
        // interface); the probe handler needs 1 ms of CPU at the pod's
        // current share.
        let rate = p.cpu_rate(s.cpu_limit).max(1e-9);
        s.added_latency.as_secs_f64() + 0.001 / rate < timeout_s
    }

    fn probe(&mut self, pod: u32, liveness: bool) {
        let p = &self.pods[pod as usize];
        let svc = p.service as usize;
        let node_up = p.node != NONE && self.nodes[p.node as usize].up;
        let spec = if liveness {
            self.services[svc].liveness.clone()
        } else {
            self.services[svc].readiness.clone()
        };
        let epoch = p.epoch;
        let phase = p.phase;
        self.queue.push(
            self.now + Span::from_secs_f64(spec.period_s),
            Event::Probe {
                pod,
                epoch,
                liveness,
            },
        );
        if !node_up || !matches!(phase, Phase::Running | Phase::Terminating) {
            // No kubelet to run it, or no container to probe.
            return;
        }
        let ok = self.probe_succeeds(pod, spec.timeout_s);
        let p = &mut self.pods[pod as usize];
        if liveness {
            if ok {
                p.live_failures = 0;
            } else {
                p.live_failures += 1;
                if p.live_failures >= spec.failure_threshold {
                    self.exit_container(pod, Exit::Liveness);
                }
            }
        } else if ok {
            p.ready_failures = 0;
            p.ready_successes += 1;
            if !p.ready && p.ready_successes >= spec.success_threshold && p.phase == Phase::Running
            {
                self.set_ready(pod, true);
            }
        } else {
            p.ready_successes = 0;
            p.ready_failures += 1;
            // Before the first success the pod is not ready anyway.
            if p.ready && p.ready_failures >= spec.failure_threshold {
                self.set_ready(pod, false);
            }
        }
    }

    pub(crate) fn set_ready(&mut self, pod: u32, ready: bool) {
        let p = &mut self.pods[pod as usize];
        if p.ready == ready {
            return;
        }
        p.ready = ready;
        p.last_transition = self.now;
        let svc = p.service;
        self.log_pod(
            pod,
            if ready {
                PodEventKind::Ready
            } else {
                PodEventKind::NotReady
            },
        );
        self.services[svc as usize].endpoints_dirty = true;
        if !ready {
            // Requests waiting in a shared queue are not tied to this pod.
            self.reconcile(svc);
        } else {
            self.reconcile(svc);
            self.drain_shared_queue(svc);
        }
    }

    /// The container stops: in-flight requests get a connection reset, and
    /// the kubelet restarts it after the CrashLoopBackOff delay.
    pub(crate) fn exit_container(&mut self, pod: u32, why: Exit) {
        self.kill_requests(pod, false);
        let now = self.now;
        let p = &mut self.pods[pod as usize];
        if p.phase != Phase::Running {
            return;
        }
        let limit = self.services[p.service as usize].cpu_limit;
        p.advance(now, limit);
        let delay = p.backoff.on_exit(p.container_started, now);
        p.restarts += 1;
        p.phase = Phase::BackOff;
        p.epoch = p.epoch.wrapping_add(1);
        p.hung = false;
        p.leak_rate = 0.0;
        p.leak_held = 0.0;
        let epoch = p.epoch;
        self.recorder.restarts += 1;
        self.recorder.note_exit(why);
        self.log_pod(pod, PodEventKind::Exited(why));
        self.set_ready(pod, false);
        self.queue
            .push(now + delay, Event::ContainerStart { pod, epoch });
    }

    /// Starts graceful termination: no new requests; the pod goes once its
    /// in-flight work is done or the grace period ends.
    pub(crate) fn terminate_pod(&mut self, pod: u32) {
        let p = &self.pods[pod as usize];
        match p.phase {
            Phase::Gone | Phase::Terminating => return,
            Phase::Unscheduled | Phase::BackOff => {
                self.remove_pod(pod);
                return;
            }
            Phase::Running => {}
        }
        self.set_ready(pod, false);
        let p = &mut self.pods[pod as usize];
        p.phase = Phase::Terminating;
        p.last_transition = self.now;
        let svc = p.service;
        self.services[svc as usize].endpoints_dirty = true;
        if p.holding.is_empty() && p.queue.is_empty() {
            self.remove_pod(pod);
        } else {
            let epoch = p.epoch;
            let at = self.now + Span::from_secs_f64(self.k8s.termination_grace_s);
            self.queue.push(at, Event::GraceEnd { pod, epoch });
        }
    }

    /// Deletes a pod at once (grace period 0 or eviction); with `silent`, its
    /// requests get no answer at all (the node is gone).
    pub(crate) fn delete_pod_now(&mut self, pod: u32, silent: bool) {
        if !self.pods[pod as usize].is_alive() {
            return;
        }
        self.kill_requests(pod, silent);
        self.remove_pod(pod);
    }

    pub(crate) fn remove_pod(&mut self, pod: u32) {
        let p = &mut self.pods[pod as usize];
        if p.phase == Phase::Gone {
            return;
        }
        let was_scheduled = p.is_scheduled();
        p.phase = Phase::Gone;
        p.ready = false;
        p.epoch = p.epoch.wrapping_add(1);
        p.cpu.event_epoch = p.cpu.event_epoch.wrapping_add(1);
        let (svc, node) = (p.service, p.node);
        self.log_pod(pod, PodEventKind::Deleted);
        if was_scheduled {
            let s = &self.services[svc as usize];
            let (cpu, mem) = (s.cpu_request, s.memory_request);
            self.nodes[node as usize].cpu_used -= cpu;
            self.nodes[node as usize].memory_used -= mem;
            self.account_cost();
            self.scheduled_pods -= 1;
        }
        let s = &mut self.services[svc as usize];
        s.pods.retain(|&x| x != pod);
        s.endpoints_dirty = true;
        self.reconcile(svc);
        if was_scheduled {
            self.retry_unscheduled();
        }
    }

    // ----- deployments ----------------------------------------------------

    /// The Deployment and ReplicaSet controllers for a service, run to a
    /// fixed point. A reconcile asked for while one runs (a pod removed by
    /// the pass itself) is deferred to the next round, never nested: a nested
    /// pass would act on the outer pass's stale counts.
    pub(crate) fn reconcile(&mut self, svc: u32) {
        let s = &mut self.services[svc as usize];
        if s.reconciling {
            s.reconcile_again = true;
            return;
        }
        s.reconciling = true;
        loop {
            self.services[svc as usize].reconcile_again = false;
            self.reconcile_once(svc);
            if !self.services[svc as usize].reconcile_again {
                break;
            }
        }
        self.services[svc as usize].reconciling = false;
    }

    fn reconcile_once(&mut self, svc: u32) {
        let s = &self.services[svc as usize];
        let mut st = RolloutState {
            desired: s.desired,
            ..Default::default()
        };
        for &p in &s.pods {
            let pod = &self.pods[p as usize];
            if pod.phase == Phase::Terminating {
                continue;
            }
            if pod.revision == s.current {
                st.new_pods += 1;
                st.new_ready += pod.ready as u32;
            } else {
                st.old_pods += 1;
                st.old_ready += pod.ready as u32;
            }
        }
        let (surge, unavailable) = rollout::fenceposts(&s.max_surge, &s.max_unavailable, s.desired);
        let step = rollout::step(st, surge, unavailable);
        let current = s.current;
        if step.delete_new > 0 {
            for pod in self.victims(svc, step.delete_new, |r| r == current) {
                self.terminate_pod(pod);
            }
        }
        if step.delete_old > 0 {
            for pod in self.victims(svc, step.delete_old, |r| r != current) {
                self.terminate_pod(pod);
            }
        }
        for _ in 0..step.create_new {
            self.create_pod(svc);
        }
    }

    /// Pods to remove first, as the ReplicaSet controller ranks them
    /// (`controller.ActivePods`): unscheduled, then not ready, then the
    /// youngest.
    fn victims(&self, svc: u32, n: u32, revision: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut candidates: Vec<u32> = self.services[svc as usize]
            .pods
            .iter()
            .copied()
            .filter(|&p| {
                let pod = &self.pods[p as usize];
                pod.phase != Phase::Terminating && revision(pod.revision)
            })
            .collect();
        candidates.sort_by_key(|&p| {
            let pod = &self.pods[p as usize];
            (
                pod.is_scheduled(),
                pod.ready,
                std::cmp::Reverse(pod.created),
                std::cmp::Reverse(pod.serial),
            )
        });
        candidates.truncate(n as usize);
        candidates
    }

    pub(crate) fn set_desired(&mut self, svc: u32, replicas: u32) {
        self.services[svc as usize].desired = replicas;
        self.reconcile(svc);
    }

    /// Starts a rolling update to a new revision.
    pub(crate) fn deploy(&mut self, svc: u32, rev: Revision) -> u32 {
        let s = &mut self.services[svc as usize];
        s.revisions.push(rev);
        s.current = (s.revisions.len() - 1) as u32;
        let current = s.current;
        self.reconcile(svc);
        current
    }

    /// `kubectl rollout undo`: the previous revision's template becomes the
    /// current one again.
    pub(crate) fn rollback(&mut self, svc: u32) -> bool {
        let s = &self.services[svc as usize];
        if s.current == 0 {
            return false;
        }
        let previous = s.revision(s.current - 1).clone();
        self.deploy(svc, previous);
        true
    }

    // ----- nodes ----------------------------------------------------------

    fn node_not_ready(&mut self, node: u32) {
        self.nodes[node as usize].not_ready = true;
        let pods: Vec<u32> = (0..self.pods.len() as u32)
            .filter(|&p| self.pods[p as usize].node == node && self.pods[p as usize].is_scheduled())
            .collect();
        for p in pods {
            self.set_ready(p, false);
        }
        let epoch = self.nodes[node as usize].epoch;
        let at = self.now + Span::from_secs_f64(self.k8s.not_ready_toleration_s);
        self.queue.push(at, Event::NodeEvict { node, epoch });
    }

    fn evict_node(&mut self, node: u32) {
        let pods: Vec<u32> = (0..self.pods.len() as u32)
            .filter(|&p| self.pods[p as usize].node == node && self.pods[p as usize].is_alive())
            .collect();
        self.recorder.evictions += pods.len() as u64;
        for p in pods {
            self.delete_pod_now(p, true);
        }
    }

    pub(crate) fn lose_node(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        if !n.up {
            return;
        }
        n.up = false;
        n.epoch = n.epoch.wrapping_add(1);
        let epoch = n.epoch;
        // Requests on the node's pods are lost without an answer.
        let pods: Vec<u32> = (0..self.pods.len() as u32)
            .filter(|&p| self.pods[p as usize].node == node && self.pods[p as usize].is_scheduled())
            .collect();
        for p in pods {
            self.kill_requests(p, true);
        }
        let at = self.now + Span::from_secs_f64(self.k8s.node_monitor_grace_s);
        self.queue.push(at, Event::NodeNotReady { node, epoch });
    }

    pub(crate) fn restore_node(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        if n.up {
            return;
        }
        n.up = true;
        n.not_ready = false;
        n.epoch = n.epoch.wrapping_add(1);
        // Surviving pods' containers were lost with the node: the kubelet
        // starts them again.
        let pods: Vec<u32> = (0..self.pods.len() as u32)
            .filter(|&p| {
                self.pods[p as usize].node == node && self.pods[p as usize].phase == Phase::Running
            })
            .collect();
        for p in pods {
            self.set_ready(p, false);
            self.start_container(p);
        }
        self.retry_unscheduled();
    }

    // ----- controllers ----------------------------------------------------

    /// What a controller sees now: the latest scrape per service plus pod
    /// state from the API.
    pub fn observe(&self) -> Observation {
        let services = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| ServiceView {
                name: s.name.clone(),
                metrics: self.recorder.latest(i).clone(),
                desired_replicas: s.desired,
                revision: s.current,
                max_connections: s.max_connections,
                pods: s.pods.iter().map(|&p| self.pod_view(p)).collect(),
                concurrency: self.recorder.recent_concurrency(i, 60),
                requests: self.recorder.recent_requests(i, 60),
                dependencies: s
                    .calls
                    .iter()
                    .map(|&e| {
                        let m = self.recorder.latest_edge(e as usize);
                        Dependency {
                            service: self.services[self.edges[e as usize].to as usize]
                                .name
                                .clone(),
                            fallback: self.edges[e as usize].fallback,
                            error_rate: m.map_or(0.0, |m| m.error_rate),
                            latency_p99: m.map_or(f64::NAN, |m| m.latency_p99),
                        }
                    })
                    .collect(),
                backup: s
                    .failover_to
                    .map(|b| self.services[b as usize].name.clone()),
            })
            .collect();
        Observation {
            now: self.now,
            services,
        }
    }

    pub(crate) fn log_pod(&mut self, pod: u32, kind: PodEventKind) {
        let name = self.pod_name(pod);
        self.recorder.pod_events.push(PodEvent {
            t: self.now,
            pod: name,
            kind,
        });
    }

    pub(crate) fn pod_name(&self, pod: u32) -> String {
        let p = &self.pods[pod as usize];
        format!(
            "{}-r{}-{}",
            self.services[p.service as usize].name, p.revision, p.serial
        )
    }

    fn pod_view(&self, pod: u32) -> PodView {
        let p = &self.pods[pod as usize];
        let s = &self.services[p.service as usize];
        let phase = match p.phase {
            Phase::Unscheduled => PodPhase::Pending,
            Phase::BackOff => PodPhase::Starting,
            Phase::Running => PodPhase::Running,
            Phase::Terminating | Phase::Gone => PodPhase::Terminating,
        };
        PodView {
            name: self.pod_name(pod),
            phase,
            ready: p.ready,
            revision: p.revision,
            node: if p.node == NONE {
                String::new()
            } else {
                self.nodes[p.node as usize].name.clone()
            },
            cpu_cores: p.cpu_sample,
            cpu_sampled_at: p.cpu_sampled_at,
            cpu_request: s.cpu_request,
            cpu_limit: s.cpu_limit,
            memory_mib: p.memory(s.revision(p.revision), self.now),
            memory_limit_mib: s.memory_limit,
            restarts: p.restarts,
            created: p.created,
            started: p.started,
            last_transition: p.last_transition,
        }
    }

    fn control_tick(&mut self, i: u32) {
        let obs = self.observe();
        let now = self.now;
        let c = &mut self.controllers[i as usize];
        let step = crate::control::drive(c.as_mut(), now, &obs);
        let name = c.name().to_string();
        self.healing_log.extend(step.events);
        for cmd in step.commands {
            self.apply(&cmd);
            self.command_log.push((now, name.clone(), cmd));
        }
        self.queue
            .push_lane(step.wake_at, LANE_CONTROL, Event::Control { controller: i });
    }

    /// The pod of service `svc` a command names.
    fn find_pod(&self, svc: u32, name: &str) -> Option<u32> {
        self.services[svc as usize]
            .pods
            .iter()
            .copied()
            .find(|&p| self.pod_name(p) == name)
    }

    /// Applies a command with its real effect; unknown targets are ignored
    /// (and stay visible in the command log).
    pub fn apply(&mut self, cmd: &Command) {
        let Some(svc) = self
            .services
            .iter()
            .position(|s| s.name == cmd.service())
            .map(|i| i as u32)
        else {
            return;
        };
        match cmd {
            Command::Scale { replicas, .. } => self.set_desired(svc, *replicas),
            Command::RestartPod { pod, .. } => {
                if let Some(p) = self.find_pod(svc, pod)
                    && self.pods[p as usize].phase == Phase::Running
                {
                    self.exit_container(p, Exit::Restart);
                }
            }
            Command::ReplacePod { pod, .. } => {
                if let Some(p) = self.find_pod(svc, pod) {
                    self.terminate_pod(p);
                    self.reconcile(svc);
                }
            }
            Command::Rollback { .. } => {
                self.rollback(svc);
            }
            Command::Isolate { hold, .. } => {
                self.services[svc as usize].isolated_until = self.now + *hold;
            }
            Command::Failover { .. } => {
                if let Some(backup) = self.services[svc as usize].failover_to {
                    // Every route to the service now ends at the backup;
                    // attempts already queued at its pods finish there.
                    for e in self.edges.iter_mut().filter(|e| e.to == svc) {
                        e.to = backup;
                    }
                }
            }
            Command::Reconfigure {
                max_connections,
                timeout_ms,
                ..
            } => {
                if let Some(m) = max_connections {
                    self.services[svc as usize].max_connections = (*m).max(1);
                    self.admit_waiting(svc);
                }
                if let Some(t) = timeout_ms {
                    let to = Span::from_secs_f64(t.max(1.0) / 1000.0);
                    for e in 0..self.edges.len() as u32 {
                        if self.edges[e as usize].to == svc && self.edges[e as usize].from.is_some()
                        {
                            self.set_timeout(e, to);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Controller;

    /// Records the timestamp of the metrics it was shown.
    struct Recording(std::rc::Rc<std::cell::RefCell<Vec<(Time, Time)>>>);

    impl Controller for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn period(&self) -> Span {
            Span::from_secs(30)
        }
        fn handle_observation(&mut self, now: Time, obs: &Observation) {
            self.0
                .borrow_mut()
                .push((now, obs.services[0].metrics.timestamp));
        }
        fn poll_command(&mut self) -> Option<Command> {
            None
        }
    }

    #[test]
    fn a_scrape_comes_before_a_control_decision_at_the_same_instant() {
        let text = r#"
name = "lanes"
duration_s = 40
seed = 1
[slo]
latency_ms = 100
[[load]]
service = "a"
curve = { kind = "constant", rate = 10 }
[[service]]
name = "a"
revision = { service_time_ms = 1 }
"#;
        let sc = crate::scenario::parse(text, "lanes.toml", std::path::Path::new(".")).unwrap();
        let mut sim = Simulation::new(&sc).unwrap();
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        // The control tick at 30 s is queued before this extra scrape at 30 s;
        // the lane still puts the scrape first.
        sim.attach(Box::new(Recording(seen.clone())));
        sim.queue
            .push_lane(Time::from_secs(30), LANE_SCRAPE, Event::Scrape);
        sim.run_until(Time::from_secs(31));
        assert_eq!(
            seen.borrow().as_slice(),
            &[(Time::from_secs(30), Time::from_secs(30))]
        );
    }

    #[test]
    fn answered_deadlines_do_not_pile_up_under_a_timeout_that_never_fires() {
        // 100 req/s for ten minutes, each answered in about 2 ms, and a
        // caller that waits a day: the timer never runs, and 60,000
        // deadlines would otherwise sit in the edge's FIFO.
        let text = r#"
name = "patient"
duration_s = 600
seed = 3
[slo]
latency_ms = 100
[[load]]
service = "a"
timeout_ms = 86400000
curve = { kind = "constant", rate = 100 }
[[service]]
name = "a"
revision = { service_time_ms = 2 }
"#;
        let sc = crate::scenario::parse(text, "patient.toml", std::path::Path::new(".")).unwrap();
        let mut sim = Simulation::new(&sc).unwrap();
        sim.run_until(Time::from_secs(600));
        assert!(
            sim.recorder
                .roots_between(0, 600)
                .iter()
                .map(|r| r.ok)
                .sum::<u64>()
                > 55_000
        );
        assert_eq!(sim.recorder.timeouts, 0);
        let pending = sim.edges[0].deadlines.len();
        assert!(pending <= 256, "{pending} deadlines kept");
    }

    #[test]
    fn under_kpa_pods_admit_their_container_concurrency_behind_one_activator_queue() {
        // `api` computes 5 ms and waits 10 ms: a Knative user would set
        // containerConcurrency 3 (15 ms of response per 5 ms of CPU).
        let text = |controller: &str| {
            format!(
                r#"
name = "knative"
duration_s = 60
seed = 1
[slo]
latency_ms = 100
[controller]
kind = "{controller}"
[[load]]
service = "api"
curve = {{ kind = "constant", rate = 100 }}
[[service]]
name = "api"
replicas = 2
max_connections = 64
revision = {{ service_time_ms = 5, wait_ms = 10 }}
"#
            )
        };
        let build = |controller: &str| {
            let sc = crate::scenario::parse(
                &text(controller),
                "knative.toml",
                std::path::Path::new("."),
            )
            .unwrap();
            Simulation::new(&sc).unwrap()
        };
        let kpa = build("kpa");
        let api = &kpa.services[0];
        assert_eq!(
            (api.max_connections, api.queue_kind, api.queue_capacity),
            (3, QueueKind::Shared, 10_000)
        );
        assert!(api.drop_abandoned);
        let hpa = build("hpa");
        let api = &hpa.services[0];
        assert_eq!(
            (api.max_connections, api.queue_kind),
            (64, QueueKind::PerPod)
        );
    }

    #[test]
    fn the_activator_drops_a_queued_request_whose_caller_gave_up() {
        // One pod of capacity 20/s under 30/s for two minutes, callers
        // waiting 300 ms. A queue that keeps abandoned requests serves
        // them in turn while the live ones wait behind them and time out
        // too; one that drops them keeps serving live requests.
        let run = |controller: &str, queue: &str| {
            let text = format!(
                r#"
name = "abandoned"
duration_s = 120
seed = 1
[slo]
latency_ms = 300
[controller]
kind = "{controller}"
max_replicas = 1
[[load]]
service = "api"
timeout_ms = 300
curve = {{ kind = "constant", rate = 30 }}
[[service]]
name = "api"
replicas = 1
max_connections = 1
queue = "{queue}"
queue_capacity = 10000
revision = {{ service_time_ms = 50, service_time_cv = 0 }}
"#
            );
            let sc =
                crate::scenario::parse(&text, "abandoned.toml", std::path::Path::new(".")).unwrap();
            Simulation::new(&sc).unwrap().run().summary
        };
        let kept = run("static", "shared");
        let dropped = run("kpa", "per_pod");
        // Today 11 and 1,062 of 3,600 (a request that reaches the pod
        // with under 50 ms left still times out in service).
        assert!(kept.served < 100, "{} served", kept.served);
        assert!(dropped.served > 800, "{} served", dropped.served);
    }
}
