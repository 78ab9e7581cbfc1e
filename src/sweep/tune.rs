//! The tuner: searches the selfheal scaler's settings, or the Kubernetes
//! HPA's, over a training suite by successive halving, and validates the
//! best on a held-out suite against the defaults.
//!
//! The search space is continuous: each setting has a range (linear or
//! logarithmic) and a step it is rounded to. Candidates are a Latin
//! hypercube sample of it from the tuning stream, plus the untuned
//! defaults. Successive halving (Jamieson and Talwalkar 2016; Li et al.,
//! Hyperband, 2018) scores every candidate on a small share of the
//! training runs (never less than one seed of every scenario), promotes the best third (and the two ends of that
//! share's Pareto front of SLO violation against cost) to a share three
//! times larger, and so on up to the whole suite. All candidates of a rung
//! run the same runs (paired seeds), and each rung's runs extend the last
//! one's, so a promoted candidate only runs what is new to it.
//!
//! The objective (lower is better) is the mean over runs of SLO-violation
//! seconds plus a cost weight times replica-seconds. The runs are one
//! resumable sweep, so an interrupted tune resumes like any sweep.

use std::path::Path;

use super::SweepError;
use super::plan::{Plan, RunSpec};
use super::run::RunRecord;
use crate::control::hpa::{DEFAULT_CPU_PERCENT, PolicyKind, ScalingRules, SelectPolicy};
use crate::rng::{Stream, Subsystem};
use crate::scenario::{ControllerKind, ControllerSpec};
pub use selfheal_core::policy::controller_toml;

#[derive(Clone, Debug)]
pub struct Candidate {
    pub label: String,
    pub spec: ControllerSpec,
}

/// One tunable setting: its `[controller]` key, its range, whether it is
/// searched on a log scale, and the step its values are rounded to (a flag
/// is 0 to 1 in steps of 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub step: f64,
}

impl Param {
    const fn linear(name: &'static str, lo: f64, hi: f64, step: f64) -> Param {
        Param {
            name,
            lo,
            hi,
            log: false,
            step,
        }
    }

    const fn log(name: &'static str, lo: f64, hi: f64, step: f64) -> Param {
        Param {
            name,
            lo,
            hi,
            log: true,
            step,
        }
    }

    const fn flag(name: &'static str) -> Param {
        Param::linear(name, 0.0, 1.0, 1.0)
    }

    /// The value at quantile `u` in [0, 1), rounded to the step and printed
    /// and read back, so the settings are exactly what their label says.
    pub fn at(&self, u: f64) -> f64 {
        let v = if self.log {
            (self.lo.ln() + u * (self.hi / self.lo).ln()).exp()
        } else {
            self.lo + u * (self.hi - self.lo)
        };
        let v = ((v / self.step).round() * self.step).clamp(self.lo, self.hi);
        self.show(v).parse().expect("a printed number reads back")
    }

    fn decimals(&self) -> usize {
        (-self.step.log10()).ceil().max(0.0) as usize
    }

    fn show(&self, v: f64) -> String {
        format!("{v:.*}", self.decimals())
    }
}

/// What a tuning searches: the settings and their ranges, how a point
/// becomes a controller, and the untuned settings it must beat.
#[derive(Clone, Debug)]
pub struct Search {
    /// What the report calls it.
    pub title: &'static str,
    pub params: Vec<Param>,
    /// The controller at a point (values in `params` order).
    pub build: fn(&[f64]) -> ControllerSpec,
    /// The untuned contender: (label, settings). It is also a candidate.
    pub default: (String, ControllerSpec),
}

impl Search {
    /// The selfheal scaler's settings users tune by hand, against its
    /// defaults.
    pub fn selfheal() -> Search {
        Search {
            title: "the selfheal scaler",
            params: vec![
                Param::linear("cpu_target", 0.4, 0.85, 0.01),
                Param::flag("plan_on_upper"),
                Param::log("scale_up_cooldown_s", 15.0, 300.0, 1.0),
                Param::log("scale_down_cooldown_s", 60.0, 900.0, 1.0),
                Param::linear("interval_level", 0.5, 0.95, 0.01),
            ],
            build: |v| ControllerSpec {
                kind: ControllerKind::Selfheal,
                cpu_target: Some(v[0]),
                plan_on_upper: Some(v[1] >= 0.5),
                scale_up_cooldown_s: Some(v[2]),
                scale_down_cooldown_s: Some(v[3]),
                interval_level: Some(v[4]),
                ..ControllerSpec::default()
            },
            default: (
                "selfheal-defaults".into(),
                ControllerSpec {
                    kind: ControllerKind::Selfheal,
                    ..ControllerSpec::default()
                },
            ),
        }
    }

    /// The HPA's CPU target and `behavior` (stabilisation windows, percent
    /// policies), against `kubectl autoscale`'s 80 % with autoscaling/v2's
    /// default behavior.
    pub fn hpa() -> Search {
        Search {
            title: "the Kubernetes HPA",
            params: vec![
                Param::linear("target_cpu_percent", 20.0, 95.0, 1.0),
                Param::linear("scale_up_stabilization_s", 0.0, 180.0, 15.0),
                Param::linear("scale_down_stabilization_s", 0.0, 900.0, 15.0),
                Param::log("scale_up_percent", 25.0, 400.0, 5.0),
                Param::log("scale_down_percent", 5.0, 100.0, 5.0),
            ],
            build: |v| ControllerSpec {
                scale_up_stabilization_s: Some(v[1] as u32),
                scale_down_stabilization_s: Some(v[2] as u32),
                scale_up_percent: Some(v[3] as u32),
                scale_down_percent: Some(v[4] as u32),
                ..hpa_at(v[0] as u32)
            },
            default: (
                format!("hpa:{DEFAULT_CPU_PERCENT}"),
                hpa_at(DEFAULT_CPU_PERCENT),
            ),
        }
    }

    /// The candidate at a point of the space.
    pub fn candidate(&self, values: &[f64]) -> Candidate {
        let label = self
            .params
            .iter()
            .zip(values)
            .map(
                |(p, &v)| match p.step == 1.0 && p.lo == 0.0 && p.hi == 1.0 {
                    true => format!("{}={}", p.name, v >= 0.5),
                    false => format!("{}={}", p.name, p.show(v)),
                },
            )
            .collect::<Vec<_>>()
            .join(" ");
        Candidate {
            label,
            spec: (self.build)(values),
        }
    }

    /// The defaults, then `n` points of a Latin hypercube over the space:
    /// each setting's range cut into `n` strata, each stratum used once, in
    /// an order and at a place inside it drawn from `rng`.
    pub fn sample(&self, n: usize, rng: &mut Stream) -> Vec<Candidate> {
        let mut points = vec![vec![0.0; self.params.len()]; n];
        for d in 0..self.params.len() {
            let mut strata: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                strata.swap(i, rng.index(i + 1));
            }
            for (point, stratum) in points.iter_mut().zip(strata) {
                point[d] = (stratum as f64 + rng.uniform()) / n as f64;
            }
        }
        let default = Candidate {
            label: self.default.0.clone(),
            spec: self.default.1.clone(),
        };
        std::iter::once(default)
            .chain(points.iter().map(|u| {
                let values: Vec<f64> = self.params.iter().zip(u).map(|(p, &u)| p.at(u)).collect();
                self.candidate(&values)
            }))
            .collect()
    }
}

fn hpa_at(percent: u32) -> ControllerSpec {
    ControllerSpec {
        kind: ControllerKind::Hpa,
        target_cpu_percent: Some(percent),
        ..ControllerSpec::default()
    }
}

/// An `autoscaling/v2` HorizontalPodAutoscaler per Deployment, with the
/// CPU target, replica bounds and `behavior` of an HPA policy, exactly as
/// the simulation ran it: what a user applies to run the tuned HPA on a
/// cluster.
pub fn hpa_manifest(spec: &ControllerSpec, deployments: &[String]) -> String {
    let config = selfheal_core::controllers::hpa_config(spec);
    let behavior = config.behavior.unwrap_or_default();
    let rules = |r: &ScalingRules| {
        let select = match r.select {
            SelectPolicy::Max => "Max",
            SelectPolicy::Min => "Min",
            SelectPolicy::Disabled => "Disabled",
        };
        let mut s = format!(
            "      stabilizationWindowSeconds: {}\n      selectPolicy: {select}\n      policies:\n",
            r.stabilization.whole_secs()
        );
        for p in &r.policies {
            let kind = match p.kind {
                PolicyKind::Pods => "Pods",
                PolicyKind::Percent => "Percent",
            };
            s.push_str(&format!(
                "        - type: {kind}\n          value: {}\n          periodSeconds: {}\n",
                p.value,
                p.period.whole_secs()
            ));
        }
        s
    };
    let behavior = format!(
        "  behavior:\n    scaleUp:\n{}    scaleDown:\n{}",
        rules(&behavior.scale_up),
        rules(&behavior.scale_down)
    );
    let mut out = String::new();
    for (i, d) in deployments.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {d}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {d}\n  minReplicas: {}\n  maxReplicas: {}\n  metrics:\n    - type: Resource\n      resource:\n        name: cpu\n        target:\n          type: Utilization\n          averageUtilization: {}\n{behavior}",
            config.min_replicas.max(1),
            config.max_replicas.max(config.min_replicas.max(1)),
            config.target_utilization,
        ));
    }
    out
}

/// How the search spends runs: `candidates` sampled points (plus the
/// defaults), `rungs` rounds, a third (1/`eta`) promoted each round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Halving {
    pub candidates: usize,
    pub eta: usize,
    pub rungs: usize,
    /// Seeds the sample and the order runs are spent in.
    pub seed: u64,
}

impl Default for Halving {
    fn default() -> Self {
        Halving {
            candidates: 26,
            eta: 3,
            rungs: 3,
            seed: 1,
        }
    }
}

impl Halving {
    /// Runs per candidate at each rung, out of `total`: `total / eta^k` for
    /// the k-th rung from the last, but never fewer than `floor` (one seed
    /// of every scenario, so no candidate is dropped on a scenario it
    /// happened to draw) nor than one.
    pub fn budgets(&self, total: usize, floor: usize) -> Vec<usize> {
        (0..self.rungs)
            .map(|r| {
                let shrink = (self.eta.max(1) as f64).powi((self.rungs - 1 - r) as i32);
                ((total as f64 / shrink).ceil() as usize)
                    .max(floor)
                    .clamp(1.min(total), total)
            })
            .collect()
    }
}

/// Indices of the points no other point dominates on (violation, cost),
/// both lower-better; equal points are all kept.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (v, c) = points[i];
            !points
                .iter()
                .any(|&(ov, oc)| ov <= v && oc <= c && (ov < v || oc < c))
        })
        .collect()
}

/// One rung of the search: how many runs each candidate had, and their
/// scores (in candidate order).
#[derive(Clone, Debug)]
pub struct Rung {
    pub runs: usize,
    pub candidates: Vec<usize>,
    pub scores: Vec<Scored>,
}

/// Successive halving over `candidates`: `evaluate(which, runs)` scores the
/// candidates `which` on the first `runs` of the ordered training runs.
/// Each rung promotes the best `1/eta` by objective and the two ends of
/// the rung's Pareto front (the least violation, the least cost), so the
/// last rung's front still spans the trade-off. Returns every rung, the
/// last on the whole budget.
pub fn successive_halving<F>(
    candidates: usize,
    eta: usize,
    budgets: &[usize],
    mut evaluate: F,
) -> Result<Vec<Rung>, SweepError>
where
    F: FnMut(&[usize], usize) -> Result<Vec<Scored>, SweepError>,
{
    if candidates == 0 || budgets.iter().all(|&b| b == 0) {
        return Err(SweepError::NoCandidates);
    }
    let mut budgets = budgets.to_vec();
    budgets.dedup();
    let mut alive: Vec<usize> = (0..candidates).collect();
    let mut rungs: Vec<Rung> = Vec::new();
    for (r, &runs) in budgets.iter().enumerate() {
        let scores = evaluate(&alive, runs)?;
        let rung = Rung {
            runs,
            candidates: alive.clone(),
            scores,
        };
        if r + 1 < budgets.len() {
            let mut order: Vec<usize> = (0..alive.len()).collect();
            order.sort_by(|&a, &b| {
                rung.scores[a]
                    .objective
                    .total_cmp(&rung.scores[b].objective)
                    .then(a.cmp(&b))
            });
            let keep = alive.len().div_ceil(eta.max(1)).max(1);
            let mut next: Vec<usize> = order[..keep].to_vec();
            next.extend(rung.front_ends());
            next.sort_unstable();
            next.dedup();
            alive = next.into_iter().map(|i| rung.candidates[i]).collect();
        }
        rungs.push(rung);
    }
    Ok(rungs)
}

impl Rung {
    /// Positions (in this rung) of the candidates on its Pareto front.
    pub fn front(&self) -> Vec<usize> {
        let points: Vec<(f64, f64)> = self
            .scores
            .iter()
            .map(|s| (s.violation_s, s.replica_seconds))
            .collect();
        pareto_front(&points)
    }

    /// Positions of the front's two ends: the least SLO violation (the
    /// cheaper on ties) and the least cost (the fewer violations on ties).
    pub fn front_ends(&self) -> Vec<usize> {
        let front = self.front();
        let by = |key: fn(&Scored) -> (f64, f64)| {
            front.iter().copied().min_by(|&a, &b| {
                let (ka, kb) = (key(&self.scores[a]), key(&self.scores[b]));
                ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
            })
        };
        let least_violation = by(|s| (s.violation_s, s.replica_seconds));
        let least_cost = by(|s| (s.replica_seconds, s.violation_s));
        least_violation.into_iter().chain(least_cost).collect()
    }

    /// Position of the lowest objective (the first on ties).
    pub fn best(&self) -> usize {
        (0..self.scores.len())
            .min_by(|&a, &b| {
                self.scores[a]
                    .objective
                    .total_cmp(&self.scores[b].objective)
            })
            .expect("a rung scores at least one candidate")
    }
}

/// The plan's distinct (scenario, parameters, seed) runs: those of its
/// first controller.
fn distinct_runs(plan: &Plan) -> Vec<&RunSpec> {
    let first = plan.runs.first().map(|r| r.controller.as_str());
    plan.runs
        .iter()
        .filter(|r| Some(r.controller.as_str()) == first)
        .collect()
}

/// Runs under one controller, numbered from `first_index`.
fn under<'a>(
    runs: impl IntoIterator<Item = &'a RunSpec>,
    first_index: usize,
    label: &str,
    spec: &ControllerSpec,
) -> Vec<RunSpec> {
    runs.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut l = r.loaded.clone();
            l.spec.use_controller(spec.clone());
            RunSpec {
                index: first_index + i,
                // The digest of the scenario as it runs, controller
                // included: a resumed tuning never answers a candidate from
                // another's journal line.
                id: RunSpec::id_for(&r.scenario, &r.params, label, &l),
                scenario: r.scenario.clone(),
                params: r.params.clone(),
                controller: label.to_string(),
                seed: r.seed,
                keep_series: r.keep_series,
                loaded: l,
            }
        })
        .collect()
}

/// The plan's distinct (scenario, parameters, seed) runs under one
/// controller, renumbered.
pub fn with_controller(plan: &Plan, label: &str, spec: &ControllerSpec) -> Plan {
    Plan {
        name: plan.name.clone(),
        description: plan.description.clone(),
        runs: under(distinct_runs(plan), 0, label, spec),
    }
}

/// The distinct (scenario, suite parameters) of some runs, in plan order.
fn scenario_settings<'a>(runs: &[&'a RunSpec]) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in runs {
        if !out.contains(&(r.scenario.as_str(), r.params.as_str())) {
            out.push((&r.scenario, &r.params));
        }
    }
    out
}

/// How many scenarios (with their suite parameters) a plan runs.
fn settings(plan: &Plan) -> usize {
    scenario_settings(&distinct_runs(plan)).len()
}

/// The order a search spends the training runs in: every scenario (and
/// suite parameter) once on the first seed, in an order drawn from `rng`,
/// then again on the next seed, so that any first share of the runs covers
/// the scenarios evenly.
fn spending_order<'a>(plan: &'a Plan, rng: &mut Stream) -> Vec<&'a RunSpec> {
    let runs = distinct_runs(plan);
    let mut settings = scenario_settings(&runs);
    let mut seeds: Vec<u64> = Vec::new();
    for r in &runs {
        if !seeds.contains(&r.seed) {
            seeds.push(r.seed);
        }
    }
    for i in (1..settings.len()).rev() {
        settings.swap(i, rng.index(i + 1));
    }
    let rank = |r: &RunSpec| {
        let s = settings
            .iter()
            .position(|&x| x == (r.scenario.as_str(), r.params.as_str()));
        let k = seeds.iter().position(|&x| x == r.seed);
        (k, s)
    };
    let mut ordered = runs;
    ordered.sort_by_key(|r| rank(r));
    ordered
}

/// Mean SLO-violation seconds plus `cost_weight` x replica-seconds.
pub fn objective(records: &[RunRecord], cost_weight: f64) -> f64 {
    let n = records.len().max(1) as f64;
    records
        .iter()
        .map(|r| r.slo_violation_s + cost_weight * r.replica_seconds)
        .sum::<f64>()
        / n
}

/// Runs a suite's distinct runs under one controller as a resumable sweep
/// in `dir`.
pub fn run_under(
    plan: &Plan,
    label: &str,
    spec: &ControllerSpec,
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<RunRecord>, SweepError> {
    super::run::execute(&with_controller(plan, label, spec), dir, None, progress)
}

/// Mean SLO-violation seconds and replica-seconds of some runs.
fn mean_violation_and_cost(records: &[RunRecord]) -> (f64, f64) {
    let n = records.len().max(1) as f64;
    let (v, c) = records.iter().fold((0.0, 0.0), |a, r| {
        (a.0 + r.slo_violation_s, a.1 + r.replica_seconds)
    });
    (v / n, c / n)
}

/// The suites a tuning runs on, with the paths the report names.
pub struct Suites {
    pub train: Plan,
    pub train_path: String,
    pub holdout: Plan,
    pub holdout_path: String,
}

impl Suites {
    /// Every service the training suite's scenarios run, by name: the
    /// Deployments a tuned policy applies to.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .train
            .runs
            .iter()
            .flat_map(|r| r.loaded.spec.services.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// One controller's figures on a suite.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub label: String,
    pub objective: f64,
    pub violation_s: f64,
    pub replica_seconds: f64,
}

impl Scored {
    fn of(label: &str, records: &[RunRecord], weight: f64) -> Self {
        let (violation_s, replica_seconds) = mean_violation_and_cost(records);
        Scored {
            label: label.to_string(),
            objective: objective(records, weight),
            violation_s,
            replica_seconds,
        }
    }
}

/// What a tuning chose and measured.
pub struct Tuned {
    /// `best-controller.toml`: the chosen settings, ready to paste.
    pub best_toml: String,
    /// `tune.md`: held-out, Pareto front and search tables.
    pub report_md: String,
    /// Every rung of the search, the last on the whole training suite.
    pub rungs: Vec<Rung>,
    /// The candidates the rungs number.
    pub candidates: Vec<Candidate>,
    /// The tuned settings, the defaults, then the holdout suite's own
    /// controllers.
    pub held_out: Vec<Scored>,
    /// The chosen settings.
    pub best: ControllerSpec,
}

/// Searches `search_space` on the training suite by successive halving
/// (cost weight `weight`), then runs the best, the defaults and the holdout
/// suite's own controllers on the holdout suite. The training runs are one
/// resumable sweep under `out/train`, each held-out controller's one under
/// `out/holdout`; `say` gets a line per rung and controller started.
pub fn tune(
    search_space: &Search,
    halving: &Halving,
    suites: &Suites,
    weight: f64,
    out: &Path,
    say: &dyn Fn(&str),
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Tuned, SweepError> {
    let mut rng = Stream::new(halving.seed, Subsystem::Tuning);
    let candidates = search_space.sample(halving.candidates, &mut rng);
    let order = spending_order(&suites.train, &mut rng);
    let train_dir = out.join("train");
    let evaluate = |which: &[usize], runs: usize| -> Result<Vec<Scored>, SweepError> {
        say(&format!(
            "rung: {} candidates x {runs} of {} training runs",
            which.len(),
            order.len()
        ));
        let mut plan = Plan {
            name: suites.train.name.clone(),
            description: suites.train.description.clone(),
            runs: Vec::new(),
        };
        for &c in which {
            let first = plan.runs.len();
            let label = format!("candidate-{c}");
            let more = under(
                order[..runs].iter().copied(),
                first,
                &label,
                &candidates[c].spec,
            );
            plan.runs.extend(more);
        }
        let records = super::run::execute(&plan, &train_dir, None, progress)?;
        Ok(which
            .iter()
            .map(|&c| {
                let label = format!("candidate-{c}");
                let mine: Vec<RunRecord> = records
                    .iter()
                    .filter(|r| r.controller == label)
                    .cloned()
                    .collect();
                Scored::of(&candidates[c].label, &mine, weight)
            })
            .collect())
    };
    let budgets = halving.budgets(order.len(), settings(&suites.train));
    let rungs = successive_halving(candidates.len(), halving.eta, &budgets, evaluate)?;
    let last = rungs.last().ok_or(SweepError::NoCandidates)?;
    let best = last.candidates[last.best()];
    say(&format!("best on training: {}", candidates[best].label));

    // Held out: the best, the defaults, and the holdout suite's own controllers.
    let mut contenders: Vec<(String, ControllerSpec)> = vec![
        ("tuned".into(), candidates[best].spec.clone()),
        search_space.default.clone(),
    ];
    let mut own: Vec<&str> = Vec::new();
    for r in &suites.holdout.runs {
        if !own.contains(&r.controller.as_str()) {
            own.push(&r.controller);
        }
    }
    for c in own {
        contenders.push((c.to_string(), ControllerSpec::parse_short(c)?));
    }
    let mut held_out = Vec::new();
    for (label, spec) in &contenders {
        say(&format!("held out: {label}"));
        let dir = out.join("holdout").join(label.replace(':', "-"));
        let records = run_under(&suites.holdout, label, spec, &dir, progress)?;
        held_out.push(Scored::of(label, &records, weight));
    }
    let config = controller_toml(&candidates[best].spec);
    let best_toml = format!(
        "# Chosen by `selfheal tune` on {} (cost weight {weight}); paste into a scenario file.\n{config}",
        suites.train_path
    );
    let report_md = report(
        search_space,
        halving,
        suites,
        weight,
        &rungs,
        &candidates,
        best,
        &held_out,
    );
    Ok(Tuned {
        best_toml,
        report_md,
        best: candidates[best].spec.clone(),
        rungs,
        candidates,
        held_out,
    })
}

/// `tune.md`: the held-out table, the chosen settings, the last rung's
/// Pareto front, and every rung.
#[allow(clippy::too_many_arguments)]
fn report(
    search_space: &Search,
    halving: &Halving,
    suites: &Suites,
    weight: f64,
    rungs: &[Rung],
    candidates: &[Candidate],
    best: usize,
    held_out: &[Scored],
) -> String {
    let runs = |p: &Plan| distinct_runs(p).len();
    let row = |s: &Scored, note: &str| {
        format!(
            "| {}{note} | {:.1} | {:.1} | {:.0} |\n",
            s.label, s.objective, s.violation_s, s.replica_seconds
        )
    };
    let header =
        "| candidate | objective | SLO violation s | replica-seconds |\n|---|---|---|---|\n";
    let mut md = format!(
        "# Tuning {}\n\nObjective: mean over runs of SLO-violation seconds + {weight} x replica-seconds (lower is better). Training suite `{}` ({} runs), held-out suite `{}` ({} runs per controller), same seeds for every contender.\n\n## Held out\n\n| controller | objective | SLO violation s | replica-seconds |\n|---|---|---|---|\n",
        search_space.title,
        suites.train_path,
        runs(&suites.train),
        suites.holdout_path,
        runs(&suites.holdout),
    );
    for s in held_out {
        md.push_str(&row(s, ""));
    }
    let (tuned, default) = (held_out[0].objective, held_out[1].objective);
    let config = controller_toml(&candidates[best].spec);
    md.push_str(&format!(
        "\nThe tuned settings {} the defaults on the held-out suite: objective {tuned:.1} against {default:.1} ({:+.1} %).\n\nChosen: `{}`\n\n```toml\n{config}```\n",
        if tuned < default { "beat" } else { "do not beat" },
        100.0 * (tuned - default) / default.abs().max(1e-9),
        candidates[best].label
    ));
    let last = rungs.last().expect("a search has a rung");
    md.push_str(&format!(
        "\n## Pareto front on the whole training suite\n\nThe candidates no other candidate of the last rung beats on both SLO violation and cost; the chosen one is the front's point at cost weight {weight}.\n\n{header}"
    ));
    let mut front = last.front();
    front.sort_by(|&a, &b| {
        last.scores[a]
            .replica_seconds
            .total_cmp(&last.scores[b].replica_seconds)
    });
    for i in front {
        let chosen = last.candidates[i] == best;
        md.push_str(&row(&last.scores[i], if chosen { " (chosen)" } else { "" }));
    }
    md.push_str(&format!(
        "\n## Search\n\nSuccessive halving: {} Latin-hypercube points of the space below and the defaults (seed {}), each rung promoting the best 1/{} by objective and the two ends of its Pareto front; every candidate of a rung runs the same runs.\n\n| setting | from | to | scale |\n|---|---|---|---|\n",
        halving.candidates, halving.seed, halving.eta
    ));
    for p in &search_space.params {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            p.name,
            p.show(p.lo),
            p.show(p.hi),
            if p.log { "log" } else { "linear" }
        ));
    }
    for (r, rung) in rungs.iter().enumerate() {
        md.push_str(&format!(
            "\n### Rung {} ({} candidates x {} runs)\n\n{header}",
            r + 1,
            rung.candidates.len(),
            rung.runs
        ));
        let mut order: Vec<usize> = (0..rung.scores.len()).collect();
        order.sort_by(|&a, &b| {
            rung.scores[a]
                .objective
                .total_cmp(&rung.scores[b].objective)
        });
        for i in order {
            md.push_str(&row(&rung.scores[i], ""));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two settings under one label are two runs: the journal of an earlier
    /// tuning (or approval) in the same directory cannot answer for them.
    #[test]
    fn runs_under_another_controller_have_other_ids() {
        let scenario = crate::scenario::load_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/quickstart.toml"
        )))
        .unwrap();
        let plan = Plan {
            name: "p".into(),
            description: String::new(),
            runs: vec![RunSpec {
                index: 0,
                id: "quickstart".into(),
                scenario: "quickstart".into(),
                params: String::new(),
                controller: "static".into(),
                seed: 1,
                keep_series: false,
                loaded: scenario,
            }],
        };
        let a = with_controller(&plan, "tuned", &hpa_at(30));
        let b = with_controller(&plan, "tuned", &hpa_at(40));
        assert_ne!(a.runs[0].id, b.runs[0].id);
        assert_eq!(
            a.runs[0].id,
            with_controller(&plan, "tuned", &hpa_at(30)).runs[0].id
        );
    }

    #[test]
    fn the_hpa_manifest_names_each_deployment_with_the_tuned_target() {
        let spec = ControllerSpec {
            min_replicas: 2,
            max_replicas: 30,
            ..hpa_at(55)
        };
        let m = hpa_manifest(&spec, &["api".into(), "db".into()]);
        let docs: Vec<&str> = m.split("---\n").collect();
        assert_eq!(docs.len(), 2);
        for (doc, name) in docs.iter().zip(["api", "db"]) {
            assert!(doc.contains(&format!("  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {name}\n")), "{doc}");
            assert!(doc.contains("averageUtilization: 55\n"), "{doc}");
            assert!(doc.contains("minReplicas: 2\n  maxReplicas: 30\n"), "{doc}");
        }
        // The behavior the simulation ran, autoscaling/v2's defaults here.
        assert!(m.contains("    scaleUp:\n      stabilizationWindowSeconds: 0\n      selectPolicy: Max\n      policies:\n        - type: Pods\n          value: 4\n          periodSeconds: 15\n        - type: Percent\n          value: 100\n          periodSeconds: 15\n"), "{m}");
        assert!(
            m.contains("    scaleDown:\n      stabilizationWindowSeconds: 300\n"),
            "{m}"
        );
        let tuned = ControllerSpec {
            scale_down_stabilization_s: Some(45),
            scale_down_percent: Some(20),
            ..spec
        };
        let m = hpa_manifest(&tuned, &["api".into()]);
        assert!(m.contains("    scaleDown:\n      stabilizationWindowSeconds: 45\n      selectPolicy: Max\n      policies:\n        - type: Percent\n          value: 20\n"), "{m}");
    }

    #[test]
    fn a_latin_hypercube_uses_every_stratum_of_every_setting_once() {
        for search in [Search::selfheal(), Search::hpa()] {
            let n = 12;
            let sample = search.sample(n, &mut Stream::new(3, Subsystem::Tuning));
            assert_eq!(sample.len(), n + 1);
            assert_eq!(sample[0].spec, search.default.1, "the defaults come first");
            let again = search.sample(n, &mut Stream::new(3, Subsystem::Tuning));
            assert!(sample.iter().zip(&again).all(|(a, b)| a.spec == b.spec));
            // Re-derive each point's quantiles from its label: per setting,
            // no two points share a stratum (a flag's two values aside).
            for (d, p) in search.params.iter().enumerate() {
                if p.step == 1.0 && p.hi == 1.0 {
                    continue;
                }
                let mut strata: Vec<usize> = sample[1..]
                    .iter()
                    .map(|c| {
                        let v: f64 = c
                            .label
                            .split(' ')
                            .nth(d)
                            .unwrap()
                            .split('=')
                            .nth(1)
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!((p.lo..=p.hi).contains(&v), "{}: {v}", p.name);
                        let u = if p.log {
                            (v / p.lo).ln() / (p.hi / p.lo).ln()
                        } else {
                            (v - p.lo) / (p.hi - p.lo)
                        };
                        ((u * n as f64) as usize).min(n - 1)
                    })
                    .collect();
                strata.sort_unstable();
                strata.dedup();
                // Rounding to the step may move a value across a stratum's
                // edge; most strata stay distinct.
                assert!(strata.len() >= n - 3, "{}: {strata:?}", p.name);
            }
        }
    }

    #[test]
    fn a_candidate_is_what_its_label_says() {
        let search = Search::hpa();
        let c = search.candidate(&[55.0, 15.0, 600.0, 200.0, 10.0]);
        assert_eq!(
            c.label,
            "target_cpu_percent=55 scale_up_stabilization_s=15 scale_down_stabilization_s=600 scale_up_percent=200 scale_down_percent=10"
        );
        assert_eq!(c.spec.target_cpu_percent, Some(55));
        assert_eq!(c.spec.scale_down_stabilization_s, Some(600));
        let s = Search::selfheal().candidate(&[0.62, 1.0, 30.0, 450.0, 0.8]);
        assert_eq!(
            s.label,
            "cpu_target=0.62 plan_on_upper=true scale_up_cooldown_s=30 scale_down_cooldown_s=450 interval_level=0.80"
        );
        assert_eq!(s.spec.cpu_target, Some(0.62));
        let p = Param::linear("x", 0.4, 0.85, 0.01);
        assert_eq!(p.at(0.5), 0.63);
        assert_eq!(p.at(0.0), 0.4);
        assert_eq!(p.at(0.999_999), 0.85);
    }

    #[test]
    fn the_pareto_front_keeps_exactly_the_undominated() {
        let points = [
            (5.0, 1.0),
            (1.0, 5.0),
            (3.0, 3.0),
            (4.0, 4.0),
            (3.0, 3.0),
            (6.0, 1.0),
        ];
        assert_eq!(pareto_front(&points), [0, 1, 2, 4]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
    }

    #[test]
    fn budgets_grow_by_eta_up_to_the_whole_suite() {
        let h = Halving::default();
        assert_eq!(h.budgets(14, 1), [2, 5, 14]);
        assert_eq!(h.budgets(90, 1), [10, 30, 90]);
        assert_eq!(h.budgets(1, 1), [1, 1, 1]);
        // Never less than one seed of each of 7 scenarios.
        assert_eq!(h.budgets(14, 7), [7, 7, 14]);
    }

    /// On a known objective with noise that shrinks with the runs spent,
    /// halving finds the optimum's neighbourhood, spends far less than
    /// scoring every candidate on everything, and pairs its runs.
    #[test]
    fn successive_halving_finds_the_optimum_on_nested_paired_runs() {
        let n = 27;
        let truth = |c: usize| ((c as f64) - 17.0).powi(2);
        let mut spent = 0;
        let mut seen_runs: Vec<usize> = Vec::new();
        let mut evaluate = |which: &[usize], runs: usize| -> Result<Vec<Scored>, SweepError> {
            spent += which.len() * runs;
            seen_runs.push(runs);
            Ok(which
                .iter()
                .map(|&c| {
                    let noise = 30.0 * (((c * 7919 + runs * 104_729) % 97) as f64 / 97.0 - 0.5)
                        / runs as f64;
                    Scored {
                        label: c.to_string(),
                        objective: truth(c) + noise,
                        violation_s: truth(c) + noise,
                        replica_seconds: 1.0,
                    }
                })
                .collect())
        };
        let h = Halving {
            candidates: n,
            ..Halving::default()
        };
        let rungs = successive_halving(n, h.eta, &h.budgets(90, 1), &mut evaluate).unwrap();
        assert_eq!(seen_runs, [10, 30, 90]);
        assert_eq!(rungs.len(), 3);
        assert_eq!(rungs[0].candidates.len(), n);
        assert!(rungs[1].candidates.len() >= 9 && rungs[1].candidates.len() < n);
        let last = rungs.last().unwrap();
        assert_eq!(last.candidates[last.best()], 17);
        assert!(spent < n * 90 / 2, "spent {spent} runs");
        // Every survivor was scored on every earlier rung.
        for w in rungs.windows(2) {
            assert!(w[1].candidates.iter().all(|c| w[0].candidates.contains(c)));
        }
    }

    #[test]
    fn the_pareto_fronts_ends_are_promoted_beside_the_best_third() {
        // Candidate 5 has the worst objective but the lowest cost: it stays.
        let mut evaluate = |which: &[usize], _runs: usize| -> Result<Vec<Scored>, SweepError> {
            Ok(which
                .iter()
                .map(|&c| Scored {
                    label: c.to_string(),
                    objective: c as f64,
                    violation_s: c as f64,
                    replica_seconds: if c == 5 { 0.0 } else { 10.0 },
                })
                .collect())
        };
        let rungs = successive_halving(6, 3, &[3, 9], &mut evaluate).unwrap();
        assert_eq!(rungs[1].candidates, [0, 1, 5]);
    }

    #[test]
    fn the_written_config_is_accepted_by_scenario_files() {
        let best = &Search::selfheal().sample(6, &mut Stream::new(1, Subsystem::Tuning))[5];
        let text = format!(
            "name = \"t\"\nduration_s = 60\nseed = 1\n[slo]\nlatency_ms = 100\n[[load]]\nservice = \"a\"\ncurve = {{ kind = \"constant\", rate = 1 }}\n[[service]]\nname = \"a\"\nrevision = {{ service_time_ms = 1 }}\n{}",
            controller_toml(&best.spec)
        );
        let sc = crate::scenario::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
        assert_eq!(sc.spec.controller, best.spec);
    }
}
