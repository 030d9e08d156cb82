//! The record the supervisor keeps per server: its config, process, status, counters, health and
//! the figures last sampled, plus the views the API shows of it. Servers are addressed by their
//! index in the config's order ([`ServerIndex`] in [`Servers`]); [`link`] resolves `depends_on`
//! ids to indices once.

use std::collections::HashMap;
use std::ops::{Index, IndexMut};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::ServerConfig;
use crate::http::metrics::{self, ServerSample};
use crate::model::{
    AdoptableView, HealthView, PlannedView, PortView, ServerView, Status, WatchView, signal_name,
};
use crate::monitor::{Sample, Slot};

use super::adopt::{self, Adoptable};

/// A server's position in the supervisor's list (config order; a reload moves it). A type of its
/// own so it cannot be mixed up with a monitor [`Slot`], which a reload never moves. Plain
/// `usize` stays where a position is honestly just a number: the JSON list's order, a reload
/// plan's config order and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct ServerIndex(pub(super) usize);

impl std::fmt::Display for ServerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The supervisor's servers, indexed only by [`ServerIndex`] (no `Deref` to a slice, so a bare
/// `usize` or a [`Slot`] does not index it by accident).
#[derive(Default)]
pub(super) struct Servers(Vec<Server>);

impl Servers {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Every server's index, in order.
    pub(super) fn indices(&self) -> impl Iterator<Item = ServerIndex> + use<> {
        (0..self.0.len()).map(ServerIndex)
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, Server> {
        self.0.iter()
    }

    pub(super) fn iter_indexed(&self) -> impl Iterator<Item = (ServerIndex, &Server)> {
        self.0.iter().enumerate().map(|(i, s)| (ServerIndex(i), s))
    }

    pub(super) fn get_mut(&mut self, index: ServerIndex) -> Option<&mut Server> {
        self.0.get_mut(index.0)
    }

    pub(super) fn into_vec(self) -> Vec<Server> {
        self.0
    }
}

impl Index<ServerIndex> for Servers {
    type Output = Server;
    fn index(&self, index: ServerIndex) -> &Server {
        &self.0[index.0]
    }
}

impl IndexMut<ServerIndex> for Servers {
    fn index_mut(&mut self, index: ServerIndex) -> &mut Server {
        &mut self.0[index.0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    Restart,
    Escalate,
    GroupCheck,
    StartGrace,
    RetryFatal,
    /// `restart_unhealthy_after_ms` may have passed for an unhealthy server.
    UnhealthyRestart,
    /// `restart_every` or `restart_at` is due (see [`super::planned`]).
    Planned,
    /// A file changed while the server was being restarted: once more, now it runs.
    QueuedChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) at: Instant,
    pub(super) index: ServerIndex,
    pub(super) epoch: u64,
    pub(super) kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterStop {
    Stay,
    Start,
}

#[derive(Debug)]
pub(super) struct Stopping {
    pub(super) signalled_at: Instant,
    pub(super) forced: bool,
    pub(super) leader_gone: bool,
    pub(super) then: AfterStop,
}

/// Where a server's health check (`health` in its config) stands for its current process, and
/// its counts since tend started.
#[derive(Debug, Default)]
pub(super) struct HealthState {
    /// Passed at least once for this process.
    pub(super) ready: bool,
    /// Failed in a row.
    pub(super) failing: u32,
    pub(super) last: Option<HealthView>,
    pub(super) unhealthy_since: Option<Instant>,
    pub(super) probes: u64,
    pub(super) probe_failures: u64,
    pub(super) last_took: Option<Duration>,
}

impl HealthState {
    /// Forgets the last process's results, keeping the counts.
    pub(super) fn reset(&mut self) {
        self.ready = false;
        self.failing = 0;
        self.last = None;
        self.unhealthy_since = None;
    }
}

/// Everything the supervisor knows of one server.
pub(super) struct Server {
    pub(super) config: Arc<ServerConfig>,
    pub(super) status: Status,
    pub(super) pid: Option<u32>,
    /// The leader (and group id) of the current or last process; kept after the leader exits
    /// so a stop can wait for the rest of its group.
    pub(super) last_leader: u32,
    pub(super) start_ticks: u64,
    pub(super) started_at: Option<SystemTime>,
    pub(super) spawned_at: Option<Instant>,
    pub(super) adopted: bool,
    pub(super) restarts: u32,
    pub(super) streak: u32,
    pub(super) exit_code: Option<i32>,
    pub(super) exit_signal: Option<i32>,
    pub(super) last_error: Option<String>,
    pub(super) spawn_error: Option<String>,
    pub(super) ports: Vec<PortView>,
    pub(super) ports_ok: bool,
    pub(super) opened_once: bool,
    pub(super) orphaned: bool,
    pub(super) orphaned_pid: Option<u32>,
    /// The orphan is this server's own lost process (judged once, when it was first seen), or
    /// why it is not.
    pub(super) adoptable: Option<Adoptable>,
    pub(super) not_adoptable: Option<String>,
    /// The monitor's last figures for the process group (and its main process), while alive.
    pub(super) sample: Option<Sample>,
    /// Rounds in a row the group's memory was over `max_memory`.
    pub(super) memory_over: u8,
    /// Restarts for `max_memory` since tend started (a counter for `/metrics`: never reset).
    pub(super) memory_restarts: u64,
    /// Why tend itself restarted the server: kept as `last_error` by the next process, so the
    /// reason is still there once the restart is done.
    pub(super) restart_reason: Option<String>,
    pub(super) health: HealthState,
    /// Where the current process's output begins in its log file (for `health.log`).
    pub(super) log_from: u64,
    pub(super) epoch: u64,
    pub(super) stopping: Option<Stopping>,
    pub(super) pending_start: bool,
    pub(super) pending_stop: bool,
    /// Indices of the servers that depend on this one.
    pub(super) dependents: Vec<ServerIndex>,
    pub(super) dependencies: Vec<ServerIndex>,
    /// The monitor's number for this server. Indices move when a reload adds or removes
    /// servers; a slot never does, so a report the monitor sent before it heard of the reload
    /// still reaches the right server (or none).
    pub(super) slot: Slot,
    /// The env_file text the current process was started with (see [`reload::Current`]).
    pub(super) env_file_text: Option<String>,
    /// What the file watcher last said (see [`super::planned`]).
    pub(super) watch_paths: usize,
    pub(super) watch_error: Option<String>,
    /// A change that came while the server was being restarted, for one more restart.
    pub(super) queued_change: Option<String>,
    pub(super) planned: Option<Planned>,
}

/// The next restart the schedule plans for the running process.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    /// When its timer fires next: the restart, or a look at the wall clock on the way.
    pub(super) at: Instant,
    pub(super) wall: SystemTime,
    pub(super) by: String,
}

/// A process that becomes the server's: spawned by tend, or taken over (`adopted`).
pub(super) struct NewProcess {
    pub(super) pid: u32,
    pub(super) start_ticks: u64,
    pub(super) started_at: SystemTime,
    pub(super) spawned_at: Instant,
    pub(super) adopted: bool,
    pub(super) env_file_text: Option<String>,
}

impl Server {
    /// The one place a new process replaces what was known of the last one: its identity,
    /// exit, ports, figures and health all start over, and the epoch moves on so the last
    /// process's timers are ignored.
    pub(super) fn begin_process(&mut self, process: NewProcess) {
        self.pid = Some(process.pid);
        self.last_leader = process.pid;
        self.start_ticks = process.start_ticks;
        self.started_at = Some(process.started_at);
        self.spawned_at = Some(process.spawned_at);
        self.adopted = process.adopted;
        self.env_file_text = process.env_file_text;
        self.exit_code = None;
        self.exit_signal = None;
        self.opened_once = false;
        self.ports_ok = self.config.ports.is_empty();
        self.ports = self.closed_ports();
        self.sample = None;
        self.memory_over = 0;
        self.health.reset();
        self.epoch += 1;
    }

    /// The port the orphan warning named: the one its holder has, else the first. Its clearing
    /// or adoption names the same one.
    pub(super) fn orphan_port(&self) -> u16 {
        self.ports
            .iter()
            .find(|p| p.owner_pid.is_some() && p.owner_pid == self.orphaned_pid)
            .or_else(|| self.ports.first())
            .map_or(0, |p| p.port)
    }

    /// A server as configured, not started; `dependencies` are filled in by the caller.
    pub(super) fn new(config: &ServerConfig, slot: Slot) -> Server {
        let mut server = Server {
            config: Arc::new(config.clone()),
            status: Status::Stopped,
            pid: None,
            last_leader: 0,
            start_ticks: 0,
            started_at: None,
            spawned_at: None,
            adopted: false,
            restarts: 0,
            streak: 0,
            exit_code: None,
            exit_signal: None,
            last_error: None,
            spawn_error: None,
            ports: Vec::new(),
            ports_ok: config.ports.is_empty(),
            opened_once: false,
            orphaned: false,
            orphaned_pid: None,
            adoptable: None,
            not_adoptable: None,
            sample: None,
            memory_over: 0,
            memory_restarts: 0,
            restart_reason: None,
            health: HealthState::default(),
            log_from: 0,
            epoch: 0,
            stopping: None,
            pending_start: false,
            pending_stop: false,
            dependents: Vec::new(),
            dependencies: Vec::new(),
            slot,
            env_file_text: None,
            watch_paths: 0,
            watch_error: None,
            queued_change: None,
            planned: None,
        };
        server.ports = server.closed_ports();
        server
    }

    /// It runs or is meant to, and nobody is stopping it (see [`reload::Current`]).
    pub(super) fn wants_process(&self) -> bool {
        let running = self.pid.is_some() && self.stopping.is_none() && !self.pending_stop;
        let restarting = self
            .stopping
            .as_ref()
            .is_some_and(|s| s.then == AfterStop::Start);
        let due_a_retry = self.pid.is_none()
            && matches!(
                self.status,
                Status::Backoff | Status::Fatal | Status::Crashed
            );
        running || restarting || self.pending_start || due_a_retry
    }

    pub(super) fn uptime_ms(&self, now: SystemTime) -> Option<u64> {
        self.started_at
            .filter(|_| self.pid.is_some())
            .map(|at| now.duration_since(at).unwrap_or_default().as_millis() as u64)
    }

    pub(super) fn view(&self, now: SystemTime) -> ServerView {
        let alive = self.pid.is_some();
        let sample = self.sample.as_ref().filter(|_| alive);
        ServerView {
            id: self.config.id.clone(),
            group: self.config.group.clone(),
            command: self.config.command.display(),
            status: self.status,
            running: alive,
            healthy: self.status == Status::Running,
            pid: self.pid,
            start_time: self.started_at.map(epoch_ms),
            uptime_ms: self.uptime_ms(now),
            restarts: self.restarts,
            exit_code: self.exit_code,
            exit_signal: self.exit_signal.map(signal_name),
            ports: self.ports.clone(),
            orphaned: self.orphaned,
            orphaned_pid: self.orphaned_pid,
            adopted: self.adopted,
            adoptable: self.adoptable.as_ref().map(|a| AdoptableView {
                pid: a.pid,
                evidence: a.evidence.clone(),
                start_time: epoch_ms(a.started_at),
            }),
            not_adoptable: self.not_adoptable.clone(),
            cpu_percent: sample.map(|s| s.cpu_percent),
            rss_bytes: sample.map(|s| s.rss_bytes),
            processes: sample.map(|s| s.processes),
            main_cpu_percent: sample.map(|s| s.main_cpu_percent),
            main_rss_bytes: sample.map(|s| s.main_rss_bytes),
            last_error: self.last_error.clone(),
            health: self.health.last.clone().filter(|_| alive),
            watch: self.config.watch.as_ref().map(|_| WatchView {
                paths: self.watch_paths,
                error: self.watch_error.clone(),
            }),
            planned_restart: self
                .planned
                .as_ref()
                .filter(|_| alive && self.stopping.is_none())
                .map(|p| PlannedView {
                    at: epoch_ms(p.wall),
                    by: p.by.clone(),
                }),
        }
    }

    pub(super) fn sample(&self, now: SystemTime) -> ServerSample {
        let alive = self.pid.is_some();
        let sample = self.sample.as_ref().filter(|_| alive);
        ServerSample {
            id: self.config.id.clone(),
            group: self.config.group.clone(),
            status: self.status,
            is_up: alive,
            restarts: self.restarts,
            uptime: self
                .started_at
                .filter(|_| alive)
                .map(|at| now.duration_since(at).unwrap_or_default()),
            cpu_time: sample.map(|s| s.cpu_time),
            rss_bytes: sample.map(|s| s.rss_bytes),
            processes: sample.map(|s| s.processes),
            ports: self.ports.iter().map(|p| (p.port, p.open)).collect(),
            orphaned: self.orphaned,
            memory_restarts: self.memory_restarts,
            probes: self.config.health.as_ref().map(|_| metrics::ProbeCounts {
                total: self.health.probes,
                failures: self.health.probe_failures,
                last_duration: self.health.last_took,
            }),
        }
    }

    /// Whether the orphan (if any) is this server's own lost process, by the current config.
    pub(super) fn judge_orphan(&mut self) {
        let judged = match self.orphaned_pid.filter(|_| self.orphaned) {
            Some(holder) => Some(adopt::examine(&self.config, holder)),
            None if self.orphaned => Some(Err(
                "tend cannot see which process holds the port (another user's?)".to_string(),
            )),
            None => None,
        };
        self.adoptable = judged.clone().and_then(Result::ok);
        self.not_adoptable = judged.and_then(Result::err);
    }

    pub(super) fn closed_ports(&self) -> Vec<PortView> {
        self.config
            .ports
            .iter()
            .map(|&port| PortView {
                port,
                open: false,
                owner_pid: None,
            })
            .collect()
    }
}

pub(super) fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Numbers the servers by position and links each to its dependencies and dependents.
pub(super) fn link(servers: Vec<Server>) -> (Servers, HashMap<String, ServerIndex>) {
    let mut servers = Servers(servers);
    let index_of: HashMap<String, ServerIndex> = servers
        .iter_indexed()
        .map(|(i, s)| (s.config.id.clone(), i))
        .collect();
    for server in &mut servers.0 {
        server.dependents.clear();
        server.dependencies = server
            .config
            .depends_on
            .iter()
            .map(|d| index_of[d])
            .collect();
    }
    for index in servers.indices() {
        for dep in servers[index].dependencies.clone() {
            servers[dep].dependents.push(index);
        }
    }
    (servers, index_of)
}
