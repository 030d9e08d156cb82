//! The fleet (issue 17, docs/DESIGN.md §12 "Fleet"): contrib/prometheus and contrib/grafana proven
//! against the real thing. `promtool` checks the rules and runs their unit tests; then Debian's
//! own `prometheus` binary, started as a plain process on a loopback port with the example
//! config (contrib/prometheus/prometheus.yml, its targets and intervals replaced), scrapes two
//! tends standing for two hosts, each with its own folder, port and token. Through Prometheus's
//! HTTP API the test sees both hosts' servers with their labels, a `kill -9` counted as a
//! restart, the stopped-server, orphan, crash-loop and tend-down alerts fire (and no other),
//! every recording rule and every Grafana panel query return series.
//!
//! Alert durations: the rules say `for: 30m` where a person should not be paged sooner, which
//! no test can wait for. The live test loads a copy of alerting-rules.yml with every `for:` set
//! to 2 s, so it still goes through pending to firing; the real durations are what the promtool
//! unit tests (contrib/prometheus/tests) check, on a simulated clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Listener, TempDir, Tend, demo_cmd, ensure_prometheus_tools, free_port, http_request,
    send_signal, try_http_request,
};

/// Prometheus scrapes every second and evaluates rules every second here, but the machine is
/// shared with the rest of the suite: conditions get a generous deadline.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);
/// The `for:` of every alert in the live test's copy of the rules.
const TEST_FOR: &str = "2s";

fn contrib(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel)
}

fn read_contrib(rel: &str) -> String {
    let path = contrib(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `promtool ARGS…` and returns its output; fails the test, with that output, unless it
/// exits 0.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} ({}):\n{said}",
        args.join(" "),
        output.status
    );
    said
}

/// `text` with `from` replaced by `to`, which must occur exactly once: the example config is
/// edited by these replacements, and a changed example must fail here, not test something else.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    let count = text.matches(from).count();
    assert_eq!(
        count, 1,
        "expected {from:?} once in the example, found it {count} times"
    );
    text.replacen(from, to, 1)
}

/// The alerts of a rules file, each with the text of its `expr:` and `summary:` lines, read
/// line by line (the files are written one key per line, which this relies on).
fn alerts_in(rules: &str) -> BTreeMap<String, (String, String)> {
    let mut alerts = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            current = Some(name.to_string());
            alerts.insert(name.to_string(), (String::new(), String::new()));
        } else if let Some(name) = &current {
            let entry = alerts.get_mut(name).unwrap();
            if let Some(expr) = line.strip_prefix("expr: ") {
                entry.0 = expr.to_string();
            } else if let Some(summary) = line.strip_prefix("summary: ") {
                entry.1 = summary.to_string();
            }
        }
    }
    alerts
}

#[test]
fn promtool_checks_the_rules_and_every_alert_has_unit_tests() {
    ensure_prometheus_tools();
    let checked = promtool(&[
        "check",
        "rules",
        contrib("prometheus/recording-rules.yml").to_str().unwrap(),
        contrib("prometheus/alerting-rules.yml").to_str().unwrap(),
    ]);
    assert_eq!(checked.matches("SUCCESS").count(), 2, "{checked}");
    // `check rules` prints its lint findings (duplicate rules, ...) even when it succeeds.
    assert!(!checked.contains("WARNING"), "{checked}");

    let tested = promtool(&[
        "test",
        "rules",
        contrib("prometheus/tests/alerting-rules.test.yml")
            .to_str()
            .unwrap(),
    ]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert is unit-tested, both ways: some test case expects it and some test case
    // expects it silent (`exp_alerts: []`) at a time when its input is there.
    let rules = read_contrib("prometheus/alerting-rules.yml");
    let tests = read_contrib("prometheus/tests/alerting-rules.test.yml");
    let alerts = alerts_in(&rules);
    assert!(alerts.len() >= 9, "{alerts:?}");
    for (name, (expr, summary)) in &alerts {
        let cases: Vec<&str> = tests
            .split(&format!("alertname: {name}\n"))
            .skip(1)
            .map(|rest| rest.split("alertname:").next().unwrap())
            .collect();
        assert!(
            cases
                .iter()
                .any(|c| c.trim_start().starts_with("exp_alerts: []")),
            "{name}: no test case expects it silent"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")),
            "{name}: no test case expects it to fire"
        );
        // Each summary names the host, and the server when the alert is about one.
        assert!(summary.contains("$labels.instance"), "{name}: {summary}");
        if expr.contains("tend_server_") {
            assert!(summary.contains("$labels.server"), "{name}: {summary}");
        }
    }

    // The example config is valid as Prometheus reads it (promtool also checks that its
    // credentials files and rule files exist, so they are put beside a copy).
    let dir = TempDir::new("fleet_check_config");
    for file in [
        "prometheus.yml",
        "recording-rules.yml",
        "alerting-rules.yml",
    ] {
        dir.write(file, &read_contrib(&format!("prometheus/{file}")));
    }
    dir.write("tend.token", "a-token\n");
    dir.write("lab-1.token", "another-token\n");
    let checked = promtool(&[
        "check",
        "config",
        dir.join("prometheus.yml").to_str().unwrap(),
    ]);
    assert!(
        checked.contains("is valid prometheus config file syntax"),
        "{checked}"
    );
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus.

/// `prometheus` as a plain process in its own process group, listening on 127.0.0.1 only, with
/// its config and database in a test folder. Stopped by PID (SIGTERM, then SIGKILL to its group
/// after a deadline) when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on `<dir>/prometheus.yml` and waits until it is ready. A port taken
    /// between [`free_port`] and Prometheus's bind makes it exit at once: then another port.
    fn start(dir: &TempDir) -> Prometheus {
        for _ in 0..3 {
            let port = free_port();
            let log = fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=debug")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("spawn prometheus");
            let mut prometheus = Prometheus {
                child,
                url: format!("http://127.0.0.1:{port}"),
                dir: dir.path.clone(),
            };
            let deadline = Instant::now() + PROMETHEUS_WAIT;
            loop {
                if let Ok(Some(status)) = prometheus.child.try_wait() {
                    let log = dir.read("prometheus.log");
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("prometheus exited ({status}) before it was ready:\n{log}");
                }
                let ready = try_http_request(
                    &prometheus.url,
                    "GET",
                    "/-/ready",
                    &[],
                    b"",
                    Duration::from_secs(2),
                );
                if matches!(ready, Ok((200, _, _))) {
                    return prometheus;
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus was not ready within {PROMETHEUS_WAIT:?}:\n{}",
                    dir.read("prometheus.log")
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("prometheus found no free port in three tries");
    }

    /// `GET path` of the HTTP API; the `data` of a `"status": "success"` answer.
    fn api(&self, path: &str) -> Value {
        let (status, _, body) = http_request(&self.url, "GET", path, &[], b"");
        let answer: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert!(
            status == 200 && answer["status"] == "success",
            "GET {path}: {status} {answer}"
        );
        answer["data"].clone()
    }

    /// An instant query: the result vector, each `{metric: {labels}, value: [time, "v"]}`.
    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(promql)));
        assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        data["result"].as_array().unwrap().clone()
    }

    /// Polls `promql` until its result satisfies `pred`; panics with the last result.
    fn wait_query(&self, promql: &str, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        loop {
            let result = self.query(promql);
            if pred(&result) {
                return result;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {PROMETHEUS_WAIT:?} waiting for {what} ({promql}); last \
                     result: {result:#?}\nfiring alerts: {:#?}",
                    self.api("/api/v1/alerts")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The alerts Prometheus holds now, pending and firing.
    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Ok(None) = self.child.try_wait() {
            send_signal(pid as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                send_signal(-(pid as i32), libc::SIGKILL);
                let _ = self.child.wait();
            }
        }
        if thread::panicking() {
            eprintln!(
                "prometheus's log: {}",
                self.dir.join("prometheus.log").display()
            );
        }
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters pass).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or("")
}

fn sample(series: &Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

/// `(alertname, instance, server)` of each alert in `state` ("firing" or "pending").
fn alert_keys(alerts: &[Value], state: &str) -> BTreeSet<(String, String, String)> {
    alerts
        .iter()
        .filter(|a| a["state"] == state)
        .map(|a| {
            let l = &a["labels"];
            let text = |name: &str| l[name].as_str().unwrap_or("").to_string();
            (text("alertname"), text("instance"), text("server"))
        })
        .collect()
}

fn key(alert: &str, instance: &str, server: &str) -> (String, String, String) {
    (alert.into(), instance.into(), server.into())
}

/// Every PromQL expression of a Grafana dashboard (panel targets, in rows too), with the
/// panel's title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| {
                    panic!("panel {title:?}: a target without a PromQL expr: {target}")
                });
                out.push((title.clone(), expr.to_string()));
            }
            walk(panel["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().unwrap(), &mut out);
    out
}

/// A panel query as Grafana sends it with "All" chosen for the host and server variables
/// (their `allValue` is `.*`) and the rate interval it computes for a 1 s scrape (at least four
/// scrapes; a minute keeps it well above that on a busy machine).
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$instance", ".*")
        .replace("$server", ".*")
        .replace("$__rate_interval", "1m")
}

/// Checks the dashboard's shape: unique panel ids, every panel and target on the
/// `${datasource}` variable, panels inside the 24-column grid and not on top of each other.
fn check_dashboard_layout(dashboard: &Value) {
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap().to_string();
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate id: {title}"
        );
        let g = &panel["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        assert!(x >= 0 && w > 0 && x + w <= 24 && h > 0, "{title}: {g}");
        for (other, ox, oy, ow, oh) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "panels {title:?} and {other:?} overlap");
        }
        boxes.push((title.clone(), x, y, w, h));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance", "server"]);
}

/// A tend standing for one host: its own folder, port and token, a `web` that listens and
/// whatever else `servers` adds.
fn start_host(name: &str, servers: Value, auth_token: Value) -> (TempDir, Tend) {
    let dir = TempDir::new(&format!("fleet_{name}"));
    let mut tend = Tend::start(&dir, &json!({"auth_token": auth_token, "servers": servers}));
    // The token the API wants: the one given, or the one tend generated beside its state file.
    let token = match auth_token.as_str() {
        Some(token) => token.to_string(),
        None => fs::read_to_string(tend.state_file.with_file_name("token"))
            .expect("the generated token file")
            .trim()
            .to_string(),
    };
    tend.token = Some(token);
    (dir, tend)
}

fn web_server(port: u16, extra: Value) -> Value {
    let mut server = json!({"id": "web", "command": demo_cmd(&["--port", &port.to_string()]),
                            "ports": [port]});
    server
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    server
}

#[test]
fn a_real_prometheus_watches_two_tends_and_alerts_on_them() {
    ensure_prometheus_tools();

    // Host web-1 shares the fleet's token (job "tend"): a web that will be killed three times
    // (a short backoff keeps the loop quick), a worker without ports, and `held`, stopped and
    // with its port held by an orphan.
    let held_port = free_port();
    let orphan = Listener::start(held_port);
    let web1_port = free_port();
    let fleet_token = format!("fleet-token-{}", std::process::id());
    let (_web1_dir, web1) = start_host(
        "web-1",
        json!([
            web_server(web1_port, json!({"backoff_ms": 100})),
            {"id": "worker", "command": ["sleep", "1000"]},
            {"id": "held", "command": demo_cmd(&["--port", &held_port.to_string()]),
             "ports": [held_port], "autostart": false},
        ]),
        json!(fleet_token),
    );
    // Host lab-1 has a token of its own, the one tend generated (job "tend-lab-1", relabelled
    // to "tend"): a web, and an api that a person stops.
    let lab1_port = free_port();
    let (_lab1_dir, mut lab1) = start_host(
        "lab-1",
        json!([
            web_server(lab1_port, json!({})),
            {"id": "api", "command": ["sleep", "1000"]},
        ]),
        Value::Null,
    );
    web1.wait_status("web", "running");
    web1.wait_status("worker", "running");
    web1.wait_server("held", "orphaned", |s| {
        s["status"] == "stopped" && s["orphanedPid"] == orphan.pid
    });
    lab1.wait_status("web", "running");
    lab1.wait_status("api", "running");
    let (status, body) = lab1.act("api", "stop");
    assert_eq!(status, 200, "{body}");
    lab1.wait_status("api", "stopped");

    // Prometheus on the example config: the targets are the two tends and, for web-2, a port
    // nobody listens on (a host that is down); every second; the rules' `for:` shortened.
    let prom_dir = TempDir::new("fleet_prometheus");
    let mut config = read_contrib("prometheus/prometheus.yml");
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_string(),
        ),
        // Nothing listens there: Prometheus logs that it cannot send, which is all.
        (
            "\"127.0.0.1:9093\"",
            format!("\"127.0.0.1:{}\"", free_port()),
        ),
        (
            "\"web-1.example.net:7070\"",
            format!("\"127.0.0.1:{}\"", web1.port),
        ),
        (
            "\"web-2.example.net:7070\"",
            format!("\"127.0.0.1:{}\"", free_port()),
        ),
        (
            "\"127.0.0.1:17070\"",
            format!("\"127.0.0.1:{}\"", lab1.port),
        ),
        (
            "credentials_file: lab-1.token",
            format!(
                "credentials_file: {}",
                lab1.state_file.with_file_name("token").display()
            ),
        ),
    ] {
        config = replace_once(&config, from, &to);
    }
    prom_dir.write("prometheus.yml", &config);
    prom_dir.write("tend.token", &format!("{fleet_token}\n"));
    prom_dir.write(
        "recording-rules.yml",
        &read_contrib("prometheus/recording-rules.yml"),
    );
    let alerting = read_contrib("prometheus/alerting-rules.yml");
    let shortened: Vec<String> = alerting
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!(
                "{}for: {TEST_FOR}",
                &line[..line.len() - line.trim_start().len()]
            ),
            None => line.to_string(),
        })
        .collect();
    assert_eq!(
        shortened
            .iter()
            .filter(|l| l.trim_start().starts_with("for: "))
            .count(),
        alerts_in(&alerting).len(),
        "every alert has a `for:` line"
    );
    prom_dir.write("alerting-rules.yml", &(shortened.join("\n") + "\n"));
    let prometheus = Prometheus::start(&prom_dir);

    // Both tends are scraped, with the token each wants, under job "tend"; web-2 is down.
    let up = prometheus.wait_query("up", "three targets scraped", |r| {
        r.len() == 3 && r.iter().filter(|s| sample(s) == 1.0).count() == 2
    });
    let up: BTreeMap<(&str, &str), f64> = up
        .iter()
        .map(|s| ((label(s, "job"), label(s, "instance")), sample(s)))
        .collect();
    assert_eq!(
        up,
        BTreeMap::from([
            (("tend", "lab-1"), 1.0),
            (("tend", "web-1"), 1.0),
            (("tend", "web-2"), 0.0),
        ])
    );

    // Every server of both hosts, labelled with its host and its own name.
    let servers = prometheus.query("tend_server_up");
    let servers: BTreeMap<(&str, &str), f64> = servers
        .iter()
        .map(|s| {
            assert_eq!(label(s, "job"), "tend", "{s}");
            ((label(s, "instance"), label(s, "server")), sample(s))
        })
        .collect();
    assert_eq!(
        servers,
        BTreeMap::from([
            (("lab-1", "api"), 0.0),
            (("lab-1", "web"), 1.0),
            (("web-1", "held"), 0.0),
            (("web-1", "web"), 1.0),
            (("web-1", "worker"), 1.0),
        ])
    );
    let status_of = |instance: &str, server: &str| {
        let q = format!("tend_server_status{{instance=\"{instance}\", server=\"{server}\"}} == 1");
        prometheus
            .query(&q)
            .first()
            .map(|s| label(s, "status").to_string())
    };
    assert_eq!(status_of("lab-1", "api").as_deref(), Some("stopped"));
    assert_eq!(status_of("web-1", "worker").as_deref(), Some("running"));
    let orphaned = prometheus.query("tend_server_orphaned == 1");
    assert_eq!(orphaned.len(), 1, "{orphaned:#?}");
    assert_eq!(
        (
            label(&orphaned[0], "instance"),
            label(&orphaned[0], "server")
        ),
        ("web-1", "held")
    );

    // kill -9 of web-1's web: tend restarts it, and Prometheus sees the restart.
    let restarts_q = "tend_server_restarts_total{instance=\"web-1\", server=\"web\"}";
    for round in 1..=3 {
        let pid = web1.server("web")["pid"].as_u64().expect("web's PID") as u32;
        send_signal(pid as i32, libc::SIGKILL);
        web1.wait_server_for(
            "web",
            &format!("restart {round} running"),
            PROMETHEUS_WAIT,
            |s| s["restarts"] == round && s["status"] == "running" && s["pid"] != pid,
        );
        if round == 1 {
            prometheus.wait_query(restarts_q, "the first restart", |r| {
                r.len() == 1 && sample(&r[0]) == 1.0
            });
        }
    }
    prometheus.wait_query(restarts_q, "three restarts", |r| {
        r.len() == 1 && sample(&r[0]) == 3.0
    });

    // The alerts that must fire, and no other: nothing is crashed, fatal or unhealthy, no
    // state write failed, no log byte was lost, no connection was turned away.
    let expected = BTreeSet::from([
        key("TendDown", "web-2", ""),
        key("TendServerStopped", "lab-1", "api"),
        key("TendServerStopped", "web-1", "held"),
        key("TendServerOrphaned", "web-1", "held"),
        key("TendServerCrashLooping", "web-1", "web"),
    ]);
    let deadline = Instant::now() + PROMETHEUS_WAIT;
    let alerts = loop {
        let alerts = prometheus.alerts();
        if alert_keys(&alerts, "firing").is_superset(&expected) {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the alerts {expected:#?}; now: {alerts:#?}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alert_keys(&alerts, "firing"), expected, "{alerts:#?}");
    for alert in alerts.iter().filter(|a| a["state"] == "firing") {
        let labels = &alert["labels"];
        let summary = alert["annotations"]["summary"].as_str().unwrap();
        let instance = labels["instance"].as_str().unwrap();
        assert!(summary.contains(instance), "{alert:#}");
        if let Some(server) = labels["server"].as_str() {
            assert!(
                summary.contains(&format!("{server} on {instance}")),
                "{alert:#}"
            );
        }
        assert!(labels["severity"].is_string(), "{alert:#}");
    }

    // Every recording rule gives series.
    let recording = read_contrib("prometheus/recording-rules.yml");
    let records: Vec<&str> = recording
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .collect();
    assert_eq!(records.len(), 6, "{records:?}");
    for record in records {
        prometheus.wait_query(record, &format!("recording rule {record}"), |r| {
            !r.is_empty()
        });
    }

    // Every panel query of the Grafana dashboard returns series, and its variables have values.
    let dashboard: Value = serde_json::from_str(&read_contrib("grafana/tend-fleet.json"))
        .expect("tend-fleet.json is JSON");
    check_dashboard_layout(&dashboard);
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:#?}");
    for (title, expr) in &queries {
        let promql = as_grafana_sends(expr);
        prometheus.wait_query(&promql, &format!("panel {title:?}"), |r| !r.is_empty());
    }
    let hosts = prometheus.api(&format!(
        "/api/v1/label/instance/values?match[]={}",
        encode("up{job=\"tend\"}")
    ));
    assert_eq!(hosts, json!(["lab-1", "web-1", "web-2"]));
    let names = prometheus.api(&format!(
        "/api/v1/label/server/values?match[]={}",
        encode("tend_server_up{job=\"tend\", instance=~\".*\"}")
    ));
    assert_eq!(names, json!(["api", "held", "web", "worker"]));

    // A tend that goes away is a host down.
    lab1.terminate();
    let deadline = Instant::now() + PROMETHEUS_WAIT;
    loop {
        let alerts = prometheus.alerts();
        if alert_keys(&alerts, "firing").contains(&key("TendDown", "lab-1", "")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lab-1's tend stopped but TendDown never fired for it: {alerts:#?}"
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Stopped by PID; the tends and the orphan by their own guards.
    drop(prometheus);
}

// ---------------------------------------------------------------------------------------------
// `tend status` across hosts.

/// `tend ARGS…` run in `home` (also its HOME), with no token or URL from the test's own
/// environment unless `token` is given, and no colours.
fn fleet_cli(home: &TempDir, args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(crate::support::tend_bin());
    command
        .args(args)
        .current_dir(&home.path)
        .env("HOME", &home.path)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("TEND_TOKEN")
        .env_remove("TEND_URL")
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.env("TEND_TOKEN", token);
    }
    let output = command.output().expect("run the tend CLI");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The table's rows as `(HOST, ID, STATUS, NOTE)`, after checking its header.
fn table_rows(stdout: &str) -> Vec<(String, String, String, String)> {
    let mut lines = stdout.lines();
    let header = lines.next().expect("a header");
    let words: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "HOST", "ID", "STATUS", "PID", "UPTIME", "RESTARTS", "PORTS", "CPU%", "MEM", "NOTE"
        ],
        "{stdout}"
    );
    let note_at = header.find("NOTE").unwrap();
    lines
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let note = line.get(note_at..).unwrap_or("").trim().to_string();
            (words[0].into(), words[1].into(), words[2].into(), note)
        })
        .collect()
}

fn row(host: &str, id: &str, status: &str) -> (String, String, String) {
    (host.into(), id.into(), status.into())
}

#[test]
fn status_across_hosts_is_one_table_and_a_dead_host_is_a_row() {
    let web1_port = free_port();
    let web1_token = format!("web-1-token-{}", std::process::id());
    let (_web1_dir, web1) = start_host(
        "cli_web-1",
        json!([
            web_server(web1_port, json!({})),
            {"id": "worker", "command": ["sleep", "1000"]},
        ]),
        json!(web1_token),
    );
    let lab1_port = free_port();
    let (_lab1_dir, lab1) = start_host(
        "cli_lab-1",
        json!([web_server(lab1_port, json!({"autostart": false}))]),
        Value::Null,
    );
    web1.wait_status("web", "running");
    web1.wait_status("worker", "running");
    let dead = format!("127.0.0.1:{}", free_port());

    // The hosts file: names, a token file in the home folder, tend's own generated token file,
    // and a host with neither (TEND_TOKEN, here none) that is down.
    let home = TempDir::new("fleet_cli_home");
    home.write("web-1.token", &format!("{web1_token}\n"));
    let lab1_token_file = lab1.state_file.with_file_name("token");
    let hosts = home.write(
        ".config/tend/hosts",
        &format!(
            "# name  url  token file\n\
             web-1 {}  ~/web-1.token   # the front\n\
             \n\
             lab-1 {} {}\n\
             http://{dead}\n",
            web1.url,
            lab1.url,
            lab1_token_file.display()
        ),
    );
    let hosts = hosts.to_str().unwrap();
    let (code, stdout, stderr) = fleet_cli(&home, &["status", "--hosts", hosts], None);
    assert_eq!(code, 1, "a host could not be read: {stdout}{stderr}");
    let rows = table_rows(&stdout);
    let keys: Vec<(String, String, String)> =
        rows.iter().map(|(h, i, s, _)| row(h, i, s)).collect();
    assert_eq!(
        keys,
        [
            row("web-1", "web", "running"),
            row("web-1", "worker", "running"),
            row("lab-1", "web", "stopped"),
            row(&dead, "-", "unreachable"),
        ],
        "{stdout}"
    );
    assert!(rows[3].3.contains("connection refused"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");

    // --json: the API's objects per host, and the failure in words.
    let (code, stdout, _) = fleet_cli(&home, &["status", "--json", "--hosts", hosts], None);
    assert_eq!(code, 1);
    let list: Value = serde_json::from_str(&stdout).expect("JSON");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{stdout}");
    assert_eq!(list[0]["host"], "web-1");
    assert_eq!(list[0]["url"], web1.url);
    assert_eq!(list[0]["servers"].as_array().unwrap().len(), 2);
    assert_eq!(list[0]["servers"][0]["id"], "web");
    assert_eq!(list[1]["servers"][0]["status"], "stopped");
    assert!(
        list[2]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unreachable: ") && e.contains(&dead)),
        "{stdout}"
    );

    // Repeated --url with TEND_TOKEN for all: web-1 takes it, lab-1 refuses it (a row), and
    // every host answering is exit 0.
    let urls = ["status", "--url", &web1.url, "--url", &lab1.url];
    let (code, stdout, _) = fleet_cli(&home, &urls, Some(&web1_token));
    assert_eq!(code, 1, "{stdout}");
    let rows = table_rows(&stdout);
    let web1_name = web1.url.trim_start_matches("http://");
    let lab1_name = lab1.url.trim_start_matches("http://");
    assert_eq!(rows[0].0, web1_name, "{stdout}");
    assert_eq!(
        (rows[2].0.as_str(), rows[2].2.as_str(), rows[2].3.as_str()),
        (lab1_name, "refused", "refused TEND_TOKEN"),
        "{stdout}"
    );
    let both = home.write(
        "both",
        &format!(
            "{} ~/web-1.token\n{} {}\n",
            web1.url,
            lab1.url,
            lab1_token_file.display()
        ),
    );
    let (code, stdout, stderr) =
        fleet_cli(&home, &["status", "--hosts", both.to_str().unwrap()], None);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(table_rows(&stdout).len(), 3, "{stdout}");

    // Control stays per host.
    let (code, stdout, stderr) = fleet_cli(
        &home,
        &["restart", "worker", "--url", &web1.url],
        Some(&web1_token),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("worker: running"), "{stdout}");
    let (code, _, stderr) = fleet_cli(
        &home,
        &["restart", "worker", "--url", &web1.url, "--url", &lab1.url],
        Some(&web1_token),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("only `tend status` reads several tends"),
        "{stderr}"
    );

    // A bad hosts file names its line; nothing is asked of any host.
    let bad = home.write("bad", &format!("web-1 {}\nlab-1 {dead}\n", web1.url));
    let (code, stdout, stderr) =
        fleet_cli(&home, &["status", "--hosts", bad.to_str().unwrap()], None);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("{}:2: ", bad.display())) && stderr.contains("no http://"),
        "{stderr}"
    );
}
