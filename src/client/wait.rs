//! `tend start|stop|restart` waiting until each server gets where it was sent (issue 10): the
//! verdict on one server from what tend reports of it (pure, table-tested below), and the loop
//! that reads the event stream until every server has a verdict or the deadline passes.
//!
//! Runs on the CLI's main thread, after tend has acted. It reads `GET /api/events` (docs/DESIGN.md §5)
//! and never polls: the stream's snapshot on connect (taken after the action, so nothing before
//! it is missed) and its `server` events carry every change of status and PID, and
//! `processDied` names a death even when a restart in the same instant hides it from the
//! server object.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Api;
use super::sse::SseParser;
use super::table::ServerRow;
use crate::cli::Action;
use crate::error::Error;

/// What one server was sent to do, and which run tend started for it.
#[derive(Debug, Clone)]
pub struct Goal {
    pub id: String,
    pub action: Action,
    /// The PID in tend's answer to a start or restart: that run must be the one that comes up.
    /// A different PID later means it ended and the restart policy started another.
    pub pid: Option<u32>,
}

impl Goal {
    pub fn new(action: Action, row: &ServerRow) -> Goal {
        Goal {
            id: row.id.clone(),
            action,
            pid: row.pid,
        }
    }

    /// "running" or "stopped", for messages.
    fn target(&self) -> &'static str {
        match self.action {
            Action::Stop => "stopped",
            Action::Start | Action::Restart => "running",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Waiting,
    Reached,
    /// Why the server will not get there (a sentence about it, without its name).
    Failed(String),
}

/// The verdict on a server from its latest server object.
pub fn judge(goal: &Goal, row: &ServerRow) -> Verdict {
    let status = row.status.as_str();
    if goal.action == Action::Stop {
        return if status == "stopped" {
            Verdict::Reached
        } else {
            Verdict::Waiting
        };
    }
    match status {
        "crashed" | "backoff" | "fatal" | "exited" => {
            let what = match status {
                "crashed" => "crashed",
                "backoff" => "crashed (backoff: tend restarts it later)",
                "fatal" => "went fatal",
                _ => "exited",
            };
            return Verdict::Failed(format!("{what} before it was running{}", why(row)));
        }
        "unhealthy" => {
            let closed: Vec<String> = row
                .ports
                .iter()
                .filter(|p| !p.open)
                .map(|p| p.port.to_string())
                .collect();
            let ports = match closed.len() {
                0 => "a port".to_string(),
                1 => format!("port {}", closed[0]),
                _ => format!("ports {}", closed.join(", ")),
            };
            return Verdict::Failed(format!(
                "is unhealthy: {ports} still closed after its start timeout (start_timeout_ms)"
            ));
        }
        "stopping" | "stopped" => {
            return Verdict::Failed(format!("was {status} while it was starting"));
        }
        _ => {}
    }
    if let (Some(ours), Some(now)) = (goal.pid, row.pid) {
        if ours != now {
            return Verdict::Failed(format!(
                "crashed before it was running: PID {ours} ended, and tend started PID {now}{}",
                why(row)
            ));
        }
    }
    if status == "running" {
        Verdict::Reached
    } else {
        Verdict::Waiting
    }
}

/// The `processDied` event of the stream (docs/DESIGN.md §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Died {
    pub id: String,
    pub pid: u32,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
}

/// The verdict a death gives: only the death of the run we wait on counts.
pub fn judge_death(goal: &Goal, died: &Died) -> Option<Verdict> {
    if goal.action == Action::Stop || died.id != goal.id || goal.pid != Some(died.pid) {
        return None;
    }
    let how = match (died.exit_code, &died.exit_signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {signal}"),
        (None, None) => "exit status unknown".to_string(),
    };
    Some(Verdict::Failed(format!(
        "crashed before it was running: PID {} ended ({how})",
        died.pid
    )))
}

/// ": exit code 3 — lastError" as far as the object tells.
fn why(row: &ServerRow) -> String {
    let mut text = String::new();
    match (row.exit_code, &row.exit_signal) {
        (Some(code), _) => text.push_str(&format!(" (exit code {code})")),
        (None, Some(signal)) => text.push_str(&format!(" (killed by {signal})")),
        (None, None) => {}
    }
    if let Some(error) = &row.last_error {
        text.push_str(&format!(": {error}"));
    }
    text
}

/// Seconds as a person writes them: "60 s", "2.5 s".
fn seconds(duration: Duration) -> String {
    let s = duration.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} s", s)
    }
}

/// Waits until every goal is reached, or one fails, or `timeout` passes; `rows` are tend's
/// answer to the action. Returns the servers' latest objects, in the goals' order.
pub fn settle(
    api: &Api,
    goals: &[Goal],
    rows: Vec<ServerRow>,
    timeout: Duration,
) -> Result<Vec<ServerRow>, Error> {
    let deadline = Instant::now() + timeout;
    let mut latest: HashMap<String, ServerRow> =
        rows.into_iter().map(|row| (row.id.clone(), row)).collect();
    if let Some(done) = verdict(goals, &latest)? {
        return Ok(done);
    }

    let mut stream = api.open_event_stream("/api/events", None)?;
    // The read timeout goes on a second handle of the same socket: the reader borrows the body.
    let socket = stream.socket()?;
    let mut reader = BufReader::new(&mut stream.body);
    let mut parser = SseParser::new();
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(goals, &latest, timeout));
        }
        let _ = socket.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match reader.read_until(b'\n', &mut line) {
            // A timed-out read keeps what it got in `line`; the next read completes it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Ok(0) | Err(_) => return Err(lost(api, goals, &latest)),
            Ok(_) => {}
        }
        let event = parser.feed_line(&String::from_utf8_lossy(&line));
        line.clear();
        let Some(event) = event else { continue };
        match event.event.as_str() {
            "servers" => {
                if let Ok(list) = serde_json::from_slice::<Vec<ServerRow>>(event.data.as_bytes()) {
                    for row in list {
                        latest.insert(row.id.clone(), row);
                    }
                }
            }
            "server" => {
                if let Ok(row) = serde_json::from_slice::<ServerRow>(event.data.as_bytes()) {
                    latest.insert(row.id.clone(), row);
                }
            }
            "processDied" => {
                if let Ok(died) = serde_json::from_slice::<Died>(event.data.as_bytes()) {
                    if let Some(goal) = goals.iter().find(|g| g.id == died.id) {
                        if let Some(Verdict::Failed(why)) = judge_death(goal, &died) {
                            return Err(failure(&goal.id, &why));
                        }
                    }
                }
            }
            _ => continue,
        }
        if let Some(done) = verdict(goals, &latest)? {
            return Ok(done);
        }
    }
}

/// `Some(rows)` once every goal is reached; an error for the first that failed.
fn verdict(
    goals: &[Goal],
    latest: &HashMap<String, ServerRow>,
) -> Result<Option<Vec<ServerRow>>, Error> {
    let mut all = true;
    for goal in goals {
        let Some(row) = latest.get(&goal.id) else {
            all = false;
            continue;
        };
        match judge(goal, row) {
            Verdict::Reached => {}
            Verdict::Waiting => all = false,
            Verdict::Failed(why) => return Err(failure(&goal.id, &why)),
        }
    }
    Ok(all.then(|| {
        goals
            .iter()
            .filter_map(|g| latest.get(&g.id).cloned())
            .collect()
    }))
}

fn failure(id: &str, why: &str) -> Error {
    Error::other(format!("'{id}' {why}"))
}

/// Names every server still on its way, and where it is.
fn pending(goals: &[Goal], latest: &HashMap<String, ServerRow>) -> String {
    let mut parts = Vec::new();
    for goal in goals {
        let Some(row) = latest.get(&goal.id) else {
            continue;
        };
        if judge(goal, row) == Verdict::Reached {
            continue;
        }
        let mut part = format!("'{}' is {}", goal.id, row.status);
        let closed: Vec<String> = row
            .ports
            .iter()
            .filter(|p| !p.open)
            .map(|p| p.port.to_string())
            .collect();
        if goal.action != Action::Stop && !closed.is_empty() {
            part.push_str(&format!(" (port {} not open yet)", closed.join(", ")));
        }
        parts.push(part);
    }
    parts.join("; ")
}

fn timed_out(goals: &[Goal], latest: &HashMap<String, ServerRow>, timeout: Duration) -> Error {
    let target = goals.first().map_or("running", Goal::target);
    Error::other(format!(
        "timed out after {} waiting for {} to be {target}: {} (wait longer with --timeout S)",
        seconds(timeout),
        if goals.len() == 1 {
            format!("'{}'", goals[0].id)
        } else {
            "the servers".to_string()
        },
        pending(goals, latest)
    ))
}

fn lost(api: &Api, goals: &[Goal], latest: &HashMap<String, ServerRow>) -> Error {
    Error::other(format!(
        "lost the event stream of tend at {} while waiting: {}",
        api.base,
        pending(goals, latest)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::table::PortRow;

    fn row(status: &str, pid: Option<u32>) -> ServerRow {
        ServerRow {
            id: "web".into(),
            status: status.into(),
            pid,
            ..ServerRow::default()
        }
    }

    fn goal(action: Action, pid: Option<u32>) -> Goal {
        Goal {
            id: "web".into(),
            action,
            pid,
        }
    }

    fn failed(verdict: Verdict) -> String {
        match verdict {
            Verdict::Failed(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_start_is_reached_by_its_own_run_only() {
        let start = goal(Action::Start, Some(10));
        assert_eq!(judge(&start, &row("starting", Some(10))), Verdict::Waiting);
        assert_eq!(judge(&start, &row("running", Some(10))), Verdict::Reached);
        // Crashed and restarted in one instant: running, but not the run that was started.
        let why = failed(judge(&start, &row("running", Some(11))));
        assert!(
            why.contains("PID 10 ended") && why.contains("PID 11"),
            "{why}"
        );
        let restart = goal(Action::Restart, Some(10));
        assert_eq!(judge(&restart, &row("running", Some(10))), Verdict::Reached);
    }

    #[test]
    fn a_start_fails_on_every_status_that_is_not_on_the_way_up() {
        let start = goal(Action::Start, Some(10));
        for status in [
            "crashed", "backoff", "fatal", "exited", "stopping", "stopped",
        ] {
            let why = failed(judge(&start, &row(status, None)));
            assert!(why.contains(status), "{status}: {why}");
        }
        let mut fatal = row("fatal", None);
        fatal.exit_code = Some(3);
        fatal.last_error = Some("gave up after 2 restarts in a row failed".into());
        assert_eq!(
            failed(judge(&start, &fatal)),
            "went fatal before it was running (exit code 3): gave up after 2 restarts in a \
             row failed"
        );
        let mut unhealthy = row("unhealthy", Some(10));
        unhealthy.ports = vec![
            PortRow {
                port: 8000,
                open: false,
                owner_pid: None,
            },
            PortRow {
                port: 8001,
                open: true,
                owner_pid: Some(10),
            },
        ];
        assert_eq!(
            failed(judge(&start, &unhealthy)),
            "is unhealthy: port 8000 still closed after its start timeout (start_timeout_ms)"
        );
    }

    #[test]
    fn a_stop_waits_for_stopped_and_cannot_fail() {
        let stop = goal(Action::Stop, Some(10));
        assert_eq!(judge(&stop, &row("stopping", Some(10))), Verdict::Waiting);
        assert_eq!(judge(&stop, &row("stopped", None)), Verdict::Reached);
        assert_eq!(judge(&stop, &row("crashed", None)), Verdict::Waiting);
    }

    #[test]
    fn only_the_death_of_the_awaited_run_fails_a_start() {
        let died = |id: &str, pid, code, signal: Option<&str>| Died {
            id: id.into(),
            pid,
            exit_code: code,
            exit_signal: signal.map(str::to_string),
        };
        let start = goal(Action::Start, Some(10));
        assert_eq!(judge_death(&start, &died("web", 9, Some(1), None)), None);
        assert_eq!(judge_death(&start, &died("db", 10, Some(1), None)), None);
        assert_eq!(
            judge_death(&start, &died("web", 10, Some(1), None)),
            Some(Verdict::Failed(
                "crashed before it was running: PID 10 ended (exit code 1)".into()
            ))
        );
        assert_eq!(
            judge_death(&start, &died("web", 10, None, Some("SIGKILL"))),
            Some(Verdict::Failed(
                "crashed before it was running: PID 10 ended (killed by SIGKILL)".into()
            ))
        );
        assert_eq!(
            judge_death(&goal(Action::Stop, Some(10)), &died("web", 10, None, None)),
            None
        );
    }

    #[test]
    fn seconds_read_as_written() {
        assert_eq!(seconds(Duration::from_secs(60)), "60 s");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5 s");
    }
}
