//! Processes tend did not spawn in this run: its own from before a restart (the state file,
//! verified by PID and start time before anything is trusted) and orphans provably a server's
//! own lost process (`tend adopt`, `adopt_orphans`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::health::{HealthCheck, Probe};
use crate::model::{ServerView, Status, Timeline};
use crate::os::{procfs, sockdiag};
use crate::store::StateFile;

use super::adopt::{self, Adoptable};
use super::protocol::ControlError;
use super::server::{NewProcess, ServerIndex, TimerKind};
use super::{LOG, ServerOrchestrator};

impl ServerOrchestrator {
    pub(super) fn adopt(&mut self, state: StateFile) {
        let same_boot = state.boot_id == self.boot_id;
        for (id, stored) in state.processes {
            let Some(&index) = self.index_of.get(&id) else {
                if same_boot
                    && self
                        .host
                        .is_same_process_alive(stored.pid, stored.proc_start_ticks)
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
            match self.host.read_stat(stored.pid) {
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
    pub(super) fn take_over(
        &mut self,
        index: ServerIndex,
        pid: u32,
        start_ticks: u64,
        started_at: SystemTime,
    ) {
        let server = &mut self.servers[index];
        server.begin_process(NewProcess {
            pid,
            start_ticks,
            started_at,
            spawned_at: self.host.now(),
            adopted: true,
            env_file_text: None,
        });
        // The line a log check waits for was printed before tend took the process over, if
        // ever: an adopted process has been running, so it counts as ready.
        let log_check = matches!(
            server.config.health,
            Some(HealthCheck {
                probe: Probe::Log(_),
                ..
            })
        );
        server.health.ready = log_check;
        self.mark_changed(index);
        self.set_status(index, Status::Starting);
        let server = &self.servers[index];
        if server.config.ports.is_empty() && (server.config.health.is_none() || server.health.ready)
        {
            self.set_status(index, Status::Running);
        }
        self.by_pid.insert(pid, index);
        if !self.host.watch_exit(pid) {
            log::debug!(target: LOG, "No pidfd for PID {}; the monitor polls it", pid);
        }
        self.arm(
            index,
            TimerKind::StartGrace,
            self.servers[index].config.start_timeout,
        );
        self.send_watch(index);
        self.arm_planned(index);
        self.state_dirty = true;
    }

    /// `tend adopt ID`: takes over the server's orphan once every check of `adopt.rs` passes
    /// again now, on the same process that was judged when the orphan showed.
    pub(super) fn adopt_orphan(&mut self, id: &str) -> Result<ServerView, ControlError> {
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
    pub(super) fn check_adoptable_pid(&self, pid: u32) -> Result<(), ControlError> {
        if !self.host.is_signallable(pid) {
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
    pub(super) fn adopt_checked(&mut self, index: ServerIndex, found: Adoptable, how: &str) {
        // The start time is read once more right here: between the check and now the process
        // may have exited and its PID been given to another.
        if self.host.start_ticks(found.pid) != Some(found.start_ticks) {
            log::warn!(target: LOG, "Not adopting PID {}: it exited just now", found.pid);
            return;
        }
        let server = &mut self.servers[index];
        let id = server.config.id.clone();
        let port = server.orphan_port();
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
    pub(super) fn adopt_orphans_at_boot(&mut self) {
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
        for index in self.servers.indices() {
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
}
