//! Idle cost (issue 16): wake-ups per idle minute, per thread and in total, and the large tier
//! (10,000 servers on one host).
//!
//! A wake-up is a context switch into a thread: `/proc/PID/task/TID/status` counts voluntary
//! switches (the thread slept and was woken) and involuntary ones (it was preempted and ran
//! again), so their sum over a window is how often the thread ran. Threads are grouped by name
//! (tend names every thread: supervisor, monitor, reaper, pidwatch, store, logs, http-accept,
//! http-conn; the main thread is the supervisor, named after the binary).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::bench::MIB;
use crate::managers::{Program, TendRun, free_port_range};
use crate::procs;
use crate::stats::{Cell, Row, Samples};

/// tend's health-round histogram (`tend_health_check_duration_seconds` in `/metrics`): its sum
/// in seconds and its count. A scrape is a read, so tend samples figures for two rounds after
/// it: take one before a settling pause, never inside an idle window.
#[derive(Clone, Copy, Default)]
pub struct RoundTotals {
    sum: f64,
    count: u64,
}

impl RoundTotals {
    pub fn scrape(port: u16) -> RoundTotals {
        let reply = crate::http::request(port, "GET", "/metrics", None).expect("GET /metrics");
        let value = |name: &str| {
            reply
                .body
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} in /metrics"))
        };
        RoundTotals {
            sum: value("tend_health_check_duration_seconds_sum"),
            count: value("tend_health_check_duration_seconds_count") as u64,
        }
    }

    /// The mean round from `self` to `later`, in ms.
    pub fn mean_ms_until(&self, later: &RoundTotals) -> Samples {
        let rounds = later.count.saturating_sub(self.count);
        if rounds == 0 {
            return Samples::default();
        }
        Samples::one((later.sum - self.sum) * 1000.0 / rounds as f64)
    }
}

/// Each thread's switches at one moment.
pub struct Switches(Vec<(u32, String, u64)>);

/// Wake-ups per minute over a window.
pub struct Wakeups {
    pub total: f64,
    /// By thread name: (threads, wake-ups per minute of all of them).
    pub by_name: BTreeMap<String, (usize, f64)>,
}

impl Switches {
    pub fn now(pid: u32) -> Switches {
        Switches(procs::thread_switches(pid))
    }

    /// What happened from `self` to `later`, `window` apart. A thread born in between counts
    /// from zero, one that ended is not counted.
    pub fn until(&self, later: &Switches, window: Duration) -> Wakeups {
        let minutes = window.as_secs_f64() / 60.0;
        let mut by_name: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        let mut total = 0.0;
        for (tid, name, count) in &later.0 {
            let before = self
                .0
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, c)| *c);
            let per_minute = count.saturating_sub(before) as f64 / minutes;
            let entry = by_name.entry(name.clone()).or_default();
            entry.0 += 1;
            entry.1 += per_minute;
            total += per_minute;
        }
        Wakeups { total, by_name }
    }
}

impl Wakeups {
    /// `supervisor 0, monitor 20.0, http-conn ×2 1.0, …`
    pub fn describe(&self) -> String {
        self.by_name
            .iter()
            .map(|(name, (threads, per_minute))| {
                let count = if *threads > 1 {
                    format!(" ×{threads}")
                } else {
                    String::new()
                };
                format!("{name}{count} {}", crate::stats::fmt_num(*per_minute))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What this host allows, for N servers: each needs a PID (and tend a few descriptors while
/// figures are sampled). Returns why the tier cannot run, if it cannot.
pub fn host_allows(n: usize) -> Result<String, String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let pid_max = read("/proc/sys/kernel/pid_max");
    let threads_max = read("/proc/sys/kernel/threads-max");
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes into our own struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let mut procs_limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut procs_limit) };
    let host = format!(
        "pid_max {pid_max}, threads-max {threads_max}, RLIMIT_NOFILE {}/{} (soft/hard), \
         RLIMIT_NPROC {}",
        limit.rlim_cur, limit.rlim_max, procs_limit.rlim_cur
    );
    let need = n as u64 + 2000;
    let mut missing = Vec::new();
    if pid_max < need {
        missing.push(format!("pid_max ≥ {need}"));
    }
    if threads_max < need {
        missing.push(format!("threads-max ≥ {need}"));
    }
    // tend keeps a /proc descriptor per sampled process while someone looks.
    if limit.rlim_max < need {
        missing.push(format!("RLIMIT_NOFILE hard ≥ {need}"));
    }
    if procs_limit.rlim_cur < need {
        missing.push(format!("RLIMIT_NPROC ≥ {need}"));
    }
    if missing.is_empty() {
        Ok(host)
    } else {
        Err(format!("{host}; needs {}", missing.join(", ")))
    }
}

/// The large tier, tend only: `n` sleepers of which `with_port` listen on a port each.
pub struct Large {
    pub start: Samples,
    pub rss: Samples,
    pub rounds: Samples,
    pub cpu: Samples,
    pub wakeups: Wakeups,
    /// The first `GET /api/servers` after a pause (a sample on demand), and reads after it.
    pub first_read: Samples,
    pub reads: Samples,
    pub list_bytes: usize,
    pub snapshot: Samples,
}

pub fn large(
    me: &std::path::Path,
    tend_bin: &std::path::Path,
    n: usize,
    with_port: usize,
) -> Large {
    let base = free_port_range(20000, with_port as u16);
    let mut programs: Vec<Program> = crate::bench::listeners(me, with_port, base, None);
    programs.extend(
        crate::bench::sleepers(n - with_port)
            .into_iter()
            .map(|mut p| {
                p.name = format!("big-{}", p.name);
                p
            }),
    );
    let mut config = TendRun::idle_config(&programs, false);
    config["max_connections"] = 64.into();
    // No trace log: a line per round is a cost users do not pay (round times come from
    // /metrics instead).
    let tend = TendRun::start(tend_bin, "large", &config, "info");
    let t0 = Instant::now();
    let status = crate::http::request(tend.port, "POST", "/api/servers?action=start", None)
        .map_or(0, |r| r.status);
    assert_eq!(status, 200, "start all answered");
    let running = |tend: &TendRun| {
        tend.get("/api/servers")
            .as_array()
            .map_or(0, |l| l.iter().filter(|s| s["status"] == "running").count())
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while running(&tend) < n {
        assert!(Instant::now() < deadline, "not all {n} servers running");
        std::thread::sleep(Duration::from_millis(250));
    }
    let start = Samples::one(crate::bench::ms(t0.elapsed()));

    // Nobody looks: the last read must be more than two rounds (3 s each) old. The scrape is a
    // read too, so the mean round counts the 2–3 rounds after it that sample 10,000 groups.
    let rounds0 = RoundTotals::scrape(tend.port);
    std::thread::sleep(Duration::from_secs(8));
    let window = Duration::from_secs(60);
    // schedstat, as in the steady phase: utime+stime counts 10 ms ticks, coarse for ~50 ms.
    let sched0 = procs::sched_ns(tend.pid);
    let switches0 = Switches::now(tend.pid);
    std::thread::sleep(window);
    let cpu = Samples::one((procs::sched_ns(tend.pid) - sched0) as f64 / 1e6);
    let wakeups = switches0.until(&Switches::now(tend.pid), window);
    let rounds = rounds0.mean_ms_until(&RoundTotals::scrape(tend.port));
    let rss = Samples::one(procs::rss_pss(tend.pid).map_or(0.0, |(rss, _)| rss as f64 / MIB));

    let timed_list = || {
        let t = Instant::now();
        let reply = crate::http::request(tend.port, "GET", "/api/servers", None).expect("list");
        assert_eq!(reply.status, 200);
        (crate::bench::ms(t.elapsed()), reply.body.len())
    };
    let (first, list_bytes) = timed_list();
    let first_read = Samples::one(first);
    let reads = Samples((0..5).map(|_| timed_list().0).collect());

    let mut snapshot = Samples::default();
    for _ in 0..3 {
        let t = Instant::now();
        let events = crate::bench::sse_client(tend.port);
        let (event, _, at) = events
            .recv_timeout(Duration::from_secs(60))
            .expect("an SSE snapshot");
        assert_eq!(event, "servers", "the first event is the snapshot");
        snapshot.0.push(crate::bench::ms(at.duration_since(t)));
    }
    Large {
        start,
        rss,
        rounds,
        cpu,
        wakeups,
        first_read,
        reads,
        list_bytes,
        snapshot,
    }
}

/// The large tier's rows (supervisord is not run at this size: see the note).
pub fn rows(n: usize, large: &Large) -> Vec<Row> {
    let n = n.to_string();
    let row = |figure: &str, unit: &'static str, tend: &Samples| Row {
        figure: figure.into(),
        n: n.clone(),
        unit,
        tend: Cell::Measured(tend.clone()),
        supd: Cell::NotApplicable,
        lower_is_better: true,
    };
    vec![
        row(
            "large tier: start all → every server running (API)",
            "ms",
            &large.start,
        ),
        row(
            "large tier: manager RSS, N running, nobody looking",
            "MiB",
            &large.rss,
        ),
        row(
            "large tier: health round (1,000 ports), mean with the 2–3 that sampled",
            "ms",
            &large.rounds,
        ),
        row(
            "large tier: CPU over 60 s, nobody looking, schedstat (ns-exact)",
            "ms",
            &large.cpu,
        ),
        row(
            "large tier: wake-ups per idle minute, all threads",
            "",
            &Samples::one(large.wakeups.total),
        ),
        row(
            "large tier: `GET /api/servers` after a pause (sample on demand)",
            "ms",
            &large.first_read,
        ),
        row(
            "large tier: `GET /api/servers`, figures current",
            "ms",
            &large.reads,
        ),
        row(
            "large tier: SSE connect → snapshot received",
            "ms",
            &large.snapshot,
        ),
    ]
}
