//! Who is looking at the figures, shared between the supervisor (which sees every reader: SSE
//! subscribers, API reads, `/metrics` scrapes) and the monitor (which samples CPU and memory
//! only while someone looks, docs/DESIGN.md §12 "Idle"), plus the health-round times the
//! monitor measures for `/metrics`.
//!
//! Atomics and one mutex instead of messages: a read must not wake the monitor (at tens of
//! thousands of API reads a second that would be a wake-up each), and a finished round must
//! not wake the supervisor just to file its duration. Each side reads the other's part only
//! when it works anyway: the monitor at the start of a round, the supervisor when `/metrics`
//! asks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::http::metrics::{self, Histogram};

/// How many rounds after the last read the monitor keeps sampling: a client that polls once a
/// round (the CLI's `tend status -w`, a dashboard without SSE) finds fresh figures every time
/// instead of paying for a sample on demand at each read.
pub const READ_ROUNDS: u32 = 2;

pub struct Demand {
    /// The instant the millisecond counts below start from.
    origin: Instant,
    sse_clients: AtomicUsize,
    /// Milliseconds after `origin` of the last API read or scrape, plus one (0: never).
    last_read: AtomicU64,
    rounds: Mutex<Histogram>,
}

impl Default for Demand {
    fn default() -> Self {
        Demand {
            origin: Instant::now(),
            sse_clients: AtomicUsize::new(0),
            last_read: AtomicU64::new(0),
            rounds: Mutex::new(Histogram::new(metrics::HEALTH_BUCKETS)),
        }
    }
}

impl Demand {
    /// Someone read the figures now (an API read or a scrape).
    pub fn read(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.last_read.store(ms, Ordering::Relaxed);
    }

    pub fn set_sse_clients(&self, count: usize) {
        self.sse_clients.store(count, Ordering::Relaxed);
    }

    /// Whether the figures are wanted: an SSE client is connected, or someone read them within
    /// [`READ_ROUNDS`] rounds of `interval`.
    pub fn is_looking(&self, interval: Duration) -> bool {
        self.is_looking_at(Instant::now(), interval)
    }

    fn is_looking_at(&self, now: Instant, interval: Duration) -> bool {
        if self.sse_clients.load(Ordering::Relaxed) > 0 {
            return true;
        }
        match self.last_read.load(Ordering::Relaxed) {
            0 => false,
            read => {
                let read_at = self.origin + Duration::from_millis(read - 1);
                now.saturating_duration_since(read_at) <= interval * READ_ROUNDS
            }
        }
    }

    /// A full health round ran for `took`.
    pub fn round_done(&self, took: Duration) {
        self.lock_rounds().observe(took);
    }

    pub fn rounds(&self) -> Histogram {
        self.lock_rounds().clone()
    }

    fn lock_rounds(&self) -> std::sync::MutexGuard<'_, Histogram> {
        // A histogram is never left half-updated by a panic worth refusing: keep using it.
        self.rounds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looking_while_a_client_is_connected_or_after_a_read() {
        let demand = Demand::default();
        let round = Duration::from_secs(3);
        assert!(!demand.is_looking(round), "nobody yet");
        demand.set_sse_clients(1);
        assert!(demand.is_looking(round));
        demand.set_sse_clients(0);
        assert!(!demand.is_looking(round));
        demand.read();
        assert!(demand.is_looking(round));
        let later = Instant::now() + round * (READ_ROUNDS + 1);
        assert!(
            !demand.is_looking_at(later, round),
            "a read older than its rounds no longer counts"
        );
    }
}
