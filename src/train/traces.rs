//! Labelled synthetic traces for the failure predictor.
//!
//! Each run is a two-tier scenario (`frontend -> backend`) with a load drawn
//! from a family (constant, diurnal, bursts, a real trace) and at most one
//! fault drawn from the configured kinds at a random time, strength and
//! target. Each scrape of each service becomes a row; a *sample* is the
//! window of the last `window` rows of one service, labelled with the worst
//! health state of the next `horizon_s` seconds of the ground-truth
//! request-based SLI (see [`HealthConfig`]).

use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::control::predictor::Health;
use crate::rng::{Stream, Subsystem};
use crate::scenario::{self, FaultKind};
use crate::sim::{self, RootSecond};

/// How the ground-truth SLI maps to a health state. The SLI at second `s` is
/// the fraction of root requests completed in `(s - sli_window_s, s]` that
/// succeeded within the scenario's SLO latency (1 without requests).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub sli_window_s: usize,
    /// SLI at least this: healthy. Below it the SLO is breached.
    pub healthy: f64,
    /// At least this (and below `healthy`): degraded.
    pub degraded: f64,
    /// At least this: unhealthy; below: critical.
    pub unhealthy: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            sli_window_s: 30,
            healthy: 0.99,
            degraded: 0.95,
            unhealthy: 0.80,
        }
    }
}

impl HealthConfig {
    pub fn classify(&self, sli: f64) -> Health {
        if sli >= self.healthy {
            Health::Healthy
        } else if sli >= self.degraded {
            Health::Degraded
        } else if sli >= self.unhealthy {
            Health::Unhealthy
        } else {
            Health::Critical
        }
    }

    /// The state of every second of a run.
    pub fn states(&self, seconds: &[RootSecond]) -> Vec<Health> {
        let w = self.sli_window_s.max(1);
        let (mut good, mut done) = (0u64, 0u64);
        let mut out = Vec::with_capacity(seconds.len());
        for (i, s) in seconds.iter().enumerate() {
            good += s.good;
            done += s.ok + s.failed;
            if i >= w {
                good -= seconds[i - w].good;
                done -= seconds[i - w].ok + seconds[i - w].failed;
            }
            let sli = if done == 0 {
                1.0
            } else {
                good as f64 / done as f64
            };
            out.push(self.classify(sli));
        }
        out
    }
}

/// Load shapes the generator draws from.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LoadFamily {
    Constant,
    Diurnal,
    Bursts,
    /// The shipped Azure Functions HTTP trace, at a random offset.
    Trace,
}

/// The generator's settings; recorded beside the dataset.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    pub seed: u64,
    pub runs: usize,
    pub duration_s: f64,
    pub scrape_interval_s: f64,
    /// Scrapes per sample window.
    pub window: usize,
    /// Seconds ahead the label looks.
    pub horizon_s: f64,
    /// Fraction of runs without a fault.
    pub fault_free_fraction: f64,
    pub faults: Vec<FaultKind>,
    pub loads: Vec<LoadFamily>,
    /// The controller active in every run (`static`, `hpa`, ...): healing
    /// and scaling change what follows a fault, so it is recorded per row.
    pub controller: String,
    pub health: HealthConfig,
    /// Vary each run's services (replicas 2 to 10, service times, memory
    /// baselines from 5 % to 90 % of the limit) so that a model cannot
    /// learn one world's levels.
    pub domain_randomisation: bool,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            seed: 1,
            runs: 600,
            duration_s: 1800.0,
            scrape_interval_s: 5.0,
            window: 60,
            horizon_s: 300.0,
            fault_free_fraction: 0.2,
            faults: FaultKind::ALL.to_vec(),
            loads: vec![
                LoadFamily::Constant,
                LoadFamily::Diurnal,
                LoadFamily::Bursts,
            ],
            controller: "static".into(),
            health: HealthConfig::default(),
            domain_randomisation: false,
        }
    }
}

/// The SLO latency of every generated trace's scenario.
pub const TRACES_SLO_LATENCY_MS: f64 = 250.0;

/// Per-scrape features: the seed's seven, then ready replicas.
pub const FEATURES: [&str; 8] = [
    "cpu_usage",
    "memory_usage",
    "request_rate",
    "error_rate",
    "latency_p50_ms",
    "latency_p99_ms",
    "active_connections",
    "ready_replicas",
];

/// What one run was made of.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPlan {
    pub id: u32,
    pub seed: u64,
    pub load: LoadFamily,
    pub rate: f64,
    pub fault: Option<(FaultKind, f64)>,
    pub scenario: String,
}

/// One scrape of one service, with its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub run: u32,
    pub service: u8,
    pub scrape: u32,
    pub t_s: f64,
    pub features: [f32; 8],
    /// Worst state in `(t, t + horizon]`; `None` when the run ends earlier.
    pub label: Option<Health>,
    /// Seconds from `t` to the first breached second, if within the horizon.
    pub time_to_breach_s: Option<f64>,
    /// The fault active at `t` or starting within the horizon.
    pub fault: Option<FaultKind>,
}

/// A generated dataset: rows in (run, service, scrape) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub config: TracesConfig,
    pub runs: Vec<RunPlan>,
    pub controller: String,
    pub rows: Vec<Row>,
}

impl Dataset {
    /// Indices of rows that end a full window of one (run, service) and have
    /// a label, every `stride` scrapes.
    pub fn sample_ends(&self, stride: usize) -> Vec<usize> {
        let w = self.config.window;
        (0..self.rows.len())
            .filter(|&i| {
                let r = &self.rows[i];
                r.label.is_some()
                    && r.scrape as usize + 1 >= w
                    && (r.scrape as usize + 1 - w).is_multiple_of(stride.max(1))
                    && i + 1 >= w
                    && self.rows[i + 1 - w].run == r.run
                    && self.rows[i + 1 - w].service == r.service
            })
            .collect()
    }

    /// The window ending at row `end`, row-major `[window][features]`.
    pub fn window(&self, end: usize, features: usize) -> Vec<f32> {
        let w = self.config.window;
        let mut out = Vec::with_capacity(w * features);
        for r in &self.rows[end + 1 - w..=end] {
            out.extend_from_slice(&r.features[..features]);
        }
        out
    }

    /// Adds `other`'s runs and rows after this dataset's, its run ids
    /// moved past this one's, so that the split by run and the windows
    /// keep them apart. The config stays this dataset's: `other` must
    /// share its time base and window.
    pub fn append(&mut self, other: Dataset) {
        let first = self.runs.iter().map(|r| r.id + 1).max().unwrap_or(0);
        self.runs.extend(other.runs.into_iter().map(|r| RunPlan {
            id: r.id + first,
            ..r
        }));
        self.rows.extend(other.rows.into_iter().map(|r| Row {
            run: r.run + first,
            ..r
        }));
        self.config.runs = self.runs.len();
    }
}

fn uniform(rng: &mut Stream, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

/// Draws the plan of run `id`: independent of every other run's draws, so
/// that adding runs does not change earlier ones.
/// The two services' shape in one run: the fixed world, or a randomised
/// one drawn from its own stream (so the loads and faults stay those of
/// the fixed world with the same seed).
struct World {
    replicas: [u32; 2],
    service_time_ms: [String; 2],
    memory_base_mib: [String; 2],
}

impl World {
    fn of(cfg: &TracesConfig, id: u32) -> World {
        if !cfg.domain_randomisation {
            return World {
                replicas: [3, 3],
                service_time_ms: ["3".into(), "8".into()],
                memory_base_mib: ["160".into(), "160".into()],
            };
        }
        let mut rng = Stream::new_indexed(cfg.seed, Subsystem::Traces, (1 << 32) | id as u64);
        let mut draw = |lo: f64, hi: f64| uniform(&mut rng, lo, hi);
        let replicas = [draw(2.0, 10.99) as u32, draw(2.0, 10.99) as u32];
        let service_time_ms = [
            format!("{:.1}", draw(1.5, 6.0)),
            format!("{:.1}", draw(3.0, 16.0)),
        ];
        // 5 % to 90 % of the 512 MiB limit.
        let memory_base_mib = [
            format!("{:.0}", draw(26.0, 460.0)),
            format!("{:.0}", draw(26.0, 460.0)),
        ];
        World {
            replicas,
            service_time_ms,
            memory_base_mib,
        }
    }
}

pub fn plan_run(cfg: &TracesConfig, id: u32) -> RunPlan {
    let mut rng = Stream::new_indexed(cfg.seed, Subsystem::Traces, id as u64);
    let seed = rng.next_u64() >> 1;
    let load = cfg.loads[rng.index(cfg.loads.len())];
    let rate = uniform(&mut rng, 60.0, 220.0);
    let curve = match load {
        LoadFamily::Constant => format!("{{ kind = \"constant\", rate = {rate:.1} }}"),
        LoadFamily::Diurnal => format!(
            "{{ kind = \"diurnal\", mean = {rate:.1}, amplitude = {:.2}, period_s = {:.0}, peak_s = {:.0} }}",
            uniform(&mut rng, 0.2, 0.6),
            uniform(&mut rng, 900.0, 3600.0),
            uniform(&mut rng, 0.0, 1800.0)
        ),
        LoadFamily::Bursts => format!(
            "{{ kind = \"bursts\", base = {rate:.1}, multiplier = {:.2}, mean_gap_s = {:.0}, mean_length_s = {:.0} }}",
            uniform(&mut rng, 1.3, 2.2),
            uniform(&mut rng, 120.0, 400.0),
            uniform(&mut rng, 20.0, 90.0)
        ),
        LoadFamily::Trace => format!(
            "{{ kind = \"trace\", file = \"../datasets/traces/azure_fn2019_http_021589_per_min.csv\", mean = {rate:.1}, speedup = 30, offset_s = {:.0}, loop = true }}",
            uniform(&mut rng, 0.0, 80_000.0)
        ),
    };
    let faulty = !cfg.faults.is_empty() && rng.uniform() >= cfg.fault_free_fraction;
    let d = cfg.duration_s;
    let mut fault_toml = String::new();
    let fault = if faulty {
        let kind = cfg.faults[rng.index(cfg.faults.len())];
        // Late enough for a full window before it, early enough to see the
        // effect within the run.
        let at = uniform(
            &mut rng,
            cfg.window as f64 * cfg.scrape_interval_s,
            (d - cfg.horizon_s).max(cfg.window as f64 * cfg.scrape_interval_s + 1.0),
        )
        .round();
        let svc = if rng.uniform() < 0.5 {
            "frontend"
        } else {
            "backend"
        };
        let dur = uniform(&mut rng, 120.0, 600.0).round();
        let pods = 1 + rng.index(3);
        let body = match kind {
            FaultKind::PodKill => format!("service = \"{svc}\"\npods = {pods}"),
            FaultKind::NodeLoss => format!("node = \"node-{}\"\nduration_s = {dur}", rng.index(3)),
            FaultKind::Latency => format!(
                "service = \"backend\"\nadded_ms = {:.0}\nduration_s = {dur}",
                uniform(&mut rng, 50.0, 900.0)
            ),
            FaultKind::CpuStress => format!(
                "service = \"{svc}\"\npods = {pods}\ncores = {:.2}\nduration_s = {dur}",
                uniform(&mut rng, 0.3, 2.0)
            ),
            FaultKind::DependencyFailure => {
                if rng.uniform() < 0.5 {
                    format!("service = \"backend\"\nmode = \"blackhole\"\nduration_s = {dur}")
                } else {
                    format!(
                        "service = \"backend\"\nmode = \"errors\"\nerror_rate = {:.2}\nduration_s = {dur}",
                        uniform(&mut rng, 0.05, 1.0)
                    )
                }
            }
            FaultKind::MemoryLeak => format!(
                "service = \"{svc}\"\npods = {pods}\nleak_mib_per_s = {:.2}",
                uniform(&mut rng, 0.3, 3.0)
            ),
            FaultKind::Hang => format!("service = \"{svc}\"\npods = {pods}\nduration_s = {dur}"),
            FaultKind::BadDeploy => {
                let mut b = format!(
                    "service = \"{svc}\"\nerror_rate = {:.2}\nservice_time_factor = {:.2}",
                    uniform(&mut rng, 0.0, 0.4),
                    uniform(&mut rng, 1.0, 3.0)
                );
                if rng.uniform() < 0.3 {
                    let _ = write!(b, "\ncrash_after_s = {:.0}", uniform(&mut rng, 30.0, 300.0));
                }
                b
            }
        };
        let _ = write!(
            fault_toml,
            "\n[[fault]]\nkind = \"{}\"\nat_s = {at}\n{body}\n",
            kind.as_str()
        );
        Some((kind, at))
    } else {
        None
    };
    let world = World::of(cfg, id);
    let scenario = format!(
        r#"name = "traces-{id}"
duration_s = {d}
seed = {seed}

[slo]
latency_ms = {slo_latency_ms}
objective = {objective}

[metrics]
scrape_interval_s = {scrape}
rate_window_s = {rate_window}

[cluster]
node = [{{ name = "node", count = 3, cpu = 8, memory_mib = 16384 }}]

[controller]
kind = "{controller}"

[[load]]
service = "frontend"
timeout_ms = 2000
curve = {curve}

[[service]]
name = "frontend"
replicas = {fr}
max_connections = 100
memory_limit_mib = 512
revision = {{ service_time_ms = {fs}, memory_base_mib = {fm} }}
  [[service.call]]
  to = "backend"
  timeout_ms = 1000

[[service]]
name = "backend"
replicas = {br}
max_connections = 64
memory_limit_mib = 512
revision = {{ service_time_ms = {bs}, memory_base_mib = {bm} }}
{fault_toml}"#,
        objective = cfg.health.healthy,
        slo_latency_ms = TRACES_SLO_LATENCY_MS,
        fr = world.replicas[0],
        br = world.replicas[1],
        fs = world.service_time_ms[0],
        bs = world.service_time_ms[1],
        fm = world.memory_base_mib[0],
        bm = world.memory_base_mib[1],
        scrape = cfg.scrape_interval_s,
        // Rates over two scrapes at least, as a `rate(x[2m])` over 60 s
        // scrapes would be.
        rate_window = (2.0 * cfg.scrape_interval_s).max(30.0),
        controller = cfg.controller,
    );
    RunPlan {
        id,
        seed,
        load,
        rate,
        fault,
        scenario,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("run {run}: {message}")]
    Run { run: u32, message: String },
}

/// Simulates one planned run and labels its scrapes.
pub fn run_one(
    cfg: &TracesConfig,
    plan: &RunPlan,
    base_dir: &Path,
) -> Result<Vec<Row>, TracesError> {
    let err = |message: String| TracesError::Run {
        run: plan.id,
        message,
    };
    let loaded = scenario::parse(&plan.scenario, &format!("traces run {}", plan.id), base_dir)
        .map_err(|e| err(e.to_string()))?;
    let out = sim::run(&loaded).map_err(|e| err(e.to_string()))?;
    let states = cfg.health.states(&out.root_seconds);
    let horizon = cfg.horizon_s as usize;
    let fault_span = out.faults.first().map(|f| {
        let end = f.end.map_or(f64::INFINITY, |e| e.as_secs_f64());
        (f.kind, f.start.as_secs_f64(), end)
    });
    let mut rows = Vec::new();
    for (svc, _) in out.services.iter().enumerate() {
        for (scrape, (_, m)) in out.metrics.iter().filter(|(s, _)| *s == svc).enumerate() {
            let scrape = scrape as u32;
            let t = m.timestamp.as_secs_f64();
            let sec = t.floor() as usize;
            let future = states.get(sec + 1..=sec + horizon);
            let label = future
                .filter(|f| f.len() == horizon)
                .map(|f| f.iter().copied().max().unwrap_or(Health::Healthy));
            let time_to_breach_s = future.and_then(|f| {
                f.iter()
                    .position(|&h| h != Health::Healthy)
                    .map(|k| (sec + 1 + k) as f64 - t)
            });
            let fault = fault_span.and_then(|(kind, start, end)| {
                (t >= start - cfg.horizon_s && t < end).then_some(kind)
            });
            rows.push(Row {
                run: plan.id,
                service: svc as u8,
                scrape,
                t_s: t,
                features: crate::control::predictor::scrape_row(m),
                label,
                time_to_breach_s,
                fault,
            });
        }
    }
    Ok(rows)
}

/// Plans and simulates every run in parallel; the result does not depend on
/// the thread count. `progress` is called once per finished run.
pub fn generate(
    cfg: &TracesConfig,
    base_dir: &Path,
    progress: &(dyn Fn() + Sync),
) -> Result<Dataset, TracesError> {
    let runs: Vec<RunPlan> = (0..cfg.runs as u32).map(|i| plan_run(cfg, i)).collect();
    let rows: Vec<Vec<Row>> = runs
        .par_iter()
        .map(|p| {
            let r = run_one(cfg, p, base_dir);
            progress();
            r
        })
        .collect::<Result<_, _>>()?;
    Ok(Dataset {
        config: cfg.clone(),
        controller: cfg.controller.clone(),
        runs,
        rows: rows.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_sli_thresholds() {
        let h = HealthConfig {
            sli_window_s: 1,
            ..HealthConfig::default()
        };
        let sec = |good, failed| RootSecond {
            arrivals: good + failed,
            ok: good,
            good,
            failed,
        };
        let s = h.states(&[sec(100, 0), sec(97, 3), sec(90, 10), sec(50, 50), sec(0, 0)]);
        assert_eq!(
            s,
            vec![
                Health::Healthy,
                Health::Degraded,
                Health::Unhealthy,
                Health::Critical,
                Health::Healthy
            ]
        );
    }

    #[test]
    fn plans_are_independent_per_run_and_parse() {
        let cfg = TracesConfig::default();
        assert_eq!(plan_run(&cfg, 7), plan_run(&cfg, 7));
        assert_ne!(plan_run(&cfg, 7).scenario, plan_run(&cfg, 8).scenario);
        for id in 0..40 {
            let p = plan_run(&cfg, id);
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            scenario::parse(&p.scenario, "plan", &dir)
                .unwrap_or_else(|e| panic!("{e}\n{}", p.scenario));
        }
    }
}
