//! Which live processes make up each server, for its CPU and memory (docs/DESIGN.md §12: a server's
//! figures are its process group's). tend starts every server with `setsid`, so the server's
//! process group and everything it forks share one session, whose id is the server's PID; a
//! member that moves to a group of its own inside the session (shell job control) still counts.
//!
//! Runs on the monitor thread (ProcessMonitor owns the only instance), once per full health
//! round. It never signals anything.
//!
//! Why it is incremental: the kernel offers no cheap "members of session S" query, so the
//! members are found by listing `/proc`. Reading every process's stat each round would cost one
//! open, read and close per process on the machine, every round; but a process leaves a session
//! only to lead a new one of its own (setsid(2)) and can never join another, so a process once
//! seen outside every watched session stays outside for its whole life. Only processes not met
//! before are read; members are read anyway for their figures, through descriptors kept open
//! (procfs::StatReader). A full re-read every [`FULL_READ_EVERY`] bounds the one error this
//! can make: a PID that died and was reused inside one round by a new member of a server.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::os::procfs::{self, ProcStat, StatReader};

/// How often every process is read again whatever was known of it.
pub const FULL_READ_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Members {
    /// The session of every process listed, and the scan that last listed it.
    session_of: HashMap<u32, (u32, u64)>,
    scans: u64,
    /// The sessions asked about at the last scan.
    watched: HashSet<u32>,
    last_full_read: Option<Instant>,
    stats: StatReader,
}

impl Members {
    /// The live (not zombie) members of each of `sessions`, with their `/proc/PID/stat`.
    /// Sessions with no live member are absent.
    pub fn scan(&mut self, sessions: &HashSet<u32>) -> HashMap<u32, Vec<ProcStat>> {
        let now = Instant::now();
        // A session watched only now whose leader was already listed (an adopted server, or a
        // watch that arrived after a round saw the new process) may have members that were
        // filed as outsiders: read everything again.
        let newly_watched_known = sessions
            .iter()
            .any(|s| !self.watched.contains(s) && self.session_of.contains_key(s));
        let stale = self
            .last_full_read
            .is_none_or(|at| now.duration_since(at) >= FULL_READ_EVERY);
        if newly_watched_known || stale {
            self.session_of.clear();
            self.last_full_read = Some(now);
        }
        self.watched.clone_from(sessions);
        self.scans += 1;
        let this_scan = self.scans;

        let mut members: HashMap<u32, Vec<ProcStat>> = HashMap::with_capacity(sessions.len());
        for pid in procfs::all_pids() {
            let stat = match self.session_of.get_mut(&pid) {
                // A watched session's leader is read whatever was filed: it may have been listed
                // a moment before its setsid(), still in its parent's session.
                Some((session, listed))
                    if !sessions.contains(session) && !sessions.contains(&pid) =>
                {
                    *listed = this_scan;
                    continue;
                }
                // A member: read through its kept descriptor.
                Some(_) => self.stats.read(pid),
                // New: one plain read, kept only if it turns out to be a member.
                None => procfs::read_stat(pid),
            };
            let Some(stat) = stat else { continue };
            self.session_of.insert(pid, (stat.session, this_scan));
            if sessions.contains(&stat.session) && !stat.is_dead() {
                members.entry(stat.session).or_default().push(stat);
            }
        }
        self.session_of
            .retain(|_, (_, listed)| *listed == this_scan);
        let session_of = &self.session_of;
        self.stats.retain(|pid| {
            session_of
                .get(&pid)
                .is_some_and(|(s, _)| sessions.contains(s))
        });
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped with waitpid below: std's waits are off limits
    fn finds_a_sessions_members_and_notices_new_and_gone_ones() {
        // A child in a session of its own, which forks a grandchild: both are members.
        let child = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 30 & exec sleep 30"])
            .spawn()
            .expect("spawn setsid");
        let leader = child.id();
        let sessions = HashSet::from([leader]);
        let mut members = Members::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let found = loop {
            let found = members.scan(&sessions);
            let pids: Vec<u32> = found
                .get(&leader)
                .map(|m| m.iter().map(|s| s.pid).collect())
                .unwrap_or_default();
            if pids.len() == 2 {
                break pids;
            }
            assert!(Instant::now() < deadline, "members: {pids:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(found.contains(&leader), "{found:?}");
        // Our own process is not a member, and is not read again next time.
        assert_ne!(
            procfs::read_stat(std::process::id()).unwrap().session,
            leader
        );
        assert_eq!(
            members.session_of.get(&std::process::id()).map(|(s, _)| *s),
            procfs::read_stat(std::process::id()).map(|s| s.session)
        );

        // SAFETY: signals the session's group (its leader's pid is its pgid) and reaps our child.
        unsafe {
            libc::kill(-(leader as i32), libc::SIGKILL);
            libc::waitpid(leader as i32, std::ptr::null_mut(), 0);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while members.scan(&sessions).contains_key(&leader) {
            assert!(Instant::now() < deadline, "the session still has members");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
