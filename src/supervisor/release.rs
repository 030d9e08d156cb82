//! When the supervisor gives freed memory back to the kernel (`os::memory::release_freed`).
//!
//! What allocates is change: server views and SSE frames, replies, spawns, a reload. After a
//! turn that changed a server, a release is due [`QUIET`] later; later changes do not move it,
//! so a long burst (10,000 servers starting) releases every [`QUIET`] on the way and once more
//! after it. While nothing changes nothing is due, and the loop adds no wake-up.

use std::time::{Duration, Instant};

const LOG: &str = "ServerOrchestrator";

/// How long after a change the freed memory is given back.
pub(super) const QUIET: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(super) struct Release {
    due: Option<Instant>,
}

impl Release {
    /// A server changed at `now`.
    pub(super) fn after_change(&mut self, now: Instant) {
        self.due.get_or_insert(now + QUIET);
    }

    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Releases if it is due at `now`; true if it was.
    pub(super) fn run_if_due(&mut self, now: Instant) -> bool {
        if self.due.is_none_or(|due| due > now) {
            return false;
        }
        self.due = None;
        let started = Instant::now();
        let released = crate::os::memory::release_freed();
        log::trace!(target: LOG, "Released freed memory ({released}) in {} µs",
            started.elapsed().as_micros());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_after_the_first_change_and_not_again_until_the_next() {
        let start = Instant::now();
        let mut release = Release::default();
        assert_eq!(release.due(), None, "nothing changed: no wake-up");
        release.after_change(start);
        release.after_change(start + Duration::from_secs(3));
        assert_eq!(
            release.due(),
            Some(start + QUIET),
            "a burst does not move it"
        );
        assert!(!release.run_if_due(start + QUIET - Duration::from_millis(1)));
        assert!(release.run_if_due(start + QUIET));
        assert_eq!(release.due(), None);
        assert!(!release.run_if_due(start + QUIET * 2));
        release.after_change(start + QUIET * 3);
        assert_eq!(release.due(), Some(start + QUIET * 4));
    }
}
