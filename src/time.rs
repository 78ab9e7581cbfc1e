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
        self.0 as f64 / NANOS_PER_SEC
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
        self.0 as f64 / NANOS_PER_SEC
    }
}

fn secs_to_nanos(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        let n = s * NANOS_PER_SEC;
        // `as` saturates; adding a half rounds (n is positive) without a
        // libm call on the simulator's hottest conversion.
        (n + 0.5) as u64
    } else {
        0
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
}
