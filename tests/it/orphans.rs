//! Orphans (docs/DESIGN.md §3, §8): a configured port held from outside a server's own process tree is
//! reported with the holder's PID, blocks a start, and can be killed through the API; nothing
//! else can be killed that way.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    GroupGuard, Listener, SseReader, TempDir, Tend, WAIT, demo_cmd, free_port, group_members,
    pid_alive, send_signal, tend_bin, wait_until,
};

/// A stopped server that would listen on `port`.
fn idle_web(port: u16) -> Value {
    json!({"servers": [{"id": "web", "command": demo_cmd(&["--port", &port.to_string()]),
                        "ports": [port], "autostart": false}]})
}

fn wait_orphaned_by(tend: &Tend, id: &str, pid: u32) -> Value {
    tend.wait_server(id, &format!("orphaned by PID {pid}"), |s| {
        s["orphaned"] == true && s["orphanedPid"] == pid
    })
}

fn kill_body(tend: &Tend, body: Value) -> (u16, Value) {
    tend.delete("/api/kill", Some(&body.to_string()))
}

#[test]
fn orphan_on_a_stopped_servers_port_is_reported_and_blocks_start() {
    let dir = TempDir::new("orphan_reported");
    let port = free_port();
    let listener = Listener::start(port);
    let tend = Tend::start(&dir, &idle_web(port));
    let server = wait_orphaned_by(&tend, "web", listener.pid);
    assert_eq!(server["status"], "stopped", "{server:#}");
    assert_eq!(server["ports"][0]["port"], port, "{server:#}");
    assert_eq!(server["ports"][0]["ownerPid"], listener.pid, "{server:#}");
    assert_eq!(server["ports"][0]["open"], true, "{server:#}");
    // Why it cannot be adopted names the PID the person sees, even when the reason is about
    // another process (the listener is not a session leader: its session's leader is judged).
    let server = tend.wait_server("web", "the orphan judged", |s| {
        s["notAdoptable"].is_string()
    });
    let why = server["notAdoptable"].as_str().unwrap();
    assert!(why.contains(&format!("PID {}", listener.pid)), "{why}");

    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "orphan_holds_port", "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&listener.pid.to_string()),
        "the error does not name the PID: {body}"
    );
    assert_eq!(tend.server("web")["status"], "stopped");
    assert!(pid_alive(listener.pid));
}

#[test]
fn kill_by_id_terminates_the_orphan_and_clears_the_flag() {
    let dir = TempDir::new("orphan_kill_id");
    let port = free_port();
    let mut listener = Listener::start(port);
    let tend = Tend::start(&dir, &idle_web(port));
    wait_orphaned_by(&tend, "web", listener.pid);

    let (status, body) = kill_body(&tend, json!({"id": "web"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"pid": listener.pid, "signal": "SIGTERM"}));
    listener.wait_gone(Duration::from_secs(2));
    let server = tend.wait_server("web", "the orphan flag cleared", |s| s["orphaned"] == false);
    assert_eq!(server["orphanedPid"], Value::Null, "{server:#}");
    // The port is free now: the server starts.
    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 200, "{body}");
    tend.wait_status("web", "running");
}

#[test]
fn kill_escalates_to_sigkill_for_an_orphan_that_ignores_term() {
    let dir = TempDir::new("orphan_kill_sigkill");
    let port = free_port();
    let mut listener = Listener::start_ignoring_term(port);
    let tend = Tend::start(&dir, &idle_web(port));
    wait_orphaned_by(&tend, "web", listener.pid);

    let (status, body) = kill_body(&tend, json!({"pid": listener.pid}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"pid": listener.pid, "signal": "SIGKILL"}));
    listener.wait_gone(Duration::from_secs(2));
    tend.wait_server("web", "the orphan flag cleared", |s| s["orphaned"] == false);
}

#[test]
fn kill_refuses_pids_that_are_not_orphans() {
    let dir = TempDir::new("orphan_kill_refused");
    let port = free_port();
    let config = json!({"servers": [{"id": "web", "command": demo_cmd(&["--port", &port.to_string()]),
                                     "ports": [port]}]});
    let tend = Tend::start(&dir, &config);
    let managed = tend.wait_status("web", "running")["pid"].as_u64().unwrap() as u32;
    // A bystander in its own group, holding no port.
    let mut bystander = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard::new(bystander.id());

    for (body, want) in [
        (json!({"pid": managed}), 403),
        (json!({"id": "web", "pid": managed}), 403),
        (json!({"pid": bystander.id()}), 403),
        (json!({"pid": std::process::id()}), 403),
        (json!({"pid": tend.pid}), 403),
        (json!({"pid": 1}), 403),
        (json!({"pid": 0}), 400),
        (json!({"pid": -5}), 400),
    ] {
        let (status, reply) = kill_body(&tend, body.clone());
        assert_eq!(status, want, "{body} -> {reply}");
        assert!(reply["code"].as_str().is_some(), "{body} -> {reply}");
    }
    // The server has no orphan to kill: a conflict, not a kill.
    let (status, reply) = kill_body(&tend, json!({"id": "web"}));
    assert!(status == 409 || status == 403, "{status} {reply}");

    assert!(pid_alive(managed), "the managed server was killed");
    assert!(
        matches!(bystander.try_wait(), Ok(None)),
        "the bystander was killed"
    );
    let server = tend.server("web");
    assert_eq!(server["status"], "running", "{server:#}");
    assert_eq!(server["pid"], managed, "{server:#}");
}

/// An instance that cannot bind behind a stale listener must never be reported healthy, even
/// while it lives: the port answers, but not from its own process tree.
#[test]
fn instance_behind_an_orphan_is_never_healthy() {
    let dir = TempDir::new("orphan_behind");
    let port = free_port();
    // Binds only after 500 ms, and stays alive if the bind fails.
    let config = json!({"servers": [{
        "id": "web",
        "command": format!(
            "sleep 0.5; \"$TEND_BIN\" serve-demo --port {port}; echo bind failed; exec sleep 1000"
        ),
        "ports": [port],
        "autostart": false,
        "start_timeout_ms": 1500,
    }]});
    let tend = Tend::start(&dir, &config);
    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 200, "{body}");
    let listener = Listener::start(port);
    wait_until(
        "the instance to fail its bind",
        Duration::from_secs(5),
        || tend.log_text("web").contains("bind failed").then_some(()),
    );

    let mut seen = Vec::new();
    let last = wait_until(
        "status unhealthy (start grace over)",
        Duration::from_secs(10),
        || {
            let s = tend.server("web");
            seen.push(format!(
                "{} healthy={} orphaned={}",
                s["status"], s["healthy"], s["orphaned"]
            ));
            assert!(
                s["status"] != "running" && s["healthy"] != true,
                "an instance behind an orphan was called healthy: {s:#}"
            );
            (s["status"] == "unhealthy" && s["orphaned"] == true).then_some(s)
        },
    );
    assert_eq!(last["orphanedPid"], listener.pid, "{last:#}");
    assert_eq!(last["ports"][0]["ownerPid"], listener.pid, "{last:#}");
    assert!(
        last["pid"]
            .as_u64()
            .is_some_and(|p| p as u32 != listener.pid),
        "{last:#}"
    );
}

/// The text of `GET /metrics`.
fn metrics_text(tend: &Tend) -> String {
    let (status, _, body) = tend.request_raw("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).into_owned()
}

// See: issue 10, item 3.
#[test]
fn issue_10_workers_of_a_killed_master_are_never_called_orphans() {
    let dir = TempDir::new("orphan_not_own_workers");
    let port = free_port();
    // A prefork server (as gunicorn): the master and its workers all hold the listening socket,
    // and the workers hold some memory, so that dying takes them a moment.
    let command = format!(
        "'{}' serve-demo --print-every-ms 0 --port {port} --workers 4 --worker-mb 32",
        tend_bin().display()
    );
    let config = json!({"health_interval_ms": 100, "servers": [
        {"id": "web", "command": command, "ports": [port], "backoff_ms": 50}
    ]});
    let tend = Tend::start(&dir, &config);
    let master = tend.wait_status("web", "running")["pid"].as_u64().unwrap() as u32;
    let workers = wait_until("the master and its 4 workers", WAIT, || {
        let members = group_members(master);
        (members.len() == 5).then_some(members)
    });
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);

    send_signal(master as i32, libc::SIGKILL);
    // Every event until the server runs again, with none of the old group left: no orphan.
    let deadline = Instant::now() + WAIT;
    let mut current: Option<Value> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(event) = sse.next_event(left) else {
            panic!("no recovery within {WAIT:?}; last server object: {current:#?}");
        };
        assert_ne!(event.event, "orphanDetected", "{}", event.data);
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        let objects = match event.event.as_str() {
            "servers" => data.as_array().cloned().unwrap_or_default(),
            "server" => vec![data],
            _ => Vec::new(),
        };
        for server in objects {
            assert_eq!(server["orphaned"], false, "{server:#}");
            assert_eq!(server["orphanedPid"], Value::Null, "{server:#}");
            current = Some(server);
        }
        let recovered = current.as_ref().is_some_and(|s| {
            s["status"] == "running" && s["pid"].as_u64().is_some_and(|p| p != u64::from(master))
        });
        if recovered && workers.iter().all(|&w| !pid_alive(w)) {
            break;
        }
    }
    // Status and metrics agree, a few rounds later too.
    let rounds_later = Instant::now() + Duration::from_millis(300);
    wait_until("a few health rounds", WAIT, || {
        (Instant::now() >= rounds_later).then_some(())
    });
    let server = tend.server("web");
    assert_eq!(server["orphaned"], false, "{server:#}");
    let metrics = metrics_text(&tend);
    assert!(
        metrics.contains("tend_server_orphaned{server=\"web\"} 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\ntend_orphans 0\n"), "{metrics}");
    let log = std::fs::read_to_string(dir.join("tend.log")).unwrap_or_default();
    assert!(!log.contains("Orphan"), "{log}");
}

// See: issue 10, item 3.
#[test]
fn issue_10_an_orphan_that_goes_away_is_cleared_in_timeline_status_and_metrics() {
    let dir = TempDir::new("orphan_cleared");
    let port = free_port();
    let mut listener = Listener::start(port);
    let tend = Tend::start(&dir, &idle_web(port));
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);
    wait_orphaned_by(&tend, "web", listener.pid);
    assert!(metrics_text(&tend).contains("\ntend_orphans 1\n"));

    // It ends by itself (not through tend): the warning must not outlive it.
    send_signal(-(listener.pid as i32), libc::SIGKILL);
    listener.wait_gone(WAIT);
    let cleared = sse.wait_for("orphanCleared", WAIT, |_| true);
    let data: Value = serde_json::from_str(&cleared.data).unwrap();
    assert_eq!(
        data,
        json!({"id": "web", "pid": listener.pid, "port": port}),
        "{data}"
    );
    let server = tend.wait_server("web", "not orphaned", |s| s["orphaned"] == false);
    assert_eq!(server["orphanedPid"], Value::Null, "{server:#}");
    let metrics = metrics_text(&tend);
    assert!(
        metrics.contains("tend_server_orphaned{server=\"web\"} 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\ntend_orphans 0\n"), "{metrics}");
    let log = std::fs::read_to_string(dir.join("tend.log")).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "Orphan on port {port} of 'web' is gone (was PID {})",
            listener.pid
        )),
        "{log}"
    );
}
