//! CPU and memory sampling, the monitor's part of "sampled only while someone looks"
//! (docs/DESIGN.md §12 "Idle"): every running server's process group while someone looks or a
//! reader asked ([`MonitorCmd::SampleNow`](super::MonitorCmd)), else only the groups of servers
//! with a `max_memory` limit; and, every full round, the fallback check that adopted processes
//! are still alive. One `impl` block of [`ProcessMonitor`]: its fields are the monitor's.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::members::Members;
use super::{LOG, ProcessMonitor, Report, Sample, Slot, Watch};
use crate::os::procfs;

impl ProcessMonitor {
    /// CPU and memory of every running server's process group (`all`), or of those with a
    /// `max_memory` limit; and the death of adopted processes.
    pub(super) fn sample_stats(&mut self, all: bool) {
        let ticks_per_second = procfs::clock_ticks_per_second() as f64;
        let now = Instant::now();
        let mut processes = 0;
        if all {
            self.complete_at = Some(now);
        }
        let sampled = |w: &Watch| all || w.max_memory;
        let sessions: HashSet<u32> = self
            .watches
            .iter()
            .filter(|w| sampled(w))
            .filter_map(|w| w.pid)
            .collect();
        self.check_adopted();
        if sessions.is_empty() {
            if std::mem::take(&mut self.sampled_last_round) {
                // Nobody looks any more: give back the descriptors and the process map.
                self.members = Members::default();
            }
            if all {
                let _ = self.reports.send(Report::Stats {
                    samples: Vec::new(),
                    complete: true,
                });
            }
            return;
        }
        self.sampled_last_round = true;
        let groups = self.members.scan(&sessions);
        let boot_ticks = procfs::boot_clock_ticks();
        let mut samples = Vec::new();
        let mut cpu = HashMap::with_capacity(self.cpu.len());
        let mut group_cpu = HashMap::with_capacity(self.group_cpu.len());
        let percent = |ticks: u64, seconds: f64| {
            if seconds > 0.0 {
                ((ticks as f64 / ticks_per_second) / seconds * 1000.0).round() / 10.0
            } else {
                0.0
            }
        };
        for (index, watch) in self.watches.iter().enumerate() {
            let Some(pid) = watch.pid.filter(|_| sampled(watch)) else {
                continue;
            };
            let group = groups.get(&pid).map(Vec::as_slice).unwrap_or_default();
            let Some(main) = group.iter().find(|stat| stat.pid == pid) else {
                continue;
            };
            processes += group.len();
            let previous = self.group_cpu.get(&pid).copied();
            let mut used = 0;
            let mut rss = 0;
            let mut main_used = 0;
            for stat in group {
                let ticks = procfs::cpu_time_ticks(stat);
                let before = self.cpu.get(&stat.pid).map_or(0, |&(ticks, _)| ticks);
                let since = ticks.saturating_sub(before);
                used += since;
                if stat.pid == pid {
                    main_used = since;
                }
                rss += procfs::rss_bytes(stat);
                cpu.insert(stat.pid, (ticks, pid));
            }
            let total = previous.map_or(0, |(total, _)| total) + used;
            group_cpu.insert(pid, (total, now));
            // First sampled: what it used over its life so far, not a 0 that looks measured.
            let seconds = match previous {
                Some((_, at)) => now.saturating_duration_since(at).as_secs_f64(),
                None => boot_ticks.map_or(0.0, |boot| {
                    boot.saturating_sub(main.start_ticks) as f64 / ticks_per_second
                }),
            };
            samples.push(Sample {
                slot: Slot(index),
                taken: now,
                cpu_percent: percent(used, seconds),
                rss_bytes: rss,
                cpu_time: Duration::from_secs_f64(total as f64 / ticks_per_second),
                processes: group.len() as u32,
                main_cpu_percent: percent(main_used, seconds),
                main_rss_bytes: procfs::rss_bytes(main),
            });
        }
        if all {
            self.cpu = cpu;
            self.group_cpu = group_cpu;
        } else {
            // Only the limited servers were read: the others' counts stay for their next look.
            self.cpu
                .retain(|_, (_, session)| !sessions.contains(session));
            self.cpu.extend(cpu);
            self.group_cpu.extend(group_cpu);
            let live: HashSet<u32> = self.watches.iter().filter_map(|w| w.pid).collect();
            self.group_cpu.retain(|pid, _| live.contains(pid));
        }
        log::trace!(target: LOG, "Sampled {} servers ({} processes, all: {all}) in {} µs",
            samples.len(), processes, now.elapsed().as_micros());
        if all || !samples.is_empty() {
            let _ = self.reports.send(Report::Stats {
                samples,
                complete: all,
            });
        }
    }

    /// An adopted process is not our child: no exit reaches the reaper, so each round checks
    /// it is still there, as the fallback to its pidfd. One stat read per adopted process.
    fn check_adopted(&self) {
        for (index, watch) in self.watches.iter().enumerate() {
            let Some(pid) = watch.pid.filter(|_| watch.adopted) else {
                continue;
            };
            // Still the leader of its own session: a PID reused by someone else is not it.
            let alive = procfs::read_stat(pid).is_some_and(|s| s.session == pid && !s.is_dead());
            if !alive {
                let _ = self.reports.send(Report::Vanished {
                    slot: Slot(index),
                    pid,
                });
            }
        }
    }
}
