//! The child a [`SessionCommand`] starts, read back from /proc. This test binary has no reaper,
//! so each test reaps its own children with waitpid(2) (std's waits are off limits: clippy.toml).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::config::CommandSpec;
use crate::os::process::describe_spawn_error;

/// A folder of its own for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("tend-spawn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    fn script(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills (if still running) and reaps our child `pid`; returns its wait status.
fn reap_child(pid: u32, kill: bool) -> i32 {
    if kill {
        // SAFETY: `pid` is our own unreaped child, so the PID cannot have been reused.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child, into a local.
    let reaped = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(reaped, pid as i32);
    status
}

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
        .trim()
        .to_string()
}

/// Runs `command` with its stdout and stderr on a pipe; returns what it wrote and its status.
fn run_to_end(mut command: SessionCommand) -> (String, i32) {
    let (read, write) = pipe().unwrap();
    let write_err = write.try_clone().unwrap();
    command.stdout(write).stderr(write_err);
    // The spawn closes this process's copies of the write end: the read ends with the child.
    let child = command.spawn(|_| ()).expect("spawned");
    let mut out = String::new();
    File::from(read).read_to_string(&mut out).unwrap();
    (out, reap_child(child.pid, false))
}

fn sh(script: &str) -> SessionCommand {
    let mut command = SessionCommand::new("/bin/sh", 0);
    command.arg("-c").arg(script);
    command
}

#[test]
fn the_child_leads_its_own_session_with_every_signal_default_and_none_blocked() {
    // What tend's child would otherwise inherit: Rust's runtime ignores SIGPIPE, and this
    // thread blocks SIGUSR1 (tend blocks every signal around the clone itself).
    assert_ne!(
        u64::from_str_radix(&status_field(std::process::id(), "SigIgn"), 16).unwrap()
            & (1 << (libc::SIGPIPE - 1)),
        0,
        "the fixture: this process ignores SIGPIPE"
    );
    // SAFETY: an empty set plus SIGUSR1, applied to this test thread only and undone below.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut sleep = SessionCommand::new("sleep", 0);
    sleep.arg("30");
    let child = sleep.spawn(|_| ()).expect("sleep starts");
    // SAFETY: as above, undoing the block.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    // The spawn returns once the exec is past its point of no return (the kernel lets the
    // parent go when the child drops tend's memory); the new name comes a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_field(child.pid, "Name") != "sleep" {
        assert!(Instant::now() < deadline, "the child never became sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    for field in ["SigBlk", "SigIgn", "SigCgt"] {
        assert_eq!(
            status_field(child.pid, field),
            "0000000000000000",
            "{field} of the child"
        );
    }
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.pid)).unwrap();
    let after_comm: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields 5 and 6 of stat: process group and session, both the child's own PID.
    assert_eq!(after_comm[2], child.pid.to_string(), "pgrp: {stat}");
    assert_eq!(after_comm[3], child.pid.to_string(), "session: {stat}");
    reap_child(child.pid, true);
}

#[test]
fn the_child_gets_the_descriptor_limit_it_was_given() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into our local struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0);
    let wanted = limit.rlim_max.min(limit.rlim_cur) - 7;
    let mut command = SessionCommand::new("sleep", wanted);
    command.arg("30");
    let child = command.spawn(|_| ()).expect("sleep starts");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.pid)).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let words: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(words[3], wanted.to_string(), "{open_files}");
    assert_eq!(
        words[4],
        limit.rlim_max.to_string(),
        "hard limit: {open_files}"
    );
    reap_child(child.pid, true);
}

#[test]
fn cwd_environment_stdin_and_descriptors_are_what_was_asked() {
    let scratch = Scratch::new("cwd-env");
    // Any variable of ours stands in for TEND_TOKEN: removing it must keep it from the child.
    let (removed, _) = std::env::vars()
        .find(|(k, _)| k != "PATH")
        .expect("the test process has an environment variable besides PATH");
    let mut command = sh(
        "pwd; echo \"A=$A\"; env | cut -d= -f1; echo stdin:; cat; echo; ls /proc/self/fd; \
         readlink /proc/self/fd/0",
    );
    command
        .current_dir(&scratch.0)
        .env("A", "a value")
        .env_remove(&removed);
    let (out, status) = run_to_end(command);
    assert_eq!(status, 0, "{out}");
    let mut lines = out.lines();
    let cwd = std::fs::canonicalize(&scratch.0).unwrap();
    assert_eq!(lines.next().map(Path::new), Some(cwd.as_path()), "{out}");
    assert_eq!(lines.next(), Some("A=a value"), "{out}");
    let names: Vec<&str> = lines.by_ref().take_while(|l| *l != "stdin:").collect();
    assert!(names.contains(&"PATH"), "{out}");
    assert!(
        !names.contains(&removed.as_str()),
        "{removed} reached the child:\n{out}"
    );
    assert_eq!(lines.next(), Some(""), "stdin was not empty:\n{out}");
    // 0, 1, 2 and ls's own listing; nothing else of this test process's.
    let fds: Vec<&str> = lines.by_ref().take(4).collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
    assert_eq!(lines.next(), Some("/dev/null"), "stdin:\n{out}");
}

#[test]
fn a_program_is_looked_up_in_the_path_the_child_gets_as_execvp_does() {
    let scratch = Scratch::new("path");
    let first = scratch.0.join("first");
    let second = scratch.0.join("second");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    // Not executable in the first folder: skipped for the executable one in the second.
    std::fs::write(first.join("tend-probe"), "#!/bin/sh\necho first\n").unwrap();
    let probe = second.join("tend-probe");
    std::fs::write(&probe, "#!/bin/sh\necho \"second $1\"\n").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // No `#!` line: run by /bin/sh, with its arguments.
    scratch.script("second/tend-bare", "echo \"bare $1\"\n", 0o755);
    let path = format!("{}:{}", first.display(), second.display());
    for (program, want) in [("tend-probe", "second x\n"), ("tend-bare", "bare x\n")] {
        let mut command = SessionCommand::new(program, 0);
        command.arg("x").env("PATH", &path);
        assert_eq!(run_to_end(command), (want.to_string(), 0), "{program}");
    }
}

/// Children of this process that are zombies and never exec'd (they still carry our name).
fn unexeced_zombies() -> Vec<u32> {
    let me = std::process::id();
    let name = status_field(me, "Name");
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{me}/task"))
        .unwrap()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if status.contains(&format!("Name:\t{name}\n")) && status.contains("State:\tZ") {
                found.push(pid);
            }
        }
    }
    found
}

#[test]
fn an_exec_that_fails_says_why_and_leaves_no_zombie() {
    let scratch = Scratch::new("exec-fails");
    let not_executable = scratch.script("plain", "#!/bin/sh\n", 0o644);
    let not_executable = not_executable.to_string_lossy().to_string();
    for (program, why) in [
        ("/nonexistent/tend-program", "not found"),
        ("tend-no-such-program-on-any-path", "not found"),
        (not_executable.as_str(), "permission denied"),
    ] {
        let want = format!("cannot run '{program}': {why}");
        let spec = CommandSpec::Exec(vec![program.to_string()]);
        let error = crate::os::process::session_command(&spec)
            .spawn(|pid| panic!("PID {pid} was started"))
            .expect_err("the exec fails");
        assert_eq!(error.step, Step::Exec);
        assert_eq!(describe_spawn_error(&spec, &error), want);
    }
    let mut missing_cwd = sh("true");
    missing_cwd.current_dir(scratch.0.join("gone"));
    let error = missing_cwd.spawn(|_| ()).expect_err("chdir fails");
    assert_eq!(error.step, Step::Chdir);
    let spec = CommandSpec::Shell("true".into());
    assert!(
        describe_spawn_error(&spec, &error)
            .starts_with("cannot run '/bin/sh': entering the working directory: "),
        "{error:?}"
    );
    // Holding the lock, no other test's spawn is between its failed child's exit and its reap.
    let _no_spawn = SPAWN_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_eq!(unexeced_zombies(), Vec::<u32>::new());
}

#[test]
fn spawns_from_many_threads_at_once_each_start_their_own_child() {
    let threads: Vec<_> = (0..6)
        .map(|thread| {
            std::thread::spawn(move || {
                for round in 0..40 {
                    let code = (thread * 40 + round) % 120 + 1;
                    if round % 5 == 0 {
                        let error = SessionCommand::new("/nonexistent/tend-program", 0)
                            .spawn(|_| ())
                            .expect_err("no such program");
                        assert_eq!(error.error.kind(), io::ErrorKind::NotFound);
                        continue;
                    }
                    let mut claimed = None;
                    let child = sh(&format!("exit {code}"))
                        .spawn(|pid| claimed = Some(pid))
                        .expect("sh starts");
                    assert_eq!(claimed, Some(child.pid));
                    let status = reap_child(child.pid, false);
                    assert!(libc::WIFEXITED(status), "{status}");
                    assert_eq!(libc::WEXITSTATUS(status), code);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a spawning thread panicked");
    }
}
