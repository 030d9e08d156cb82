//! History: the last timeline events, kept in memory for the API and in a file beside the state
//! file so they survive a restart of tend (docs/DESIGN.md §12 "History").
//!
//! The supervisor only hands each event over (see `recorder`); the "history" thread encodes it,
//! adds it to the [`Journal`] that HTTP handlers read, and writes the file. Writes are batched:
//! at most one per [`WRITE_EVERY`], however many events come (a crash loop costs one fsync a
//! second, not one per event), and one last write when tend stops. The file is written like
//! the state file (temp + fsync + rename, `store::write_atomic`); a file that cannot be read is
//! moved aside, never overwritten, and the log says where it went.
//!
//! Timeline events carry ids, pids, ports, exit codes, health details and reload plans: never
//! a child's environment or output.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, bounded, never, select};
use serde::Serialize;
use serde_json::Value;

use crate::model::Timeline;
use crate::store;

const LOG: &str = "History";

/// Events kept, in memory and in the file.
pub const CAPACITY: usize = 1000;
/// The file is written at most this often while events keep coming.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);
/// Events waiting for the history thread before new ones are dropped (and counted).
pub const QUEUE: usize = 4096;
const VERSION: u64 = 1;

/// A timeline event as the supervisor published it: its SSE id, when, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub event: Timeline,
}

/// One event in the journal, encoded once: `{"id", "at", "event", "server"?, "data"}`.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    server: Option<String>,
    json: Arc<str>,
}

#[derive(Serialize)]
struct EntryJson<'a> {
    id: u64,
    at: u64,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    data: &'a Timeline,
}

impl Entry {
    fn from_record(record: &Record) -> Entry {
        let json = serde_json::to_string(&EntryJson {
            id: record.id,
            at: record.at_ms,
            event: record.event.name(),
            server: record.event.server(),
            data: &record.event,
        })
        .expect("a timeline event serializes");
        Entry {
            id: record.id,
            server: record.event.server().map(str::to_string),
            json: Arc::from(json),
        }
    }

    /// An entry read back from the file; `None` when it lacks an id.
    fn from_value(value: &Value) -> Option<Entry> {
        Some(Entry {
            id: value.get("id")?.as_u64()?,
            server: value
                .get("server")
                .and_then(Value::as_str)
                .map(str::to_string),
            json: Arc::from(value.to_string()),
        })
    }
}

/// The last [`CAPACITY`] events, oldest first; shared by the history thread (writes) and HTTP
/// handlers (reads). Each lock is held for a push or a copy of some `Arc`s, never for I/O.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<VecDeque<Entry>>,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, entry: Entry) {
        let mut entries = self.lock();
        entries.push_back(entry);
        while entries.len() > CAPACITY {
            entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The newest `limit` events (oldest first) of `server` (all when `None`) with an id above
    /// `after`, as a JSON array.
    pub fn recent_json(&self, limit: usize, server: Option<&str>, after: Option<u64>) -> String {
        let picked: Vec<Arc<str>> = {
            let entries = self.lock();
            let mut picked: Vec<Arc<str>> = entries
                .iter()
                .rev()
                .filter(|e| after.is_none_or(|after| e.id > after))
                .filter(|e| server.is_none_or(|id| e.server.as_deref() == Some(id)))
                .take(limit)
                .map(|e| Arc::clone(&e.json))
                .collect();
            picked.reverse();
            picked
        };
        let mut json = String::with_capacity(picked.iter().map(|j| j.len() + 1).sum::<usize>() + 2);
        json.push('[');
        for (i, entry) in picked.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(entry);
        }
        json.push(']');
        json
    }

    fn file_bytes(&self) -> Vec<u8> {
        format!(
            "{{\"version\":{VERSION},\"events\":{}}}\n",
            self.recent_json(CAPACITY, None, None)
        )
        .into_bytes()
    }
}

/// Where the history lives: `history.json` beside the state file.
pub fn path_beside(state_file: &Path) -> PathBuf {
    state_file.with_file_name("history.json")
}

/// Reads the history file into a journal. A missing file is an empty history; one that cannot
/// be parsed is moved aside (its new name is logged) and tend starts with an empty history.
/// Errors are I/O errors only (the file cannot be read, or not moved aside).
pub fn load(path: &Path) -> io::Result<Journal> {
    let journal = Journal::default();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(journal),
        Err(e) => return Err(e),
    };
    match parse(&bytes) {
        Ok(entries) => {
            for entry in entries {
                journal.push(entry);
            }
            log::debug!(target: LOG, "History: {} events from {}", journal.len(), path.display());
        }
        Err(reason) => {
            let moved_to = store::move_aside(path, store::unix_seconds())?;
            log::error!(target: LOG,
                "History file {} is corrupt ({reason}); moved it to {} and starting with no history",
                path.display(), moved_to.display());
        }
    }
    Ok(journal)
}

fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match root.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(other) => return Err(format!("unknown version {other}")),
        None => return Err("no version".to_string()),
    }
    let events = root
        .get("events")
        .and_then(Value::as_array)
        .ok_or("no events array")?;
    events
        .iter()
        .enumerate()
        .map(|(i, value)| Entry::from_value(value).ok_or(format!("event {i} has no id")))
        .collect()
}

/// The running history thread.
pub struct HistoryWriter {
    thread: JoinHandle<()>,
}

impl HistoryWriter {
    /// Starts the "history" thread, which adds what `records` brings to `journal` and writes it
    /// to `path`. It stops when every sender of `records` is gone, after a last write.
    pub fn start(
        path: PathBuf,
        journal: Arc<Journal>,
    ) -> io::Result<(Sender<Arc<Record>>, HistoryWriter)> {
        let (sender, records) = bounded(QUEUE);
        let thread = thread::Builder::new()
            .name("history".into())
            .spawn(move || run(&path, &journal, &records))?;
        Ok((sender, HistoryWriter { thread }))
    }

    /// Waits for the last write (after every sender is dropped).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn run(path: &Path, journal: &Journal, records: &Receiver<Arc<Record>>) {
    let mut due: Option<Instant> = None;
    let mut last_write: Option<Instant> = None;
    let mut failing = false;
    let mut write = |journal: &Journal, last_write: &mut Option<Instant>| {
        *last_write = Some(Instant::now());
        match store::write_atomic(path, &journal.file_bytes()) {
            Ok(()) if failing => {
                failing = false;
                log::info!(target: LOG, "History written to {} again", path.display());
            }
            Ok(()) => {}
            // Logged once per failing streak: the next event tries again.
            Err(e) if !failing => {
                failing = true;
                log::error!(target: LOG, "Cannot write the history file {}: {e}", path.display());
            }
            Err(_) => {}
        }
    };
    loop {
        let timer = due.map_or_else(never, |at| {
            after(at.saturating_duration_since(Instant::now()))
        });
        select! {
            recv(records) -> record => match record {
                Ok(record) => {
                    journal.push(Entry::from_record(&record));
                    if due.is_none() {
                        // The first event after a quiet spell is written at once.
                        due = Some(last_write.map_or_else(Instant::now, |at| at + WRITE_EVERY));
                    }
                }
                Err(_) => break,
            },
            recv(timer) -> _ => {
                due = None;
                write(journal, &mut last_write);
            }
        }
    }
    if due.is_some() {
        write(journal, &mut last_write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    fn record(id: u64, server: &str) -> Record {
        Record {
            id,
            at_ms: 1_700_000_000_000 + id,
            event: Timeline::ServerStarted {
                id: server.to_string(),
                pid: id as u32,
            },
        }
    }

    #[test]
    fn the_journal_keeps_the_newest_and_filters() {
        let journal = Journal::default();
        for id in 0..(CAPACITY as u64 + 5) {
            journal.push(Entry::from_record(&record(
                id,
                if id % 2 == 0 { "a" } else { "b" },
            )));
        }
        assert_eq!(journal.len(), CAPACITY);
        let last: Vec<Value> = serde_json::from_str(&journal.recent_json(3, None, None)).unwrap();
        let ids: Vec<u64> = last.iter().map(|v| v["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [1002, 1003, 1004]);
        assert_eq!(last[0]["event"], "serverStarted");
        assert_eq!(last[0]["server"], "a");
        assert_eq!(last[0]["data"]["pid"], 1002);
        assert_eq!(last[0]["at"], 1_700_000_001_002u64);
        let b: Vec<Value> = serde_json::from_str(&journal.recent_json(2, Some("b"), None)).unwrap();
        assert!(b.iter().all(|v| v["server"] == "b"));
        let after: Vec<Value> =
            serde_json::from_str(&journal.recent_json(100, None, Some(1002))).unwrap();
        assert_eq!(after.len(), 2);
    }

    #[test]
    fn the_file_round_trips_and_a_corrupt_one_is_kept_aside() {
        let dir = TempDir::new("history-roundtrip");
        let path = dir.join("history.json");
        let journal = Arc::new(Journal::default());
        let (sender, writer) = HistoryWriter::start(path.clone(), Arc::clone(&journal)).unwrap();
        for id in 1..=3 {
            sender.send(Arc::new(record(id, "web"))).unwrap();
        }
        drop(sender);
        writer.join();
        let loaded = load(&path).unwrap();
        let as_value = |j: &Journal| -> Value {
            serde_json::from_str(&j.recent_json(10, None, None)).unwrap()
        };
        assert_eq!(as_value(&loaded), as_value(&journal));
        assert_eq!(loaded.len(), 3);

        std::fs::write(&path, b"{\"version\":1,\"events\":[{\"id\":").unwrap();
        let empty = load(&path).unwrap();
        assert_eq!(empty.len(), 0);
        assert!(!path.exists(), "the corrupt file was moved away");
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("history.json.corrupt-")
            })
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            std::fs::read(kept[0].path()).unwrap(),
            b"{\"version\":1,\"events\":[{\"id\":"
        );
    }
}
