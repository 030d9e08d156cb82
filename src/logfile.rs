//! Reading servers' log files: the last N lines for `GET /api/servers/:id/logs` and `tend logs`,
//! and following new lines for the live tail. Runs on HTTP handler threads; it only reads.
//! Children write these files themselves (DESIGN §7), so nothing here can lose their output.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::process::log_path;

/// The most lines one request may ask for (DESIGN §4).
pub const MAX_LINES: usize = 10_000;
const CHUNK: u64 = 64 * 1024;

/// The last `count` lines of server `id`'s log, oldest first. A missing log is empty.
pub fn tail(log_dir: &Path, id: &str, count: usize) -> io::Result<Vec<String>> {
    let count = count.min(MAX_LINES);
    let mut file = match File::open(log_path(log_dir, id)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    last_lines(&mut file, len, count)
}

/// Reads backwards in chunks until `count` complete lines are found, so a 1 GiB log costs no
/// more than its last lines.
fn last_lines(file: &mut File, len: u64, count: usize) -> io::Result<Vec<String>> {
    if count == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let step = CHUNK.min(start);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        // A trailing newline ends the last line; it does not start an empty one.
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let newlines = body.iter().filter(|&&b| b == b'\n').count();
        if newlines >= count || start == 0 {
            let text = String::from_utf8_lossy(body);
            let lines: Vec<&str> = text.split('\n').collect();
            // Without reaching the start, the first piece may be a partial line.
            let skip_partial = usize::from(start > 0);
            let complete = &lines[skip_partial..];
            let from = complete.len().saturating_sub(count);
            return Ok(complete[from..].iter().map(|l| l.to_string()).collect());
        }
    }
}

/// Follows a log file from its current end, yielding complete lines as they are written.
pub struct Follower {
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    pub fn new(log_dir: &Path, id: &str) -> Follower {
        let path = log_path(log_dir, id);
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Follower {
            path,
            offset,
            partial: Vec::new(),
        }
    }

    /// Lines written since the last call. A file that shrank was truncated or replaced (a
    /// rotation): reading starts again at its beginning.
    pub fn poll(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return Vec::new();
        };
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Vec::new();
        }
        // Bound one read so a burst cannot balloon a handler thread's memory.
        let want = (len - self.offset).min(4 * CHUNK);
        let mut data = vec![0; want as usize];
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_exact(&mut data).is_err() {
            return Vec::new();
        }
        self.offset += want;
        self.partial.extend_from_slice(&data);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&complete[..complete.len() - 1])
            .split('\n')
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tend-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tail_returns_the_last_lines_oldest_first() {
        let dir = temp_dir("tail");
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follower_yields_only_complete_new_lines() {
        let dir = temp_dir("follow");
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
        std::fs::write(&path, "fresh\n").unwrap();
        assert_eq!(follower.poll(), ["fresh"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
