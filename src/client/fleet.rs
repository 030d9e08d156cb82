//! `tend status` over several tends (docs/DESIGN.md §12 "Fleet", README "Many hosts"): every tend's
//! server list read at once, one table with a HOST column. A tend that cannot be read is a row
//! that says why, never the end of the command. Nothing here changes anything: control stays
//! per host (`tend restart web --url URL`).
//!
//! Runs on the main thread of a short-lived `tend status`, with one short-lived thread per tend
//! so that a dead host costs its connect timeout once, not once per host. It reads the hosts
//! file and token files named in it, and talks to each tend only through `GET /api/servers`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{Url, request};
use super::table::{Align, COLUMNS, ServerRow, render_table, table_row};
use super::{api_error, emit, non_empty_env};
use crate::error::{Context, Error, report};

/// How long the whole table may wait for the slowest tend: above the connect timeout (5 s), so
/// a dead host is named by its own error, and short enough for a person at a terminal.
const DEADLINE: Duration = Duration::from_secs(10);

/// The fleet table's columns: the host, then those of `tend status`.
const FLEET_COLUMNS: [(&str, Align); 10] = [
    ("HOST", Align::Left),
    COLUMNS[0],
    COLUMNS[1],
    COLUMNS[2],
    COLUMNS[3],
    COLUMNS[4],
    COLUMNS[5],
    COLUMNS[6],
    COLUMNS[7],
    COLUMNS[8],
];
const FLEET_STATUS_COLUMN: usize = 2;

/// One tend to read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    /// What the HOST column says: the name in the hosts file, else `host:port`.
    name: String,
    url: Url,
    /// The file holding this tend's token (hosts file); without one, `TEND_TOKEN` is sent.
    token_file: Option<PathBuf>,
}

/// Why a tend's servers are not in the table; `status` is the word in the STATUS column.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    /// `unreachable` (no HTTP answer), `refused` (an HTTP error), `error` (anything else).
    status: &'static str,
    reason: String,
}

/// One tend's answer: its server objects as the API gave them, or why there are none.
type Outcome = Result<Vec<Value>, Failure>;

/// Reads every host (the hosts file's first, then the `--url`s) and prints one table, or one
/// JSON list. Exits 1 after printing when any tend could not be read.
pub(super) fn run(
    urls: &[String],
    hosts_file: Option<&Path>,
    json: bool,
    color: bool,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    let mut hosts = match hosts_file {
        Some(path) => read_hosts_file(path)?,
        None => Vec::new(),
    };
    for text in urls {
        let url = Url::parse(text)?;
        hosts.push(Host {
            name: url.authority(),
            url,
            token_file: None,
        });
    }
    let outcomes = read_all(&hosts, non_empty_env("TEND_TOKEN"), DEADLINE);
    let text = if json {
        fleet_json(&hosts, &outcomes)
    } else {
        fleet_table(&hosts, &outcomes, color)
    };
    emit(out, &text)?;
    out.flush().context("writing to stdout")?;
    Ok(if outcomes.iter().all(Result::is_ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Asks every tend at once; a tend with no answer by `deadline` is a failure of its own.
/// Outcomes come back in the hosts' order.
fn read_all(hosts: &[Host], env_token: Option<String>, deadline: Duration) -> Vec<Outcome> {
    // crossbeam's channel, as in the rest of tend's code: std's channel code instantiated for
    // this one message type was 4 KB more of the static binary (issue 16).
    let (tx, rx) = crossbeam_channel::unbounded();
    for (index, host) in hosts.iter().enumerate() {
        let (thread_tx, host, env_token) = (tx.clone(), host.clone(), env_token.clone());
        let spawned = thread::Builder::new()
            .name(format!("status {}", host.name))
            .spawn(move || {
                let _ = thread_tx.send((index, read_one(&host, env_token.as_deref())));
            });
        if let Err(e) = spawned {
            let reason = format!("cannot start a thread to read it: {e}");
            let _ = tx.send((index, Err(failure("error", reason))));
        }
    }
    drop(tx);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; hosts.len()];
    let end = Instant::now() + deadline;
    while outcomes.iter().any(Option::is_none) {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((index, outcome)) => outcomes[index] = Some(outcome),
            // Past the deadline (or every thread gone): the rest did not answer in time. Their
            // threads end with the process.
            Err(_) => break,
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                let reason = format!("no answer within {} s", deadline.as_secs_f64());
                Err(failure("unreachable", reason))
            })
        })
        .collect()
}

fn failure(status: &'static str, reason: String) -> Failure {
    Failure { status, reason }
}

/// `GET /api/servers` of one tend, with its token.
fn read_one(host: &Host, env_token: Option<&str>) -> Outcome {
    let (token, source) = match &host.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                let reason = format!("cannot read the token file {}: {e}", path.display());
                failure("error", reason)
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                let reason = format!("the token file {} is empty", path.display());
                return Err(failure("error", reason));
            }
            (Some(token), format!("the token in {}", path.display()))
        }
        None => (env_token.map(str::to_string), "TEND_TOKEN".to_string()),
    };
    let (status, body) = request(&host.url, "GET", "/api/servers", None, token.as_deref())
        .map_err(|e| failure("unreachable", report(&e)))?;
    if status == 401 {
        let reason = match token {
            None => "needs a token: set TEND_TOKEN, or name its token file after its URL in a \
                     hosts file"
                .to_string(),
            Some(_) => format!("refused {source}"),
        };
        return Err(failure("refused", reason));
    }
    if !(200..300).contains(&status) {
        return Err(failure("refused", report(&api_error(status, &body))));
    }
    serde_json::from_slice::<Vec<Value>>(body.as_bytes()).map_err(|e| {
        let reason = format!("answered with something that is not a server list: {e}");
        failure("error", reason)
    })
}

/// The table: a row per server of each host, or one row for a host that could not be read (or
/// has no servers).
fn fleet_table(hosts: &[Host], outcomes: &[Outcome], color: bool) -> String {
    let dash = || "-".to_string();
    let mut cells: Vec<[String; 10]> = Vec::new();
    let host_row = |name: &str, status: &str, note: String| {
        let mut row: [String; 10] = std::array::from_fn(|_| dash());
        row[0] = name.to_string();
        row[FLEET_STATUS_COLUMN] = status.to_string();
        row[9] = note;
        row
    };
    for (host, outcome) in hosts.iter().zip(outcomes) {
        match outcome {
            Err(f) => cells.push(host_row(&host.name, f.status, f.reason.clone())),
            Ok(servers) if servers.is_empty() => {
                cells.push(host_row(&host.name, "-", "no servers".to_string()));
            }
            Ok(servers) => {
                for server in servers {
                    // Unknown fields are ignored and missing ones default, as in `tend status`.
                    let row = ServerRow::of(server);
                    let [a, b, c, d, e, f, g, h, i] = table_row(&row);
                    cells.push([host.name.clone(), a, b, c, d, e, f, g, h, i]);
                }
            }
        }
    }
    render_table(&FLEET_COLUMNS, &cells, FLEET_STATUS_COLUMN, color)
}

/// `[{"host", "url", "servers": [...]}, {"host", "url", "error"}, …]`: the API's server
/// objects unchanged, per host.
fn fleet_json(hosts: &[Host], outcomes: &[Outcome]) -> String {
    let list: Vec<Value> = hosts
        .iter()
        .zip(outcomes)
        .map(|(host, outcome)| {
            let mut entry = json!({"host": host.name, "url": host.url.to_string()});
            match outcome {
                Ok(servers) => entry["servers"] = Value::Array(servers.clone()),
                Err(f) => entry["error"] = json!(format!("{}: {}", f.status, f.reason)),
            }
            entry
        })
        .collect();
    let mut text = serde_json::to_string(&list).expect("JSON values always serialize");
    text.push('\n');
    text
}

fn read_hosts_file(path: &Path) -> Result<Vec<Host>, Error> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the hosts file {}", path.display()))?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    parse_hosts(&text, path, home.as_deref())
}

/// Parses a hosts file: one tend per line, `[NAME] http://HOST:PORT [TOKEN_FILE]`; blank
/// lines and everything from a word starting with `#` are ignored. Every bad line is named
/// (`FILE:LINE: why`), all at once.
fn parse_hosts(text: &str, file: &Path, home: Option<&Path>) -> Result<Vec<Host>, Error> {
    let mut hosts: Vec<(usize, Host)> = Vec::new();
    let mut problems = String::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let words: Vec<&str> = line
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect();
        if words.is_empty() {
            continue;
        }
        match parse_host_line(&words, file, home) {
            Ok(host) => {
                if let Some((first, _)) = hosts.iter().find(|(_, h)| h.name == host.name) {
                    let _ = writeln!(
                        problems,
                        "{}:{number}: the name '{}' is already on line {first}",
                        file.display(),
                        host.name
                    );
                }
                hosts.push((number, host));
            }
            Err(why) => {
                let _ = writeln!(problems, "{}:{number}: {why}", file.display());
            }
        }
    }
    if hosts.is_empty() && problems.is_empty() {
        let _ = writeln!(
            problems,
            "{}: lists no tend (one per line: [NAME] http://HOST:PORT [TOKEN_FILE])",
            file.display()
        );
    }
    if !problems.is_empty() {
        return Err(Error::other(problems.trim_end().to_string()));
    }
    Ok(hosts.into_iter().map(|(_, host)| host).collect())
}

fn parse_host_line(words: &[&str], file: &Path, home: Option<&Path>) -> Result<Host, String> {
    const SHAPE: &str = "expected [NAME] http://HOST:PORT [TOKEN_FILE]";
    let at = match words.iter().position(|w| w.contains("://")) {
        Some(at @ (0 | 1)) => at,
        Some(_) => return Err(format!("{SHAPE}; the URL comes first or second")),
        None => return Err(format!("{SHAPE}; no http:// URL on the line")),
    };
    let url = Url::parse(words[at]).map_err(|e| e.to_string())?;
    let name = if at == 1 {
        words[0].to_string()
    } else {
        url.authority()
    };
    let token_file = match &words[at + 1..] {
        [] => None,
        [path] => Some(resolve_path(path, file, home)?),
        [_, extra, ..] => return Err(format!("{SHAPE}; '{extra}' is one word too many")),
    };
    Ok(Host {
        name,
        url,
        token_file,
    })
}

/// `~/x` in the home folder, a relative path beside the hosts file, an absolute one as is.
fn resolve_path(text: &str, file: &Path, home: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(rest) = text.strip_prefix("~/") {
        return match home {
            Some(home) => Ok(home.join(rest)),
            None => Err(format!("'{text}': HOME is not set")),
        };
    }
    let path = Path::new(text);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(file.parent().unwrap_or(Path::new(".")).join(path))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn host(name: &str, url: &str, token_file: Option<&str>) -> Host {
        Host {
            name: name.to_string(),
            url: Url::parse(url).unwrap(),
            token_file: token_file.map(PathBuf::from),
        }
    }

    fn parse(text: &str) -> Result<Vec<Host>, String> {
        parse_hosts(
            text,
            Path::new("/etc/tend/hosts"),
            Some(Path::new("/home/ann")),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_hosts_file_names_each_tend_its_url_and_token_file() {
        let text = "\
# the fleet
web-1   http://10.0.0.11:7070   ~/.config/tend/web-1.token   # the front
web-2   http://10.0.0.12:7070
http://127.0.0.1:17070 lab.token

  lab-2 http://[::1]:7071/ /run/tend/lab-2.token
";
        assert_eq!(
            parse(text).unwrap(),
            [
                host(
                    "web-1",
                    "http://10.0.0.11:7070",
                    Some("/home/ann/.config/tend/web-1.token")
                ),
                host("web-2", "http://10.0.0.12:7070", None),
                host(
                    "127.0.0.1:17070",
                    "http://127.0.0.1:17070",
                    Some("/etc/tend/lab.token")
                ),
                host("lab-2", "http://[::1]:7071", Some("/run/tend/lab-2.token")),
            ]
        );
    }

    #[test]
    fn every_bad_line_of_a_hosts_file_is_named() {
        let text = "\
web-1 10.0.0.11:7070
web-2 http://10.0.0.12:7070 a.token extra
https://10.0.0.13:7070
a b http://10.0.0.14:7070
web-1 http://10.0.0.15:7070
web-1 http://10.0.0.16:7070
";
        let message = parse(text).unwrap_err();
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 5, "{message}");
        assert!(lines[0].starts_with("/etc/tend/hosts:1: ") && lines[0].contains("no http://"));
        assert!(lines[1].starts_with("/etc/tend/hosts:2: ") && lines[1].contains("'extra'"));
        assert!(lines[2].starts_with("/etc/tend/hosts:3: ") && lines[2].contains("TLS"));
        assert!(lines[3].starts_with("/etc/tend/hosts:4: ") && lines[3].contains("first or"));
        assert_eq!(
            lines[4],
            "/etc/tend/hosts:6: the name 'web-1' is already on line 5"
        );

        let empty = parse("# nothing yet\n\n").unwrap_err();
        assert!(empty.contains("lists no tend"), "{empty}");
        let homeless = parse_hosts("a http://h:1 ~/t", Path::new("hosts"), None).unwrap_err();
        assert!(homeless.to_string().contains("HOME"), "{homeless}");
    }

    #[test]
    fn relative_token_files_are_beside_the_hosts_file() {
        let hosts = parse_hosts("a http://h:1 tokens/a", Path::new("hosts"), None).unwrap();
        assert_eq!(hosts[0].token_file, Some(PathBuf::from("tokens/a")));
    }

    fn server(id: &str, status: &str) -> Value {
        json!({"id": id, "status": status, "pid": 42, "uptimeMs": 5000, "restarts": 1,
               "ports": [{"port": 8000, "open": true}], "cpuPercent": 0.5,
               "rssBytes": 1_048_576, "futureField": true})
    }

    #[test]
    fn the_fleet_table_has_a_host_column_and_a_row_for_each_tend_that_failed() {
        let hosts = [
            host("web-1", "http://10.0.0.11:7070", None),
            host("web-2", "http://10.0.0.12:7070", None),
            host("lab-1", "http://127.0.0.1:17070", None),
        ];
        let outcomes = [
            Ok(vec![server("db", "running"), server("web", "backoff")]),
            Err(failure("unreachable", "connection refused".into())),
            Ok(vec![]),
        ];
        let table = fleet_table(&hosts, &outcomes, false);
        assert_eq!(
            table,
            "\
HOST   ID   STATUS       PID  UPTIME  RESTARTS  PORTS  CPU%     MEM  NOTE
web-1  db   running       42      5s         1  8000✓   0.5  1.0MiB
web-1  web  backoff       42      5s         1  8000✓   0.5  1.0MiB
web-2  -    unreachable    -       -         -  -         -       -  connection refused
lab-1  -    -              -       -         -  -         -       -  no servers
"
        );
        let coloured = fleet_table(&hosts, &outcomes, true);
        assert!(
            coloured.contains("\x1b[31munreachable\x1b[0m"),
            "{coloured}"
        );
        assert!(coloured.contains("\x1b[32mrunning\x1b[0m"), "{coloured}");
    }

    #[test]
    fn fleet_json_keeps_the_apis_objects_per_host() {
        let hosts = [
            host("web-1", "http://10.0.0.11:7070", None),
            host("web-2", "http://10.0.0.12:7070", None),
        ];
        let outcomes = [
            Ok(vec![server("db", "running")]),
            Err(failure("refused", "refused TEND_TOKEN".into())),
        ];
        let parsed: Value = serde_json::from_str(&fleet_json(&hosts, &outcomes)).unwrap();
        assert_eq!(
            parsed,
            json!([
                {"host": "web-1", "url": "http://10.0.0.11:7070",
                 "servers": [server("db", "running")]},
                {"host": "web-2", "url": "http://10.0.0.12:7070",
                 "error": "refused: refused TEND_TOKEN"},
            ])
        );
    }

    #[test]
    fn a_tend_that_never_answers_is_a_row_after_the_deadline() {
        // Accepts the connection and never answers: only the deadline ends the wait.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let unreadable = host("x", "http://127.0.0.1:1", Some("/nonexistent/tend/token"));
        let outcomes = read_all(
            &[host("silent", &url, None), unreadable],
            None,
            Duration::from_millis(300),
        );
        assert_eq!(
            outcomes[0],
            Err(failure("unreachable", "no answer within 0.3 s".into()))
        );
        let Err(f) = &outcomes[1] else {
            panic!("{outcomes:?}")
        };
        assert_eq!(f.status, "error");
        assert!(f.reason.contains("/nonexistent/tend/token"), "{}", f.reason);
    }
}
