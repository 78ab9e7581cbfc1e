//! The decision-quality suite: generated scenarios x controllers x seeds.
//!
//! Every scenario is the same two-service graph (frontend -> backend) under
//! a different load: diurnal, ramp, flash crowd, step, bursts, diurnal with
//! bursts, and replays of real traces. The split is by whole family: the
//! training families (diurnal, ramp, step, bursts) choose the selfheal
//! scaler's settings; the held-out families (flash crowds, diurnal with
//! bursts, each real trace) score them, so no score comes from a sibling
//! of a scenario the settings were chosen on. Every controller runs the
//! same seeds, so requests are identical across controllers (common random
//! numbers).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::scenario::{self, ControllerSpec, CurveSpec, LoadedScenario, Scenario};
use crate::sim::load::Trace;
use crate::sweep::SweepError;
use crate::sweep::plan::{Plan, RunSpec};
use crate::sweep::run::RunRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Split {
    Train,
    Test,
}

/// The families the settings are chosen on; every other family is held out.
pub const TRAINING_FAMILIES: [&str; 4] = ["diurnal", "ramp", "step", "bursts"];

pub struct SuiteScenario {
    pub name: String,
    pub family: &'static str,
    pub split: Split,
    pub scenario: LoadedScenario,
}

/// The real traces a suite replays, by file name.
pub type Traces = BTreeMap<String, Arc<Trace>>;

pub const TRACE_FILES: [&str; 4] = [
    "nasa_http_1995_per_min.csv",
    "wikipedia_en_hourly_2010_2015.csv",
    "azure_fn2019_http_021589_per_min.csv",
    "azure_fn2019_queue_8203ff_per_min.csv",
];

const DURATION: f64 = 7200.0;

/// The pods' Kubernetes QoS class: what a CPU utilisation target means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// Request = limit = 1 core: a utilisation target is a fraction of what
    /// a pod can use, as for latency-sensitive services in production.
    Guaranteed,
    /// A 0.5-core request under a 1-core limit: a pod can burst to twice
    /// its request, so every HPA target (50-80 % of the request) leaves it
    /// under 40 % of its limit and only sharp transients violate the SLO.
    Burstable,
}

/// A QoS class name the suite does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown QoS class `{0}` (guaranteed, burstable)")]
pub struct UnknownQos(pub String);

impl std::str::FromStr for Qos {
    type Err = UnknownQos;
    fn from_str(s: &str) -> Result<Self, UnknownQos> {
        match s {
            "guaranteed" => Ok(Qos::Guaranteed),
            "burstable" => Ok(Qos::Burstable),
            other => Err(UnknownQos(other.to_string())),
        }
    }
}

/// A suite scenario that the suite's own template does not make valid.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("scenario {name}: {source}")]
    Template {
        name: String,
        source: toml::de::Error,
    },
    #[error("scenario {name}: {source}")]
    Invalid {
        name: String,
        source: crate::scenario::Problem,
    },
}

impl Qos {
    pub fn describe(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed QoS pods (CPU request = limit = 1 core)",
            Qos::Burstable => "Burstable QoS pods (0.5-core CPU request, 1-core limit)",
        }
    }

    /// (request, limit) in cores.
    fn cpu(self) -> (f64, f64) {
        match self {
            Qos::Guaranteed => (1.0, 1.0),
            Qos::Burstable => (0.5, 1.0),
        }
    }
}

fn template(name: &str, mean_rate: f64, qos: Qos) -> String {
    // Start sized for the mean load at 70 % of the CPU request: frontend
    // 5 ms and backend 8 ms of CPU per request.
    let (request, limit) = qos.cpu();
    let fe = ((mean_rate * 0.005 / (0.7 * request)).ceil() as u32).max(1);
    let be = ((mean_rate * 0.008 / (0.7 * request)).ceil() as u32).max(1);
    format!(
        r#"
name = "{name}"
duration_s = {DURATION}
seed = 1

[slo]
latency_ms = 100
objective = 0.99

[[load]]
service = "frontend"
timeout_ms = 5000
curve = {{ kind = "constant", rate = 0 }}

[[service]]
name = "frontend"
replicas = {fe}
cpu_request = {request:.1}
cpu_limit = {limit:.1}
max_connections = 64
queue_capacity = 200
revision = {{ service_time_ms = 5 }}
  [[service.call]]
  to = "backend"
  timeout_ms = 1000

[[service]]
name = "backend"
replicas = {be}
cpu_request = {request:.1}
cpu_limit = {limit:.1}
max_connections = 64
queue_capacity = 200
revision = {{ service_time_ms = 8 }}
"#
    )
}

fn trace(file: &str, peak: f64, speedup: f64, offset_s: f64) -> CurveSpec {
    CurveSpec::Trace {
        file: file.into(),
        scale: None,
        peak: Some(peak),
        mean: None,
        speedup,
        offset_s,
        looped: false,
    }
}

/// The standard suite: 22 scenarios of 9 families, 10 scenarios of the
/// [`TRAINING_FAMILIES`] to train on and 12 held out, with pods of the
/// given QoS class.
pub fn standard(traces: &Traces, qos: Qos) -> Result<Vec<SuiteScenario>, SuiteError> {
    use CurveSpec::*;
    let diurnal = |mean: f64, amplitude: f64, peak_s: f64| Diurnal {
        mean,
        amplitude,
        period_s: DURATION,
        peak_s,
    };
    let noise = |cv: f64| Noise { cv, step_s: 30.0 };
    let day = 86_400.0;
    // (name, family, curve, mean rate for the initial sizing)
    let specs: Vec<(&str, &'static str, CurveSpec, f64)> = vec![
        ("diurnal-a", "diurnal", diurnal(300.0, 0.6, 3600.0), 300.0),
        ("diurnal-b", "diurnal", diurnal(450.0, 0.5, 5400.0), 450.0),
        (
            "diurnal-noisy-a",
            "diurnal",
            Product {
                parts: vec![diurnal(250.0, 0.7, 2000.0), noise(0.1)],
            },
            250.0,
        ),
        (
            "diurnal-noisy-b",
            "diurnal",
            Product {
                parts: vec![diurnal(350.0, 0.6, 4000.0), noise(0.15)],
            },
            350.0,
        ),
        (
            "ramp-up-a",
            "ramp",
            Ramp {
                from: 100.0,
                to: 600.0,
                start_s: 1800.0,
                end_s: 5400.0,
            },
            350.0,
        ),
        (
            "ramp-up-b",
            "ramp",
            Ramp {
                from: 150.0,
                to: 800.0,
                start_s: 2400.0,
                end_s: 4800.0,
            },
            450.0,
        ),
        (
            "flash-a",
            "flash crowd",
            FlashCrowd {
                base: 200.0,
                peak: 900.0,
                start_s: 3600.0,
                rise_s: 30.0,
                decay_s: 600.0,
            },
            250.0,
        ),
        (
            "flash-b",
            "flash crowd",
            FlashCrowd {
                base: 150.0,
                peak: 1200.0,
                start_s: 4200.0,
                rise_s: 20.0,
                decay_s: 400.0,
            },
            200.0,
        ),
        (
            "flash-double-a",
            "flash crowd",
            Sum {
                parts: vec![
                    FlashCrowd {
                        base: 250.0,
                        peak: 700.0,
                        start_s: 2400.0,
                        rise_s: 60.0,
                        decay_s: 300.0,
                    },
                    FlashCrowd {
                        base: 0.0,
                        peak: 500.0,
                        start_s: 5400.0,
                        rise_s: 30.0,
                        decay_s: 300.0,
                    },
                ],
            },
            300.0,
        ),
        (
            "flash-double-b",
            "flash crowd",
            Sum {
                parts: vec![
                    FlashCrowd {
                        base: 200.0,
                        peak: 600.0,
                        start_s: 3000.0,
                        rise_s: 40.0,
                        decay_s: 500.0,
                    },
                    FlashCrowd {
                        base: 0.0,
                        peak: 700.0,
                        start_s: 6000.0,
                        rise_s: 20.0,
                        decay_s: 200.0,
                    },
                ],
            },
            250.0,
        ),
        (
            "step-a",
            "step",
            Step {
                before: 200.0,
                after: 500.0,
                at_s: 3600.0,
            },
            350.0,
        ),
        (
            "step-b",
            "step",
            Sum {
                parts: vec![
                    Step {
                        before: 400.0,
                        after: 150.0,
                        at_s: 2400.0,
                    },
                    Step {
                        before: 0.0,
                        after: 450.0,
                        at_s: 4800.0,
                    },
                ],
            },
            350.0,
        ),
        (
            "bursts-a",
            "bursts",
            Bursts {
                base: 200.0,
                multiplier: 3.0,
                mean_gap_s: 900.0,
                mean_length_s: 180.0,
            },
            280.0,
        ),
        (
            "bursts-b",
            "bursts",
            Bursts {
                base: 250.0,
                multiplier: 2.5,
                mean_gap_s: 600.0,
                mean_length_s: 240.0,
            },
            350.0,
        ),
        (
            "diurnal-bursts-a",
            "diurnal+bursts",
            Product {
                parts: vec![
                    diurnal(250.0, 0.5, 3000.0),
                    Bursts {
                        base: 1.0,
                        multiplier: 2.0,
                        mean_gap_s: 1200.0,
                        mean_length_s: 120.0,
                    },
                ],
            },
            280.0,
        ),
        (
            "diurnal-bursts-b",
            "diurnal+bursts",
            Product {
                parts: vec![
                    diurnal(300.0, 0.4, 5000.0),
                    Bursts {
                        base: 1.0,
                        multiplier: 2.2,
                        mean_gap_s: 900.0,
                        mean_length_s: 150.0,
                    },
                ],
            },
            330.0,
        ),
        // Real traces, one trace day in two simulated hours (NASA, Azure) or
        // a trace week in two hours (Wikipedia).
        (
            "nasa-day3",
            "nasa trace",
            trace(TRACE_FILES[0], 700.0, 12.0, 2.0 * day),
            250.0,
        ),
        (
            "nasa-day10",
            "nasa trace",
            trace(TRACE_FILES[0], 700.0, 12.0, 9.0 * day),
            250.0,
        ),
        (
            "wikipedia-week1",
            "wikipedia trace",
            trace(TRACE_FILES[1], 600.0, 84.0, 0.0),
            400.0,
        ),
        (
            "wikipedia-week30",
            "wikipedia trace",
            trace(TRACE_FILES[1], 600.0, 84.0, 29.0 * 7.0 * day),
            400.0,
        ),
        (
            "azure-queue",
            "azure trace",
            trace(TRACE_FILES[3], 600.0, 12.0, 0.0),
            150.0,
        ),
        (
            "azure-http",
            "azure trace",
            trace(TRACE_FILES[2], 600.0, 12.0, 0.0),
            450.0,
        ),
    ];
    specs
        .into_iter()
        .map(|(name, family, curve, mean)| {
            let split = if TRAINING_FAMILIES.contains(&family) {
                Split::Train
            } else {
                Split::Test
            };
            let mut spec: Scenario =
                toml::from_str(&template(name, mean, qos)).map_err(|source| {
                    SuiteError::Template {
                        name: name.to_string(),
                        source,
                    }
                })?;
            spec.loads[0].curve = curve;
            let loaded = scenario::from_spec(spec, traces.clone()).map_err(|source| {
                SuiteError::Invalid {
                    name: name.to_string(),
                    source,
                }
            })?;
            Ok(SuiteScenario {
                name: name.to_string(),
                family,
                split,
                scenario: loaded,
            })
        })
        .collect()
}

/// Runs every scenario under every controller and seed through the
/// sweep runner, journalled in `dir`: an interrupted suite resumes where it
/// stopped. The result order is fixed (scenario, controller, seed) whatever
/// the threads. `progress(done, total)` is called after each run, from any
/// thread.
pub fn run_matrix(
    scenarios: &[&SuiteScenario],
    controllers: &[(String, ControllerSpec)],
    seeds: &[u64],
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<RunRecord>, SweepError> {
    let mut runs = Vec::new();
    for s in scenarios {
        for (label, spec) in controllers {
            for &seed in seeds {
                let mut loaded = s.scenario.clone();
                loaded.spec.seed = seed;
                loaded.spec.use_controller(spec.clone());
                runs.push(RunSpec {
                    index: runs.len(),
                    id: RunSpec::id_for(&s.name, "", label, &loaded),
                    scenario: s.name.clone(),
                    params: String::new(),
                    controller: label.clone(),
                    seed,
                    keep_series: false,
                    loaded,
                });
            }
        }
    }
    let plan = Plan {
        name: "suite".into(),
        description: String::new(),
        runs,
    };
    crate::sweep::run::execute(&plan, dir, None, progress)
}

/// A controller against HPA's curves on some scenarios: its figures summed
/// over them, and HPA's at the controller's replica-seconds, scenario by
/// scenario (interpolated between HPA's targets).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgainstHpa {
    pub violation_s: f64,
    pub hpa_violation_s: f64,
    pub failed: f64,
    pub hpa_failed: f64,
    /// Scenarios where its violation-seconds are below HPA's curve.
    pub below: usize,
    pub scenarios: usize,
}

pub fn against_hpa(
    means: &BTreeMap<(String, String), Mean>,
    scenarios: &[&SuiteScenario],
    hpas: &[String],
    controller: &str,
) -> AgainstHpa {
    use crate::sweep::headline::curve_at;
    let mut a = AgainstHpa::default();
    for s in scenarios {
        let get = |c: &str| &means[&(s.name.clone(), c.to_string())];
        let x = get(controller);
        let curve = |f: fn(&Mean) -> f64| {
            let pts: Vec<(f64, f64)> = hpas
                .iter()
                .map(|h| (get(h).replica_seconds, f(get(h))))
                .collect();
            curve_at(&pts, x.replica_seconds).0
        };
        let hv = curve(|m| m.slo_violation_s);
        a.violation_s += x.slo_violation_s;
        a.hpa_violation_s += hv;
        a.failed += x.failed;
        a.hpa_failed += curve(|m| m.failed);
        a.below += usize::from(x.slo_violation_s < hv - 1e-9);
        a.scenarios += 1;
    }
    a
}

/// Mean figures of one controller on one scenario over the seeds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mean {
    pub slo_violation_s: f64,
    pub failed: f64,
    pub replica_seconds: f64,
    pub scaling_actions: f64,
    pub runs: usize,
}

pub fn means(results: &[RunRecord]) -> BTreeMap<(String, String), Mean> {
    let mut m: BTreeMap<(String, String), Mean> = BTreeMap::new();
    for r in results {
        let e = m
            .entry((r.scenario.clone(), r.controller.clone()))
            .or_default();
        e.slo_violation_s += r.slo_violation_s;
        e.failed += r.failed as f64;
        e.replica_seconds += r.replica_seconds;
        e.scaling_actions += r.scaling_actions as f64;
        e.runs += 1;
    }
    for e in m.values_mut() {
        let n = e.runs.max(1) as f64;
        e.slo_violation_s /= n;
        e.failed /= n;
        e.replica_seconds /= n;
        e.scaling_actions /= n;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_suite_holds_out_whole_families() {
        // Synthetic stand-ins for the traces: the suite only needs them to
        // exist and parse.
        let t = Arc::new(Trace {
            t: (0..20_000).map(|i| i as f64 * 60.0).collect(),
            value: vec![1.0; 20_000],
        });
        let traces: Traces = TRACE_FILES
            .iter()
            .map(|f| (f.to_string(), t.clone()))
            .collect();
        let s = standard(&traces, Qos::Guaranteed).unwrap();
        assert!(s.len() >= 20);
        let families: std::collections::BTreeSet<&str> = s.iter().map(|x| x.family).collect();
        for family in &families {
            let splits: std::collections::BTreeSet<Split> = s
                .iter()
                .filter(|x| x.family == *family)
                .map(|x| x.split)
                .collect();
            assert_eq!(splits.len(), 1, "{family} is on both sides");
        }
        for family in TRAINING_FAMILIES {
            assert!(families.contains(family), "{family}");
        }
        // Every real trace, and the flash crowds, are held out.
        let held_out = |f: &str| s.iter().any(|x| x.family == f && x.split == Split::Test);
        for f in [
            "nasa trace",
            "wikipedia trace",
            "azure trace",
            "flash crowd",
        ] {
            assert!(held_out(f), "{f}");
        }
        assert!(s.iter().filter(|x| x.split == Split::Train).count() >= 8);

        // The QoS class sets requests, limits and the starting size (for the
        // mean load at 70 % of the request).
        let b = standard(&traces, Qos::Burstable).unwrap();
        let fleet = |s: &SuiteScenario| {
            let sv = &s.scenario.spec.services[1];
            (sv.cpu_request, sv.cpu_limit, sv.replicas)
        };
        let (g0, b0) = (&s[0], &b[0]);
        assert_eq!(g0.name, b0.name);
        let ((gr, gl, gn), (br, bl, bn)) = (fleet(g0), fleet(b0));
        assert_eq!((gr, gl, br, bl), (1.0, 1.0, 0.5, 1.0));
        assert!(bn >= 2 * gn - 1 && bn <= 2 * gn, "{bn} vs {gn}");
    }
}
