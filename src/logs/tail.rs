//! Reading servers' log files: the last N lines for `GET /api/servers/:id/logs` and `tend logs`,
//! and following new lines for the live tail. Runs on HTTP handler threads; it only reads.
//! Children write these files themselves (docs/DESIGN.md §7), so nothing here can lose their output.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::logs::paths::log_path;
use crate::logs::rotate::{self, removed_from_head, rotated_path};
use crate::logs::times;

/// The most lines one request may ask for (docs/DESIGN.md §4).
pub const MAX_LINES: usize = 10_000;
const CHUNK: u64 = 64 * 1024;

/// The last `count` lines of server `id`'s log, oldest first, read across its rotated files
/// (a line split by a rotation is joined again). A missing log is empty.
pub fn tail(log_dir: &Path, id: &str, count: usize) -> io::Result<Vec<String>> {
    let mut files = open_newest_first(&log_path(log_dir, id))?;
    let lines = last_lines(&mut files, count.min(MAX_LINES))?;
    Ok(lines.into_iter().map(|(line, _)| line).collect())
}

/// The live file, then .1, .2, … as long as they exist: each open, with its length and
/// modification time (ms since the epoch).
fn open_newest_first(live: &Path) -> io::Result<Vec<(File, u64, u64)>> {
    let mut files = Vec::new();
    for n in 0..=MAX_ROTATED {
        let path = if n == 0 {
            live.to_path_buf()
        } else {
            rotated_path(live, n)
        };
        match File::open(&path) {
            Ok(file) => {
                let meta = file.metadata()?;
                let modified = meta.modified().map_or(0, times::epoch_ms);
                files.push((file, meta.len(), modified));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        }
    }
    Ok(files)
}

/// [`tail`] with each line's time bound (`times`), in ms since the epoch: the earliest file
/// modification time tend knows of by which the line was in its file. Oldest first, never
/// decreasing.
pub fn tail_stamped(log_dir: &Path, id: &str, count: usize) -> io::Result<Vec<(String, u64)>> {
    let live = log_path(log_dir, id);
    // The lengths, the rotated files and the bytes removed from the head must be one picture.
    let (mut files, logical_end) = rotate::paused(|| {
        let files = open_newest_first(&live)?;
        let live_len = files.first().map_or(0, |f| f.1);
        io::Result::Ok((files, removed_from_head(&live) + live_len))
    })?;
    let lines = last_lines(&mut files, count.min(MAX_LINES))?;
    let mut stamped: Vec<(String, u64)> = lines
        .into_iter()
        .map(|(line, from_end)| {
            // The file that holds the line's end: its last write came no earlier.
            let mut before = from_end;
            let mut modified = u64::MAX;
            for &(_, len, file_modified) in &files {
                modified = file_modified;
                if before < len {
                    break;
                }
                before -= len;
            }
            let seen = logical_end
                .checked_sub(from_end)
                .and_then(|end| times::first_seen(&live, end))
                .unwrap_or(u64::MAX);
            (line, seen.min(modified))
        })
        .collect();
    // A line was written no later than any line after it, so a later line's bound holds for
    // it too.
    for i in (0..stamped.len().saturating_sub(1)).rev() {
        stamped[i].1 = stamped[i].1.min(stamped[i + 1].1);
    }
    Ok(stamped)
}

/// Rotated files beyond this are never read (`log_keep` is at most 100).
const MAX_ROTATED: u32 = 100;

/// Reads backwards in chunks through `files` (newest first, as if they were one file written
/// oldest to newest) until `count` complete lines are found, so a 1 GiB log costs no more than
/// its last lines. Each line comes with how many bytes of the files follow its end (its
/// newline included).
fn last_lines(files: &mut [(File, u64, u64)], count: usize) -> io::Result<Vec<(String, u64)>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut at_start = true;
    'files: for (file, len, _) in files.iter_mut() {
        let mut start = *len;
        while start > 0 {
            let step = CHUNK.min(start);
            start -= step;
            file.seek(SeekFrom::Start(start))?;
            let mut chunk = vec![0; step as usize];
            file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&buf);
            buf = chunk;
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if body.iter().filter(|&&b| b == b'\n').count() >= count {
                at_start = false;
                break 'files;
            }
        }
    }
    // A trailing newline ends the last line; it does not start an empty one.
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    // Split on bytes, so each line's place in the files is exact whatever its encoding.
    let mut pieces: Vec<(&[u8], u64)> = Vec::new();
    let mut start = 0;
    for (at, _) in body.iter().enumerate().filter(|&(_, &b)| b == b'\n') {
        pieces.push((&body[start..at], (buf.len() - at - 1) as u64));
        start = at + 1;
    }
    pieces.push((&body[start..], 0));
    // Unless everything was read, the first piece may be the end of an earlier line.
    let complete = &pieces[usize::from(!at_start)..];
    let from = complete.len().saturating_sub(count);
    Ok(complete[from..]
        .iter()
        .map(|&(line, from_end)| (String::from_utf8_lossy(line).into_owned(), from_end))
        .collect())
}

/// Follows a log file from its current end, yielding complete lines as they are written.
///
/// Offsets are logical: bytes since the file was created in this tend's life, so a rotation
/// (which removes bytes from the head of the live file) does not make it read lines twice.
pub struct Follower {
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    pub fn new(log_dir: &Path, id: &str) -> Follower {
        let path = log_path(log_dir, id);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let offset = removed_from_head(&path) + len;
        Follower {
            path,
            offset,
            partial: Vec::new(),
        }
    }

    /// Lines written since the last call.
    #[cfg(test)]
    pub fn poll(&mut self) -> Vec<String> {
        self.poll_stamped()
            .into_iter()
            .map(|(line, _)| line)
            .collect()
    }

    /// [`Follower::poll`] with each line's arrival bound (see [`tail_stamped`]); a line no mark
    /// has seen yet gets the file's modification time as this read found it.
    pub fn poll_stamped(&mut self) -> Vec<(String, u64)> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = file.metadata() else {
            return Vec::new();
        };
        let (len, modified) = (meta.len(), meta.modified().map_or(0, times::epoch_ms));
        let removed = removed_from_head(&self.path);
        let mut physical = self.offset.saturating_sub(removed);
        if self.offset < removed || physical > len {
            // Rotated past what we had read (a burst between polls), or truncated by someone
            // else: go on from the start of what the live file holds now.
            physical = 0;
            self.offset = removed;
            self.partial.clear();
        }
        if len == physical {
            return Vec::new();
        }
        // Bound one read so a burst cannot balloon a handler thread's memory.
        let want = (len - physical).min(4 * CHUNK);
        let mut data = vec![0; want as usize];
        if file.seek(SeekFrom::Start(physical)).is_err() || file.read_exact(&mut data).is_err() {
            return Vec::new();
        }
        self.offset += want;
        self.partial.extend_from_slice(&data);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        let end = self.offset - self.partial.len() as u64;
        let mut lines = Vec::new();
        let mut start = 0;
        for (at, _) in complete.iter().enumerate().filter(|&(_, &b)| b == b'\n') {
            let line_end = end - (complete.len() - at - 1) as u64;
            let seen =
                times::first_seen(&self.path, line_end).map_or(modified, |t| t.min(modified));
            lines.push((
                String::from_utf8_lossy(&complete[start..at]).into_owned(),
                seen,
            ));
            start = at + 1;
        }
        for i in (0..lines.len().saturating_sub(1)).rev() {
            lines[i].1 = lines[i].1.min(lines[i + 1].1);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::io::Write;

    #[test]
    fn tail_returns_the_last_lines_oldest_first() {
        let dir = TempDir::new("logfile-tail");
        let mut text = String::new();
        for n in 0..50_000 {
            text.push_str(&format!("line {n}\n"));
        }
        std::fs::write(log_path(&dir, "web"), &text).unwrap();
        assert_eq!(
            tail(&dir, "web", 3).unwrap(),
            ["line 49997", "line 49998", "line 49999"]
        );
        let many = tail(&dir, "web", 20_000).unwrap();
        assert_eq!(many.len(), MAX_LINES);
        assert_eq!(many[0], "line 40000");
        assert!(tail(&dir, "missing", 5).unwrap().is_empty());
        std::fs::write(log_path(&dir, "short"), "a\nb").unwrap();
        assert_eq!(tail(&dir, "short", 10).unwrap(), ["a", "b"]);
        // A rotation split "line 3" between .1 and the live file: it reads back whole.
        let live = log_path(&dir, "split");
        std::fs::write(rotated_path(&live, 2), "line 0\n").unwrap();
        std::fs::write(rotated_path(&live, 1), "line 1\nline 2\nli").unwrap();
        std::fs::write(&live, "ne 3\nline 4\n").unwrap();
        assert_eq!(
            tail(&dir, "split", 3).unwrap(),
            ["line 2", "line 3", "line 4"]
        );
        assert_eq!(
            tail(&dir, "split", 99).unwrap(),
            ["line 0", "line 1", "line 2", "line 3", "line 4"]
        );
    }

    #[test]
    fn stamped_lines_carry_the_first_mark_that_saw_them_and_never_go_back() {
        let dir = TempDir::new("logfile-stamped");
        let live = log_path(&dir, "web");
        std::fs::write(rotated_path(&live, 1), "old 1\nold 2\n").unwrap();
        std::fs::write(&live, "a\n").unwrap();
        times::mark(&live, 2, 5_000);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        file.write_all(b"bb\nccc\n").unwrap();
        times::mark(&live, 5, 6_000);
        times::mark(&live, 9, 7_000);
        let stamped = tail_stamped(&dir, "web", 10).unwrap();
        let texts: Vec<&str> = stamped.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(texts, ["old 1", "old 2", "a", "bb", "ccc"]);
        let stamps: Vec<u64> = stamped.iter().map(|&(_, at)| at).collect();
        // The rotated lines end before this tend's first mark: its time bounds them too.
        assert_eq!(stamps, [5_000, 5_000, 5_000, 6_000, 7_000]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follower_yields_only_complete_new_lines() {
        let dir = TempDir::new("logfile-follow");
        let path = log_path(&dir, "web");
        std::fs::write(&path, "old\n").unwrap();
        let mut follower = Follower::new(&dir, "web");
        assert!(follower.poll().is_empty());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"one\ntw").unwrap();
        assert_eq!(follower.poll(), ["one"]);
        file.write_all(b"o\n").unwrap();
        assert_eq!(follower.poll(), ["two"]);
        crate::logs::rotate::rotate(&path, 2).unwrap();
        file.write_all(b"after rotation\n").unwrap();
        assert_eq!(follower.poll(), ["after rotation"], "no line read twice");
        std::fs::write(&path, "fresh\n").unwrap();
        assert_eq!(follower.poll(), ["fresh"]);
    }
}
