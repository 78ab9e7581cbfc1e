//! The healing orchestrator's decisions, guardrails and escalation, on
//! hand-made predictions (the predictor itself is tested in predictor.rs).

mod common;

use selfheal::control::orchestrator::{HealingEvent, Orchestrator, OrchestratorConfig, Strategy};
use selfheal::control::predictor::patterns::{FailureType, Remediation};
use selfheal::control::predictor::{Health, Prediction};
use selfheal::control::{Command, PodPhase, PodView, ServiceView};
use selfheal::metrics::ServiceMetrics;
use selfheal::time::Time;

/// `revision` is the Deployment revision index (0 = the first).
fn view(name: &str, pods: u32, revision: u32, error_rate: f64) -> ServiceView {
    ServiceView {
        name: name.into(),
        metrics: ServiceMetrics {
            timestamp: Time::ZERO,
            cpu_usage: 0.5,
            memory_usage: 0.9,
            request_rate: 100.0,
            error_rate,
            latency_p50: 10.0,
            latency_p99: 50.0,
            active_connections: 5,
            ready_replicas: pods,
            desired_replicas: pods,
        },
        desired_replicas: pods,
        revision,
        max_connections: 100,
        pods: (0..pods)
            .map(|i| PodView {
                revision,
                node: "node-0".into(),
                cpu_cores: 0.5,
                memory_mib: 100.0 + 50.0 * i as f64,
                ..common::ready_pod(format!("{name}-{i}"))
            })
            .collect(),
        concurrency: vec![],
        requests: vec![],
        dependencies: vec![],
        backup: None,
    }
}

fn prediction(status: Health, failure: Option<FailureType>, warning: bool) -> Prediction {
    Prediction {
        status,
        probability: 0.8,
        probabilities: [0.1, 0.1, 0.0, 0.8],
        not_healthy: if warning { 0.9 } else { 0.1 },
        warning,
        failure_type: failure,
        time_to_failure_s: Some(60.0),
        recommended_action: failure.map_or(Remediation::Monitor, |f| f.remediation()),
    }
}

fn at(s: u64) -> Time {
    Time::from_secs(s)
}

fn drain(o: &mut Orchestrator) -> (Vec<Command>, Vec<HealingEvent>) {
    let mut c = Vec::new();
    while let Some(x) = o.poll_command() {
        c.push(x);
    }
    let mut e = Vec::new();
    while let Some(x) = o.poll_event() {
        e.push(x);
    }
    (c, e)
}

#[test]
fn a_critical_memory_leak_gets_a_restart_at_priority_one() {
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = view("api", 4, 0, 0.02);
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    o.handle_prediction(at(0), &v, &p, &[]);
    o.handle_prediction(at(5), &v, &p, &[]);
    assert!(drain(&mut o).0.is_empty(), "two warnings are not confirmed");
    o.handle_prediction(at(10), &v, &p, &[]);
    let (cmds, events) = drain(&mut o);
    let HealingEvent::Started(a) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(a.strategy, Strategy::Restart);
    assert_eq!(a.priority, 1);
    assert!(a.success_probability > 0.5, "{}", a.success_probability);
    // The disruption budget: 25 % of 4 ready pods, the fullest first.
    assert_eq!(cmds.len(), 1);
    assert!(matches!(&cmds[0], Command::ReplacePod { pod, .. } if pod == "api-3"));
}

#[test]
fn a_breach_that_is_close_and_showing_is_acted_on_at_once() {
    let started = |status: Health, ttf: Option<f64>, error_rate: f64, failure| {
        let mut o = Orchestrator::new(OrchestratorConfig::default());
        let v = view("api", 4, 0, error_rate);
        let p = Prediction {
            time_to_failure_s: ttf,
            ..prediction(status, failure, true)
        };
        o.handle_prediction(at(0), &v, &p, &[]);
        drain(&mut o)
            .1
            .iter()
            .any(|e| matches!(e, HealingEvent::Started(_)))
    };
    let leak = Some(FailureType::MemoryLeak);
    let critical = Health::Critical;
    // Breached (0 s) or 20 s away, errors visible, a remedy named: now.
    assert!(started(critical, Some(0.0), 0.02, leak));
    assert!(started(critical, Some(20.0), 0.02, leak));
    assert!(started(
        Health::Unhealthy,
        Some(0.0),
        0.02,
        Some(FailureType::ResourceExhaustion)
    ));
    // Further away, or nothing visible yet, or only the fallback remedy
    // (degraded without a pattern: reconfigure): the usual three warnings.
    assert!(!started(critical, Some(60.0), 0.02, leak));
    assert!(!started(critical, None, 0.02, leak));
    assert!(!started(critical, Some(0.0), 0.0, leak));
    assert!(!started(Health::Degraded, Some(0.0), 0.02, None));
}

#[test]
fn a_flapping_signal_never_triggers_an_action() {
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = view("api", 4, 0, 0.0);
    for i in 0..100 {
        let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), i % 2 == 0);
        o.handle_prediction(at(5 * i), &v, &p, &[]);
    }
    let (cmds, events) = drain(&mut o);
    assert!(cmds.is_empty() && events.is_empty(), "{events:?}");
}

#[test]
fn the_rate_limit_holds_across_services() {
    let cfg = OrchestratorConfig::default();
    let mut o = Orchestrator::new(cfg.clone());
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    for s in 0..10 {
        let v = view(&format!("svc{s}"), 4, 0, 0.0);
        o.handle_prediction(at(0), &v, &p, &[]);
        o.handle_prediction(at(5), &v, &p, &[]);
        o.handle_prediction(at(10), &v, &p, &[]);
    }
    let (_, events) = drain(&mut o);
    let started = events
        .iter()
        .filter(|e| matches!(e, HealingEvent::Started(_)))
        .count();
    let suppressed = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                HealingEvent::Suppressed {
                    why: "rate limit",
                    ..
                }
            )
        })
        .count();
    assert_eq!(started, cfg.max_actions);
    assert_eq!(suppressed, 10 - cfg.max_actions);
}

#[test]
fn a_restart_never_goes_below_the_minimum_healthy_replicas() {
    let mut o = Orchestrator::new(OrchestratorConfig {
        min_healthy_replicas: 2,
        ..Default::default()
    });
    let v = view("api", 2, 0, 0.0);
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    o.handle_prediction(at(0), &v, &p, &[]);
    o.handle_prediction(at(5), &v, &p, &[]);
    o.handle_prediction(at(10), &v, &p, &[]);
    let (cmds, events) = drain(&mut o);
    assert!(cmds.is_empty());
    assert!(matches!(
        events[0],
        HealingEvent::Suppressed {
            why: "minimum healthy replicas",
            ..
        }
    ));
}

#[test]
fn dry_run_and_the_kill_switch_change_nothing() {
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    let v = view("api", 4, 0, 0.0);
    let mut dry = Orchestrator::new(OrchestratorConfig {
        dry_run: true,
        ..Default::default()
    });
    dry.handle_prediction(at(0), &v, &p, &[]);
    dry.handle_prediction(at(5), &v, &p, &[]);
    dry.handle_prediction(at(10), &v, &p, &[]);
    let (cmds, events) = drain(&mut dry);
    assert!(cmds.is_empty());
    assert!(matches!(&events[0], HealingEvent::DryRun(a) if a.strategy == Strategy::Restart));

    let mut off = Orchestrator::new(OrchestratorConfig {
        enabled: false,
        ..Default::default()
    });
    off.handle_prediction(at(0), &v, &p, &[]);
    off.handle_prediction(at(5), &v, &p, &[]);
    off.handle_prediction(at(10), &v, &p, &[]);
    let (cmds, events) = drain(&mut off);
    assert!(cmds.is_empty() && events.is_empty());
}

#[test]
fn a_restart_that_does_not_help_escalates_to_a_rollback() {
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = view("api", 4, 2, 0.3);
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    o.handle_prediction(at(0), &v, &p, &[]);
    o.handle_prediction(at(5), &v, &p, &[]);
    o.handle_prediction(at(10), &v, &p, &[]);
    drain(&mut o);
    // Still warning before the expected recovery time: wait.
    o.handle_prediction(at(30), &v, &p, &[]);
    assert!(drain(&mut o).0.is_empty());
    // Past it (90 s prior): escalate.
    o.handle_prediction(at(100), &v, &p, &[]);
    let (cmds, events) = drain(&mut o);
    assert!(events.iter().any(|e| matches!(
        e,
        HealingEvent::Escalated {
            from: Strategy::Restart,
            to: Strategy::Rollback,
            ..
        }
    )));
    assert!(matches!(&cmds[..], [Command::Rollback { service, .. }] if service == "api"));
    assert_eq!(o.book.outcomes.len(), 1);
    assert!(!o.book.outcomes[0].success);
    assert_eq!(o.active("api").unwrap().attempt, 1);
}

#[test]
fn recovery_is_verified_and_recorded_and_moves_the_estimates() {
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = view("api", 4, 0, 0.0);
    let bad = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    let good = prediction(Health::Healthy, None, false);
    let before =
        o.book
            .success_probability(Some(FailureType::MemoryLeak), Strategy::Restart, (2.0, 1.0));
    o.handle_prediction(at(0), &v, &bad, &[]);
    o.handle_prediction(at(5), &v, &bad, &[]);
    o.handle_prediction(at(10), &v, &bad, &[]);
    o.handle_prediction(at(45), &v, &good, &[]);
    let (_, events) = drain(&mut o);
    assert!(events.iter().any(|e| matches!(
        e,
        HealingEvent::Verified {
            recovered: true,
            ..
        }
    )));
    let after =
        o.book
            .success_probability(Some(FailureType::MemoryLeak), Strategy::Restart, (2.0, 1.0));
    assert!(after > before);
    // 35 s measured against the 90 s prior: the estimate is their mean.
    let est = o
        .book
        .recovery_estimate(Some(FailureType::MemoryLeak), Strategy::Restart);
    assert!((est.as_secs_f64() - 62.5).abs() < 1e-9, "{est:?}");
    // Cooldown: a new warning right after is not acted on.
    o.handle_prediction(at(50), &v, &bad, &[]);
    o.handle_prediction(at(55), &v, &bad, &[]);
    assert!(drain(&mut o).0.is_empty());
}

#[test]
fn a_scale_sets_an_expiring_floor() {
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = view("api", 4, 0, 0.0);
    let p = prediction(
        Health::Unhealthy,
        Some(FailureType::ResourceExhaustion),
        true,
    );
    o.handle_prediction(at(0), &v, &p, &[]);
    o.handle_prediction(at(5), &v, &p, &[]);
    o.handle_prediction(at(10), &v, &p, &[]);
    let (cmds, _) = drain(&mut o);
    assert!(matches!(&cmds[..], [Command::Scale { replicas: 6, .. }]));
    assert_eq!(o.floor("api", at(100)), Some(6));
    assert_eq!(o.floor("api", at(700)), None);
}

#[test]
fn strategies_the_driver_cannot_do_escalate_instead_of_pretending() {
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = view("api", 4, 0, 0.0);
    // Cascading failure -> isolate -> fail over: with no route to take
    // away and no standby, the orchestrator says so and does nothing.
    let p = prediction(Health::Critical, Some(FailureType::CascadingFailure), true);
    o.handle_prediction(at(0), &v, &p, &[]);
    o.handle_prediction(at(5), &v, &p, &[]);
    o.handle_prediction(at(10), &v, &p, &[]);
    let (cmds, events) = drain(&mut o);
    assert!(cmds.is_empty());
    assert!(
        matches!(events.last(), Some(HealingEvent::GaveUp { .. })),
        "{events:?}"
    );
    // Nothing started, so nothing escalated: the chain is reported as
    // inapplicable strategies, once, not again on every later tick.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, HealingEvent::Escalated { .. })),
        "{events:?}"
    );
    for t in [15, 20, 25, 30, 35, 40] {
        o.handle_prediction(at(t), &v, &p, &[]);
    }
    let (cmds, again) = drain(&mut o);
    assert!(cmds.is_empty() && again.is_empty(), "{again:?}");
}

fn leak_scenario(controller: &str) -> selfheal::scenario::LoadedScenario {
    let text = format!(
        r#"name = "leak"
duration_s = 1200
seed = 5

[metrics]
scrape_interval_s = 5

[slo]
latency_ms = 200

[controller]
{controller}

[[load]]
service = "api"
curve = {{ kind = "constant", rate = 150 }}

[[service]]
name = "api"
replicas = 3
memory_limit_mib = 512
revision = {{ service_time_ms = 8, memory_base_mib = 160 }}

[[fault]]
kind = "memory_leak"
service = "api"
pods = 2
leak_mib_per_s = 1.5
at_s = 120
"#
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    selfheal::scenario::parse(&text, "leak.toml", dir).unwrap()
}

#[test]
fn in_the_simulator_healing_restarts_leaking_pods_and_dry_run_changes_nothing() {
    // Model files are found relative to the working directory, which cargo
    // sets to the package root for tests.
    let plain = selfheal::sim::run(&leak_scenario("kind = \"static\"")).unwrap();
    let dry = selfheal::sim::run(&leak_scenario(
        "kind = \"static\"\nhealing = true\nhealing_dry_run = true",
    ))
    .unwrap();
    assert!(dry.commands.is_empty());
    assert_eq!(plain.summary.failed, dry.summary.failed);
    assert_eq!(plain.summary.restarts, dry.summary.restarts);
    assert_eq!(plain.root_seconds, dry.root_seconds);

    let healed = selfheal::sim::run(&leak_scenario("kind = \"static\"\nhealing = true")).unwrap();
    let restarts: Vec<_> = healed
        .commands
        .iter()
        .filter(|(_, _, c)| matches!(c, Command::ReplacePod { reason, .. } if reason.starts_with("heal:")))
        .collect();
    assert!(!restarts.is_empty(), "no healing restart");
    // The leak starts at 120 s; no healing action before it.
    assert!(restarts.iter().all(|(t, _, _)| t.as_secs_f64() > 120.0));
    // Each replaced pod is deleted and a new one started in its place.
    let deleted = healed
        .pod_events
        .iter()
        .filter(|e| e.kind == selfheal::sim::PodEventKind::Deleted)
        .count();
    assert!(deleted >= restarts.len(), "{deleted} deleted");
}

#[test]
fn healing_works_at_scrape_intervals_the_model_was_not_trained_on() {
    // The shipped model was trained on 5 s scrapes; at 15 and 30 s its
    // window is resampled onto that time base and the leak is still healed
    // after it starts.
    for interval in [15.0, 30.0] {
        let mut sc = leak_scenario("kind = \"static\"\nhealing = true");
        sc.spec.metrics.scrape_interval_s = interval;
        sc.spec.metrics.rate_window_s = sc.spec.metrics.rate_window_s.max(interval);
        let run = selfheal::sim::run(&sc).unwrap();
        let restarts: Vec<f64> = run
            .commands
            .iter()
            .filter(|(_, _, c)| matches!(c, Command::ReplacePod { reason, .. } if reason.starts_with("heal:")))
            .map(|(t, _, _)| t.as_secs_f64())
            .collect();
        assert!(!restarts.is_empty(), "{interval} s: no healing restart");
        assert!(
            restarts.iter().all(|&t| t > 120.0),
            "{interval} s: {restarts:?}"
        );
    }
}

/// A selector whose every tree votes for `strategy` with `share`, trained
/// on `rows` outcomes.
fn selector(
    strategy: Strategy,
    share: f64,
    rows: usize,
) -> selfheal::control::selector::StrategyForest {
    use selfheal::control::selector::{FEATURES, Node, StrategyForest, Tree};
    let classes = Strategy::ALL.to_vec();
    let mut distribution = vec![(1.0 - share) / (classes.len() - 1) as f64; classes.len()];
    distribution[classes.iter().position(|&s| s == strategy).unwrap()] = share;
    StrategyForest {
        features: FEATURES.iter().map(|s| s.to_string()).collect(),
        classes,
        trees: vec![Tree {
            nodes: vec![Node::Leaf { distribution }],
        }],
        rows,
    }
}

fn first_action(o: &mut Orchestrator) -> selfheal::control::orchestrator::HealingAction {
    let v = view("api", 4, 0, 0.02);
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    for t in [0, 5, 10] {
        o.handle_prediction(at(t), &v, &p, &[]);
    }
    let (_, events) = drain(o);
    match events.into_iter().next() {
        Some(HealingEvent::Started(a)) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_learned_selector_overrides_the_rules_only_with_enough_outcomes_and_votes() {
    use selfheal::control::orchestrator::ChosenBy;
    use std::sync::Arc;
    // Enough rows and a clear vote: the selector's scale replaces the
    // rules' restart, and the reason says so.
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    o.set_selector(Arc::new(selector(Strategy::Scale, 0.9, 100)));
    let a = first_action(&mut o);
    assert_eq!(a.strategy, Strategy::Scale);
    assert_eq!(a.first_choice, Strategy::Scale);
    assert!(
        matches!(a.chosen_by, ChosenBy::Learned { rules: Strategy::Restart, vote } if (vote - 0.9).abs() < 1e-12),
        "{:?}",
        a.chosen_by
    );
    assert!(
        a.reason
            .contains("learned selector: scale over the rules' restart"),
        "{}",
        a.reason
    );
    assert_eq!(a.situation.failure, Some(FailureType::MemoryLeak));
    // Too few recorded outcomes, or too weak a vote: the rules decide.
    for (rows, share) in [(10, 0.9), (100, 0.4)] {
        let mut o = Orchestrator::new(OrchestratorConfig::default());
        o.set_selector(Arc::new(selector(Strategy::Scale, share, rows)));
        let a = first_action(&mut o);
        assert_eq!(
            (a.strategy, a.chosen_by),
            (Strategy::Restart, ChosenBy::Rules)
        );
    }
}

#[test]
fn a_forced_first_strategy_wins_over_rules_and_selector_and_still_escalates() {
    use selfheal::control::orchestrator::ChosenBy;
    let mut o = Orchestrator::new(OrchestratorConfig {
        first_strategy: Some(Strategy::Isolate),
        ..OrchestratorConfig::default()
    });
    o.set_selector(std::sync::Arc::new(selector(Strategy::Scale, 1.0, 100)));
    // Nothing to isolate onto (no route, no caller with a fallback): the
    // chain goes on to fail over, which has no standby, and gives up; the
    // first choice is kept for the record.
    let v = view("api", 4, 0, 0.02);
    let p = prediction(Health::Critical, Some(FailureType::MemoryLeak), true);
    for t in [0, 5, 10] {
        o.handle_prediction(at(t), &v, &p, &[]);
    }
    let (cmds, events) = drain(&mut o);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(
        matches!(
            events.as_slice(),
            [
                HealingEvent::Inapplicable {
                    strategy: Strategy::Isolate,
                    next: Some(Strategy::Failover),
                    ..
                },
                HealingEvent::Inapplicable {
                    strategy: Strategy::Failover,
                    next: None,
                    ..
                },
                HealingEvent::GaveUp { .. }
            ]
        ),
        "{events:?}"
    );
    // With a standby, the escalation starts a fail-over on the forced
    // choice's behalf.
    let mut o = Orchestrator::new(OrchestratorConfig {
        first_strategy: Some(Strategy::Isolate),
        ..OrchestratorConfig::default()
    });
    let v = ServiceView {
        backup: Some("api-standby".into()),
        ..view("api", 4, 0, 0.02)
    };
    for t in [0, 5, 10] {
        o.handle_prediction(at(t), &v, &p, &[]);
    }
    let started: Vec<_> = drain(&mut o)
        .1
        .into_iter()
        .filter_map(|e| match e {
            HealingEvent::Started(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].strategy, Strategy::Failover);
    assert_eq!(started[0].first_choice, Strategy::Isolate);
    assert_eq!(started[0].chosen_by, ChosenBy::Escalation);
}

/// `view` with each pod's CPU sample taken at `now`, long after it became
/// ready, so the pod-level checks judge it.
fn sampled(name: &str, cpu: &[f64], now: Time) -> ServiceView {
    let mut v = view(name, cpu.len() as u32, 0, 0.0);
    for (p, &c) in v.pods.iter_mut().zip(cpu) {
        p.cpu_cores = c;
        p.cpu_sampled_at = Some(now);
    }
    v
}

fn replaced(cmds: &[Command]) -> Vec<&str> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::ReplacePod { pod, .. } => Some(pod.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn stalled_pods_are_restarted_at_first_sight_and_alone() {
    // No warning from the predictor: the stall is its own evidence.
    let calm = prediction(Health::Healthy, None, false);
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = sampled("api", &[0.3, 0.31, 0.0, 0.29, 0.3], at(100));
    o.handle_prediction(at(100), &v, &calm, &[]);
    let (cmds, events) = drain(&mut o);
    assert_eq!(replaced(&cmds), ["api-2"]);
    let HealingEvent::Started(a) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(a.reason.contains("api-2 stalled"), "{}", a.reason);

    // Two stalled pods of five go together: the disruption budget (one pod
    // of five) counts pods that serve, and stalled pods serve nothing.
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let v = sampled("api", &[0.3, 0.0, 0.0, 0.29, 0.3], at(100));
    o.handle_prediction(at(100), &v, &calm, &[]);
    assert_eq!(sorted(replaced(&drain(&mut o).0)), ["api-1", "api-2"]);

    // Never below the minimum of healthy replicas, stalled or not.
    let mut o = Orchestrator::new(OrchestratorConfig {
        min_healthy_replicas: 4,
        ..Default::default()
    });
    o.handle_prediction(at(100), &v, &calm, &[]);
    assert_eq!(replaced(&drain(&mut o).0).len(), 1);
}

#[test]
fn idle_services_new_pods_and_even_load_are_not_stalls() {
    let calm = prediction(Health::Healthy, None, false);
    let cases = [
        // A service without work.
        vec![0.01, 0.0, 0.02, 0.0],
        // Most pods idle: a blocked dependency, not a stall.
        vec![0.3, 0.0, 0.0, 0.3],
        // Ordinary spread.
        vec![0.3, 0.22, 0.41, 0.35, 0.28],
    ];
    for cpu in cases {
        let mut o = Orchestrator::new(OrchestratorConfig::default());
        for s in [100, 105, 110] {
            o.handle_prediction(at(s), &sampled("api", &cpu, at(s)), &calm, &[]);
        }
        assert!(drain(&mut o).0.is_empty(), "{cpu:?}");
    }
    // A pod that became ready 5 s before its sample is not judged on it.
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let mut v = sampled("api", &[0.3, 0.3, 0.02, 0.3], at(100));
    v.pods[2].last_transition = at(95);
    o.handle_prediction(at(100), &v, &calm, &[]);
    assert!(drain(&mut o).0.is_empty());
}

#[test]
fn hot_pods_need_two_scrapes_and_are_restarted_in_batches() {
    let calm = prediction(Health::Healthy, None, false);
    let mut o = Orchestrator::new(OrchestratorConfig::default());
    let hot = [1.0, 1.0, 1.0, 1.0, 0.25, 0.24, 0.26, 0.25];
    o.handle_prediction(at(100), &sampled("api", &hot, at(100)), &calm, &[]);
    assert!(drain(&mut o).0.is_empty(), "one scrape is not enough");
    let v = sampled("api", &hot, at(105));
    o.handle_prediction(at(105), &v, &calm, &[]);
    let (cmds, events) = drain(&mut o);
    // The budget: a quarter of 8 ready pods, hot ones only.
    let first = sorted(replaced(&cmds));
    assert_eq!(first.len(), 2);
    assert!(
        first
            .iter()
            .all(|p| ["api-0", "api-1", "api-2", "api-3"].contains(p))
    );
    assert_eq!(events.len(), 1);

    // The replaced pods are gone and their replacements start: nothing more.
    let mut v = v.clone();
    v.pods.retain(|p| !first.contains(&p.name.as_str()));
    for i in 0..2 {
        let mut p = v.pods.last().unwrap().clone();
        p.name = format!("api-new-{i}");
        p.ready = false;
        p.phase = PodPhase::Starting;
        p.created = at(106);
        v.pods.push(p);
    }
    o.handle_prediction(at(110), &v, &calm, &[]);
    assert!(
        drain(&mut o).0.is_empty(),
        "the last batch is still starting"
    );
    // Once they serve, the next batch, within the same action.
    for p in v.pods.iter_mut().filter(|p| p.name.starts_with("api-new")) {
        p.ready = true;
        p.phase = PodPhase::Running;
    }
    o.handle_prediction(at(125), &v, &calm, &[]);
    let (cmds, events) = drain(&mut o);
    let mut all = [first, sorted(replaced(&cmds))].concat();
    all.sort();
    assert_eq!(all, ["api-0", "api-1", "api-2", "api-3"]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(o.active("api").map(|a| a.strategy), Some(Strategy::Restart));
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort();
    v
}

/// A dependency the orchestrator isolated gets no calls until the hold
/// ends, so what its own metrics say then is the calls before: a warning
/// on them starts nothing. Once the hold is over it is judged again.
#[test]
fn an_isolated_dependency_is_judged_again_only_after_its_hold() {
    let cfg = OrchestratorConfig::default();
    let mut o = Orchestrator::new(cfg.clone());
    let mut shop = view("shop", 4, 0, 0.05);
    shop.dependencies = vec![selfheal::control::Dependency {
        service: "recs".into(),
        fallback: true,
        error_rate: 1.0,
        latency_p99: 800.0,
    }];
    // The dependency's own window: the timeouts before the isolation.
    let recs = view("recs", 3, 0, 0.3);
    let peers = [shop.clone(), recs.clone()];
    let critical = prediction(Health::Critical, None, true);
    for t in [0, 5, 10] {
        o.handle_prediction(at(t), &shop, &critical, &peers);
    }
    let (cmds, _) = drain(&mut o);
    assert!(
        matches!(&cmds[..], [Command::Isolate { service, .. }] if service == "recs"),
        "{cmds:?}"
    );
    let unhealthy = prediction(Health::Unhealthy, None, true);
    let end = 10 + cfg.isolate_hold_s as u64;
    for t in (15..end).step_by(5) {
        o.handle_prediction(at(t), &recs, &unhealthy, &peers);
    }
    let (cmds, events) = drain(&mut o);
    assert!(cmds.is_empty() && events.is_empty(), "{cmds:?} {events:?}");
    // After the hold, three warnings in a row start an incident on it.
    for t in [end, end + 5, end + 10] {
        o.handle_prediction(at(t), &recs, &unhealthy, &peers);
    }
    let (cmds, events) = drain(&mut o);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HealingEvent::Started(a) if a.target == "recs")),
        "{events:?}"
    );
    assert_eq!(cmds.len(), 1, "{cmds:?}");
}
