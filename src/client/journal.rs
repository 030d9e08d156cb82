//! `tend events [-n N] [-f] [ID]` and `tend alerts test`: the history as a journal, one event a
//! line, and the test alert's results. Both only talk to the running tend's API.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use super::{Api, emit, encode_component};
use crate::error::{Context, Error};
use crate::os::localtime;

/// One event of `GET /api/history`.
#[derive(Debug, Deserialize)]
struct Entry {
    id: u64,
    at: u64,
    event: String,
    server: Option<String>,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct History {
    events: Vec<Entry>,
}

/// Prints the last `lines` events (of `id` only, when given); returns the newest id printed.
pub(super) fn print_history(
    api: &Api,
    id: Option<&str>,
    lines: usize,
    out: &mut dyn Write,
) -> Result<Option<u64>, Error> {
    let mut path = format!("/api/history?limit={lines}");
    if let Some(id) = id {
        path.push_str(&format!("&server={}", encode_component(id)));
    }
    let history: History = api.call_json("GET", &path, None)?;
    for entry in &history.events {
        let who = entry.server.as_deref().unwrap_or("tend");
        emit(out, &journal_line(entry.at, who, &entry.event, &entry.data))?;
    }
    out.flush().context("writing to stdout")?;
    Ok(history.events.last().map(|e| e.id))
}

/// `tend events -f`: the history, then each new event as it happens. The stream is opened
/// first and events it brings that the history already had are skipped by id, so nothing falls
/// between the two and nothing is printed twice.
pub(super) fn follow(
    api: &Api,
    id: Option<&str>,
    lines: usize,
    out: &mut dyn Write,
    retry: Duration,
) -> Result<(), Error> {
    let stream = api.open_event_stream("/api/events", None)?;
    let mut newest = print_history(api, id, lines, out)?;
    api.follow_stream("/api/events", stream, "event stream", retry, |event| {
        // Server rows, samples and log lines are the dashboard's, not the journal's.
        if matches!(event.event.as_str(), "servers" | "server" | "stats" | "log") {
            return Ok(());
        }
        let event_id = event.id.as_deref().and_then(|i| i.parse::<u64>().ok());
        if let (Some(seen), Some(this)) = (newest, event_id) {
            if this <= seen {
                return Ok(());
            }
        }
        let Ok(data) = serde_json::from_slice::<Value>(event.data.as_bytes()) else {
            return Ok(());
        };
        let who = data.get("id").and_then(Value::as_str);
        if event.event == "configReloaded" && id.is_some() {
            return Ok(());
        }
        if id.is_some() && who != id {
            return Ok(());
        }
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        emit(
            out,
            &journal_line(at, who.unwrap_or("tend"), &event.event, &data),
        )?;
        out.flush().context("writing to stdout")?;
        newest = event_id.or(newest);
        Ok(())
    })
}

/// `2026-12-06 03:12:45  web  processDied  killed by SIGKILL (PID 4242)`, in local time.
pub fn journal_line(at_ms: u64, who: &str, event: &str, data: &Value) -> String {
    format!(
        "{}  {who}  {event}  {}\n",
        local_time(at_ms),
        describe(event, data)
    )
}

/// What happened, in words (the dashboard's timeline says the same).
fn describe(event: &str, d: &Value) -> String {
    let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let num = |key: &str| d.get(key).and_then(Value::as_u64);
    let pid = num("pid")
        .map(|p| format!(" (PID {p})"))
        .unwrap_or_default();
    match event {
        "serverStarted" => format!("started{pid}"),
        "serverStopped" => {
            let forced = d.get("forced").and_then(Value::as_bool) == Some(true);
            format!(
                "stopped{pid}{}",
                if forced { ", needed SIGKILL" } else { "" }
            )
        }
        "processDied" => {
            let how = match (num("exitCode"), d.get("exitSignal").and_then(Value::as_str)) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by {signal}"),
                _ => "exited".to_string(),
            };
            format!("died: {how}{pid}")
        }
        "processError" => format!("failed to start: {}", text("error")),
        "statusChange" => format!("{} -> {}", text("from"), text("to")),
        "orphanDetected" => format!("orphan{pid} holds port {}", num("port").unwrap_or(0)),
        "orphanCleared" => format!(
            "orphan{pid} no longer holds port {}",
            num("port").unwrap_or(0)
        ),
        "orphanKilled" => format!("orphan killed{pid} with {}", text("signal")),
        "healthChanged" => {
            let ok = d.get("ok").and_then(Value::as_bool) == Some(true);
            let verdict = if ok { "passes" } else { "failed" };
            format!("health check {verdict}: {}", text("detail"))
        }
        "memoryExceeded" => format!(
            "memory {} MiB over {} MiB: restarting",
            num("rssBytes").unwrap_or(0) >> 20,
            num("limitBytes").unwrap_or(0) >> 20
        ),
        "configReloaded" => format!("config {} reloaded", text("config")),
        "tendStarted" => format!("tend {} started{pid}", text("version")),
        "tendStopping" => format!("tend stopping ({})", text("signal")),
        "stateWriteFailed" => format!("state file write failed: {}", text("error")),
        "alert" => format!(
            "alert rule {} ({}) {}: {} — {}",
            num("rule").unwrap_or(0),
            text("target"),
            text("alert"),
            text("result"),
            text("detail")
        ),
        _ => d.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the local time zone (as journalctl prints it).
fn local_time(at_ms: u64) -> String {
    let secs = (at_ms / 1000) as i64;
    localtime::format_seconds(secs).unwrap_or_else(|| format!("@{secs}"))
}

#[derive(Debug, Deserialize)]
struct TestResult {
    rule: usize,
    target: String,
    ok: bool,
    detail: String,
}

#[derive(Debug, Deserialize)]
struct TestResults {
    results: Vec<TestResult>,
}

/// `tend alerts test`: one line per rule; exit 1 when any failed.
pub(super) fn alerts_test(api: &Api, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let answer: TestResults = api.call_json("POST", "/api/alerts/test", None)?;
    let mut failed = 0;
    for result in &answer.results {
        let verdict = if result.ok { "sent" } else { "FAILED" };
        if !result.ok {
            failed += 1;
        }
        emit(
            out,
            &format!(
                "rule {} ({}): {verdict}: {}\n",
                result.rule, result.target, result.detail
            ),
        )?;
    }
    out.flush().context("writing to stdout")?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_a_journal() {
        let died =
            serde_json::json!({"id": "web", "pid": 42, "exitCode": null, "exitSignal": "SIGKILL"});
        let line = journal_line(0, "web", "processDied", &died);
        assert!(
            line.ends_with("  web  processDied  died: killed by SIGKILL (PID 42)\n"),
            "{line}"
        );
        let stamp = &line.as_bytes()[..19];
        assert!(
            stamp.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b' ',
                13 | 16 => *b == b':',
                _ => b.is_ascii_digit(),
            }),
            "{line}"
        );
        let alert = serde_json::json!({"rule": 2, "target": "webhook", "alert": "fatal",
            "result": "failed", "detail": "HTTP 500"});
        assert_eq!(
            describe("alert", &alert),
            "alert rule 2 (webhook) fatal: failed — HTTP 500"
        );
    }
}
