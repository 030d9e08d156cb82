//! A server's `watch`, `restart_every` and `restart_at` keys (docs/DESIGN.md §12): restarts
//! tend plans itself, on a file change or on a clock. What they mean at run time lives in
//! [`crate::watch`] and [`crate::schedule`]; this file only reads and checks them.

use std::time::Duration;

use serde_json::Value;

use super::check::{Checker, Field, quoted};
use super::positions::{Pos, child_path};
use super::suggest::closest;
use crate::schedule::{self, Cron};

/// A server's `watch` key: what to watch, relative to the server's `cwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// Files, folders (watched with everything below them) or globs (`*`, `?`, and `**` for
    /// any number of folders).
    pub paths: Vec<String>,
    /// Names (`node_modules`, `*.tmp`: any file or folder so named, at any depth) or paths
    /// with a `/` (`build/out`: from the cwd).
    pub ignore: Vec<String>,
    /// Quiet time after the last change of a burst before the restart.
    pub debounce: Duration,
}

const WATCH_KEYS: &[&str] = &["paths", "ignore", "debounce_ms"];

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);
/// A debounce longer than this makes a save look ignored.
const MAX_DEBOUNCE_MS: u64 = 60_000;

/// The shortest `restart_every`: shorter is a crash loop by design.
const MIN_EVERY: Duration = Duration::from_secs(1);
const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

impl Checker<'_> {
    /// `watch`: `{"paths": […], "ignore": […], "debounce_ms": 300}`, or `true` for the whole
    /// cwd; `false` or `null` for none.
    pub(super) fn watch(&mut self, field: &Field, value: &Value) -> Option<WatchSpec> {
        let object = match value {
            Value::Null | Value::Bool(false) => return None,
            Value::Bool(true) => {
                return Some(WatchSpec {
                    paths: vec![".".to_string()],
                    ignore: Vec::new(),
                    debounce: DEFAULT_DEBOUNCE,
                });
            }
            Value::Object(object) => object,
            other => {
                return self.wrong_type(
                    field,
                    "an object such as {\"paths\": [\"src\"]}, or true",
                    other,
                );
            }
        };
        let sub = |key: &str| Field {
            path: child_path(&field.path, key),
            name: format!("{}.{key}", field.name),
            place: field.place.clone(),
        };
        for key in object.keys() {
            if !WATCH_KEYS.contains(&key.as_str()) {
                let mut message = format!(
                    "unknown key {} in {}{}",
                    quoted(key),
                    field.name,
                    field.place
                );
                match closest(key, WATCH_KEYS.iter().copied()) {
                    Some(near) => message.push_str(&format!("; did you mean '{near}'?")),
                    None => {
                        message.push_str(&format!(" (allowed keys: {})", WATCH_KEYS.join(", ")))
                    }
                }
                let at = self.key_at(&child_path(&field.path, key));
                self.fail(at, message);
            }
        }
        let paths = match object.get("paths") {
            Some(value) => self.patterns(&sub("paths"), value)?,
            None => {
                let at = self.value_at(&field.path);
                self.fail(
                    at,
                    format!("{}: missing required key 'paths'", field.label()),
                );
                return None;
            }
        };
        if paths.is_empty() {
            self.fail_field(&sub("paths"), "must name at least one file, folder or glob");
            return None;
        }
        let ignore = match object.get("ignore") {
            Some(value) => self.patterns(&sub("ignore"), value)?,
            None => Vec::new(),
        };
        let debounce = match object.get("debounce_ms") {
            Some(value) => Duration::from_millis(self.integer(
                &sub("debounce_ms"),
                value,
                10,
                MAX_DEBOUNCE_MS,
            )?),
            None => DEFAULT_DEBOUNCE,
        };
        Some(WatchSpec {
            paths,
            ignore,
            debounce,
        })
    }

    fn patterns(&mut self, field: &Field, value: &Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            return self.wrong_type(field, "an array of strings", value);
        };
        let mut patterns = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = field.index(i);
            match self.string(&f, item) {
                Some("") => {
                    self.fail_field(&f, "must not be empty");
                    ok = false;
                }
                Some(text) => patterns.push(text.to_string()),
                None => ok = false,
            }
        }
        ok.then_some(patterns)
    }

    /// `restart_every`: a duration such as "24h" or "1h30m".
    pub(super) fn restart_every(&mut self, field: &Field, value: &Value) -> Option<Duration> {
        let text = match value {
            Value::Null => return None,
            Value::String(text) => text,
            other => return self.wrong_type(field, "a duration such as \"24h\" or \"30m\"", other),
        };
        let every = match schedule::parse_every(text) {
            Ok(every) => every,
            Err(problem) => {
                self.fail_field(field, format!("{problem}, found {}", quoted(text)));
                return None;
            }
        };
        if every < MIN_EVERY {
            self.fail_field(
                field,
                format!("must be at least 1s, found {}", quoted(text)),
            );
            return None;
        }
        if every > MAX_EVERY {
            self.fail_field(field, "must be at most 366d");
            return None;
        }
        Some(every)
    }

    /// `restart_at`: a five-field cron expression in local time. A problem is reported at the
    /// character it is about.
    pub(super) fn restart_at(&mut self, field: &Field, value: &Value) -> Option<Cron> {
        let text = match value {
            Value::Null => return None,
            Value::String(text) => text,
            other => {
                return self.wrong_type(field, "a cron expression such as \"0 4 * * *\"", other);
            }
        };
        match Cron::parse(text) {
            Ok(cron) => Some(cron),
            Err(error) => {
                let at = self.value_at(&field.path);
                // Past the opening quote; exact unless the string has escapes before the spot.
                let at = Pos {
                    line: at.line,
                    column: at.column + 1 + error.offset,
                };
                self.fail(
                    at,
                    format!("{}: {}, in {}", field.label(), error.message, quoted(text)),
                );
                None
            }
        }
    }
}
