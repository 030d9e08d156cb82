//! `GET /metrics` (issue 6, item 2): a live tend with servers in several states is scraped, its
//! values are checked against what the API says, and the whole text is validated by Prometheus's
//! own `promtool check metrics` (installed by tests/tools/debian-package.sh when missing). Also: the
//! route needs the token like every other but /healthz, and the token file works as
//! Prometheus's `credentials_file`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::{
    Listener, SseReader, TempDir, Tend, WAIT, demo_cmd, ensure_prometheus_tools, free_port, header,
    http_request, wait_until,
};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A scrape: `name{labels}` (exactly as printed) to value.
type Samples = BTreeMap<String, f64>;

fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            (series.to_string(), value)
        })
        .collect()
}

fn scrape(tend: &Tend) -> (String, Samples) {
    let (status, headers, body) = tend.request_raw("GET", "/metrics", &[], b"");
    let text = String::from_utf8(body).expect("UTF-8");
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&headers, "Content-Type"), Some(CONTENT_TYPE));
    let samples = parse(&text);
    (text, samples)
}

fn value(samples: &Samples, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

/// Runs `promtool check metrics` on `text` and fails on anything it says: it prints nothing and
/// exits 0 only when the text parses and passes every lint rule.
fn promtool_check(text: &str) {
    ensure_prometheus_tools();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().expect("promtool's output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}) found problems:\n{said}\nin:\n{text}",
        output.status
    );
}

#[test]
fn metrics_show_every_server_and_pass_promtool() {
    let dir = TempDir::new("metrics_scrape");
    let web_port = free_port();
    let held_port = free_port();
    let orphan = Listener::start(held_port);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let config = json!({"servers": [
        {"id": "web", "command": demo_cmd(&["--port", &web_port.to_string()]),
         "ports": [web_port]},
        {"id": "idle", "command": ["sleep", "1000"], "autostart": false},
        {"id": "crash", "command": ["sh", "-c", "exit 3"], "restart": "no"},
        {"id": "nocwd", "command": ["sleep", "1"], "cwd": "/nonexistent/tend-metrics",
         "restart": "no"},
        {"id": "held", "command": demo_cmd(&["--port", &held_port.to_string()]),
         "ports": [held_port], "autostart": false},
    ]});
    let tend = Tend::start(&dir, &config);
    tend.wait_status("web", "running");
    tend.wait_status("crash", "crashed");
    tend.wait_status("nocwd", "crashed");
    tend.wait_server("held", "orphaned", |s| s["orphanedPid"] == orphan.pid);

    // CPU and memory come with a full health round; the state file is written soon after the
    // spawns (coalesced). Wait for both, and for the file on disk to match what was reported.
    let (text, samples) = wait_until("a settled scrape", WAIT, || {
        let (text, samples) = scrape(&tend);
        let written = std::fs::metadata(&tend.state_file).map_or(0, |m| m.len()) as f64;
        let ready = samples.contains_key("tend_server_cpu_seconds_total{server=\"web\"}")
            && samples.get("tend_health_check_duration_seconds_count") >= Some(&1.0)
            && samples.get("tend_state_writes_total") >= Some(&1.0)
            && samples.get("tend_state_file_bytes") == Some(&written);
        ready.then_some((text, samples))
    });
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

    // Per server.
    let up = |id: &str| value(&samples, &format!("tend_server_up{{server=\"{id}\"}}"));
    assert_eq!(
        ["web", "idle", "crash", "nocwd", "held"].map(up),
        [1.0, 0.0, 0.0, 0.0, 0.0]
    );
    for (id, current) in [
        ("web", "running"),
        ("idle", "stopped"),
        ("crash", "crashed"),
        ("nocwd", "crashed"),
        ("held", "stopped"),
    ] {
        let prefix = format!("tend_server_status{{server=\"{id}\",status=");
        let series: Vec<(&String, &f64)> = samples
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        assert_eq!(series.len(), 9, "one series per status: {series:?}");
        let ones: Vec<&String> = series
            .iter()
            .filter(|(_, v)| **v == 1.0)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(ones, [&format!("{prefix}\"{current}\"}}")], "{id}");
        assert!(series.iter().all(|(_, v)| **v == 0.0 || **v == 1.0));
    }
    let web = tend.server("web");
    assert_eq!(
        value(&samples, "tend_server_restarts_total{server=\"web\"}"),
        0.0
    );
    let uptime = value(&samples, "tend_server_uptime_seconds{server=\"web\"}");
    assert!(
        uptime > 0.0 && uptime <= (after - before).as_secs_f64(),
        "{uptime}"
    );
    assert!(!samples.contains_key("tend_server_uptime_seconds{server=\"idle\"}"));
    let cpu = value(&samples, "tend_server_cpu_seconds_total{server=\"web\"}");
    assert!((0.0..=uptime).contains(&cpu), "cpu {cpu} s in {uptime} s");
    assert!(!samples.contains_key("tend_server_cpu_seconds_total{server=\"crash\"}"));
    let rss = value(
        &samples,
        "tend_server_resident_memory_bytes{server=\"web\"}",
    );
    assert!(
        rss > 0.0 && web["rssBytes"].as_u64().is_some(),
        "{rss}, {web}"
    );
    assert_eq!(
        value(
            &samples,
            &format!("tend_server_port_open{{server=\"web\",port=\"{web_port}\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("tend_server_port_open{{server=\"held\",port=\"{held_port}\"}}")
        ),
        1.0,
        "the orphan answers on it"
    );
    assert_eq!(
        value(&samples, "tend_server_orphaned{server=\"held\"}"),
        1.0
    );
    assert_eq!(value(&samples, "tend_server_orphaned{server=\"web\"}"), 0.0);

    // tend's own.
    let version = format!(
        "tend_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&samples, &version), 1.0);
    assert_eq!(value(&samples, "tend_orphans"), 1.0);
    // web and crash spawned; nocwd failed at once (a missing cwd).
    assert_eq!(
        value(&samples, "tend_spawns_total{result=\"success\"}"),
        2.0
    );
    assert_eq!(
        value(&samples, "tend_spawns_total{result=\"failure\"}"),
        1.0
    );
    assert_eq!(value(&samples, "tend_state_write_failures_total"), 0.0);
    assert!(value(&samples, "tend_state_file_bytes") > 0.0);
    assert_eq!(value(&samples, "tend_sse_clients"), 0.0);
    assert_eq!(value(&samples, "tend_log_rotations_total"), 0.0);
    assert_eq!(value(&samples, "tend_log_bytes_lost_total"), 0.0);
    let started = value(&samples, "tend_process_start_time_seconds");
    assert!(
        started >= before.as_secs_f64() - 2.0 && started <= after.as_secs_f64() + 1.0,
        "tend started at {started}, the test between {before:?} and {after:?}"
    );
    assert!(value(&samples, "tend_process_resident_memory_bytes") > 0.0);

    // The histogram: cumulative buckets, +Inf equal to the count, a sum that fits.
    let count = value(&samples, "tend_health_check_duration_seconds_count");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("tend_health_check_duration_seconds_bucket{le=\""))
        .map(|rest| {
            let (le, value) = rest.split_once("\"} ").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, value.parse().unwrap())
        })
        .collect();
    assert!(buckets.len() >= 2, "{buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, count)));
    let sum = value(&samples, "tend_health_check_duration_seconds_sum");
    assert!(
        sum > 0.0 && sum < count * 2.0,
        "sum {sum} of {count} rounds"
    );

    promtool_check(&text);

    // A live event stream is counted while it is open, and no longer once it is gone.
    let stream = SseReader::connect(&tend.url, "/api/events", None);
    assert_eq!(stream.status(), 200);
    assert_eq!(value(&scrape(&tend).1, "tend_sse_clients"), 1.0);
    drop(stream);
    wait_until("the closed stream to be dropped", WAIT, || {
        (value(&scrape(&tend).1, "tend_sse_clients") == 0.0).then_some(())
    });

    // After a restart of web: its counter, a new spawn, and promtool still content.
    let (status, body) = tend.act("web", "restart");
    assert_eq!(status, 200, "{body}");
    tend.wait_status("web", "running");
    let (text, samples) = scrape(&tend);
    assert_eq!(
        value(&samples, "tend_spawns_total{result=\"success\"}"),
        3.0
    );
    assert_eq!(value(&samples, "tend_server_up{server=\"web\"}"), 1.0);
    promtool_check(&text);
}

#[test]
fn metrics_need_the_token_and_the_token_file_is_a_credentials_file() {
    let dir = TempDir::new("metrics_auth");
    // `auth_token: null`: tend generates `token` beside the state file, the file a Prometheus
    // `credentials_file` points at (README "For Prometheus users").
    let config = json!({"auth_token": null,
                        "servers": [{"id": "run", "command": ["sleep", "1000"]}]});
    let tend = Tend::start(&dir, &config);
    let token_file = tend.state_file.with_file_name("token");
    let token = std::fs::read_to_string(&token_file).expect("the generated token file");
    // Prometheus trims the file's content, as tend's own CLI does.
    let token = token.trim();

    let (status, headers, body) = http_request(&tend.url, "GET", "/metrics", &[], b"");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(header(&headers, "WWW-Authenticate").is_some_and(|v| v.starts_with("Bearer")));
    let error: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
    assert_eq!(error["code"], "unauthorized");
    assert!(
        !String::from_utf8_lossy(&body).contains(token),
        "the token leaked"
    );

    let wrong = http_request(
        &tend.url,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer not-the-token")],
        b"",
    );
    assert_eq!(wrong.0, 401);

    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());
    let (status, headers, body) = http_request(&tend.url, "GET", "/metrics", &[auth], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "Content-Type"), Some(CONTENT_TYPE));
    assert!(String::from_utf8_lossy(&body).contains("tend_server_up{server=\"run\"}"));

    // A foreign Host is refused even with the token (DNS rebinding), as on every route.
    let evil = http_request(
        &tend.url,
        "GET",
        "/metrics",
        &[auth, ("Host", "evil.example")],
        b"",
    );
    assert_eq!(evil.0, 403);
    // Not a route that changes anything: other methods are 405, not a way around the token.
    let post = http_request(&tend.url, "POST", "/metrics", &[auth], b"");
    assert_eq!(post.0, 405);
}
