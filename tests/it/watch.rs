//! Restarts tend plans itself (issue 18, README "Restart on file changes" and "Restart on a
//! schedule"): `watch` with real files and inotify, `restart_every` on the clock, and the config
//! checks of `restart_at`.
//!
//! "Exactly one restart" is proved without waiting for nothing to happen: the watcher reports
//! changes in order, so after the restart under test a change to a sentinel file is made, and
//! the sentinel's restart must be the very next `plannedRestart` event.

use std::fs;

use serde_json::{Value, json};

use crate::support::{SseEvent, SseReader, TempDir, Tend, WAIT, tend_bin, wait_until};

/// A server that records each run in `runs` (outside what it watches) and stays up.
fn watcher(id: &str, watch: Value) -> Value {
    json!({
        "id": id,
        "command": "echo run >> runs; exec sleep 1000",
        "watch": watch,
        "stop_timeout_ms": 2000,
    })
}

/// Waits until the server has recorded `n` runs (a process is `running` as soon as it is
/// spawned, before its first line of shell).
fn wait_runs(dir: &TempDir, n: usize) {
    wait_until(&format!("{n} runs recorded"), WAIT, || {
        (dir.read("runs").lines().count() == n).then_some(())
    });
}

fn planned(sse: &mut SseReader) -> Value {
    sse.wait_for("plannedRestart", WAIT, |_| true).json()
}

fn is_running_with_new_pid(server: &Value, old: &Value) -> bool {
    server["status"] == "running" && server["pid"] != *old && !server["pid"].is_null()
}

/// Waits until the server runs a process other than `old`; its PID.
fn wait_new_pid(tend: &Tend, id: &str, old: &Value) -> Value {
    tend.wait_server(id, "a new running process", |s| {
        is_running_with_new_pid(s, old)
    })["pid"]
        .clone()
}

fn watched_paths(tend: &Tend, id: &str) -> u64 {
    tend.server(id)["watch"]["paths"].as_u64().unwrap_or(0)
}

#[test]
fn a_burst_of_changes_is_one_restart_and_ignored_paths_none() {
    let dir = TempDir::new("watch-burst");
    dir.write("src/app.js", "v1");
    dir.write("src/lib/util.js", "v1");
    let config = json!({"servers": [watcher("web", json!({
        "paths": ["src"],
        "ignore": ["*.tmp", "node_modules"],
        "debounce_ms": 200,
    }))]});
    let tend = Tend::start(&dir, &config);
    let first = tend.wait_status("web", "running");
    tend.wait_server("web", "two folders watched", |s| s["watch"]["paths"] == 2);
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);

    // 50 writes as fast as the test can make them: one editor save, one `git checkout`.
    for n in 0..50 {
        let file = if n % 2 == 0 {
            "src/app.js"
        } else {
            "src/lib/util.js"
        };
        fs::write(dir.join(file), format!("v{n}")).unwrap();
    }
    let event = planned(&mut sse);
    assert_eq!(event["id"], "web");
    assert_eq!(event["trigger"], "watch");
    assert_eq!(
        event["file"], "src/app.js",
        "the first file of the burst: {event}"
    );
    assert!(
        event["detail"]
            .as_str()
            .unwrap()
            .starts_with("src/app.js and "),
        "{event}"
    );
    assert_eq!(event["pid"], first["pid"]);
    let second = wait_new_pid(&tend, "web", &first["pid"]);

    // Ignored by name (at any depth) and by the folder it is in: nothing.
    dir.write("src/scratch.tmp", "x");
    dir.write("src/node_modules/pkg/index.js", "x");
    dir.write("src/.git/index", "x");
    dir.write("README.md", "not watched");
    // The sentinel: the next planned restart must be for it.
    fs::write(dir.join("src/app.js"), "sentinel").unwrap();
    let event = planned(&mut sse);
    assert_eq!(event["file"], "src/app.js", "{event}");
    assert_eq!(
        event["detail"], "src/app.js changed",
        "one file, however many events: {event}"
    );
    wait_new_pid(&tend, "web", &second);
    wait_runs(&dir, 3);
    let server = tend.server("web");
    assert_eq!(server["restarts"], 2, "{server:#}");
    assert_eq!(
        server["lastError"],
        Value::Null,
        "a planned restart is no error"
    );
}

#[test]
fn a_new_subfolder_is_watched_and_a_folder_that_comes_back_too() {
    let dir = TempDir::new("watch-subfolder");
    dir.write("src/app.js", "v1");
    dir.write("src/sub/x.js", "v1");
    let config = json!({"servers": [watcher("web", json!({"paths": ["src"], "debounce_ms": 50}))]});
    let tend = Tend::start(&dir, &config);
    let first = tend.wait_status("web", "running");
    tend.wait_server("web", "src watched", |s| s["watch"]["paths"] == 2);
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);

    // An empty folder is no change, but it is watched as soon as it appears.
    fs::create_dir_all(dir.join("src/new/deeper")).unwrap();
    wait_until("the new folders watched", WAIT, || {
        (watched_paths(&tend, "web") == 4).then_some(())
    });
    dir.write("src/new/deeper/page.js", "x");
    let event = planned(&mut sse);
    assert_eq!(event["file"], "src/new/deeper/page.js", "{event}");
    let second = wait_new_pid(&tend, "web", &first["pid"]);

    // The watched folder itself goes: its parent is watched to see it come back.
    fs::remove_dir_all(dir.join("src")).unwrap();
    let event = planned(&mut sse);
    assert_eq!(
        event["trigger"], "watch",
        "deleting files is a change: {event}"
    );
    let third = wait_new_pid(&tend, "web", &second);
    tend.wait_server(
        "web",
        "only the parent watched, to see src come back",
        |s| s["watch"]["paths"] == 1,
    );
    fs::create_dir_all(dir.join("src/sub")).unwrap();
    // src and src/sub; the parent is let go once src itself is watched.
    wait_until("src watched again", WAIT, || {
        (watched_paths(&tend, "web") == 2).then_some(())
    });
    // A file in the new src restarts it, so the watch is on the new folder, not the old one.
    dir.write("src/back.js", "x");
    let event = wait_for_file(&mut sse, "src/back.js");
    assert_eq!(event["trigger"], "watch");
    wait_new_pid(&tend, "web", &third);
}

/// The next `plannedRestart` for `file`; others before it (the folder's own creation may count
/// as a change) are allowed.
fn wait_for_file(sse: &mut SseReader, file: &str) -> Value {
    sse.wait_for("plannedRestart", WAIT, |e: &SseEvent| {
        e.json()["file"] == file
    })
    .json()
}

#[test]
fn a_change_during_a_restart_queues_exactly_one_more() {
    let dir = TempDir::new("watch-queue");
    dir.write("src/app.js", "v1");
    // Slow to stop: a second of cleanup after SIGTERM, so changes land mid-restart.
    let config = json!({"servers": [{
        "id": "slow",
        "command": "trap 'sleep 1; exit 0' TERM; echo run >> runs; while :; do sleep 0.05; done",
        "watch": {"paths": ["src"], "debounce_ms": 50},
        "stop_timeout_ms": 5000,
    }]});
    let tend = Tend::start(&dir, &config);
    let first = tend.wait_status("slow", "running");
    tend.wait_server("slow", "src watched", |s| s["watch"]["paths"] == 1);
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);

    fs::write(dir.join("src/app.js"), "v2").unwrap();
    let event = planned(&mut sse);
    assert_eq!(event["file"], "src/app.js");
    tend.wait_status("slow", "stopping");
    for n in 0..20 {
        fs::write(dir.join(&format!("src/during-{}.js", n % 3)), "x").unwrap();
    }
    fs::write(dir.join("src/last.js"), "x").unwrap();
    let queued = planned(&mut sse);
    assert_eq!(queued["file"], "src/during-0.js", "{queued}");
    assert_eq!(
        queued["detail"], "src/during-0.js changed during the last restart",
        "{queued}"
    );
    let second = tend.wait_server("slow", "running after the queued restart", |s| {
        s["status"] == "running" && s["restarts"] == 2
    });
    assert_ne!(second["pid"], first["pid"]);

    fs::write(dir.join("src/sentinel.js"), "x").unwrap();
    let event = planned(&mut sse);
    assert_eq!(
        event["file"], "src/sentinel.js",
        "no third restart for the burst: {event}"
    );
    tend.wait_server("slow", "three restarts done", |s| {
        s["status"] == "running" && s["restarts"] == 3
    });
}

#[test]
fn tends_own_logs_and_state_never_restart_a_server_watching_its_folder() {
    let dir = TempDir::new("watch-own-files");
    // The harness puts the log folder and the state file below the config folder, which is
    // the server's cwd; "." watches all of it.
    let config = json!({"servers": [{
        "id": "chatty",
        "command": "echo run >> runs; while :; do echo line; sleep 0.01; done",
        // The harness's own files (tend's stderr and stdout copies) are the test's, not tend's.
        "watch": {"paths": ["."], "ignore": ["runs", "tend.log", "tend.stdout"], "debounce_ms": 50},
    }]});
    let tend = Tend::start(&dir, &config);
    let first = tend.wait_status("chatty", "running");
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);
    wait_until("the log to grow", WAIT, || {
        (tend.log_text("chatty").lines().count() > 50).then_some(())
    });
    assert!(tend.state_file.exists(), "the state file was written");
    let history = tend.state_file.with_file_name("history.json");
    wait_until("the history written", WAIT, || {
        history.exists().then_some(())
    });
    dir.write("sentinel.txt", "x");
    let event = planned(&mut sse);
    assert_eq!(event["file"], "sentinel.txt", "{event}");
    wait_new_pid(&tend, "chatty", &first["pid"]);
    wait_runs(&dir, 2);
}

#[test]
fn restart_every_restarts_on_time_and_is_not_a_failure() {
    let dir = TempDir::new("restart-every");
    let config = json!({"servers": [{
        "id": "leaky",
        "command": "echo run >> runs; exec sleep 1000",
        "restart_every": "1s",
        "max_restarts": 1,
    }]});
    let tend = Tend::start(&dir, &config);
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);
    let mut pid = Value::Null;
    for round in 1..=3 {
        let server = tend.wait_server("leaky", "running with its planned restart", |s| {
            s["status"] == "running" && s["pid"] != pid && !s["plannedRestart"].is_null()
        });
        let start = server["startTime"].as_u64().unwrap();
        let at = server["plannedRestart"]["at"].as_u64().unwrap();
        assert_eq!(at, start + 1000, "one second after the start: {server:#}");
        assert_eq!(server["plannedRestart"]["by"], "restart_every 1s");
        let event = planned(&mut sse);
        assert_eq!(event["trigger"], "restart_every", "{event}");
        assert_eq!(event["detail"], "restart_every 1s");
        assert_eq!(event["pid"], server["pid"]);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now_ms >= at, "round {round}: not before it was due");
        pid = server["pid"].clone();
    }
    let server = tend.wait_server("leaky", "running after three planned restarts", |s| {
        s["status"] == "running" && s["restarts"].as_u64() >= Some(3)
    });
    // Three planned restarts and max_restarts 1: a real crash now is still restarted.
    let pid = server["pid"].as_u64().unwrap() as i32;
    crate::support::send_signal(pid, libc::SIGKILL);
    let after = tend.wait_server("leaky", "restarted after the crash", |s| {
        s["status"] == "running" && s["pid"].as_u64() != Some(pid as u64)
    });
    assert_ne!(after["status"], "fatal", "{after:#}");
}

#[test]
fn a_server_stopped_by_a_person_is_not_restarted_by_its_schedule() {
    let dir = TempDir::new("restart-every-stopped");
    let config = json!({"servers": [
        {"id": "a", "command": "exec sleep 1000", "restart_every": "1s"},
        {"id": "b", "command": "exec sleep 1000", "restart_every": "1s", "autostart": false},
    ]});
    let tend = Tend::start(&dir, &config);
    let a = tend.wait_status("a", "running");
    assert!(!a["plannedRestart"].is_null(), "{a:#}");
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);
    let (status, _) = tend.act("a", "stop");
    assert_eq!(status, 200);
    let stopped = tend.wait_status("a", "stopped");
    assert_eq!(stopped["plannedRestart"], Value::Null, "{stopped:#}");
    // b starts after a's restart was due; its own planned restart comes later than a's would.
    let (status, _) = tend.act("b", "start");
    assert_eq!(status, 200);
    let event = planned(&mut sse);
    assert_eq!(
        event["id"], "b",
        "a's schedule is skipped while it is stopped: {event}"
    );
    assert_eq!(tend.server("a")["status"], "stopped");
}

#[test]
fn restart_at_shows_the_next_minute_and_bad_keys_point_at_line_and_column() {
    let dir = TempDir::new("restart-at");
    let config = json!({"servers": [
        {"id": "cron", "command": "exec sleep 1000", "restart_at": "* * * * *"},
    ]});
    let tend = Tend::start(&dir, &config);
    let server = tend.wait_server("cron", "its planned restart", |s| {
        !s["plannedRestart"].is_null()
    });
    let at = server["plannedRestart"]["at"].as_u64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        at > now_ms.saturating_sub(1000) && at <= now_ms + 60_000,
        "{server:#}"
    );
    assert_eq!(at % 1000, 0, "on a whole second: {at}");
    assert_eq!(server["plannedRestart"]["by"], "restart_at * * * * *");

    let bad = dir.write(
        "bad.json",
        "{\"servers\": [\n  {\"id\": \"a\", \"command\": \"x\", \"restart_at\": \"0 25 * * *\"},\n  \
         {\"id\": \"b\", \"command\": \"x\", \"restart_every\": \"24\"},\n  \
         {\"id\": \"c\", \"command\": \"x\", \"restart_at\": \"0 4 31 feb *\"},\n  \
         {\"id\": \"d\", \"command\": \"x\", \"watch\": {\"path\": [\"src\"]}}\n]}\n",
    );
    let out = std::process::Command::new(tend_bin())
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = bad.display();
    for expected in [
        // At the field in the expression, not just at the string.
        format!("{file}:2:48: restart_at in server 'a': hour field: 25 is out of range (0–23)"),
        format!("{file}:3:48: restart_every in server 'b': '24' needs a unit"),
        format!("{file}:4:50: restart_at in server 'c': never happens: no month has that day"),
        format!("{file}:5:41: unknown key 'path' in watch in server 'd'; did you mean 'paths'?"),
        format!("{file}:5:40: watch in server 'd': missing required key 'paths'"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn a_reload_updates_watch_and_schedule_without_a_restart() {
    let dir = TempDir::new("watch-reload");
    dir.write("src/app.js", "v1");
    dir.write("lib/x.js", "v1");
    let mut config =
        json!({"servers": [watcher("web", json!({"paths": ["src"], "debounce_ms": 50}))]});
    let tend = Tend::start(&dir, &config);
    let first = tend.wait_server("web", "running and watching", |s| {
        s["status"] == "running" && s["watch"]["paths"] == 1
    });
    config["servers"][0]["watch"] = json!({"paths": ["src", "lib"], "debounce_ms": 50});
    config["servers"][0]["restart_every"] = json!("1h");
    let full = Tend::full_config(&dir, &config);
    dir.write("tend.json", &serde_json::to_string_pretty(&full).unwrap());
    let (status, plan) = tend.post("/api/reload", None);
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["updated"], json!(["web"]), "{plan}");
    let server = tend.wait_server("web", "two roots watched and a planned restart", |s| {
        s["watch"]["paths"] == 2 && !s["plannedRestart"].is_null()
    });
    assert_eq!(server["pid"], first["pid"], "updated, not restarted");
    let start = server["startTime"].as_u64().unwrap();
    assert_eq!(
        server["plannedRestart"]["at"].as_u64().unwrap(),
        start + 3_600_000,
        "from the running process's start"
    );
    let mut sse = SseReader::connect(&tend.url, "/api/events", None);
    fs::write(dir.join("lib/x.js"), "v2").unwrap();
    assert_eq!(planned(&mut sse)["file"], "lib/x.js");
    wait_new_pid(&tend, "web", &first["pid"]);
}

/// The kernel's watch limit, lowered for tend alone: in a user namespace of its own,
/// `user.max_inotify_watches` caps the watches its processes may add.
#[test]
fn at_the_inotify_watch_limit_tend_says_so_once_and_keeps_supervising() {
    let dir = TempDir::new("watch-limit");
    for n in 0..8 {
        dir.write(&format!("src/d{n}/f.js"), "x");
    }
    let config = json!({"servers": [
        watcher("web", json!({"paths": ["src"], "debounce_ms": 50})),
        {"id": "plain", "command": "exec sleep 1000"},
    ]});
    // Four watches: one is the log folder's, three are left for nine folders.
    let wrapper = [
        "unshare",
        "-U",
        "-r",
        "sh",
        "-c",
        "echo 4 > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"",
    ];
    let tend = Tend::start_wrapped(&dir, &config, &[], &[], &wrapper);
    let server = tend.wait_server("web", "the limit shown", |s| {
        s["status"] == "running" && !s["watch"]["error"].is_null()
    });
    let error = server["watch"]["error"].as_str().unwrap();
    assert!(
        error.contains(
            "limit of 4 inotify watches per user is reached (fs.inotify.max_user_watches)"
        ),
        "{error}"
    );
    assert!(
        error.contains("sysctl -w fs.inotify.max_user_watches="),
        "{error}"
    );
    assert_eq!(
        server["watch"]["paths"], 3,
        "what could be watched is: {server:#}"
    );
    // Still supervising: the other server runs, and a restart works.
    tend.wait_status("plain", "running");
    let (status, body) = tend.act("web", "restart");
    assert_eq!(status, 200, "{body}");
    wait_new_pid(&tend, "web", &server["pid"]);
    let log = tend.stderr_text();
    assert_eq!(
        log.matches("inotify watches per user is reached").count(),
        1,
        "said once:\n{log}"
    );
}
