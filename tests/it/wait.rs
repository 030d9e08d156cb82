//! `tend start|stop|restart` wait until the server is running (or stopped) and say why not
//! (issue 10, point 6): against a server that comes up late, one that crashes, one that never
//! opens its port, and `--all`.

use std::process::Output;

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, free_port, port_open, stderr, stdout, tend_bin};

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "tend {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// A server that opens `port` only after a while, as a real one that loads before it listens.
/// The sleep is the fixture's behaviour, not the test's way of waiting.
fn late_listener(id: &str, port: u16) -> Value {
    json!({
        "id": id,
        "command": format!(
            "sleep 0.5; exec '{}' serve-demo --port {port} --print-every-ms 0",
            tend_bin().display()
        ),
        "ports": [port],
        "autostart": false,
    })
}

// See: issue 10 (`tend restart redis && redis-cli ping` failed: the CLI returned first).
#[test]
fn start_and_restart_return_once_the_port_is_open() {
    let dir = TempDir::new("wait_up");
    let port = free_port();
    let tend = Tend::start(&dir, &json!({"servers": [late_listener("web", port)]}));

    let out = tend.cli(&["start", "web"]);
    assert!(
        out.status.success(),
        "{}",
        describe(&["start", "web"], &out)
    );
    // No waiting here: the command itself waited.
    assert!(port_open(port), "start returned before port {port} opened");
    let server = tend.server("web");
    assert_eq!(server["status"], "running", "{server:#}");
    let first = server["pid"].as_u64().unwrap();
    assert_eq!(stdout(&out), format!("web: running (PID {first})\n"));

    let out = tend.cli(&["restart", "web", "--timeout", "30"]);
    assert!(out.status.success(), "{}", describe(&["restart"], &out));
    assert!(
        port_open(port),
        "restart returned before port {port} opened"
    );
    let server = tend.server("web");
    assert_eq!(server["status"], "running", "{server:#}");
    assert_ne!(server["pid"].as_u64().unwrap(), first, "a new process");

    let out = tend.cli(&["stop", "web", "--wait"]);
    assert!(out.status.success(), "{}", describe(&["stop"], &out));
    assert_eq!(tend.server("web")["status"], "stopped");
    assert_eq!(stdout(&out), "web: stopped\n");
}

#[test]
fn no_wait_returns_while_the_server_is_still_starting() {
    let dir = TempDir::new("wait_no_wait");
    let port = free_port();
    let tend = Tend::start(&dir, &json!({"servers": [late_listener("web", port)]}));
    let out = tend.cli(&["start", "web", "--no-wait"]);
    assert!(out.status.success(), "{}", describe(&["--no-wait"], &out));
    // The fixture sleeps half a second before it listens, far longer than the answer takes.
    assert!(
        stdout(&out).starts_with("web: starting (PID "),
        "{}",
        stdout(&out)
    );
    tend.wait_status("web", "running");
}

#[test]
fn a_server_that_crashes_before_it_is_up_fails_the_start_and_says_why() {
    let dir = TempDir::new("wait_crash");
    let port = free_port();
    let tend = Tend::start(
        &dir,
        &json!({"servers": [
            // The restart policy starts it again at once: the wait must still see the crash.
            {"id": "flaky", "command": "sleep 0.2; echo 'no config'; exit 3", "ports": [port],
             "autostart": false, "backoff_ms": 100, "max_restarts": 2},
            {"id": "once", "command": "exit 4", "ports": [free_port()], "autostart": false,
             "restart": "no"},
        ]}),
    );
    let args = ["start", "flaky"];
    let out = tend.cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    let err = stderr(&out);
    assert!(
        err.starts_with("tend: 'flaky' crashed before it was running")
            && err.contains("exit code 3"),
        "{}",
        describe(&args, &out)
    );
    assert_eq!(stdout(&out), "", "no line claims it is up");

    let args = ["restart", "once"];
    let out = tend.cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    let err = stderr(&out);
    assert!(
        err.contains("'once' crashed before it was running") && err.contains("exit code 4"),
        "{}",
        describe(&args, &out)
    );
}

#[test]
fn a_server_that_never_opens_its_port_times_out_or_turns_unhealthy() {
    let dir = TempDir::new("wait_never");
    let (silent, slow) = (free_port(), free_port());
    let tend = Tend::start(
        &dir,
        &json!({"servers": [
            {"id": "silent", "command": "exec sleep 1000", "ports": [silent],
             "autostart": false, "start_timeout_ms": 600000},
            {"id": "quick-judge", "command": "exec sleep 1000", "ports": [slow],
             "autostart": false, "start_timeout_ms": 300},
        ]}),
    );
    let args = ["start", "silent", "--timeout", "1"];
    let out = tend.cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    assert_eq!(
        stderr(&out),
        format!(
            "tend: timed out after 1 s waiting for 'silent' to be running: 'silent' is starting \
             (port {silent} not open yet) (wait longer with --timeout S)\n"
        ),
        "{}",
        describe(&args, &out)
    );
    // The server itself is left as it is: still starting, for tend to judge.
    assert_eq!(tend.server("silent")["status"], "starting");

    // tend's own start timeout comes first: its verdict is the reason.
    let args = ["start", "quick-judge"];
    let out = tend.cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    assert_eq!(
        stderr(&out),
        format!(
            "tend: 'quick-judge' is unhealthy: port {slow} still closed after its start timeout \
             (start_timeout_ms)\n"
        ),
        "{}",
        describe(&args, &out)
    );
}

#[test]
fn all_waits_for_every_server_and_names_the_one_that_fails() {
    let dir = TempDir::new("wait_all");
    let (a, b) = (free_port(), free_port());
    let mut servers = vec![late_listener("a", a), late_listener("b", b)];
    servers.push(json!({"id": "plain", "command": "exec sleep 1000", "autostart": false}));
    let tend = Tend::start(&dir, &json!({ "servers": servers }));

    let out = tend.cli(&["start", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        describe(&["start", "--all"], &out)
    );
    assert!(
        port_open(a) && port_open(b),
        "start --all returned before the ports opened"
    );
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, id) in lines.iter().zip(["a", "b", "plain"]) {
        assert!(
            line.starts_with(&format!("{id}: running (PID ")),
            "{lines:?}"
        );
    }

    let out = tend.cli(&["stop", "--all", "--timeout", "20"]);
    assert!(
        out.status.success(),
        "{}",
        describe(&["stop", "--all"], &out)
    );
    assert_eq!(stdout(&out), "a: stopped\nb: stopped\nplain: stopped\n");

    // A server that cannot come up fails `--all`, by name.
    let dir = TempDir::new("wait_all_fail");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [
            late_listener("good", free_port()),
            {"id": "bad", "command": "sleep 0.2; exit 5", "ports": [free_port()],
             "autostart": false, "restart": "no"},
        ]}),
    );
    let args = ["start", "--all", "--timeout", "30"];
    let out = tend.cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&args, &out));
    assert!(
        stderr(&out).contains("'bad' crashed before it was running") && stderr(&out).contains("5"),
        "{}",
        describe(&args, &out)
    );
}
