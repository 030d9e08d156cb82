//! Instant exit notice for adopted processes, which are not tend's children (their parent died
//! with the previous tend), so the reaper never hears of them. One "pidwatch" thread polls a
//! pidfd per adopted process (pidfd_open(2), Linux 5.3+) and reports a death as an [`Exit`] with
//! an unknown status, on the same channel the reaper uses. Where pidfds are missing, `watch`
//! says so and the monitor's `kill(pid, 0)` round is the fallback.

use std::io;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use crate::os::process::{close, pidfd_open};
use crate::os::reaper::{Exit, ExitStatus};

const LOG: &str = "ProcessMonitor";

#[derive(Clone)]
pub struct PidWatcher {
    watched: Arc<Mutex<Vec<(u32, i32)>>>,
    wake_fd: i32,
}

impl PidWatcher {
    pub fn start(exits: Sender<Exit>) -> io::Result<PidWatcher> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let watcher = PidWatcher {
            watched: Arc::new(Mutex::new(Vec::new())),
            wake_fd: fds[1],
        };
        let watched = Arc::clone(&watcher.watched);
        let read_fd = fds[0];
        std::thread::Builder::new()
            .name("pidwatch".into())
            .spawn(move || run(read_fd, watched, exits))?;
        Ok(watcher)
    }

    /// Reports `pid`'s death once. False when this kernel has no pidfds.
    pub fn watch(&self, pid: u32) -> bool {
        let Some(fd) = pidfd_open(pid) else {
            return false;
        };
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((pid, fd));
        let byte = 0u8;
        // SAFETY: writes one byte from a valid local to our own pipe.
        unsafe {
            libc::write(self.wake_fd, (&byte as *const u8).cast(), 1);
        }
        true
    }
}

fn run(wake_fd: i32, watched: Arc<Mutex<Vec<(u32, i32)>>>, exits: Sender<Exit>) {
    loop {
        let entries: Vec<(u32, i32)> = watched.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut polls: Vec<libc::pollfd> = Vec::with_capacity(entries.len() + 1);
        polls.push(libc::pollfd {
            fd: wake_fd,
            events: libc::POLLIN,
            revents: 0,
        });
        polls.extend(entries.iter().map(|&(_, fd)| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: `polls` is a valid, initialised array of `polls.len()` pollfds.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, -1) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!(target: LOG, "pidfd poll failed: {}", io::Error::last_os_error());
            return;
        }
        if polls[0].revents != 0 {
            let mut buf = [0u8; 64];
            // SAFETY: reads into a valid local buffer from our own non-blocking pipe.
            while unsafe { libc::read(wake_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
        let dead: Vec<(u32, i32)> = entries
            .iter()
            .zip(&polls[1..])
            .filter(|(_, p)| p.revents != 0)
            .map(|(entry, _)| *entry)
            .collect();
        if dead.is_empty() {
            continue;
        }
        watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|entry| !dead.contains(entry));
        for (pid, fd) in dead {
            close(fd);
            if exits
                .send(Exit {
                    pid,
                    status: ExitStatus::Unknown,
                })
                .is_err()
            {
                return;
            }
        }
    }
}
