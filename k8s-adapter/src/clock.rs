//! Wall-clock time converted at the adapter's edge: the control core only
//! ever sees `Time` values, counted from the adapter's start and scaled by
//! `time_scale` (a served simulation may run faster than real time).

use selfheal_core::time::Time;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    /// Unix seconds at core time zero.
    pub origin: f64,
    pub time_scale: f64,
}

impl Clock {
    pub fn core_time(&self, unix: f64) -> Time {
        Time::from_secs_f64((unix - self.origin).max(0.0) * self.time_scale)
    }

    /// The unix instant of core time `t` (the inverse of `core_time`).
    pub fn unix(&self, t: Time) -> f64 {
        self.origin + t.as_secs_f64() / self.time_scale
    }

    /// Unix seconds now (the one place the adapter reads the clock).
    pub fn wall_now() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}
