//! The decision-quality regression gate: `suites/gate.toml`'s per-scenario,
//! per-controller means must stay within tolerance of
//! `tests/golden/gate.csv`.
//!
//! Figures, not bytes, are compared: a last-bit difference in libm on
//! another CPU may shift a run slightly, a behaviour change moves it a lot.
//! Tolerance: 2 % relative, or 2 units absolute for small counts. After an
//! intended change, regenerate with
//! `SELFHEAL_BLESS=1 cargo test --release --test gate` and review the diff.

mod common;

use std::collections::BTreeMap;

use selfheal::sweep::{plan, run};

const FIGURES: [&str; 4] = [
    "slo_violation_s",
    "failed",
    "replica_seconds",
    "scaling_actions",
];

fn means(records: &[run::RunRecord]) -> BTreeMap<String, [f64; 4]> {
    let mut sums: BTreeMap<String, ([f64; 4], f64)> = BTreeMap::new();
    for r in records {
        let e = sums
            .entry(format!("{}|{}", r.scenario, r.controller))
            .or_insert(([0.0; 4], 0.0));
        for (i, v) in [
            r.slo_violation_s,
            r.failed as f64,
            r.replica_seconds,
            r.scaling_actions as f64,
        ]
        .into_iter()
        .enumerate()
        {
            e.0[i] += v;
        }
        e.1 += 1.0;
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, s.map(|x| x / n)))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 2.0 || (a - b).abs() <= 0.02 * a.abs().max(b.abs())
}

#[test]
fn decision_quality_matches_the_golden_figures() {
    let p = plan::load(&common::repo().join("suites/gate.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("selfheal-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let records = run::execute(&p, &dir, None, &|_, _| {}).unwrap();
    assert_eq!(records.len(), 24);
    let now = means(&records);
    let golden_path = common::repo().join("tests/golden/gate.csv");
    if std::env::var_os("SELFHEAL_BLESS").is_some() {
        let mut s = format!("scenario|controller,{}\n", FIGURES.join(","));
        for (k, v) in &now {
            s.push_str(&format!("{k},{},{},{},{}\n", v[0], v[1], v[2], v[3]));
        }
        std::fs::write(&golden_path, s).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&golden_path)
        .expect("tests/golden/gate.csv (run with SELFHEAL_BLESS=1 to create it)");
    let mut moved = Vec::new();
    let mut seen = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let Some(v) = now.get(f[0]) else {
            moved.push(format!("{}: missing now", f[0]));
            continue;
        };
        seen += 1;
        for (i, name) in FIGURES.iter().enumerate() {
            let golden: f64 = f[i + 1].parse().unwrap();
            if !close(golden, v[i]) {
                moved.push(format!("{} {name}: {golden} -> {}", f[0], v[i]));
            }
        }
    }
    assert_eq!(seen, now.len(), "new rows: bless to record them");
    assert!(
        moved.is_empty(),
        "decision quality moved beyond tolerance:\n{}",
        moved.join("\n")
    );
}
