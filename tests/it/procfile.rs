//! Procfiles (issue 6, item 1; docs/DESIGN.md §1): `tend up` with no tend.json runs `./Procfile` with
//! the `.env` beside it, each entry with foreman's PORT, checked as its port; `tend check`
//! validates both files; and honcho (PyPI, installed by tests/install-honcho.sh) run on the
//! same files gives each process the same PORT and `.env` values, except for the differences
//! README "For Procfile users" documents, which are asserted on both sides here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    GroupGuard, SseReader, TempDir, WAIT, http_request, send_signal, tend_bin, wait_until,
};

const TOKEN: &str = "procfile-test-token";

/// Variables both tools inherit from the test, so `.env`'s precedence over them shows.
const INHERITED: &[(&str, &str)] = &[("OVERRIDDEN", "from-parent"), ("EMPTY", "from-parent")];

/// Waits for `child` until `timeout`; `None` if it is still running.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM to `child`, then (after 10 s) SIGKILL to its process group, which it leads.
fn stop_group_leader(child: &mut Child) {
    let pid = child.id() as i32;
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    send_signal(pid, libc::SIGTERM);
    if wait_exit(child, Duration::from_secs(10)).is_none() {
        send_signal(-pid, libc::SIGKILL);
        let _ = wait_exit(child, Duration::from_secs(10));
    }
}

/// A `tend up` on a Procfile, started in `dir` without `--config` (so the lookup must find
/// `./Procfile`), in its own process group, with the state and logs in `dir`.
struct ProcfileTend {
    child: Child,
    url: String,
    /// Every managed process group seen, killed on drop if tend left any behind.
    guards: Vec<GroupGuard>,
}

impl ProcfileTend {
    fn start(dir: &Path, extra_args: &[&str]) -> ProcfileTend {
        let stderr = fs::File::create(dir.join("tend.log")).unwrap();
        let mut command = Command::new(tend_bin());
        command
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--state",
                "state/process-state.json",
            ])
            .args(["--log-dir", "logs"])
            .args(extra_args)
            .current_dir(dir)
            .env("TEND_TOKEN", TOKEN)
            .env_remove("TEND_URL")
            .env_remove("PORT")
            .envs(INHERITED.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        let mut child = command.spawn().expect("spawn tend up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split("dashboard at ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let mut tend = ProcfileTend {
            child,
            url: String::new(),
            guards: Vec::new(),
        };
        let deadline = Instant::now() + WAIT;
        let printed = loop {
            if let Ok(url) = rx.recv_timeout(Duration::from_millis(20)) {
                break url;
            }
            let log = || fs::read_to_string(dir.join("tend.log")).unwrap_or_default();
            if let Ok(Some(status)) = tend.child.try_wait() {
                panic!(
                    "tend up exited ({status}) before printing its URL; stderr:\n{}",
                    log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tend up printed no URL; stderr:\n{}",
                log()
            );
        };
        let host = printed
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        tend.url = format!("http://{host}");
        tend
    }

    fn servers(&mut self) -> Vec<Value> {
        let auth = format!("Bearer {TOKEN}");
        let (status, _, body) = http_request(
            &self.url,
            "GET",
            "/api/servers",
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(
            status,
            200,
            "GET /api/servers: {}",
            String::from_utf8_lossy(&body)
        );
        let servers: Vec<Value> = serde_json::from_slice(&body).expect("a JSON list");
        for pid in servers.iter().filter_map(|s| s["pid"].as_u64()) {
            // Each server leads its own session and process group (setsid).
            if !self.guards.iter().any(|g| g.pgid == pid as u32) {
                self.guards.push(GroupGuard::new(pid as u32));
            }
        }
        servers
    }
}

impl Drop for ProcfileTend {
    fn drop(&mut self) {
        // Note every group tend manages before stopping it, in case it leaves one behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.servers()));
        }
        stop_group_leader(&mut self.child);
    }
}

/// A base port with nothing listening on it or 100 and 200 above it.
fn free_port_base() -> u16 {
    wait_until("three free ports 100 apart", WAIT, || {
        let base = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        (base < 65000 && free(base) && free(base + 100) && free(base + 200)).then_some(base)
    })
}

fn run_tend(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(tend_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("PORT")
        .output()
        .expect("run tend")
}

#[test]
fn tend_up_runs_the_procfile_with_port_and_dotenv_and_checks_the_ports() {
    let dir = TempDir::new("procfile-up");
    let base = free_port_base();
    dir.write(
        "Procfile",
        "# run with no tend.json: the lookup finds ./Procfile\n\
         web: echo \"$PORT|$GREETING|$OVERRIDDEN\" > seen-web; exec \"$TEND_BIN\" serve-demo --port $PORT\r\n\
         \n\
         api_v2-x: echo \"$PORT|$GREETING|$OVERRIDDEN\" > seen-api; exec \"$TEND_BIN\" serve-demo --port $PORT\n",
    );
    dir.write(
        ".env",
        "GREETING=\"hello world\" # quoted\nexport OVERRIDDEN=from-dotenv\nPORT=1\n",
    );
    let out = run_tend(&dir.path, &["check"]);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (
            Some(0),
            "./Procfile: OK (2 servers)\n  \
             web: runs under /bin/sh -c: contains a redirection\n  \
             api_v2-x: runs under /bin/sh -c: contains a redirection"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --port wins over PORT in .env (foreman's order).
    let mut tend = ProcfileTend::start(&dir.path, &["--port", &base.to_string()]);
    let expected = [
        ("web", base, "seen-web"),
        ("api_v2-x", base + 100, "seen-api"),
    ];
    let servers = wait_until("both servers running, web with its port open", WAIT, || {
        let servers = tend.servers();
        let ready = servers.len() == 2
            && servers.iter().all(|s| s["status"] == "running")
            && servers[0]["ports"][0]["open"] == true;
        ready.then_some(servers)
    });
    for (server, (id, port, seen)) in servers.iter().zip(expected) {
        assert_eq!(server["id"], id);
        // As on Heroku, only `web` is expected to bind its PORT; the others get one too.
        if id == "web" {
            assert_eq!(server["ports"].as_array().unwrap().len(), 1, "{server}");
            assert_eq!(server["ports"][0]["port"], port, "{server}");
            assert_eq!(server["ports"][0]["ownerPid"], server["pid"], "{server}");
        } else {
            assert_eq!(server["ports"], serde_json::json!([]), "{server}");
        }
        assert_eq!(
            dir.read(seen).trim_end(),
            format!("{port}|hello world|from-dotenv"),
            "what {id} saw"
        );
    }
}

#[test]
fn tend_check_reports_procfile_and_env_problems_and_port_needs_a_procfile() {
    let dir = TempDir::new("procfile-check");
    dir.write("sub/Procfile.dev", "web: run\nweb: again\nworker run\n");
    dir.write("sub/.env", "A=1\nB='open\n");
    let out = run_tend(&dir.path, &["check", "--config", "sub/Procfile.dev"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sub/Procfile.dev:2:1: duplicate process name 'web': lines 1 and 2 both use it\n\
         sub/Procfile.dev:3:7: expected ':' after the process name 'worker' ('name: command'), found ' '\n\
         sub/.env:2:3: unterminated single quote\n"
    );

    // Nothing to find: the error says what was looked for.
    let empty = TempDir::new("procfile-none");
    let out = run_tend(&empty.path, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some("tend: no config: looked for ./tend.json, ./Procfile (give one with --config FILE)")
    );

    // tend.json comes first, and --port is refused for it.
    dir.write("tend.json", "{\"servers\": []}");
    dir.write("Procfile", "web: run\n");
    let out = run_tend(&dir.path, &["check"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "./tend.json: OK (0 servers)"
    );
    let out = run_tend(
        &dir.path,
        &["up", "--port", "6000", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "tend: --port sets the base PORT of Procfile entries, and ./tend.json is not a Procfile"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// honcho and tend on the same files.

/// What a process is given for one `.env` line's variable.
enum Seen {
    /// Both tools give this (`None`: the variable is not set).
    Same(Option<&'static str>),
    /// A difference README "For Procfile users" documents.
    Differs {
        honcho: Option<&'static str>,
        tend: Option<&'static str>,
    },
}

use Seen::{Differs, Same};

/// The `.env` both tools read, line by line, with the variable each line concerns ("" for
/// none) and what the processes must see of it. Inherited: see [`INHERITED`].
const DOTENV: &[(&str, &str, Seen)] = &[
    ("# the .env shared by honcho and tend", "", Same(None)),
    ("   # an indented comment", "", Same(None)),
    ("", "", Same(None)),
    // The base PORT, as in foreman; each process's own PORT then wins over it.
    ("PORT=6000", "", Same(None)),
    ("PLAIN=value", "PLAIN", Same(Some("value"))),
    (
        "OVERRIDDEN=from-dotenv",
        "OVERRIDDEN",
        Same(Some("from-dotenv")),
    ),
    ("SPACED = value", "SPACED", Same(Some("value"))),
    ("EQUALS=a=b==c", "EQUALS", Same(Some("a=b==c"))),
    (
        "URLISH=postgres://u:p@db:5432/app?sslmode=require&x=1",
        "URLISH",
        Same(Some("postgres://u:p@db:5432/app?sslmode=require&x=1")),
    ),
    ("TRAIL=bare # a comment", "TRAIL", Same(Some("bare"))),
    ("DOLLAR=$HOME", "DOLLAR", Same(Some("$HOME"))),
    (
        "DQ=\"two  words # not a comment\"",
        "DQ",
        Same(Some("two  words # not a comment")),
    ),
    (
        r#"DQ_ESC="line\nnext\ttab \"q\" back\\slash""#,
        "DQ_ESC",
        Same(Some("line\nnext\ttab \"q\" back\\slash")),
    ),
    ("DQ_EMPTY=\"\"", "DQ_EMPTY", Same(Some(""))),
    (
        "SQ='single $HOME # kept'",
        "SQ",
        Same(Some("single $HOME # kept")),
    ),
    ("SQ_EMPTY=''", "SQ_EMPTY", Same(Some(""))),
    ("UNI=\"héllo wörld\"", "UNI", Same(Some("héllo wörld"))),
    ("LATER=first", "LATER", Same(Some("second"))),
    ("LATER=second", "LATER", Same(Some("second"))),
    ("CRLF=crlf\r", "CRLF", Same(Some("crlf"))),
    ("TAB_LEAD=\ttabbed", "TAB_LEAD", Same(Some("tabbed"))),
    // The documented differences.
    (
        "export EXPORTED=yes",
        "EXPORTED",
        Differs {
            honcho: None,
            tend: Some("yes"),
        },
    ),
    (
        "EMPTY=",
        "EMPTY",
        Differs {
            honcho: Some("from-parent"),
            tend: Some(""),
        },
    ),
    (
        "WORDS=hello world",
        "WORDS",
        Differs {
            honcho: Some("helloworld"),
            tend: Some("hello world"),
        },
    ),
    (
        "HASH=a#b",
        "HASH",
        Differs {
            honcho: Some("a"),
            tend: Some("a#b"),
        },
    ),
    (
        r"BARE_ESC=a\nb",
        "BARE_ESC",
        Differs {
            honcho: Some("anb"),
            tend: Some(r"a\nb"),
        },
    ),
    (
        r"SQ_ESC='a\nb'",
        "SQ_ESC",
        Differs {
            honcho: Some("a\nb"),
            tend: Some(r"a\nb"),
        },
    ),
    (
        r#"DQ_DOLLAR="\$HOME""#,
        "DQ_DOLLAR",
        Differs {
            honcho: Some(r"\$HOME"),
            tend: Some("$HOME"),
        },
    ),
    (
        r#"DQ_CR="a\rb""#,
        "DQ_CR",
        Differs {
            honcho: Some(r"a\rb"),
            tend: Some("a\rb"),
        },
    ),
];

/// Procfile entries: each notes its PID (its process group: both tools start each entry in its
/// own session), dumps its environment (NUL-separated, so values may hold newlines) and stays
/// up, because honcho stops everything once one process exits.
const NAMES: &[&str] = &["web", "worker", "clock_2-x"];

fn write_app(dir: &Path) {
    let mut procfile = String::from("# honcho and tend read this same file\n\n");
    for name in NAMES {
        procfile.push_str(&format!(
            "{name}: echo $$ > pid-{name} && env -0 > env-{name}.tmp && mv env-{name}.tmp env-{name} \
             && exec sleep 1000\n"
        ));
    }
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("Procfile"), procfile).unwrap();
    let dotenv: Vec<&str> = DOTENV.iter().map(|(line, _, _)| *line).collect();
    fs::write(dir.join(".env"), dotenv.join("\n") + "\n").unwrap();
}

/// The environment process `name` dumped in `dir`, once all of them have.
fn wait_envs(dir: &Path, what: &str) -> Vec<BTreeMap<String, String>> {
    wait_until(
        &format!("every {what} process to dump its environment"),
        WAIT,
        || {
            NAMES
                .iter()
                .all(|n| dir.join(format!("env-{n}")).exists())
                .then_some(())
        },
    );
    NAMES
        .iter()
        .map(|name| {
            let raw = fs::read(dir.join(format!("env-{name}"))).unwrap();
            String::from_utf8(raw)
                .unwrap()
                .split('\0')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// honcho's binary, installed by tests/install-honcho.sh (run here if `make test` did not).
fn honcho() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/install-honcho.sh");
    let out = Command::new("sh")
        .arg(&script)
        .output()
        .expect("run install-honcho.sh");
    assert!(
        out.status.success(),
        "tests/install-honcho.sh failed (honcho is needed from PyPI):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("target/honcho-venv/bin/honcho")
}

fn run_honcho(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let log = fs::File::create(dir.join("honcho.log")).unwrap();
    let mut child = Command::new(honcho())
        .args(["start", "--no-colour"])
        .current_dir(dir)
        .env_remove("PORT")
        .env_remove("TEND_TOKEN")
        .envs(INHERITED.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("spawn honcho");
    // honcho starts each process in its own session; guard their groups until they are gone.
    let result = std::panic::catch_unwind(|| wait_envs(dir, "honcho"));
    let guards: Vec<GroupGuard> = NAMES
        .iter()
        .filter_map(|name| fs::read_to_string(dir.join(format!("pid-{name}"))).ok())
        .filter_map(|pid| pid.trim().parse().ok())
        .map(GroupGuard::new)
        .collect();
    stop_group_leader(&mut child);
    drop(guards);
    match result {
        Ok(envs) => envs,
        Err(panic) => {
            eprintln!(
                "honcho's output:\n{}",
                fs::read_to_string(dir.join("honcho.log")).unwrap_or_default()
            );
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn procfile_and_dotenv_are_read_as_honcho_reads_them() {
    let dir = TempDir::new("procfile-honcho");
    let honcho_dir = dir.join("honcho");
    let tend_dir = dir.join("tend");
    write_app(&honcho_dir);
    write_app(&tend_dir);

    let honcho_envs = run_honcho(&honcho_dir);
    let tend_envs = {
        let mut tend = ProcfileTend::start(&tend_dir, &[]);
        let envs = wait_envs(&tend_dir, "tend");
        let _ = tend.servers();
        envs
    };

    let mut problems = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let (h, t) = (&honcho_envs[i], &tend_envs[i]);
        // foreman's and honcho's PORT: the base (PORT in .env here) + 100 per entry.
        let port = (6000 + 100 * i).to_string();
        for (tool, env) in [("honcho", h), ("tend", t)] {
            if env.get("PORT") != Some(&port) {
                problems.push(format!(
                    "{name}: {tool} gave PORT {:?}, expected {port}",
                    env.get("PORT")
                ));
            }
        }
        for (line, key, seen) in DOTENV.iter().filter(|(_, key, _)| !key.is_empty()) {
            let (want_honcho, want_tend) = match seen {
                Same(value) => (value, value),
                Differs { honcho, tend } => (honcho, tend),
            };
            for (tool, env, want) in [("honcho", h, want_honcho), ("tend", t, want_tend)] {
                let got = env.get(*key).map(String::as_str);
                if got != *want {
                    problems.push(format!(
                        "{name}: {tool} gave {key}={got:?} for the line {line:?}, expected {want:?}"
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "honcho and tend differ beyond README's list:\n{}",
        problems.join("\n")
    );
}

/// Every server object and status change the stream carries, checked with `check` as it comes.
fn watch_servers(sse: &mut SseReader, until: impl Fn(&[Value]) -> bool, check: impl Fn(&Value)) {
    let deadline = Instant::now() + WAIT;
    let mut latest: Vec<Value> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = sse
            .next_event(left)
            .unwrap_or_else(|| panic!("the stream ended or timed out; last seen: {latest:#?}"));
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        let changed: Vec<Value> = match event.event.as_str() {
            "servers" => data.as_array().cloned().unwrap_or_default(),
            "server" => vec![data],
            "statusChange" => {
                check(&serde_json::json!({"id": data["id"], "status": data["to"]}));
                continue;
            }
            _ => continue,
        };
        for server in changed {
            check(&server);
            latest.retain(|s| s["id"] != server["id"]);
            latest.push(server);
        }
        if until(&latest) {
            return;
        }
    }
}

// See: issue 10, item 4.
#[test]
fn issue_10_only_web_must_bind_its_port_other_process_types_run_without_one() {
    let dir = TempDir::new("procfile-web-worker");
    let base = free_port_base();
    let demo = tend_bin();
    // web binds only once the test says so, to show it is `starting` until then.
    fs::write(
        dir.path.join("Procfile"),
        format!(
            "web: while [ ! -e go ]; do sleep 0.05; done; exec '{}' serve-demo --port $PORT\n\
             worker: sleep 1000\n",
            demo.display()
        ),
    )
    .unwrap();
    let mut tend = ProcfileTend::start(&dir.path, &["--port", &base.to_string()]);
    let auth = format!("Bearer {TOKEN}");
    let mut sse = SseReader::connect_with(&tend.url, "/api/events", &[("Authorization", &auth)]);
    let worker_is_fine = |server: &Value| {
        if server["id"] == "worker" {
            assert!(
                server["status"] == "running",
                "worker was not running: {server}"
            );
        }
    };
    let status_of = |servers: &[Value], id: &str| {
        servers
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].clone())
    };
    watch_servers(
        &mut sse,
        |servers| {
            status_of(servers, "web") == Some("starting".into())
                && status_of(servers, "worker") == Some("running".into())
        },
        worker_is_fine,
    );
    let servers = tend.servers();
    let worker = &servers[1];
    assert_eq!(worker["ports"], serde_json::json!([]), "{worker}");
    let worker_pid = worker["pid"].as_u64().expect("worker's pid");
    // Polled: right after the spawn the PID may still be the shell on its way to exec.
    let port_var = format!("PORT={}", base + 100);
    wait_until("the worker to have its PORT too", WAIT, || {
        let environ = fs::read(format!("/proc/{worker_pid}/environ")).ok()?;
        let has = |var: &[u8]| var == port_var.as_bytes();
        environ.split(|b| *b == 0).any(has).then_some(())
    });

    fs::write(dir.path.join("go"), "").unwrap();
    watch_servers(
        &mut sse,
        |servers| status_of(servers, "web") == Some("running".into()),
        worker_is_fine,
    );
    let servers = tend.servers();
    assert_eq!(servers[0]["ports"][0]["port"], base, "{servers:?}");
    assert_eq!(servers[0]["ports"][0]["open"], true, "{servers:?}");
    assert_eq!(servers[1]["status"], "running", "{servers:?}");
    let log = fs::read_to_string(dir.path.join("tend.log")).unwrap();
    assert!(!log.contains("unhealthy"), "{log}");
}

#[test]
fn a_procfile_that_gained_a_line_starts_it_on_reload() {
    // See: issue 12
    let dir = TempDir::new("procfile-reload");
    let base = free_port_base();
    let web = "web: exec \"$TEND_BIN\" serve-demo --port $PORT\n";
    dir.write("Procfile", web);
    let mut tend = ProcfileTend::start(&dir.path, &["--port", &base.to_string()]);
    let running = |tend: &mut ProcfileTend, count: usize| {
        wait_until("the servers running", WAIT, || {
            let servers = tend.servers();
            let ready = servers.len() == count && servers.iter().all(|s| s["status"] == "running");
            ready.then_some(servers)
        })
    };
    let before = running(&mut tend, 1);

    dir.write(
        "Procfile",
        &format!("{web}worker: exec \"$TEND_BIN\" serve-demo --port $PORT\n"),
    );
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) = http_request(
        &tend.url,
        "POST",
        "/api/reload",
        &[("Authorization", &auth)],
        b"",
    );
    let plan: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{plan:#}");
    assert_eq!(plan["added"], json!(["worker"]), "{plan:#}");
    assert_eq!(plan["unchanged"], json!(["web"]), "{plan:#}");
    let after = running(&mut tend, 2);
    assert_eq!(after[0]["pid"], before[0]["pid"], "web was not touched");
    assert_eq!(after[1]["id"], "worker");
    // Only `web` must bind $PORT (issue 10): the new worker runs without a checked port.
    assert_eq!(after[1]["ports"], json!([]), "{:#}", after[1]);
}
