//! Load curves: request rate as a function of virtual time.
//!
//! A curve answers two questions: the rate at `t`, and an upper bound of the
//! rate over an interval. The bound makes arrival generation exact Poisson by
//! thinning (Lewis and Shedler 1979): candidates at the bound's rate, each kept
//! with probability `rate(t) / bound`.
//!
//! Random curve parts (noise, burst schedules) are drawn once, when the curve
//! is compiled, from their own seeded stream, so the curve itself is a pure
//! function of time.

use std::sync::Arc;

use crate::CsvError;
use crate::rng::{Stream, Subsystem};
use crate::scenario::{CurveSpec, LoadedScenario};
use crate::time::Time;

/// A recorded load shape, `t_seconds,value` rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub t: Vec<f64>,
    pub value: Vec<f64>,
}

impl Trace {
    /// Parses `t_seconds,value` CSV (a header line is required, as in the
    /// shipped traces). Times must be strictly increasing, values finite and
    /// non-negative.
    pub fn parse_csv(text: &str) -> Result<Trace, CsvError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim().eq_ignore_ascii_case("t_seconds,value") => {}
            Some((_, h)) => {
                return Err(CsvError {
                    line: 1,
                    message: format!("expected header `t_seconds,value`, found `{}`", h.trim()),
                });
            }
            None => {
                return Err(CsvError {
                    line: 1,
                    message: "empty trace file".into(),
                });
            }
        }
        let (mut t, mut value) = (Vec::new(), Vec::new());
        for (i, line) in lines {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split(',');
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(CsvError {
                    line: line_no,
                    message: format!("expected two columns, found `{line}`"),
                });
            };
            let num = |s: &str, what: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| CsvError {
                        line: line_no,
                        message: format!("{what} `{}` is not a finite number", s.trim()),
                    })
            };
            let (ts, v) = (num(a, "t_seconds")?, num(b, "value")?);
            if v < 0.0 {
                return Err(CsvError {
                    line: line_no,
                    message: format!("value {v} is negative"),
                });
            }
            if t.last().is_some_and(|&last| ts <= last) {
                return Err(CsvError {
                    line: line_no,
                    message: format!("t_seconds {ts} does not increase"),
                });
            }
            t.push(ts);
            value.push(v);
        }
        if t.len() < 2 {
            return Err(CsvError {
                line: text.lines().count().max(1),
                message: "a trace needs at least two rows".into(),
            });
        }
        Ok(Trace { t, value })
    }

    fn max_value(&self) -> f64 {
        self.value.iter().copied().fold(0.0, f64::max)
    }

    fn mean_value(&self) -> f64 {
        self.value.iter().sum::<f64>() / self.value.len() as f64
    }
}

/// How a trace's raw values become requests per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceScale {
    /// Multiply raw values.
    Factor(f64),
    /// Rescale so the trace's maximum is this rate.
    Peak(f64),
    /// Rescale so the trace's mean is this rate.
    Mean(f64),
}

/// A compiled, evaluable load curve (requests per second).
#[derive(Clone, Debug)]
pub enum Curve {
    Constant(f64),
    Ramp {
        from: f64,
        to: f64,
        start: f64,
        end: f64,
    },
    Step {
        before: f64,
        after: f64,
        at: f64,
    },
    Diurnal {
        mean: f64,
        amplitude: f64,
        period: f64,
        peak: f64,
    },
    FlashCrowd {
        base: f64,
        peak: f64,
        start: f64,
        rise: f64,
        decay: f64,
    },
    /// Piecewise constant: `values[i]` holds on `[i * step, (i + 1) * step)`;
    /// the last value holds afterwards. Bursts and noise compile to this.
    Piecewise {
        step: f64,
        values: Arc<[f64]>,
    },
    Trace {
        trace: Arc<Trace>,
        factor: f64,
        speedup: f64,
        offset: f64,
        looped: bool,
    },
    Sum(Vec<Curve>),
    Product(Vec<Curve>),
}

impl Curve {
    pub fn trace(
        trace: Arc<Trace>,
        scale: TraceScale,
        speedup: f64,
        offset: f64,
        looped: bool,
    ) -> Curve {
        let factor = match scale {
            TraceScale::Factor(f) => f,
            TraceScale::Peak(p) => p / trace.max_value().max(f64::MIN_POSITIVE),
            TraceScale::Mean(m) => m / trace.mean_value().max(f64::MIN_POSITIVE),
        };
        Curve::Trace {
            trace,
            factor,
            speedup,
            offset,
            looped,
        }
    }

    /// On/off bursts: `base` outside bursts, `base * multiplier` inside; gaps
    /// and burst lengths are exponential, drawn over `[0, horizon]`.
    pub fn bursts(
        base: f64,
        multiplier: f64,
        mean_gap: f64,
        mean_len: f64,
        horizon: f64,
        rng: &mut Stream,
    ) -> Curve {
        // Resolve the schedule on a 100 ms grid: fine for load shapes and
        // keeps evaluation O(1).
        let step = 0.1;
        let n = (horizon / step).ceil() as usize + 1;
        let mut values = vec![base; n];
        let mut t = rng.exp(mean_gap);
        while t < horizon {
            let len = rng.exp(mean_len);
            let (a, b) = (
                (t / step) as usize,
                (((t + len) / step) as usize).min(n - 1),
            );
            values[a..=b]
                .iter_mut()
                .for_each(|v| *v = base * multiplier);
            t += len + rng.exp(mean_gap);
        }
        Curve::Piecewise {
            step,
            values: values.into(),
        }
    }

    /// Multiplicative noise with mean 1 and the given coefficient of
    /// variation, lognormal, constant over each `step` seconds.
    pub fn noise(cv: f64, step: f64, horizon: f64, rng: &mut Stream) -> Curve {
        let sigma2 = (1.0 + cv * cv).ln();
        let (sigma, mu) = (sigma2.sqrt(), -0.5 * sigma2);
        let n = (horizon / step).ceil() as usize + 1;
        let values: Vec<f64> = (0..n).map(|_| (mu + sigma * rng.normal()).exp()).collect();
        Curve::Piecewise {
            step,
            values: values.into(),
        }
    }

    /// Requests per second at `t` seconds (never negative). Inlined for
    /// the flat curve, which the arrival process asks once per request;
    /// the others stay out of line.
    #[inline]
    pub fn rate(&self, t: f64) -> f64 {
        match self {
            Curve::Constant(r) => *r,
            _ => self.varying_rate(t),
        }
    }

    #[inline(never)]
    fn varying_rate(&self, t: f64) -> f64 {
        match self {
            Curve::Constant(r) => *r,
            Curve::Ramp {
                from,
                to,
                start,
                end,
            } => {
                if t <= *start {
                    *from
                } else if t >= *end {
                    *to
                } else {
                    from + (to - from) * (t - start) / (end - start)
                }
            }
            Curve::Step { before, after, at } => {
                if t < *at {
                    *before
                } else {
                    *after
                }
            }
            Curve::Diurnal {
                mean,
                amplitude,
                period,
                peak,
            } => (mean * (1.0 + amplitude * (std::f64::consts::TAU * (t - peak) / period).cos()))
                .max(0.0),
            Curve::FlashCrowd {
                base,
                peak,
                start,
                rise,
                decay,
            } => {
                if t < *start {
                    *base
                } else if t < start + rise {
                    base + (peak - base) * (t - start) / rise
                } else {
                    base + (peak - base) * (-(t - start - rise) / decay).exp()
                }
            }
            Curve::Piecewise { step, values } => {
                let i = ((t.max(0.0) / step) as usize).min(values.len() - 1);
                values[i]
            }
            Curve::Trace {
                trace,
                factor,
                speedup,
                offset,
                looped,
            } => factor * trace_value(trace, offset + t * speedup, *looped),
            Curve::Sum(parts) => parts.iter().map(|c| c.rate(t)).sum(),
            Curve::Product(parts) => parts.iter().map(|c| c.rate(t)).product(),
        }
    }

    /// An upper bound of [`Curve::rate`] over `[t0, t1]`.
    pub fn bound(&self, t0: f64, t1: f64) -> f64 {
        match self {
            Curve::Constant(r) => *r,
            Curve::Ramp { .. } | Curve::Step { .. } => self.rate(t0).max(self.rate(t1)),
            Curve::Diurnal {
                mean,
                amplitude,
                period,
                peak,
            } => {
                // A peak lies inside when some integer k has peak + k*period in [t0, t1].
                let k = ((t0 - peak) / period).ceil();
                if peak + k * period <= t1 {
                    mean * (1.0 + amplitude.abs())
                } else {
                    self.rate(t0).max(self.rate(t1))
                }
            }
            Curve::FlashCrowd { start, rise, .. } => {
                let top = (start + rise).clamp(t0, t1);
                self.rate(t0).max(self.rate(t1)).max(self.rate(top))
            }
            Curve::Piecewise { step, values } => {
                let last = values.len() - 1;
                let a = ((t0.max(0.0) / step) as usize).min(last);
                let b = ((t1.max(0.0) / step) as usize).min(last);
                values[a..=b].iter().copied().fold(0.0, f64::max)
            }
            Curve::Trace {
                trace,
                factor,
                speedup,
                offset,
                looped,
            } => {
                let (a, b) = (offset + t0 * speedup, offset + t1 * speedup);
                let mut m = trace_value(trace, a, *looped).max(trace_value(trace, b, *looped));
                let span = trace.t[trace.t.len() - 1] - trace.t[0];
                if *looped && b - a >= span {
                    m = trace.max_value();
                } else {
                    // Interpolation is linear, so the maximum sits on a sample.
                    let (ua, ub) = (wrap(trace, a, *looped), wrap(trace, b, *looped));
                    let samples = |lo: f64, hi: f64| {
                        let i = trace.t.partition_point(|&x| x < lo);
                        let j = trace.t.partition_point(|&x| x <= hi);
                        trace.value[i..j.max(i)].iter().copied().fold(0.0, f64::max)
                    };
                    m = m.max(if ua <= ub {
                        samples(ua, ub)
                    } else {
                        samples(ua, f64::INFINITY).max(samples(f64::NEG_INFINITY, ub))
                    });
                }
                factor * m
            }
            Curve::Sum(parts) => parts.iter().map(|c| c.bound(t0, t1)).sum(),
            Curve::Product(parts) => parts.iter().map(|c| c.bound(t0, t1)).product(),
        }
    }
}

fn wrap(trace: &Trace, x: f64, looped: bool) -> f64 {
    let (first, last) = (trace.t[0], trace.t[trace.t.len() - 1]);
    if looped && (x < first || x > last) {
        first + (x - first).rem_euclid(last - first)
    } else {
        x
    }
}

/// Linear interpolation between samples; the first and last values hold
/// outside the recorded range (unless looped).
fn trace_value(trace: &Trace, x: f64, looped: bool) -> f64 {
    let x = wrap(trace, x, looped);
    let i = trace.t.partition_point(|&s| s <= x);
    if i == 0 {
        return trace.value[0];
    }
    if i >= trace.t.len() {
        return trace.value[trace.t.len() - 1];
    }
    let (t0, t1, v0, v1) = (
        trace.t[i - 1],
        trace.t[i],
        trace.value[i - 1],
        trace.value[i],
    );
    v0 + (v1 - v0) * (x - t0) / (t1 - t0)
}

/// Poisson arrivals of a time-varying rate by thinning, in one-second windows
/// so the bound stays tight.
pub struct ArrivalProcess {
    curve: Curve,
    t: f64,
    /// No arrival after this, in seconds.
    horizon: f64,
    /// The last bound and its mean gap, `1 / bound`: a constant curve (and
    /// most windows of the others) asks for the same one again.
    gap: (f64, f64),
}

impl ArrivalProcess {
    /// Arrivals from time zero up to and including `horizon`.
    pub fn new(curve: Curve, horizon: Time) -> Self {
        ArrivalProcess {
            curve,
            t: 0.0,
            horizon: horizon.as_secs_f64(),
            gap: (f64::NAN, f64::NAN),
        }
    }

    /// The next arrival, or `None` past the horizon.
    pub fn next(&mut self, rng: &mut Stream) -> Option<Time> {
        let horizon = self.horizon;
        while self.t < horizon {
            // `t` is never negative, so truncation is its floor (and needs
            // no libm call).
            let window_end = ((self.t as u64) as f64 + 1.0).min(horizon);
            let bound = match self.curve {
                Curve::Constant(r) => r,
                _ => self.curve.bound(self.t, window_end),
            };
            if bound <= 0.0 {
                self.t = window_end;
                continue;
            }
            if self.gap.0 != bound {
                self.gap = (bound, 1.0 / bound);
            }
            let candidate = self.t + rng.exp(self.gap.1);
            if candidate >= window_end {
                // Memoryless: restart the draw at the window's edge.
                self.t = window_end;
                continue;
            }
            self.t = candidate;
            if rng.uniform() * bound < self.curve.rate(candidate) {
                return Some(Time::from_secs_f64(candidate));
            }
        }
        None
    }
}

/// A curve names a trace file that was not loaded with its scenario.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("trace `{0}` was not loaded with the scenario")]
pub struct MissingTrace(pub String);

/// The highest rate each `[[load]]` reaches over the run, as the run
/// would compile its curve (same random streams), for the request budget
/// that `scenario::parse` enforces.
pub fn peaks(sc: &LoadedScenario) -> Vec<Result<f64, MissingTrace>> {
    compile_loads(sc)
        .map(|c| c.map(|c| c.bound(0.0, sc.spec.duration_s)))
        .collect()
}

/// Each `[[load]]`'s curve as a run compiles it: over the run and one
/// second more, from the load's own stream (the scenario's seed,
/// [`Subsystem::Curves`], the load's index).
pub fn compile_loads(
    sc: &LoadedScenario,
) -> impl Iterator<Item = Result<Curve, MissingTrace>> + '_ {
    let s = &sc.spec;
    let horizon = s.duration_s + 1.0;
    s.loads.iter().enumerate().map(move |(i, l)| {
        let mut rng = Stream::new_indexed(s.seed, Subsystem::Curves, i as u64);
        compile_curve(&l.curve, sc, horizon, &mut rng)
    })
}

pub fn compile_curve(
    c: &CurveSpec,
    sc: &LoadedScenario,
    horizon: f64,
    rng: &mut Stream,
) -> Result<Curve, MissingTrace> {
    Ok(match c {
        CurveSpec::Constant { rate } => Curve::Constant(*rate),
        CurveSpec::Ramp {
            from,
            to,
            start_s,
            end_s,
        } => Curve::Ramp {
            from: *from,
            to: *to,
            start: *start_s,
            end: *end_s,
        },
        CurveSpec::Step {
            before,
            after,
            at_s,
        } => Curve::Step {
            before: *before,
            after: *after,
            at: *at_s,
        },
        CurveSpec::Diurnal {
            mean,
            amplitude,
            period_s,
            peak_s,
        } => Curve::Diurnal {
            mean: *mean,
            amplitude: *amplitude,
            period: *period_s,
            peak: *peak_s,
        },
        CurveSpec::FlashCrowd {
            base,
            peak,
            start_s,
            rise_s,
            decay_s,
        } => Curve::FlashCrowd {
            base: *base,
            peak: *peak,
            start: *start_s,
            rise: *rise_s,
            decay: *decay_s,
        },
        CurveSpec::Bursts {
            base,
            multiplier,
            mean_gap_s,
            mean_length_s,
        } => Curve::bursts(
            *base,
            *multiplier,
            *mean_gap_s,
            *mean_length_s,
            horizon,
            rng,
        ),
        CurveSpec::Noise { cv, step_s } => Curve::noise(*cv, *step_s, horizon, rng),
        CurveSpec::Trace {
            file,
            scale,
            peak,
            mean,
            speedup,
            offset_s,
            looped,
        } => {
            let trace = sc
                .traces
                .get(file)
                .cloned()
                .ok_or_else(|| MissingTrace(file.clone()))?;
            let how = match (scale, peak, mean) {
                (_, Some(p), _) => TraceScale::Peak(*p),
                (_, _, Some(m)) => TraceScale::Mean(*m),
                (Some(f), _, _) => TraceScale::Factor(*f),
                _ => TraceScale::Factor(1.0),
            };
            // Without `peak` or `mean`, raw values are requests per second
            // times `scale`.
            Curve::trace(trace, how, *speedup, *offset_s, *looped)
        }
        CurveSpec::Sum { parts } => Curve::Sum(
            parts
                .iter()
                .map(|p| compile_curve(p, sc, horizon, rng))
                .collect::<Result<_, _>>()?,
        ),
        CurveSpec::Product { parts } => Curve::Product(
            parts
                .iter()
                .map(|p| compile_curve(p, sc, horizon, rng))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Subsystem;

    fn count(curve: Curve, secs: u64, seed: u64) -> usize {
        let mut p = ArrivalProcess::new(curve, Time::from_secs(secs));
        let mut rng = Stream::new(seed, Subsystem::Load);
        std::iter::from_fn(|| p.next(&mut rng)).count()
    }

    #[test]
    fn constant_rate_gives_poisson_count() {
        let n = count(Curve::Constant(200.0), 1000, 1) as f64;
        // mean 200k, sd ~447
        assert!((n - 200_000.0).abs() < 2000.0, "{n}");
    }

    #[test]
    fn ramp_integrates_to_its_area() {
        let n = count(
            Curve::Ramp {
                from: 0.0,
                to: 100.0,
                start: 0.0,
                end: 1000.0,
            },
            1000,
            2,
        ) as f64;
        assert!((n - 50_000.0).abs() < 1200.0, "{n}");
    }

    #[test]
    fn bounds_dominate_rates() {
        let mut rng = Stream::new(5, Subsystem::Curves);
        let trace = Arc::new(Trace {
            t: vec![0.0, 60.0, 120.0, 180.0],
            value: vec![1.0, 5.0, 2.0, 8.0],
        });
        let curves = vec![
            Curve::Diurnal {
                mean: 100.0,
                amplitude: 0.8,
                period: 300.0,
                peak: 70.0,
            },
            Curve::FlashCrowd {
                base: 10.0,
                peak: 500.0,
                start: 50.0,
                rise: 5.0,
                decay: 30.0,
            },
            Curve::bursts(10.0, 4.0, 20.0, 5.0, 400.0, &mut rng),
            Curve::Product(vec![
                Curve::Constant(50.0),
                Curve::noise(0.3, 5.0, 400.0, &mut rng),
            ]),
            Curve::trace(trace.clone(), TraceScale::Peak(400.0), 2.0, 0.0, true),
            Curve::Sum(vec![
                Curve::Step {
                    before: 5.0,
                    after: 50.0,
                    at: 100.5,
                },
                Curve::Ramp {
                    from: 1.0,
                    to: 9.0,
                    start: 10.0,
                    end: 20.0,
                },
            ]),
        ];
        for c in &curves {
            for i in 0..4000 {
                let t0 = i as f64 * 0.1;
                let b = c.bound(t0, t0 + 1.0);
                for k in 0..=10 {
                    let t = t0 + k as f64 * 0.1;
                    assert!(c.rate(t) <= b + 1e-9, "{c:?} at {t}: {} > {b}", c.rate(t));
                }
            }
        }
    }

    #[test]
    fn trace_parse_errors_name_the_line() {
        assert_eq!(
            Trace::parse_csv("t_seconds,value\n0,1\n60,-2\n")
                .unwrap_err()
                .line,
            3
        );
        assert_eq!(
            Trace::parse_csv("t_seconds,value\n0,1\n0,2\n")
                .unwrap_err()
                .line,
            3
        );
        assert_eq!(Trace::parse_csv("time,v\n").unwrap_err().line, 1);
        assert!(
            Trace::parse_csv("t_seconds,value\n0,1\n60,x\n")
                .unwrap_err()
                .message
                .contains("`x`")
        );
        let t = Trace::parse_csv("t_seconds,value\n0,1\n60,3\n").unwrap();
        let c = Curve::trace(Arc::new(t), TraceScale::Factor(2.0), 1.0, 0.0, false);
        assert_eq!(c.rate(30.0), 4.0);
        assert_eq!(c.rate(1e6), 6.0);
    }
}
