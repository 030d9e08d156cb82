//! `make soak`: random start / stop / restart / kill -9 over 100 servers for `--seconds` while
//! 10 SSE clients listen and the state file is read and parsed over and over; then checks that
//! tend holds no more descriptors of any kind and no more threads of any name than after the
//! warm-up (both measured at a like moment, see footprint.rs) and that RSS is back near it,
//! that no child of tend is a zombie, that nothing of any server's session is left after "stop
//! all", that every state file generation read parsed, and that tend exits 0 on SIGTERM.
//! Prints a verdict.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::footprint::{self, Footprint};
use crate::http;
use crate::managers::{Program, TendRun, free_port_range};
use crate::procs;

const SERVERS: usize = 100;
const CLIENTS: usize = 10;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What is cheap to read after every action during the churn, for the peaks.
#[derive(Clone, Copy, Debug, Default)]
struct Peak {
    fds: usize,
    threads: u64,
    rss: u64,
}

impl Peak {
    fn update(&mut self, pid: u32) {
        self.fds = self.fds.max(procs::fd_count(pid));
        self.threads = self.threads.max(procs::stat(pid).map_or(0, |s| s.threads));
        self.rss = self.rss.max(procs::rss_pss(pid).map_or(0, |(r, _)| r));
    }
}

pub fn run(tend_bin: &Path, seconds: u64) -> bool {
    let me = std::env::current_exe().expect("own path");
    let base = free_port_range(24000, SERVERS as u16);
    let programs: Vec<Program> = (0..SERVERS)
        .map(|i| {
            let port = base + i as u16;
            let argv = if i % 2 == 0 {
                vec!["sleep".to_string(), "100000".to_string()]
            } else {
                vec![
                    me.display().to_string(),
                    "child".into(),
                    "listen".into(),
                    port.to_string(),
                ]
            };
            Program {
                name: format!("s{i}"),
                argv,
                port: (i % 2 == 1).then_some(port),
            }
        })
        .collect();
    let mut config = TendRun::config(&programs, true);
    config["health_interval_ms"] = 1000.into();
    // Every process of every server inherits this mark: what is left after "stop all" is found
    // by it, not by session id (over a long soak PIDs wrap, and a session id seen early can be
    // another program's later).
    let mark = format!(
        "TEND_SOAK_MARK={}-{}",
        std::process::id(),
        procs::now_nanos()
    );
    let (mark_key, mark_value) = mark.split_once('=').expect("a NAME=VALUE mark");
    for s in config["servers"].as_array_mut().expect("servers") {
        s["backoff_ms"] = 100.into();
        s["env"] = serde_json::json!({ mark_key: mark_value });
    }
    let mut tend = TendRun::start(tend_bin, "soak", &config, "warn");
    let state_file = tend.dir.join(".tend/process-state.json");
    println!(
        "soak: tend PID {} on port {}, {SERVERS} servers, {seconds} s of churn",
        tend.pid, tend.port
    );
    assert!(
        footprint::all_running(&tend, SERVERS, Duration::from_secs(60)).is_ok(),
        "servers did not start"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sessions: Arc<Mutex<HashSet<u32>>> = Arc::new(Mutex::new(HashSet::new()));
    for s in tend.get("/api/servers").as_array().into_iter().flatten() {
        if let Some(pid) = s["pid"].as_u64() {
            sessions.lock().unwrap().insert(pid as u32);
        }
    }

    // SSE clients: count events, reconnect when dropped; the first one records every spawn.
    let events = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    // Each client's connection by its local port: how tend's side of it is told apart from
    // request connections.
    let sse_ports: Arc<Mutex<Vec<Option<u16>>>> = Arc::new(Mutex::new(vec![None; CLIENTS]));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, events, reconnects, streams, sessions, sse_ports) = (
            stop.clone(),
            events.clone(),
            reconnects.clone(),
            streams.clone(),
            sessions.clone(),
            sse_ports.clone(),
        );
        let port = tend.port;
        clients.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                if let Ok(clone) = stream.try_clone() {
                    streams.lock().unwrap().push(clone);
                }
                sse_ports.lock().unwrap()[c] = stream.local_addr().ok().map(|a| a.port());
                let _ = write!(
                    stream,
                    "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                );
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                let mut event = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if let Some(name) = line.trim_end().strip_prefix("event: ") {
                        event = name.to_string();
                    } else if let Some(data) = line.trim_end().strip_prefix("data: ") {
                        events.fetch_add(1, Ordering::Relaxed);
                        if c == 0
                            && event == "serverStarted"
                            && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                            && let Some(pid) = v["pid"].as_u64()
                        {
                            sessions.lock().unwrap().insert(pid as u32);
                        }
                    }
                }
                sse_ports.lock().unwrap()[c] = None;
                if !stop.load(Ordering::Relaxed) {
                    reconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // The state file, read and parsed again and again.
    let reads = Arc::new(AtomicU64::new(0));
    let generations = Arc::new(AtomicU64::new(0));
    let bad_reads: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (stop, reads, generations, bad_reads, sessions) = (
            stop.clone(),
            reads.clone(),
            generations.clone(),
            bad_reads.clone(),
            sessions.clone(),
        );
        let path = state_file.clone();
        std::thread::spawn(move || {
            let mut last = String::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if text != last {
                        generations.fetch_add(1, Ordering::Relaxed);
                        match serde_json::from_str::<serde_json::Value>(&text) {
                            Ok(v) if v["processes"].is_object() => {
                                for p in v["processes"].as_object().into_iter().flatten() {
                                    if let Some(pgid) = p.1["pgid"].as_u64() {
                                        sessions.lock().unwrap().insert(pgid as u32);
                                    }
                                }
                            }
                            _ => bad_reads
                                .lock()
                                .unwrap()
                                .push(text.chars().take(200).collect()),
                        }
                        last = text;
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let sse_ports = move || -> HashSet<u16> {
        sse_ports
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect()
    };
    let settle = |tend: &TendRun| footprint::settle(tend, SERVERS, CLIENTS, &sse_ports);
    let show = |when: &str, f: &Result<Footprint, String>| match f {
        Ok(f) => println!(
            "soak: {when}: {} fds, {} threads, RSS {:.2} MiB",
            f.fd_total(),
            f.thread_total(),
            f.rss as f64 / 1048576.0
        ),
        Err(e) => println!("soak: {when}: {e}"),
    };
    let cold = settle(&tend);
    show("at start, settled", &cold);

    let seed = procs::now_nanos() as u64 | 1;
    let mut rng = Rng(seed);
    let mut actions = [0u64; 4];
    let mut statuses: std::collections::BTreeMap<u16, u64> = Default::default();
    let mut peak = Peak::default();
    let mut tend_died = false;
    let tend_pid = tend.pid;
    let port = tend.port;
    let mut churn = |seconds: u64, label: &str| {
        let started = Instant::now();
        let mut last_report = Instant::now();
        while started.elapsed() < Duration::from_secs(seconds) {
            let id = format!("s{}", rng.below(SERVERS));
            let action = rng.below(4);
            actions[action] += 1;
            let status = match action {
                0..=2 => {
                    let verb = ["start", "stop", "restart"][action];
                    http::request(
                        port,
                        "POST",
                        &format!("/api/servers/{id}?action={verb}"),
                        None,
                    )
                    .map_or(0, |r| r.status)
                }
                _ => {
                    let server = http::request(port, "GET", &format!("/api/servers/{id}"), None)
                        .ok()
                        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                        .unwrap_or_default();
                    if let Some(pid) = server["pid"].as_u64() {
                        procs::kill9(pid as u32);
                    }
                    200
                }
            };
            *statuses.entry(status).or_default() += 1;
            peak.update(tend_pid);
            if procs::stat(tend_pid).is_none_or(|s| s.state == 'Z') {
                tend_died = true;
                break;
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                last_report = Instant::now();
                println!(
                    "soak: {label} {:.0} s, {} actions, {} events, {} state generations read",
                    started.elapsed().as_secs_f64(),
                    actions.iter().sum::<u64>(),
                    events.load(Ordering::Relaxed),
                    generations.load(Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(5 + rng.below(20) as u64));
        }
    };
    // Warm-up: tend's SSE replay buffer (4096 events, events.rs) and its allocator arenas fill
    // up to their working size; the baseline is taken after it.
    let warmup = (seconds / 4).clamp(10, 30);
    churn(warmup, "warm-up");
    let before = settle(&tend);
    show(
        &format!("after {warmup} s of warm-up churn (the baseline)"),
        &before,
    );
    churn(seconds, "churn");

    let mut after = Err("tend died during the churn".to_string());
    let mut zombies = Vec::new();
    let mut strays = Vec::new();
    let mut exit = None;
    if !tend_died {
        after = settle(&tend);
        show("after the churn, settled", &after);
        let reply = http::request(tend.port, "POST", "/api/servers?action=stop", None)
            .map_or(0, |r| r.status);
        println!("soak: stop all answered {reply}");
        zombies = procs::all_pids()
            .into_iter()
            .filter(|&p| procs::stat(p).is_some_and(|s| s.ppid == tend.pid && s.state == 'Z'))
            .collect();
        strays = procs::all_pids()
            .into_iter()
            .filter(|&p| procs::environ_has(p, mark.as_bytes()))
            .collect();
    }
    stop.store(true, Ordering::Relaxed);
    for s in streams.lock().unwrap().iter() {
        let _ = s.shutdown(Shutdown::Both);
    }
    let _ = reader.join();
    if !tend_died {
        exit = tend.terminate(Duration::from_secs(30));
    }
    for c in clients {
        let _ = c.join();
    }

    let mib = |b: u64| b as f64 / 1048576.0;
    let bad = bad_reads.lock().unwrap().clone();
    println!("\n## soak verdict ({seconds} s, seed {seed})\n");
    println!(
        "actions: {} start, {} stop, {} restart, {} kill -9; answers: {}",
        actions[0],
        actions[1],
        actions[2],
        actions[3],
        statuses
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "SSE: {} events over {CLIENTS} clients, {} reconnects; state file: {} reads, {} generations, {} unparsable; sessions seen: {}",
        events.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        generations.load(Ordering::Relaxed),
        bad.len(),
        sessions.lock().unwrap().len()
    );
    let mut checks: Vec<(String, bool)> = Vec::new();
    checks.push(("tend alive through the churn".to_string(), !tend_died));
    for (what, figure) in [
        ("at start", &cold),
        ("after the warm-up", &before),
        ("after the churn", &after),
    ] {
        checks.push((
            match figure {
                Ok(_) => format!("settled {what}: every server running, every server's /proc/PID/stat held, {CLIENTS} SSE connections and no other"),
                Err(e) => format!("settled {what}: {e}"),
            },
            figure.is_ok(),
        ));
    }
    if let (Ok(cold), Ok(before), Ok(after)) = (&cold, &before, &after) {
        let columns = |pick: fn(&Footprint) -> &std::collections::BTreeMap<String, usize>| {
            [
                ("at start", pick(cold)),
                ("baseline", pick(before)),
                ("end", pick(after)),
            ]
        };
        print!(
            "\n{}",
            footprint::table("descriptors by kind", &columns(|f| &f.fds))
        );
        print!(
            "\n{}",
            footprint::table("threads by name", &columns(|f| &f.threads))
        );
        println!();
        let grown = footprint::grown(&before.fds, &after.fds);
        checks.push((
            format!(
                "no kind of descriptor grew from the baseline: {} → {} in all (peak {} during the churn){}",
                before.fd_total(),
                after.fd_total(),
                peak.fds,
                if grown.is_empty() { String::new() } else { format!("; grew: {}", grown.join(", ")) }
            ),
            grown.is_empty(),
        ));
        let grown = footprint::grown(&before.threads, &after.threads);
        checks.push((
            format!(
                "no thread name grew in number from the baseline: {} → {} in all (peak {} during the churn){}",
                before.thread_total(),
                after.thread_total(),
                peak.threads,
                if grown.is_empty() { String::new() } else { format!("; grew: {}", grown.join(", ")) }
            ),
            grown.is_empty(),
        ));
        let rss_allowed = before.rss + (before.rss / 4).max(1 << 20);
        checks.push((
            format!(
                "RSS back near the baseline: {:.2} → {:.2} MiB (peak {:.2}, at start {:.2}), allowed {:.2}",
                mib(before.rss),
                mib(after.rss),
                mib(peak.rss),
                mib(cold.rss),
                mib(rss_allowed)
            ),
            after.rss <= rss_allowed,
        ));
    }
    checks.push((
        format!("no zombie children of tend: {zombies:?}"),
        zombies.is_empty() && !tend_died,
    ));
    checks.push((
        format!("no process of any server left after stop all: {strays:?}"),
        strays.is_empty() && !tend_died,
    ));
    checks.push((
        format!(
            "every state file generation parsed ({} unparsable)",
            bad.len()
        ),
        bad.is_empty(),
    ));
    checks.push((
        format!(
            "no 5xx answer: {}",
            statuses
                .iter()
                .filter(|(k, _)| **k >= 500 || **k == 0)
                .map(|(_, v)| v)
                .sum::<u64>()
        ),
        !statuses.keys().any(|&k| k >= 500 || k == 0),
    ));
    checks.push((
        format!("tend exits 0 on SIGTERM: {exit:?}"),
        exit.is_some_and(|s| s.success()),
    ));
    for (what, ok) in &checks {
        println!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    for text in bad.iter().take(3) {
        println!("  unparsable state file: {text:?}");
    }
    let ok = checks.iter().all(|(_, ok)| *ok);
    if !ok {
        // tend's folder goes with `tend`; its log is what explains a failure afterwards.
        let kept = std::env::temp_dir().join(format!("tend-soak-{seed}.log"));
        if std::fs::copy(tend.dir.join("tend.log"), &kept).is_ok() {
            println!("tend's log (RUST_LOG=warn) kept in {}", kept.display());
        }
    }
    println!("\nverdict: {}", if ok { "PASS" } else { "FAIL" });
    ok
}
