//! Adoptable orphans (docs/DESIGN.md §12, issue 19): when tend's state is lost while its servers live
//! on, each one's port shows an orphan that is provably the server's own process; `tend adopt`
//! (or `adopt_orphans: true` on start) takes it over instead of killing it. A process that only
//! looks the part (a forged `TEND_SERVER_ID`) never is.

use std::fs;

use serde_json::{Value, json};

use crate::support::{
    LookAlike, TempDir, Tend, WAIT, demo_cmd, free_port, group_members, pid_alive, tend_bin,
    wait_until,
};

/// Two servers as tend runs them: `web` keeps its shell (a string with `&`: the shell leads the
/// group, the port is a child's), `api` is a string command exec'd with `$API_PORT` from its
/// env. Neither is started by tend on its own unless `autostart`.
fn two_servers(web_port: u16, api_port: u16, autostart: bool) -> Value {
    let tend = tend_bin().display().to_string();
    json!({"servers": [
        {"id": "web", "autostart": autostart, "ports": [web_port],
         "command": format!("{tend} serve-demo --port {web_port} --print-every-ms 0 & sleep 1000")},
        {"id": "api", "autostart": autostart, "ports": [api_port],
         "env": {"API_PORT": api_port.to_string()},
         "command": format!("{tend} serve-demo --port \"$API_PORT\" --print-every-ms 0")},
    ]})
}

/// Starts both servers, then loses tend and its state: SIGKILL, state folder removed. Returns
/// the dead tend (dropping it cleans up what it left behind, so the test keeps it to the end)
/// and each server's PID, still running.
fn lose_tend(dir: &TempDir, config: &Value) -> (Tend, u32, u32) {
    let mut tend = Tend::start(dir, config);
    for id in ["web", "api"] {
        if tend.server(id)["status"] != "running" {
            let _ = tend.act(id, "start");
        }
    }
    let web = tend.wait_status("web", "running")["pid"].as_u64().unwrap() as u32;
    let api = tend.wait_status("api", "running")["pid"].as_u64().unwrap() as u32;
    tend.kill9();
    fs::remove_dir_all(tend.state_file.parent().unwrap()).unwrap();
    assert!(pid_alive(web) && pid_alive(api));
    (tend, web, api)
}

#[test]
fn lost_servers_are_adoptable_orphans_and_adopt_takes_them_over() {
    let dir = TempDir::new("adopt_lost");
    let (web_port, api_port) = (free_port(), free_port());
    let config = two_servers(web_port, api_port, false);
    let (_lost, web_pid, api_pid) = lose_tend(&dir, &config);

    let mut tend = Tend::start(&dir, &config);
    for (id, pid) in [("web", web_pid), ("api", api_pid)] {
        let server = tend.wait_server(id, "an adoptable orphan", |s| {
            s["orphaned"] == true && s["adoptable"]["pid"] == pid
        });
        let evidence = server["adoptable"]["evidence"].as_str().unwrap_or_default();
        assert!(
            evidence.starts_with("same id, command and folder; started "),
            "{server:#}"
        );
        assert!(server["adoptable"]["startTime"].as_u64().unwrap() > 0);
        assert_eq!(server["notAdoptable"], Value::Null, "{server:#}");
        assert_eq!(server["status"], "stopped", "{server:#}");
    }
    // The warning says so, with the command that takes it over.
    wait_until("the orphan warning to name adopt", WAIT, || {
        tend.stderr_text().contains("adoptable: PID").then_some(())
    });
    assert!(tend.stderr_text().contains("`tend adopt web`"));

    // `tend adopt web`: the same process is web's again, the warning is gone.
    let out = tend.cli(&["adopt", "web"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("adopted 'web': PID {web_pid}")),
        "{stdout}"
    );
    let web = tend.wait_status("web", "running");
    assert_eq!(web["pid"], web_pid, "{web:#}");
    assert_eq!(web["adopted"], true, "{web:#}");
    assert_eq!(web["orphaned"], false, "{web:#}");
    assert_eq!(web["adoptable"], Value::Null, "{web:#}");
    // Recorded in the state file with its start time, as a restart of tend would find it.
    wait_until("web in the state file", WAIT, || {
        let state = tend.state();
        let entry = &state["processes"]["web"];
        (entry["pid"] == web_pid && entry["startTime"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    // Adopting again is refused: it has its own process now.
    let (status, body) = tend.act("web", "adopt");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "not_adoptable", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("has its own process"),
        "{body}"
    );

    // Stopped like any adopted server: the shell and its listening child, the whole group.
    let members = group_members(web_pid);
    assert!(members.len() >= 2, "web's group: {members:?}");
    let (status, body) = tend.act("web", "stop");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "stopped", "{body}");
    wait_until("web's whole group to be gone", WAIT, || {
        members.iter().all(|&pid| !pid_alive(pid)).then_some(())
    });

    // The API does the same for api; then tend's stop on exit takes it down too.
    let (status, body) = tend.act("api", "adopt");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pid"], api_pid, "{body}");
    assert_eq!(body["adopted"], true, "{body}");
    tend.wait_status("api", "running");
    tend.terminate();
    wait_until("api to be stopped with tend", WAIT, || {
        (!pid_alive(api_pid)).then_some(())
    });
}

#[test]
fn adopt_orphans_takes_over_every_lost_server_on_start() {
    let dir = TempDir::new("adopt_on_start");
    let (web_port, api_port) = (free_port(), free_port());
    let mut config = two_servers(web_port, api_port, true);
    let (_lost, web_pid, api_pid) = lose_tend(&dir, &config);

    config["adopt_orphans"] = json!(true);
    let tend = Tend::start(&dir, &config);
    for (id, pid) in [("web", web_pid), ("api", api_pid)] {
        let server = tend.wait_status(id, "running");
        assert_eq!(server["pid"], pid, "{server:#}");
        assert_eq!(server["adopted"], true, "{server:#}");
        assert_eq!(server["orphaned"], false, "{server:#}");
        assert_eq!(server["restarts"], 0, "{server:#}");
    }
    let log = tend.stderr_text();
    for (id, pid) in [("web", web_pid), ("api", api_pid)] {
        assert!(
            log.contains(&format!("Adopted orphan PID {pid} of '{id}' on start")),
            "{log}"
        );
    }
}

#[test]
fn a_forged_server_id_with_another_command_or_folder_is_not_adoptable() {
    let dir = TempDir::new("adopt_forged");
    let port = free_port();
    let config = json!({"adopt_orphans": true, "servers": [
        {"id": "web", "command": demo_cmd(&["--port", &port.to_string()]), "ports": [port],
         "autostart": false}]});
    // TEND_SERVER_ID=web, its own session, web's folder, but another command line.
    let argv: Vec<String> = demo_cmd(&["--port", &port.to_string(), "--print-every-ms", "7"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let forged = LookAlike::start("web", &argv, &dir.path, port);

    let tend = Tend::start(&dir, &config);
    let server = tend.wait_server("web", "a non-adoptable orphan", |s| {
        s["orphanedPid"] == forged.pid && s["notAdoptable"].is_string()
    });
    assert_eq!(server["adoptable"], Value::Null, "{server:#}");
    assert_eq!(server["adopted"], false, "{server:#}");
    let why = server["notAdoptable"].as_str().unwrap();
    assert!(why.contains("not the command of 'web'"), "{why}");

    let (status, body) = tend.act("web", "adopt");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "not_adoptable", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not the command of 'web'"),
        "{body}"
    );
    let out = tend.cli(&["adopt", "web"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not the command of 'web'"), "{stderr}");
    assert!(
        tend.stderr_text().contains("not adoptable: PID"),
        "{}",
        tend.stderr_text()
    );
    assert!(pid_alive(forged.pid));
    drop(forged);

    // The right command in another folder is no better.
    let other = TempDir::new("adopt_forged_elsewhere");
    let argv: Vec<String> = demo_cmd(&["--port", &port.to_string()])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let elsewhere = LookAlike::start("web", &argv, &other.path, port);
    let server = tend.wait_server("web", "the second forgery judged", |s| {
        s["orphanedPid"] == elsewhere.pid && s["notAdoptable"].is_string()
    });
    let why = server["notAdoptable"].as_str().unwrap();
    assert!(why.contains("not in the folder of 'web'"), "{why}");
    let (status, body) = tend.act("web", "adopt");
    assert_eq!(status, 409, "{body}");
    assert!(pid_alive(elsewhere.pid));
}

/// The verdict follows the config: a reload that makes the server's command the orphan's makes
/// it adoptable (and the server keeps its place and its orphan through the reload).
#[test]
fn a_reload_judges_the_orphan_by_the_new_command() {
    let dir = TempDir::new("adopt_reload");
    let port = free_port();
    let (extra, web_other) = (free_port(), free_port());
    let server = |args: &[&str]| json!({"id": "web", "command": demo_cmd(args), "ports": [port], "autostart": false});
    let before = json!({"servers": [
        {"id": "first", "command": ["sleep", "1000"], "ports": [web_other], "autostart": false},
        server(&["--port", &port.to_string()])]});
    let lost_args = ["--port", &port.to_string(), "--print-every-ms", "3"];
    let argv: Vec<String> = demo_cmd(&lost_args)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let lost = LookAlike::start("web", &argv, &dir.path, port);
    let tend = Tend::start(&dir, &before);
    tend.wait_server("web", "not adoptable", |s| {
        s["orphanedPid"] == lost.pid && s["notAdoptable"].is_string()
    });

    // The new config drops `first` (so web's index moves) and gives web the orphan's command.
    let after = json!({"servers": [
        server(&lost_args),
        {"id": "extra", "command": ["sleep", "1000"], "ports": [extra], "autostart": false}]});
    let text = serde_json::to_string_pretty(&Tend::full_config(&dir, &after)).unwrap();
    fs::write(&tend.config_path, text).unwrap();
    let (status, body) = tend.post("/api/reload", None);
    assert_eq!(status, 200, "{body}");
    let web = tend.wait_server("web", "adoptable after the reload", |s| {
        s["adoptable"]["pid"] == lost.pid
    });
    assert_eq!(web["notAdoptable"], Value::Null, "{web:#}");
    let (status, body) = tend.act("web", "adopt");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pid"], lost.pid, "{body}");
}

/// Another user's process is never adopted, even one that matches in every other way. Making
/// one needs root: as another user the test has nothing to show and says so.
#[test]
fn another_users_process_is_not_adoptable() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot start a process as another user; nothing to test");
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = TempDir::new("adopt_other_user");
    let port = free_port();
    let args = ["--port", &port.to_string()];
    let config = json!({"servers": [
        {"id": "web", "command": demo_cmd(&args), "ports": [port], "autostart": false}]});
    let argv: Vec<String> = demo_cmd(&args)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let theirs = LookAlike::start_as(Some(NOBODY), "web", &argv, &dir.path, port);
    let tend = Tend::start(&dir, &config);
    let web = tend.wait_server("web", "not adoptable", |s| {
        s["orphanedPid"] == theirs.pid && s["notAdoptable"].is_string()
    });
    let why = web["notAdoptable"].as_str().unwrap();
    assert!(why.contains(&format!("belongs to user {NOBODY}")), "{why}");
    let (status, body) = tend.act("web", "adopt");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("belongs to user"),
        "{body}"
    );
    assert!(pid_alive(theirs.pid));
}
