//! Requests through the call graph: arrivals, load balancing, queueing,
//! processor-shared CPU, dependency calls, timeouts, retries, circuit
//! breaking and outlier ejection. This is the simulator's hot path: no
//! allocation per request (slab records, recomputed random draws) and no
//! hashing.

use std::cmp::Reverse;

use super::engine::{Event, Simulation};
use super::model::{NONE, Phase, Request, flags};
use crate::rng::{KeyedDraws, splitmix64};
use crate::scenario::{DependencyMode, LbPolicy, QueueKind};
use crate::time::{Span, Time};

// Salts separating a request's independent draws.
const DRAW_CALLS: u64 = 0xC0FF_EE00_0000_0001;
const DRAW_ERROR: u64 = 0xC0FF_EE00_0000_0002;
const DRAW_DEPENDENCY: u64 = 0xC0FF_EE00_0000_0003;
const DRAW_WAIT: u64 = 0xC0FF_EE00_0000_0004;

/// The length from which `transmit` drops answered deadlines off the
/// head of an edge's FIFO.
const DEADLINES_SWEPT_FROM: usize = 256;

/// A unit-mean CPU demand with the given coefficient of variation.
fn unit_demand(d: &mut KeyedDraws, cv: f64) -> f64 {
    if cv == 0.0 {
        1.0
    } else if (cv - 1.0).abs() < 1e-12 {
        d.exp(1.0)
    } else {
        let s2 = (1.0 + cv * cv).ln();
        (-0.5 * s2 + s2.sqrt() * d.normal()).exp()
    }
}

/// Wall seconds for `cpu_seconds` of work at `rate` (a positive share of
/// a core). Dividing by one is exact, so full speed skips the division.
#[inline]
fn wall_seconds(cpu_seconds: f64, rate: f64) -> f64 {
    if rate == 1.0 {
        cpu_seconds
    } else {
        cpu_seconds / rate
    }
}

/// Garbage-collector pressure: a pod near its memory limit works slower
/// (up to 5x at the limit, from 85 % of it), which makes a leak visible in
/// latency before the OOM kill, as it is on a JVM or Go service.
pub fn gc_factor(memory_fraction: f64) -> f64 {
    1.0 + 4.0 * ((memory_fraction - 0.85) / 0.15).clamp(0.0, 1.0)
}

impl Simulation {
    pub(crate) fn schedule_root_arrival(&mut self, load: u32) {
        let src = &mut self.loads[load as usize];
        src.next = src.arrivals.next(&mut src.rng);
    }

    pub(crate) fn root_arrival(&mut self, load: u32) {
        let src = &mut self.loads[load as usize];
        let key = src.rng.next_u64();
        let edge = src.edge;
        self.recorder.root_arrival(self.now);
        self.new_call(edge, NONE, key, splitmix64(load as u64), self.now);
        self.schedule_root_arrival(load);
    }

    // Per request. The hints keep this and `next_from_queue` inlined however
    // the crate's codegen units fall: a change of build profile once left
    // both out of line, 2 % more instructions in the engine's callgrind case.
    #[inline]
    fn new_call(&mut self, edge: u32, parent: u32, key: u64, call_salt: u64, call_start: Time) {
        let r = self.requests.alloc(Request {
            epoch: 0,
            edge,
            parent,
            pod: NONE,
            hold_idx: 0,
            children: 0,
            attempt: 0,
            flags: 0,
            key,
            call_salt,
            sent: self.now,
            call_start,
            arrived: self.now,
        });
        self.transmit(r);
    }

    /// Sends an attempt over its edge (first try or retry).
    pub(crate) fn transmit(&mut self, r: u32) {
        let now = self.now;
        let e = self.requests.slots[r as usize].edge as usize;
        if self.edges[e].from.is_some()
            && now < self.services[self.edges[e].to as usize].isolated_until
        {
            let fallback = self.edges[e].fallback;
            // Routed away: the caller answers at once, from its fallback or
            // with an error, and the isolated service sees nothing.
            self.recorder.isolated_calls += 1;
            self.requests.slots[r as usize].flags |= flags::CALLER_DONE | flags::SERVER_DONE;
            self.finish_call(r, fallback);
            return;
        }
        let cb = &self.mesh.circuit_breaker;
        let edge = &mut self.edges[e];
        if cb.enabled
            && edge.from.is_some()
            && (edge.outstanding >= cb.max_requests || edge.pending >= cb.max_pending)
        {
            // Envoy overflow: a local 503, not retried.
            edge.counters.attempts += 1;
            edge.counters.failures += 1;
            edge.counters.latency.observe(&self.buckets, 0.0);
            self.recorder.circuit_open += 1;
            self.requests.slots[r as usize].flags |= flags::CALLER_DONE | flags::SERVER_DONE;
            self.finish_call(r, false);
            return;
        }
        edge.outstanding += 1;
        edge.counters.attempts += 1;
        // Answered attempts leave the head of a long FIFO here too, not
        // only when the timer fires: under a long timeout the timer seldom
        // runs and the FIFO would grow with every attempt of the run. The
        // timer stays armed as it was, so the events are the same. Short
        // FIFOs are left to the timer: the check costs more than it saves.
        while edge.deadlines.len() >= DEADLINES_SWEPT_FROM
            && let Some(&(_, front, front_epoch)) = edge.deadlines.front()
            && self.requests.answered(front, front_epoch)
        {
            edge.deadlines.pop_front();
        }
        let epoch = self.requests.slots[r as usize].epoch;
        edge.deadlines.push_back((now + edge.timeout, r, epoch));
        if !edge.timer_armed {
            // Unarmed means nothing was pending: this deadline is the front.
            self.arm_edge_timer(e as u32);
        }
        let edge = &self.edges[e];
        let delay =
            edge.latency + edge.added_latency + self.services[edge.to as usize].added_latency;
        let req = &mut self.requests.slots[r as usize];
        req.sent = now;
        if delay == Span::ZERO {
            self.arrive(r);
        } else {
            self.queue
                .push(now + delay, Event::Arrive { req: r, epoch });
        }
    }

    /// The attempt reaches its service.
    pub(crate) fn arrive(&mut self, r: u32) {
        let now = self.now;
        let req = &mut self.requests.slots[r as usize];
        req.arrived = now;
        let (e, key, salt) = (req.edge, req.key, req.salt());
        let svc = self.edges[e as usize].to;
        let s = &mut self.services[svc as usize];
        s.counters.attempts += 1;
        if let Some((mode, rate)) = s.dependency_failure {
            match mode {
                DependencyMode::Errors => {
                    if KeyedDraws::new(key, salt ^ DRAW_DEPENDENCY).uniform() < rate {
                        self.requests.slots[r as usize].flags |= flags::SERVER_DONE;
                        self.caller_receive(r, false);
                        return;
                    }
                }
                DependencyMode::Blackhole => {
                    self.requests.slots[r as usize].flags |= flags::SERVER_DONE;
                    return;
                }
            }
        }
        match s.queue_kind {
            QueueKind::Shared => {
                let pod = if self.services[svc as usize].shared_queue.is_empty()
                    || self.mesh.outlier_detection.enabled
                {
                    self.pick_pod(svc, e, true)
                } else {
                    self.none_free(svc)
                };
                if let Some(pod) = pod {
                    s_track(self, svc, 1);
                    self.start(r, pod);
                } else if self.services[svc as usize].shared_queue.len()
                    < self.services[svc as usize].queue_capacity as usize
                    && !self.services[svc as usize].endpoints.is_empty()
                {
                    s_track(self, svc, 1);
                    self.services[svc as usize].shared_queue.push_back(r);
                    self.requests.slots[r as usize].flags |= flags::QUEUED;
                    self.edges[e as usize].pending += 1;
                } else {
                    self.reject(r);
                }
            }
            QueueKind::PerPod => {
                let Some(pod) = self.pick_pod(svc, e, false) else {
                    self.reject(r);
                    return;
                };
                let p = &self.pods[pod as usize];
                if !self.nodes[p.node as usize].up {
                    // The endpoint is still listed but its node is gone.
                    self.requests.slots[r as usize].flags |= flags::SERVER_DONE;
                    return;
                }
                let s = &self.services[svc as usize];
                if p.holding.len() < s.max_connections as usize {
                    s_track(self, svc, 1);
                    self.start(r, pod);
                } else if p.queue.len() < s.queue_capacity as usize {
                    s_track(self, svc, 1);
                    self.pods[pod as usize].queue.push_back(r);
                    let req = &mut self.requests.slots[r as usize];
                    req.flags |= flags::QUEUED;
                    req.pod = pod;
                    self.edges[e as usize].pending += 1;
                } else {
                    self.reject(r);
                }
            }
        }
    }

    /// 503 from the service: no healthy endpoint or a full queue.
    fn reject(&mut self, r: u32) {
        self.recorder.rejections += 1;
        self.requests.slots[r as usize].flags |= flags::SERVER_DONE;
        self.caller_receive(r, false);
    }

    #[inline]
    fn refresh_endpoints(&mut self, svc: u32) {
        if self.services[svc as usize].endpoints_dirty {
            self.rebuild_endpoints(svc);
        }
    }

    #[inline(never)]
    fn rebuild_endpoints(&mut self, svc: u32) {
        let s = &mut self.services[svc as usize];
        s.endpoints.clear();
        for &p in &s.pods {
            let pod = &self.pods[p as usize];
            if pod.ready && pod.phase == Phase::Running {
                s.endpoints.push(p);
            }
        }
        s.endpoints_dirty = false;
    }

    fn ejected(&self, edge: u32, pod: u32) -> bool {
        let os = &self.edges[edge as usize].outliers;
        !os.is_empty() && os.get(&pod).is_some_and(|h| h.ejected_until > self.now)
    }

    /// [`Simulation::pick_pod`]'s answer while a shared queue holds
    /// requests, without its scan: a freed slot takes the queue's head and
    /// a pod that turns ready drains it, so no endpoint has a free slot.
    /// (Outlier ejection breaks that: a slot a caller ejected stays free;
    /// the caller in `arrive` scans then.) The balancer's turn still moves,
    /// as the scan would move it.
    fn none_free(&mut self, svc: u32) -> Option<u32> {
        self.refresh_endpoints(svc);
        let s = &mut self.services[svc as usize];
        debug_assert!(
            s.endpoints
                .iter()
                .all(|&p| self.pods[p as usize].holding.len() >= s.max_connections as usize)
        );
        if !s.endpoints.is_empty() {
            s.rr = s.rr.wrapping_add(1);
        }
        None
    }

    /// The load balancer's choice among ready endpoints that the caller has
    /// not ejected; with `need_free`, only pods with a free slot (shared
    /// queue dispatch).
    fn pick_pod(&mut self, svc: u32, edge: u32, need_free: bool) -> Option<u32> {
        self.refresh_endpoints(svc);
        let s = &self.services[svc as usize];
        let n = s.endpoints.len();
        if n == 0 {
            return None;
        }
        let check_ejection =
            self.mesh.outlier_detection.enabled && !self.edges[edge as usize].outliers.is_empty();
        let max_conn = s.max_connections as usize;
        let ok = |sim: &Simulation, p: u32| {
            (!need_free || sim.pods[p as usize].holding.len() < max_conn)
                && (!check_ejection || !sim.ejected(edge, p))
        };
        let start = s.rr as usize % n;
        // The endpoints from `start` round to just before it (two slices,
        // not a modulo per step: this is the hottest loop of a busy run).
        let (before, after) = s.endpoints.split_at(start);
        let from_start = || after.iter().chain(before).copied();
        let chosen = match s.lb {
            // Two plain searches rather than one over the chain: the
            // chain's fold is not always inlined, and this runs per request.
            LbPolicy::RoundRobin => after
                .iter()
                .copied()
                .find(|&p| ok(self, p))
                .or_else(|| before.iter().copied().find(|&p| ok(self, p))),
            LbPolicy::LeastConnections => from_start().filter(|&p| ok(self, p)).min_by_key(|&p| {
                self.pods[p as usize].holding.len() + self.pods[p as usize].queue.len()
            }),
            LbPolicy::Random => {
                let count = s.endpoints.iter().filter(|&&p| ok(self, p)).count();
                if count == 0 {
                    None
                } else {
                    let k = self.rng_traffic.index(count);
                    let s = &self.services[svc as usize];
                    s.endpoints.iter().copied().filter(|&p| ok(self, p)).nth(k)
                }
            }
        };
        // Envoy's panic threshold: when every host is ejected, balance over all.
        let chosen = match chosen {
            None if check_ejection && !need_free => Some(s.endpoints[start]),
            c => c,
        };
        let s = &mut self.services[svc as usize];
        s.rr = s.rr.wrapping_add(1);
        chosen
    }

    /// Takes a connection slot and begins the CPU phase.
    fn start(&mut self, r: u32, pod: u32) {
        let now = self.now;
        self.unqueue(r);
        let req = &mut self.requests.slots[r as usize];
        req.pod = pod;
        let (key, salt, arrived) = (req.key, req.salt(), req.arrived);
        let p = &mut self.pods[pod as usize];
        req.hold_idx = p.holding.len() as u32;
        p.holding.push(r);
        let svc = p.service as usize;
        let s = &mut self.services[svc];
        let wait = (now - arrived).as_secs_f64();
        s.wait_sum += wait;
        s.waited += (wait > 0.0) as u64;
        s.started += 1;
        let rev = &s.revisions[p.revision as usize];
        let memory = p.memory(rev, now);
        if memory >= s.memory_limit {
            self.recorder.oom_kills += 1;
            self.exit_container(pod, super::engine::Exit::OutOfMemory);
            return;
        }
        let demand = unit_demand(&mut KeyedDraws::new(key, salt), rev.service_time_cv)
            * rev.service_time_s
            * gc_factor(memory / s.memory_limit);
        let limit = s.cpu_limit;
        p.advance(now, limit);
        let finish = p.cpu.v + demand;
        p.cpu.jobs.push(Reverse((finish.to_bits(), r)));
        self.reschedule_cpu(pod);
    }

    /// Keeps the pod's single CPU completion event in step with its job set
    /// and rate. A completion that moved later keeps its event, which then
    /// fires early and re-arms itself: only an earlier completion needs a new
    /// event, which keeps superseded events rare.
    pub(crate) fn reschedule_cpu(&mut self, pod: u32) {
        let now = self.now;
        let p = &mut self.pods[pod as usize];
        let rate = p.cpu_rate(self.services[p.service as usize].cpu_limit);
        let next = match p.cpu.jobs.peek() {
            Some(Reverse((bits, _))) if rate > 0.0 => {
                let remaining = (f64::from_bits(*bits) - p.cpu.v).max(0.0);
                now + Span::from_secs_f64(wall_seconds(remaining, rate))
            }
            _ => Time::MAX,
        };
        if next == Time::MAX {
            // Nothing to finish (or no progress): cancel any pending event.
            if p.cpu.next_at != Time::MAX {
                p.cpu.event_epoch = p.cpu.event_epoch.wrapping_add(1);
                p.cpu.next_at = Time::MAX;
            }
            return;
        }
        if next >= p.cpu.next_at && p.cpu.next_at != Time::MAX {
            return;
        }
        p.cpu.event_epoch = p.cpu.event_epoch.wrapping_add(1);
        p.cpu.next_at = next;
        let epoch = p.cpu.event_epoch;
        self.queue.push(next, Event::CpuDone { pod, epoch });
    }

    pub(crate) fn cpu_done(&mut self, pod: u32) {
        let now = self.now;
        let p = &mut self.pods[pod as usize];
        let limit = self.services[p.service as usize].cpu_limit;
        let rate = p.cpu_rate(limit);
        p.advance_at(now, limit, rate);
        p.cpu.next_at = Time::MAX;
        let Some(&Reverse((bits, r))) = p.cpu.jobs.peek() else {
            return;
        };
        let finish = f64::from_bits(bits);
        // Woken early (the completion moved later since the event was set):
        // re-arm. Two nanoseconds of slack absorb the rounding of event times.
        if rate > 0.0 && wall_seconds(finish - p.cpu.v, rate) > 2e-9 {
            self.stale_events += 1;
            self.reschedule_cpu(pod);
            return;
        }
        p.cpu.jobs.pop();
        p.cpu.v = p.cpu.v.max(finish);
        self.reschedule_cpu(pod);
        self.after_cpu(r);
    }

    /// The request's CPU work is done: wait off-CPU if its revision does,
    /// then call dependencies.
    fn after_cpu(&mut self, r: u32) {
        let req = &self.requests.slots[r as usize];
        let pod = &self.pods[req.pod as usize];
        let rev = &self.services[pod.service as usize].revisions[pod.revision as usize];
        if rev.wait_s > 0.0 {
            let mut draws = KeyedDraws::new(req.key, req.salt() ^ DRAW_WAIT);
            let wait = Span::from_secs_f64(unit_demand(&mut draws, rev.wait_cv) * rev.wait_s);
            let epoch = req.epoch;
            self.queue
                .push(self.now + wait, Event::WaitDone { req: r, epoch });
            return;
        }
        self.call_dependencies(r);
    }

    /// The request's own work is done: call dependencies, or answer.
    pub(crate) fn call_dependencies(&mut self, r: u32) {
        let req = &self.requests.slots[r as usize];
        let (key, salt, call_salt) = (req.key, req.salt(), req.call_salt);
        let svc = self.edges[req.edge as usize].to as usize;
        let calls = &self.services[svc].calls;
        let mut draws = KeyedDraws::new(key, salt ^ DRAW_CALLS);
        let mut chosen = 0u64;
        for (i, &e) in calls.iter().enumerate() {
            if draws.uniform() < self.edges[e as usize].probability {
                chosen |= 1 << i.min(63);
            }
        }
        if chosen == 0 {
            self.server_complete(r, true);
            return;
        }
        self.requests.slots[r as usize].children = chosen.count_ones() as u16;
        let n = self.services[svc].calls.len();
        for i in 0..n {
            if chosen & (1 << i.min(63)) != 0 {
                let e = self.services[svc].calls[i];
                self.new_call(e, r, key, splitmix64(call_salt ^ (e as u64 + 1)), self.now);
            }
        }
    }

    fn child_finished(&mut self, parent: u32, ok: bool) {
        let p = &mut self.requests.slots[parent as usize];
        p.children -= 1;
        if !ok {
            p.flags |= flags::CHILD_FAILED;
        }
        if p.children == 0 {
            if p.has(flags::SERVER_DONE) {
                self.maybe_release(parent);
            } else {
                let ok = !p.has(flags::CHILD_FAILED);
                self.server_complete(parent, ok);
            }
        }
    }

    /// The service answers: releases the slot, lets the next request in and
    /// responds to the caller.
    fn server_complete(&mut self, r: u32, ok: bool) {
        let now = self.now;
        let req = &mut self.requests.slots[r as usize];
        req.flags |= flags::SERVER_DONE;
        let (pod, hold_idx, arrived, key, salt) =
            (req.pod, req.hold_idx, req.arrived, req.key, req.salt());
        let p = &mut self.pods[pod as usize];
        // O(1) removal; the moved request learns its new index.
        p.holding.swap_remove(hold_idx as usize);
        if let Some(&moved) = p.holding.get(hold_idx as usize) {
            self.requests.slots[moved as usize].hold_idx = hold_idx;
        }
        let svc = p.service;
        let s = &mut self.services[svc as usize];
        let error_rate = s.revisions[p.revision as usize].error_rate;
        let latency = (now - arrived).as_secs_f64();
        s.completed += 1;
        s.sojourn_sum += latency;
        s.counters.latency.observe(&self.buckets, latency);
        s.track_in_system(now, -1);
        let ok = ok
            && (error_rate == 0.0
                || KeyedDraws::new(key, salt ^ DRAW_ERROR).uniform() >= error_rate);
        self.next_from_queue(pod);
        self.caller_receive(r, ok);
    }

    /// A freed slot takes the pod's next queued request, or the service's.
    #[inline(always)]
    fn next_from_queue(&mut self, pod: u32) {
        let p = &mut self.pods[pod as usize];
        let svc = p.service;
        let max = self.services[svc as usize].max_connections as usize;
        if p.holding.len() >= max {
            return;
        }
        if let Some(next) = p.queue.pop_front() {
            self.start(next, pod);
            return;
        }
        if p.phase == Phase::Terminating {
            if p.holding.is_empty() {
                self.remove_pod(pod);
            }
            return;
        }
        if p.ready
            && p.phase == Phase::Running
            && !self.services[svc as usize].shared_queue.is_empty()
        {
            self.drop_abandoned(svc);
            if let Some(next) = self.services[svc as usize].shared_queue.pop_front() {
                self.start(next, pod);
            }
        }
    }

    /// Where the service drops them, takes the requests whose callers have
    /// given up off the head of its shared queue: they leave unserved.
    /// Out of line: only Knative's queue has it, and the hot path that
    /// frees a slot stays as small as it was.
    #[inline(never)]
    fn drop_abandoned(&mut self, svc: u32) {
        if !self.services[svc as usize].drop_abandoned {
            return;
        }
        while let Some(&r) = self.services[svc as usize].shared_queue.front() {
            if !self.requests.slots[r as usize].has(flags::CALLER_DONE) {
                break;
            }
            self.services[svc as usize].shared_queue.pop_front();
            self.drop_unserved(r, svc);
            self.maybe_release(r);
        }
    }

    /// The request leaves the queue it waited in, if it waited.
    fn unqueue(&mut self, r: u32) {
        let req = &mut self.requests.slots[r as usize];
        if req.has(flags::QUEUED) {
            req.flags &= !flags::QUEUED;
            self.edges[req.edge as usize].pending -= 1;
        }
    }

    /// Service `svc` lets go of the request without answering it (its pod
    /// is gone, or its caller is).
    fn drop_unserved(&mut self, r: u32, svc: u32) {
        self.unqueue(r);
        self.requests.slots[r as usize].flags |= flags::SERVER_DONE;
        let now = self.now;
        self.services[svc as usize].track_in_system(now, -1);
    }

    /// Dispatches shared-queue requests to pods with free slots.
    pub(crate) fn drain_shared_queue(&mut self, svc: u32) {
        loop {
            self.drop_abandoned(svc);
            let Some(&head) = self.services[svc as usize].shared_queue.front() else {
                break;
            };
            let edge = self.requests.slots[head as usize].edge;
            let Some(pod) = self.pick_pod(svc, edge, true) else {
                break;
            };
            self.services[svc as usize].shared_queue.pop_front();
            self.start(head, pod);
        }
    }

    /// The caller learns the outcome of an attempt (ignored if it already
    /// gave up on it).
    pub(crate) fn caller_receive(&mut self, r: u32, ok: bool) {
        let now = self.now;
        let req = &mut self.requests.slots[r as usize];
        if req.has(flags::CALLER_DONE) {
            self.maybe_release(r);
            return;
        }
        req.flags |= flags::CALLER_DONE;
        let (e, pod, sent) = (req.edge, req.pod, req.sent);
        let edge = &mut self.edges[e as usize];
        edge.outstanding -= 1;
        edge.counters
            .latency
            .observe(&self.buckets, (now - sent).as_secs_f64());
        if ok {
            edge.counters.successes += 1;
            self.services[edge.to as usize].counters.successes += 1;
        } else {
            edge.counters.failures += 1;
            self.services[edge.to as usize].counters.failures += 1;
        }
        self.outlier_feedback(e, pod, ok);
        if ok {
            self.finish_call(r, true)
        } else {
            self.attempt_failed(r)
        }
    }

    fn attempt_failed(&mut self, r: u32) {
        let req = &self.requests.slots[r as usize];
        let retry = &self.mesh.retries;
        let inter_service = self.edges[req.edge as usize].from.is_some();
        if retry.enabled && inter_service && (req.attempt as u32) < retry.max_retries {
            // Full jitter: uniform in [0, min(cap, base * 2^n)].
            let cap = retry
                .max_ms
                .min(retry.base_ms * 2f64.powi(req.attempt as i32))
                / 1000.0;
            let backoff = Span::from_secs_f64(self.rng_traffic.uniform() * cap);
            let mut next = req.clone();
            next.attempt += 1;
            next.flags = 0;
            next.pod = NONE;
            next.children = 0;
            let n = self.requests.alloc(next);
            let epoch = self.requests.slots[n as usize].epoch;
            self.recorder.retries += 1;
            self.queue
                .push(self.now + backoff, Event::Retry { req: n, epoch });
            // The failed attempt's own record is no longer the call's.
            self.requests.slots[r as usize].parent = NONE;
            self.maybe_release(r);
        } else {
            self.finish_call(r, false);
        }
    }

    /// The call (all its attempts) is over: tell the parent, or the client.
    fn finish_call(&mut self, r: u32, ok: bool) {
        let req = &self.requests.slots[r as usize];
        let (parent, call_start) = (req.parent, req.call_start);
        if self.edges[req.edge as usize].from.is_none() {
            self.recorder.root_done(self.now, call_start, ok);
        } else if parent != NONE {
            self.child_finished(parent, ok);
        }
        self.maybe_release(r);
    }

    fn maybe_release(&mut self, r: u32) {
        let req = &self.requests.slots[r as usize];
        if req.has(flags::CALLER_DONE) && req.has(flags::SERVER_DONE) && req.children == 0 {
            self.requests.release(r);
        }
    }

    pub(crate) fn edge_timer(&mut self, e: u32) {
        let now = self.now;
        self.edges[e as usize].timer_armed = false;
        while let Some(&(deadline, r, epoch)) = self.edges[e as usize].deadlines.front() {
            if self.requests.answered(r, epoch) {
                self.edges[e as usize].deadlines.pop_front();
                continue;
            }
            if deadline > now {
                break;
            }
            self.edges[e as usize].deadlines.pop_front();
            self.timeout(r);
        }
        self.arm_edge_timer(e);
    }

    /// Arms edge `e`'s timer for its earliest deadline, if any.
    fn arm_edge_timer(&mut self, e: u32) {
        let edge = &mut self.edges[e as usize];
        if let Some(&(deadline, _, _)) = edge.deadlines.front() {
            edge.timer_armed = true;
            self.queue.push(
                deadline,
                Event::EdgeTimer {
                    edge: e,
                    epoch: edge.timer_epoch,
                },
            );
        }
    }

    /// A new per-attempt timeout on edge `e`. Attempts in flight keep their
    /// send time and get the new timeout from it, which shifts every
    /// deadline by the same amount and so keeps the FIFO sorted; the timer
    /// is re-armed (a new generation) for the new front.
    pub(crate) fn set_timeout(&mut self, e: u32, timeout: Span) {
        let edge = &mut self.edges[e as usize];
        let old = edge.timeout;
        if old == timeout {
            return;
        }
        for d in edge.deadlines.iter_mut() {
            let shifted = (d.0.as_nanos() + timeout.as_nanos()).saturating_sub(old.as_nanos());
            d.0 = Time::from_nanos(shifted).max(self.now);
        }
        edge.timeout = timeout;
        edge.timer_epoch = edge.timer_epoch.wrapping_add(1);
        edge.timer_armed = false;
        self.arm_edge_timer(e);
    }

    /// After a service's connection limit was raised: queued requests take
    /// the new slots.
    pub(crate) fn admit_waiting(&mut self, svc: u32) {
        for p in self.services[svc as usize].pods.clone() {
            while !self.pods[p as usize].queue.is_empty()
                && self.pods[p as usize].holding.len()
                    < self.services[svc as usize].max_connections as usize
            {
                self.next_from_queue(p);
            }
        }
        self.drain_shared_queue(svc);
    }

    /// The caller gives up on an attempt; the server may still be working on
    /// it (there is no deadline propagation), and that work is wasted.
    fn timeout(&mut self, r: u32) {
        let req = &mut self.requests.slots[r as usize];
        req.flags |= flags::CALLER_DONE;
        let (e, pod) = (req.edge, req.pod);
        let edge = &mut self.edges[e as usize];
        edge.outstanding -= 1;
        edge.counters.failures += 1;
        let t = edge.timeout.as_secs_f64();
        edge.counters.latency.observe(&self.buckets, t);
        self.services[edge.to as usize].counters.failures += 1;
        self.recorder.timeouts += 1;
        self.outlier_feedback(e, pod, false);
        self.attempt_failed(r);
    }

    /// Envoy consecutive-5xx outlier detection; timeouts and resets count as
    /// 5xx (`split_external_local_origin_errors` is off by default).
    fn outlier_feedback(&mut self, e: u32, pod: u32, ok: bool) {
        let od = &self.mesh.outlier_detection;
        let edge = &mut self.edges[e as usize];
        if !od.enabled || edge.from.is_none() || pod == NONE {
            return;
        }
        if ok {
            if let Some(h) = edge.outliers.get_mut(&pod) {
                h.consecutive_5xx = 0;
            }
            return;
        }
        let now = self.now;
        let endpoints = self.services[edge.to as usize].endpoints.len();
        let ejected_now = edge
            .outliers
            .values()
            .filter(|h| h.ejected_until > now)
            .count();
        let max_ejected =
            ((od.max_ejection_percent / 100.0 * endpoints as f64).floor() as usize).max(1);
        let h = edge.outliers.entry(pod).or_default();
        h.consecutive_5xx += 1;
        if h.consecutive_5xx >= od.consecutive_5xx
            && h.ejected_until <= now
            && ejected_now < max_ejected
        {
            h.ejections += 1;
            h.consecutive_5xx = 0;
            let secs = (od.base_ejection_s * h.ejections as f64)
                .min(od.max_ejection_s.max(od.base_ejection_s));
            h.ejected_until = now + Span::from_secs_f64(secs);
            self.recorder.ejections += 1;
            self.recorder.ejection_times.push(now);
        }
    }

    /// Drops every request on a pod. With `silent` (the node vanished) the
    /// callers hear nothing and time out; otherwise they get a reset at once.
    pub(crate) fn kill_requests(&mut self, pod: u32, silent: bool) {
        let now = self.now;
        let p = &mut self.pods[pod as usize];
        let limit = self.services[p.service as usize].cpu_limit;
        p.advance(now, limit);
        let holding = std::mem::take(&mut p.holding);
        let queued: Vec<u32> = p.queue.drain(..).collect();
        p.cpu.jobs.clear();
        p.cpu.event_epoch = p.cpu.event_epoch.wrapping_add(1);
        p.cpu.next_at = Time::MAX;
        let svc = p.service;
        for r in holding.into_iter().chain(queued) {
            self.drop_unserved(r, svc);
            if silent {
                self.maybe_release(r);
            } else {
                self.caller_receive(r, false);
            }
        }
    }
}

fn s_track(sim: &mut Simulation, svc: u32, delta: i32) {
    let now = sim.now;
    sim.services[svc as usize].track_in_system(now, delta);
}
