//! The port round, the monitor's part of every health interval (docs/DESIGN.md §7): who listens
//! on each server's ports, whether a connect would get through, and whether the holder is the
//! server's own process tree or an orphan. One `impl` block of [`ProcessMonitor`]: its fields
//! are the monitor's.
//!
//! Runs every round whether anyone looks or not, so it is what tend costs when idle
//! (docs/NOTES.md "Idle"): the kernel lists only the watched ports ([`PortDump`]), and the
//! buffers a round needs are kept between rounds, so a round with nothing new allocates
//! nothing per server.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Holder, LOG, Observation, ProcessMonitor, QUICK_INTERVAL, Report, Slot, probe};
use crate::model::{PortView, reachable_ip};
use crate::os::sockdiag::{Listener, PortDump};
use crate::os::{process, procfs};

/// What the listener table says of one configured port.
#[derive(Clone, Copy)]
enum Reach {
    /// Nobody listens on it.
    Closed,
    /// sock_diag showed every listener's accept queue: open or not, with no connect.
    Known(bool),
    /// A real connect is needed: the index of its target.
    Probe(usize),
}

/// What a round keeps between rounds.
#[derive(Default)]
pub(super) struct RoundBuffers {
    pub(super) dump: PortDump,
    /// Every configured port, sorted, without repeats (rebuilt when a watch changes).
    pub(super) ports: Vec<u16>,
    listeners: Vec<Listener>,
    reach: Vec<Reach>,
    /// Per configured port of the servers in the round, in order: its listeners' positions.
    spans: Vec<(usize, usize)>,
    /// Per listener (by position), its holder, looked up once a round.
    held: Vec<Option<Holder>>,
    holders: Vec<Holder>,
    observation: Observation,
    /// Full rounds so far.
    rounds: u64,
}

/// The positions of the listeners on `port` in `listeners` (sorted by port).
fn span_of(listeners: &[Listener], port: u16) -> (usize, usize) {
    let start = listeners.partition_point(|l| l.port < port);
    let len = listeners[start..].partition_point(|l| l.port == port);
    (start, start + len)
}

impl ProcessMonitor {
    /// Every configured port, for the kernel's filter: called when a watch changes.
    pub(super) fn watched_ports_changed(&mut self) {
        let ports = &mut self.buffers.ports;
        ports.clear();
        ports.extend(self.watches.iter().flat_map(|w| w.ports.iter().copied()));
        ports.sort_unstable();
        ports.dedup();
    }

    /// One round over `only` (a quick round) or over every server (a full round).
    pub(super) fn round(&mut self, only: Option<&[usize]>) {
        let started = Instant::now();
        let all: Vec<usize>;
        let indices = match only {
            Some(list) => list,
            None => {
                all = (0..self.watches.len()).collect();
                &all
            }
        };
        let mut listeners = std::mem::take(&mut self.buffers.listeners);
        if let Err(e) = self
            .buffers
            .dump
            .listening_on(&self.buffers.ports, &mut listeners)
        {
            log::warn!(target: LOG, "Cannot list listening sockets: {e}");
            listeners.clear();
        }
        for &index in indices {
            // A group with no process left is cleaned up: from now on a holder from its session
            // (one that left the group, say) is outside everything tend will stop.
            if !self.former[index].is_empty() {
                self.former[index].retain(|&session| process::group_exists(session, false));
            }
        }
        if only.is_none() {
            self.buffers.rounds += 1;
        }
        let mut spans = std::mem::take(&mut self.buffers.spans);
        spans.clear();
        for &index in indices {
            spans.extend(
                self.watches[index]
                    .ports
                    .iter()
                    .map(|&port| span_of(&listeners, port)),
            );
        }
        let mut held = std::mem::take(&mut self.buffers.held);
        self.find_holders(indices, only.is_none(), &listeners, &spans, &mut held);

        // A port is open when a connect to it would succeed. On loopback the kernel completes
        // the handshake of a listening socket by itself unless its accept queue is over its
        // backlog, and sock_diag shows both numbers: so the listener table answers for every
        // port at once, with no connect (no TIME_WAIT, nothing the user's server sees, and no
        // timeout for a hung listener). Only where sock_diag is refused and /proc/net/tcp does
        // not show the backlog are real connects made: all in flight together, one timeout.
        let mut reach = std::mem::take(&mut self.buffers.reach);
        reach.clear();
        let mut targets = Vec::new();
        for &(start, end) in &spans {
            let on = &listeners[start..end];
            reach.push(if on.is_empty() {
                Reach::Closed
            } else if on.iter().all(|l| l.accepts_connections().is_some()) {
                Reach::Known(on.iter().any(|l| l.accepts_connections() == Some(true)))
            } else {
                targets.push(SocketAddr::new(reachable_ip(on[0].addr), on[0].port));
                Reach::Probe(targets.len() - 1)
            });
        }
        let timeout = if only.is_some() {
            QUICK_INTERVAL
        } else {
            (self.interval / 2).min(Duration::from_secs(1))
        };
        let open = if targets.is_empty() {
            Vec::new()
        } else {
            probe::probe_all(&targets, timeout)
        };

        let mut holders = std::mem::take(&mut self.buffers.holders);
        let mut observation = std::mem::take(&mut self.buffers.observation);
        let mut reach_of = reach.iter();
        let mut spans_of = spans.iter();
        for &index in indices {
            let watch = &self.watches[index];
            let former = &self.former[index];
            observation.ports.clear();
            observation.ports_ok = true;
            observation.orphaned = false;
            observation.orphaned_pid = None;
            for &port in &watch.ports {
                // Several sockets may listen on one port (SO_REUSEPORT, v4 and v6): the port is
                // ours only if all of them are, and any outside holder makes it orphaned.
                let (start, end) = spans_of.next().copied().unwrap_or_default();
                holders.clear();
                holders.extend(
                    held[start..end]
                        .iter()
                        .flatten()
                        .filter(|h| h.pid.is_some() || h.lasted),
                );
                let is_current = |h: &Holder| h.session.is_some() && h.session == watch.pid;
                let is_ours =
                    |h: &Holder| is_current(h) || h.session.is_some_and(|s| former.contains(&s));
                let outsider = holders.iter().find(|h| !is_ours(h));
                let is_open = match reach_of.next() {
                    Some(Reach::Known(open)) => *open,
                    Some(Reach::Probe(target)) => open[*target],
                    Some(Reach::Closed) | None => false,
                };
                if let Some(outsider) = outsider {
                    if !observation.orphaned {
                        observation.orphaned = true;
                        observation.orphaned_pid = outsider.pid;
                    }
                }
                // Healthy only once the current process alone holds it, not its predecessor's
                // remains.
                observation.ports_ok &=
                    is_open && !holders.is_empty() && holders.iter().all(is_current);
                let owner = outsider.or(holders.first());
                observation.ports.push(PortView {
                    port,
                    open: is_open,
                    owner_pid: owner.and_then(|h| h.pid),
                });
            }
            if self.last[index].as_ref() != Some(&observation) {
                self.last[index] = Some(observation.clone());
                let report = Report::Observed {
                    slot: Slot(index),
                    pid: watch.pid,
                    observation: observation.clone(),
                };
                if self.reports.send(report).is_err() {
                    return;
                }
            }
        }
        self.buffers.listeners = listeners;
        self.buffers.spans = spans;
        self.buffers.held = held;
        self.buffers.reach = reach;
        self.buffers.holders = holders;
        self.buffers.observation = observation;
        if only.is_none() {
            // A sample on demand half a round ago is current still: CPU over a shorter window
            // would be mostly rounding.
            let recent = self
                .complete_at
                .is_some_and(|at| at.elapsed() < self.interval / 2);
            let looking = self.demand.is_looking(self.interval) && !recent;
            self.sample_stats(looking);
            let took = started.elapsed();
            if took > self.interval {
                log::warn!(target: LOG, "Health round took {} ms, longer than the interval", took.as_millis());
            }
            log::trace!(target: LOG, "Full round in {} µs (someone looking: {looking})", took.as_micros());
            self.demand.round_done(took);
        }
    }

    /// Finds the holder of every listening socket on a watched port that is new since the last
    /// round, and files each listener's holder in `held` (by position). Costs a /proc fd scan
    /// only when a socket appeared, never per round; one map lookup per listener.
    fn find_holders(
        &mut self,
        indices: &[usize],
        prune: bool,
        listeners: &[Listener],
        spans: &[(usize, usize)],
        held: &mut Vec<Option<Holder>>,
    ) {
        let round = self.buffers.rounds;
        held.clear();
        held.resize(listeners.len(), None);
        let mut unknown = HashSet::new();
        // Each new socket's likeliest holder: the leader of the session watching its port.
        let mut expected: HashMap<u32, HashSet<u64>> = HashMap::new();
        let mut spans = spans.iter();
        for &index in indices {
            let session = self.watches[index].pid;
            for _ in &self.watches[index].ports {
                let (start, end) = spans.next().copied().unwrap_or_default();
                for (listener, held) in listeners[start..end].iter().zip(&mut held[start..end]) {
                    let Some(holder) = self.holders.get_mut(&listener.inode) else {
                        unknown.insert(listener.inode);
                        if let Some(leader) = session {
                            expected.entry(leader).or_default().insert(listener.inode);
                        }
                        continue;
                    };
                    // An orphan is named to people and may be killed: confirm its holder every
                    // round (an inherited socket outlives the process that opened it).
                    let stale = match *holder {
                        Holder {
                            pid: Some(pid),
                            session: held_by,
                            ..
                        } if held_by != session => !procfs::is_alive(pid),
                        _ => false,
                    };
                    holder.lasted = true;
                    holder.seen = round;
                    *held = Some(*holder);
                    if stale {
                        unknown.insert(listener.inode);
                        if let Some(leader) = session {
                            expected.entry(leader).or_default().insert(listener.inode);
                        }
                    }
                }
            }
        }
        if prune {
            // Every listener on a watched port was seen in a full round: a holder not seen
            // is of a socket that is gone.
            self.holders.retain(|_, holder| holder.seen == round);
        }
        if unknown.is_empty() {
            return;
        }
        // A server's socket is nearly always held by its program, the leader of its session:
        // one descriptor table per new socket. Only what is not found there costs a scan of
        // every process's stat for our sessions' members (10,000 reads at 10,000 servers, once
        // per restart if it came first), and only what is not found among them a scan of all.
        let mut found = HashMap::new();
        for (leader, inodes) in &expected {
            found.extend(procfs::find_socket_owners(inodes, [*leader]));
        }
        let missing = |found: &HashMap<u64, u32>| -> HashSet<u64> {
            let missing = unknown.iter().filter(|i| !found.contains_key(i));
            missing.copied().collect()
        };
        let rest = missing(&found);
        if !rest.is_empty() {
            let own: Vec<u32> = self.watches.iter().filter_map(|w| w.pid).collect();
            found.extend(procfs::find_socket_owners(&rest, session_pids(&own)));
        }
        let rest = missing(&found);
        if !rest.is_empty() {
            found.extend(procfs::find_socket_owners(&rest, procfs::all_pids()));
        }
        for &inode in &unknown {
            let pid = found.get(&inode).copied();
            let session = pid.and_then(procfs::read_stat).map(|s| s.session);
            self.holders.insert(
                inode,
                Holder {
                    pid,
                    session,
                    lasted: false,
                    seen: round,
                },
            );
        }
        for (listener, held) in listeners.iter().zip(held.iter_mut()) {
            if unknown.contains(&listener.inode) {
                *held = self.holders.get(&listener.inode).copied();
            }
        }
    }
}

/// The PIDs of the sessions led by `leaders` (each server's process tree).
fn session_pids(leaders: &[u32]) -> Vec<u32> {
    if leaders.is_empty() {
        return Vec::new();
    }
    let sessions: HashSet<u32> = leaders.iter().copied().collect();
    procfs::session_members(&sessions)
        .into_values()
        .flatten()
        .collect()
}
