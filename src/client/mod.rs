//! The client commands (`tend status|start|stop|restart|logs|kill-orphan|adopt`, docs/DESIGN.md §1):
//! where tend is and its token, then one API call per command. They speak HTTP through
//! `http.rs`, read event streams with `sse.rs` and print `tend status` with `table.rs`.
//!
//! Runs on the main thread of a short-lived `tend` process. It talks to a running `tend up`
//! only through its HTTP API (docs/DESIGN.md §4, §5): it never reads the state file, never signals a
//! process itself, and never sends a child's command anywhere. Plain http only (no TLS): the
//! API is meant for loopback, and a token guards it (docs/DESIGN.md §8).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

mod fleet;
mod http;
mod journal;
mod merged;
mod sse;
mod table;
mod wait;

use http::{Response, Url, encode_component, request, send};
use sse::{SseEvent, SseParser};
use table::{ServerRow, format_table, use_color};

use crate::cli::{Action, Cli, Command, Target};
use crate::config;
use crate::error::{Context, Error};
use crate::groups::{self, Selector};

/// Where `tend up` listens when nothing else says (docs/DESIGN.md §2 default `listen`).
const DEFAULT_URL: &str = "http://127.0.0.1:7070";
/// First wait before reconnecting a lost log stream; it doubles up to `MAX_RECONNECT_DELAY`.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Runs a client command against the running tend and prints its result to stdout (`execute`
/// refuses a command that is not a client's).
pub fn run(cli: &Cli) -> Result<ExitCode, Error> {
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
        serde_json::from_slice(text.as_bytes()).map_err(|e| {
            Error::other(format!(
                "tend at {} sent an answer to {method} {path} that tend cannot read: {e}",
                self.base
            ))
        })
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

    /// Hands every event of the stream at `path` to `on_event` for as long as the person wants
    /// it: a lost stream (tend restarting) is reopened from the last event id with a growing
    /// delay; a refusal (unknown id, bad token) ends it. `stream` is the first connection,
    /// which the caller opened before printing what came before, so nothing falls between.
    fn follow_stream(
        &self,
        path: &str,
        mut stream: Response<BufReader<TcpStream>>,
        what: &str,
        retry: Duration,
        mut on_event: impl FnMut(&SseEvent) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut parser = SseParser::new();
        loop {
            read_events(&mut stream, &mut parser, &mut on_event)?;
            eprintln!("tend: lost the {what} from {}; reconnecting", self.base);
            let mut delay = parser.retry().unwrap_or(retry).min(MAX_RECONNECT_DELAY);
            stream = loop {
                std::thread::sleep(delay);
                match self.open_event_stream(path, parser.last_id()) {
                    Ok(stream) => break stream,
                    // A 5xx (503 while the old tend shuts down, 504) passes; a 4xx (unknown
                    // id, bad token) will not.
                    Err(e @ Error::Api { status: ..500, .. }) => return Err(e),
                    Err(_) => delay = (delay * 2).min(MAX_RECONNECT_DELAY),
                }
            };
        }
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
    let message = match serde_json::from_slice::<ErrorBody>(body.as_bytes()) {
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
            let rows: Vec<ServerRow> = objects.iter().map(ServerRow::of).collect();
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
    let path = format!("/api/events?logs={}", encode_component(id));
    let stream = api.open_event_stream(&path, None)?;
    print_tail(api, id, lines, out)?;
    api.follow_stream(&path, stream, "log stream", retry, |event| {
        if event.event != "log" {
            return Ok(());
        }
        // A malformed frame is skipped: one bad line must not end a follow.
        match serde_json::from_slice::<LogLine>(event.data.as_bytes()) {
            Ok(log) if log.id == id => {
                emit(out, &log.line)?;
                emit(out, "\n")?;
                out.flush().context("writing to stdout")
            }
            _ => Ok(()),
        }
    })
}

/// Feeds one stream's lines to the parser and its events to `on_event` until the stream ends.
/// Read errors end it (`Ok`); only `on_event` failing (printing) is an `Err`.
fn read_events(
    stream: &mut Response<BufReader<TcpStream>>,
    parser: &mut SseParser,
    on_event: &mut impl FnMut(&SseEvent) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut reader = BufReader::new(&mut stream.body);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        if let Some(event) = parser.feed_line(&String::from_utf8_lossy(&line)) {
            on_event(&event)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    use super::*;
    use crate::client::table::tests::{SERVERS, rows};
    use crate::test_support::TempDir;

    // --- URLs -----------------------------------------------------------------------------

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
        let dir = TempDir::new("client-token");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read_token_file(&file).as_deref(), Some("s3cret"));
        std::fs::write(&file, " \n").unwrap();
        assert_eq!(read_token_file(&file), None);
        assert_eq!(read_token_file(&dir.join("missing")), None);
    }

    // --- HTTP answers -----------------------------------------------------------------------

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
