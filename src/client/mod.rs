//! The client commands (`tend status|start|stop|restart|logs|kill-orphan|adopt`, docs/DESIGN.md §1) and the
//! small blocking HTTP/1.1 client they share with the tests.
//!
//! Runs on the main thread of a short-lived `tend` process. It talks to a running `tend up`
//! only through its HTTP API (docs/DESIGN.md §4, §5): it never reads the state file, never signals a
//! process itself, and never sends a child's command anywhere. Plain http only (no TLS): the
//! API is meant for loopback, and a token guards it (docs/DESIGN.md §8).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

mod fleet;
mod journal;
mod merged;
mod wait;

use crate::cli::{Action, Cli, Command, Target};
use crate::config;
use crate::error::{Context, Error};
use crate::groups::{self, Selector};

/// Where `tend up` listens when nothing else says (docs/DESIGN.md §2 default `listen`).
const DEFAULT_URL: &str = "http://127.0.0.1:7070";
/// A loopback connect either works at once or not at all; 5 s covers a remote `--url`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A stop waits up to the server's `stop_timeout_ms` (default 5 s, often more) before the API
/// answers, and the SSE heartbeat comes every 15 s, so reads get a generous minute.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on what a (possibly wrong) server can make us buffer.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// First wait before reconnecting a lost log stream; it doubles up to `MAX_RECONNECT_DELAY`.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The base URL of a running tend: `http://host:port`, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// A name or an IP address; IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Url {
    /// Parses `http://host:port`, `host:port` or `[::1]:port` (a trailing `/` is allowed).
    /// Without a port, 80 (as any http URL).
    pub fn parse(text: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error::other(format!("invalid tend URL '{text}': {why}"));
        let trimmed = text.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "the scheme must be http, not {scheme} (tend speaks no TLS)"
                )));
            }
            None => trimmed,
        };
        let authority = match rest.split_once('/') {
            Some((authority, "")) => authority,
            Some(_) => return Err(bad("a tend URL has no path; give http://HOST:PORT")),
            None => rest,
        };
        if authority.contains('@') || authority.contains('?') || authority.contains('#') {
            return Err(bad("give only http://HOST:PORT"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(bad("missing ']' after the IPv6 address"));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("expected ':PORT' after ']'")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(bad("write an IPv6 address in brackets, as [::1]:7070"));
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad(&format!("'{port}' is not a port number"))),
            },
        };
        Ok(Url {
            host: host.to_string(),
            port,
        })
    }

    /// The URL to reach a `listen` address; a wildcard address is reached on loopback.
    pub fn from_listen(addr: SocketAddr) -> Url {
        let ip = crate::model::reachable_ip(addr.ip());
        Url {
            host: ip.to_string(),
            port: addr.port(),
        }
    }

    /// `host:port` as the `Host` header spells it.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority())
    }
}

/// Runs a client command against the running tend and prints its result to stdout.
pub fn run(cli: &Cli) -> Result<ExitCode, Error> {
    if !matches!(
        cli.command,
        Command::Status { .. }
            | Command::FleetStatus { .. }
            | Command::Act { .. }
            | Command::Logs { .. }
            | Command::Events { .. }
            | Command::AlertsTest
            | Command::KillOrphan { .. }
            | Command::Adopt { .. }
            | Command::Reload
    ) {
        return Err(Error::other(
            "internal: client::run got a command that is not a client's",
        ));
    }
    let mut out = Stdout {
        inner: io::stdout().lock(),
        broken_pipe: false,
    };
    let color = use_color(
        // SAFETY: isatty only inspects descriptor 1; it touches no memory of ours.
        unsafe { libc::isatty(1) } == 1,
        |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
    );
    let result = match &cli.command {
        // Many tends, each with its own URL and token: no single API to resolve.
        Command::FleetStatus {
            json,
            urls,
            hosts_file,
        } => fleet::run(urls, hosts_file.as_deref(), *json, color, &mut out),
        command => resolve_api(cli)
            .and_then(|api| execute(command, &api, &mut out, RECONNECT_DELAY, color)),
    };
    // `tend logs web | head` closes the pipe early: that is the reader's choice, not a failure
    // (ripgrep's main.rs does the same).
    if out.broken_pipe {
        return Ok(ExitCode::SUCCESS);
    }
    result
}

/// Sends one request and reads the whole answer: `(status, body)`. Any status comes back as
/// `Ok`; only a failure to talk HTTP at all is an `Err`.
pub fn request(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, String), Error> {
    let mut response = send(base, method, path, body, token, &[])?;
    let text = response.read_text(base)?;
    Ok((response.status, text))
}

/// The running tend: where it is and how to prove we may talk to it.
#[derive(Debug, Clone)]
struct Api {
    base: Url,
    token: Option<String>,
}

impl Api {
    /// A request whose non-2xx answer becomes `Error::Api`; returns the body of a 2xx.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, Error> {
        let (status, text) = request(&self.base, method, path, body, self.token.as_deref())?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(self.error(status, &text))
        }
    }

    /// A non-2xx answer as an error. A 401 gets the CLI's own words instead of the API's,
    /// which speak of headers a CLI user never writes, so the token hint is given once.
    fn error(&self, status: u16, body: &str) -> Error {
        if status != 401 {
            return api_error(status, body);
        }
        let message = match self.token {
            None => format!(
                "tend at {} needs a token, and none was found: set TEND_TOKEN, or run this \
                 where the `token` file beside tend's state file is readable",
                self.base
            ),
            Some(_) => format!(
                "tend at {} refused the token it was sent: set TEND_TOKEN to the one `tend up` \
                 uses (the `token` file beside its state file)",
                self.base
            ),
        };
        Error::Api { status, message }
    }

    /// Parses a 2xx body as `T`, naming the request in the error.
    fn call_json<T: for<'de> Deserialize<'de>>(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<T, Error> {
        let text = self.call(method, path, body)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::other(format!(
                "tend at {} sent an answer to {method} {path} that tend cannot read: {e}",
                self.base
            ))
        })
    }

    /// Opens the event stream with the live lines of one server's log (docs/DESIGN.md §5).
    fn open_log_stream(
        &self,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<Response<BufReader<TcpStream>>, Error> {
        let path = format!("/api/events?logs={}", encode_component(id));
        self.open_event_stream(&path, last_event_id)
    }

    /// Opens an event stream (`path` is `/api/events` with any query); a refusal is an error.
    fn open_event_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<Response<BufReader<TcpStream>>, Error> {
        let mut headers = vec![("Accept", "text/event-stream")];
        if let Some(last) = last_event_id {
            headers.push(("Last-Event-ID", last));
        }
        let mut response = send(
            &self.base,
            "GET",
            path,
            None,
            self.token.as_deref(),
            &headers,
        )?;
        if !(200..300).contains(&response.status) {
            let text = response.read_text(&self.base)?;
            return Err(self.error(response.status, &text));
        }
        Ok(response)
    }
}

/// Finds the API and the token: `--url`, else `TEND_URL`, else the config's `listen`, else
/// 127.0.0.1:7070; `TEND_TOKEN`, else the `token` file beside the state file (docs/DESIGN.md §8a).
fn resolve_api(cli: &Cli) -> Result<Api, Error> {
    let env_url = non_empty_env("TEND_URL");
    let env_token = non_empty_env("TEND_TOKEN");
    let url_flag = cli.url.clone().or(env_url);
    let config_needed_for_url = url_flag.is_none();
    let config = if config_needed_for_url || env_token.is_none() {
        match config::locate(cli.config.as_deref()) {
            Ok(path) => match config::load(&path) {
                Ok(config) => Some(config),
                Err(errors) if config_needed_for_url => return Err(errors.into()),
                // Only the token file was wanted, and the URL came from elsewhere: a broken
                // config must not stop `tend status --url …` from working.
                Err(_) => None,
            },
            // A config named on the command line must exist; an absent default one is fine.
            Err(message) if cli.config.is_some() => return Err(Error::Other(message)),
            Err(_) => None,
        }
    } else {
        None
    };
    let base = choose_url(url_flag.as_deref(), config.as_ref().map(|c| c.listen))?;
    let token = env_token.or_else(|| {
        let config = config.as_ref()?;
        read_token_file(&config.state_file.with_file_name("token"))
    });
    Ok(Api { base, token })
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The base URL from an explicit URL (flag or env), else the config's listen, else the default.
fn choose_url(explicit: Option<&str>, listen: Option<SocketAddr>) -> Result<Url, Error> {
    match (explicit, listen) {
        (Some(text), _) => Url::parse(text),
        (None, Some(addr)) => Ok(Url::from_listen(addr)),
        (None, None) => Url::parse(DEFAULT_URL),
    }
}

/// The token `tend up` generated, if this user may read it (it is 0600 and may be another's).
fn read_token_file(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// The error body of the API (docs/DESIGN.md §4).
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Turns a non-2xx answer into `Error::Api` with the API's own words.
fn api_error(status: u16, body: &str) -> Error {
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => {
            let snippet: String = body.trim().chars().take(200).collect();
            if snippet.is_empty() {
                format!("tend answered HTTP {status}")
            } else {
                format!("tend answered HTTP {status}: {snippet}")
            }
        }
    };
    Error::Api { status, message }
}

/// Stdout that remembers a closed pipe, so `run` can call it a success.
struct Stdout<W: Write> {
    inner: W,
    broken_pipe: bool,
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}

impl<W: Write> Stdout<W> {
    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.broken_pipe = true;
            }
        }
        result
    }
}

fn emit(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes()).context("writing to stdout")
}

/// Runs one client command, printing to `out`. `retry` is the first reconnect delay of
/// `logs -f` (short in tests); `color`: colour the statuses of `tend status`.
fn execute(
    command: &Command,
    api: &Api,
    out: &mut dyn Write,
    retry: Duration,
    color: bool,
) -> Result<ExitCode, Error> {
    match command {
        Command::Status { json: true, only } if only.is_empty() => {
            // The same array as the API (docs/DESIGN.md §4), byte for byte.
            let text = api.call("GET", "/api/servers", None)?;
            emit(out, &text)?;
            if !text.ends_with('\n') {
                emit(out, "\n")?;
            }
        }
        Command::Status { json: true, only } => {
            let objects: Vec<serde_json::Value> = api.call_json("GET", "/api/servers", None)?;
            let rows: Vec<ServerRow> = objects
                .iter()
                .map(|o| serde_json::from_value(o.clone()).unwrap_or_default())
                .collect();
            let chosen: Vec<&serde_json::Value> = named(&rows, only)?
                .into_iter()
                .map(|i| &objects[i])
                .collect();
            let text = serde_json::to_string(&chosen).expect("JSON values encode");
            emit(out, &format!("{text}\n"))?;
        }
        Command::Status { json: false, only } => {
            let rows: Vec<ServerRow> = api.call_json("GET", "/api/servers", None)?;
            let rows = if only.is_empty() {
                rows
            } else {
                named(&rows, only)?
                    .into_iter()
                    .map(|i| rows[i].clone())
                    .collect()
            };
            emit(out, &format_table(&rows, color))?;
        }
        Command::Act {
            action,
            target,
            wait,
        } => act(api, *action, target, *wait, out)?,
        Command::Logs {
            targets,
            lines,
            follow,
        } if targets.groups.len() + targets.ids.len() != 1 || !targets.groups.is_empty() => {
            merged::run(api, targets, *lines, *follow, out, retry, color)?;
        }
        Command::Logs {
            targets,
            lines,
            follow,
        } => {
            let id = &targets.ids[0];
            if *follow {
                follow_logs(api, id, *lines, out, retry)?;
            } else {
                print_tail(api, id, *lines, out)?;
            }
        }
        Command::Events { id, lines, follow } => {
            if *follow {
                journal::follow(api, id.as_deref(), *lines, out, retry)?;
            } else {
                journal::print_history(api, id.as_deref(), *lines, out)?;
            }
        }
        Command::AlertsTest => return journal::alerts_test(api, out),
        Command::KillOrphan { id } => {
            let body = serde_json::json!({ "id": id }).to_string();
            let killed: Killed = api.call_json("DELETE", "/api/kill", Some(&body))?;
            emit(
                out,
                &format!("killed orphan PID {} ({})\n", killed.pid, killed.signal),
            )?;
        }
        Command::Adopt { id } => {
            let path = format!("/api/servers/{}?action=adopt", encode_component(id));
            let server: Adopted = api.call_json("POST", &path, None)?;
            emit(
                out,
                &format!(
                    "adopted '{}': PID {} is managed by tend now ({})\n",
                    server.id,
                    server.pid.map_or("?".to_string(), |p| p.to_string()),
                    server.status
                ),
            )?;
        }
        Command::Reload => {
            let plan: Plan = api.call_json("POST", "/api/reload", None)?;
            emit(out, &format_plan(&plan))?;
        }
        Command::Up(_)
        | Command::FleetStatus { .. }
        | Command::Check
        | Command::Version
        | Command::Help { .. }
        | Command::Export(_)
        | Command::Serve(_) => {
            return Err(Error::other("internal: not a client command"));
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// What `tend adopt` prints of the server object it gets back.
#[derive(Debug, Deserialize)]
struct Adopted {
    id: String,
    pid: Option<u32>,
    status: String,
}

/// The answer of `POST /api/reload`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    config: String,
    added: Vec<String>,
    removed: Vec<String>,
    restarted: Vec<String>,
    updated: Vec<String>,
    unchanged: Vec<String>,
    #[serde(default)]
    changes: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    needs_tend_restart: Vec<String>,
}

/// A reload's plan as lines a person reads: one line per non-empty list, each id with why.
fn format_plan(plan: &Plan) -> String {
    let mut text = format!("reloaded {}\n", plan.config);
    let lists = [
        ("added", &plan.added),
        ("removed", &plan.removed),
        ("restarted", &plan.restarted),
        ("updated", &plan.updated),
        ("unchanged", &plan.unchanged),
    ];
    for (name, ids) in lists {
        if ids.is_empty() {
            continue;
        }
        let described: Vec<String> = ids
            .iter()
            .map(|id| match plan.changes.get(id) {
                Some(why) => format!("{id} ({why})"),
                None => id.clone(),
            })
            .collect();
        text.push_str(&format!("  {name:<10} {}\n", described.join(", ")));
    }
    if !plan.needs_tend_restart.is_empty() {
        text.push_str(&format!(
            "changed, but kept as they were until tend restarts: {}\n",
            plan.needs_tend_restart.join(", ")
        ));
    }
    text
}

/// The answer of `DELETE /api/kill`.
#[derive(Deserialize)]
struct Killed {
    pid: u32,
    signal: String,
}

/// The answer of `GET /api/servers/ID/logs`.
#[derive(Deserialize)]
struct LogTail {
    lines: Vec<String>,
}

/// A log line of the event stream (`event: log`).
#[derive(Deserialize)]
struct LogLine {
    id: String,
    line: String,
}

/// Acts on servers: all at once, or one id after another, stopping at the first error (the
/// lines of those already done are printed by then). With `wait`, each server's line comes
/// once it is running (or stopped), and a server that will not get there is the error.
fn act(
    api: &Api,
    action: Action,
    target: &Target,
    wait: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let settle = |rows: Vec<ServerRow>| -> Result<Vec<ServerRow>, Error> {
        let Some(timeout) = wait else {
            return Ok(rows);
        };
        let goals: Vec<wait::Goal> = rows.iter().map(|r| wait::Goal::new(action, r)).collect();
        wait::settle(api, &goals, rows, timeout)
    };
    match target {
        Target::All => {
            let path = format!("/api/servers?action={}", action.as_str());
            let rows: Vec<ServerRow> = api.call_json("POST", &path, Some("{}"))?;
            for row in &settle(rows)? {
                emit(out, &act_line(row))?;
            }
        }
        Target::Selected(selector) => {
            let mut path = format!("/api/servers?action={}", action.as_str());
            for group in &selector.groups {
                path.push_str(&format!("&group={}", encode_component(group)));
            }
            for id in &selector.ids {
                path.push_str(&format!("&id={}", encode_component(id)));
            }
            let rows: Vec<ServerRow> = api.call_json("POST", &path, Some("{}"))?;
            for row in &settle(rows)? {
                emit(out, &act_line(row))?;
            }
        }
        Target::Ids(ids) => {
            for id in ids {
                let path = format!(
                    "/api/servers/{}?action={}",
                    encode_component(id),
                    action.as_str()
                );
                let row: ServerRow = api.call_json("POST", &path, Some("{}"))?;
                for row in &settle(vec![row])? {
                    emit(out, &act_line(row))?;
                }
                out.flush().context("writing to stdout")?;
            }
        }
    }
    Ok(())
}

/// The indexes of the rows `only` names (`tend status @backend`), with the API's words for an
/// unknown group or id.
fn named(rows: &[ServerRow], only: &Selector) -> Result<Vec<usize>, Error> {
    let roster: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.group.as_deref()))
        .collect();
    groups::select(&roster, only).map_err(|unknown| Error::Api {
        status: 404,
        message: unknown.to_string(),
    })
}

/// `web: running (PID 1234)`, with the last error when the server is not up.
fn act_line(row: &ServerRow) -> String {
    let mut line = format!("{}: {}", row.id, row.status);
    if let Some(pid) = row.pid {
        line.push_str(&format!(" (PID {pid})"));
    }
    if let Some(note) = row.health_note() {
        line.push_str(&format!(" — {note}"));
    }
    if let Some(error) = &row.last_error {
        if !matches!(row.status.as_str(), "running" | "starting") {
            line.push_str(&format!(" — {error}"));
        }
    }
    line.push('\n');
    line
}

fn print_tail(api: &Api, id: &str, lines: usize, out: &mut dyn Write) -> Result<(), Error> {
    let path = format!("/api/servers/{}/logs?lines={lines}", encode_component(id));
    let tail: LogTail = api.call_json("GET", &path, None)?;
    for line in &tail.lines {
        emit(out, line)?;
        emit(out, "\n")?;
    }
    out.flush().context("writing to stdout")
}

/// `tend logs -f`: the tail, then every new line until interrupted. A lost stream (tend
/// restarting) is reopened with a growing delay; a refusal (unknown id, bad token) ends it.
/// The stream follows the server's log file, not its process, so a restarted server keeps
/// streaming on the same connection. Lines written while no stream is open (tend down) are
/// not replayed: `log` events carry no id (docs/DESIGN.md §5).
fn follow_logs(
    api: &Api,
    id: &str,
    lines: usize,
    out: &mut dyn Write,
    retry: Duration,
) -> Result<(), Error> {
    // Subscribe before reading the tail, so that no line written in between is lost; one
    // written in that instant may be printed twice, which is the lesser harm.
    let mut stream = api.open_log_stream(id, None)?;
    print_tail(api, id, lines, out)?;
    let mut parser = SseParser::new();
    loop {
        pump_log_lines(&mut stream, &mut parser, id, out)?;
        eprintln!("tend: lost the log stream from {}; reconnecting", api.base);
        let mut delay = parser.retry().unwrap_or(retry).min(MAX_RECONNECT_DELAY);
        stream = loop {
            std::thread::sleep(delay);
            match api.open_log_stream(id, parser.last_id()) {
                Ok(stream) => break stream,
                // A 5xx (503 while the old tend shuts down, 504) passes; a 4xx (unknown id,
                // bad token) will not.
                Err(e @ Error::Api { status: ..500, .. }) => return Err(e),
                Err(_) => delay = (delay * 2).min(MAX_RECONNECT_DELAY),
            }
        };
    }
}

/// Prints the log lines of one stream until it ends. Read errors end the stream (`Ok`); only a
/// failure to print is an `Err`.
fn pump_log_lines(
    stream: &mut Response<BufReader<TcpStream>>,
    parser: &mut SseParser,
    id: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut reader = BufReader::new(&mut stream.body);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        let Some(event) = parser.feed_line(&String::from_utf8_lossy(&line)) else {
            continue;
        };
        if event.event != "log" {
            continue;
        }
        // A malformed frame is skipped: one bad line must not end a follow.
        let Ok(log) = serde_json::from_str::<LogLine>(&event.data) else {
            continue;
        };
        if log.id == id {
            emit(out, &log.line)?;
            emit(out, "\n")?;
            out.flush().context("writing to stdout")?;
        }
    }
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved characters pass).
fn encode_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 over TcpStream

/// An answer whose head has been read; the body is read on demand.
struct Response<R> {
    status: u16,
    body: Body<R>,
}

impl Response<BufReader<TcpStream>> {
    /// A second handle of the connection, for changing its timeouts while the body is borrowed.
    fn socket(&self) -> Result<TcpStream, Error> {
        self.body
            .inner
            .get_ref()
            .try_clone()
            .context("duplicating the connection to tend")
    }
}

impl<R: BufRead> Response<R> {
    /// Reads the whole body (at most `MAX_BODY_BYTES`) as text.
    fn read_text(&mut self, base: &Url) -> Result<String, Error> {
        let mut bytes = Vec::new();
        (&mut self.body)
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading the answer of tend at {base}"))?;
        if bytes.len() as u64 > MAX_BODY_BYTES {
            return Err(Error::other(format!(
                "tend at {base} sent an answer over {} MiB",
                MAX_BODY_BYTES / (1024 * 1024)
            )));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Connects, writes the request, and reads the answer's status line and headers.
fn send(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Result<Response<BufReader<TcpStream>>, Error> {
    let stream = connect(base)?;
    let sending = || format!("sending {method} {path} to tend at {base}");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .with_context(sending)?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .with_context(sending)?;
    let head = request_head(base, method, path, body, token, extra_headers);
    let mut writer = &stream;
    writer.write_all(head.as_bytes()).with_context(sending)?;
    if let Some(body) = body {
        writer.write_all(body.as_bytes()).with_context(sending)?;
    }
    writer.flush().with_context(sending)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, method)
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::other(format!(
                "tend at {base} did not answer {method} {path} within {} s",
                READ_TIMEOUT.as_secs()
            )),
            _ => Error::Io {
                what: format!("reading the answer of tend at {base}"),
                source: e,
            },
        })
        .map(|(status, body)| Response {
            status,
            body: body.with_reader(reader),
        })
}

fn connect(base: &Url) -> Result<TcpStream, Error> {
    let addrs = (base.host.as_str(), base.port)
        .to_socket_addrs()
        .with_context(|| {
            format!(
                "cannot reach tend at {base}: cannot resolve '{}'",
                base.host
            )
        })?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    let error = last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"));
    Err(match error.kind() {
        io::ErrorKind::ConnectionRefused => Error::other(format!(
            "cannot reach tend at {base}: connection refused (is `tend up` running?)"
        )),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::other(format!(
            "cannot reach tend at {base}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        _ => Error::Io {
            what: format!("cannot reach tend at {base}"),
            source: error,
        },
    })
}

fn request_head(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tend/{}\r\nConnection: close\r\n",
        base.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    if !extra_headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
    {
        head.push_str("Accept: application/json\r\n");
    }
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match body {
        Some(body) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )),
        // A POST or DELETE without a length makes some servers wait for a body.
        None if method != "GET" && method != "HEAD" => head.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    head.push_str("\r\n");
    head
}

/// How the body of an answer ends, decided from its head (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilEof,
}

impl Framing {
    fn with_reader<R>(self, inner: R) -> Body<R> {
        let kind = match self {
            Framing::Length(remaining) => BodyKind::Length { remaining },
            Framing::Chunked => BodyKind::Chunked {
                remaining: 0,
                done: false,
            },
            Framing::UntilEof => BodyKind::UntilEof,
        };
        Body { inner, kind }
    }
}

/// Reads the status line and headers; returns the status and how the body is framed.
fn read_response<R: BufRead>(reader: &mut R, method: &str) -> io::Result<(u16, Framing)> {
    let mut budget = MAX_HEAD_BYTES;
    let status_line = read_head_line(reader, &mut budget)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed without an answer",
        )
    })?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let status = match code.parse::<u16>() {
        Ok(status) if version.starts_with("HTTP/1.") && (100..1000).contains(&status) => status,
        _ => return Err(invalid(format!("not an HTTP status line: {status_line:?}"))),
    };
    let mut length = None;
    let mut chunked = false;
    loop {
        let line = read_head_line(reader, &mut budget)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside the headers",
            )
        })?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("not an HTTP header: {line:?}")));
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is always the last coding when present (RFC 9112 §6.1).
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            let parsed = value
                .parse::<u64>()
                .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
            length = Some(parsed);
        }
    }
    let framing = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilEof
    };
    Ok((status, framing))
}

/// One CRLF- (or LF-) terminated line of the head, counted against `budget`; `None` at EOF.
fn read_head_line<R: BufRead>(reader: &mut R, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX).saturating_add(1);
    let read = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(if read > *budget {
            invalid(format!("the head is over {MAX_HEAD_BYTES} bytes"))
        } else {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside a line",
            )
        });
    }
    *budget -= read;
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The body of an answer, decoded from its framing as it is read.
struct Body<R> {
    inner: R,
    kind: BodyKind,
}

enum BodyKind {
    Length {
        remaining: u64,
    },
    /// `remaining` bytes are left in the current chunk (0: a size line comes next).
    Chunked {
        remaining: u64,
        done: bool,
    },
    UntilEof,
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.kind {
            BodyKind::UntilEof => self.inner.read(buf),
            BodyKind::Length { remaining } => {
                if *remaining == 0 {
                    return Ok(0);
                }
                let max = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let read = self.inner.read(&mut buf[..max])?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed before the end of the body",
                    ));
                }
                *remaining -= read as u64;
                Ok(read)
            }
            BodyKind::Chunked { remaining, done } => {
                if *done {
                    return Ok(0);
                }
                if *remaining == 0 {
                    let size = read_chunk_size(&mut self.inner)?;
                    if size == 0 {
                        skip_trailers(&mut self.inner)?;
                        *done = true;
                        return Ok(0);
                    }
                    *remaining = size;
                }
                let max = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let read = self.inner.read(&mut buf[..max])?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed inside a chunk",
                    ));
                }
                *remaining -= read as u64;
                if *remaining == 0 {
                    expect_line_end(&mut self.inner)?;
                }
                Ok(read)
            }
        }
    }
}

/// Reads `SIZE[;extensions]\r\n` and returns SIZE.
fn read_chunk_size<R: BufRead>(reader: &mut R) -> io::Result<u64> {
    let mut budget = 1024;
    let line = read_head_line(reader, &mut budget)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before a chunk",
        )
    })?;
    let size = line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))
}

fn expect_line_end<R: BufRead>(reader: &mut R) -> io::Result<()> {
    let mut byte = [0u8; 1];
    reader.read_exact(&mut byte)?;
    if byte[0] == b'\r' {
        reader.read_exact(&mut byte)?;
    }
    if byte[0] == b'\n' {
        Ok(())
    } else {
        Err(invalid("a chunk does not end with CRLF".to_string()))
    }
}

fn skip_trailers<R: BufRead>(reader: &mut R) -> io::Result<()> {
    let mut budget = MAX_HEAD_BYTES;
    // EOF instead of the final empty line is tolerated: the body is complete by then.
    while let Some(line) = read_head_line(reader, &mut budget)? {
        if line.is_empty() {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events (the client half of docs/DESIGN.md §5)

/// One dispatched event: its name (`message` when unnamed), its data, and the last id seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// A line-at-a-time parser of an event stream, as the HTML standard's "interpreting an event
/// stream" says: fields `event`, `data`, `id`, `retry`; `:` comments; a blank line dispatches.
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds one line (its `\n` or `\r\n` may be left on); returns an event on a blank line
    /// that ends one with data.
    pub fn feed_line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // The standard ignores an id with NUL in it.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    /// The id to send as `Last-Event-ID` when reconnecting.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnect delay the server asked for.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The status table

/// The fields of a server object (docs/DESIGN.md §4) the CLI shows; missing ones default, unknown
/// ones are ignored, so a newer tend still works with an older CLI.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ServerRow {
    id: String,
    group: Option<String>,
    status: String,
    pid: Option<u32>,
    uptime_ms: Option<u64>,
    restarts: u32,
    exit_code: Option<i32>,
    exit_signal: Option<String>,
    ports: Vec<PortRow>,
    orphaned: bool,
    orphaned_pid: Option<u32>,
    adopted: bool,
    cpu_percent: Option<f64>,
    rss_bytes: Option<u64>,
    last_error: Option<String>,
    health: Option<HealthRow>,
}

/// The last health check, as far as `tend status` shows it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HealthRow {
    ok: bool,
    ready: bool,
    detail: String,
}

impl ServerRow {
    /// Why a live server is not running, from its health check: "HTTP 503 from /healthz".
    fn health_note(&self) -> Option<String> {
        let health = self.health.as_ref()?;
        match self.status.as_str() {
            "unhealthy" if !health.ok => Some(format!("unhealthy: {}", health.detail)),
            "starting" if !health.ready => Some(format!("not ready: {}", health.detail)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PortRow {
    port: u16,
    open: bool,
    owner_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

const COLUMNS: [(&str, Align); 9] = [
    ("ID", Align::Left),
    ("STATUS", Align::Left),
    ("PID", Align::Right),
    ("UPTIME", Align::Right),
    ("RESTARTS", Align::Right),
    ("PORTS", Align::Left),
    ("CPU%", Align::Right),
    ("MEM", Align::Right),
    ("NOTE", Align::Left),
];

/// Whether `tend status` colours its statuses: `NO_COLOR` (non-empty) never, else
/// `CLICOLOR_FORCE` (non-empty, not `0`) always, else only when stdout is a terminal.
/// NO_COLOR wins over CLICOLOR_FORCE: it is the reader's standing wish (no-color.org).
fn use_color(stdout_is_terminal: bool, var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    if set("NO_COLOR") {
        return false;
    }
    if set("CLICOLOR_FORCE") && var("CLICOLOR_FORCE").as_deref() != Some("0") {
        return true;
    }
    stdout_is_terminal
}

/// The SGR colour of a status word: green up, yellow in between, red down, dim at rest.
fn status_color(status: &str) -> Option<&'static str> {
    match status {
        "running" => Some("\x1b[32m"),
        "starting" | "stopping" | "unhealthy" | "backoff" => Some("\x1b[33m"),
        // The last three are a fleet table's rows for a tend that could not be read.
        "crashed" | "fatal" | "unreachable" | "refused" | "error" => Some("\x1b[31m"),
        "stopped" | "exited" => Some("\x1b[2m"),
        _ => None,
    }
}

const STATUS_COLUMN: usize = 1;

/// The `tend status` table, columns aligned, ending with a newline. With `color`, the status
/// words are wrapped in escape codes after padding, so alignment counts only visible text.
fn format_table(rows: &[ServerRow], color: bool) -> String {
    let cells: Vec<[String; 9]> = rows.iter().map(table_row).collect();
    render_table(&COLUMNS, &cells, STATUS_COLUMN, color)
}

/// Columns aligned by their visible width, a header first; with `color`, the cells of
/// `status_column` are coloured as [`status_color`] says.
fn render_table<const N: usize>(
    columns: &[(&str, Align); N],
    cells: &[[String; N]],
    status_column: usize,
    color: bool,
) -> String {
    let header = columns.map(|(name, _)| name.to_string());
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(cells) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for (number, row) in std::iter::once(&header).chain(cells).enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - cell.chars().count());
            let sgr = (color && number > 0 && i == status_column)
                .then(|| status_color(cell))
                .flatten();
            let shown = match sgr {
                Some(sgr) => format!("{sgr}{cell}\x1b[0m"),
                None => cell.clone(),
            };
            match columns[i].1 {
                Align::Left => {
                    line.push_str(&shown);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(&shown);
                }
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn table_row(row: &ServerRow) -> [String; 9] {
    let dash = || "-".to_string();
    let ports = row
        .ports
        .iter()
        .map(|port| match port.owner_pid {
            // The port is held from outside the server's tree: show who holds it.
            Some(owner) if row.orphaned && row.orphaned_pid == Some(owner) => {
                format!("{}!{owner}", port.port)
            }
            _ => format!("{}{}", port.port, if port.open { "✓" } else { "✗" }),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut notes = Vec::new();
    if row.orphaned {
        notes.push(match row.orphaned_pid {
            Some(pid) => format!("orphan PID {pid}"),
            None => "orphan".to_string(),
        });
    }
    if row.adopted {
        notes.push("adopted".to_string());
    }
    notes.extend(row.health_note());
    if let Some(error) = &row.last_error {
        notes.push(error.clone());
    }
    [
        row.id.clone(),
        row.status.clone(),
        row.pid.map_or_else(dash, |pid| pid.to_string()),
        row.uptime_ms
            .map_or_else(dash, |ms| human_duration(Duration::from_millis(ms))),
        row.restarts.to_string(),
        if ports.is_empty() { dash() } else { ports },
        row.cpu_percent.map_or_else(dash, |cpu| format!("{cpu:.1}")),
        row.rss_bytes.map_or_else(dash, human_bytes),
        notes.join("; "),
    ]
}

/// `5s`, `3m12s`, `2h05m`, `3d4h`: two units at most, the larger first.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// `512B`, `812KiB`, `4.2MiB`, `1.5GiB`: one decimal below 10 of a unit.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    // --- URLs -----------------------------------------------------------------------------

    #[test]
    fn urls_parse_with_or_without_scheme() {
        let table = [
            (
                "http://127.0.0.1:7070",
                "127.0.0.1",
                7070,
                "http://127.0.0.1:7070",
            ),
            ("127.0.0.1:7070", "127.0.0.1", 7070, "http://127.0.0.1:7070"),
            ("http://localhost:9/", "localhost", 9, "http://localhost:9"),
            (
                "HTTP://Tend.local:8080",
                "Tend.local",
                8080,
                "http://Tend.local:8080",
            ),
            ("localhost", "localhost", 80, "http://localhost:80"),
            ("[::1]:7070", "::1", 7070, "http://[::1]:7070"),
            ("http://[::1]:7071/", "::1", 7071, "http://[::1]:7071"),
            (" http://h:1 ", "h", 1, "http://h:1"),
        ];
        for (text, host, port, shown) in table {
            let url = Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((url.host.as_str(), url.port), (host, port), "{text}");
            assert_eq!(url.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        let table = [
            ("https://127.0.0.1:7070", "TLS"),
            ("http://h:1/api", "no path"),
            ("h:99999", "'99999'"),
            ("h:0", "'0'"),
            ("h:", "''"),
            ("::1:7070", "brackets"),
            ("[::1:7070", "']'"),
            ("http://:7070", "host is missing"),
            ("http://user@h:1", "only http://HOST:PORT"),
        ];
        for (text, needle) in table {
            match Url::parse(text) {
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.contains(needle), "{text}: {message}");
                    assert!(message.contains(text.trim()), "{text}: {message}");
                }
                Ok(url) => panic!("{text} should not parse, got {url}"),
            }
        }
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let table = [
            ("0.0.0.0:7070", "http://127.0.0.1:7070"),
            ("[::]:7070", "http://[::1]:7070"),
            ("10.1.2.3:80", "http://10.1.2.3:80"),
            ("127.0.0.1:1", "http://127.0.0.1:1"),
        ];
        for (listen, url) in table {
            assert_eq!(
                Url::from_listen(listen.parse().unwrap()).to_string(),
                url,
                "{listen}"
            );
        }
    }

    #[test]
    fn an_explicit_url_wins_over_the_config_then_the_default() {
        let listen: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert_eq!(
            choose_url(Some("h:1"), Some(listen)).unwrap().to_string(),
            "http://h:1"
        );
        assert_eq!(
            choose_url(None, Some(listen)).unwrap().to_string(),
            "http://127.0.0.1:9999"
        );
        assert_eq!(choose_url(None, None).unwrap().to_string(), DEFAULT_URL);
    }

    #[test]
    fn the_token_file_is_read_trimmed_and_an_empty_one_is_no_token() {
        let dir = std::env::temp_dir()
            .join("tend-tests")
            .join(format!("client-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read_token_file(&file).as_deref(), Some("s3cret"));
        std::fs::write(&file, " \n").unwrap();
        assert_eq!(read_token_file(&file), None);
        assert_eq!(read_token_file(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_components_are_percent_encoded() {
        assert_eq!(encode_component("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode_component("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    // --- HTTP answers -----------------------------------------------------------------------

    fn parse_answer(raw: &[u8], method: &str) -> io::Result<(u16, String)> {
        let mut reader = Cursor::new(raw.to_vec());
        let (status, framing) = read_response(&mut reader, method)?;
        let mut body = String::new();
        framing.with_reader(reader).read_to_string(&mut body)?;
        Ok((status, body))
    }

    #[test]
    fn answers_are_framed_by_length_chunks_or_eof() {
        let table: [(&[u8], u16, &str); 7] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more",
                200,
                "hello",
            ),
            (
                b"HTTP/1.0 404 Not Found\r\ncontent-length:2\r\n\r\n{}",
                404,
                "{}",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
                200,
                "hello, world",
            ),
            (
                // Chunked wins over a Content-Length beside it (RFC 9112 §6.3).
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  A\r\n0123456789\r\n0\r\n\r\n",
                200,
                "0123456789",
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
                200,
                "until the end",
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\nignored", 204, ""),
            (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, "ok"),
        ];
        for (raw, status, body) in table {
            let text = String::from_utf8_lossy(raw);
            let answer = parse_answer(raw, "GET").unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(answer, (status, body.to_string()), "{text:?}");
        }
        let head = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD").unwrap();
        assert_eq!(head, (200, String::new()));
    }

    #[test]
    fn broken_answers_are_errors_not_panics() {
        let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        huge.extend(b"\r\n\r\n");
        let table: [(&[u8], &str); 9] = [
            (b"", "without an answer"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP status line"),
            (b"HTTP/1.1 abc OK\r\n\r\n", "not an HTTP status line"),
            (
                b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                "not an HTTP header",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "before the end",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
                "CRLF",
            ),
            (&huge, "over"),
        ];
        for (raw, needle) in table {
            match parse_answer(raw, "GET") {
                Err(e) => assert!(e.to_string().contains(needle), "{needle}: {e}"),
                Ok(answer) => panic!("{needle}: parsed as {answer:?}"),
            }
        }
    }

    #[test]
    fn api_errors_carry_the_apis_words_and_status() {
        let body = r#"{"error": "server 'web' is already running", "code": "conflict"}"#;
        match api_error(409, body) {
            Error::Api { status, message } => {
                assert_eq!(status, 409);
                assert_eq!(message, "server 'web' is already running");
            }
            other => panic!("{other:?}"),
        }
        match api_error(502, "<html>bad gateway</html>") {
            Error::Api { message, .. } => {
                assert_eq!(message, "tend answered HTTP 502: <html>bad gateway</html>")
            }
            other => panic!("{other:?}"),
        }
    }

    // --- SSE --------------------------------------------------------------------------------

    fn feed(parser: &mut SseParser, text: &str) -> Vec<SseEvent> {
        text.split_inclusive('\n')
            .filter_map(|line| parser.feed_line(line))
            .collect()
    }

    fn event(name: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: name.into(),
            data: data.into(),
            id: id.map(String::from),
        }
    }

    #[test]
    fn sse_frames_are_parsed_as_the_standard_says() {
        let mut parser = SseParser::new();
        let stream = "retry: 2000\n\n\
                      : heartbeat\n\n\
                      id: 1\nevent: servers\ndata: [1,\ndata: 2]\n\n\
                      data:no space\r\n\r\n\
                      id: 7\nevent: log\ndata: {\"id\":\"web\"}\n\n\
                      event: ignored-without-data\n\n\
                      data\n\n\
                      unknown: field\ndata:  two spaces\n\n";
        assert_eq!(
            feed(&mut parser, stream),
            vec![
                event("servers", "[1,\n2]", Some("1")),
                event("message", "no space", Some("1")),
                event("log", "{\"id\":\"web\"}", Some("7")),
                event("message", "", Some("7")),
                event("message", " two spaces", Some("7")),
            ]
        );
        assert_eq!(parser.retry(), Some(Duration::from_millis(2000)));
        assert_eq!(parser.last_id(), Some("7"));
    }

    #[test]
    fn an_unfinished_sse_frame_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(feed(&mut parser, "event: log\ndata: half\n").is_empty());
        assert_eq!(parser.feed_line("\n"), Some(event("log", "half", None)));
        assert!(feed(&mut parser, "id: a\0b\nretry: soon\n\n").is_empty());
        assert_eq!(parser.last_id(), None);
        assert_eq!(parser.retry(), None);
    }

    // --- the table ----------------------------------------------------------------------------

    #[test]
    fn durations_and_sizes_read_like_a_person_writes_them() {
        let durations = [
            (0, "0s"),
            (5, "5s"),
            (59, "59s"),
            (60, "1m00s"),
            (192, "3m12s"),
            (3599, "59m59s"),
            (3600, "1h00m"),
            (7500, "2h05m"),
            (86399, "23h59m"),
            (86400, "1d0h"),
            (273_600, "3d4h"),
        ];
        for (secs, text) in durations {
            assert_eq!(human_duration(Duration::from_secs(secs)), text, "{secs} s");
        }
        assert_eq!(human_duration(Duration::from_millis(5999)), "5s");
        let sizes = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0KiB"),
            (1536, "1.5KiB"),
            (831_488, "812KiB"),
            (4_404_019, "4.2MiB"),
            (1_610_612_736, "1.5GiB"),
            (12 * 1024 * 1024, "12MiB"),
        ];
        for (bytes, text) in sizes {
            assert_eq!(human_bytes(bytes), text, "{bytes} bytes");
        }
    }

    fn rows(json: &str) -> Vec<ServerRow> {
        serde_json::from_str(json).unwrap()
    }

    const SERVERS: &str = r#"[
        {"id": "web", "command": "x", "status": "running", "running": true, "healthy": true,
         "pid": 1234, "startTime": 1, "uptimeMs": 192000, "restarts": 0, "exitCode": null,
         "exitSignal": null, "ports": [{"port": 8000, "open": true, "ownerPid": 1234},
         {"port": 8001, "open": false, "ownerPid": null}], "orphaned": false,
         "orphanedPid": null, "adopted": true, "cpuPercent": 1.25, "rssBytes": 4404019,
         "lastError": null},
        {"id": "database", "status": "crashed", "pid": null, "uptimeMs": null, "restarts": 3,
         "ports": [{"port": 5432, "open": true, "ownerPid": 4242}], "orphaned": true,
         "orphanedPid": 4242, "adopted": false, "cpuPercent": null, "rssBytes": null,
         "lastError": "exited with code 1", "someFutureField": [1, 2]}
    ]"#;

    #[test]
    fn the_status_table_is_aligned_and_says_what_matters() {
        let table = format_table(&rows(SERVERS), false);
        let expected = "\
ID        STATUS    PID  UPTIME  RESTARTS  PORTS        CPU%     MEM  NOTE
web       running  1234   3m12s         0  8000✓ 8001✗   1.2  4.2MiB  adopted
database  crashed     -       -         3  5432!4242       -       -  orphan PID 4242; exited with code 1
";
        assert_eq!(table, expected);
        assert_eq!(
            format_table(&[], false),
            "ID  STATUS  PID  UPTIME  RESTARTS  PORTS  CPU%  MEM  NOTE\n"
        );
        assert_eq!(format_table(&[], true), format_table(&[], false));
    }

    #[test]
    fn the_note_says_why_a_server_is_unhealthy_or_not_ready() {
        let table = format_table(
            &rows(
                r#"[{"id": "api", "status": "unhealthy", "pid": 7, "restarts": 0,
                     "health": {"ok": false, "ready": true, "detail": "HTTP 503 from /healthz"}},
                    {"id": "job", "status": "starting", "pid": 8, "restarts": 0,
                     "health": {"ok": false, "ready": false, "detail": "no line matched /ready/ yet"}},
                    {"id": "ok", "status": "running", "pid": 9, "restarts": 1,
                     "lastError": "memory 310 MiB over 256 MiB: restarted",
                     "health": {"ok": true, "ready": true, "detail": "HTTP 200 from /"}}]"#,
            ),
            false,
        );
        let notes: Vec<&str> = table
            .lines()
            .skip(1)
            .map(|line| line.split("  ").last().unwrap().trim())
            .collect();
        assert_eq!(
            notes,
            [
                "unhealthy: HTTP 503 from /healthz",
                "not ready: no line matched /ready/ yet",
                "memory 310 MiB over 256 MiB: restarted",
            ]
        );
    }

    /// The table with its escape codes taken out.
    fn strip_sgr(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('\x1b') {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('m')
                .expect("an SGR sequence ends with m");
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn coloured_statuses_keep_the_columns_aligned() {
        let json = r#"[{"id": "a", "status": "running", "pid": 1},
            {"id": "bb", "status": "backoff", "restarts": 2},
            {"id": "c", "status": "fatal"}, {"id": "d", "status": "stopped"},
            {"id": "e", "status": "exited"}, {"id": "f", "status": "unhealthy", "pid": 7},
            {"id": "g", "status": "starting"}, {"id": "h", "status": "stopping"},
            {"id": "i", "status": "crashed"}, {"id": "j", "status": "someday"}]"#;
        let plain = format_table(&rows(json), false);
        let coloured = format_table(&rows(json), true);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert_eq!(
            strip_sgr(&coloured),
            plain,
            "colour changes nothing but the codes"
        );
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(
            lines[0].starts_with("ID  STATUS     PID"),
            "the header is plain: {:?}",
            lines[0]
        );
        for (line, code, word) in [
            (1, "32", "running"),
            (2, "33", "backoff"),
            (3, "31", "fatal"),
            (4, "2", "stopped"),
            (5, "2", "exited"),
            (6, "33", "unhealthy"),
            (7, "33", "starting"),
            (8, "33", "stopping"),
            (9, "31", "crashed"),
        ] {
            let wanted = format!("\x1b[{code}m{word}\x1b[0m");
            assert!(
                lines[line].contains(&wanted),
                "{:?} lacks {wanted:?}",
                lines[line]
            );
        }
        assert!(
            !lines[10].contains('\x1b'),
            "an unknown status stays plain: {:?}",
            lines[10]
        );
        // Visible widths agree line by line: every PID column ends at the same place.
        let plain_lines: Vec<&str> = plain.lines().collect();
        let stripped = strip_sgr(&coloured);
        for (a, b) in plain_lines.iter().zip(stripped.lines()) {
            assert_eq!(a.chars().count(), b.chars().count());
        }
    }

    #[test]
    fn colour_is_for_terminals_unless_no_color_or_clicolor_force_say_otherwise() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        type Vars = &'static [(&'static str, &'static str)];
        let table: [(bool, Vars, bool); 9] = [
            (true, &[], true),
            (false, &[], false),
            (true, &[("NO_COLOR", "1")], false),
            (true, &[("NO_COLOR", "")], true),
            (false, &[("CLICOLOR_FORCE", "1")], true),
            (false, &[("CLICOLOR_FORCE", "0")], false),
            (false, &[("CLICOLOR_FORCE", "")], false),
            (false, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], false),
            (true, &[("CLICOLOR_FORCE", "0")], true),
        ];
        for (tty, vars, expected) in table {
            assert_eq!(use_color(tty, env(vars)), expected, "tty {tty}, {vars:?}");
        }
    }

    #[test]
    fn action_lines_name_the_pid_and_why_a_server_is_down() {
        let rows = rows(SERVERS);
        assert_eq!(act_line(&rows[0]), "web: running (PID 1234)\n");
        assert_eq!(
            act_line(&rows[1]),
            "database: crashed — exited with code 1\n"
        );
    }

    #[test]
    fn a_closed_stdout_is_remembered_as_a_broken_pipe() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Stdout {
            inner: Closed,
            broken_pipe: false,
        };
        assert!(emit(&mut out, "x\n").is_err());
        assert!(out.broken_pipe);
    }

    // --- end to end against a fake tend ---------------------------------------------------

    /// One request as the fake server saw it.
    #[derive(Debug)]
    struct Seen {
        head: String,
        body: String,
    }

    impl Seen {
        fn request_line(&self) -> &str {
            self.head.lines().next().unwrap_or("")
        }
    }

    /// A fake tend on 127.0.0.1 that answers each connection, in order, with the next raw
    /// answer. Each request is reported before its answer is written, so a client that has
    /// its answer can find the request in the channel.
    fn fake_tend(answers: Vec<String>) -> (Url, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::from_listen(listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for answer in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(&stream);
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let _ = tx.send(Seen { head, body });
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
        (url, rx)
    }

    fn json_answer(status: u16, body: &str) -> String {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn api(url: Url, token: Option<&str>) -> Api {
        Api {
            base: url,
            token: token.map(String::from),
        }
    }

    fn run_command(api: &Api, command: Command) -> (Result<ExitCode, Error>, String) {
        let mut out = Vec::new();
        let result = execute(&command, api, &mut out, Duration::from_millis(10), false);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn request_sends_a_complete_http_request_and_reads_the_answer() {
        let (url, seen) = fake_tend(vec![json_answer(201, r#"{"ok":true}"#)]);
        let answer = request(&url, "POST", "/api/x?y=1", Some("{}"), Some("tok")).unwrap();
        assert_eq!(answer, (201, r#"{"ok":true}"#.to_string()));
        let seen = seen.recv().unwrap();
        assert_eq!(seen.request_line(), "POST /api/x?y=1 HTTP/1.1");
        for header in [
            format!("Host: {}\r\n", url.authority()),
            "Connection: close\r\n".to_string(),
            "Authorization: Bearer tok\r\n".to_string(),
            "Content-Type: application/json\r\n".to_string(),
            "Content-Length: 2\r\n".to_string(),
        ] {
            assert!(
                seen.head.contains(&header),
                "{header:?} missing in {:?}",
                seen.head
            );
        }
        assert_eq!(seen.body, "{}");
    }

    #[test]
    fn request_reads_a_chunked_answer_and_sends_no_token_when_there_is_none() {
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        let (url, seen) = fake_tend(vec![chunked.to_string()]);
        assert_eq!(
            request(&url, "GET", "/api/servers", None, None).unwrap(),
            (200, "[1,2]".into())
        );
        let seen = seen.recv().unwrap();
        assert!(!seen.head.contains("Authorization"), "{}", seen.head);
        assert!(!seen.head.contains("Content-Length"), "{}", seen.head);
    }

    #[test]
    fn a_refused_connection_says_whether_tend_is_running() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::from_listen(listener.local_addr().unwrap());
        drop(listener);
        let error = request(&url, "GET", "/api/servers", None, None).unwrap_err();
        assert_eq!(
            report(&error),
            format!("cannot reach tend at {url}: connection refused (is `tend up` running?)")
        );
    }

    fn report(error: &Error) -> String {
        crate::error::report(error)
    }

    #[test]
    fn status_json_prints_the_apis_array_unchanged() {
        let body = r#"[{"id":"web","status":"running"}]"#;
        let (url, seen) = fake_tend(vec![json_answer(200, body)]);
        let (result, out) = run_command(
            &api(url, None),
            Command::Status {
                json: true,
                only: Selector::default(),
            },
        );
        assert!(result.is_ok());
        assert_eq!(out, format!("{body}\n"));
        assert_eq!(
            seen.recv().unwrap().request_line(),
            "GET /api/servers HTTP/1.1"
        );
    }

    #[test]
    fn status_prints_a_table() {
        let (url, _seen) = fake_tend(vec![json_answer(200, SERVERS)]);
        let (result, out) = run_command(
            &api(url, Some("t")),
            Command::Status {
                json: false,
                only: Selector::default(),
            },
        );
        assert!(result.is_ok());
        assert_eq!(out, format_table(&rows(SERVERS), false));
    }

    #[test]
    fn actions_on_ids_go_in_order_and_stop_at_the_first_error() {
        let (url, seen) = fake_tend(vec![
            json_answer(200, r#"{"id":"web","status":"running","pid":12}"#),
            json_answer(
                409,
                r#"{"error":"server 'db' is already running","code":"conflict"}"#,
            ),
            json_answer(200, r#"{"id":"api","status":"running","pid":13}"#),
        ]);
        let target = Target::Ids(vec!["web".into(), "db".into(), "api".into()]);
        let (result, out) = run_command(
            &api(url, None),
            Command::Act {
                action: Action::Start,
                target,
                wait: Some(Duration::from_secs(5)),
            },
        );
        match result {
            Err(Error::Api {
                status: 409,
                message,
            }) => {
                assert_eq!(message, "server 'db' is already running")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out, "web: running (PID 12)\n");
        let first = seen.recv().unwrap();
        assert_eq!(
            first.request_line(),
            "POST /api/servers/web?action=start HTTP/1.1"
        );
        assert_eq!(first.body, "{}");
        assert_eq!(
            seen.recv().unwrap().request_line(),
            "POST /api/servers/db?action=start HTTP/1.1"
        );
        assert!(
            seen.try_recv().is_err(),
            "api must not be started after db failed"
        );
    }

    #[test]
    fn actions_on_all_print_a_line_per_server() {
        let body = r#"[{"id":"db","status":"stopped"},{"id":"web","status":"stopped",
            "lastError":"needed SIGKILL after 5000 ms"}]"#;
        let (url, seen) = fake_tend(vec![json_answer(200, body)]);
        let command = Command::Act {
            action: Action::Stop,
            target: Target::All,
            wait: Some(Duration::from_secs(5)),
        };
        let (result, out) = run_command(&api(url, None), command);
        assert!(result.is_ok());
        assert_eq!(
            out,
            "db: stopped\nweb: stopped — needed SIGKILL after 5000 ms\n"
        );
        assert_eq!(
            seen.recv().unwrap().request_line(),
            "POST /api/servers?action=stop HTTP/1.1"
        );
    }

    #[test]
    fn kill_orphan_names_the_pid_and_signal() {
        let (url, seen) = fake_tend(vec![json_answer(200, r#"{"pid":4242,"signal":"SIGTERM"}"#)]);
        let (result, out) = run_command(&api(url, None), Command::KillOrphan { id: "web".into() });
        assert!(result.is_ok());
        assert_eq!(out, "killed orphan PID 4242 (SIGTERM)\n");
        let seen = seen.recv().unwrap();
        assert_eq!(seen.request_line(), "DELETE /api/kill HTTP/1.1");
        assert_eq!(seen.body, r#"{"id":"web"}"#);
    }

    #[test]
    fn reload_prints_each_list_with_why() {
        let answer = r#"{"config":"tend.json","added":["api"],"removed":[],"restarted":["web"],
            "updated":[],"unchanged":["db","cache"],"changes":{"web":"command changed"},
            "needsTendRestart":["listen"]}"#;
        let (url, seen) = fake_tend(vec![json_answer(200, answer)]);
        let (result, out) = run_command(&api(url, None), Command::Reload);
        assert!(result.is_ok());
        assert_eq!(
            out,
            "reloaded tend.json\n  added      api\n  restarted  web (command changed)\n  \
             unchanged  db, cache\nchanged, but kept as they were until tend restarts: listen\n"
        );
        assert_eq!(
            seen.recv().unwrap().request_line(),
            "POST /api/reload HTTP/1.1"
        );
    }

    #[test]
    fn a_missing_token_is_a_401_with_a_hint() {
        let (url, _seen) = fake_tend(vec![json_answer(
            401,
            r#"{"error":"missing token","code":"unauthorized"}"#,
        )]);
        let (result, out) = run_command(
            &api(url, None),
            Command::Status {
                json: false,
                only: Selector::default(),
            },
        );
        match result {
            Err(Error::Api {
                status: 401,
                message,
            }) => assert!(
                message.contains("none was found") && message.matches("TEND_TOKEN").count() == 1,
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(out, "");
    }

    #[test]
    fn logs_print_the_last_lines() {
        let (url, seen) = fake_tend(vec![json_answer(
            200,
            r#"{"id":"web","lines":["one","two ✓"]}"#,
        )]);
        let command = Command::Logs {
            targets: Selector {
                groups: Vec::new(),
                ids: vec!["web".into()],
            },
            lines: 5,
            follow: false,
        };
        let (result, out) = run_command(&api(url, None), command);
        assert!(result.is_ok());
        assert_eq!(out, "one\ntwo ✓\n");
        assert_eq!(
            seen.recv().unwrap().request_line(),
            "GET /api/servers/web/logs?lines=5 HTTP/1.1"
        );
    }

    fn sse_answer(frames: &[&str]) -> String {
        let mut answer = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                          Transfer-Encoding: chunked\r\n\r\n"
            .to_string();
        for frame in frames {
            answer.push_str(&format!("{:x}\r\n{frame}\r\n", frame.len()));
        }
        answer.push_str("0\r\n\r\n");
        answer
    }

    #[test]
    fn logs_follow_retries_through_a_503_from_a_tend_that_is_shutting_down() {
        let (url, seen) = fake_tend(vec![
            sse_answer(&["id: 7\nevent: servers\ndata: []\n\n"]),
            json_answer(200, r#"{"id":"web","lines":[]}"#),
            json_answer(
                503,
                r#"{"error":"tend is shutting down","code":"shutting_down"}"#,
            ),
            sse_answer(&["event: log\ndata: {\"id\":\"web\",\"line\":\"back again\"}\n\n"]),
            json_answer(404, r#"{"error":"no server 'web'","code":"not_found"}"#),
        ]);
        let command = Command::Logs {
            targets: Selector {
                groups: Vec::new(),
                ids: vec!["web".into()],
            },
            lines: 1,
            follow: true,
        };
        let (result, out) = run_command(&api(url, None), command);
        assert!(
            matches!(result, Err(Error::Api { status: 404, .. })),
            "{result:?}"
        );
        assert_eq!(out, "back again\n");
        assert_eq!(seen.try_iter().count(), 5, "every answer was asked for");
    }

    #[test]
    fn logs_follow_streams_live_lines_and_reconnects_until_an_api_error() {
        let (url, seen) = fake_tend(vec![
            sse_answer(&[
                "retry: 5\n\n",
                ": heartbeat\n\n",
                "id: 1\nevent: servers\ndata: []\n\n",
                "id: 2\nevent: log\ndata: {\"id\":\"web\",\"line\":\"live one\"}\n\n",
                "id: 3\nevent: log\ndata: {\"id\":\"other\",\"line\":\"not ours\"}\n\n",
            ]),
            json_answer(200, r#"{"id":"web","lines":["old 1","old 2"]}"#),
            sse_answer(&[
                "id: 4\nevent: log\ndata: {\"id\":\"web\",\"line\":\"after reconnect\"}\n\n",
            ]),
            json_answer(404, r#"{"error":"no server 'web'","code":"not_found"}"#),
        ]);
        let command = Command::Logs {
            targets: Selector {
                groups: Vec::new(),
                ids: vec!["web".into()],
            },
            lines: 2,
            follow: true,
        };
        let (result, out) = run_command(&api(url, None), command);
        match result {
            Err(Error::Api {
                status: 404,
                message,
            }) => assert_eq!(message, "no server 'web'"),
            other => panic!("{other:?}"),
        }
        assert_eq!(out, "old 1\nold 2\nlive one\nafter reconnect\n");
        let requests: Vec<Seen> = seen.try_iter().collect();
        let lines: Vec<&str> = requests.iter().map(Seen::request_line).collect();
        assert_eq!(
            lines,
            [
                "GET /api/events?logs=web HTTP/1.1",
                "GET /api/servers/web/logs?lines=2 HTTP/1.1",
                "GET /api/events?logs=web HTTP/1.1",
                "GET /api/events?logs=web HTTP/1.1",
            ]
        );
        assert!(requests[0].head.contains("Accept: text/event-stream\r\n"));
        assert!(!requests[0].head.contains("Last-Event-ID"));
        assert!(
            requests[2].head.contains("Last-Event-ID: 3\r\n"),
            "{}",
            requests[2].head
        );
        assert!(
            requests[3].head.contains("Last-Event-ID: 4\r\n"),
            "{}",
            requests[3].head
        );
    }
}
