//! The atomic write of the state file: temp + fsync + hard link to `.prev` + rename + folder
//! fsync, so a crash at any moment leaves a complete file.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
pub(super) fn open_tmp(tmp: &Path) -> io::Result<File> {
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
pub(super) fn sync_folder(path: &Path) -> io::Result<()> {
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
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// "create .tend/process-state.json.tmp: Is a directory (os error 21)", keeping the kind.
pub(super) fn with_context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
