//! The simulator's runtime state: nodes, services, pods, call edges and
//! requests, addressed by dense indices so the hot path never hashes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use super::backoff::CrashLoopBackOff;
use crate::metrics::{Buckets, Histogram};
use crate::scenario::{
    DependencyMode, DistSpec, IntOrPercent, LbPolicy, ProbeSpec, QueueKind, RevisionSpec,
};
use crate::time::{Span, Time};

pub const NONE: u32 = u32::MAX;

pub struct Node {
    pub name: String,
    pub cpu: f64,
    pub memory: f64,
    pub cpu_used: f64,
    pub memory_used: f64,
    /// False while a node-loss fault holds: its pods stop answering at once.
    pub up: bool,
    /// The node controller has marked it NotReady (after the grace period).
    pub not_ready: bool,
    /// Cordoned (`spec.unschedulable`, written through the served API): no
    /// new pods; those on it stay.
    pub unschedulable: bool,
    /// Invalidates scheduled node events when the node comes back.
    pub epoch: u32,
}

/// A deployment revision (ReplicaSet template) as the simulator runs it.
#[derive(Clone, Debug)]
pub struct Revision {
    pub service_time_s: f64,
    pub service_time_cv: f64,
    pub error_rate: f64,
    pub wait_s: f64,
    pub wait_cv: f64,
    pub background_cores: f64,
    pub memory_base: f64,
    pub memory_per_request: f64,
    pub leak_rate: f64,
    pub crash_after: Option<Span>,
}

impl From<&RevisionSpec> for Revision {
    fn from(r: &RevisionSpec) -> Self {
        Revision {
            service_time_s: r.service_time_ms / 1000.0,
            service_time_cv: r.service_time_cv,
            error_rate: r.error_rate,
            wait_s: r.wait_ms / 1000.0,
            wait_cv: r.wait_cv,
            background_cores: r.background_cores,
            memory_base: r.memory_base_mib,
            memory_per_request: r.memory_per_request_mib,
            leak_rate: r.leak_mib_per_s,
            crash_after: r.crash_after_s.map(Span::from_secs_f64),
        }
    }
}

/// Cumulative counters of a service or edge (Prometheus counters).
#[derive(Clone, Debug)]
pub struct Counters {
    /// Counted when an attempt reaches the service (or leaves on the edge).
    pub attempts: u64,
    /// Counted when the caller learns an attempt failed.
    pub failures: u64,
    /// Counted when the caller learns an attempt succeeded. An exported
    /// `code="200"` counter must be this, not `attempts - failures`: that
    /// difference falls whenever more attempts fail in a scrape interval
    /// than arrive in it (under a total outage, every other scrape), and
    /// Prometheus reads a fall as a counter reset, so `rate()` added the
    /// whole count back and a replay saw 2 % errors where all failed.
    pub successes: u64,
    pub latency: Histogram,
}

impl Counters {
    pub fn new(buckets: &Buckets) -> Self {
        Counters {
            attempts: 0,
            failures: 0,
            successes: 0,
            latency: Histogram::new(buckets),
        }
    }
}

pub struct Service {
    pub name: String,
    pub cpu_request: f64,
    pub cpu_limit: f64,
    pub memory_request: f64,
    pub memory_limit: f64,
    pub max_connections: u32,
    pub queue_kind: QueueKind,
    pub queue_capacity: u32,
    pub lb: LbPolicy,
    pub startup: DistSpec,
    pub readiness: ProbeSpec,
    pub liveness: ProbeSpec,
    pub max_surge: IntOrPercent,
    pub max_unavailable: IntOrPercent,
    pub revisions: Vec<Revision>,
    pub current: u32,
    pub desired: u32,
    /// Pods not yet gone, in creation order.
    pub pods: Vec<u32>,
    /// Ready, non-terminating pods: what the load balancer picks from.
    pub endpoints: Vec<u32>,
    pub endpoints_dirty: bool,
    pub reconciling: bool,
    pub reconcile_again: bool,
    pub rr: u32,
    pub shared_queue: VecDeque<u32>,
    /// Queued requests whose caller has given up leave the shared queue
    /// unserved (Knative's activator: a cancelled request's context ends
    /// its wait), rather than taking a slot when their turn comes.
    pub drop_abandoned: bool,
    pub calls: Vec<u32>,
    /// Latency fault on the service: added to every attempt and to probes.
    pub added_latency: Span,
    pub dependency_failure: Option<(DependencyMode, f64)>,
    /// Isolated from its callers until this time.
    pub isolated_until: Time,
    /// The standby that a fail-over routes this service's traffic to.
    pub failover_to: Option<u32>,
    pub counters: Counters,
    /// Requests queued or holding a slot, and its time integral (Little's law).
    pub in_system: u32,
    pub in_system_integral: f64,
    pub in_system_since: Time,
    /// `in_system_integral` at the last whole second.
    pub in_system_at_second: f64,
    /// `counters.attempts` at the last whole second.
    pub attempts_at_second: u64,
    pub completed: u64,
    pub sojourn_sum: f64,
    pub wait_sum: f64,
    pub waited: u64,
    pub started: u64,
}

impl Service {
    pub fn revision(&self, i: u32) -> &Revision {
        &self.revisions[i as usize]
    }

    pub fn track_in_system(&mut self, now: Time, delta: i32) {
        self.in_system_integral +=
            self.in_system as f64 * (now - self.in_system_since).as_secs_f64();
        self.in_system_since = now;
        self.in_system = (self.in_system as i64 + delta as i64) as u32;
    }
}

/// Envoy outlier-detection state of one upstream host, per caller edge.
#[derive(Clone, Debug, Default)]
pub struct OutlierHost {
    pub consecutive_5xx: u32,
    pub ejections: u32,
    pub ejected_until: Time,
}

pub struct Edge {
    /// `None` for client load entering the graph.
    pub from: Option<u32>,
    pub to: u32,
    pub probability: f64,
    pub timeout: Span,
    pub latency: Span,
    /// Latency fault on this edge.
    pub added_latency: Span,
    pub outstanding: u32,
    pub pending: u32,
    pub outliers: BTreeMap<u32, OutlierHost>,
    /// Deadlines in send order (every attempt on an edge has the same
    /// timeout, so this is sorted): one timer event per edge, not per request.
    pub deadlines: VecDeque<(Time, u32, u32)>,
    pub timer_armed: bool,
    /// Generation of the armed timer: a reconfigured timeout re-arms it.
    pub timer_epoch: u32,
    /// The caller has a fallback answer for this call (used when the callee
    /// is isolated).
    pub fallback: bool,
    pub counters: Counters,
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No node has room.
    Unscheduled,
    /// Container running (the app may still be booting).
    Running,
    /// Container exited; kubelet waits out the CrashLoopBackOff delay.
    BackOff,
    Terminating,
    Gone,
}

/// Processor sharing over the pod's cores: `k` requests in their CPU phase
/// each progress at `min(1, cores / k)` (a request is single-threaded).
/// Virtual time `v` advances at that rate, so a request finishes when `v`
/// reaches its virtual finish time and only the earliest needs an event.
pub struct CpuShare {
    pub jobs: BinaryHeap<Reverse<(u64, u32)>>,
    pub v: f64,
    pub last: Time,
    /// Generation of the pending completion event; bumping it cancels it.
    pub event_epoch: u32,
    /// When the pending completion event fires; `Time::MAX` when none is.
    pub next_at: Time,
}

impl CpuShare {
    pub fn new(now: Time) -> Self {
        CpuShare {
            jobs: BinaryHeap::new(),
            v: 0.0,
            last: now,
            event_epoch: 0,
            next_at: Time::MAX,
        }
    }
}

pub struct Pod {
    pub service: u32,
    pub revision: u32,
    pub serial: u32,
    pub node: u32,
    pub phase: Phase,
    pub ready: bool,
    pub last_transition: Time,
    /// Invalidates every event scheduled for an earlier container.
    pub epoch: u32,
    pub created: Time,
    /// When the pod was bound to its node (the kubelet's `startTime`).
    pub started: Time,
    pub container_started: Time,
    pub app_ready_at: Time,
    pub restarts: u32,
    pub backoff: CrashLoopBackOff,
    pub ready_successes: u32,
    pub ready_failures: u32,
    pub live_failures: u32,
    pub hung: bool,
    /// Cores an injected stressor burns.
    pub stress_cores: f64,
    /// Cores its revision uses whatever the load (`background_cores`).
    pub background_cores: f64,
    /// Leak growth (MiB/s) since `leak_since`, on top of `leak_held` MiB
    /// leaked before; a container restart frees it all.
    pub leak_rate: f64,
    pub leak_since: Time,
    pub leak_held: f64,
    /// Requests holding a connection slot (CPU phase or waiting on calls).
    pub holding: Vec<u32>,
    pub queue: VecDeque<u32>,
    pub cpu: CpuShare,
    pub cpu_core_seconds: f64,
    pub cpu_at_scrape: f64,
    /// When `cpu_at_scrape` was taken (or the container started since).
    pub cpu_scrape_at: Time,
    /// When the last CPU sample was taken, if the container was running then.
    pub cpu_sampled_at: Option<Time>,
    pub cpu_sample: f64,
}

impl Pod {
    pub fn is_alive(&self) -> bool {
        self.phase != Phase::Gone
    }

    pub fn is_scheduled(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running | Phase::BackOff | Phase::Terminating
        )
    }

    pub fn memory(&self, rev: &Revision, now: Time) -> f64 {
        if !matches!(self.phase, Phase::Running | Phase::Terminating) {
            return 0.0;
        }
        rev.memory_base + rev.memory_per_request * self.holding.len() as f64 + self.leaked(now)
    }

    pub fn leaked(&self, now: Time) -> f64 {
        self.leak_held
            + if self.leak_rate > 0.0 {
                self.leak_rate * (now - self.leak_since).as_secs_f64()
            } else {
                0.0
            }
    }

    /// Cores available to requests and the per-request progress rate.
    pub fn cpu_rate(&self, cpu_limit: f64) -> f64 {
        if self.hung || self.phase == Phase::BackOff {
            return 0.0;
        }
        let k = self.cpu.jobs.len() as f64;
        if k == 0.0 {
            return 1.0;
        }
        // A stressor (and the revision's background work) competes for the
        // cores like one more busy process per core it burns (CFS shares
        // within the pod's cgroup).
        let shared = k + self.stress_cores + self.background_cores;
        if k == 1.0 {
            // The general form's products and quotients by one are exact:
            // the same value without its divisions, for the commonest case
            // (one request on the CPU).
            let cores = if shared == 1.0 {
                cpu_limit
            } else {
                cpu_limit / shared
            };
            return cores.min(1.0);
        }
        let cores = cpu_limit * k / shared;
        (cores / k).min(1.0)
    }

    /// Brings the CPU integrals and virtual time up to `now` at the current
    /// rate; call before anything that changes the rate.
    pub fn advance(&mut self, now: Time, cpu_limit: f64) {
        if now > self.cpu.last {
            self.advance_at(now, cpu_limit, self.cpu_rate(cpu_limit));
        }
        self.cpu.last = now;
    }

    /// [`Pod::advance`] for a caller that holds `self.cpu_rate(cpu_limit)`.
    pub fn advance_at(&mut self, now: Time, cpu_limit: f64, rate: f64) {
        let dt = (now - self.cpu.last).as_secs_f64();
        if dt > 0.0 {
            self.cpu.v += rate * dt;
            self.cpu_core_seconds += self.cores_in_use_at(cpu_limit, rate) * dt;
        }
        self.cpu.last = now;
    }

    /// Cores busy now: requests in their CPU phase plus a stressor and
    /// the background work.
    fn cores_in_use(&self, cpu_limit: f64) -> f64 {
        self.cores_in_use_at(cpu_limit, self.cpu_rate(cpu_limit))
    }

    fn cores_in_use_at(&self, cpu_limit: f64, rate: f64) -> f64 {
        let requests = self.cpu.jobs.len() as f64 * rate;
        let stress = if self.phase == Phase::Running {
            (self.stress_cores + self.background_cores).min(cpu_limit - requests)
        } else {
            0.0
        };
        requests + stress.max(0.0)
    }

    /// Core-seconds used up to `now` (cAdvisor's counter), without
    /// advancing the pod.
    pub fn cpu_seconds_at(&self, now: Time, cpu_limit: f64) -> f64 {
        let dt = (now - self.cpu.last).as_secs_f64();
        if dt > 0.0 && self.is_scheduled() {
            self.cpu_core_seconds + self.cores_in_use(cpu_limit) * dt
        } else {
            self.cpu_core_seconds
        }
    }
}

pub mod flags {
    pub const CALLER_DONE: u8 = 1;
    pub const SERVER_DONE: u8 = 2;
    pub const CHILD_FAILED: u8 = 4;
    pub const QUEUED: u8 = 8;
}

/// One attempt of one call. Its randomness is derived from `key` and `salt`,
/// never stored.
#[derive(Clone, Debug)]
pub struct Request {
    pub epoch: u32,
    pub edge: u32,
    pub parent: u32,
    pub pod: u32,
    pub hold_idx: u32,
    pub children: u16,
    pub attempt: u8,
    pub flags: u8,
    pub key: u64,
    /// Identifies the call's place in the request tree (same for all attempts).
    pub call_salt: u64,
    pub sent: Time,
    pub call_start: Time,
    pub arrived: Time,
}

impl Request {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    /// Salt of this attempt's own draws.
    pub fn salt(&self) -> u64 {
        crate::rng::splitmix64(
            self.call_salt ^ (self.attempt as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        )
    }
}

/// A slab of requests with generation-checked handles.
#[derive(Default)]
pub struct Requests {
    pub slots: Vec<Request>,
    free: Vec<u32>,
}

impl Requests {
    pub fn alloc(&mut self, mut r: Request) -> u32 {
        if let Some(i) = self.free.pop() {
            r.epoch = self.slots[i as usize].epoch.wrapping_add(1);
            self.slots[i as usize] = r;
            i
        } else {
            r.epoch = 0;
            self.slots.push(r);
            (self.slots.len() - 1) as u32
        }
    }

    pub fn release(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        s.epoch = s.epoch.wrapping_add(1);
        self.free.push(i);
    }

    pub fn valid(&self, i: u32, epoch: u32) -> bool {
        self.slots.get(i as usize).is_some_and(|r| r.epoch == epoch)
    }

    /// The attempt's caller has its answer (or gave up): its deadline no
    /// longer matters.
    pub fn answered(&self, i: u32, epoch: u32) -> bool {
        !self.valid(i, epoch) || self.slots[i as usize].has(flags::CALLER_DONE)
    }
}
