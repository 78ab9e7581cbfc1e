//! Sweeps: the same results at any thread count, split into shards or
//! interrupted and resumed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use selfheal::sweep::{plan, report, run};

fn suite() -> PathBuf {
    common::repo().join("tests/suites/small.toml")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("selfheal-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selfheal"))
}

/// `selfheal sweep <small suite> --out DIR`.
fn sweep_cmd(dir: &Path) -> Command {
    let mut c = bin();
    c.arg("sweep").arg(suite()).arg("--out").arg(dir);
    c
}

/// Runs a command to completion and asserts it succeeded.
fn run_ok(mut c: Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tables(dir: &Path) -> Vec<String> {
    [
        "runs.csv",
        "aggregate_controller.csv",
        "aggregate_scenario.csv",
        "aggregate_fault.csv",
        "timeseries.csv",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
    })
    .collect()
}

fn sweep_in_pool(threads: usize, dir: &Path) {
    let p = plan::load(&suite()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let records = pool
        .install(|| run::execute(&p, dir, None, &|_, _| {}))
        .unwrap();
    assert_eq!(records.len(), 24);
    report::write(dir, &p.name, &p.description, &records).unwrap();
}

#[test]
fn same_results_at_any_thread_count() {
    let (a, b) = (tmp("t1"), tmp("t2"));
    sweep_in_pool(1, &a);
    sweep_in_pool(2, &b);
    assert_eq!(tables(&a), tables(&b));
    // The journal is in completion order, the report in matrix order.
    let index = std::fs::read_to_string(a.join("index.html")).unwrap();
    let images = report::linked_images(&index);
    assert!(images.len() >= 5, "{images:?}");
    for img in images {
        assert!(
            a.join(&img).exists(),
            "index.html links a missing image {img}"
        );
    }
}

#[test]
fn three_shards_in_separate_processes_merge_to_the_single_run() {
    let single = tmp("single");
    run_ok(sweep_cmd(&single));
    let parts: Vec<PathBuf> = (0..3).map(|i| tmp(&format!("shard{i}"))).collect();
    let children: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            sweep_cmd(p)
                .arg("--shard")
                .arg(format!("{i}/3"))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let merged = tmp("merged");
    let out = bin()
        .arg("merge")
        .arg("--out")
        .arg(&merged)
        .args(&parts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tables(&single), tables(&merged));
}

#[test]
fn an_interrupted_sweep_resumes_to_the_same_results() {
    let whole = tmp("whole");
    run_ok(sweep_cmd(&whole));
    let cut = tmp("cut");
    let mut child = sweep_cmd(&cut).spawn().unwrap();
    // Kill it once some, but not all, runs are logged.
    let journal = cut.join(run::JOURNAL);
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines > 4 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&journal).unwrap().lines().count() - 1;
    assert!(
        logged > 0 && logged < 24,
        "killed after {logged} of 24 runs"
    );
    run_ok(sweep_cmd(&cut));
    assert_eq!(
        run::read_journal(&journal).unwrap().len(),
        24,
        "every run exactly once"
    );
    assert_eq!(tables(&whole), tables(&cut));
}

#[test]
fn report_rebuilds_from_saved_results() {
    let dir = tmp("report");
    run_ok(sweep_cmd(&dir));
    let before = tables(&dir);
    std::fs::remove_file(dir.join("index.html")).unwrap();
    std::fs::remove_dir_all(dir.join("charts")).unwrap();
    let out = bin().arg("report").arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("index.html").exists() && dir.join("charts/pareto.png").exists());
    assert_eq!(before, tables(&dir));
}

#[test]
fn a_cut_off_journal_line_is_dropped_and_rerun() {
    let dir = tmp("torn");
    let p = plan::load(&suite()).unwrap();
    run::execute(&p, &dir, Some((0, 4)), &|_, _| {}).unwrap();
    let journal = dir.join(run::JOURNAL);
    let mut text = std::fs::read_to_string(&journal).unwrap();
    let full = text.lines().count() - 1;
    text.truncate(text.len() - 10); // a write cut off mid-line
    std::fs::write(&journal, &text).unwrap();
    assert_eq!(run::read_journal(&journal).unwrap().len(), full - 1);
    let again = run::execute(&p, &dir, Some((0, 4)), &|_, _| {}).unwrap();
    assert_eq!(again.len(), full);
    assert_eq!(run::read_journal(&journal).unwrap().len(), full);
}

#[test]
fn a_changed_scenario_is_run_again_not_read_from_the_journal() {
    // Formerly the journal was keyed by scenario name, so a sweep rerun
    // into the same directory after the scenario was edited reused the old
    // results.
    let dir = tmp("edited");
    let work = tmp("edited-src");
    std::fs::create_dir_all(&work).unwrap();
    let scenario = std::fs::read_to_string(common::repo().join("scenarios/quickstart.toml"))
        .unwrap()
        .replace("duration_s = 600", "duration_s = 120");
    std::fs::write(work.join("s.toml"), &scenario).unwrap();
    let suite = work.join("suite.toml");
    std::fs::write(
        &suite,
        "name = \"edited\"\nseeds = 2\ncontrollers = [\"static\"]\n[[scenario]]\nfile = \"s.toml\"\n",
    )
    .unwrap();
    let first = run::execute(&plan::load(&suite).unwrap(), &dir, None, &|_, _| {}).unwrap();
    // The same suite again: everything comes from the journal.
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let count = |_: usize, _: usize| {
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let same = run::execute(&plan::load(&suite).unwrap(), &dir, None, &count).unwrap();
    assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 0);
    let lines = |rs: &[run::RunRecord]| rs.iter().map(|r| r.to_line()).collect::<Vec<_>>();
    assert_eq!(lines(&same), lines(&first));
    // Twice the load under the same name: both runs again, new figures.
    std::fs::write(
        work.join("s.toml"),
        scenario.replace("rate = 300", "rate = 600"),
    )
    .unwrap();
    let edited = run::execute(&plan::load(&suite).unwrap(), &dir, None, &count).unwrap();
    assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 2);
    for (old, new) in first.iter().zip(&edited) {
        assert_eq!((&old.scenario, old.seed), (&new.scenario, new.seed));
        assert_ne!(old.id, new.id);
        assert!(
            new.requests > old.requests * 3 / 2,
            "{} vs {}",
            new.requests,
            old.requests
        );
    }
}

#[test]
fn suite_errors_name_the_file_and_line() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    let scenario = common::repo().join("scenarios/quickstart.toml");
    std::fs::write(
        &bad,
        format!(
            "name = \"b\"\nseeds = 2\ncontrollers = [\"hpa:lots\"]\n[[scenario]]\nfile = \"{}\"\n",
            scenario.display()
        ),
    )
    .unwrap();
    let e = plan::load(&bad).err().unwrap().to_string();
    assert!(
        e.contains("bad.toml:3") && e.contains("`lots` is not a CPU percent"),
        "{e}"
    );
    std::fs::write(&bad, format!("name = \"b\"\nseeds = 2\ncontrollers = [\"static\"]\n[[scenario]]\nfile = \"{}\"\nvary = {{ \"service[9].replicas\" = [1] }}\n", scenario.display())).unwrap();
    let e = plan::load(&bad).err().unwrap().to_string();
    assert!(
        e.contains("bad.toml:6") && e.contains("out of range"),
        "{e}"
    );
    // A varied value the scenario refuses points at the suite's line, once
    // (formerly a line of an in-memory copy of the scenario, printed twice).
    std::fs::write(&bad, format!("name = \"b\"\nseeds = 2\ncontrollers = [\"static\"]\n[[scenario]]\nfile = \"{}\"\nvary = {{ \"slo.latency_ms\" = [100, -5] }}\n", scenario.display())).unwrap();
    let out = bin()
        .arg("sweep")
        .arg(&bad)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        e.trim(),
        format!(
            "error: {}:6: field `scenario[0].vary.slo.latency_ms`: the value -5: must be a positive number, found -5",
            bad.display()
        )
    );
    // A type error in the scenario itself names its file, line and field.
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&scenario)
            .unwrap()
            .replace("replicas = 3", "replicas = -1"),
    )
    .unwrap();
    std::fs::write(&bad, "name = \"b\"\nseeds = 2\ncontrollers = [\"static\"]\n[[scenario]]\nfile = \"broken.toml\"\n").unwrap();
    let e = plan::load(&bad).err().unwrap().to_string();
    assert!(
        e.contains("broken.toml:34: field `service[1].replicas`: invalid value: integer `-1`"),
        "{e}"
    );
}

/// The tuner's successive halving on the small suite: every candidate of a
/// rung ran the same runs (nested shares of one order), each rung's runs
/// were run once, and a rerun resumes from the journal to the same report.
#[test]
fn tuning_pairs_its_runs_and_resumes() {
    use selfheal::sweep::tune;
    let dir = tmp("tune");
    let suites = || tune::Suites {
        train: plan::load(&suite()).unwrap(),
        train_path: "small.toml".into(),
        holdout: plan::load(&suite()).unwrap(),
        holdout_path: "small.toml".into(),
    };
    let halving = tune::Halving {
        candidates: 5,
        ..Default::default()
    };
    let go = || {
        tune::tune(
            &tune::Search::hpa(),
            &halving,
            &suites(),
            0.05,
            &dir,
            &|_| {},
            &|_, _| {},
        )
        .unwrap()
    };
    let first = go();
    // 2 durations x 6 seeds = 12 training runs: shares of 2, 4 and 12.
    assert_eq!(
        first.rungs.iter().map(|r| r.runs).collect::<Vec<_>>(),
        [2, 4, 12]
    );
    assert_eq!(first.rungs[0].candidates.len(), 6);
    let journal = dir.join("train").join(run::JOURNAL);
    let records = run::read_journal(&journal).unwrap();
    let runs_of = |label: &str| -> Vec<(String, String, u64)> {
        records
            .iter()
            .filter(|r| r.controller == label)
            .map(|r| (r.scenario.clone(), r.params.clone(), r.seed))
            .collect()
    };
    let mut shares: Vec<Vec<(String, String, u64)>> =
        (0..6).map(|c| runs_of(&format!("candidate-{c}"))).collect();
    shares.sort_by_key(|s| s.len());
    for pair in shares.windows(2) {
        let (small, large) = (&pair[0], &pair[1]);
        assert!([2, 4, 12].contains(&small.len()), "{}", small.len());
        assert!(
            small.iter().all(|run| large.contains(run)),
            "the shares are nested: {small:?} in {large:?}"
        );
    }
    let last = first.rungs.last().unwrap();
    let best = &first.candidates[last.candidates[last.best()]];
    assert_eq!(first.best, best.spec);
    assert!(
        first
            .report_md
            .contains("## Pareto front on the whole training suite")
    );
    let again = go();
    assert_eq!(run::read_journal(&journal).unwrap().len(), records.len());
    assert_eq!(again.report_md, first.report_md);
}

/// `selfheal run ... | head`: the reader of stdout leaves before the
/// summary is printed; the command still writes its files and exits 0,
/// with nothing on stderr (it panicked with a backtrace before).
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tmp("closed-stdout");
    let mut child = bin()
        .arg("run")
        .arg(common::repo().join("scenarios/quickstart.toml"))
        .arg("--out")
        .arg(&dir)
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The read end closes at once: the run's first line finds no reader.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    assert!(dir.join("commands.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
