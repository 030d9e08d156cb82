//! What the bench reads from /proc: process stat lines, command lines, memory, CPU time, open
//! descriptors; and two watchers that see a manager's children come and go without a full /proc
//! scan per poll (this kernel has no /proc/PID/task/TID/children).
//!
//! The same detection is used for tend and for supervisord, so neither gets an advantage: a
//! new child is a new PID (taken from /proc/sys/kernel/ns_last_pid onwards) whose parent is the
//! manager and whose command line is the workload's (it has exec'd, not just forked).

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The fields of /proc/PID/stat the bench uses.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
}

pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: num(1)? as u32,
        cpu_ticks: num(11)? + num(12)?,
        threads: num(17)?,
    })
}

pub fn cmdline(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// utime + stime of a process in milliseconds (10 ms resolution).
pub fn cpu_ms(pid: u32) -> Option<f64> {
    stat(pid).map(|s| s.cpu_ticks as f64 * 1000.0 / clock_ticks() as f64)
}

/// Time on CPU of every live thread of a process, from schedstat (nanosecond resolution).
pub fn sched_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split(' ').next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// (Rss, Pss) in bytes from /proc/PID/smaps_rollup.
pub fn rss_pss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// `Threads:` of /proc/PID/status.
pub fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// True if `pid`'s environment holds exactly `entry` (`NAME=VALUE`).
pub fn environ_has(pid: u32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry))
}

/// Nanoseconds since the Unix epoch: a value no earlier run of the bench had.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process whose parent is `ppid` (a full /proc scan: slow, for set-up and checks only).
pub fn children_of(ppid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == ppid))
        .collect()
}

fn last_pid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768)
}

/// Sees new children of `manager` that run the workload, by walking the PIDs allocated since
/// it was made (wrapping at pid_max). A PID allocated but not visible in /proc yet (a fork in
/// progress) is looked at again for a while.
pub struct Spotter {
    manager: u32,
    workload: Vec<u8>,
    next: u32,
    pid_max: u32,
    exclude: HashSet<u32>,
    /// Children of the manager that have not exec'd the workload yet.
    forked: Vec<u32>,
    /// PIDs that were allocated but had no /proc entry when looked at.
    missing: Vec<(u32, Instant)>,
}

impl Spotter {
    /// `workload`: the start of the command line (NUL-separated) a new child must have.
    /// `exclude`: PIDs known before (after a PID wrap they could look new).
    pub fn new(manager: u32, workload: &[u8], exclude: HashSet<u32>) -> Spotter {
        Spotter {
            manager,
            workload: workload.to_vec(),
            next: last_pid().wrapping_add(1),
            pid_max: pid_max(),
            exclude,
            forked: Vec::new(),
            missing: Vec::new(),
        }
    }

    fn look(&mut self, pid: u32) -> bool {
        if self.exclude.contains(&pid) {
            return true;
        }
        match stat(pid) {
            None => false,
            Some(s) => {
                if s.ppid == self.manager && s.state != 'Z' {
                    self.forked.push(pid);
                }
                true
            }
        }
    }

    /// New workload children seen since the last poll.
    pub fn poll(&mut self) -> Vec<u32> {
        let mut found = Vec::new();
        let last = last_pid();
        let now = Instant::now();
        let mut walked = 0;
        while self.next != last.wrapping_add(1) && walked < 100_000 {
            if self.next >= self.pid_max {
                self.next = 300; // where the kernel wraps to
                continue;
            }
            let pid = self.next;
            if !self.look(pid) {
                self.missing.push((pid, now));
            }
            self.next += 1;
            walked += 1;
        }
        let missing = std::mem::take(&mut self.missing);
        for (pid, since) in missing {
            if !self.look(pid) && now.duration_since(since) < Duration::from_millis(50) {
                self.missing.push((pid, since));
            }
        }
        let forked = std::mem::take(&mut self.forked);
        for pid in forked {
            let Some(s) = stat(pid) else { continue };
            if s.ppid != self.manager || s.state == 'Z' {
                continue;
            }
            if cmdline(pid).is_some_and(|c| c.starts_with(&self.workload)) {
                self.exclude.insert(pid);
                found.push(pid);
            } else {
                self.forked.push(pid);
            }
        }
        found
    }

    /// Polls every `every` until `count` new workload children are seen (or `limit` passes).
    pub fn wait_for(&mut self, count: usize, every: Duration, limit: Duration) -> Option<Vec<u32>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            seen.extend(self.poll());
            if seen.len() >= count {
                return Some(seen);
            }
            if Instant::now() > deadline {
                return None;
            }
            spin_sleep(every);
        }
    }
}

/// Polls until none of `pids` has a /proc entry any more (reaped), or `limit` passes.
pub fn wait_gone(pids: &[u32], every: Duration, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut left: Vec<u32> = pids.to_vec();
    loop {
        left.retain(|&p| std::path::Path::new(&format!("/proc/{p}/stat")).exists());
        if left.is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        spin_sleep(every);
    }
}

/// A sleep for short polling intervals (thread::sleep is fine at 0.1 ms and up on Linux).
pub fn spin_sleep(d: Duration) {
    std::thread::sleep(d);
}

/// SIGKILL a PID (never ≤ 1).
pub fn kill9(pid: u32) {
    if pid > 1 {
        // SAFETY: a plain kill(2) of a PID this bench found as a child of a manager it started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// A signal to a process group (never ≤ 1).
pub fn kill_group(pgid: u32, signal: i32) {
    if pgid > 1 {
        // SAFETY: a plain kill(2) of a process group this bench started (through a manager).
        unsafe { libc::kill(-(pgid as i32), signal) };
    }
}

/// Every thread of `pid` with its name and its context switches so far (voluntary plus
/// involuntary, from `/proc/PID/task/TID/status`): each switch in is a wake-up.
pub fn thread_switches(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let mut name = String::new();
        let mut switches = 0;
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("Name:") {
                name = v.trim().to_string();
            } else if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
        out.push((tid, name, switches));
    }
    out
}
