//! Restart policies (docs/DESIGN.md §2) as a table of real runs, the instant first restart, the reset
//! on a manual start, and the retry of a `fatal` server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, demo_cmd, free_port, pid_alive, send_signal, wait_until};

/// A server that appends a line to `runs-<id>` on every run, then exits with `code`.
fn counted(id: &str, code: i32, extra: Value) -> Value {
    let mut server = json!({
        "id": id,
        "command": format!("echo run >> runs-{id}; exit {code}"),
        "backoff_ms": 20,
    });
    for (k, v) in extra.as_object().unwrap() {
        server[k] = v.clone();
    }
    server
}

fn runs(dir: &TempDir, id: &str) -> usize {
    dir.read(&format!("runs-{id}")).lines().count()
}

#[test]
fn restart_policies_end_in_the_right_state_after_the_right_runs() {
    struct Case {
        id: &'static str,
        restart: &'static str,
        exit: i32,
        status: &'static str,
        runs: usize,
        restarts: u64,
    }
    #[rustfmt::skip]
    let cases = [
        Case { id: "no-fail",   restart: "no",         exit: 1, status: "crashed", runs: 1, restarts: 0 },
        Case { id: "no-clean",  restart: "no",         exit: 0, status: "exited",  runs: 1, restarts: 0 },
        Case { id: "of-clean",  restart: "on-failure", exit: 0, status: "exited",  runs: 1, restarts: 0 },
        Case { id: "of-fail",   restart: "on-failure", exit: 1, status: "fatal",   runs: 3, restarts: 2 },
        Case { id: "al-fail",   restart: "always",     exit: 1, status: "fatal",   runs: 3, restarts: 2 },
    ];
    let dir = TempDir::new("restart_policies");
    let servers: Vec<Value> = cases
        .iter()
        .map(|c| {
            counted(
                c.id,
                c.exit,
                json!({"restart": c.restart, "max_restarts": 2}),
            )
        })
        .collect();
    let tend = Tend::start(&dir, &json!({ "servers": servers }));
    for case in &cases {
        let server = tend.wait_status(case.id, case.status);
        // One more round trip through the supervisor after the final state: a restart that
        // should not happen would have been decided by now.
        let again = tend.server(case.id);
        assert_eq!(again["status"], case.status, "{}: {again:#}", case.id);
        assert_eq!(server["restarts"], case.restarts, "{}: {server:#}", case.id);
        assert_eq!(
            runs(&dir, case.id),
            case.runs,
            "{}: number of runs",
            case.id
        );
        let code = if case.exit == 0 {
            json!(0)
        } else {
            json!(case.exit)
        };
        assert_eq!(server["exitCode"], code, "{}: {server:#}", case.id);
    }
}

/// Under `always` a run shorter than 10 s is a failure whatever its exit code (docs/DESIGN.md §2), so
/// quick clean exits are restarted and, after `max_restarts`, end `fatal`.
#[test]
fn restart_always_restarts_quick_clean_exits_until_fatal() {
    let dir = TempDir::new("restart_always_clean");
    let config = json!({"servers": [
        counted("al-clean", 0, json!({"restart": "always", "max_restarts": 2})),
    ]});
    let mut tend = Tend::start(&dir, &config);
    wait_until("three runs", Duration::from_secs(5), || {
        (runs(&dir, "al-clean") >= 3).then_some(())
    });
    let server = tend.wait_status("al-clean", "fatal");
    assert_eq!(server["restarts"], 2, "{server:#}");
    assert_eq!(server["exitCode"], 0, "{server:#}");
    assert_eq!(runs(&dir, "al-clean"), 3);
    assert!(
        tend.try_status().is_none(),
        "tend died:\n{}",
        tend.stderr_text()
    );
}

#[test]
fn first_failure_restarts_at_once_with_a_new_pid() {
    let dir = TempDir::new("restart_at_once");
    let port = free_port();
    let config = json!({"servers": [{
        "id": "web",
        "command": demo_cmd(&["--port", &port.to_string()]),
        "ports": [port],
        "backoff_ms": 5000,
    }]});
    let tend = Tend::start(&dir, &config);
    let old = tend.wait_status("web", "running")["pid"].as_u64().unwrap() as u32;
    send_signal(old as i32, libc::SIGKILL);
    // Well within backoff_ms: the first failure must not wait for it.
    let server = tend.wait_server_for("web", "a new live PID", Duration::from_secs(2), |s| {
        s["pid"]
            .as_u64()
            .is_some_and(|p| p as u32 != old && pid_alive(p as u32))
    });
    assert_eq!(server["restarts"], 1, "{server:#}");
    let server = tend.wait_status("web", "running");
    assert_eq!(server["restarts"], 1, "{server:#}");
}

#[test]
fn manual_start_resets_restarts() {
    let dir = TempDir::new("restart_reset");
    // Fails on its first two runs, then stays up.
    let config = json!({"servers": [{
        "id": "flaky",
        "command": "echo run >> runs; [ $(wc -l < runs) -ge 3 ] && exec sleep 1000; exit 1",
        "max_restarts": 1,
        "backoff_ms": 20,
    }]});
    let tend = Tend::start(&dir, &config);
    let fatal = tend.wait_status("flaky", "fatal");
    assert_eq!(fatal["restarts"], 1, "{fatal:#}");
    assert_eq!(dir.read("runs").lines().count(), 2);

    let (status, body) = tend.act("flaky", "start");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["restarts"], 0,
        "a manual start did not reset restarts: {body:#}"
    );
    let running = tend.wait_status("flaky", "running");
    assert_eq!(running["restarts"], 0, "{running:#}");
}

#[test]
fn fatal_server_is_retried_after_retry_fatal_ms() {
    let dir = TempDir::new("restart_retry_fatal");
    let config = json!({"servers": [{
        "id": "flaky",
        "command": "echo run >> runs; [ $(wc -l < runs) -ge 3 ] && exec sleep 1000; exit 1",
        "max_restarts": 1,
        "backoff_ms": 20,
        "retry_fatal_ms": 500,
    }]});
    let tend = Tend::start(&dir, &config);
    tend.wait_status("flaky", "fatal");
    assert_eq!(dir.read("runs").lines().count(), 2);
    // Nobody touches it: tend brings it back by itself.
    let running = tend.wait_status("flaky", "running");
    assert!(running["pid"].as_u64().is_some(), "{running:#}");
    wait_until("the third run", Duration::from_secs(2), || {
        (dir.read("runs").lines().count() == 3).then_some(())
    });
}
