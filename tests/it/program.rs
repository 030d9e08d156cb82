//! Every figure is the program's, not its shell's (issue 10, docs/DESIGN.md §12): a string command that
//! is one simple command runs as if it began with `exec`, so tend's PID is the program's; other
//! strings keep their `/bin/sh -c`; a server's CPU and memory are its whole process group's.

use std::fs;
use std::process::Command;

use serde_json::json;

use crate::support::{TempDir, Tend, WAIT, free_port, group_members, tend_bin, wait_until};

/// The command name of a live process (`/proc/PID/comm`).
fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// The arguments of a live process (`/proc/PID/cmdline`), NUL-separated on the way in.
fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

fn environ(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|var| String::from_utf8_lossy(var).into_owned())
        .collect()
}

/// The tend binary as the first word of a string command: quoted, so the shell sees a literal
/// program name.
fn demo_line(args: &str) -> String {
    format!(
        "'{}' serve-demo --print-every-ms 0 {args}",
        tend_bin().display()
    )
}

fn running_pid(tend: &Tend, id: &str) -> u32 {
    let server = tend.wait_status(id, "running");
    server["pid"].as_u64().expect("a running server has a pid") as u32
}

#[test]
fn a_simple_string_command_is_the_program_and_shell_syntax_keeps_its_shell() {
    let dir = TempDir::new("string_exec");
    let port = free_port();
    let config = json!({"servers": [
        {"id": "forker", "command": demo_line(&format!("--port {port} --workers 2")),
         "ports": [port]},
        {"id": "sleeper", "command": "sleep 1000"},
        {"id": "assigns", "command": "TEND_GREETING='hello world' sleep 1000"},
        {"id": "piped", "command": "sleep 1000 | cat"},
    ]});
    let tend = Tend::start(&dir, &config);

    // A program that forks workers: tend's PID is the program (the group's leader), not sh.
    let forker = running_pid(&tend, "forker");
    assert_eq!(comm(forker), "tend", "{:?}", cmdline(forker));
    assert_eq!(
        cmdline(forker).get(1).map(String::as_str),
        Some("serve-demo")
    );
    let members = wait_until("the forker and its 2 workers", WAIT, || {
        let members = group_members(forker);
        (members.len() == 3).then_some(members)
    });
    for member in members {
        assert_eq!(comm(member), "tend", "no shell in the group: {member}");
    }

    let sleeper = running_pid(&tend, "sleeper");
    wait_until("sleep to be the server's PID", WAIT, || {
        (cmdline(sleeper) == ["sleep", "1000"]).then_some(())
    });

    // Assignments before the program still reach it. Polled: right after the spawn the PID
    // may still be the shell on its way to exec.
    let assigns = running_pid(&tend, "assigns");
    wait_until("sleep with TEND_GREETING", WAIT, || {
        let greeted = environ(assigns).contains(&"TEND_GREETING=hello world".to_string());
        (cmdline(assigns) == ["sleep", "1000"] && greeted).then_some(())
    });

    // A pipe needs its shell: the PID is sh's, with both sides of the pipe in its group.
    let piped = running_pid(&tend, "piped");
    assert_eq!(cmdline(piped), ["/bin/sh", "-c", "sleep 1000 | cat"]);
    let members = wait_until("sh, sleep and cat", WAIT, || {
        let members = group_members(piped);
        (members.len() == 3).then_some(members)
    });
    let mut names: Vec<String> = members.into_iter().map(comm).collect();
    names.sort();
    assert_eq!(names, ["cat", "sh", "sleep"]);

    // `tend check` says which way each one runs.
    let out = Command::new(tend_bin())
        .arg("check")
        .arg("--config")
        .arg(&tend.config_path)
        .output()
        .expect("run tend check");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        [
            "  forker: runs directly (exec)",
            "  sleeper: runs directly (exec)",
            "  assigns: runs directly (exec)",
            "  piped: runs under /bin/sh -c: contains a pipe",
        ]
    );
}

#[test]
fn export_says_how_each_server_runs_and_systemd_runs_the_same_script() {
    let dir = TempDir::new("string_exec_export");
    let config = json!({"servers": [
        {"id": "sleeper", "command": "sleep 1000"},
        {"id": "piped", "command": "sleep 1000 | cat"},
    ]});
    let path = dir.write("tend.json", &config.to_string());
    let export = |format: &str| {
        let out = Command::new(tend_bin())
            .args(["export", format, "--config"])
            .arg(&path)
            .output()
            .expect("run tend export");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let units = export("systemd");
    assert!(
        units.contains("# The command runs directly (exec).\n"),
        "{units}"
    );
    assert!(
        units.contains("ExecStart=/bin/sh -c \"exec sleep 1000\"\n"),
        "{units}"
    );
    assert!(
        units.contains("# The command runs under /bin/sh -c: contains a pipe.\n"),
        "{units}"
    );
    assert!(
        units.contains("ExecStart=/bin/sh -c \"sleep 1000 | cat\"\n"),
        "{units}"
    );
    let procfile = export("procfile");
    assert!(
        procfile.contains("# sleeper runs directly (exec) (under tend)\nsleeper: sleep 1000\n"),
        "{procfile}"
    );
    assert!(
        procfile.contains("# piped runs under /bin/sh -c: contains a pipe (under tend)\n"),
        "{procfile}"
    );
}

/// `name{server="ID"} VALUE` from `/metrics`.
fn metric(tend: &Tend, name: &str, id: &str) -> Option<f64> {
    let (status, _, body) = tend.request_raw("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let prefix = format!("{name}{{server=\"{id}\"}} ");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
}

// See: issue 10, item 2.
#[test]
fn a_servers_cpu_and_memory_are_its_whole_process_groups() {
    const MIB: u64 = 1 << 20;
    let dir = TempDir::new("group_figures");
    let port = free_port();
    // Two workers each hold 40 MiB and spend 300 ms of CPU; the master does neither.
    let command = demo_line(&format!(
        "--port {port} --workers 2 --worker-mb 40 --worker-cpu-ms 300"
    ));
    let config = json!({"servers": [{"id": "prefork", "command": command, "ports": [port]}]});
    let tend = Tend::start(&dir, &config);
    let master = running_pid(&tend, "prefork");

    let server = tend.wait_server("prefork", "the workers' memory counted", |s| {
        s["processes"] == 3 && s["rssBytes"].as_u64().is_some_and(|b| b >= 80 * MIB)
    });
    assert_eq!(server["pid"], master, "{server:#}");
    let main_rss = server["mainRssBytes"].as_u64().expect("mainRssBytes");
    assert!(main_rss < 40 * MIB, "the master holds little: {server:#}");
    let rss = server["rssBytes"].as_u64().unwrap();
    assert!(rss >= main_rss + 80 * MIB, "{server:#}");
    assert!(server["cpuPercent"].is_number(), "{server:#}");
    assert!(server["mainCpuPercent"].is_number(), "{server:#}");

    // /metrics shows the same group: memory, process count, and the workers' CPU time.
    wait_until("the workers' CPU time in /metrics", WAIT, || {
        let cpu = metric(&tend, "tend_server_cpu_seconds_total", "prefork")?;
        (cpu >= 0.55).then_some(())
    });
    let memory = metric(&tend, "tend_server_resident_memory_bytes", "prefork").unwrap();
    assert!(memory >= (80 * MIB) as f64, "{memory}");
    assert_eq!(metric(&tend, "tend_server_processes", "prefork"), Some(3.0));

    // `tend status` prints the API's figures: the group's memory, in MiB.
    let out = tend.cli(&["status", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert!(
        listed[0]["rssBytes"]
            .as_u64()
            .is_some_and(|b| b >= 80 * MIB),
        "{listed:#}"
    );
}
