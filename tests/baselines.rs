//! The HPA and KPA rules, pinned with hand-computed cases.

mod common;

use selfheal::control::hpa::{self, HpaConfig, HpaState};
use selfheal::control::kpa::{DeciderSpec, KpaConfig, KpaState};
use selfheal::control::{PodPhase, PodView};
use selfheal::time::Time;

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

/// A ready pod started long ago, sampled at `now`, using `cores` of a
/// 0.5-core request.
fn pod(cores: f64, now: Time) -> PodView {
    PodView {
        cpu_cores: cores,
        cpu_sampled_at: Some(now),
        cpu_request: 0.5,
        cpu_limit: 1.0,
        ..common::ready_pod("p")
    }
}

fn cfg(target: u32) -> HpaConfig {
    HpaConfig {
        target_utilization: target,
        ..HpaConfig::default()
    }
}

const NOW: u64 = 1000;

#[test]
fn fast_path_scales_by_the_ratio_over_ready_pods() {
    // 4 x 400m of 500m = 80 %; target 50 %: ratio 1.6, ceil(1.6 * 4) = 7.
    let pods: Vec<_> = (0..4).map(|_| pod(0.4, t(NOW))).collect();
    let r = hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap();
    assert_eq!((r.replicas, r.utilization), (7, 80));
}

#[test]
fn utilisation_is_truncated_and_compared_with_the_tolerance_in_floating_point() {
    // 1099m of 2000m = 54.95 % -> 54 %: ratio 1.08, within 10 %.
    let mut pods: Vec<_> = [0.275, 0.275, 0.275, 0.274]
        .iter()
        .map(|&c| pod(c, t(NOW)))
        .collect();
    let r = hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap();
    assert_eq!((r.replicas, r.utilization), (4, 54));
    // 55 % exactly: ratio 1.1. `|1 - 1.1|` would be 0.10000000000000009 in
    // float64, but upstream's `isWithin` compares 1.1 <= 1.0 + 0.1, which
    // holds: keep 4.
    pods.iter_mut().for_each(|p| p.cpu_cores = 0.275);
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap().replicas,
        4
    );
    // 54.5 % (1090m): ratio 1.08 -> keep.
    pods.iter_mut().for_each(|p| p.cpu_cores = 0.2725);
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap().replicas,
        4
    );
    // 56 %: ratio 1.12 -> ceil(4.48) = 5.
    pods.iter_mut().for_each(|p| p.cpu_cores = 0.28);
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap().replicas,
        5
    );
}

#[test]
fn missing_pods_count_as_full_request_on_a_scale_down() {
    // 3 pods at 20 %, 1 without a sample. Ratio 0.4 -> with the missing pod
    // at 100 %: (300m + 500m) / 2000m = 40 %, ratio 0.8, ceil(0.8 * 4) = 4.
    let mut pods: Vec<_> = (0..4).map(|_| pod(0.1, t(NOW))).collect();
    pods[3].cpu_sampled_at = None;
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap().replicas,
        4
    );
    // Without the missing pod it would scale to ceil(0.4 * 3) = 2.
    pods.pop();
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap().replicas,
        2
    );
}

#[test]
fn missing_pods_count_as_zero_on_a_scale_up() {
    // 2 pods at 100 %, 2 missing; target 50: ratio 2.0; missing at 0:
    // 1000m / 2000m = 50 %, ratio 1.0, within tolerance: keep 4.
    let mut pods: Vec<_> = (0..4).map(|_| pod(0.5, t(NOW))).collect();
    pods[2].cpu_sampled_at = None;
    pods[3].cpu_sampled_at = None;
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 4, t(NOW)).unwrap().replicas,
        4
    );
}

#[test]
fn unready_pods_count_as_zero_when_scaling_up() {
    // 2 ready pods at 100 % and 2 pending: ratio 2.0 -> with pending at 0,
    // 50 %, within tolerance: no scale-up.
    let mut pods: Vec<_> = (0..4).map(|_| pod(0.5, t(NOW))).collect();
    pods[2].phase = PodPhase::Pending;
    pods[3].phase = PodPhase::Pending;
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 2, t(NOW)).unwrap().replicas,
        2
    );
    // At 150 % the unready pods at 0 still leave 75 %: ratio 1.5, 4 pods -> 6.
    pods[0].cpu_cores = 0.75;
    pods[1].cpu_cores = 0.75;
    assert_eq!(
        hpa::recommend(&cfg(50), &pods, 2, t(NOW)).unwrap().replicas,
        6
    );
}

#[test]
fn cpu_initialisation_period_readiness_rule() {
    let now = t(NOW);
    // Started 100 s ago (inside 300 s), ready since 10 s before the sample:
    // one 15 s metric window has not passed since the transition: unready.
    let mut young = pod(0.5, now);
    young.started = t(NOW - 100);
    young.last_transition = t(NOW - 10);
    let old = pod(0.5, now);
    let r = hpa::recommend(&cfg(50), &[old.clone(), young.clone()], 2, now).unwrap();
    // Only the old pod counts (100 %, ratio 2): the young one is unready and
    // counted at 0 for the scale-up: (500 + 0) / 1000 = 50 %: keep.
    assert_eq!(r.replicas, 2);
    // 20 s after the transition the sample counts: ceil(2 * 2) = 4.
    young.last_transition = t(NOW - 20);
    assert_eq!(
        hpa::recommend(&cfg(50), &[old.clone(), young.clone()], 2, now)
            .unwrap()
            .replicas,
        4
    );
    // Past the initialisation period, a not-ready pod that was ready before
    // still counts; one that never became ready does not.
    let mut flapped = pod(0.5, now);
    flapped.started = t(0);
    flapped.ready = false;
    flapped.last_transition = t(NOW - 50);
    assert_eq!(
        hpa::recommend(&cfg(50), &[old.clone(), flapped.clone()], 2, now)
            .unwrap()
            .replicas,
        4
    );
    flapped.last_transition = t(10);
    assert_eq!(
        hpa::recommend(&cfg(50), &[old, flapped], 2, now)
            .unwrap()
            .replicas,
        2
    );
}

#[test]
fn no_usable_samples_means_no_recommendation() {
    let mut p = pod(0.5, t(NOW));
    p.cpu_sampled_at = None;
    assert_eq!(
        hpa::recommend(&cfg(50), &[p], 1, t(NOW)),
        Err(hpa::NoRecommendation::NoUsableMetrics)
    );
}

#[test]
fn behavior_rate_limits_scale_up() {
    let c = cfg(50);
    let b = c.behavior.clone().unwrap();
    let mut st = HpaState::default();
    // 2 -> 20 wanted: max(2 + 4 pods, 2 * 200 %) = 6.
    let (d, limit) = st.normalize_with_behavior(&c, &b, 2, 20, t(100));
    assert_eq!((d, limit), (6, hpa::Limit::ScaleUpLimit));
    st.record_scale(Some(&b), 2, 6, t(100));
    // 5 s later the +4 is within the 15 s period: base 6 - 4 = 2 -> 6.
    assert_eq!(st.normalize_with_behavior(&c, &b, 6, 20, t(105)).0, 6);
    // 15 s later it has left the period: base 6 -> max(10, 12) = 12.
    assert_eq!(st.normalize_with_behavior(&c, &b, 6, 20, t(115)).0, 12);
}

#[test]
fn behavior_stabilises_scale_down_over_five_minutes() {
    let c = cfg(50);
    let b = c.behavior.clone().unwrap();
    let mut st = HpaState::default();
    // The window is seeded with the current count, so a drop waits 300 s.
    assert_eq!(st.normalize_with_behavior(&c, &b, 10, 2, t(1000)).0, 10);
    assert_eq!(st.normalize_with_behavior(&c, &b, 10, 2, t(1150)).0, 10);
    // After 300 s only low recommendations remain in the window.
    assert_eq!(st.normalize_with_behavior(&c, &b, 10, 2, t(1301)).0, 2);
}

#[test]
fn legacy_path_caps_at_double_or_four() {
    let c = HpaConfig {
        behavior: None,
        ..cfg(50)
    };
    let mut st = HpaState::default();
    assert_eq!(st.normalize_legacy(&c, 1, 10, t(0)), 4);
    assert_eq!(st.normalize_legacy(&c, 4, 10, t(15)), 8);
    // The maximum of the last 300 s wins: the earlier, capped wish for 10
    // now scales 8 up to 10 although this tick alone recommends 2.
    assert_eq!(st.normalize_legacy(&c, 8, 2, t(30)), 10);
    assert_eq!(st.normalize_legacy(&c, 8, 2, t(400)), 2);
}

#[test]
fn kpa_stable_mode_targets_seventy_per_pod() {
    let c = KpaConfig::default();
    // containerConcurrency 0 (unlimited) targets 70 % of 100; 50 caps the
    // total at 50; an annotation of 40 under 50 targets 70 % of 40.
    assert_eq!(c.resolve_target(0, None), (70.0, 100.0));
    assert_eq!(c.resolve_target(50, None), (35.0, 50.0));
    let annotated = KpaConfig {
        target: Some(40.0),
        ..KpaConfig::default()
    };
    let annotation = annotated.annotation("any service");
    assert_eq!(annotated.resolve_target(50, annotation).0, 28.0);
    assert_eq!(annotated.resolve_target(20, annotation).0, 14.0);
    let spec = c.decider_spec(0, None);
    let mut st = KpaState::default();
    // 60 s at 210 in flight over 3 ready pods: ceil(210 / 70) = 3.
    let d = st.scale(&c, &spec, &[210.0; 60], 3, t(100)).unwrap();
    assert_eq!((d.desired, d.panicking), (3, false));
    // 280 -> 4.
    assert_eq!(
        st.scale(&c, &spec, &[280.0; 60], 3, t(102))
            .unwrap()
            .desired,
        4
    );
}

#[test]
fn kpa_scale_down_is_limited_to_half() {
    let c = KpaConfig::default();
    let mut st = KpaState::default();
    // 70 in flight would need 1 pod; 10 ready pods may only halve: 5.
    assert_eq!(
        st.scale(&c, &c.decider_spec(0, None), &[70.0; 60], 10, t(100))
            .unwrap()
            .desired,
        5
    );
}

#[test]
fn kpa_panics_on_a_burst_and_holds_for_a_stable_window() {
    let c = KpaConfig::default();
    let spec = c.decider_spec(0, None);
    let mut st = KpaState::default();
    // Last 6 s at 560 in flight: dppc = 8 >= 2 x 2 ready pods: panic.
    let mut window = vec![140.0; 54];
    window.extend([560.0; 6]);
    let d = st.scale(&c, &spec, &window, 2, t(100)).unwrap();
    // stable = (54 * 140 + 6 * 560) / 60 = 182 -> dspc 3; desired max(3, 8) = 8.
    assert_eq!((d.desired, d.panicking), (8, true));
    // The burst is over, but panic mode never scales down ...
    let d = st.scale(&c, &spec, &[140.0; 60], 8, t(130)).unwrap();
    assert_eq!((d.desired, d.panicking), (8, true));
    // ... for a whole stable window: at exactly 60 s it still holds ...
    let d = st.scale(&c, &spec, &[140.0; 60], 8, t(160)).unwrap();
    assert_eq!((d.desired, d.panicking), (8, true));
    // ... and leaves panic on the next tick after it.
    let d = st.scale(&c, &spec, &[140.0; 60], 8, t(162)).unwrap();
    assert_eq!(
        (d.desired, d.panicking),
        (4, false),
        "ceil(140/70)=2, but at most halve 8 -> 4"
    );
}

#[test]
fn kpa_checks_the_panic_threshold_before_the_rate_clamp() {
    // Knative's "small scale-up rate" case: 2 ready pods, rate 1.1 allows
    // ceil(2.2) = 3, but the panic window wants ceil(3.1) = 4 = 2 x 2
    // ready: that is a panic even though the clamp leaves 3.
    let spec = DeciderSpec {
        max_scale_up_rate: 1.1,
        ..KpaConfig::default().decider_spec(0, None)
    };
    let spec = DeciderSpec {
        target_value: 1.0,
        ..spec
    };
    let d = KpaState::default().decide(&spec, 3.0, 3.1, 2, t(10));
    assert_eq!((d.desired, d.panicking), (3, true));
}

#[test]
fn kpa_created_over_several_pods_holds_them_until_it_has_history() {
    let c = KpaConfig::default();
    let spec = c.decider_spec(0, None);
    // Created over 4 ready pods with almost no load: upstream starts in
    // panic mode and keeps 4 for a stable window instead of dropping to 2.
    let mut st = KpaState::new(4, t(0));
    let d = st.scale(&c, &spec, &[1.0; 4], 4, t(2)).unwrap();
    assert_eq!((d.desired, d.panicking), (4, true));
    let d = st.scale(&c, &spec, &[1.0; 62], 4, t(62)).unwrap();
    assert_eq!((d.desired, d.panicking), (2, false));
}

#[test]
fn knative_container_concurrency_is_the_pods_capacity_in_requests() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let mut s = selfheal::scenario::load_file(&p).unwrap().spec;
    // frontend computes 4 ms and waits on catalog (6 ms) and, half the
    // time, cart (5 ms): R = 12.5 ms, so one core holds 12.5 / 4 = 3.1
    // requests; the leaves only compute and hold one per core.
    let cc = |s: &selfheal::scenario::Scenario| {
        selfheal::sim::controllers::knative_container_concurrency(s)
    };
    let got = cc(&s);
    assert_eq!((got["frontend"], got["catalog"], got["cart"]), (3, 1, 1));
    // Two cores hold twice as many; the hard limit caps it.
    s.services[0].cpu_limit = 2.0;
    assert_eq!(cc(&s)["frontend"], 6);
    s.services[0].max_connections = 4;
    assert_eq!(cc(&s)["frontend"], 4);
}

#[test]
fn knative_rps_target_is_what_a_pod_serves_with_its_cpu_busy() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let mut s = selfheal::scenario::load_file(&p).unwrap().spec;
    // One core: frontend 4 ms of CPU per request serves 250 per second
    // whatever it waits on; catalog 6 ms, 166.7; two cores, twice that.
    let rps = |s: &selfheal::scenario::Scenario| {
        selfheal::sim::controllers::KnativeSizing::of(s).rps_target
    };
    let got = rps(&s);
    assert_eq!(got["frontend"], 250.0);
    assert!((got["catalog"] - 1000.0 / 6.0).abs() < 1e-9);
    s.services[0].cpu_limit = 2.0;
    assert_eq!(rps(&s)["frontend"], 500.0);
    // Under kpa:rps the decider aims at 70 % of it.
    let spec = selfheal::control::kpa::KpaConfig {
        metric: selfheal::control::kpa::KpaMetric::Rps,
        ..Default::default()
    }
    .decider_spec(1, Some(500.0));
    assert_eq!((spec.target_value, spec.total_value), (350.0, 500.0));
}

/// Knative's default (`scale-down-delay` 0) follows every crossing of a
/// target multiple on a steady load; a scale-down delay (a window that
/// must pass at reduced load before a decrease applies) at the five
/// minutes HPA stabilises a scale-down over keeps the `rps` KPA to a
/// handful of commands in a steady hour, at a cost below HPA's and
/// without violating the SLO.
#[test]
fn kpa_on_requests_with_a_scale_down_delay_holds_still_on_a_steady_hour() {
    let run = |file: &str, controller: &str| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let mut s = selfheal::scenario::load_file(&p).unwrap();
        s.spec
            .use_controller(selfheal::scenario::ControllerSpec::parse_short(controller).unwrap());
        let out = selfheal::sim::run(&s).unwrap();
        let scales = out
            .commands
            .iter()
            .filter(|(_, _, c)| matches!(c, selfheal::control::Command::Scale { .. }))
            .count();
        (
            scales,
            out.summary.slo_violation_s,
            out.summary.replica_seconds,
        )
    };
    for file in [
        "scenarios/chaos/steady.toml",
        "benches/three-service-hour.toml",
    ] {
        let (hpa_scales, _, hpa_cost) = run(file, "hpa");
        let (kpa_scales, _, _) = run(file, "kpa:rps");
        let (scales, violation_s, cost) = run(file, "kpa:rps,delay=300");
        assert!(scales < 10, "{file}: {scales} scale commands");
        assert!(scales <= kpa_scales, "{file}: {scales} > {kpa_scales}");
        assert_eq!(violation_s, 0.0, "{file}");
        assert!(
            cost < hpa_cost,
            "{file}: {cost} replica-s against HPA's {hpa_cost} ({hpa_scales} commands)"
        );
    }
}
