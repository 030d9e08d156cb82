//! Server groups and merged logs (issue 15): `@group` on the CLI and `group=` in the API act on
//! the members in dependency order; unknown groups are errors naming the known ones; `tend
//! logs` over several servers prints foreman's merged output in the order lines were written,
//! and follows every member across a restart.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::support::{
    SseReader, TempDir, Tend, cli_ok, free_port, send_signal, stderr, stdout, tend_bin, wait_until,
};

/// A server that appends `start ID` to `order` when it starts and `stop ID` when SIGTERM stops
/// it, and listens on `port` (so a dependent starts only after it has written its line).
fn recorded(id: &str, port: u16) -> String {
    format!(
        "echo start {id} >> order; trap 'echo stop {id} >> order; exit 0' TERM; \
         {} serve-demo --port {port} & wait",
        tend_bin().display()
    )
}

fn order(dir: &TempDir) -> Vec<String> {
    dir.read("order").lines().map(str::to_string).collect()
}

fn ids(answer: &Value) -> Vec<&str> {
    answer
        .as_array()
        .unwrap_or_else(|| panic!("an array of servers: {answer}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

#[test]
fn group_actions_follow_dependencies_from_the_cli_and_the_api() {
    let dir = TempDir::new("groups_order");
    let (db, api, web) = (free_port(), free_port(), free_port());
    let config = json!({"servers": [
        {"id": "web", "command": recorded("web", web), "ports": [web], "depends_on": ["api"]},
        {"id": "api", "command": recorded("api", api), "ports": [api], "group": "backend",
         "depends_on": ["db"]},
        {"id": "db", "command": recorded("db", db), "ports": [db], "group": "backend"},
        {"id": "mailer", "command": "exec sleep 1000", "group": "workers"},
    ]});
    let tend = Tend::start(&dir, &config);
    let web_pid = tend.wait_status("web", "running")["pid"].clone();
    tend.wait_status("mailer", "running");
    assert_eq!(tend.server("api")["group"], "backend");
    assert_eq!(tend.server("web")["group"], Value::Null);

    // Stopping a group stops its dependents first; a dependent outside the group is left be.
    dir.write("order", "");
    let out = cli_ok(&tend, &["stop", "@backend"]);
    assert_eq!(out, "api: stopped\ndb: stopped\n");
    assert_eq!(order(&dir), ["stop api", "stop db"]);
    assert_eq!(tend.server("web")["pid"], web_pid, "web was not touched");

    dir.write("order", "");
    let out = cli_ok(&tend, &["start", "@backend"]);
    assert!(out.starts_with("api: running (PID "), "{out}");
    assert!(out.contains("\ndb: running (PID "), "{out}");
    assert_eq!(order(&dir), ["start db", "start api"]);

    // The API: the same path, answering the servers it acted on (config order).
    dir.write("order", "");
    let (status, answer) = tend.post("/api/servers?action=stop&group=backend", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids(&answer), ["api", "db"]);
    assert!(
        answer
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "stopped")
    );
    assert_eq!(order(&dir), ["stop api", "stop db"]);

    // A mix of a group and an id; the running mailer is skipped, not refused.
    dir.write("order", "");
    let (status, answer) = tend.post("/api/servers?action=start&group=backend&id=mailer", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids(&answer), ["api", "db", "mailer"]);
    // The answer comes once api is spawned; its first line is written by then only once its
    // port is open.
    tend.wait_status("api", "running");
    assert_eq!(order(&dir), ["start db", "start api"]);
}

#[test]
fn mixes_of_groups_and_ids_and_unknown_groups() {
    let dir = TempDir::new("groups_mix");
    let config = json!({"servers": [
        {"id": "web", "command": "exec sleep 1000"},
        {"id": "db", "command": "exec sleep 1000", "group": "backend"},
        {"id": "mailer", "command": "exec sleep 1000", "group": "workers"},
        {"id": "cron", "command": "exec sleep 1000", "group": "workers"},
    ]});
    let tend = Tend::start(&dir, &config);
    let pids: Vec<Value> = ["web", "db", "mailer", "cron"]
        .iter()
        .map(|id| tend.wait_status(id, "running")["pid"].clone())
        .collect();

    let out = cli_ok(&tend, &["restart", "@workers", "web"]);
    let lines: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(lines, ["web", "mailer", "cron"], "{out}");
    assert_ne!(tend.server("web")["pid"], pids[0]);
    assert_eq!(tend.server("db")["pid"], pids[1], "db is in neither");
    assert_ne!(tend.server("mailer")["pid"], pids[2]);
    assert_ne!(tend.server("cron")["pid"], pids[3]);

    let table = cli_ok(&tend, &["status", "@workers"]);
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(rows, ["mailer", "cron"], "{table}");
    let listed: Value =
        serde_json::from_str(&cli_ok(&tend, &["status", "--json", "@backend"])).unwrap();
    assert_eq!(ids(&listed), ["db"]);

    let known = "no group 'nope' (known groups: backend, workers)";
    for args in [
        &["restart", "@nope"][..],
        &["stop", "@workers", "@nope"],
        &["status", "@nope"],
        &["logs", "@nope"],
    ] {
        let out = tend.cli(args);
        assert!(!out.status.success(), "tend {args:?} succeeded");
        assert!(
            stderr(&out).contains(known),
            "tend {args:?}: {}",
            stderr(&out)
        );
    }
    let (status, answer) = tend.post("/api/servers?action=restart&group=nope", None);
    assert_eq!(status, 404);
    assert_eq!(answer["code"], "unknown_group");
    assert_eq!(answer["error"], known);
    let (status, answer) = tend.get("/api/logs?group=nope");
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("unknown_group"))
    );
    let (status, answer) = tend.post("/api/servers?action=stop&id=ghost", None);
    assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")));
    let (status, _) = tend.post("/api/servers/web?action=stop&group=workers", None);
    assert_eq!(status, 400, "a path that names a server takes no group");
    assert_eq!(tend.server("mailer")["status"], "running", "nothing moved");
}

/// Waits until the kernel's file clock (coarse: one tick) has moved past `path`'s last write,
/// so the next write gets a later modification time: the condition the merged order rests on.
fn file_clock_passes(dir: &TempDir, path: &Path) {
    let written = fs::metadata(path).unwrap().modified().unwrap();
    wait_until("the file clock to tick", Duration::from_secs(2), || {
        let probe = dir.write("clock-probe", "");
        let now: SystemTime = fs::metadata(probe).unwrap().modified().unwrap();
        (now > written).then_some(())
    });
}

/// `a` and `b` take turns, each line after the test saw the other's: one, two, three, four.
fn turn_taking_config() -> Value {
    json!({"servers": [
        {"id": "a", "group": "chat", "command":
            "echo one; while [ ! -e go2 ]; do sleep 0.02; done; echo three; exec sleep 1000"},
        {"id": "bee", "group": "chat", "command":
            "while [ ! -e go1 ]; do sleep 0.02; done; echo two; \
             while [ ! -e go3 ]; do sleep 0.02; done; echo four; exec sleep 1000"},
        {"id": "quiet", "command": "echo alone; exec sleep 1000"},
    ]})
}

#[test]
fn merged_logs_come_in_the_order_lines_were_written_with_a_prefix() {
    let dir = TempDir::new("groups_merged");
    let tend = Tend::start(&dir, &turn_taking_config());
    let steps = [
        ("a", "one", "go1"),
        ("bee", "two", "go2"),
        ("a", "three", "go3"),
    ];
    for (id, line, next) in steps {
        wait_until(line, Duration::from_secs(5), || {
            tend.log_text(id)
                .contains(&format!("{line}\n"))
                .then_some(())
        });
        file_clock_passes(&dir, &tend.log_dir.join(format!("{id}.log")));
        dir.write(next, "");
    }
    wait_until("four", Duration::from_secs(5), || {
        tend.log_text("bee").contains("four\n").then_some(())
    });
    wait_until("alone", Duration::from_secs(5), || {
        tend.log_text("quiet").contains("alone\n").then_some(())
    });

    // Piped: plain, names padded to the longest.
    let merged = "a   | one\nbee | two\na   | three\nbee | four\n";
    assert_eq!(cli_ok(&tend, &["logs", "@chat"]), merged);
    assert_eq!(cli_ok(&tend, &["logs", "a", "bee"]), merged);
    assert_eq!(
        cli_ok(&tend, &["logs", "@chat", "-n", "2"]),
        "a   | three\nbee | four\n"
    );
    let everything = cli_ok(&tend, &["logs"]);
    assert!(everything.contains("quiet | alone\n"), "{everything}");
    let chat: Vec<&str> = everything
        .lines()
        .filter(|l| !l.starts_with("quiet"))
        .collect();
    assert_eq!(
        chat,
        [
            "a     | one",
            "bee   | two",
            "a     | three",
            "bee   | four"
        ]
    );
    // One id stays as it was: the lines alone.
    assert_eq!(cli_ok(&tend, &["logs", "a"]), "one\nthree\n");

    // Coloured when forced (a terminal), plain again under NO_COLOR.
    let coloured = tend
        .cli_command(&["logs", "@chat", "-n", "1"])
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert_eq!(stdout(&coloured), "\x1b[33mbee |\x1b[0m four\n");
    let plain = tend
        .cli_command(&["logs", "@chat", "-n", "1"])
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(stdout(&plain), "bee | four\n");

    let (status, answer) = tend.get("/api/logs?group=chat&lines=10");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ids"], json!(["a", "bee"]));
    let times: Vec<u64> = answer["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["at"].as_u64().unwrap())
        .collect();
    assert_eq!(times.len(), 4);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

#[test]
fn follow_merged_logs_across_a_restart_of_one_member() {
    let dir = TempDir::new("groups_follow");
    let config = json!({"servers": [
        {"id": "a", "group": "chat", "command": "echo a started; exec sleep 1000"},
        {"id": "b", "group": "chat", "command":
            "while [ ! -e go ]; do sleep 0.02; done; echo b went; exec sleep 1000"},
    ]});
    let tend = Tend::start(&dir, &config);
    wait_until("a's line", Duration::from_secs(5), || {
        tend.log_text("a").contains("a started\n").then_some(())
    });
    let mut follow = tend
        .cli_command(&["logs", "-f", "@chat"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tend logs -f @chat");
    let pid = follow.id();
    let (tx, rx) = mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut read_until = |want: &str, times: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.iter().filter(|l| *l == want).count() < times
            && std::time::Instant::now() < deadline
        {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                seen.push(line);
            }
        }
        seen.clone()
    };
    let tail = read_until("a | a started", 1);
    let (status, _) = tend.act("a", "restart");
    let after_restart = if status == 200 {
        read_until("a | a started", 2)
    } else {
        Vec::new()
    };
    // The streams behind `tend logs -f` (every server) and the dashboard's group log.
    let mut every = SseReader::connect(&tend.url, "/api/events?logs=*", None);
    let mut group = SseReader::connect(&tend.url, "/api/events?group=chat", None);
    assert_eq!((every.status(), group.status()), (200, 200));
    let unknown = SseReader::connect(&tend.url, "/api/events?group=nope", None);
    assert_eq!(unknown.status(), 404);
    dir.write("go", "");
    let all = read_until("b | b went", 1);
    for stream in [&mut every, &mut group] {
        let event = stream.wait_for("log", Duration::from_secs(10), |e| {
            e.json()["line"] == "b went"
        });
        assert_eq!(event.json()["id"], "b");
        assert!(event.json()["at"].as_u64().unwrap() > 0);
    }
    send_signal(pid as i32, libc::SIGKILL);
    let _ = follow.wait();
    assert_eq!(status, 200);
    assert!(tail.contains(&"a | a started".to_string()), "{tail:?}");
    assert_eq!(
        after_restart
            .iter()
            .filter(|l| *l == "a | a started")
            .count(),
        2,
        "the restarted member's new line: {after_restart:?}"
    );
    assert!(all.contains(&"b | b went".to_string()), "{all:?}");
}
