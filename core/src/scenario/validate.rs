//! Semantic checks of a parsed scenario. Each check returns the field path of
//! the offending value so the caller can point at its line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::{
    CurveSpec, DistSpec, FaultKind, FieldPath, IntOrPercent, ProbeSpec, Problem, Scenario,
};
use crate::load::Trace;

type Check = Result<(), Problem>;

fn fail(path: FieldPath, message: impl Into<String>) -> Check {
    Err(Problem {
        path,
        message: message.into(),
    })
}

fn positive(path: FieldPath, v: f64) -> Check {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        fail(path, format!("must be a positive number, found {v}"))
    }
}

fn non_negative(path: FieldPath, v: f64) -> Check {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        fail(path, format!("must be zero or positive, found {v}"))
    }
}

fn probability(path: FieldPath, v: f64) -> Check {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        fail(
            path,
            format!("is a probability and must lie in [0, 1], found {v}"),
        )
    }
}

pub(super) fn check(s: &Scenario) -> Check {
    let root = FieldPath::default();
    if s.name.trim().is_empty() {
        return fail(root.key("name"), "must not be empty");
    }
    positive(root.key("duration_s"), s.duration_s)?;
    if s.duration_s > 90.0 * 86_400.0 {
        return fail(
            root.key("duration_s"),
            "is longer than 90 days; split the run",
        );
    }

    let nodes = root.key("cluster").key("node");
    if s.cluster.nodes.is_empty() {
        return fail(root.key("cluster"), "needs at least one node");
    }
    let mut node_names = BTreeSet::new();
    for (i, n) in s.cluster.nodes.iter().enumerate() {
        let p = nodes.index(i);
        positive(p.key("cpu"), n.cpu)?;
        positive(p.key("memory_mib"), n.memory_mib)?;
        if n.count == 0 || n.count > MAX_NODES {
            return fail(
                p.key("count"),
                format!("must be 1 to {MAX_NODES}, found {}", n.count),
            );
        }
        for name in expand_node_names(&n.name, n.count) {
            if !node_names.insert(name.clone()) {
                return fail(p.key("name"), format!("node `{name}` is defined twice"));
            }
        }
    }

    let svc = root.key("service");
    if s.services.is_empty() {
        return fail(root, "needs at least one [[service]]");
    }
    let mut names = BTreeMap::new();
    for (i, sv) in s.services.iter().enumerate() {
        let p = svc.index(i);
        if sv.name.trim().is_empty() {
            return fail(p.key("name"), "must not be empty");
        }
        if names.insert(sv.name.as_str(), i).is_some() {
            return fail(
                p.key("name"),
                format!("service `{}` is defined twice", sv.name),
            );
        }
    }
    for (i, sv) in s.services.iter().enumerate() {
        let p = svc.index(i);
        if sv.replicas > 10_000 {
            return fail(p.key("replicas"), "is above 10000");
        }
        positive(p.key("cpu_request"), sv.cpu_request)?;
        positive(p.key("cpu_limit"), sv.cpu_limit)?;
        if sv.cpu_limit < sv.cpu_request {
            return fail(
                p.key("cpu_limit"),
                format!("{} is below cpu_request {}", sv.cpu_limit, sv.cpu_request),
            );
        }
        positive(p.key("memory_request_mib"), sv.memory_request_mib)?;
        positive(p.key("memory_limit_mib"), sv.memory_limit_mib)?;
        if sv.memory_limit_mib < sv.memory_request_mib {
            return fail(p.key("memory_limit_mib"), "is below memory_request_mib");
        }
        if sv.max_connections == 0 {
            return fail(p.key("max_connections"), "must be at least 1");
        }
        check_dist(&p.key("startup"), &sv.startup)?;
        let r = p.key("revision");
        positive(r.key("service_time_ms"), sv.revision.service_time_ms)?;
        non_negative(r.key("service_time_cv"), sv.revision.service_time_cv)?;
        non_negative(r.key("wait_ms"), sv.revision.wait_ms)?;
        non_negative(r.key("wait_cv"), sv.revision.wait_cv)?;
        non_negative(r.key("background_cores"), sv.revision.background_cores)?;
        probability(r.key("error_rate"), sv.revision.error_rate)?;
        non_negative(r.key("memory_base_mib"), sv.revision.memory_base_mib)?;
        non_negative(
            r.key("memory_per_request_mib"),
            sv.revision.memory_per_request_mib,
        )?;
        non_negative(r.key("leak_mib_per_s"), sv.revision.leak_mib_per_s)?;
        if let Some(c) = sv.revision.crash_after_s {
            positive(r.key("crash_after_s"), c)?;
        }
        if sv.revision.memory_base_mib >= sv.memory_limit_mib {
            return fail(
                r.key("memory_base_mib"),
                "is at or above memory_limit_mib: every pod would be OOM-killed at start",
            );
        }
        for (j, c) in sv.calls.iter().enumerate() {
            let cp = p.key("call").index(j);
            if !names.contains_key(c.to.as_str()) {
                return fail(
                    cp.key("to"),
                    format!(
                        "unknown service `{}` (services: {})",
                        c.to,
                        list(names.keys())
                    ),
                );
            }
            if c.to == sv.name {
                return fail(cp.key("to"), "a service cannot call itself");
            }
            probability(cp.key("probability"), c.probability)?;
            positive(cp.key("timeout_ms"), c.timeout_ms)?;
            non_negative(cp.key("network_latency_ms"), c.network_latency_ms)?;
        }
        if let Some(b) = &sv.failover_to {
            let bp = p.key("failover_to");
            if !names.contains_key(b.as_str()) {
                return fail(
                    bp,
                    format!("unknown service `{b}` (services: {})", list(names.keys())),
                );
            }
            if *b == sv.name {
                return fail(bp, "a service cannot be its own backup");
            }
            if s.services
                .iter()
                .any(|x| x.name == *b && x.calls.iter().any(|c| c.to == sv.name))
            {
                return fail(
                    bp,
                    format!(
                        "the backup `{b}` calls `{}`: a fail-over would loop",
                        sv.name
                    ),
                );
            }
        }
        check_probe(&p.key("readiness"), &sv.readiness)?;
        check_probe(&p.key("liveness"), &sv.liveness)?;
        check_int_or_percent(
            &p.key("rolling_update").key("max_surge"),
            &sv.rolling_update.max_surge,
        )?;
        check_int_or_percent(
            &p.key("rolling_update").key("max_unavailable"),
            &sv.rolling_update.max_unavailable,
        )?;
    }
    check_acyclic(s)?;

    if s.loads.is_empty() {
        return fail(root, "needs at least one [[load]]");
    }
    for (i, l) in s.loads.iter().enumerate() {
        let p = root.key("load").index(i);
        if !names.contains_key(l.service.as_str()) {
            return fail(p.key("service"), format!("unknown service `{}`", l.service));
        }
        positive(p.key("timeout_ms"), l.timeout_ms)?;
        check_curve(&p.key("curve"), &l.curve)?;
    }

    for (i, f) in s.faults.iter().enumerate() {
        check_fault(s, &root.key("fault").index(i), f, &names, &node_names)?;
    }

    let slo = root.key("slo");
    positive(slo.key("latency_ms"), s.slo.latency_ms)?;
    if !(s.slo.objective > 0.0 && s.slo.objective <= 1.0) {
        return fail(
            slo.key("objective"),
            format!("must lie in (0, 1], found {}", s.slo.objective),
        );
    }
    positive(slo.key("window_s"), s.slo.window_s)?;

    let m = root.key("metrics");
    if !(s.metrics.scrape_interval_s >= MIN_SCRAPE_INTERVAL_S
        && s.metrics.scrape_interval_s.is_finite())
    {
        return fail(
            m.key("scrape_interval_s"),
            format!(
                "must be at least {MIN_SCRAPE_INTERVAL_S} s, found {}",
                s.metrics.scrape_interval_s
            ),
        );
    }
    positive(m.key("rate_window_s"), s.metrics.rate_window_s)?;
    if s.metrics.rate_window_s < s.metrics.scrape_interval_s {
        return fail(
            m.key("rate_window_s"),
            "must be at least one scrape interval",
        );
    }
    if let Some(b) = &s.metrics.buckets_s
        && let Err(e) = crate::metrics::Buckets::new(b.clone())
    {
        return fail(m.key("buckets_s"), e.to_string());
    }

    let k = root.key("kubernetes");
    let kk = &s.kubernetes;
    for (name, v) in [
        ("node_monitor_grace_s", kk.node_monitor_grace_s),
        ("not_ready_toleration_s", kk.not_ready_toleration_s),
        ("backoff_initial_s", kk.backoff_initial_s),
        ("backoff_max_s", kk.backoff_max_s),
        ("backoff_reset_s", kk.backoff_reset_s),
    ] {
        positive(k.key(name), v)?;
    }
    non_negative(k.key("termination_grace_s"), kk.termination_grace_s)?;
    if kk.backoff_max_s < kk.backoff_initial_s {
        return fail(k.key("backoff_max_s"), "is below backoff_initial_s");
    }
    check_controller(&root.key("controller"), &s.controller)?;
    let r = root.key("mesh").key("retries");
    positive(r.key("base_ms"), s.mesh.retries.base_ms)?;
    if s.mesh.retries.max_ms < s.mesh.retries.base_ms {
        return fail(r.key("max_ms"), "is below base_ms");
    }
    let o = root.key("mesh").key("outlier_detection");
    let od = &s.mesh.outlier_detection;
    positive(o.key("interval_s"), od.interval_s)?;
    positive(o.key("base_ejection_s"), od.base_ejection_s)?;
    positive(o.key("max_ejection_s"), od.max_ejection_s)?;
    if !(0.0..=100.0).contains(&od.max_ejection_percent) {
        return fail(o.key("max_ejection_percent"), "must lie in [0, 100]");
    }
    if od.consecutive_5xx == 0 {
        return fail(o.key("consecutive_5xx"), "must be at least 1");
    }
    if let Some(x) = &s.experiment {
        check_experiment(&root.key("experiment"), x, s)?;
    }
    Ok(())
}

fn check_experiment(p: &FieldPath, x: &super::ExperimentSpec, s: &Scenario) -> Check {
    if x.fault >= s.faults.len() {
        return fail(
            p.key("fault"),
            format!(
                "is fault index {} but the scenario has {} [[fault]] entries",
                x.fault,
                s.faults.len()
            ),
        );
    }
    let h = p.key("hypothesis");
    let hs = &x.hypothesis;
    for (name, v) in [
        ("probe_interval_s", hs.probe_interval_s),
        ("window_s", hs.window_s),
    ] {
        positive(h.key(name), v)?;
        if v.fract() != 0.0 {
            return fail(h.key(name), format!("must be whole seconds, found {v}"));
        }
    }
    if hs.passes_to_recover == 0 {
        return fail(h.key("passes_to_recover"), "must be at least 1");
    }
    if let Some(e) = hs.max_error_rate {
        probability(h.key("max_error_rate"), e)?;
    }
    if let Some(l) = hs.max_p99_ms {
        positive(h.key("max_p99_ms"), l)?;
    }
    if hs.max_error_rate.is_none() && hs.max_p99_ms.is_none() && hs.min_ready.is_empty() {
        return fail(
            h,
            "has no probe: give max_error_rate, max_p99_ms or [[experiment.hypothesis.min_ready]]",
        );
    }
    for (i, m) in hs.min_ready.iter().enumerate() {
        if !s.services.iter().any(|sv| sv.name == m.service) {
            return fail(
                h.key("min_ready").index(i).key("service"),
                format!("unknown service `{}`", m.service),
            );
        }
    }
    if let Some(a) = &x.abort {
        let ap = p.key("abort");
        probability(ap.key("max_error_rate"), a.max_error_rate)?;
        positive(ap.key("for_s"), a.for_s)?;
    }
    Ok(())
}

pub(super) fn check_controller(p: &FieldPath, c: &super::ControllerSpec) -> Check {
    use super::ControllerKind::*;
    let k = c.kind;
    // Each kind's own settings; any of them under another kind is an error.
    let owned: [(super::ControllerKind, &[(&str, bool)]); 3] = [
        (
            Hpa,
            &[
                ("target_cpu_percent", c.target_cpu_percent.is_some()),
                (
                    "scale_up_stabilization_s",
                    c.scale_up_stabilization_s.is_some(),
                ),
                (
                    "scale_down_stabilization_s",
                    c.scale_down_stabilization_s.is_some(),
                ),
                ("scale_up_percent", c.scale_up_percent.is_some()),
                ("scale_down_percent", c.scale_down_percent.is_some()),
            ],
        ),
        (
            Kpa,
            &[
                ("metric", c.metric.is_some()),
                ("target_concurrency", c.target_concurrency.is_some()),
                ("scale_down_delay_s", c.scale_down_delay_s.is_some()),
            ],
        ),
        (
            Selfheal,
            &[
                ("cpu_target", c.cpu_target.is_some()),
                ("capacity_rps", c.capacity_rps.is_some()),
                ("horizon_s", c.horizon_s.is_some()),
                ("scale_up_cooldown_s", c.scale_up_cooldown_s.is_some()),
                ("scale_down_cooldown_s", c.scale_down_cooldown_s.is_some()),
                ("interval_level", c.interval_level.is_some()),
                ("plan_on_upper", c.plan_on_upper.is_some()),
                ("sizing", c.sizing.is_some()),
            ],
        ),
    ];
    for (owner, fields) in owned {
        for &(name, present) in fields {
            if present && k != owner {
                return fail(
                    p.key(name),
                    format!("does not apply to a `{k:?}` controller").to_lowercase(),
                );
            }
        }
    }
    for (name, present) in [
        ("healing_dry_run", c.healing_dry_run),
        ("healing_model", c.healing_model.is_some()),
        ("healing_first", c.healing_first.is_some()),
        ("healing_selector", c.healing_selector.is_some()),
    ] {
        if present && !c.healing {
            return fail(p.key(name), "needs healing = true");
        }
    }
    if c.min_replicas == 0 {
        return fail(
            p.key("min_replicas"),
            "must be at least 1 (the simulated activator does not hold requests for a revision with no ready pod: no scale to zero)",
        );
    }
    if c.max_replicas < c.min_replicas {
        return fail(p.key("max_replicas"), "is below min_replicas");
    }
    for (name, v) in [
        ("target_cpu_percent", c.target_cpu_percent),
        ("scale_up_percent", c.scale_up_percent),
        ("scale_down_percent", c.scale_down_percent),
    ] {
        if v == Some(0) {
            return fail(p.key(name), "must be at least 1");
        }
    }
    // autoscaling/v2 validation: a stabilisation window is 0 to 3600 s;
    // Knative's scale-down-delay is 0 to 1 h too.
    for (name, v) in [
        ("scale_up_stabilization_s", c.scale_up_stabilization_s),
        ("scale_down_stabilization_s", c.scale_down_stabilization_s),
        ("scale_down_delay_s", c.scale_down_delay_s),
    ] {
        if let Some(v) = v
            && v > 3600
        {
            return fail(p.key(name), format!("must be at most 3600, found {v}"));
        }
    }
    for (name, v) in [
        ("target_concurrency", c.target_concurrency),
        ("cpu_target", c.cpu_target),
        ("capacity_rps", c.capacity_rps),
        ("horizon_s", c.horizon_s),
    ] {
        if let Some(v) = v {
            positive(p.key(name), v)?;
        }
    }
    for (name, v) in [
        ("scale_up_cooldown_s", c.scale_up_cooldown_s),
        ("scale_down_cooldown_s", c.scale_down_cooldown_s),
    ] {
        if let Some(v) = v {
            non_negative(p.key(name), v)?;
        }
    }
    if let Some(l) = c.interval_level
        && !(l > 0.0 && l < 1.0)
    {
        return fail(
            p.key("interval_level"),
            format!("must lie in (0, 1), found {l}"),
        );
    }
    Ok(())
}

/// The most nodes one `[[cluster.node]]` entry expands to, and the largest
/// trace file read: far beyond a real scenario, far below what exhausts
/// memory.
pub const MAX_NODES: u32 = 10_000;

/// The highest arrival rate one `[[load]]` may reach, requests per second:
/// the simulator serves about 4 M requests per second of wall time.
pub const MAX_LOAD_RATE: f64 = 1.0e6;

/// The most requests one run may be asked for (all loads at their peak for
/// the whole run), about 20 minutes of simulation on one core.
pub const MAX_REQUESTS: f64 = 5.0e9;

/// The request budget: each load's peak rate and all loads' peaks over the
/// run stay within what the simulator can run in bounded time and memory.
pub(super) fn check_request_budget(sc: &super::LoadedScenario) -> Check {
    let root = FieldPath::default();
    let mut total = 0.0;
    for (i, peak) in crate::load::peaks(sc).into_iter().enumerate() {
        let path = root.key("load").index(i).key("curve");
        // A trace that did not load was reported by `read_traces` already.
        let Ok(peak) = peak else { continue };
        if peak.is_nan() || peak > MAX_LOAD_RATE {
            return fail(
                path,
                format!("peaks at {peak:e} requests/s; at most {MAX_LOAD_RATE:e} per load"),
            );
        }
        total += peak * sc.spec.duration_s;
        if total > MAX_REQUESTS {
            return fail(
                path,
                format!(
                    "the loads up to this one ask for up to {total:.3e} requests over {} s; at most {MAX_REQUESTS:e} per run",
                    sc.spec.duration_s
                ),
            );
        }
    }
    Ok(())
}
/// The shortest scrape interval: a run of an hour then scrapes 36,000
/// times (1e-9 s asked for 3.6e12 scrapes and never ended).
pub const MIN_SCRAPE_INTERVAL_S: f64 = 0.1;
pub const MAX_TRACE_BYTES: u64 = 256 * 1024 * 1024;

/// A trace file's text: a regular file (a FIFO would block for ever, a
/// device never end) of at most `MAX_TRACE_BYTES`.
fn read_trace_file(path: &Path) -> Result<String, TraceFileError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(TraceFileError::NotAFile);
    }
    if meta.len() > MAX_TRACE_BYTES {
        return Err(TraceFileError::TooLarge {
            bytes: Some(meta.len()),
        });
    }
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| {
        use std::io::Read as _;
        // A file that grows while read stops at the limit.
        f.take(MAX_TRACE_BYTES + 1).read_to_string(&mut text)
    })?;
    if text.len() as u64 > MAX_TRACE_BYTES {
        return Err(TraceFileError::TooLarge { bytes: None });
    }
    Ok(text)
}

#[derive(Debug, thiserror::Error)]
enum TraceFileError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("{}over the {MAX_TRACE_BYTES}-byte limit", bytes.map(|b| format!("{b} bytes, ")).unwrap_or_default())]
    TooLarge { bytes: Option<u64> },
}

pub fn expand_node_names(name: &str, count: u32) -> Vec<String> {
    if count == 1 {
        vec![name.to_string()]
    } else {
        (0..count).map(|i| format!("{name}-{i}")).collect()
    }
}

fn list<'a>(it: impl Iterator<Item = &'a &'a str>) -> String {
    it.map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

fn check_dist(p: &FieldPath, d: &DistSpec) -> Check {
    match d {
        DistSpec::Fixed { value_s } => non_negative(p.key("value_s"), *value_s),
        DistSpec::Uniform { min_s, max_s } => {
            non_negative(p.key("min_s"), *min_s)?;
            if max_s < min_s {
                fail(p.key("max_s"), "is below min_s")
            } else {
                Ok(())
            }
        }
        DistSpec::Lognormal { mean_s, cv } => {
            positive(p.key("mean_s"), *mean_s)?;
            non_negative(p.key("cv"), *cv)
        }
    }
}

fn check_probe(p: &FieldPath, pr: &ProbeSpec) -> Check {
    positive(p.key("period_s"), pr.period_s)?;
    positive(p.key("timeout_s"), pr.timeout_s)?;
    non_negative(p.key("initial_delay_s"), pr.initial_delay_s)?;
    if pr.success_threshold == 0 {
        return fail(p.key("success_threshold"), "must be at least 1");
    }
    if pr.failure_threshold == 0 {
        return fail(p.key("failure_threshold"), "must be at least 1");
    }
    Ok(())
}

fn check_int_or_percent(p: &FieldPath, v: &IntOrPercent) -> Check {
    match v {
        IntOrPercent::Int(_) => Ok(()),
        IntOrPercent::Percent(s) => match parse_percent_value(s) {
            Some(_) => Ok(()),
            None => fail(
                p.clone(),
                format!("`{s}` is neither a count nor a percent such as \"25%\""),
            ),
        },
    }
}

/// `"25%"` -> 25.0.
pub fn parse_percent_value(s: &str) -> Option<f64> {
    let v: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

fn check_acyclic(s: &Scenario) -> Check {
    // Depth-first search with colours; a back edge is a cycle.
    let idx = s.service_index();
    // Colours: 0 unseen, 1 on the path, 2 done. The path is an explicit
    // stack of (service, next call to follow), so a deep chain of services
    // cannot overflow the thread's stack.
    let mut colour = vec![0u8; s.services.len()];
    let find_cycle = |root: usize, colour: &mut [u8]| -> Option<Vec<usize>> {
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some((i, next)) = path.last_mut() {
            let i = *i;
            let Some(c) = s.services[i].calls.get(*next) else {
                colour[i] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            let j = idx[c.to.as_str()];
            match colour[j] {
                1 => {
                    let from = path.iter().position(|&(k, _)| k == j).unwrap_or(0);
                    let mut cyc: Vec<usize> = path[from..].iter().map(|&(k, _)| k).collect();
                    cyc.push(j);
                    return Some(cyc);
                }
                0 => {
                    colour[j] = 1;
                    path.push((j, 0));
                }
                _ => {}
            }
        }
        None
    };
    for i in 0..s.services.len() {
        if colour[i] == 0
            && let Some(cycle) = find_cycle(i, &mut colour)
        {
            let names: Vec<&str> = cycle.iter().map(|&k| s.services[k].name.as_str()).collect();
            let first = cycle[0];
            let call = s.services[first]
                .calls
                .iter()
                .position(|c| c.to == names[1])
                .unwrap_or(0);
            return fail(
                FieldPath::default()
                    .key("service")
                    .index(first)
                    .key("call")
                    .index(call)
                    .key("to"),
                format!("the call graph has a cycle: {}", names.join(" -> ")),
            );
        }
    }
    Ok(())
}

fn check_curve(p: &FieldPath, c: &CurveSpec) -> Check {
    match c {
        CurveSpec::Constant { rate } => non_negative(p.key("rate"), *rate),
        CurveSpec::Ramp {
            from,
            to,
            start_s,
            end_s,
        } => {
            non_negative(p.key("from"), *from)?;
            non_negative(p.key("to"), *to)?;
            non_negative(p.key("start_s"), *start_s)?;
            if end_s <= start_s {
                fail(p.key("end_s"), "must be after start_s")
            } else {
                Ok(())
            }
        }
        CurveSpec::Step {
            before,
            after,
            at_s,
        } => {
            non_negative(p.key("before"), *before)?;
            non_negative(p.key("after"), *after)?;
            non_negative(p.key("at_s"), *at_s)
        }
        CurveSpec::Diurnal {
            mean,
            amplitude,
            period_s,
            peak_s,
        } => {
            non_negative(p.key("mean"), *mean)?;
            if !(0.0..=1.0).contains(amplitude) {
                return fail(
                    p.key("amplitude"),
                    format!("must lie in [0, 1] (a relative swing), found {amplitude}"),
                );
            }
            positive(p.key("period_s"), *period_s)?;
            non_negative(p.key("peak_s"), *peak_s)
        }
        CurveSpec::FlashCrowd {
            base,
            peak,
            start_s,
            rise_s,
            decay_s,
        } => {
            non_negative(p.key("base"), *base)?;
            non_negative(p.key("peak"), *peak)?;
            non_negative(p.key("start_s"), *start_s)?;
            positive(p.key("rise_s"), *rise_s)?;
            positive(p.key("decay_s"), *decay_s)
        }
        CurveSpec::Bursts {
            base,
            multiplier,
            mean_gap_s,
            mean_length_s,
        } => {
            non_negative(p.key("base"), *base)?;
            non_negative(p.key("multiplier"), *multiplier)?;
            positive(p.key("mean_gap_s"), *mean_gap_s)?;
            positive(p.key("mean_length_s"), *mean_length_s)
        }
        CurveSpec::Noise { cv, step_s } => {
            non_negative(p.key("cv"), *cv)?;
            positive(p.key("step_s"), *step_s)
        }
        CurveSpec::Trace {
            file,
            scale,
            peak,
            mean,
            speedup,
            offset_s,
            ..
        } => {
            if file.trim().is_empty() {
                return fail(p.key("file"), "must name a CSV file");
            }
            let given = [scale.is_some(), peak.is_some(), mean.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given > 1 {
                return fail(
                    p.key("scale"),
                    "give at most one of `scale`, `peak` and `mean`",
                );
            }
            for (k, v) in [("scale", scale), ("peak", peak), ("mean", mean)] {
                if let Some(v) = v {
                    non_negative(p.key(k), *v)?;
                }
            }
            positive(p.key("speedup"), *speedup)?;
            non_negative(p.key("offset_s"), *offset_s)
        }
        CurveSpec::Sum { parts } | CurveSpec::Product { parts } => {
            if parts.is_empty() {
                return fail(p.key("parts"), "needs at least one curve");
            }
            for (i, c) in parts.iter().enumerate() {
                check_curve(&p.key("parts").index(i), c)?;
            }
            Ok(())
        }
    }
}

fn check_fault(
    s: &Scenario,
    p: &FieldPath,
    f: &super::FaultSpec,
    services: &BTreeMap<&str, usize>,
    nodes: &BTreeSet<String>,
) -> Check {
    non_negative(p.key("at_s"), f.at_s)?;
    if f.at_s >= s.duration_s {
        return fail(
            p.key("at_s"),
            format!(
                "{} is not before the end of the run ({} s)",
                f.at_s, s.duration_s
            ),
        );
    }
    if let Some(d) = f.duration_s {
        positive(p.key("duration_s"), d)?;
    }
    use FaultKind::*;
    // (field, present, allowed for this kind, required for this kind)
    let k = f.kind;
    let targets_pods = matches!(k, PodKill | CpuStress | MemoryLeak | Hang);
    let fields: [(&str, bool, bool, bool); 13] = [
        (
            "service",
            f.service.is_some(),
            k != NodeLoss,
            !matches!(k, NodeLoss | Latency),
        ),
        ("edge", f.edge.is_some(), k == Latency, false),
        ("node", f.node.is_some(), k == NodeLoss, k == NodeLoss),
        ("pods", f.pods.is_some(), targets_pods, false),
        ("percent", f.percent.is_some(), targets_pods, false),
        ("added_ms", f.added_ms.is_some(), k == Latency, k == Latency),
        ("cores", f.cores.is_some(), k == CpuStress, k == CpuStress),
        (
            "mode",
            f.mode.is_some(),
            k == DependencyFailure,
            k == DependencyFailure,
        ),
        (
            "error_rate",
            f.error_rate.is_some(),
            matches!(k, DependencyFailure | BadDeploy),
            false,
        ),
        (
            "leak_mib_per_s",
            f.leak_mib_per_s.is_some(),
            k == MemoryLeak,
            k == MemoryLeak,
        ),
        (
            "service_time_factor",
            f.service_time_factor.is_some(),
            k == BadDeploy,
            false,
        ),
        (
            "crash_after_s",
            f.crash_after_s.is_some(),
            k == BadDeploy,
            false,
        ),
        (
            "duration_s",
            f.duration_s.is_some(),
            !matches!(k, PodKill | BadDeploy),
            false,
        ),
    ];
    for (name, present, allowed, required) in fields {
        if present && !allowed {
            return fail(
                p.key(name),
                format!("does not apply to a `{}` fault", k.as_str()),
            );
        }
        if required && !present {
            return fail(
                p.clone(),
                format!("a `{}` fault needs `{name}`", k.as_str()),
            );
        }
    }
    if k == Latency && f.service.is_some() == f.edge.is_some() {
        return fail(
            p.clone(),
            "a `latency` fault needs exactly one of `service` and `edge`",
        );
    }
    if let Some(sv) = &f.service
        && !services.contains_key(sv.as_str())
    {
        return fail(p.key("service"), format!("unknown service `{sv}`"));
    }
    if let Some(n) = &f.node
        && !nodes.contains(n)
    {
        return fail(p.key("node"), format!("unknown node `{n}`"));
    }
    if let Some(e) = &f.edge {
        let Some((a, b)) = super::edge_ends(e) else {
            return fail(
                p.key("edge"),
                format!("`{e}` is not of the form `caller->callee`"),
            );
        };
        let known = services
            .get(a)
            .is_some_and(|&i| s.services[i].calls.iter().any(|c| c.to == b));
        if !known {
            return fail(
                p.key("edge"),
                format!("there is no call edge `{a}->{b}` in the call graph"),
            );
        }
    }
    if f.pods.is_some() && f.percent.is_some() {
        return fail(
            p.key("percent"),
            "give either `pods` or `percent`, not both",
        );
    }
    if f.pods == Some(0) {
        return fail(p.key("pods"), "must be at least 1");
    }
    if let Some(pc) = f.percent
        && !(pc > 0.0 && pc <= 100.0)
    {
        return fail(
            p.key("percent"),
            format!("must lie in (0, 100], found {pc}"),
        );
    }
    if let Some(v) = f.added_ms {
        positive(p.key("added_ms"), v)?;
    }
    if let Some(v) = f.cores {
        positive(p.key("cores"), v)?;
    }
    if let Some(v) = f.error_rate {
        probability(p.key("error_rate"), v)?;
    }
    if let Some(v) = f.leak_mib_per_s {
        positive(p.key("leak_mib_per_s"), v)?;
    }
    if let Some(v) = f.service_time_factor {
        positive(p.key("service_time_factor"), v)?;
    }
    if let Some(v) = f.crash_after_s {
        positive(p.key("crash_after_s"), v)?;
    }
    if k == BadDeploy
        && f.error_rate.is_none()
        && f.service_time_factor.is_none()
        && f.crash_after_s.is_none()
    {
        return fail(
            p.clone(),
            "a `bad_deploy` fault needs `error_rate`, `service_time_factor` or `crash_after_s`",
        );
    }
    Ok(())
}

/// Reads every trace file the scenario names, relative to `base`.
pub(super) fn read_traces(
    s: &Scenario,
    base: &Path,
) -> Result<BTreeMap<String, Arc<Trace>>, Problem> {
    let mut out = BTreeMap::new();
    fn walk(
        c: &CurveSpec,
        p: FieldPath,
        base: &Path,
        out: &mut BTreeMap<String, Arc<Trace>>,
    ) -> Result<(), Problem> {
        match c {
            CurveSpec::Trace { file, .. } => {
                if out.contains_key(file) {
                    return Ok(());
                }
                let path = base.join(file);
                let text = read_trace_file(&path).map_err(|e| Problem {
                    path: p.key("file"),
                    message: format!("cannot read trace `{}`: {e}", path.display()),
                })?;
                let trace = Trace::parse_csv(&text).map_err(|e| Problem {
                    path: p.key("file"),
                    message: format!("trace `{}` line {}: {}", path.display(), e.line, e.message),
                })?;
                out.insert(file.clone(), Arc::new(trace));
                Ok(())
            }
            CurveSpec::Sum { parts } | CurveSpec::Product { parts } => {
                for (i, c) in parts.iter().enumerate() {
                    walk(c, p.key("parts").index(i), base, out)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    for (i, l) in s.loads.iter().enumerate() {
        walk(
            &l.curve,
            FieldPath::default().key("load").index(i).key("curve"),
            base,
            &mut out,
        )?;
    }
    Ok(out)
}
