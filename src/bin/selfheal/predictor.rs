//! `selfheal traces`, `selfheal train`: the predictor's data and training.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use selfheal::control::predictor::normalise::Inputs;
use selfheal::train::store::{self, FORMAT, TrainingMeta};
use selfheal::train::trainer::{self, TrainConfig};
use selfheal::train::{dataset, recorded, traces, validation_report};

/// Reads a `TracesConfig` TOML file, or the defaults.
pub fn traces_config(path: Option<&Path>) -> anyhow::Result<traces::TracesConfig> {
    match path {
        None => Ok(traces::TracesConfig::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).map_err(|e| {
                selfheal::scenario::toml_error(&text, &p.display().to_string(), &e).into()
            })
        }
    }
}

pub fn generate_traces(
    cfg: &traces::TracesConfig,
    scenarios_dir: &Path,
    out: &Path,
) -> anyhow::Result<traces::Dataset> {
    let started = std::time::Instant::now();
    let done = AtomicUsize::new(0);
    let line = super::progress::runs("runs");
    eprintln!(
        "simulating {} runs ({} s each, seed {}) on {} threads",
        cfg.runs,
        cfg.duration_s,
        cfg.seed,
        rayon::current_num_threads()
    );
    let tick = || line(done.fetch_add(1, Ordering::Relaxed) + 1, cfg.runs);
    let ds = traces::generate(cfg, scenarios_dir, &tick)?;
    dataset::save(&ds, out)?;
    let labelled = ds.sample_ends(1).len();
    outln!(
        "wrote {} ({} rows, {} labelled windows) and {} in {:.1} s",
        out.display(),
        ds.rows.len(),
        labelled,
        out.with_extension("toml").display(),
        started.elapsed().as_secs_f64()
    );
    print_label_table(&ds);
    Ok(ds)
}

/// Labelled windows (stride 1) by fault and class.
pub fn print_label_table(ds: &traces::Dataset) {
    let mut table: std::collections::BTreeMap<&str, [usize; 4]> = Default::default();
    for e in ds.sample_ends(1) {
        let r = &ds.rows[e];
        let key = r.fault.map_or("none", |f| f.as_str());
        table.entry(key).or_default()[r.label.expect("labelled") as usize] += 1;
    }
    outln!(
        "{:<20} {:>9} {:>9} {:>9} {:>9}",
        "fault",
        "healthy",
        "degraded",
        "unhealthy",
        "critical"
    );
    for (k, c) in &table {
        outln!("{k:<20} {:>9} {:>9} {:>9} {:>9}", c[0], c[1], c[2], c[3]);
    }
}

/// The training data: generated traces, or recordings instead
/// (`--from-recorded`), or both (`--with-recorded`). Relative inputs read
/// recordings on the traces' time base with their own SLO latency; raw
/// inputs read them as they were scraped.
pub fn training_data(
    data: &Path,
    (recorded, with_recorded, slo_latency_ms): (Option<&Path>, &[PathBuf], Option<f64>),
    inputs: Inputs,
) -> anyhow::Result<(traces::Dataset, PathBuf)> {
    let on_time_base = |dir: &Path, cfg: &traces::TracesConfig| {
        recorded::load_dir_on_time_base(dir, cfg, slo_latency_ms, traces::TRACES_SLO_LATENCY_MS)
    };
    let defaults = traces::TracesConfig::default();
    Ok(match (recorded, inputs) {
        (Some(dir), Inputs::Raw) => (
            recorded::load_dir(dir, &defaults, slo_latency_ms)?,
            dir.to_path_buf(),
        ),
        (Some(dir), _) => (on_time_base(dir, &defaults)?, dir.to_path_buf()),
        (None, _) => {
            let mut ds = dataset::load(data)?;
            for dir in with_recorded {
                let more = on_time_base(dir, &ds.config)?;
                outln!(
                    "{}: {} runs, {} rows on the traces' {} s time base",
                    dir.display(),
                    more.runs.len(),
                    more.rows.len(),
                    ds.config.scrape_interval_s
                );
                ds.append(more);
            }
            (ds, data.to_path_buf())
        }
    })
}

pub fn train(
    (ds, data): (traces::Dataset, PathBuf),
    (cfg, inputs): (&TrainConfig, Inputs),
    out: &Path,
    command: String,
) -> anyhow::Result<()> {
    outln!(
        "{}: {} runs, {} rows, controller {}",
        data.display(),
        ds.runs.len(),
        ds.rows.len(),
        ds.controller
    );
    let device = burn::prelude::Device::flex();
    let mut bar = super::progress::Epochs::new(cfg.max_epochs);
    let t = trainer::train_with(&ds, cfg, inputs, &device, &mut bar);
    let meta = TrainingMeta {
        format: FORMAT.into(),
        dataset: data.display().to_string(),
        dataset_config: ds.config.clone(),
        controller: ds.controller.clone(),
        train_runs: t.train_runs.len(),
        val_runs: t.val_runs.len(),
        train_samples: t.train_samples,
        best_epoch: t.best_epoch,
        history: t.history.clone(),
        command,
        median_time_to_breach_s: store::median_time_to_breach(&ds, &t.train_runs),
        alarm_threshold: selfheal::train::validate::calibrate_trained(&ds, &t, cfg.net.window, 2)
            as f32,
    };
    outln!(
        "alarm threshold {:.3} ({} false alarms per service-hour on the validation runs)",
        meta.alarm_threshold,
        selfheal::train::validate::CALIBRATION_FALSE_ALARMS
    );
    store::save(out, &t, cfg, &meta)?;
    outln!(
        "best epoch {} (validation loss {:.4}); wrote {}",
        t.best_epoch,
        t.history[t.best_epoch - 1].val_loss,
        out.display()
    );
    Ok(())
}

/// Generates (or reuses, when the same configuration was generated before)
/// a held-out trace set.
fn heldout(
    cfg: &traces::TracesConfig,
    scenarios: &Path,
    path: &Path,
) -> anyhow::Result<traces::Dataset> {
    if path.exists()
        && let Ok(ds) = dataset::load(path)
        && ds.config == *cfg
    {
        outln!("reusing {}", path.display());
        return Ok(ds);
    }
    generate_traces(cfg, scenarios, path)
}

pub struct ValidateArgs<'a> {
    pub model: &'a Path,
    pub train_data: &'a Path,
    pub scenarios: &'a Path,
    pub out: &'a Path,
    pub runs: usize,
    pub stride: usize,
    pub leave_one_out_epochs: usize,
    pub recorded: Option<&'a Path>,
    pub slo_latency_ms: Option<f64>,
    pub intervals: &'a [f64],
    pub episodes_per_day: f64,
}

pub fn validate(a: &ValidateArgs) -> anyhow::Result<()> {
    use selfheal::train::validate as v;
    if let Some(bad) = a.intervals.iter().find(|i| !(i.is_finite() && **i > 0.0)) {
        anyhow::bail!("--intervals: {bad} is not a scrape interval in seconds (e.g. 5,15,30,60)");
    }
    let bundle = store::load(a.model)?;
    let model = bundle.model();
    let pcfg = bundle.predictor_config();
    let base = bundle.meta.dataset_config.clone();
    let train_ds = dataset::load(a.train_data)?;
    std::fs::create_dir_all(a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let seeds_cfg = traces::TracesConfig {
        seed: base.seed + 1000,
        runs: a.runs,
        ..base.clone()
    };
    let trace_cfg = traces::TracesConfig {
        seed: base.seed + 2000,
        runs: a.runs / 2,
        loads: vec![traces::LoadFamily::Trace],
        ..base.clone()
    };
    let mut sets = vec![
        (
            "seeds",
            "Held out: other seeds and runs (synthetic loads)",
            heldout(
                &seeds_cfg,
                a.scenarios,
                &a.out.join("heldout-seeds.parquet"),
            )?,
        ),
        (
            "trace",
            "Held out: loads from the real Azure Functions trace",
            heldout(
                &trace_cfg,
                a.scenarios,
                &a.out.join("heldout-trace.parquet"),
            )?,
        ),
    ];
    if let Some(dir) = a.recorded {
        // Any scrape interval: the predictor resamples onto its time base.
        // Latencies against each service's own objective, as the detectors
        // here divide by the traces'.
        let ds = recorded::load_dir_in_traces_units(
            dir,
            &base,
            a.slo_latency_ms,
            traces::TRACES_SLO_LATENCY_MS,
        )?;
        sets.push(("recorded", "Held out: recordings of a live cluster", ds));
    }
    let forest = fit_forest(&bundle, &train_ds, a.train_data);
    let mut md = format!(
        "# Failure predictor validation\n\nModel: `{}` (trained by `{}`, best epoch {}, {} training windows from {} runs). Features: {}. Labels: worst state of the ground-truth SLI over the next {} s (healthy >= {}, degraded >= {}, unhealthy >= {}, else critical; SLI over {} s). Reproduce with `selfheal validate` (defaults).\n\n",
        a.model.display(),
        bundle.meta.command,
        bundle.meta.best_epoch,
        bundle.meta.train_samples,
        bundle.meta.train_runs,
        traces::FEATURES.join(", "),
        base.horizon_s,
        base.health.healthy,
        base.health.degraded,
        base.health.unhealthy,
        base.health.sli_window_s,
    );
    let mut heldout_scored = Vec::new();
    for (key, title, ds) in &sets {
        let t0 = std::time::Instant::now();
        let scored = v::score_dataset(ds, &model, &pcfg, Some(&forest), a.stride);
        outln!(
            "scored {} windows of {title} in {:.1} s",
            scored.len(),
            t0.elapsed().as_secs_f64()
        );
        md.push_str(&v::report_section(
            title,
            &scored,
            ds,
            pcfg.alarm_threshold as f64,
            a.stride,
        ));
        validation_report::charts(a.out, key, title, &scored, ds, pcfg.alarm_threshold as f64)?;
        md.push_str(&format!(
            "\n![confusion matrix](confusion-{key}.png)\n![lead times](lead-{key}.png)\n\n"
        ));
        heldout_scored.push(scored);
    }
    if !a.intervals.is_empty() {
        md.push_str(&interval_section(a, &base, (&model, &pcfg), &forest)?);
    }
    if a.leave_one_out_epochs > 0 {
        let l = validation_report::LeaveOneOut {
            bundle: &bundle,
            train: &train_ds,
            heldout: &sets[0].2,
            full_scored: &heldout_scored[0],
            epochs: a.leave_one_out_epochs,
            stride: a.stride,
        };
        let mut bar = super::progress::Epochs::new(a.leave_one_out_epochs);
        md.push_str(&validation_report::leave_one_out(
            &l,
            &|line| outln!("{line}"),
            &mut bar,
        ));
    }
    let path = a.out.join("validation.md");
    std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
    out!("{md}");
    outln!("wrote {}", path.display());
    Ok(())
}

/// The forest baseline on a model's training traces: 20,000 windows at the
/// model's stride, seeded by its traces' seed.
fn fit_forest(
    bundle: &store::ModelBundle,
    train: &traces::Dataset,
    path: &Path,
) -> selfheal::train::validate::Forest {
    let started = std::time::Instant::now();
    outln!("fitting the forest baseline on {}", path.display());
    let forest = selfheal::train::validate::Forest::fit(
        train,
        &bundle.normaliser,
        bundle.config.stride,
        20_000,
        bundle.meta.dataset_config.seed,
    );
    outln!("  {:.1} s", started.elapsed().as_secs_f64());
    forest
}

/// The same held-out runs at each of `a.intervals`, every detector at
/// `a.episodes_per_day` false alarm episodes per service-day.
fn interval_section(
    a: &ValidateArgs,
    base: &traces::TracesConfig,
    (model, pcfg): (
        &selfheal::control::predictor::Model,
        &selfheal::control::predictor::PredictorConfig,
    ),
    forest: &selfheal::train::validate::Forest,
) -> anyhow::Result<String> {
    use selfheal::train::interval_validation as iv;
    let mut sets = Vec::new();
    for &interval in a.intervals {
        let cfg = iv::held_out_config(base, interval, a.runs);
        let ds = heldout(
            &cfg,
            a.scenarios,
            &a.out.join(format!("heldout-every-{interval}s.parquet")),
        )?;
        let stride = iv::stride(interval);
        let t0 = std::time::Instant::now();
        let scored =
            selfheal::train::validate::score_dataset(&ds, model, pcfg, Some(forest), stride);
        outln!(
            "scored {} windows of the runs scraped every {interval} s in {:.1} s",
            scored.len(),
            t0.elapsed().as_secs_f64()
        );
        sets.push((interval, ds, scored, stride));
    }
    let views: Vec<_> = sets
        .iter()
        .map(|(i, ds, s, stride)| (*i, ds, s.as_slice(), *stride))
        .collect();
    Ok(iv::section(&views, a.episodes_per_day))
}

/// Re-derives a saved model's alarm threshold on its own validation runs
/// (the split recorded by its seed) for a false-alarm budget, and rewrites
/// its `training.json`.
pub fn calibrate(model: &Path, data: &Path, false_alarms: f64) -> anyhow::Result<()> {
    use selfheal::train::validate as v;
    let mut bundle = store::load(model)?;
    let ds = dataset::load(data)?;
    let (_, val_runs) =
        trainer::split_runs(&ds, bundle.config.validation_fraction, bundle.config.seed);
    let th = v::calibrate_on_validation(&ds, &val_runs, &bundle.model(), false_alarms, 2);
    outln!(
        "{}: alarm threshold {:.3} -> {th:.3} ({false_alarms} false alarms per service-hour on {} validation runs)",
        model.display(),
        bundle.meta.alarm_threshold,
        val_runs.len()
    );
    bundle.meta.alarm_threshold = th as f32;
    store::save_meta(model, &bundle.meta)?;
    Ok(())
}

/// `selfheal predict`: the backtest of a recording.
pub fn backtest(
    model_dir: &Path,
    recorded: &Path,
    out: &Path,
    (faults, budget): (Option<&Path>, f64),
    (slo_latency_ms, forest_data): (Option<f64>, Option<&Path>),
) -> anyhow::Result<()> {
    use selfheal::eval::backtest;
    let bundle = store::load(model_dir)?;
    let recordings = recorded::read_dir(recorded)?;
    let edges = recorded::read_edges(recorded)?;
    let cfg = backtest::BacktestConfig::of(&bundle, slo_latency_ms);
    let forest = match forest_data {
        Some(path) => Some(fit_forest(&bundle, &dataset::load(path)?, path)),
        None => None,
    };
    let started = std::time::Instant::now();
    let results = backtest::run(&bundle.model(), &cfg, &recordings, &edges, forest.as_ref());
    let scrapes: usize = results.iter().map(|b| b.scrapes.len()).sum();
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, backtest::csv(&results))
        .with_context(|| format!("writing {}", out.display()))?;
    outln!(
        "{} services, {scrapes} scrapes in {:.1} s; model {} (time base {} s, window {} s); wrote {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        model_dir.display(),
        cfg.predictor.scrape_interval_s,
        (bundle.config.net.window.max(1) - 1) as f64 * cfg.predictor.scrape_interval_s,
        out.display()
    );
    for b in &results {
        outln!("  {}: SLO latency {:.1} ms", b.service, b.slo_latency_ms);
    }
    if let Some(path) = faults {
        let mut list = selfheal::eval::incidents::FaultList::read(path)?;
        let left_out = match list.retain_services(|s| results.iter().any(|b| b.service == s)) {
            0 => String::new(),
            n => format!(
                "; {n} on services without a recording not scored, their windows not fault-free"
            ),
        };
        let scores = backtest::score(&results, &list, &cfg.predictor, budget);
        let md = format!(
            "# Backtest of {} on {}\n\nFaults: {} ({}{left_out}).\n\n{}",
            model_dir.display(),
            recorded.display(),
            path.display(),
            list.faults.len(),
            backtest::render(&scores, &list, budget)
        );
        let md_path = out.with_extension("md");
        std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
        out!("{md}");
        outln!("wrote {}", md_path.display());
    }
    Ok(())
}

/// `selfheal import nezha`.
pub fn import_nezha(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let services = selfheal::eval::incidents::import(dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (service, scrapes) in &services {
        let path = out.join(format!("{service}-metrics.csv"));
        let csv = selfheal::metrics::metrics_csv(scrapes.iter().map(|m| (service.as_str(), m)));
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    for (name, body) in [
        ("edges.csv", selfheal::eval::incidents::import_edges(dir)?),
        (
            "deployments.json",
            selfheal::eval::incidents::import_deployments(dir)?,
        ),
    ] {
        let path = out.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    outln!(
        "wrote {} services' recordings, edges.csv and deployments.json to {}",
        services.len(),
        out.display()
    );
    Ok(())
}
