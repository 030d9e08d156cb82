//! What the monitor reports, judged: ports open or closed and who holds them (orphans), the
//! group's CPU and memory (and `max_memory` restarts), HTTP and log health checks, and the
//! health state they add up to (with `restart_unhealthy_after_ms`).

use crate::config::health::{self, HealthCheck, Probe};
use crate::logs::paths;
use crate::model::{Event, HealthView, StatsEntry, Status, Timeline};
use crate::monitor::httpprobe::{self, HttpProbe, Outcome};
use crate::monitor::{HttpWatch, LogWatch, MonitorCmd, Observation, Probed, Report, Slot, Watch};
use crate::os::reaper::{Exit, ExitStatus};

use super::policy::{self, Check};
use super::server::{AfterStop, ServerIndex, TimerKind, epoch_ms};
use super::{LOG, ServerOrchestrator};

/// Rounds in a row a server's memory must be over `max_memory` before it is restarted: one
/// sample over may be a moment's peak (a request that allocates and frees).
const MEMORY_ROUNDS: u8 = 2;

impl ServerOrchestrator {
    /// The server a monitor slot stands for now.
    pub(super) fn slot_index(&self, slot: Slot) -> Option<ServerIndex> {
        self.slots.get(slot.0).copied().flatten()
    }

    pub(super) fn on_report(&mut self, report: Report) {
        match report {
            Report::Observed {
                slot,
                pid,
                observation,
            } => {
                if let Some(index) = self.slot_index(slot) {
                    self.on_observed(index, pid, observation);
                }
            }
            Report::Stats { samples, complete } => {
                // Nobody watching: keep the numbers for the API, skip building the event.
                let watched = self.hub.subscriber_count() > 0;
                let mut entries = Vec::with_capacity(if watched { samples.len() } else { 0 });
                let mut over_memory = Vec::new();
                let mut sampled = vec![false; if complete { self.servers.len() } else { 0 }];
                for sample in samples {
                    let Some(index) = self.slot_index(sample.slot) else {
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
                    self.list_json.forget(index.0);
                    if let Some(seen) = sampled.get_mut(index.0) {
                        *seen = true;
                    }
                }
                // A complete sample that has nothing of a server (its group was gone a moment
                // before it was reaped): no figures, rather than the last ones as if current.
                for (index, seen) in self.servers.indices().zip(sampled) {
                    if !seen && self.servers[index].sample.take().is_some() {
                        self.list_json.forget(index.0);
                    }
                }
                for (index, rss_bytes, limit_bytes) in over_memory {
                    self.restart_for_memory(index, rss_bytes, limit_bytes);
                }
                if !entries.is_empty() {
                    self.hub.publish(&Event::Stats(entries));
                }
                if complete {
                    self.on_complete_sample();
                }
            }
            Report::Vanished { slot, pid } => {
                let index = self.slot_index(slot);
                if index.is_some_and(|index| self.servers[index].pid == Some(pid)) {
                    self.on_exit(Exit {
                        pid,
                        status: ExitStatus::Unknown,
                    });
                }
            }
            Report::Probed(answers) => {
                for probed in answers {
                    if let Some(index) = self.slot_index(probed.slot) {
                        self.on_probed(index, probed);
                    }
                }
            }
            Report::LogMatched { slot, pid, line } => {
                if let Some(index) = self.slot_index(slot) {
                    self.on_log_matched(index, pid, &line);
                }
            }
        }
    }

    /// Restarts a server whose group stayed over `max_memory`, through the normal stop (its
    /// stop signal, then SIGKILL after `stop_timeout_ms`), as PM2's `max_memory_restart` does.
    pub(super) fn restart_for_memory(
        &mut self,
        index: ServerIndex,
        rss_bytes: u64,
        limit_bytes: u64,
    ) {
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
    pub(super) fn on_probed(&mut self, index: ServerIndex, probed: Probed) {
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
            at: epoch_ms(self.host.wall_clock()),
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
                log::info!(target: LOG, "Health check of '{}' passes: {}", id, detail);
            } else {
                log::warn!(target: LOG, "Health check of '{}' failed: {} ({} in a row; unhealthy at {})", id, detail, failing, threshold);
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
            self.list_json.forget(index.0);
        }
        self.update_health(index);
    }

    /// The line a `health.log` check waits for: the server is ready.
    pub(super) fn on_log_matched(&mut self, index: ServerIndex, pid: u32, line: &str) {
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
        let took = server
            .spawned_at
            .map(|at| self.host.now().saturating_duration_since(at))
            .unwrap_or_default();
        server.health.ready = true;
        server.health.last = Some(HealthView {
            ok: true,
            detail: detail.clone(),
            at: epoch_ms(self.host.wall_clock()),
            duration_ms: took.as_millis() as u64,
            failures: 0,
            ready: true,
        });
        let id = server.config.id.clone();
        log::info!(target: LOG, "Server '{}' is ready: {} ({} ms after it started)", id, detail, took.as_millis());
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

    pub(super) fn on_observed(
        &mut self,
        index: ServerIndex,
        pid: Option<u32>,
        observation: Observation,
    ) {
        let server = &mut self.servers[index];
        if server.pid != pid {
            return; // About a process that has since changed.
        }
        let id = server.config.id.clone();
        let newly_orphaned = observation.orphaned
            && (!server.orphaned || server.orphaned_pid != observation.orphaned_pid);
        // The warning said which port; say the same one when it ends.
        let cleared = (server.orphaned && !observation.orphaned)
            .then(|| (server.orphaned_pid, server.orphan_port()));
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
            log::info!(target: LOG,
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
            log::warn!(target: LOG,
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

    pub(super) fn update_health(&mut self, index: ServerIndex) {
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
        let since = server
            .spawned_at
            .map(|at| self.host.now().saturating_duration_since(at))
            .unwrap_or_default();
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
                log::warn!(target: LOG, "Server '{}' is unhealthy: {}", server.config.id, why);
                let restart_after = server
                    .config
                    .health
                    .as_ref()
                    .and_then(|h| h.restart_unhealthy_after);
                server.health.unhealthy_since = Some(self.host.now());
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
    pub(super) fn check_unhealthy_restart(&mut self, index: ServerIndex) {
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
        let elapsed = self.host.now().saturating_duration_since(since);
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

    pub(super) fn send_watch(&mut self, index: ServerIndex) {
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
                    path: paths::log_path(&self.log_dir, &server.config.id),
                    regex: regex.clone(),
                    from: server.log_from,
                }),
                _ => None,
            },
            max_memory: server.config.max_memory.is_some(),
        };
        let slot = server.slot;
        let _ = self.outputs.monitor.send(MonitorCmd::Set {
            slot,
            watch: Box::new(watch),
        });
    }
}
