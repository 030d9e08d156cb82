//! Stopping: the whole process group, SIGKILL escalation, tend's own shutdown, `on_exit: keep`.

use std::time::Duration;

use serde_json::json;

use crate::support::{TempDir, Tend, demo_cmd, free_port, group_members, pid_alive, wait_until};

#[test]
fn stop_kills_grandchildren() {
    let dir = TempDir::new("stop_grandchildren");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [{"id": "tree", "command": "sleep 1000 & sleep 1000"}]}),
    );
    let server = tend.wait_status("tree", "running");
    let pgid = server["pid"].as_u64().unwrap() as u32;
    // pid = pgid = sid: the shell and both sleeps are in the group.
    let members = wait_until(
        "sh and both sleeps in the group",
        Duration::from_secs(5),
        || {
            let m = group_members(pgid);
            (m.len() >= 3).then_some(m)
        },
    );
    assert!(members.contains(&pgid), "{members:?}");

    let (status, body) = tend.act("tree", "stop");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "stopped", "{body}");
    wait_until(
        &format!("group {pgid} to be empty (was {members:?})"),
        Duration::from_secs(3),
        || group_members(pgid).is_empty().then_some(()),
    );
}

#[test]
fn stop_escalates_to_sigkill_when_term_is_ignored() {
    let dir = TempDir::new("stop_sigkill");
    let config = json!({"servers": [{
        "id": "stubborn",
        "command": "trap '' TERM; echo ready > ready; while :; do sleep 1; done",
        "stop_timeout_ms": 300,
    }]});
    let tend = Tend::start(&dir, &config);
    let server = tend.wait_status("stubborn", "running");
    let pgid = server["pid"].as_u64().unwrap() as u32;
    wait_until("the trap to be set", Duration::from_secs(5), || {
        (!dir.read("ready").is_empty()).then_some(())
    });

    let (status, body) = tend.act("stubborn", "stop");
    assert_eq!(status, 200, "{body}");
    let stopped = tend.wait_status("stubborn", "stopped");
    let error = stopped["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("SIGKILL"),
        "lastError does not mention SIGKILL: {stopped:#}"
    );
    wait_until(
        &format!("group {pgid} to be empty"),
        Duration::from_secs(3),
        || group_members(pgid).is_empty().then_some(()),
    );
}

#[test]
fn sigterm_to_tend_stops_servers_in_reverse_dependency_order_and_exits_0() {
    let dir = TempDir::new("shutdown_order");
    let stops = dir.join("stops.txt");
    let server = |id: &str, deps: &[&str]| {
        json!({
            "id": id,
            "command": format!(
                "trap 'echo $TEND_SERVER_ID >> {}; exit 0' TERM; echo ready > ready-{id}; \
                 while :; do sleep 1; done",
                stops.display()
            ),
            "depends_on": deps,
        })
    };
    // Config order is not dependency order, so the test sees which one tend follows.
    let config = json!({"servers": [
        server("mid", &["base"]),
        server("base", &[]),
        server("top", &["mid"]),
    ]});
    let mut tend = Tend::start(&dir, &config);
    let mut pids = Vec::new();
    for id in ["base", "mid", "top"] {
        let s = tend.wait_status(id, "running");
        pids.push(s["pid"].as_u64().unwrap() as u32);
        wait_until(&format!("{id}'s trap"), Duration::from_secs(5), || {
            (!dir.read(&format!("ready-{id}")).is_empty()).then_some(())
        });
    }

    let status = tend.terminate();
    assert!(
        status.success(),
        "tend exited with {status}; stderr:\n{}",
        tend.stderr_text()
    );
    assert_eq!(dir.read("stops.txt"), "top\nmid\nbase\n", "stop order");
    for pid in pids {
        assert!(
            group_members(pid).is_empty(),
            "group {pid} survived tend's shutdown"
        );
    }
}

#[test]
fn on_exit_keep_leaves_servers_running_and_next_up_adopts_them() {
    let dir = TempDir::new("on_exit_keep");
    let port = free_port();
    let config = json!({
        "on_exit": "keep",
        "servers": [{"id": "web", "command": demo_cmd(&["--port", &port.to_string()]),
                     "ports": [port]}],
    });
    let mut first = Tend::start(&dir, &config);
    let pid = first.wait_status("web", "running")["pid"].as_u64().unwrap() as u32;
    let status = first.terminate();
    assert!(status.success(), "tend exited with {status}");
    assert!(pid_alive(pid), "on_exit keep stopped the server");

    let second = Tend::start(&dir, &config);
    let adopted = second.wait_status("web", "running");
    assert_eq!(adopted["pid"], pid, "{adopted:#}");
    assert_eq!(adopted["adopted"], true, "{adopted:#}");
    assert_eq!(adopted["healthy"], true, "{adopted:#}");
}
