//! The state file (docs/DESIGN.md §6): what it holds and how it is written, adoption after `kill -9` of
//! tend without a second copy, PID reuse refused, a corrupt file moved aside, and adopted
//! processes that die or are stopped.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    GroupGuard, TempDir, Tend, free_port, group_members, pid_alive, proc_start_ticks, send_signal,
    wait_until,
};

/// A server that appends its PID to `pids-<id>` on every start, then becomes the demo server.
fn recorded(id: &str, port: Option<u16>) -> Value {
    let demo = match port {
        Some(port) => format!("exec \"$TEND_BIN\" serve-demo --port {port}"),
        None => "exec sleep 1000".to_string(),
    };
    let mut server = json!({"id": id, "command": format!("echo $$ >> pids-{id}; {demo}")});
    if let Some(port) = port {
        server["ports"] = json!([port]);
    }
    server
}

fn pid_of(server: &Value) -> u32 {
    server["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {server:#}")) as u32
}

/// Waits until the state file lists `id` with `pid`, and returns that entry.
fn wait_stored(tend: &Tend, id: &str, pid: u32) -> Value {
    wait_until(
        &format!("the state file to list {id} with PID {pid}"),
        Duration::from_secs(5),
        || {
            let entry = tend.state()["processes"][id].clone();
            (entry["pid"] == pid).then_some(entry)
        },
    )
}

#[test]
fn state_file_is_private_and_lists_running_processes() {
    let dir = TempDir::new("state_file");
    let port = free_port();
    let tend = Tend::start(&dir, &json!({"servers": [recorded("web", Some(port))]}));
    let pid = pid_of(&tend.wait_status("web", "running"));
    let entry = wait_stored(&tend, "web", pid);
    assert_eq!(entry["pgid"], pid, "{entry:#}");
    assert_eq!(entry["ports"], json!([port]), "{entry:#}");
    assert_eq!(
        entry["procStartTicks"],
        proc_start_ticks(pid).unwrap(),
        "{entry:#}"
    );
    assert!(entry["startTime"].as_u64().is_some(), "{entry:#}");
    assert!(
        entry["command"]
            .as_str()
            .is_some_and(|c| c.contains("serve-demo")),
        "{entry:#}"
    );
    let state = tend.state();
    assert_eq!(state["version"], 1, "{state:#}");
    assert!(
        state["bootId"].as_str().is_some_and(|b| !b.is_empty()),
        "{state:#}"
    );
    let mode = std::fs::metadata(&tend.state_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state file mode {mode:o}");

    // A stop removes the entry; the previous generation stays beside it.
    let (status, body) = tend.act("web", "stop");
    assert_eq!(status, 200, "{body}");
    wait_until("the entry to go", Duration::from_secs(5), || {
        tend.state()["processes"].get("web").is_none().then_some(())
    });
    let prev = tend.state_file.with_file_name("process-state.json.prev");
    assert!(prev.exists(), "no .prev generation");
    let mode = std::fs::metadata(&prev).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, ".prev mode {mode:o}");
}

#[test]
fn up_after_kill9_adopts_without_a_second_copy() {
    let dir = TempDir::new("adopt_after_kill9");
    let port = free_port();
    let config = json!({"servers": [recorded("web", Some(port))]});
    let mut first = Tend::start(&dir, &config);
    let pid = pid_of(&first.wait_status("web", "running"));
    wait_stored(&first, "web", pid);
    first.kill9();
    assert!(pid_alive(pid), "the server died with tend");

    let second = Tend::start(&dir, &config);
    let server = second.wait_status("web", "running");
    assert_eq!(server["pid"], pid, "not the same process: {server:#}");
    assert_eq!(server["adopted"], true, "{server:#}");
    // Let the monitor look at it: the port is held by the adopted process itself.
    let server = second.wait_server("web", "its port owned by the adopted PID", |s| {
        s["ports"][0]["ownerPid"] == pid && s["healthy"] == true
    });
    assert_eq!(server["orphaned"], false, "{server:#}");
    assert_eq!(
        dir.read("pids-web"),
        format!("{pid}\n"),
        "a second copy was spawned"
    );
    assert_eq!(group_members(pid), vec![pid]);
}

#[test]
fn pid_reuse_is_refused_when_start_ticks_differ() {
    let dir = TempDir::new("pid_reuse");
    let config = json!({"servers": [recorded("job", None)]});
    let mut first = Tend::start(&dir, &config);
    let old = pid_of(&first.wait_status("job", "running"));
    wait_stored(&first, "job", old);
    first.kill9();
    // tend must not touch it again; the test cleans it up.
    let _old_guard = GroupGuard::new(old);

    // Pretend the PID now belongs to another process.
    let mut state = first.state();
    let ticks = state["processes"]["job"]["procStartTicks"]
        .as_u64()
        .unwrap();
    state["processes"]["job"]["procStartTicks"] = json!(ticks + 7);
    std::fs::write(&first.state_file, serde_json::to_vec(&state).unwrap()).unwrap();

    let second = Tend::start(&dir, &config);
    let server = second.wait_server("job", "a new instance", |s| {
        s["status"] == "running" && s["pid"].as_u64().is_some_and(|p| p as u32 != old)
    });
    assert_eq!(server["adopted"], false, "{server:#}");
    let new = pid_of(&server);
    assert!(pid_alive(old), "tend signalled a PID it did not own");
    // The new shell records itself a moment after tend reports it running.
    wait_until(
        "the new instance to record its PID",
        Duration::from_secs(5),
        || (dir.read("pids-job").lines().count() >= 2).then_some(()),
    );
    assert_eq!(dir.read("pids-job"), format!("{old}\n{new}\n"));
    wait_stored(&second, "job", new);
    assert!(pid_alive(old), "tend signalled a PID it did not own");
}

#[test]
fn corrupt_state_is_moved_aside() {
    let dir = TempDir::new("corrupt_state");
    let garbage = b"{\"version\": 1, \"processes\": {garbage\x00\xff";
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/process-state.json"), garbage).unwrap();
    let config = json!({"servers": [{"id": "job", "command": "exec sleep 1000",
                                      "autostart": false}]});
    let tend = Tend::start(&dir, &config);
    assert_eq!(tend.server("job")["status"], "stopped");
    let moved: Vec<_> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("process-state.json.corrupt-")
        })
        .map(|e| e.path())
        .collect();
    assert_eq!(moved.len(), 1, "expected one .corrupt- file: {moved:?}");
    assert_eq!(
        std::fs::read(&moved[0]).unwrap(),
        garbage,
        "the bytes were not kept"
    );
    // tend works on from an empty state and writes a good file again.
    let (status, body) = tend.act("job", "start");
    assert_eq!(status, 200, "{body}");
    let pid = pid_of(&tend.wait_status("job", "running"));
    wait_stored(&tend, "job", pid);
}

#[test]
fn adopted_process_that_dies_is_crashed_and_restarted_per_policy() {
    let dir = TempDir::new("adopted_dies");
    let config = json!({"servers": [
        {"id": "once", "command": "exec sleep 1000", "restart": "no"},
        {"id": "again", "command": "exec sleep 1000", "restart": "on-failure",
         "backoff_ms": 5000},
    ]});
    let mut first = Tend::start(&dir, &config);
    let once = pid_of(&first.wait_status("once", "running"));
    let again = pid_of(&first.wait_status("again", "running"));
    wait_stored(&first, "once", once);
    wait_stored(&first, "again", again);
    first.kill9();

    let second = Tend::start(&dir, &config);
    for (id, pid) in [("once", once), ("again", again)] {
        let s = second.wait_status(id, "running");
        assert_eq!(s["pid"], pid, "{s:#}");
        assert_eq!(s["adopted"], true, "{s:#}");
    }
    send_signal(once as i32, libc::SIGKILL);
    send_signal(again as i32, libc::SIGKILL);

    let crashed = second.wait_status("once", "crashed");
    assert_eq!(crashed["exitCode"], Value::Null, "{crashed:#}");
    assert_eq!(crashed["pid"], Value::Null, "{crashed:#}");
    let restarted = second.wait_server_for(
        "again",
        "a new PID, soon (first failure)",
        Duration::from_secs(2),
        |s| s["status"] == "running" && s["pid"].as_u64().is_some_and(|p| p as u32 != again),
    );
    assert_eq!(restarted["restarts"], 1, "{restarted:#}");
    assert_eq!(restarted["adopted"], false, "{restarted:#}");
}

#[test]
fn adopted_process_can_be_stopped() {
    let dir = TempDir::new("adopted_stop");
    let config = json!({"servers": [{"id": "tree", "command": "sleep 1000 & sleep 1000"}]});
    let mut first = Tend::start(&dir, &config);
    let pid = pid_of(&first.wait_status("tree", "running"));
    wait_stored(&first, "tree", pid);
    wait_until("the whole tree", Duration::from_secs(5), || {
        (group_members(pid).len() >= 3).then_some(())
    });
    first.kill9();

    let second = Tend::start(&dir, &config);
    let s = second.wait_status("tree", "running");
    assert_eq!(s["adopted"], true, "{s:#}");
    let (status, body) = second.act("tree", "stop");
    assert_eq!(status, 200, "{body}");
    second.wait_status("tree", "stopped");
    wait_until(
        "the adopted group to be empty",
        Duration::from_secs(5),
        || group_members(pid).is_empty().then_some(()),
    );
    wait_until(
        "the entry to leave the state file",
        Duration::from_secs(5),
        || {
            second.state()["processes"]
                .get("tree")
                .is_none()
                .then_some(())
        },
    );
}
