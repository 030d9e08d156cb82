//! Server-Sent Events, the client half of docs/DESIGN.md §5: lines in, dispatched events out,
//! as the HTML standard's parsing rules say.
//!
//! The only SSE parser in the binary. tests/it/support.rs reads streams its own way on purpose
//! (besides being another crate): it reports each frame as sent, with that frame's own id and
//! even without data, where a client per the standard keeps the last id and drops empty events.

use std::time::Duration;

/// One dispatched event: its name (`message` when unnamed), its data, and the last id seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// A line-at-a-time parser of an event stream, as the HTML standard's "interpreting an event
/// stream" says: fields `event`, `data`, `id`, `retry`; `:` comments; a blank line dispatches.
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds one line (its `\n` or `\r\n` may be left on); returns an event on a blank line
    /// that ends one with data.
    pub fn feed_line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // The standard ignores an id with NUL in it.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    /// The id to send as `Last-Event-ID` when reconnecting.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnect delay the server asked for.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parser: &mut SseParser, text: &str) -> Vec<SseEvent> {
        text.split_inclusive('\n')
            .filter_map(|line| parser.feed_line(line))
            .collect()
    }

    fn event(name: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: name.into(),
            data: data.into(),
            id: id.map(String::from),
        }
    }

    #[test]
    fn sse_frames_are_parsed_as_the_standard_says() {
        let mut parser = SseParser::new();
        let stream = "retry: 2000\n\n\
                      : heartbeat\n\n\
                      id: 1\nevent: servers\ndata: [1,\ndata: 2]\n\n\
                      data:no space\r\n\r\n\
                      id: 7\nevent: log\ndata: {\"id\":\"web\"}\n\n\
                      event: ignored-without-data\n\n\
                      data\n\n\
                      unknown: field\ndata:  two spaces\n\n";
        assert_eq!(
            feed(&mut parser, stream),
            vec![
                event("servers", "[1,\n2]", Some("1")),
                event("message", "no space", Some("1")),
                event("log", "{\"id\":\"web\"}", Some("7")),
                event("message", "", Some("7")),
                event("message", " two spaces", Some("7")),
            ]
        );
        assert_eq!(parser.retry(), Some(Duration::from_millis(2000)));
        assert_eq!(parser.last_id(), Some("7"));
    }

    #[test]
    fn an_unfinished_sse_frame_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(feed(&mut parser, "event: log\ndata: half\n").is_empty());
        assert_eq!(parser.feed_line("\n"), Some(event("log", "half", None)));
        assert!(feed(&mut parser, "id: a\0b\nretry: soon\n\n").is_empty());
        assert_eq!(parser.last_id(), None);
        assert_eq!(parser.retry(), None);
    }
}
