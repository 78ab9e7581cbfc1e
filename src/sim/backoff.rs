//! kubelet's CrashLoopBackOff.
//!
//! Upstream: kubelet `MaxContainerBackOff` (300 s) and client-go
//! `util/flowcontrol/backoff.go`: the delay before restart n is
//! `initial * 2^(n-1)`, capped at the maximum, and the sequence starts over
//! once a container has run cleanly for the reset period (10 min).

use crate::time::{Span, Time};

#[derive(Clone, Debug)]
pub struct CrashLoopBackOff {
    initial: Span,
    max: Span,
    reset_after: Span,
    next: Span,
}

impl CrashLoopBackOff {
    pub fn new(initial: Span, max: Span, reset_after: Span) -> Self {
        CrashLoopBackOff {
            initial,
            max,
            reset_after,
            next: initial,
        }
    }

    /// The container that started at `started` died at `now`: how long the
    /// kubelet waits before starting it again.
    pub fn on_exit(&mut self, started: Time, now: Time) -> Span {
        if now - started >= self.reset_after {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next =
            Span::from_nanos((self.next.as_nanos().saturating_mul(2)).min(self.max.as_nanos()));
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_seconds_to_the_cap_and_resets_after_ten_minutes() {
        let mut b = CrashLoopBackOff::new(
            Span::from_secs(10),
            Span::from_secs(300),
            Span::from_secs(600),
        );
        let mut t = Time::ZERO;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let d = b.on_exit(t, t + Span::from_secs(5));
            delays.push(d.whole_secs());
            t = t + Span::from_secs(5) + d;
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        // Ten clean minutes reset the sequence.
        assert_eq!(
            b.on_exit(t, t + Span::from_secs(600)).as_nanos(),
            Span::from_secs(10).as_nanos()
        );
        assert_eq!(
            b.on_exit(t, t + Span::from_secs(1)).as_nanos(),
            Span::from_secs(20).as_nanos()
        );
    }
}
