//! The checker's half for the `servers` array: each server's keys, then the checks across
//! servers (unique ids, ports claimed twice, dependencies that exist and form no cycle).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;

use super::check::{Checker, DAY_MS, Field, kind, quoted};
use super::cycles::find_cycles;
use super::positions::{Pos, child_path};
use super::suggest::closest;
use super::{CommandSpec, RestartPolicy, ServerConfig};
use crate::model::parse_signal;

pub(super) const SERVER_KEYS: &[&str] = &[
    "id",
    "command",
    "cwd",
    "env",
    "env_file",
    "ports",
    "autostart",
    "restart",
    "max_restarts",
    "backoff_ms",
    "stop_signal",
    "stop_timeout_ms",
    "start_timeout_ms",
    "retry_fatal_ms",
    "depends_on",
    "group",
    "max_memory",
    "health",
    "watch",
    "restart_every",
    "restart_at",
];

/// A server as far as it could be read, kept for the checks across servers.
struct Draft {
    config: ServerConfig,
    at: Pos,
    /// Where each `depends_on` entry is written, beside `config.depends_on`: a bad entry is
    /// reported at itself, not at its server (issue 10).
    depends_at: Vec<Pos>,
    /// "server 'web'", or "servers[2]" when the id is missing or unusable.
    name: String,
    has_valid_id: bool,
}

pub(super) fn is_valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

impl Checker<'_> {
    pub(super) fn servers(&mut self, field: &Field, value: &Value) -> Vec<ServerConfig> {
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of server objects", value);
            return Vec::new();
        };
        let drafts: Vec<Draft> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.server(&field.index(i), item))
            .collect();
        self.check_ids(&drafts);
        self.check_ports(&drafts);
        self.check_dependencies(&drafts);
        drafts.into_iter().map(|draft| draft.config).collect()
    }

    fn server(&mut self, field: &Field, value: &Value) -> Option<Draft> {
        let at = self.value_at(&field.path);
        let Value::Object(object) = value else {
            return self.wrong_type(field, "a server object", value);
        };
        let (name, has_valid_id) = match object.get("id") {
            Some(Value::String(id)) if is_valid_id(id) => (format!("server '{id}'"), true),
            _ => (field.name.clone(), false),
        };
        let place = format!(" in {name}");
        let mut config = ServerConfig::defaults(
            "",
            CommandSpec::Shell(String::new()),
            self.base_dir,
            at.line,
        );
        let mut depends_at = Vec::new();
        let mut health = None;
        for (key, value) in object {
            let f = Field::new(&field.path, key, &place);
            match key.as_str() {
                "id" => {
                    if let Some(id) = self.string(&f, value) {
                        if is_valid_id(id) {
                            config.id = id.to_string();
                        } else {
                            // An id problem concerns the whole server (docs/DESIGN.md §2).
                            self.fail(
                                at,
                                format!(
                                    "{}: {} is not a valid id (use 1 to 64 letters, digits, \
                                     '.', '_' or '-', starting with a letter or digit)",
                                    f.label(),
                                    quoted(id)
                                ),
                            );
                        }
                    }
                }
                "command" => {
                    if let Some(command) = self.command(&f, value) {
                        config.command = command;
                    }
                }
                "cwd" => {
                    if let Some(cwd) = self.path(&f, value) {
                        config.cwd = cwd;
                    }
                }
                "env" => config.env = self.env(&f, value),
                "env_file" => {
                    if !value.is_null() {
                        config.env_file = self.path(&f, value);
                    }
                }
                "ports" => config.ports = self.ports(&f, value),
                "autostart" => {
                    if let Some(autostart) = self.boolean(&f, value) {
                        config.autostart = autostart;
                    }
                }
                "restart" => match self.choice(&f, value, &["no", "on-failure", "always"]) {
                    Some("no") => config.restart = RestartPolicy::No,
                    Some("always") => config.restart = RestartPolicy::Always,
                    Some(_) => config.restart = RestartPolicy::OnFailure,
                    None => {}
                },
                "max_restarts" => {
                    if let Some(n) = self.integer(&f, value, 0, u64::from(u32::MAX)) {
                        config.max_restarts = n as u32;
                    }
                }
                "backoff_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.backoff = Duration::from_millis(ms);
                    }
                }
                "stop_signal" => {
                    if let Some(signal) = self.signal(&f, value) {
                        config.stop_signal = signal;
                    }
                }
                "stop_timeout_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.stop_timeout = Duration::from_millis(ms);
                    }
                }
                "start_timeout_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.start_timeout = Duration::from_millis(ms);
                    }
                }
                "retry_fatal_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.retry_fatal = (ms > 0).then(|| Duration::from_millis(ms));
                    }
                }
                "depends_on" => {
                    (config.depends_on, depends_at) = self.depends_on(&f, value).into_iter().unzip()
                }
                "group" => config.group = self.group(&f, value),
                "max_memory" => config.max_memory = self.max_memory(&f, value),
                // Read once the ports are known: a path is probed on the first one.
                "health" => health = Some((f, value)),
                "watch" => config.watch = self.watch(&f, value),
                "restart_every" => config.restart_every = self.restart_every(&f, value),
                "restart_at" => config.restart_at = self.restart_at(&f, value),
                _ => self.unknown_key(&f.path, key, &place, SERVER_KEYS),
            }
        }
        if let Some((f, value)) = health {
            config.health = self.health(&f, value, &config.ports);
        }
        for required in ["id", "command"] {
            if !object.contains_key(required) {
                self.fail(at, format!("{name}: missing required key '{required}'"));
            }
        }
        Some(Draft {
            config,
            at,
            depends_at,
            name,
            has_valid_id,
        })
    }

    pub(super) fn command(&mut self, field: &Field, value: &Value) -> Option<CommandSpec> {
        let items = match value {
            Value::String(_) => {
                let line = self.string(field, value)?;
                if line.trim().is_empty() {
                    self.fail_field(field, "must not be empty");
                    return None;
                }
                return Some(CommandSpec::Shell(line.to_string()));
            }
            Value::Array(items) => items,
            other => return self.wrong_type(field, "a string or an array of strings", other),
        };
        if items.is_empty() {
            self.fail_field(
                field,
                "must not be an empty array (give at least the program)",
            );
            return None;
        }
        let mut argv = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            match self.string(&entry, item) {
                Some("") if i == 0 => self.fail_field(&entry, "the program must not be empty"),
                Some(arg) => argv.push(arg.to_string()),
                None => {}
            }
        }
        (argv.len() == items.len()).then_some(CommandSpec::Exec(argv))
    }

    fn env(&mut self, field: &Field, value: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Value::Object(object) = value else {
            self.wrong_type::<()>(field, "an object of names to strings", value);
            return env;
        };
        for (name, value) in object {
            let entry = Field {
                path: child_path(&field.path, name),
                name: format!("{}.{name}", field.name),
                place: field.place.clone(),
            };
            if !is_env_name(name) {
                let at = self.key_at(&entry.path);
                self.fail(
                    at,
                    format!(
                        "{}: {} is not a valid variable name (it must be non-empty, without \
                         '=' or NUL)",
                        field.label(),
                        quoted(name)
                    ),
                );
                continue;
            }
            match value {
                Value::Number(_) | Value::Bool(_) => self.fail_field(
                    &entry,
                    format!(
                        "expected a string, found {} (write \"{value}\")",
                        kind(value)
                    ),
                ),
                _ => {
                    if let Some(text) = self.string(&entry, value) {
                        env.insert(name.clone(), text.to_string());
                    }
                }
            }
        }
        env
    }

    fn ports(&mut self, field: &Field, value: &Value) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::new();
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of port numbers", value);
            return ports;
        };
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(port) = self.integer(&entry, item, 1, 65535) else {
                continue;
            };
            let port = port as u16;
            if ports.contains(&port) {
                self.fail_field(&entry, format!("port {port} is listed twice"));
            } else {
                ports.push(port);
            }
        }
        ports
    }

    fn signal(&mut self, field: &Field, value: &Value) -> Option<i32> {
        let text = match value {
            Value::Number(_) => self.integer(field, value, 1, 64)?.to_string(),
            Value::String(name) => name.clone(),
            other => return self.wrong_type(field, "a signal name or number", other),
        };
        let signal = parse_signal(&text);
        if signal.is_none() {
            self.fail_field(
                field,
                format!(
                    "unknown signal {} (use a name such as \"SIGTERM\" or \"TERM\", or a \
                     number from 1 to 64)",
                    quoted(&text)
                ),
            );
        }
        signal
    }

    /// A group name: the same rule as ids, so `@name` on a command line and `group=name` in a
    /// URL never need quoting.
    fn group(&mut self, field: &Field, value: &Value) -> Option<String> {
        let name = self.string(field, value)?;
        if is_valid_id(name) {
            return Some(name.to_string());
        }
        self.fail_field(
            field,
            format!(
                "{} is not a valid group name (use 1 to 64 letters, digits, '.', '_' or '-', \
                 starting with a letter or digit)",
                quoted(name)
            ),
        );
        None
    }

    /// The ids of `depends_on`, each with where it is written.
    fn depends_on(&mut self, field: &Field, value: &Value) -> Vec<(String, Pos)> {
        let mut ids: Vec<(String, Pos)> = Vec::new();
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of server ids", value);
            return ids;
        };
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(id) = self.string(&entry, item) else {
                continue;
            };
            if ids.iter().any(|(known, _)| known == id) {
                self.fail_field(&entry, format!("{} is listed twice", quoted(id)));
            } else {
                ids.push((id.to_string(), self.value_at(&entry.path)));
            }
        }
        ids
    }

    fn check_ids(&mut self, drafts: &[Draft]) {
        let mut first: HashMap<&str, &Draft> = HashMap::new();
        for draft in drafts.iter().filter(|d| d.has_valid_id) {
            if let Some(earlier) = first.get(draft.config.id.as_str()) {
                let message = format!(
                    "duplicate id '{}': servers on lines {} and {} both use it",
                    draft.config.id, earlier.at.line, draft.at.line
                );
                self.fail(draft.at, message);
            } else {
                first.insert(&draft.config.id, draft);
            }
        }
    }

    fn check_ports(&mut self, drafts: &[Draft]) {
        let mut owners: HashMap<u16, &Draft> = HashMap::new();
        for draft in drafts {
            for &port in &draft.config.ports {
                if let Some(owner) = owners.get(&port) {
                    let message = format!(
                        "port {port} is claimed by {} (line {}) and {} (line {})",
                        owner.name, owner.at.line, draft.name, draft.at.line
                    );
                    self.fail(draft.at, message);
                } else {
                    owners.insert(port, draft);
                }
            }
        }
    }

    fn check_dependencies(&mut self, drafts: &[Draft]) {
        // The first server with an id is the node; a later duplicate is already an error.
        let mut node_of: HashMap<&str, usize> = HashMap::new();
        for (i, draft) in drafts.iter().enumerate().filter(|(_, d)| d.has_valid_id) {
            node_of.entry(draft.config.id.as_str()).or_insert(i);
        }
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
        for (i, draft) in drafts.iter().enumerate() {
            for (dep, &at) in draft.config.depends_on.iter().zip(&draft.depends_at) {
                if draft.has_valid_id && *dep == draft.config.id {
                    self.fail(at, format!("{} depends on itself", draft.name));
                } else if let Some(&target) = node_of.get(dep.as_str()) {
                    if node_of.get(draft.config.id.as_str()) == Some(&i) {
                        edges[i].push(target);
                    }
                } else {
                    let mut message = format!(
                        "{} depends on {}, which is not a server in this file",
                        draft.name,
                        quoted(dep)
                    );
                    if let Some(near) = closest(dep, node_of.keys().copied()) {
                        message.push_str(&format!("; did you mean '{near}'?"));
                    }
                    self.fail(at, message);
                }
            }
        }
        for cycle in find_cycles(&edges) {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| drafts[i].config.id.as_str())
                .collect();
            let lines: Vec<String> = cycle
                .iter()
                .map(|&i| drafts[i].at.line.to_string())
                .collect();
            let message = format!(
                "dependency cycle: {} -> {} (servers on lines {})",
                names.join(" -> "),
                names[0],
                lines.join(", ")
            );
            // At the entry that leads into the cycle from its first server.
            let first = &drafts[cycle[0]];
            let next = names[1 % names.len()];
            let at = first
                .config
                .depends_on
                .iter()
                .position(|dep| dep == next)
                .map_or(first.at, |k| first.depends_at[k]);
            self.fail(at, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::CommandSpec;
    use crate::config::check::tests::{errors, parse_ok};

    #[test]
    fn group_is_optional_and_kept_per_server() {
        let config = parse_ok(
            r#"{"servers": [{"id": "a", "command": "run", "group": "backend"},
                            {"id": "b", "command": "run"}]}"#,
        );
        assert_eq!(config.servers[0].group.as_deref(), Some("backend"));
        assert_eq!(config.servers[1].group, None);
    }

    #[test]
    fn signals_by_name_or_number() {
        let cases = [
            ("\"SIGTERM\"", libc::SIGTERM),
            ("\"TERM\"", libc::SIGTERM),
            ("\"sighup\"", libc::SIGHUP),
            ("\"9\"", libc::SIGKILL),
            ("10", 10),
        ];
        for (value, expected) in cases {
            let text = format!(
                "{{\"servers\": [{{\"id\": \"a\", \"command\": \"x\", \"stop_signal\": {value}}}]}}"
            );
            assert_eq!(parse_ok(&text).servers[0].stop_signal, expected, "{value}");
        }
    }

    #[test]
    fn bad_server_values_point_at_the_value() {
        // The value of KEY starts at line 6, column len(KEY) + 11; the server's `{` is at 3:5.
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "cwd",
                "\"\"",
                &["6:14: cwd in server 'web': must not be empty"],
            ),
            (
                "cwd",
                "1",
                &["6:14: cwd in server 'web': expected a string, found a number"],
            ),
            (
                "env",
                "[]",
                &[
                    "6:14: env in server 'web': expected an object of names to strings, found an array",
                ],
            ),
            (
                "env",
                "{\"A=B\": \"x\"}",
                &[
                    "6:15: env in server 'web': 'A=B' is not a valid variable name (it must be non-empty, without '=' or NUL)",
                ],
            ),
            (
                "env",
                "{\"\": \"x\"}",
                &[
                    "6:15: env in server 'web': '' is not a valid variable name (it must be non-empty, without '=' or NUL)",
                ],
            ),
            (
                "env",
                "{\"N\": 1}",
                &["6:20: env.N in server 'web': expected a string, found a number (write \"1\")"],
            ),
            (
                "env",
                "{\"N\": null}",
                &["6:20: env.N in server 'web': expected a string, found null"],
            ),
            (
                "env_file",
                "1",
                &["6:19: env_file in server 'web': expected a string, found a number"],
            ),
            (
                "env_file",
                "\"\"",
                &["6:19: env_file in server 'web': must not be empty"],
            ),
            (
                "ports",
                "\"80\"",
                &["6:16: ports in server 'web': expected an array of port numbers, found a string"],
            ),
            (
                "ports",
                "[0]",
                &["6:17: ports[0] in server 'web': must be at least 1, found 0"],
            ),
            (
                "ports",
                "[65536]",
                &["6:17: ports[0] in server 'web': must be at most 65535, found 65536"],
            ),
            (
                "ports",
                "[80, 80]",
                &["6:21: ports[1] in server 'web': port 80 is listed twice"],
            ),
            (
                "ports",
                "[80.5]",
                &["6:17: ports[0] in server 'web': must be a whole number, found 80.5"],
            ),
            (
                "autostart",
                "\"yes\"",
                &["6:20: autostart in server 'web': expected true or false, found a string"],
            ),
            (
                "restart",
                "\"sometimes\"",
                &[
                    "6:18: restart in server 'web': must be \"no\", \"on-failure\" or \"always\", found 'sometimes'",
                ],
            ),
            (
                "max_restarts",
                "-1",
                &["6:23: max_restarts in server 'web': must not be negative, found -1"],
            ),
            (
                "max_restarts",
                "4294967296",
                &[
                    "6:23: max_restarts in server 'web': must be at most 4294967295, found 4294967296",
                ],
            ),
            (
                "backoff_ms",
                "86400001",
                &[
                    "6:21: backoff_ms in server 'web': must be at most 86400000 (one day), found 86400001",
                ],
            ),
            (
                "backoff_ms",
                "\"500\"",
                &[
                    "6:21: backoff_ms in server 'web': expected an integer, found a string (write 500 without quotes)",
                ],
            ),
            (
                "stop_signal",
                "\"SIGFOO\"",
                &[
                    "6:22: stop_signal in server 'web': unknown signal 'SIGFOO' (use a name such as \"SIGTERM\" or \"TERM\", or a number from 1 to 64)",
                ],
            ),
            (
                "stop_signal",
                "0",
                &["6:22: stop_signal in server 'web': must be at least 1, found 0"],
            ),
            (
                "stop_signal",
                "65",
                &["6:22: stop_signal in server 'web': must be at most 64, found 65"],
            ),
            (
                "stop_signal",
                "true",
                &[
                    "6:22: stop_signal in server 'web': expected a signal name or number, found a boolean",
                ],
            ),
            (
                "stop_timeout_ms",
                "-5",
                &["6:26: stop_timeout_ms in server 'web': must not be negative, found -5"],
            ),
            (
                "start_timeout_ms",
                "1.5",
                &["6:27: start_timeout_ms in server 'web': must be a whole number, found 1.5"],
            ),
            (
                "retry_fatal_ms",
                "86400001",
                &[
                    "6:25: retry_fatal_ms in server 'web': must be at most 86400000 (one day), found 86400001",
                ],
            ),
            (
                "depends_on",
                "\"db\"",
                &[
                    "6:21: depends_on in server 'web': expected an array of server ids, found a string",
                ],
            ),
            (
                "depends_on",
                "[1]",
                &["6:22: depends_on[0] in server 'web': expected a string, found a number"],
            ),
            (
                "group",
                "\"back end\"",
                &[
                    "6:16: group in server 'web': 'back end' is not a valid group name (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)",
                ],
            ),
            (
                "group",
                "[\"backend\"]",
                &["6:16: group in server 'web': expected a string, found an array"],
            ),
            (
                "depends_on",
                "[\"x\", \"x\"]",
                &[
                    "6:22: server 'web' depends on 'x', which is not a server in this file",
                    "6:27: depends_on[1] in server 'web': 'x' is listed twice",
                ],
            ),
        ];
        for (key, value, expected) in cases {
            let text = format!(
                "{{\n  \"servers\": [\n    {{\n      \"id\": \"web\",\n      \"command\": \"run\",\n      \"{key}\": {value}\n    }}\n  ]\n}}"
            );
            assert_eq!(errors(&text), *expected, "{key}: {value}");
        }
    }

    #[test]
    fn bad_ids_and_commands() {
        let long_id = "a".repeat(65);
        let max_id = "a".repeat(64);
        // The server object opens at 1:14 in every case.
        let cases: Vec<(String, Vec<String>)> = vec![
            (r#"{"command": "x"}"#.into(), vec!["1:14: servers[0]: missing required key 'id'".into()]),
            (r#"{"id": "a"}"#.into(), vec!["1:14: server 'a': missing required key 'command'".into()]),
            (r#"{"id": 5, "command": "x"}"#.into(), vec![
                "1:21: id in servers[0]: expected a string, found a number".into(),
            ]),
            (r#"{"id": "my web", "command": "x"}"#.into(), vec![
                "1:14: id in servers[0]: 'my web' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)".into(),
            ]),
            (r#"{"id": "-a", "command": "x"}"#.into(), vec![
                "1:14: id in servers[0]: '-a' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)".into(),
            ]),
            (r#"{"id": "", "command": "x"}"#.into(), vec![
                "1:14: id in servers[0]: '' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)".into(),
            ]),
            (format!(r#"{{"id": "{long_id}", "command": "x"}}"#), vec![format!(
                "1:14: id in servers[0]: '{long_id}' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)"
            )]),
            (r#"{"id": "a", "command": ""}"#.into(), vec!["1:37: command in server 'a': must not be empty".into()]),
            (r#"{"id": "a", "command": "  "}"#.into(), vec!["1:37: command in server 'a': must not be empty".into()]),
            (r#"{"id": "a", "command": []}"#.into(), vec![
                "1:37: command in server 'a': must not be an empty array (give at least the program)".into(),
            ]),
            (r#"{"id": "a", "command": ["", "x"]}"#.into(), vec![
                "1:38: command[0] in server 'a': the program must not be empty".into(),
            ]),
            (r#"{"id": "a", "command": ["x", 1]}"#.into(), vec![
                "1:43: command[1] in server 'a': expected a string, found a number".into(),
            ]),
            (r#"{"id": "a", "command": {}}"#.into(), vec![
                "1:37: command in server 'a': expected a string or an array of strings, found an object".into(),
            ]),
            (r#"5"#.into(), vec!["1:14: servers[0]: expected a server object, found a number".into()]),
        ];
        for (server, expected) in cases {
            let text = format!(r#"{{"servers": [{server}]}}"#);
            assert_eq!(errors(&text), expected, "{server}");
        }
        let ok = parse_ok(&format!(
            r#"{{"servers": [{{"id": "{max_id}", "command": "x"}}]}}"#
        ));
        assert_eq!(ok.servers[0].id, max_id);
        // An empty argument after the program is legitimate.
        let ok = parse_ok(r#"{"servers": [{"id": "a", "command": ["x", ""]}]}"#);
        assert_eq!(
            ok.servers[0].command,
            CommandSpec::Exec(vec!["x".into(), String::new()])
        );
    }

    #[test]
    fn duplicate_ids_name_both_lines() {
        let text = r#"{"servers": [
  {"id": "web", "command": "a"},
  {"id": "db", "command": "b"},
    {"id": "web", "command": "c"}
]}"#;
        assert_eq!(
            errors(text),
            ["4:5: duplicate id 'web': servers on lines 2 and 4 both use it"]
        );
    }

    #[test]
    fn dependency_problems_point_at_the_entry() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"{"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["a"]}"#,
                &["2:46: dependency cycle: a -> b -> a (servers on lines 2, 3)"],
            ),
            (
                // The cycle is named from the server that comes first in the file.
                r#"{"id": "c", "command": "x", "depends_on": ["a"]},
  {"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["c"]}"#,
                &["2:46: dependency cycle: c -> a -> b -> c (servers on lines 2, 3, 4)"],
            ),
            (
                // Entered from outside at `b`, still named from `a`, the first in the file.
                r#"{"id": "x", "command": "x", "depends_on": ["b"]},
  {"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["a"]}"#,
                &["3:46: dependency cycle: a -> b -> a (servers on lines 3, 4)"],
            ),
            (
                // Without an id there is no "itself" to depend on.
                r#"{"command": "x", "depends_on": [""]}"#,
                &[
                    "2:3: servers[0]: missing required key 'id'",
                    "2:35: servers[0] depends on '', which is not a server in this file",
                ],
            ),
            (
                r#"{"id": "a", "command": "x", "depends_on": ["a"]}"#,
                &["2:46: server 'a' depends on itself"],
            ),
            (
                r#"{"id": "db", "command": "x"},
  {"id": "web", "command": "x", "depends_on": ["dbb"]}"#,
                &[
                    "3:48: server 'web' depends on 'dbb', which is not a server in this file; did you mean 'db'?",
                ],
            ),
            (
                r#"{"id": "web", "command": "x", "depends_on": ["cache"]}"#,
                &["2:48: server 'web' depends on 'cache', which is not a server in this file"],
            ),
            (
                // Two cycles sharing a server are both named.
                r#"{"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["a", "c"]},
  {"id": "c", "command": "x", "depends_on": ["b"]}"#,
                &[
                    "2:46: dependency cycle: a -> b -> a (servers on lines 2, 3)",
                    "3:51: dependency cycle: b -> c -> b (servers on lines 3, 4)",
                ],
            ),
        ];
        for (servers, expected) in cases {
            let text = format!("{{\"servers\": [\n  {servers}\n]}}");
            assert_eq!(errors(&text), *expected, "{servers}");
        }
    }

    #[test]
    fn a_dependency_diamond_is_not_a_cycle() {
        let config = parse_ok(
            r#"{"servers": [
  {"id": "app", "command": "x", "depends_on": ["api", "worker"]},
  {"id": "api", "command": "x", "depends_on": ["db"]},
  {"id": "worker", "command": "x", "depends_on": ["db"]},
  {"id": "db", "command": "x"}
]}"#,
        );
        assert_eq!(config.servers[0].depends_on, ["api", "worker"]);
    }

    #[test]
    fn a_port_claimed_twice_names_both_servers() {
        let text = r#"{"servers": [
  {"id": "web", "command": "a", "ports": [8000, 8001]},
  {"id": "api", "command": "b", "ports": [9000, 8001]}
]}"#;
        assert_eq!(
            errors(text),
            ["3:3: port 8001 is claimed by server 'web' (line 2) and server 'api' (line 3)"]
        );
    }

    #[test]
    fn server_line_is_the_line_of_its_brace() {
        let config = parse_ok(
            "{\"servers\": [\n\n  {\"id\": \"a\", \"command\": \"x\"},\n  {\n    \"id\": \"b\", \"command\": \"x\"}]}",
        );
        let lines: Vec<usize> = config.servers.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 4]);
    }
}
