//! Idle cost (issue 16, docs/DESIGN.md §12 "Idle"): CPU and memory are sampled only while
//! someone looks (an SSE client, an API read or scrape in the last two rounds) and every round
//! for servers with `max_memory`; a read after a pause gets figures sampled for it.
//!
//! What tend did is read from its own trace log (`RUST_LOG=ProcessMonitor=trace`): one line per
//! full health round saying whether someone looked, one per sample saying how many servers and
//! whether all of them. The tests count rounds, never time: "nobody looked for three rounds"
//! is three round lines, however long they took.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{SseReader, TempDir, Tend, demo_cmd, free_port, wait_until};

const WAIT: Duration = Duration::from_secs(20);
const TRACE: (&str, &str) = ("RUST_LOG", "info,ProcessMonitor=trace");
const IDLE_ROUND: &str = "(someone looking: false)";
const LOOKED_ROUND: &str = "(someone looking: true)";
const SAMPLED_ALL: &str = "all: true)";

fn web(id: &str, port: u16) -> Value {
    json!({"id": id, "command": demo_cmd(&["--port", &port.to_string(), "--print-every-ms", "0"]),
           "ports": [port]})
}

fn monitor_lines(tend: &Tend) -> Vec<String> {
    tend.stderr_text()
        .lines()
        .filter(|l| l.contains("ProcessMonitor"))
        .map(str::to_string)
        .collect()
}

/// Waits until `count` rounds in a row with nobody looking are logged after line `from`;
/// returns the monitor's lines from `from` on.
fn idle_rounds_after(tend: &Tend, from: usize, count: usize) -> Vec<String> {
    wait_until(&format!("{count} rounds with nobody looking"), WAIT, || {
        let lines = monitor_lines(tend);
        let after = lines.get(from..).unwrap_or_default();
        let mut in_a_row = 0;
        for line in after {
            if line.contains(IDLE_ROUND) {
                in_a_row += 1;
            } else if line.contains(LOOKED_ROUND) {
                in_a_row = 0;
            }
        }
        (in_a_row >= count).then(|| after.to_vec())
    })
}

/// The lines after the last round in which someone looked (where idleness begins).
fn since_last_look(lines: &[String]) -> &[String] {
    let start = lines
        .iter()
        .rposition(|l| l.contains(LOOKED_ROUND))
        .map_or(0, |i| i + 1);
    &lines[start..]
}

/// tend with 100 ms rounds and the monitor's trace log, which says what each round sampled.
fn traced(dir: &TempDir, servers: Value) -> Tend {
    let config = json!({"health_interval_ms": 100, "servers": servers});
    Tend::start_with(dir, &config, &[], &[TRACE])
}

#[test]
fn nobody_looking_means_no_samples_and_a_read_gets_a_fresh_one() {
    let dir = TempDir::new("idle_read");
    let port = free_port();
    let tend = traced(&dir, json!([web("web", port)]));
    tend.wait_status("web", "running");

    // Rounds keep running (the port is checked) but sample nothing once the reads stopped.
    let lines = idle_rounds_after(&tend, 0, 3);
    let idle = since_last_look(&lines);
    assert!(
        !idle.iter().any(|l| l.contains("Sampled")),
        "sampled with nobody looking:\n{}",
        idle.join("\n")
    );

    // A read after the pause is answered with figures sampled for it.
    let before = monitor_lines(&tend).len();
    let web = tend.server("web");
    assert!(web["rssBytes"].as_u64().is_some_and(|b| b > 0), "{web:#}");
    assert!(web["cpuPercent"].is_number(), "{web:#}");
    let after = monitor_lines(&tend);
    assert!(
        after[before..].iter().any(|l| l.contains(SAMPLED_ALL)),
        "no sample for the read:\n{}",
        after[before..].join("\n")
    );

    // Metrics too: a scrape after a pause carries the group's memory.
    let from = monitor_lines(&tend).len();
    idle_rounds_after(&tend, from, 3);
    let (status, _, body) = tend.request_raw("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("tend_server_resident_memory_bytes{") && l.contains("\"web\"")),
        "{text}"
    );
}

#[test]
fn a_server_with_max_memory_is_sampled_alone_while_nobody_looks() {
    let dir = TempDir::new("idle_limit");
    let port = free_port();
    let mut limited = web("limited", free_port());
    limited["max_memory"] = json!("1G");
    let tend = traced(&dir, json!([web("web", port), limited]));
    tend.wait_status("web", "running");
    tend.wait_status("limited", "running");

    let lines = idle_rounds_after(&tend, 0, 3);
    let idle = since_last_look(&lines);
    let samples: Vec<&String> = idle.iter().filter(|l| l.contains("Sampled")).collect();
    assert!(
        samples.len() >= 3,
        "a sample every round:\n{}",
        idle.join("\n")
    );
    for line in samples {
        assert!(
            line.contains("Sampled 1 servers") && line.contains("all: false"),
            "only the limited server: {line}"
        );
    }
}

#[test]
fn an_sse_client_makes_every_round_sample_until_it_leaves() {
    let dir = TempDir::new("idle_sse");
    let port = free_port();
    let tend = traced(&dir, json!([web("web", port)]));
    tend.wait_status("web", "running");
    idle_rounds_after(&tend, 0, 2);

    let from = monitor_lines(&tend).len();
    let mut reader = SseReader::connect(&tend.url, "/api/events", None);
    assert_eq!(reader.status(), 200);
    // Three stats events: the sample asked for on connect and rounds after it.
    let mut stats = 0;
    while stats < 3 {
        let event = reader
            .next_event(WAIT)
            .expect("a stats event while a client is connected");
        if event.event == "stats" {
            let entries = event.json();
            assert_eq!(entries[0]["id"], "web", "{entries}");
            assert!(entries[0]["rssBytes"].as_u64().is_some_and(|b| b > 0));
            stats += 1;
        }
    }
    let lines = monitor_lines(&tend);
    let looked = lines[from..]
        .iter()
        .filter(|l| l.contains(LOOKED_ROUND))
        .count();
    assert!(looked >= 1, "{}", lines[from..].join("\n"));

    // Gone: the next stats event finds its queue closed, and sampling stops.
    drop(reader);
    let from = monitor_lines(&tend).len();
    let lines = idle_rounds_after(&tend, from, 3);
    let idle = since_last_look(&lines);
    assert!(
        !idle.iter().any(|l| l.contains("Sampled")),
        "sampled after the client left:\n{}",
        idle.join("\n")
    );
}
