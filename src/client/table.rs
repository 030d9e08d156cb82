//! The status table: the API's server objects as aligned, optionally coloured rows.

use std::time::Duration;

use serde::Deserialize;

/// The fields of a server object (docs/DESIGN.md §4) the CLI shows; missing ones default, unknown
/// ones are ignored, so a newer tend still works with an older CLI.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct ServerRow {
    pub(super) id: String,
    pub(super) group: Option<String>,
    pub(super) status: String,
    pub(super) pid: Option<u32>,
    pub(super) uptime_ms: Option<u64>,
    pub(super) restarts: u32,
    pub(super) exit_code: Option<i32>,
    pub(super) exit_signal: Option<String>,
    pub(super) ports: Vec<PortRow>,
    pub(super) orphaned: bool,
    pub(super) orphaned_pid: Option<u32>,
    pub(super) adopted: bool,
    pub(super) cpu_percent: Option<f64>,
    pub(super) rss_bytes: Option<u64>,
    pub(super) last_error: Option<String>,
    pub(super) health: Option<HealthRow>,
}

/// The last health check, as far as `tend status` shows it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct HealthRow {
    ok: bool,
    ready: bool,
    detail: String,
}

impl ServerRow {
    /// A server object of the API as a row (unknown fields ignored, missing ones default). Read
    /// through its text so that one deserializer, `from_slice`'s (`tend status`, `--wait`),
    /// serves every place a row is read: `from_value`'s was a second copy of it, 24 KB of the
    /// static binary (issue 16). Only the CLI does this, once per server.
    pub(super) fn of(object: &serde_json::Value) -> ServerRow {
        serde_json::from_slice(object.to_string().as_bytes()).unwrap_or_default()
    }

    /// Why a live server is not running, from its health check: "HTTP 503 from /healthz".
    pub(super) fn health_note(&self) -> Option<String> {
        let health = self.health.as_ref()?;
        match self.status.as_str() {
            "unhealthy" if !health.ok => Some(format!("unhealthy: {}", health.detail)),
            "starting" if !health.ready => Some(format!("not ready: {}", health.detail)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct PortRow {
    pub(super) port: u16,
    pub(super) open: bool,
    pub(super) owner_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

pub(super) const COLUMNS: [(&str, Align); 9] = [
    ("ID", Align::Left),
    ("STATUS", Align::Left),
    ("PID", Align::Right),
    ("UPTIME", Align::Right),
    ("RESTARTS", Align::Right),
    ("PORTS", Align::Left),
    ("CPU%", Align::Right),
    ("MEM", Align::Right),
    ("NOTE", Align::Left),
];

/// Whether `tend status` colours its statuses: `NO_COLOR` (non-empty) never, else
/// `CLICOLOR_FORCE` (non-empty, not `0`) always, else only when stdout is a terminal.
/// NO_COLOR wins over CLICOLOR_FORCE: it is the reader's standing wish (no-color.org).
pub(super) fn use_color(stdout_is_terminal: bool, var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    if set("NO_COLOR") {
        return false;
    }
    if set("CLICOLOR_FORCE") && var("CLICOLOR_FORCE").as_deref() != Some("0") {
        return true;
    }
    stdout_is_terminal
}

/// The SGR colour of a status word: green up, yellow in between, red down, dim at rest.
fn status_color(status: &str) -> Option<&'static str> {
    match status {
        "running" => Some("\x1b[32m"),
        "starting" | "stopping" | "unhealthy" | "backoff" => Some("\x1b[33m"),
        // The last three are a fleet table's rows for a tend that could not be read.
        "crashed" | "fatal" | "unreachable" | "refused" | "error" => Some("\x1b[31m"),
        "stopped" | "exited" => Some("\x1b[2m"),
        _ => None,
    }
}

const STATUS_COLUMN: usize = 1;

/// The `tend status` table, columns aligned, ending with a newline. With `color`, the status
/// words are wrapped in escape codes after padding, so alignment counts only visible text.
pub(super) fn format_table(rows: &[ServerRow], color: bool) -> String {
    let cells: Vec<[String; 9]> = rows.iter().map(table_row).collect();
    render_table(&COLUMNS, &cells, STATUS_COLUMN, color)
}

/// Columns aligned by their visible width, a header first; with `color`, the cells of
/// `status_column` are coloured as [`status_color`] says.
pub(super) fn render_table<const N: usize>(
    columns: &[(&str, Align); N],
    cells: &[[String; N]],
    status_column: usize,
    color: bool,
) -> String {
    let header = columns.map(|(name, _)| name.to_string());
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(cells) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for (number, row) in std::iter::once(&header).chain(cells).enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - cell.chars().count());
            let sgr = (color && number > 0 && i == status_column)
                .then(|| status_color(cell))
                .flatten();
            let shown = match sgr {
                Some(sgr) => format!("{sgr}{cell}\x1b[0m"),
                None => cell.clone(),
            };
            match columns[i].1 {
                Align::Left => {
                    line.push_str(&shown);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(&shown);
                }
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

pub(super) fn table_row(row: &ServerRow) -> [String; 9] {
    let dash = || "-".to_string();
    let ports = row
        .ports
        .iter()
        .map(|port| match port.owner_pid {
            // The port is held from outside the server's tree: show who holds it.
            Some(owner) if row.orphaned && row.orphaned_pid == Some(owner) => {
                format!("{}!{owner}", port.port)
            }
            _ => format!("{}{}", port.port, if port.open { "✓" } else { "✗" }),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut notes = Vec::new();
    if row.orphaned {
        notes.push(match row.orphaned_pid {
            Some(pid) => format!("orphan PID {pid}"),
            None => "orphan".to_string(),
        });
    }
    if row.adopted {
        notes.push("adopted".to_string());
    }
    notes.extend(row.health_note());
    if let Some(error) = &row.last_error {
        notes.push(error.clone());
    }
    [
        row.id.clone(),
        row.status.clone(),
        row.pid.map_or_else(dash, |pid| pid.to_string()),
        row.uptime_ms
            .map_or_else(dash, |ms| human_duration(Duration::from_millis(ms))),
        row.restarts.to_string(),
        if ports.is_empty() { dash() } else { ports },
        row.cpu_percent.map_or_else(dash, |cpu| format!("{cpu:.1}")),
        row.rss_bytes.map_or_else(dash, human_bytes),
        notes.join("; "),
    ]
}

/// `5s`, `3m12s`, `2h05m`, `3d4h`: two units at most, the larger first.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// `512B`, `812KiB`, `4.2MiB`, `1.5GiB`: one decimal below 10 of a unit.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::client) const SERVERS: &str = r#"[
        {"id": "web", "command": "x", "status": "running", "running": true, "healthy": true,
         "pid": 1234, "startTime": 1, "uptimeMs": 192000, "restarts": 0, "exitCode": null,
         "exitSignal": null, "ports": [{"port": 8000, "open": true, "ownerPid": 1234},
         {"port": 8001, "open": false, "ownerPid": null}], "orphaned": false,
         "orphanedPid": null, "adopted": true, "cpuPercent": 1.25, "rssBytes": 4404019,
         "lastError": null},
        {"id": "database", "status": "crashed", "pid": null, "uptimeMs": null, "restarts": 3,
         "ports": [{"port": 5432, "open": true, "ownerPid": 4242}], "orphaned": true,
         "orphanedPid": 4242, "adopted": false, "cpuPercent": null, "rssBytes": null,
         "lastError": "exited with code 1", "someFutureField": [1, 2]}
    ]"#;

    #[test]
    fn durations_and_sizes_read_like_a_person_writes_them() {
        let durations = [
            (0, "0s"),
            (5, "5s"),
            (59, "59s"),
            (60, "1m00s"),
            (192, "3m12s"),
            (3599, "59m59s"),
            (3600, "1h00m"),
            (7500, "2h05m"),
            (86399, "23h59m"),
            (86400, "1d0h"),
            (273_600, "3d4h"),
        ];
        for (secs, text) in durations {
            assert_eq!(human_duration(Duration::from_secs(secs)), text, "{secs} s");
        }
        assert_eq!(human_duration(Duration::from_millis(5999)), "5s");
        let sizes = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0KiB"),
            (1536, "1.5KiB"),
            (831_488, "812KiB"),
            (4_404_019, "4.2MiB"),
            (1_610_612_736, "1.5GiB"),
            (12 * 1024 * 1024, "12MiB"),
        ];
        for (bytes, text) in sizes {
            assert_eq!(human_bytes(bytes), text, "{bytes} bytes");
        }
    }

    pub(in crate::client) fn rows(json: &str) -> Vec<ServerRow> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_status_table_is_aligned_and_says_what_matters() {
        let table = format_table(&rows(SERVERS), false);
        let expected = "\
ID        STATUS    PID  UPTIME  RESTARTS  PORTS        CPU%     MEM  NOTE
web       running  1234   3m12s         0  8000✓ 8001✗   1.2  4.2MiB  adopted
database  crashed     -       -         3  5432!4242       -       -  orphan PID 4242; exited with code 1
";
        assert_eq!(table, expected);
        assert_eq!(
            format_table(&[], false),
            "ID  STATUS  PID  UPTIME  RESTARTS  PORTS  CPU%  MEM  NOTE\n"
        );
        assert_eq!(format_table(&[], true), format_table(&[], false));
    }

    #[test]
    fn the_note_says_why_a_server_is_unhealthy_or_not_ready() {
        let table = format_table(
            &rows(
                r#"[{"id": "api", "status": "unhealthy", "pid": 7, "restarts": 0,
                     "health": {"ok": false, "ready": true, "detail": "HTTP 503 from /healthz"}},
                    {"id": "job", "status": "starting", "pid": 8, "restarts": 0,
                     "health": {"ok": false, "ready": false, "detail": "no line matched /ready/ yet"}},
                    {"id": "ok", "status": "running", "pid": 9, "restarts": 1,
                     "lastError": "memory 310 MiB over 256 MiB: restarted",
                     "health": {"ok": true, "ready": true, "detail": "HTTP 200 from /"}}]"#,
            ),
            false,
        );
        let notes: Vec<&str> = table
            .lines()
            .skip(1)
            .map(|line| line.split("  ").last().unwrap().trim())
            .collect();
        assert_eq!(
            notes,
            [
                "unhealthy: HTTP 503 from /healthz",
                "not ready: no line matched /ready/ yet",
                "memory 310 MiB over 256 MiB: restarted",
            ]
        );
    }

    /// The table with its escape codes taken out.
    fn strip_sgr(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('\x1b') {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('m')
                .expect("an SGR sequence ends with m");
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn coloured_statuses_keep_the_columns_aligned() {
        let json = r#"[{"id": "a", "status": "running", "pid": 1},
            {"id": "bb", "status": "backoff", "restarts": 2},
            {"id": "c", "status": "fatal"}, {"id": "d", "status": "stopped"},
            {"id": "e", "status": "exited"}, {"id": "f", "status": "unhealthy", "pid": 7},
            {"id": "g", "status": "starting"}, {"id": "h", "status": "stopping"},
            {"id": "i", "status": "crashed"}, {"id": "j", "status": "someday"}]"#;
        let plain = format_table(&rows(json), false);
        let coloured = format_table(&rows(json), true);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert_eq!(
            strip_sgr(&coloured),
            plain,
            "colour changes nothing but the codes"
        );
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(
            lines[0].starts_with("ID  STATUS     PID"),
            "the header is plain: {:?}",
            lines[0]
        );
        for (line, code, word) in [
            (1, "32", "running"),
            (2, "33", "backoff"),
            (3, "31", "fatal"),
            (4, "2", "stopped"),
            (5, "2", "exited"),
            (6, "33", "unhealthy"),
            (7, "33", "starting"),
            (8, "33", "stopping"),
            (9, "31", "crashed"),
        ] {
            let wanted = format!("\x1b[{code}m{word}\x1b[0m");
            assert!(
                lines[line].contains(&wanted),
                "{:?} lacks {wanted:?}",
                lines[line]
            );
        }
        assert!(
            !lines[10].contains('\x1b'),
            "an unknown status stays plain: {:?}",
            lines[10]
        );
        // Visible widths agree line by line: every PID column ends at the same place.
        let plain_lines: Vec<&str> = plain.lines().collect();
        let stripped = strip_sgr(&coloured);
        for (a, b) in plain_lines.iter().zip(stripped.lines()) {
            assert_eq!(a.chars().count(), b.chars().count());
        }
    }

    #[test]
    fn colour_is_for_terminals_unless_no_color_or_clicolor_force_say_otherwise() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        type Vars = &'static [(&'static str, &'static str)];
        let table: [(bool, Vars, bool); 9] = [
            (true, &[], true),
            (false, &[], false),
            (true, &[("NO_COLOR", "1")], false),
            (true, &[("NO_COLOR", "")], true),
            (false, &[("CLICOLOR_FORCE", "1")], true),
            (false, &[("CLICOLOR_FORCE", "0")], false),
            (false, &[("CLICOLOR_FORCE", "")], false),
            (false, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], false),
            (true, &[("CLICOLOR_FORCE", "0")], true),
        ];
        for (tty, vars, expected) in table {
            assert_eq!(use_color(tty, env(vars)), expected, "tty {tty}, {vars:?}");
        }
    }
}
