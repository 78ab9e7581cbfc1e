//! The whole simulator against a bare event loop on the same M/M/c model,
//! in one process and one run, compared in requests per second (events
//! are not comparable between engines that count them differently).
//!
//! The model: Poisson arrivals at 500/s, 10 servers sharing one FIFO,
//! exponential service at 60/s per server (rho = 0.83), one simulated hour
//! (about 1.8 million requests). `selfheal` runs it as a scenario with
//! `queue = "shared"` and `max_connections = 1`, probes, scrapes and its
//! outputs included; the bare loop is a `BinaryHeap` of (time, sequence,
//! event) with the project's own random streams and nothing else. Both
//! report their mean wait, which must agree with Erlang C, so that the two
//! are known to run the same model.
//!
//! Run with `cargo bench --bench mmc`; the last lines print the ratio.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use selfheal::rng::{Stream, Subsystem};
use selfheal::scenario::{self, LoadedScenario};
use selfheal::sim;

const LAMBDA: f64 = 500.0;
const MU: f64 = 60.0;
const SERVERS: u32 = 10;
const HOUR_S: f64 = 3600.0;
const SEED: u64 = 7;

fn scenario() -> LoadedScenario {
    let text = format!(
        r#"
name = "mmc-hour"
duration_s = {HOUR_S}
seed = {SEED}
[slo]
latency_ms = 1000
[[load]]
service = "s"
timeout_ms = 1e9
curve = {{ kind = "constant", rate = {LAMBDA} }}
[[service]]
name = "s"
replicas = {SERVERS}
cpu_request = 1.0
cpu_limit = 1.0
max_connections = 1
queue = "shared"
queue_capacity = 1000000
revision = {{ service_time_ms = {}, service_time_cv = 1.0 }}
[cluster]
node = [{{ name = "n", cpu = 64, memory_mib = 262144 }}]
"#,
        1000.0 / MU
    );
    scenario::parse(&text, "mmc-hour.toml", Path::new(".")).unwrap()
}

/// What one run served and its mean wait in the queue.
#[derive(Clone, Copy, Debug)]
struct Served {
    requests: u64,
    mean_wait_s: f64,
}

fn whole_simulator(sc: &LoadedScenario) -> Served {
    let out = sim::run(sc).unwrap();
    let st = &out.service_stats[0];
    Served {
        requests: st.completed,
        mean_wait_s: st.mean_wait_s,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival,
    Departure,
}

/// The minimal M/M/c loop: arrivals and departures on a heap keyed by time
/// (as integer nanoseconds, like the simulator's `Time`) and a sequence
/// number, one shared FIFO of arrival times.
fn bare_loop() -> Served {
    let mut arrivals = Stream::new(SEED, Subsystem::Load);
    let mut service = Stream::new(SEED, Subsystem::Pods);
    let ns = |s: f64| (s * 1e9) as u64;
    let end = ns(HOUR_S);
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, t: u64, e: Event| {
        seq += 1;
        heap.push(Reverse((t, seq, e)));
    };
    push(&mut heap, ns(arrivals.exp(1.0 / LAMBDA)), Event::Arrival);
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut idle = SERVERS;
    let (mut served, mut waited_ns) = (0u64, 0u128);
    while let Some(Reverse((now, _, event))) = heap.pop() {
        if now > end {
            break;
        }
        match event {
            Event::Arrival => {
                push(
                    &mut heap,
                    now + ns(arrivals.exp(1.0 / LAMBDA)),
                    Event::Arrival,
                );
                if idle > 0 {
                    idle -= 1;
                    push(&mut heap, now + ns(service.exp(1.0 / MU)), Event::Departure);
                } else {
                    queue.push_back(now);
                }
            }
            Event::Departure => {
                served += 1;
                match queue.pop_front() {
                    Some(arrived) => {
                        waited_ns += u128::from(now - arrived);
                        push(&mut heap, now + ns(service.exp(1.0 / MU)), Event::Departure);
                    }
                    None => idle += 1,
                }
            }
        }
    }
    Served {
        requests: served,
        mean_wait_s: waited_ns as f64 / 1e9 / served as f64,
    }
}

/// Erlang C's mean wait for the model.
fn erlang_c_wait() -> f64 {
    let a = LAMBDA / MU;
    let c = f64::from(SERVERS);
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..SERVERS {
        term *= a / f64::from(k);
        sum += term;
    }
    let last = term * a / c / (1.0 - a / c);
    last / (sum + last) / (c * MU - LAMBDA)
}

fn bench(c: &mut Criterion) {
    let sc = scenario();
    let requests = whole_simulator(&sc).requests;
    let mut g = c.benchmark_group("mmc_hour");
    g.sample_size(10);
    g.throughput(Throughput::Elements(requests));
    g.bench_function("whole_simulator", |b| {
        b.iter(|| black_box(whole_simulator(&sc)))
    });
    g.bench_function("bare_loop", |b| b.iter(|| black_box(bare_loop())));
    g.finish();
}

/// Best of five wall times of each, taken alternately so that both see the
/// same machine, and their requests per second.
fn ratio() {
    let sc = scenario();
    let (mut best_sim, mut best_bare) = (f64::INFINITY, f64::INFINITY);
    let (mut sim_out, mut bare_out) = (None, None);
    for _ in 0..5 {
        let t = Instant::now();
        sim_out = Some(black_box(whole_simulator(&sc)));
        best_sim = best_sim.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        bare_out = Some(black_box(bare_loop()));
        best_bare = best_bare.min(t.elapsed().as_secs_f64());
    }
    let (s, b) = (sim_out.unwrap(), bare_out.unwrap());
    let wq = erlang_c_wait();
    println!(
        "M/M/c hour: Erlang C mean wait {:.2} ms; simulator {:.2} ms, bare loop {:.2} ms",
        wq * 1e3,
        s.mean_wait_s * 1e3,
        b.mean_wait_s * 1e3
    );
    for (name, out) in [("simulator", s), ("bare loop", b)] {
        assert!(
            (out.mean_wait_s / wq - 1.0).abs() < 0.05,
            "{name}'s mean wait {} s is not Erlang C's {wq} s: not the same model",
            out.mean_wait_s
        );
    }
    let (rs, rb) = (s.requests as f64 / best_sim, b.requests as f64 / best_bare);
    println!(
        "M/M/c hour: simulator {:.3} s ({:.2} M requests/s), bare loop {:.3} s ({:.2} M requests/s): the simulator runs at {:.0} % of the bare loop",
        best_sim,
        rs / 1e6,
        best_bare,
        rb / 1e6,
        100.0 * rs / rb
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    // `cargo bench --no-run` builds it; `cargo test --benches` would run
    // main with --bench absent: only measure when asked to bench.
    if std::env::args().any(|a| a == "--bench") {
        ratio();
    }
}
