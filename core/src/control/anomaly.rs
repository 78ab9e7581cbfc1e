//! An online, per-metric anomaly score in [0, 1].
//!
//! Two signals, the larger wins:
//!
//! 1. *Spatial novelty*: the value leaves the range seen over the last
//!    `range_s` by more than `spatial_tolerance` of that range. This is the
//!    rule NAB's Numenta detector adds to HTM (`numenta_detector.py`,
//!    `SPATIAL_TOLERANCE = 0.05`); here the range is a trailing week rather
//!    than all history, so a detector that runs for months can forget.
//! 2. The *anomaly likelihood* of Ahmad et al., "Unsupervised real-time
//!    anomaly detection for streaming data" (Neurocomputing 2017), with HTM's
//!    prediction error replaced by a surprise that is both spatial and
//!    temporal, the product of
//!    - a robust distance: of the value from the median of the last
//!      `baseline_s`, in units of their median absolute deviation, on a log
//!      scale that reaches 1 at `surprise_at_one` deviations, and
//!    - a transition surprise: one minus the probability of the value's
//!      level (its place in the trailing range, cut into
//!      `transition_levels` equal levels) given the level `transition_lag_s`
//!      before, from counts of the transitions seen so far (the
//!      Krichevsky-Trofimov estimator, half a count per level a priori;
//!      counts fade over `history_s`).
//!
//!    A value far from the median is surprising only when the move to it
//!    was not a usual one: a daily peak or a signal that keeps toggling
//!    between two levels is far from the median yet predictable, which is
//!    what HTM's sequence memory learns and a distance alone cannot.
//!
//!    The surprise is averaged over `averaging_s`; the likelihood is the
//!    normal tail of that average under the mean and spread of the averages
//!    of the last `history_s`; a run of "red" likelihoods (tail below 1e-5)
//!    is reported once, then as yellow (Numenta's `_filterLikelihoods`), so
//!    a lasting anomaly is one alarm.
//!
//! Every window is in seconds and the windows are time buckets, not sample
//! counts: the same configuration means the same on 5 s, 60 s or 5 min
//! scrapes, and the warm-up is `warmup_s` whatever the interval. The state
//! is allocated once in [`AnomalyDetector::new`]; an update allocates
//! nothing and is deterministic, so the same values at the same times give
//! the same scores in the simulator, the live adapter and `selfheal eval`.
//!
//! The defaults were fixed as the README's "The anomaly detector" says: constants
//! taken from Numenta's detector (spatial tolerance, averaging over ten
//! 5-minute samples, the red and yellow zones) and one day / one week /
//! thirty days for the windows; the transition model's levels and lag were
//! chosen on NAB's AWS files (the README gives the whole grid); the NAB
//! threshold is swept on the AWS files with a leave-one-file-out estimate
//! beside it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::Time;

/// Every field is in seconds except the two ratios.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// The values the baseline median and MAD are taken over (at most
    /// [`MAX_BASELINE`] of the latest of them).
    pub baseline_s: f64,
    /// The trailing range a spatially novel value must leave.
    pub range_s: f64,
    /// How far outside the range, as a share of its width, is novel.
    pub spatial_tolerance: f64,
    /// Deviations (robust z) at which the log-scaled surprise reaches 1.
    pub surprise_at_one: f64,
    /// Levels of the transition model (more than [`MAX_LEVELS`] count as
    /// that many); 0 or 1 leaves the surprise a distance alone.
    pub transition_levels: usize,
    /// A transition is from the level this long before to the level now.
    pub transition_lag_s: f64,
    /// The surprise is averaged over this long before the likelihood.
    pub averaging_s: f64,
    /// The averages the likelihood's normal distribution is fitted to.
    pub history_s: f64,
    /// Scores are 0 until this long after the first value.
    pub warmup_s: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            baseline_s: 86_400.0,
            range_s: 7.0 * 86_400.0,
            spatial_tolerance: 0.05,
            surprise_at_one: 100.0,
            transition_levels: 4,
            transition_lag_s: 300.0,
            averaging_s: 3_000.0,
            history_s: 30.0 * 86_400.0,
            warmup_s: 600.0,
        }
    }
}

/// The most values the baseline keeps (a day of 60 s scrapes): the median
/// costs linear time in it.
pub const MAX_BASELINE: usize = 1_440;
/// The most levels of the transition model.
pub const MAX_LEVELS: usize = 16;
/// The most recent levels kept to look `transition_lag_s` back: a lag of
/// more scrapes than this reads the oldest one kept.
const MAX_LAGGED: usize = 512;
/// The most surprises averaged.
const MAX_AVERAGING: usize = 256;
/// Time buckets of the trailing range and of the likelihood's history.
const RANGE_BUCKETS: usize = 168;
const HISTORY_BUCKETS: usize = 720;
/// Values the baseline needs before a surprise means anything.
const MIN_BASELINE: usize = 8;
/// Numenta's red zone (tail probability) and the yellow score a repeat
/// red is reported at.
const RED_TAIL: f64 = 1e-5;
const YELLOW_TAIL: f64 = 1e-3;
/// A floor on the spread of the averages: a flat signal's first wobble is
/// not a certainty. Numenta floors the mean at 0.03 and the variance at
/// 0.0003 instead; on NAB's AWS files those floors scored lower (README,
/// "The anomaly detector").
const MIN_SPREAD: f64 = 0.03;

#[derive(Clone, Copy, Debug)]
struct RangeBucket {
    id: i64,
    lo: f64,
    hi: f64,
}

#[derive(Clone, Copy, Debug)]
struct MomentBucket {
    id: i64,
    n: f64,
    sum: f64,
    sum_sq: f64,
}

#[derive(Clone, Debug)]
pub struct AnomalyDetector {
    cfg: DetectorConfig,
    first: Option<f64>,
    baseline: VecDeque<(f64, f64)>,
    scratch: Vec<f64>,
    surprises: VecDeque<(f64, f64)>,
    range: Vec<RangeBucket>,
    moments: Vec<MomentBucket>,
    red: bool,
    /// `(time, level)` of the latest values, oldest first.
    lagged: VecDeque<(f64, usize)>,
    /// Faded counts of transitions, `[from][to]`.
    transitions: [[f64; MAX_LEVELS]; MAX_LEVELS],
    /// When the counts were last faded.
    faded_at: f64,
}

impl AnomalyDetector {
    pub fn new(cfg: DetectorConfig) -> Self {
        AnomalyDetector {
            cfg,
            first: None,
            baseline: VecDeque::with_capacity(MAX_BASELINE),
            scratch: Vec::with_capacity(MAX_BASELINE),
            surprises: VecDeque::with_capacity(MAX_AVERAGING),
            range: vec![
                RangeBucket {
                    id: i64::MIN,
                    lo: 0.0,
                    hi: 0.0,
                };
                RANGE_BUCKETS
            ],
            moments: vec![
                MomentBucket {
                    id: i64::MIN,
                    n: 0.0,
                    sum: 0.0,
                    sum_sq: 0.0,
                };
                HISTORY_BUCKETS
            ],
            red: false,
            lagged: VecDeque::with_capacity(MAX_LAGGED),
            transitions: [[0.0; MAX_LEVELS]; MAX_LEVELS],
            faded_at: f64::NEG_INFINITY,
        }
    }

    /// Feeds the value scraped at `now` and returns its anomaly score.
    /// Non-finite values (a scrape without traffic) score 0 and leave the
    /// state untouched.
    pub fn update(&mut self, now: Time, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        let t = now.as_secs_f64();
        let warm = t - *self.first.get_or_insert(t) >= self.cfg.warmup_s;
        let range = self.trailing_range(t);
        let novel = warm
            && range.is_some_and(|(lo, hi)| {
                let tolerance = (hi - lo) * self.cfg.spatial_tolerance;
                x > hi + tolerance || x < lo - tolerance
            });
        self.widen_range(t, x);
        let distance = self.distance(t, x);
        let surprise = if self.cfg.transition_levels < 2 {
            distance
        } else {
            distance * self.transition_surprise(t, x, range)
        };
        let average = self.average(t, surprise);
        let (mean, spread) = self.moments(t, average);
        if !warm {
            return 0.0;
        }
        let mut tail = normal_tail((average - mean) / spread.max(MIN_SPREAD));
        let red = tail <= RED_TAIL;
        if red && self.red {
            tail = YELLOW_TAIL;
        }
        self.red = red;
        if novel {
            1.0
        } else {
            log_likelihood(1.0 - tail)
        }
    }

    fn bucket(t: f64, window_s: f64, buckets: usize) -> i64 {
        (t / (window_s / buckets as f64)).floor() as i64
    }

    /// The lowest and highest value of the trailing `range_s`, where they
    /// differ.
    fn trailing_range(&self, t: f64) -> Option<(f64, f64)> {
        let now = Self::bucket(t, self.cfg.range_s, RANGE_BUCKETS);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for b in &self.range {
            if b.id > now - RANGE_BUCKETS as i64 {
                lo = lo.min(b.lo);
                hi = hi.max(b.hi);
            }
        }
        (hi > lo).then_some((lo, hi))
    }

    /// One minus the estimated probability of `x`'s level given the level
    /// `transition_lag_s` before; then the transition is counted.
    fn transition_surprise(&mut self, t: f64, x: f64, range: Option<(f64, f64)>) -> f64 {
        let levels = self.cfg.transition_levels.min(MAX_LEVELS);
        let level = range.map_or(0, |(lo, hi)| {
            (((x - lo) / (hi - lo)) * levels as f64).clamp(0.0, levels as f64 - 1.0) as usize
        });
        // Half a millisecond of slack: scrape times carry jitter.
        let due = t - self.cfg.transition_lag_s + 5e-4;
        while self.lagged.len() >= 2 && self.lagged[1].0 <= due {
            self.lagged.pop_front();
        }
        let from = self.lagged.front().filter(|&&(at, _)| at <= due);
        let surprise = match from {
            Some(&(_, from)) => {
                self.fade(t);
                let row = &mut self.transitions[from];
                let total: f64 = row[..levels].iter().sum();
                let p = (row[level] + 0.5) / (total + 0.5 * levels as f64);
                row[level] += 1.0;
                1.0 - p
            }
            None => 0.0,
        };
        if self.lagged.len() == MAX_LAGGED {
            self.lagged.pop_front();
        }
        self.lagged.push_back((t, level));
        surprise
    }

    /// Fades the transition counts by `exp(-elapsed / history_s)`.
    fn fade(&mut self, t: f64) {
        let levels = self.cfg.transition_levels.min(MAX_LEVELS);
        if self.faded_at.is_finite() {
            let keep = (-(t - self.faded_at) / self.cfg.history_s).exp();
            for row in &mut self.transitions[..levels] {
                for c in &mut row[..levels] {
                    *c *= keep;
                }
            }
        }
        self.faded_at = t;
    }

    fn widen_range(&mut self, t: f64, x: f64) {
        let id = Self::bucket(t, self.cfg.range_s, RANGE_BUCKETS);
        let b = &mut self.range[id.rem_euclid(RANGE_BUCKETS as i64) as usize];
        if b.id == id {
            b.lo = b.lo.min(x);
            b.hi = b.hi.max(x);
        } else {
            *b = RangeBucket { id, lo: x, hi: x };
        }
    }

    /// The log-scaled robust distance of `x` from the baseline, then `x`
    /// joins the baseline.
    fn distance(&mut self, t: f64, x: f64) -> f64 {
        drop_until(&mut self.baseline, t - self.cfg.baseline_s);
        let distance = if self.baseline.len() >= MIN_BASELINE {
            self.scratch.clear();
            self.scratch.extend(self.baseline.iter().map(|&(_, v)| v));
            let centre = median(&mut self.scratch);
            for v in &mut self.scratch {
                *v = (*v - centre).abs();
            }
            let mad = median(&mut self.scratch);
            // 1.4826 MAD estimates the standard deviation of normal data;
            // the floor relative to the level stops a constant signal from
            // dividing by zero.
            let scale = (1.4826 * mad).max(1e-3 * centre.abs()).max(1e-9);
            let z = (x - centre).abs() / scale;
            ((1.0 + z).ln() / (1.0 + self.cfg.surprise_at_one).ln()).min(1.0)
        } else {
            0.0
        };
        if self.baseline.len() == MAX_BASELINE {
            self.baseline.pop_front();
        }
        self.baseline.push_back((t, x));
        distance
    }

    fn average(&mut self, t: f64, surprise: f64) -> f64 {
        drop_until(&mut self.surprises, t - self.cfg.averaging_s);
        if self.surprises.len() == MAX_AVERAGING {
            self.surprises.pop_front();
        }
        self.surprises.push_back((t, surprise));
        self.surprises.iter().map(|&(_, s)| s).sum::<f64>() / self.surprises.len() as f64
    }

    /// Adds `average` to the history and returns the history's mean and
    /// standard deviation.
    fn moments(&mut self, t: f64, average: f64) -> (f64, f64) {
        let id = Self::bucket(t, self.cfg.history_s, HISTORY_BUCKETS);
        let b = &mut self.moments[id.rem_euclid(HISTORY_BUCKETS as i64) as usize];
        if b.id != id {
            *b = MomentBucket {
                id,
                n: 0.0,
                sum: 0.0,
                sum_sq: 0.0,
            };
        }
        b.n += 1.0;
        b.sum += average;
        b.sum_sq += average * average;
        let (mut n, mut sum, mut sum_sq) = (0.0, 0.0, 0.0);
        for b in &self.moments {
            if b.id > id - HISTORY_BUCKETS as i64 {
                n += b.n;
                sum += b.sum;
                sum_sq += b.sum_sq;
            }
        }
        let mean = sum / n;
        (mean, (sum_sq / n - mean * mean).max(0.0).sqrt())
    }
}

/// Drops the `(time, value)` entries at or before `cutoff`, oldest first.
fn drop_until(q: &mut VecDeque<(f64, f64)>, cutoff: f64) {
    while q.front().is_some_and(|&(t, _)| t <= cutoff) {
        q.pop_front();
    }
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// P(Z > z) for a standard normal Z (Abramowitz and Stegun 7.1.26 on erfc).
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    // Numerical Recipes' erfcc: fractional error below 1.2e-7 everywhere.
    let y = t
        * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { y } else { 2.0 - y }
}

/// NAB's `computeLogLikelihood`: maps a likelihood onto [0, 1] so that
/// 0.99999 is about 0.5 and only near-certainties approach 1.
pub fn log_likelihood(likelihood: f64) -> f64 {
    ((1.000_000_000_1 - likelihood).ln() / -23.025_850_929_940_46).clamp(0.0, 1.0)
}

/// Scores a whole series with a fresh detector.
pub fn score_series(cfg: &DetectorConfig, times: &[Time], values: &[f64]) -> Vec<f64> {
    let mut d = AnomalyDetector::new(cfg.clone());
    times
        .iter()
        .zip(values)
        .map(|(&t, &x)| d.update(t, x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(interval_s: f64, n: usize) -> Vec<Time> {
        (0..n)
            .map(|i| Time::from_secs_f64(interval_s * i as f64))
            .collect()
    }

    fn noise(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 10.0 + ((i * 7919) % 13) as f64 * 0.1)
            .collect()
    }

    #[test]
    fn a_level_shift_scores_high_and_noise_scores_low() {
        let mut values = noise(600);
        values.extend((0..20).map(|i| 30.0 + (i % 3) as f64));
        let s = score_series(&DetectorConfig::default(), &every(60.0, 620), &values);
        let quiet = s[100..600].iter().copied().fold(0.0, f64::max);
        let shift = s[600..620].iter().copied().fold(0.0, f64::max);
        assert!(quiet < 0.5, "noise scored {quiet}");
        assert!(shift > 0.9, "shift scored {shift}");
    }

    #[test]
    fn warm_up_is_the_same_time_at_any_scrape_interval() {
        let cfg = DetectorConfig::default();
        for interval in [5.0, 60.0, 300.0] {
            let n = (2.0 * cfg.warmup_s / interval) as usize + 2;
            // A wild value at every scrape: only the warm-up keeps it at 0.
            let values: Vec<f64> = (0..n).map(|i| (i % 2) as f64 * 1e6 * i as f64).collect();
            let times = every(interval, n);
            let s = score_series(&cfg, &times, &values);
            let first = times[s
                .iter()
                .position(|&v| v > 0.0)
                .expect("scores after warm-up")];
            assert_eq!(
                first,
                Time::from_secs_f64((cfg.warmup_s / interval).ceil() * interval),
                "{interval} s scrapes"
            );
        }
    }

    #[test]
    fn a_lasting_anomaly_is_one_alarm() {
        // A spike inside the range seen so far (no spatial novelty): the
        // likelihood turns red once and repeats as yellow.
        let mut values = noise(2_000);
        values[100] = 100.0;
        values.extend((0..30).map(|i| 40.0 + (i % 2) as f64));
        let s = score_series(&DetectorConfig::default(), &every(60.0, 2_030), &values);
        let alarms = s[1_000..].iter().filter(|&&v| v >= 0.5).count();
        assert_eq!(alarms, 1, "{:?}", &s[2_000..]);
    }

    #[test]
    fn the_range_is_forgotten_after_a_week() {
        let cfg = DetectorConfig::default();
        let hour = 3_600.0;
        let n = 24 * 10;
        let mut values = noise(n);
        values[30] = 100.0;
        // Back near the old peak eight days later: novel again.
        values[30 + 8 * 24] = 90.0;
        let s = score_series(&cfg, &every(hour, n), &values);
        assert_eq!(s[30 + 8 * 24], 1.0);
        // Within the week the same value is not spatially novel.
        let mut early = noise(n);
        early[30] = 100.0;
        early[30 + 3 * 24] = 90.0;
        let s = score_series(&cfg, &every(hour, n), &early);
        assert!(s[30 + 3 * 24] < 1.0);
    }

    #[test]
    fn a_usual_transition_is_no_surprise_and_an_unusual_one_is() {
        let cfg = DetectorConfig::default();
        let mut d = AnomalyDetector::new(cfg.clone());
        let range = Some((0.0, 100.0));
        let lag = cfg.transition_lag_s;
        // Low and high in turn, one transition lag apart: each move is the
        // usual one.
        let level = |i: usize| if i.is_multiple_of(2) { 10.0 } else { 90.0 };
        for i in 0..400 {
            d.transition_surprise(lag * i as f64, level(i), range);
        }
        let usual = d.transition_surprise(lag * 400.0, level(400), range);
        assert!(usual < 0.01, "usual move: {usual}");
        // Staying high after high was never seen.
        let mut fresh = d.clone();
        let unusual = fresh.transition_surprise(lag * 400.0, level(399), range);
        assert!(unusual > 0.99, "unusual move: {unusual}");
        // The transition is taken across the lag, not from the latest
        // scrape: twelve scrapes in between do not change it.
        let mut dense = d.clone();
        for k in 1..12 {
            dense.transition_surprise(lag * 400.0 + k as f64 * lag / 12.0, 50.0, range);
        }
        let later = dense.transition_surprise(lag * 401.0, level(401), range);
        assert!(later < 0.02, "lagged move: {later}");
    }

    #[test]
    fn updates_do_not_allocate() {
        let mut d = AnomalyDetector::new(DetectorConfig::default());
        let caps = |d: &AnomalyDetector| {
            (
                d.baseline.capacity(),
                d.scratch.capacity(),
                d.surprises.capacity(),
                d.lagged.capacity(),
            )
        };
        let before = caps(&d);
        for (i, x) in noise(5_000).into_iter().enumerate() {
            d.update(Time::from_secs(i as u64), x);
        }
        assert_eq!(caps(&d), before);
    }

    #[test]
    fn tail_matches_known_values() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-7);
        assert!((normal_tail(-1.0) - 0.841_344_746).abs() < 1e-7);
    }
}
