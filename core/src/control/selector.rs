//! The learned strategy selector: a random forest that picks the first
//! healing strategy for a situation, trained offline on recorded outcomes
//! (`train::selector`) and consulted here as a plain value.
//!
//! The trees are fitted with linfa (`linfa-ensemble`'s random forest) and
//! exported into [`StrategyForest`]: nodes in a vector, each leaf holding
//! the class distribution of the training rows that reach it. The core
//! evaluates that value itself, so a decision is a pure function of the
//! situation (linfa's own vote breaks ties in hash-map order), and the
//! model is a JSON file the live adapter loads unchanged.

use serde::{Deserialize, Serialize};

use super::ServiceView;
use super::orchestrator::Strategy;
use super::predictor::patterns::FailureType;
use super::predictor::{Health, Prediction};

/// What the orchestrator knows when it picks a first strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Situation {
    pub failure: Option<FailureType>,
    pub status: Health,
    pub not_healthy: f64,
    pub cpu_usage: f64,
    pub memory_usage: f64,
    pub error_rate: f64,
    /// p99 over the SLO latency (NaN without traffic reads as 0).
    pub p99_over_slo: f64,
    /// Ready pods over desired replicas.
    pub ready_fraction: f64,
    pub recent_deploy: bool,
    pub dependency_degraded: bool,
    pub has_backup: bool,
    /// A caller or a route of this service has a fallback to isolate onto.
    pub can_isolate: bool,
}

/// The names of [`Situation::features`], in order.
pub const FEATURES: [&str; 16] = [
    "pattern_memory_leak",
    "pattern_cascading",
    "pattern_exhaustion",
    "pattern_dependency",
    "status",
    "not_healthy",
    "cpu_usage",
    "memory_usage",
    "error_rate",
    "p99_over_slo",
    "ready_fraction",
    "recent_deploy",
    "dependency_degraded",
    "has_backup",
    "can_isolate",
    "no_pattern",
];

impl Situation {
    pub fn of(
        p: &Prediction,
        view: &ServiceView,
        slo_ms: f64,
        recent_deploy: bool,
        dependency_degraded: bool,
        can_isolate: bool,
    ) -> Situation {
        let m = &view.metrics;
        let ready = f64::from(view.ready_pods());
        let p99 = if m.latency_p99.is_finite() {
            m.latency_p99 / slo_ms.max(1e-9)
        } else {
            0.0
        };
        Situation {
            failure: p.failure_type,
            status: p.status,
            not_healthy: p.not_healthy as f64,
            cpu_usage: m.cpu_usage,
            memory_usage: m.memory_usage,
            error_rate: m.error_rate,
            p99_over_slo: p99,
            ready_fraction: ready / view.desired_replicas.max(1) as f64,
            recent_deploy,
            dependency_degraded,
            has_backup: view.backup.is_some(),
            can_isolate,
        }
    }

    pub fn features(&self) -> [f64; FEATURES.len()] {
        let is = |f: FailureType| (self.failure == Some(f)) as u8 as f64;
        let b = |v: bool| v as u8 as f64;
        [
            is(FailureType::MemoryLeak),
            is(FailureType::CascadingFailure),
            is(FailureType::ResourceExhaustion),
            is(FailureType::DependencyFailure),
            self.status as u8 as f64,
            self.not_healthy,
            self.cpu_usage,
            self.memory_usage,
            self.error_rate,
            self.p99_over_slo,
            self.ready_fraction,
            b(self.recent_deploy),
            b(self.dependency_degraded),
            b(self.has_backup),
            b(self.can_isolate),
            b(self.failure.is_none()),
        ]
    }
}

/// One node of an exported tree; children are indices into the tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Node {
    /// Go `left` when `x[feature] < threshold` (linfa's rule), else `right`.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    /// Fractions of the training rows here per class of the forest.
    Leaf { distribution: Vec<f64> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The root is node 0.
    pub nodes: Vec<Node>,
}

impl Tree {
    fn leaf(&self, x: &[f64]) -> &[f64] {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if x[*feature] < *threshold {
                        *left
                    } else {
                        *right
                    }
                }
                Node::Leaf { distribution } => return distribution,
            }
        }
    }
}

/// A trained selector with what it was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyForest {
    /// Must equal [`FEATURES`]: a model from another feature layout is
    /// refused on load.
    pub features: Vec<String>,
    pub classes: Vec<Strategy>,
    pub trees: Vec<Tree>,
    /// Recorded outcomes (situations) it was fitted on.
    pub rows: usize,
}

/// The selector's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub strategy: Strategy,
    /// Mean leaf share of `strategy` over the trees.
    pub vote: f64,
}

impl StrategyForest {
    /// Mean class distribution over the trees.
    pub fn distribution(&self, x: &[f64]) -> Vec<f64> {
        let mut d = vec![0.0; self.classes.len()];
        for t in &self.trees {
            for (acc, v) in d.iter_mut().zip(t.leaf(x)) {
                *acc += v;
            }
        }
        let n = self.trees.len().max(1) as f64;
        d.iter_mut().for_each(|v| *v /= n);
        d
    }

    /// The most voted strategy; ties go to the earlier class.
    pub fn choose(&self, s: &Situation) -> Option<Choice> {
        let d = self.distribution(&s.features());
        let (i, vote) =
            d.iter()
                .copied()
                .enumerate()
                .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
                    Some((_, b)) if b >= v => best,
                    _ => Some((i, v)),
                })?;
        Some(Choice {
            strategy: self.classes[i],
            vote,
        })
    }

    /// Checks the layout against this build's features.
    pub fn check(&self) -> Result<(), LayoutError> {
        if self.features != FEATURES {
            return Err(LayoutError::Features {
                trained: self.features.clone(),
            });
        }
        for (ti, t) in self.trees.iter().enumerate() {
            for n in &t.nodes {
                let ok = match n {
                    Node::Split {
                        feature,
                        left,
                        right,
                        ..
                    } => {
                        *feature < FEATURES.len() && *left < t.nodes.len() && *right < t.nodes.len()
                    }
                    Node::Leaf { distribution } => distribution.len() == self.classes.len(),
                };
                if !ok {
                    return Err(LayoutError::MalformedNode {
                        tree: ti,
                        node: format!("{n:?}"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Why a selector file does not fit this build.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("the selector was trained on features {trained:?}, this build uses {FEATURES:?}")]
    Features { trained: Vec<String> },
    #[error("tree {tree} has a malformed node: {node}")]
    MalformedNode { tree: usize, node: String },
}

/// How the orchestrator uses a selector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectorConfig {
    /// The selector overrides the rules only when it was trained on at
    /// least this many recorded outcomes ...
    pub min_rows: usize,
    /// ... and its vote for the strategy reaches this share.
    pub min_vote: f64,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        SelectorConfig {
            min_rows: 40,
            min_vote: 0.5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forest() -> StrategyForest {
        // x[8] (error rate) < 0.5 -> restart, else rollback; the second
        // tree is undecided.
        StrategyForest {
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            classes: vec![Strategy::Restart, Strategy::Rollback],
            trees: vec![
                Tree {
                    nodes: vec![
                        Node::Split {
                            feature: 8,
                            threshold: 0.5,
                            left: 1,
                            right: 2,
                        },
                        Node::Leaf {
                            distribution: vec![1.0, 0.0],
                        },
                        Node::Leaf {
                            distribution: vec![0.0, 1.0],
                        },
                    ],
                },
                Tree {
                    nodes: vec![Node::Leaf {
                        distribution: vec![0.5, 0.5],
                    }],
                },
            ],
            rows: 50,
        }
    }

    fn situation(error_rate: f64) -> Situation {
        Situation {
            failure: None,
            status: Health::Unhealthy,
            not_healthy: 0.9,
            cpu_usage: 0.5,
            memory_usage: 0.5,
            error_rate,
            p99_over_slo: 1.0,
            ready_fraction: 1.0,
            recent_deploy: false,
            dependency_degraded: false,
            has_backup: false,
            can_isolate: false,
        }
    }

    #[test]
    fn trees_route_on_linfas_rule_and_votes_average() {
        let f = forest();
        f.check().unwrap();
        let c = f.choose(&situation(0.1)).unwrap();
        assert_eq!((c.strategy, c.vote), (Strategy::Restart, 0.75));
        let c = f.choose(&situation(0.5)).unwrap();
        assert_eq!((c.strategy, c.vote), (Strategy::Rollback, 0.75));
    }

    #[test]
    fn a_tie_goes_to_the_earlier_class() {
        let mut f = forest();
        f.trees.remove(0);
        let c = f.choose(&situation(0.9)).unwrap();
        assert_eq!((c.strategy, c.vote), (Strategy::Restart, 0.5));
    }

    #[test]
    fn another_feature_layout_or_a_bad_node_is_refused() {
        let mut f = forest();
        f.features.pop();
        assert!(matches!(f.check(), Err(LayoutError::Features { .. })));
        let mut f = forest();
        f.trees[0].nodes[0] = Node::Split {
            feature: 99,
            threshold: 0.0,
            left: 1,
            right: 2,
        };
        assert!(matches!(
            f.check(),
            Err(LayoutError::MalformedNode { tree: 0, .. })
        ));
    }
}
