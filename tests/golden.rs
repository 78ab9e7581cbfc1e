//! Golden summaries: every bundled scenario's headline figures are pinned.
//!
//! A change that moves them fails here with a field-by-field diff. When the
//! change is intended, regenerate with
//! `SELFHEAL_BLESS=1 cargo test --release --test golden` and commit the
//! diff of `tests/golden/`, which then shows exactly what moved.

mod common;

use std::path::Path;

use selfheal::sim;

/// Figures compare within a relative 1e-6: exact on one machine, tolerant of
/// last-bit differences in libm elsewhere.
fn same(a: &toml::Value, b: &toml::Value) -> bool {
    let num = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
    match (num(a), num(b)) {
        (Some(x), Some(y)) => {
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

#[test]
fn bundled_scenarios_match_their_golden_summaries() {
    let bless = std::env::var_os("SELFHEAL_BLESS").is_some();
    let dir = common::repo().join("scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut diffs = Vec::new();
    for name in &names {
        let out = sim::run(&common::bundled(name)).unwrap();
        let text = out.summary_toml();
        let golden_path = common::repo().join("tests/golden").join(name);
        if bless {
            std::fs::write(&golden_path, &text).unwrap();
            continue;
        }
        let Ok(golden) = std::fs::read_to_string(&golden_path) else {
            diffs.push(format!(
                "{name}: no golden file {} (run with SELFHEAL_BLESS=1)",
                short(&golden_path)
            ));
            continue;
        };
        let (now, then): (toml::Table, toml::Table) = (
            toml::from_str(&text).unwrap(),
            toml::from_str(&golden).unwrap(),
        );
        for (k, v) in &then {
            match now.get(k) {
                Some(n) if same(n, v) => {}
                Some(n) => diffs.push(format!("{name}: {k}: {v} -> {n}")),
                None => diffs.push(format!("{name}: {k}: missing now")),
            }
        }
        for k in now.keys().filter(|k| !then.contains_key(*k)) {
            diffs.push(format!("{name}: {k}: new field (bless to record it)"));
        }
    }
    assert!(
        diffs.is_empty(),
        "golden summaries moved:\n{}",
        diffs.join("\n")
    );
}

fn short(p: &Path) -> String {
    p.strip_prefix(common::repo())
        .unwrap_or(p)
        .display()
        .to_string()
}
