//! A controller inside a wrapper that ticks faster than it does: the
//! healing controller (every second) and rollout analysis (every 5 s)
//! each hold their scaler this way, so the scaler syncs on its own period
//! whatever the wrapper's.

use super::{Command, Controller, Observation};
use crate::metrics::ServiceMetrics;
use crate::time::Time;

pub struct Paced {
    inner: Box<dyn Controller>,
    next: Time,
}

impl Paced {
    /// `inner`, first due one period after time zero, as it would be on its
    /// own, so wrapping it changes nothing else (`handle_start` moves this
    /// to the driver's start).
    pub fn new(inner: Box<dyn Controller>) -> Self {
        let next = Time::ZERO + inner.period();
        Paced { inner, next }
    }

    /// The driver starts at `now`: the first tick is one period later.
    pub fn handle_start(&mut self, now: Time) {
        self.next = now + self.inner.period();
        self.inner.handle_start(now);
    }

    /// Hands `obs` on when a period has passed since the last tick; whether
    /// it did (its commands are then in `poll_command`).
    pub fn handle_observation(&mut self, now: Time, obs: &Observation) -> bool {
        if now < self.next {
            return false;
        }
        self.inner.handle_observation(now, obs);
        self.next = now + self.inner.period();
        true
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.inner.poll_command()
    }

    pub fn handle_history(&mut self, service: &str, scrapes: &[ServiceMetrics]) {
        self.inner.handle_history(service, scrapes);
    }
}
