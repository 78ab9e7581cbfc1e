//! Kubernetes' own HPA test tables, translated case by case to the
//! project's API. Each case carries upstream's test name; the file is
//! named beside each table.
//!
//! Translation: upstream's pods have two containers, each requesting the
//! listed quantity and using the listed level, so a pod here requests and
//! uses twice the container's value (utilisation is unchanged). A pod's
//! `StartTime` is "cool" (3 min ago), "hot" (now) or, when the case gives
//! none, Go's zero time (long ago); Ready conditions carry a zero
//! `LastTransitionTime` and samples a zero timestamp with a 1-minute window,
//! as upstream's fakes build them. Failed and deleted pods are both
//! ignored by `groupPods`; the simulator shows either as `Terminating`.
//!
//! Not expressible, so not ported: custom, object and external metrics
//! (the HPA here scales on CPU only), memory, pods without a Ready
//! condition, metrics for pods that do not exist (`SuperfluousMetrics` is
//! run with the listed pods' metrics only), per-container targets and
//! pod-level requests, and `TestStoreScaleEvents`, whose subject is the
//! layout of the event log (the counts it feeds are covered by
//! `TestScalingWithRules`).

mod common;

use selfheal::control::hpa::{
    self, Behavior, HpaConfig, HpaState, Limit, NoRecommendation, Policy, PolicyKind, ScalingRules,
    SelectPolicy,
};
use selfheal::control::{PodPhase, PodView};
use selfheal::time::{Span, Time};

const NOW_S: u64 = 100_000;

fn now() -> Time {
    Time::from_secs(NOW_S)
}

fn ago(s: u64) -> Time {
    Time::from_secs(NOW_S - s)
}

/// `replica_calculator_test.go`'s controller settings.
fn calc_cfg(target: u32) -> HpaConfig {
    HpaConfig {
        target_utilization: target,
        tolerance: 0.1,
        cpu_initialization_period: Span::from_secs(120),
        initial_readiness_delay: Span::from_secs(10),
        metric_window: Span::from_secs(60),
        ..HpaConfig::default()
    }
}

#[derive(Clone, Copy)]
enum Start {
    Zero,
    Hot,
    Cool,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Running,
    Pending,
    Failed,
}

const R: Phase = Phase::Running;
const P: Phase = Phase::Pending;
const F: Phase = Phase::Failed;

struct CalcCase {
    name: &'static str,
    current: u32,
    target: u32,
    /// Per-container request in cores; a pod past the end has none.
    requests: &'static [f64],
    /// Per-container usage in millicores; a pod past the end has no sample.
    levels: &'static [i64],
    ready: &'static [bool],
    start: &'static [Start],
    phase: &'static [Phase],
    deleted: &'static [bool],
    want: Result<(u32, i64), &'static str>,
}

const BASE: CalcCase = CalcCase {
    name: "",
    current: 0,
    target: 0,
    requests: &[],
    levels: &[],
    ready: &[],
    start: &[],
    phase: &[],
    deleted: &[],
    want: Err(""),
};

impl CalcCase {
    fn pods(&self) -> Vec<PodView> {
        let n = (self.current as usize).max(self.phase.len());
        (0..n)
            .map(|i| {
                let phase = self.phase.get(i).copied().unwrap_or(Phase::Running);
                let deleted = self.deleted.get(i).copied().unwrap_or(false);
                let started = match self.start.get(i).copied().unwrap_or(Start::Zero) {
                    Start::Zero => Time::ZERO,
                    Start::Hot => now(),
                    Start::Cool => ago(180),
                };
                let level = self.levels.get(i);
                PodView {
                    phase: match phase {
                        _ if deleted => PodPhase::Terminating,
                        Phase::Failed => PodPhase::Terminating,
                        Phase::Pending => PodPhase::Pending,
                        Phase::Running => PodPhase::Running,
                    },
                    ready: self.ready.get(i).copied().unwrap_or(true),
                    cpu_cores: level.map_or(0.0, |&l| 2.0 * l as f64 / 1000.0),
                    cpu_sampled_at: level.map(|_| Time::ZERO),
                    cpu_request: self.requests.get(i).map_or(0.0, |&r| 2.0 * r),
                    created: started,
                    started,
                    ..common::ready_pod(format!("test-pod-{i}"))
                }
            })
            .collect()
    }
}

const ONE3: &[f64] = &[1.0; 3];
const ONE4: &[f64] = &[1.0; 4];
const ONE5: &[f64] = &[1.0; 5];
const ONE7: &[f64] = &[1.0; 7];
const SCALE_DOWN_LEVELS: &[i64] = &[100, 300, 500, 250, 250];
use Start::{Cool, Hot};

/// `pkg/controller/podautoscaler/replica_calculator_test.go`, the CPU
/// resource cases of `GetResourceReplicas`.
const CALC_CASES: &[CalcCase] = &[
    CalcCase {
        name: "TestReplicaCalcDisjointResourcesMetrics",
        current: 1,
        target: 100,
        requests: &[1.0],
        want: Err("no metrics returned matched known pods"),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleUp",
        current: 3,
        target: 30,
        requests: ONE3,
        levels: &[300, 500, 700],
        want: Ok((5, 50)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleUpUnreadyLessScale",
        current: 3,
        target: 30,
        requests: ONE3,
        levels: &[300, 500, 700],
        ready: &[false, true, true],
        want: Ok((4, 60)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleUpHotCpuLessScale",
        current: 3,
        target: 30,
        requests: ONE3,
        levels: &[300, 500, 700],
        start: &[Hot, Cool, Cool],
        want: Ok((4, 60)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleUpUnreadyNoScale",
        current: 3,
        target: 30,
        requests: ONE3,
        levels: &[400, 500, 700],
        ready: &[true, false, false],
        want: Ok((3, 40)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleHotCpuNoScale",
        current: 3,
        target: 30,
        requests: ONE3,
        levels: &[400, 500, 700],
        ready: &[true, false, false],
        start: &[Cool, Hot, Hot],
        want: Ok((3, 40)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleUpIgnoresFailedPods",
        current: 2,
        target: 30,
        requests: ONE4,
        levels: &[500, 700],
        ready: &[true, true, false, false],
        phase: &[R, R, F, F],
        want: Ok((4, 60)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleUpIgnoresDeletionPods",
        current: 2,
        target: 30,
        requests: ONE4,
        levels: &[500, 700],
        ready: &[true, true, false, false],
        phase: &[R, R, R, R],
        deleted: &[false, false, true, true],
        want: Ok((4, 60)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleDown",
        current: 5,
        target: 50,
        requests: ONE5,
        levels: SCALE_DOWN_LEVELS,
        want: Ok((3, 28)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleDownIncludeUnreadyPods",
        current: 5,
        target: 50,
        requests: ONE5,
        levels: SCALE_DOWN_LEVELS,
        ready: &[true, true, true, false, false],
        want: Ok((2, 30)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleDownExcludeUnscheduledPods",
        current: 5,
        target: 50,
        requests: ONE5,
        levels: &[100],
        ready: &[true, false, false, false, false],
        phase: &[R, P, P, P, P],
        want: Ok((1, 10)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleDownIgnoreHotCpuPods",
        current: 5,
        target: 50,
        requests: ONE5,
        levels: SCALE_DOWN_LEVELS,
        start: &[Cool, Cool, Cool, Hot, Hot],
        want: Ok((2, 30)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleDownIgnoresFailedPods",
        current: 5,
        target: 50,
        requests: ONE7,
        levels: SCALE_DOWN_LEVELS,
        ready: &[true, true, true, true, true, false, false],
        phase: &[R, R, R, R, R, F, F],
        want: Ok((3, 28)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcScaleDownIgnoresDeletionPods",
        current: 5,
        target: 50,
        requests: ONE7,
        levels: SCALE_DOWN_LEVELS,
        ready: &[true, true, true, true, true, false, false],
        phase: &[R, R, R, R, R, R, R],
        deleted: &[false, false, false, false, false, true, true],
        want: Ok((3, 28)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcTolerance",
        current: 3,
        target: 100,
        requests: &[0.9, 1.0, 1.1],
        levels: &[1010, 1030, 1020],
        want: Ok((3, 102)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcSuperfluousMetrics",
        current: 4,
        target: 100,
        requests: ONE4,
        levels: &[4000, 9500, 3000, 7000],
        want: Ok((24, 587)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetrics",
        current: 4,
        target: 100,
        requests: ONE4,
        levels: &[400, 95],
        want: Ok((3, 24)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcEmptyMetrics",
        current: 4,
        target: 100,
        requests: ONE3,
        want: Err("no metrics returned from resource metrics API"),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcEmptyCPURequest",
        current: 1,
        target: 100,
        levels: &[200],
        want: Err("missing request for"),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsNoChangeEq",
        current: 2,
        target: 100,
        requests: &[1.0, 1.0],
        levels: &[1000],
        want: Ok((2, 100)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsNoChangeGt",
        current: 2,
        target: 100,
        requests: &[1.0, 1.0],
        levels: &[1900],
        want: Ok((2, 190)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsNoChangeLt",
        current: 2,
        target: 100,
        requests: &[1.0, 1.0],
        levels: &[600],
        want: Ok((2, 60)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsUnreadyChange",
        current: 3,
        target: 50,
        requests: ONE3,
        levels: &[100, 450],
        ready: &[false, true, true],
        want: Ok((3, 45)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsHotCpuNoChange",
        current: 3,
        target: 50,
        requests: ONE3,
        levels: &[100, 450],
        start: &[Hot, Cool, Cool],
        want: Ok((3, 45)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsUnreadyScaleUp",
        current: 3,
        target: 50,
        requests: ONE3,
        levels: &[100, 2000],
        ready: &[false, true, true],
        want: Ok((4, 200)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsHotCpuScaleUp",
        current: 3,
        target: 50,
        requests: ONE3,
        levels: &[100, 2000],
        ready: &[false, true, true],
        start: &[Hot, Cool, Cool],
        want: Ok((4, 200)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcMissingMetricsUnreadyScaleDown",
        current: 4,
        target: 50,
        requests: ONE4,
        levels: &[100, 100, 100],
        ready: &[false, true, true, true],
        want: Ok((3, 10)),
        ..BASE
    },
    CalcCase {
        name: "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
        current: 2,
        target: 50,
        requests: ONE3,
        levels: &[100, 100],
        phase: &[R, R, R],
        want: Ok((2, 10)),
        ..BASE
    },
];

#[test]
fn replica_calculator_cases() {
    let mut failures = Vec::new();
    for case in CALC_CASES {
        let got = hpa::recommend(&calc_cfg(case.target), &case.pods(), case.current, now());
        let ok = match (&got, case.want) {
            (Ok(r), Ok((replicas, util))) => (r.replicas, r.utilization) == (replicas, util),
            (Err(NoRecommendation::MissingRequest { .. }), Err(msg)) => {
                msg == "missing request for"
            }
            (Err(NoRecommendation::NoUsableMetrics), Err(msg)) => msg.contains("no metrics"),
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: got {got:?}, want {:?}", case.name, case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `TestReplicaCalcComputedToleranceAlgImplementation`: a target just far
/// enough from the usage to leave the tolerance band scales 10 pods to 9;
/// one 0.6 % closer keeps them.
#[test]
fn computed_tolerance_alg_implementation() {
    let (start_pods, used_per_pod) = (10u32, 150i64);
    let total_used = i64::from(start_pods) * used_per_pod;
    let total_requested = 2 * total_used;
    let requested_to_used = (total_requested / total_used) as f64;
    let per_pod_requested = total_requested / i64::from(start_pods);
    let offsets = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0];
    let pods: Vec<PodView> = offsets
        .iter()
        .enumerate()
        .map(|(i, off)| PodView {
            cpu_cores: 2.0 * (total_used / 10) as f64 / 1000.0,
            cpu_request: 2.0 * (per_pod_requested + off) as f64 / 1000.0,
            ..common::ready_pod(format!("test-pod-{i}"))
        })
        .collect();
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let used_ratio = total_used as f64 / (total_requested as f64 * target);
    let final_pods = (used_ratio * f64::from(start_pods)).ceil() as u32;
    let r = hpa::recommend(&calc_cfg((target * 100.0) as u32), &pods, start_pods, now()).unwrap();
    assert_eq!(
        (r.replicas, r.utilization),
        (final_pods, total_used * 100 / total_requested)
    );
    assert_eq!(final_pods, 9);
    let near = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    let r = hpa::recommend(&calc_cfg((near * 100.0) as u32), &pods, start_pods, now()).unwrap();
    assert_eq!(r.replicas, start_pods);
}

struct GroupCase {
    name: &'static str,
    started_ago: u64,
    ready: bool,
    transition_ago: u64,
    sampled_ago: Option<u64>,
    window_s: u64,
    pending: bool,
    /// (ready, unready, missing)
    want: (usize, usize, usize),
}

/// `TestGroupPods` in `replica_calculator_test.go`, the CPU cases with a
/// Ready condition (one pod each).
const GROUP_CASES: &[GroupCase] = &[
    GroupCase {
        name: "count in a ready pod with fresh metrics during initialization period - CPU",
        started_ago: 60,
        ready: true,
        transition_ago: 30,
        sampled_ago: Some(0),
        window_s: 30,
        pending: false,
        want: (1, 0, 0),
    },
    GroupCase {
        name: "ignore a ready pod without fresh metrics during initialization period - CPU",
        started_ago: 60,
        ready: true,
        transition_ago: 30,
        sampled_ago: Some(0),
        window_s: 60,
        pending: false,
        want: (0, 1, 0),
    },
    GroupCase {
        name: "ignore an unready pod during initialization period - CPU",
        started_ago: 600,
        ready: false,
        transition_ago: 594,
        sampled_ago: Some(NOW_S),
        window_s: 60,
        pending: false,
        want: (0, 1, 0),
    },
    GroupCase {
        name: "count in a ready pod without fresh metrics after initialization period - CPU",
        started_ago: 180,
        ready: true,
        transition_ago: 180,
        sampled_ago: Some(120),
        window_s: 60,
        pending: false,
        want: (1, 0, 0),
    },
    GroupCase {
        name: "count in an unready pod that was ready after initialization period - CPU",
        started_ago: 600,
        ready: false,
        transition_ago: 540,
        sampled_ago: Some(NOW_S),
        window_s: 60,
        pending: false,
        want: (1, 0, 0),
    },
    GroupCase {
        name: "ignore pod that has never been ready after initialization period - CPU",
        started_ago: 600,
        ready: false,
        transition_ago: 590,
        sampled_ago: Some(NOW_S),
        window_s: 60,
        pending: false,
        want: (1, 0, 0),
    },
    GroupCase {
        name: "a missing pod",
        started_ago: 180,
        ready: true,
        transition_ago: 180,
        sampled_ago: None,
        window_s: 60,
        pending: false,
        want: (0, 0, 1),
    },
    GroupCase {
        name: "pending pods are ignored",
        started_ago: 0,
        ready: false,
        transition_ago: 0,
        sampled_ago: None,
        window_s: 60,
        pending: true,
        want: (0, 1, 0),
    },
];

#[test]
fn group_pods_cases() {
    assert_eq!(
        hpa::group_pods(&calc_cfg(50), &[], now()),
        hpa::PodGroups::default(),
        "void"
    );
    for case in GROUP_CASES {
        let pod = PodView {
            phase: if case.pending {
                PodPhase::Pending
            } else {
                PodPhase::Running
            },
            ready: case.ready,
            cpu_cores: 0.001,
            cpu_sampled_at: case.sampled_ago.map(ago),
            created: ago(case.started_ago),
            started: ago(case.started_ago),
            last_transition: ago(case.transition_ago),
            ..common::ready_pod("bentham")
        };
        let cfg = HpaConfig {
            metric_window: Span::from_secs(case.window_s),
            ..calc_cfg(50)
        };
        let g = hpa::group_pods(&cfg, &[pod], now());
        assert_eq!(
            (g.metrics.len(), g.unready.len(), g.missing.len()),
            case.want,
            "{}",
            case.name
        );
    }
}

/// `generateScalingRules(pods, podsPeriod, percent, percentPeriod,
/// stabilizationWindow)` with `selectPolicy: Max`.
fn rules(
    pods: u32,
    pods_period: u64,
    percent: u32,
    percent_period: u64,
    stab: u64,
) -> ScalingRules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(Policy {
            kind: PolicyKind::Pods,
            value: pods,
            period: Span::from_secs(pods_period),
        });
    }
    if percent != 0 {
        policies.push(Policy {
            kind: PolicyKind::Percent,
            value: percent,
            period: Span::from_secs(percent_period),
        });
    }
    ScalingRules {
        stabilization: Span::from_secs(stab),
        select: SelectPolicy::Max,
        policies,
    }
}

/// `generateEventsUniformDistribution`: events spread over the last
/// `period` seconds, each in the middle of its segment, oldest first.
fn uniform_events(changes: &[u32], period: u64) -> Vec<(Time, u32)> {
    let seg = period as f64 / changes.len() as f64;
    changes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let age = period as f64 - seg * (i + 1) as f64 + seg / 2.0;
            (ago(age as u64), c)
        })
        .collect()
}

struct RateCase {
    name: &'static str,
    up_events: &'static [u32],
    up_events_period: u64,
    down_events: &'static [u32],
    down_events_period: u64,
    min: u32,
    max: u32,
    up: Option<(u32, u64, u32, u64, u64)>,
    down: Option<(u32, u64, u32, u64, u64)>,
    current: u32,
    desired: u32,
    want: (u32, Limit),
}

const RATE: RateCase = RateCase {
    name: "",
    up_events: &[],
    up_events_period: 120,
    down_events: &[],
    down_events_period: 120,
    min: 1,
    max: 1000,
    up: None,
    down: None,
    current: 0,
    desired: 0,
    want: (0, Limit::DesiredWithinRange),
};

use Limit::{DesiredWithinRange, ScaleDownLimit, ScaleUpLimit, TooFewReplicas, TooManyReplicas};

/// `TestScalingWithRules` in `horizontal_test.go`
/// (`convertDesiredReplicasWithBehaviorRate`); upstream skips the case
/// marked `testThis`, and so does this table.
const RATE_CASES: &[RateCase] = &[
    RateCase {
        name: "prenormalized desired replicas within range",
        min: 3,
        max: 8,
        current: 5,
        desired: 7,
        want: (7, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "prenormalized desired replicas < minReplicas",
        min: 2,
        max: 8,
        current: 3,
        desired: 1,
        want: (2, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "prenormalized desired replicas within range when minReplicas is 0",
        min: 0,
        max: 10,
        current: 1,
        desired: 0,
        want: (0, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "maxReplicas is the limit because maxReplicas < scaleUpLimit",
        min: 1,
        max: 10,
        current: 20,
        desired: 1000,
        want: (10, TooManyReplicas),
        ..RATE
    },
    RateCase {
        name: "desired replica count is more than the maximum replica count",
        min: 100,
        max: 150,
        current: 100,
        desired: 1000,
        want: (150, TooManyReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
        min: 1,
        max: 2000,
        up: Some((0, 0, 1, 60, 0)),
        current: 3,
        desired: 1000,
        want: (4, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with default behavior",
        current: 10,
        desired: 50,
        want: (20, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with pods policy larger than percent policy",
        up: Some((100, 60, 100, 60, 0)),
        current: 10,
        desired: 500,
        want: (110, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with percent policy larger than pods policy",
        up: Some((2, 60, 100, 60, 0)),
        current: 10,
        desired: 500,
        want: (20, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with spec MaxReplicas limitation with large pod policy",
        up: Some((100, 60, 0, 0, 0)),
        current: 10,
        desired: 50,
        want: (50, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "scaleUp with spec MaxReplicas limitation with large percent policy",
        up: Some((10000, 60, 0, 0, 0)),
        current: 10,
        desired: 50,
        want: (50, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "scaleUp with pod policy limitation",
        up: Some((30, 60, 0, 0, 0)),
        current: 10,
        desired: 50,
        want: (40, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with percent policy limitation",
        up: Some((0, 0, 200, 60, 0)),
        current: 10,
        desired: 50,
        want: (30, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with percent policy larger than pod policy",
        down: Some((20, 60, 1, 60, 300)),
        current: 100,
        desired: 2,
        want: (80, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with pod policy larger than percent policy",
        down: Some((2, 60, 1, 60, 300)),
        current: 100,
        desired: 2,
        want: (98, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with spec MinReplicas=nil limitation with large pod policy",
        down: Some((100, 60, 0, 0, 300)),
        current: 10,
        desired: 0,
        want: (1, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleDown with spec MinReplicas limitation with large pod policy",
        down: Some((100, 60, 0, 0, 300)),
        current: 10,
        desired: 0,
        want: (1, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleDown with spec MinReplicas limitation with large percent policy",
        min: 5,
        down: Some((0, 0, 100, 60, 300)),
        current: 10,
        desired: 2,
        want: (5, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleDown with pod policy limitation",
        down: Some((5, 60, 0, 0, 300)),
        current: 10,
        desired: 2,
        want: (5, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with percent policy limitation",
        down: Some((0, 0, 50, 60, 300)),
        current: 10,
        desired: 5,
        want: (5, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "scaleUp with spec MaxReplicas limitation with large pod policy and events",
        up_events: &[1, 5, 9],
        max: 200,
        up: Some((300, 60, 0, 0, 0)),
        current: 100,
        desired: 500,
        want: (200, TooManyReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleUp with spec MaxReplicas limitation with large percent policy and events",
        up_events: &[1, 5, 9],
        max: 200,
        up: Some((0, 0, 10000, 60, 0)),
        current: 100,
        desired: 500,
        want: (200, TooManyReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
        up_events: &[1, 5, 9],
        up: Some((5, 120, 0, 0, 0)),
        current: 100,
        desired: 500,
        want: (100, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with pod policy and previous scale up events",
        up_events: &[1, 5, 9],
        up: Some((150, 120, 0, 0, 0)),
        current: 100,
        desired: 500,
        want: (235, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with percent policy and previous scale up events",
        up_events: &[1, 5, 9],
        up: Some((0, 0, 200, 120, 0)),
        current: 100,
        desired: 500,
        want: (255, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleUp with percent policy and previous scale up and down events",
        up_events: &[4],
        down_events: &[2],
        up: Some((0, 0, 300, 300, 0)),
        current: 6,
        desired: 24,
        want: (16, ScaleUpLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with default policy and previous events",
        down_events: &[1, 5, 9],
        current: 10,
        desired: 5,
        want: (5, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
        down_events: &[1, 5, 9],
        down: Some((115, 120, 0, 0, 300)),
        current: 100,
        desired: 0,
        want: (1, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
        down_events: &[1, 5, 9],
        min: 5,
        down: Some((130, 120, 0, 0, 300)),
        current: 100,
        desired: 0,
        want: (5, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
        down_events: &[1, 5, 9],
        min: 5,
        down: Some((0, 0, 100, 120, 300)),
        current: 100,
        desired: 2,
        want: (5, TooFewReplicas),
        ..RATE
    },
    RateCase {
        name: "scaleDown with pod policy limitation and previous events",
        down_events: &[1, 5, 9],
        down: Some((5, 120, 0, 0, 300)),
        current: 100,
        desired: 2,
        want: (100, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with percent policy limitation and previous events",
        down_events: &[2, 4, 6],
        down: Some((0, 0, 50, 120, 300)),
        current: 100,
        desired: 0,
        want: (56, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with percent policy and previous scale up and down events",
        up_events: &[2],
        down_events: &[4],
        down: Some((0, 0, 50, 180, 0)),
        current: 10,
        desired: 1,
        want: (6, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with previous events preventing further scale down",
        down_events: &[10, 10, 10],
        down: Some((0, 0, 10, 120, 300)),
        current: 100,
        desired: 0,
        want: (100, ScaleDownLimit),
        ..RATE
    },
    RateCase {
        name: "scaleDown with with previous events still allowing more scale down",
        down_events: &[10, 10, 10],
        down: Some((0, 0, 1000, 120, 300)),
        current: 10,
        desired: 5,
        want: (5, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "check 'outdated' flag for events for one behavior for up",
        up_events: &[8, 12, 9, 11],
        up: Some((1000, 60, 0, 0, 0)),
        current: 100,
        desired: 200,
        want: (200, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "check that events were not marked 'outdated' for two different policies in the behavior for up",
        up_events: &[8, 12, 9, 11],
        up: Some((1000, 120, 100, 60, 0)),
        current: 100,
        desired: 200,
        want: (200, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "check that events were marked 'outdated' for two different policies in the behavior for up",
        up_events: &[8, 12, 9, 11],
        up: Some((1000, 30, 100, 60, 0)),
        current: 100,
        desired: 200,
        want: (200, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "check 'outdated' flag for events for one behavior for down",
        down_events: &[8, 12, 9, 11],
        down: Some((1000, 60, 0, 0, 300)),
        current: 100,
        desired: 5,
        want: (5, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "check that events were not marked 'outdated' for two different policies in the behavior for down",
        down_events: &[8, 12, 9, 11],
        down: Some((1000, 120, 100, 60, 300)),
        current: 100,
        desired: 5,
        want: (5, DesiredWithinRange),
        ..RATE
    },
    RateCase {
        name: "check that events were marked 'outdated' for two different policies in the behavior for down",
        down_events: &[8, 12, 9, 11],
        down: Some((1000, 30, 100, 60, 300)),
        current: 100,
        desired: 5,
        want: (5, DesiredWithinRange),
        ..RATE
    },
];

#[test]
fn scaling_with_rules_cases() {
    let defaults = Behavior::default();
    let mut failures = Vec::new();
    for case in RATE_CASES {
        let pick = |r: Option<(u32, u64, u32, u64, u64)>, default: &ScalingRules| {
            r.map_or_else(|| default.clone(), |(a, b, c, d, e)| rules(a, b, c, d, e))
        };
        let behavior = Behavior {
            scale_up: pick(case.up, &defaults.scale_up),
            scale_down: pick(case.down, &defaults.scale_down),
        };
        let cfg = HpaConfig {
            min_replicas: case.min,
            max_replicas: case.max,
            ..HpaConfig::default()
        };
        let state = HpaState::with_history(
            Vec::new(),
            uniform_events(case.up_events, case.up_events_period),
            uniform_events(case.down_events, case.down_events_period),
        );
        let got = state.limit_rate(&cfg, &behavior, case.current, case.desired, now());
        if got != case.want {
            failures.push(format!("{}: got {got:?}, want {:?}", case.name, case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

struct StabiliseCase {
    name: &'static str,
    /// (recommendation, seconds ago)
    history: &'static [(u32, u64)],
    current: u32,
    desired: u32,
    up_window: u64,
    down_window: u64,
    want: u32,
    /// The stored recommendations afterwards, when upstream checks them.
    want_log: Option<&'static [u32]>,
}

/// `TestNormalizeDesiredReplicasWithBehavior` in `horizontal_test.go`
/// (`stabilizeRecommendationWithBehaviors`).
const STABILISE_CASES: &[StabiliseCase] = &[
    StabiliseCase {
        name: "empty recommendations for scaling down",
        history: &[],
        current: 100,
        desired: 5,
        up_window: 0,
        down_window: 0,
        want: 5,
        want_log: Some(&[5]),
    },
    StabiliseCase {
        name: "simple scale down stabilization",
        history: &[(4, 120), (5, 60)],
        current: 100,
        desired: 3,
        up_window: 0,
        down_window: 180,
        want: 5,
        want_log: Some(&[4, 5, 3]),
    },
    StabiliseCase {
        name: "simple scale up stabilization",
        history: &[(4, 120), (5, 60)],
        current: 1,
        desired: 7,
        up_window: 300,
        down_window: 0,
        want: 4,
        want_log: Some(&[4, 5, 7]),
    },
    StabiliseCase {
        name: "no scale down stabilization",
        history: &[(1, 120), (2, 60)],
        current: 100,
        desired: 3,
        up_window: 300,
        down_window: 0,
        want: 3,
        want_log: Some(&[1, 2, 3]),
    },
    StabiliseCase {
        name: "no scale up stabilization",
        history: &[(4, 120), (5, 60)],
        current: 1,
        desired: 3,
        up_window: 0,
        down_window: 300,
        want: 3,
        want_log: Some(&[4, 5, 3]),
    },
    StabiliseCase {
        name: "no scale down stabilization, reuse recommendation element",
        history: &[(10, 600), (9, 540)],
        current: 100,
        desired: 3,
        up_window: 0,
        down_window: 0,
        want: 3,
        want_log: Some(&[10, 3]),
    },
    StabiliseCase {
        name: "no scale up stabilization, reuse recommendation element",
        history: &[(10, 600), (9, 540)],
        current: 1,
        desired: 100,
        up_window: 0,
        down_window: 0,
        want: 100,
        want_log: Some(&[10, 100]),
    },
    StabiliseCase {
        name: "scale down stabilization, reuse one of obsolete recommendation element",
        history: &[(10, 600), (4, 60), (5, 120), (9, 540)],
        current: 100,
        desired: 3,
        up_window: 0,
        down_window: 180,
        want: 5,
        want_log: Some(&[10, 4, 5, 3]),
    },
    StabiliseCase {
        name: "scale up stabilization, reuse one of obsolete recommendation element",
        history: &[(10, 6000), (6, 60), (5, 120), (9, 180)],
        current: 1,
        desired: 100,
        up_window: 300,
        down_window: 0,
        want: 5,
        want_log: Some(&[100, 6, 5, 9]),
    },
    StabiliseCase {
        name: "scale up and down stabilization, do not scale up when prenormalized rec goes down",
        history: &[(2, 6000), (3, 180)],
        current: 2,
        desired: 1,
        up_window: 300,
        down_window: 300,
        want: 2,
        want_log: None,
    },
    StabiliseCase {
        name: "scale up and down stabilization, do not scale down when prenormalized rec goes up",
        history: &[(2, 6000), (1, 180)],
        current: 2,
        desired: 3,
        up_window: 300,
        down_window: 300,
        want: 2,
        want_log: None,
    },
];

#[test]
fn stabilize_recommendation_with_behaviors_cases() {
    for case in STABILISE_CASES {
        let behavior = Behavior {
            scale_up: rules(0, 0, 0, 0, case.up_window),
            scale_down: rules(0, 0, 0, 0, case.down_window),
        };
        let mut state = HpaState::with_history(
            case.history.iter().map(|&(r, a)| (ago(a), r)).collect(),
            Vec::new(),
            Vec::new(),
        );
        let got = state.stabilize(&behavior, case.current, case.desired, now());
        assert_eq!(got, case.want, "{}", case.name);
        if let Some(log) = case.want_log {
            assert_eq!(
                state.recommendations().collect::<Vec<_>>(),
                log,
                "{}",
                case.name
            );
        }
    }
}

/// `TestNormalizeDesiredReplicas` in `horizontal_test.go`: the legacy
/// `stabilizeRecommendation` over a 5-minute window.
#[test]
fn legacy_stabilize_recommendation_cases() {
    // (name, (recommendation, seconds ago), desired, want, log length)
    type Case = (&'static str, &'static [(u32, u64)], u32, u32, usize);
    let cases: &[Case] = &[
        ("empty log", &[], 5, 5, 1),
        ("stabilize", &[(4, 120), (5, 60)], 3, 5, 3),
        ("no stabilize", &[(1, 120), (2, 60)], 3, 3, 3),
        (
            "no stabilize - old recommendations",
            &[(10, 600), (9, 540)],
            3,
            3,
            2,
        ),
        (
            "stabilize - old recommendations",
            &[(10, 600), (4, 60), (5, 120), (9, 540)],
            3,
            5,
            4,
        ),
    ];
    let cfg = HpaConfig {
        behavior: None,
        downscale_stabilization: Span::from_secs(300),
        ..HpaConfig::default()
    };
    for &(name, history, desired, want, log_len) in cases {
        let mut state = HpaState::with_history(
            history.iter().map(|&(r, a)| (ago(a), r)).collect(),
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(state.stabilize_legacy(&cfg, desired, now()), want, "{name}");
        assert_eq!(state.recommendations().count(), log_len, "{name}");
    }
}
