//! A recording's stretch as a scenario. Each number has a stated source:
//!
//! - replicas, requests, limits, probes, rolling update: the Deployment
//!   (`deployments.json`); without one, the median ready replicas and the
//!   scenario defaults; a CPU limit below one core stands as one (see
//!   `build`);
//! - CPU time per request (`service_time_ms`) and background CPU
//!   (`background_cores`): the cores the service used (`cpu_usage` x CPU
//!   request x ready replicas) against its request rate as a line, whose
//!   intercept, where it stands out from the noise, is background work
//!   spread over the pods (`cpu_split`); else the cores summed over the
//!   stretch over the requests it served; the CPU per request less the
//!   simulator's garbage-collection slow-down at the recorded memory share
//!   (`sim::gc_factor`);
//! - the call graph: the edges in `edges.csv`; calls per request the edge's
//!   request rate over the caller's, or, where the edge has no rate, the
//!   non-negative least-squares fit of the callee's rate on its callers',
//!   no edge given more parallel calls than its caller's own p50 and p99
//!   allow (`most_parallel_calls`); more than one call per request becomes
//!   that many parallel calls;
//! - network latency of an edge: the caller's p50 of it above the callee's
//!   own p50;
//! - off-CPU time (`wait_ms`, `wait_cv`) and the spread of CPU time: the
//!   service's p50 and p99 less what its calls take, as a lognormal, then
//!   calibrated: the twin runs the same stretch and each service's wait and
//!   spread move until its median p50 and p99 meet the recorded ones;
//! - memory: the pods' MiB (share of the limit x limit) against the
//!   requests each pod holds, a least-squares line;
//! - errors of its own: the service's error rate less its callees', at
//!   the calls' rates;
//! - the load: the request rate of every service no other calls, replayed
//!   as a trace.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::TwinError;
use super::recording::{EdgeSeries, Recording};
use crate::control::anomaly::normal_tail;
use crate::eval::median;
use crate::metrics::ServiceMetrics;
use crate::scenario::{
    CallSpec, ClusterSpec, ControllerSpec, CurveSpec, KubernetesSpec, LoadSpec, MeshSpec,
    MetricsSpec, Scenario, ServiceSpec, SloSpec,
};
use crate::sim::load::Trace;
use crate::train::recorded::ServiceRecording;

/// z of the 99th percentile of a standard normal.
const Z99: f64 = 2.326_347_874;
/// Calls per request above one by less than this are one call.
const ONE_CALL_SLACK: f64 = 0.05;
/// A p50 or spread within this ratio of the recorded one is left alone.
const CALIBRATION_DEADBAND: f64 = 0.05;

#[derive(Clone, Debug)]
pub struct TwinOptions {
    /// The stretch to build from, in recording seconds; the first half of
    /// the recording without them.
    pub from_s: Option<f64>,
    pub to_s: Option<f64>,
    /// Simulate-and-adjust rounds after the first estimate.
    pub calibration_rounds: u32,
    pub seed: u64,
    pub name: String,
}

impl Default for TwinOptions {
    fn default() -> Self {
        TwinOptions {
            from_s: None,
            to_s: None,
            calibration_rounds: 4,
            seed: 1,
            name: "twin".into(),
        }
    }
}

/// A built twin: its scenario, its load traces (by the `file` the scenario
/// names) and how calibration went.
#[derive(Clone, Debug)]
pub struct Twin {
    pub scenario: Scenario,
    pub traces: BTreeMap<String, Arc<Trace>>,
    /// The stretch it was built from, in recording seconds.
    pub window: (f64, f64),
    /// Per calibration round (0 = the first estimate): the median over
    /// services of |twin p50 / recorded p50 - 1| and the same for p99.
    pub calibration: Vec<(f64, f64)>,
}

/// A service's scrapes that fall in `[from, to)`: at least two, as its
/// load replayed as a trace needs.
pub(super) fn window(
    s: &ServiceRecording,
    from: f64,
    to: f64,
) -> Result<Vec<&ServiceMetrics>, TwinError> {
    let w: Vec<&ServiceMetrics> = s
        .scrapes
        .iter()
        .filter(|m| (from..to).contains(&m.timestamp.as_secs_f64()))
        .collect();
    if w.len() < 2 {
        return Err(TwinError::ShortWindow {
            service: s.service.clone(),
            scrapes: w.len(),
            from_s: from,
            to_s: to,
        });
    }
    Ok(w)
}

/// The cores a scrape's pods used: `cpu_usage` is a share of their
/// requests.
pub(super) fn cores(m: &ServiceMetrics, cpu_request: f64) -> f64 {
    m.cpu_usage * cpu_request * m.ready_replicas.max(1) as f64
}

/// What a service's stretch measures, in the units the fit needs.
struct Measured {
    rate: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    error: f64,
    rates: Vec<(f64, f64)>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v.filter(|x| x.is_finite()) {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

fn measure(w: &[&ServiceMetrics]) -> Measured {
    let mut p50: Vec<f64> = w.iter().map(|m| m.latency_p50).collect();
    let mut p99: Vec<f64> = w.iter().map(|m| m.latency_p99).collect();
    Measured {
        rate: mean(w.iter().map(|m| m.request_rate)).unwrap_or(0.0),
        p50: median(&mut p50),
        p99: median(&mut p99),
        error: mean(w.iter().map(|m| m.error_rate)).unwrap_or(0.0),
        rates: w
            .iter()
            .map(|m| (m.timestamp.as_secs_f64(), m.request_rate))
            .collect(),
    }
}

/// Calls per caller request on each edge into `callee`, from the edges'
/// own rates where they have them, else by non-negative least squares of
/// the callee's rate on its callers' rates at the same scrapes.
fn calls_per_request(
    callee: &str,
    edges: &[&EdgeSeries],
    measured: &BTreeMap<String, Measured>,
    from: f64,
    to: f64,
) -> Vec<f64> {
    let mut out = vec![f64::NAN; edges.len()];
    for (k, e) in edges.iter().enumerate() {
        let in_window =
            e.t.iter()
                .zip(&e.request_rate)
                .filter(|(t, r)| (from..to).contains(*t) && r.is_finite());
        let (n, sum) = in_window.fold((0usize, 0.0), |(n, s), (_, r)| (n + 1, s + r));
        let caller_rate = measured.get(&e.caller).map_or(0.0, |m| m.rate);
        if n > 0 && caller_rate > 0.0 {
            out[k] = (sum / n as f64) / caller_rate;
        }
    }
    let mut unknown: Vec<usize> = (0..edges.len()).filter(|&k| out[k].is_nan()).collect();
    if unknown.is_empty() {
        return out;
    }
    // The callee's rate at its own scrapes; each caller's rate at the
    // nearest scrape of its own.
    let Some(target) = measured.get(callee) else {
        return out.iter().map(|m| m.max(0.0)).collect();
    };
    let at = |caller: &str, t: f64| -> f64 {
        let Some(m) = measured.get(caller) else {
            return f64::NAN;
        };
        let i = m.rates.partition_point(|r| r.0 < t);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| m.rates.get(j))
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .map_or(f64::NAN, |r| r.1)
    };
    let rows = |out: &[f64], unknown: &[usize]| -> Vec<(f64, Vec<f64>)> {
        target
            .rates
            .iter()
            .filter_map(|&(t, y)| {
                let known: f64 = (0..edges.len())
                    .filter(|k| !out[*k].is_nan())
                    .map(|k| out[k] * at(&edges[k].caller, t))
                    .sum();
                let x: Vec<f64> = unknown.iter().map(|&k| at(&edges[k].caller, t)).collect();
                (y.is_finite() && known.is_finite() && x.iter().all(|v| v.is_finite()))
                    .then_some((y - known, x))
            })
            .collect()
    };
    // Callers whose rates move together (one calls the other, at a steady
    // share) leave the split of the callee's rate between them open: the
    // fit may give one of them several calls per request that its own
    // latency rules out. Such an edge is held at the most calls its
    // caller's latency allows, and the rest is fitted again.
    loop {
        let coef = nnls(&rows(&out, &unknown), unknown.len());
        let over = unknown
            .iter()
            .zip(&coef)
            .filter_map(|(&k, &c)| {
                let cap = most_parallel_calls(measured.get(&edges[k].caller)?, target)? as f64;
                (c > cap + ONE_CALL_SLACK).then_some((k, cap, c / cap))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        match over {
            Some((k, cap, _)) => {
                out[k] = cap;
                unknown.retain(|&u| u != k);
                if unknown.is_empty() {
                    return out;
                }
            }
            None => {
                for (j, &k) in unknown.iter().enumerate() {
                    out[k] = coef[j];
                }
                return out;
            }
        }
    }
}

/// The most parallel calls into `callee` per request that `caller`'s own
/// latency allows: `n` calls take the slowest of `n` draws from the
/// callee's latency (a lognormal through its p50 and p99), which is no
/// slower than the caller's recorded p50 and p99 only while
/// `F(p) ^ n >= q` at both. At least one (the edge was seen); `None` where
/// either service lacks its percentiles or nothing bounds the count.
fn most_parallel_calls(caller: &Measured, callee: &Measured) -> Option<u32> {
    let (c50, c99, p50, p99) = (callee.p50?, callee.p99?, caller.p50?, caller.p99?);
    if !(c50 > 0.0 && p50 > 0.0 && p99 > 0.0) {
        return None;
    }
    let sigma = lognormal_sigma(c50, c99);
    let cdf = |x: f64| {
        if sigma == 0.0 {
            if x >= c50 { 1.0 } else { 0.0 }
        } else {
            1.0 - normal_tail((x / c50).ln() / sigma)
        }
    };
    let most = [(p50, 0.5_f64), (p99, 0.99)]
        .into_iter()
        .map(|(x, q)| {
            let f = cdf(x);
            if f >= 1.0 {
                f64::INFINITY
            } else if f <= 0.0 {
                0.0
            } else {
                q.ln() / f.ln()
            }
        })
        .fold(f64::INFINITY, f64::min);
    most.is_finite().then(|| (most.floor() as u32).max(1))
}

/// Non-negative least squares by cyclic coordinate descent: small problems
/// (a callee's few callers) converge in a few hundred sweeps.
fn nnls(rows: &[(f64, Vec<f64>)], n: usize) -> Vec<f64> {
    let mut b = vec![0.0; n];
    let norms: Vec<f64> = (0..n)
        .map(|j| rows.iter().map(|(_, x)| x[j] * x[j]).sum())
        .collect();
    for _ in 0..500 {
        let mut moved = 0.0f64;
        for j in 0..n {
            if norms[j] <= 0.0 {
                continue;
            }
            let g: f64 = rows
                .iter()
                .map(|(y, x)| {
                    let pred: f64 = x.iter().zip(&b).map(|(a, c)| a * c).sum();
                    (y - pred) * x[j]
                })
                .sum();
            let next = (b[j] + g / norms[j]).max(0.0);
            moved = moved.max((next - b[j]).abs());
            b[j] = next;
        }
        if moved < 1e-9 {
            break;
        }
    }
    b
}

/// The sigma of a lognormal through (p50, p99) (0 when p99 is not above
/// p50).
fn lognormal_sigma(p50: f64, p99: f64) -> f64 {
    (p99 / p50).max(1.0).ln() / Z99
}

/// A lognormal through (p50, p99): its mean and coefficient of variation.
fn lognormal(p50: f64, p99: f64) -> (f64, f64) {
    let sigma = lognormal_sigma(p50, p99);
    let s2 = sigma * sigma;
    (p50 * (0.5 * s2).exp(), (s2.exp() - 1.0).sqrt())
}

/// Least-squares line `y = a + b x` (b = 0 when x does not vary).
fn line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.is_empty() {
        return (0.0, 0.0);
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 1e-12 * n {
        return (my, 0.0);
    }
    let b = sxy / sxx;
    (my - b * mx, b)
}

/// A service's cores as `background + per_request x rate`, from its
/// scrapes' `(request rate, cores)`: the least-squares line where its
/// intercept stands out from the noise (above twice its standard error),
/// a slope that is not positive read as no per-request CPU at all;
/// otherwise all of the CPU is the requests' (the cores summed over the
/// requests served). The intercept is CPU the requests do not explain:
/// left in the requests' time, a service that idles at a tenth of a core
/// would get ten times their CPU and queue where the real one does not.
fn cpu_split(points: &[(f64, f64)]) -> (f64, f64) {
    let (cores, served) = points
        .iter()
        .fold((0.0, 0.0), |(c, r), p| (c + p.1, r + p.0));
    let through_zero = (0.0, if served > 0.0 { cores / served } else { 0.0 });
    let n = points.len() as f64;
    if points.len() < 3 {
        return through_zero;
    }
    let (a, b) = line(points);
    let mx = served / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let ssr: f64 = points.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let se_a = (ssr / (n - 2.0) * (1.0 / n + mx * mx / sxx.max(f64::MIN_POSITIVE))).sqrt();
    match (a > 2.0 * se_a, b > 0.0) {
        (true, true) => (a, b),
        (true, false) => (cores / n, 0.0),
        (false, _) => through_zero,
    }
}

/// Builds the twin of `rec` over the options' stretch.
pub fn build(rec: &Recording, opts: &TwinOptions) -> Result<Twin, TwinError> {
    let (start, end) = rec.span();
    let from = opts.from_s.unwrap_or(start);
    let to = opts.to_s.unwrap_or(start + 0.5 * (end - start));
    let interval = rec.scrape_interval_s();
    let mut windows = BTreeMap::new();
    for s in &rec.services {
        windows.insert(s.service.clone(), window(s, from, to)?);
    }
    let measured: BTreeMap<String, Measured> = windows
        .iter()
        .map(|(name, w)| (name.clone(), measure(w)))
        .collect();
    let names: Vec<&str> = rec.services.iter().map(|s| s.service.as_str()).collect();
    let edges: Vec<&EdgeSeries> = rec
        .edges
        .iter()
        .filter(|e| names.contains(&e.caller.as_str()) && names.contains(&e.callee.as_str()))
        .collect();
    let mut calls: BTreeMap<&str, Vec<CallSpec>> = BTreeMap::new();
    for callee in &names {
        let into: Vec<&EdgeSeries> = edges
            .iter()
            .copied()
            .filter(|e| e.callee == *callee)
            .collect();
        let per_request = calls_per_request(callee, &into, &measured, from, to);
        for (e, m) in into.iter().zip(per_request) {
            let callee_p50 = measured[*callee].p50;
            let callee_p99 = measured[*callee].p99;
            let mut edge_p50: Vec<f64> =
                e.t.iter()
                    .zip(&e.latency_p50_ms)
                    .filter(|(t, _)| (from..to).contains(*t))
                    .map(|(_, v)| *v)
                    .collect();
            let network = match (median(&mut edge_p50), callee_p50) {
                (Some(edge), Some(own)) if edge - own > CALIBRATION_DEADBAND * own => edge - own,
                _ => 0.0,
            };
            let timeout_ms = callee_p99.map_or(1_000.0, |p| (5.0 * p).max(1_000.0));
            let call = |probability: f64| CallSpec {
                to: e.callee.clone(),
                probability,
                timeout_ms,
                network_latency_ms: network,
                fallback: false,
            };
            let list = calls.entry(e.caller.as_str()).or_default();
            if m.is_nan() || m <= 0.0 {
                continue;
            } else if m <= 1.0 + ONE_CALL_SLACK {
                list.push(call(m.min(1.0)));
            } else {
                let whole = m.floor();
                list.extend((0..whole as usize).map(|_| call(1.0)));
                if m - whole > ONE_CALL_SLACK {
                    list.push(call(m - whole));
                }
            }
        }
    }
    let called: Vec<&str> = calls.values().flatten().map(|c| c.to.as_str()).collect();
    let roots: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !called.contains(n))
        .collect();
    if roots.is_empty() {
        return Err(TwinError::NoEntry);
    }

    let defaults: ServiceSpec =
        toml::from_str("name = \"x\"\nreplicas = 1\nrevision = { service_time_ms = 1 }")
            .expect("the defaults parse");
    let mut services = Vec::new();
    for s in &rec.services {
        let name = s.service.as_str();
        let w = &windows[name];
        let m = &measured[name];
        let shape = rec.shapes.get(name).cloned().unwrap_or_default();
        let mut ready: Vec<f64> = w.iter().map(|m| m.ready_replicas as f64).collect();
        let median_ready = median(&mut ready);
        let replicas = shape
            .replicas
            .unwrap_or_else(|| median_ready.unwrap_or(1.0).round().max(1.0) as u32);
        let cpu_request = shape.cpu_request.unwrap_or(defaults.cpu_request);
        // A limit below one core stands as one: CFS enforces a limit per
        // 100 ms period, so at a recording's usual utilisation a request
        // runs at a whole core's speed until the quota is spent, where the
        // simulator's fluid share would slow every request to the limit.
        let cpu_limit = shape
            .cpu_limit
            .unwrap_or(defaults.cpu_limit)
            .max(cpu_request)
            .max(1.0);
        let memory_limit = shape.memory_limit_mib.unwrap_or(defaults.memory_limit_mib);
        let memory_request = shape
            .memory_request_mib
            .unwrap_or(defaults.memory_request_mib.min(memory_limit));
        let usage: Vec<(f64, f64)> = w
            .iter()
            .filter(|m| m.cpu_usage.is_finite() && m.request_rate.is_finite())
            .map(|m| (m.request_rate, cores(m, cpu_request)))
            .collect();
        let (background, per_request) = cpu_split(&usage);
        // The simulator slows a pod near its memory limit (garbage
        // collection, `sim::gc_factor`); a service recorded there has
        // that work in its CPU already.
        let gc = mean(w.iter().map(|m| crate::sim::gc_factor(m.memory_usage))).unwrap_or(1.0);
        let served = usage.iter().any(|p| p.0 > 0.0);
        let cpu_ms = if served {
            (1000.0 * per_request / gc).max(0.001)
        } else {
            defaults.revision.service_time_ms
        };
        let background_per_pod =
            (background / median_ready.unwrap_or(1.0).max(1.0)).min(0.9 * cpu_limit);
        // What the calls add to the service's latency: the slowest call
        // that most requests make.
        let own_calls = calls.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let through = |pick: fn(&Measured) -> Option<f64>| {
            own_calls
                .iter()
                .filter(|c| c.probability >= 0.5)
                .filter_map(|c| Some(pick(&measured[&c.to])? + c.network_latency_ms))
                .fold(0.0, f64::max)
        };
        let (mut service_time_cv, mut wait_ms, mut wait_cv) = (1.0, 0.0, 1.0);
        if let (Some(p50), Some(p99)) = (m.p50, m.p99) {
            let own50 = (p50 - through(|m| m.p50)).max(0.05 * p50);
            let own99 = (p99 - through(|m| m.p99)).max(own50);
            let (own_mean, own_cv) = lognormal(own50, own99);
            if own_mean <= 1.25 * cpu_ms {
                service_time_cv = own_cv.min(4.0);
            } else {
                wait_ms = own_mean - cpu_ms;
                wait_cv = (own_cv * own_mean / wait_ms).min(4.0);
            }
        }
        let callee_errors: f64 = own_calls
            .iter()
            .map(|c| c.probability * measured[&c.to].error)
            .sum();
        let error_rate = (m.error - callee_errors).clamp(0.0, 0.5);
        let memory: Vec<(f64, f64)> = w
            .iter()
            .filter(|m| m.memory_usage.is_finite() && m.memory_usage > 0.0)
            .map(|m| {
                let pods = m.ready_replicas.max(1) as f64;
                (
                    m.active_connections as f64 / pods,
                    m.memory_usage * memory_limit,
                )
            })
            .collect();
        let (base, per_request) = line(&memory);
        let (memory_base, memory_per_request) = if memory.is_empty() {
            (
                defaults.revision.memory_base_mib.min(0.5 * memory_limit),
                0.0,
            )
        } else if per_request > 0.0 && base >= 0.0 {
            (base, per_request)
        } else {
            (
                memory.iter().map(|p| p.1).sum::<f64>() / memory.len() as f64,
                0.0,
            )
        };
        let mut spec = defaults.clone();
        spec.name = name.to_owned();
        spec.replicas = replicas;
        spec.cpu_request = cpu_request;
        spec.cpu_limit = cpu_limit;
        spec.memory_request_mib = memory_request;
        spec.memory_limit_mib = memory_limit;
        spec.revision.service_time_ms = cpu_ms;
        spec.revision.background_cores = background_per_pod;
        spec.revision.service_time_cv = service_time_cv;
        spec.revision.wait_ms = wait_ms;
        spec.revision.wait_cv = wait_cv;
        spec.revision.error_rate = error_rate;
        spec.revision.memory_base_mib = memory_base.min(0.9 * memory_limit);
        spec.revision.memory_per_request_mib = memory_per_request;
        spec.calls = own_calls.to_vec();
        if let Some(p) = shape.readiness {
            spec.readiness = p;
        }
        if let Some(p) = shape.liveness {
            spec.liveness = p;
        }
        if let Some(r) = shape.rolling_update {
            spec.rolling_update = r;
        }
        services.push(spec);
    }

    let mut traces = BTreeMap::new();
    let mut loads = Vec::new();
    for root in &roots {
        let file = format!("{root}-load.csv");
        traces.insert(file.clone(), Arc::new(load_trace(&windows[*root], from)));
        loads.push(LoadSpec {
            service: (*root).to_owned(),
            timeout_ms: 10_000.0,
            curve: CurveSpec::Trace {
                file,
                scale: None,
                peak: None,
                mean: None,
                speedup: 1.0,
                offset_s: 0.0,
                looped: false,
            },
        });
    }
    let entry_p99 = measured[roots[0]].p99.unwrap_or(100.0);
    let mut cluster = ClusterSpec::default();
    let cores_asked: f64 = services
        .iter()
        .map(|s| s.replicas as f64 * s.cpu_request)
        .sum();
    let per_node = cluster.nodes[0].cpu * cluster.nodes[0].count as f64;
    if 2.0 * cores_asked > per_node {
        cluster.nodes[0].count = (2.0 * cores_asked / cluster.nodes[0].cpu).ceil() as u32;
    }
    let scenario = Scenario {
        name: opts.name.clone(),
        description: format!(
            "twin of {} built from {from}..{to} s (recording seconds)",
            rec.dir.display()
        ),
        duration_s: to - from,
        seed: opts.seed,
        cluster,
        services,
        loads,
        faults: Vec::new(),
        mesh: MeshSpec::default(),
        slo: SloSpec {
            latency_ms: crate::train::recorded::DEFAULT_SLO_LATENCY_FACTOR * entry_p99,
            objective: 0.99,
            window_s: 60.0,
        },
        metrics: MetricsSpec {
            scrape_interval_s: interval,
            rate_window_s: interval.max(MetricsSpec::default().rate_window_s),
            buckets_s: None,
        },
        kubernetes: KubernetesSpec::default(),
        controller: ControllerSpec::default(),
        experiment: None,
    };
    let mut twin = Twin {
        scenario,
        traces,
        window: (from, to),
        calibration: Vec::new(),
    };
    calibrate(&mut twin, rec, opts.calibration_rounds)?;
    Ok(twin)
}

/// A root's request rate over the stretch as a trace from time zero; an
/// unmeasured scrape holds the last rate.
pub(super) fn load_trace(w: &[&ServiceMetrics], from: f64) -> Trace {
    let mut last = 0.0;
    let mut t = Vec::with_capacity(w.len());
    let mut value = Vec::with_capacity(w.len());
    for m in w {
        if m.request_rate.is_finite() {
            last = m.request_rate.max(0.0);
        }
        t.push(m.timestamp.as_secs_f64() - from);
        value.push(last);
    }
    Trace { t, value }
}

/// Runs the twin over its own stretch and moves each service's off-CPU
/// time towards the recorded p50 and its spread towards the recorded
/// p99 / p50; records the error before each round and after the last.
fn calibrate(twin: &mut Twin, rec: &Recording, rounds: u32) -> Result<(), TwinError> {
    for round in 0..=rounds {
        let (from, to) = twin.window;
        let f = super::fidelity::compare(&twin.scenario, &twin.traces, rec, from, to, 1)?;
        let errors = |pick: fn(&super::ServiceFidelity) -> (f64, f64)| {
            let mut e: Vec<f64> = f
                .services
                .iter()
                .map(|s| {
                    let (sim, recorded) = pick(s);
                    (sim / recorded - 1.0).abs()
                })
                .collect();
            median(&mut e).unwrap_or(f64::NAN)
        };
        twin.calibration.push((
            errors(|s| (s.median_p50_ms.1, s.median_p50_ms.0)),
            errors(|s| (s.median_p99_ms.1, s.median_p99_ms.0)),
        ));
        if round == rounds {
            break;
        }
        for s in &f.services {
            let (rec50, sim50) = s.median_p50_ms;
            let (rec99, sim99) = s.median_p99_ms;
            if ![rec50, sim50, rec99, sim99]
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
            {
                continue;
            }
            let Some(spec) = twin
                .scenario
                .services
                .iter_mut()
                .find(|x| x.name == s.service)
            else {
                continue;
            };
            let r = &mut spec.revision;
            if (rec50 / sim50 - 1.0).abs() > CALIBRATION_DEADBAND
                && (r.wait_ms > 0.0 || rec50 > sim50)
            {
                r.wait_ms = (r.wait_ms + rec50 - sim50).max(0.0);
            }
            let spread = (rec99 / rec50) / (sim99 / sim50);
            if (spread - 1.0).abs() > CALIBRATION_DEADBAND {
                let cv = if r.wait_ms > 0.0 {
                    &mut r.wait_cv
                } else {
                    &mut r.service_time_cv
                };
                *cv = (*cv * spread.clamp(0.5, 2.0)).clamp(0.0, 4.0);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nnls_recovers_two_callers_rates() {
        // callee = 2 x a + 0.5 x b, exactly.
        let rows: Vec<(f64, Vec<f64>)> = (0..20)
            .map(|i| {
                let a = 10.0 + i as f64;
                let b = 30.0 - (i % 7) as f64;
                (2.0 * a + 0.5 * b, vec![a, b])
            })
            .collect();
        let c = nnls(&rows, 2);
        assert!(
            (c[0] - 2.0).abs() < 1e-6 && (c[1] - 0.5).abs() < 1e-6,
            "{c:?}"
        );
        // A caller that only adds noise gets no negative share.
        let rows: Vec<(f64, Vec<f64>)> = (0..20)
            .map(|i| (i as f64, vec![i as f64, 20.0 - i as f64]))
            .collect();
        let c = nnls(&rows, 2);
        assert!(c[1] >= 0.0 && (c[0] - 1.0).abs() < 1e-6, "{c:?}");
    }

    fn measured(rate: f64, p50: Option<f64>, p99: Option<f64>, rates: Vec<(f64, f64)>) -> Measured {
        Measured {
            rate,
            p50,
            p99,
            error: 0.0,
            rates,
        }
    }

    #[test]
    fn a_callers_latency_bounds_its_parallel_calls() {
        // Callee: p50 10 ms, p99 100 ms (sigma = ln 10 / z99).
        let callee = measured(1.0, Some(10.0), Some(100.0), Vec::new());
        // A caller as fast as the callee makes one call at most.
        let same = measured(1.0, Some(10.0), Some(100.0), Vec::new());
        assert_eq!(most_parallel_calls(&same, &callee), Some(1));
        // Even faster: still the one call its edge shows.
        let faster = measured(1.0, Some(5.0), Some(50.0), Vec::new());
        assert_eq!(most_parallel_calls(&faster, &callee), Some(1));
        // p50 20 ms: F(20) = Phi(ln 2 / sigma) = 0.758, and 0.758^2 >= 0.5 >
        // 0.758^3; the p99 of 1 s bounds nothing tighter.
        let slower = measured(1.0, Some(20.0), Some(1000.0), Vec::new());
        assert_eq!(most_parallel_calls(&slower, &callee), Some(2));
        // Without percentiles nothing is bounded.
        let blind = measured(1.0, None, Some(1000.0), Vec::new());
        assert_eq!(most_parallel_calls(&blind, &callee), None);
    }

    #[test]
    fn a_fit_beyond_the_callers_latency_is_held_there_and_the_rest_refitted() {
        // `mid` is called by `front` and both call `leaf`: leaf = 1 x front
        // + 3 x mid by the rates. `mid` is no slower than `leaf`, so it
        // cannot make three parallel calls: held at one, `front`'s share is
        // fitted again to what is left.
        let times: Vec<f64> = (0..60).map(|i| 60.0 * i as f64).collect();
        let front: Vec<(f64, f64)> = times
            .iter()
            .map(|&t| (t, 10.0 + 3.0 * (t / 600.0).sin()))
            .collect();
        let mid: Vec<(f64, f64)> = front
            .iter()
            .map(|&(t, r)| (t, 0.7 * r + 3.0 * (t / 170.0).cos()))
            .collect();
        let leaf: Vec<(f64, f64)> = front
            .iter()
            .zip(&mid)
            .map(|(&(t, f), &(_, m))| (t, f + 3.0 * m))
            .collect();
        let (ff, fm): (f64, f64) = front.iter().zip(&mid).fold((0.0, 0.0), |(ff, fm), (f, m)| {
            (ff + f.1 * f.1, fm + f.1 * m.1)
        });
        let edge = |caller: &str| EdgeSeries {
            caller: caller.to_owned(),
            callee: "leaf".to_owned(),
            t: times.clone(),
            request_rate: vec![f64::NAN; times.len()],
            ..EdgeSeries::default()
        };
        let (a, b) = (edge("front"), edge("mid"));
        let mut by_name = BTreeMap::new();
        by_name.insert(
            "front".to_owned(),
            measured(10.0, Some(200.0), Some(900.0), front),
        );
        by_name.insert(
            "leaf".to_owned(),
            measured(31.0, Some(3.3), Some(70.0), leaf),
        );
        // Without `mid`'s latency the rates are fitted as they are.
        by_name.insert("mid".to_owned(), measured(7.0, None, None, mid.clone()));
        let calls = calls_per_request("leaf", &[&a, &b], &by_name, 0.0, 3600.0);
        assert!(
            (calls[0] - 1.0).abs() < 1e-6 && (calls[1] - 3.0).abs() < 1e-6,
            "{calls:?}"
        );
        by_name.insert("mid".to_owned(), measured(7.0, Some(8.0), Some(75.0), mid));
        let calls = calls_per_request("leaf", &[&a, &b], &by_name, 0.0, 3600.0);
        assert_eq!(calls[1], 1.0, "{calls:?}");
        assert!((calls[0] - (1.0 + 2.0 * fm / ff)).abs() < 1e-6, "{calls:?}");
    }

    #[test]
    fn a_lognormal_through_its_percentiles() {
        let (mean, cv) = lognormal(10.0, 10.0);
        assert!((mean - 10.0).abs() < 1e-12 && cv.abs() < 1e-12);
        // cv 1: sigma^2 = ln 2.
        let sigma = 2f64.ln().sqrt();
        let (mean, cv) = lognormal(10.0, 10.0 * (Z99 * sigma).exp());
        assert!((cv - 1.0).abs() < 1e-9, "{cv}");
        assert!((mean - 10.0 * 2f64.sqrt()).abs() < 1e-9, "{mean}");
    }

    #[test]
    fn a_line_through_points_and_a_flat_one() {
        let (a, b) = line(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]);
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
        assert_eq!(line(&[(1.0, 4.0), (1.0, 6.0)]), (5.0, 0.0));
    }
}
