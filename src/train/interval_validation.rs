//! The failure predictor and its baselines on the same held-out runs
//! scraped every 5, 15, 30 or 60 s, at one false-alarm budget counted the
//! way an operator counts pages: alarm *episodes* per service per day.
//!
//! Every interval replays the same planned runs (loads, faults and their
//! times come from the plan's seed, not from the scrape interval), so a
//! difference between rows of one detector is the scrape interval's doing.
//! Each detector gets the threshold, of [`BUDGET_STEPS`] quantiles of its
//! scores, that newly warns of the most faulty runs within the budget; the
//! thresholds are set on the held-out runs themselves, the same way for
//! every detector, which makes the table a comparison of how well each
//! detector ranks, not a forecast of a deployed threshold's rates.

use std::fmt::Write as _;

use super::traces::{Dataset, Health, TracesConfig};
use super::validate::{
    BUDGET_STEPS, DETECTORS, Scored, budget_candidates, fault_free_runs, newly_warned, roc_pr_auc,
};
use crate::time::Time;

/// The scrape intervals the table is made at.
pub const INTERVALS_S: [f64; 4] = [5.0, 15.0, 30.0, 60.0];

/// Seconds between scored windows at every interval (as near as whole
/// scrapes allow).
const SCORE_EVERY_S: f64 = 10.0;

/// The held-out runs at `interval_s`: `runs` runs of an hour, half of them
/// fault-free (so that a budget of one episode per service-day is measured
/// over days, not hours), a window of the base's seconds, faults placed
/// after it. Same seed at every interval, hence the same runs.
pub fn held_out_config(base: &TracesConfig, interval_s: f64, runs: usize) -> TracesConfig {
    let window_s = base.window as f64 * base.scrape_interval_s;
    TracesConfig {
        seed: base.seed + 3000,
        runs,
        duration_s: 3600.0,
        scrape_interval_s: interval_s,
        window: (window_s / interval_s).round().max(2.0) as usize,
        fault_free_fraction: 0.5,
        ..base.clone()
    }
}

/// Scored windows are `stride` scrapes apart.
pub fn stride(interval_s: f64) -> usize {
    (SCORE_EVERY_S / interval_s).round().max(1.0) as usize
}

/// One detector at one threshold on one interval's runs.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetPoint {
    pub threshold: f64,
    /// Alarm episodes starting on a healthy window of a fault-free run.
    pub false_episodes: usize,
    /// Faulty runs with a new warning on either service within 5 minutes
    /// of the fault's start.
    pub warned: usize,
    /// Windows labelled not healthy that alarm, over all such windows.
    pub window_recall: f64,
}

/// The runs' scored windows grouped by (run, service), in time order, and
/// what the budget is measured over.
pub struct Episodes<'a> {
    sequences: Vec<Sequence<'a>>,
    /// Fault-free service-days observed (scored windows x their spacing).
    pub service_days: f64,
    pub faulty_runs: usize,
}

/// One (run, service)'s scored windows with what every threshold reads of
/// them: their times, and the run's fault time (`None`: a fault-free run).
struct Sequence<'a> {
    windows: &'a [Scored],
    times: Vec<Time>,
    fault_at: Option<Time>,
}

impl<'a> Episodes<'a> {
    /// `scored` as [`super::validate::score_dataset`] returns it (windows of
    /// one (run, service) together and in time order) for `ds` scored every
    /// `stride` scrapes.
    pub fn new(scored: &'a [Scored], ds: &Dataset, stride: usize) -> Self {
        let fault_at = |run: u32| {
            ds.runs
                .iter()
                .find(|r| r.id == run)
                .and_then(|r| r.fault)
                .map(|(_, at)| Time::from_secs_f64(at))
        };
        let sequences: Vec<Sequence> = scored
            .chunk_by(|a, b| a.run == b.run && a.service == b.service)
            .map(|windows| Sequence {
                windows,
                times: windows.iter().map(|x| Time::from_secs_f64(x.t_s)).collect(),
                fault_at: fault_at(windows[0].run),
            })
            .collect();
        let spacing_s = stride as f64 * ds.config.scrape_interval_s;
        let fault_free_windows: usize = sequences
            .iter()
            .filter(|q| q.fault_at.is_none())
            .map(|q| q.windows.len())
            .sum();
        Episodes {
            sequences,
            faulty_runs: ds.runs.len() - fault_free_runs(ds).len(),
            service_days: fault_free_windows as f64 * spacing_s / 86_400.0,
        }
    }

    /// `detector` alarming at `threshold`.
    pub fn at(&self, detector: usize, threshold: f64) -> BudgetPoint {
        let alarm = |x: &Scored| x.scores[detector] >= threshold;
        let mut false_episodes = 0;
        let mut warned_runs: Vec<u32> = Vec::new();
        let (mut hits, mut positives) = (0usize, 0usize);
        let mut alarms = Vec::new();
        for seq in &self.sequences {
            for x in seq.windows.iter().filter(|x| x.label != Health::Healthy) {
                positives += 1;
                hits += alarm(x) as usize;
            }
            match seq.fault_at {
                None => {
                    let mut before = false;
                    for x in seq.windows {
                        let now = alarm(x);
                        false_episodes += (now && !before && x.label == Health::Healthy) as usize;
                        before = now;
                    }
                }
                Some(at) => {
                    alarms.clear();
                    alarms.extend(seq.windows.iter().map(alarm));
                    if newly_warned(&seq.times, &alarms, at).is_some() {
                        warned_runs.push(seq.windows[0].run);
                    }
                }
            }
        }
        warned_runs.sort_unstable();
        warned_runs.dedup();
        BudgetPoint {
            threshold,
            false_episodes,
            warned: warned_runs.len(),
            window_recall: hits as f64 / positives.max(1) as f64,
        }
    }

    /// The threshold that newly warns of the most faulty runs with at most
    /// `per_day` false episodes per service-day (ties: the higher window
    /// recall); `None` when no candidate keeps within the budget.
    pub fn at_budget(&self, detector: usize, per_day: f64) -> Option<BudgetPoint> {
        let candidates = budget_candidates(
            self.sequences
                .iter()
                .flat_map(|s| s.windows.iter().map(|x| x.scores[detector])),
        )
        .into_iter()
        .chain([f64::INFINITY]);
        let allowed = per_day * self.service_days;
        candidates
            .map(|th| self.at(detector, th))
            .filter(|p| p.false_episodes as f64 <= allowed)
            .max_by(|a, b| {
                a.warned
                    .cmp(&b.warned)
                    .then(a.window_recall.total_cmp(&b.window_recall))
            })
    }
}

/// The Markdown table of every interval: `sets` holds each interval with
/// its dataset, scored windows and stride.
pub fn section(sets: &[(f64, &Dataset, &[Scored], usize)], per_day: f64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Held out at 5, 15, 30 and 60 s scrapes\n\nThe same held-out runs (an hour each, half of them fault-free, other seeds than training) scraped every 5, 15, 30 and 60 s; the model reads every interval through its own time base. Budget: {per_day} false alarm episode(s) per service per day (an episode is a run of alarming windows on a fault-free run that starts on a healthy window). Each detector gets the threshold, of {BUDGET_STEPS} quantiles of its scores on these runs, that newly warns of the most faulty runs within the budget: a comparison at equal budget, not a deployed threshold. *Faults warned*: faulty runs with a new warning on either service within 5 minutes of the fault's start (none in the 5 minutes before). *Window recall*: windows whose next 5 minutes are not healthy that alarm.\n"
    );
    let _ = writeln!(
        md,
        "| scrape s | detector | threshold | false episodes (service-days) | faults warned | window recall | ROC-AUC not healthy |\n|---|---|---|---|---|---|---|"
    );
    for &(interval, ds, scored, stride) in sets {
        let e = Episodes::new(scored, ds, stride);
        let pos: Vec<bool> = scored.iter().map(|x| x.label != Health::Healthy).collect();
        for (d, name) in DETECTORS.iter().enumerate() {
            let scores: Vec<f64> = scored.iter().map(|x| x.scores[d]).collect();
            let (roc, _) = roc_pr_auc(&scores, &pos);
            match e.at_budget(d, per_day) {
                Some(p) => {
                    let _ = writeln!(
                        md,
                        "| {interval} | {name} | {:.3} | {} ({:.1}) | {} of {} | {:.3} | {roc:.3} |",
                        p.threshold,
                        p.false_episodes,
                        e.service_days,
                        p.warned,
                        e.faulty_runs,
                        p.window_recall
                    );
                }
                None => {
                    let _ = writeln!(
                        md,
                        "| {interval} | {name} | - | over budget at every threshold ({:.1}) | - | - | {roc:.3} |",
                        e.service_days
                    );
                }
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::traces::RunPlan;

    fn plan(id: u32, fault_at: Option<f64>) -> RunPlan {
        RunPlan {
            id,
            seed: id as u64,
            load: super::super::traces::LoadFamily::Constant,
            rate: 10.0,
            fault: fault_at.map(|at| (crate::scenario::FaultKind::CpuStress, at)),
            scenario: String::new(),
        }
    }

    fn window(run: u32, t_s: f64, label: Health, score: f64) -> Scored {
        Scored {
            run,
            service: 0,
            t_s,
            label,
            lstm_class: Health::Healthy,
            fault: None,
            pattern: None,
            time_to_breach_s: None,
            scores: [score; 6],
        }
    }

    fn dataset(runs: Vec<RunPlan>) -> Dataset {
        Dataset {
            config: TracesConfig {
                scrape_interval_s: 60.0,
                ..TracesConfig::default()
            },
            runs,
            controller: "static".into(),
            rows: Vec::new(),
        }
    }

    #[test]
    fn episodes_count_rising_edges_on_healthy_windows_of_fault_free_runs() {
        use Health::*;
        let ds = dataset(vec![plan(0, None), plan(1, Some(600.0))]);
        let s = vec![
            // Fault-free run: alarms at 0.9 form two episodes; the second
            // starts on a window that is not healthy, so it is no false one.
            window(0, 0.0, Healthy, 0.9),
            window(0, 60.0, Healthy, 0.9),
            window(0, 120.0, Healthy, 0.1),
            window(0, 180.0, Degraded, 0.9),
            window(0, 240.0, Healthy, 0.1),
            // Faulty run: quiet before the fault, alarms 2 minutes after.
            window(1, 540.0, Healthy, 0.1),
            window(1, 600.0, Healthy, 0.1),
            window(1, 720.0, Critical, 0.8),
        ];
        let e = Episodes::new(&s, &ds, 1);
        assert!((e.service_days - 5.0 * 60.0 / 86_400.0).abs() < 1e-12);
        let p = e.at(0, 0.5);
        assert_eq!(p.false_episodes, 1);
        assert_eq!(p.warned, 1);
        assert_eq!(p.window_recall, 1.0);
        let p = e.at(0, 0.85);
        assert_eq!((p.false_episodes, p.warned, p.window_recall), (1, 0, 0.5));
    }

    #[test]
    fn an_alarm_already_up_before_the_fault_is_no_new_warning() {
        use Health::*;
        let ds = dataset(vec![plan(1, Some(600.0))]);
        let s = vec![
            window(1, 480.0, Healthy, 0.9),
            window(1, 600.0, Healthy, 0.9),
            window(1, 660.0, Critical, 0.9),
        ];
        assert_eq!(Episodes::new(&s, &ds, 1).at(0, 0.5).warned, 0);
    }

    #[test]
    fn the_budget_picks_the_threshold_that_warns_most_within_it() {
        use Health::*;
        let ds = dataset(vec![plan(0, None), plan(1, Some(600.0))]);
        // One false episode at 0.6 in 1/288 service-days: any budget under
        // 288 per day must alarm above 0.6, and 0.7 still warns.
        let s = vec![
            window(0, 0.0, Healthy, 0.6),
            window(0, 60.0, Healthy, 0.1),
            window(0, 120.0, Healthy, 0.1),
            window(0, 180.0, Healthy, 0.1),
            window(0, 240.0, Healthy, 0.1),
            window(1, 600.0, Healthy, 0.1),
            window(1, 660.0, Critical, 0.7),
        ];
        let e = Episodes::new(&s, &ds, 1);
        let p = e.at_budget(0, 1.0).expect("a threshold within the budget");
        assert_eq!((p.false_episodes, p.warned), (0, 1));
        assert!(p.threshold > 0.6 && p.threshold <= 0.7);
        let generous = e.at_budget(0, 1_000.0).expect("within");
        assert_eq!(generous.warned, 1);
        assert!(generous.window_recall >= p.window_recall);
    }

    #[test]
    fn every_interval_plans_the_same_runs_with_a_window_of_the_same_seconds() {
        let base = TracesConfig::default();
        let windows: Vec<(usize, f64)> = INTERVALS_S
            .iter()
            .map(|&i| {
                let c = held_out_config(&base, i, 10);
                (c.window, c.window as f64 * c.scrape_interval_s)
            })
            .collect();
        assert_eq!(
            windows,
            vec![(60, 300.0), (20, 300.0), (10, 300.0), (5, 300.0)]
        );
        let plans: Vec<Vec<Option<(crate::scenario::FaultKind, f64)>>> = INTERVALS_S
            .iter()
            .map(|&i| {
                let c = held_out_config(&base, i, 10);
                (0..10)
                    .map(|id| super::super::traces::plan_run(&c, id).fault)
                    .collect()
            })
            .collect();
        assert!(plans.windows(2).all(|w| w[0] == w[1]));
        assert!(plans[0].iter().any(Option::is_some));
        assert_eq!([stride(5.0), stride(15.0), stride(60.0)], [2, 1, 1]);
    }
}
