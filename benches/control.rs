//! Control-core speed.
//!
//! - `tick_trained_forest`: one autonomous-scaler decision for one service
//!   with a trained forest (push a sample, forecast, size), no retraining.
//! - `forest_training_1000x74`: fitting the 100-tree forest on 1,000
//!   samples of 74 features.
//! - `slo_plan_10_services`: sizing ten services (a frontend, three
//!   mid-tier services, six leaves) for a latency objective from their
//!   CPU guard (the plan a scaler sizing for the SLO makes each tick, on
//!   top of each service's forecast).
//! - `anomaly_update_60s` / `anomaly_update_5s`: one sample of one metric
//!   through the anomaly detector with a full day of baseline (60 s
//!   scrapes: 1,440 values; 5 s scrapes: capped at the same 1,440).
//!
//! Run with `cargo bench --bench control`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use selfheal::control::ServiceView;
use selfheal::control::anomaly::{AnomalyDetector, DetectorConfig};
use selfheal::control::scaler::sizing::{self, Stage, StageModel};
use selfheal::control::scaler::{
    AutonomousScaler, ForecastConfig, Forecaster, LatencySlo, ScalerConfig,
};
use selfheal::metrics::ServiceMetrics;
use selfheal::time::Time;

fn sample(i: usize) -> ServiceMetrics {
    let t = 30.0 * i as f64;
    let rate = 300.0 + 120.0 * (t / 3600.0).sin() + 15.0 * ((i * 7919) % 13) as f64 / 13.0;
    ServiceMetrics {
        timestamp: Time::from_secs_f64(t),
        cpu_usage: rate / 500.0,
        memory_usage: 0.4,
        request_rate: rate,
        error_rate: 0.001,
        latency_p50: 12.0,
        latency_p99: 60.0 + rate / 10.0,
        active_connections: (rate / 20.0) as u32,
        ready_replicas: 4,
        desired_replicas: 4,
    }
}

fn view(m: ServiceMetrics) -> ServiceView {
    ServiceView {
        name: "svc".into(),
        metrics: m,
        desired_replicas: 4,
        revision: 0,
        max_connections: 100,
        pods: vec![],
        concurrency: vec![],
        requests: vec![],
        dependencies: vec![],
        backup: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    // A scaler with 1,000 samples of history and a trained forest; retraining
    // is pushed out of reach so the tick measures the decision alone.
    let cfg = ScalerConfig {
        forecast: ForecastConfig {
            retrain_every: usize::MAX,
            ..ForecastConfig::default()
        },
        ..ScalerConfig::default()
    };
    let mut scaler = AutonomousScaler::new(cfg, 1);
    for i in 0..1000 {
        scaler.decide(Time::from_secs_f64(30.0 * i as f64 + 1.0), &view(sample(i)));
    }
    let mut i = 1000;
    g.bench_function("tick_trained_forest", |b| {
        b.iter(|| {
            i += 1;
            black_box(
                scaler
                    .decide(Time::from_secs_f64(30.0 * i as f64 + 1.0), &view(sample(i)))
                    .target_replicas,
            )
        })
    });
    let mut f = Forecaster::new(ForecastConfig {
        min_train: usize::MAX,
        ..ForecastConfig::default()
    });
    for i in 0..1000 {
        f.push(&sample(i));
    }
    let stages: Vec<Stage> = (0..10)
        .map(|i| Stage {
            name: format!("svc-{i}"),
            model: Some(StageModel {
                cpu_s: 0.004 + 0.001 * i as f64,
                cores: 1.0,
                cs2: 1.0,
            }),
            rate: 600.0,
            calls: match i {
                0 => vec![(1, 1.0), (2, 0.5), (3, 0.5)],
                1..=3 => vec![(2 * i + 2, 1.0), (2 * i + 3, 0.3)],
                _ => vec![],
            },
            offset_s: 0.002,
            current: 4,
            min: 1,
            max: 100,
        })
        .collect();
    let slo = LatencySlo::new(200.0, 0.99);
    g.bench_function("slo_plan_10_services", |b| {
        b.iter(|| black_box(sizing::plan(black_box(&stages), &slo)))
    });
    g.sample_size(10);
    g.bench_function("forest_training_1000x74", |b| b.iter(|| f.train()));
    g.finish();

    let mut g = c.benchmark_group("anomaly");
    for interval in [60u64, 5] {
        let mut d = AnomalyDetector::new(DetectorConfig::default());
        let value = |i: u64| 50.0 + 10.0 * ((i * 7919) % 97) as f64 / 97.0;
        // Two days of history, so every window is full.
        let warm = 2 * 86_400 / interval;
        for i in 0..warm {
            d.update(Time::from_secs(i * interval), value(i));
        }
        let mut i = warm;
        g.bench_function(format!("anomaly_update_{interval}s"), |b| {
            b.iter(|| {
                i += 1;
                black_box(d.update(Time::from_secs(i * interval), value(i)))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
