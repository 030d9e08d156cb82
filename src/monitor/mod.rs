//! ProcessMonitor (docs/DESIGN.md §7): the "monitor" thread. Every health interval it looks at each
//! server's configured ports (who listens and whether a connect would get through, from one
//! sock_diag dump; real connects, all in flight at once, only where sock_diag is refused),
//! decides whether each listener belongs to the server's own process tree
//! (its session: tend starts every server with setsid) or to an orphan, checks adopted PIDs
//! that the reaper cannot see, and samples CPU and RSS from /proc. It reports only changes.
//!
//! CPU and memory are sampled only while someone looks ([`demand::Demand`]: an SSE client, an
//! API read or scrape within [`demand::READ_ROUNDS`] rounds), on demand when a read finds the
//! figures older than a round ([`MonitorCmd::SampleNow`]), and every round for just the servers
//! with a `max_memory` limit. With nothing to look at (no ports, no limit, no adopted process,
//! nobody looking) there are no rounds at all: the thread sleeps until a command comes.
//!
//! Servers that are `starting` get quick rounds (every [`QUICK_INTERVAL`]) over just their own
//! ports, so a server is seen running, and its dependents start, milliseconds after it binds,
//! not a whole health interval later. The monitor never touches server state: it reads the
//! watches the supervisor sends and answers with reports.

pub mod demand;
pub mod httpprobe;
pub mod members;
mod ports;
pub mod probe;
mod sampling;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, after, never, select};

use self::demand::Demand;
use self::httpprobe::{HttpProbe, Outcome};
use crate::model::PortView;
use crate::monitor::members::Members;
use crate::regex::Regex;

const LOG: &str = "ProcessMonitor";

/// How often servers that are starting are looked at.
pub const QUICK_INTERVAL: Duration = Duration::from_millis(20);
/// How often a starting server's HTTP health check is tried until it first passes: soon after
/// it is ready, without a request every [`QUICK_INTERVAL`] to a program still loading.
pub const STARTING_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How often the log of a server waiting for its `health.log` line is read.
pub const LOG_SCAN_INTERVAL: Duration = Duration::from_millis(50);
/// The most of a log read in one look: a server that prints faster is read over several.
const LOG_SCAN_BYTES: usize = 64 * 1024;
/// The longest line matched whole; the rest of a longer line is not looked at.
const LOG_LINE_BYTES: usize = 4096;

/// A server waiting for a line of its output to match its `health.log` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWatch {
    pub path: PathBuf,
    pub regex: Regex,
    /// Where this process's output begins in the file.
    pub from: u64,
}

/// How far a log has been read.
#[derive(Debug)]
struct LogScan {
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

/// A server's HTTP health check as the monitor runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpWatch {
    pub probe: HttpProbe,
    pub interval: Duration,
}

/// The number the monitor (and the file watcher) know a server by: given when the server is
/// first configured and never moved, unlike the supervisor's server index, which a reload moves.
/// A report sent before the monitor heard of a reload so still names the right server (or none).
/// Inside the monitor it is the position in its per-server vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub usize);

/// What the monitor should watch for one server (by its [`Slot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    /// The live process, if any; also its session and process group id.
    pub pid: Option<u32>,
    pub ports: Vec<u16>,
    /// Not our child: liveness is checked here as a fallback to pidfds.
    pub adopted: bool,
    /// Starting: look at its ports every [`QUICK_INTERVAL`] (and probe it every
    /// [`STARTING_PROBE_INTERVAL`]).
    pub quick: bool,
    pub http: Option<HttpWatch>,
    /// Set until the server's `health.log` line is seen.
    pub log: Option<LogWatch>,
    /// It has a `max_memory` limit: its figures are sampled every round, looked at or not.
    pub max_memory: bool,
}

pub enum MonitorCmd {
    Set {
        slot: Slot,
        watch: Box<Watch>,
    },
    /// Run a full round now (after an orphan was killed, say).
    CheckNow,
    /// Sample every running server's CPU and memory now: a reader found the figures older than
    /// a round. Answered with a complete [`Report::Stats`].
    SampleNow,
}

/// What a round saw of one server's ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub ports: Vec<PortView>,
    /// Every port is open and held by the server's own process tree.
    pub ports_ok: bool,
    /// A port is held from outside the server's process tree.
    pub orphaned: bool,
    /// The outside holder, when tend could find it.
    pub orphaned_pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Observed {
        slot: Slot,
        pid: Option<u32>,
        observation: Observation,
    },
    /// CPU and memory of running servers: of every one (`complete`) while someone looks or when
    /// asked, else of those with a `max_memory` limit.
    Stats {
        samples: Vec<Sample>,
        complete: bool,
    },
    /// An adopted process is gone and no pidfd said so.
    Vanished { slot: Slot, pid: u32 },
    /// HTTP health probes that ended, all of one batch.
    Probed(Vec<Probed>),
    /// A line of the server's output matched its `health.log` pattern.
    LogMatched { slot: Slot, pid: u32, line: String },
}

/// One HTTP health probe's answer, for the process it was made for.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    pub slot: Slot,
    pub pid: u32,
    pub outcome: Outcome,
    pub took: Duration,
}

/// One running server's figures: its whole process group's, and its main process's.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub slot: Slot,
    /// When it was taken.
    pub taken: Instant,
    /// CPU of every live member since the group was last sampled (one round while someone looks;
    /// the whole pause after one; the process's lifetime at its first sample), in % of one core
    /// (one decimal).
    pub cpu_percent: f64,
    /// Resident memory of every live member, summed.
    pub rss_bytes: u64,
    /// CPU time the group has used since the process started: each member's, counted from
    /// when it was first seen (a process forked since the last round counts from its birth).
    pub cpu_time: Duration,
    /// Live processes in the group.
    pub processes: u32,
    pub main_cpu_percent: f64,
    pub main_rss_bytes: u64,
}

pub fn start(
    interval: Duration,
    commands: Receiver<MonitorCmd>,
    reports: Sender<Report>,
    demand: Arc<Demand>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            let mut monitor = ProcessMonitor::new(interval, reports, demand);
            monitor.run(&commands);
        })?;
    Ok(())
}

/// Who holds a listening socket, found once per socket (its inode is unique while it lives).
#[derive(Debug, Clone, Copy)]
struct Holder {
    pid: Option<u32>,
    session: Option<u32>,
    /// Seen in more than one round. A socket whose holder cannot be found is most often one
    /// whose last holder is exiting (its descriptors are gone from /proc a moment before the
    /// kernel closes the socket), so an unknown holder counts only once it has lasted a round.
    lasted: bool,
    /// The full round that last saw its socket: one that did not is gone.
    seen: u64,
}

struct ProcessMonitor {
    interval: Duration,
    reports: Sender<Report>,
    demand: Arc<Demand>,
    /// A reader asked for figures now ([`MonitorCmd::SampleNow`]).
    sample_asked: bool,
    /// The last round sampled something: [`Members`] holds descriptors and a map of every
    /// process, given back once nothing is sampled.
    sampled_last_round: bool,
    /// When every running server was last sampled.
    complete_at: Option<Instant>,
    watches: Vec<Watch>,
    /// Per server, the sessions of its earlier processes whose group is still being cleaned up
    /// (the workers of a master that died, while tend kills what is left of its group): their
    /// sockets are the server's own, never an orphan's, until that group is gone.
    former: Vec<Vec<u32>>,
    last: Vec<Option<Observation>>,
    holders: HashMap<u64, Holder>,
    /// CPU ticks of every member when it was last sampled, and its session.
    cpu: HashMap<u32, (u64, u32)>,
    /// Per server process (by its PID): the group's CPU ticks so far and when they were taken.
    group_cpu: HashMap<u32, (u64, Instant)>,
    members: Members,
    /// The port round's request and buffers, kept between rounds.
    buffers: ports::RoundBuffers,
    /// Per server, when its HTTP health check is next due.
    next_probe: Vec<Option<Instant>>,
    /// Per server waiting for its `health.log` line, how far its log has been read.
    log_scans: Vec<Option<LogScan>>,
    next_log_scan: Instant,
}

impl ProcessMonitor {
    fn new(interval: Duration, reports: Sender<Report>, demand: Arc<Demand>) -> ProcessMonitor {
        ProcessMonitor {
            interval,
            reports,
            demand,
            sample_asked: false,
            sampled_last_round: false,
            complete_at: None,
            watches: Vec::new(),
            former: Vec::new(),
            last: Vec::new(),
            holders: HashMap::new(),
            cpu: HashMap::new(),
            group_cpu: HashMap::new(),
            members: Members::default(),
            buffers: ports::RoundBuffers::default(),
            next_probe: Vec::new(),
            log_scans: Vec::new(),
            next_log_scan: Instant::now(),
        }
    }

    fn run(&mut self, commands: &Receiver<MonitorCmd>) {
        let mut next_full = Instant::now();
        loop {
            // Commands first, whatever is due: a probe batch may take a whole timeout, and
            // work that keeps coming due must not starve the watches it acts on (a batch of
            // starting servers' probes is due again as soon as a slow one ends).
            loop {
                match commands.try_recv() {
                    Ok(command) => self.command(command, &mut next_full),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            // A round right after this one samples nothing more (see `round`); and an overdue
            // round stays due: readers asking while a probe batch ran must not push it back.
            if std::mem::take(&mut self.sample_asked) {
                self.sample_stats(true);
            }
            let now = Instant::now();
            let rounds = self.needs_rounds();
            if rounds && now >= next_full {
                self.round(None);
                // The next round starts on time however long this one took.
                next_full += self.interval;
                if next_full < Instant::now() {
                    next_full = Instant::now() + self.interval;
                }
                continue;
            }
            let quick: Vec<usize> = (0..self.watches.len())
                .filter(|&i| self.watches[i].quick && !self.watches[i].ports.is_empty())
                .collect();
            if self.probes_due(now) {
                self.probe_http(now);
                continue;
            }
            let scanning = self.log_scans.iter().any(Option::is_some);
            if scanning && now >= self.next_log_scan {
                self.scan_logs();
                self.next_log_scan = now + LOG_SCAN_INTERVAL;
                continue;
            }
            // No round due and nothing else to do: no timer at all, not one that finds no work.
            let mut wake = rounds.then_some(next_full);
            if !quick.is_empty() {
                wake = Some(wake.map_or(now + QUICK_INTERVAL, |w| w.min(now + QUICK_INTERVAL)));
            }
            if let Some(probe_at) = self.next_probe.iter().flatten().min() {
                wake = Some(wake.map_or(*probe_at, |w| w.min(*probe_at)));
            }
            if scanning {
                wake = Some(wake.map_or(self.next_log_scan, |w| w.min(self.next_log_scan)));
            }
            let timer = wake.map_or_else(never, |w| after(w.saturating_duration_since(now)));
            select! {
                recv(commands) -> command => match command {
                    Ok(command) => self.command(command, &mut next_full),
                    Err(_) => return,
                },
                recv(timer) -> _ => {
                    if !quick.is_empty() && Instant::now() < next_full {
                        self.round(Some(&quick));
                    }
                }
            }
        }
    }

    fn command(&mut self, command: MonitorCmd, next_full: &mut Instant) {
        match command {
            MonitorCmd::Set { slot, watch } => self.set(slot.0, *watch),
            MonitorCmd::CheckNow => *next_full = Instant::now(),
            MonitorCmd::SampleNow => self.sample_asked = true,
        }
    }

    /// Whether full rounds have work: ports to look at, figures someone wants or a memory
    /// limit needs, or an adopted process whose death no pidfd may report.
    fn needs_rounds(&self) -> bool {
        self.watches
            .iter()
            .any(|w| !w.ports.is_empty() || (w.pid.is_some() && (w.max_memory || w.adopted)))
            || self.demand.is_looking(self.interval)
    }

    fn set(&mut self, index: usize, watch: Watch) {
        if index >= self.watches.len() {
            self.watches.resize(index + 1, Watch::default());
            self.former.resize(index + 1, Vec::new());
            self.last.resize(index + 1, None);
            self.next_probe.resize(index + 1, None);
            self.log_scans.resize_with(index + 1, || None);
        }
        let became_quick = watch.quick && !self.watches[index].quick;
        let new_process = self.watches[index].pid != watch.pid;
        if new_process || self.watches[index].http != watch.http {
            // A process just spawned cannot answer yet: its first probe comes a moment later.
            self.next_probe[index] = match (&watch.http, watch.pid) {
                (Some(_), Some(_)) => Some(Instant::now() + STARTING_PROBE_INTERVAL),
                _ => None,
            };
        }
        if new_process || self.watches[index].log != watch.log {
            self.log_scans[index] = match (&watch.log, watch.pid) {
                (Some(log), Some(_)) => Some(LogScan {
                    offset: log.from,
                    partial: Vec::new(),
                }),
                _ => None,
            };
        }
        if new_process {
            // A new process: report its first observation even if it looks like the last one.
            self.last[index] = None;
            if let Some(before) = self.watches[index].pid {
                self.former[index].push(before);
            }
        }
        let ports_changed = self.watches[index].ports != watch.ports;
        self.watches[index] = watch;
        if ports_changed {
            self.watched_ports_changed();
        }
        if became_quick && !self.watches[index].ports.is_empty() {
            self.round(Some(&[index]));
        }
    }

    /// Reads what each waiting server printed since the last look and reports the first line
    /// that matches its pattern. Reads only new bytes (at most [`LOG_SCAN_BYTES`] a look);
    /// a file that shrank was rotated, and is read again from its start.
    fn scan_logs(&mut self) {
        for index in 0..self.log_scans.len() {
            let Some(scan) = self.log_scans[index].as_mut() else {
                continue;
            };
            let watch = &self.watches[index];
            let (Some(log), Some(pid)) = (&watch.log, watch.pid) else {
                self.log_scans[index] = None;
                continue;
            };
            let Ok(mut file) = File::open(&log.path) else {
                continue;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < scan.offset {
                scan.offset = 0;
                scan.partial.clear();
            }
            if len == scan.offset || file.seek(SeekFrom::Start(scan.offset)).is_err() {
                continue;
            }
            let mut chunk = Vec::with_capacity(LOG_SCAN_BYTES.min((len - scan.offset) as usize));
            let Ok(read) = file.take(LOG_SCAN_BYTES as u64).read_to_end(&mut chunk) else {
                continue;
            };
            scan.offset += read as u64;
            let mut matched = None;
            for piece in chunk.split_inclusive(|&b| b == b'\n') {
                let room = LOG_LINE_BYTES.saturating_sub(scan.partial.len());
                scan.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                if !piece.ends_with(b"\n") {
                    break;
                }
                let line = String::from_utf8_lossy(&scan.partial);
                let line = line.trim_end_matches(['\n', '\r']);
                if log.regex.is_match(line) {
                    matched = Some(line.to_string());
                    break;
                }
                scan.partial.clear();
            }
            if let Some(line) = matched {
                self.log_scans[index] = None;
                let report = Report::LogMatched {
                    slot: Slot(index),
                    pid,
                    line,
                };
                if self.reports.send(report).is_err() {
                    return;
                }
            }
        }
    }

    fn probes_due(&self, now: Instant) -> bool {
        self.next_probe.iter().flatten().any(|&at| at <= now)
    }

    /// Runs every HTTP health probe that is due, and those due within half their interval, in
    /// one batch: servers that started at different times fall into step after one interval,
    /// so a round of many probes is one batch costing one timeout, not one batch each.
    fn probe_http(&mut self, now: Instant) {
        let mut indices = Vec::new();
        let mut probes = Vec::new();
        for (index, watch) in self.watches.iter().enumerate() {
            let (Some(http), Some(_), Some(at)) = (&watch.http, watch.pid, self.next_probe[index])
            else {
                continue;
            };
            let cadence = if watch.quick {
                STARTING_PROBE_INTERVAL
            } else {
                http.interval
            };
            if at <= now + cadence / 2 {
                indices.push(index);
                probes.push(http.probe.clone());
            }
        }
        let answers = httpprobe::probe_all(&probes);
        let mut probed = Vec::with_capacity(answers.len());
        for (index, answer) in indices.into_iter().zip(answers) {
            let watch = &self.watches[index];
            let (Some(http), Some(pid)) = (&watch.http, watch.pid) else {
                continue;
            };
            let cadence = if watch.quick {
                STARTING_PROBE_INTERVAL
            } else {
                http.interval
            };
            self.next_probe[index] = Some(now + cadence);
            probed.push(Probed {
                slot: Slot(index),
                pid,
                outcome: answer.outcome,
                took: answer.took,
            });
        }
        log::trace!(target: LOG, "{} HTTP probes in {} µs", probed.len(), now.elapsed().as_micros());
        if !probed.is_empty() {
            let _ = self.reports.send(Report::Probed(probed));
        }
    }
}
