//! Time as a value.
//!
//! The simulator advances a virtual clock; the live adapter converts wall-clock
//! time at its edge. Everything in between receives `now` as an argument, so no
//! module outside an adapter ever reads a clock.
//!
//! Integer nanoseconds keep event ordering exact and reproducible: two events
//! scheduled for "the same time" compare equal and are then ordered by their
//! insertion sequence, never by floating-point rounding.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in (virtual or converted wall-clock) time, in nanoseconds since the
/// start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

/// A span of time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(u64);

const NANOS_PER_SEC: f64 = 1e9;

impl Time {
    pub const ZERO: Time = Time(0);
    pub const MAX: Time = Time(u64::MAX);

    pub const fn from_nanos(n: u64) -> Self {
        Time(n)
    }
    pub const fn from_secs(s: u64) -> Self {
        Time(s * 1_000_000_000)
    }
    /// Negative or non-finite inputs clamp to zero; they only arise from bad
    /// arithmetic upstream, and a clamped time is easier to debug than a panic
    /// in the event loop.
    pub fn from_secs_f64(s: f64) -> Self {
        Time(secs_to_nanos(s))
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        nanos_to_f64(self.0) / NANOS_PER_SEC
    }
    /// Whole seconds since the start (floor).
    pub const fn whole_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
    pub fn saturating_sub(self, other: Time) -> Span {
        Span(self.0.saturating_sub(other.0))
    }
}

impl Span {
    pub const ZERO: Span = Span(0);

    pub const fn from_nanos(n: u64) -> Self {
        Span(n)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Span(ms * 1_000_000)
    }
    pub const fn from_secs(s: u64) -> Self {
        Span(s * 1_000_000_000)
    }
    pub fn from_secs_f64(s: f64) -> Self {
        Span(secs_to_nanos(s))
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        nanos_to_f64(self.0) / NANOS_PER_SEC
    }
    /// Whole seconds (floor): what a Kubernetes or Knative field in
    /// seconds holds.
    pub const fn whole_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
}

#[inline]
fn secs_to_nanos(s: f64) -> u64 {
    // Adding a half rounds (n is positive) without a libm call on the
    // simulator's hottest conversion.
    let n = s * NANOS_PER_SEC + 0.5;
    if s > 0.0 && n < I64_RANGE {
        // Within i64's range the signed conversion is one instruction and
        // gives the same integer as the saturating unsigned one below.
        n as i64 as u64
    } else if s.is_finite() && s > 0.0 {
        // `as` saturates.
        n as u64
    } else {
        0
    }
}

/// 2^63: below it a non-negative value converts to and from `i64` exactly as
/// to and from `u64`.
const I64_RANGE: f64 = 9_223_372_036_854_775_808.0;

/// `n as f64`, through the one-instruction signed conversion where `n` fits
/// (every time and span short of 292 years; `Time::MAX` takes the other
/// way).
#[inline]
fn nanos_to_f64(n: u64) -> f64 {
    if n <= i64::MAX as u64 {
        n as i64 as f64
    } else {
        n as f64
    }
}

impl Add<Span> for Time {
    type Output = Time;
    fn add(self, rhs: Span) -> Time {
        Time(self.0.saturating_add(rhs.0))
    }
}
impl AddAssign<Span> for Time {
    fn add_assign(&mut self, rhs: Span) {
        *self = *self + rhs;
    }
}
impl Sub<Time> for Time {
    type Output = Span;
    fn sub(self, rhs: Time) -> Span {
        self.saturating_sub(rhs)
    }
}
impl Add for Span {
    type Output = Span;
    fn add(self, rhs: Span) -> Span {
        Span(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(Time::from_secs_f64(1.5).as_nanos(), 1_500_000_000);
        assert_eq!(Time::from_secs_f64(-3.0), Time::ZERO);
        assert_eq!(Time::from_secs_f64(f64::NAN), Time::ZERO);
        assert_eq!(
            (Time::from_secs(2) + Span::from_millis(250)).as_secs_f64(),
            2.25
        );
        assert_eq!(Time::from_secs(1) - Time::from_secs(2), Span::ZERO);
        assert_eq!(Time::from_secs_f64(59.999).whole_secs(), 59);
    }

    /// The fast conversions give what the plain unsigned ones give, at the
    /// edges of the signed range too.
    #[test]
    fn fast_conversions_agree_with_the_plain_ones() {
        let plain_nanos = |s: f64| {
            if s.is_finite() && s > 0.0 {
                (s * NANOS_PER_SEC + 0.5) as u64
            } else {
                0
            }
        };
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut secs = vec![
            0.0,
            -0.0,
            1e-12,
            4e-10,
            5e-10,
            1.0,
            9.223372036854775e9,
            9.223372036854776e9,
            9.3e9,
            1.8446744073709552e10,
            1e30,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -1.0,
        ];
        let mut nanos = vec![
            0,
            1,
            i64::MAX as u64 - 1,
            i64::MAX as u64,
            1 << 63,
            u64::MAX,
        ];
        for _ in 0..100_000 {
            x = crate::rng::splitmix64(x);
            secs.push(f64::from_bits(x));
            secs.push((x >> 11) as f64 / (1u64 << 53) as f64 * 1e5);
            nanos.push(x);
            nanos.push(x >> 20);
        }
        for s in secs {
            assert_eq!(secs_to_nanos(s), plain_nanos(s), "{s:e}");
        }
        for n in nanos {
            assert_eq!(nanos_to_f64(n).to_bits(), (n as f64).to_bits(), "{n}");
        }
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp with microseconds, the form
/// of the Kubernetes API's times (`2026-12-01T17:00:00.250000Z`). A pure
/// conversion: the caller supplies the instant.
pub fn rfc3339(unix_s: f64) -> String {
    let micros = (unix_s.max(0.0) * 1e6).round() as i64;
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's
    // `civil_from_days`, http://howardhinnant.github.io/date_algorithms.html).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod rfc3339_tests {
    #[test]
    fn known_instants() {
        assert_eq!(super::rfc3339(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::rfc3339(1_796_144_400.25),
            "2026-12-01T17:00:00.250000Z"
        );
        assert_eq!(super::rfc3339(951_782_400.0), "2000-02-29T00:00:00.000000Z");
    }
}

/// The unix seconds of an RFC 3339 UTC timestamp (`Z` or `+00:00`, with or
/// without fractional seconds); `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's `days_from_civil`, the inverse of `rfc3339`'s.
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// The unix seconds of a UTC timestamp as monitoring exports write it:
/// RFC 3339, or a space for the `T` (`2014-01-16 00:05:00`, NAB), or Go's
/// `time.Time` string (`2022-08-23 11:59:28.41 +0000 UTC m=+0.39`).
pub fn parse_utc(s: &str) -> Option<f64> {
    let s = s.trim();
    let s = s.split_once(" +0000").map_or(s, |(head, _)| head);
    if let Some((date, time)) = s.split_once(' ') {
        return parse_rfc3339(&format!(
            "{date}T{}Z",
            time.strip_suffix('Z').unwrap_or(time)
        ));
    }
    parse_rfc3339(s)
}

#[cfg(test)]
mod parse_rfc3339_tests {
    #[test]
    fn round_trips() {
        for t in [0.0, 951_782_400.0, 1_796_144_400.25] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339(t)), Some(t));
        }
        assert_eq!(
            super::parse_rfc3339("2026-12-01T17:00:00Z"),
            Some(1_796_144_400.0)
        );
        assert_eq!(super::parse_rfc3339("2026-13-01T17:00:00Z"), None);
        for (text, want) in [
            ("2026-12-01 17:00:00", 1_796_144_400.0),
            ("2026-12-01T17:00:00Z", 1_796_144_400.0),
            ("2026-12-01 17:00:00.25 +0000 UTC m=+0.39", 1_796_144_400.25),
        ] {
            assert_eq!(super::parse_utc(text), Some(want), "{text}");
        }
        assert_eq!(super::parse_utc("yesterday"), None);
    }
}
