//! JSON handlers (docs/DESIGN.md §4): parse → [`Control`] → wait for the supervisor's reply → JSON.
//! Routing is a `match` on method and path segments. Runs on HTTP handler threads; it blocks
//! only its own thread (waiting for a reply, or for an orphan to die).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, bounded};
use serde::Deserialize;

use crate::alerts;
use crate::groups::{ActTarget, Selector, Unknown};
use crate::history;
use crate::http::assets;
use crate::http::metrics;
use crate::http::{ApiRequest, Reply, Shared};
use crate::logs::merge;
use crate::logs::rotate;
use crate::logs::tail;
use crate::model::{Action, signal_name};
use crate::os::process;
use crate::os::procfs;
use crate::recorder;
use crate::supervisor::{Control, ControlError};

/// Quick questions (list, get) must be answered within this.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The page must not wait long for its embedded list; without it the page still works.
const INDEX_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(1);
/// Actions wait for stops (stop_timeout + SIGKILL grace) and dependency chains.
const ACTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Events `GET /api/history` returns without `?limit=`.
const DEFAULT_HISTORY: usize = 200;
/// How long an orphan gets between SIGTERM and SIGKILL (docs/DESIGN.md §4).
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

pub enum Outcome {
    Reply(Reply),
    Events(EventsParams),
}

/// An SSE request: where to resume, and which servers' log lines to add (none: no log lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsParams {
    pub last_event_id: Option<u64>,
    pub logs: Vec<String>,
}

pub fn route(request: &ApiRequest, shared: &Shared) -> Outcome {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    // HEAD is GET without the body (RFC 9110 §9.3.2; the connection leaves the body out), except
    // for the event stream, which has no end to measure.
    let method = match request.method.as_str() {
        "HEAD" if segments != ["api", "events"] => "GET",
        method => method,
    };
    let reply = match (method, segments.as_slice()) {
        ("GET", ["api", "events"]) => return events(request, shared),
        ("GET", ["healthz"]) => Reply::json(200, &serde_json::json!({ "status": "ok" })),
        // Browsers ask for it on every page; the dashboard has none, so say so without an error.
        ("GET", ["favicon.ico"]) => Reply::bytes(204, "image/x-icon", Vec::new()),
        ("GET", ["api", "openapi.json"]) => {
            assets::OPENAPI.reply(request.accept_encoding.as_deref())
        }
        ("GET", ["metrics"]) => metrics(shared),
        ("GET", ["api", "servers"]) => list(shared),
        ("GET", ["api", "servers", id]) => get(shared, id),
        ("POST", ["api", "servers"]) => act(request, shared, None),
        ("POST", ["api", "servers", id]) => act(request, shared, Some(id)),
        ("GET", ["api", "servers", id, "logs"]) => logs(request, shared, id),
        ("GET", ["api", "logs"]) => merged_logs(request, shared),
        ("DELETE", ["api", "kill"]) => kill(request, shared),
        ("POST", ["api", "reload"]) => reload(request, shared),
        ("GET", ["api", "history"]) => history(request, shared),
        ("POST", ["api", "alerts", "test"]) => alerts_test(request, shared),
        (_, ["api", "servers"] | ["api", "servers", _] | ["api", "kill"] | ["api", "events"])
        | (_, ["api", "reload"] | ["api", "history"] | ["api", "alerts", "test"])
        | (_, ["api", "servers", _, "logs"] | ["healthz"] | ["api", "openapi.json"])
        | (_, ["api", "logs"])
        | (_, ["metrics"]) => Reply::error(
            405,
            "method_not_allowed",
            format!("{} is not allowed on {}", request.method, request.path),
        ),
        ("GET", [] | ["index.html"]) => index(shared),
        ("GET", path) => match assets::find(path) {
            Some(asset) => asset.reply(request.accept_encoding.as_deref()),
            None => not_found(&request.path),
        },
        _ => not_found(&request.path),
    };
    Outcome::Reply(reply)
}

fn not_found(path: &str) -> Reply {
    Reply::error(404, "not_found", format!("no such path: {path}"))
}

/// Maps a refusal to its status and code (docs/DESIGN.md §4).
pub fn error_reply(error: &ControlError) -> Reply {
    if let ControlError::InvalidConfig(errors) = error {
        // Each problem on its own as well, for programs (and the dashboard) to list.
        let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        return Reply::json(
            400,
            &serde_json::json!({ "error": error.to_string(), "code": "invalid_config", "errors": list }),
        );
    }
    let (status, code) = match error {
        ControlError::NotFound(_) => (404, "not_found"),
        ControlError::UnknownGroup(_) => (404, "unknown_group"),
        ControlError::AlreadyRunning(_) => (409, "already_running"),
        ControlError::NotRunning(_) => (409, "not_running"),
        ControlError::OrphanHoldsPort { .. } => (409, "orphan_holds_port"),
        ControlError::SpawnFailed { .. } => (500, "spawn_failed"),
        ControlError::BadRequest(_) => (400, "bad_request"),
        ControlError::Refused(_) => (403, "forbidden"),
        ControlError::NoOrphan(_) => (409, "no_orphan"),
        ControlError::NotAdoptable(_) => (409, "not_adoptable"),
        ControlError::TooManyClients => (503, "too_many_clients"),
        ControlError::ShuttingDown => (503, "shutting_down"),
        ControlError::InvalidConfig(_) => (400, "invalid_config"),
    };
    Reply::error(status, code, error)
}

/// Sends a command built around a fresh reply channel and waits for the answer.
pub fn ask<T>(
    shared: &Shared,
    timeout: Duration,
    make: impl FnOnce(crossbeam_channel::Sender<T>) -> Control,
) -> Result<T, Reply> {
    let (reply, answer) = bounded(1);
    if shared.control.send(Box::new(make(reply))).is_err() {
        return Err(Reply::error(503, "shutting_down", "tend is shutting down"));
    }
    answer.recv_timeout(timeout).map_err(|e| match e {
        RecvTimeoutError::Timeout => {
            Reply::error(504, "timeout", "the supervisor did not answer in time")
        }
        RecvTimeoutError::Disconnected => {
            Reply::error(503, "shutting_down", "tend is shutting down")
        }
    })
}

/// The dashboard page with the server list in it (see [`assets::index_with_snapshot`]). If the
/// supervisor is slow to answer, the page goes without: it asks again itself.
fn index(shared: &Shared) -> Reply {
    const HTML: &str = "text/html; charset=utf-8";
    match ask(shared, INDEX_SNAPSHOT_TIMEOUT, |reply| Control::List {
        reply,
    }) {
        Ok(json) => {
            let json = String::from_utf8_lossy(&json);
            Reply::bytes(200, HTML, assets::index_with_snapshot(&json))
        }
        Err(_) => Reply::bytes(200, HTML, assets::index_with_snapshot("null")),
    }
}

fn list(shared: &Shared) -> Reply {
    match ask(shared, QUERY_TIMEOUT, |reply| Control::List { reply }) {
        Ok(json) => Reply::bytes(200, "application/json", json),
        Err(reply) => reply,
    }
}

/// `GET /metrics`: the supervisor's snapshot, plus the figures no thread owns.
fn metrics(shared: &Shared) -> Reply {
    let mut snapshot = match ask(shared, QUERY_TIMEOUT, |reply| Control::Metrics { reply }) {
        Ok(snapshot) => snapshot,
        Err(reply) => return reply,
    };
    snapshot.log_rotations = rotate::ROTATIONS.load(Ordering::Relaxed);
    snapshot.log_bytes_lost = rotate::LOST_BYTES.load(Ordering::Relaxed);
    snapshot.alerts = metrics::AlertCounts {
        sent: alerts::SENT.load(Ordering::Relaxed),
        failed: alerts::FAILED.load(Ordering::Relaxed),
        held_back: alerts::HELD_BACK.load(Ordering::Relaxed),
        dropped: alerts::dropped_total(),
    };
    snapshot.history_dropped = recorder::HISTORY_DROPPED.load(Ordering::Relaxed);
    snapshot.process = tend_process();
    snapshot.http = shared.connections.sample();
    let text = metrics::render(&snapshot);
    Reply::bytes(200, metrics::CONTENT_TYPE, text.into_bytes())
}

/// tend's own start time and memory, from `/proc/self/stat`. The start time is worked out once:
/// the boot time it rests on is derived by the kernel from the clock and may jitter by a second
/// between reads, and a start time must not move.
fn tend_process() -> Option<metrics::ProcessSample> {
    static START_TIME: OnceLock<Option<f64>> = OnceLock::new();
    let stat = procfs::read_stat(std::process::id())?;
    let start_time = (*START_TIME.get_or_init(|| {
        let boot = procfs::boot_time()?;
        let ticks = procfs::clock_ticks_per_second() as f64;
        Some(boot as f64 + stat.start_ticks as f64 / ticks)
    }))?;
    Some(metrics::ProcessSample {
        start_time: (start_time * 100.0).round() / 100.0,
        rss_bytes: procfs::rss_bytes(&stat),
    })
}

fn get(shared: &Shared, id: &str) -> Reply {
    match ask(shared, QUERY_TIMEOUT, |reply| Control::Get {
        id: id.to_string(),
        reply,
    }) {
        Ok(Ok(view)) => Reply::json(200, &view),
        Ok(Err(error)) => error_reply(&error),
        Err(reply) => reply,
    }
}

/// Accepts an empty body or a JSON object; anything else is refused before acting.
fn check_json_body(request: &ApiRequest) -> Result<Option<serde_json::Value>, Reply> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json = request.content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(Reply::error(
            415,
            "unsupported_media_type",
            "the request body must be application/json",
        ));
    }
    serde_json::from_slice(&request.body)
        .map(Some)
        .map_err(|e| Reply::error(400, "bad_json", format!("malformed JSON body: {e}")))
}

fn act(request: &ApiRequest, shared: &Shared, id: Option<&str>) -> Reply {
    if let Err(reply) = check_json_body(request) {
        return reply;
    }
    let Some(action) = request.query("action") else {
        return Reply::error(
            400,
            "bad_request",
            "missing ?action=start|stop|restart (or adopt, on one server)",
        );
    };
    if action == "adopt" {
        return match id {
            Some(id) => adopt(shared, id),
            None => Reply::error(
                400,
                "bad_request",
                "action=adopt takes over one server's orphan: POST /api/servers/ID?action=adopt",
            ),
        };
    }
    let Some(action) = Action::parse(action) else {
        return Reply::error(
            400,
            "bad_request",
            format!("unknown action '{action}'; use start, stop, restart or adopt"),
        );
    };
    let target = match act_target(request, id) {
        Ok(target) => target,
        Err(reply) => return reply,
    };
    let single = matches!(target, ActTarget::One(_));
    match ask(shared, ACTION_TIMEOUT, |reply| Control::Act {
        action,
        target,
        reply,
    }) {
        Ok(Ok(mut views)) if single => match views.pop() {
            Some(view) => Reply::json(200, &view),
            None => Reply::error(500, "internal", "no server in the reply"),
        },
        Ok(Ok(views)) => Reply::json(200, &views),
        Ok(Err(error)) => error_reply(&error),
        Err(reply) => reply,
    }
}

/// One server from the path; else groups and ids from `?group=`/`?id=`; else all of them.
fn act_target(request: &ApiRequest, id: Option<&str>) -> Result<ActTarget, Reply> {
    let selector = Selector {
        groups: request.query_list("group"),
        ids: request.query_list("id"),
    };
    match id {
        Some(_) if !selector.is_empty() => Err(Reply::error(
            400,
            "bad_request",
            "group= and id= choose servers on POST /api/servers; this path already names one",
        )),
        Some(id) => Ok(ActTarget::One(id.to_string())),
        None if selector.is_empty() => Ok(ActTarget::All),
        None => Ok(ActTarget::Selected(selector)),
    }
}

/// `POST /api/servers/ID?action=adopt`: the server object, now running its adopted orphan, or
/// 409 with the check that failed.
fn adopt(shared: &Shared, id: &str) -> Reply {
    let id = id.to_string();
    match ask(shared, ACTION_TIMEOUT, |reply| Control::Adopt { id, reply }) {
        Ok(Ok(view)) => Reply::json(200, &view),
        Ok(Err(error)) => error_reply(&error),
        Err(reply) => reply,
    }
}

/// `POST /api/reload`: the plan once it is applied (the servers it restarts or adds are
/// starting), or 400 with every problem of an invalid config.
fn reload(request: &ApiRequest, shared: &Shared) -> Reply {
    if let Err(reply) = check_json_body(request) {
        return reply;
    }
    match ask(shared, ACTION_TIMEOUT, |reply| Control::Reload {
        reply: Some(reply),
    }) {
        Ok(Ok(plan)) => Reply::json(200, &plan),
        Ok(Err(error)) => error_reply(&error),
        Err(reply) => reply,
    }
}

/// `?lines=N` of the log routes: 200 when absent, at most `tail::MAX_LINES`.
fn lines_param(request: &ApiRequest) -> Result<usize, Reply> {
    match request.query("lines") {
        None => Ok(200),
        Some(text) => match text.parse::<u64>() {
            Ok(n) => Ok(n.min(tail::MAX_LINES as u64) as usize),
            Err(_) => Err(Reply::error(
                400,
                "bad_request",
                format!("lines must be a whole number, got '{text}'"),
            )),
        },
    }
}

/// `GET /api/logs?group=G&id=I&lines=N`: the last N lines over the servers named (every server
/// when none is), merged by arrival (`logmerge`), with the ids that were read.
fn merged_logs(request: &ApiRequest, shared: &Shared) -> Reply {
    let selector = Selector {
        groups: request.query_list("group"),
        ids: request.query_list("id"),
    };
    let ids = match shared.server_ids.select(&selector) {
        Ok(ids) => ids,
        Err(Unknown::Id(id)) => return error_reply(&ControlError::NotFound(id)),
        Err(unknown) => return error_reply(&ControlError::UnknownGroup(unknown)),
    };
    let lines = match lines_param(request) {
        Ok(lines) => lines,
        Err(reply) => return reply,
    };
    match merge::tail(&shared.log_dir, &ids, lines) {
        Ok(lines) => Reply::json(200, &serde_json::json!({ "ids": ids, "lines": lines })),
        Err(e) => Reply::error(500, "io", format!("cannot read the logs: {e}")),
    }
}

fn logs(request: &ApiRequest, shared: &Shared, id: &str) -> Reply {
    if !shared.server_ids.contains(id) {
        return error_reply(&ControlError::NotFound(id.to_string()));
    }
    let lines = match lines_param(request) {
        Ok(lines) => lines,
        Err(reply) => return reply,
    };
    match tail::tail(&shared.log_dir, id, lines) {
        Ok(lines) => Reply::json(200, &serde_json::json!({ "id": id, "lines": lines })),
        Err(e) => Reply::error(500, "io", format!("cannot read the log of '{id}': {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    id: Option<String>,
    pid: Option<i64>,
}

fn kill(request: &ApiRequest, shared: &Shared) -> Reply {
    let body = match check_json_body(request) {
        Ok(Some(value)) => value,
        Ok(None) => {
            return Reply::error(
                400,
                "bad_request",
                "give {\"id\": …} or {\"pid\": …} as a JSON body",
            );
        }
        Err(reply) => return reply,
    };
    let body: KillBody = match serde_json::from_value(body) {
        Ok(body) => body,
        Err(e) => return Reply::error(400, "bad_request", format!("bad kill request: {e}")),
    };
    if body.id.is_none() && body.pid.is_none() {
        return Reply::error(400, "bad_request", "give an id, a pid or both");
    }
    let target = match ask(shared, QUERY_TIMEOUT, |reply| Control::FindOrphan {
        id: body.id.clone(),
        pid: body.pid,
        reply,
    }) {
        Ok(Ok(target)) => target,
        Ok(Err(error)) => return error_reply(&error),
        Err(reply) => return reply,
    };
    let gone = |signal| {
        let _ = shared.control.send(Box::new(Control::OrphanGone {
            id: target.id.clone(),
            pid: target.pid,
            signal,
        }));
    };
    match process::kill_orphan(target.pid, target.start_ticks, ORPHAN_GRACE) {
        Ok(signal) => {
            gone(Some(signal));
            Reply::json(
                200,
                &serde_json::json!({ "pid": target.pid, "signal": signal_name(signal) }),
            )
        }
        Err(process::SignalError::Gone) => {
            gone(None);
            Reply::error(
                409,
                "gone",
                format!("PID {} exited before it was signalled", target.pid),
            )
        }
        Err(process::SignalError::Reused) => Reply::error(
            409,
            "pid_reused",
            format!(
                "PID {} now belongs to another process; nothing was signalled",
                target.pid
            ),
        ),
        Err(e) => Reply::error(
            500,
            "kill_failed",
            format!("cannot kill PID {}: {e}", target.pid),
        ),
    }
}

/// `GET /api/history?limit=N&server=ID&after=EVENT_ID`: the newest events, oldest first.
fn history(request: &ApiRequest, shared: &Shared) -> Reply {
    let number = |name: &str| -> Result<Option<u64>, Reply> {
        match request.query(name) {
            None => Ok(None),
            Some(text) => text.parse::<u64>().map(Some).map_err(|_| {
                Reply::error(
                    400,
                    "bad_request",
                    format!("{name} must be a whole number, got '{text}'"),
                )
            }),
        }
    };
    let (limit, after) = match (number("limit"), number("after")) {
        (Ok(limit), Ok(after)) => (limit, after),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let limit = limit.map_or(DEFAULT_HISTORY, |n| {
        n.min(history::CAPACITY as u64) as usize
    });
    let server = request.query("server");
    if let Some(id) = server {
        // A removed server's events are still history: only a name never seen is refused.
        if !shared.server_ids.contains(id) && shared.history.recent_json(1, Some(id), None) == "[]"
        {
            return error_reply(&ControlError::NotFound(id.to_string()));
        }
    }
    let events = shared.history.recent_json(limit, server, after);
    Reply::bytes(
        200,
        "application/json",
        format!("{{\"events\":{events}}}").into_bytes(),
    )
}

/// `POST /api/alerts/test`: a test alert through every rule, and each rule's result.
fn alerts_test(request: &ApiRequest, shared: &Shared) -> Reply {
    if let Err(reply) = check_json_body(request) {
        return reply;
    }
    let Some(alerts) = &shared.alerts else {
        return Reply::error(
            409,
            "no_alert_rules",
            "this tend has no alert rules (the top-level \"alerts\" key of its config)",
        );
    };
    Reply::json(200, &serde_json::json!({ "results": alerts.test() }))
}

/// Which servers' log lines an event stream adds: `logs=ID` and `group=NAME` (each repeatable
/// or comma-separated), `logs=*` for every server, none without either. Resolved once, here.
fn followed_logs(request: &ApiRequest, shared: &Shared) -> Result<Vec<String>, Reply> {
    let ids = request.query_list("logs");
    let selector = if ids == ["*"] {
        Selector::default()
    } else {
        let selector = Selector {
            groups: request.query_list("group"),
            ids,
        };
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        selector
    };
    shared
        .server_ids
        .select(&selector)
        .map_err(|unknown| match unknown {
            Unknown::Id(id) => error_reply(&ControlError::NotFound(id)),
            unknown => error_reply(&ControlError::UnknownGroup(unknown)),
        })
}

fn events(request: &ApiRequest, shared: &Shared) -> Outcome {
    let logs = match followed_logs(request, shared) {
        Ok(logs) => logs,
        Err(reply) => return Outcome::Reply(reply),
    };
    let last_event_id = request
        .last_event_id
        .as_deref()
        .and_then(|v| v.trim().parse().ok());
    Outcome::Events(EventsParams {
        last_event_id,
        logs,
    })
}
