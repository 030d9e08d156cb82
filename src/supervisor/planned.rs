//! Restarts tend plans itself (README "Restart on file changes" and "Restart on a schedule"):
//! a burst of changes the file watcher reports (`watch`), and `restart_every` / `restart_at`
//! coming due. Each goes through the normal stop path (stop signal, escalation, then a start)
//! and is a `plannedRestart` on the timeline. None is a failure: the restart streak that
//! `max_restarts` limits is left alone. A server a person stopped is never started by one.

use std::cmp::Reverse;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Status, Timeline};
use crate::monitor::Slot;
use crate::os::localtime;
use crate::schedule::format_every;
use crate::watch::{WatchCmd, WatchReport};

use super::server::{AfterStop, Planned, ServerIndex, Timer, TimerKind};
use super::{LOG, ServerOrchestrator};

/// A planned timer that fires this much before its wall-clock time (the clock was set back
/// since it was armed) is armed again instead of restarting early.
const CLOCK_SLACK: Duration = Duration::from_millis(50);
/// The longest a planned timer waits before the wall clock is looked at again. Timers run on
/// the monotonic clock, which stands still while the machine sleeps (a laptop's suspend) and
/// ignores the wall clock being set forward: without a cap, a 04:00 restart armed at 22:00
/// before an 8-hour suspend would come at noon. A look every 10 minutes costs nothing.
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(600);

impl ServerOrchestrator {
    /// Tells the file watcher what the server at `index` watches now.
    pub(super) fn send_watch_spec(&self, index: ServerIndex) {
        let server = &self.servers[index];
        self.outputs.watch.set(WatchCmd {
            slot: server.slot,
            id: server.config.id.clone(),
            cwd: server.config.cwd.clone(),
            spec: server.config.watch.clone(),
        });
    }

    /// The watcher is done with a server a reload removed.
    pub(super) fn unwatch_slot(&self, slot: Slot) {
        self.outputs.watch.set(WatchCmd {
            slot,
            id: String::new(),
            cwd: Default::default(),
            spec: None,
        });
    }

    pub(super) fn on_watch_report(&mut self, report: WatchReport) {
        match report {
            WatchReport::Watching {
                slot,
                folders,
                error,
            } => {
                let Some(index) = self.slot_index(slot) else {
                    return;
                };
                // The watcher has logged the problem, once per tend.
                let server = &mut self.servers[index];
                server.watch_paths = folders;
                server.watch_error = error;
                self.mark_changed(index);
            }
            WatchReport::Changed { slot, file, more } => {
                let Some(index) = self.slot_index(slot) else {
                    return;
                };
                let detail = match more {
                    0 => format!("{file} changed"),
                    n => format!("{file} and {n} more changed"),
                };
                self.on_change(index, file, detail);
            }
        }
    }

    fn on_change(&mut self, index: ServerIndex, file: String, detail: String) {
        if self.shutting_down || self.servers[index].config.watch.is_none() {
            return;
        }
        let server = &mut self.servers[index];
        if let Some(stopping) = &server.stopping {
            // Being restarted: one more restart once it runs (however many changes come);
            // being stopped by a person: nothing.
            if stopping.then == AfterStop::Start {
                log::debug!(target: LOG, "'{}': {} during a restart; one more restart queued", server.config.id, detail);
                server.queued_change = Some(file);
            }
            return;
        }
        if server.pending_stop || server.pending_start {
            return; // Stopping by request, or starting anyway: it will see what changed.
        }
        if server.pid.is_some() {
            self.planned_restart(index, "watch", detail, Some(file));
            return;
        }
        // Down without a person's say-so: the change may be the fix (a dev server that
        // crashed on a syntax error). A stopped server stays stopped.
        if matches!(
            server.status,
            Status::Crashed | Status::Fatal | Status::Exited | Status::Backoff
        ) {
            let id = server.config.id.clone();
            log::info!(target: LOG, "Starting '{}' again: {}", id, detail);
            server.streak = 0;
            self.timeline(Timeline::PlannedRestart {
                id,
                pid: None,
                trigger: "watch",
                detail,
                file: Some(file),
            });
            self.request_start(index, false);
        }
    }

    /// The change queued during a restart, now that the new process runs.
    pub(super) fn on_queued_change(&mut self, index: ServerIndex) {
        let Some(file) = self.servers[index].queued_change.take() else {
            return;
        };
        let detail = format!("{file} changed during the last restart");
        self.on_change(index, file, detail);
    }

    /// What a new process (spawned or taken over) is owed: its schedule, and a change that
    /// came while it was being started.
    pub(super) fn after_start(&mut self, index: ServerIndex) {
        self.arm_planned(index);
        if self.servers[index].queued_change.is_some() {
            self.arm(index, TimerKind::QueuedChange, Duration::ZERO);
        }
    }

    /// Works out the running process's next planned restart (the earlier of `restart_every`
    /// after its start and `restart_at`'s next time) and arms its timer.
    pub(super) fn arm_planned(&mut self, index: ServerIndex) {
        let server = &mut self.servers[index];
        server.planned = None;
        self.mark_changed(index);
        let server = &mut self.servers[index];
        if server.pid.is_none() {
            return;
        }
        let wall_now = self.host.wall_clock();
        let mut next: Option<(SystemTime, String)> = None;
        if let Some(every) = server.config.restart_every {
            let due = server.started_at.unwrap_or(wall_now) + every;
            next = Some((
                due.max(wall_now),
                format!("restart_every {}", format_every(every)),
            ));
        }
        if let Some(cron) = &server.config.restart_at {
            let now_secs = wall_now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            if let Some(at) = cron.next_after(now_secs as i64, &localtime::System) {
                let due = UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
                if next.as_ref().is_none_or(|(t, _)| due < *t) {
                    next = Some((due, format!("restart_at {}", cron.text)));
                }
            }
        }
        let Some((wall, by)) = next else {
            return;
        };
        let at = self.host.now()
            + wall
                .duration_since(wall_now)
                .unwrap_or_default()
                .min(WALL_CLOCK_CHECK);
        log::debug!(target: LOG, "'{}': next planned restart at {} ({})", server.config.id,
            localtime::format(wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64), by);
        server.planned = Some(Planned { at, wall, by });
        let epoch = server.epoch;
        self.timers.push(Reverse(Timer {
            at,
            index,
            epoch,
            kind: TimerKind::Planned,
        }));
    }

    pub(super) fn on_planned(&mut self, timer: Timer) {
        let index = timer.index;
        let server = &self.servers[index];
        let Some(planned) = server.planned.clone().filter(|p| p.at == timer.at) else {
            return; // Replaced since (a reload changed the schedule).
        };
        if server.pid.is_none() || server.stopping.is_some() || server.pending_stop {
            return;
        }
        if self.host.wall_clock() + CLOCK_SLACK < planned.wall {
            // Not due yet by the wall clock: a periodic look, or the clock was set back.
            self.arm_planned(index);
            return;
        }
        self.planned_restart(index, planned_trigger(&planned.by), planned.by, None);
    }

    /// A restart through the normal stop path that is not a failure: `restarts` counts it,
    /// the streak `max_restarts` limits does not.
    fn planned_restart(
        &mut self,
        index: ServerIndex,
        trigger: &'static str,
        detail: String,
        file: Option<String>,
    ) {
        let server = &mut self.servers[index];
        server.restarts += 1;
        server.planned = None;
        let id = server.config.id.clone();
        let pid = server.pid;
        log::info!(target: LOG, "Restarting '{}' (PID: {}) as planned: {}", id,
            pid.map_or_else(|| "none".to_string(), |p| p.to_string()), detail);
        self.timeline(Timeline::PlannedRestart {
            id,
            pid,
            trigger,
            detail,
            file,
        });
        self.state_dirty = true;
        self.mark_changed(index);
        self.begin_stop(index, AfterStop::Start);
    }
}

fn planned_trigger(by: &str) -> &'static str {
    if by.starts_with("restart_at") {
        "restart_at"
    } else {
        "restart_every"
    }
}
