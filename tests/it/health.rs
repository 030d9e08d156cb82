//! Health beyond a live PID and open ports (issue 13): `max_memory` restarts a server whose
//! process group stays over its limit, with the reason on the timeline, in `lastError`, in
//! tend's log and in /metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, tend_bin, wait_until};

/// How long a memory restart may take: two rounds over the limit (rounds are 200 ms here),
/// the stop, and the new process's start, with room for a loaded machine.
const MEMORY_WAIT: Duration = Duration::from_secs(15);

/// A `/bin/sh -c` command that runs `big` the first time (leaving `marker` behind) and `small`
/// after that, so a memory restart happens once and the restarted server stays under its limit.
fn first_time_big(marker: &str, big: &str, small: &str) -> String {
    let tend = tend_bin();
    let tend = tend.display();
    format!(
        "if [ -e {marker} ]; then exec {tend} serve-demo {small}; \
         else touch {marker}; exec {tend} serve-demo {big}; fi"
    )
}

/// One series' value from a `/metrics` scrape.
fn metric(tend: &Tend, series: &str) -> Option<f64> {
    let (status, _, body) = tend.request_raw("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("UTF-8");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Health rounds done so far (the round histogram's count).
fn rounds(tend: &Tend) -> f64 {
    metric(tend, "tend_health_check_duration_seconds_count").unwrap_or(0.0)
}

/// The PID of the first process a demo server's log names ("demo: started (PID 123)",
/// "demo: worker PID 123 holds …").
fn first_logged_pid(tend: &Tend, id: &str) -> u64 {
    let log = tend.log_text(id);
    let digits: String = log
        .split("PID ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no PID in the log of '{id}': {log}"))
}

/// Waits for the memory restart of `id` and checks every place that says why, and that the
/// restarted server (under its limit) is left alone.
fn expect_one_memory_restart(tend: &Tend, id: &str) -> Value {
    let restarted = tend.wait_server_for(id, "a memory restart", MEMORY_WAIT, |s| {
        s["status"] == "running" && s["restarts"] == 1
    });
    let first_pid = first_logged_pid(tend, id);
    assert_ne!(restarted["pid"], first_pid, "{restarted:#}");
    let reason = restarted["lastError"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("memory ") && reason.ends_with(" MiB over 32 MiB: restarted"),
        "{restarted:#}"
    );
    let log = tend.stderr_text();
    assert!(
        log.contains(&format!("Server '{id}' (PGID: {first_pid}) uses "))
            && log.contains("over max_memory 33554432 bytes for 2 rounds; restarting"),
        "{log}"
    );
    let series = format!("tend_server_memory_restarts_total{{server=\"{id}\"}}");
    assert_eq!(metric(tend, &series), Some(1.0));
    // Under the limit now: a few more rounds bring no second restart.
    let seen = rounds(tend);
    wait_until("three more health rounds", MEMORY_WAIT, || {
        (rounds(tend) >= seen + 3.0).then_some(())
    });
    let after = tend.server(id);
    assert_eq!(after["restarts"], 1, "{after:#}");
    assert_eq!(after["pid"], restarted["pid"], "{after:#}");
    assert!(after["rssBytes"].as_u64().unwrap() < 32 << 20, "{after:#}");
    after
}

#[test]
fn a_process_over_max_memory_is_restarted_once_and_says_why() {
    let dir = TempDir::new("memory-leader");
    // The first process itself holds 64 MiB (the demo's worker role, run as the main process).
    let command = first_time_big("grown", "--worker --worker-mb 64", "");
    let config = json!({
        "servers": [
            {"id": "hog", "command": command, "max_memory": "32M", "stop_timeout_ms": 2000}
        ]
    });
    let tend = Tend::start(&dir, &config);
    expect_one_memory_restart(&tend, "hog");
}

#[test]
fn a_group_whose_workers_hold_the_memory_is_restarted() {
    let dir = TempDir::new("memory-workers");
    // Each process is under 32 MiB (the leader holds a few, each worker 24): only the whole
    // group, which is what tend measures, is over it.
    let command = first_time_big("grown", "--workers 2 --worker-mb 24", "--workers 2");
    let config = json!({
        "servers": [
            {"id": "prefork", "command": command, "max_memory": "32M", "stop_timeout_ms": 2000}
        ]
    });
    let tend = Tend::start(&dir, &config);
    expect_one_memory_restart(&tend, "prefork");
    let after = tend.wait_server("prefork", "its workers again", |s| s["processes"] == 3);
    assert!(
        after["mainRssBytes"].as_u64().unwrap() < 32 << 20,
        "{after:#}"
    );
}
