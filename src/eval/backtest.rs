//! `selfheal predict`: the failure predictor replayed over a recording of
//! any cluster, scrape by scrape, with the baselines it must beat beside
//! it, and scored against a fault list when there is one.
//!
//! Per scrape and service the backtest keeps what the predictor says (P(not
//! healthy), class, failure type, time to failure, recommended action), the
//! anomaly score of each metric and of the calls into the service
//! ([`crate::control::anomaly`], [`crate::control::callers`]), the static
//! thresholds' score and the scrape's health state. Five detectors are
//! scored the same way:
//!
//! | detector | alarms when |
//! |---|---|
//! | `lstm` | P(not healthy) reaches the model's alarm threshold |
//! | `thresholds` | errors at 1 %, p99 at the SLO latency, CPU or memory at 90 % |
//! | `anomaly` | any metric's anomaly score reaches the pattern threshold |
//! | `pattern` | one of the seed's failure patterns matches |
//! | `persistence` | the service is not healthy now |
//! | `departure` | a metric leaves its own recent range ([`crate::control::departure`]); an episode alarms once, at its start |
//! | `forest` | most trees of a forest fitted on training traces vote "not healthy" (when one is given) |
//!
//! A fault is *newly warned* when the detector alarms on the faulty service
//! within [`CATCH_WINDOW_S`] of the injection and did not alarm in the
//! [`CATCH_WINDOW_S`] before it. False alarms are episodes over the
//! fault-free scrapes ([`FaultList::false_alarms`]).

use crate::control::anomaly::AnomalyDetector;
use crate::control::callers::EveryCaller;
use crate::control::departure::{
    CALLS, Departure, DepartureConfig, RECORDING_METRICS, recording_metric_name,
};
use crate::control::predictor::patterns::FailureType;
use crate::control::predictor::{
    Health, Model, Prediction, PredictorConfig, ServiceWatch, scrape_row,
};
use crate::eval::incidents::FaultList;
use crate::metrics::ms;
use crate::time::Time;
use crate::train::recorded::{CallsInto, EdgeSeries, ServiceRecording, worst_ahead};
use crate::train::store::ModelBundle;
use crate::train::traces::HealthConfig;
use crate::train::validate::{
    CATCH_WINDOW_S, Forest, budget_candidates, newly_warned, roc_pr_auc, threshold_score,
};

pub const DETECTORS: [&str; 7] = [
    "lstm",
    "thresholds",
    "anomaly",
    "pattern",
    "persistence",
    "departure",
    "forest",
];

/// The index of the departure detector in [`DETECTORS`]: it reports an
/// episode once, at its start, so its alarms are rising edges.
const DEPARTURE: usize = 5;
/// The index of the forest in [`DETECTORS`]: scored only when one is given.
const FOREST: usize = 6;

/// One scrape of one service.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub at: Time,
    /// `None` until the network's window has filled (in seconds).
    pub prediction: Option<Prediction>,
    pub pattern: Option<FailureType>,
    /// The highest anomaly score over the metrics and the calls into the
    /// service, and its metric.
    pub anomaly: (f64, &'static str),
    pub thresholds: f64,
    /// The highest departure score over the metrics, its metric, and
    /// whether a departure episode starts at this scrape.
    pub departure: (f64, &'static str, bool),
    /// The forest's share of "not healthy" votes on the network's window.
    pub forest: Option<f64>,
    pub state: Health,
    /// The worst state within the horizon ahead (`None` near the end).
    pub label: Option<Health>,
}

#[derive(Clone, Debug)]
pub struct ServiceBacktest {
    pub service: String,
    pub slo_latency_ms: f64,
    pub scrapes: Vec<Scrape>,
}

/// The settings a backtest runs with.
#[derive(Clone, Debug)]
pub struct BacktestConfig {
    pub predictor: PredictorConfig,
    pub health: HealthConfig,
    /// The SLO latency of every service; each service's default otherwise
    /// ([`ServiceRecording::slo_latency_ms`]).
    pub slo_latency_ms: Option<f64>,
    /// The labels' look-ahead.
    pub horizon_s: f64,
}

impl BacktestConfig {
    /// A trained model's settings: its predictor configuration, and the
    /// health rules and look-ahead of its training traces.
    pub fn of(bundle: &ModelBundle, slo_latency_ms: Option<f64>) -> Self {
        BacktestConfig {
            predictor: bundle.predictor_config(),
            health: bundle.meta.dataset_config.health.clone(),
            slo_latency_ms,
            horizon_s: bundle.meta.dataset_config.horizon_s,
        }
    }
}

impl Scrape {
    /// The detector's score (higher is more alarming); `None` for the
    /// network before its window has filled.
    pub fn score(&self, detector: usize) -> Option<f64> {
        Some(match detector {
            0 => self.prediction.as_ref()?.not_healthy as f64,
            1 => self.thresholds,
            2 => self.anomaly.0,
            3 => self.pattern.is_some() as u8 as f64,
            4 => self.state as usize as f64 / 3.0,
            DEPARTURE => self.departure.0,
            _ => self.forest?,
        })
    }

    /// The score at which a detector's own rule alarms, where it has one
    /// threshold (the network's warning also waits for repeated windows).
    fn own_threshold(detector: usize, cfg: &PredictorConfig) -> Option<f64> {
        match detector {
            1 => Some(1.0),
            2 => Some(cfg.patterns.anomaly_threshold),
            DEPARTURE => Some(DepartureConfig::default().threshold),
            FOREST => Some(0.5),
            _ => None,
        }
    }

    pub fn alarm(&self, detector: usize, cfg: &PredictorConfig) -> bool {
        match detector {
            0 => self.prediction.as_ref().is_some_and(|p| p.warning),
            3 => self.pattern.is_some(),
            4 => self.state != Health::Healthy,
            DEPARTURE => self.departure.2,
            _ => Self::own_threshold(detector, cfg)
                .zip(self.score(detector))
                .is_some_and(|(threshold, score)| score >= threshold),
        }
    }
}

/// Replays each service's scrapes through the predictor and the baselines
/// (the forest too when one is given); the departure score reads the
/// calls into each service from `edges` (the recording's `edges.csv`,
/// none without it).
pub fn run(
    model: &Model,
    cfg: &BacktestConfig,
    recordings: &[ServiceRecording],
    edges: &[EdgeSeries],
    forest: Option<&Forest>,
) -> Vec<ServiceBacktest> {
    use rayon::prelude::*;
    recordings
        .par_iter()
        .map(|rec| {
            let slo = rec.slo_latency_ms(cfg.slo_latency_ms);
            let pcfg = PredictorConfig {
                slo_latency_ms: slo,
                ..cfg.predictor.clone()
            };
            let states = rec.states(slo, &cfg.health);
            let times: Vec<f64> = rec
                .scrapes
                .iter()
                .map(|m| m.timestamp.as_secs_f64())
                .collect();
            let labels = worst_ahead(&times, &states, cfg.horizon_s);
            let mut watch = ServiceWatch::new(model.window, &pcfg);
            // An anomaly score per metric the departure score reads (raw:
            // unmeasured stays NaN).
            let mut anomaly: Vec<AnomalyDetector> = RECORDING_METRICS
                .iter()
                .map(|_| AnomalyDetector::new(pcfg.anomaly.clone()))
                .collect();
            let mut departure = Departure::of_recording(&DepartureConfig::default());
            let scrape_times: Vec<Time> = rec.scrapes.iter().map(|m| m.timestamp).collect();
            let mut calls = CallsInto::new(edges, &rec.service, &scrape_times);
            let mut anomaly_calls = EveryCaller::new(AnomalyDetector::new(pcfg.anomaly.clone()));
            let scrapes = rec
                .scrapes
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let row = scrape_row(m);
                    watch.handle_row(m.timestamp, row);
                    let prediction = watch.predict(model, &pcfg);
                    let forest = forest.filter(|_| prediction.is_some()).map(|forest| {
                        forest.score_window(watch.last_input(), model.normaliser.features())
                    });
                    let pattern = match &prediction {
                        Some(p) => p.failure_type,
                        None => watch.pattern(&pcfg).map(|d| d.failure),
                    };
                    let values = RECORDING_METRICS.map(|(_, value)| value(m));
                    let mut best = (0.0, RECORDING_METRICS[0].0);
                    for ((d, &x), &(name, _)) in
                        anomaly.iter_mut().zip(&values).zip(&RECORDING_METRICS)
                    {
                        let score = d.update(m.timestamp, x);
                        if score > best.0 {
                            best = (score, name);
                        }
                    }
                    let calls_now = calls.at(m.timestamp);
                    if let Some(score) = anomaly_calls.update(m.timestamp, calls_now)
                        && score > best.0
                    {
                        best = (score, CALLS);
                    }
                    let (score, metric, starts) = departure.update(m.timestamp, &values, calls_now);
                    Scrape {
                        at: m.timestamp,
                        prediction,
                        pattern,
                        anomaly: best,
                        thresholds: threshold_score(&row, slo),
                        departure: (score, recording_metric_name(metric), starts),
                        forest,
                        state: states[i],
                        label: labels[i].0,
                    }
                })
                .collect();
            ServiceBacktest {
                service: rec.service.clone(),
                slo_latency_ms: slo,
                scrapes,
            }
        })
        .collect()
}

pub const CSV_HEADER: &str = "t_s,service,p_not_healthy,class,warning,failure_type,time_to_failure_s,recommended_action,anomaly,anomaly_metric,thresholds,state,label,departure,departure_metric,forest";

/// One line per scrape and service; cells the predictor has no value for
/// yet are empty.
pub fn csv(backtests: &[ServiceBacktest]) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{CSV_HEADER}\n");
    for b in backtests {
        for s in &b.scrapes {
            let (p, class, warning, ttf, action) = match &s.prediction {
                Some(p) => (
                    format!("{:.4}", p.not_healthy),
                    p.status.as_str(),
                    if p.warning { "1" } else { "0" },
                    p.time_to_failure_s
                        .map_or(String::new(), |t| format!("{t:.0}")),
                    p.recommended_action.as_str(),
                ),
                None => (String::new(), "", "", String::new(), ""),
            };
            let _ = writeln!(
                out,
                "{},{},{p},{class},{warning},{},{ttf},{action},{:.4},{},{:.4},{},{},{:.4},{},{}",
                s.at.as_secs_f64(),
                b.service,
                s.pattern.map_or("", FailureType::as_str),
                s.anomaly.0,
                s.anomaly.1,
                ms(s.thresholds),
                s.state.as_str(),
                s.label.map_or("", Health::as_str),
                s.departure.0,
                s.departure.1,
                s.forest.map_or(String::new(), |v| format!("{v:.4}")),
            );
        }
    }
    out
}

/// One detector's record against a fault list.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorScore {
    pub detector: &'static str,
    /// Faults newly warned on the faulty service within the catch window,
    /// and the seconds to the warning of each.
    pub warned: Vec<Option<f64>>,
    pub false_alarm_episodes: usize,
    pub fault_free_hours: f64,
    /// ROC-AUC of the score for "not healthy within the horizon" over the
    /// scrapes where every detector has a score; `None` without both
    /// classes.
    pub roc_auc: Option<f64>,
    /// For a detector with a continuous score: the threshold that meets
    /// the false-alarm budget on this recording (chosen in-sample) and the
    /// faults newly warned there.
    pub at_budget: Option<(f64, usize)>,
    /// Whether the detector has a score to set a threshold on.
    pub continuous: bool,
}

impl DetectorScore {
    pub fn newly_warned(&self) -> usize {
        self.warned.iter().flatten().count()
    }
    pub fn false_alarms_per_service_hour(&self) -> f64 {
        self.false_alarm_episodes as f64 / self.fault_free_hours.max(1e-9)
    }
}

/// Faults newly warned (seconds to the warning of each), false-alarm
/// episodes and fault-free seconds of one alarm rule; with `onsets`, only
/// the first scrape of each run of alarms alarms.
fn record(
    (backtests, times): (&[ServiceBacktest], &[Vec<Time>]),
    faults: &FaultList,
    alarm: impl Fn(&Scrape) -> bool,
    onsets: bool,
) -> (Vec<Option<f64>>, usize, f64) {
    let alarms: Vec<(&[Time], Vec<bool>)> = backtests
        .iter()
        .zip(times)
        .map(|(b, t)| {
            let mut before = false;
            let a = b.scrapes.iter().map(|s| {
                let now = alarm(s);
                let raised = now && !(onsets && before);
                before = now;
                raised
            });
            (t.as_slice(), a.collect())
        })
        .collect();
    let warned = faults
        .faults
        .iter()
        .map(|f| {
            let b = backtests.iter().position(|b| b.service == f.service)?;
            newly_warned(alarms[b].0, &alarms[b].1, f.at)
        })
        .collect();
    let (mut episodes, mut seconds) = (0, 0.0);
    for (times, a) in &alarms {
        let (e, s) = faults.false_alarms(times, a.iter().copied());
        episodes += e;
        seconds += s;
    }
    (warned, episodes, seconds)
}

/// The detector's threshold (of [`budget_candidates`] and its own) that
/// newly warns of the most faults while its false alarms stay within
/// `budget` episodes per service-hour (the lowest such), and that count;
/// `None` when every candidate is over the budget.
fn at_budget(
    (backtests, times): (&[ServiceBacktest], &[Vec<Time>]),
    faults: &FaultList,
    (detector, own): (usize, Option<f64>),
    budget: f64,
) -> Option<(f64, usize)> {
    // The own threshold is a candidate too: the departure score's hard
    // limits score exactly it, which a quantile of the scores rarely is.
    let mut candidates = budget_candidates(
        backtests
            .iter()
            .flat_map(|b| b.scrapes.iter().filter_map(|s| s.score(detector))),
    );
    candidates.extend(own);
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    // Lower thresholds alarm more, but an alarm already up before a fault
    // is no new warning: the best threshold within the budget is searched,
    // not the lowest.
    let mut best: Option<(f64, usize)> = None;
    for threshold in candidates {
        let (warned, episodes, seconds) = record(
            (backtests, times),
            faults,
            |s| s.score(detector).is_some_and(|v| v >= threshold),
            detector == DEPARTURE,
        );
        let caught = warned.iter().flatten().count();
        if episodes as f64 / (seconds / 3_600.0).max(1e-9) <= budget
            && best.is_none_or(|(_, b)| caught > b)
        {
            best = Some((threshold, caught));
        }
    }
    best
}

/// Every detector's record on `faults` (the forest's only when the backtest
/// ran one), at its own alarm rule and at the threshold that meets `budget`
/// false-alarm episodes per service-hour on this recording.
pub fn score(
    backtests: &[ServiceBacktest],
    faults: &FaultList,
    cfg: &PredictorConfig,
    budget: f64,
) -> Vec<DetectorScore> {
    let times: Vec<Vec<Time>> = backtests
        .iter()
        .map(|b| b.scrapes.iter().map(|s| s.at).collect())
        .collect();
    let with_forest = backtests
        .iter()
        .any(|b| b.scrapes.iter().any(|s| s.forest.is_some()));
    let detectors: Vec<usize> = (0..DETECTORS.len())
        .filter(|&d| d != FOREST || with_forest)
        .collect();
    let mut labels = Vec::new();
    let mut scores = vec![Vec::new(); detectors.len()];
    for b in backtests {
        for s in &b.scrapes {
            let (Some(label), Some(all)) = (
                s.label,
                detectors
                    .iter()
                    .map(|&d| s.score(d))
                    .collect::<Option<Vec<f64>>>(),
            ) else {
                continue;
            };
            labels.push(label != Health::Healthy);
            for (d, v) in all.into_iter().enumerate() {
                scores[d].push(v);
            }
        }
    }
    let both = labels.iter().any(|&l| l) && labels.iter().any(|&l| !l);
    detectors
        .iter()
        .enumerate()
        .map(|(k, &d)| {
            let name = DETECTORS[d];
            let (warned, episodes, seconds) = record(
                (backtests, &times),
                faults,
                |s| s.alarm(d, cfg),
                d == DEPARTURE,
            );
            DetectorScore {
                detector: name,
                warned,
                false_alarm_episodes: episodes,
                fault_free_hours: seconds / 3_600.0,
                roc_auc: both.then(|| roc_pr_auc(&scores[k], &labels).0),
                at_budget: CONTINUOUS[d]
                    .then(|| {
                        let own = Scrape::own_threshold(d, cfg);
                        at_budget((backtests, &times), faults, (d, own), budget)
                    })
                    .flatten(),
                continuous: CONTINUOUS[d],
            }
        })
        .collect()
}

/// Detectors with a score to set a threshold on (the others alarm or not).
const CONTINUOUS: [bool; 7] = [true, true, true, false, false, true, true];

/// The scores as a Markdown table, then each fault's lead per detector.
pub fn render(scores: &[DetectorScore], faults: &FaultList, budget: f64) -> String {
    let mut md = format!(
        "| detector | faults newly warned within {:.0} s | false alarm episodes per service-hour (fault-free) | ROC-AUC not healthy | newly warned at {budget} false alarm episodes per service-hour (threshold set on this recording) |\n|---|---|---|---|---|\n",
        CATCH_WINDOW_S
    );
    for s in scores {
        md.push_str(&format!(
            "| {} | {} of {} | {:.3} ({} in {:.1} h) | {} | {} |\n",
            s.detector,
            s.newly_warned(),
            s.warned.len(),
            s.false_alarms_per_service_hour(),
            s.false_alarm_episodes,
            s.fault_free_hours,
            s.roc_auc.map_or("-".into(), |a| format!("{a:.3}")),
            match s.at_budget {
                Some((t, n)) => format!("{n} (at {t:.4})"),
                None if s.continuous => "over budget".into(),
                None => "-".into(),
            }
        ));
    }
    md.push_str("\n| injected (s) | service | fault |");
    for s in scores {
        md.push_str(&format!(" {} (s) |", s.detector));
    }
    md.push_str(&format!("\n|---|---|---|{}\n", "---|".repeat(scores.len())));
    for (i, f) in faults.faults.iter().enumerate() {
        md.push_str(&format!(
            "| {:.0} | {} | {} |",
            f.at.as_secs_f64(),
            f.service,
            f.kind
        ));
        for s in scores {
            md.push_str(&match s.warned[i] {
                Some(lead) => format!(" {lead:.0} |"),
                None => " - |".into(),
            });
        }
        md.push('\n');
    }
    md
}
