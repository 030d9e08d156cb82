//! The `store` thread: takes the supervisor's snapshots through a one-slot mailbox, coalesces
//! them and writes the newest with [`write_atomic`], retrying a failed write on a timer.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, at, bounded, never, select};
use log::{debug, error, info};

use super::{LOG, StateFile, write_atomic};
use crate::model::Timeline;

/// Snapshots that arrive within this long after the end of a write wait for the window to pass,
/// and only the newest of them is written: at most ~10 writes a second, however fast the
/// supervisor changes state. The first save after a quiet period is written at once.
const COALESCE_WINDOW: Duration = Duration::from_millis(100);

/// After a failed write the thread tries again after this long, even if nothing new is saved
/// (a full disk that frees up should not wait for the next state change).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// While the same error repeats, log it at error level only this often (one line a minute at
/// the default retry), so a full disk does not flood the log; the rest go to debug.
const REPEAT_ERROR_EVERY: u64 = 60;

/// Counters for metrics. `last_bytes` is the size of the last successful write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub writes: u64,
    pub failures: u64,
    pub last_bytes: u64,
}

/// The one-slot mailbox between the supervisor and the store thread, and the sequence numbers
/// that let `flush` know when "everything saved so far" is on disk.
#[derive(Default)]
struct Slot {
    /// The newest snapshot not yet written, with its sequence number. A newer save replaces it.
    pending: Option<(u64, StateFile)>,
    /// Set by `flush`: write now, ignoring the coalescing window.
    is_urgent: bool,
    /// Sequence number of the newest save.
    saved_seq: u64,
    /// Sequence number of the newest snapshot on disk. Sequence numbers only grow, and a
    /// snapshot replaces all older ones, so `durable_seq >= n` means save `n` is on disk.
    durable_seq: u64,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Notified after each successful write (waited on by `flush`).
    written: Condvar,
    writes: AtomicU64,
    failures: AtomicU64,
    last_bytes: AtomicU64,
    /// Told of the first failed write of each streak (a `stateWriteFailed` timeline event).
    tell_failure: Mutex<Option<Sender<Box<Timeline>>>>,
}

impl Shared {
    /// A panic elsewhere while holding the lock cannot leave `Slot` half-updated in a way that
    /// matters (every field is written in one statement), so a poisoned lock is still used.
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    window: Duration,
    retry: Duration,
}

/// The supervisor's side of the store. Not `Clone`: dropping it ends the thread.
pub struct StoreHandle {
    shared: Arc<Shared>,
    /// `bounded(1)`: a wake-up token, not a queue; the data is in `Shared::slot`.
    /// `None` once closed; dropping the sender tells the thread to finish.
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    /// So a dead store thread is reported once, not on every save.
    is_dead_reported: AtomicBool,
}

/// The state of the `store` thread. Only [`ProcessStateStore::spawn`] is public.
pub struct ProcessStateStore {
    path: PathBuf,
    shared: Arc<Shared>,
    wake: Receiver<()>,
    timing: Timing,
    /// End of the last write attempt; the coalescing window counts from here, so a slow disk
    /// also gets fewer writes.
    last_write_end: Option<Instant>,
    /// Consecutive failed writes, and the last reason, to keep a failing disk's log short.
    failure_streak: u64,
    last_error: Option<String>,
}

impl ProcessStateStore {
    /// Starts the thread named `store`, which writes to `path` whatever [`StoreHandle::save`]
    /// hands it. Fails only if the thread cannot be created.
    pub fn spawn(path: PathBuf) -> io::Result<StoreHandle> {
        ProcessStateStore::spawn_with(
            path,
            Timing {
                window: COALESCE_WINDOW,
                retry: RETRY_AFTER,
            },
        )
    }

    fn spawn_with(path: PathBuf, timing: Timing) -> io::Result<StoreHandle> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            written: Condvar::new(),
            writes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_bytes: AtomicU64::new(0),
            tell_failure: Mutex::new(None),
        });
        let (wake_tx, wake_rx) = bounded(1);
        let store = ProcessStateStore {
            path: path.clone(),
            shared: Arc::clone(&shared),
            wake: wake_rx,
            timing,
            last_write_end: None,
            failure_streak: 0,
            last_error: None,
        };
        let thread = thread::Builder::new()
            .name("store".into())
            .spawn(move || store.run())?;
        Ok(StoreHandle {
            shared,
            wake: Some(wake_tx),
            thread: Some(thread),
            path,
            is_dead_reported: AtomicBool::new(false),
        })
    }

    fn run(mut self) {
        debug!(target: LOG, "Store thread started for {}", self.path.display());
        // When the pending snapshot is due; `None` while there is nothing to write.
        let mut due: Option<Instant> = None;
        loop {
            let timer = due.map_or_else(never, at);
            select! {
                recv(self.wake) -> msg => match msg {
                    Ok(()) => due = self.on_wake(due),
                    Err(_) => break,
                },
                recv(timer) -> _ => due = self.write_pending(),
            }
        }
        // The handle is gone: one last attempt, so a shutdown does not lose the newest state.
        // Only one: a broken disk must not keep tend from exiting.
        if self.shared.lock().pending.is_some() {
            self.write_pending();
        }
        debug!(target: LOG, "Store thread stopped for {}", self.path.display());
    }

    /// A save or a flush arrived: decide when to write.
    fn on_wake(&mut self, due: Option<Instant>) -> Option<Instant> {
        let (has_pending, is_urgent) = {
            let mut slot = self.shared.lock();
            (slot.pending.is_some(), std::mem::take(&mut slot.is_urgent))
        };
        if !has_pending {
            return due;
        }
        let now = Instant::now();
        let window_due = if is_urgent {
            now
        } else {
            // At once after a quiet period, else when the window since the last write ends.
            self.last_write_end
                .map_or(now, |end| (end + self.timing.window).max(now))
        };
        // Never later than already planned: a save during a failure's retry wait brings the
        // retry forward ("retried on the next change", docs/DESIGN.md §6).
        Some(due.map_or(window_due, |d| d.min(window_due)))
    }

    /// Writes the pending snapshot, if any, and returns when to write next.
    fn write_pending(&mut self) -> Option<Instant> {
        let (seq, state) = self.shared.lock().pending.take()?;
        let result = state
            .to_bytes()
            .and_then(|bytes| write_atomic(&self.path, &bytes).map(|()| bytes.len()));
        let now = Instant::now();
        self.last_write_end = Some(now);
        match result {
            Ok(len) => {
                self.shared.writes.fetch_add(1, Ordering::Relaxed);
                self.shared.last_bytes.store(len as u64, Ordering::Relaxed);
                let has_more = {
                    let mut slot = self.shared.lock();
                    slot.durable_seq = slot.durable_seq.max(seq);
                    slot.pending.is_some()
                };
                self.shared.written.notify_all();
                debug!(
                    target: LOG,
                    "State written to {} ({} processes, {len} bytes)",
                    self.path.display(),
                    state.processes.len()
                );
                if self.failure_streak > 0 {
                    info!(
                        target: LOG,
                        "State written to {} again after {} failed attempts",
                        self.path.display(),
                        self.failure_streak
                    );
                    self.failure_streak = 0;
                    self.last_error = None;
                }
                has_more.then(|| now + self.timing.window)
            }
            Err(e) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                self.failure_streak += 1;
                {
                    // Keep it for the retry unless a newer snapshot already replaced it.
                    let mut slot = self.shared.lock();
                    if slot.pending.is_none() {
                        slot.pending = Some((seq, state));
                    }
                }
                let reason = e.to_string();
                if self.failure_streak == 1 {
                    let tell = self.shared.tell_failure.lock();
                    if let Some(tell) = tell.as_ref().ok().and_then(|t| t.as_ref()) {
                        let _ = tell.try_send(Box::new(Timeline::StateWriteFailed {
                            error: format!("{}: {reason}", self.path.display()),
                        }));
                    }
                }
                let is_new_reason = self.last_error.as_deref() != Some(reason.as_str());
                if is_new_reason || self.failure_streak % REPEAT_ERROR_EVERY == 0 {
                    error!(
                        target: LOG,
                        "State write to {} failed ({} in a row): {reason}; retrying in {} ms",
                        self.path.display(),
                        self.failure_streak,
                        self.timing.retry.as_millis()
                    );
                } else {
                    debug!(
                        target: LOG,
                        "State write to {} failed again ({} in a row): {reason}",
                        self.path.display(),
                        self.failure_streak
                    );
                }
                self.last_error = Some(reason);
                Some(now + self.timing.retry)
            }
        }
    }
}

impl StoreHandle {
    /// Hands `state` to the store thread and returns at once. If a write is in progress or one
    /// happened less than the coalescing window ago, `state` waits, and a later save replaces
    /// it: only the newest snapshot is ever written.
    pub fn save(&self, state: StateFile) {
        let replaced = {
            let mut slot = self.shared.lock();
            slot.saved_seq += 1;
            let seq = slot.saved_seq;
            slot.pending.replace((seq, state))
        };
        // Freed outside the lock, so the store thread never waits on a large deallocation.
        drop(replaced);
        self.wake();
    }

    /// Blocks until every snapshot saved so far is on disk (the coalescing window is skipped),
    /// or `timeout` passes. Returns whether it got there. While writes fail, the thread keeps
    /// retrying on its timer, so a short outage within `timeout` still ends in `true`.
    #[cfg(test)]
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = {
            let mut slot = self.shared.lock();
            if slot.durable_seq >= slot.saved_seq {
                return true;
            }
            slot.is_urgent = true;
            slot.saved_seq
        };
        self.wake();
        let slot = self.shared.lock();
        let (slot, _) = self
            .shared
            .written
            .wait_timeout_while(slot, timeout, |slot| slot.durable_seq < target)
            .unwrap_or_else(PoisonError::into_inner);
        slot.durable_seq >= target
    }

    /// From now on the first failed write of each streak is told to `to` as a
    /// `stateWriteFailed` timeline event (it never waits: a full channel loses the note).
    pub fn tell_failures_to(&self, to: Sender<Box<Timeline>>) {
        *self
            .shared
            .tell_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(to);
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            writes: self.shared.writes.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
            last_bytes: self.shared.last_bytes.load(Ordering::Relaxed),
        }
    }

    /// Ends the thread after one final attempt to write the newest snapshot, and waits for it.
    /// Returns whether everything saved is on disk. Dropping the handle does the same.
    pub fn shutdown(mut self) -> bool {
        self.close()
    }

    fn close(&mut self) -> bool {
        // Dropping the only sender disconnects the channel: the thread's signal to finish.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                error!(
                    target: LOG,
                    "Store thread for {} panicked; the state file may be stale",
                    self.path.display()
                );
            }
        }
        let slot = self.shared.lock();
        slot.durable_seq >= slot.saved_seq
    }

    fn wake(&self) {
        let Some(wake) = &self.wake else { return };
        match wake.try_send(()) {
            // Full: a wake-up is already waiting, and the thread reads the slot when it runs.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                if !self.is_dead_reported.swap(true, Ordering::Relaxed) {
                    error!(
                        target: LOG,
                        "Store thread for {} is gone; state changes are no longer saved",
                        self.path.display()
                    );
                }
            }
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{ProcessStateStore, StoreHandle, Timing};
    use crate::store::atomic::with_suffix;
    use crate::store::tests::{TempDir, loaded, mode, process, state_file, state_with};
    use crate::test_support::{DEADLINE, wait_until};

    fn fast(window: Duration, retry: Duration) -> Timing {
        Timing { window, retry }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn store_saves_to_disk() {
        let dir = TempDir::new("store-save");
        let store = ProcessStateStore::spawn(state_file(&dir)).unwrap();
        let state = state_with(&[("web", 10)]);
        store.save(state.clone());
        assert!(store.flush(DEADLINE));
        assert_eq!(loaded(&state_file(&dir)), state);
        let stats = store.stats();
        assert_eq!((stats.writes, stats.failures), (1, 0));
        assert_eq!(
            stats.last_bytes,
            fs::metadata(state_file(&dir)).unwrap().len()
        );
    }

    #[test]
    fn state_persists_across_restarts() {
        let dir = TempDir::new("store-restart");
        let first = state_with(&[("web", 10), ("api", 11)]);
        let store = ProcessStateStore::spawn(state_file(&dir)).unwrap();
        store.save(first.clone());
        assert!(store.shutdown());

        // The next tend: load what the last one wrote, change it, write it back.
        let mut state = loaded(&state_file(&dir));
        assert_eq!(state, first);
        state.insert("worker", process(12, 9000));
        let store = ProcessStateStore::spawn(state_file(&dir)).unwrap();
        store.save(state.clone());
        drop(store);
        assert_eq!(loaded(&state_file(&dir)), state);
    }

    #[test]
    fn removed_process_is_gone_after_save() {
        let dir = TempDir::new("store-remove");
        let store = ProcessStateStore::spawn(state_file(&dir)).unwrap();
        let mut state = state_with(&[("web", 10), ("api", 11)]);
        store.save(state.clone());
        assert!(store.flush(DEADLINE));
        assert_eq!(state.remove("api").map(|p| p.pid), Some(11));
        store.save(state.clone());
        assert!(store.flush(DEADLINE));
        let on_disk = loaded(&state_file(&dir));
        assert_eq!(
            on_disk.list().map(|(id, _)| id).collect::<Vec<_>>(),
            ["web"]
        );
    }

    #[test]
    fn rapid_saves_coalesce_and_the_last_one_wins() {
        let dir = TempDir::new("store-coalesce");
        let store = ProcessStateStore::spawn(state_file(&dir)).unwrap();
        let mut last = None;
        for i in 0..1000u32 {
            let state = state_with(&[("web", i + 2)]);
            store.save(state.clone());
            last = Some(state);
        }
        assert!(store.flush(DEADLINE));
        let writes = store.stats().writes;
        assert!(
            (1..=20).contains(&writes),
            "1000 saves took {writes} writes"
        );
        assert_eq!(Some(loaded(&state_file(&dir))), last);
    }

    #[test]
    fn first_save_is_written_at_once_and_later_ones_wait_for_the_window() {
        let dir = TempDir::new("store-window");
        // A one-hour window: only "at once" or a flush can explain a write.
        let store = ProcessStateStore::spawn_with(state_file(&dir), fast(HOUR, HOUR)).unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("first write", || store.stats().writes, |w| *w == 1);
        store.save(state_with(&[("web", 2)]));
        store.save(state_with(&[("web", 3)]));
        assert_eq!(store.stats().writes, 1, "held back by the window");
        assert_eq!(loaded(&state_file(&dir)).get("web").map(|p| p.pid), Some(1));
        assert!(store.flush(DEADLINE), "flush skips the window");
        assert_eq!(
            store.stats().writes,
            2,
            "the two waiting saves were written once"
        );
        assert_eq!(loaded(&state_file(&dir)).get("web").map(|p| p.pid), Some(3));
    }

    #[test]
    fn flush_with_nothing_saved_is_immediate() {
        let dir = TempDir::new("store-flush-empty");
        let store = ProcessStateStore::spawn(state_file(&dir)).unwrap();
        assert!(store.flush(Duration::ZERO));
        assert_eq!(store.stats().writes, 0);
        assert!(!state_file(&dir).exists());
    }

    #[test]
    fn dropping_the_handle_writes_the_pending_snapshot() {
        let dir = TempDir::new("store-drop");
        let store = ProcessStateStore::spawn_with(state_file(&dir), fast(HOUR, HOUR)).unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("first write", || store.stats().writes, |w| *w == 1);
        store.save(state_with(&[("web", 2)]));
        drop(store);
        assert_eq!(loaded(&state_file(&dir)).get("web").map(|p| p.pid), Some(2));
    }

    /// Blocks the write by putting a folder where the temp file goes (tests run as root, so
    /// chmod would not stop them), then removes it.
    fn block_tmp(path: &Path) -> PathBuf {
        let tmp = with_suffix(path, ".tmp");
        fs::create_dir_all(&tmp).unwrap();
        tmp
    }

    #[test]
    fn failed_write_is_counted_and_retried_by_the_timer() {
        let dir = TempDir::new("store-retry-timer");
        let blocker = block_tmp(&state_file(&dir));
        let store = ProcessStateStore::spawn_with(
            state_file(&dir),
            fast(Duration::from_millis(10), Duration::from_millis(20)),
        )
        .unwrap();
        let (told_tx, told) = crossbeam_channel::bounded(8);
        store.tell_failures_to(told_tx);
        let state = state_with(&[("web", 1)]);
        store.save(state.clone());
        wait_until("a few failures", || store.stats().failures, |f| *f >= 2);
        assert_eq!(store.stats().writes, 0);
        // One note for the streak, however many retries fail.
        match told.try_recv().map(|note| *note) {
            Ok(crate::model::Timeline::StateWriteFailed { error }) => {
                let path = state_file(&dir).display().to_string();
                assert!(error.starts_with(&path), "{error}")
            }
            other => panic!("expected a stateWriteFailed note, got {other:?}"),
        }
        assert!(told.try_recv().is_err(), "told once per streak");
        assert!(
            !store.flush(Duration::from_millis(30)),
            "flush reports the failure"
        );

        fs::remove_dir(&blocker).unwrap();
        // No new save: only the retry timer can write it now.
        assert!(store.flush(DEADLINE));
        assert_eq!(store.stats().writes, 1);
        assert_eq!(loaded(&state_file(&dir)), state);
    }

    #[test]
    fn failed_write_is_retried_on_the_next_save() {
        let dir = TempDir::new("store-retry-save");
        let blocker = block_tmp(&state_file(&dir));
        // The retry timer never fires in this test, and the window is short.
        let store =
            ProcessStateStore::spawn_with(state_file(&dir), fast(Duration::from_millis(10), HOUR))
                .unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("the failure", || store.stats().failures, |f| *f == 1);
        fs::remove_dir(&blocker).unwrap();
        store.save(state_with(&[("web", 2)]));
        wait_until("the retried write", || store.stats().writes, |w| *w == 1);
        assert_eq!(store.stats().failures, 1);
        assert_eq!(loaded(&state_file(&dir)).get("web").map(|p| p.pid), Some(2));
        assert!(store.shutdown());
    }

    #[test]
    fn failed_write_under_a_regular_file_recovers_when_it_becomes_a_folder() {
        let dir = TempDir::new("store-parent-file");
        let parent = dir.path().join("tend");
        fs::write(&parent, "not a folder").unwrap();
        let path = parent.join("process-state.json");
        let store = ProcessStateStore::spawn_with(
            path.clone(),
            fast(Duration::from_millis(10), Duration::from_millis(20)),
        )
        .unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("the failure", || store.stats().failures, |f| *f >= 1);
        fs::remove_file(&parent).unwrap();
        assert!(store.flush(DEADLINE));
        assert_eq!(loaded(&path).get("web").map(|p| p.pid), Some(1));
        assert_eq!(mode(&parent), 0o700, "the store created the folder");
    }

    #[test]
    fn shutdown_reports_a_write_it_could_not_finish() {
        let dir = TempDir::new("store-shutdown-fail");
        let _blocker = block_tmp(&state_file(&dir));
        let store = ProcessStateStore::spawn_with(state_file(&dir), fast(HOUR, HOUR)).unwrap();
        store.save(state_with(&[("web", 1)]));
        assert!(!store.shutdown());
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<StoreHandle>();
    }
}
