//! The seam between the supervisor's decisions and the machine they act on: the clock, spawning,
//! signalling process groups, asking `/proc` about a PID, and watching an adopted PID's exit.
//! Everything the supervisor does to the host goes through [`Host`], so its transitions and
//! timers (stop escalation, restart backoff, dependency order, adoption after a restart of tend)
//! run in unit tests against a scripted host in milliseconds, while [`RealHost`] is a thin
//! forwarder to [`crate::os`].
//!
//! Not behind the seam, on purpose: the monitor's reports and the reaper's exits already arrive
//! as messages (tests hand them in directly), and the one-off scans of `adopt_orphans` at boot
//! and of `tend adopt` read many `/proc` files through [`super::adopt`]; the integration tests
//! (tests/it/adopt.rs) cover those against real processes.

use std::path::Path;
use std::time::{Instant, SystemTime};

use crate::config::ServerConfig;
use crate::os::pidwatch::PidWatcher;
use crate::os::process::{self, SignalError, Spawned};
use crate::os::procfs::{self, ProcStat};

pub trait Host: Send {
    /// The monotonic clock timers are set and judged by.
    fn now(&self) -> Instant;
    /// Wall-clock time, for what people read (started at, event times).
    fn wall_clock(&self) -> SystemTime;
    /// Starts the server's process in its own session with its log file.
    fn spawn(
        &mut self,
        config: &ServerConfig,
        log_dir: &Path,
        tend_bin: &Path,
    ) -> Result<Spawned, String>;
    /// The length of a log file now (0 when missing): where a new process's output starts.
    fn file_len(&self, path: &Path) -> u64;
    fn signal_group(&mut self, pgid: u32, signal: i32) -> Result<(), SignalError>;
    /// Whether any process of the group is left (`adopted`: the group is not tend's child).
    fn group_exists(&self, pgid: u32, adopted: bool) -> bool;
    /// Whether tend may ever signal this PID (not 0, 1, tend itself or its group).
    fn is_signallable(&self, pid: u32) -> bool;
    fn start_ticks(&self, pid: u32) -> Option<u64>;
    fn read_stat(&self, pid: u32) -> Option<ProcStat>;
    fn is_same_process_alive(&self, pid: u32, start_ticks: u64) -> bool;
    /// Asks for an exit notice of a process that is not tend's child; false when it cannot be
    /// watched (already gone, or no pidfd support).
    fn watch_exit(&mut self, pid: u32) -> bool;
}

/// The host tend runs on.
pub struct RealHost {
    pub pidwatch: PidWatcher,
}

impl Host for RealHost {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn spawn(
        &mut self,
        config: &ServerConfig,
        log_dir: &Path,
        tend_bin: &Path,
    ) -> Result<Spawned, String> {
        process::spawn(config, log_dir, tend_bin)
    }

    fn file_len(&self, path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    fn signal_group(&mut self, pgid: u32, signal: i32) -> Result<(), SignalError> {
        process::signal_group(pgid, signal)
    }

    fn group_exists(&self, pgid: u32, adopted: bool) -> bool {
        process::group_exists(pgid, adopted)
    }

    fn is_signallable(&self, pid: u32) -> bool {
        process::is_signallable(pid)
    }

    fn start_ticks(&self, pid: u32) -> Option<u64> {
        procfs::start_ticks(pid)
    }

    fn read_stat(&self, pid: u32) -> Option<ProcStat> {
        procfs::read_stat(pid)
    }

    fn is_same_process_alive(&self, pid: u32, start_ticks: u64) -> bool {
        process::is_same_process_alive(pid, start_ticks)
    }

    fn watch_exit(&mut self, pid: u32) -> bool {
        self.pidwatch.watch(pid)
    }
}
