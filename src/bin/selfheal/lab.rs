//! The lab's commands: sweeps and their reports, the decision-quality
//! suite, the tuner, the approval and the strategy selector. Each reads
//! its inputs, calls the library and writes what it returns.

use std::path::PathBuf;

use anyhow::Context;

use crate::progress;

pub fn learn_selector(
    suite: &std::path::Path,
    train_seeds: u64,
    out: &std::path::Path,
    report: &std::path::Path,
) -> anyhow::Result<()> {
    use selfheal::train::selector as sel;
    let plan = selfheal::sweep::plan::load(suite)?;
    outln!(
        "recording outcomes: {} runs of {} x 7 arms (rules, then each strategy first) on {} threads",
        plan.runs.len(),
        plan.name,
        rayon::current_num_threads()
    );
    let command = format!(
        "selfheal learn-selector {} --train-seeds {train_seeds}",
        suite.display()
    );
    let started = std::time::Instant::now();
    let learned = sel::learn(
        &plan,
        &command,
        train_seeds,
        &progress::runs("runs"),
        &|| started.elapsed().as_secs_f64(),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", suite.display()))?;
    sel::save(out, &learned.forest)?;
    let meta_path = out.with_file_name("training.json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&learned.meta)?)
        .with_context(|| format!("writing {}", meta_path.display()))?;
    std::fs::create_dir_all(report).with_context(|| format!("creating {}", report.display()))?;
    std::fs::write(report.join("trials.csv"), &learned.trials_csv)?;
    std::fs::write(report.join("selector.md"), &learned.report_md)?;
    outln!("{}", sel::evaluation_md(&learned.held_out));
    outln!(
        "wrote {} and {}",
        out.display(),
        report.join("selector.md").display()
    );
    Ok(())
}

pub fn suite(
    data: &std::path::Path,
    seeds: u64,
    out: &std::path::Path,
    qos: selfheal::eval::suite::Qos,
    tune: bool,
    score_training: bool,
) -> anyhow::Result<()> {
    use selfheal::eval::suite::{self, Split};
    use selfheal::eval::suite_report as report;
    let traces = report::load_traces(data)?;
    let all = suite::standard(&traces, qos)?;
    let train: Vec<_> = all.iter().filter(|s| s.split == Split::Train).collect();
    let scored = if score_training {
        Split::Train
    } else {
        Split::Test
    };
    let test: Vec<_> = all.iter().filter(|s| s.split == scored).collect();
    let tune = tune && !score_training;
    let hpas = report::hpa_curve();
    let started = std::time::Instant::now();

    // 1. Choose the selfheal settings on the training scenarios.
    let tuned = if tune {
        let candidates = report::tuning_candidates();
        outln!(
            "tuning: {} training scenarios x {} controllers x {} seeds on {} threads",
            train.len(),
            hpas.len() + candidates.len(),
            report::TUNE_SEEDS.len(),
            rayon::current_num_threads()
        );
        let t = report::tune(
            &train,
            &hpas,
            &candidates,
            &out.join("journal-tuning"),
            &progress::runs("runs"),
        )?;
        outln!(
            "chose {} ({:.1} s below HPA's curve on training)",
            t.chosen.0,
            t.below_s
        );
        Some(t)
    } else {
        None
    };

    // 2. Score everything on the held-out scenarios.
    let controllers = report::scored_controllers(tuned.as_ref(), &hpas);
    let score_seeds: Vec<u64> = (1..=seeds).collect();
    outln!(
        "scoring: {} {} scenarios x {} controllers x {} seeds",
        test.len(),
        report::split_words(scored).0,
        controllers.len(),
        score_seeds.len()
    );
    let results = suite::run_matrix(
        &test,
        &controllers,
        &score_seeds,
        &out.join("journal-scoring"),
        &progress::runs("runs"),
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("runs.csv"), report::runs_csv(&results))?;
    let md = report::Summary {
        train: &train,
        test: &test,
        scored,
        seeds,
        qos,
        tuned: tuned.as_ref(),
        controllers: &controllers,
        hpas: &hpas,
    }
    .render(&suite::means(&results));
    std::fs::write(out.join("summary.md"), &md)?;
    outln!("{md}");
    outln!(
        "wrote {} in {:.0} s",
        out.join("summary.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--shard `{s}`: expected i/n, such as 0/3"))?;
    let (i, n): (usize, usize) = (i.parse()?, n.parse()?);
    anyhow::ensure!(n > 0 && i < n, "--shard `{s}`: need 0 <= i < n");
    Ok((i, n))
}

/// The suite's name and description, kept beside the results so `report`
/// and `merge` can rebuild without the suite file.
fn write_meta(dir: &std::path::Path, name: &str, description: &str) -> anyhow::Result<()> {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("description".into(), description.into());
    std::fs::write(dir.join("sweep.toml"), toml::to_string(&t)?)?;
    Ok(())
}

fn read_meta(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let p = dir.join("sweep.toml");
    let t: toml::Table = toml::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    )?;
    let get = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Ok((get("name"), get("description")))
}

pub fn sweep(
    suite: &std::path::Path,
    out: Option<PathBuf>,
    shard: Option<&str>,
) -> anyhow::Result<()> {
    let plan = selfheal::sweep::plan::load(suite)?;
    let dir = out.unwrap_or_else(|| PathBuf::from("reports").join(&plan.name));
    let shard = shard.map(parse_shard).transpose()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_meta(&dir, &plan.name, &plan.description)?;
    let selected = plan
        .runs
        .iter()
        .filter(|r| shard.is_none_or(|(i, n)| r.index % n == i))
        .count();
    outln!(
        "sweep {}: {} runs{} on {} threads -> {}",
        plan.name,
        selected,
        shard
            .map(|(i, n)| format!(" (shard {i}/{n} of {})", plan.runs.len()))
            .unwrap_or_default(),
        rayon::current_num_threads(),
        dir.display()
    );
    let started = std::time::Instant::now();
    let records = selfheal::sweep::run::execute(&plan, &dir, shard, &progress::runs("runs"))?;
    if shard.is_none() {
        selfheal::sweep::report::write(&dir, &plan.name, &plan.description, &records)?;
        outln!(
            "wrote {} in {:.1} s",
            dir.join("index.html").display(),
            started.elapsed().as_secs_f64()
        );
    } else {
        outln!(
            "shard done in {:.1} s; combine the shards with `selfheal merge --out DIR PARTS...`",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn report(dir: &std::path::Path) -> anyhow::Result<()> {
    let (name, description) = read_meta(dir)?;
    let mut records = selfheal::sweep::run::read_journal(&dir.join(selfheal::sweep::run::JOURNAL))?;
    anyhow::ensure!(
        !records.is_empty(),
        "{}: no finished runs to report",
        dir.display()
    );
    records.sort_by_key(|r| r.index);
    selfheal::sweep::report::write(dir, &name, &description, &records)?;
    outln!("wrote {}", dir.join("index.html").display());
    Ok(())
}

pub fn merge(out: &std::path::Path, parts: &[PathBuf]) -> anyhow::Result<()> {
    use selfheal::sweep::run::{JOURNAL, RunRecord, read_journal};
    let (name, description) = read_meta(&parts[0])?;
    std::fs::create_dir_all(out.join("series"))
        .with_context(|| format!("creating {}", out.display()))?;
    let mut all: std::collections::BTreeMap<usize, RunRecord> = Default::default();
    for p in parts {
        for r in read_journal(&p.join(JOURNAL))? {
            let series = p.join("series").join(format!("{}.csv", r.index));
            if series.exists() {
                std::fs::copy(&series, out.join("series").join(format!("{}.csv", r.index)))?;
            }
            if let Some(prev) = all.get(&r.index) {
                anyhow::ensure!(
                    prev.id == r.id,
                    "run {} differs between parts ({} vs {}): not shards of one suite",
                    r.index,
                    prev.id,
                    r.id
                );
            }
            all.insert(r.index, r);
        }
    }
    let records: Vec<RunRecord> = all.into_values().collect();
    let mut journal = RunRecord::header() + "\n";
    for r in &records {
        journal.push_str(&r.to_line());
        journal.push('\n');
    }
    std::fs::write(out.join(JOURNAL), journal)?;
    write_meta(out, &name, &description)?;
    selfheal::sweep::report::write(out, &name, &description, &records)?;
    outln!(
        "merged {} runs from {} parts into {}",
        records.len(),
        parts.len(),
        out.join("index.html").display()
    );
    Ok(())
}

pub fn tune(
    train: &std::path::Path,
    holdout: &std::path::Path,
    weight: f64,
    kind: crate::cli::Tunable,
    halving: &selfheal::sweep::tune::Halving,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use selfheal::sweep::{plan, tune};
    let search = match kind {
        crate::cli::Tunable::Selfheal => tune::Search::selfheal(),
        crate::cli::Tunable::Hpa => tune::Search::hpa(),
    };
    let suites = tune::Suites {
        train: plan::load(train)?,
        train_path: train.display().to_string(),
        holdout: plan::load(holdout)?,
        holdout_path: holdout.display().to_string(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    let t = tune::tune(
        &search,
        halving,
        &suites,
        weight,
        out,
        &|line| outln!("{line}"),
        &progress::runs("runs"),
    )?;
    let mut written = vec![out.join("tune.md"), out.join("best-controller.toml")];
    std::fs::write(&written[0], &t.report_md)?;
    std::fs::write(&written[1], &t.best_toml)?;
    if kind == crate::cli::Tunable::Hpa {
        let manifest = out.join("hpa.yaml");
        std::fs::write(&manifest, tune::hpa_manifest(&t.best, &suites.services()))?;
        written.push(manifest);
    }
    out!("{}", t.report_md);
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    outln!(
        "wrote {} in {:.0} s",
        names.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn approve(
    policy: &std::path::Path,
    suite: &std::path::Path,
    baseline: &str,
    criteria: selfheal::sweep::approve::Criteria,
    out: &std::path::Path,
) -> anyhow::Result<bool> {
    use selfheal::sweep::{approve, plan, tune};
    let policy_spec = selfheal::scenario::load_policy(policy)?;
    let base_spec = selfheal::scenario::ControllerSpec::parse_short(baseline)?;
    let chaos = plan::load(suite)?;
    let (hash, canonical) = approve::policy_hash(&policy_spec);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    outln!(
        "approving policy {hash} against {baseline} on {}",
        suite.display()
    );
    let started = std::time::Instant::now();
    let run = |label: &str, spec, dir: &str| {
        tune::run_under(&chaos, label, spec, &out.join(dir), &progress::runs("runs"))
    };
    let pr = run("policy", &policy_spec, "policy")?;
    let br = run(baseline, &base_spec, "baseline")?;
    let (effects, pairs) = approve::judge(&pr, &br, criteria);
    let approved = effects.iter().all(|e| e.pass);
    let record = approve::Approval {
        policy_hash: hash,
        policy: canonical,
        baseline: baseline.to_string(),
        suite: suite.display().to_string(),
        pairs,
        criteria,
        effects,
        approved,
    };
    std::fs::write(out.join("approval.toml"), record.to_toml())?;
    let md = record.to_md();
    std::fs::write(out.join("approval.md"), &md)?;
    out!("{md}");
    outln!(
        "wrote {} in {:.0} s",
        out.join("approval.toml").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(approved)
}
