//! ProcessStateStore: the state file `.tend/process-state.json` (docs/DESIGN.md §6).
//!
//! Owns: the on-disk format ([`StateFile`]), loading it at start-up ([`load`], which moves a
//! corrupt file aside), the atomic write ([`write_atomic`]) and the `store` thread that
//! coalesces snapshots from the supervisor and writes them ([`ProcessStateStore::spawn`]).
//!
//! Threads: [`load`] runs once on the thread that starts tend, before the store thread exists.
//! Every write after that happens on the thread named `store`; the supervisor only calls
//! [`StoreHandle::save`], which puts the snapshot in a one-slot mailbox and returns at once
//! (STYLE "Threads": snapshots coalesce, there is no queue).
//!
//! Must never: block the supervisor on the disk, panic on an I/O error (a failed write is logged
//! and retried; tend keeps running), write anything but through temp + fsync + rename + folder
//! fsync, or overwrite a file it did not write (a corrupt file is moved aside, never replaced).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError, at, bounded, never, select};
use log::{debug, error, info, warn};
use serde::{Deserialize, Serialize};

use crate::model::Timeline;

const LOG: &str = "ProcessStateStore";

/// The only `version` this tend reads and writes. A change that an older tend could not safely
/// ignore (a renamed or retyped field) must bump it; adding an optional field need not.
pub const STATE_VERSION: u32 = 1;

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

// ---------------------------------------------------------------------------------------------
// Format
// ---------------------------------------------------------------------------------------------

/// One supervised process as recorded for re-adoption (docs/DESIGN.md §6).
///
/// Unknown keys are ignored on load (no `deny_unknown_fields`), unlike the config. The config
/// is typed by people, so an unknown key there is a typo worth an error; this file is written
/// only by tend, so an unknown key means a newer tend added a field. Refusing it would move the
/// file aside and lose track of processes that are still running: exactly the orphans tend
/// exists to prevent. Known keys stay strict: all are required and typed, because adopting a
/// process with a guessed `pgid` or `procStartTicks` would be unsafe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredProcess {
    pub pid: u32,
    pub pgid: u32,
    pub command: String,
    /// Wall-clock start, milliseconds since the Unix epoch (shown to people).
    pub start_time: u64,
    /// Field 22 of `/proc/PID/stat`; with `bootId` it proves the PID was not reused.
    pub proc_start_ticks: u64,
    pub ports: Vec<u16>,
}

/// The whole state file. `processes` is a `BTreeMap` so the bytes written are deterministic
/// (same state, same file), which keeps diffs and tests simple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    pub version: u32,
    pub boot_id: String,
    pub processes: BTreeMap<String, StoredProcess>,
}

impl StateFile {
    /// A state with no processes, for this boot.
    pub fn empty(boot_id: impl Into<String>) -> StateFile {
        StateFile {
            version: STATE_VERSION,
            boot_id: boot_id.into(),
            processes: BTreeMap::new(),
        }
    }

    /// Records `id`, returning what was recorded before under that id.
    pub fn insert(
        &mut self,
        id: impl Into<String>,
        process: StoredProcess,
    ) -> Option<StoredProcess> {
        self.processes.insert(id.into(), process)
    }

    #[cfg(test)]
    pub fn remove(&mut self, id: &str) -> Option<StoredProcess> {
        self.processes.remove(id)
    }

    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<&StoredProcess> {
        self.processes.get(id)
    }

    /// All entries, ordered by id.
    #[cfg(test)]
    pub fn list(&self) -> impl Iterator<Item = (&str, &StoredProcess)> {
        self.processes.iter().map(|(id, p)| (id.as_str(), p))
    }

    /// The bytes [`write_atomic`] puts on disk: compact JSON and a final newline.
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        // Cannot fail for these types (string keys only), but the store thread must not panic,
        // so a failure becomes an ordinary failed write.
        let mut bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses the bytes of a state file. The error is the reason shown to the user; serde_json
    /// puts "at line L column C" in it.
    pub fn from_slice(bytes: &[u8]) -> Result<StateFile, String> {
        // Look at `version` first, on its own: a future version may have a different shape,
        // and "unsupported version 2" is a better reason than whatever field it lacks.
        #[derive(Deserialize)]
        struct VersionProbe {
            version: u64,
        }
        let probe: VersionProbe = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if probe.version != u64::from(STATE_VERSION) {
            return Err(format!(
                "unsupported version {} (this tend reads version {STATE_VERSION})",
                probe.version
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// What [`load`] found.
#[derive(Debug)]
pub enum LoadOutcome {
    /// No state file: start empty.
    Missing,
    Loaded(StateFile),
    /// The file could not be used; it now lives at `moved_to`, byte for byte, and tend starts
    /// empty. `reason` says why, with line and column when the JSON itself is broken.
    Corrupt {
        moved_to: PathBuf,
        reason: String,
    },
}

/// Reads the state file. A file that cannot be parsed, has the wrong shape or an unknown
/// `version` is renamed to `<path>.corrupt-<unix seconds>` before this returns, so nothing
/// written later can replace it (pueue overwrote its corrupt state; STYLE "State file").
///
/// Errors are only the I/O errors that are not about the content (permission denied, the path
/// is a folder, the move aside failed): the caller cannot start safely and should say why.
pub fn load(path: &Path) -> io::Result<LoadOutcome> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            debug!(target: LOG, "No state file at {}; starting empty", path.display());
            return Ok(LoadOutcome::Missing);
        }
        Err(e) => return Err(with_context(e, "read state file", path)),
    };
    match StateFile::from_slice(&bytes) {
        Ok(state) => {
            debug!(
                target: LOG,
                "State loaded from {} ({} processes, {} bytes)",
                path.display(),
                state.processes.len(),
                bytes.len()
            );
            Ok(LoadOutcome::Loaded(state))
        }
        Err(reason) => {
            let moved_to = move_aside(path, unix_seconds())?;
            warn!(
                target: LOG,
                "State file {} is corrupt ({reason}); moved it to {} and starting empty",
                path.display(),
                moved_to.display()
            );
            Ok(LoadOutcome::Corrupt { moved_to, reason })
        }
    }
}

/// Moves `path` to the first free name among `<path>.corrupt-<secs>`, `….corrupt-<secs>.1`, ….
///
/// A hard link to the new name fails with EEXIST when the name is taken, so an earlier corrupt
/// file is never overwritten, with no check-then-rename race; then the old name is removed.
pub(crate) fn move_aside(path: &Path, secs: u64) -> io::Result<PathBuf> {
    for n in 0..10_000u32 {
        let suffix = match n {
            0 => format!(".corrupt-{secs}"),
            n => format!(".corrupt-{secs}.{n}"),
        };
        let target = with_suffix(path, &suffix);
        match fs::hard_link(path, &target) {
            Ok(()) => {
                fs::remove_file(path).map_err(|e| with_context(e, "remove corrupt state", path))?;
                sync_folder(path)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // A file system without hard links (vfat, some FUSE): check, then rename. The race
            // is only with another tend on the same folder in the same second.
            Err(_) if !target.exists() => {
                fs::rename(path, &target)
                    .map_err(|e| with_context(e, "move corrupt state aside", path))?;
                sync_folder(path)?;
                return Ok(target);
            }
            Err(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free name to move the corrupt state {} aside",
            path.display()
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// Atomic write
// ---------------------------------------------------------------------------------------------

/// Replaces `path` with `bytes` so that a crash at any moment leaves a complete file there.
///
/// Steps, and what a crash after each one leaves:
/// 1. write `<path>.tmp` (mode 0600), `sync_all` it: `path` is untouched (old or absent); a
///    stray `.tmp` is truncated by the next write.
/// 2. hard-link `path` → `<path>.prev` (an older `.prev` is unlinked first): `path` is still the
///    old file; `.prev` is the old file too, or briefly absent. A hard link, not a rename,
///    because a rename would leave no file at `path` until step 3 (docs/DESIGN.md §6: "a bad write never
///    leaves nothing").
/// 3. rename `.tmp` → `path`: atomic on POSIX, so `path` is the old file or the new one, never
///    half of either. The data is already on disk (step 1), so the new name cannot point at an
///    empty file after a power cut (the ext4 zero-length-file problem).
/// 4. open the folder and `sync_all` it: makes the link and the rename durable. Before this, a
///    power cut may bring back the old `path`, which is complete and at most one change stale.
///
/// The folder is created (mode 0700) if missing: the state names processes and commands.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let mut file = match open_tmp(&tmp) {
        Ok(file) => file,
        // Creating the folder only when the open says it is missing saves a stat per write.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_folder(folder_of(path))?;
            open_tmp(&tmp).map_err(|e| with_context(e, "create", &tmp))?
        }
        Err(e) => return Err(with_context(e, "create", &tmp)),
    };
    file.write_all(bytes)
        .map_err(|e| with_context(e, "write", &tmp))?;
    file.sync_all()
        .map_err(|e| with_context(e, "fsync", &tmp))?;
    drop(file);

    keep_previous(path)?;
    fs::rename(&tmp, path)
        .map_err(|e| with_context(e, &format!("rename {} to", tmp.display()), path))?;
    sync_folder(path)
}

/// Opens the temp file with O_CREAT|O_TRUNC and mode 0600, then sets 0600 explicitly: the mode
/// given to open(2) is reduced by the umask and ignored for a file that already exists.
/// O_NOFOLLOW: a symlink planted at `.tmp` must not redirect the write (std adds O_CLOEXEC, so
/// children never inherit it; docs/DESIGN.md §8).
fn open_tmp(tmp: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Makes `<path>.prev` the current `path` (see [`write_atomic`], step 2). No `path` yet (the
/// first write, or right after a corrupt file was moved aside) means no previous generation,
/// and an older `.prev` is left as it is.
fn keep_previous(path: &Path) -> io::Result<()> {
    let prev = with_suffix(path, ".prev");
    match fs::remove_file(&prev) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_context(e, "remove", &prev)),
    }
    match fs::hard_link(path, &prev) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A file system without hard links: copy instead. `path` is never touched, so the
        // guarantee holds; the copy is synced so `.prev` is as durable as a link would be.
        Err(link_error) => fs::copy(path, &prev)
            .and_then(|_| File::open(&prev)?.sync_all())
            .map_err(|e| {
                with_context(
                    e,
                    &format!("keep previous generation (link failed: {link_error}); copy to"),
                    &prev,
                )
            }),
    }
}

fn create_folder(folder: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(|e| with_context(e, "create folder", folder))?;
    // The umask may have removed bits from 0700; set it exactly (only on a folder tend made).
    fs::set_permissions(folder, Permissions::from_mode(0o700))
        .map_err(|e| with_context(e, "chmod folder", folder))
}

/// fsync(2) on the folder makes renames, links and unlinks in it durable; without it a crash
/// can undo a rename whose file data was already synced.
fn sync_folder(path: &Path) -> io::Result<()> {
    let folder = folder_of(path);
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| with_context(e, "fsync folder", folder))
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name (`state.json` → `state.json.tmp`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// "create .tend/process-state.json.tmp: Is a directory (os error 21)", keeping the kind.
fn with_context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// The store thread
// ---------------------------------------------------------------------------------------------

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
    tell_failure: Mutex<Option<Sender<Timeline>>>,
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
                        let _ = tell.try_send(Timeline::StateWriteFailed {
                            error: format!("{}: {reason}", self.path.display()),
                        });
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
    pub fn tell_failures_to(&self, to: Sender<Timeline>) {
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

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::{
        LoadOutcome, ProcessStateStore, StateFile, StoreHandle, StoredProcess, Timing, load,
        move_aside, open_tmp, with_suffix, write_atomic,
    };

    const DEADLINE: Duration = Duration::from_secs(10);

    /// A folder under `temp_dir()/tend-tests/`, removed on drop unless the test failed, so a
    /// failure leaves its evidence (STYLE "Tests").
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join("tend-tests")
                .join(format!("store-{name}-{}-{n}", std::process::id()));
            // A leftover from an earlier run with the same pid would confuse the test.
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("create test folder");
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn state(&self) -> PathBuf {
            self.0.join(".tend").join("process-state.json")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = fs::remove_dir_all(&self.0);
            }
        }
    }

    fn wait_until<T: std::fmt::Debug>(
        what: &str,
        mut probe: impl FnMut() -> T,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = probe();
            if ok(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last saw {value:?}"
            );
            // STYLE's wait_until: poll until the deadline, never a fixed sleep for the result.
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }

    fn process(pid: u32, port: u16) -> StoredProcess {
        StoredProcess {
            pid,
            pgid: pid,
            command: format!("server --port {port}"),
            start_time: 1_764_150_000_000 + u64::from(pid),
            proc_start_ticks: 8_812_345 + u64::from(pid),
            ports: vec![port],
        }
    }

    fn state_with(ids: &[(&str, u32)]) -> StateFile {
        let mut state = StateFile::empty("boot-1");
        for (i, (id, pid)) in ids.iter().enumerate() {
            state.insert(*id, process(*pid, 8000 + i as u16));
        }
        state
    }

    fn loaded(path: &Path) -> StateFile {
        match load(path).expect("load") {
            LoadOutcome::Loaded(state) => state,
            other => panic!("expected Loaded, got {other:?}"),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn fast(window: Duration, retry: Duration) -> Timing {
        Timing { window, retry }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    // --- format ---

    #[test]
    fn json_has_the_design_shape() {
        let state = state_with(&[("web", 12345)]);
        let json: serde_json::Value = serde_json::from_slice(&state.to_bytes().unwrap()).unwrap();
        let expected = serde_json::json!({"version": 1, "bootId": "boot-1", "processes": {
            "web": {"pid": 12345, "pgid": 12345, "command": "server --port 8000",
                    "startTime": 1764150012345u64, "procStartTicks": 8824690, "ports": [8000]}}});
        assert_eq!(json, expected);
    }

    #[test]
    fn unknown_keys_are_tolerated() {
        let text = r#"{"version": 1, "bootId": "b", "addedLater": true, "processes": {"web":
            {"pid": 1, "pgid": 1, "command": "c", "startTime": 2, "procStartTicks": 3,
             "ports": [], "cwd": "/srv"}}}"#;
        let state = StateFile::from_slice(text.as_bytes()).expect("parse");
        assert_eq!(state.get("web").map(|p| p.proc_start_ticks), Some(3));
    }

    #[test]
    fn list_returns_all_entries_in_id_order() {
        let state = state_with(&[("worker", 3), ("api", 1), ("web", 2)]);
        let ids: Vec<&str> = state.list().map(|(id, _)| id).collect();
        assert_eq!(ids, ["api", "web", "worker"]);
        assert_eq!(
            state.list().map(|(_, p)| p.pid).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    // --- write_atomic and load ---

    #[test]
    fn write_then_load_round_trips() {
        let dir = TempDir::new("round-trip");
        let state = state_with(&[("web", 10), ("api", 11)]);
        write_atomic(&dir.state(), &state.to_bytes().unwrap()).unwrap();
        assert_eq!(loaded(&dir.state()), state);
    }

    #[test]
    fn missing_file_is_missing() {
        let dir = TempDir::new("missing");
        assert!(matches!(load(&dir.state()).unwrap(), LoadOutcome::Missing));
    }

    #[test]
    fn folder_is_created_0700_and_files_are_0600() {
        let dir = TempDir::new("modes");
        let path = dir.path().join("a").join("b").join("state.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(mode(dir.path().join("a").as_path()), 0o700);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(!with_suffix(&path, ".tmp").exists(), "tmp renamed away");
    }

    #[test]
    fn existing_folder_mode_is_left_alone() {
        let dir = TempDir::new("folder-kept");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        write_atomic(&dir.path().join("state.json"), b"{}").unwrap();
        assert_eq!(mode(dir.path()), 0o755);
    }

    #[test]
    fn tmp_is_0600_and_truncated_even_if_it_existed() {
        let dir = TempDir::new("tmp-mode");
        let path = dir.path().join("state.json");
        let tmp = with_suffix(&path, ".tmp");
        fs::write(&tmp, "a much longer leftover from a crashed write").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_tmp(&tmp).unwrap());
        assert_eq!(mode(&tmp), 0o600);
        assert_eq!(fs::metadata(&tmp).unwrap().len(), 0);
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn prev_holds_the_previous_generation() {
        let dir = TempDir::new("prev");
        let path = dir.state();
        let prev = with_suffix(&path, ".prev");
        write_atomic(&path, b"one").unwrap();
        assert!(
            !prev.exists(),
            "no previous generation after the first write"
        );
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&prev).unwrap(), b"one");
        write_atomic(&path, b"three").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(fs::read(&prev).unwrap(), b"two");
        assert_eq!(mode(&prev), 0o600);
    }

    #[test]
    fn write_into_a_path_under_a_regular_file_fails_with_context() {
        let dir = TempDir::new("under-file");
        fs::write(dir.path().join("blocker"), "").unwrap();
        let path = dir.path().join("blocker").join("state.json");
        let err = write_atomic(&path, b"{}").unwrap_err();
        assert!(err.to_string().contains("state.json.tmp"), "{err}");
    }

    #[test]
    fn corrupt_state_is_moved_aside() {
        let dir = TempDir::new("corrupt");
        let path = dir.state();
        let garbage = b"{\"version\": 1,\n  \"bootId\": tru\xff";
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, garbage).unwrap();
        let (moved_to, reason) = match load(&path).unwrap() {
            LoadOutcome::Corrupt { moved_to, reason } => (moved_to, reason),
            other => panic!("expected Corrupt, got {other:?}"),
        };
        assert!(
            reason.contains("line 2"),
            "reason has the position: {reason}"
        );
        let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("process-state.json.corrupt-"), "{name}");
        assert_eq!(
            fs::read(&moved_to).unwrap(),
            garbage,
            "content preserved byte for byte"
        );
        assert!(!path.exists());
        assert!(matches!(load(&path).unwrap(), LoadOutcome::Missing));
    }

    #[test]
    fn wrong_shape_unknown_version_and_empty_file_are_corrupt() {
        let cases: [(&str, &str); 4] = [
            (
                r#"{"version": 1, "bootId": "b", "processes": {"web": {"pgid": 1}}}"#,
                "pid",
            ),
            (
                r#"{"version": 2, "bootId": "b", "processes": {}}"#,
                "unsupported version 2",
            ),
            (r#"{"bootId": "b", "processes": {}}"#, "version"),
            ("", "EOF"),
        ];
        for (text, expected) in cases {
            let dir = TempDir::new("shape");
            let path = dir.path().join("state.json");
            fs::write(&path, text).unwrap();
            match load(&path).unwrap() {
                LoadOutcome::Corrupt { moved_to, reason } => {
                    assert!(reason.contains(expected), "{text:?}: {reason}");
                    assert_eq!(fs::read_to_string(moved_to).unwrap(), text);
                }
                other => panic!("{text:?}: expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn move_aside_never_overwrites() {
        let dir = TempDir::new("aside-taken");
        let path = dir.path().join("state.json");
        let first = with_suffix(&path, ".corrupt-42");
        fs::write(&first, "older corrupt file").unwrap();
        fs::write(&path, "newer corrupt file").unwrap();
        let moved_to = move_aside(&path, 42).unwrap();
        assert_eq!(moved_to, with_suffix(&path, ".corrupt-42.1"));
        assert_eq!(fs::read_to_string(&first).unwrap(), "older corrupt file");
        assert_eq!(fs::read_to_string(&moved_to).unwrap(), "newer corrupt file");
        assert!(!path.exists());
    }

    // --- the store thread ---

    #[test]
    fn store_saves_to_disk() {
        let dir = TempDir::new("save");
        let store = ProcessStateStore::spawn(dir.state()).unwrap();
        let state = state_with(&[("web", 10)]);
        store.save(state.clone());
        assert!(store.flush(DEADLINE));
        assert_eq!(loaded(&dir.state()), state);
        let stats = store.stats();
        assert_eq!((stats.writes, stats.failures), (1, 0));
        assert_eq!(stats.last_bytes, fs::metadata(dir.state()).unwrap().len());
    }

    #[test]
    fn state_persists_across_restarts() {
        let dir = TempDir::new("restart");
        let first = state_with(&[("web", 10), ("api", 11)]);
        let store = ProcessStateStore::spawn(dir.state()).unwrap();
        store.save(first.clone());
        assert!(store.shutdown());

        // The next tend: load what the last one wrote, change it, write it back.
        let mut state = loaded(&dir.state());
        assert_eq!(state, first);
        state.insert("worker", process(12, 9000));
        let store = ProcessStateStore::spawn(dir.state()).unwrap();
        store.save(state.clone());
        drop(store);
        assert_eq!(loaded(&dir.state()), state);
    }

    #[test]
    fn removed_process_is_gone_after_save() {
        let dir = TempDir::new("remove");
        let store = ProcessStateStore::spawn(dir.state()).unwrap();
        let mut state = state_with(&[("web", 10), ("api", 11)]);
        store.save(state.clone());
        assert!(store.flush(DEADLINE));
        assert_eq!(state.remove("api").map(|p| p.pid), Some(11));
        store.save(state.clone());
        assert!(store.flush(DEADLINE));
        let on_disk = loaded(&dir.state());
        assert_eq!(
            on_disk.list().map(|(id, _)| id).collect::<Vec<_>>(),
            ["web"]
        );
    }

    #[test]
    fn rapid_saves_coalesce_and_the_last_one_wins() {
        let dir = TempDir::new("coalesce");
        let store = ProcessStateStore::spawn(dir.state()).unwrap();
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
        assert_eq!(Some(loaded(&dir.state())), last);
    }

    #[test]
    fn first_save_is_written_at_once_and_later_ones_wait_for_the_window() {
        let dir = TempDir::new("window");
        // A one-hour window: only "at once" or a flush can explain a write.
        let store = ProcessStateStore::spawn_with(dir.state(), fast(HOUR, HOUR)).unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("first write", || store.stats().writes, |w| *w == 1);
        store.save(state_with(&[("web", 2)]));
        store.save(state_with(&[("web", 3)]));
        assert_eq!(store.stats().writes, 1, "held back by the window");
        assert_eq!(loaded(&dir.state()).get("web").map(|p| p.pid), Some(1));
        assert!(store.flush(DEADLINE), "flush skips the window");
        assert_eq!(
            store.stats().writes,
            2,
            "the two waiting saves were written once"
        );
        assert_eq!(loaded(&dir.state()).get("web").map(|p| p.pid), Some(3));
    }

    #[test]
    fn flush_with_nothing_saved_is_immediate() {
        let dir = TempDir::new("flush-empty");
        let store = ProcessStateStore::spawn(dir.state()).unwrap();
        assert!(store.flush(Duration::ZERO));
        assert_eq!(store.stats().writes, 0);
        assert!(!dir.state().exists());
    }

    #[test]
    fn dropping_the_handle_writes_the_pending_snapshot() {
        let dir = TempDir::new("drop");
        let store = ProcessStateStore::spawn_with(dir.state(), fast(HOUR, HOUR)).unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("first write", || store.stats().writes, |w| *w == 1);
        store.save(state_with(&[("web", 2)]));
        drop(store);
        assert_eq!(loaded(&dir.state()).get("web").map(|p| p.pid), Some(2));
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
        let dir = TempDir::new("retry-timer");
        let blocker = block_tmp(&dir.state());
        let store = ProcessStateStore::spawn_with(
            dir.state(),
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
        match told.try_recv() {
            Ok(crate::model::Timeline::StateWriteFailed { error }) => {
                assert!(
                    error.starts_with(&dir.state().display().to_string()),
                    "{error}"
                )
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
        assert_eq!(loaded(&dir.state()), state);
    }

    #[test]
    fn failed_write_is_retried_on_the_next_save() {
        let dir = TempDir::new("retry-save");
        let blocker = block_tmp(&dir.state());
        // The retry timer never fires in this test, and the window is short.
        let store =
            ProcessStateStore::spawn_with(dir.state(), fast(Duration::from_millis(10), HOUR))
                .unwrap();
        store.save(state_with(&[("web", 1)]));
        wait_until("the failure", || store.stats().failures, |f| *f == 1);
        fs::remove_dir(&blocker).unwrap();
        store.save(state_with(&[("web", 2)]));
        wait_until("the retried write", || store.stats().writes, |w| *w == 1);
        assert_eq!(store.stats().failures, 1);
        assert_eq!(loaded(&dir.state()).get("web").map(|p| p.pid), Some(2));
        assert!(store.shutdown());
    }

    #[test]
    fn failed_write_under_a_regular_file_recovers_when_it_becomes_a_folder() {
        let dir = TempDir::new("parent-file");
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
        let dir = TempDir::new("shutdown-fail");
        let _blocker = block_tmp(&dir.state());
        let store = ProcessStateStore::spawn_with(dir.state(), fast(HOUR, HOUR)).unwrap();
        store.save(state_with(&[("web", 1)]));
        assert!(!store.shutdown());
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<StoreHandle>();
    }
}
