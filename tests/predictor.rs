//! The failure predictor: the fused forward pass against burn, the model
//! files' error messages, determinism of the traces, and a short training
//! run on a small dataset (full training is `selfheal train`).

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use burn::tensor::{Tensor, TensorData};
use selfheal::control::predictor::lstm::Scratch;
use selfheal::control::predictor::patterns::{FailureType, Remediation};
use selfheal::control::predictor::{Health, ServiceWatch};
use selfheal::rng::{Stream, Subsystem};
use selfheal::scenario::FaultKind;
use selfheal::time::Time;
use selfheal::train::model::{PredictorNet, PredictorNetConfig};
use selfheal::train::store::{self, ModelError};
use selfheal::train::trainer::{self, TrainConfig};
use selfheal::train::{dataset, traces};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/predictor")
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic pseudo-random normalised windows.
fn windows(n: usize, steps: usize, features: usize) -> Vec<f32> {
    let mut rng = Stream::new(42, Subsystem::Training);
    (0..n * steps * features)
        .map(|_| (rng.normal() * 1.5) as f32)
        .collect()
}

fn assert_fused_matches(net: &PredictorNet, cfg: &PredictorNetConfig, device: &Device) {
    let (n, w, f) = (16, cfg.window, cfg.features);
    let x = windows(n, w, f);
    let logits = net.forward(Tensor::<3>::from_data(
        TensorData::new(x.clone(), [n, w, f]),
        device,
    ));
    let burn_p: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let fused = net.to_fused();
    let mut scratch = Scratch::default();
    let mut worst = 0f32;
    for i in 0..n {
        let p = fused.predict(&x[i * w * f..(i + 1) * w * f], &mut scratch);
        for c in 0..cfg.classes {
            worst = worst.max((p[c] - burn_p[i * cfg.classes + c]).abs());
        }
    }
    assert!(worst < 1e-5, "fused and burn differ by {worst}");
}

#[test]
fn fused_forward_pass_equals_burn_on_the_shipped_model() {
    let device = Device::flex();
    let (cfg, _, net, _) = store::load_net(&shipped(), &device).unwrap();
    assert_fused_matches(&net, &cfg.net, &device);
}

#[test]
fn fused_forward_pass_equals_burn_on_a_fresh_network() {
    let device = Device::flex();
    device.seed(7);
    let cfg = PredictorNetConfig::new();
    let net = cfg.init(&device);
    assert_fused_matches(&net, &cfg, &device);
}

fn copy_model(to: &Path) {
    for f in [
        "config.json",
        "normaliser.json",
        "model.bpk",
        "training.json",
        "fused.json",
    ] {
        std::fs::copy(shipped().join(f), to.join(f)).unwrap();
    }
}

/// What training saves, both loaders read back alike: the lab's (burn's
/// record, checked against fused.json) and the control core's (no burn).
#[test]
fn a_saved_model_loads_with_and_without_burn() {
    let (cfg, normaliser, net, meta) = store::load_net(&shipped(), &Device::flex()).unwrap();
    let trained = trainer::Trained {
        fused: net.to_fused(),
        net,
        normaliser,
        history: Vec::new(),
        best_epoch: 0,
        train_samples: 0,
        train_runs: Vec::new(),
        val_runs: Vec::new(),
    };
    let d = tmp("model-saved");
    store::save(&d, &trained, &cfg, &meta).unwrap();
    for f in store::model_files(&d) {
        assert!(f.exists(), "{}", f.display());
    }
    let lab = store::load(&d).unwrap();
    let core = selfheal_core::models::load_predictor(&d).unwrap();
    assert_eq!(lab.fused, trained.fused);
    assert_eq!(core.model.net, trained.fused);
    assert_eq!(core.config, lab.predictor_config());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_missing_truncated_or_incompatible_model_is_named() {
    let d = tmp("model-errors");
    copy_model(&d);
    assert!(store::load(&d).is_ok());

    // The control core's loader (no burn) reads what the lab's does.
    let lab = store::load(&d).unwrap();
    let core = selfheal_core::models::load_predictor(&d).unwrap();
    assert_eq!(core.model.net, lab.fused);
    assert_eq!(core.model.normaliser, lab.normaliser);
    assert_eq!(core.model.window, lab.config.net.window);
    assert_eq!(core.config, lab.predictor_config());

    // fused.json: missing, of another shape, or not the record's weights.
    std::fs::remove_file(d.join("fused.json")).unwrap();
    for e in [
        store::load(&d).unwrap_err(),
        selfheal_core::models::load_predictor(&d).unwrap_err(),
    ] {
        assert!(matches!(e, ModelError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("fused.json"), "{e}");
    }
    let mut other = lab.fused.clone();
    other.dense[0].b.pop();
    std::fs::write(d.join("fused.json"), serde_json::to_string(&other).unwrap()).unwrap();
    let e = selfheal_core::models::load_predictor(&d)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fused.json") && e.contains("dense 1"), "{e}");
    let mut other = lab.fused.clone();
    other.dense[0].b[0] += 1.0;
    std::fs::write(d.join("fused.json"), serde_json::to_string(&other).unwrap()).unwrap();
    let e = store::load(&d).unwrap_err().to_string();
    assert!(e.contains("fused.json") && e.contains("model.bpk"), "{e}");
    copy_model(&d);

    std::fs::remove_file(d.join("model.bpk")).unwrap();
    let e = store::load(&d).unwrap_err();
    assert!(matches!(e, ModelError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("model.bpk"), "{e}");

    let bytes = std::fs::read(shipped().join("model.bpk")).unwrap();
    std::fs::write(d.join("model.bpk"), &bytes[..bytes.len() / 3]).unwrap();
    let e = store::load(&d).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::Corrupt { .. } | ModelError::Incompatible { .. }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("model.bpk"), "{e}");

    copy_model(&d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"hidden1\": 128", "\"hidden1\": 96"),
    )
    .unwrap();
    let e = store::load(&d).unwrap_err();
    assert!(matches!(e, ModelError::Incompatible { .. }), "{e}");
    assert!(e.to_string().contains("model.bpk"), "{e}");

    // Hyper-parameters no network can be built from are named with their
    // field (a dropout of 1 or below 0 formerly panicked inside burn).
    let cfg = std::fs::read_to_string(shipped().join("config.json")).unwrap();
    for (from, to, field) in [
        ("\"dropout\": 0.2", "\"dropout\": 1.0", "dropout"),
        ("\"dropout\": 0.2", "\"dropout\": -0.5", "dropout"),
        ("\"window\": 60", "\"window\": 0", "window"),
        ("\"window\": 60", "\"window\": 100000000", "window"),
        ("\"features\": 8", "\"features\": 9", "features"),
    ] {
        assert!(cfg.contains(from), "{from}");
        std::fs::write(d.join("config.json"), cfg.replace(from, to)).unwrap();
        let e = store::load(&d).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains(&format!("field `{field}`")),
            "{to}: {e}"
        );
    }
    copy_model(&d);

    // Statistics and thresholds that would silently stop the predictor
    // (an alarm threshold of 1e39 never fires; a zero spread divides by
    // zero) are refused with their file and field.
    let training = std::fs::read_to_string(shipped().join("training.json")).unwrap();
    let threshold = "\"alarm_threshold\": 0.66974604";
    assert!(training.contains(threshold));
    for bad in ["1e39", "0", "-0.5"] {
        std::fs::write(
            d.join("training.json"),
            training.replace(threshold, &format!("\"alarm_threshold\": {bad}")),
        )
        .unwrap();
        let e = store::load(&d).unwrap_err().to_string();
        assert!(
            e.contains("training.json") && e.contains("field `alarm_threshold`"),
            "{bad}: {e}"
        );
    }
    copy_model(&d);
    // Random bytes are unreadable, not "File not found" (as burn's own
    // loader reported them).
    std::fs::write(d.join("config.json"), [0xff, 0xfe, 0x00, 0x9c, 0x41]).unwrap();
    let e = store::load(&d).unwrap_err().to_string();
    assert!(e.contains("config.json") && !e.contains("not found"), "{e}");
    copy_model(&d);
    let norm = std::fs::read_to_string(shipped().join("normaliser.json")).unwrap();
    std::fs::write(
        d.join("normaliser.json"),
        norm.replacen("0.3832746", "0.0", 1),
    )
    .unwrap();
    let e = store::load(&d).unwrap_err().to_string();
    assert!(
        e.contains("normaliser.json") && e.contains("field `std[0]`"),
        "{e}"
    );
}

fn small_config() -> traces::TracesConfig {
    traces::TracesConfig {
        seed: 5,
        runs: 6,
        duration_s: 900.0,
        ..Default::default()
    }
}

#[test]
fn traces_are_identical_at_any_thread_count_and_survive_the_round_trip() {
    let cfg = small_config();
    let generate = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| traces::generate(&cfg, &scenarios(), &|| {}).unwrap())
    };
    let (one, two) = (generate(1), generate(2));
    assert_eq!(one.rows, two.rows);
    assert!(one.rows.iter().any(|r| r.label == Some(Health::Critical)));
    assert!(one.rows.iter().any(|r| r.label == Some(Health::Healthy)));
    let path = tmp("traces").join("t.parquet");
    dataset::save(&one, &path).unwrap();
    let back = dataset::load(&path).unwrap();
    assert_eq!(back.rows, one.rows);
    assert_eq!(back.config, one.config);
}

#[test]
fn training_on_a_small_dataset_is_seeded_and_lowers_the_loss() {
    let ds = traces::generate(&small_config(), &scenarios(), &|| {}).unwrap();
    let cfg = TrainConfig::new(PredictorNetConfig::new())
        .with_max_epochs(3)
        .with_patience(3)
        .with_stride(12)
        .with_max_samples_per_epoch(128);
    let run = || {
        let mut q = common::Quiet(Vec::new());
        let t = trainer::train(&ds, &cfg, &Device::flex(), &mut q);
        (q.0, t.fused)
    };
    let (history, fused) = run();
    assert_eq!(history.len(), 3);
    assert!(history[2].train_loss < history[0].train_loss, "{history:?}");
    let (again, fused_again) = run();
    assert_eq!(
        history.iter().map(|h| h.train_loss).collect::<Vec<_>>(),
        again.iter().map(|h| h.train_loss).collect::<Vec<_>>()
    );
    assert_eq!(fused, fused_again);
}

#[test]
fn a_memory_leak_is_named_with_a_restart_and_a_measured_time_to_failure() {
    let cfg = traces::TracesConfig {
        seed: 11,
        runs: 1,
        fault_free_fraction: 0.0,
        faults: vec![FaultKind::MemoryLeak],
        ..Default::default()
    };
    let plan = traces::plan_run(&cfg, 0);
    let rows = traces::run_one(&cfg, &plan, &scenarios()).unwrap();
    let bundle = store::load(&shipped()).unwrap();
    let model = bundle.model();
    let pcfg = bundle.predictor_config();
    let (_, at) = plan.fault.unwrap();
    let target = if plan.scenario.contains("service = \"frontend\"\npods") {
        0
    } else {
        1
    };
    let mut watch = ServiceWatch::new(model.window, &pcfg);
    let mut found = None;
    for r in rows.iter().filter(|r| r.service == target) {
        watch.handle_row(Time::from_secs_f64(r.t_s), r.features);
        if let Some(p) = watch.predict(&model, &pcfg)
            && r.t_s > at
            && p.failure_type == Some(FailureType::MemoryLeak)
        {
            found = Some(p);
            break;
        }
    }
    let p = found.expect("the leak is recognised after it starts");
    assert_eq!(p.recommended_action, Remediation::RestartService);
    if p.warning {
        let ttf = p.time_to_failure_s.unwrap();
        assert!(ttf.is_finite() && ttf >= 0.0, "{ttf}");
    }
}

/// The network's window is defined in seconds: a minute-by-minute
/// recording gives the same prediction as 5 s scrapes of what the model was
/// trained on between the minutes (the straight line for the raw-input
/// model, trained on 5 s scrapes only; the minute's value held for the
/// relative-input model, trained on windows as coarse scrapers leave them),
/// and nothing is predicted before the window's span.
#[test]
fn scrapes_at_60_s_are_resampled_onto_the_models_time_base() {
    let minute = |k: u64| -> [f32; 8] {
        let k = k as f32;
        [
            0.4 + 0.05 * k,
            0.3 + 0.01 * k,
            100.0 + 7.0 * k,
            0.002 * k,
            20.0 + 3.0 * k,
            60.0 + 25.0 * k,
            5.0,
            2.0,
        ]
    };
    // The 5 s step `t` (12 to a minute) between minutes.
    let line = |t: u64| -> [f32; 8] {
        let (a, b) = (minute(t / 12), minute(t / 12 + 1));
        let w = (t % 12) as f32 / 12.0;
        std::array::from_fn(|j| {
            if w == 0.0 {
                a[j]
            } else {
                a[j] + (b[j] - a[j]) * w
            }
        })
    };
    let held = |t: u64| minute(t / 12);
    let relative = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/predictor-relative");
    for (dir, fill) in [
        (shipped(), &line as &dyn Fn(u64) -> [f32; 8]),
        (relative, &held),
    ] {
        let bundle = store::load(&dir).unwrap();
        let model = bundle.model();
        let pcfg = bundle.predictor_config();
        let mut coarse = ServiceWatch::new(model.window, &pcfg);
        let mut compared = 0;
        for k in 0..12u64 {
            coarse.handle_row(Time::from_secs(60 * k), minute(k));
            let c = coarse.predict(&model, &pcfg);
            // 5 s scrapes up to the coarse scrape's instant.
            let mut fine = ServiceWatch::new(model.window, &pcfg);
            for t in 0..=(12 * k) {
                fine.handle_row(Time::from_secs(5 * t), fill(t));
            }
            let f = fine.predict(&model, &pcfg);
            if 60 * k < 295 {
                assert!(
                    c.is_none(),
                    "{}: no prediction before the window's 295 s, got one at {} s",
                    dir.display(),
                    60 * k
                );
                continue;
            }
            let (c, f) = (c.unwrap(), f.unwrap());
            assert!(
                (c.not_healthy - f.not_healthy).abs() < 1e-5,
                "{} at {} s: {} vs {}",
                dir.display(),
                60 * k,
                c.not_healthy,
                f.not_healthy
            );
            assert_eq!(c.status, f.status);
            compared += 1;
        }
        assert_eq!(compared, 7);
    }
}
