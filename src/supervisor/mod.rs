//! ServerOrchestrator (docs/DESIGN.md §7): the "supervisor" thread, single owner of every server's
//! state. It loops on `select!` over commands (from HTTP handlers), exits (reaper, pidwatch),
//! monitor reports, signals (shutdown, reload) and its own timers; it spawns through the
//! ProcessManager, broadcasts every change as an event, and hands snapshots to the store.
//!
//! It never sleeps and never blocks on a consumer: replies go to bounded(1) channels that may
//! have been abandoned, SSE subscribers are dropped when full, the store takes the latest
//! snapshot without waiting. Timers carry the server's `epoch`, which grows on every spawn and
//! stop, so a stale timer is ignored when it fires instead of being cancelled.
//!
//! One owner, several files: each `impl ServerOrchestrator` block below is one concern.
//! - this file: the loop, command dispatch, shutdown, and what every change goes through
//!   (status, events, the list JSON, the state snapshot);
//! - [`protocol`]: every message the supervisor receives and what it answers;
//! - [`server`]: the record kept per server, its timers, and its views for the API;
//! - [`actions`]: start/stop/restart requests, dependency order, and replies owed until settled;
//! - [`lifecycle`]: spawning, exits and the restart policy, stopping and its escalation;
//! - [`observe`]: the monitor's reports (ports, orphans, figures, memory limits) and health;
//! - [`takeover`]: processes tend did not just spawn (its own from before a restart, orphans);
//! - [`apply_reload`]: a reload planned by [`reload`] applied: stop what goes, then swap;
//! - [`planned`]: restarts tend plans itself, on file changes (`watch`) and on a schedule;
//! - [`readers`]: reads of the figures, answered fresh (a sample on demand), and who looks;
//! - pure parts with their own tests: [`policy`], [`adopt`], [`reload`], [`events`], [`listjson`].

mod actions;
pub mod adopt;
mod apply_reload;
pub mod events;
pub mod host;
mod lifecycle;
pub mod listjson;
mod observe;
mod planned;
pub mod policy;
mod protocol;
mod readers;
mod release;
pub mod reload;
mod server;
mod takeover;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{after, never, select};

use self::reload::ConfigSource;
use crate::config::{Config, OnExit};
use crate::http::metrics;
use crate::model::{Event, ServerView, Status, Timeline, signal_name};
use crate::monitor::{MonitorCmd, Slot};
use crate::os::reaper::Signal;
use crate::store::{StateFile, StoredProcess};
use crate::supervisor::events::EventHub;
use crate::supervisor::listjson::ListJson;

use self::actions::Waiter;
use self::apply_reload::Reloading;
use self::host::Host;
pub use self::protocol::{Control, ControlError, Inbox, Outputs};
use self::readers::{Reader, Readers};
use self::server::{AfterStop, Server, ServerIndex, Servers, Timer, epoch_ms, link};

const LOG: &str = "ServerOrchestrator";

/// At most one state snapshot per this (docs/DESIGN.md §6: the file is written a few times a second at
/// most however fast things change; the store coalesces further).
const STATE_COALESCE: Duration = Duration::from_millis(50);

pub struct ServerOrchestrator {
    servers: Servers,
    index_of: HashMap<String, ServerIndex>,
    by_pid: HashMap<u32, ServerIndex>,
    timers: BinaryHeap<Reverse<Timer>>,
    waiters: Vec<Waiter>,
    hub: EventHub,
    outputs: Outputs,
    /// Everything done to the machine: the clock, spawns, signals, /proc (tests script it).
    host: Box<dyn Host>,
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
    changed_order: Vec<ServerIndex>,
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
    /// For `/metrics`: processes spawned and spawns that failed.
    spawn_successes: u64,
    spawn_failures: u64,
    /// Reads waiting for fresh figures.
    readers: Readers,
    /// Where a reload reads the config, and the top-level settings in effect (its `servers`
    /// are not kept here: `servers` above is the truth).
    source: ConfigSource,
    settings: Config,
    /// Server index by monitor slot (the position here is the [`Slot`]'s number; `None`: the
    /// server was removed by a reload).
    slots: Vec<Option<ServerIndex>>,
    /// The reload being applied: it waits for the servers it stops.
    reloading: Option<Reloading>,
    /// Commands that arrived while a reload was applied: reloads and actions wait for it, so
    /// they act on the config it leaves, never on a half-applied one.
    deferred: VecDeque<Control>,
    /// When freed memory goes back to the kernel (after changes; see `release`).
    release: release::Release,
}

impl ServerOrchestrator {
    pub fn new(
        config: &Config,
        outputs: Outputs,
        host: Box<dyn Host>,
        tend_bin: PathBuf,
        boot_id: String,
        source: ConfigSource,
    ) -> Self {
        let servers: Vec<Server> = config
            .servers
            .iter()
            .enumerate()
            .map(|(slot, cfg)| Server::new(cfg, Slot(slot)))
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
                host.wall_clock()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as u64,
            ),
            outputs,
            host,
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
            readers: Readers::default(),
            source,
            settings: Config {
                servers: Vec::new(),
                ..config.clone()
            },
            slots: (0..count).map(|i| Some(ServerIndex(i))).collect(),
            reloading: None,
            deferred: VecDeque::new(),
            release: release::Release::default(),
        }
    }

    /// Takes back processes from the state file whose identity still matches, then starts the
    /// autostart servers in dependency order.
    pub fn boot(&mut self, stored: Option<StateFile>) {
        self.timeline(Timeline::TendStarted {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        for index in self.servers.indices() {
            self.send_watch(index);
            self.send_watch_spec(index);
        }
        if let Some(state) = stored {
            self.adopt(state);
        }
        if self.settings.adopt_orphans {
            self.adopt_orphans_at_boot();
        }
        for index in self.servers.indices() {
            if self.servers[index].config.autostart && self.servers[index].pid.is_none() {
                self.request_start(index, true);
            }
        }
        self.advance();
        self.flush();
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
                .chain(self.readers.due())
                .chain(self.release.due())
                .min();
            let timer = match next {
                Some(at) => after(at.saturating_duration_since(self.host.now())),
                None => never(),
            };
            let mut timer_only = false;
            select! {
                recv(inbox.control) -> message => match message {
                    Ok(control) => self.on_control(*control),
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
                recv(inbox.watch) -> report => {
                    if let Ok(report) = report {
                        self.on_watch_report(report);
                    }
                },
                recv(inbox.timeline) -> event => {
                    if let Ok(event) = event {
                        self.timeline(*event);
                    }
                },
                recv(timer) -> _ => {
                    self.on_timers();
                    // The release's own wake-up is no work (a server timer's changes are).
                    timer_only = true;
                    self.release.run_if_due(self.host.now());
                },
            }
            if !timer_only {
                self.release.after_work(self.host.now());
            }
            self.end_turn();
            if self.shutting_down && self.all_settled_for_exit() {
                return self.finish_shutdown();
            }
        }
    }

    /// What follows every message: starts and stops that became possible, a reload that can
    /// go on, and the turn's changes published (events, list JSON, state).
    fn end_turn(&mut self) {
        self.advance();
        self.continue_reload();
        self.answer_late_readers();
        self.flush();
        self.note_subscribers();
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
            Control::List { reply } => self.read(Reader::List(reply)),
            Control::Get { id, reply } => self.read(Reader::Get { id, reply }),
            Control::Act {
                action,
                target,
                reply,
            } => self.act(action, target, reply),
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
                    self.on_subscribe();
                    let now = self.host.wall_clock();
                    let servers = &self.servers;
                    Ok(self.hub.subscribe(last_event_id, || {
                        servers.iter().map(|s| s.view(now)).collect()
                    }))
                };
                let _ = reply.send(result);
            }
            Control::Metrics { reply } => self.read(Reader::Metrics(reply)),
            Control::Adopt { id, reply } => {
                let _ = reply.send(self.adopt_orphan(&id));
            }
            Control::Reload { reply } => self.start_reload(reply),
        }
    }

    /// One pass over the servers, only when `/metrics` asks: nothing is kept per event beyond
    /// the spawn counters and the health-round histogram.
    fn metrics(&self) -> metrics::Snapshot {
        let now = self.host.wall_clock();
        let servers = self.servers.iter().map(|s| s.sample(now)).collect();
        let mut snapshot = metrics::Snapshot::new(servers, self.outputs.demand.rounds());
        snapshot.spawn_successes = self.spawn_successes;
        snapshot.spawn_failures = self.spawn_failures;
        snapshot.store = self.outputs.store.stats();
        snapshot.sse_clients = self.hub.subscriber_count();
        snapshot
    }

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
            for index in self.servers.indices() {
                if self.servers[index].pid.is_some() || self.servers[index].stopping.is_some() {
                    let pgid = self.servers[index].last_leader;
                    let _ = self.host.signal_group(pgid, libc::SIGKILL);
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
                for index in self.servers.indices() {
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

    fn set_status(&mut self, index: ServerIndex, to: Status) {
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

    fn view(&self, index: ServerIndex) -> ServerView {
        self.servers[index].view(self.host.wall_clock())
    }

    fn views(&self) -> Vec<ServerView> {
        let now = self.host.wall_clock();
        self.servers.iter().map(|s| s.view(now)).collect()
    }

    fn list_json(&mut self) -> Vec<u8> {
        let now = self.host.wall_clock();
        let servers = &self.servers;
        self.list_json.render(
            servers.len(),
            |position| servers[ServerIndex(position)].view(now),
            |position| servers[ServerIndex(position)].uptime_ms(now),
        )
    }

    fn mark_changed(&mut self, index: ServerIndex) {
        self.list_json.forget(index.0);
        if !std::mem::replace(&mut self.changed[index.0], true) {
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
                .map_or_else(|| self.host.now(), |at| at + STATE_COALESCE);
            self.state_due = Some(due);
        }
        if self.state_due.is_some_and(|due| due <= self.host.now()) {
            self.save_state();
        }
    }

    fn publish_changed(&mut self) {
        if !self.changed_order.is_empty() {
            self.release.after_work(self.host.now());
        }
        let now = self.host.wall_clock();
        for index in std::mem::take(&mut self.changed_order) {
            self.changed[index.0] = false;
            let view = self.servers[index].view(now);
            self.hub.publish(&Event::Server(Box::new(view)));
        }
    }

    fn save_state(&mut self) {
        self.state_due = None;
        if std::mem::take(&mut self.state_dirty) {
            self.state_saved_at = Some(self.host.now());
            self.outputs.store.save(self.state_snapshot());
        }
    }

    fn state_snapshot(&self) -> StateFile {
        let mut state = StateFile::empty(self.boot_id.clone());
        for server in self.servers.iter() {
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
