//! The HTTP contract (docs/DESIGN.md §4, §8, §8a): a burst of keep-alive clients all answered
//! (tiny_http's pool starvation, issue 2 item 10), every error's shape and status, the headers
//! every response carries, the dashboard's files, and the logs endpoint's `lines` parameter.
//! Connections themselves (keep-alive, stalled clients, the limit) are in `connections.rs`.
//!
//! No route panics on purpose, and no input found reaches a panic (the generated-input tests in
//! src/fuzz_tests.rs); a panic would end tend (`up::abort_on_panic`), never leave it half alive.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    RawResponse, SseReader, TempDir, Tend, demo_cmd, free_port, header, wait_until,
};

/// How long one answer may take in a burst (generous: the suite runs in parallel).
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// One stopped demo server, `web`.
fn idle_web() -> Value {
    let port = free_port().to_string();
    json!({"servers": [{"id": "web", "command": demo_cmd(&["--port", &port]),
                        "ports": [port.parse::<u16>().unwrap()], "autostart": false}]})
}

/// A keep-alive `GET` on its own connection: reads exactly one response (headers, then
/// Content-Length bytes) and leaves the connection open, returning it so the caller decides
/// when it closes.
fn keep_alive_get(base: &str, path: &str) -> std::io::Result<(u16, Vec<u8>, TcpStream)> {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(ANSWER_WAIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("Content-Length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no Content-Length"))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, body, stream))
}

/// `clients` threads, released at once, each sending one keep-alive `GET /api/servers` on its
/// own connection. With `hold`, every connection stays open until all were answered (a client
/// that keeps its connection, or waits for the server to close it as its `Connection: close`
/// promises); without, each closes once it has read its answer (a browser). Returns the
/// failures.
fn burst(tend: &Tend, clients: usize, hold: bool) -> Vec<String> {
    let start = Arc::new(Barrier::new(clients));
    let done = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (start, done) = (Arc::clone(&start), Arc::clone(&done));
            let url = tend.url.clone();
            thread::spawn(move || {
                start.wait();
                let result = keep_alive_get(&url, "/api/servers").map(|(status, body, stream)| {
                    if !hold {
                        drop(stream);
                        return (status, body, None);
                    }
                    (status, body, Some(stream))
                });
                done.wait();
                result
                    .map(|(status, body, _stream)| (status, body))
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    done.wait();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter_map(|r| match r {
            Ok((200, body))
                if serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_array()) =>
            {
                None
            }
            Ok((status, body)) => Some(format!("{status}: {}", String::from_utf8_lossy(&body))),
            Err(e) => Some(e),
        })
        .collect()
}

#[test]
fn a_burst_of_50_keep_alive_clients_is_all_answered() {
    // See: issue 2 (item 10) and docs/NOTES.md "connection starvation".
    let dir = TempDir::new("http_burst");
    let tend = Tend::start(&dir, &idle_web());
    let failures = burst(&tend, 50, true);
    assert!(
        failures.is_empty(),
        "{} of 50 keep-alive clients not answered within {ANSWER_WAIT:?}: {failures:?}",
        failures.len()
    );
    assert_eq!(tend.get("/healthz").0, 200);
}

#[test]
fn a_burst_of_50_clients_that_close_after_reading_is_all_answered() {
    let dir = TempDir::new("http_burst_close");
    let tend = Tend::start(&dir, &idle_web());
    let failures = burst(&tend, 50, false);
    assert!(
        failures.is_empty(),
        "{} of 50 clients not answered within {ANSWER_WAIT:?}: {failures:?}",
        failures.len()
    );
}

/// Asserts a response is the error shape of docs/DESIGN.md §4 with `status`; returns its `code`.
fn assert_error(what: &str, response: &RawResponse, status: u16) -> String {
    let (got, headers, body) = response;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got, status, "{what}: {text}");
    let content_type = header(headers, "Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: Content-Type {content_type:?}"
    );
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {text}"));
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {text}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["error", "code"]), "{what}: {text}");
    let message = json["error"].as_str().unwrap_or_default();
    let code = json["code"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: empty error: {text}");
    assert!(!code.is_empty(), "{what}: empty code: {text}");
    code.to_string()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn every_error_has_the_json_shape_and_the_right_status() {
    let dir = TempDir::new("http_errors");
    let tend = Tend::start(&dir, &idle_web());
    let own_pid = std::process::id().to_string();
    let tend_pid = tend.pid.to_string();
    let kill = |body: &str| tend.request_raw("DELETE", "/api/kill", &[JSON], body.as_bytes());
    let cases: Vec<(&str, RawResponse, u16, Option<&str>)> = vec![
        (
            "unknown path",
            tend.request_raw("GET", "/nope", &[], b""),
            404,
            Some("not_found"),
        ),
        (
            "unknown API path",
            tend.request_raw("GET", "/api/nope", &[], b""),
            404,
            Some("not_found"),
        ),
        (
            "unknown server",
            tend.request_raw("GET", "/api/servers/nope", &[], b""),
            404,
            Some("not_found"),
        ),
        (
            "action on an unknown server",
            tend.request_raw("POST", "/api/servers/nope?action=start", &[], b""),
            404,
            Some("not_found"),
        ),
        (
            "PUT on a server",
            tend.request_raw("PUT", "/api/servers/web", &[JSON], b"{}"),
            405,
            None,
        ),
        (
            "DELETE on the list",
            tend.request_raw("DELETE", "/api/servers", &[], b""),
            405,
            None,
        ),
        (
            "POST on /healthz",
            tend.request_raw("POST", "/healthz", &[], b""),
            405,
            None,
        ),
        (
            "unknown action",
            tend.request_raw("POST", "/api/servers/web?action=dance", &[], b""),
            400,
            None,
        ),
        (
            "missing action",
            tend.request_raw("POST", "/api/servers/web", &[], b""),
            400,
            None,
        ),
        (
            "unknown action on all",
            tend.request_raw("POST", "/api/servers?action=explode", &[], b""),
            400,
            None,
        ),
        (
            "text/plain body",
            tend.request_raw(
                "POST",
                "/api/servers/web?action=start",
                &[("Content-Type", "text/plain")],
                b"start it",
            ),
            415,
            None,
        ),
        (
            "body without a Content-Type",
            tend.request_raw("DELETE", "/api/kill", &[], br#"{"id": "web"}"#),
            415,
            None,
        ),
        (
            "malformed JSON",
            tend.request_raw(
                "POST",
                "/api/servers/web?action=start",
                &[JSON],
                b"{\"oops\": ",
            ),
            400,
            None,
        ),
        (
            "body over 64 KiB",
            tend.request_raw(
                "POST",
                "/api/servers/web?action=start",
                &[JSON],
                &vec![b' '; 64 * 1024 + 1],
            ),
            413,
            None,
        ),
        ("kill without a body", kill(""), 400, None),
        ("kill of PID 0", kill(r#"{"pid": 0}"#), 400, None),
        ("kill of a negative PID", kill(r#"{"pid": -5}"#), 400, None),
        ("kill of PID 1", kill(r#"{"pid": 1}"#), 403, None),
        (
            "kill of the test's own PID",
            kill(&format!(r#"{{"pid": {own_pid}}}"#)),
            403,
            None,
        ),
        (
            "kill of tend itself",
            kill(&format!(r#"{{"pid": {tend_pid}}}"#)),
            403,
            None,
        ),
        (
            "kill with an unknown field",
            kill(r#"{"pid": 4242, "force": true}"#),
            400,
            None,
        ),
        ("kill with a non-object", kill("[1, 2]"), 400, None),
        (
            "kill of an unknown id",
            kill(r#"{"id": "nope"}"#),
            404,
            Some("not_found"),
        ),
    ];
    for (what, response, status, code) in &cases {
        let got = assert_error(what, response, *status);
        if let Some(code) = code {
            assert_eq!(&got, code, "{what}");
        }
    }
    // None of that touched the server or tend.
    assert_eq!(tend.server("web")["status"], "stopped");
    assert_eq!(tend.get("/healthz").0, 200);
}

#[test]
fn a_get_on_a_route_without_get_is_405_not_404() {
    // GET falls through to the dashboard's files for any path; a route that exists with
    // another method must still answer 405, like PUT or POST on the same paths do.
    let dir = TempDir::new("http_get_405");
    let tend = Tend::start(&dir, &idle_web());
    let response = tend.request_raw("GET", "/api/kill", &[], b"");
    assert_error("GET /api/kill", &response, 405);
}

/// Asserts the headers docs/DESIGN.md §8 puts on every response.
fn assert_security_headers(what: &str, headers: &[(String, String)]) {
    let get = |name: &str| header(headers, name).unwrap_or_default().to_string();
    assert_eq!(
        get("X-Content-Type-Options"),
        "nosniff",
        "{what}: {headers:?}"
    );
    assert_eq!(get("X-Frame-Options"), "DENY", "{what}: {headers:?}");
    let csp = get("Content-Security-Policy");
    assert!(
        !csp.is_empty(),
        "{what}: no Content-Security-Policy: {headers:?}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: the CSP allows inline code: {csp}"
    );
    assert!(
        csp.contains("default-src"),
        "{what}: the CSP has no default-src: {csp}"
    );
    let cache = get("Cache-Control");
    assert!(
        cache.split(',').any(|d| d.trim() == "no-store"),
        "{what}: Cache-Control {cache:?}"
    );
    assert!(
        get("Connection").eq_ignore_ascii_case("close"),
        "{what}: Connection {:?}",
        get("Connection")
    );
}

#[test]
fn every_response_carries_the_security_headers() {
    let dir = TempDir::new("http_headers");
    let tend = Tend::start(&dir, &idle_web());
    let gets = [
        "/",
        "/app.js",
        "/app.css",
        "/healthz",
        "/api/servers",
        "/api/servers/web",
        "/api/servers/nope",
        "/api/servers/web/logs",
        "/nope",
    ];
    for path in gets {
        let (_, got, _) = tend.request_raw("GET", path, &[], b"");
        assert_security_headers(&format!("GET {path}"), &got);
    }
    let (_, got, _) = tend.request_raw("DELETE", "/api/kill", &[JSON], br#"{"pid": 0}"#);
    assert_security_headers("DELETE /api/kill", &got);
    let (_, got, _) = tend.request_raw("POST", "/api/servers/web?action=dance", &[], b"");
    assert_security_headers("POST /api/servers/web?action=dance", &got);
    // The event stream too.
    let reader = SseReader::connect(&tend.url, "/api/events", None);
    assert_eq!(reader.status(), 200);
    assert_security_headers("GET /api/events", reader.headers());
}

#[test]
fn the_dashboard_and_its_files_are_served() {
    let dir = TempDir::new("http_assets");
    let tend = Tend::start(&dir, &idle_web());
    let fetch = |path: &str| {
        let (status, headers, body) = tend.request_raw("GET", path, &[], b"");
        assert_eq!(status, 200, "GET {path}");
        let content_type = header(&headers, "Content-Type")
            .unwrap_or_default()
            .to_string();
        (content_type, String::from_utf8(body).expect("UTF-8 text"))
    };

    let (content_type, html) = fetch("/");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        html.contains("app.js"),
        "the page does not load app.js:\n{html}"
    );
    let (content_type, _) = fetch("/app.js");
    assert!(
        content_type.starts_with("text/javascript")
            || content_type.starts_with("application/javascript"),
        "{content_type}"
    );
    let (content_type, _) = fetch("/app.css");
    assert!(content_type.starts_with("text/css"), "{content_type}");
    let (content_type, body) = fetch("/healthz");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );
}

/// The files are stored gzip-compressed: a client that accepts gzip gets those bytes, any other
/// the same file decoded; `gzip -d` (the system's, not tend's decoder) must agree with both.
#[test]
fn files_come_gzip_encoded_only_to_clients_that_accept_it() {
    let dir = TempDir::new("http_gzip");
    let tend = Tend::start(&dir, &idle_web());
    for path in ["/app.js", "/app.css", "/api/openapi.json"] {
        let (status, headers, plain) = tend.request_raw("GET", path, &[], b"");
        assert_eq!(status, 200, "GET {path}");
        assert_eq!(header(&headers, "Content-Encoding"), None, "GET {path}");
        assert_eq!(header(&headers, "Vary"), Some("Accept-Encoding"));
        let refused = [("Accept-Encoding", "gzip;q=0, identity")];
        let (_, headers, also_plain) = tend.request_raw("GET", path, &refused, b"");
        assert_eq!(header(&headers, "Content-Encoding"), None, "{path}");
        assert_eq!(also_plain, plain, "{path}");

        let browser = [("Accept-Encoding", "gzip, deflate, br, zstd")];
        let (status, headers, packed) = tend.request_raw("GET", path, &browser, b"");
        assert_eq!(status, 200, "GET {path} with gzip");
        assert_eq!(header(&headers, "Content-Encoding"), Some("gzip"), "{path}");
        assert!(
            packed.len() * 2 < plain.len(),
            "{path}: {} of {}",
            packed.len(),
            plain.len()
        );
        let length: usize = header(&headers, "Content-Length").unwrap().parse().unwrap();
        assert_eq!(length, packed.len(), "{path}");
        let file = dir.path.join("packed.gz");
        std::fs::write(&file, &packed).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&file)
            .output()
            .expect("gzip runs");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout, plain,
            "{path}: gzip -d disagrees with tend's decoding"
        );

        let (status, headers, head_body) = tend.request_raw("HEAD", path, &browser, b"");
        assert_eq!(status, 200, "HEAD {path}");
        assert!(head_body.is_empty(), "HEAD {path}");
        assert_eq!(
            header(&headers, "Content-Length").unwrap(),
            length.to_string()
        );
    }
}

#[test]
fn logs_take_a_whole_number_of_lines_capped_at_10000() {
    let dir = TempDir::new("http_logs");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [{"id": "chatty", "command": "seq 1 12000; exec sleep 600",
                             "restart": "no"}]}),
    );
    tend.wait_status("chatty", "running");
    wait_until("all 12000 lines logged", Duration::from_secs(10), || {
        let (_, body) = tend.get("/api/servers/chatty/logs?lines=1");
        (body["lines"] == json!(["12000"])).then_some(())
    });

    let (status, body) = tend.get("/api/servers/chatty/logs?lines=5");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"id": "chatty", "lines": ["11996", "11997", "11998", "11999", "12000"]})
    );

    let (status, body) = tend.get("/api/servers/chatty/logs?lines=999999");
    assert_eq!(status, 200);
    let lines = body["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 10_000, "?lines above 10000 is not capped");
    assert_eq!(lines.first(), Some(&json!("2001")));
    assert_eq!(lines.last(), Some(&json!("12000")));

    // The default is 200 lines.
    let (_, body) = tend.get("/api/servers/chatty/logs");
    assert_eq!(body["lines"].as_array().map(Vec::len), Some(200));

    for bad in ["abc", "-1", "1.5"] {
        let response = tend.request_raw(
            "GET",
            &format!("/api/servers/chatty/logs?lines={bad}"),
            &[],
            b"",
        );
        assert_error(&format!("?lines={bad}"), &response, 400);
    }
    let response = tend.request_raw("GET", "/api/servers/nope/logs", &[], b"");
    assert_eq!(
        assert_error("logs of an unknown id", &response, 404),
        "not_found"
    );
}
