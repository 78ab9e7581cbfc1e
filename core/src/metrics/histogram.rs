//! Prometheus-style latency histograms and `histogram_quantile`.
//!
//! The simulator records latencies into these buckets and computes
//! percentiles from bucket deltas over a rate window, exactly as a PromQL
//! `histogram_quantile(q, rate(x_bucket[w]))` does on a live cluster. The live
//! adapter calls the same [`histogram_quantile`], so a model trained on
//! simulated metrics sees the same distribution live.

use std::sync::Arc;

/// Upper bounds (seconds, `le`) of a histogram's finite buckets, ascending.
/// The implicit last bucket is `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    bounds: Arc<[f64]>,
    /// Where [`Buckets::index_of`] starts its walk, by the value's cell.
    cells: Option<Cells>,
}

/// Positive floats cut into cells by their exponent and their mantissa's
/// top `CELL_BITS` bits (a cell is `bits >> (52 - CELL_BITS)`, ascending
/// with the value), and for each cell from the first bound's to the last
/// one's, how many bounds lie below the cell's smallest value. A value's
/// bucket is then that count plus a short walk over the bounds inside its
/// cell: exact for any bounds, and one step at most for buckets that grow
/// by more than 1/32 of a doubling each (the default grows by 1/8).
#[derive(Clone, Debug, PartialEq)]
struct Cells {
    first: u64,
    below: Arc<[u16]>,
}

const CELL_BITS: u32 = 5;
const CELL_SHIFT: u32 = 52 - CELL_BITS;
/// Bounds spread over more cells than this (more than 512 doublings) are
/// searched by bisection instead.
const MAX_CELLS: u64 = 1 << 14;

impl Cells {
    fn of(bounds: &[f64]) -> Option<Cells> {
        let cell = |v: f64| v.to_bits() >> CELL_SHIFT;
        let (first, last) = (cell(bounds[0]), cell(*bounds.last()?));
        if last - first >= MAX_CELLS || bounds.len() > u16::MAX as usize {
            return None;
        }
        let below = (first..=last)
            .map(|c| {
                let smallest = f64::from_bits(c << CELL_SHIFT);
                bounds.partition_point(|&b| b < smallest) as u16
            })
            .collect();
        Some(Cells { first, below })
    }
}

/// Why bucket bounds cannot make a histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BucketsError {
    #[error("a histogram needs at least one finite bucket")]
    Empty,
    #[error("bucket bounds must be finite and positive")]
    NotPositive,
    #[error("bucket bounds must be strictly ascending")]
    NotAscending,
}

impl Buckets {
    /// Buckets from explicit bounds; they must be finite, positive and strictly
    /// ascending.
    pub fn new(bounds: Vec<f64>) -> Result<Self, BucketsError> {
        if bounds.is_empty() {
            return Err(BucketsError::Empty);
        }
        if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
            return Err(BucketsError::NotPositive);
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(BucketsError::NotAscending);
        }
        Ok(Buckets {
            cells: Cells::of(&bounds),
            bounds: bounds.into(),
        })
    }

    /// Exponential buckets `start * factor^i` up to and including the first
    /// bound at or above `end`.
    pub fn exponential(start: f64, factor: f64, end: f64) -> Self {
        assert!(start > 0.0 && factor > 1.0 && end > start);
        let mut bounds = Vec::new();
        let mut b = start;
        while b < end * (1.0 + 1e-12) {
            bounds.push(b);
            b *= factor;
        }
        bounds.push(b);
        Buckets {
            cells: Cells::of(&bounds),
            bounds: bounds.into(),
        }
    }

    /// The simulator's default: 0.1 ms to about 2 min with eight buckets per
    /// doubling, so that linear interpolation inside a bucket stays within
    /// about 1 % for smooth latency distributions.
    pub fn default_latency() -> Self {
        Self::exponential(1e-4, 2f64.powf(0.125), 120.0)
    }

    /// The finite upper bounds.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Number of buckets including `+Inf`.
    pub fn len(&self) -> usize {
        self.bounds.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Index of the bucket a value falls in (`le` semantics: a value equal to
    /// a bound belongs to that bound's bucket).
    #[inline]
    pub fn index_of(&self, value: f64) -> usize {
        let b = &self.bounds;
        // At or below the first bound, and NaN: the first bucket. Bounds
        // are positive, so every value past here is positive too.
        if value.is_nan() || value <= b[0] {
            return 0;
        }
        let Some(cells) = &self.cells else {
            return b.partition_point(|&x| x < value);
        };
        let c = (value.to_bits() >> CELL_SHIFT) - cells.first;
        let mut i = cells
            .below
            .get(c as usize)
            .or(cells.below.last())
            .map_or(0, |&n| n as usize);
        while i < b.len() && b[i] < value {
            i += 1;
        }
        i
    }
}

/// Non-cumulative bucket counts plus sum and count, as a Prometheus client
/// library keeps them.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(buckets: &Buckets) -> Self {
        Histogram {
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }

    #[inline]
    pub fn observe(&mut self, buckets: &Buckets, value: f64) {
        self.counts[buckets.index_of(value)] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn sum(&self) -> f64 {
        self.sum
    }
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// `self - earlier`, the increase over a window (counters never go down
    /// within one run).
    pub fn delta(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a - b)
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The `q`-quantile over everything recorded, by [`histogram_quantile`].
    pub fn quantile(&self, buckets: &Buckets, q: f64) -> f64 {
        let mut cum = 0.0;
        let pairs: Vec<(f64, f64)> = buckets
            .bounds()
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(le, &c)| {
                cum += c as f64;
                (le, cum)
            })
            .collect();
        histogram_quantile(q, &pairs)
    }
}

/// Cumulative buckets made monotone (a decreasing count, a scrape race, is
/// raised to the previous one, as Prometheus does) and their total; `None`
/// without a `+Inf` bucket or without observations.
fn monotone(buckets: &[(f64, f64)]) -> Option<(Vec<(f64, f64)>, f64)> {
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return None;
    }
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    let mut max = f64::NEG_INFINITY;
    for &(le, c) in buckets {
        max = max.max(c);
        out.push((le, max));
    }
    let total = out[out.len() - 1].1;
    (total != 0.0).then_some((out, total))
}

/// PromQL's `histogram_quantile` on one series of cumulative buckets
/// `(le, cumulative_count)`, sorted by `le`, the last one `+Inf`.
///
/// Reproduces Prometheus `promql/quantile.go` (`bucketQuantile`): NaN without
/// observations or without a `+Inf` bucket; `-Inf`/`+Inf` for `q` outside
/// [0, 1]; a rank that falls in the `+Inf` bucket answers the largest finite
/// bound; otherwise linear interpolation inside the bucket, with the first
/// bucket starting at 0 when its bound is positive. Cumulative counts that
/// decrease (a scrape race) are made monotone first, as Prometheus does.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some((monotone, total)) = monotone(buckets) else {
        return f64::NAN;
    };
    let rank = q * total;
    let b = monotone
        .partition_point(|&(_, c)| c < rank)
        .min(monotone.len() - 1);
    if b == monotone.len() - 1 {
        return monotone[monotone.len() - 2].0;
    }
    if b == 0 && monotone[0].0 <= 0.0 {
        return monotone[0].0;
    }
    let (start, prev) = if b == 0 {
        (0.0, 0.0)
    } else {
        (monotone[b - 1].0, monotone[b - 1].1)
    };
    let (end, count) = monotone[b];
    if count == prev {
        return end;
    }
    start + (end - start) * ((rank - prev) / (count - prev))
}

/// The fraction of observations at or below `bound`, from cumulative
/// `(le, count)` buckets sorted by bound and ending with `+Inf`: the inverse
/// of [`histogram_quantile`], with the same linear interpolation inside a
/// bucket (the first starting at 0) and the same monotone repair. NaN
/// without observations or without a `+Inf` bucket; a bound beyond the
/// largest finite one counts everything up to it.
pub fn histogram_fraction(bound: f64, buckets: &[(f64, f64)]) -> f64 {
    let Some((monotone, total)) = monotone(buckets).filter(|_| !bound.is_nan()) else {
        return f64::NAN;
    };
    let finite = &monotone[..monotone.len() - 1];
    let b = finite.partition_point(|&(le, _)| le < bound);
    let below = if b == finite.len() {
        finite[finite.len() - 1].1
    } else {
        let (start, prev) = if b == 0 { (0.0, 0.0) } else { finite[b - 1] };
        let (end, count) = finite[b];
        if end <= start {
            count
        } else {
            prev + (count - prev) * ((bound - start).max(0.0) / (end - start)).min(1.0)
        }
    };
    (below / total).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cumulative(pairs: &[(f64, f64)]) -> Vec<(f64, f64)> {
        pairs.to_vec()
    }

    #[test]
    fn matches_prometheus_documented_cases() {
        // Buckets le=0.1:10, 0.2:30, 0.5:60, +Inf:60 (PromQL docs style).
        let b = cumulative(&[(0.1, 10.0), (0.2, 30.0), (0.5, 60.0), (f64::INFINITY, 60.0)]);
        // rank 30 = top of the 0.2 bucket.
        assert!((histogram_quantile(0.5, &b) - 0.2).abs() < 1e-12);
        // rank 6 inside the first bucket: 0 + 0.1 * 6/10.
        assert!((histogram_quantile(0.1, &b) - 0.06).abs() < 1e-12);
        // rank 57 in the 0.5 bucket: 0.2 + 0.3 * 27/30.
        assert!((histogram_quantile(0.95, &b) - 0.47).abs() < 1e-12);
        assert_eq!(histogram_quantile(-0.1, &b), f64::NEG_INFINITY);
        assert_eq!(histogram_quantile(1.1, &b), f64::INFINITY);
    }

    #[test]
    fn rank_in_inf_bucket_returns_largest_finite_bound() {
        let b = cumulative(&[(0.1, 1.0), (0.2, 2.0), (f64::INFINITY, 10.0)]);
        assert_eq!(histogram_quantile(0.99, &b), 0.2);
    }

    #[test]
    fn empty_or_malformed_is_nan() {
        assert!(histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert!(histogram_quantile(0.5, &[(0.1, 3.0), (0.2, 4.0)]).is_nan());
    }

    #[test]
    fn non_monotone_counts_are_fixed() {
        let b = cumulative(&[(0.1, 10.0), (0.2, 8.0), (f64::INFINITY, 20.0)]);
        assert!(histogram_quantile(0.25, &b) <= 0.1);
    }

    #[test]
    fn index_of_uses_le_semantics() {
        let bk = Buckets::new(vec![0.1, 0.2]).unwrap();
        assert_eq!(bk.index_of(0.1), 0);
        assert_eq!(bk.index_of(0.1000001), 1);
        assert_eq!(bk.index_of(5.0), 2);
        assert!(Buckets::new(vec![0.2, 0.1]).is_err());
    }

    #[test]
    fn fast_index_agrees_with_binary_search() {
        // The default, Prometheus' default buckets (several bounds in one
        // cell), and bounds too far apart for cells.
        for bk in [
            Buckets::default_latency(),
            Buckets::new(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.01, 1.02, 2.5, 5.0, 10.0,
            ])
            .unwrap(),
            Buckets::new(vec![1e-300, 1.0, 1e300]).unwrap(),
        ] {
            let mut s = crate::rng::Stream::new(9, crate::rng::Subsystem::Metrics);
            let mut values: Vec<f64> = (0..100_000)
                .map(|_| (s.uniform() * 30.0 - 16.0).exp2())
                .collect();
            values.extend(
                bk.bounds()
                    .iter()
                    .flat_map(|&b| [b, b * (1.0 + 1e-15), b * (1.0 - 1e-15)]),
            );
            values.extend([0.0, -1.0, 1e-9, 1e9, f64::INFINITY, f64::NAN]);
            for v in values {
                assert_eq!(
                    bk.index_of(v),
                    bk.bounds().partition_point(|&x| x < v),
                    "value {v}"
                );
            }
        }
    }

    #[test]
    fn fine_buckets_recover_exponential_p99() {
        let bk = Buckets::default_latency();
        let mut h = Histogram::new(&bk);
        let mut s = crate::rng::Stream::new(3, crate::rng::Subsystem::Metrics);
        for _ in 0..200_000 {
            h.observe(&bk, s.exp(0.05));
        }
        let p99 = h.quantile(&bk, 0.99);
        let exact = 0.05 * 100f64.ln();
        assert!((p99 / exact - 1.0).abs() < 0.02, "p99 {p99} vs {exact}");
    }

    #[test]
    fn fraction_inverts_quantile() {
        let b = [
            (0.05, 10.0),
            (0.1, 20.0),
            (0.2, 30.0),
            (f64::INFINITY, 32.0),
        ];
        for q in [0.1, 0.3, 0.5, 0.62, 0.9] {
            let x = histogram_quantile(q, &b);
            assert!((histogram_fraction(x, &b) - q).abs() < 1e-12, "q {q}");
        }
        assert_eq!(histogram_fraction(0.1, &b), 20.0 / 32.0);
        assert_eq!(histogram_fraction(0.0, &b), 0.0);
        // Beyond the largest finite bound: what is known to lie below it.
        assert_eq!(histogram_fraction(5.0, &b), 30.0 / 32.0);
        // A scrape race (a decreasing count) is repaired first.
        assert_eq!(
            histogram_fraction(0.1, &[(0.05, 10.0), (0.1, 8.0), (f64::INFINITY, 10.0)]),
            1.0
        );
        assert!(histogram_fraction(0.1, &[(0.1, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert!(histogram_fraction(0.1, &[(0.1, 1.0)]).is_nan());
    }
}
