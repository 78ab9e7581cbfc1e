//! The control core's seam: observations in, commands out.
//!
//! A controller is a sans-IO state machine. Every driver (the simulator,
//! the live adapter, the tests) takes the same [`drive`] step: it hands the
//! controller an observation with the current time as a value, drains its
//! commands and healing events, and learns when to wake it next. Nothing in `control/` reads a clock, does IO
//! or owns a global random generator; randomness, where a controller needs
//! it, comes from a seeded stream handed in at construction.

pub mod analysis;
pub mod anomaly;
pub mod callers;
pub mod departure;
pub mod healing;
pub mod hpa;
pub mod kpa;
pub mod orchestrator;
pub mod paced;
pub mod predictor;
pub mod scaler;
pub mod selector;

use crate::metrics::ServiceMetrics;
use crate::time::{Span, Time};

/// Lifecycle phase of a pod as the Kubernetes API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    /// Not scheduled: no node has room.
    Pending,
    /// Scheduled; the container is starting or waiting in CrashLoopBackOff.
    Starting,
    Running,
    Terminating,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub name: String,
    pub phase: PodPhase,
    pub ready: bool,
    pub revision: u32,
    /// The node it runs on (empty while Pending).
    pub node: String,
    /// Cores used over the last scrape interval (the per-pod sample HPA reads).
    pub cpu_cores: f64,
    /// When that sample was taken; `None` if the container was not running at
    /// the last scrape (a pod "without metrics" for HPA).
    pub cpu_sampled_at: Option<Time>,
    pub cpu_request: f64,
    /// Cores it may use at most; 0 when it has no limit.
    pub cpu_limit: f64,
    pub memory_mib: f64,
    pub memory_limit_mib: f64,
    pub restarts: u32,
    pub created: Time,
    /// When the kubelet started the pod (`status.startTime`; unchanged by
    /// container restarts). Unscheduled pods report their creation time.
    pub started: Time,
    /// Last Ready condition change.
    pub last_transition: Time,
}

/// A route from one service to another.
#[derive(Clone, Debug, PartialEq)]
pub struct Dependency {
    pub service: String,
    /// The caller has a fallback answer for this call: isolating the
    /// callee degrades the answer instead of failing it.
    pub fallback: bool,
    /// The call as the caller sees it (the mesh's client-side metrics),
    /// over the rate window of the last scrape; NaN p99 without traffic.
    pub error_rate: f64,
    pub latency_p99: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    pub name: String,
    pub metrics: ServiceMetrics,
    pub desired_replicas: u32,
    pub revision: u32,
    /// Requests a pod accepts at once (Knative's `containerConcurrency`).
    pub max_connections: u32,
    pub pods: Vec<PodView>,
    /// Mean requests in flight (queued or in service, all pods together) for
    /// each of the last whole seconds, oldest first, up to 60 (what Knative's
    /// queue-proxies report every second).
    pub concurrency: Vec<f64>,
    /// Requests received (all pods together) in each of the same seconds
    /// (the request counts Knative's queue-proxies report, for its `rps`
    /// metric).
    pub requests: Vec<f64>,
    /// The services it calls (the mesh's routes), for isolating a failing
    /// dependency.
    pub dependencies: Vec<Dependency>,
    /// Its standby Deployment, if it has one to fail over to.
    pub backup: Option<String>,
}

impl ServiceView {
    /// The pods that pass their readiness probe.
    pub fn ready_pods(&self) -> u32 {
        self.pods.iter().filter(|p| p.ready).count() as u32
    }
}

/// What a controller is shown at one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub now: Time,
    pub services: Vec<ServiceView>,
}

/// What a controller may ask for. Each carries the reason it was decided,
/// so every action can be explained after the fact.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Scale {
        service: String,
        replicas: u32,
        reason: String,
    },
    /// Restart the pod's container in place (`kubectl exec ... kill 1`):
    /// its in-flight requests fail.
    RestartPod {
        service: String,
        pod: String,
        reason: String,
    },
    /// Delete the pod gracefully (`kubectl delete pod`): it drains while
    /// the Deployment starts a replacement.
    ReplacePod {
        service: String,
        pod: String,
        reason: String,
    },
    Rollback {
        service: String,
        reason: String,
    },
    /// Take `service` out of its callers' routes for `hold` (a circuit
    /// opened by hand): a caller answers from its fallback where the call
    /// has one and fails fast otherwise. Client traffic entering at
    /// `service` is not affected: there is nobody upstream to route around.
    Isolate {
        service: String,
        hold: Span,
        reason: String,
    },
    /// Send every route to `service` to its backup Deployment (the
    /// scenario's `failover_to`).
    Failover {
        service: String,
        reason: String,
    },
    /// Change a service's settings: its per-pod connection limit and the
    /// timeout its callers give it.
    Reconfigure {
        service: String,
        max_connections: Option<u32>,
        timeout_ms: Option<f64>,
        reason: String,
    },
}

impl Command {
    pub fn service(&self) -> &str {
        match self {
            Command::Scale { service, .. }
            | Command::RestartPod { service, .. }
            | Command::ReplacePod { service, .. }
            | Command::Rollback { service, .. }
            | Command::Isolate { service, .. }
            | Command::Failover { service, .. }
            | Command::Reconfigure { service, .. } => service,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Command::Scale { reason, .. }
            | Command::RestartPod { reason, .. }
            | Command::ReplacePod { reason, .. }
            | Command::Rollback { reason, .. }
            | Command::Isolate { reason, .. }
            | Command::Failover { reason, .. }
            | Command::Reconfigure { reason, .. } => reason,
        }
    }

    /// The command's name in logs and tables (`scale`, `restart_pod`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Scale { .. } => "scale",
            Command::RestartPod { .. } => "restart_pod",
            Command::ReplacePod { .. } => "replace_pod",
            Command::Rollback { .. } => "rollback",
            Command::Isolate { .. } => "isolate",
            Command::Failover { .. } => "failover",
            Command::Reconfigure { .. } => "reconfigure",
        }
    }

    /// A remedial action rather than capacity management: everything but a
    /// scaler's own `Scale` (the orchestrator's scale-ups say `heal:`).
    pub fn is_healing(&self) -> bool {
        match self {
            Command::Scale { reason, .. } => reason.starts_with(HEALING_REASON),
            _ => true,
        }
    }
}

/// The prefix of every reason the healing orchestrator gives.
pub const HEALING_REASON: &str = "heal:";

/// A controller's state per service, in the order services first appear:
/// a small vector, not a hash map, so nothing order-dependent reaches a
/// decision.
#[derive(Clone, Debug)]
pub struct PerService<S> {
    entries: Vec<(String, S)>,
}

impl<S> Default for PerService<S> {
    fn default() -> Self {
        PerService {
            entries: Vec::new(),
        }
    }
}

impl<S> PerService<S> {
    /// The state of `service`, made by `make(n)` on first sight, where `n`
    /// counts the services seen before.
    pub fn get_or_insert_with(&mut self, service: &str, make: impl FnOnce(usize) -> S) -> &mut S {
        let i = match self.entries.iter().position(|(n, _)| n == service) {
            Some(i) => i,
            None => {
                let n = self.entries.len();
                self.entries.push((service.to_string(), make(n)));
                n
            }
        };
        &mut self.entries[i].1
    }
}

/// A sans-IO controller.
pub trait Controller {
    fn name(&self) -> &str;
    /// How often the driver hands it an observation.
    fn period(&self) -> Span;
    /// The driver starts handing it observations; the first comes one
    /// period after `now` in the simulator, at once in the live loop. A
    /// controller that keeps a schedule of its own (an inner scaler's
    /// period inside a wrapper) counts it from here, not from time zero:
    /// the live adapter's time zero lies a backfill before its start.
    fn handle_start(&mut self, _now: Time) {}
    fn handle_observation(&mut self, now: Time, obs: &Observation);
    fn poll_command(&mut self) -> Option<Command>;
    /// Scrapes of `service` from before the driver started, oldest first
    /// (the live adapter reads them back from Prometheus), so models start
    /// with full windows instead of waiting. Nothing is decided on them.
    fn handle_history(&mut self, _service: &str, _scrapes: &[ServiceMetrics]) {}
    /// What a healing controller did or declined since the last poll, with
    /// when (the record a selector learns from); nothing for a scaler.
    fn poll_event(&mut self) -> Option<(Time, orchestrator::HealingEvent)> {
        None
    }
}

/// What one observation drove out of a controller.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The commands, in the order the controller asked for them.
    pub commands: Vec<Command>,
    /// What a healing controller did or declined, with when.
    pub events: Vec<(Time, orchestrator::HealingEvent)>,
    /// When the controller wants its next observation (`poll_timeout` in
    /// the quinn-proto sense): the driver must not wake it later.
    pub wake_at: Time,
}

/// The driver's one step: hands `obs` to `controller` at `now` and drains
/// everything it has to say. The simulator's control tick and the
/// adapter's tick are both this call, so they cannot drift apart.
pub fn drive<C: Controller + ?Sized>(controller: &mut C, now: Time, obs: &Observation) -> Step {
    controller.handle_observation(now, obs);
    let mut commands = Vec::new();
    while let Some(c) = controller.poll_command() {
        commands.push(c);
    }
    let mut events = Vec::new();
    while let Some(e) = controller.poll_event() {
        events.push(e);
    }
    Step {
        commands,
        events,
        wake_at: now + controller.period(),
    }
}

/// Keeps the scenario's replica counts: never asks for anything.
#[derive(Clone, Debug, Default)]
pub struct StaticController;

impl Controller for StaticController {
    fn name(&self) -> &str {
        "static"
    }
    fn period(&self) -> Span {
        Span::from_secs(30)
    }
    fn handle_observation(&mut self, _now: Time, _obs: &Observation) {}
    fn poll_command(&mut self) -> Option<Command> {
        None
    }
}

/// Commands as `commands.csv` lists them: when, who, what, on which
/// service, its detail and its reason (a live replay writes the same file).
pub fn commands_csv(commands: &[(Time, String, Command)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("t_s,controller,command,service,detail,reason\n");
    for (t, who, c) in commands {
        let kind = c.kind();
        let detail = match c {
            Command::Scale { replicas, .. } => replicas.to_string(),
            Command::RestartPod { pod, .. } | Command::ReplacePod { pod, .. } => pod.clone(),
            Command::Rollback { .. } | Command::Failover { .. } => String::new(),
            Command::Isolate { hold, .. } => format!("{} s", hold.as_secs_f64()),
            Command::Reconfigure {
                max_connections,
                timeout_ms,
                ..
            } => format!(
                "{}{}",
                max_connections.map_or(String::new(), |m| format!("max_connections={m} ")),
                timeout_ms.map_or(String::new(), |t| format!("timeout_ms={t}"))
            )
            .trim()
            .to_string(),
        };
        let reason = c.reason();
        let _ = writeln!(
            out,
            "{},{},{},{},{},\"{}\"",
            t.as_secs_f64(),
            who,
            kind,
            c.service(),
            detail,
            reason.replace('"', "'")
        );
    }
    out
}
