//! The harness of the integration crate: temporary directories without tempfile, a [`Tend`]
//! process that reads its own URL from stdout and cleans up every process it started, a raw
//! HTTP/1.1 client over `TcpStream`, an SSE reader, and a port-holding [`Listener`] fixture.
//!
//! Why not the CLI's HTTP client and SSE parser (src/client/http.rs, sse.rs): tend is a binary
//! crate, so this crate cannot import them, and these helpers observe the wire rather than
//! speak it correctly: raw requests, exact headers, each SSE frame as sent.
//!
//! Rules it keeps so tests can run in parallel and leave nothing behind: every test has its own
//! directory and ports; every process is stopped by PID or process group (never by name);
//! waiting is always polling against a deadline, never a fixed sleep; all traffic goes to
//! 127.0.0.1. On a failing test the directory is kept (tend's stderr in `tend.log`, its stdout
//! in `tend.stdout`, the state file, the child logs) so the failure leaves its evidence.

#![allow(dead_code)] // Not every test module uses every helper.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use serde_json::{Value, json};

/// How long [`Tend::wait_status`] and friends wait by default.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long tend may take to print its URL.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopping tend (or fixture) gets before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Read timeout of one HTTP exchange: actions wait for stops and dependency chains.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Temporary directories (walkdir's `TempDir`, ripgrep's `Dir`).

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// `env::temp_dir()/tend-tests/<name>-<pid>-<counter>`; removed on drop unless the thread is
/// panicking, so a failed test keeps its evidence.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir()
            .join("tend-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    /// Writes `text` to `rel` (creating folders) and returns the full path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The file's text, or "" when it does not exist (yet).
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path.join(rel)).unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test failed: its files are kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// The tend under test: cargo's build, or `TEND_IT_BIN` (e.g. the static musl build of
/// `make static`, to run the suite against it).
pub fn tend_bin() -> PathBuf {
    std::env::var_os("TEND_IT_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tend")), PathBuf::from)
}

/// A port nobody listens on right now: bind 127.0.0.1:0, read it, drop the listener.
/// A port nothing listens on, for a server under test to bind.
///
/// Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768–60999 by
/// default), never from `bind(0)`: the ports `bind(0)` hands out are the ones outgoing
/// connections get too, so another test's HTTP client could take the port between this call
/// and the server's bind. Below the range only explicit binds compete, and each one made here
/// is a fresh port (a counter, offset by the PID so suites run side by side start apart).
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const FIRST: usize = 20_000;
    const COUNT: usize = 12_000;
    let offset = std::process::id() as usize * 211;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// `["<tend>", "serve-demo", args…]`: an array command for the hidden demo server.
pub fn demo_cmd(args: &[&str]) -> Value {
    let mut cmd = vec![json!(tend_bin()), json!("serve-demo")];
    cmd.extend(args.iter().map(|a| json!(a)));
    Value::Array(cmd)
}

/// Polls `f` every 10 ms until it gives `Some`; panics naming `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Fields of `/proc/PID/stat` after the `(comm)`: index 0 is field 3 (state), see proc(5).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// tend's connection threads (named `http-conn`): one per open HTTP connection, event streams
/// included. A thread whose connection just closed may still be counted for a moment.
pub fn connection_threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter(|task| {
                    fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|name| name.trim_end() == "http-conn")
                })
                .count()
        })
        .unwrap_or(0)
}

/// `/proc/PID/stat` exists and the process is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// The process's start time in clock ticks since boot (proc(5) field 22).
pub fn proc_start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The process group of a live process (proc(5) field 5).
pub fn proc_pgid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Live, non-zombie processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return members;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(fields) = stat_fields(pid) {
            let live = fields.first().is_some_and(|s| s != "Z" && s != "X");
            if live && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
                members.push(pid);
            }
        }
    }
    members
}

/// Sends `sig` to `pid` (negative: a process group). Errors are ignored: the target may be gone.
pub fn send_signal(pid: i32, sig: i32) {
    assert!(
        pid != 0 && pid != -1 && pid != 1,
        "refusing to signal {pid}"
    );
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the assert above keeps
    // it away from "every process" (-1), our own group (0) and init.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGKILLs the group `pgid`, but only if its leader is still the process that started at
/// `ticks` (so a recycled PID is never hit).
fn kill_group_if_same(pgid: u32, ticks: Option<u64>) {
    if pgid <= 1 || pgid == std::process::id() {
        return;
    }
    if ticks.is_some() && proc_start_ticks(pgid) == ticks {
        send_signal(-(pgid as i32), libc::SIGKILL);
    }
}

/// Kills a process group on drop; for processes a test made tend lose track of on purpose.
pub struct GroupGuard {
    pub pgid: u32,
    ticks: Option<u64>,
}

impl GroupGuard {
    pub fn new(pgid: u32) -> GroupGuard {
        GroupGuard {
            pgid,
            ticks: proc_start_ticks(pgid),
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group_if_same(self.pgid, self.ticks);
    }
}

/// Someone accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Waits for a child with a deadline, then SIGKILLs its group and reaps it.
fn wait_child(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 (tiny_http's tests write raw requests).

/// One response: status, headers (names as sent), body.
pub type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// One request on a fresh connection to `base` ("http://127.0.0.1:PORT"), `Connection: close`.
/// `Host` and `Content-Length` are added unless `headers` has them.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    try_http_request(base, method, path, headers, body, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {base}{path}: {e}"))
}

/// [`http_request`] with an error instead of a panic, and a chosen read timeout.
pub fn try_http_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<RawResponse> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(timeout))?;
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("Host") {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    if !has("Connection") {
        head.push_str("Connection: close\r\n");
    }
    if !has("Content-Length") && (!body.is_empty() || method != "GET") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("bad response: {:?}", lossy(&raw))))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits a whole response into status, headers and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Option<RawResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Transfer-Encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = header(&headers, "Content-Length").and_then(|v| v.parse().ok()) {
        body.truncate(len);
    }
    Some((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The first header named `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A body as JSON, or the text as a JSON string when it is not JSON.
fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(lossy(body)))
}

// ---------------------------------------------------------------------------------------------
// The tend process.

/// A running `tend up` in its own process group, with the config written to `<dir>/tend.json`.
pub struct Tend {
    pub pid: u32,
    /// "http://127.0.0.1:PORT"
    pub url: String,
    pub port: u16,
    /// The test's directory (the config, tend.log, tend.stdout, the state file and logs).
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub state_file: PathBuf,
    pub log_dir: PathBuf,
    /// The API token, when the test started tend with `TEND_TOKEN`.
    pub token: Option<String>,
    child: Child,
    status: Option<ExitStatus>,
    /// Managed processes seen when this tend was killed with SIGKILL: (pgid, start ticks).
    left_behind: Vec<(u32, Option<u64>)>,
}

impl Tend {
    /// Writes `<dir>/tend.json` from `config` (state file, log dir, listen 127.0.0.1:0,
    /// auth_token "none" and health_interval_ms 200 filled in unless given) and starts
    /// `tend up --config <dir>/tend.json`.
    pub fn start(dir: &TempDir, config: &Value) -> Tend {
        Tend::start_with(dir, config, &[], &[])
    }

    pub fn start_with_args(dir: &TempDir, config: &Value, extra_args: &[&str]) -> Tend {
        Tend::start_with(dir, config, extra_args, &[])
    }

    /// The full form: extra arguments after `up --config FILE`, and extra environment for tend
    /// itself (a `TEND_TOKEN` here becomes [`Tend::token`] and is sent with every request).
    pub fn start_with(
        dir: &TempDir,
        config: &Value,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Tend {
        Tend::start_wrapped(dir, config, extra_args, env, &[])
    }

    /// Starts tend through `wrapper` (a command that ends by exec'ing its arguments, such as
    /// `unshare -U -r sh -c '…; exec "$0" "$@"'`), so the PID is tend's once it runs.
    pub fn start_wrapped(
        dir: &TempDir,
        config: &Value,
        extra_args: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Tend {
        let config = Tend::full_config(dir, config);
        let config_path = dir.write("tend.json", &serde_json::to_string_pretty(&config).unwrap());
        let state_file = PathBuf::from(config["state_file"].as_str().unwrap());
        let log_dir = PathBuf::from(config["log_dir"].as_str().unwrap());
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tend.log"))
            .unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(tend_bin());
                command
            }
            None => Command::new(tend_bin()),
        };
        command
            .arg("up")
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .current_dir(&dir.path)
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn tend up");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (url_tx, url_rx) = mpsc::channel();
        let stdout_copy = dir.join("tend.stdout");
        thread::spawn(move || {
            let mut copy = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(stdout_copy)
                .ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(copy) = copy.as_mut() {
                    let _ = writeln!(copy, "{line}");
                }
                if let Some(rest) = line.split("dashboard at ").nth(1) {
                    let _ = url_tx.send(rest.trim().to_string());
                }
            }
        });
        let token = env
            .iter()
            .find(|(k, _)| *k == "TEND_TOKEN")
            .map(|(_, v)| v.to_string());
        let mut tend = Tend {
            pid,
            url: String::new(),
            port: 0,
            dir: dir.path.clone(),
            config_path,
            state_file,
            log_dir,
            token,
            child,
            status: None,
            left_behind: Vec::new(),
        };
        let deadline = Instant::now() + START_DEADLINE;
        let printed = loop {
            match url_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(url) => break url,
                Err(_) => {
                    if let Ok(Some(status)) = tend.child.try_wait() {
                        tend.status = Some(status);
                        panic!(
                            "tend up exited ({status}) before printing its URL; stderr:\n{}",
                            dir.read("tend.log")
                        );
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "tend up printed no URL within {START_DEADLINE:?}; stderr:\n{}",
                            dir.read("tend.log")
                        );
                    }
                }
            }
        };
        // "http://127.0.0.1:PORT/" or "http://127.0.0.1:PORT/?token=…": keep scheme and host.
        let host = printed
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        tend.port = host.rsplit(':').next().unwrap().parse().unwrap();
        tend.url = format!("http://{host}");
        tend
    }

    /// `config` with the harness defaults filled in (see [`Tend::start`]).
    pub fn full_config(dir: &TempDir, config: &Value) -> Value {
        let mut config = config.clone();
        let obj = config.as_object_mut().expect("the config is a JSON object");
        let defaults = [
            ("state_file", json!(dir.join("state/process-state.json"))),
            ("log_dir", json!(dir.join("logs"))),
            ("listen", json!("127.0.0.1:0")),
            ("auth_token", json!("none")),
            ("health_interval_ms", json!(200)),
        ];
        for (key, value) in defaults {
            obj.entry(key).or_insert(value);
        }
        config
    }

    /// `<log_dir>/<id>.log` as text ("" when missing).
    pub fn log_text(&self, id: &str) -> String {
        fs::read_to_string(self.log_dir.join(format!("{id}.log"))).unwrap_or_default()
    }

    /// tend's own stderr so far (all instances started in this directory).
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(self.dir.join("tend.log")).unwrap_or_default()
    }

    /// The state file, parsed (`Value::Null` when missing or unreadable).
    pub fn state(&self) -> Value {
        fs::read(&self.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Authorization"))
            {
                all.push(("Authorization", auth));
            }
        }
        match try_http_request(&self.url, method, path, &all, body, HTTP_TIMEOUT) {
            Ok(response) => response,
            Err(e) => {
                let stderr = self.stderr_text();
                let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{method} {}{path}: {e}\ntend (PID {}) alive: {}; the end of its stderr:\n{}",
                    self.url,
                    self.pid,
                    pid_alive(self.pid),
                    tail.join("\n")
                )
            }
        }
    }

    fn json_request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, _, bytes) = match body {
            Some(body) => self.request_raw(
                method,
                path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            ),
            None => self.request_raw(method, path, &[], b""),
        };
        (status, body_json(&bytes))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.json_request("GET", path, None)
    }

    /// The `alert` events of the history (the outcome of each delivery), oldest first.
    pub fn alert_outcomes(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/history?limit=1000");
        assert_eq!(status, 200, "{body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "alert")
            .map(|e| e["data"].clone())
            .collect()
    }

    pub fn post(&self, path: &str, body: Option<&str>) -> (u16, Value) {
        self.json_request("POST", path, body)
    }

    pub fn delete(&self, path: &str, body: Option<&str>) -> (u16, Value) {
        self.json_request("DELETE", path, body)
    }

    /// `POST /api/servers/ID?action=ACTION`.
    pub fn act(&self, id: &str, action: &str) -> (u16, Value) {
        self.post(&format!("/api/servers/{id}?action={action}"), None)
    }

    /// `GET /api/servers/ID`, which must answer 200.
    pub fn server(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/servers/{id}"));
        assert_eq!(status, 200, "GET /api/servers/{id}: {body}");
        body
    }

    /// `GET /api/servers`, which must answer 200.
    pub fn servers(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/servers");
        assert_eq!(status, 200, "GET /api/servers: {body}");
        body.as_array().expect("a list").clone()
    }

    /// Polls the server until its status is `status` (10 s); panics with the last value seen.
    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_server(id, &format!("status {status}"), |s| s["status"] == status)
    }

    /// Polls the server until `pred` holds (10 s); panics with `what` and the last value seen.
    pub fn wait_server(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_server_for(id, what, WAIT, pred)
    }

    pub fn wait_server_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let server = self.server(id);
            if pred(&server) {
                return server;
            }
            if Instant::now() >= deadline {
                panic!("'{id}' never reached {what} within {timeout:?}; last seen: {server:#}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// A `tend` command aimed at this instance (`--url` first, token in the environment, run in
    /// the test directory), for tests that need to spawn it themselves (`logs -f`).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(tend_bin());
        command
            .arg("--url")
            .arg(&self.url)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("TEND_TOKEN")
            .env_remove("TEND_URL")
            .stdin(Stdio::null());
        if let Some(token) = &self.token {
            command.env("TEND_TOKEN", token);
        }
        command
    }

    /// Runs `tend --url <url> args…` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run the tend CLI")
    }

    /// The PIDs and groups of every managed process tend knows about now (API and state
    /// file), with their start ticks, so they can be cleaned up even after tend is gone.
    fn managed_groups(&self) -> Vec<(u32, Option<u64>)> {
        let mut groups = Vec::new();
        if self.status.is_none() {
            if let Ok((200, _, body)) = try_http_request(
                &self.url,
                "GET",
                "/api/servers",
                &self
                    .token
                    .as_ref()
                    .map(|t| vec![("Authorization", format!("Bearer {t}"))])
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect::<Vec<_>>(),
                b"",
                Duration::from_secs(2),
            ) {
                for server in body_json(&body).as_array().into_iter().flatten() {
                    if let Some(pid) = server["pid"].as_u64() {
                        let pid = pid as u32;
                        let pgid = proc_pgid(pid).unwrap_or(pid);
                        groups.push((pgid, proc_start_ticks(pgid)));
                    }
                }
            }
        }
        if let Some(processes) = self.state()["processes"].as_object() {
            for entry in processes.values() {
                let pgid = entry["pgid"].as_u64().or(entry["pid"].as_u64());
                if let Some(pgid) = pgid {
                    let pgid = pgid as u32;
                    groups.push((pgid, proc_start_ticks(pgid)));
                }
            }
        }
        groups
    }

    /// SIGTERM to tend, then waits (10 s) for it to exit; panics if it does not.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        send_signal(self.pid as i32, libc::SIGTERM);
        let status = wait_child(&mut self.child, STOP_DEADLINE).unwrap_or_else(|| {
            panic!(
                "tend did not exit within {STOP_DEADLINE:?} of SIGTERM; stderr:\n{}",
                self.stderr_text()
            )
        });
        self.status = Some(status);
        status
    }

    /// SIGKILL to tend alone; its children live on in their own sessions.
    pub fn kill9(&mut self) {
        if self.status.is_some() {
            return;
        }
        let groups = self.managed_groups();
        self.left_behind.extend(groups);
        send_signal(self.pid as i32, libc::SIGKILL);
        self.status = wait_child(&mut self.child, STOP_DEADLINE);
        assert!(self.status.is_some(), "tend survived SIGKILL");
    }

    /// tend's exit status, if it has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

impl Drop for Tend {
    fn drop(&mut self) {
        let mut groups = std::mem::take(&mut self.left_behind);
        groups.extend(self.managed_groups());
        if self.status.is_none() {
            send_signal(self.pid as i32, libc::SIGTERM);
            self.status = wait_child(&mut self.child, STOP_DEADLINE);
            if self.status.is_none() {
                send_signal(-(self.pid as i32), libc::SIGKILL);
                self.status = wait_child(&mut self.child, STOP_DEADLINE);
            }
        }
        groups.extend(self.managed_groups());
        let mut seen = HashSet::new();
        for (pgid, ticks) in groups {
            if seen.insert(pgid) {
                kill_group_if_same(pgid, ticks);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// A process outside tend that listens on 127.0.0.1:`port` (`tend serve-demo`), in its own
/// process group; killed by group on drop.
pub struct Listener {
    pub pid: u32,
    pub port: u16,
    child: Child,
}

impl Listener {
    pub fn start(port: u16) -> Listener {
        Listener::start_with(port, &[])
    }

    /// One that ignores SIGTERM, so only SIGKILL ends it.
    pub fn start_ignoring_term(port: u16) -> Listener {
        Listener::start_with(port, &["--ignore-term"])
    }

    pub fn start_with(port: u16, extra: &[&str]) -> Listener {
        let mut child = Command::new(tend_bin())
            .arg("serve-demo")
            .arg("--port")
            .arg(port.to_string())
            .arg("--print-every-ms")
            .arg("0")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn serve-demo");
        let pid = child.id();
        let deadline = Instant::now() + START_DEADLINE;
        while !port_open(port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("listener fixture on port {port} exited early: {status}");
            }
            if Instant::now() >= deadline {
                panic!("listener fixture never opened port {port}");
            }
            thread::sleep(Duration::from_millis(10));
        }
        Listener { pid, port, child }
    }

    /// It has exited (and is reaped now).
    pub fn is_gone(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until it has exited.
    pub fn wait_gone(&mut self, timeout: Duration) {
        let port = self.port;
        wait_until(&format!("listener on {port} to exit"), timeout, || {
            self.is_gone().then_some(())
        });
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.is_gone() {
            send_signal(-(self.pid as i32), libc::SIGKILL);
            let _ = wait_child(&mut self.child, STOP_DEADLINE);
        }
    }
}

/// A process started the way tend starts a server, without tend: its own session, the given
/// `TEND_SERVER_ID`, argv and folder, listening on `port`. Stands for a lost child (or a forgery
/// of one); killed by group on drop unless its PID now belongs to another process.
pub struct LookAlike {
    pub pid: u32,
    child: Child,
}

impl LookAlike {
    pub fn start(id: &str, argv: &[String], cwd: &Path, port: u16) -> LookAlike {
        LookAlike::start_as(None, id, argv, cwd, port)
    }

    /// As [`LookAlike::start`], run as user `uid` (needs root).
    pub fn start_as(
        uid: Option<u32>,
        id: &str,
        argv: &[String],
        cwd: &Path,
        port: u16,
    ) -> LookAlike {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(cwd)
            .env("TEND_SERVER_ID", id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn the look-alike");
        let pid = child.id();
        wait_until(&format!("the look-alike to open port {port}"), WAIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the look-alike on port {port} exited early: {status}");
            }
            port_open(port).then_some(())
        });
        LookAlike { pid, child }
    }
}

impl Drop for LookAlike {
    fn drop(&mut self) {
        // Adopted and stopped by tend, it is no longer this test's child to kill: only reap.
        if matches!(self.child.try_wait(), Ok(None)) {
            send_signal(-(self.pid as i32), libc::SIGKILL);
            let _ = wait_child(&mut self.child, STOP_DEADLINE);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; "message" when absent.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| {
            panic!("event {} data is not JSON ({e}): {}", self.event, self.data)
        })
    }
}

/// A `GET` on a raw `TcpStream` that reads `text/event-stream` frames with a read timeout.
pub struct SseReader {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    /// The last `retry:` value seen.
    pub retry: Option<u64>,
    /// A line read in part before a timeout.
    partial: Vec<u8>,
    /// Fields of the event being read.
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
}

impl SseReader {
    pub fn connect(url: &str, path: &str, last_event_id: Option<&str>) -> SseReader {
        let mut headers = Vec::new();
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        SseReader::connect_with(url, path, &headers)
    }

    /// With any extra headers (a token, a foreign Host, …).
    pub fn connect_with(url: &str, path: &str, headers: &[(&str, &str)]) -> SseReader {
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = TcpStream::connect(host).expect("connect for SSE");
        let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut head = format!("GET {path} HTTP/1.1\r\n");
        if !has("Host") {
            head.push_str(&format!("Host: {host}\r\n"));
        }
        if !has("Accept") {
            head.push_str("Accept: text/event-stream\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send SSE request");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .expect("read the SSE status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read an SSE header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        SseReader {
            reader,
            status,
            headers,
            retry: None,
            partial: Vec::new(),
            event: None,
            id: None,
            data: Vec::new(),
        }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The rest of a non-200 answer (its JSON error body), read until the server closes.
    pub fn body(&mut self) -> String {
        let mut rest = String::from_utf8_lossy(&self.partial).into_owned();
        let _ = self.reader.read_to_string(&mut rest);
        rest
    }

    /// The next event within `timeout`, or `None` (timeout or end of stream). Comments are
    /// skipped.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => return None,
                Ok(_) if !self.partial.ends_with(b"\n") => return None, // EOF mid-line
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
            let raw = std::mem::take(&mut self.partial);
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() {
                if self.data.is_empty() && self.event.is_none() {
                    self.id = None;
                    continue;
                }
                return Some(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    id: self.id.take(),
                    data: std::mem::take(&mut self.data).join("\n"),
                });
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = Some(value.to_string()),
                "id" => self.id = Some(value.to_string()),
                "data" => self.data.push(value.to_string()),
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// Reads events until one named `event` satisfies `pred`; panics after `timeout`.
    pub fn wait_for(
        &mut self,
        event: &str,
        timeout: Duration,
        pred: impl Fn(&SseEvent) -> bool,
    ) -> SseEvent {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(e) if e.event == event && pred(&e) => return e,
                Some(e) => seen.push(format!("{}: {}", e.event, e.data)),
                None => panic!(
                    "no matching '{event}' event within {timeout:?}; seen:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }
}

/// A server list with the fields that move on their own (uptime, CPU, memory) removed.
pub fn without_moving_fields(list: &Value) -> Value {
    let mut list = list.clone();
    for server in list.as_array_mut().expect("a list of servers") {
        let obj = server.as_object_mut().expect("a server object");
        for key in [
            "uptimeMs",
            "cpuPercent",
            "rssBytes",
            "processes",
            "mainCpuPercent",
            "mainRssBytes",
        ] {
            obj.remove(key);
        }
    }
    list
}

/// A command's standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI against `tend`, requires success and returns what it printed.
pub fn cli_ok(tend: &Tend, args: &[&str]) -> String {
    let out = tend.cli(args);
    assert!(
        out.status.success(),
        "tend {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Makes sure every one of `commands` is on PATH, installing Debian's `package` when one is
/// missing (tests/tools/debian-package.sh); panics with the script's output when it cannot.
/// Installs run one at a time: two apt-gets at once would fight over dpkg's lock.
pub fn ensure_debian_package(package: &str, commands: &[&str]) {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/debian-package.sh");
    let install = Command::new("sh")
        .arg(&script)
        .arg(package)
        .args(commands)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/tools/debian-package.sh");
    assert!(
        install.status.success(),
        "tests/tools/debian-package.sh {package} failed ({}):\n{}{}",
        install.status,
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
}

/// `promtool` and `prometheus` (Debian's `prometheus` package).
pub fn ensure_prometheus_tools() {
    ensure_debian_package("prometheus", &["promtool", "prometheus"]);
}

/// Reads a whole file as text, "" when missing.
pub fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
