//! Simulator speed.
//!
//! - `one_hour_three_services_500rps`: wall time to simulate one hour of a
//!   three-service call graph at 500 req/s (`benches/three-service-hour.toml`).
//! - `events`: the same run and a single-service M/M/c run, reported as
//!   events per second (events are the event-queue entries the engine
//!   processes; superseded ones are not counted).
//!
//! Run with `cargo bench --bench engine`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selfheal::scenario::{self, LoadedScenario};
use selfheal::sim;

fn three_service_hour() -> LoadedScenario {
    scenario::load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/three-service-hour.toml"),
    )
    .unwrap()
}

fn single_service() -> LoadedScenario {
    let text = r#"
name = "mmc"
duration_s = 600
seed = 1
[slo]
latency_ms = 100
[[load]]
service = "s"
curve = { kind = "constant", rate = 2000 }
[[service]]
name = "s"
replicas = 8
cpu_request = 1.0
cpu_limit = 1.0
max_connections = 1
queue_capacity = 100000
revision = { service_time_ms = 3 }
"#;
    scenario::parse(text, "mmc.toml", Path::new(".")).unwrap()
}

fn bench(c: &mut Criterion) {
    let hour = three_service_hour();
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.bench_function("one_hour_three_services_500rps", |b| {
        b.iter(|| black_box(sim::run(&hour).unwrap().summary.served))
    });
    for (name, sc) in [
        ("events_three_services", hour.clone()),
        ("events_single_service", single_service()),
    ] {
        let events = sim::run(&sc).unwrap().summary.events;
        g.throughput(Throughput::Elements(events));
        g.bench_function(name, |b| {
            b.iter(|| black_box(sim::run(&sc).unwrap().summary.events))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
