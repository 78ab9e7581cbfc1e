//! The strategy selector's training side: recorded outcomes, the linfa
//! forest and its export, and the rules-against-learned evaluation.
//!
//! Outcomes are recorded by running every chaos experiment once under the
//! rules and once per strategy taken first (`+heal@<strategy>`) on the same
//! seeds. Up to the first healing decision those runs are identical (common
//! random numbers), so each (experiment, seed) gives one situation and the
//! measured outcome of every strategy from it: a row whose label is the
//! strategy that recovered best (recovered at all, then fewest failed
//! requests, then soonest). The rules' own choice keeps the label unless
//! another strategy beats it by more than the measurement resolves.

use std::path::Path;

use linfa::prelude::*;
use linfa_ensemble::RandomForestParams;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray16::{Array1, Array2};
use rand08::SeedableRng;
use rayon::prelude::*;

use crate::control::orchestrator::{HealingEvent, Strategy};
use crate::control::selector::{FEATURES, Node, Situation, StrategyForest, Tree};
use crate::sweep::plan::RunSpec;
use crate::sweep::run::RunRecord;

/// One chaos experiment (a suite run) under one arm.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The scenario name and its suite parameters.
    pub scenario: String,
    pub params: String,
    pub fault: String,
    pub seed: u64,
    /// `None`: the rules chose.
    pub forced: Option<Strategy>,
    /// The first healing decision: the strategy first chosen and what it
    /// was chosen from.
    pub first: Option<(Strategy, Situation)>,
    pub record: RunRecord,
}

/// Why a selector could not be learned or saved.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(
        "{id}: the controller `{controller}` has no healing orchestrator (use a `+heal` controller)"
    )]
    NoHealing { id: String, controller: String },
    #[error("{0}: not a chaos experiment with a fault")]
    NoFault(String),
    #[error("{id}: {source}")]
    Run {
        id: String,
        source: crate::sim::BuildError,
    },
    #[error(
        "--train-seeds {train_seeds} leaves {held_out} of {runs} runs held out; it must leave some on each side"
    )]
    Split {
        train_seeds: u64,
        held_out: usize,
        runs: usize,
    },
    #[error("no recorded outcomes to learn from")]
    NoOutcomes,
    #[error("the forest: {0}")]
    Fit(#[from] linfa::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs each of a suite's runs (chaos experiments under a `+heal`
/// controller) under the rules and once per strategy taken first, in
/// parallel; the order is fixed (run, then rules and `Strategy::ALL`)
/// whatever the threads.
pub fn run_trials(
    runs: &[RunSpec],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Trial>, LearnError> {
    let arms: Vec<Option<Strategy>> = std::iter::once(None)
        .chain(Strategy::ALL.map(Some))
        .collect();
    let jobs: Vec<(&RunSpec, Option<Strategy>)> = runs
        .iter()
        .flat_map(|r| arms.iter().map(move |&a| (r, a)))
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = jobs.len();
    jobs.par_iter()
        .enumerate()
        .map(|(index, &(run, forced))| {
            let spec = &run.loaded.spec;
            if !spec.controller.healing {
                return Err(LearnError::NoHealing {
                    id: run.id.clone(),
                    controller: run.controller.clone(),
                });
            }
            let fault = spec
                .experiment
                .as_ref()
                .and_then(|e| spec.faults.get(e.fault))
                .map(|f| f.kind.as_str().to_string())
                .ok_or_else(|| LearnError::NoFault(run.id.clone()))?;
            let mut loaded = run.loaded.clone();
            loaded.spec.controller.healing_first = forced;
            loaded.spec.controller.healing_selector = None;
            let out = crate::sim::run(&loaded).map_err(|source| LearnError::Run {
                id: run.id.clone(),
                source,
            })?;
            let first = out.healing.iter().find_map(|(_, e)| match e {
                HealingEvent::Started(a) | HealingEvent::DryRun(a) => {
                    Some((a.first_choice, a.situation.clone()))
                }
                _ => None,
            });
            let controller = loaded.spec.controller.label();
            let arm = RunSpec {
                index,
                id: RunSpec::id_for(&run.scenario, &run.params, &controller, &loaded),
                scenario: run.scenario.clone(),
                params: run.params.clone(),
                controller,
                seed: run.seed,
                keep_series: false,
                loaded,
            };
            let record = RunRecord::of(&arm, &out);
            progress(
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                total,
            );
            Ok(Trial {
                scenario: run.scenario.clone(),
                params: run.params.clone(),
                fault,
                seed: run.seed,
                forced,
                first,
                record,
            })
        })
        .collect()
}

/// A strategy beats the rules' choice when it recovers where that does
/// not, or fails this fraction fewer requests from the fault's start (and
/// at least `FAILED_MARGIN_ABS` fewer) ...
pub const FAILED_MARGIN: f64 = 0.2;
pub const FAILED_MARGIN_ABS: u64 = 10;
/// ... or, at a failed count within the margin, recovers this much sooner
/// (one probe interval of the chaos experiments).
pub const MTTR_MARGIN_S: f64 = 5.0;

/// One (experiment, seed): the situation of its first healing decision and
/// every strategy's measured outcome from there.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub params: String,
    pub fault: String,
    pub seed: u64,
    pub situation: Situation,
    pub rules: Strategy,
    /// The label.
    pub best: Strategy,
    /// The run with each strategy first, in `Strategy::ALL` order.
    pub by_strategy: Vec<RunRecord>,
}

impl Row {
    pub fn outcome(&self, s: Strategy) -> &RunRecord {
        let i = Strategy::ALL
            .iter()
            .position(|&x| x == s)
            .expect("a strategy");
        &self.by_strategy[i]
    }
}

/// Whether `a` is a better outcome than `b`, beyond the margins.
fn beats(a: &RunRecord, b: &RunRecord) -> bool {
    let rec = |r: &RunRecord| r.outcome == "recovered";
    let fewer = |x: &RunRecord, y: &RunRecord| {
        (x.fault_failed as f64) < (1.0 - FAILED_MARGIN) * y.fault_failed as f64
            && x.fault_failed + FAILED_MARGIN_ABS <= y.fault_failed
    };
    match (rec(a), rec(b)) {
        (true, false) => true,
        (false, true) => false,
        _ if fewer(a, b) => true,
        _ if fewer(b, a) => false,
        _ => a.mttr_s < b.mttr_s - MTTR_MARGIN_S,
    }
}

/// The rows of the trials: one per (scenario, seed) where the rules took
/// a healing action; its label is the best strategy that beats the rules'
/// choice, or the rules' choice.
pub fn rows(trials: &[Trial]) -> Vec<Row> {
    let mut out = Vec::new();
    for group in
        trials.chunk_by(|a, b| a.scenario == b.scenario && a.params == b.params && a.seed == b.seed)
    {
        let Some(rules_trial) = group.iter().find(|t| t.forced.is_none()) else {
            continue;
        };
        let Some((rules, situation)) = rules_trial.first.clone() else {
            continue;
        };
        let by_strategy: Option<Vec<&Trial>> = Strategy::ALL
            .iter()
            .map(|&s| group.iter().find(|t| t.forced == Some(s)))
            .collect();
        let Some(by_strategy) = by_strategy else {
            continue;
        };
        let rules_run = &by_strategy[Strategy::ALL.iter().position(|&s| s == rules).unwrap()];
        let mut best = (rules, *rules_run);
        for (&s, t) in Strategy::ALL.iter().zip(&by_strategy) {
            if beats(&t.record, &rules_run.record)
                && (best.0 == rules || beats(&t.record, &best.1.record))
            {
                best = (s, t);
            }
        }
        out.push(Row {
            scenario: rules_trial.scenario.clone(),
            params: rules_trial.params.clone(),
            fault: rules_trial.fault.clone(),
            seed: rules_trial.seed,
            situation,
            rules,
            best: best.0,
            by_strategy: by_strategy.iter().map(|t| t.record.clone()).collect(),
        });
    }
    out
}

/// The forest's settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForestConfig {
    pub trees: usize,
    pub max_depth: usize,
    pub min_weight_leaf: f32,
    pub feature_proportion: f64,
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        ForestConfig {
            trees: 50,
            max_depth: 6,
            min_weight_leaf: 2.0,
            feature_proportion: 0.6,
            seed: 1,
        }
    }
}

fn class_of(s: Strategy) -> usize {
    Strategy::ALL
        .iter()
        .position(|&x| x == s)
        .expect("a strategy")
}

/// Fits linfa's random forest on the rows and exports it.
pub fn fit(rows: &[Row], cfg: &ForestConfig) -> Result<StrategyForest, LearnError> {
    if rows.is_empty() {
        return Err(LearnError::NoOutcomes);
    }
    let x: Vec<[f64; FEATURES.len()]> = rows.iter().map(|r| r.situation.features()).collect();
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let records = Array2::from_shape_vec((rows.len(), FEATURES.len()), flat)
        .expect("a row of features per row");
    let labels = Array1::from(rows.iter().map(|r| class_of(r.best)).collect::<Vec<_>>());
    let data = linfa::Dataset::new(records, labels);
    let rng = rand08::rngs::SmallRng::seed_from_u64(cfg.seed);
    let forest = RandomForestParams::new_fixed_rng(
        DecisionTree::params()
            .max_depth(Some(cfg.max_depth))
            .min_weight_leaf(cfg.min_weight_leaf),
        rng,
    )
    .ensemble_size(cfg.trees)
    .bootstrap_proportion(1.0)
    .feature_proportion(cfg.feature_proportion)
    .fit(&data)?;
    let labels: Vec<usize> = rows.iter().map(|r| class_of(r.best)).collect();
    let trees = forest
        .models
        .iter()
        .zip(&forest.model_features)
        .map(|(tree, cols)| export(tree.root_node(), cols, &x, &labels))
        .collect();
    Ok(StrategyForest {
        features: FEATURES.iter().map(|s| s.to_string()).collect(),
        classes: Strategy::ALL.to_vec(),
        trees,
        rows: rows.len(),
    })
}

/// One linfa tree as nodes over the full feature vector; each leaf's
/// distribution is that of the training rows reaching it (linfa's own leaf
/// label breaks ties in hash-map order).
fn export(
    root: &TreeNode<f64, usize>,
    cols: &[usize],
    x: &[[f64; FEATURES.len()]],
    labels: &[usize],
) -> Tree {
    fn walk(
        node: &TreeNode<f64, usize>,
        cols: &[usize],
        rows: Vec<usize>,
        x: &[[f64; FEATURES.len()]],
        labels: &[usize],
        nodes: &mut Vec<Node>,
    ) -> usize {
        let me = nodes.len();
        if node.is_leaf() {
            let mut counts = vec![0.0; Strategy::ALL.len()];
            for &r in &rows {
                counts[labels[r]] += 1.0;
            }
            let n = rows.len().max(1) as f64;
            counts.iter_mut().for_each(|c| *c /= n);
            nodes.push(Node::Leaf {
                distribution: counts,
            });
            return me;
        }
        let (sub, threshold, _) = node.split();
        let feature = cols[sub];
        nodes.push(Node::Leaf {
            distribution: vec![],
        });
        let (l, r): (Vec<usize>, Vec<usize>) =
            rows.into_iter().partition(|&i| x[i][feature] < threshold);
        let children = node.children();
        let (Some(lc), Some(rc)) = (children[0].as_deref(), children[1].as_deref()) else {
            unreachable!("linfa's internal nodes have two children")
        };
        let left = walk(lc, cols, l, x, labels, nodes);
        let right = walk(rc, cols, r, x, labels, nodes);
        nodes[me] = Node::Split {
            feature,
            threshold,
            left,
            right,
        };
        me
    }
    let mut nodes = Vec::new();
    walk(root, cols, (0..x.len()).collect(), x, labels, &mut nodes);
    Tree { nodes }
}

pub fn save(path: &Path, f: &StrategyForest) -> Result<(), LearnError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LearnError::Io { path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let text = serde_json::to_string(f).expect("a forest serialises");
    std::fs::write(path, text).map_err(io(path))
}

/// Held-out figures of one fault type (or all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub fault: String,
    pub rows: usize,
    /// Rows where the rules' (learned) choice is the label.
    pub rules_right: usize,
    pub learned_right: usize,
    /// Rows where the learned choice differs from the rules'.
    pub overrides: usize,
    /// Mean MTTR and failed requests when the first strategy is the rules',
    /// the learned selector's, or the label's (the best measured).
    pub mttr: [f64; 3],
    pub failed: [f64; 3],
    pub unrecovered: [usize; 3],
}

/// Scores the rules and the selector (as the orchestrator would use it,
/// with `cfg`) on held-out rows: each choice is looked up among the
/// strategies actually run from that situation.
pub fn evaluate(
    forest: &StrategyForest,
    cfg: &crate::control::selector::SelectorConfig,
    rows: &[Row],
) -> Vec<Evaluation> {
    let learned = |r: &Row| -> Strategy {
        forest
            .choose(&r.situation)
            .filter(|c| forest.rows >= cfg.min_rows && c.vote >= cfg.min_vote)
            .map_or(r.rules, |c| c.strategy)
    };
    let mut faults: Vec<String> = rows.iter().map(|r| r.fault.clone()).collect();
    faults.sort();
    faults.dedup();
    faults.push("all".into());
    faults
        .into_iter()
        .map(|fault| {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| fault == "all" || r.fault == fault)
                .collect();
            let mut e = Evaluation {
                fault,
                rows: sel.len(),
                ..Evaluation::default()
            };
            for r in &sel {
                let l = learned(r);
                e.rules_right += (r.rules == r.best) as usize;
                e.learned_right += (l == r.best) as usize;
                e.overrides += (l != r.rules) as usize;
                for (k, s) in [r.rules, l, r.best].into_iter().enumerate() {
                    let o = r.outcome(s);
                    e.mttr[k] += o.mttr_s;
                    e.failed[k] += o.fault_failed as f64;
                    e.unrecovered[k] += (o.outcome != "recovered") as usize;
                }
            }
            let n = sel.len().max(1) as f64;
            e.mttr.iter_mut().for_each(|v| *v /= n);
            e.failed.iter_mut().for_each(|v| *v /= n);
            e
        })
        .collect()
}

/// The evaluation as a Markdown table.
pub fn evaluation_md(evals: &[Evaluation]) -> String {
    let mut s = String::from(
        "| fault | rows | rules right | learned right | overrides | MTTR s rules / learned / best | failed rules / learned / best | unrecovered rules / learned / best |\n|---|---|---|---|---|---|---|---|\n",
    );
    for e in evals {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {} / {} / {} |\n",
            e.fault,
            e.rows,
            e.rules_right,
            e.learned_right,
            e.overrides,
            e.mttr[0],
            e.mttr[1],
            e.mttr[2],
            e.failed[0],
            e.failed[1],
            e.failed[2],
            e.unrecovered[0],
            e.unrecovered[1],
            e.unrecovered[2],
        ));
    }
    s
}

/// Every trial as CSV: the recorded outcomes.
pub fn trials_csv(trials: &[Trial]) -> String {
    let mut s = String::from(
        "scenario,params,fault,seed,first_strategy,chosen_first,outcome,mttr_s,fault_failed,healing_actions\n",
    );
    for t in trials {
        s.push_str(&format!(
            "{},\"{}\",{},{},{},{},{},{},{},{}\n",
            t.scenario,
            t.params,
            t.fault,
            t.seed,
            t.forced.map_or("rules", |s| s.as_str()),
            t.first.as_ref().map_or("none", |(s, _)| s.as_str()),
            t.record.outcome,
            t.record.mttr_s,
            t.record.fault_failed,
            t.record.healing_actions
        ));
    }
    s
}

/// What `selfheal learn-selector` made: the forest, the held-out scores,
/// and what it writes beside them.
pub struct Learned {
    pub forest: StrategyForest,
    pub held_out: Vec<Evaluation>,
    /// `training.json`: how the forest was made.
    pub meta: serde_json::Value,
    /// `selector.md`: rules against learned, held out and in-sample.
    pub report_md: String,
    /// `trials.csv`: every arm's run.
    pub trials_csv: String,
}

/// Runs every arm of `plan`, fits the forest on the seeds up to
/// `train_seeds` and scores it on the later ones. `command` is how the
/// user asked for it (recorded in the outputs); `elapsed_s` is the
/// caller's clock (seconds since it started), for the report.
pub fn learn(
    plan: &crate::sweep::plan::Plan,
    command: &str,
    train_seeds: u64,
    progress: &(dyn Fn(usize, usize) + Sync),
    elapsed_s: &dyn Fn() -> f64,
) -> Result<Learned, LearnError> {
    use crate::control::selector::SelectorConfig;
    let held_out = plan.runs.iter().filter(|r| r.seed > train_seeds).count();
    if held_out == 0 || held_out == plan.runs.len() {
        return Err(LearnError::Split {
            train_seeds,
            held_out,
            runs: plan.runs.len(),
        });
    }
    let trials = run_trials(&plan.runs, progress)?;
    let (train, test): (Vec<_>, Vec<_>) = rows(&trials)
        .into_iter()
        .partition(|r| r.seed <= train_seeds);
    let cfg = ForestConfig::default();
    let forest = fit(&train, &cfg)?;
    let selector = SelectorConfig::default();
    let evals = evaluate(&forest, &selector, &test);
    let train_evals = evaluate(&forest, &selector, &train);
    let meta = serde_json::json!({
        "format": "selfheal strategy selector 1",
        "command": command,
        "suite": plan.name,
        "train_seeds": train_seeds,
        "train_rows": train.len(),
        "test_rows": test.len(),
        "forest": cfg,
        "selector": selector,
        "mttr_margin_s": MTTR_MARGIN_S,
        "failed_margin": FAILED_MARGIN,
        "failed_margin_abs": FAILED_MARGIN_ABS,
    });
    let mut labels = String::from(
        "| fault | rules' choice | label (best measured) | rows |\n|---|---|---|---|\n",
    );
    let mut counts: std::collections::BTreeMap<(String, &str, &str), usize> = Default::default();
    for r in train.iter().chain(&test) {
        *counts
            .entry((r.fault.clone(), r.rules.as_str(), r.best.as_str()))
            .or_default() += 1;
    }
    for ((f, r, b), n) in &counts {
        labels.push_str(&format!("| {f} | {r} | {b} | {n} |\n"));
    }
    let report_md = format!(
        "# Strategy selector: rules against learned\n\n\
         Made by `{command}` in {:.0} s ({} runs).\n\n\
         Every run of the suite `{}` ({}) ran under the rules and with each of the six strategies taken first; \
         the runs agree up to the first healing decision, so each (experiment, parameters, seed) is one situation with the measured outcome of every strategy. \
         A strategy is the label when it beats the rules' choice: it recovers where that does not, or fails {:.0} % (and at least {}) fewer requests from the fault's start, or, at a failed count within that margin, recovers more than {} s sooner; otherwise the rules' choice is. \
         The forest ({} trees, depth {}) was fitted on seeds up to {} ({} rows); the later seeds ({} rows) are held out. \
         The selector overrides the rules only with a vote of at least {:.0} % and at least {} training rows.\n\n\
         ## Held out\n\n\
         Each choice is scored by the run that actually took it first from that situation.\n\n{}\n\
         ## Training rows (fit)\n\n{}\n\
         ## Labels\n\n{}",
        elapsed_s(),
        trials.len(),
        plan.name,
        plan.description,
        100.0 * FAILED_MARGIN,
        FAILED_MARGIN_ABS,
        MTTR_MARGIN_S,
        cfg.trees,
        cfg.max_depth,
        train_seeds,
        train.len(),
        test.len(),
        100.0 * selector.min_vote,
        selector.min_rows,
        evaluation_md(&evals),
        evaluation_md(&train_evals),
        labels
    );
    Ok(Learned {
        forest,
        held_out: evals,
        meta,
        report_md,
        trials_csv: trials_csv(&trials),
    })
}
