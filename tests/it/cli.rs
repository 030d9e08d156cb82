//! Every client command against a live `tend up` (docs/DESIGN.md §1), plus `check`, `version`, `help`
//! and the errors a person sees.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Listener, TempDir, Tend, cli_ok, free_port, send_signal, stderr, stdout, tend_bin, wait_until,
    without_moving_fields,
};

fn sleeper(id: &str, autostart: bool) -> Value {
    json!({"id": id, "command": "exec sleep 1000", "autostart": autostart})
}

fn statuses(tend: &Tend) -> Vec<(String, String)> {
    tend.servers()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn cli_status_and_ps_show_every_server() {
    let dir = TempDir::new("cli_status");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("alpha", true), sleeper("beta", false)]}),
    );
    let alpha = tend.wait_status("alpha", "running");
    let pid = alpha["pid"].to_string();
    for command in ["status", "ps"] {
        let table = cli_ok(&tend, &[command]);
        let alpha_row = table
            .lines()
            .find(|l| l.starts_with("alpha"))
            .unwrap_or_default();
        let beta_row = table
            .lines()
            .find(|l| l.starts_with("beta"))
            .unwrap_or_default();
        assert!(
            alpha_row.contains("running") && alpha_row.contains(&pid),
            "{table}"
        );
        assert!(beta_row.contains("stopped"), "{table}");
    }

    let json_out = cli_ok(&tend, &["status", "--json"]);
    let from_cli: Value = serde_json::from_str(&json_out)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {json_out}"));
    let (code, from_api) = tend.get("/api/servers");
    assert_eq!(code, 200);
    assert_eq!(
        without_moving_fields(&from_cli),
        without_moving_fields(&from_api)
    );
}

#[test]
fn cli_start_stop_restart_one_several_and_all() {
    let dir = TempDir::new("cli_actions");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("a", false), sleeper("b", false), sleeper("c", false)]}),
    );
    cli_ok(&tend, &["start", "a"]);
    tend.wait_status("a", "running");
    assert_eq!(
        statuses(&tend)[1..],
        pairs(&[("b", "stopped"), ("c", "stopped")])
    );

    cli_ok(&tend, &["start", "b", "c"]);
    tend.wait_status("b", "running");
    tend.wait_status("c", "running");

    let a_pid = tend.server("a")["pid"].clone();
    cli_ok(&tend, &["restart", "a"]);
    let a = tend.wait_status("a", "running");
    assert_ne!(a["pid"], a_pid, "restart kept the PID");

    cli_ok(&tend, &["stop", "a", "c"]);
    assert_eq!(
        statuses(&tend),
        pairs(&[("a", "stopped"), ("b", "running"), ("c", "stopped")])
    );

    cli_ok(&tend, &["start", "--all"]);
    for id in ["a", "b", "c"] {
        tend.wait_status(id, "running");
    }

    let pids: Vec<Value> = tend.servers().iter().map(|s| s["pid"].clone()).collect();
    cli_ok(&tend, &["restart", "--all"]);
    for (id, old) in ["a", "b", "c"].iter().zip(&pids) {
        let server = tend.wait_status(id, "running");
        assert_ne!(&server["pid"], old, "{server:#}");
    }

    cli_ok(&tend, &["stop", "--all"]);
    assert_eq!(
        statuses(&tend),
        pairs(&[("a", "stopped"), ("b", "stopped"), ("c", "stopped")])
    );
}

#[test]
fn cli_errors_exit_non_zero_with_the_apis_message() {
    let dir = TempDir::new("cli_errors");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("a", true), sleeper("b", false)]}),
    );
    tend.wait_status("a", "running");

    for (args, path) in [
        (vec!["start", "a"], "/api/servers/a?action=start"),
        (vec!["stop", "b"], "/api/servers/b?action=stop"),
        (vec!["start", "nope"], "/api/servers/nope?action=start"),
    ] {
        let out = tend.cli(&args);
        assert!(
            !out.status.success(),
            "tend {args:?} succeeded: {}",
            stdout(&out)
        );
        let (code, body) = tend.post(path, None);
        assert!(code >= 400, "{code} {body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            stderr(&out).contains(message),
            "tend {args:?}: stderr lacks the API's message {message:?}:\n{}",
            stderr(&out)
        );
    }
    let out = tend.cli(&["logs", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn cli_logs_tails_and_follows() {
    let dir = TempDir::new("cli_logs");
    let config = json!({"servers": [{
        "id": "talk",
        "command": "i=1; while [ $i -le 10 ]; do echo \"line $i\"; i=$((i+1)); done; \
                    while [ ! -e go ]; do sleep 0.05; done; echo 'after go'; exec sleep 1000",
    }]});
    let tend = Tend::start(&dir, &config);
    wait_until("line 10 in the log", Duration::from_secs(5), || {
        tend.log_text("talk").contains("line 10\n").then_some(())
    });
    let tail = cli_ok(&tend, &["logs", "talk", "-n", "5"]);
    assert_eq!(tail, "line 6\nline 7\nline 8\nline 9\nline 10\n");
    let tail = cli_ok(&tend, &["logs", "-n", "2", "talk"]);
    assert_eq!(tail, "line 9\nline 10\n");

    let mut follow = tend
        .cli_command(&["logs", "talk", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tend logs -f");
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
    // The tail comes first, then a line written after the follow began.
    let first = rx.recv_timeout(Duration::from_secs(5));
    dir.write("go", "");
    let mut lines = vec![first.clone().unwrap_or_default()];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lines.iter().any(|l| l == "after go") && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            lines.push(line);
        }
    }
    // Stop the follower by its PID before asserting, so a failure leaves nothing running.
    send_signal(pid as i32, libc::SIGKILL);
    let _ = follow.wait();
    assert_eq!(first.ok().as_deref(), Some("line 10"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "after go"),
        "logs -f never printed the new line: {lines:?}"
    );
}

#[test]
fn cli_kill_orphan_kills_the_port_holder() {
    let dir = TempDir::new("cli_kill_orphan");
    let port = free_port();
    let mut listener = Listener::start(port);
    let tend = Tend::start(
        &dir,
        &json!({"servers": [{"id": "web", "command": "exec sleep 1000", "ports": [port],
                             "autostart": false}]}),
    );
    tend.wait_server("web", "orphaned", |s| s["orphanedPid"] == listener.pid);
    let out = cli_ok(&tend, &["kill-orphan", "web"]);
    assert!(out.contains(&listener.pid.to_string()), "{out}");
    listener.wait_gone(Duration::from_secs(2));
    // Nothing left to kill: an error.
    tend.wait_server("web", "not orphaned", |s| s["orphaned"] == false);
    let out = tend.cli(&["kill-orphan", "web"]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn cli_check_accepts_a_good_config_and_points_at_errors() {
    let dir = TempDir::new("cli_check");
    let good = dir.write(
        "good.json",
        r#"{"servers": [{"id": "web", "command": "sleep 1", "ports": [8000]}]}"#,
    );
    let out = Command::new(tend_bin())
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let bad = dir.write(
        "bad.json",
        "{\n  \"servers\": [\n    {\"id\": \"web\", \"command\": \"sleep 1\",\n     \"bogus\": 1}\n  ]\n}\n",
    );
    // --config after the command too.
    let out = Command::new(tend_bin())
        .arg("check")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let located = err.lines().any(|l| {
        l.split_once("bad.json:4:").is_some_and(|(_, rest)| {
            rest.split(':')
                .next()
                .is_some_and(|col| col.parse::<u32>().is_ok())
        })
    });
    assert!(located, "no bad.json:4:COL in: {err}");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn cli_version_and_help() {
    let out = Command::new(tend_bin()).arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        stdout(&out)
    );

    let out = Command::new(tend_bin()).arg("help").output().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    for command in [
        "up",
        "check",
        "status",
        "start",
        "stop",
        "restart",
        "logs",
        "kill-orphan",
    ] {
        assert!(help.contains(command), "help lacks {command}:\n{help}");
    }
    let out = Command::new(tend_bin())
        .args(["logs", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("-f"), "{}", stdout(&out));
}

#[test]
fn cli_url_goes_before_or_after_the_command() {
    let dir = TempDir::new("cli_url_position");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("a", false)]}));
    let before = Command::new(tend_bin())
        .args(["--url", &tend.url, "status", "--json"])
        .output()
        .unwrap();
    let after = Command::new(tend_bin())
        .args(["status", "--json", "--url", &tend.url])
        .output()
        .unwrap();
    for out in [&before, &after] {
        assert!(out.status.success(), "{}", stderr(out));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list[0]["id"], "a");
    }
    let out = Command::new(tend_bin())
        .args(["start", "a", "--url", &tend.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    tend.wait_status("a", "running");
}

#[test]
fn cli_unreachable_url_is_a_clear_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(tend_bin())
        .args(["--url", &url, "status"])
        .env_remove("TEND_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&url) && err.contains("cannot reach"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// See: issue 10 (`tend bogus` printed its "see `tend help`" hint twice).
#[test]
fn cli_usage_errors_point_at_help_once() {
    for args in [
        vec!["bogus"],
        vec!["--bogus", "status"],
        vec!["start"],
        vec!["stop", "a", "--all"],
        vec!["up", "--listen", "localhost"],
        vec!["logs", "web", "-n", "many"],
    ] {
        let out = Command::new(tend_bin())
            .args(&args)
            .env_remove("TEND_URL")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "tend {args:?}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert_eq!(
            err.matches("tend help").count(),
            1,
            "tend {args:?} should point at help once:\n{err}"
        );
        assert_eq!(err.lines().count(), 1, "tend {args:?}:\n{err}");
        assert!(err.starts_with("tend: "), "{err}");
    }
}

// See: issue 10 (a bad depends_on entry was reported at the server object, 5:5).
#[test]
fn cli_check_puts_a_bad_depends_on_at_its_entry() {
    let dir = TempDir::new("cli_check_depends_on");
    let text = "{\n  \"servers\": [\n    {\"id\": \"db\", \"command\": \"sleep 1\"},\n    \
                {\"id\": \"web\", \"command\": \"sleep 1\",\n     \"depends_on\": [\"db\", \
                \"dbb\", \"web\"]}\n  ]\n}\n";
    let config = dir.write("tend.json", text);
    let out = Command::new(tend_bin())
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let at = |needle: &str| -> (usize, usize) {
        let line = err
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no error about {needle} in:\n{err}"));
        let rest = line.split_once("tend.json:").unwrap().1;
        let mut parts = rest.split(':');
        let line_no = parts.next().unwrap().parse().unwrap();
        let col = parts.next().unwrap().parse().unwrap();
        (line_no, col)
    };
    // Line 5 is `     "depends_on": ["db", "dbb", "web"]}`: the entries start at 27 and 34.
    let source_line = text.lines().nth(4).unwrap();
    assert_eq!(
        source_line.find("\"dbb\"").unwrap() + 1,
        27,
        "{source_line}"
    );
    assert_eq!(at("'dbb'"), (5, 27), "{err}");
    assert!(err.contains("did you mean 'db'"), "{err}");
    assert_eq!(at("itself"), (5, 34), "{err}");
}
