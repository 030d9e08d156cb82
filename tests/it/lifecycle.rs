//! Start, stop, restart and spawn failures through the API; dependency order; what a child
//! receives (env, env_file, cwd, never tend's token) and where its output goes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, demo_cmd, free_port, pid_alive, wait_until};

fn demo_server(id: &str, port: u16) -> Value {
    json!({"id": id, "command": demo_cmd(&["--port", &port.to_string()]), "ports": [port]})
}

#[test]
fn api_start_stop_restart_and_their_conflicts() {
    let dir = TempDir::new("api_actions");
    let port = free_port();
    let tend = Tend::start(&dir, &json!({"servers": [demo_server("web", port)]}));
    let first = tend.wait_status("web", "running");
    let old_pid = first["pid"].as_u64().unwrap() as u32;
    assert_eq!(first["healthy"], true, "{first:#}");
    assert_eq!(first["ports"][0]["ownerPid"], old_pid, "{first:#}");

    // A second start of a running server is a conflict, and nothing changes.
    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "already_running", "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(tend.server("web")["pid"], old_pid);

    // Restart: a new process, the old one gone.
    let (status, body) = tend.act("web", "restart");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "web", "{body}");
    let restarted = tend.wait_status("web", "running");
    let new_pid = restarted["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, old_pid, "restart kept the PID: {restarted:#}");
    wait_until("the old process to be gone", Duration::from_secs(5), || {
        (!pid_alive(old_pid)).then_some(())
    });

    // Stop, then stop again: 409.
    let (status, body) = tend.act("web", "stop");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "stopped", "{body}");
    assert_eq!(body["pid"], Value::Null, "{body}");
    assert!(!pid_alive(new_pid), "stopped server still alive");
    let (status, body) = tend.act("web", "stop");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "not_running", "{body}");

    // Restart of a stopped server starts it.
    let (status, body) = tend.act("web", "restart");
    assert_eq!(status, 200, "{body}");
    tend.wait_status("web", "running");
}

#[test]
fn unknown_ids_are_404_not_found() {
    let dir = TempDir::new("unknown_ids");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    for (status, body) in [
        tend.get("/api/servers/nope"),
        tend.act("nope", "start"),
        tend.act("nope", "stop"),
        tend.act("nope", "restart"),
        tend.get("/api/servers/nope/logs?lines=5"),
    ] {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "not_found", "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("nope")),
            "{body}"
        );
    }
}

/// A spawn that fails at once answers 500 spawn_failed with the reason and leaves the server
/// `crashed` with `lastError` (docs/DESIGN.md §8a).
fn assert_spawn_fails(name: &str, server: Value, reason_has: &[&str]) {
    let dir = TempDir::new(name);
    let tend = Tend::start(&dir, &json!({"servers": [server]}));
    assert_eq!(tend.server("bad")["status"], "stopped");
    let (status, body) = tend.act("bad", "start");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "spawn_failed", "{body}");
    let error = body["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason_has.iter().any(|r| error.contains(r)),
        "the error does not give the reason ({reason_has:?}): {body}"
    );
    let after = tend.wait_status("bad", "crashed");
    assert!(
        after["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "no lastError: {after:#}"
    );
    assert_eq!(after["pid"], Value::Null, "{after:#}");
    // tend itself is fine.
    assert_eq!(tend.get("/healthz").0, 200);
}

#[test]
fn spawn_of_missing_program_is_500_spawn_failed_and_crashed() {
    assert_spawn_fails(
        "spawn_missing_program",
        json!({"id": "bad", "command": ["/nonexistent/tend-it-program", "x"],
               "autostart": false, "restart": "no"}),
        &["no such file", "not found", "nonexistent"],
    );
}

#[test]
fn spawn_in_missing_cwd_is_500_spawn_failed_and_crashed() {
    assert_spawn_fails(
        "spawn_missing_cwd",
        json!({"id": "bad", "command": "sleep 1000", "cwd": "no-such-folder",
               "autostart": false, "restart": "no"}),
        &["no such file", "no-such-folder", "cwd", "directory"],
    );
}

/// `db` binds its port only after 600 ms; `app` depends on it. If tend did not wait for the
/// port, `app` would start within a few ms of `db`.
fn dependency_pair(db_port: u16, app_port: u16, autostart: bool) -> Value {
    json!({"servers": [
        {"id": "app", "command": demo_cmd(&["--port", &app_port.to_string()]),
         "ports": [app_port], "depends_on": ["db"], "autostart": autostart},
        {"id": "db",
         "command": format!("sleep 0.6; exec \"$TEND_BIN\" serve-demo --port {db_port}"),
         "ports": [db_port], "autostart": autostart},
    ]})
}

fn assert_started_after_port_opened(tend: &Tend) {
    let app = tend.wait_status("app", "running");
    let db = tend.wait_status("db", "running");
    let db_start = db["startTime"].as_u64().unwrap();
    let app_start = app["startTime"].as_u64().unwrap();
    assert!(
        app_start >= db_start + 600,
        "app started {} ms after db, before db's port could be open\ndb: {db:#}\napp: {app:#}",
        app_start as i64 - db_start as i64
    );
}

#[test]
fn up_starts_dependencies_first_with_their_ports_open() {
    let dir = TempDir::new("depends_on_up");
    let tend = Tend::start(&dir, &dependency_pair(free_port(), free_port(), true));
    assert_started_after_port_opened(&tend);
}

#[test]
fn starting_a_dependent_starts_its_dependency_first() {
    let dir = TempDir::new("depends_on_start");
    let tend = Tend::start(&dir, &dependency_pair(free_port(), free_port(), false));
    assert_eq!(tend.server("db")["status"], "stopped");
    let (status, body) = tend.act("app", "start");
    assert_eq!(status, 200, "{body}");
    assert_started_after_port_opened(&tend);
}

#[test]
fn child_gets_env_env_file_cwd_but_never_tends_token() {
    let dir = TempDir::new("child_env");
    std::fs::create_dir_all(dir.join("work")).unwrap();
    dir.write("vars.env", "FROM_FILE=file\nBOTH=file\n");
    let config = json!({"servers": [{
        "id": "envy",
        "command": "env > env.txt; pwd > pwd.txt; exec sleep 1000",
        "cwd": "work",
        "env_file": "vars.env",
        "env": {"BOTH": "env", "FROM_ENV": "x"},
    }]});
    let tend = Tend::start_with(
        &dir,
        &config,
        &[],
        &[
            ("TEND_TOKEN", "secret-token-xyz"),
            ("TEND_IT_INHERITED", "yes"),
        ],
    );
    tend.wait_status("envy", "running");
    let env = wait_until("the child to write env.txt", Duration::from_secs(5), || {
        let text = dir.read("work/pwd.txt");
        (!text.is_empty()).then(|| dir.read("work/env.txt"))
    });
    let lines: Vec<&str> = env.lines().collect();
    for want in [
        "FROM_FILE=file",
        "BOTH=env",
        "FROM_ENV=x",
        "TEND_IT_INHERITED=yes",
        "TEND_SERVER_ID=envy",
    ] {
        assert!(lines.contains(&want), "child env lacks {want}:\n{env}");
    }
    let bin = format!("TEND_BIN={}", crate::support::tend_bin().display());
    assert!(
        lines.contains(&bin.as_str()),
        "child env lacks {bin}:\n{env}"
    );
    assert!(
        !env.contains("secret-token-xyz") && !env.contains("TEND_TOKEN"),
        "tend's token leaked into the child's environment:\n{env}"
    );
    let pwd = dir.read("work/pwd.txt");
    let want = std::fs::canonicalize(dir.join("work")).unwrap();
    assert_eq!(std::path::Path::new(pwd.trim()), want, "cwd");
    // The API never shows a child's environment either.
    let (_, body) = tend.get("/api/servers");
    assert!(!body.to_string().contains("secret-token-xyz"), "{body}");
}

#[test]
fn child_output_goes_to_its_log_file_and_the_logs_api_tails_it() {
    let dir = TempDir::new("child_logs");
    let config = json!({"servers": [{
        "id": "talk",
        "command": "i=1; while [ $i -le 20 ]; do echo \"out $i\"; echo \"err $i\" >&2; \
                    i=$((i+1)); done; exec sleep 1000",
    }]});
    let tend = Tend::start(&dir, &config);
    wait_until("err 20 in talk.log", Duration::from_secs(5), || {
        tend.log_text("talk").contains("err 20\n").then_some(())
    });
    let log = tend.log_text("talk");
    assert!(log.contains("out 1\nerr 1\nout 2\n"), "{log}");

    let (status, body) = tend.get("/api/servers/talk/logs?lines=5");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "talk");
    assert_eq!(
        body["lines"],
        json!(["err 18", "out 19", "err 19", "out 20", "err 20"]),
        "{body}"
    );
    let (status, body) = tend.get("/api/servers/talk/logs");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lines"].as_array().unwrap().len(), 40, "{body}");
    let (status, body) = tend.get("/api/servers/talk/logs?lines=abc");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn child_keeps_logging_after_tend_is_killed() {
    let dir = TempDir::new("log_after_kill9");
    let config = json!({"servers": [{
        "id": "ticker",
        "command": demo_cmd(&["--print-every-ms", "30"]),
    }]});
    let mut tend = Tend::start(&dir, &config);
    let server = tend.wait_status("ticker", "running");
    let pid = server["pid"].as_u64().unwrap() as u32;
    wait_until("a first line in the log", Duration::from_secs(5), || {
        tend.log_text("ticker").contains("demo: up").then_some(())
    });
    tend.kill9();
    let before = tend.log_text("ticker").len();
    wait_until(
        "the log to grow with tend dead",
        Duration::from_secs(5),
        || (tend.log_text("ticker").len() > before + 20).then_some(()),
    );
    assert!(pid_alive(pid), "the child died with tend");
}
