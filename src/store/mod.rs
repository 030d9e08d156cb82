//! ProcessStateStore: the state file `.tend/process-state.json` (docs/DESIGN.md §6).
//!
//! Owns: the on-disk format ([`StateFile`]), loading it at start-up ([`load`], which moves a
//! corrupt file aside), the atomic write ([`write_atomic`]) and the `store` thread that
//! coalesces snapshots from the supervisor and writes them ([`ProcessStateStore::spawn`]).
//!
//! Threads: [`load`] runs once on the thread that starts tend, before the store thread exists.
//! Every write after that happens on the thread named `store`; the supervisor only calls
//! [`StoreHandle::save`], which puts the snapshot in a one-slot mailbox and returns at once
//! (snapshots coalesce: there is no queue).
//!
//! Must never: block the supervisor on the disk, panic on an I/O error (a failed write is logged
//! and retried; tend keeps running), write anything but through temp + fsync + rename + folder
//! fsync, or overwrite a file it did not write (a corrupt file is moved aside, never replaced).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use log::{debug, warn};
use serde::{Deserialize, Serialize};

mod atomic;
mod thread;

pub(crate) use atomic::unix_seconds;
pub use atomic::write_atomic;
use atomic::{sync_folder, with_context, with_suffix};
pub use thread::{ProcessStateStore, StoreHandle, StoreStats};

const LOG: &str = "ProcessStateStore";

/// The only `version` this tend reads and writes. A change that an older tend could not safely
/// ignore (a renamed or retyped field) must bump it; adding an optional field need not.
pub const STATE_VERSION: u32 = 1;

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
/// written later can replace it (pueue overwrote its corrupt state, and with it the only record
/// of what was running).
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
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
pub(super) mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::atomic::open_tmp;
    use super::{
        LoadOutcome, StateFile, StoredProcess, load, move_aside, with_suffix, write_atomic,
    };
    pub(super) use crate::test_support::TempDir;

    /// Where the store keeps its file, below a test's folder.
    pub(super) fn state_file(dir: &TempDir) -> PathBuf {
        dir.join(".tend").join("process-state.json")
    }

    pub(super) fn process(pid: u32, port: u16) -> StoredProcess {
        StoredProcess {
            pid,
            pgid: pid,
            command: format!("server --port {port}"),
            start_time: 1_764_150_000_000 + u64::from(pid),
            proc_start_ticks: 8_812_345 + u64::from(pid),
            ports: vec![port],
        }
    }

    pub(super) fn state_with(ids: &[(&str, u32)]) -> StateFile {
        let mut state = StateFile::empty("boot-1");
        for (i, (id, pid)) in ids.iter().enumerate() {
            state.insert(*id, process(*pid, 8000 + i as u16));
        }
        state
    }

    pub(super) fn loaded(path: &Path) -> StateFile {
        match load(path).expect("load") {
            LoadOutcome::Loaded(state) => state,
            other => panic!("expected Loaded, got {other:?}"),
        }
    }

    pub(super) fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

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
        let dir = TempDir::new("store-round-trip");
        let state = state_with(&[("web", 10), ("api", 11)]);
        write_atomic(&state_file(&dir), &state.to_bytes().unwrap()).unwrap();
        assert_eq!(loaded(&state_file(&dir)), state);
    }

    #[test]
    fn missing_file_is_missing() {
        let dir = TempDir::new("store-missing");
        assert!(matches!(
            load(&state_file(&dir)).unwrap(),
            LoadOutcome::Missing
        ));
    }

    #[test]
    fn folder_is_created_0700_and_files_are_0600() {
        let dir = TempDir::new("store-modes");
        let path = dir.path().join("a").join("b").join("state.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(mode(dir.path().join("a").as_path()), 0o700);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(!with_suffix(&path, ".tmp").exists(), "tmp renamed away");
    }

    #[test]
    fn existing_folder_mode_is_left_alone() {
        let dir = TempDir::new("store-folder-kept");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        write_atomic(&dir.path().join("state.json"), b"{}").unwrap();
        assert_eq!(mode(dir.path()), 0o755);
    }

    #[test]
    fn tmp_is_0600_and_truncated_even_if_it_existed() {
        let dir = TempDir::new("store-tmp-mode");
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
        let dir = TempDir::new("store-prev");
        let path = state_file(&dir);
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
        let dir = TempDir::new("store-under-file");
        fs::write(dir.path().join("blocker"), "").unwrap();
        let path = dir.path().join("blocker").join("state.json");
        let err = write_atomic(&path, b"{}").unwrap_err();
        assert!(err.to_string().contains("state.json.tmp"), "{err}");
    }

    #[test]
    fn corrupt_state_is_moved_aside() {
        let dir = TempDir::new("store-corrupt");
        let path = state_file(&dir);
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
            let dir = TempDir::new("store-shape");
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
        let dir = TempDir::new("store-aside-taken");
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
}
