//! Log rotation (docs/DESIGN.md §2, issue 6): each server's log rotates at `log_max_bytes`, keeping
//! `log_keep` older files (`<id>.log.1` newest), while the child keeps writing to it — children
//! write their log files themselves so they keep logging while tend restarts, which means tend
//! can never pause a writer to rotate.
//!
//! The live file is never renamed or truncated. tend copies its first whole filesystem blocks to
//! `.1` and then removes exactly those bytes from the head of the file with
//! `fallocate(FALLOC_FL_COLLAPSE_RANGE)`. The kernel serializes that against the child's
//! `O_APPEND` writes (both take the inode lock), so no byte is lost, whatever the child writes
//! meanwhile. Collapsing works in whole blocks, so a line that straddles the cut ends `.1` and
//! begins the live file; tend's readers (the logs API, `tend logs`, the live tail) read across
//! the boundary and join it. Where the filesystem cannot collapse (tmpfs, btrfs, NFS), tend falls
//! back to copy-then-truncate, and says how many bytes were written between the copy and the
//! truncation: those are lost, which is the classic copytruncate hole.
//!
//! The "logs" thread watches the log folder with inotify, so a quiet log costs nothing and a
//! loud one is rotated as soon as it crosses the limit.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::logs::times;
use crate::os::inotify::Inotify;

const LOG: &str = "LogRotation";

/// How a rotation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Bytes moved from the live file to `.1`.
    pub moved: u64,
    /// Bytes written between the copy and a copy-then-truncate (0 when collapsing worked).
    pub lost: u64,
    pub collapsed: bool,
}

/// Bytes removed from the head of each live log during this tend's life. Followers of a live
/// file add it to their offset, so a rotation does not make them read old lines again.
fn removed() -> &'static Mutex<HashMap<PathBuf, u64>> {
    static REMOVED: OnceLock<Mutex<HashMap<PathBuf, u64>>> = OnceLock::new();
    REMOVED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Rotations done and bytes lost to copy-then-truncate, for /metrics.
pub static ROTATIONS: AtomicU64 = AtomicU64::new(0);
pub static LOST_BYTES: AtomicU64 = AtomicU64::new(0);

/// How many bytes have been removed from the head of `path` so far.
pub fn removed_from_head(path: &Path) -> u64 {
    removed()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(path)
        .copied()
        .unwrap_or(0)
}

/// The `n`-th rotated file of `path` (`n` ≥ 1).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates `path` if it has grown past `max_bytes`.
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Option<Rotated>> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() > max_bytes => rotate(path, keep).map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Held while a rotation moves bytes, so a reader that must see the live file's length and
/// `removed_from_head` (and the rotated files) as one consistent picture can wait it out.
static ROTATING: Mutex<()> = Mutex::new(());

/// Runs `read` while no rotation is under way (`tail::tail_stamped`).
pub fn paused<T>(read: impl FnOnce() -> T) -> T {
    let _guard = ROTATING.lock().unwrap_or_else(|p| p.into_inner());
    read()
}

/// Moves the head of `path` to `path.1` (shifting older files up to `keep`) while writers go on.
pub fn rotate(path: &Path, keep: u32) -> io::Result<Rotated> {
    let _guard = ROTATING.lock().unwrap_or_else(|p| p.into_inner());
    let mut live = OpenOptions::new().read(true).write(true).open(path)?;
    let meta = live.metadata()?;
    let block = meta.blksize().max(512);
    let size = meta.len();
    let cut = size - size % block;
    if cut == 0 {
        return Ok(Rotated {
            moved: 0,
            lost: 0,
            collapsed: true,
        });
    }
    shift(path, keep)?;
    let first = rotated_path(path, 1);
    let mut head = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&first)?;
    live.seek(SeekFrom::Start(0))?;
    io::copy(&mut io::Read::take(&live, cut), &mut head)?;

    // SAFETY: fallocate on our own open descriptor; the range lies within the file.
    let collapsed = unsafe {
        libc::fallocate(
            live.as_raw_fd(),
            libc::FALLOC_FL_COLLAPSE_RANGE,
            0,
            cut as libc::off_t,
        )
    } == 0;
    let (moved, lost) = if collapsed {
        (cut, 0)
    } else {
        copy_then_truncate(&mut live, &mut head, cut)?
    };
    head.sync_data()?;
    *removed()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(path.to_path_buf())
        .or_insert(0) += moved;
    ROTATIONS.fetch_add(1, Ordering::Relaxed);
    LOST_BYTES.fetch_add(lost, Ordering::Relaxed);
    Ok(Rotated {
        moved,
        lost,
        collapsed,
    })
}

/// The fallback where collapsing is unsupported: copy the rest, then truncate. Whatever the
/// child appends between the last read and the truncation is lost; it is counted, not hidden.
fn copy_then_truncate(live: &mut File, head: &mut File, copied: u64) -> io::Result<(u64, u64)> {
    live.seek(SeekFrom::Start(copied))?;
    let rest = io::copy(live, head)?;
    let moved = copied + rest;
    let before_truncate = live.metadata()?.len();
    live.set_len(0)?;
    Ok((moved, before_truncate.saturating_sub(moved)))
}

/// `.keep` is dropped, `.n` becomes `.n+1`.
fn shift(path: &Path, keep: u32) -> io::Result<()> {
    match fs::remove_file(rotated_path(path, keep)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for n in (1..keep).rev() {
        match fs::rename(rotated_path(path, n), rotated_path(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// `log_max_bytes` and `log_keep` as the "logs" thread reads them at each rotation, so a config
/// reload changes them without restarting anything.
#[derive(Debug)]
pub struct Limits {
    max_bytes: AtomicU64,
    keep: AtomicU32,
}

impl Limits {
    pub fn new(max_bytes: u64, keep: u32) -> Limits {
        Limits {
            max_bytes: AtomicU64::new(max_bytes),
            keep: AtomicU32::new(keep),
        }
    }

    pub fn set(&self, max_bytes: u64, keep: u32) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        self.keep.store(keep, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u32) {
        (
            self.max_bytes.load(Ordering::Relaxed),
            self.keep.load(Ordering::Relaxed),
        )
    }
}

/// Starts the "logs" thread: an inotify watch on `log_dir`; any `<id>.log` that grows past
/// the limit is rotated. Existing logs are checked once at start (an adopted child may have
/// written a lot while tend was down).
pub fn start(log_dir: PathBuf, limits: Arc<Limits>) -> io::Result<()> {
    let inotify = Inotify::new(false)?;
    inotify.add_watch(&log_dir, libc::IN_MODIFY)?;
    std::thread::Builder::new()
        .name("logs".into())
        .spawn(move || {
            check_all(&log_dir, &limits);
            watch(&inotify, &log_dir, &limits);
        })?;
    Ok(())
}

fn check_all(log_dir: &Path, limits: &Limits) {
    let (max_bytes, keep) = limits.get();
    let Ok(entries) = fs::read_dir(log_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            // Written before this tend watched: its last write is all that is known.
            times::observe(&path);
            rotate_logged(&path, max_bytes, keep);
        }
    }
}

fn rotate_logged(path: &Path, max_bytes: u64, keep: u32) {
    match rotate_if_needed(path, max_bytes, keep) {
        Ok(Some(r)) if r.lost > 0 => log::warn!(target: LOG,
            "Rotated {} by copy and truncate (this filesystem cannot collapse a file): {} bytes \
             written during the rotation were lost", path.display(), r.lost),
        Ok(Some(r)) => {
            log::debug!(target: LOG, "Rotated {} ({} bytes to .1)", path.display(), r.moved)
        }
        Ok(None) => {}
        Err(e) => log::error!(target: LOG, "Cannot rotate {}: {e}", path.display()),
    }
}

fn watch(inotify: &Inotify, log_dir: &Path, limits: &Limits) {
    let mut buf = vec![0u8; crate::os::inotify::READ_BUFFER];
    loop {
        let events = match inotify.read(&mut buf) {
            Ok(events) => events,
            Err(e) => {
                log::error!(target: LOG, "Log watch failed: {e}");
                return;
            }
        };
        let mut names: Vec<String> = Vec::new();
        for event in events {
            if let Some(name) = event.name.to_str() {
                if name.ends_with(".log") && !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        let (max_bytes, keep) = limits.get();
        for name in names {
            let path = log_dir.join(name);
            times::observe(&path);
            rotate_logged(&path, max_bytes, keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::io::Write;

    #[test]
    fn rotation_moves_whole_blocks_and_keeps_the_rest_live() {
        let dir = TempDir::new("rotate-blocks");
        let path = dir.join("web.log");
        let mut text = String::new();
        for n in 0..2000 {
            text.push_str(&format!("line {n:05}\n"));
        }
        fs::write(&path, &text).unwrap();
        let rotated = rotate(&path, 3).unwrap();
        assert!(rotated.collapsed, "ext4 collapses");
        assert_eq!(rotated.lost, 0);
        let head = fs::read_to_string(rotated_path(&path, 1)).unwrap();
        let live = fs::read_to_string(&path).unwrap();
        assert_eq!(head.len() as u64, rotated.moved);
        assert_eq!(head.len() % 4096, 0);
        assert_eq!(
            format!("{head}{live}"),
            text,
            "nothing lost, nothing doubled"
        );
        assert_eq!(removed_from_head(&path), rotated.moved);
    }

    #[test]
    fn older_files_shift_and_the_oldest_is_dropped() {
        let dir = TempDir::new("rotate-shift");
        let path = dir.join("web.log");
        for round in 0..4u8 {
            fs::write(&path, vec![b'a' + round; 8192]).unwrap();
            rotate(&path, 2).unwrap();
        }
        assert_eq!(fs::read(rotated_path(&path, 1)).unwrap()[0], b'd');
        assert_eq!(fs::read(rotated_path(&path, 2)).unwrap()[0], b'c');
        assert!(!rotated_path(&path, 3).exists());
    }

    #[test]
    fn a_writer_that_never_stops_loses_nothing_through_many_rotations() {
        let dir = TempDir::new("rotate-writer");
        let path = dir.join("fast.log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        // The writer writes until the rotator has rotated often enough, so the test does not
        // depend on which of the two threads the machine runs faster.
        const ROTATIONS: usize = 20;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // One write per line, as a line-buffered child does.
                    file.write_all(format!("line {n:07} of the fast writer\n").as_bytes())
                        .unwrap();
                    n += 1;
                }
                n
            }
        });
        let deadline = std::time::Instant::now() + crate::test_support::DEADLINE * 6;
        let mut rotations = 0;
        while rotations < ROTATIONS {
            assert!(
                std::time::Instant::now() < deadline,
                "only {rotations} rotations"
            );
            if rotate_if_needed(&path, 64 * 1024, 1000).unwrap().is_some() {
                rotations += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let lines_written = writer.join().unwrap();
        let mut all = Vec::new();
        for n in (1..=1000).rev() {
            if let Ok(bytes) = fs::read(rotated_path(&path, n)) {
                all.extend(bytes);
            }
        }
        all.extend(fs::read(&path).unwrap());
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("fast writer: {lines_written} lines through {rotations} rotations");
        assert_eq!(lines.len(), lines_written, "{rotations} rotations");
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("line {n:07} of the fast writer"));
        }
    }
}
