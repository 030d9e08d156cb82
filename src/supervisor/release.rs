//! When the supervisor gives freed memory back to the kernel (`os::memory::release_freed`).
//!
//! What allocates is work: server changes and their SSE frames, replies, samples, spawns, a
//! reload. A release is due [`QUIET`] after the supervisor's last piece of work, and at the
//! latest [`LONGEST`] after the first one since the last release, so a dashboard that keeps
//! figures coming (a sample every round) gets one a minute. While nothing happens nothing is
//! due, and the loop adds no wake-up.

use std::time::{Duration, Instant};

const LOG: &str = "ServerOrchestrator";

/// How long after the last work the freed memory is given back.
pub(super) const QUIET: Duration = Duration::from_secs(5);
/// How long work may keep it waiting.
pub(super) const LONGEST: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct Release {
    first_work: Option<Instant>,
    due: Option<Instant>,
}

impl Release {
    /// The supervisor did some work at `now`.
    pub(super) fn after_work(&mut self, now: Instant) {
        let first = *self.first_work.get_or_insert(now);
        self.due = Some((now + QUIET).min(first + LONGEST));
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
        self.first_work = None;
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
    fn due_quietly_after_the_last_work_and_at_the_latest_a_while_after_the_first() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let mut release = Release::default();
        assert_eq!(release.due(), None, "no work: no wake-up");
        release.after_work(start);
        release.after_work(start + s(3));
        assert_eq!(
            release.due(),
            Some(start + s(3) + QUIET),
            "moved by later work"
        );
        assert!(!release.run_if_due(start + s(3) + QUIET - Duration::from_millis(1)));
        assert!(release.run_if_due(start + s(3) + QUIET));
        assert_eq!(release.due(), None);
        assert!(!release.run_if_due(start + s(100)), "nothing since");

        // Work every 3 s without end: released once LONGEST after the first.
        let from = start + s(200);
        let mut at = from;
        while at < from + LONGEST + s(10) {
            release.after_work(at);
            if release.run_if_due(at) {
                break;
            }
            at += s(3);
        }
        assert_eq!(release.due(), None);
        assert!(
            at >= from + LONGEST && at < from + LONGEST + s(3),
            "released at {:?}",
            at - from
        );
    }
}
