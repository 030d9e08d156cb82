//! History (docs/DESIGN.md §12): what happened before anyone looked is in `tend events` and
//! `GET /api/history`, and still there after tend restarts; `tend events -f` follows; a
//! corrupt history file is kept aside, not lost.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use serde_json::{Value, json};

use crate::support::{GroupGuard, TempDir, Tend, WAIT, send_signal, wait_until};

fn events(tend: &Tend, query: &str) -> Vec<Value> {
    let (status, body) = tend.get(&format!("/api/history{query}"));
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

#[test]
fn a_death_nobody_saw_is_in_the_history_and_survives_a_restart_of_tend() {
    let dir = TempDir::new("history-restart");
    let config = json!({"servers": [{"id": "db", "command": ["sleep", "300"], "restart": "no"}]});
    let mut tend = Tend::start(&dir, &config);
    let pid = tend.wait_status("db", "running")["pid"].as_u64().unwrap();
    send_signal(pid as i32, libc::SIGKILL);
    tend.wait_status("db", "crashed");

    let died = format!("db  processDied  died: killed by SIGKILL (PID {pid})");
    let journal = wait_until("the death in `tend events`", WAIT, || {
        let output = tend.cli(&["events", "-n", "100"]);
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        text.contains(&died).then_some(text)
    });
    assert!(journal.contains("tend  tendStarted  tend "), "{journal}");
    let death = events(&tend, "?server=db")
        .into_iter()
        .find(|e| e["event"] == "processDied")
        .expect("the death in the API");
    assert_eq!(death["data"]["exitSignal"], "SIGKILL");
    assert!(death["at"].as_u64().unwrap() > 1_700_000_000_000, "{death}");

    tend.terminate();
    let history_file = dir.join("state/history.json");
    let stored = std::fs::read_to_string(&history_file).unwrap();
    assert!(stored.contains("\"tendStopping\""), "{stored}");

    let again = Tend::start(&dir, &config);
    let output = again.cli(&["events", "db", "-n", "1000"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&died), "{text}");
    assert!(
        text.lines().all(|l| l.contains("  db  ")),
        "only db's events:\n{text}"
    );
    let all = events(&again, "?limit=1000");
    let starts = all.iter().filter(|e| e["event"] == "tendStarted").count();
    assert_eq!(starts, 2, "{all:#?}");
    // Ids keep growing across runs: the history is in order.
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Nothing of a child's environment goes into it.
    assert!(!stored.contains("TEND_SERVER_ID"), "{stored}");

    let (status, body) = again.get("/api/history?limit=ten");
    assert_eq!(status, 400, "{body}");
    assert_eq!(events(&again, "?limit=2").len(), 2);
    let (status, _) = again.get("/api/history?server=nope");
    assert_eq!(status, 404);
}

#[test]
fn a_corrupt_history_file_is_moved_aside_and_said_so() {
    let dir = TempDir::new("history-corrupt");
    dir.write("state/history.json", "{\"version\": 1, \"events\": [");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    let aside: Vec<_> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("history.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        dir.read(&format!("state/{}", aside[0])),
        "{\"version\": 1, \"events\": ["
    );
    let log = tend.stderr_text();
    assert!(
        log.contains("History file") && log.contains("is corrupt") && log.contains(&aside[0]),
        "{log}"
    );
    // tend started with an empty history and writes a fresh one.
    wait_until("a fresh history file", WAIT, || {
        dir.read("state/history.json")
            .contains("tendStarted")
            .then_some(())
    });
}

#[test]
fn events_follow_prints_new_events_as_they_happen() {
    let dir = TempDir::new("history-follow");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [{"id": "web", "command": ["sleep", "300"], "autostart": false}]}),
    );
    let mut child = tend
        .cli_command(&["events", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard::new(child.id());
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // Once its stream is open, the start can only reach it by the stream.
    wait_until("`tend events -f` connected", WAIT, || {
        let metrics = tend.request_raw("GET", "/metrics", &[], b"").2;
        String::from_utf8_lossy(&metrics)
            .contains("\ntend_sse_clients 1\n")
            .then_some(())
    });
    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 200, "{body}");
    let started = wait_until("the start followed", WAIT, || {
        lines
            .try_iter()
            .find(|line| line.contains("  web  serverStarted  started (PID "))
    });
    assert!(started.len() > 20, "{started}");
    send_signal(-(child.id() as i32), libc::SIGKILL);
    let _ = child.wait();
}
