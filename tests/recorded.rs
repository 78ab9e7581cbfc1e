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

/// A recording beside generated traces (`train --with-recorded`): its
/// minutes held onto the traces' 5 s time base, a gap longer than a
/// window starting a new run, latencies against the service's own SLO
/// latency as the traces' against theirs, labels from the recording's
/// own scrapes.
#[test]
fn a_recording_joins_generated_traces_on_their_time_base() {
    let dir = std::env::temp_dir().join(format!("selfheal-recorded-held-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let at = |t: f64, p99: f64| selfheal::metrics::ServiceMetrics {
        timestamp: selfheal::time::Time::from_secs_f64(t),
        cpu_usage: 0.5,
        memory_usage: 0.4,
        request_rate: 10.0,
        error_rate: 0.0,
        latency_p50: p99 / 4.0,
        latency_p99: p99,
        active_connections: 0,
        ready_replicas: 1,
        desired_replicas: 1,
    };
    // Ten minutes of 60 s scrapes at 100 ms, the seventh at 900 ms (over
    // the default objective, three times the median p99); an hour's gap;
    // then two more minutes.
    let mut scrapes: Vec<_> = (0..10)
        .map(|k| at(60.0 * k as f64, if k == 6 { 900.0 } else { 100.0 }))
        .collect();
    scrapes.extend((0..3).map(|k| at(4_200.0 + 60.0 * k as f64, 100.0)));
    std::fs::write(
        dir.join("web-metrics.csv"),
        metrics_csv(scrapes.iter().map(|m| ("web", m))),
    )
    .unwrap();
    let cfg = TracesConfig::default();
    let ds = recorded::load_dir_on_time_base(&dir, &cfg, None, 250.0).unwrap();
    assert_eq!(ds.config.scrape_interval_s, 5.0);
    // Beside generated traces (here a copy of itself), its runs follow theirs.
    let mut both = ds.clone();
    both.append(ds.clone());
    assert_eq!(
        both.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(both.config.runs, 4);
    assert_eq!(both.rows.len(), 2 * ds.rows.len());
    let (runs, rows) = (&ds.runs, &ds.rows);
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1]);
    // 0 to 540 s every 5 s, then the last scrape held until it is older
    // than a window's span (295 s): 835 s is the last held row.
    let first: Vec<_> = rows.iter().filter(|r| r.run == 0).collect();
    assert_eq!(first.len(), 168);
    assert_eq!(first.last().unwrap().t_s, 835.0);
    let second: Vec<_> = rows.iter().filter(|r| r.run == 1).collect();
    assert_eq!(second.len(), 25);
    assert_eq!(second[0].t_s, 4_200.0);
    assert!(
        rows.windows(2)
            .all(|w| w[0].run != w[1].run || (w[1].t_s - w[0].t_s - 5.0).abs() < 1e-6)
    );
    // The objective is 300 ms: 100 ms reads as the traces' 250 ms does
    // when a third of it.
    let p99 = |t: f64| first.iter().find(|r| r.t_s == t).unwrap().features[5];
    assert!((p99(355.0) - 250.0 / 3.0).abs() < 1e-3, "{}", p99(355.0));
    assert!((p99(360.0) - 750.0).abs() < 1e-3, "{}", p99(360.0));
    // Held: 360 s to 415 s are the 900 ms minute, so a row is degraded
    // when one of them lies in the 300 s after it.
    let label = |t: f64| first.iter().find(|r| r.t_s == t).unwrap().label;
    assert_eq!(label(55.0), Some(Health::Healthy));
    assert_eq!(label(60.0), Some(Health::Degraded));
    assert_eq!(label(410.0), Some(Health::Degraded));
    assert_eq!(label(415.0), Some(Health::Healthy));
    // No label where the 300 s ahead run past the segment.
    assert_eq!(label(535.0), Some(Health::Healthy));
    assert_eq!(label(540.0), None);

    // `validate` reads it at its own scrapes, in the same units.
    let native = recorded::load_dir_in_traces_units(&dir, &cfg, None, 250.0).unwrap();
    assert_eq!(native.rows.len(), 13);
    assert_eq!(native.rows[6].t_s, 360.0);
    assert!((native.rows[6].features[5] - 750.0).abs() < 1e-3);
    assert!((native.rows[6].features[4] - 187.5).abs() < 1e-3);
    // Without any latency there is no objective to read them against.
    let blank = at(0.0, f64::NAN);
    std::fs::write(
        dir.join("web-metrics.csv"),
        metrics_csv([("web", &blank), ("web", &at(60.0, f64::NAN))]),
    )
    .unwrap();
    let e = recorded::load_dir_on_time_base(&dir, &cfg, None, 250.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("web-metrics.csv") && e.contains("SLO latency"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
