//! A service as its callers see it: the latency of the calls into it, one
//! score per caller, combined so that the service departs only when every
//! caller with a fresh value sees it depart. A network delay on a
//! service's pod slows every link into it and shows there, not in the
//! service's own latency, which its server measures behind the delayed
//! link; one caller's view alone may be its own (its link, its client).

use std::collections::BTreeMap;

use super::anomaly::AnomalyDetector;
use super::departure::DepartureDetector;
use crate::time::Time;

/// A streaming score of one series, fed a value per scrape (NaN: none).
pub trait SeriesScore: Clone {
    fn score(&mut self, now: Time, x: f64) -> f64;
}

impl SeriesScore for DepartureDetector {
    fn score(&mut self, now: Time, x: f64) -> f64 {
        self.update(now, x)
    }
}

impl SeriesScore for AnomalyDetector {
    fn score(&mut self, now: Time, x: f64) -> f64 {
        self.update(now, x)
    }
}

/// One score per caller of a service, each over its own baseline.
#[derive(Clone, Debug)]
pub struct EveryCaller<D> {
    /// A fresh score, cloned for each caller when it first calls.
    fresh: D,
    callers: BTreeMap<String, D>,
}

impl<D: SeriesScore> EveryCaller<D> {
    pub fn new(fresh: D) -> Self {
        EveryCaller {
            fresh,
            callers: BTreeMap::new(),
        }
    }

    /// Feeds each caller's latency of its calls at `now` (NaN for a caller
    /// without a fresh one) and returns the smallest score over the
    /// callers with a fresh value; `None` without one.
    pub fn update(&mut self, now: Time, calls: &[(&str, f64)]) -> Option<f64> {
        let mut lowest: Option<f64> = None;
        for &(caller, x) in calls {
            // Looked up by `&str` first: a known caller costs no allocation.
            if !self.callers.contains_key(caller) {
                self.callers.insert(caller.to_owned(), self.fresh.clone());
            }
            let d = self.callers.get_mut(caller).expect("inserted above");
            let score = d.score(now, x);
            if x.is_finite() {
                lowest = Some(lowest.map_or(score, |l| l.min(score)));
            }
        }
        lowest
    }
}
