//! Requests to start, stop and restart (from the API, the CLI and reloads), in dependency order:
//! a server starts once what it depends on is up, and stops once what depends on it is down.
//! A request is answered when its servers settle (a [`Waiter`]), not when it is accepted.

use crate::groups::{self, ActTarget};
use crate::model::{Action, ServerView, Status};

use super::protocol::{ControlError, OrphanTarget, Reply};
use super::server::{AfterStop, ServerIndex};
use super::{LOG, ServerOrchestrator};

/// A reply owed once its servers settle.
pub(super) struct Waiter {
    pub(super) targets: Vec<ServerIndex>,
    pub(super) goal: Goal,
    pub(super) single: bool,
    pub(super) reply: Reply<Vec<ServerView>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goal {
    Started,
    Stopped,
}

impl ServerOrchestrator {
    /// The indexes an action is for; a subset goes the way of `All` (dependency order comes
    /// from `request_start`/`request_stop` and `advance`, whatever the set).
    fn targets(&self, target: &ActTarget) -> Result<Vec<ServerIndex>, ControlError> {
        match target {
            ActTarget::All => Ok(self.servers.indices().collect()),
            ActTarget::One(id) => self.find(id).map(|index| vec![index]),
            ActTarget::Selected(selector) => {
                let roster: Vec<(&str, Option<&str>)> = self
                    .servers
                    .iter()
                    .map(|s| (s.config.id.as_str(), s.config.group.as_deref()))
                    .collect();
                groups::select(&roster, selector)
                    .map(|positions| positions.into_iter().map(ServerIndex).collect())
                    .map_err(|unknown| match unknown {
                        groups::Unknown::Id(id) => ControlError::NotFound(id),
                        unknown => ControlError::UnknownGroup(unknown),
                    })
            }
        }
    }

    pub(super) fn find(&self, id: &str) -> Result<ServerIndex, ControlError> {
        self.index_of
            .get(id)
            .copied()
            .ok_or_else(|| ControlError::NotFound(id.to_string()))
    }

    pub(super) fn act(&mut self, action: Action, target: ActTarget, reply: Reply<Vec<ServerView>>) {
        if self.shutting_down {
            let _ = reply.send(Err(ControlError::ShuttingDown));
            return;
        }
        let single = matches!(target, ActTarget::One(_));
        let targets = match self.targets(&target) {
            Ok(targets) => targets,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
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
    pub(super) fn check_startable(
        &self,
        index: ServerIndex,
        single: bool,
    ) -> Result<bool, ControlError> {
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

    pub(super) fn check_orphan_free(&self, index: ServerIndex) -> Result<bool, ControlError> {
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

    pub(super) fn check_stoppable(
        &self,
        index: ServerIndex,
        single: bool,
    ) -> Result<bool, ControlError> {
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

    pub(super) fn find_orphan(
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
            if !self.host.is_signallable(pid as u32) {
                return Err(ControlError::Refused(format!(
                    "PID {pid} is never killed by tend"
                )));
            }
        }
        let index = match &id {
            Some(id) => Some(self.find(id)?),
            None => None,
        };
        let candidates: Vec<ServerIndex> = match index {
            Some(index) => vec![index],
            None => self.servers.indices().collect(),
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
        if !self.host.is_signallable(orphan_pid) {
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
        let start_ticks = self
            .host
            .start_ticks(orphan_pid)
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
    pub(super) fn request_start(&mut self, index: ServerIndex, by_person: bool) {
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
    pub(super) fn request_stop(&mut self, index: ServerIndex, after_dependents: bool) {
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

    pub(super) fn stop_now(&mut self, index: ServerIndex) {
        self.servers[index].pending_stop = false;
        if self.servers[index].pid.is_some() {
            self.begin_stop(index, AfterStop::Stay);
        } else {
            self.servers[index].epoch += 1;
            self.servers[index].last_error = None;
            self.set_status(index, Status::Stopped);
        }
    }

    pub(super) fn request_restart(&mut self, index: ServerIndex) {
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
    pub(super) fn advance(&mut self) {
        if !self.has_pending {
            self.settle_waiters();
            return;
        }
        loop {
            let mut moved = false;
            for index in self.servers.indices() {
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
    pub(super) fn dependencies_ready(&self, index: ServerIndex) -> Option<bool> {
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

    /// Every dependent that is being stopped too is down. A dependent nobody asked to stop
    /// (outside a group being stopped) is not waited for, as when a person stops one server;
    /// stop-all, shutdown and reload ask every running dependent to stop, so for them this is
    /// "every dependent is down".
    pub(super) fn dependents_down(&self, index: ServerIndex) -> bool {
        self.servers[index].dependents.iter().all(|&d| {
            let dependent = &self.servers[d];
            !dependent.pending_stop && dependent.stopping.is_none()
        })
    }

    pub(super) fn settle_waiters(&mut self) {
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
                // The servers acted on: all of them for `All`, the members for a selection.
                (false, _) => Ok(waiter.targets.iter().map(|&t| self.view(t)).collect()),
            };
            let _ = waiter.reply.send(result);
        }
    }

    pub(super) fn is_settled(&self, index: ServerIndex, goal: Goal) -> bool {
        let server = &self.servers[index];
        match goal {
            Goal::Started => !server.pending_start && server.stopping.is_none(),
            Goal::Stopped => {
                !server.pending_stop && server.stopping.is_none() && server.pid.is_none()
            }
        }
    }
}
