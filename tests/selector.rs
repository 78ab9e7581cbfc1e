//! The learned strategy selector: recording outcomes from the simulator,
//! fitting linfa's forest, the exported value, and healing markers.

use selfheal::control::orchestrator::Strategy;
use selfheal::control::predictor::Health;
use selfheal::control::predictor::patterns::FailureType;
use selfheal::control::selector::{SelectorConfig, Situation};
use selfheal::train::selector::{self as sel, ForestConfig, Row};

fn situation(failure: Option<FailureType>, error_rate: f64, cpu: f64) -> Situation {
    Situation {
        failure,
        status: Health::Unhealthy,
        not_healthy: 0.9,
        cpu_usage: cpu,
        memory_usage: 0.5,
        error_rate,
        p99_over_slo: 1.2,
        ready_fraction: 1.0,
        recent_deploy: false,
        dependency_degraded: false,
        has_backup: false,
        can_isolate: false,
    }
}

/// Memory leaks want a restart, error storms a rollback, the rest a
/// scale-up; the rules are taken to say reconfigure everywhere.
fn synthetic_rows() -> Vec<Row> {
    (0..90)
        .map(|i| {
            let k = i % 3;
            let jitter = (i as f64 * 0.37).fract() * 0.2;
            let (s, best) = match k {
                0 => (
                    situation(Some(FailureType::MemoryLeak), 0.02 + jitter * 0.1, 0.5),
                    Strategy::Restart,
                ),
                1 => (situation(None, 0.6 + jitter, 0.4), Strategy::Rollback),
                _ => (situation(None, 0.02, 0.9 + jitter), Strategy::Scale),
            };
            Row {
                scenario: format!("synthetic-{k}"),
                params: String::new(),
                fault: format!("kind-{k}"),
                seed: i as u64,
                situation: s,
                rules: Strategy::Reconfigure,
                best,
                by_strategy: vec![],
            }
        })
        .collect()
}

#[test]
fn the_exported_forest_learns_separable_labels_and_is_deterministic() {
    let rows = synthetic_rows();
    let cfg = ForestConfig::default();
    let f = sel::fit(&rows, &cfg).unwrap();
    f.check().unwrap();
    assert_eq!(f.rows, rows.len());
    assert_eq!(f.trees.len(), cfg.trees);
    let right = rows
        .iter()
        .filter(|r| f.choose(&r.situation).unwrap().strategy == r.best)
        .count();
    assert_eq!(right, rows.len(), "training rows predicted right");
    // A new memory leak, unlike any training row's numbers, still restarts.
    let c = f
        .choose(&situation(Some(FailureType::MemoryLeak), 0.05, 0.7))
        .unwrap();
    assert_eq!(c.strategy, Strategy::Restart);
    assert!(c.vote > 0.5 && c.vote <= 1.0, "{}", c.vote);
    // Fitting again gives the same forest, whatever hash-map order linfa
    // met inside; the saved file loads back equal.
    let again = sel::fit(&rows, &cfg).unwrap();
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        serde_json::to_string(&again).unwrap()
    );
    let dir = std::env::temp_dir().join(format!("selfheal-selector-{}", std::process::id()));
    let path = dir.join("selector.json");
    sel::save(&path, &f).unwrap();
    // JSON keeps a threshold to within a unit in the last place; every
    // decision on the rows is the same.
    let back = selfheal_core::models::load_selector(&path).unwrap();
    assert_eq!((back.rows, back.trees.len()), (f.rows, f.trees.len()));
    for r in &rows {
        assert_eq!(back.choose(&r.situation), f.choose(&r.situation));
    }
    std::fs::write(&path, "{\"features\": [\"x\"]").unwrap();
    let e = selfheal_core::models::load_selector(&path).unwrap_err();
    assert!(e.to_string().contains("selector.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    assert!(sel::fit(&[], &cfg).is_err());
}

fn plan(scenario: &str, seeds: &str, tag: &str) -> selfheal::sweep::plan::Plan {
    let dir = std::env::temp_dir().join(format!(
        "selfheal-selector-suite-{}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/chaos")
        .join(format!("{scenario}.toml"));
    let suite = dir.join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "name = \"t\"\nseeds = {seeds}\ncontrollers = [\"hpa:70+heal\"]\ntimeseries = \"none\"\n[[scenario]]\nfile = {:?}\n",
            file.display().to_string()
        ),
    )
    .unwrap();
    let p = selfheal::sweep::plan::load(&suite).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    p
}

#[test]
fn recorded_outcomes_give_every_strategy_from_one_situation() {
    let p = plan("memory-leak", "[1, 2]", "trials");
    let trials = sel::run_trials(&p.runs, &|_, _| {}).unwrap();
    assert_eq!(trials.len(), 2 * 7);
    for t in &trials {
        assert_eq!(t.fault, "memory_leak");
        // A forced arm's first choice is the forced strategy; the rules
        // restart a leak. An arm whose whole chain had nothing to act on
        // (roll back on the first revision -> fail over without a
        // standby) never started an action.
        match (&t.first, t.forced) {
            (Some((first, situation)), forced) => {
                assert_eq!(*first, forced.unwrap_or(Strategy::Restart));
                assert_eq!(situation.failure, Some(FailureType::MemoryLeak));
            }
            (None, Some(Strategy::Rollback | Strategy::Failover | Strategy::Isolate)) => {}
            (None, forced) => panic!("no action with {forced:?} first"),
        }
    }
    // Identical up to the first decision: the same situation in every arm.
    for seed in [1, 2] {
        let s: Vec<_> = trials
            .iter()
            .filter(|t| t.seed == seed)
            .filter_map(|t| t.first.clone().map(|f| f.1))
            .collect();
        assert!(s.len() >= 4 && s.windows(2).all(|w| w[0] == w[1]), "{s:?}");
    }
    let rows = sel::rows(&trials);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.rules, Strategy::Restart);
        assert_eq!(r.by_strategy.len(), Strategy::ALL.len());
        // Restarting before the OOM killer fails nothing; every other first
        // strategy leaves the leak to grow for a while.
        assert_eq!(r.best, Strategy::Restart);
        assert_eq!(r.outcome(Strategy::Restart).fault_failed, 0);
        assert!(r.outcome(Strategy::Rollback).fault_failed > 0);
    }
    // Scoring: learned from these rows, the selector agrees with the rules
    // and the label.
    let f = sel::fit(&rows, &ForestConfig::default()).unwrap();
    let e = sel::evaluate(
        &f,
        &SelectorConfig {
            min_rows: 1,
            min_vote: 0.5,
        },
        &rows,
    );
    let all = e.iter().find(|e| e.fault == "all").unwrap();
    assert_eq!(
        (all.rows, all.rules_right, all.learned_right, all.overrides),
        (2, 2, 2, 0)
    );
    assert_eq!(all.mttr[0], all.mttr[2]);
    // A controller without healing has nothing to record.
    let mut runs = p.runs.clone();
    runs[0].loaded.spec.controller.healing = false;
    assert!(
        sel::run_trials(&runs[..1], &|_, _| {})
            .unwrap_err()
            .to_string()
            .contains("+heal")
    );
}

#[test]
fn a_healing_run_records_its_events_and_marks_its_timeline() {
    let p = plan("memory-leak", "[1]", "markers");
    let out = selfheal::sim::run(&p.runs[0].loaded).unwrap();
    assert!(
        out.healing
            .iter()
            .any(|(_, e)| matches!(e, selfheal::control::orchestrator::HealingEvent::Started(_))),
        "{:?}",
        out.healing
    );
    let csv = selfheal::sweep::run::series_csv(&out, "api");
    let healing_first = out
        .commands
        .iter()
        .find(|(_, _, c)| c.is_healing())
        .expect("a healing command");
    let marker = format!(
        "heal {} {}",
        healing_first.2.kind(),
        healing_first.2.service()
    );
    let line = csv
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no `{marker}` marker"));
    let t: u64 = line.split(',').next().unwrap().parse().unwrap();
    assert_eq!(t, healing_first.0.whole_secs());
    assert!(csv.contains("fault memory_leak api"));
    assert_eq!(
        selfheal::sweep::charts::Marker::of_label(&marker),
        selfheal::sweep::charts::Marker::Healing
    );
}
