//! Health beyond a live PID and open ports (issue 13): `max_memory` restarts a server whose
//! process group stays over its limit, with the reason on the timeline, in `lastError`, in
//! tend's log and in /metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, demo_cmd, free_port, tend_bin, wait_until};

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

/// The PID tend gave `id`'s first process, from tend's own log. Not from the server's log: a
/// process that grows fast can be over its limit for two rounds, and stopped, before it has
/// written its first line.
fn first_started_pid(tend: &Tend, id: &str) -> u64 {
    let log = tend.stderr_text();
    let mark = format!("Process '{id}' started (PID: ");
    let digits: String = log
        .split(mark.as_str())
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("tend's log names no start of '{id}': {log}"))
}

/// Waits for the memory restart of `id` and checks every place that says why, and that the
/// restarted server (under its limit) is left alone.
fn expect_one_memory_restart(tend: &Tend, id: &str) -> Value {
    let restarted = tend.wait_server_for(id, "a memory restart", MEMORY_WAIT, |s| {
        s["status"] == "running" && s["restarts"] == 1
    });
    let first_pid = first_started_pid(tend, id);
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

/// A tiny HTTP server for health checks: answers every GET with the status written in the
/// file `status` beside it (200 when the file is missing).
const STATUS_SERVER: &str = r#"
import http.server, sys
port, status_file = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            code = int(open(status_file).read().strip())
        except (OSError, ValueError):
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
print("listening", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

/// Listens and never accepts: connects complete (the kernel queues them), requests are never
/// read, and no answer ever comes.
const SILENT_SERVER: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("listening", flush=True)
time.sleep(100000)
"#;

fn python(dir: &TempDir, name: &str, script: &str, args: &[&str]) -> Value {
    let path = dir.write(name, script);
    let mut command = vec![json!("python3"), json!("-u"), json!(path)];
    command.extend(args.iter().map(|a| json!(a)));
    Value::Array(command)
}

fn set_status(dir: &TempDir, status: u16) {
    dir.write("status", &status.to_string());
}

fn health_of(server: &Value) -> (bool, String) {
    let health = &server["health"];
    (
        health["ok"].as_bool().unwrap_or(false),
        health["detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn an_http_check_gates_readiness_and_dependents_then_marks_failures_unhealthy() {
    let dir = TempDir::new("health-http");
    let port = free_port();
    let port_text = port.to_string();
    let status_file = dir.join("status");
    set_status(&dir, 503);
    let web = python(
        &dir,
        "status_server.py",
        STATUS_SERVER,
        &[&port_text, status_file.to_str().unwrap()],
    );
    let config = json!({
        "servers": [
            {"id": "web", "command": web, "ports": [port],
             "health": {"http": "/healthz", "failures": 2, "interval_ms": 200}},
            {"id": "front", "command": demo_cmd(&[]), "depends_on": ["web"]}
        ]
    });
    let tend = Tend::start(&dir, &config);
    // Listening but answering 503: not ready, so still starting, and its dependent waits.
    let web_now = tend.wait_server("web", "a failed first check", |s| {
        s["health"]["detail"] == "HTTP 503 from /healthz"
    });
    assert_eq!(web_now["status"], "starting", "{web_now:#}");
    assert_eq!(web_now["health"]["ready"], false, "{web_now:#}");
    assert!(web_now["ports"][0]["open"] == true, "{web_now:#}");
    let front = tend.server("front");
    assert_eq!(front["status"], "starting", "{front:#}");
    assert!(front["pid"].is_null(), "{front:#}");

    set_status(&dir, 200);
    let web_now = tend.wait_status("web", "running");
    assert_eq!(
        health_of(&web_now),
        (true, "HTTP 200 from /healthz".to_string())
    );
    tend.wait_status("front", "running");

    // Failing after it was ready: unhealthy after two failures in a row, with the reason.
    set_status(&dir, 503);
    let web_now = tend.wait_status("web", "unhealthy");
    assert_eq!(
        health_of(&web_now),
        (false, "HTTP 503 from /healthz".to_string())
    );
    assert!(
        web_now["health"]["failures"].as_u64().unwrap() >= 2,
        "{web_now:#}"
    );
    let log = tend.stderr_text();
    assert!(
        log.contains(
            "Health check of 'web' failed: HTTP 503 from /healthz (1 in a row; unhealthy at 2)"
        ),
        "{log}"
    );
    assert!(
        log.contains("Server 'web' is unhealthy: HTTP 503 from /healthz"),
        "{log}"
    );

    set_status(&dir, 200);
    let web_now = tend.wait_status("web", "running");
    assert_eq!(web_now["health"]["failures"], 0, "{web_now:#}");
    assert_eq!(web_now["restarts"], 0, "{web_now:#}");

    let failures = metric(
        &tend,
        "tend_server_health_probe_failures_total{server=\"web\"}",
    );
    let probes = metric(&tend, "tend_server_health_probes_total{server=\"web\"}");
    assert!(failures >= Some(3.0), "{failures:?}");
    assert!(probes > failures, "{probes:?} {failures:?}");
    assert!(
        metric(
            &tend,
            "tend_server_health_probe_duration_seconds{server=\"web\"}"
        )
        .is_some()
    );
    assert_eq!(
        metric(&tend, "tend_server_health_probes_total{server=\"front\"}"),
        None
    );
}

#[test]
fn a_server_that_never_answers_times_out_without_delaying_another_probe() {
    let dir = TempDir::new("health-silent");
    let (silent_port, good_port) = (free_port(), free_port());
    let silent = python(
        &dir,
        "silent.py",
        SILENT_SERVER,
        &[&silent_port.to_string()],
    );
    let status_file = dir.join("status");
    let good = python(
        &dir,
        "status_server.py",
        STATUS_SERVER,
        &[&good_port.to_string(), status_file.to_str().unwrap()],
    );
    let health = |port: u16| {
        json!({"http": format!("http://127.0.0.1:{port}/healthz"), "timeout_ms": 1000,
               "interval_ms": 300})
    };
    let config = json!({
        "servers": [
            {"id": "silent", "command": silent, "ports": [silent_port],
             "health": health(silent_port), "start_timeout_ms": 2500},
            {"id": "good", "command": good, "ports": [good_port], "health": health(good_port)}
        ]
    });
    let tend = Tend::start(&dir, &config);
    let silent_now = tend.wait_server("silent", "a timed-out check", |s| {
        s["health"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("timed out"))
    });
    assert_eq!(
        silent_now["health"]["detail"],
        "timed out after 1000 ms (/healthz)"
    );
    assert!(silent_now["health"]["durationMs"].as_u64().unwrap() >= 1000);
    // The good server's probes run in the same batches as the silent one's and still end as
    // soon as it answers.
    let good_now = tend.wait_status("good", "running");
    assert!(good_now["health"]["ok"] == true, "{good_now:#}");
    let durations: Vec<u64> = (0..3)
        .map(|_| {
            let at = tend.server("good")["health"]["at"].as_u64().unwrap();
            let next = tend.wait_server("good", "its next probe", |s| {
                s["health"]["at"].as_u64().is_some_and(|t| t > at)
            });
            next["health"]["durationMs"].as_u64().unwrap()
        })
        .collect();
    assert!(durations.iter().all(|&ms| ms < 900), "{durations:?}");
    // Never ready within start_timeout_ms: unhealthy, and it says why.
    let silent_now = tend.wait_status("silent", "unhealthy");
    assert_eq!(
        silent_now["health"]["detail"],
        "timed out after 1000 ms (/healthz)"
    );
}

#[test]
fn restart_unhealthy_after_ms_restarts_a_failing_server_and_says_why() {
    let dir = TempDir::new("health-restart");
    let port = free_port();
    let status_file = dir.join("status");
    let web = python(
        &dir,
        "status_server.py",
        STATUS_SERVER,
        &[&port.to_string(), status_file.to_str().unwrap()],
    );
    let config = json!({
        "servers": [
            {"id": "web", "command": web, "ports": [port],
             "health": {"http": "/", "failures": 1, "interval_ms": 100,
                        "restart_unhealthy_after_ms": 300}}
        ]
    });
    let tend = Tend::start(&dir, &config);
    let first = tend.wait_status("web", "running");
    set_status(&dir, 500);
    tend.wait_status("web", "unhealthy");
    // Healthy again once restarted (the file says 200 by then).
    let restarted = tend.wait_server("web", "a restart", |s| s["restarts"] == 1);
    set_status(&dir, 200);
    let running = tend.wait_server("web", "running again", |s| {
        s["status"] == "running" && s["pid"] != first["pid"]
    });
    let reason = running["lastError"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("unhealthy for ")
            && reason.ends_with(" ms (HTTP 500 from /): restarted"),
        "{restarted:#} {running:#}"
    );
}

#[test]
fn bad_health_keys_are_config_errors_with_line_and_column() {
    let dir = TempDir::new("health-check");
    let config = dir.write(
        "tend.json",
        "{\"servers\": [\n  {\"id\": \"web\", \"command\": \"x\", \"max_memory\": \"12Q\",\n   \
         \"health\": {\"http\": \"http://10.0.0.1/\"}}\n]}\n",
    );
    let out = std::process::Command::new(tend_bin())
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = config.display();
    assert!(
        stderr.contains(&format!(
            "{file}:2:47: max_memory in server 'web': unknown unit 'Q'"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:3:23: health.http in server 'web': '10.0.0.1' is not a loopback address"
        )),
        "{stderr}"
    );
}

#[test]
fn a_log_check_is_ready_at_its_line_and_its_dependent_waits_for_it() {
    let dir = TempDir::new("health-log");
    let slow = json!([
        "/bin/sh",
        "-c",
        "echo booting; sleep 1; echo 'server ready'; exec sleep 1000"
    ]);
    let config = json!({
        "servers": [
            {"id": "slow", "command": slow, "health": {"log": "^server (ready|up)$"}},
            {"id": "after", "command": demo_cmd(&[]), "depends_on": ["slow"]}
        ]
    });
    let tend = Tend::start(&dir, &config);
    let waiting = tend.wait_server("slow", "a live process", |s| s["pid"].is_u64());
    assert_eq!(waiting["status"], "starting", "{waiting:#}");
    assert_eq!(
        health_of(&waiting),
        (
            false,
            "no line matched /^server (ready|up)$/ yet".to_string()
        )
    );
    let after = tend.server("after");
    assert!(after["pid"].is_null(), "{after:#}");

    let ready = tend.wait_status("slow", "running");
    assert_eq!(
        health_of(&ready),
        (
            true,
            "line matched /^server (ready|up)$/: server ready".to_string()
        )
    );
    // It was starting until the line, a second after it started.
    assert!(
        ready["health"]["durationMs"].as_u64().unwrap() >= 1000,
        "{ready:#}"
    );
    let after = tend.wait_status("after", "running");
    let after_started = after["startTime"].as_u64().unwrap();
    assert!(
        after_started >= ready["health"]["at"].as_u64().unwrap() - 50,
        "{after:#} {ready:#}"
    );

    // A restart waits for a new line: the one in the log already is the last process's.
    let (status, _) = tend.act("slow", "restart");
    assert_eq!(status, 200);
    let again = tend.wait_server("slow", "a new process", |s| {
        s["pid"].is_u64() && s["pid"] != ready["pid"]
    });
    assert_eq!(again["status"], "starting", "{again:#}");
    let again = tend.wait_status("slow", "running");
    assert!(
        again["health"]["durationMs"].as_u64().unwrap() >= 1000,
        "{again:#}"
    );
}

#[test]
fn probes_that_keep_timing_out_do_not_keep_the_monitor_from_new_servers() {
    let dir = TempDir::new("health-starve");
    let (silent_port, web_port) = (free_port(), free_port());
    let silent = python(
        &dir,
        "silent.py",
        SILENT_SERVER,
        &[&silent_port.to_string()],
    );
    let config = json!({
        "servers": [
            // Starting for a long while, probed every 100 ms, and each probe takes a second.
            {"id": "silent", "command": silent, "ports": [silent_port],
             "health": {"http": "/", "timeout_ms": 1000}, "start_timeout_ms": 60000},
            {"id": "web", "command": demo_cmd(&["--port", &web_port.to_string()]),
             "ports": [web_port], "autostart": false, "start_timeout_ms": 60000}
        ]
    });
    let tend = Tend::start(&dir, &config);
    tend.wait_server("silent", "a timed-out check", |s| {
        s["health"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("timed out"))
    });
    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 200, "{body}");
    // The monitor must learn of the new process between batches, or its port is never seen.
    let web = tend.wait_status("web", "running");
    assert!(web["ports"][0]["open"] == true, "{web:#}");
}
