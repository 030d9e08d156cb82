//! Several servers' logs as one stream, foreman's way (`tend logs`, `tend logs @backend`,
//! `GET /api/logs`, the dashboard's group log): each line with its server and its time bound
//! (`times`), merged in that order. Runs on HTTP handler threads; it only reads.
//!
//! The order is exactly as true as the bounds: a server's own lines never change order; lines
//! of different servers are ordered by the bound (ties: config order), which is the line's own
//! write time while the log watcher keeps up, and the file's last write for lines written while
//! no tend watched.

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::logs::tail::{self, Follower};

/// One line of a merged log, as the API sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedLine {
    pub id: String,
    pub line: String,
    /// By when the line was in its file, in ms since the Unix epoch (see `logs::times`).
    pub at: u64,
}

/// The last `count` lines over all of `ids` (config order), oldest first.
pub fn tail(log_dir: &Path, ids: &[String], count: usize) -> io::Result<Vec<MergedLine>> {
    let mut all = Vec::new();
    for id in ids {
        for (line, at) in tail::tail_stamped(log_dir, id, count)? {
            all.push(MergedLine {
                id: id.clone(),
                line,
                at,
            });
        }
    }
    // Stable: equal times keep config order, and each server's lines (never decreasing) keep
    // theirs.
    all.sort_by_key(|line| line.at);
    let from = all.len().saturating_sub(count);
    Ok(all.split_off(from))
}

/// Follows several logs at once.
pub struct Followers {
    each: Vec<(String, Follower)>,
}

impl Followers {
    pub fn new(log_dir: &Path, ids: &[String]) -> Followers {
        Followers {
            each: ids
                .iter()
                .map(|id| (id.clone(), Follower::new(log_dir, id)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    /// Lines written since the last call, merged by arrival. A line comes out as soon as it is
    /// read, so the order holds within one call, not across calls.
    pub fn poll(&mut self) -> Vec<MergedLine> {
        let mut all = Vec::new();
        for (id, follower) in &mut self.each {
            for (line, at) in follower.poll_stamped() {
                all.push(MergedLine {
                    id: id.clone(),
                    line,
                    at,
                });
            }
        }
        all.sort_by_key(|line| line.at);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::paths::log_path;
    use crate::logs::times;
    use crate::test_support::TempDir;

    #[test]
    fn lines_of_several_servers_interleave_by_when_they_were_seen() {
        let dir = TempDir::new("logmerge");
        std::fs::write(log_path(&dir, "api"), "api 1\napi 2\n").unwrap();
        std::fs::write(log_path(&dir, "db"), "db 1\ndb 2\n").unwrap();
        times::mark(&log_path(&dir, "db"), 5, 1_000);
        times::mark(&log_path(&dir, "api"), 6, 2_000);
        times::mark(&log_path(&dir, "db"), 10, 3_000);
        times::mark(&log_path(&dir, "api"), 12, 3_000);
        let ids = ["api".to_string(), "db".to_string()];
        let merged = tail(&dir, &ids, 10).unwrap();
        let order: Vec<(&str, &str, u64)> = merged
            .iter()
            .map(|l| (l.id.as_str(), l.line.as_str(), l.at))
            .collect();
        assert_eq!(
            order,
            [
                ("db", "db 1", 1_000),
                ("api", "api 1", 2_000),
                ("api", "api 2", 3_000),
                ("db", "db 2", 3_000),
            ]
        );
        let last_two: Vec<String> = tail(&dir, &ids, 2)
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(last_two, ["api 2", "db 2"]);
    }
}
