//! A server's process from spawn to exit: spawning (and failing to), the exit and what the restart
//! policy makes of it, stopping with escalation from the stop signal to SIGKILL of the group, and
//! the timers that drive the waits in between.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use crate::config::health::{HealthCheck, Probe};
use crate::logs::paths;
use crate::model::{HealthView, Status, Timeline, signal_name};
use crate::os::process::SignalError;
use crate::os::reaper::{Exit, ExitStatus};

use super::policy::{self, AfterExit, ExitKind};
use super::server::{AfterStop, NewProcess, ServerIndex, Stopping, Timer, TimerKind, epoch_ms};
use super::{LOG, ServerOrchestrator};

/// How often a stopping server's group is looked at after its leader exited while members
/// linger (non-children are not reaped by tend, so no exit tells us).
const GROUP_POLL: Duration = Duration::from_millis(10);
/// How long processes may survive SIGKILL before tend gives up on them (uninterruptible sleep).
const KILL_GRACE: Duration = Duration::from_secs(5);

pub(super) fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(signal) => format!("killed by {}", signal_name(signal)),
        ExitStatus::Unknown => "died (adopted, exit status unknown)".to_string(),
    }
}

impl ServerOrchestrator {
    pub(super) fn spawn(&mut self, index: ServerIndex) {
        if let Err(error) = self.check_orphan_free(index) {
            // A new instance would fail to bind behind the orphan: do not start it blind.
            self.spawn_failed(index, error.to_string());
            return;
        }
        let config = Arc::clone(&self.servers[index].config);
        // This process's output starts where the file ends now (tend waits for a stop to
        // finish before a new start, so no earlier process writes after this).
        let log_from = self
            .host
            .file_len(&paths::log_path(&self.log_dir, &config.id));
        match self.host.spawn(&config, &self.log_dir, &self.tend_bin) {
            Ok(spawned) => {
                let server = &mut self.servers[index];
                server.begin_process(NewProcess {
                    pid: spawned.pid,
                    start_ticks: spawned.start_ticks,
                    started_at: self.host.wall_clock(),
                    spawned_at: self.host.now(),
                    adopted: false,
                    env_file_text: spawned.env_file_text,
                });
                server.last_error = server.restart_reason.take();
                server.log_from = log_from;
                if let Some(HealthCheck {
                    probe: Probe::Log(regex),
                    ..
                }) = &config.health
                {
                    server.health.last = Some(HealthView {
                        ok: false,
                        detail: format!("no line matched /{regex}/ yet"),
                        at: epoch_ms(self.host.wall_clock()),
                        duration_ms: 0,
                        failures: 0,
                        ready: false,
                    });
                }
                self.spawn_successes += 1;
                self.by_pid.insert(spawned.pid, index);
                self.timeline(Timeline::ServerStarted {
                    id: config.id.clone(),
                    pid: spawned.pid,
                });
                self.set_status(index, Status::Starting);
                if config.ports.is_empty() && config.health.is_none() {
                    self.set_status(index, Status::Running);
                } else {
                    // Only what has something to become ready needs judging when its grace
                    // ends: a wake-up per server started, 30 s later, is no idle.
                    self.arm(index, TimerKind::StartGrace, config.start_timeout);
                }
                self.send_watch(index);
                self.after_start(index);
                self.state_dirty = true;
            }
            Err(reason) => self.spawn_failed(index, reason),
        }
    }

    pub(super) fn spawn_failed(&mut self, index: ServerIndex, reason: String) {
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

    pub(super) fn begin_stop(&mut self, index: ServerIndex, then: AfterStop) {
        let server = &mut self.servers[index];
        let Some(pid) = server.pid else { return };
        server.epoch += 1;
        server.pending_stop = false;
        server.stopping = Some(Stopping {
            signalled_at: self.host.now(),
            forced: false,
            leader_gone: false,
            then,
        });
        let signal = server.config.stop_signal;
        let id = server.config.id.clone();
        let timeout = server.config.stop_timeout;
        self.set_status(index, Status::Stopping);
        log::info!(target: LOG, "Stopping '{}' (PGID: {}) with {}", id, pid, signal_name(signal));
        match self.host.signal_group(pid, signal) {
            // A stopped (SIGSTOP) process only acts on the stop signal once continued.
            Ok(()) => {
                let _ = self.host.signal_group(pid, libc::SIGCONT);
            }
            Err(SignalError::Gone) => {} // Its exit is on the way from the reaper.
            Err(e) => log::error!(target: LOG, "Cannot signal '{}' (PGID: {}): {}", id, pid, e),
        }
        self.arm(index, TimerKind::Escalate, timeout);
    }

    pub(super) fn on_exit(&mut self, exit: Exit) {
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
        let ran_for = server
            .spawned_at
            .map(|at| self.host.now().saturating_duration_since(at))
            .unwrap_or_default();
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
        if self
            .host
            .group_exists(exit.pid, self.servers[index].adopted)
        {
            log::warn!(target: LOG, "Killing what is left of '{}' (PGID: {})", id, exit.pid);
            let _ = self.host.signal_group(exit.pid, libc::SIGKILL);
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

    pub(super) fn apply_restart_policy(
        &mut self,
        index: ServerIndex,
        kind: ExitKind,
        ran_for: Duration,
    ) {
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
    pub(super) fn check_group(&mut self, index: ServerIndex, pgid: u32) {
        if self.host.group_exists(pgid, self.servers[index].adopted) {
            self.arm(index, TimerKind::GroupCheck, GROUP_POLL);
        } else {
            self.finish_stop(index);
        }
    }

    pub(super) fn check_stopping_groups(&mut self) {
        for index in self.servers.indices() {
            let waiting = self.servers[index]
                .stopping
                .as_ref()
                .is_some_and(|s| s.leader_gone);
            let server = &self.servers[index];
            if waiting && !self.host.group_exists(server.last_leader, server.adopted) {
                self.finish_stop(index);
            }
        }
    }

    pub(super) fn finish_stop(&mut self, index: ServerIndex) {
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
        log::info!(target: LOG, "Server '{}' stopped (PID: {}) in {} ms", id, pid, self.host.now().saturating_duration_since(stopping.signalled_at).as_millis());
        self.set_status(index, Status::Stopped);
        self.timeline(Timeline::ServerStopped {
            id,
            pid: Some(pid),
            forced: stopping.forced,
        });
        self.send_watch(index);
        self.state_dirty = true;
        if stopping.then != AfterStop::Start {
            // A person's stop outranks a change queued during the restart it cancelled.
            self.servers[index].queued_change = None;
        }
        if stopping.then == AfterStop::Start && !self.shutting_down {
            self.request_start(index, false);
        }
    }

    // ---- reports --------------------------------------------------------------------------

    pub(super) fn arm(&mut self, index: ServerIndex, kind: TimerKind, delay: Duration) {
        let epoch = self.servers[index].epoch;
        self.timers.push(Reverse(Timer {
            at: self.host.now() + delay,
            index,
            epoch,
            kind,
        }));
    }

    pub(super) fn on_timers(&mut self) {
        let now = self.host.now();
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

    pub(super) fn on_timer(&mut self, timer: Timer) {
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
            TimerKind::Planned => self.on_planned(timer),
            TimerKind::QueuedChange => self.on_queued_change(index),
            TimerKind::GroupCheck => {
                let pgid = self.servers[index].last_leader;
                let Some(stopping) = &self.servers[index].stopping else {
                    return;
                };
                if stopping.forced
                    && self
                        .host
                        .now()
                        .saturating_duration_since(stopping.signalled_at)
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

    pub(super) fn escalate(&mut self, index: ServerIndex) {
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
        let _ = self.host.signal_group(pgid, libc::SIGKILL);
        // Keep the epoch: the exit or the group check finishes the stop.
        if leader_gone {
            self.check_group(index, pgid);
        } else {
            let epoch = self.servers[index].epoch;
            self.timers.push(Reverse(Timer {
                at: self.host.now() + KILL_GRACE,
                index,
                epoch,
                kind: TimerKind::GroupCheck,
            }));
        }
    }

    // ---- shutdown -------------------------------------------------------------------------
}
