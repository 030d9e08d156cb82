//! The checker: walks the parsed JSON, reads every key into [`Config`] and collects every
//! problem with the position of the value (or key) it is about.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::positions::{Pos, Positions, child_path};
use super::servers::SERVER_KEYS;
use super::suggest::closest;
use super::{AuthSetting, Config, OnExit};

/// The longest a `*_ms` value may be: anything longer is almost surely a unit mistake.
pub(super) const DAY_MS: u64 = 86_400_000;

/// The largest `log_max_bytes`: past this a log is not bounded in any useful sense.
pub(super) const TIB: u64 = 1 << 40;

pub(super) const TOP_KEYS: &[&str] = &[
    "listen",
    "state_file",
    "log_dir",
    "health_interval_ms",
    "auth_token",
    "allowed_hosts",
    "on_exit",
    "log_max_bytes",
    "log_keep",
    "max_connections",
    "max_sse_clients",
    "adopt_orphans",
    "alerts",
    "servers",
];

/// A value being checked: where it is, and how messages name it.
pub(super) struct Field {
    /// The JSON path, for looking up positions.
    pub(super) path: String,
    /// The key as the user wrote it, with any index: `ports[1]`.
    pub(super) name: String,
    /// Where it lives, for messages: "" at the top level, " in server 'web'".
    pub(super) place: String,
}

impl Field {
    pub(super) fn new(parent: &str, key: &str, place: &str) -> Field {
        Field {
            path: child_path(parent, key),
            name: key.to_string(),
            place: place.to_string(),
        }
    }

    pub(super) fn index(&self, index: usize) -> Field {
        Field {
            path: format!("{}[{index}]", self.path),
            name: format!("{}[{index}]", self.name),
            place: self.place.clone(),
        }
    }

    pub(super) fn label(&self) -> String {
        format!("{}{}", self.name, self.place)
    }
}

pub(super) struct Problem {
    pub(super) at: Pos,
    pub(super) message: String,
}

enum Integer {
    Whole(u64),
    Negative,
    Fraction,
    TooLarge,
}

fn classify(number: &serde_json::Number) -> Integer {
    if let Some(n) = number.as_u64() {
        return Integer::Whole(n);
    }
    if number.is_i64() {
        return Integer::Negative;
    }
    let f = number.as_f64().unwrap_or(f64::NAN);
    if f < 0.0 {
        Integer::Negative
    } else if f.fract() != 0.0 {
        Integer::Fraction
    } else if f >= u64::MAX as f64 {
        Integer::TooLarge
    } else {
        // `5.0` or `1e3`: whole, so take it rather than nag.
        Integer::Whole(f as u64)
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A user's text in a message, quoted, with control characters escaped so a message stays
/// one line.
pub(super) fn quoted(text: &str) -> String {
    format!("'{}'", text.escape_debug())
}

fn join_choices(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

pub(super) struct Checker<'a> {
    pub(super) index: &'a Positions,
    pub(super) base_dir: &'a Path,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn value_at(&self, path: &str) -> Pos {
        self.index.values.get(path).copied().unwrap_or_default()
    }

    pub(super) fn key_at(&self, path: &str) -> Pos {
        self.index.keys.get(path).copied().unwrap_or_default()
    }

    pub(super) fn fail(&mut self, at: Pos, message: String) {
        self.problems.push(Problem { at, message });
    }

    pub(super) fn fail_field(&mut self, field: &Field, problem: impl std::fmt::Display) {
        let at = self.value_at(&field.path);
        self.fail(at, format!("{}: {problem}", field.label()));
    }

    pub(super) fn wrong_type<T>(
        &mut self,
        field: &Field,
        expected: &str,
        value: &Value,
    ) -> Option<T> {
        self.fail_field(field, format!("expected {expected}, found {}", kind(value)));
        None
    }

    pub(super) fn config(&mut self, root: &Value, path: &Path) -> Config {
        let mut config = Config::defaults(path, self.base_dir);
        let Some(object) = root.as_object() else {
            let at = self.value_at("");
            self.fail(
                at,
                format!("the config must be a JSON object, found {}", kind(root)),
            );
            return config;
        };
        let mut alert_rules = Vec::new();
        for (key, value) in object {
            let field = Field::new("", key, "");
            match key.as_str() {
                "alerts" => alert_rules = self.alerts(&field, value),
                "listen" => {
                    if let Some(addr) = self.listen(&field, value) {
                        config.listen = addr;
                    }
                }
                "state_file" => {
                    if let Some(file) = self.path(&field, value) {
                        config.state_file = file;
                    }
                }
                "log_dir" => {
                    if let Some(dir) = self.path(&field, value) {
                        config.log_dir = dir;
                    }
                }
                "health_interval_ms" => {
                    if let Some(ms) = self.integer(&field, value, 100, DAY_MS) {
                        config.health_interval = Duration::from_millis(ms);
                    }
                }
                "auth_token" => {
                    if let Some(auth) = self.auth(&field, value) {
                        config.auth = auth;
                    }
                }
                "allowed_hosts" => {
                    if let Some(hosts) = self.allowed_hosts(&field, value) {
                        config.allowed_hosts = hosts;
                    }
                }
                "on_exit" => match self.choice(&field, value, &["stop", "keep"]) {
                    Some("keep") => config.on_exit = OnExit::Keep,
                    Some(_) => config.on_exit = OnExit::Stop,
                    None => {}
                },
                "log_max_bytes" => {
                    if let Some(bytes) = self.integer(&field, value, 4096, TIB) {
                        config.log_max_bytes = bytes;
                    }
                }
                "log_keep" => {
                    if let Some(keep) = self.integer(&field, value, 1, 100) {
                        config.log_keep = keep as u32;
                    }
                }
                "max_connections" => {
                    if let Some(n) = self.integer(&field, value, 1, 65536) {
                        config.max_connections = n as usize;
                    }
                }
                "max_sse_clients" => {
                    if let Some(n) = self.integer(&field, value, 1, 65536) {
                        config.max_sse_clients = n as usize;
                    }
                }
                "adopt_orphans" => {
                    if let Some(adopt) = self.boolean(&field, value) {
                        config.adopt_orphans = adopt;
                    }
                }
                "servers" => config.servers = self.servers(&field, value),
                _ => self.unknown_key(&field.path, key, "", TOP_KEYS),
            }
        }
        let ids: Vec<&str> = config.servers.iter().map(|s| s.id.as_str()).collect();
        self.check_alert_servers(&alert_rules, &ids);
        config.alerts = alert_rules.into_iter().map(|draft| draft.rule).collect();
        if !object.contains_key("servers") {
            let at = self.value_at("");
            self.fail(
                at,
                "missing required key 'servers' (an array of server objects; it may be empty)"
                    .to_string(),
            );
        }
        config
    }

    pub(super) fn unknown_key(&mut self, path: &str, key: &str, place: &str, allowed: &[&str]) {
        let mut message = format!("unknown key {}{place}", quoted(key));
        if place.is_empty() && SERVER_KEYS.contains(&key) {
            message.push_str(&format!(
                "; '{key}' belongs inside a server object in 'servers'"
            ));
        } else if let Some(suggestion) = closest(key, allowed.iter().copied()) {
            message.push_str(&format!("; did you mean '{suggestion}'?"));
        } else {
            message.push_str(&format!(" (allowed keys: {})", allowed.join(", ")));
        }
        let at = self.key_at(path);
        self.fail(at, message);
    }

    pub(super) fn integer(
        &mut self,
        field: &Field,
        value: &Value,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let Value::Number(number) = value else {
            let hint = match value {
                Value::String(s) if s.trim().parse::<u64>().is_ok() => {
                    format!(" (write {} without quotes)", s.trim())
                }
                _ => String::new(),
            };
            self.fail_field(
                field,
                format!("expected an integer, found {}{hint}", kind(value)),
            );
            return None;
        };
        let limit = match max {
            DAY_MS => format!("{max} (one day)"),
            TIB => format!("{max} (1 TiB)"),
            _ => max.to_string(),
        };
        let problem = match classify(number) {
            Integer::Whole(n) if n < min => format!("must be at least {min}, found {n}"),
            Integer::Whole(n) if n > max => format!("must be at most {limit}, found {n}"),
            Integer::Whole(n) => return Some(n),
            Integer::Negative => format!("must not be negative, found {number}"),
            Integer::Fraction => format!("must be a whole number, found {number}"),
            // Past u64 serde_json keeps only an f64, whose rendering would not be what was written.
            Integer::TooLarge => format!("must be at most {limit}"),
        };
        self.fail_field(field, problem);
        None
    }

    pub(super) fn string<'v>(&mut self, field: &Field, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) if s.contains('\0') => {
                self.fail_field(field, "must not contain a NUL character");
                None
            }
            Value::String(s) => Some(s),
            other => self.wrong_type(field, "a string", other),
        }
    }

    pub(super) fn boolean(&mut self, field: &Field, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => self.wrong_type(field, "true or false", other),
        }
    }

    pub(super) fn choice<'c>(
        &mut self,
        field: &Field,
        value: &Value,
        choices: &[&'c str],
    ) -> Option<&'c str> {
        let text = self.string(field, value)?;
        if let Some(&choice) = choices.iter().find(|&&c| c == text) {
            return Some(choice);
        }
        self.fail_field(
            field,
            format!("must be {}, found {}", join_choices(choices), quoted(text)),
        );
        None
    }

    /// A path from the file, resolved against the file's folder.
    pub(super) fn path(&mut self, field: &Field, value: &Value) -> Option<PathBuf> {
        let text = self.string(field, value)?;
        if text.is_empty() {
            self.fail_field(field, "must not be empty");
            return None;
        }
        Some(self.base_dir.join(text).components().collect())
    }

    fn listen(&mut self, field: &Field, value: &Value) -> Option<SocketAddr> {
        let text = self.string(field, value)?;
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.fail_field(
                    field,
                    format!(
                        "must be an IP address and port such as \"127.0.0.1:7070\" or \
                         \"[::1]:7070\" (host names are not accepted), found {}",
                        quoted(text)
                    ),
                );
                None
            }
        }
    }

    fn auth(&mut self, field: &Field, value: &Value) -> Option<AuthSetting> {
        let token = match value {
            Value::Null => return Some(AuthSetting::Default),
            Value::String(token) => token,
            other => return self.wrong_type(field, "a string or null", other),
        };
        let problem = if token == "none" {
            return Some(AuthSetting::Disabled);
        } else if token.is_empty() {
            "must not be empty (use null for a generated token, or \"none\" to turn auth off)"
        } else if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
            // The token travels in an Authorization header and a cookie.
            "must not contain spaces or control characters"
        } else {
            return Some(AuthSetting::Token(token.clone()));
        };
        self.fail_field(field, problem);
        None
    }

    fn allowed_hosts(&mut self, field: &Field, value: &Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            return self.wrong_type(field, "an array of host names", value);
        };
        let mut hosts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(host) = self.string(&entry, item) else {
                continue;
            };
            let problem = if host.is_empty() || host.contains(char::is_whitespace) {
                "must be a host name without spaces, such as \"example.com\"".to_string()
            } else if host.contains("://") {
                format!("is a URL; give only its host name, found {}", quoted(host))
            } else if host.contains('/') {
                format!("must be a host name without '/', found {}", quoted(host))
            } else if let Some(inner) = host.strip_prefix('[') {
                match inner.strip_suffix(']') {
                    Some(ip) if ip.parse::<Ipv6Addr>().is_ok() => {
                        hosts.push(host.to_string());
                        continue;
                    }
                    _ => format!(
                        "must be a bracketed IPv6 address such as \"[::1]\", without a port, \
                         found {}",
                        quoted(host)
                    ),
                }
            } else if host.parse::<Ipv6Addr>().is_ok() {
                format!("write an IPv6 address in brackets, as in the Host header: \"[{host}]\"")
            } else if host.contains(':') {
                format!("must be a host name without a port, found {}", quoted(host))
            } else {
                hosts.push(host.to_string());
                continue;
            };
            self.fail_field(&entry, problem);
        }
        Some(hosts)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::config::{
        AuthSetting, CommandSpec, Config, OnExit, RestartPolicy, ServerConfig, parse,
    };

    const FILE: &str = "/project/tend.json";

    pub(in crate::config) fn parse_ok(text: &str) -> Config {
        parse(text, Path::new(FILE), Path::new("/project")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each error as `line:column: message`.
    pub(in crate::config) fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new(FILE), Path::new("/project")) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(errors) => {
                for error in &errors.0 {
                    assert_eq!(error.file, Path::new(FILE));
                }
                errors
                    .0
                    .iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect()
            }
        }
    }

    fn server_defaults(id: &str, line: usize) -> ServerConfig {
        ServerConfig {
            id: id.to_string(),
            command: CommandSpec::Shell("run".to_string()),
            cwd: PathBuf::from("/project"),
            env: BTreeMap::new(),
            env_file: None,
            ports: Vec::new(),
            autostart: true,
            restart: RestartPolicy::OnFailure,
            max_restarts: 10,
            backoff: Duration::from_millis(500),
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_millis(5000),
            start_timeout: Duration::from_millis(30000),
            retry_fatal: Some(Duration::from_millis(300_000)),
            depends_on: Vec::new(),
            group: None,
            max_memory: None,
            health: None,
            watch: None,
            restart_every: None,
            restart_at: None,
            line,
        }
    }

    #[test]
    fn max_memory_takes_sizes_and_bytes_and_says_what_is_wrong() {
        let config = parse_ok(
            r#"{"servers": [{"id": "a", "command": "run", "max_memory": "256M"},
                            {"id": "b", "command": "run", "max_memory": 1073741824},
                            {"id": "c", "command": "run"}]}"#,
        );
        let limits: Vec<Option<u64>> = config.servers.iter().map(|s| s.max_memory).collect();
        assert_eq!(limits, [Some(256 << 20), Some(1 << 30), None]);
        assert_eq!(
            errors(
                "{\"servers\": [\n  {\"id\": \"a\", \"command\": \"run\", \"max_memory\": \"256X\"},\n  \
                 {\"id\": \"b\", \"command\": \"run\", \"max_memory\": 256},\n  \
                 {\"id\": \"c\", \"command\": \"run\", \"max_memory\": true},\n  \
                 {\"id\": \"d\", \"command\": \"run\", \"max_memory\": \"65T\"}\n]}"
            ),
            [
                "2:47: max_memory in server 'a': unknown unit 'X' (use K, M, G or T, as in \"256M\"), found '256X'",
                "3:47: max_memory in server 'b': must be at least 1M (1048576 bytes), found 256 (a number is bytes: did you mean \"256M\"?)",
                "4:47: max_memory in server 'c': expected a size such as \"256M\" or bytes, found a boolean",
                "5:47: max_memory in server 'd': must be at most 64T",
            ]
        );
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let config =
            parse_ok("{\n  \"servers\": [\n    {\"id\": \"web\", \"command\": \"run\"}\n  ]\n}");
        let expected = Config {
            path: PathBuf::from(FILE),
            base_dir: PathBuf::from("/project"),
            listen: "127.0.0.1:7070".parse().expect("literal"),
            state_file: PathBuf::from("/project/.tend/process-state.json"),
            log_dir: PathBuf::from("/project/.tend/logs"),
            health_interval: Duration::from_millis(3000),
            auth: AuthSetting::Default,
            allowed_hosts: Vec::new(),
            on_exit: OnExit::Stop,
            log_max_bytes: 10_485_760,
            log_keep: 3,
            max_connections: 256,
            max_sse_clients: 64,
            adopt_orphans: false,
            alerts: Vec::new(),
            servers: vec![server_defaults("web", 3)],
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn every_key_is_read_and_paths_resolve_against_the_config_folder() {
        let config = parse_ok(
            r#"{
  "listen": "[::1]:9000",
  "state_file": "state/s.json",
  "log_dir": "/var/log/tend",
  "health_interval_ms": 250,
  "auth_token": "s3cret",
  "allowed_hosts": ["dev.example.com", "[::1]"],
  "on_exit": "keep",
  "log_max_bytes": 4096,
  "log_keep": 100,
  "max_connections": 1,
  "max_sse_clients": 2,
  "servers": [
    {
      "id": "web.1_a-B",
      "command": ["python3", "-m", "http.server"],
      "cwd": "./web/../site",
      "env": {"PYTHONUNBUFFERED": "1", "EMPTY": ""},
      "env_file": ".env",
      "ports": [8000, 65535, 1],
      "autostart": false,
      "restart": "always",
      "max_restarts": 0,
      "backoff_ms": 0,
      "stop_signal": "int",
      "stop_timeout_ms": 86400000,
      "start_timeout_ms": 0,
      "retry_fatal_ms": 0,
      "depends_on": ["db"]
    },
    {"id": "db", "command": "pg", "restart": "no", "stop_signal": 9, "retry_fatal_ms": 1000}
  ],
  "adopt_orphans": true
}"#,
        );
        assert_eq!(config.listen, "[::1]:9000".parse().expect("literal"));
        assert_eq!(config.state_file, Path::new("/project/state/s.json"));
        assert_eq!(config.log_dir, Path::new("/var/log/tend"));
        assert_eq!(config.health_interval, Duration::from_millis(250));
        assert_eq!(config.auth, AuthSetting::Token("s3cret".to_string()));
        assert_eq!(config.allowed_hosts, ["dev.example.com", "[::1]"]);
        assert_eq!(config.on_exit, OnExit::Keep);
        assert_eq!(config.log_max_bytes, 4096);
        assert_eq!(config.log_keep, 100);
        assert_eq!(config.max_connections, 1);
        assert_eq!(config.max_sse_clients, 2);
        assert!(config.adopt_orphans);
        let web = &config.servers[0];
        let expected_web = ServerConfig {
            id: "web.1_a-B".to_string(),
            command: CommandSpec::Exec(vec!["python3".into(), "-m".into(), "http.server".into()]),
            // Lexical: `..` is kept for the OS, which knows about symlinks.
            cwd: PathBuf::from("/project/web/../site"),
            env: BTreeMap::from([
                ("EMPTY".to_string(), String::new()),
                ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
            ]),
            env_file: Some(PathBuf::from("/project/.env")),
            ports: vec![8000, 65535, 1],
            autostart: false,
            restart: RestartPolicy::Always,
            max_restarts: 0,
            backoff: Duration::ZERO,
            stop_signal: libc::SIGINT,
            stop_timeout: Duration::from_millis(86_400_000),
            start_timeout: Duration::ZERO,
            retry_fatal: None,
            depends_on: vec!["db".to_string()],
            group: None,
            max_memory: None,
            health: None,
            watch: None,
            restart_every: None,
            restart_at: None,
            line: 14,
        };
        assert_eq!(*web, expected_web);
        let db = &config.servers[1];
        assert_eq!(db.command, CommandSpec::Shell("pg".to_string()));
        assert_eq!(db.restart, RestartPolicy::No);
        assert_eq!(db.stop_signal, libc::SIGKILL);
        assert_eq!(db.retry_fatal, Some(Duration::from_millis(1000)));
        assert_eq!(db.line, 31);
    }

    #[test]
    fn auth_token_settings() {
        let cases = [
            ("null", AuthSetting::Default),
            ("\"none\"", AuthSetting::Disabled),
            ("\"None\"", AuthSetting::Token("None".to_string())),
            ("\"t0k-en\"", AuthSetting::Token("t0k-en".to_string())),
        ];
        for (value, expected) in cases {
            let config = parse_ok(&format!("{{\"auth_token\": {value}, \"servers\": []}}"));
            assert_eq!(config.auth, expected, "auth_token {value}");
        }
    }

    #[test]
    fn whole_numbers_written_as_floats_are_accepted() {
        let config =
            parse_ok("{\"health_interval_ms\": 2.5e3, \"log_keep\": 7.0, \"servers\": []}");
        assert_eq!(config.health_interval, Duration::from_millis(2500));
        assert_eq!(config.log_keep, 7);
    }

    #[test]
    fn bad_top_level_values_point_at_the_value() {
        // The value of KEY starts at line 3, column len(KEY) + 7.
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "listen",
                "\"localhost:7070\"",
                &[
                    "3:13: listen: must be an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\" (host names are not accepted), found 'localhost:7070'",
                ],
            ),
            (
                "listen",
                "\"127.0.0.1\"",
                &[
                    "3:13: listen: must be an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\" (host names are not accepted), found '127.0.0.1'",
                ],
            ),
            (
                "listen",
                "7070",
                &["3:13: listen: expected a string, found a number"],
            ),
            (
                "state_file",
                "\"\"",
                &["3:17: state_file: must not be empty"],
            ),
            (
                "state_file",
                "3",
                &["3:17: state_file: expected a string, found a number"],
            ),
            (
                "log_dir",
                "[]",
                &["3:14: log_dir: expected a string, found an array"],
            ),
            (
                "log_dir",
                "\"a\\u0000b\"",
                &["3:14: log_dir: must not contain a NUL character"],
            ),
            (
                "health_interval_ms",
                "99",
                &["3:25: health_interval_ms: must be at least 100, found 99"],
            ),
            (
                "health_interval_ms",
                "86400001",
                &["3:25: health_interval_ms: must be at most 86400000 (one day), found 86400001"],
            ),
            (
                "health_interval_ms",
                "\"3000\"",
                &[
                    "3:25: health_interval_ms: expected an integer, found a string (write 3000 without quotes)",
                ],
            ),
            (
                "health_interval_ms",
                "\"soon\"",
                &["3:25: health_interval_ms: expected an integer, found a string"],
            ),
            (
                "health_interval_ms",
                "1500.5",
                &["3:25: health_interval_ms: must be a whole number, found 1500.5"],
            ),
            (
                "health_interval_ms",
                "-1",
                &["3:25: health_interval_ms: must not be negative, found -1"],
            ),
            (
                "health_interval_ms",
                "-2.5",
                &["3:25: health_interval_ms: must not be negative, found -2.5"],
            ),
            (
                "health_interval_ms",
                "18446744073709551616",
                &["3:25: health_interval_ms: must be at most 86400000 (one day)"],
            ),
            (
                "health_interval_ms",
                "null",
                &["3:25: health_interval_ms: expected an integer, found null"],
            ),
            (
                "health_interval_ms",
                "true",
                &["3:25: health_interval_ms: expected an integer, found a boolean"],
            ),
            (
                "auth_token",
                "\"\"",
                &[
                    "3:17: auth_token: must not be empty (use null for a generated token, or \"none\" to turn auth off)",
                ],
            ),
            (
                "auth_token",
                "\"a b\"",
                &["3:17: auth_token: must not contain spaces or control characters"],
            ),
            (
                "auth_token",
                "5",
                &["3:17: auth_token: expected a string or null, found a number"],
            ),
            (
                "allowed_hosts",
                "\"a.com\"",
                &["3:20: allowed_hosts: expected an array of host names, found a string"],
            ),
            (
                "allowed_hosts",
                "[\"a.com:80\"]",
                &["3:21: allowed_hosts[0]: must be a host name without a port, found 'a.com:80'"],
            ),
            (
                "allowed_hosts",
                "[\"ok\", \"http://a.com\"]",
                &[
                    "3:27: allowed_hosts[1]: is a URL; give only its host name, found 'http://a.com'",
                ],
            ),
            (
                "allowed_hosts",
                "[\"a.com/x\"]",
                &["3:21: allowed_hosts[0]: must be a host name without '/', found 'a.com/x'"],
            ),
            (
                "allowed_hosts",
                "[\"::1\"]",
                &[
                    "3:21: allowed_hosts[0]: write an IPv6 address in brackets, as in the Host header: \"[::1]\"",
                ],
            ),
            (
                "allowed_hosts",
                "[\"[::1]:80\"]",
                &[
                    "3:21: allowed_hosts[0]: must be a bracketed IPv6 address such as \"[::1]\", without a port, found '[::1]:80'",
                ],
            ),
            (
                "allowed_hosts",
                "[\"\"]",
                &[
                    "3:21: allowed_hosts[0]: must be a host name without spaces, such as \"example.com\"",
                ],
            ),
            (
                "allowed_hosts",
                "[1]",
                &["3:21: allowed_hosts[0]: expected a string, found a number"],
            ),
            (
                "on_exit",
                "\"kep\"",
                &["3:14: on_exit: must be \"stop\" or \"keep\", found 'kep'"],
            ),
            (
                "on_exit",
                "true",
                &["3:14: on_exit: expected a string, found a boolean"],
            ),
            (
                "log_max_bytes",
                "4095",
                &["3:20: log_max_bytes: must be at least 4096, found 4095"],
            ),
            (
                "log_max_bytes",
                "1099511627777",
                &[
                    "3:20: log_max_bytes: must be at most 1099511627776 (1 TiB), found 1099511627777",
                ],
            ),
            (
                "log_keep",
                "0",
                &["3:15: log_keep: must be at least 1, found 0"],
            ),
            (
                "log_keep",
                "101",
                &["3:15: log_keep: must be at most 100, found 101"],
            ),
            (
                "max_connections",
                "0",
                &["3:22: max_connections: must be at least 1, found 0"],
            ),
            (
                "max_sse_clients",
                "0",
                &["3:22: max_sse_clients: must be at least 1, found 0"],
            ),
            (
                "max_sse_clients",
                "65537",
                &["3:22: max_sse_clients: must be at most 65536, found 65537"],
            ),
            (
                "adopt_orphans",
                "\"yes\"",
                &["3:20: adopt_orphans: expected true or false, found a string"],
            ),
        ];
        for (key, value, expected) in cases {
            let text = format!("{{\n  \"servers\": [],\n  \"{key}\": {value}\n}}");
            assert_eq!(errors(&text), *expected, "{key}: {value}");
        }
    }

    #[test]
    fn all_problems_are_reported_at_once_in_file_order() {
        // Keys out of alphabetical order, so map order and file order differ.
        let text = r#"{
  "servers": [
    {"id": "web", "command": "run", "ports": [0]}
  ],
  "listen": "nowhere",
  "health_interval_ms": 5
}"#;
        assert_eq!(
            errors(text),
            [
                "3:47: ports[0] in server 'web': must be at least 1, found 0",
                "5:13: listen: must be an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\" (host names are not accepted), found 'nowhere'",
                "6:25: health_interval_ms: must be at least 100, found 5",
            ]
        );
    }

    #[test]
    fn the_root_must_be_an_object_with_servers() {
        assert_eq!(
            errors("[]"),
            ["1:1: the config must be a JSON object, found an array"]
        );
        assert_eq!(
            errors("\n  {}"),
            ["2:3: missing required key 'servers' (an array of server objects; it may be empty)"]
        );
        assert_eq!(
            errors("{\"servers\": {}}"),
            ["1:13: servers: expected an array of server objects, found an object"]
        );
        assert!(parse_ok("{\"servers\": []}").servers.is_empty());
    }

    #[test]
    fn syntax_errors_give_line_and_character_column() {
        let cases = [
            (
                "{\n  \"servers\": [],\n}",
                "3:1: invalid JSON: trailing comma",
            ),
            (
                "{\"servers\": [",
                "1:13: invalid JSON: EOF while parsing a list",
            ),
            ("", "1:0: invalid JSON: EOF while parsing a value"),
            // `é` is two bytes; the column counts it once.
            (
                "{\n  \"é\": [1,, 2]\n}",
                "2:11: invalid JSON: expected value",
            ),
            ("{\"a\" 1}", "1:6: invalid JSON: expected `:`"),
        ];
        for (text, expected) in cases {
            assert_eq!(errors(text), [expected], "{text:?}");
        }
    }

    #[test]
    fn unknown_keys_suggest_or_list() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"servers": [], "lisen": "x"}"#,
                "1:17: unknown key 'lisen'; did you mean 'listen'?",
            ),
            (
                r#"{"servers": [{"id": "web", "command": "x", "prots": [80]}]}"#,
                "1:44: unknown key 'prots' in server 'web'; did you mean 'ports'?",
            ),
            (
                r#"{"servers": [{"id": "web", "command": "x", "Autostart": true}]}"#,
                "1:44: unknown key 'Autostart' in server 'web'; did you mean 'autostart'?",
            ),
            (
                r#"{"servers": [{"id": "web", "command": "x", "xyz": 1}]}"#,
                "1:44: unknown key 'xyz' in server 'web' (allowed keys: id, command, cwd, env, env_file, ports, autostart, restart, max_restarts, backoff_ms, stop_signal, stop_timeout_ms, start_timeout_ms, retry_fatal_ms, depends_on, group, max_memory, health, watch, restart_every, restart_at)",
            ),
            (
                r#"{"servers": [], "zzz": 1}"#,
                "1:17: unknown key 'zzz' (allowed keys: listen, state_file, log_dir, health_interval_ms, auth_token, allowed_hosts, on_exit, log_max_bytes, log_keep, max_connections, max_sse_clients, adopt_orphans, alerts, servers)",
            ),
            (
                r#"{"servers": [], "command": "x"}"#,
                "1:17: unknown key 'command'; 'command' belongs inside a server object in 'servers'",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(errors(text), [*expected], "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_an_error() {
        assert_eq!(
            errors("{\"servers\": [],\n \"log_keep\": 2,\n \"log_keep\": 3}"),
            [
                "3:2: key 'log_keep' appears twice in this object (first at 2:2); only the last one would count"
            ]
        );
    }
}
