//! The lease the ownership layer renews. Past its deadline the responders neither answer nor
//! announce, even before the held set is updated: a process waking from SIGSTOP must not
//! answer the requests queued while it was frozen, nor re-announce, on its stale state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A deadline shared by every responder; unlimited until first renewed.
#[derive(Debug)]
pub(crate) struct LeaseClock {
    base: Instant,
    /// Nanoseconds after `base`; `u64::MAX` = no deadline.
    deadline_ns: AtomicU64,
}

impl LeaseClock {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Answers and announcements stop at `until` unless renewed again.
    pub(crate) fn renew(&self, until: Instant) {
        let ns = until.saturating_duration_since(self.base).as_nanos();
        self.deadline_ns
            .store(u64::try_from(ns).unwrap_or(u64::MAX - 1), Ordering::Release);
    }

    /// Whether the lease is valid now.
    pub(crate) fn valid(&self) -> bool {
        let deadline = self.deadline_ns.load(Ordering::Acquire);
        deadline == u64::MAX || (self.base.elapsed().as_nanos() as u64) < deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unlimited_until_renewed_then_expires() {
        let clock = LeaseClock::new();
        assert!(clock.valid());
        clock.renew(Instant::now() + Duration::from_secs(60));
        assert!(clock.valid());
        clock.renew(Instant::now());
        assert!(!clock.valid());
    }
}
