//! The reaper: the only code in tend that waits for children; nothing else may call
//! `Command::wait/status/output` (clippy.toml forbids them). It also turns SIGINT/SIGTERM (shut
//! down) and SIGHUP (reload the config) into messages for the supervisor.
//!
//! Signal handlers only write the signal number to a CLOEXEC, non-blocking self-pipe; the
//! "reaper" thread reads it and does the work, so nothing but `write` runs in a handler. tend is
//! a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): daemonizing grandchildren are re-parented
//! to tend when their parent dies and are reaped here at once, so neither zombies nor
//! `kill(-pgid, 0)` false positives pile up. Exits of PIDs the supervisor never spawned are
//! therefore normal.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use crossbeam_channel::Sender;

use crate::os::spawn::SPAWN_LOCK;

const LOG: &str = "Reaper";

/// How a child ended, as waitpid reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// An adopted process (not our child) died; its status cannot be known.
    Unknown,
}

/// A process ended (from the reaper, or from the pid watcher for adopted processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: u32,
    pub status: ExitStatus,
}

/// A signal to tend itself: SIGINT or SIGTERM ask it to shut down, SIGHUP to reload its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub signal: i32,
}

/// Children whose exit goes to whoever spawned them rather than to the supervisor: alert
/// commands (`alerts::exec`), which are no server's. See [`claim`].
static CLAIMED: Mutex<Vec<(u32, Sender<ExitStatus>)>> = Mutex::new(Vec::new());

/// Sends the exit of child `pid` to `to` instead of the supervisor. Call it while still holding
/// `SPAWN_LOCK` from the spawn: the reaper takes that lock around `waitpid`, so the exit cannot
/// be reaped before the claim is in place.
pub fn claim(pid: u32, to: Sender<ExitStatus>) {
    CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((pid, to));
}

fn claimant(pid: u32) -> Option<Sender<ExitStatus>> {
    let mut claimed = CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let at = claimed.iter().position(|(p, _)| *p == pid)?;
    Some(claimed.swap_remove(at).1)
}

/// The write end of the self-pipe, read by the handler (which may run on any thread).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives on this stack frame for the call.
        // A full pipe drops the byte, which is fine: the reader drains all exits per wake-up.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Makes tend a child subreaper, installs the handlers and starts the "reaper" thread. Call once,
/// before the first spawn, so no exit can come before the handler exists.
pub fn start(exits: Sender<Exit>, signals: Sender<Signal>) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        log::warn!(target: LOG, "Cannot become child subreaper: {}", io::Error::last_os_error());
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // The reader blocks; only the handler's end must never block.
    // SAFETY: read_fd is the pipe's read end we just created.
    unsafe {
        let flags = libc::fcntl(read_fd, libc::F_GETFL);
        libc::fcntl(read_fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    PIPE_WRITE.store(write_fd, Ordering::Relaxed);
    for signal in [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        install(signal)?;
    }
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || run(read_fd, exits, signals))?;
    Ok(())
}

fn install(signal: i32) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid starting point; we set the handler and flags, and
    // the handler only calls write(2). SA_RESTART keeps other threads' syscalls from EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn run(read_fd: i32, exits: Sender<Exit>, signals: Sender<Signal>) {
    // Children may have exited before the handler was installed.
    drain(&exits);
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is valid for writes of its length for the duration of the call.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!(target: LOG, "Signal pipe failed: {}", io::Error::last_os_error());
            return;
        }
        let mut saw_child = false;
        for &byte in &buf[..n as usize] {
            let signal = byte as i32;
            if signal == libc::SIGCHLD {
                saw_child = true;
            } else {
                log::info!(target: LOG, "Received {}", crate::model::signal_name(signal));
                let _ = signals.send(Signal { signal });
            }
        }
        if saw_child && !drain(&exits) {
            return;
        }
    }
}

/// Reaps every child that has exited. Returns false once the supervisor is gone.
fn drain(exits: &Sender<Exit>) -> bool {
    loop {
        let mut status = 0;
        let pid = {
            // A spawn in progress may be about to reap its own failed child (see SPAWN_LOCK).
            let _guard = SPAWN_LOCK
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // SAFETY: `status` is a valid int for waitpid to fill.
            unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }
        };
        if pid <= 0 {
            return true;
        }
        let status = if libc::WIFEXITED(status) {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signal(libc::WTERMSIG(status))
        };
        log::trace!(target: LOG, "Reaped PID {pid}: {status:?}");
        if let Some(claimant) = claimant(pid as u32) {
            let _ = claimant.send(status);
            continue;
        }
        if exits
            .send(Exit {
                pid: pid as u32,
                status,
            })
            .is_err()
        {
            return false;
        }
    }
}
