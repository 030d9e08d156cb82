//! ServerOrchestrator (docs/DESIGN.md §7): the "supervisor" thread, single owner of every server's
//! state. It loops on `select!` over commands (from HTTP handlers), exits (reaper, pidwatch),
//! monitor reports, signals (shutdown, reload) and its own timers; it spawns through the
//! ProcessManager, broadcasts every change as an event, and hands snapshots to the store.
//!
//! A config reload (SIGHUP or `Control::Reload`) is planned by `reload.rs` and applied here:
//! the servers it removes or restarts are stopped first, then the server list is swapped for the
//! new config's in one turn (every index-keyed record moved with it), and commands that came
//! meanwhile run after it.
//!
//! It never sleeps and never blocks on a consumer: replies go to bounded(1) channels that may
//! have been abandoned, SSE subscribers are dropped when full, the store takes the latest
//! snapshot without waiting. Timers carry the server's `epoch`, which grows on every spawn and
//! stop, so a stale timer is ignored when it fires instead of being cancelled.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, after, never, select};

use crate::adopt::{self, Adoptable};

use crate::config::health::{self, HealthCheck, Probe};
use crate::config::{Config, ConfigErrors, OnExit, ServerConfig};
use crate::events::{EventHub, Subscription};
use crate::httpprobe::{self, HttpProbe, Outcome};
use crate::listjson::ListJson;
use crate::logrotate;
use crate::metrics::{self, Histogram, ServerSample};
use crate::model::{
    Action, AdoptableView, Event, HealthView, PortView, ReloadPlan, ServerView, StatsEntry, Status,
    Timeline, signal_name,
};
use crate::monitor::{HttpWatch, LogWatch, MonitorCmd, Observation, Probed, Report, Sample, Watch};
use crate::pidwatch::PidWatcher;
use crate::policy::{self, AfterExit, Check, ExitKind};
use crate::process::{self, SignalError};
use crate::procfs;
use crate::reaper::{Exit, ExitStatus, Signal};
use crate::reload::{self, ConfigSource, Current, KnownIds};
use crate::sockdiag;
use crate::store::{StateFile, StoreHandle, StoredProcess};

const LOG: &str = "ServerOrchestrator";

/// How often a stopping server's group is looked at after its leader exited while members
/// linger (non-children are not reaped by tend, so no exit tells us).
const GROUP_POLL: Duration = Duration::from_millis(10);
/// How long processes may survive SIGKILL before tend gives up on them (uninterruptible sleep).
const KILL_GRACE: Duration = Duration::from_secs(5);
/// At most one state snapshot per this (docs/DESIGN.md §6: the file is written a few times a second at
/// most however fast things change; the store coalesces further).
const STATE_COALESCE: Duration = Duration::from_millis(50);
/// Rounds in a row a server's memory must be over `max_memory` before it is restarted: one
/// sample over may be a moment's peak (a request that allocates and frees).
const MEMORY_ROUNDS: u8 = 2;

/// An orphan an HTTP handler may kill: checked by the supervisor, killed by the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanTarget {
    pub id: String,
    pub pid: u32,
    pub start_ticks: u64,
}

pub type Reply<T> = Sender<Result<T, ControlError>>;

/// Requests to the supervisor; each carries its reply channel.
pub enum Control {
    /// The JSON array of every server object, in config order.
    List { reply: Sender<Vec<u8>> },
    Get {
        id: String,
        reply: Reply<ServerView>,
    },
    /// `id: None` acts on all servers.
    Act {
        action: Action,
        id: Option<String>,
        reply: Reply<Vec<ServerView>>,
    },
    FindOrphan {
        id: Option<String>,
        pid: Option<i64>,
        reply: Reply<OrphanTarget>,
    },
    /// An orphan an HTTP handler went after is gone: killed with `signal`, or (`None`) it
    /// exited by itself before any signal, which is no kill to put on the timeline.
    OrphanGone {
        id: String,
        pid: u32,
        signal: Option<i32>,
    },
    Subscribe {
        last_event_id: Option<u64>,
        reply: Reply<Subscription>,
    },
    /// What `/metrics` shows of the servers and of the supervisor's own counters.
    Metrics { reply: Sender<metrics::Snapshot> },
    /// Take over the server's orphan, when it is provably the server's own lost process.
    Adopt {
        id: String,
        reply: Reply<ServerView>,
    },
    /// Read the config again and apply what changed (`None`: SIGHUP, nobody to answer).
    Reload { reply: Option<Reply<ReloadPlan>> },
}

/// Why a command was refused; the HTTP layer maps each to a status code (docs/DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    NotFound(String),
    AlreadyRunning(String),
    NotRunning(String),
    OrphanHoldsPort {
        id: String,
        port: u16,
        pid: Option<u32>,
    },
    SpawnFailed {
        id: String,
        reason: String,
    },
    BadRequest(String),
    /// A PID that tend must not signal, or that is not an orphan.
    Refused(String),
    NoOrphan(String),
    /// `tend adopt` refused: the reason says which check failed.
    NotAdoptable(String),
    TooManyClients,
    ShuttingDown,
    /// A reload found the config invalid; nothing was changed.
    InvalidConfig(ConfigErrors),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotFound(id) => write!(f, "no server with id '{id}'"),
            ControlError::AlreadyRunning(id) => write!(f, "server '{id}' is already running"),
            ControlError::NotRunning(id) => write!(f, "server '{id}' is already stopped"),
            ControlError::OrphanHoldsPort {
                id,
                port,
                pid: Some(pid),
            } => write!(
                f,
                "port {port} of server '{id}' is held by PID {pid}, which tend does not manage \
                 (kill it with `tend kill-orphan {id}`)"
            ),
            ControlError::OrphanHoldsPort {
                id,
                port,
                pid: None,
            } => write!(
                f,
                "port {port} of server '{id}' is held by a process tend does not manage and \
                 cannot see (another user's?)"
            ),
            ControlError::SpawnFailed { id, reason } => {
                write!(f, "server '{id}' failed to start: {reason}")
            }
            ControlError::BadRequest(message)
            | ControlError::Refused(message)
            | ControlError::NotAdoptable(message) => f.write_str(message),
            ControlError::NoOrphan(id) => {
                write!(f, "no orphan holds a port of server '{id}'")
            }
            ControlError::TooManyClients => f.write_str("too many live event clients"),
            ControlError::ShuttingDown => f.write_str("tend is shutting down"),
            ControlError::InvalidConfig(errors) => {
                write!(f, "the config is invalid; nothing was changed:\n{errors}")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Restart,
    Escalate,
    GroupCheck,
    StartGrace,
    RetryFatal,
    /// `restart_unhealthy_after_ms` may have passed for an unhealthy server.
    UnhealthyRestart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    index: usize,
    epoch: u64,
    kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Stay,
    Start,
}

#[derive(Debug)]
struct Stopping {
    signalled_at: Instant,
    forced: bool,
    leader_gone: bool,
    then: AfterStop,
}

/// Where a server's health check (`health` in its config) stands for its current process, and
/// its counts since tend started.
#[derive(Debug, Default)]
struct HealthState {
    /// Passed at least once for this process.
    ready: bool,
    /// Failed in a row.
    failing: u32,
    last: Option<HealthView>,
    unhealthy_since: Option<Instant>,
    probes: u64,
    probe_failures: u64,
    last_took: Option<Duration>,
}

impl HealthState {
    /// Forgets the last process's results, keeping the counts.
    fn reset(&mut self) {
        self.ready = false;
        self.failing = 0;
        self.last = None;
        self.unhealthy_since = None;
    }
}

/// Everything the supervisor knows of one server.
struct Server {
    config: Arc<ServerConfig>,
    status: Status,
    pid: Option<u32>,
    /// The leader (and group id) of the current or last process; kept after the leader exits
    /// so a stop can wait for the rest of its group.
    last_leader: u32,
    start_ticks: u64,
    started_at: Option<SystemTime>,
    spawned_at: Option<Instant>,
    adopted: bool,
    restarts: u32,
    streak: u32,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
    last_error: Option<String>,
    spawn_error: Option<String>,
    ports: Vec<PortView>,
    ports_ok: bool,
    opened_once: bool,
    orphaned: bool,
    orphaned_pid: Option<u32>,
    /// The orphan is this server's own lost process (judged once, when it was first seen), or
    /// why it is not.
    adoptable: Option<Adoptable>,
    not_adoptable: Option<String>,
    /// The monitor's last figures for the process group (and its main process), while alive.
    sample: Option<Sample>,
    /// Rounds in a row the group's memory was over `max_memory`.
    memory_over: u8,
    /// Restarts for `max_memory` since tend started (a counter for `/metrics`: never reset).
    memory_restarts: u64,
    /// Why tend itself restarted the server: kept as `last_error` by the next process, so the
    /// reason is still there once the restart is done.
    restart_reason: Option<String>,
    health: HealthState,
    /// Where the current process's output begins in its log file (for `health.log`).
    log_from: u64,
    epoch: u64,
    stopping: Option<Stopping>,
    pending_start: bool,
    pending_stop: bool,
    /// Indices of the servers that depend on this one.
    dependents: Vec<usize>,
    dependencies: Vec<usize>,
    /// The monitor's number for this server. Indices move when a reload adds or removes
    /// servers; a slot never does, so a report the monitor sent before it heard of the reload
    /// still reaches the right server (or none).
    slot: usize,
    /// The env_file text the current process was started with (see [`reload::Current`]).
    env_file_text: Option<String>,
}

impl Server {
    /// A server as configured, not started; `dependencies` are filled in by the caller.
    fn new(config: &ServerConfig, slot: usize) -> Server {
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
        };
        server.ports = server.closed_ports();
        server
    }

    /// It runs or is meant to, and nobody is stopping it (see [`reload::Current`]).
    fn wants_process(&self) -> bool {
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

    fn uptime_ms(&self, now: SystemTime) -> Option<u64> {
        self.started_at
            .filter(|_| self.pid.is_some())
            .map(|at| now.duration_since(at).unwrap_or_default().as_millis() as u64)
    }

    fn view(&self, now: SystemTime) -> ServerView {
        let alive = self.pid.is_some();
        let sample = self.sample.as_ref().filter(|_| alive);
        ServerView {
            id: self.config.id.clone(),
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
        }
    }

    fn sample(&self, now: SystemTime) -> ServerSample {
        let alive = self.pid.is_some();
        let sample = self.sample.as_ref().filter(|_| alive);
        ServerSample {
            id: self.config.id.clone(),
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
    fn judge_orphan(&mut self) {
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

    fn closed_ports(&self) -> Vec<PortView> {
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

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A reply owed once its servers settle.
struct Waiter {
    targets: Vec<usize>,
    goal: Goal,
    single: bool,
    reply: Reply<Vec<ServerView>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Started,
    Stopped,
}

/// The channels the supervisor listens on.
pub struct Inbox {
    pub control: Receiver<Control>,
    pub exits: Receiver<Exit>,
    pub reports: Receiver<Report>,
    pub signals: Receiver<Signal>,
    /// Timeline events from other threads: alert outcomes, state write failures.
    pub timeline: Receiver<Timeline>,
}

/// Where the supervisor's outputs go.
pub struct Outputs {
    pub monitor: Sender<MonitorCmd>,
    pub store: StoreHandle,
    pub pidwatch: PidWatcher,
    /// The ids HTTP handlers check log requests against; replaced on reload.
    pub known_ids: Arc<KnownIds>,
    /// Log rotation's limits; set on reload.
    pub log_limits: Arc<logrotate::Limits>,
}

pub struct ServerOrchestrator {
    servers: Vec<Server>,
    index_of: HashMap<String, usize>,
    by_pid: HashMap<u32, usize>,
    timers: BinaryHeap<Reverse<Timer>>,
    waiters: Vec<Waiter>,
    hub: EventHub,
    outputs: Outputs,
    log_dir: PathBuf,
    tend_bin: PathBuf,
    boot_id: String,
    on_exit: OnExit,
    max_sse_clients: usize,
    /// How often health checks run unless a server's `health.interval_ms` says otherwise.
    health_interval: Duration,
    /// Servers changed in this turn, each once, in the order they changed: a turn costs its
    /// changes, not a scan of every server.
    changed: Vec<bool>,
    changed_order: Vec<usize>,
    /// Each server's JSON, encoded again only after it changed.
    list_json: ListJson,
    /// Some server waits to be started or stopped (saves `advance` a scan when none does).
    has_pending: bool,
    state_dirty: bool,
    /// When the state was last handed to the store, and when the next hand-over is due: many
    /// changes in a burst cost one snapshot per [`STATE_COALESCE`], not one per change.
    state_saved_at: Option<Instant>,
    state_due: Option<Instant>,
    shutting_down: bool,
    /// For `/metrics`: processes spawned, spawns that failed, and how long health rounds take.
    spawn_successes: u64,
    spawn_failures: u64,
    health_rounds: Histogram,
    /// Where a reload reads the config, and the top-level settings in effect (its `servers`
    /// are not kept here: `servers` above is the truth).
    source: ConfigSource,
    settings: Config,
    /// Server index by monitor slot (`None`: the server was removed by a reload).
    slots: Vec<Option<usize>>,
    /// The reload being applied: it waits for the servers it stops.
    reloading: Option<Reloading>,
    /// Commands that arrived while a reload was applied: reloads and actions wait for it, so
    /// they act on the config it leaves, never on a half-applied one.
    deferred: VecDeque<Control>,
}

/// A reload between its plan and its swap: the servers it removes or restarts are stopping.
struct Reloading {
    config: Config,
    plan: ReloadPlan,
    /// Indices (before the swap) of the servers that must be down before the swap.
    stopping: Vec<usize>,
    reply: Option<Reply<ReloadPlan>>,
}

impl ServerOrchestrator {
    pub fn new(
        config: &Config,
        outputs: Outputs,
        tend_bin: PathBuf,
        boot_id: String,
        source: ConfigSource,
    ) -> Self {
        let servers: Vec<Server> = config
            .servers
            .iter()
            .enumerate()
            .map(|(slot, cfg)| Server::new(cfg, slot))
            .collect();
        let (servers, index_of) = link(servers);
        let count = servers.len();
        ServerOrchestrator {
            servers,
            index_of,
            by_pid: HashMap::new(),
            timers: BinaryHeap::new(),
            waiters: Vec::new(),
            hub: EventHub::starting_at(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as u64,
            ),
            outputs,
            log_dir: config.log_dir.clone(),
            tend_bin,
            boot_id,
            on_exit: config.on_exit,
            max_sse_clients: config.max_sse_clients,
            health_interval: config.health_interval,
            changed: vec![false; count],
            changed_order: Vec::new(),
            list_json: ListJson::new(count),
            has_pending: false,
            state_dirty: false,
            state_saved_at: None,
            state_due: None,
            shutting_down: false,
            spawn_successes: 0,
            spawn_failures: 0,
            health_rounds: Histogram::new(metrics::HEALTH_BUCKETS),
            source,
            settings: Config {
                servers: Vec::new(),
                ..config.clone()
            },
            slots: (0..count).map(Some).collect(),
            reloading: None,
            deferred: VecDeque::new(),
        }
    }

    /// Takes back processes from the state file whose identity still matches, then starts the
    /// autostart servers in dependency order.
    pub fn boot(&mut self, stored: Option<StateFile>) {
        self.timeline(Timeline::TendStarted {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        for index in 0..self.servers.len() {
            self.send_watch(index);
        }
        if let Some(state) = stored {
            self.adopt(state);
        }
        if self.settings.adopt_orphans {
            self.adopt_orphans_at_boot();
        }
        for index in 0..self.servers.len() {
            if self.servers[index].config.autostart && self.servers[index].pid.is_none() {
                self.request_start(index, true);
            }
        }
        self.advance();
        self.flush();
    }

    fn adopt(&mut self, state: StateFile) {
        let same_boot = state.boot_id == self.boot_id;
        for (id, stored) in state.processes {
            let Some(&index) = self.index_of.get(&id) else {
                if same_boot && process::is_same_process_alive(stored.pid, stored.proc_start_ticks)
                {
                    log::warn!(target: LOG,
                        "Process '{}' (PID: {}) is no longer in the config; left running \
                         unmanaged (stop it with: kill -TERM -{})", id, stored.pid, stored.pgid);
                }
                continue;
            };
            if !same_boot {
                log::info!(target: LOG,
                    "Dropped stored process '{}' (PID: {}): it was started before the last boot",
                    id, stored.pid);
                continue;
            }
            match procfs::read_stat(stored.pid) {
                Some(stat)
                    if stat.start_ticks == stored.proc_start_ticks
                        && stat.state != 'Z'
                        && stat.state != 'X' => {}
                Some(_) => {
                    log::warn!(target: LOG,
                        "Dropped stored process '{}': PID {} now belongs to another process; \
                         not signalling it", id, stored.pid);
                    continue;
                }
                None => {
                    log::info!(target: LOG,
                        "Stored process '{}' (PID: {}) is gone", id, stored.pid);
                    continue;
                }
            }
            self.take_over(
                index,
                stored.pid,
                stored.proc_start_ticks,
                UNIX_EPOCH + Duration::from_millis(stored.start_time),
            );
            log::info!(target: LOG, "Adopted '{}' (PID: {})", id, stored.pid);
        }
    }

    /// Makes `pid` (a session leader, not tend's child) the server's process, as after a
    /// restart of tend: watched by pidfd (the monitor polls where there is none), stopped by
    /// its group, recorded in the state file with its start time.
    fn take_over(&mut self, index: usize, pid: u32, start_ticks: u64, started_at: SystemTime) {
        let server = &mut self.servers[index];
        server.pid = Some(pid);
        server.last_leader = pid;
        server.start_ticks = start_ticks;
        server.started_at = Some(started_at);
        server.spawned_at = Some(Instant::now());
        server.adopted = true;
        server.env_file_text = None;
        server.epoch += 1;
        server.opened_once = false;
        // The line a log check waits for was printed before tend took the process over, if
        // ever: an adopted process has been running, so it counts as ready.
        let log_check = matches!(
            server.config.health,
            Some(HealthCheck {
                probe: Probe::Log(_),
                ..
            })
        );
        server.health.reset();
        server.health.ready = log_check;
        self.mark_changed(index);
        self.set_status(index, Status::Starting);
        let server = &self.servers[index];
        if server.config.ports.is_empty() && (server.config.health.is_none() || server.health.ready)
        {
            self.set_status(index, Status::Running);
        }
        self.by_pid.insert(pid, index);
        if !self.outputs.pidwatch.watch(pid) {
            log::debug!(target: LOG, "No pidfd for PID {}; the monitor polls it", pid);
        }
        self.arm(
            index,
            TimerKind::StartGrace,
            self.servers[index].config.start_timeout,
        );
        self.send_watch(index);
        self.state_dirty = true;
    }

    /// `tend adopt ID`: takes over the server's orphan once every check of `adopt.rs` passes
    /// again now, on the same process that was judged when the orphan showed.
    fn adopt_orphan(&mut self, id: &str) -> Result<ServerView, ControlError> {
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        let index = self.find(id)?;
        let server = &self.servers[index];
        if let Some(pid) = server
            .pid
            .or(server.stopping.as_ref().map(|_| server.last_leader))
        {
            return Err(ControlError::NotAdoptable(format!(
                "server '{id}' has its own process (PID {pid}); only a stopped server adopts \
                 its orphan"
            )));
        }
        if server.pending_start {
            return Err(ControlError::NotAdoptable(format!(
                "server '{id}' is being started; only a stopped server adopts its orphan"
            )));
        }
        if !server.orphaned {
            return Err(ControlError::NoOrphan(id.to_string()));
        }
        let Some(holder) = server.orphaned_pid else {
            return Err(ControlError::NotAdoptable(format!(
                "tend cannot see which process holds the port of '{id}' (another user's?)"
            )));
        };
        let seen = server.adoptable.clone();
        let now = adopt::examine(&server.config, holder).map_err(ControlError::NotAdoptable)?;
        match seen {
            Some(seen) => {
                adopt::same_process(&seen, &now).map_err(ControlError::NotAdoptable)?;
            }
            None => {
                return Err(ControlError::NotAdoptable(
                    server
                        .not_adoptable
                        .clone()
                        .unwrap_or_else(|| "the orphan was not judged adoptable".to_string()),
                ));
            }
        }
        self.check_adoptable_pid(now.pid)?;
        self.adopt_checked(index, now, "on request");
        Ok(self.view(index))
    }

    /// Never tend itself, PID 1, or another server's process.
    fn check_adoptable_pid(&self, pid: u32) -> Result<(), ControlError> {
        if !process::is_signallable(pid) {
            return Err(ControlError::NotAdoptable(format!(
                "PID {pid} is PID 1, tend or in tend's own process group"
            )));
        }
        if self.servers.iter().any(|s| s.pid == Some(pid)) {
            return Err(ControlError::NotAdoptable(format!(
                "PID {pid} is already a managed server"
            )));
        }
        Ok(())
    }

    /// Takes over a process `adopt::examine` just vouched for; the orphan warning ends.
    fn adopt_checked(&mut self, index: usize, found: Adoptable, how: &str) {
        // The start time is read once more right here: between the check and now the process
        // may have exited and its PID been given to another.
        if procfs::start_ticks(found.pid) != Some(found.start_ticks) {
            log::warn!(target: LOG, "Not adopting PID {}: it exited just now", found.pid);
            return;
        }
        let server = &mut self.servers[index];
        let id = server.config.id.clone();
        let port = server
            .ports
            .iter()
            .find(|p| p.owner_pid.is_some() && p.owner_pid == server.orphaned_pid)
            .or_else(|| server.ports.first())
            .map_or(0, |p| p.port);
        let was = server.orphaned_pid;
        let orphaned = server.orphaned;
        server.orphaned = false;
        server.orphaned_pid = None;
        server.adoptable = None;
        server.not_adoptable = None;
        server.last_error = None;
        log::info!(target: LOG, "Adopted orphan PID {} of '{}' {} ({})", found.pid, id, how, found.evidence);
        self.take_over(index, found.pid, found.start_ticks, found.started_at);
        if orphaned {
            self.timeline(Timeline::OrphanCleared { id, pid: was, port });
        }
    }

    /// `adopt_orphans: true` on `tend up`: every port holder outside tend that is provably a
    /// server's own process is taken over before anything is started (a start would only
    /// fail behind it). The rest are left to the monitor, which reports them as orphans.
    fn adopt_orphans_at_boot(&mut self) {
        let listeners = match sockdiag::listening_sockets() {
            Ok(list) => list,
            Err(e) => {
                log::warn!(target: LOG, "adopt_orphans: cannot list listening sockets: {e}");
                return;
            }
        };
        let wanted: std::collections::HashSet<u64> = listeners
            .iter()
            .filter(|l| {
                self.servers
                    .iter()
                    .any(|s| s.pid.is_none() && s.config.ports.contains(&l.port))
            })
            .map(|l| l.inode)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let owners = procfs::find_socket_owners(&wanted, procfs::all_pids());
        for index in 0..self.servers.len() {
            if self.servers[index].pid.is_some() {
                continue;
            }
            let holders: Vec<u32> = listeners
                .iter()
                .filter(|l| self.servers[index].config.ports.contains(&l.port))
                .filter_map(|l| owners.get(&l.inode).copied())
                .collect();
            let Some(&holder) = holders.first() else {
                continue;
            };
            let id = self.servers[index].config.id.clone();
            match adopt::examine(&self.servers[index].config, holder) {
                Ok(found) => match self.check_adoptable_pid(found.pid) {
                    Ok(()) => self.adopt_checked(index, found, "on start (adopt_orphans)"),
                    Err(e) => {
                        log::warn!(target: LOG, "Not adopting PID {} for '{}': {}", holder, id, e)
                    }
                },
                Err(reason) => {
                    log::warn!(target: LOG, "Not adopting PID {} for '{}': {}", holder, id, reason);
                }
            }
        }
    }

    /// Hands every timeline event from now on to history and alerts as well.
    pub fn record_to(&mut self, recorder: crate::recorder::Recorder) {
        self.hub.record_to(recorder);
    }

    /// The supervisor loop; returns when tend should exit.
    pub fn run(mut self, inbox: Inbox) {
        loop {
            let next = self
                .timers
                .peek()
                .map(|Reverse(t)| t.at)
                .into_iter()
                .chain(self.state_due)
                .min();
            let timer = match next {
                Some(at) => after(at.saturating_duration_since(Instant::now())),
                None => never(),
            };
            select! {
                recv(inbox.control) -> message => match message {
                    Ok(control) => self.on_control(control),
                    Err(_) => return,
                },
                recv(inbox.exits) -> exit => match exit {
                    Ok(exit) => self.on_exit(exit),
                    Err(_) => return,
                },
                recv(inbox.reports) -> report => {
                    if let Ok(report) = report {
                        self.on_report(report);
                    }
                },
                recv(inbox.signals) -> signal => {
                    if let Ok(signal) = signal {
                        self.on_signal(signal);
                    }
                },
                recv(inbox.timeline) -> event => {
                    if let Ok(event) = event {
                        self.timeline(event);
                    }
                },
                recv(timer) -> _ => self.on_timers(),
            }
            self.advance();
            self.continue_reload();
            self.flush();
            if self.shutting_down && self.all_settled_for_exit() {
                return self.finish_shutdown();
            }
        }
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_control(&mut self, control: Control) {
        let control = match control {
            // An adoption too: a server the reload is stopping must not get a process meanwhile.
            Control::Act { .. } | Control::Adopt { .. } | Control::Reload { .. }
                if self.reloading.is_some() =>
            {
                self.deferred.push_back(control);
                return;
            }
            control => control,
        };
        match control {
            Control::List { reply } => {
                let _ = reply.send(self.list_json());
            }
            Control::Get { id, reply } => {
                let result = self.find(&id).map(|index| self.view(index));
                let _ = reply.send(result);
            }
            Control::Act { action, id, reply } => self.act(action, id, reply),
            Control::FindOrphan { id, pid, reply } => {
                let _ = reply.send(self.find_orphan(id, pid));
            }
            Control::OrphanGone { id, pid, signal } => {
                if let Some(signal) = signal {
                    log::info!(target: LOG, "Killed orphan PID {} of '{}' with {}", pid, id, signal_name(signal));
                    self.timeline(Timeline::OrphanKilled {
                        id,
                        pid,
                        signal: signal_name(signal),
                    });
                }
                // Either way its port may be free now: look at once, not a round later.
                let _ = self.outputs.monitor.send(MonitorCmd::CheckNow);
            }
            Control::Subscribe {
                last_event_id,
                reply,
            } => {
                let result = if self.hub.subscriber_count() >= self.max_sse_clients {
                    Err(ControlError::TooManyClients)
                } else {
                    let now = SystemTime::now();
                    let servers = &self.servers;
                    Ok(self.hub.subscribe(last_event_id, || {
                        servers.iter().map(|s| s.view(now)).collect()
                    }))
                };
                let _ = reply.send(result);
            }
            Control::Metrics { reply } => {
                let _ = reply.send(self.metrics());
            }
            Control::Adopt { id, reply } => {
                let _ = reply.send(self.adopt_orphan(&id));
            }
            Control::Reload { reply } => self.start_reload(reply),
        }
    }

    /// One pass over the servers, only when `/metrics` asks: nothing is kept per event beyond
    /// the spawn counters and the health-round histogram.
    fn metrics(&self) -> metrics::Snapshot {
        let now = SystemTime::now();
        let servers = self.servers.iter().map(|s| s.sample(now)).collect();
        let mut snapshot = metrics::Snapshot::new(servers, self.health_rounds.clone());
        snapshot.spawn_successes = self.spawn_successes;
        snapshot.spawn_failures = self.spawn_failures;
        snapshot.store = self.outputs.store.stats();
        snapshot.sse_clients = self.hub.subscriber_count();
        snapshot
    }

    fn find(&self, id: &str) -> Result<usize, ControlError> {
        self.index_of
            .get(id)
            .copied()
            .ok_or_else(|| ControlError::NotFound(id.to_string()))
    }

    fn act(&mut self, action: Action, id: Option<String>, reply: Reply<Vec<ServerView>>) {
        if self.shutting_down {
            let _ = reply.send(Err(ControlError::ShuttingDown));
            return;
        }
        let single = id.is_some();
        let targets: Vec<usize> = match &id {
            Some(id) => match self.find(id) {
                Ok(index) => vec![index],
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            },
            None => (0..self.servers.len()).collect(),
        };
        let goal = match action {
            Action::Stop => Goal::Stopped,
            Action::Start | Action::Restart => Goal::Started,
        };
        for &index in &targets {
            let result = match action {
                Action::Start => self.check_startable(index, single),
                Action::Stop => self.check_stoppable(index, single),
                Action::Restart => self.check_orphan_free(index),
            };
            match result {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    if single {
                        let _ = reply.send(Err(error));
                        return;
                    }
                    continue;
                }
            }
            match action {
                Action::Start => self.request_start(index, true),
                Action::Stop => self.request_stop(index, !single),
                Action::Restart => self.request_restart(index),
            }
        }
        self.waiters.push(Waiter {
            targets,
            goal,
            single,
            reply,
        });
    }

    /// Ok(false): skip (already in the target state, acting on all).
    fn check_startable(&self, index: usize, single: bool) -> Result<bool, ControlError> {
        let server = &self.servers[index];
        if server.pid.is_some() || server.pending_start || server.stopping.is_some() {
            return if single {
                Err(ControlError::AlreadyRunning(server.config.id.clone()))
            } else {
                Ok(false)
            };
        }
        self.check_orphan_free(index)
    }

    fn check_orphan_free(&self, index: usize) -> Result<bool, ControlError> {
        let server = &self.servers[index];
        if server.orphaned && server.pid.is_none() {
            let port = server
                .ports
                .iter()
                .find(|p| p.owner_pid == server.orphaned_pid)
                .map_or(server.config.ports[0], |p| p.port);
            return Err(ControlError::OrphanHoldsPort {
                id: server.config.id.clone(),
                port,
                pid: server.orphaned_pid,
            });
        }
        Ok(true)
    }

    fn check_stoppable(&self, index: usize, single: bool) -> Result<bool, ControlError> {
        let server = &self.servers[index];
        if server.status == Status::Stopped && !server.pending_start {
            return if single {
                Err(ControlError::NotRunning(server.config.id.clone()))
            } else {
                Ok(false)
            };
        }
        Ok(true)
    }

    fn find_orphan(
        &self,
        id: Option<String>,
        pid: Option<i64>,
    ) -> Result<OrphanTarget, ControlError> {
        if let Some(pid) = pid {
            if pid <= 0 || pid > i32::MAX as i64 {
                return Err(ControlError::BadRequest(format!(
                    "pid must be a positive process id, got {pid}"
                )));
            }
            if !process::is_signallable(pid as u32) {
                return Err(ControlError::Refused(format!(
                    "PID {pid} is never killed by tend"
                )));
            }
        }
        let index = match &id {
            Some(id) => Some(self.find(id)?),
            None => None,
        };
        let candidates: Vec<usize> = match index {
            Some(index) => vec![index],
            None => (0..self.servers.len()).collect(),
        };
        let orphan = candidates.into_iter().find_map(|i| {
            let server = &self.servers[i];
            let held = server.orphaned_pid.filter(|_| server.orphaned)?;
            match pid {
                Some(wanted) if wanted as u32 != held => None,
                _ => Some((i, held)),
            }
        });
        let Some((index, orphan_pid)) = orphan else {
            return Err(match (pid, id) {
                (Some(pid), _) => ControlError::Refused(format!(
                    "PID {pid} is not an orphan holding a configured port; tend only kills orphans \
                     (stop managed servers with action=stop)"
                )),
                (None, Some(id)) => ControlError::NoOrphan(id),
                (None, None) => ControlError::BadRequest("give an id or a pid".into()),
            });
        };
        if !process::is_signallable(orphan_pid) {
            return Err(ControlError::Refused(format!(
                "PID {orphan_pid} holds a port of '{}' but is PID 1, tend or in tend's own \
                 process group: tend never signals those",
                self.servers[index].config.id
            )));
        }
        // Never an orphan that is in fact one of our own servers' processes.
        if self.servers.iter().any(|s| s.pid == Some(orphan_pid)) {
            return Err(ControlError::Refused(format!(
                "PID {orphan_pid} is a managed server"
            )));
        }
        let start_ticks = procfs::start_ticks(orphan_pid)
            .ok_or_else(|| ControlError::Refused(format!("PID {orphan_pid} is gone")))?;
        Ok(OrphanTarget {
            id: self.servers[index].config.id.clone(),
            pid: orphan_pid,
            start_ticks,
        })
    }

    // ---- lifecycle ------------------------------------------------------------------------

    /// Asks for `index` to run, pulling in its dependencies; the spawn happens in `advance`
    /// once every dependency is running.
    fn request_start(&mut self, index: usize, by_person: bool) {
        let server = &mut self.servers[index];
        if server.pid.is_some() || server.pending_start {
            return;
        }
        if by_person {
            server.restarts = 0;
            server.streak = 0;
            server.restart_reason = None;
        }
        server.spawn_error = None;
        server.pending_start = true;
        self.has_pending = true;
        server.pending_stop = false;
        server.epoch += 1;
        self.set_status(index, Status::Starting);
        for dep in self.servers[index].dependencies.clone() {
            if self.servers[dep].pid.is_none() {
                self.request_start(dep, by_person);
            }
        }
    }

    /// Asks for `index` to stop. `after_dependents`: wait until the servers that depend on it are
    /// down (stop all, shutdown); a person stopping one server gets it stopped at once.
    fn request_stop(&mut self, index: usize, after_dependents: bool) {
        let server = &mut self.servers[index];
        server.pending_start = false;
        if let Some(stopping) = &mut server.stopping {
            stopping.then = AfterStop::Stay;
            return;
        }
        server.pending_stop = true;
        self.has_pending = true;
        if !after_dependents {
            self.stop_now(index);
        }
    }

    fn stop_now(&mut self, index: usize) {
        self.servers[index].pending_stop = false;
        if self.servers[index].pid.is_some() {
            self.begin_stop(index, AfterStop::Stay);
        } else {
            self.servers[index].epoch += 1;
            self.servers[index].last_error = None;
            self.set_status(index, Status::Stopped);
        }
    }

    fn request_restart(&mut self, index: usize) {
        let server = &mut self.servers[index];
        server.restarts = 0;
        server.streak = 0;
        if let Some(stopping) = &mut server.stopping {
            stopping.then = AfterStop::Start;
            return;
        }
        if server.pid.is_some() {
            self.begin_stop(index, AfterStop::Start);
        } else {
            self.request_start(index, true);
        }
    }

    /// Spawns pending servers whose dependencies run, and stops pending servers whose
    /// dependents are down. Repeats until nothing moves (a server without ports runs at once).
    fn advance(&mut self) {
        if !self.has_pending {
            self.settle_waiters();
            return;
        }
        loop {
            let mut moved = false;
            for index in 0..self.servers.len() {
                if self.servers[index].pending_start {
                    match self.dependencies_ready(index) {
                        Some(true) => {
                            self.servers[index].pending_start = false;
                            self.spawn(index);
                            moved = true;
                        }
                        Some(false) => {}
                        None => {
                            let failed = self.servers[index]
                                .dependencies
                                .iter()
                                .map(|&d| &self.servers[d])
                                .find(|d| !d.pending_start && d.pid.is_none())
                                .map(|d| format!("'{}' ({})", d.config.id, d.status))
                                .unwrap_or_default();
                            let server = &mut self.servers[index];
                            server.pending_start = false;
                            server.last_error =
                                Some(format!("not started: dependency {failed} is not running"));
                            log::warn!(target: LOG, "Server '{}' not started: dependency {} is not running", server.config.id, failed);
                            self.set_status(index, Status::Stopped);
                            moved = true;
                        }
                    }
                }
                if self.servers[index].pending_stop && self.dependents_down(index) {
                    self.stop_now(index);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        self.has_pending = self
            .servers
            .iter()
            .any(|s| s.pending_start || s.pending_stop);
        self.settle_waiters();
    }

    /// Some(true): all dependencies run healthy; Some(false): keep waiting; None: one failed.
    fn dependencies_ready(&self, index: usize) -> Option<bool> {
        let mut ready = true;
        for &dep in &self.servers[index].dependencies {
            let d = &self.servers[dep];
            match d.status {
                Status::Running => {}
                Status::Starting | Status::Backoff => ready = false,
                Status::Stopping
                    if d.stopping
                        .as_ref()
                        .is_some_and(|s| s.then == AfterStop::Start) =>
                {
                    ready = false
                }
                _ if d.pending_start => ready = false,
                _ => return None,
            }
        }
        Some(ready)
    }

    fn dependents_down(&self, index: usize) -> bool {
        self.servers[index]
            .dependents
            .iter()
            .all(|&d| self.servers[d].pid.is_none() && !self.servers[d].pending_start)
    }

    fn spawn(&mut self, index: usize) {
        if let Err(error) = self.check_orphan_free(index) {
            // A new instance would fail to bind behind the orphan: do not start it blind.
            self.spawn_failed(index, error.to_string());
            return;
        }
        let config = Arc::clone(&self.servers[index].config);
        // This process's output starts where the file ends now (tend waits for a stop to
        // finish before a new start, so no earlier process writes after this).
        let log_from =
            std::fs::metadata(process::log_path(&self.log_dir, &config.id)).map_or(0, |m| m.len());
        match process::spawn(&config, &self.log_dir, &self.tend_bin) {
            Ok(spawned) => {
                let server = &mut self.servers[index];
                server.pid = Some(spawned.pid);
                server.last_leader = spawned.pid;
                server.start_ticks = spawned.start_ticks;
                server.env_file_text = spawned.env_file_text;
                server.started_at = Some(SystemTime::now());
                server.spawned_at = Some(Instant::now());
                server.adopted = false;
                server.exit_code = None;
                server.exit_signal = None;
                server.last_error = server.restart_reason.take();
                server.opened_once = false;
                server.ports_ok = config.ports.is_empty();
                server.ports = server.closed_ports();
                server.sample = None;
                server.memory_over = 0;
                server.health.reset();
                server.log_from = log_from;
                if let Some(HealthCheck {
                    probe: Probe::Log(regex),
                    ..
                }) = &config.health
                {
                    server.health.last = Some(HealthView {
                        ok: false,
                        detail: format!("no line matched /{regex}/ yet"),
                        at: epoch_ms(SystemTime::now()),
                        duration_ms: 0,
                        failures: 0,
                        ready: false,
                    });
                }
                server.epoch += 1;
                self.spawn_successes += 1;
                self.by_pid.insert(spawned.pid, index);
                self.timeline(Timeline::ServerStarted {
                    id: config.id.clone(),
                    pid: spawned.pid,
                });
                self.set_status(index, Status::Starting);
                if config.ports.is_empty() && config.health.is_none() {
                    self.set_status(index, Status::Running);
                }
                self.arm(index, TimerKind::StartGrace, config.start_timeout);
                self.send_watch(index);
                self.state_dirty = true;
            }
            Err(reason) => self.spawn_failed(index, reason),
        }
    }

    fn spawn_failed(&mut self, index: usize, reason: String) {
        self.spawn_failures += 1;
        let id = self.servers[index].config.id.clone();
        log::error!(target: LOG, "Process '{}' failed to start: {}", id, reason);
        self.timeline(Timeline::ProcessError {
            id,
            error: reason.clone(),
        });
        let server = &mut self.servers[index];
        server.spawn_error = Some(reason.clone());
        server.last_error = Some(reason);
        server.exit_code = None;
        server.exit_signal = None;
        server.epoch += 1;
        self.set_status(index, Status::Crashed);
        self.apply_restart_policy(index, ExitKind::Failed, Duration::ZERO);
    }

    fn begin_stop(&mut self, index: usize, then: AfterStop) {
        let server = &mut self.servers[index];
        let Some(pid) = server.pid else { return };
        server.epoch += 1;
        server.pending_stop = false;
        server.stopping = Some(Stopping {
            signalled_at: Instant::now(),
            forced: false,
            leader_gone: false,
            then,
        });
        let signal = server.config.stop_signal;
        let id = server.config.id.clone();
        let timeout = server.config.stop_timeout;
        self.set_status(index, Status::Stopping);
        log::info!(target: LOG, "Stopping '{}' (PGID: {}) with {}", id, pid, signal_name(signal));
        match process::signal_group(pid, signal) {
            // A stopped (SIGSTOP) process only acts on the stop signal once continued.
            Ok(()) => {
                let _ = process::signal_group(pid, libc::SIGCONT);
            }
            Err(SignalError::Gone) => {} // Its exit is on the way from the reaper.
            Err(e) => log::error!(target: LOG, "Cannot signal '{}' (PGID: {}): {}", id, pid, e),
        }
        self.arm(index, TimerKind::Escalate, timeout);
    }

    fn on_exit(&mut self, exit: Exit) {
        let Some(index) = self.by_pid.remove(&exit.pid) else {
            // A re-parented descendant (we are subreaper): its group may have been waited on.
            log::debug!(target: LOG, "Reaped PID {} (not a server leader)", exit.pid);
            self.check_stopping_groups();
            return;
        };
        let server = &mut self.servers[index];
        if server.pid != Some(exit.pid) {
            return;
        }
        let id = server.config.id.clone();
        let ran_for = server.spawned_at.map(|at| at.elapsed()).unwrap_or_default();
        server.pid = None;
        server.sample = None;
        let (code, signal) = match exit.status {
            ExitStatus::Code(code) => (Some(code), None),
            ExitStatus::Signal(signal) => (None, Some(signal)),
            ExitStatus::Unknown => (None, None),
        };
        server.exit_code = code;
        server.exit_signal = signal;
        self.state_dirty = true;
        self.mark_changed(index);

        if let Some(stopping) = &mut self.servers[index].stopping {
            stopping.leader_gone = true;
            self.check_group(index, exit.pid);
            return;
        }

        let described = describe_exit(exit.status);
        let kind = match exit.status {
            ExitStatus::Code(0) => ExitKind::Clean,
            ExitStatus::Unknown => ExitKind::Unknown,
            _ => ExitKind::Failed,
        };
        if kind == ExitKind::Clean {
            log::info!(target: LOG, "Process '{}' (PID: {}) exited with code 0", id, exit.pid);
        } else {
            log::warn!(target: LOG, "Process '{}' (PID: {}) died: {}", id, exit.pid, described);
        }
        self.timeline(Timeline::ProcessDied {
            id: id.clone(),
            pid: exit.pid,
            exit_code: code,
            exit_signal: signal.map(signal_name),
        });
        // What is left of the dead instance's group would hold its ports against the next one.
        if process::group_exists(exit.pid, self.servers[index].adopted) {
            log::warn!(target: LOG, "Killing what is left of '{}' (PGID: {})", id, exit.pid);
            let _ = process::signal_group(exit.pid, libc::SIGKILL);
        }
        if kind != ExitKind::Clean {
            self.servers[index].last_error = Some(described);
        }
        let status = if kind == ExitKind::Clean {
            Status::Exited
        } else {
            Status::Crashed
        };
        self.servers[index].epoch += 1;
        self.set_status(index, status);
        self.send_watch(index);
        self.apply_restart_policy(index, kind, ran_for);
    }

    fn apply_restart_policy(&mut self, index: usize, kind: ExitKind, ran_for: Duration) {
        if self.shutting_down {
            return;
        }
        let server = &self.servers[index];
        let config = Arc::clone(&server.config);
        let decision = policy::after_exit(
            config.restart,
            kind,
            ran_for,
            server.streak,
            config.max_restarts,
            config.backoff,
        );
        match decision {
            AfterExit::Restart { delay, streak } => {
                self.servers[index].streak = streak;
                if delay.is_zero() {
                    log::info!(target: LOG, "Restarting '{}' now", config.id);
                    self.servers[index].restarts += 1;
                    self.spawn(index);
                } else {
                    log::info!(target: LOG, "Restarting '{}' in {} ms", config.id, delay.as_millis());
                    self.set_status(index, Status::Backoff);
                    self.arm(index, TimerKind::Restart, delay);
                }
            }
            AfterExit::Exited | AfterExit::Crashed => {}
            AfterExit::Fatal => {
                let retry = config
                    .retry_fatal
                    .map(|d| format!("; retrying in {} s", d.as_secs()))
                    .unwrap_or_default();
                let message = format!(
                    "gave up after {} restarts in a row failed{}",
                    self.servers[index].restarts, retry
                );
                log::error!(target: LOG, "Server '{}' is fatal: {}", config.id, message);
                let last = self.servers[index].last_error.take().unwrap_or_default();
                self.servers[index].last_error = Some(if last.is_empty() {
                    message
                } else {
                    format!("{last}; {message}")
                });
                self.set_status(index, Status::Fatal);
                if let Some(retry) = config.retry_fatal {
                    self.arm(index, TimerKind::RetryFatal, retry);
                }
            }
        }
    }

    /// Finishes a stop once the group is empty; otherwise looks again shortly.
    fn check_group(&mut self, index: usize, pgid: u32) {
        if process::group_exists(pgid, self.servers[index].adopted) {
            self.arm(index, TimerKind::GroupCheck, GROUP_POLL);
        } else {
            self.finish_stop(index);
        }
    }

    fn check_stopping_groups(&mut self) {
        for index in 0..self.servers.len() {
            let waiting = self.servers[index]
                .stopping
                .as_ref()
                .is_some_and(|s| s.leader_gone);
            let server = &self.servers[index];
            if waiting && !process::group_exists(server.last_leader, server.adopted) {
                self.finish_stop(index);
            }
        }
    }

    fn finish_stop(&mut self, index: usize) {
        let Some(stopping) = self.servers[index].stopping.take() else {
            return;
        };
        let server = &mut self.servers[index];
        let pid = server.last_leader;
        server.pid = None;
        self.by_pid.remove(&pid);
        server.epoch += 1;
        // The orphan flags stay: an orphan outlives the stop, and the next round says whether
        // it is still there (clearing them here made it reported anew).
        server.ports = server.closed_ports();
        server.adopted = false;
        let id = server.config.id.clone();
        if stopping.forced {
            let message = format!(
                "did not stop within {} ms of {}; killed with SIGKILL",
                server.config.stop_timeout.as_millis(),
                signal_name(server.config.stop_signal)
            );
            log::warn!(target: LOG, "Server '{}' {}", id, message);
            server.last_error = Some(message);
        } else {
            server.last_error = server.restart_reason.clone();
        }
        log::info!(target: LOG, "Server '{}' stopped (PID: {}) in {} ms", id, pid, stopping.signalled_at.elapsed().as_millis());
        self.set_status(index, Status::Stopped);
        self.timeline(Timeline::ServerStopped {
            id,
            pid: Some(pid),
            forced: stopping.forced,
        });
        self.send_watch(index);
        self.state_dirty = true;
        if stopping.then == AfterStop::Start && !self.shutting_down {
            self.request_start(index, false);
        }
    }

    // ---- reports --------------------------------------------------------------------------

    /// The server a monitor slot stands for now.
    fn slot_index(&self, slot: usize) -> Option<usize> {
        self.slots.get(slot).copied().flatten()
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Observed {
                index: slot,
                pid,
                observation,
            } => {
                if let Some(index) = self.slot_index(slot) {
                    self.on_observed(index, pid, observation);
                }
            }
            Report::Stats(stats) => {
                // Nobody watching: keep the numbers for the API, skip building the event.
                let watched = self.hub.subscriber_count() > 0;
                let mut entries = Vec::with_capacity(if watched { stats.len() } else { 0 });
                let mut over_memory = Vec::new();
                for sample in stats {
                    let Some(index) = self.slot_index(sample.index) else {
                        continue;
                    };
                    let server = &mut self.servers[index];
                    if server.pid.is_none() {
                        continue;
                    }
                    if watched {
                        entries.push(StatsEntry {
                            id: server.config.id.clone(),
                            cpu_percent: sample.cpu_percent,
                            rss_bytes: sample.rss_bytes,
                            processes: sample.processes,
                        });
                    }
                    if let Some(limit) = server.config.max_memory {
                        if sample.rss_bytes > limit {
                            server.memory_over = server.memory_over.saturating_add(1);
                            if server.memory_over >= MEMORY_ROUNDS {
                                over_memory.push((index, sample.rss_bytes, limit));
                            }
                        } else {
                            server.memory_over = 0;
                        }
                    }
                    server.sample = Some(sample);
                    self.list_json.forget(index);
                }
                for (index, rss_bytes, limit_bytes) in over_memory {
                    self.restart_for_memory(index, rss_bytes, limit_bytes);
                }
                if !entries.is_empty() {
                    self.hub.publish(&Event::Stats(entries));
                }
            }
            Report::Vanished { index: slot, pid } => {
                let index = self.slot_index(slot);
                if index.is_some_and(|index| self.servers[index].pid == Some(pid)) {
                    self.on_exit(Exit {
                        pid,
                        status: ExitStatus::Unknown,
                    });
                }
            }
            Report::Probed(answers) => {
                for mut probed in answers {
                    if let Some(index) = self.slot_index(probed.index) {
                        probed.index = index;
                        self.on_probed(probed);
                    }
                }
            }
            Report::LogMatched {
                index: slot,
                pid,
                line,
            } => {
                if let Some(index) = self.slot_index(slot) {
                    self.on_log_matched(index, pid, &line);
                }
            }
            Report::RoundDone { took } => {
                log::trace!(target: "ProcessMonitor", "Health round took {} µs", took.as_micros());
                self.health_rounds.observe(took);
            }
        }
    }

    /// Restarts a server whose group stayed over `max_memory`, through the normal stop (its
    /// stop signal, then SIGKILL after `stop_timeout_ms`), as PM2's `max_memory_restart` does.
    fn restart_for_memory(&mut self, index: usize, rss_bytes: u64, limit_bytes: u64) {
        let server = &mut self.servers[index];
        let Some(pid) = server.pid else { return };
        if server.stopping.is_some() || server.pending_stop {
            return;
        }
        let reason = format!(
            "memory {} over {}: restarted",
            health::format_memory(rss_bytes),
            health::format_size(limit_bytes)
        );
        log::warn!(target: LOG, "Server '{}' (PGID: {}) uses {} bytes, over max_memory {} bytes for {} rounds; restarting",
            server.config.id, pid, rss_bytes, limit_bytes, MEMORY_ROUNDS);
        server.memory_over = 0;
        server.memory_restarts += 1;
        server.restarts += 1;
        server.restart_reason = Some(reason.clone());
        server.last_error = Some(reason);
        let id = server.config.id.clone();
        self.timeline(Timeline::MemoryExceeded {
            id,
            pid,
            rss_bytes,
            limit_bytes,
        });
        self.state_dirty = true;
        self.begin_stop(index, AfterStop::Start);
    }

    /// An HTTP health probe's answer: readiness on the first pass, `unhealthy` after
    /// `failures` failures in a row, and the result in the server's `health`.
    fn on_probed(&mut self, probed: Probed) {
        let index = probed.index;
        let Some(server) = self.servers.get_mut(index) else {
            return;
        };
        let Some(HealthCheck {
            probe: Probe::Http(check),
            ..
        }) = server.config.health.as_ref()
        else {
            return;
        };
        if server.pid != Some(probed.pid) || server.stopping.is_some() {
            return; // About a process that has since changed, or is being stopped.
        }
        let ok = matches!(probed.outcome, Outcome::Status(status)
            if (check.expect.0..=check.expect.1).contains(&status));
        let detail = httpprobe::describe(&probed.outcome, &check.path, check.timeout);
        let health = &mut server.health;
        health.probes += 1;
        health.last_took = Some(probed.took);
        if ok {
            health.ready = true;
            health.failing = 0;
        } else {
            health.probe_failures += 1;
            health.failing = health.failing.saturating_add(1);
        }
        let before = health.last.as_ref().map(|h| (h.ok, h.detail.clone()));
        // A passing check that changed only its words (200 to 204) is no news.
        let news = match &before {
            None => true,
            Some((was_ok, was_detail)) => *was_ok != ok || (!ok && *was_detail != detail),
        };
        let view = HealthView {
            ok,
            detail: detail.clone(),
            at: epoch_ms(SystemTime::now()),
            duration_ms: probed.took.as_millis() as u64,
            failures: health.failing,
            ready: health.ready,
        };
        let visible = health.last.as_ref().is_none_or(|last| {
            last.ok != view.ok
                || last.detail != view.detail
                || last.failures != view.failures
                || last.ready != view.ready
        });
        health.last = Some(view);
        let id = server.config.id.clone();
        let threshold = check.failures;
        let failing = health.failing;
        if news {
            if ok {
                log::info!(target: "ProcessMonitor", "Health check of '{}' passes: {}", id, detail);
            } else {
                log::warn!(target: "ProcessMonitor", "Health check of '{}' failed: {} ({} in a row; unhealthy at {})", id, detail, failing, threshold);
            }
            self.timeline(Timeline::HealthChanged {
                id,
                pid: probed.pid,
                ok,
                detail,
            });
        }
        // The time and duration change with every probe: the list must not keep the old ones,
        // but only a visible change is worth a `server` event.
        if visible {
            self.mark_changed(index);
        } else {
            self.list_json.forget(index);
        }
        self.update_health(index);
    }

    /// The line a `health.log` check waits for: the server is ready.
    fn on_log_matched(&mut self, index: usize, pid: u32, line: &str) {
        let Some(server) = self.servers.get_mut(index) else {
            return;
        };
        let Some(HealthCheck {
            probe: Probe::Log(regex),
            ..
        }) = server.config.health.as_ref()
        else {
            return;
        };
        if server.pid != Some(pid) || server.health.ready {
            return;
        }
        // A person reads the line in the dashboard: keep it short and on one line.
        let shown: String = line.chars().take(120).collect();
        let detail = format!("line matched /{regex}/: {}", shown.escape_debug());
        let took = server.spawned_at.map(|at| at.elapsed()).unwrap_or_default();
        server.health.ready = true;
        server.health.last = Some(HealthView {
            ok: true,
            detail: detail.clone(),
            at: epoch_ms(SystemTime::now()),
            duration_ms: took.as_millis() as u64,
            failures: 0,
            ready: true,
        });
        let id = server.config.id.clone();
        log::info!(target: "ProcessMonitor", "Server '{}' is ready: {} ({} ms after it started)", id, detail, took.as_millis());
        self.timeline(Timeline::HealthChanged {
            id,
            pid,
            ok: true,
            detail,
        });
        self.mark_changed(index);
        self.update_health(index);
        self.send_watch(index);
    }

    fn on_observed(&mut self, index: usize, pid: Option<u32>, observation: Observation) {
        let server = &mut self.servers[index];
        if server.pid != pid {
            return; // About a process that has since changed.
        }
        let id = server.config.id.clone();
        let newly_orphaned = observation.orphaned
            && (!server.orphaned || server.orphaned_pid != observation.orphaned_pid);
        // The warning said which port; say the same one when it ends.
        let cleared = (server.orphaned && !observation.orphaned).then(|| {
            let port = server
                .ports
                .iter()
                .find(|p| p.owner_pid.is_some() && p.owner_pid == server.orphaned_pid)
                .or_else(|| server.ports.first())
                .map_or(0, |p| p.port);
            (server.orphaned_pid, port)
        });
        let visible_change = server.ports != observation.ports
            || server.orphaned != observation.orphaned
            || server.orphaned_pid != observation.orphaned_pid;
        server.ports = observation.ports;
        server.ports_ok = observation.ports_ok;
        server.orphaned = observation.orphaned;
        server.orphaned_pid = observation.orphaned_pid;
        if newly_orphaned || !observation.orphaned {
            // Judged once per orphan (a few /proc reads), and again by `tend adopt`.
            server.judge_orphan();
        }
        if visible_change {
            self.mark_changed(index);
        }
        if let Some((pid, port)) = cleared {
            log::info!(target: "ProcessMonitor",
                "Orphan on port {} of '{}' is gone (was PID {})", port, id,
                pid.map_or("unknown".to_string(), |p| p.to_string()));
            self.timeline(Timeline::OrphanCleared {
                id: id.clone(),
                pid,
                port,
            });
        }
        if newly_orphaned {
            let port = self.servers[index]
                .ports
                .iter()
                .find(|p| p.owner_pid.is_some() && p.owner_pid == observation.orphaned_pid)
                .or_else(|| self.servers[index].ports.iter().find(|p| p.open))
                .map_or(0, |p| p.port);
            let server = &self.servers[index];
            let verdict = match (&server.adoptable, &server.not_adoptable) {
                (Some(found), _) => format!(
                    "adoptable: PID {} ({}); take it over with `tend adopt {}`",
                    found.pid, found.evidence, id
                ),
                (None, Some(why)) => format!("not adoptable: {why}"),
                (None, None) => "not adoptable".to_string(),
            };
            log::warn!(target: "ProcessMonitor",
                "Orphan on port {} of '{}': PID {}; {}", port, id,
                observation.orphaned_pid.map_or("unknown".to_string(), |p| p.to_string()), verdict);
            self.timeline(Timeline::OrphanDetected {
                id,
                pid: observation.orphaned_pid,
                port,
            });
        }
        self.update_health(index);
    }

    fn update_health(&mut self, index: usize) {
        let server = &mut self.servers[index];
        if !matches!(
            server.status,
            Status::Starting | Status::Running | Status::Unhealthy
        ) || server.pid.is_none()
        {
            return;
        }
        if server.ports_ok {
            server.opened_once = true;
        }
        let since = server.spawned_at.map(|at| at.elapsed()).unwrap_or_default();
        let check = match &server.config.health {
            None => Check::Absent,
            Some(HealthCheck {
                probe: Probe::Http(http),
                ..
            }) => {
                if !server.health.ready {
                    Check::NotReady
                } else if server.health.failing >= http.failures {
                    Check::Failing
                } else {
                    Check::Passing
                }
            }
            Some(HealthCheck {
                probe: Probe::Log(_),
                ..
            }) => {
                if server.health.ready {
                    Check::Passing
                } else {
                    Check::NotReady
                }
            }
        };
        let status = policy::server_status(
            server.ports_ok,
            server.opened_once,
            since,
            server.config.start_timeout,
            check,
        );
        if status != server.status {
            if status == Status::Unhealthy {
                let why = match (server.ports_ok, &server.health.last) {
                    (true, Some(last)) => last.detail.clone(),
                    (true, None) => "no health check passed yet".to_string(),
                    (false, _) => "a port is closed".to_string(),
                };
                log::warn!(target: "ProcessMonitor", "Server '{}' is unhealthy: {}", server.config.id, why);
                let restart_after = server
                    .config
                    .health
                    .as_ref()
                    .and_then(|h| h.restart_unhealthy_after);
                server.health.unhealthy_since = Some(Instant::now());
                if let Some(after) = restart_after {
                    self.arm(index, TimerKind::UnhealthyRestart, after);
                }
            } else {
                server.health.unhealthy_since = None;
            }
            self.set_status(index, status);
            self.send_watch(index);
        }
    }

    /// `restart_unhealthy_after_ms`: restarts a server that stayed unhealthy that long.
    fn check_unhealthy_restart(&mut self, index: usize) {
        let server = &mut self.servers[index];
        let (Some(since), Some(after)) = (
            server.health.unhealthy_since,
            server
                .config
                .health
                .as_ref()
                .and_then(|h| h.restart_unhealthy_after),
        ) else {
            return;
        };
        if server.status != Status::Unhealthy || server.stopping.is_some() {
            return;
        }
        let elapsed = since.elapsed();
        if elapsed < after {
            // Unhealthy again after a recovery since this timer was armed: wait the rest.
            self.arm(index, TimerKind::UnhealthyRestart, after - elapsed);
            return;
        }
        let why = server
            .health
            .last
            .as_ref()
            .filter(|h| !h.ok)
            .map_or_else(|| "a port is closed".to_string(), |h| h.detail.clone());
        let reason = format!(
            "unhealthy for {} ms ({why}): restarted",
            elapsed.as_millis()
        );
        log::warn!(target: LOG, "Server '{}' {}", server.config.id, reason);
        server.restarts += 1;
        server.restart_reason = Some(reason.clone());
        server.last_error = Some(reason);
        self.state_dirty = true;
        self.begin_stop(index, AfterStop::Start);
    }

    // ---- timers ---------------------------------------------------------------------------

    fn arm(&mut self, index: usize, kind: TimerKind, delay: Duration) {
        let epoch = self.servers[index].epoch;
        self.timers.push(Reverse(Timer {
            at: Instant::now() + delay,
            index,
            epoch,
            kind,
        }));
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.at > now {
                break;
            }
            self.timers.pop();
            if self.servers[timer.index].epoch != timer.epoch {
                continue;
            }
            self.on_timer(timer);
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        let index = timer.index;
        match timer.kind {
            TimerKind::Restart => {
                if self.servers[index].status == Status::Backoff {
                    self.servers[index].restarts += 1;
                    self.spawn(index);
                }
            }
            TimerKind::RetryFatal => {
                if self.servers[index].status == Status::Fatal {
                    log::info!(target: LOG, "Retrying fatal server '{}'", self.servers[index].config.id);
                    self.servers[index].streak = 0;
                    self.request_start(index, false);
                }
            }
            TimerKind::StartGrace => self.update_health(index),
            TimerKind::UnhealthyRestart => self.check_unhealthy_restart(index),
            TimerKind::Escalate => self.escalate(index),
            TimerKind::GroupCheck => {
                let pgid = self.servers[index].last_leader;
                let Some(stopping) = &self.servers[index].stopping else {
                    return;
                };
                if stopping.forced
                    && stopping.signalled_at.elapsed()
                        > self.servers[index].config.stop_timeout + KILL_GRACE
                {
                    log::error!(target: LOG,
                        "Processes of '{}' (PGID: {}) survived SIGKILL; giving up on them", self.servers[index].config.id, pgid);
                    self.finish_stop(index);
                    return;
                }
                self.check_group(index, pgid);
            }
        }
    }

    fn escalate(&mut self, index: usize) {
        let pgid = self.servers[index].last_leader;
        let Some(stopping) = &mut self.servers[index].stopping else {
            return;
        };
        if stopping.forced {
            return;
        }
        stopping.forced = true;
        let leader_gone = stopping.leader_gone;
        log::warn!(target: LOG, "Server '{}' ignored {} for {} ms; sending SIGKILL to PGID {}",
            self.servers[index].config.id, signal_name(self.servers[index].config.stop_signal),
            self.servers[index].config.stop_timeout.as_millis(), pgid);
        let _ = process::signal_group(pgid, libc::SIGKILL);
        // Keep the epoch: the exit or the group check finishes the stop.
        if leader_gone {
            self.check_group(index, pgid);
        } else {
            let epoch = self.servers[index].epoch;
            self.timers.push(Reverse(Timer {
                at: Instant::now() + KILL_GRACE,
                index,
                epoch,
                kind: TimerKind::GroupCheck,
            }));
        }
    }

    // ---- shutdown -------------------------------------------------------------------------

    fn on_signal(&mut self, signal: Signal) {
        if signal.signal == libc::SIGHUP {
            if self.shutting_down {
                log::warn!(target: LOG, "SIGHUP while shutting down: not reloading the config");
            } else {
                self.on_control(Control::Reload { reply: None });
            }
            return;
        }
        self.on_shutdown(signal);
    }

    fn on_shutdown(&mut self, signal: Signal) {
        if self.shutting_down {
            log::warn!(target: LOG, "Second {}: killing every server now", signal_name(signal.signal));
            for index in 0..self.servers.len() {
                if self.servers[index].pid.is_some() || self.servers[index].stopping.is_some() {
                    let pgid = self.servers[index].last_leader;
                    let _ = process::signal_group(pgid, libc::SIGKILL);
                    if let Some(stopping) = &mut self.servers[index].stopping {
                        stopping.forced = true;
                    }
                }
            }
            return;
        }
        self.shutting_down = true;
        self.timeline(Timeline::TendStopping {
            signal: signal_name(signal.signal),
        });
        self.abandon_reload();
        match self.on_exit {
            OnExit::Keep => {
                log::info!(target: LOG, "Shutting down; leaving servers running (on_exit: keep)");
            }
            OnExit::Stop => {
                log::info!(target: LOG, "Shutting down; stopping every server");
                for index in 0..self.servers.len() {
                    let server = &mut self.servers[index];
                    server.pending_start = false;
                    if let Some(stopping) = &mut server.stopping {
                        stopping.then = AfterStop::Stay;
                    } else if server.pid.is_some() {
                        server.pending_stop = true;
                        self.has_pending = true;
                    } else if server.status != Status::Stopped {
                        server.epoch += 1;
                    }
                }
            }
        }
    }

    fn all_settled_for_exit(&self) -> bool {
        self.on_exit == OnExit::Keep
            || self
                .servers
                .iter()
                .all(|s| s.pid.is_none() && s.stopping.is_none())
    }

    fn finish_shutdown(mut self) {
        self.state_dirty = true;
        self.flush();
        self.save_state();
        let stats = self.outputs.store.stats();
        if !self.outputs.store.shutdown() {
            log::error!(target: LOG, "State file not confirmed written before exit");
        }
        log::info!(target: LOG,
            "Shut down; the state file was written {} times ({} writes failed)",
            stats.writes, stats.failures);
    }

    // ---- reload ---------------------------------------------------------------------------

    /// Reads the config again, plans what changes and stops what the plan removes or restarts;
    /// the swap to the new config waits in [`Self::continue_reload`] until those are down. An
    /// invalid config changes nothing.
    fn start_reload(&mut self, reply: Option<Reply<ReloadPlan>>) {
        let answer = |reply: Option<Reply<ReloadPlan>>, result| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        if self.shutting_down {
            return answer(reply, Err(ControlError::ShuttingDown));
        }
        // The only files the supervisor reads: a config and its env files are small and local,
        // and reading them here means the plan compares with the very state it changes.
        let config = match self.source.load() {
            Ok(config) => config,
            Err(errors) => {
                for error in &errors.0 {
                    log::error!(target: LOG, "Config not reloaded: {error}");
                }
                return answer(reply, Err(ControlError::InvalidConfig(errors)));
            }
        };
        let current: Vec<Current> = self
            .servers
            .iter()
            .map(|s| Current {
                config: &s.config,
                env_file_text: s.env_file_text.as_deref().filter(|_| s.pid.is_some()),
                wants_process: s.wants_process(),
            })
            .collect();
        let mut plan = reload::plan(&current, &config, |path| std::fs::read_to_string(path).ok());
        plan.needs_tend_restart = reload::fixed_changes(&self.settings, &config)
            .into_iter()
            .map(String::from)
            .collect();
        let mut stopping = Vec::new();
        for id in plan.removed.iter().chain(&plan.restarted) {
            let index = self.index_of[id];
            let server = &self.servers[index];
            // A person's stop in progress, a pending restart or a retry timer: all are ended by
            // a stop, and a removed server is gone only once its whole group is.
            let busy = server.pid.is_some()
                || server.stopping.is_some()
                || server.pending_start
                || server.pending_stop
                || matches!(server.status, Status::Backoff | Status::Fatal);
            if busy {
                self.request_stop(index, true);
                stopping.push(index);
            }
        }
        log::info!(target: LOG, "Reloading {}: {} added, {} removed, {} restarted, {} updated, {} unchanged",
            plan.config, plan.added.len(), plan.removed.len(), plan.restarted.len(),
            plan.updated.len(), plan.unchanged.len());
        self.reloading = Some(Reloading {
            config,
            plan,
            stopping,
            reply,
        });
    }

    /// Swaps in the reloaded config once the servers it stops are down, then runs the commands
    /// that waited for it (another reload among them) in the order they came.
    fn continue_reload(&mut self) {
        loop {
            match &self.reloading {
                Some(reloading) => {
                    let down = reloading.stopping.iter().all(|&index| {
                        let s = &self.servers[index];
                        s.pid.is_none() && s.stopping.is_none() && !s.pending_stop
                    });
                    if !down {
                        return;
                    }
                    self.finish_reload();
                    self.advance();
                }
                None => match self.deferred.pop_front() {
                    Some(control) => {
                        self.on_control(control);
                        self.advance();
                    }
                    None => return,
                },
            }
        }
    }

    /// Shutting down: a reload waiting for its stops is not applied.
    fn abandon_reload(&mut self) {
        if let Some(Reloading {
            reply: Some(reply), ..
        }) = self.reloading.take()
        {
            let _ = reply.send(Err(ControlError::ShuttingDown));
        }
    }

    /// The swap: servers in the new config's order, every index-keyed structure moved with
    /// them, removed servers dropped (they are down), then the restarted and added ones started.
    fn finish_reload(&mut self) {
        let Some(Reloading {
            config,
            plan,
            reply,
            ..
        }) = self.reloading.take()
        else {
            return;
        };
        // Events already owed go out under the indices they were recorded with.
        self.publish_changed();
        let mut old: Vec<Option<Server>> = std::mem::take(&mut self.servers)
            .into_iter()
            .map(Some)
            .collect();
        let old_ids: Vec<String> = old.iter().flatten().map(|s| s.config.id.clone()).collect();
        let mut remap: Vec<Option<usize>> = vec![None; old.len()];
        let mut watch_again = Vec::new();
        let mut servers = Vec::with_capacity(config.servers.len());
        for (index, cfg) in config.servers.iter().enumerate() {
            let server = match self.index_of.get(&cfg.id) {
                Some(&was) => {
                    remap[was] = Some(index);
                    let mut server = old[was].take().expect("server ids are unique");
                    // The monitor checks ports and health: a change to either is news to it.
                    if server.config.ports != cfg.ports || server.config.health != cfg.health {
                        watch_again.push(index);
                    }
                    server.config = Arc::new(cfg.clone());
                    if watch_again.last() == Some(&index) {
                        server.ports = server.closed_ports();
                        server.ports_ok = cfg.ports.is_empty();
                        server.orphaned = false;
                        server.orphaned_pid = None;
                        server.adoptable = None;
                        server.not_adoptable = None;
                    } else if server.orphaned {
                        // The command or cwd the orphan was judged by may have changed.
                        server.judge_orphan();
                    }
                    server
                }
                None => {
                    let slot = self.slots.len();
                    self.slots.push(None);
                    watch_again.push(index);
                    Server::new(cfg, slot)
                }
            };
            servers.push(server);
        }
        for server in old.into_iter().flatten() {
            self.slots[server.slot] = None;
            let _ = self.outputs.monitor.send(MonitorCmd::Set {
                index: server.slot,
                watch: Box::default(),
            });
            if let Some(pid) = server
                .pid
                .or(server.stopping.as_ref().map(|_| server.last_leader))
            {
                // Only after processes survived SIGKILL (uninterruptible sleep): say so loudly.
                log::error!(target: LOG, "Removed '{}' while PGID {} still had processes that \
                    survived SIGKILL; they are no longer managed", server.config.id, pid);
            }
        }
        let (servers, index_of) = link(servers);
        for (index, server) in servers.iter().enumerate() {
            self.slots[server.slot] = Some(index);
        }
        let count = servers.len();
        self.servers = servers;
        self.index_of = index_of;
        self.by_pid = std::mem::take(&mut self.by_pid)
            .into_iter()
            .filter_map(|(pid, index)| remap[index].map(|index| (pid, index)))
            .collect();
        self.timers = std::mem::take(&mut self.timers)
            .into_iter()
            .filter_map(|Reverse(t)| remap[t.index].map(|index| Reverse(Timer { index, ..t })))
            .collect();
        for mut waiter in std::mem::take(&mut self.waiters) {
            let gone = waiter
                .targets
                .iter()
                .find(|&&t| remap[t].is_none())
                .copied();
            waiter.targets = waiter.targets.iter().filter_map(|&t| remap[t]).collect();
            match gone {
                Some(was) if waiter.single => {
                    let _ = waiter
                        .reply
                        .send(Err(ControlError::NotFound(old_ids[was].clone())));
                }
                _ => self.waiters.push(waiter),
            }
        }
        self.changed = vec![false; count];
        self.changed_order.clear();
        self.list_json = ListJson::new(count);
        self.has_pending = true;
        self.on_exit = config.on_exit;
        self.max_sse_clients = config.max_sse_clients;
        self.settings.on_exit = config.on_exit;
        self.settings.max_sse_clients = config.max_sse_clients;
        self.settings.log_max_bytes = config.log_max_bytes;
        self.settings.log_keep = config.log_keep;
        self.outputs
            .log_limits
            .set(config.log_max_bytes, config.log_keep);
        self.outputs
            .known_ids
            .replace(config.servers.iter().map(|s| s.id.clone()));
        for index in watch_again {
            self.send_watch(index);
        }
        self.state_dirty = true;
        self.hub.publish(&Event::Servers(self.views()));
        self.timeline(Timeline::ConfigReloaded(plan.clone()));
        let named = |ids: &[String]| match ids {
            [] => "none".to_string(),
            ids => ids
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        log::info!(target: LOG, "Config reloaded from {}: added {}; removed {}; restarted {}; \
            updated {}; {} unchanged", plan.config, named(&plan.added), named(&plan.removed),
            named(&plan.restarted), named(&plan.updated), plan.unchanged.len());
        if !plan.needs_tend_restart.is_empty() {
            log::warn!(target: LOG, "Changed in the config but kept until tend restarts: {}",
                plan.needs_tend_restart.join(", "));
        }
        for id in &plan.restarted {
            self.request_start(self.index_of[id], true);
        }
        for id in &plan.added {
            let index = self.index_of[id];
            if self.servers[index].config.autostart {
                self.request_start(index, true);
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(Ok(plan));
        }
    }

    // ---- outputs --------------------------------------------------------------------------

    fn set_status(&mut self, index: usize, to: Status) {
        let server = &mut self.servers[index];
        let from = server.status;
        if from == to {
            return;
        }
        debug_assert!(
            policy::is_allowed(from, to),
            "{}: {from} -> {to}",
            server.config.id
        );
        server.status = to;
        let event = Timeline::StatusChange {
            id: server.config.id.clone(),
            pid: server.pid,
            from,
            to,
        };
        self.mark_changed(index);
        self.timeline(event);
    }

    fn timeline(&mut self, event: Timeline) {
        if let Timeline::StatusChange { id, from, to, .. } = &event {
            log::debug!(target: LOG, "'{id}': {from} -> {to}");
        }
        // A server event reflecting the change follows at the end of the turn.
        self.hub.publish(&Event::Timeline(event));
    }

    fn send_watch(&mut self, index: usize) {
        let server = &self.servers[index];
        let watch = Watch {
            pid: server.pid,
            ports: server.config.ports.clone(),
            adopted: server.adopted,
            quick: server.status == Status::Starting && server.pid.is_some(),
            http: match &server.config.health {
                Some(HealthCheck {
                    probe: Probe::Http(http),
                    ..
                }) => Some(HttpWatch {
                    probe: HttpProbe {
                        addr: http.addr,
                        path: http.path.clone(),
                        timeout: http.timeout,
                    },
                    interval: http.interval.unwrap_or(self.health_interval),
                }),
                _ => None,
            },
            log: match &server.config.health {
                Some(HealthCheck {
                    probe: Probe::Log(regex),
                    ..
                }) if !server.health.ready && server.pid.is_some() => Some(LogWatch {
                    path: process::log_path(&self.log_dir, &server.config.id),
                    regex: regex.clone(),
                    from: server.log_from,
                }),
                _ => None,
            },
        };
        let slot = server.slot;
        let _ = self.outputs.monitor.send(MonitorCmd::Set {
            index: slot,
            watch: Box::new(watch),
        });
    }

    fn settle_waiters(&mut self) {
        let mut index = 0;
        while index < self.waiters.len() {
            let waiter = &self.waiters[index];
            let settled = waiter
                .targets
                .iter()
                .all(|&t| self.is_settled(t, waiter.goal));
            if !settled {
                index += 1;
                continue;
            }
            let waiter = self.waiters.swap_remove(index);
            let result = match (waiter.single, waiter.goal) {
                (true, Goal::Started) => {
                    let target = waiter.targets[0];
                    match &self.servers[target].spawn_error {
                        Some(reason) => Err(ControlError::SpawnFailed {
                            id: self.servers[target].config.id.clone(),
                            reason: reason.clone(),
                        }),
                        None => Ok(vec![self.view(target)]),
                    }
                }
                (true, Goal::Stopped) => Ok(vec![self.view(waiter.targets[0])]),
                (false, _) => Ok(self.views()),
            };
            let _ = waiter.reply.send(result);
        }
    }

    fn is_settled(&self, index: usize, goal: Goal) -> bool {
        let server = &self.servers[index];
        match goal {
            Goal::Started => !server.pending_start && server.stopping.is_none(),
            Goal::Stopped => {
                !server.pending_stop && server.stopping.is_none() && server.pid.is_none()
            }
        }
    }

    fn view(&self, index: usize) -> ServerView {
        self.servers[index].view(SystemTime::now())
    }

    fn views(&self) -> Vec<ServerView> {
        let now = SystemTime::now();
        self.servers.iter().map(|s| s.view(now)).collect()
    }

    fn list_json(&mut self) -> Vec<u8> {
        let now = SystemTime::now();
        let servers = &self.servers;
        self.list_json.render(
            servers.len(),
            |index| servers[index].view(now),
            |index| servers[index].uptime_ms(now),
        )
    }

    fn mark_changed(&mut self, index: usize) {
        self.list_json.forget(index);
        if !std::mem::replace(&mut self.changed[index], true) {
            self.changed_order.push(index);
        }
    }

    /// Ends a turn: one `server` event per changed server, and a snapshot for the store when
    /// one is due.
    fn flush(&mut self) {
        self.publish_changed();
        if self.state_dirty && self.state_due.is_none() {
            // The first change after a quiet spell is written at once; a burst waits its turn.
            let due = self
                .state_saved_at
                .map_or_else(Instant::now, |at| at + STATE_COALESCE);
            self.state_due = Some(due);
        }
        if self.state_due.is_some_and(|due| due <= Instant::now()) {
            self.save_state();
        }
    }

    fn publish_changed(&mut self) {
        let now = SystemTime::now();
        for index in std::mem::take(&mut self.changed_order) {
            self.changed[index] = false;
            let view = self.servers[index].view(now);
            self.hub.publish(&Event::Server(Box::new(view)));
        }
    }

    fn save_state(&mut self) {
        self.state_due = None;
        if std::mem::take(&mut self.state_dirty) {
            self.state_saved_at = Some(Instant::now());
            self.outputs.store.save(self.state_snapshot());
        }
    }

    fn state_snapshot(&self) -> StateFile {
        let mut state = StateFile::empty(self.boot_id.clone());
        for server in &self.servers {
            let pid = match (server.pid, &server.stopping) {
                (Some(pid), _) => pid,
                // A group being stopped is still ours until it is gone.
                (None, Some(_)) => server.last_leader,
                (None, None) => continue,
            };
            state.insert(
                server.config.id.clone(),
                StoredProcess {
                    pid,
                    pgid: pid,
                    command: server.config.command.display(),
                    start_time: server.started_at.map(epoch_ms).unwrap_or_default(),
                    proc_start_ticks: server.start_ticks,
                    ports: server.config.ports.clone(),
                },
            );
        }
        state
    }
}

/// Numbers the servers by position and links each to its dependencies and dependents.
fn link(mut servers: Vec<Server>) -> (Vec<Server>, HashMap<String, usize>) {
    let index_of: HashMap<String, usize> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.config.id.clone(), i))
        .collect();
    for server in &mut servers {
        server.dependents.clear();
        server.dependencies = server
            .config
            .depends_on
            .iter()
            .map(|d| index_of[d])
            .collect();
    }
    for index in 0..servers.len() {
        for dep in servers[index].dependencies.clone() {
            servers[dep].dependents.push(index);
        }
    }
    (servers, index_of)
}

fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(signal) => format!("killed by {}", signal_name(signal)),
        ExitStatus::Unknown => "died (adopted, exit status unknown)".to_string(),
    }
}
