//! Security (docs/DESIGN.md §8, §8a, issue 4): one test per rule, each against a real `tend up` over
//! real sockets. Where the listen address, the token, the Host, the Origin, the size of a
//! request or the pace of a client is what a rule is about, the request is written raw.
//!
//! Traffic goes to 127.0.0.1 only, even when tend listens on 0.0.0.0.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    GroupGuard, RawResponse, SseReader, TempDir, Tend, demo_cmd, free_port, header, http_request,
    pid_alive, proc_pgid, send_signal, tend_bin, try_http_request, wait_until,
};

const JSON: (&str, &str) = ("Content-Type", "application/json");

// ---------------------------------------------------------------------------------------------
// Helpers.

/// "http://127.0.0.1:PORT": where the tests send traffic, whatever tend listens on.
fn local(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// The token file of a tend: `token` beside its state file (docs/DESIGN.md §8a).
fn token_path(tend: &Tend) -> PathBuf {
    tend.state_file.with_file_name("token")
}

fn read_token(tend: &Tend) -> String {
    let path = token_path(tend);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// What `tend up` printed on stdout so far.
fn printed(tend: &Tend) -> String {
    fs::read_to_string(tend.dir.join("tend.stdout")).unwrap_or_default()
}

/// The last dashboard URL `tend up` printed.
fn printed_url(tend: &Tend) -> String {
    printed(tend)
        .lines()
        .rev()
        .find_map(|l| l.split("dashboard at ").nth(1))
        .unwrap_or_else(|| panic!("no URL printed: {:?}", printed(tend)))
        .trim()
        .to_string()
}

/// Asserts a refusal in the error shape of docs/DESIGN.md §4 with `status` and `code`; returns the
/// message.
fn assert_refused(what: &str, response: &RawResponse, status: u16, code: &str) -> String {
    let (got, _, body) = response;
    assert_eq!(*got, status, "{what}: {}", text(body));
    let json = json_of(body);
    assert_eq!(json["code"], code, "{what}: {json}");
    let message = json["error"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{what}: no message: {json}");
    message
}

/// A server that runs until stopped and opens no port.
fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": ["sleep", "1000"], "restart": "no"})
}

/// `/proc/PID/status` Threads.
fn thread_count(pid: u32) -> usize {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Threads: line for PID {pid}"))
}

/// Waits for a child that is not under [`Tend`] (a refused `tend up`), SIGKILLing its group
/// after `timeout`.
fn wait_exit(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                send_signal(-(child.id() as i32), libc::SIGKILL);
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "still running after {timeout:?}; stderr:\n{}",
                    text(&out.stderr)
                );
            }
        }
    }
}

/// A tend listening on 0.0.0.0: its harness URL is pointed at 127.0.0.1, so neither the test
/// nor the harness' clean-up sends anything to the wildcard address.
fn start_on_wildcard(dir: &TempDir, config: &Value, env: &[(&str, &str)]) -> Tend {
    let mut tend = Tend::start_with(dir, config, &["--listen", "0.0.0.0:0"], env);
    tend.url = local(tend.port);
    tend
}

// ---------------------------------------------------------------------------------------------
// Listening beyond loopback.

#[test]
fn non_loopback_listen_without_a_chosen_token_is_refused_at_start() {
    for (name, auth) in [("default", Value::Null), ("none", json!("none"))] {
        let dir = TempDir::new(&format!("sec_listen_refused_{name}"));
        let config = Tend::full_config(&dir, &json!({"auth_token": auth, "servers": []}));
        let path = dir.write("tend.json", &config.to_string());
        let started = Instant::now();
        let child = Command::new(tend_bin())
            .args(["up", "--config"])
            .arg(&path)
            .args(["--listen", "0.0.0.0:0"])
            .current_dir(&dir.path)
            .env_remove("TEND_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn tend up");
        let out = wait_exit(child, Duration::from_secs(5));
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "auth_token {auth}: tend up on 0.0.0.0 started; stdout:\n{}",
            text(&out.stdout)
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the refusal took {:?}",
            started.elapsed()
        );
        for needle in ["auth_token", "TEND_TOKEN", "0.0.0.0"] {
            assert!(
                stderr.contains(needle),
                "auth_token {auth}: the refusal does not mention {needle}: {stderr}"
            );
        }
        assert!(
            !text(&out.stdout).contains("dashboard at"),
            "auth_token {auth}: printed a URL: {}",
            text(&out.stdout)
        );
        let state_dir = PathBuf::from(config["state_file"].as_str().unwrap());
        assert!(
            !state_dir.with_file_name("token").exists(),
            "auth_token {auth}: a token was generated for a refused start"
        );
    }
}

#[test]
fn non_loopback_listen_starts_with_a_token_from_the_environment_or_the_config() {
    let dir = TempDir::new("sec_listen_env");
    let tend = start_on_wildcard(
        &dir,
        &json!({"auth_token": null, "servers": [sleeper("web")]}),
        &[("TEND_TOKEN", "env-secret-0123456789")],
    );
    assert_eq!(tend.servers().len(), 1);
    let (status, _, body) = http_request(&tend.url, "GET", "/api/servers", &[], b"");
    assert_refused(
        "no token on 0.0.0.0",
        &(status, vec![], body),
        401,
        "unauthorized",
    );
    drop(tend);

    let dir = TempDir::new("sec_listen_config");
    let tend = start_on_wildcard(
        &dir,
        &json!({"auth_token": "config-secret-0123456789", "servers": []}),
        &[],
    );
    let auth = bearer("config-secret-0123456789");
    let (status, _, body) = http_request(
        &tend.url,
        "GET",
        "/api/servers",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{}", text(&body));
}

#[test]
fn the_url_printed_for_a_wildcard_listen_signs_in() {
    // The printed link is what a person opens; its Host is what their browser sends.
    let dir = TempDir::new("sec_wildcard_url");
    let tend = start_on_wildcard(
        &dir,
        &json!({"auth_token": null, "servers": []}),
        &[("TEND_TOKEN", "env-secret-0123456789")],
    );
    let url = printed_url(&tend);
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let response = http_request(&tend.url, "GET", path, &[("Host", authority)], b"");
    assert_eq!(
        response.0,
        303,
        "GET {path} with Host {authority} (the printed URL {url}): {}",
        text(&response.2)
    );
}

// ---------------------------------------------------------------------------------------------
// Token auth.

/// A tend with the default auth (a generated token file); its helpers send that token.
fn start_default_auth(dir: &TempDir, servers: Value) -> Tend {
    let mut tend = Tend::start(dir, &json!({"auth_token": null, "servers": servers}));
    tend.token = Some(read_token(&tend));
    tend
}

#[test]
fn default_auth_generates_a_private_token_file_and_prints_it_in_the_url() {
    let dir = TempDir::new("sec_token_file");
    let tend = start_default_auth(&dir, json!([]));
    let path = token_path(&tend);
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    let token = read_token(&tend);
    assert!(token.len() >= 32, "a short token: {token:?}");
    let url = printed_url(&tend);
    assert_eq!(
        url,
        format!("{}/?token={token}", tend.url),
        "the printed URL"
    );
}

#[test]
fn api_without_or_with_a_wrong_token_is_401_and_never_echoes_the_token() {
    let dir = TempDir::new("sec_token_401");
    let tend = start_default_auth(&dir, json!([sleeper("web")]));
    let token = read_token(&tend);
    let wrong = format!("{}x", &token[..token.len() - 1]);
    let wrong_bearer = bearer(&wrong);
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("no token", vec![]),
        ("wrong bearer", vec![("Authorization", &wrong_bearer)]),
        ("wrong cookie", vec![("Cookie", "tend_token=nope")]),
        ("empty bearer", vec![("Authorization", "Bearer ")]),
    ];
    for (what, headers) in cases {
        let response = http_request(&tend.url, "GET", "/api/servers", &headers, b"");
        assert_refused(what, &response, 401, "unauthorized");
        let body = text(&response.2);
        assert!(
            !body.contains(&token),
            "{what}: the 401 leaks the token: {body}"
        );
        assert!(
            !body.contains(&wrong),
            "{what}: the 401 echoes the token sent: {body}"
        );
    }
    // A route that changes something, and one that does not exist, are 401 too.
    let response = http_request(&tend.url, "POST", "/api/servers/web?action=stop", &[], b"");
    assert_refused("POST without token", &response, 401, "unauthorized");
    assert_eq!(tend.server("web")["status"], "running");
    let response = http_request(&tend.url, "GET", "/no/such/path", &[], b"");
    assert_refused("unknown path without token", &response, 401, "unauthorized");

    let right = bearer(&token);
    let (status, _, body) = http_request(
        &tend.url,
        "GET",
        "/api/servers",
        &[("Authorization", &right)],
        b"",
    );
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(json_of(&body)[0]["id"], "web");
}

#[test]
fn the_printed_link_trades_the_token_for_a_strict_cookie() {
    let dir = TempDir::new("sec_token_cookie");
    let tend = start_default_auth(&dir, json!([]));
    let token = read_token(&tend);
    let (status, headers, body) =
        http_request(&tend.url, "GET", &format!("/?token={token}"), &[], b"");
    assert_eq!(status, 303, "{}", text(&body));
    assert_eq!(header(&headers, "Location"), Some("/"), "{headers:?}");
    let set_cookie = header(&headers, "Set-Cookie").expect("a Set-Cookie header");
    let mut parts = set_cookie.split(';').map(str::trim);
    let pair = parts.next().unwrap_or_default().to_string();
    assert_eq!(pair, format!("tend_token={token}"), "{set_cookie}");
    let attributes: Vec<&str> = parts.collect();
    for wanted in ["Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(
            attributes.iter().any(|a| a.eq_ignore_ascii_case(wanted)),
            "Set-Cookie lacks {wanted}: {set_cookie}"
        );
    }

    let (status, _, body) =
        http_request(&tend.url, "GET", "/api/servers", &[("Cookie", &pair)], b"");
    assert_eq!(status, 200, "the cookie on /api/servers: {}", text(&body));
    let mut events = SseReader::connect_with(&tend.url, "/api/events", &[("Cookie", &pair)]);
    assert_eq!(
        events.status(),
        200,
        "the cookie on /api/events: {}",
        events.body()
    );
    let first = events
        .next_event(Duration::from_secs(5))
        .expect("a first event");
    assert_eq!(first.event, "servers", "{first:?}");

    let (status, _, body) = http_request(&tend.url, "GET", "/?token=wrong", &[], b"");
    assert_eq!(status, 401, "/?token=wrong: {}", text(&body));
    assert!(!text(&body).contains(&token), "the answer leaks the token");
}

#[test]
fn the_login_page_and_healthz_answer_without_a_token() {
    let dir = TempDir::new("sec_token_login");
    let tend = start_default_auth(&dir, json!([]));
    let (status, headers, body) = http_request(&tend.url, "GET", "/", &[], b"");
    assert_eq!(status, 200, "{}", text(&body));
    let content_type = header(&headers, "Content-Type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = text(&body).to_ascii_lowercase();
    assert!(
        page.contains("<form") && page.contains("name=\"token\""),
        "{page}"
    );
    for inline in [
        "<script",
        "<style",
        " style=",
        "javascript:",
        "onload=",
        "onclick=",
        "onsubmit=",
    ] {
        assert!(
            !page.contains(inline),
            "the login page has {inline}, which the CSP blocks: {page}"
        );
    }
    assert!(
        !page.contains(&read_token(&tend)),
        "the login page leaks the token"
    );

    let (status, _, body) = http_request(&tend.url, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(json_of(&body)["status"], "ok");
    for path in ["/nope", "/app.js", "/api/openapi.json", "/index.html"] {
        let response = http_request(&tend.url, "GET", path, &[], b"");
        assert_refused(&format!("GET {path}"), &response, 401, "unauthorized");
    }
}

#[test]
fn the_generated_token_survives_a_restart() {
    let dir = TempDir::new("sec_token_restart");
    let mut first = start_default_auth(&dir, json!([]));
    let token = read_token(&first);
    first.terminate();
    drop(first);
    let second = start_default_auth(&dir, json!([]));
    assert_eq!(read_token(&second), token, "the token file changed");
    assert!(
        printed_url(&second).ends_with(&format!("/?token={token}")),
        "{}",
        printed_url(&second)
    );
    let auth = bearer(&token);
    let (status, _, body) = http_request(
        &second.url,
        "GET",
        "/api/servers",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{}", text(&body));
}

#[test]
fn a_token_in_the_config_is_used_and_tend_token_wins_over_it() {
    let dir = TempDir::new("sec_token_config");
    let from_config = "config-secret-0123456789";
    let tend = Tend::start(&dir, &json!({"auth_token": from_config, "servers": []}));
    let ok = bearer(from_config);
    let (status, _, _) = http_request(
        &tend.url,
        "GET",
        "/api/servers",
        &[("Authorization", &ok)],
        b"",
    );
    assert_eq!(status, 200, "the config's token");
    let (status, _, _) = http_request(&tend.url, "GET", "/api/servers", &[], b"");
    assert_eq!(status, 401, "no token");
    assert!(
        !token_path(&tend).exists(),
        "a token file was generated although the config has one"
    );
    drop(tend);

    let dir = TempDir::new("sec_token_env_wins");
    let from_env = "env-secret-9876543210";
    let tend = Tend::start_with(
        &dir,
        &json!({"auth_token": from_config, "servers": []}),
        &[],
        &[("TEND_TOKEN", from_env)],
    );
    let env_auth = bearer(from_env);
    let (status, _, _) = http_request(
        &tend.url,
        "GET",
        "/api/servers",
        &[("Authorization", &env_auth)],
        b"",
    );
    assert_eq!(status, 200, "TEND_TOKEN");
    let (status, _, _) = http_request(
        &tend.url,
        "GET",
        "/api/servers",
        &[("Authorization", &ok)],
        b"",
    );
    assert_eq!(status, 401, "the config's token while TEND_TOKEN is set");
    assert!(printed_url(&tend).ends_with(&format!("?token={from_env}")));
}

#[test]
fn the_cli_sends_the_token_from_the_file_or_tend_token_and_fails_clearly_without() {
    let dir = TempDir::new("sec_token_cli");
    let tend = start_default_auth(&dir, json!([sleeper("web")]));
    tend.wait_status("web", "running");
    let token = read_token(&tend);
    // Run from a folder without a tend.json, so only what the test gives is found.
    let elsewhere = TempDir::new("sec_token_cli_cwd");
    let cli = |config: bool, env_token: Option<&str>| -> Output {
        let mut command = Command::new(tend_bin());
        command
            .arg("--url")
            .arg(&tend.url)
            .current_dir(&elsewhere.path)
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_URL")
            .stdin(Stdio::null());
        if config {
            command.arg("--config").arg(&tend.config_path);
        }
        command.arg("status");
        if let Some(token) = env_token {
            command.env("TEND_TOKEN", token);
        }
        command.output().expect("run the tend CLI")
    };
    let describe = |out: &Output| {
        format!(
            "exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        )
    };

    let out = cli(true, None);
    assert!(
        out.status.success(),
        "with the token file: {}",
        describe(&out)
    );
    assert!(text(&out.stdout).contains("web"), "{}", describe(&out));
    let out = cli(false, Some(&token));
    assert!(out.status.success(), "with TEND_TOKEN: {}", describe(&out));
    assert!(text(&out.stdout).contains("web"), "{}", describe(&out));

    for (what, out) in [
        ("no token", cli(false, None)),
        ("a wrong TEND_TOKEN", cli(false, Some("wrong-token"))),
    ] {
        assert!(!out.status.success(), "{what}: {}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("TEND_TOKEN") && stderr.contains("token"),
            "{what}: the error does not say how to pass a token: {}",
            describe(&out)
        );
        // See: issue 10 (the hint came twice: the API's words, then the CLI's).
        assert_eq!(
            stderr.matches("TEND_TOKEN").count(),
            1,
            "{what}: the token hint should be given once: {}",
            describe(&out)
        );
        assert_eq!(stderr.lines().count(), 1, "{what}: {}", describe(&out));
        assert!(
            !stderr.contains(&token),
            "{what}: the error leaks the token"
        );
        assert!(
            !text(&out.stdout).contains("web"),
            "{what}: printed servers: {}",
            describe(&out)
        );
    }
}

#[test]
fn auth_none_on_loopback_needs_no_token() {
    let dir = TempDir::new("sec_auth_none");
    let tend = Tend::start(
        &dir,
        &json!({"auth_token": "none", "servers": [sleeper("web")]}),
    );
    assert_eq!(printed_url(&tend), format!("{}/", tend.url));
    for path in ["/api/servers", "/api/servers/web", "/app.js", "/"] {
        let (status, _, body) = http_request(&tend.url, "GET", path, &[], b"");
        assert_eq!(status, 200, "GET {path}: {}", text(&body));
    }
    let (status, _, body) =
        http_request(&tend.url, "POST", "/api/servers/web?action=stop", &[], b"");
    assert_eq!(status, 200, "{}", text(&body));
    assert!(!token_path(&tend).exists(), "a token file was generated");
}

// ---------------------------------------------------------------------------------------------
// DNS rebinding and CSRF.

#[test]
fn a_foreign_host_is_refused_on_every_route_dns_rebinding() {
    let dir = TempDir::new("sec_host");
    let token = "host-secret-0123456789";
    let tend = Tend::start_with(
        &dir,
        &json!({"auth_token": null, "allowed_hosts": ["tend.lan"], "servers": []}),
        &[],
        &[("TEND_TOKEN", token)],
    );
    let auth = bearer(token);
    for host in ["evil.example", "evil.example:80", "localhost.evil.example"] {
        for path in ["/api/servers", "/healthz", "/", "/app.js"] {
            let response = http_request(
                &tend.url,
                "GET",
                path,
                &[("Host", host), ("Authorization", &auth)],
                b"",
            );
            assert_refused(
                &format!("GET {path} Host {host}"),
                &response,
                403,
                "forbidden_host",
            );
        }
        let mut events = SseReader::connect_with(
            &tend.url,
            "/api/events",
            &[("Host", host), ("Authorization", &auth)],
        );
        let body = events.body();
        assert_eq!(events.status(), 403, "GET /api/events Host {host}: {body}");
        assert!(body.contains("forbidden_host"), "{body}");
    }
    let port = tend.port;
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("127.0.0.1:{port}"),
        format!("tend.lan:{port}"),
        "tend.lan".to_string(),
    ] {
        for path in ["/api/servers", "/healthz"] {
            let (status, _, body) = http_request(
                &tend.url,
                "GET",
                path,
                &[("Host", &host), ("Authorization", &auth)],
                b"",
            );
            assert_eq!(status, 200, "GET {path} Host {host}: {}", text(&body));
        }
        let events = SseReader::connect_with(
            &tend.url,
            "/api/events",
            &[("Host", &host), ("Authorization", &auth)],
        );
        assert_eq!(events.status(), 200, "GET /api/events Host {host}");
    }
}

#[test]
fn cross_site_changes_are_refused_and_change_nothing_csrf() {
    let dir = TempDir::new("sec_csrf");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("web")]}));
    let pid = tend.wait_status("web", "running")["pid"].clone();
    let port = tend.port;
    let stop = "/api/servers/web?action=stop";
    let evil_suffix = format!("http://127.0.0.1:{port}.evil.example");
    let evil_userinfo = format!("http://127.0.0.1:{port}@evil.example");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("Origin evil", vec![("Origin", "http://evil.example")]),
        ("Origin prefix", vec![("Origin", &evil_suffix)]),
        ("Origin userinfo", vec![("Origin", &evil_userinfo)]),
        ("Origin other port", vec![("Origin", &other_port)]),
        ("Origin null", vec![("Origin", "null")]),
        (
            "Referer evil",
            vec![("Referer", "http://evil.example/page?u=http://127.0.0.1")],
        ),
    ];
    for (what, headers) in &refused {
        let response = tend.request_raw("POST", stop, headers, b"");
        assert_refused(what, &response, 403, "forbidden_origin");
        let body = br#"{"pid": 1}"#;
        let mut with_json = headers.clone();
        with_json.push(JSON);
        let response = tend.request_raw("DELETE", "/api/kill", &with_json, body);
        assert_refused(
            &format!("DELETE {what}"),
            &response,
            403,
            "forbidden_origin",
        );
    }
    let server = tend.server("web");
    assert_eq!(server["status"], "running", "{server:#}");
    assert_eq!(server["pid"], pid, "the server was touched: {server:#}");

    let own = local(port);
    let response = tend.request_raw("POST", stop, &[("Origin", &own)], b"");
    assert_eq!(response.0, 200, "same Origin: {}", text(&response.2));
    tend.wait_status("web", "stopped");
    let response = tend.request_raw("POST", "/api/servers/web?action=start", &[], b"");
    assert_eq!(
        response.0,
        200,
        "no Origin (the CLI): {}",
        text(&response.2)
    );
    let referer = format!("{own}/");
    let response = tend.request_raw("POST", stop, &[("Referer", &referer)], b"");
    assert_eq!(response.0, 200, "same-site Referer: {}", text(&response.2));
}

// ---------------------------------------------------------------------------------------------
// Headers.

fn assert_security_headers(what: &str, headers: &[(String, String)], api: bool) {
    let get = |name: &str| header(headers, name).unwrap_or_default().to_string();
    let csp = get("Content-Security-Policy");
    assert!(
        !csp.is_empty(),
        "{what}: no Content-Security-Policy: {headers:?}"
    );
    assert!(
        !csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"),
        "{what}: the CSP allows inline code: {csp}"
    );
    assert!(csp.contains("default-src"), "{what}: no default-src: {csp}");
    assert_eq!(
        get("X-Content-Type-Options"),
        "nosniff",
        "{what}: {headers:?}"
    );
    assert_eq!(get("X-Frame-Options"), "DENY", "{what}: {headers:?}");
    assert_eq!(get("Referrer-Policy"), "no-referrer", "{what}: {headers:?}");
    if api {
        let cache = get("Cache-Control");
        assert!(
            cache.split(',').any(|d| d.trim() == "no-store"),
            "{what}: Cache-Control {cache:?}"
        );
    }
}

#[test]
fn every_kind_of_response_carries_the_security_headers() {
    let dir = TempDir::new("sec_headers");
    let token = "headers-secret-0123456789";
    let tend = Tend::start_with(
        &dir,
        &json!({"auth_token": null, "servers": [sleeper("web")]}),
        &[],
        &[("TEND_TOKEN", token)],
    );
    let auth = bearer(token);
    let with_token = [("Authorization", auth.as_str())];
    let cases: Vec<(&str, RawResponse, bool)> = vec![
        (
            "API list",
            tend.request_raw("GET", "/api/servers", &[], b""),
            true,
        ),
        (
            "API one",
            tend.request_raw("GET", "/api/servers/web", &[], b""),
            true,
        ),
        (
            "API logs",
            tend.request_raw("GET", "/api/servers/web/logs", &[], b""),
            true,
        ),
        (
            "API 404",
            tend.request_raw("GET", "/api/servers/nope", &[], b""),
            true,
        ),
        (
            "API 400",
            tend.request_raw("POST", "/api/servers/web?action=dance", &[], b""),
            true,
        ),
        (
            "API 401",
            http_request(&tend.url, "GET", "/api/servers", &[], b""),
            true,
        ),
        (
            "API 403",
            tend.request_raw("GET", "/api/servers", &[("Host", "evil.example")], b""),
            true,
        ),
        (
            "healthz",
            tend.request_raw("GET", "/healthz", &[], b""),
            true,
        ),
        (
            "dashboard HTML",
            tend.request_raw("GET", "/", &with_token, b""),
            false,
        ),
        ("JS", tend.request_raw("GET", "/app.js", &[], b""), false),
        ("CSS", tend.request_raw("GET", "/app.css", &[], b""), false),
        (
            "login page",
            http_request(&tend.url, "GET", "/", &[], b""),
            false,
        ),
        (
            "sign-in redirect",
            http_request(&tend.url, "GET", &format!("/?token={token}"), &[], b""),
            false,
        ),
        (
            "unknown path",
            tend.request_raw("GET", "/nope", &[], b""),
            true,
        ),
    ];
    for (what, (status, headers, _), api) in &cases {
        assert!(*status != 0, "{what}");
        assert_security_headers(&format!("{what} ({status})"), headers, *api);
    }
    // The dashboard itself loads no inline script (the CSP would block it); the one inline
    // block is the server list as data, which no browser executes (issue 10).
    let (_, (_, _, html), _) = cases
        .iter()
        .find(|(what, _, _)| *what == "dashboard HTML")
        .unwrap();
    let html = text(html).to_ascii_lowercase();
    assert!(
        html.contains("<script"),
        "the dashboard loads no script: {html}"
    );
    for tag in html.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap_or_default();
        let is_data = open.contains("type=\"application/json\"");
        assert!(
            open.contains("src=") || is_data,
            "an inline <script>: <script{open}>"
        );
    }
    let events = SseReader::connect_with(&tend.url, "/api/events", &with_token);
    assert_eq!(events.status(), 200);
    assert_security_headers("SSE", events.headers(), true);
}

// ---------------------------------------------------------------------------------------------
// Kill safety.

fn kill(tend: &Tend, body: &Value) -> RawResponse {
    tend.request_raw("DELETE", "/api/kill", &[JSON], body.to_string().as_bytes())
}

#[test]
fn kill_refuses_tend_itself_its_group_init_and_non_positive_pids() {
    let dir = TempDir::new("sec_kill_self");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    let group = proc_pgid(tend.pid).expect("tend's group");
    for (body, status, code) in [
        (json!({"pid": tend.pid}), 403, "forbidden"),
        (json!({"pid": group}), 403, "forbidden"),
        (json!({"pid": 1}), 403, "forbidden"),
        (json!({"pid": 0}), 400, "bad_request"),
        (json!({"pid": -1}), 400, "bad_request"),
        (json!({"pid": -(group as i64)}), 400, "bad_request"),
    ] {
        assert_refused(&body.to_string(), &kill(&tend, &body), status, code);
    }
    assert!(pid_alive(tend.pid));
    assert_eq!(tend.get("/healthz").0, 200);
}

/// A `tend up` started by a `/bin/sh` script in a new process group, for what [`Tend`] cannot
/// arrange: the script gets the tend binary as `$0`, the config as `$1` and `args` after it,
/// and prints `tend-pid PID` before it starts tend. The whole group is killed on drop.
struct ShellTend {
    sh: Child,
    tend_pid: u32,
    url: String,
    log_dir: PathBuf,
    _guard: GroupGuard,
}

impl ShellTend {
    fn start(dir: &TempDir, config: &Value, script: &str, args: &[String]) -> ShellTend {
        let config = Tend::full_config(dir, config);
        let path = dir.write("tend.json", &config.to_string());
        let stderr = fs::File::create(dir.join("tend.log")).unwrap();
        let mut sh = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg(tend_bin())
            .arg(&path)
            .args(args)
            .current_dir(&dir.path)
            .env_remove("TEND_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let guard = GroupGuard::new(sh.id());
        let stdout = sh.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut tend_pid, mut url) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tend_pid.is_none() || url.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no PID and URL; stderr:\n{}", dir.read("tend.log")));
            if let Some(pid) = line.strip_prefix("tend-pid ") {
                tend_pid = pid.trim().parse().ok();
            }
            if let Some(rest) = line.split("dashboard at ").nth(1) {
                let host = rest.trim().trim_start_matches("http://");
                url = Some(format!("http://{}", host.split('/').next().unwrap()));
            }
        }
        ShellTend {
            sh,
            tend_pid: tend_pid.unwrap(),
            url: url.unwrap(),
            log_dir: PathBuf::from(config["log_dir"].as_str().unwrap()),
            _guard: guard,
        }
    }
}

impl Drop for ShellTend {
    fn drop(&mut self) {
        if pid_alive(self.tend_pid) {
            send_signal(self.tend_pid as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(self.tend_pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
        send_signal(-(self.sh.id() as i32), libc::SIGKILL);
        let _ = self.sh.wait();
    }
}

#[test]
fn kill_never_hits_tends_group_even_when_its_leader_holds_a_watched_port() {
    let dir = TempDir::new("sec_kill_group");
    let port = free_port();
    let config = json!({"servers": [{"id": "web", "command": demo_cmd(&["--port", &port.to_string()]),
                                     "ports": [port], "autostart": false}]});
    // sh starts tend in the background, then becomes a demo server on web's port: tend's group
    // leader is an orphan on a port tend watches.
    let script = r#""$0" up --config "$1" & echo "tend-pid $!"; exec "$0" serve-demo --port "$2" --print-every-ms 0"#;
    let grouped = ShellTend::start(&dir, &config, script, &[port.to_string()]);
    let group = grouped.sh.id();
    assert_eq!(
        proc_pgid(grouped.tend_pid),
        Some(group),
        "tend is in sh's group"
    );
    assert_ne!(grouped.tend_pid, group);
    // tend sees its own group's leader as the orphan holding web's port.
    wait_until(
        "web orphaned by tend's group leader",
        Duration::from_secs(10),
        || {
            let (status, _, body) = http_request(&grouped.url, "GET", "/api/servers/web", &[], b"");
            let server = json_of(&body);
            (status == 200 && server["orphanedPid"] == group).then_some(())
        },
    );
    for body in [
        json!({"pid": group}),
        json!({"id": "web"}),
        json!({"id": "web", "pid": group}),
    ] {
        let response = http_request(
            &grouped.url,
            "DELETE",
            "/api/kill",
            &[JSON],
            body.to_string().as_bytes(),
        );
        assert_refused(
            &format!("{body} (tend's group {group})"),
            &response,
            403,
            "forbidden",
        );
    }
    assert!(pid_alive(group), "tend's group leader was killed");
    assert!(pid_alive(grouped.tend_pid), "tend was killed");
}

// ---------------------------------------------------------------------------------------------
// Limits.

#[test]
fn a_body_over_64_kib_is_413() {
    let dir = TempDir::new("sec_limit_body");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    // 64 KiB exactly is read (and found to be about an unknown server); one byte more is not.
    let mut body = vec![b' '; 64 * 1024];
    body[..2].copy_from_slice(b"{}");
    let response = tend.request_raw("POST", "/api/servers/nope?action=start", &[JSON], &body);
    assert_refused("64 KiB body", &response, 404, "not_found");
    body.push(b' ');
    let response = tend.request_raw("POST", "/api/servers/nope?action=start", &[JSON], &body);
    let (status, _, reply) = &response;
    assert_eq!(*status, 413, "{}", text(reply));
    assert!(json_of(reply)["code"].is_string());
    let response = tend.request_raw("DELETE", "/api/kill", &[JSON], &body);
    assert_eq!(response.0, 413, "{}", text(&response.2));
    assert_eq!(tend.get("/healthz").0, 200);
}

#[test]
fn headers_over_8_kib_are_431_and_a_url_over_8_kib_is_414() {
    let dir = TempDir::new("sec_limit_head");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    let pad = "a".repeat(9 * 1024);
    let response = tend.request_raw("GET", "/api/servers", &[("X-Pad", &pad)], b"");
    assert_eq!(response.0, 431, "9 KiB of headers: {}", text(&response.2));
    let many: Vec<(String, String)> = (0..90)
        .map(|i| (format!("X-Pad-{i}"), "b".repeat(100)))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let response = tend.request_raw("GET", "/api/servers", &many, b"");
    assert_eq!(
        response.0,
        431,
        "90 headers of 100 bytes: {}",
        text(&response.2)
    );
    let url = format!("/api/servers?x={pad}");
    let response = tend.request_raw("GET", &url, &[], b"");
    assert_eq!(response.0, 414, "a 9 KiB URL: {}", text(&response.2));
    assert_eq!(tend.get("/healthz").0, 200);
}

#[test]
fn an_idle_connection_is_closed_after_about_10_seconds() {
    let dir = TempDir::new("sec_limit_idle");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    let mut stream = TcpStream::connect(("127.0.0.1", tend.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(14)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let outcome = loop {
        match stream.read(&mut buf) {
            Ok(0) => break "closed".to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A stop and continue of this process (signal(7)) interrupts a read with a timeout.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break "still open".to_string();
            }
            Err(e) => break format!("error {e}"),
        }
    };
    let elapsed = started.elapsed();
    assert_ne!(outcome, "still open", "open after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_secs(9),
        "closed ({outcome}) after only {elapsed:?}: {:?}; tend (PID {}, port {}) alive: {}",
        text(&got),
        tend.pid,
        tend.port,
        pid_alive(tend.pid)
    );
    assert!(
        elapsed <= Duration::from_secs(13),
        "closed ({outcome}) only after {elapsed:?}"
    );
    assert_eq!(tend.get("/healthz").0, 200);
}

#[test]
fn a_slowloris_client_does_not_starve_the_api() {
    let dir = TempDir::new("sec_limit_slowloris");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("web")]}));
    let addr = SocketAddr::from(([127, 0, 0, 1], tend.port));
    let (tick_tx, tick_rx) = mpsc::channel();
    let slow = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let head = format!("GET /api/servers HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
        stream.write_all(head.as_bytes()).expect("send the head");
        let mut sent = 0;
        for _ in 0..12 {
            // The one fixed pause: the slowloris pace itself, one header byte a second.
            thread::sleep(Duration::from_secs(1));
            if stream.write_all(b"a").is_err() {
                break;
            }
            sent += 1;
            let _ = tick_tx.send(sent);
        }
        sent
    });
    let mut checks = 0;
    while let Ok(sent) = tick_rx.recv_timeout(Duration::from_secs(5)) {
        let started = Instant::now();
        let response = try_http_request(
            &tend.url,
            "GET",
            "/api/servers",
            &[],
            b"",
            Duration::from_secs(1),
        );
        let elapsed = started.elapsed();
        match response {
            Ok((200, _, _)) if elapsed < Duration::from_secs(1) => checks += 1,
            other => panic!(
                "GET /api/servers after {sent} slow bytes: {:?} in {elapsed:?}",
                other.map(|r| (r.0, text(&r.2)))
            ),
        }
    }
    let sent = slow.join().expect("the slow client");
    assert!(sent >= 10, "the slow client could send only {sent} bytes");
    assert!(
        checks >= 10,
        "only {checks} checks ran during the slowloris"
    );
    assert!(pid_alive(tend.pid));
}

#[test]
fn a_flood_of_1000_connections_does_not_starve_the_api_and_its_threads_go() {
    let dir = TempDir::new("sec_limit_flood");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("web")]}));
    assert_eq!(tend.get("/api/servers").0, 200);
    let before = thread_count(tend.pid);
    let addr = SocketAddr::from(([127, 0, 0, 1], tend.port));
    let mut flood = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i} of the flood: {e}"));
        // Most say nothing; every tenth starts a request and stops.
        if i % 10 == 0 {
            stream
                .write_all(b"GET /api/servers HTTP/1.1\r\n")
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        }
        flood.push(stream);
    }
    for round in 0..5 {
        let started = Instant::now();
        let response = try_http_request(
            &tend.url,
            "GET",
            "/api/servers",
            &[],
            b"",
            Duration::from_secs(2),
        );
        let elapsed = started.elapsed();
        assert!(
            matches!(response, Ok((200, _, _))) && elapsed < Duration::from_secs(2),
            "round {round} with 1000 connections held: {:?} in {elapsed:?}",
            response.map(|r| (r.0, text(&r.2)))
        );
    }
    let peak = thread_count(tend.pid);
    drop(flood);
    let mut last = peak;
    let settled = Instant::now() + Duration::from_secs(15);
    while Instant::now() < settled {
        last = thread_count(tend.pid);
        if last <= before + 3 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        last <= before + 3,
        "tend had {before} threads before the flood, {peak} during it and still {last} 15 s after"
    );
    eprintln!("flood: tend threads {before} before, {peak} with 1000 connections, {last} after");
    assert_eq!(tend.get("/api/servers").0, 200);
}

#[test]
fn malformed_bodies_are_400_with_a_clear_message_and_tend_lives_on() {
    let dir = TempDir::new("sec_limit_malformed");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("web")]}));
    let pid = tend.wait_status("web", "running")["pid"].clone();
    let cases: [(&str, &str, &[u8], &str); 13] = [
        ("DELETE", "/api/kill", b"{\"pid\":", "JSON"),
        ("DELETE", "/api/kill", b"{\"pid\":\"12\"}", "invalid type"),
        (
            "DELETE",
            "/api/kill",
            b"{\"pid\":12,\"signal\":9}",
            "unknown field",
        ),
        (
            "DELETE",
            "/api/kill",
            b"{\"pid\": 99999999999999999999}",
            "",
        ),
        ("DELETE", "/api/kill", b"{\"pid\": 1.5}", ""),
        (
            "DELETE",
            "/api/kill",
            b"{\"pid\": -99999999999999999999}",
            "",
        ),
        ("DELETE", "/api/kill", b"\xff\xfe\x00{", ""),
        ("DELETE", "/api/kill", b"{\"id\": \"\xff\xfe\"}", ""),
        ("DELETE", "/api/kill", b"[1, 2]", ""),
        ("DELETE", "/api/kill", b"null", ""),
        ("DELETE", "/api/kill", b"", ""),
        (
            "POST",
            "/api/servers/web?action=stop",
            b"{\"a\": [1,",
            "JSON",
        ),
        ("POST", "/api/servers?action=stop", b"\xc3\x28", "JSON"),
    ];
    for (method, path, body, needle) in cases {
        let what = format!("{method} {path} {}", String::from_utf8_lossy(body));
        let (status, _, reply) = tend.request_raw(method, path, &[JSON], body);
        assert_eq!(status, 400, "{what}: {}", text(&reply));
        let reply = json_of(&reply);
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(
            message.len() > 10 && reply["code"].is_string(),
            "{what}: {reply}"
        );
        assert!(message.contains(needle), "{what}: {reply}");
        assert!(pid_alive(tend.pid), "tend died on {what}");
    }
    let server = tend.server("web");
    assert_eq!(server["status"], "running", "{server:#}");
    assert_eq!(server["pid"], pid, "{server:#}");
    assert_eq!(tend.get("/healthz").0, 200);
}

// ---------------------------------------------------------------------------------------------
// Files.

#[test]
fn state_token_log_files_and_their_folders_are_private() {
    let dir = TempDir::new("sec_files");
    let tend = start_default_auth(&dir, json!([sleeper("web")]));
    let pid = tend.wait_status("web", "running")["pid"].clone();
    wait_until(
        "the state file to name web",
        Duration::from_secs(10),
        || (tend.state()["processes"]["web"]["pid"] == pid).then_some(()),
    );
    let state_dir = tend.state_file.parent().unwrap().to_path_buf();
    for (what, path, want) in [
        ("state file", tend.state_file.clone(), 0o600),
        ("token", token_path(&tend), 0o600),
        ("log file", tend.log_dir.join("web.log"), 0o640),
        ("state folder", state_dir, 0o700),
        ("log folder", tend.log_dir.clone(), 0o700),
    ] {
        assert_eq!(
            mode(&path),
            want,
            "{what} {}: {:o}",
            path.display(),
            mode(&path)
        );
    }
}

#[test]
fn ids_that_could_steer_a_path_are_rejected_by_check() {
    let dir = TempDir::new("sec_files_ids");
    for (i, id) in [
        "../x",
        "x/../../y",
        "/etc/passwd",
        ".hidden",
        "a/b",
        "..",
        "x\\..\\y",
    ]
    .iter()
    .enumerate()
    {
        let config = json!({"servers": [{"id": id, "command": "sleep 1"}]});
        let path = dir.write(&format!("c{i}.json"), &config.to_string());
        let out = Command::new(tend_bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .env_remove("TEND_TOKEN")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "id {id:?}: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("id"),
            "id {id:?}: {}",
            text(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Descriptors.

/// `(fd, target)` from `ls -l /proc/self/fd` output, sorted by fd.
fn listed_fds(log: &str) -> Vec<(u32, String)> {
    let mut fds = Vec::new();
    for line in log.lines() {
        let Some((left, target)) = line.split_once(" -> ") else {
            continue;
        };
        let fd = left
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(fd) = fd {
            fds.push((fd, target.trim().to_string()));
        }
    }
    fds.sort();
    fds
}

/// The config of a server that lists its own descriptors into its log.
fn fd_lister() -> Value {
    json!({"servers": [{"id": "fds", "command": ["/bin/ls", "-l", "/proc/self/fd"],
                        "restart": "no", "autostart": false}]})
}

/// Waits for the fd list in `<log_dir>/fds.log`.
fn read_fd_list(log_dir: &Path) -> (Vec<(u32, String)>, String) {
    let log_file = log_dir.join("fds.log");
    let log = wait_until("the fd list in the log", Duration::from_secs(5), || {
        let text = fs::read_to_string(&log_file).unwrap_or_default();
        text.lines()
            .any(|l| l.contains("/fd") && l.contains(" 3 -> "))
            .then_some(text)
    });
    (listed_fds(&log), log)
}

/// Asserts 0 is /dev/null, 1 and 2 the log file and 3 ls's own listing; returns the rest.
fn beyond_stdio(fds: &[(u32, String)], log_dir: &Path, log: &str) -> Vec<(u32, String)> {
    let target = |fd: u32| fds.iter().find(|(n, _)| *n == fd).map(|(_, t)| t.as_str());
    let log_file = fs::canonicalize(log_dir.join("fds.log")).unwrap();
    assert_eq!(target(0), Some("/dev/null"), "fd 0: {fds:?}\n{log}");
    for fd in [1, 2] {
        assert_eq!(
            target(fd).map(PathBuf::from),
            Some(log_file.clone()),
            "fd {fd} is not the log file: {fds:?}\n{log}"
        );
    }
    assert!(
        target(3).is_some_and(|t| t.starts_with("/proc/") && t.ends_with("/fd")),
        "fd 3 is not ls's own listing: {fds:?}\n{log}"
    );
    fds.iter().filter(|(fd, _)| *fd > 3).cloned().collect()
}

#[test]
fn children_inherit_none_of_the_descriptors_tend_opens() {
    let dir = TempDir::new("sec_fds_own");
    let tend = Tend::start(&dir, &fd_lister());
    // An open event stream and an idle connection give tend more sockets that could leak.
    let _events = SseReader::connect(&tend.url, "/api/events", None);
    let _idle = TcpStream::connect(("127.0.0.1", tend.port)).unwrap();
    let (status, body) = tend.act("fds", "start");
    assert_eq!(status, 200, "{body}");
    tend.wait_status("fds", "exited");
    let (fds, log) = read_fd_list(&tend.log_dir);
    // Descriptors the test process itself holds (inherited from whatever ran the tests) reach
    // tend the same way; `children_inherit_no_descriptor_tend_inherited` is about those.
    let ours = |fd: u32, target: &str| {
        fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|t| t.to_string_lossy() == target)
    };
    let leaked: Vec<_> = beyond_stdio(&fds, &tend.log_dir, &log)
        .into_iter()
        .filter(|(fd, target)| !ours(*fd, target))
        .collect();
    assert!(
        leaked.is_empty(),
        "the child holds descriptors of tend's: {leaked:?}\nthe log:\n{log}"
    );
}

#[test]
fn children_inherit_no_descriptor_tend_inherited() {
    // tend is started with fd 7 open on /dev/null (no close-on-exec), as a shell, a CI runner or
    // a terminal multiplexer may leave it; a server must not get it.
    let dir = TempDir::new("sec_fds_inherited");
    let script = r#"echo "tend-pid $$"; exec 7</dev/null; exec "$0" up --config "$1""#;
    let tend = ShellTend::start(&dir, &fd_lister(), script, &[]);
    let tend_fd7 = fs::read_link(format!("/proc/{}/fd/7", tend.tend_pid));
    assert_eq!(
        tend_fd7.ok(),
        Some(PathBuf::from("/dev/null")),
        "the fixture: tend holds fd 7"
    );
    let (status, _, body) =
        http_request(&tend.url, "POST", "/api/servers/fds?action=start", &[], b"");
    assert_eq!(status, 200, "{}", text(&body));
    let (fds, log) = read_fd_list(&tend.log_dir);
    let extra = beyond_stdio(&fds, &tend.log_dir, &log);
    assert!(
        extra.iter().all(|(fd, _)| *fd != 7),
        "the child got fd 7, which tend inherited: {extra:?}\nthe log:\n{log}"
    );
}
