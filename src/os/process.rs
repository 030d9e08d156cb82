//! ProcessManager: spawns a server's process in its own session with its log file, and sends
//! signals to process groups and to verified PIDs. It keeps no state; the supervisor owns that.
//! Runs on the supervisor thread (spawn, signal) and on HTTP threads (orphan kills).
//!
//! It never waits for a child: the reaper is the only code that does (see `reaper.rs`), but for
//! a child whose exec failed, which the spawn reaps itself (`spawn.rs`).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{CommandSpec, ServerConfig, parse_env_file};
use crate::http::auth::TOKEN_VAR;
use crate::logs::paths::open_log;
use crate::os::spawn::{SessionCommand, SpawnError, Step};
use crate::os::{procfs, shell};

const LOG: &str = "ProcessManager";

/// The soft RLIMIT_NOFILE tend was started with, given back to every child (0: unchanged).
static CHILD_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Raises tend's own soft descriptor limit to the hard one: at 1000 servers tend holds a few
/// thousand descriptors (a /proc stat file and a pidfd per process, sockets, log files), past
/// the common 1024. Children get the original limit back (see `spawn`), so a program that sizes
/// its select() sets by the limit sees what it would have seen without tend.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write our local struct only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let original = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max.min(1 << 20);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            CHILD_NOFILE.store(original, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A freshly spawned process; its PID is also its process group and session id (setsid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    pub pid: u32,
    /// /proc start time, the PID's identity for later adoption (docs/DESIGN.md §6).
    pub start_ticks: u64,
    /// The env_file text the process was given, so a reload can tell whether it changed.
    pub env_file_text: Option<String>,
}

/// Starts `server` in its own session with stdin from /dev/null and stdout and stderr appended
/// to its log file. The child writes the file itself, so it keeps logging if tend dies.
///
/// The caller must be the supervisor thread; the returned error says what failed in words.
pub fn spawn(server: &ServerConfig, log_dir: &Path, tend_bin: &Path) -> Result<Spawned, String> {
    if !server.cwd.is_dir() {
        return Err(format!(
            "working directory {} does not exist",
            server.cwd.display()
        ));
    }
    let env_file_text = match &server.env_file {
        Some(path) => Some(
            fs::read_to_string(path)
                .map_err(|e| format!("cannot read env_file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let env_from_file = match &env_file_text {
        Some(text) => parse_env_file(text).map_err(|e| {
            let path = server.env_file.as_deref().unwrap_or(Path::new(""));
            format!("env_file {}: {e}", path.display())
        })?,
        None => Vec::new(),
    };
    let log = open_log(log_dir, &server.id)
        .map_err(|e| format!("cannot open log file in {}: {e}", log_dir.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot duplicate log file: {e}"))?;

    let mut command = session_command(&server.command);
    command
        .current_dir(&server.cwd)
        .stdout(log)
        .stderr(log_err)
        .env_remove(TOKEN_VAR)
        .env("TEND_SERVER_ID", &server.id)
        .env("TEND_BIN", tend_bin);
    for (key, value) in env_from_file {
        command.env(key, value);
    }
    command.envs(&server.env);
    // The reaper collects the exit.
    let pid = command
        .spawn(|_| ())
        .map_err(|e| describe_spawn_error(&server.command, &e))?
        .pid;
    // A process that already exited has no stat left; 0 never matches a live process later.
    let start_ticks = procfs::start_ticks(pid).unwrap_or(0);
    log::info!(target: LOG, "Process '{}' started (PID: {})", server.id, pid);
    Ok(Spawned {
        pid,
        start_ticks,
        env_file_text,
    })
}

/// The command for a child of tend: a string under `/bin/sh -c` (with the exec rule of
/// [`shell::script_for`]), an array exec'd directly; started as the leader of a session of its
/// own (tend stops it by its process group), with the descriptor limit tend found at start,
/// and none of the descriptors tend may have inherited (see `spawn.rs` for how). Servers and
/// alert commands alike.
pub fn session_command(spec: &CommandSpec) -> SessionCommand {
    let child_nofile = CHILD_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
    match spec {
        CommandSpec::Shell(line) => {
            // One simple command gets `exec`, so the PID is the program's, not dash's.
            let mut c = SessionCommand::new("/bin/sh", child_nofile);
            c.arg("-c").arg(shell::script_for(line));
            c
        }
        CommandSpec::Exec(argv) => {
            let mut c = SessionCommand::new(&argv[0], child_nofile);
            c.args(&argv[1..]);
            c
        }
    }
}

/// "cannot run 'redis-server': not found", for a command that could not be started; a step
/// before the exec that failed is named: "cannot run 'x': entering the working directory: …".
pub fn describe_spawn_error(command: &CommandSpec, failure: &SpawnError) -> String {
    let program = match command {
        CommandSpec::Shell(_) => "/bin/sh".to_string(),
        CommandSpec::Exec(argv) => argv[0].clone(),
    };
    let error = &failure.error;
    if !matches!(failure.step, Step::Exec | Step::Prepare) {
        return format!(
            "cannot run '{program}': {}: {error}",
            failure.step.describe()
        );
    }
    match error.kind() {
        io::ErrorKind::NotFound => format!("cannot run '{program}': not found"),
        io::ErrorKind::PermissionDenied => format!("cannot run '{program}': permission denied"),
        _ => format!("cannot run '{program}': {error}"),
    }
}

/// Why a signal was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalError {
    /// The target is PID 0/1, tend itself or tend's own group: never signalled.
    Forbidden,
    /// No such process (or group) any more.
    Gone,
    /// The PID now belongs to another process (its start time changed).
    Reused,
    Os(i32),
}

impl std::fmt::Display for SignalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalError::Forbidden => f.write_str("refused to signal PID 0, 1, tend or its group"),
            SignalError::Gone => f.write_str("no such process"),
            SignalError::Reused => f.write_str("the PID now belongs to another process"),
            SignalError::Os(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

/// Whether `pid` may ever be the target of a signal from tend: never 0 or 1 (kill(0) and
/// kill(-1) reach every process we may signal), never tend itself, never tend's own group.
pub fn is_signallable(pid: u32) -> bool {
    if pid <= 1 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: getpid and getpgrp take no arguments and cannot fail.
    let (me, my_group) = unsafe { (libc::getpid() as u32, libc::getpgrp() as u32) };
    pid != me && pid != my_group
}

fn kill(target: i32, signal: i32) -> Result<(), SignalError> {
    // SAFETY: kill has no memory effects; callers have excluded 0, -1 and tend's own group.
    if unsafe { libc::kill(target, signal) } == 0 {
        return Ok(());
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Err(SignalError::Gone),
        Some(errno) => Err(SignalError::Os(errno)),
        None => Err(SignalError::Os(0)),
    }
}

/// Sends `signal` to every process of the group `pgid` (a server's session).
pub fn signal_group(pgid: u32, signal: i32) -> Result<(), SignalError> {
    if !is_signallable(pgid) {
        return Err(SignalError::Forbidden);
    }
    kill(-(pgid as i32), signal)
}

/// Whether any live process of the group is left. `kill(-pgid, 0)` also counts zombies. Ours
/// the reaper takes at once (tend is subreaper, so a group tend started has no zombie for long),
/// but members of an `adopted` server's group belong to whoever their parent is now, and PID 1
/// may reap them seconds later (docs/NOTES.md): only for those does a /proc scan tell live
/// members from zombies, and only when the cheap check says "exists".
pub fn group_exists(pgid: u32, adopted: bool) -> bool {
    if !is_signallable(pgid) || kill(-(pgid as i32), 0).is_err() {
        return false;
    }
    if !adopted {
        return true;
    }
    // tend's servers lead their own session (setsid), so the group's members are its session's.
    let group = std::collections::HashSet::from([pgid]);
    !procfs::session_members(&group).is_empty()
}

/// Sends `signal` to `pid` only if it is still the process that started at `start_ticks`: a PID
/// reused since tend looked at it is never hit (docs/DESIGN.md §8).
pub fn signal_verified(pid: u32, start_ticks: u64, signal: i32) -> Result<(), SignalError> {
    if !is_signallable(pid) {
        return Err(SignalError::Forbidden);
    }
    match procfs::read_stat(pid) {
        None => Err(SignalError::Gone),
        Some(stat) if stat.state == 'Z' || stat.state == 'X' => Err(SignalError::Gone),
        Some(stat) if stat.start_ticks != start_ticks => Err(SignalError::Reused),
        Some(_) => kill(pid as i32, signal),
    }
}

/// Whether the process that started at `start_ticks` still lives (a zombie counts as dead).
pub fn is_same_process_alive(pid: u32, start_ticks: u64) -> bool {
    procfs::read_stat(pid)
        .is_some_and(|s| s.start_ticks == start_ticks && s.state != 'Z' && s.state != 'X')
}

/// Kills an orphan: SIGTERM, up to `grace` for it to go, then SIGKILL, checking its identity
/// before each signal. Returns the last signal sent once the process is gone.
///
/// Blocks the calling thread (an HTTP handler's), never the supervisor.
pub fn kill_orphan(pid: u32, start_ticks: u64, grace: Duration) -> Result<i32, SignalError> {
    signal_verified(pid, start_ticks, libc::SIGTERM)?;
    log::info!(target: LOG, "Sent SIGTERM to orphan PID {pid}");
    if wait_gone(pid, start_ticks, grace) {
        return Ok(libc::SIGTERM);
    }
    match signal_verified(pid, start_ticks, libc::SIGKILL) {
        Ok(()) => log::warn!(target: LOG, "Orphan PID {pid} ignored SIGTERM; sent SIGKILL"),
        // It went between the check and the signal: SIGTERM did the job.
        Err(SignalError::Gone | SignalError::Reused) => return Ok(libc::SIGTERM),
        Err(other) => return Err(other),
    }
    if wait_gone(pid, start_ticks, Duration::from_secs(5)) {
        Ok(libc::SIGKILL)
    } else {
        Err(SignalError::Os(libc::ETIMEDOUT))
    }
}

/// Waits for a process that is not necessarily our child to end: pidfd + poll where the kernel
/// has it (instant notice), else a short /proc poll.
fn wait_gone(pid: u32, start_ticks: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    if let Some(fd) = pidfd_open(pid) {
        // The pidfd refers to whatever process has this PID now; confirm it is still ours.
        if !is_same_process_alive(pid, start_ticks) {
            close(fd);
            return true;
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // SAFETY: `poll` points to one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as i32) };
            if ready > 0 || left.is_zero() {
                break;
            }
            if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        close(fd);
        // POLLIN means it exited; it may linger as a zombie of another parent, which is dead.
    }
    // Without pidfd (or after it said "exited"), confirm through /proc.
    loop {
        if !is_same_process_alive(pid, start_ticks) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Opens a pidfd for `pid`, or None where the kernel lacks pidfd_open (before 5.3).
pub fn pidfd_open(pid: u32) -> Option<i32> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then_some(fd as i32)
}

pub fn close(fd: i32) {
    // SAFETY: the caller owns `fd` and does not use it afterwards.
    unsafe {
        libc::close(fd);
    }
}

#[cfg(test)]
// The children are reaped with waitpid(2) in `reap`: std's waits are off limits (clippy.toml).
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;
    use crate::test_support::reap_child;
    use std::process::{Command, Stdio};

    #[test]
    fn a_pid_whose_start_time_changed_is_never_signalled() {
        // The test process has no reaper thread, so spawning here races nothing.
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let ticks = procfs::start_ticks(pid).expect("start ticks");
        // As if the PID had been reused between the orphan check and the signal.
        assert_eq!(
            signal_verified(pid, ticks + 1, libc::SIGTERM),
            Err(SignalError::Reused)
        );
        assert!(
            is_same_process_alive(pid, ticks),
            "the reused PID was not hit"
        );
        assert_eq!(signal_verified(pid, ticks, libc::SIGTERM), Ok(()));
        reap_child(pid, false);
        assert_eq!(
            signal_verified(pid, ticks, libc::SIGTERM),
            Err(SignalError::Gone)
        );
    }

    #[test]
    fn pid_zero_one_tend_and_its_group_are_never_targets() {
        // SAFETY: getpid and getpgrp cannot fail.
        let (me, group) = unsafe { (libc::getpid() as u32, libc::getpgrp() as u32) };
        for pid in [0, 1, me, group, u32::MAX] {
            assert!(!is_signallable(pid), "{pid}");
            assert_eq!(signal_group(pid, 0), Err(SignalError::Forbidden), "{pid}");
            assert_eq!(
                signal_verified(pid, 0, 0),
                Err(SignalError::Forbidden),
                "{pid}"
            );
        }
    }

    #[test]
    fn kill_orphan_escalates_to_sigkill_for_a_process_that_ignores_sigterm() {
        let child = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.expect("stdout")),
            &mut ready,
        )
        .expect("ready line");
        let ticks = procfs::start_ticks(pid).expect("start ticks");
        // Our own child lingers as a zombie once killed; is_same_process_alive counts that dead.
        let signal = kill_orphan(pid, ticks, Duration::from_millis(200)).expect("killed");
        assert_eq!(signal, libc::SIGKILL);
        reap_child(pid, false);
    }
}
