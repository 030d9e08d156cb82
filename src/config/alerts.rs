//! The top-level `alerts` key (docs/DESIGN.md §12 "Alerts"): which events tell whom, and how.
//! Each rule names events, optionally servers, and exactly one target: a command (`exec`), an
//! `http://` URL to POST the event to (`webhook`), or a Prometheus Alertmanager
//! (`alertmanager`). Only parsing and validation live here; delivery is `crate::alerts`.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::CommandSpec;
use super::check::{Checker, DAY_MS, Field, quoted};
use super::positions::Pos;
use super::suggest::closest;

/// An event an alert rule can be triggered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertEvent {
    /// A server's process died without being asked to (any exit but code 0).
    ProcessDied,
    /// A server went `fatal`: tend gave up restarting it.
    Fatal,
    /// A server went `unhealthy` (ports closed past its start timeout, or failed health checks).
    Unhealthy,
    /// A server that died, failed or was unhealthy is `running` again.
    Recovered,
    /// A process tend does not own holds one of a server's ports.
    OrphanDetected,
    /// A server's process could not be started at all.
    SpawnFailed,
    /// The state file could not be written.
    StateWriteFailed,
    TendStarted,
    TendStopping,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 9] = [
        AlertEvent::ProcessDied,
        AlertEvent::Fatal,
        AlertEvent::Unhealthy,
        AlertEvent::Recovered,
        AlertEvent::OrphanDetected,
        AlertEvent::SpawnFailed,
        AlertEvent::StateWriteFailed,
        AlertEvent::TendStarted,
        AlertEvent::TendStopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::ProcessDied => "processDied",
            AlertEvent::Fatal => "fatal",
            AlertEvent::Unhealthy => "unhealthy",
            AlertEvent::Recovered => "recovered",
            AlertEvent::OrphanDetected => "orphanDetected",
            AlertEvent::SpawnFailed => "spawnFailed",
            AlertEvent::StateWriteFailed => "stateWriteFailed",
            AlertEvent::TendStarted => "tendStarted",
            AlertEvent::TendStopping => "tendStopping",
        }
    }

    pub fn parse(text: &str) -> Option<AlertEvent> {
        AlertEvent::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// An `http://` URL as a webhook or Alertmanager target takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// A name or an IP address; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Starts with `/`; includes any query.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path][?query]`. No TLS (tend has none: a local relay such as
    /// a reverse proxy carries an alert further), no user name or password in the URL.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("must start with http://".to_string());
        };
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "the scheme must be http, not {scheme} (tend speaks no TLS; send to a local relay)"
            ));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') {
            return Err("must not contain a user name or password".to_string());
        }
        if path.contains('#') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the path must be printable ASCII without spaces or a #fragment".to_string(),
            );
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err("missing ']' after the IPv6 address".to_string());
            };
            (host, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the host is missing".to_string());
        }
        let port = match port {
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("'{port}' is not a port number")),
            },
        };
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `host:port` as the `Host` header spells it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL with `suffix` appended to its path (an Alertmanager base URL + `/api/v2/alerts`).
    pub fn join(&self, suffix: &str) -> HttpUrl {
        HttpUrl {
            path: format!("{}{suffix}", self.path.trim_end_matches('/')),
            ..self.clone()
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// Where a rule's alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertTarget {
    /// Run with the event as JSON on stdin and as `TEND_*` variables, in `cwd` (the config's
    /// folder, as a server's default).
    Exec {
        command: CommandSpec,
        cwd: std::path::PathBuf,
    },
    /// POST the event JSON here.
    Webhook(HttpUrl),
    /// An Alertmanager's base URL; alerts go to `/api/v2/alerts` under it.
    Alertmanager(HttpUrl),
}

impl AlertTarget {
    /// "exec", "webhook" or "alertmanager": the config key, and the `target` of outcomes.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertTarget::Exec { .. } => "exec",
            AlertTarget::Webhook(_) => "webhook",
            AlertTarget::Alertmanager(_) => "alertmanager",
        }
    }
}

/// One entry of `alerts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    pub on: Vec<AlertEvent>,
    /// Server ids the rule is limited to; empty: every server (and tend's own events).
    pub servers: Vec<String>,
    pub target: AlertTarget,
    /// How long one delivery may take in all (an exec's run, a webhook's tries).
    pub timeout: Duration,
    /// The same (server, event) is sent at most once per this; 0: every time.
    pub repeat: Duration,
    /// 1-based line of the rule's object, for messages.
    pub line: usize,
}

const RULE_KEYS: &[&str] = &[
    "on",
    "servers",
    "exec",
    "webhook",
    "alertmanager",
    "timeout_ms",
    "repeat_ms",
];
const TARGET_KEYS: [&str; 3] = ["exec", "webhook", "alertmanager"];

pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);
pub const DEFAULT_REPEAT: Duration = Duration::from_millis(300_000);
/// The longest an alert may take: past this a hung target would hold its rule's queue for long.
const MAX_TIMEOUT_MS: u64 = 300_000;

/// A rule as read, with where its `servers` entries are written (checked once every server id
/// is known).
pub(super) struct RuleDraft {
    pub rule: AlertRule,
    pub servers_at: Vec<Pos>,
}

impl Checker<'_> {
    /// The `alerts` array.
    pub(super) fn alerts(&mut self, field: &Field, value: &Value) -> Vec<RuleDraft> {
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of alert rules", value);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.alert_rule(&field.index(i), item))
            .collect()
    }

    fn alert_rule(&mut self, field: &Field, value: &Value) -> Option<RuleDraft> {
        let at = self.value_at(&field.path);
        let Value::Object(object) = value else {
            return self.wrong_type(field, "an alert rule object", value);
        };
        let place = format!(" in alert rule {}", field.name);
        let mut on = Vec::new();
        let mut servers = Vec::new();
        let mut servers_at = Vec::new();
        let mut targets = Vec::new();
        let mut timeout = DEFAULT_TIMEOUT;
        let mut repeat = DEFAULT_REPEAT;
        let mut ok = true;
        for (key, value) in object {
            let sub = Field::new(&field.path, key, &place);
            match key.as_str() {
                "on" => match self.alert_events(&sub, value) {
                    Some(events) => on = events,
                    None => ok = false,
                },
                "servers" => match value {
                    Value::Array(ids) => {
                        for (i, id) in ids.iter().enumerate() {
                            let entry = sub.index(i);
                            match self.string(&entry, id) {
                                Some(id) => {
                                    servers.push(id.to_string());
                                    servers_at.push(self.value_at(&entry.path));
                                }
                                None => ok = false,
                            }
                        }
                    }
                    other => {
                        ok = false;
                        self.wrong_type::<()>(&sub, "an array of server ids", other);
                    }
                },
                "exec" => match self.command(&sub, value) {
                    Some(command) => targets.push(AlertTarget::Exec {
                        command,
                        cwd: self.base_dir.to_path_buf(),
                    }),
                    None => ok = false,
                },
                "webhook" | "alertmanager" => match self.http_url(&sub, value) {
                    Some(url) if key == "webhook" => targets.push(AlertTarget::Webhook(url)),
                    Some(url) => targets.push(AlertTarget::Alertmanager(url)),
                    None => ok = false,
                },
                "timeout_ms" => match self.integer(&sub, value, 100, MAX_TIMEOUT_MS) {
                    Some(ms) => timeout = Duration::from_millis(ms),
                    None => ok = false,
                },
                "repeat_ms" => match self.integer(&sub, value, 0, DAY_MS) {
                    Some(ms) => repeat = Duration::from_millis(ms),
                    None => ok = false,
                },
                _ => {
                    ok = false;
                    self.unknown_key(&sub.path, key, &place, RULE_KEYS);
                }
            }
        }
        if !object.contains_key("on") {
            ok = false;
            self.fail(
                at,
                format!(
                    "{}: missing 'on' (the events that trigger it, e.g. [\"processDied\", \"fatal\"])",
                    field.name
                ),
            );
        }
        let present: Vec<&str> = TARGET_KEYS
            .into_iter()
            .filter(|k| object.contains_key(*k))
            .collect();
        if present.len() != 1 {
            ok = false;
            let found = if present.is_empty() {
                "none".to_string()
            } else {
                present.join(" and ")
            };
            self.fail(
                at,
                format!(
                    "{}: give exactly one target: \"exec\", \"webhook\" or \"alertmanager\" (found {found})",
                    field.name
                ),
            );
        }
        if !ok || targets.len() != 1 {
            return None;
        }
        Some(RuleDraft {
            rule: AlertRule {
                on,
                servers,
                target: targets.remove(0),
                timeout,
                repeat,
                line: at.line,
            },
            servers_at,
        })
    }

    fn alert_events(&mut self, field: &Field, value: &Value) -> Option<Vec<AlertEvent>> {
        let Value::Array(items) = value else {
            return self.wrong_type(field, "an array of event names", value);
        };
        if items.is_empty() {
            self.fail_field(field, "must name at least one event");
            return None;
        }
        let names: Vec<&str> = AlertEvent::ALL.iter().map(|e| e.as_str()).collect();
        let mut events = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(name) = self.string(&entry, item) else {
                ok = false;
                continue;
            };
            match AlertEvent::parse(name) {
                Some(event) if !events.contains(&event) => events.push(event),
                Some(_) => {}
                None => {
                    ok = false;
                    let hint = match closest(name, names.iter().copied()) {
                        Some(near) => format!("; did you mean '{near}'?"),
                        None => format!(" (events: {})", names.join(", ")),
                    };
                    self.fail_field(&entry, format!("unknown event {}{hint}", quoted(name)));
                }
            }
        }
        ok.then_some(events)
    }

    fn http_url(&mut self, field: &Field, value: &Value) -> Option<HttpUrl> {
        let text = self.string(field, value)?;
        match HttpUrl::parse(text) {
            Ok(url) => Some(url),
            Err(why) => {
                self.fail_field(field, format!("{}: {why}", quoted(text)));
                None
            }
        }
    }

    /// Every `servers` entry of every rule names a server of this file.
    pub(super) fn check_alert_servers(&mut self, rules: &[RuleDraft], ids: &[&str]) {
        for draft in rules {
            for (id, &at) in draft.rule.servers.iter().zip(&draft.servers_at) {
                if ids.contains(&id.as_str()) {
                    continue;
                }
                let mut message = format!(
                    "alert rule at line {} names server {}, which is not a server in this file",
                    draft.rule.line,
                    quoted(id)
                );
                if let Some(near) = closest(id, ids.iter().copied()) {
                    message.push_str(&format!("; did you mean '{near}'?"));
                }
                self.fail(at, message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse_and_refuse_what_tend_cannot_send_to() {
        let url = HttpUrl::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 9093, "/")
        );
        assert_eq!(
            url.join("/api/v2/alerts").to_string(),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
        let url = HttpUrl::parse("http://[::1]/hook?key=a").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 80, "/hook?key=a")
        );
        assert_eq!(url.to_string(), "http://[::1]:80/hook?key=a");
        let url = HttpUrl::parse("http://relay.local:8080/am/").unwrap();
        assert_eq!(url.join("/api/v2/alerts").path, "/am/api/v2/alerts");
        for (bad, why) in [
            ("https://hooks.example/x", "no TLS"),
            ("127.0.0.1:80/x", "must start with http://"),
            ("http://user:pw@host/", "user name"),
            ("http://:80/", "host is missing"),
            ("http://host:0/", "not a port"),
            ("http://host/a b", "printable ASCII"),
        ] {
            let error = HttpUrl::parse(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    fn parse(text: &str) -> Result<Vec<AlertRule>, Vec<String>> {
        let path = std::path::Path::new("/p/tend.json");
        crate::config::parse(text, path, std::path::Path::new("/p"))
            .map(|config| config.alerts)
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn rules_are_read_with_their_defaults() {
        let rules = parse(
            r#"{"servers": [{"id": "web", "command": "run"}],
 "alerts": [
  {"on": ["processDied", "fatal"], "exec": "notify-send tend"},
  {"on": ["unhealthy"], "servers": ["web"], "webhook": "http://127.0.0.1:9000/hook",
   "timeout_ms": 2000, "repeat_ms": 0},
  {"on": ["orphanDetected"], "alertmanager": "http://127.0.0.1:9093"}
 ]}"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].on, [AlertEvent::ProcessDied, AlertEvent::Fatal]);
        assert_eq!(
            rules[0].target,
            AlertTarget::Exec {
                command: CommandSpec::Shell("notify-send tend".into()),
                cwd: "/p".into()
            }
        );
        assert_eq!(
            (rules[0].timeout, rules[0].repeat),
            (DEFAULT_TIMEOUT, DEFAULT_REPEAT)
        );
        assert_eq!(rules[1].servers, ["web"]);
        assert_eq!(
            (rules[1].timeout, rules[1].repeat),
            (Duration::from_millis(2000), Duration::ZERO)
        );
        assert_eq!(rules[1].line, 4);
        assert_eq!(rules[2].target.kind(), "alertmanager");
    }

    #[test]
    fn bad_rules_point_at_the_problem() {
        let errors = parse(
            r#"{"servers": [{"id": "web", "command": "run"}],
 "alerts": [
  {"on": ["procesDied"], "exec": "x"},
  {"on": ["fatal"], "servers": ["wbe"], "exec": "x", "webhook": "http://h/"},
  {"on": ["fatal"], "servers": ["wbe"], "exec": "x"},
  {"on": ["fatal"], "alertmanager": "https://am:9093", "repeat": 5},
  {"exec": "x"},
  {"on": [], "webhook": "http://h/"}
 ]}"#,
        )
        .unwrap_err();
        let expected = [
            "/p/tend.json:3:11: on[0] in alert rule alerts[0]: unknown event 'procesDied'; did you mean 'processDied'?",
            "/p/tend.json:4:3: alerts[1]: give exactly one target: \"exec\", \"webhook\" or \"alertmanager\" (found exec and webhook)",
            "/p/tend.json:5:33: alert rule at line 5 names server 'wbe', which is not a server in this file; did you mean 'web'?",
            "/p/tend.json:6:37: alertmanager in alert rule alerts[3]: 'https://am:9093': the scheme must be http, not https (tend speaks no TLS; send to a local relay)",
            "/p/tend.json:6:56: unknown key 'repeat' in alert rule alerts[3] (allowed keys: on, servers, exec, webhook, alertmanager, timeout_ms, repeat_ms)",
            "/p/tend.json:7:3: alerts[4]: missing 'on' (the events that trigger it, e.g. [\"processDied\", \"fatal\"])",
            "/p/tend.json:8:10: on in alert rule alerts[5]: must name at least one event",
        ];
        assert_eq!(errors, expected);
    }

    #[test]
    fn event_names_round_trip() {
        for event in AlertEvent::ALL {
            assert_eq!(AlertEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(AlertEvent::parse("died"), None);
    }
}
