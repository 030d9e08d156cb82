//! Live config reload (issue 12, README "Changing the config"): `POST /api/reload`, SIGHUP and
//! `tend reload` read the config again and move only what changed. Real tend, real processes:
//! each test rewrites the tend.json that tend was started with and checks PIDs, the list, the
//! state file, /metrics and process groups afterwards.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    SseReader, TempDir, Tend, demo_cmd, free_port, group_members, pid_alive, send_signal,
    wait_until,
};

const WAIT: Duration = Duration::from_secs(10);

fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": ["sleep", "1000"]})
}

/// Rewrites the tend.json tend was started with (the harness defaults filled in as at start).
fn write_config(dir: &TempDir, config: &Value) {
    let full = Tend::full_config(dir, config);
    dir.write("tend.json", &serde_json::to_string_pretty(&full).unwrap());
}

/// `POST /api/reload`, which must answer 200; the plan.
fn reload(tend: &Tend) -> Value {
    let (status, body) = tend.post("/api/reload", None);
    assert_eq!(status, 200, "POST /api/reload: {body}");
    body
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// The plan's five lists, in the order added, removed, restarted, updated, unchanged.
fn lists(plan: &Value) -> [Vec<&str>; 5] {
    [
        ids(&plan["added"]),
        ids(&plan["removed"]),
        ids(&plan["restarted"]),
        ids(&plan["updated"]),
        ids(&plan["unchanged"]),
    ]
}

fn pid_of(server: &Value) -> u32 {
    server["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {server:#}")) as u32
}

fn running_pid(tend: &Tend, id: &str) -> u32 {
    pid_of(&tend.wait_status(id, "running"))
}

fn list_ids(tend: &Tend) -> Vec<String> {
    tend.servers()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_group_empty(pgid: u32) {
    wait_until(&format!("process group {pgid} to be empty"), WAIT, || {
        group_members(pgid).is_empty().then_some(())
    });
}

#[test]
fn reload_adds_and_removes_servers_and_leaves_the_rest_untouched() {
    let dir = TempDir::new("reload_add_remove");
    let gone = json!({"id": "gone", "command": ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]});
    let tend = Tend::start(
        &dir,
        &json!({"servers": [sleeper("a"), gone.clone(), sleeper("b")]}),
    );
    // `a` crashes once first, so it has a restart count the reload must keep.
    let first = running_pid(&tend, "a");
    send_signal(first as i32, libc::SIGKILL);
    let a = tend.wait_server("a", "a restart", |s| {
        s["status"] == "running" && s["restarts"] == 1 && s["pid"] != first
    });
    let b = tend.server("b");
    let gone_pgid = running_pid(&tend, "gone");
    wait_until("gone's children", WAIT, || {
        (group_members(gone_pgid).len() == 3).then_some(())
    });

    write_config(
        &dir,
        &json!({"servers": [sleeper("a"), sleeper("b"), sleeper("new")]}),
    );
    let plan = reload(&tend);
    assert_eq!(
        lists(&plan),
        [vec!["new"], vec!["gone"], vec![], vec![], vec!["a", "b"]],
        "{plan:#}"
    );
    assert_eq!(plan["needsTendRestart"], json!([]), "{plan:#}");

    // Removed: stopped with its whole group, gone from the list, the API, the state file and
    // /metrics; its log file stays.
    wait_group_empty(gone_pgid);
    assert_eq!(list_ids(&tend), ["a", "b", "new"]);
    assert_eq!(tend.get("/api/servers/gone").0, 404);
    assert!(tend.log_dir.join("gone.log").exists(), "the log file stays");
    let new_pid = running_pid(&tend, "new");
    wait_until("the state file to follow", WAIT, || {
        let state = tend.state();
        let processes = state["processes"].as_object()?;
        (processes.get("gone").is_none() && processes.get("new").is_some()).then_some(())
    });
    let (status, metrics) = tend.get("/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(!metrics.contains("server=\"gone\""), "{metrics}");
    assert!(metrics.contains("server=\"new\""), "{metrics}");

    // Unchanged: same process, same start, same restart count.
    for before in [&a, &b] {
        let now = tend.server(before["id"].as_str().unwrap());
        for key in ["pid", "startTime", "restarts", "status"] {
            assert_eq!(now[key], before[key], "{key}: {now:#}");
        }
    }

    // The same file again: all unchanged, nothing moves.
    let again = reload(&tend);
    assert_eq!(
        lists(&again),
        [vec![], vec![], vec![], vec![], vec!["a", "b", "new"]],
        "{again:#}"
    );
    assert_eq!(pid_of(&tend.server("new")), new_pid);
    assert_eq!(tend.server("a")["pid"], a["pid"]);
}

#[test]
fn a_changed_command_restarts_that_server_alone() {
    let dir = TempDir::new("reload_command");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("web"), sleeper("db")]}));
    let web = running_pid(&tend, "web");
    let db = running_pid(&tend, "db");

    write_config(
        &dir,
        &json!({"servers": [{"id": "web", "command": ["sleep", "1001"]}, sleeper("db")]}),
    );
    let plan = reload(&tend);
    assert_eq!(
        lists(&plan),
        [vec![], vec![], vec!["web"], vec![], vec!["db"]],
        "{plan:#}"
    );
    assert_eq!(plan["changes"]["web"], "command changed", "{plan:#}");
    let now = tend.wait_server("web", "a new process", |s| {
        s["status"] == "running" && s["pid"] != web
    });
    assert_eq!(now["command"], "sleep 1001");
    wait_group_empty(web);
    assert_eq!(pid_of(&tend.server("db")), db);
}

#[test]
fn new_env_file_contents_restart_the_server() {
    let dir = TempDir::new("reload_env_file");
    dir.write(".env", "GREETING=one\n");
    let server = json!({"id": "greeter", "env_file": ".env",
        "command": "echo \"greeting=$GREETING\"; exec sleep 1000"});
    let tend = Tend::start(&dir, &json!({"servers": [server.clone()]}));
    let first = running_pid(&tend, "greeter");
    wait_until("the first greeting", WAIT, || {
        tend.log_text("greeter")
            .contains("greeting=one")
            .then_some(())
    });

    // The config file itself is the same: only what the env_file holds changed.
    dir.write(".env", "GREETING=two\n");
    let plan = reload(&tend);
    assert_eq!(ids(&plan["restarted"]), ["greeter"], "{plan:#}");
    assert_eq!(plan["changes"]["greeter"], "env_file contents changed");
    tend.wait_server("greeter", "a new process", |s| {
        s["status"] == "running" && s["pid"] != first
    });
    wait_until("the second greeting", WAIT, || {
        tend.log_text("greeter")
            .contains("greeting=two")
            .then_some(())
    });
    assert_eq!(ids(&reload(&tend)["unchanged"]), ["greeter"]);
}

#[test]
fn changing_only_max_restarts_keeps_the_process_and_applies_the_new_limit() {
    let dir = TempDir::new("reload_max_restarts");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("worker")]}));
    let before = tend.wait_status("worker", "running");

    write_config(
        &dir,
        &json!({"servers": [{"id": "worker", "command": ["sleep", "1000"], "max_restarts": 0}]}),
    );
    let plan = reload(&tend);
    assert_eq!(ids(&plan["updated"]), ["worker"], "{plan:#}");
    assert_eq!(plan["changes"]["worker"], "max_restarts changed");
    let after = tend.server("worker");
    for key in ["pid", "startTime", "restarts", "status"] {
        assert_eq!(after[key], before[key], "{key}: {after:#}");
    }
    // The running process is supervised by the new limit: no restart is left for it.
    send_signal(pid_of(&after) as i32, libc::SIGKILL);
    let fatal = tend.wait_status("worker", "fatal");
    assert_eq!(fatal["restarts"], 0, "{fatal:#}");
}

#[test]
fn a_dependency_chain_restarts_from_the_changed_server_down() {
    let dir = TempDir::new("reload_chain");
    let port = free_port();
    let api = |print_every: &str| {
        json!({"id": "api", "depends_on": ["db"], "ports": [port],
            "command": demo_cmd(&["--port", &port.to_string(), "--print-every-ms", print_every])})
    };
    let rest = |api: Value| {
        json!({"servers": [
            sleeper("db"),
            api,
            {"id": "web", "command": ["sleep", "1000"], "depends_on": ["api"]},
            {"id": "side", "command": ["sleep", "1000"], "depends_on": ["db"]},
        ]})
    };
    let tend = Tend::start(&dir, &rest(api("1000")));
    let db = running_pid(&tend, "db");
    let side = running_pid(&tend, "side");
    let old_api = running_pid(&tend, "api");
    let old_web = running_pid(&tend, "web");

    write_config(&dir, &rest(api("2000")));
    let plan = reload(&tend);
    assert_eq!(
        lists(&plan),
        [
            vec![],
            vec![],
            vec!["api", "web"],
            vec![],
            vec!["db", "side"]
        ],
        "{plan:#}"
    );
    assert_eq!(plan["changes"]["web"], "follows 'api'", "{plan:#}");
    let api_now = tend.wait_server("api", "a new process", |s| {
        s["status"] == "running" && s["pid"] != old_api
    });
    let web_now = tend.wait_server("web", "a new process", |s| {
        s["status"] == "running" && s["pid"] != old_web
    });
    // web started only once the new api ran (its port open).
    assert!(
        web_now["startTime"].as_u64() >= api_now["startTime"].as_u64(),
        "web {web_now:#} before api {api_now:#}"
    );
    wait_group_empty(old_api);
    wait_group_empty(old_web);
    assert_eq!(pid_of(&tend.server("db")), db);
    assert_eq!(pid_of(&tend.server("side")), side);
}

#[test]
fn an_invalid_config_changes_nothing_and_every_error_is_listed() {
    let dir = TempDir::new("reload_invalid");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("a"), sleeper("b")]}));
    let a = running_pid(&tend, "a");
    let b = running_pid(&tend, "b");

    // Three problems on three lines: a typo, a duplicate id, an unknown dependency.
    let bad = Tend::full_config(&dir, &json!({"servers": []}));
    let mut text = serde_json::to_string_pretty(&bad).unwrap();
    text = text.replace(
        "\"servers\": []",
        "\"servers\": [\n    {\"id\": \"a\", \"command\": \"sleep 1\", \"restrat\": \"no\"},\n    \
         {\"id\": \"a\", \"command\": \"sleep 1\"},\n    \
         {\"id\": \"c\", \"command\": \"sleep 1\", \"depends_on\": [\"zzz\"]}\n  ]",
    );
    dir.write("tend.json", &text);
    let (status, body) = tend.post("/api/reload", None);
    assert_eq!(status, 400, "{body:#}");
    assert_eq!(body["code"], "invalid_config", "{body:#}");
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 3, "{body:#}");
    let path = tend.config_path.display().to_string();
    for (error, what) in errors.iter().zip(["restrat", "'a'", "zzz"]) {
        let rest = error
            .strip_prefix(&format!("{path}:"))
            .unwrap_or_else(|| panic!("not at {path}: {error}"));
        let mut parts = rest.splitn(3, ':');
        let line: u32 = parts.next().unwrap().parse().expect("a line number");
        let col: u32 = parts.next().unwrap().parse().expect("a column number");
        assert!(line > 1 && col > 0, "{error}");
        assert!(parts.next().unwrap().contains(what), "{error}");
    }

    // Nothing changed.
    assert_eq!(list_ids(&tend), ["a", "b"]);
    assert_eq!(pid_of(&tend.server("a")), a);
    assert_eq!(pid_of(&tend.server("b")), b);

    // The CLI: exit 1, every error on stderr.
    let out = tend.cli(&["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for error in &errors {
        assert!(stderr.contains(error), "{error} not in:\n{stderr}");
    }
    assert!(
        tend.stderr_text().contains("Config not reloaded"),
        "no error line in tend's log"
    );
}

#[test]
fn sighup_reloads_and_an_invalid_file_is_logged() {
    let dir = TempDir::new("reload_sighup");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("a")]}));
    let a = running_pid(&tend, "a");

    write_config(&dir, &json!({"servers": [sleeper("a"), sleeper("added")]}));
    send_signal(tend.pid as i32, libc::SIGHUP);
    // A signal has no answer: wait for its effect.
    wait_until("'added' to be listed", WAIT, || {
        list_ids(&tend).contains(&"added".to_string()).then_some(())
    });
    running_pid(&tend, "added");
    assert_eq!(pid_of(&tend.server("a")), a);
    assert!(
        tend.stderr_text().contains("Config reloaded"),
        "{}",
        tend.stderr_text()
    );

    dir.write("tend.json", "{\"servers\": [\n  {\"id\": \"a\",}\n]}\n");
    send_signal(tend.pid as i32, libc::SIGHUP);
    let path = tend.config_path.display().to_string();
    wait_until("the error line in tend's log", WAIT, || {
        let log = tend.stderr_text();
        log.lines()
            .any(|l| l.contains("Config not reloaded") && l.contains(&format!("{path}:2:")))
            .then_some(())
    });
    assert_eq!(list_ids(&tend), ["a", "added"]);
    assert_eq!(pid_of(&tend.server("a")), a);
    assert!(pid_alive(tend.pid), "SIGHUP must not stop tend");
}

#[test]
fn tend_reload_prints_the_plan() {
    let dir = TempDir::new("reload_cli");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("a"), sleeper("b")]}));
    running_pid(&tend, "a");
    write_config(
        &dir,
        &json!({"servers": [{"id": "a", "command": ["sleep", "1001"]}, sleeper("c")]}),
    );
    let out = tend.cli(&["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "reloaded {}\n  added      c\n  removed    b\n  restarted  a (command changed)\n",
            tend.config_path.display()
        )
    );
}

#[test]
fn a_stop_and_a_reload_racing_a_reload_wait_for_it() {
    let dir = TempDir::new("reload_race");
    // Ignores SIGTERM: its stop takes the whole stop_timeout, which keeps the reload busy.
    let slow = |tag: &str| {
        json!({"id": "slow", "stop_timeout_ms": 800,
            "command": ["sh", "-c", format!("trap '' TERM; echo trapped; while :; do sleep 0.05; done # {tag}")]})
    };
    let tend = Tend::start(&dir, &json!({"servers": [slow("one"), sleeper("other")]}));
    let old = running_pid(&tend, "slow");
    wait_trapped(&tend, "slow");
    let other = running_pid(&tend, "other");

    write_config(&dir, &json!({"servers": [slow("two"), sleeper("other")]}));
    let (first, stop, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| reload(&tend));
        tend.wait_status("slow", "stopping");
        // Both arrive while the reload waits for the old instance to die.
        let stop = scope.spawn(|| tend.act("slow", "stop"));
        let second = scope.spawn(|| reload(&tend));
        (
            first.join().unwrap(),
            stop.join().unwrap(),
            second.join().unwrap(),
        )
    });
    assert_eq!(ids(&first["restarted"]), ["slow"], "{first:#}");
    // The stop acted on the reloaded server (the new instance), after the reload.
    let (status, body) = stop;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["status"], "stopped", "{body:#}");
    // The second reload found the file already applied.
    assert_eq!(ids(&second["restarted"]), Vec::<&str>::new(), "{second:#}");
    assert!(ids(&second["unchanged"]).contains(&"other"), "{second:#}");
    wait_group_empty(old);
    let now = tend.server("slow");
    assert_eq!(now["status"], "stopped", "{now:#}");
    assert_eq!(now["pid"], Value::Null);
    assert_eq!(pid_of(&tend.server("other")), other);
    wait_until("no slow process in the state file", WAIT, || {
        tend.state()["processes"]
            .get("slow")
            .is_none()
            .then_some(())
    });
}

#[test]
fn a_removed_server_that_ignores_sigterm_is_killed_not_left_running() {
    // See: issue 12 (supervisord once left removed programs running unmanaged, its #99).
    let dir = TempDir::new("reload_remove_stubborn");
    let stubborn = json!({"id": "stubborn", "stop_timeout_ms": 300,
        "command": ["sh", "-c", "trap '' TERM; echo trapped; sleep 1000 & while :; do sleep 0.05; done"]});
    let tend = Tend::start(&dir, &json!({"servers": [stubborn, sleeper("kept")]}));
    let pgid = running_pid(&tend, "stubborn");
    wait_trapped(&tend, "stubborn");
    write_config(&dir, &json!({"servers": [sleeper("kept")]}));
    let plan = reload(&tend);
    assert_eq!(ids(&plan["removed"]), ["stubborn"], "{plan:#}");
    // The answer comes once the group is gone.
    assert!(group_members(pgid).is_empty(), "{:?}", group_members(pgid));
    assert_eq!(list_ids(&tend), ["kept"]);
}

#[test]
fn top_level_keys_that_need_a_restart_of_tend_are_reported_and_kept() {
    let dir = TempDir::new("reload_top_level");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("a")]}));
    let a = running_pid(&tend, "a");
    let other = free_port();
    write_config(
        &dir,
        &json!({"listen": format!("127.0.0.1:{other}"), "health_interval_ms": 500,
            "on_exit": "keep", "servers": [sleeper("a")]}),
    );
    let plan = reload(&tend);
    assert_eq!(
        plan["needsTendRestart"],
        json!(["listen", "health_interval_ms"]),
        "{plan:#}"
    );
    assert_eq!(ids(&plan["unchanged"]), ["a"]);
    // Still where it was, and the next reload still says so.
    assert_eq!(pid_of(&tend.server("a")), a);
    assert_eq!(
        reload(&tend)["needsTendRestart"],
        json!(["listen", "health_interval_ms"])
    );
}

#[test]
fn the_event_stream_gets_the_new_list_and_a_config_reloaded_event() {
    let dir = TempDir::new("reload_sse");
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("a"), sleeper("b")]}));
    running_pid(&tend, "a");
    let mut events = SseReader::connect(&tend.url, "/api/events", None);
    events.wait_for("servers", WAIT, |_| true);

    write_config(&dir, &json!({"servers": [sleeper("a"), sleeper("c")]}));
    reload(&tend);
    let snapshot = events.wait_for("servers", WAIT, |_| true);
    let listed: Vec<String> = snapshot
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["a", "c"]);
    let reloaded = events.wait_for("configReloaded", WAIT, |_| true);
    let plan = reloaded.json();
    assert_eq!(
        lists(&plan),
        [vec!["c"], vec!["b"], vec![], vec![], vec!["a"]],
        "{plan:#}"
    );
    assert!(reloaded.id.is_some(), "a timeline event has an id");
}

#[test]
fn new_log_limits_apply_to_running_servers_without_touching_them() {
    let dir = TempDir::new("reload_log_limits");
    let talker = json!({"id": "talker",
        "command": ["sh", "-c", "while :; do echo 'a line of about forty bytes, again'; sleep 0.005; done"]});
    let tend = Tend::start(
        &dir,
        &json!({"log_max_bytes": 1048576, "servers": [talker.clone()]}),
    );
    let pid = running_pid(&tend, "talker");
    let rotated = tend.log_dir.join("talker.log.1");
    assert!(!rotated.exists());

    write_config(
        &dir,
        &json!({"log_max_bytes": 4096, "log_keep": 2, "servers": [talker]}),
    );
    let plan = reload(&tend);
    assert_eq!(ids(&plan["unchanged"]), ["talker"], "{plan:#}");
    assert_eq!(plan["needsTendRestart"], json!([]), "{plan:#}");
    wait_until("a rotation at the new limit", WAIT, || {
        rotated.exists().then_some(())
    });
    assert_eq!(pid_of(&tend.server("talker")), pid);
}

#[test]
fn a_reload_during_a_persons_stop_leaves_the_server_stopped() {
    let dir = TempDir::new("reload_during_stop");
    let slow = |tag: &str| {
        json!({"id": "slow", "stop_timeout_ms": 800,
            "command": ["sh", "-c", format!("trap '' TERM; echo trapped; while :; do sleep 0.05; done # {tag}")]})
    };
    // `going` first: removing it moves `slow` to another index in the middle of its stop, with
    // its escalation timer, its PID record and the stop's pending answer.
    let tend = Tend::start(&dir, &json!({"servers": [sleeper("going"), slow("one")]}));
    let slow_pid = running_pid(&tend, "slow");
    wait_trapped(&tend, "slow");
    let going = running_pid(&tend, "going");
    write_config(&dir, &json!({"servers": [slow("two")]}));
    let plan = std::thread::scope(|scope| {
        let stop = scope.spawn(|| tend.act("slow", "stop"));
        tend.wait_status("slow", "stopping");
        let plan = reload(&tend);
        let (status, body) = stop.join().unwrap();
        assert_eq!(status, 200, "{body:#}");
        plan
    });
    // Someone is stopping it: the new command is taken, nothing is started.
    assert_eq!(ids(&plan["updated"]), ["slow"], "{plan:#}");
    assert_eq!(ids(&plan["removed"]), ["going"], "{plan:#}");
    wait_group_empty(going);
    let now = tend.wait_status("slow", "stopped");
    assert_eq!(now["pid"], Value::Null, "{now:#}");
    assert!(
        now["command"].as_str().unwrap().ends_with("# two"),
        "{now:#}"
    );
    // The escalation armed before the swap still fired after it.
    assert!(
        now["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("SIGKILL")),
        "{now:#}"
    );
    wait_group_empty(slow_pid);
    assert_eq!(list_ids(&tend), ["slow"]);
}

/// Waits until the server's shell has set `trap '' TERM` (it says so in its log): a SIGTERM that
/// came before would end it at once, and the test would not see the stop it means to.
fn wait_trapped(tend: &Tend, id: &str) {
    wait_until("the TERM trap to be set", WAIT, || {
        tend.log_text(id).contains("trapped").then_some(())
    });
}
