//! The `exec` target: runs a rule's command with the alert as JSON on stdin and as `TEND_*`
//! variables, in its own session and process group (like a server, `process::spawn`), and
//! kills the whole group when it outlives the rule's `timeout_ms`. Its output (stdout and
//! stderr, one pipe) goes to tend's log, a line at a time.
//!
//! It never waits for the child itself: only the reaper does (clippy.toml). The reaper hands
//! this child's exit back through [`reaper::claim`], taken while the spawn still holds
//! `SPAWN_LOCK` (`SessionCommand::spawn`), so the exit cannot be reaped before someone listens for it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, bounded};

use super::alert::Alert;
use crate::config::CommandSpec;
use crate::http::auth::TOKEN_VAR;
use crate::model;
use crate::os::process;
use crate::os::reaper::{self, ExitStatus};
use crate::os::spawn::Stdin;

const LOG: &str = "Alerts";
/// After the kill at the timeout, how long to wait for the reaper to report the exit.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// The variables an alert command gets beside the JSON on stdin.
pub fn variables(alert: &Alert, rule: usize) -> Vec<(&'static str, String)> {
    let text = |v: Option<String>| v.unwrap_or_default();
    vec![
        ("TEND_EVENT", alert.event.clone()),
        ("TEND_SERVER", text(alert.server.clone())),
        ("TEND_PID", text(alert.pid.map(|p| p.to_string()))),
        ("TEND_PORT", text(alert.port.map(|p| p.to_string()))),
        ("TEND_REASON", alert.reason.clone()),
        ("TEND_SUMMARY", alert.summary.clone()),
        ("TEND_HOST", alert.host.clone()),
        ("TEND_AT", alert.at.clone()),
        ("TEND_HELD_BACK", alert.held_back.to_string()),
        (
            "TEND_TEST",
            (if alert.test { "1" } else { "0" }).to_string(),
        ),
        ("TEND_RULE", rule.to_string()),
    ]
}

/// Runs `command` for `alert`. `Ok` says how it ended when it exited 0; `Err` says why not:
/// "exit code 3", "timed out after 10000 ms; its process group was killed", "cannot run …".
pub fn run(
    command: &CommandSpec,
    cwd: &Path,
    alert: &Alert,
    rule: usize,
    timeout: Duration,
) -> Result<String, String> {
    let (output_read, output_write) = pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let output_err = output_write
        .try_clone()
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let mut cmd = process::session_command(command);
    cmd.current_dir(cwd)
        .stdin(Stdin::Piped)
        .stdout(output_write)
        .stderr(output_err)
        .env_remove(TOKEN_VAR)
        .envs(variables(alert, rule));
    let (exit_tx, exit_rx) = bounded(1);
    // The claim is made before the reaper can reap the child. The spawn closes tend's copies of
    // the pipe's write end: the reader sees the end of the output once every process of the
    // command has closed its own.
    let mut child = cmd
        .spawn(|pid| reaper::claim(pid, exit_tx))
        .map_err(|e| process::describe_spawn_error(command, &e))?;
    let pid = child.pid;
    let label = format!("alert rule {rule} (PID {pid})");
    forward_output(output_read, label.clone());
    if let Some(mut stdin) = child.stdin.take() {
        let json = serde_json::to_string(alert).expect("an alert serializes");
        // A command that does not read its stdin closes it: that is its business.
        let _ = stdin
            .write_all(json.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"));
    }
    match exit_rx.recv_timeout(timeout) {
        Ok(ExitStatus::Code(0)) => Ok("exit code 0".to_string()),
        Ok(ExitStatus::Code(code)) => Err(format!("exit code {code}")),
        Ok(ExitStatus::Signal(signal)) => Err(format!("killed by {}", model::signal_name(signal))),
        Ok(ExitStatus::Unknown) => Err("ended (status unknown)".to_string()),
        Err(RecvTimeoutError::Disconnected) => Err("its exit was lost".to_string()),
        Err(RecvTimeoutError::Timeout) => {
            log::warn!(target: LOG,
                "{label} ran past its timeout of {} ms; killing its process group", timeout.as_millis());
            let _ = process::signal_group(pid, libc::SIGKILL);
            let _ = exit_rx.recv_timeout(KILL_GRACE);
            Err(format!(
                "timed out after {} ms; its process group was killed",
                timeout.as_millis()
            ))
        }
    }
}

/// A pipe whose ends are close-on-exec in tend (the child gets its copies as stdout/stderr).
fn pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors; each is owned once, here.
    unsafe { Ok((File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Logs the command's output line by line on a thread of its own, which ends with the output
/// (a process that escaped the group and keeps the pipe open keeps only this thread).
fn forward_output(output: File, label: String) {
    let spawned = std::thread::Builder::new()
        .name("alert-output".into())
        .spawn(move || {
            let mut reader = BufReader::new(output);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end();
                        if !text.is_empty() {
                            log::info!(target: LOG, "{label}: {text}");
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!(target: LOG, "Cannot read the output of {}: {e}", "an alert command");
    }
}
