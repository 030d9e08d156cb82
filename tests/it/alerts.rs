//! Alerts (docs/DESIGN.md §12): real receivers for each target. An `exec` rule that writes what
//! it gets to a file; a webhook to a local HTTP server that answers 500 twice, then 200; a real
//! Alertmanager (Debian's `prometheus-alertmanager`, installed by tests/tools/debian-package.sh
//! when missing) on a loopback port; the rate limit through a crash loop; a hung `exec` killed
//! at its timeout while another rule's alert goes out; `tend alerts test`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    TempDir, Tend, WAIT, ensure_debian_package, free_port, pid_alive, read_text, send_signal,
    try_http_request, wait_until,
};

/// A server that runs until killed, and is not restarted.
fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": ["sleep", "300"], "restart": "no"})
}

fn wait_outcome(tend: &Tend, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, WAIT, || {
        tend.alert_outcomes().into_iter().find(|o| pred(o))
    })
}

/// Kills `id`'s process with SIGKILL; returns its PID.
fn kill9_server(tend: &Tend, id: &str) -> u32 {
    let server = tend.wait_status(id, "running");
    let pid = server["pid"].as_u64().unwrap() as u32;
    send_signal(pid as i32, libc::SIGKILL);
    pid
}

fn lines(path: &Path) -> Vec<String> {
    read_text(path).lines().map(str::to_string).collect()
}

#[test]
fn an_exec_rule_gets_the_event_as_json_and_variables() {
    let dir = TempDir::new("alerts-exec");
    let got = dir.join("got.jsonl");
    let vars = dir.join("vars.txt");
    let script = format!(
        "cat >> {}; printf '%s|%s|%s|%s\\n' \"$TEND_EVENT\" \"$TEND_SERVER\" \"$TEND_PID\" \"$TEND_REASON\" >> {}; echo said-on-stdout",
        got.display(),
        vars.display()
    );
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("web")],
                "alerts": [{"on": ["processDied"], "exec": script}]}),
    );
    let pid = kill9_server(&tend, "web");
    let line = wait_until("the alert command's file", WAIT, || {
        lines(&got).into_iter().next()
    });
    let alert: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(alert["event"], "processDied");
    assert_eq!(alert["server"], "web");
    assert_eq!(alert["pid"], pid);
    assert_eq!(alert["reason"], "killed by SIGKILL");
    assert_eq!(
        alert["summary"],
        format!("web died: killed by SIGKILL (PID {pid})")
    );
    assert_eq!(alert["heldBack"], 0);
    assert_eq!(alert["test"], false);
    assert!(alert["at"].as_str().unwrap().ends_with('Z'), "{alert}");
    let vars = wait_until("the variables", WAIT, || lines(&vars).into_iter().next());
    assert_eq!(vars, format!("processDied|web|{pid}|killed by SIGKILL"));
    let sent = wait_outcome(&tend, "the sent outcome", |o| o["result"] == "sent");
    assert_eq!(
        sent,
        json!({"id": "web", "rule": 1, "target": "exec", "alert": "processDied",
               "result": "sent", "detail": "exit code 0"})
    );
    // Its output goes to tend's log.
    wait_until("the command's output in tend's log", WAIT, || {
        tend.stderr_text().contains("said-on-stdout").then_some(())
    });
    // Exactly one alert: a server that is not restarted dies once.
    assert_eq!(lines(&got).len(), 1);
}

/// A local HTTP receiver answering each POST with the next status of `statuses` (the last one
/// for every later request); keeps the bodies.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        let statuses = statuses.to_vec();
        // Ends with the test process: it holds no process and only a loopback socket.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = {
                    let mut bodies = kept.lock().unwrap();
                    bodies.push(String::from_utf8(body).unwrap());
                    statuses[(bodies.len() - 1).min(statuses.len() - 1)]
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

#[test]
fn a_webhook_is_tried_again_until_it_answers() {
    let dir = TempDir::new("alerts-webhook");
    let receiver = Receiver::start(&[500, 500, 200]);
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("web")],
                "alerts": [{"on": ["processDied"], "webhook": format!("{}/hook?k=1", receiver.url)}]}),
    );
    let pid = kill9_server(&tend, "web");
    let sent = wait_outcome(&tend, "the webhook delivered", |o| o["result"] == "sent");
    assert_eq!(sent["detail"], "HTTP 500, HTTP 500, then HTTP 200");
    // Three tries, one delivery: the outcome is recorded after the third answer.
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:#?}");
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    let alert: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(
        (alert["event"].clone(), alert["pid"].clone()),
        (json!("processDied"), json!(pid))
    );
    assert_eq!(tend.alert_outcomes().len(), 1);
}

#[test]
fn a_crash_loop_sends_one_death_and_one_fatal_and_the_next_says_how_many_were_held() {
    let dir = TempDir::new("alerts-crash-loop");
    let got = dir.join("got.txt");
    let repeat_ms = 4000;
    let tend = Tend::start(
        &dir,
        &json!({"servers": [{"id": "loop", "command": ["sh", "-c", "exit 1"],
                             "max_restarts": 3, "backoff_ms": 50, "retry_fatal_ms": 0}],
                "alerts": [{"on": ["processDied", "fatal"], "repeat_ms": repeat_ms,
                            "exec": format!("echo \"$TEND_EVENT $TEND_HELD_BACK\" >> {}", got.display())}]}),
    );
    tend.wait_status("loop", "fatal");
    let first_sent = Instant::now();
    wait_until("the fatal alert", WAIT, || {
        lines(&got)
            .iter()
            .any(|l| l.starts_with("fatal"))
            .then_some(())
    });
    assert_eq!(lines(&got), ["processDied 0", "fatal 0"]);
    let held = tend
        .alert_outcomes()
        .into_iter()
        .filter(|o| o["result"] == "heldBack")
        .count();
    assert_eq!(held, 1, "one timeline note per held-back run");
    let (_, history) = tend.get("/api/history?server=loop&limit=1000");
    let deaths = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "processDied")
        .count();
    assert_eq!(deaths, 4, "the first run and three restarts");
    let metrics = tend.request_raw("GET", "/metrics", &[], b"").2;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(&format!(
            "tend_alerts_total{{result=\"held_back\"}} {}",
            deaths - 1
        )),
        "{metrics}"
    );
    // Once repeat_ms has passed, the next death is sent and carries the three held back.
    wait_until("repeat_ms to pass", WAIT, || {
        (first_sent.elapsed() >= Duration::from_millis(repeat_ms)).then_some(())
    });
    let (status, body) = tend.act("loop", "start");
    assert!(status == 200 || status == 500, "{status} {body}");
    wait_until("the next death's alert", WAIT, || {
        (lines(&got).len() >= 3).then_some(())
    });
    assert_eq!(lines(&got)[2], "processDied 3");
}

#[test]
fn recovered_is_sent_once_a_server_stays_up_and_not_in_a_crash_loop() {
    let dir = TempDir::new("alerts-recovered");
    let got = dir.join("got.txt");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [{"id": "web", "command": ["sleep", "300"]},
                            {"id": "loop", "command": ["sh", "-c", "sleep 0.3; exit 1"],
                             "max_restarts": 4, "backoff_ms": 50, "retry_fatal_ms": 0}],
                "alerts": [{"on": ["recovered"], "repeat_ms": 0,
                            "exec": format!("echo \"$TEND_SERVER $TEND_REASON\" >> {}", got.display())}]}),
    );
    // The crash loop runs for moments between its deaths and ends fatal: never "recovered".
    tend.wait_status("loop", "fatal");
    let first = kill9_server(&tend, "web");
    let killed = Instant::now();
    tend.wait_server("web", "running again", |s| {
        s["status"] == "running" && s["pid"] != first
    });
    let line = wait_until("web's recovery", WAIT, || lines(&got).into_iter().next());
    assert_eq!(line, "web running again for 5 s");
    assert!(
        killed.elapsed() >= Duration::from_secs(5),
        "sent before the hold"
    );
    // The loop's last start was longer ago than web's: a recovery of it would be out by now.
    assert_eq!(lines(&got), ["web running again for 5 s"]);
}

#[test]
fn a_hung_exec_is_killed_at_its_timeout_and_other_rules_go_on() {
    let dir = TempDir::new("alerts-hung");
    let hung_pid = dir.join("hung.pid");
    let got = dir.join("got.txt");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("web")],
        "alerts": [
            {"on": ["processDied"], "timeout_ms": 1500,
             "exec": format!("echo $$ > {}; exec sleep 300", hung_pid.display())},
            {"on": ["processDied"], "exec": format!("echo $TEND_EVENT >> {}", got.display())}
        ]}),
    );
    kill9_server(&tend, "web");
    wait_until("the other rule's alert", WAIT, || {
        (lines(&got) == ["processDied"]).then_some(())
    });
    let pid: u32 = wait_until("the hung command's PID", WAIT, || {
        read_text(&hung_pid).trim().parse().ok()
    });
    let failed = wait_outcome(&tend, "the hung rule's failure", |o| {
        o["result"] == "failed"
    });
    assert_eq!(failed["rule"], 1);
    assert_eq!(
        failed["detail"],
        "timed out after 1500 ms; its process group was killed"
    );
    wait_until("the hung command gone", WAIT, || {
        (!pid_alive(pid)).then_some(())
    });
    // The other rule's delivery did not wait for the hung one.
    let all = tend.alert_outcomes();
    let sent_at = all
        .iter()
        .position(|o| o["rule"] == 2 && o["result"] == "sent");
    let failed_at = all
        .iter()
        .position(|o| o["rule"] == 1 && o["result"] == "failed");
    assert!(sent_at < failed_at, "{all:#?}");
    assert_eq!(tend.get("/api/servers").0, 200);
}

#[test]
fn alerts_test_fires_every_rule_and_prints_each_result() {
    let dir = TempDir::new("alerts-test-cli");
    let got = dir.join("got.jsonl");
    let closed = free_port();
    let tend = Tend::start(
        &dir,
        &json!({"servers": [],
        "alerts": [
            {"on": ["fatal"], "exec": format!("cat >> {}", got.display())},
            {"on": ["fatal"], "webhook": format!("http://127.0.0.1:{closed}/x"), "timeout_ms": 800}
        ]}),
    );
    let output = tend.cli(&["alerts", "test"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), 2, "{stdout}");
    assert!(printed[0].starts_with("rule 1 (exec cat >> "), "{stdout}");
    assert!(printed[0].ends_with("): sent: exit code 0"), "{stdout}");
    assert!(
        printed[1].starts_with(&format!(
            "rule 2 (webhook http://127.0.0.1:{closed}/x): FAILED: connection refused"
        )),
        "{stdout}"
    );
    let alert: Value = serde_json::from_str(&lines(&got)[0]).unwrap();
    assert_eq!(
        (alert["event"].clone(), alert["test"].clone()),
        (json!("test"), json!(true))
    );

    // Without rules, the CLI says there are none.
    let bare = TempDir::new("alerts-test-none");
    let plain = Tend::start(&bare, &json!({"servers": []}));
    let output = plain.cli(&["alerts", "test"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no alert rules"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Debian's Alertmanager on a loopback port with its own folder, stopped by PID (its group) on
/// drop.
struct Alertmanager {
    child: Child,
    url: String,
}

impl Alertmanager {
    fn start(dir: &TempDir) -> Alertmanager {
        ensure_debian_package("prometheus-alertmanager", &["prometheus-alertmanager"]);
        let config = dir.write(
            "alertmanager.yml",
            "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
        );
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
            let child = Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.join("am-data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // No cluster: it would listen on 0.0.0.0:9094 and look for peers.
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("spawn prometheus-alertmanager");
            let mut am = Alertmanager {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Some(status)) = am.child.try_wait() {
                    let log = dir.read("alertmanager.log");
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("alertmanager exited ({status}):\n{log}");
                }
                let ready = try_http_request(&am.url, "GET", "/-/ready", &[], b"", WAIT);
                if matches!(ready, Ok((200, _, _))) {
                    return am;
                }
                assert!(
                    Instant::now() < deadline,
                    "alertmanager not ready:\n{}",
                    dir.read("alertmanager.log")
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("alertmanager found no free port in three tries");
    }

    /// The alerts it holds as active now (`GET /api/v2/alerts` leaves resolved ones out).
    fn alerts(&self) -> Vec<Value> {
        let (status, _, body) =
            try_http_request(&self.url, "GET", "/api/v2/alerts", &[], b"", WAIT).unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        send_signal(-pid, libc::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                send_signal(-pid, libc::SIGKILL);
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn alertmanager_shows_a_death_and_its_resolution() {
    let dir = TempDir::new("alerts-alertmanager");
    let am = Alertmanager::start(&dir);
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("web")],
                "alerts": [{"on": ["processDied"], "alertmanager": am.url}]}),
    );
    let pid = kill9_server(&tend, "web");
    let alert = wait_until("the alert in Alertmanager", WAIT, || {
        am.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "TendProcessDied")
    });
    let labels = &alert["labels"];
    assert_eq!(labels["server"], "web");
    assert_eq!(labels["severity"], "warning");
    assert_eq!(labels["job"], "tend");
    assert!(
        labels["instance"].as_str().is_some_and(|h| !h.is_empty()),
        "{alert}"
    );
    assert_eq!(
        alert["annotations"]["summary"],
        format!("web died: killed by SIGKILL (PID {pid})")
    );
    assert_eq!(alert["status"]["state"], "active");

    let (status, body) = tend.act("web", "start");
    assert_eq!(status, 200, "{body}");
    wait_until("the alert resolved", WAIT, || {
        am.alerts()
            .iter()
            .all(|a| a["labels"]["alertname"] != "TendProcessDied")
            .then_some(())
    });
    let resolved = wait_outcome(&tend, "the resolution sent", |o| o["alert"] == "resolved");
    assert_eq!(
        (resolved["result"].clone(), resolved["target"].clone()),
        (json!("sent"), json!("alertmanager"))
    );
}
