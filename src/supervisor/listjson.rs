//! The JSON of the server list (`GET /api/servers`, the dashboard's first paint), kept ready in
//! the supervisor. Encoding 100 server objects on every request was most of a list request's
//! CPU (README "Performance"); a server's JSON changes only when the server does (which the
//! supervisor marks for its `server` events) and when a health round brings new CPU and memory
//! figures, so each server's bytes are encoded once per change and a request joins them. The
//! one figure that changes every millisecond, `uptimeMs`, is written per request between the
//! two halves kept for each server.
//!
//! The bytes are exactly what encoding the views would give: the unit tests compare them, and
//! in debug builds (every test run) each request checks every kept server against a fresh
//! encoding, so a change the supervisor forgot to mark fails the test that made it.

use crate::model::ServerView;

/// The key whose value is written per request. Inside a JSON string every `"` is escaped, so
/// this byte sequence can only be the key itself.
const UPTIME_KEY: &[u8] = b",\"uptimeMs\":";
const NULL: &[u8] = b"null";

/// One server's JSON object, cut around its uptime value.
#[derive(Debug, Clone, PartialEq)]
struct Halves {
    /// From `{` to `"uptimeMs":`.
    head: Vec<u8>,
    /// From the byte after the uptime value to `}`.
    tail: Vec<u8>,
}

impl Halves {
    fn of(view: &ServerView) -> Halves {
        let mut view = view.clone();
        view.uptime_ms = None;
        let json = serde_json::to_vec(&view).expect("a server view serializes");
        let at = json
            .windows(UPTIME_KEY.len() + NULL.len())
            .position(|w| w.starts_with(UPTIME_KEY) && w.ends_with(NULL))
            .expect("a server view has uptimeMs");
        let value_at = at + UPTIME_KEY.len();
        Halves {
            head: json[..value_at].to_vec(),
            tail: json[value_at + NULL.len()..].to_vec(),
        }
    }
}

/// Each server's kept JSON, by its position in the list (a `ServerIndex`'s number: the JSON
/// array is in server order, so a plain `usize` here is honest).
#[derive(Debug, Default)]
pub struct ListJson {
    kept: Vec<Option<Halves>>,
}

impl ListJson {
    pub fn new(servers: usize) -> ListJson {
        ListJson {
            kept: vec![None; servers],
        }
    }

    /// Server `index` changed: its JSON is encoded again when next asked for.
    pub fn forget(&mut self, index: usize) {
        if let Some(kept) = self.kept.get_mut(index) {
            *kept = None;
        }
    }

    /// The JSON array of `count` servers: `view(index)` gives a server's view (asked only for
    /// servers whose JSON is not kept, and in debug builds for all of them), `uptime_ms(index)`
    /// its uptime now.
    pub fn render(
        &mut self,
        count: usize,
        view: impl Fn(usize) -> ServerView,
        uptime_ms: impl Fn(usize) -> Option<u64>,
    ) -> Vec<u8> {
        if self.kept.len() != count {
            self.kept.resize(count, None);
        }
        let size: usize = self
            .kept
            .iter()
            .map(|k| k.as_ref().map_or(512, |h| h.head.len() + h.tail.len() + 20))
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        for index in 0..count {
            let halves = match &mut self.kept[index] {
                Some(halves) => {
                    debug_assert_eq!(
                        *halves,
                        Halves::of(&view(index)),
                        "server {index} changed without being marked: its kept JSON is stale"
                    );
                    halves
                }
                empty => empty.insert(Halves::of(&view(index))),
            };
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&halves.head);
            match uptime_ms(index) {
                Some(ms) => out.extend_from_slice(ms.to_string().as_bytes()),
                None => out.extend_from_slice(NULL),
            }
            out.extend_from_slice(&halves.tail);
        }
        out.push(b']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PortView, Status};

    fn view(id: &str, command: &str, uptime_ms: Option<u64>) -> ServerView {
        ServerView {
            id: id.into(),
            group: None,
            command: command.into(),
            status: Status::Running,
            running: true,
            healthy: true,
            pid: Some(42),
            start_time: Some(1_700_000_000_000),
            uptime_ms,
            restarts: 3,
            exit_code: None,
            exit_signal: Some("SIGKILL".into()),
            ports: vec![PortView {
                port: 8080,
                open: true,
                owner_pid: Some(42),
            }],
            orphaned: false,
            orphaned_pid: None,
            adopted: false,
            adoptable: None,
            not_adoptable: None,
            cpu_percent: Some(1.5),
            rss_bytes: Some(4096),
            processes: Some(3),
            main_cpu_percent: Some(0.5),
            main_rss_bytes: Some(1024),
            last_error: Some("a \"quoted\" error".into()),
            health: Some(crate::model::HealthView {
                ok: false,
                detail: "HTTP 503 from /healthz".into(),
                at: 1_700_000_000_000,
                duration_ms: 2,
                failures: 1,
                ready: true,
            }),
            watch: Some(crate::model::WatchView {
                paths: 2,
                error: None,
            }),
            planned_restart: Some(crate::model::PlannedView {
                at: 1_700_000_060_000,
                by: "restart_at * * * * *".into(),
            }),
        }
    }

    #[test]
    fn the_list_is_byte_for_byte_what_encoding_the_views_gives() {
        let views = vec![
            view("web", "python3 -m http.server", Some(1234)),
            // A command that spells the key inside a string must not fool the cut.
            view("db", r#"echo ',"uptimeMs":null,' "#, None),
            view("api", "x", Some(0)),
        ];
        let mut list = ListJson::new(views.len());
        for _ in 0..2 {
            let got = list.render(views.len(), |i| views[i].clone(), |i| views[i].uptime_ms);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&views).unwrap()
            );
        }
        assert_eq!(list.render(0, |i| views[i].clone(), |_| None), b"[]");
    }

    #[test]
    fn a_forgotten_server_is_encoded_again() {
        let mut views = [view("web", "a", Some(1))];
        let mut list = ListJson::new(1);
        list.render(1, |i| views[i].clone(), |i| views[i].uptime_ms);
        views[0].restarts = 4;
        list.forget(0);
        let got = list.render(1, |i| views[i].clone(), |i| views[i].uptime_ms);
        assert_eq!(got, serde_json::to_vec(&views).unwrap());
    }

    #[test]
    #[should_panic(expected = "changed without being marked")]
    #[cfg(debug_assertions)]
    fn a_change_left_unmarked_is_caught_in_debug_builds() {
        let mut views = [view("web", "a", Some(1))];
        let mut list = ListJson::new(1);
        list.render(1, |i| views[i].clone(), |i| views[i].uptime_ms);
        views[0].restarts = 4;
        list.render(1, |i| views[i].clone(), |i| views[i].uptime_ms);
    }
}
