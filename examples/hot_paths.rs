//! The hot paths as separate cases, for instruction counting under
//! callgrind (`.ci/callgrind`): instruction counts are repeatable for one
//! binary and input, unlike wall time on a shared machine.
//!
//! `cargo run --release --example hot_paths -- engine|tick|lstm`

use selfheal::control::ServiceView;
use selfheal::control::scaler::{AutonomousScaler, ForecastConfig, ScalerConfig};
use selfheal::metrics::ServiceMetrics;
use selfheal::time::Time;

fn engine() {
    // The event loop: a short three-service run.
    let mut sc =
        selfheal::scenario::load_file(std::path::Path::new("benches/three-service-hour.toml"))
            .expect("run from the repository root");
    sc.spec.duration_s = 60.0;
    let out = selfheal::sim::run(&sc).expect("builds");
    println!("engine: {} events", out.summary.events);
}

fn tick() {
    // One control tick with a trained forest, 200 times (the forest is
    // trained once, on a short history, before the measured ticks).
    let cfg = ScalerConfig {
        forecast: ForecastConfig {
            min_train: 40,
            retrain_every: usize::MAX,
            ..ForecastConfig::default()
        },
        ..ScalerConfig::default()
    };
    let mut s = AutonomousScaler::new(cfg, 1);
    let sample = |i: usize| {
        let t = 30.0 * i as f64;
        let rate = 300.0 + 100.0 * (t / 1800.0).sin();
        ServiceMetrics {
            timestamp: Time::from_secs_f64(t),
            cpu_usage: rate / 500.0,
            memory_usage: 0.4,
            request_rate: rate,
            error_rate: 0.0,
            latency_p50: 10.0,
            latency_p99: 50.0,
            active_connections: 5,
            ready_replicas: 4,
            desired_replicas: 4,
        }
    };
    let view = |m: ServiceMetrics| ServiceView {
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
    };
    let mut replicas = 0u64;
    for i in 0..260 {
        replicas += s
            .decide(Time::from_secs_f64(30.0 * i as f64 + 1.0), &view(sample(i)))
            .target_replicas as u64;
    }
    println!("tick: {replicas}");
}

fn lstm() {
    // The fused LSTM forward pass of the predictor's shape (8 -> 128 -> 64
    // -> 32 -> 16 -> 4 over 60 scrapes), 20 windows, weights drawn from a
    // seeded stream so that no model file or burn is involved.
    use selfheal::control::predictor::lstm::{Dense, FusedNet, LstmLayer, Scratch};
    let mut rng = selfheal::rng::Stream::new(1, selfheal::rng::Subsystem::Training);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.normal() * 0.1) as f32).collect() };
    let mut lstms = Vec::new();
    for (i, h) in [(8, 128), (128, 64), (64, 32)] {
        lstms.push(LstmLayer {
            input: i,
            hidden: h,
            w_x: draw(i * 4 * h),
            w_h: draw(h * 4 * h),
            b: draw(4 * h),
        });
    }
    let dense = [(32, 16), (16, 4)]
        .into_iter()
        .map(|(i, o)| Dense {
            input: i,
            output: o,
            w: draw(i * o),
            b: draw(o),
        })
        .collect();
    let net = FusedNet { lstms, dense };
    let window = draw(60 * 8);
    let mut scratch = Scratch::default();
    let mut acc = 0f32;
    for _ in 0..20 {
        acc += net.predict(&window, &mut scratch)[0];
    }
    println!("lstm: {acc}");
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("engine") => engine(),
        Some("tick") => tick(),
        Some("lstm") => lstm(),
        _ => {
            eprintln!("usage: hot_paths engine|tick|lstm");
            std::process::exit(2);
        }
    }
}
