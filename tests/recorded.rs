//! Training from recorded metrics: a recording in `selfheal-k8s record`'s
//! format (here made from simulated runs, so the ground truth is known) is
//! labelled by the same health rules as generated traces and trains and
//! scores like one.

mod common;

use burn::prelude::Device;
use selfheal::control::predictor::Health;
use selfheal::metrics::metrics_csv;
use selfheal::train::model::PredictorNetConfig;
use selfheal::train::recorded;
use selfheal::train::traces::{HealthConfig, TracesConfig};
use selfheal::train::trainer::{self, TrainConfig};

fn scenario(name: &str) -> selfheal::scenario::LoadedScenario {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("scenarios/chaos/{name}.toml"));
    selfheal::scenario::load_file(&p).unwrap()
}

/// The entry service's SLI at every whole second: the fraction of the
/// last `sli_window_s` seconds' requests that succeeded within the SLO,
/// exactly what `HealthConfig::states` classifies.
fn sli_per_second(out: &selfheal::sim::RunOutput, h: &HealthConfig) -> Vec<f64> {
    let w = h.sli_window_s;
    (0..out.root_seconds.len())
        .map(|i| {
            let span = &out.root_seconds[i.saturating_sub(w - 1)..=i];
            let good: u64 = span.iter().map(|s| s.good).sum();
            let done: u64 = span.iter().map(|s| s.ok + s.failed).sum();
            if done == 0 {
                1.0
            } else {
                good as f64 / done as f64
            }
        })
        .collect()
}

/// Writes `<tag>-metrics.csv` and `<tag>-sli.csv` for the entry service of
/// a simulated run; returns the per-second states the simulator labels by.
fn record(dir: &std::path::Path, tag: &str, name: &str) -> Vec<Health> {
    let out = selfheal::sim::run(&scenario(name)).unwrap();
    let h = HealthConfig::default();
    let sli = sli_per_second(&out, &h);
    let scrapes: Vec<_> = out
        .metrics
        .iter()
        .filter(|(s, _)| *s == 0)
        .map(|(_, m)| m)
        .collect();
    std::fs::write(
        dir.join(format!("{tag}-metrics.csv")),
        metrics_csv(scrapes.iter().map(|m| ("entry", *m))),
    )
    .unwrap();
    let mut s = format!("{}\n", recorded::SLI_HEADER);
    for m in &scrapes {
        let t = m.timestamp.as_secs_f64();
        s.push_str(&format!("{t},{}\n", sli[(t as usize).min(sli.len() - 1)]));
    }
    std::fs::write(dir.join(format!("{tag}-sli.csv")), s).unwrap();
    h.states(&out.root_seconds)
}

#[test]
fn recordings_are_labelled_like_simulated_traces_and_train_the_same_model() {
    let dir = std::env::temp_dir().join(format!("selfheal-recorded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut truth = Vec::new();
    for (tag, name) in [
        ("leak", "memory-leak"),
        ("deploy", "bad-deploy"),
        ("hang", "hang"),
    ] {
        truth.push((tag, record(&dir, tag, name)));
    }
    let cfg = TracesConfig::default();
    let ds = recorded::load_dir(&dir, &cfg, None).unwrap();
    assert_eq!(ds.runs.len(), 3);
    assert_eq!(ds.config.scrape_interval_s, 5.0);
    assert_eq!(ds.controller, "recorded");
    // Files are read in name order: deploy, hang, leak.
    truth.sort_by_key(|(tag, _)| *tag);
    let (mut agree, mut labelled) = (0, 0);
    for r in &ds.rows {
        let Some(label) = r.label else { continue };
        labelled += 1;
        let states = &truth[r.run as usize].1;
        let t = r.t_s as usize;
        let horizon = cfg.horizon_s as usize;
        // The simulator's label: the worst second ahead; a recording sees
        // only its scrape instants, so it can miss a breach between them
        // but never invents one.
        let simulated = states[t + 1..=t + horizon].iter().copied().max().unwrap();
        assert!(
            label <= simulated,
            "run {} t {t}: {label:?} vs {simulated:?}",
            r.run
        );
        agree += (label == simulated) as usize;
    }
    assert!(labelled > 600, "{labelled}");
    assert!(
        agree as f64 >= 0.9 * labelled as f64,
        "{agree} of {labelled} agree"
    );
    assert!(ds.rows.iter().any(|r| r.label >= Some(Health::Unhealthy)));
    assert!(ds.rows.iter().any(|r| r.label == Some(Health::Healthy)));

    // The trainer takes it as it takes generated traces.
    let tc = TrainConfig::new(PredictorNetConfig::new())
        .with_max_epochs(2)
        .with_patience(2)
        .with_stride(6)
        .with_max_samples_per_epoch(128);
    let mut q = common::Quiet(Vec::new());
    let t = trainer::train(&ds, &tc, &Device::flex(), &mut q);
    assert_eq!(q.0.len(), 2);
    assert!(
        q.0.iter()
            .all(|e| e.train_loss.is_finite() && e.val_loss.is_finite()),
        "{:?}",
        q.0
    );
    assert_eq!(t.train_runs.len() + t.val_runs.len(), 3);

    // A recording with a broken SLI file is refused with its name and line.
    std::fs::write(dir.join("hang-sli.csv"), "t_s,sli\n0,2\n").unwrap();
    let e = recorded::load_dir(&dir, &cfg, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hang-sli.csv") && e.contains("line 2"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    let empty =
        std::env::temp_dir().join(format!("selfheal-recorded-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    assert!(
        recorded::load_dir(&empty, &cfg, None)
            .unwrap_err()
            .to_string()
            .contains("no recordings")
    );
    std::fs::remove_dir_all(&empty).ok();
}
