//! `tend logs` over several servers (no id, several ids, `@group`): foreman's merged output,
//! each line behind its server's name, padded to the longest and coloured on a terminal.
//! The lines come from `GET /api/logs` (merged by arrival, see `logmerge`) and, with `-f`, from
//! one event stream that follows every log (`/api/events?logs=a,b,…`). Runs on the CLI's main
//! thread; it only prints.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;

use super::http::encode_component;
use super::{Api, emit};
use crate::error::{Context, Error};
use crate::groups::Selector;

/// foreman's palette, in its order: a server keeps its colour for the whole run.
const COLOURS: &[&str] = &[
    "\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[31m", "\x1b[34m",
];

/// The answer of `GET /api/logs`.
#[derive(Deserialize)]
struct Merged {
    ids: Vec<String>,
    lines: Vec<Line>,
}

/// One merged line (`GET /api/logs` and `event: log` alike).
#[derive(Deserialize)]
struct Line {
    id: String,
    line: String,
}

/// Puts `name | ` before each line: padded so the bars align, coloured per server.
struct Prefixes {
    ids: Vec<String>,
    width: usize,
    colour: bool,
}

impl Prefixes {
    fn new(ids: Vec<String>, colour: bool) -> Prefixes {
        let width = ids.iter().map(|id| id.chars().count()).max().unwrap_or(0);
        Prefixes { ids, width, colour }
    }

    /// `None` for a server that is not one of ours (a stream shared with others).
    fn format(&self, line: &Line) -> Option<String> {
        let index = self.ids.iter().position(|id| *id == line.id)?;
        let name = format!("{:<width$} |", line.id, width = self.width);
        Some(if self.colour {
            let sgr = COLOURS[index % COLOURS.len()];
            format!("{sgr}{name}\x1b[0m {}\n", line.line)
        } else {
            format!("{name} {}\n", line.line)
        })
    }
}

fn logs_path(selector: &Selector, lines: usize) -> String {
    let mut path = format!("/api/logs?lines={lines}");
    for group in &selector.groups {
        path.push_str(&format!("&group={}", encode_component(group)));
    }
    for id in &selector.ids {
        path.push_str(&format!("&id={}", encode_component(id)));
    }
    path
}

/// The event stream of the logs `selector` names (every server's when it names none).
fn stream_path(selector: &Selector) -> String {
    if selector.is_empty() {
        return "/api/events?logs=*".to_string();
    }
    let mut query = Vec::new();
    for group in &selector.groups {
        query.push(format!("group={}", encode_component(group)));
    }
    for id in &selector.ids {
        query.push(format!("logs={}", encode_component(id)));
    }
    format!("/api/events?{}", query.join("&"))
}

/// Prints the merged tail, and with `follow` every new line until interrupted (a lost stream
/// is reopened as `tend logs -f ID` does; a refusal ends it).
pub(super) fn run(
    api: &Api,
    selector: &Selector,
    lines: usize,
    follow: bool,
    out: &mut dyn Write,
    retry: Duration,
    colour: bool,
) -> Result<(), Error> {
    if !follow {
        let merged: Merged = api.call_json("GET", &logs_path(selector, lines), None)?;
        let prefixes = Prefixes::new(merged.ids, colour);
        return print_lines(&prefixes, &merged.lines, out);
    }
    // Subscribe before reading the tail, so no line falls between the two (one may come
    // twice, the lesser harm). Groups go by name, so the URL stays short whatever their size.
    let stream_path = stream_path(selector);
    let stream = api.open_event_stream(&stream_path, None)?;
    let tail: Merged = api.call_json("GET", &logs_path(selector, lines), None)?;
    let prefixes = Prefixes::new(tail.ids, colour);
    print_lines(&prefixes, &tail.lines, out)?;
    api.follow_stream(&stream_path, stream, "log stream", retry, |event| {
        if event.event != "log" {
            return Ok(());
        }
        let Ok(line) = serde_json::from_slice::<Line>(event.data.as_bytes()) else {
            return Ok(());
        };
        if let Some(text) = prefixes.format(&line) {
            emit(out, &text)?;
            out.flush().context("writing to stdout")?;
        }
        Ok(())
    })
}

fn print_lines(prefixes: &Prefixes, lines: &[Line], out: &mut dyn Write) -> Result<(), Error> {
    for line in lines {
        if let Some(text) = prefixes.format(line) {
            emit(out, &text)?;
        }
    }
    out.flush().context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, text: &str) -> Line {
        Line {
            id: id.into(),
            line: text.into(),
        }
    }

    #[test]
    fn prefixes_are_padded_and_coloured_only_when_asked() {
        let ids = vec!["db".to_string(), "worker".to_string()];
        let plain = Prefixes::new(ids.clone(), false);
        assert_eq!(
            plain.format(&line("db", "ready")).unwrap(),
            "db     | ready\n"
        );
        assert_eq!(plain.format(&line("worker", "x")).unwrap(), "worker | x\n");
        assert!(plain.format(&line("other", "x")).is_none());
        let coloured = Prefixes::new(ids, true);
        assert_eq!(
            coloured.format(&line("worker", "x")).unwrap(),
            "\x1b[33mworker |\x1b[0m x\n"
        );
    }

    #[test]
    fn the_tail_path_names_groups_and_ids() {
        let selector = Selector {
            groups: vec!["backend".into()],
            ids: vec!["web".into()],
        };
        assert_eq!(
            logs_path(&selector, 5),
            "/api/logs?lines=5&group=backend&id=web"
        );
        assert_eq!(logs_path(&Selector::default(), 0), "/api/logs?lines=0");
        assert_eq!(stream_path(&selector), "/api/events?group=backend&logs=web");
        assert_eq!(stream_path(&Selector::default()), "/api/events?logs=*");
    }
}
