//! A reload applied (README "Changing the config"). [`super::reload`] plans it purely; here the
//! servers it removes or restarts are stopped first, then the server list is swapped for the new
//! config's in one turn (every index-keyed record moved with it), and commands that came
//! meanwhile run after it.

use std::cmp::Reverse;
use std::sync::Arc;

use crate::config::Config;
use crate::model::{Event, ReloadPlan, Status, Timeline};
use crate::monitor::{MonitorCmd, Slot};
use crate::supervisor::listjson::ListJson;

use super::protocol::{ControlError, Reply};
use super::reload::{self, Current};
use super::server::{Server, ServerIndex, Timer, link};
use super::{LOG, ServerOrchestrator};

/// A reload between its plan and its swap: the servers it removes or restarts are stopping.
pub(super) struct Reloading {
    pub(super) config: Config,
    pub(super) plan: ReloadPlan,
    /// Indices (before the swap) of the servers that must be down before the swap.
    pub(super) stopping: Vec<ServerIndex>,
    pub(super) reply: Option<Reply<ReloadPlan>>,
}

impl ServerOrchestrator {
    /// Reads the config again, plans what changes and stops what the plan removes or restarts;
    /// the swap to the new config waits in [`Self::continue_reload`] until those are down. An
    /// invalid config changes nothing.
    pub(super) fn start_reload(&mut self, reply: Option<Reply<ReloadPlan>>) {
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
    pub(super) fn continue_reload(&mut self) {
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
    pub(super) fn abandon_reload(&mut self) {
        if let Some(Reloading {
            reply: Some(reply), ..
        }) = self.reloading.take()
        {
            let _ = reply.send(Err(ControlError::ShuttingDown));
        }
    }

    /// The swap: servers in the new config's order, every index-keyed structure moved with
    /// them, removed servers dropped (they are down), then the restarted and added ones started.
    pub(super) fn finish_reload(&mut self) {
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
        // Both by the old server index.
        let mut old: Vec<Option<Server>> = std::mem::take(&mut self.servers)
            .into_vec()
            .into_iter()
            .map(Some)
            .collect();
        let old_ids: Vec<String> = old.iter().flatten().map(|s| s.config.id.clone()).collect();
        let mut remap: Vec<Option<ServerIndex>> = vec![None; old.len()];
        let mut watch_again = Vec::new();
        // Servers whose `watch` or schedule is new or changed (see [`super::planned`]).
        let mut rewatch = Vec::new();
        let mut replan = Vec::new();
        let mut servers = Vec::with_capacity(config.servers.len());
        for (index, cfg) in config.servers.iter().enumerate() {
            let index = ServerIndex(index);
            let server = match self.index_of.get(&cfg.id) {
                Some(&was) => {
                    remap[was.0] = Some(index);
                    let mut server = old[was.0].take().expect("server ids are unique");
                    // The monitor checks ports and health: a change to either is news to it.
                    if server.config.ports != cfg.ports || server.config.health != cfg.health {
                        watch_again.push(index);
                    }
                    if server.config.watch != cfg.watch || server.config.cwd != cfg.cwd {
                        rewatch.push(index);
                    }
                    if server.config.restart_every != cfg.restart_every
                        || server.config.restart_at != cfg.restart_at
                    {
                        replan.push(index);
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
                    let slot = Slot(self.slots.len());
                    self.slots.push(None);
                    watch_again.push(index);
                    rewatch.push(index);
                    Server::new(cfg, slot)
                }
            };
            servers.push(server);
        }
        for server in old.into_iter().flatten() {
            self.slots[server.slot.0] = None;
            if server.config.watch.is_some() {
                self.unwatch_slot(server.slot);
            }
            let _ = self.outputs.monitor.send(MonitorCmd::Set {
                slot: server.slot,
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
        for (index, server) in servers.iter_indexed() {
            self.slots[server.slot.0] = Some(index);
        }
        let count = servers.len();
        self.servers = servers;
        self.index_of = index_of;
        self.by_pid = std::mem::take(&mut self.by_pid)
            .into_iter()
            .filter_map(|(pid, index)| remap[index.0].map(|index| (pid, index)))
            .collect();
        self.timers = std::mem::take(&mut self.timers)
            .into_iter()
            .filter_map(|Reverse(t)| remap[t.index.0].map(|index| Reverse(Timer { index, ..t })))
            .collect();
        for mut waiter in std::mem::take(&mut self.waiters) {
            let gone = waiter
                .targets
                .iter()
                .find(|&&t| remap[t.0].is_none())
                .copied();
            waiter.targets = waiter.targets.iter().filter_map(|&t| remap[t.0]).collect();
            match gone {
                Some(was) if waiter.single => {
                    let _ = waiter
                        .reply
                        .send(Err(ControlError::NotFound(old_ids[was.0].clone())));
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
        self.outputs.known_ids.replace(&config);
        for index in watch_again {
            self.send_watch(index);
        }
        for index in rewatch {
            self.send_watch_spec(index);
        }
        for index in replan {
            self.arm_planned(index);
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
}
