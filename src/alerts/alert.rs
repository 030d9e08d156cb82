//! What an alert says, and when one is due: timeline events turned into alerts (and into the
//! conditions that clear them), the per-(server, event) rate limit, and the words. No I/O and
//! no threads: the alert thread (`alerts::run`) drives it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::alerts::AlertEvent;
use crate::history::Record;
use crate::model::{Status, Timeline};

/// One alert as every target gets it: the JSON on an exec's stdin, a webhook's body, and the
/// source of an Alertmanager alert's labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// The event name (`processDied`, …), or `test` for `tend alerts test`.
    pub event: String,
    pub server: Option<String>,
    pub pid: Option<u32>,
    /// The port an orphan holds (`orphanDetected`).
    pub port: Option<u16>,
    /// Why, in a few words: "exit code 1", "killed by SIGKILL", "HTTP 503 from /healthz".
    pub reason: String,
    /// One line for a person: "web died: killed by SIGKILL (PID 4242)".
    pub summary: String,
    /// When the event happened: RFC 3339 in UTC, and milliseconds since the Unix epoch.
    pub at: String,
    pub at_ms: u64,
    /// The host tend runs on (its host name).
    pub host: String,
    /// Alerts of the same (server, event) held back by `repeat_ms` since the last one sent.
    pub held_back: u32,
    pub test: bool,
    /// The timeline event's id (its SSE id and its id in the history).
    pub event_id: u64,
}

impl Alert {
    /// The key the rate limit and Alertmanager's conditions go by.
    pub fn key(&self) -> Key {
        Key {
            event: self.event.clone(),
            server: self.server.clone(),
            port: self.port,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub event: String,
    pub server: Option<String>,
    pub port: Option<u16>,
}

/// An event made an alert due, or made earlier conditions clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Fire(AlertEvent, Alert),
    /// A server in trouble runs again: `recovered` is due once it has stayed out of trouble
    /// for [`RECOVERY_HOLD`] (a crash loop runs for moments between deaths).
    Recovering(Alert),
    /// The server runs again or was stopped by a person: its died/fatal/unhealthy/spawn
    /// conditions are over. `port`: only the orphan on that port (an orphan condition).
    Clear {
        server: String,
        events: &'static [AlertEvent],
        port: Option<u16>,
    },
}

/// How long a server that was in trouble must stay running for `recovered`.
pub const RECOVERY_HOLD: Duration = Duration::from_secs(5);

/// The events that mean a server is in trouble (and cancel a pending `recovered`).
pub fn is_trouble(event: AlertEvent) -> bool {
    SERVER_TROUBLE.contains(&event)
}

/// The conditions that stay true until something clears them (Alertmanager resolves them).
pub const CONDITIONS: [AlertEvent; 5] = [
    AlertEvent::ProcessDied,
    AlertEvent::Fatal,
    AlertEvent::Unhealthy,
    AlertEvent::SpawnFailed,
    AlertEvent::OrphanDetected,
];
const SERVER_TROUBLE: &[AlertEvent] = &[
    AlertEvent::ProcessDied,
    AlertEvent::Fatal,
    AlertEvent::Unhealthy,
    AlertEvent::SpawnFailed,
];
const ORPHAN: &[AlertEvent] = &[AlertEvent::OrphanDetected];

/// What the alert thread remembers of each server between events, to say why and to know
/// when a server has recovered.
#[derive(Default)]
pub struct Watch {
    host: String,
    /// Why each server last died or failed to start.
    last_failure: HashMap<String, String>,
    /// Each server's last failing health check.
    last_health: HashMap<String, String>,
    /// Servers that died, failed to start, went fatal or unhealthy and have not run since.
    troubled: HashSet<String>,
}

impl Watch {
    pub fn new(host: String) -> Watch {
        Watch {
            host,
            ..Watch::default()
        }
    }

    /// The alerts and clearings one timeline event brings.
    pub fn observe(&mut self, record: &Record) -> Vec<Change> {
        let host = self.host.clone();
        let fire = |event: AlertEvent, server: Option<&str>, pid, port, reason: String| {
            let alert = make_alert(&host, record, event.as_str(), server, pid, port, reason);
            Change::Fire(event, alert)
        };
        match &record.event {
            Timeline::ProcessDied {
                id,
                pid,
                exit_code,
                exit_signal,
            } => {
                // A clean exit is a program that finished, not a death.
                if *exit_code == Some(0) {
                    return Vec::new();
                }
                let reason = match (exit_code, exit_signal) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(signal)) => format!("killed by {signal}"),
                    (None, None) => "exited (status unknown: adopted process)".to_string(),
                };
                self.last_failure.insert(id.clone(), reason.clone());
                self.troubled.insert(id.clone());
                vec![fire(
                    AlertEvent::ProcessDied,
                    Some(id),
                    Some(*pid),
                    None,
                    reason,
                )]
            }
            Timeline::ProcessError { id, error } => {
                self.last_failure.insert(id.clone(), error.clone());
                self.troubled.insert(id.clone());
                vec![fire(
                    AlertEvent::SpawnFailed,
                    Some(id),
                    None,
                    None,
                    error.clone(),
                )]
            }
            Timeline::HealthChanged {
                id,
                ok: false,
                detail,
                ..
            } => {
                self.last_health.insert(id.clone(), detail.clone());
                Vec::new()
            }
            Timeline::StatusChange { id, pid, to, .. } => match to {
                Status::Fatal => {
                    self.troubled.insert(id.clone());
                    let reason = match self.last_failure.get(id) {
                        Some(last) => format!("tend gave up restarting it (last: {last})"),
                        None => "tend gave up restarting it".to_string(),
                    };
                    vec![fire(AlertEvent::Fatal, Some(id), *pid, None, reason)]
                }
                Status::Unhealthy => {
                    self.troubled.insert(id.clone());
                    let reason = self.last_health.get(id).cloned().unwrap_or_else(|| {
                        "its ports are not open or its health check fails".to_string()
                    });
                    vec![fire(AlertEvent::Unhealthy, Some(id), *pid, None, reason)]
                }
                Status::Running => {
                    self.last_health.remove(id);
                    let mut changes = vec![Change::Clear {
                        server: id.clone(),
                        events: SERVER_TROUBLE,
                        port: None,
                    }];
                    if self.troubled.remove(id) {
                        let reason = format!("running again for {} s", RECOVERY_HOLD.as_secs());
                        let event = AlertEvent::Recovered.as_str();
                        let alert = make_alert(&host, record, event, Some(id), *pid, None, reason);
                        changes.push(Change::Recovering(alert));
                    }
                    changes
                }
                Status::Stopped => {
                    self.troubled.remove(id);
                    vec![Change::Clear {
                        server: id.clone(),
                        events: SERVER_TROUBLE,
                        port: None,
                    }]
                }
                _ => Vec::new(),
            },
            Timeline::OrphanDetected { id, pid, port } => {
                let reason = match pid {
                    Some(pid) => format!("PID {pid}, not started by tend, holds port {port}"),
                    None => format!("a process tend did not start holds port {port}"),
                };
                vec![fire(
                    AlertEvent::OrphanDetected,
                    Some(id),
                    *pid,
                    Some(*port),
                    reason,
                )]
            }
            Timeline::OrphanCleared { id, port, .. } => vec![Change::Clear {
                server: id.clone(),
                events: ORPHAN,
                port: Some(*port),
            }],
            Timeline::OrphanKilled { id, .. } => vec![Change::Clear {
                server: id.clone(),
                events: ORPHAN,
                port: None,
            }],
            Timeline::StateWriteFailed { error } => {
                vec![fire(
                    AlertEvent::StateWriteFailed,
                    None,
                    None,
                    None,
                    error.clone(),
                )]
            }
            Timeline::TendStarted { pid, version } => {
                let reason = format!("tend {version} started");
                vec![fire(
                    AlertEvent::TendStarted,
                    None,
                    Some(*pid),
                    None,
                    reason,
                )]
            }
            Timeline::TendStopping { signal } => {
                let reason = format!("tend received {signal}");
                vec![fire(AlertEvent::TendStopping, None, None, None, reason)]
            }
            _ => Vec::new(),
        }
    }

    /// The alert `tend alerts test` sends through rule `rule`.
    pub fn test_alert(&self, rule: usize, at_ms: u64) -> Alert {
        let mut alert = Alert {
            event: "test".to_string(),
            server: None,
            pid: Some(std::process::id()),
            port: None,
            reason: format!("`tend alerts test` (rule {rule})"),
            summary: String::new(),
            at: rfc3339(at_ms),
            at_ms,
            host: self.host.clone(),
            held_back: 0,
            test: true,
            event_id: 0,
        };
        alert.summary = format!("Test alert from tend on {} (rule {rule})", self.host);
        alert
    }
}

/// An alert about `record`, its summary written.
fn make_alert(
    host: &str,
    record: &Record,
    event: &str,
    server: Option<&str>,
    pid: Option<u32>,
    port: Option<u16>,
    reason: String,
) -> Alert {
    let mut alert = Alert {
        event: event.to_string(),
        server: server.map(str::to_string),
        pid,
        port,
        reason,
        summary: String::new(),
        at: rfc3339(record.at_ms),
        at_ms: record.at_ms,
        host: host.to_string(),
        held_back: 0,
        test: false,
        event_id: record.id,
    };
    alert.summary = summary(&alert);
    alert
}

/// One line for a person, with how many like it were held back.
pub fn summary(alert: &Alert) -> String {
    let server = alert.server.as_deref().unwrap_or("tend");
    let pid = alert.pid.map(|p| format!(" (PID {p})")).unwrap_or_default();
    let reason = &alert.reason;
    match alert.event.as_str() {
        "processDied" => format!("{server} died: {reason}{pid}"),
        "fatal" => format!("{server} is fatal: {reason}"),
        "unhealthy" => format!("{server} is unhealthy: {reason}"),
        "recovered" => format!("{server} recovered: {reason}{pid}"),
        "orphanDetected" => format!("{server}: orphan: {reason}"),
        "spawnFailed" => format!("{server} failed to start: {reason}"),
        "stateWriteFailed" => format!("tend cannot write its state file: {reason}"),
        "tendStarted" => format!("tend started on {}{pid}", alert.host),
        "tendStopping" => format!("tend is stopping on {}: {reason}", alert.host),
        other => format!("{server}: {other}: {reason}"),
    }
}

/// Adds "; 13 more held back in the last 5 min" to an alert that carries a held-back count.
pub fn note_held_back(alert: &mut Alert, held_back: u32, over: Duration) {
    alert.held_back = held_back;
    if held_back > 0 {
        alert.summary = format!(
            "{}; {held_back} more held back in the last {}",
            summary(alert),
            human(over)
        );
    }
}

fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// What the rate limit decided for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, with how many were held back since the last one and over how long.
    Send { held_back: u32, since: Duration },
    /// Hold it back; `first`: the first held back since the last one sent.
    Hold { first: bool },
}

/// At most one alert per (server, event) per `repeat` (monit's and Alertmanager's
/// `repeat_interval` idea): the rest are counted, and the next one sent says how many.
#[derive(Default)]
pub struct RateLimit {
    last: HashMap<(Option<String>, String), (Instant, u32)>,
}

impl RateLimit {
    pub fn check(&mut self, alert: &Alert, repeat: Duration, now: Instant) -> Verdict {
        let key = (alert.server.clone(), alert.event.clone());
        match self.last.get_mut(&key) {
            Some((sent_at, held)) if now.duration_since(*sent_at) < repeat => {
                *held += 1;
                Verdict::Hold { first: *held == 1 }
            }
            Some((sent_at, held)) => {
                let verdict = Verdict::Send {
                    held_back: *held,
                    since: now.duration_since(*sent_at),
                };
                *sent_at = now;
                *held = 0;
                verdict
            }
            None => {
                self.last.insert(key, (now, 0));
                Verdict::Send {
                    held_back: 0,
                    since: Duration::ZERO,
                }
            }
        }
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-12-06T03:12:45.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// This machine's host name (the `instance` of Alertmanager alerts), or "localhost".
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, event: Timeline) -> Record {
        Record {
            id,
            at_ms: 1_765_000_000_000 + id,
            event,
        }
    }

    fn status(id: &str, to: Status) -> Timeline {
        Timeline::StatusChange {
            id: id.into(),
            pid: Some(7),
            from: Status::Starting,
            to,
        }
    }

    fn fired(changes: &[Change]) -> Vec<(&'static str, String)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Fire(event, alert) => Some((event.as_str(), alert.summary.clone())),
                Change::Clear { .. } | Change::Recovering(_) => None,
            })
            .collect()
    }

    #[test]
    fn deaths_failures_and_recovery_become_alerts_with_reasons() {
        let mut watch = Watch::new("box".into());
        let died = watch.observe(&record(
            1,
            Timeline::ProcessDied {
                id: "web".into(),
                pid: 42,
                exit_code: None,
                exit_signal: Some("SIGKILL".into()),
            },
        ));
        assert_eq!(
            fired(&died),
            [(
                "processDied",
                "web died: killed by SIGKILL (PID 42)".to_string()
            )]
        );
        let Change::Fire(_, alert) = &died[0] else {
            unreachable!()
        };
        assert_eq!(alert.at, "2025-12-06T05:46:40.001Z");
        assert_eq!((alert.event_id, alert.host.as_str()), (1, "box"));
        let fatal = watch.observe(&record(2, status("web", Status::Fatal)));
        assert_eq!(
            fired(&fatal),
            [(
                "fatal",
                "web is fatal: tend gave up restarting it (last: killed by SIGKILL)".to_string()
            )]
        );
        let running = watch.observe(&record(3, status("web", Status::Running)));
        assert!(matches!(&running[0], Change::Clear { server, .. } if server == "web"));
        assert!(
            matches!(&running[1], Change::Recovering(alert)
                if alert.summary == "web recovered: running again for 5 s (PID 7)"),
            "{running:?}"
        );
        // Running again without trouble in between is no recovery.
        let again = watch.observe(&record(4, status("web", Status::Running)));
        assert!(fired(&again).is_empty());
        let clean = watch.observe(&record(
            5,
            Timeline::ProcessDied {
                id: "job".into(),
                pid: 43,
                exit_code: Some(0),
                exit_signal: None,
            },
        ));
        assert!(clean.is_empty(), "a clean exit is no death");
    }

    #[test]
    fn the_rate_limit_holds_back_and_counts() {
        let mut limit = RateLimit::default();
        let watch = Watch::new("h".into());
        let alert = watch.test_alert(1, 0);
        let start = Instant::now();
        let repeat = Duration::from_secs(300);
        assert!(matches!(
            limit.check(&alert, repeat, start),
            Verdict::Send { held_back: 0, .. }
        ));
        assert_eq!(
            limit.check(&alert, repeat, start + Duration::from_secs(1)),
            Verdict::Hold { first: true }
        );
        assert_eq!(
            limit.check(&alert, repeat, start + Duration::from_secs(2)),
            Verdict::Hold { first: false }
        );
        assert_eq!(
            limit.check(&alert, repeat, start + Duration::from_secs(301)),
            Verdict::Send {
                held_back: 2,
                since: Duration::from_secs(301)
            }
        );
        let mut noted = alert.clone();
        note_held_back(&mut noted, 2, Duration::from_secs(301));
        assert!(
            noted
                .summary
                .ends_with("; 2 more held back in the last 5 min")
        );
        assert_eq!(
            limit.check(&alert, Duration::ZERO, start + Duration::from_secs(302)),
            Verdict::Send {
                held_back: 0,
                since: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
