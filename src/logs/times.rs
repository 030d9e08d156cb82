//! When log lines arrived, for merging several servers' logs in time order (`tend logs @group`).
//!
//! Children write their log files themselves (docs/DESIGN.md §7), so a line carries no time of
//! its own and tend never sees a write happen. What tend does see: the "logs" thread
//! (`rotate::start`) wakes on inotify's IN_MODIFY for every write to the log folder and
//! records a *mark* — "the file held L bytes, and its modification time was T" (L logical:
//! counting bytes rotation removed from its head). Every line that ends at or before L was
//! written by T, so the first mark at or past a line's end bounds when it was written. While the
//! watcher keeps up (it wakes per write), T is the line's own write; when several writes land
//! before it wakes, the earlier ones get the later write's time. A file's modification time is
//! the only bound for lines written while no tend watched. Modification times come from the
//! kernel's coarse clock, so a bound may be up to one clock tick (a few ms) early.
//!
//! Marks are kept in memory for this tend's life only, a bounded number per file: when a file
//! has too many, every other mark of its older half is dropped, so old lines keep a coarser,
//! still true, bound. Written by the "logs" thread, read by HTTP handler threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Marks kept per file before the older half is thinned: at most 16 KiB per log file.
const MAX_MARKS: usize = 1024;

/// `(logical length, milliseconds since the Unix epoch)`, both non-decreasing.
type Marks = Vec<(u64, u64)>;

fn marks() -> &'static Mutex<HashMap<PathBuf, Marks>> {
    static MARKS: OnceLock<Mutex<HashMap<PathBuf, Marks>>> = OnceLock::new();
    MARKS.get_or_init(|| Mutex::new(HashMap::new()))
}

pub fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Records that `path` held `logical_len` bytes at `at_ms`. A shorter file than last time was
/// replaced or truncated by someone else: its old marks no longer describe it.
pub fn mark(path: &Path, logical_len: u64, at_ms: u64) {
    let mut all = marks().lock().unwrap_or_else(|p| p.into_inner());
    let list = all.entry(path.to_path_buf()).or_default();
    match list.last() {
        Some(&(len, _)) if len == logical_len => return,
        Some(&(len, _)) if len > logical_len => list.clear(),
        _ => {}
    }
    let at_ms = list.last().map_or(at_ms, |&(_, last)| at_ms.max(last));
    match list.last_mut() {
        // Written within the same millisecond: one mark says as much.
        Some(last) if last.1 == at_ms => last.0 = logical_len,
        _ => list.push((logical_len, at_ms)),
    }
    if list.len() > MAX_MARKS {
        thin(list);
    }
}

/// Drops every other mark of the older half: recent lines keep their fine bounds.
fn thin(list: &mut Marks) {
    let half = list.len() / 2;
    let mut index = 0;
    list.retain(|_| {
        let keep = index >= half || index % 2 == 1;
        index += 1;
        keep
    });
}

/// The time of the first mark at or past `logical_end` (a line ending there was in the file by
/// then), or `None` if no mark has seen that far yet.
pub fn first_seen(path: &Path, logical_end: u64) -> Option<u64> {
    let all = marks().lock().unwrap_or_else(|p| p.into_inner());
    let list = all.get(path)?;
    let at = list.partition_point(|&(len, _)| len < logical_end);
    list.get(at).map(|&(_, ms)| ms)
}

/// Marks `path` at its current logical length with its modification time: the time of the
/// write that made it this long (the kernel sets it as each write begins), so every byte up to
/// here was written by then, however late the watcher woke. Called only on the "logs" thread,
/// which also does every rotation, so the length and `removed_from_head` agree.
pub fn observe(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let at = meta.modified().unwrap_or_else(|_| SystemTime::now());
    let logical = crate::logs::rotate::removed_from_head(path) + meta.len();
    mark(path, logical, epoch_ms(at));
}

/// Forgets every mark (unit tests share this process's map).
#[cfg(test)]
fn forget(path: &Path) {
    marks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gets_the_first_mark_that_covers_its_end() {
        let path = Path::new("/nonexistent/logtimes-first.log");
        forget(path);
        assert_eq!(first_seen(path, 1), None);
        mark(path, 10, 1_000);
        mark(path, 10, 1_500);
        mark(path, 20, 2_000);
        mark(path, 25, 2_000);
        assert_eq!(first_seen(path, 5), Some(1_000));
        assert_eq!(first_seen(path, 10), Some(1_000));
        assert_eq!(first_seen(path, 11), Some(2_000));
        assert_eq!(first_seen(path, 26), None);
        // A clock step back never makes a later length look earlier.
        mark(path, 30, 1_200);
        assert_eq!(first_seen(path, 30), Some(2_000));
        // Shorter: replaced by someone else; the old marks are gone.
        mark(path, 4, 3_000);
        assert_eq!(first_seen(path, 4), Some(3_000));
        assert_eq!(first_seen(path, 5), None);
        forget(path);
    }

    #[test]
    fn many_marks_thin_the_old_ones_and_stay_upper_bounds() {
        let path = Path::new("/nonexistent/logtimes-thin.log");
        forget(path);
        for n in 1..=(MAX_MARKS as u64 * 3) {
            mark(path, n * 10, n * 100);
        }
        let kept = marks().lock().unwrap()[path].len();
        assert!(kept <= MAX_MARKS, "{kept} marks kept");
        for n in (1..=(MAX_MARKS as u64 * 3)).step_by(97) {
            let seen = first_seen(path, n * 10).unwrap();
            assert!(
                seen >= n * 100,
                "line at {n} seen at {seen}, before it was written"
            );
        }
        let last = MAX_MARKS as u64 * 3;
        assert_eq!(
            first_seen(path, last * 10),
            Some(last * 100),
            "recent marks are exact"
        );
        forget(path);
    }
}
