//! `tend serve-demo`: a tiny stand-in server for the built-in demo config and the tests, so a
//! supervised "web server" needs nothing on the host but /bin/sh and the tend binary.
//!
//! It runs as a child of `tend up`, never inside it: it must not touch tend's state, and it is
//! the only place where SIGTERM may be ignored (on request, for stop-escalation demos). Plain
//! std (plus libc for the signal): an accept thread, a thread per connection, and a main
//! loop that prints and, if asked, crashes.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::{DemoRole, ServeOptions};
use crate::error::{Context, Error};

/// How long a connection may take to send its request before it is answered anyway.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the demo server; returns only on a start-up error (it exits on `--crash-after-ms`,
/// and otherwise runs until a signal ends it).
pub fn run(opts: &ServeOptions) -> Result<(), Error> {
    if opts.ignore_term {
        // SAFETY: `signal` with SIG_IGN installs no handler code; nothing else in this process
        // manages SIGTERM. The demo exists to be a child that ignores it, so that tend's stop
        // escalation to SIGKILL can be shown and tested.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    if let DemoRole::Worker { listen_fd } = opts.role {
        return worker(opts, listen_fd);
    }
    let served = Arc::new(AtomicU64::new(0));
    let pid = std::process::id();
    if let Some(port) = opts.port {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("demo: cannot listen on 127.0.0.1:{port}"))?;
        say(&format!(
            "demo: listening on http://127.0.0.1:{port} (PID {pid})"
        ));
        start_workers(opts, Some(&listener))?;
        let served = Arc::clone(&served);
        thread::Builder::new()
            .name("demo-accept".into())
            .spawn(move || accept_loop(listener, served, pid))
            .context("demo: cannot start the accept thread")?;
    } else {
        say(&format!("demo: started (PID {pid})"));
        start_workers(opts, None)?;
    }

    let started = Instant::now();
    let crash_at = opts.crash_after.map(|after| started + after);
    let mut next_print = (!opts.print_every.is_zero()).then(|| started + opts.print_every);
    loop {
        let now = Instant::now();
        if let Some(at) = crash_at {
            if now >= at {
                say(&format!(
                    "demo: exiting with code {} as asked",
                    opts.exit_code
                ));
                std::process::exit(opts.exit_code);
            }
        }
        if let Some(at) = next_print {
            if now >= at {
                let requests = served.load(Ordering::Relaxed);
                say(&status_line(opts.port.map(|_| requests), started.elapsed()));
                next_print = Some(at + opts.print_every);
            }
        }
        // Sleep until whichever comes first; with neither, only a signal ends the demo.
        let wake = [crash_at, next_print].into_iter().flatten().min();
        match wake {
            Some(at) => thread::sleep(at.saturating_duration_since(Instant::now())),
            None => thread::park(),
        }
    }
}

/// Starts `opts.workers` copies of this program as workers, in this process's group, each
/// inheriting the listening socket as a prefork server's workers do. They are never waited for:
/// they end with the group (tend stops servers by group).
fn start_workers(opts: &ServeOptions, listener: Option<&TcpListener>) -> Result<(), Error> {
    if opts.workers == 0 {
        return Ok(());
    }
    let exe = std::env::current_exe().context("demo: cannot find its own program")?;
    let fd = listener.map(|l| l.as_raw_fd());
    if let Some(fd) = fd {
        // SAFETY: clears close-on-exec on a descriptor this process owns, so workers inherit it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    for _ in 0..opts.workers {
        let mut command = Command::new(&exe);
        command
            .arg("serve-demo")
            .arg(format!("--worker-mb={}", opts.worker_mb))
            .arg(format!("--worker-cpu-ms={}", opts.worker_cpu.as_millis()))
            .stdin(Stdio::null());
        match fd {
            Some(fd) => command.arg(format!("--worker-fd={fd}")),
            None => command.arg("--worker"),
        };
        let child = command.spawn().context("demo: cannot start a worker")?;
        say(&format!("demo: started worker PID {}", child.id()));
    }
    Ok(())
}

/// A worker: holds its memory, spends its CPU, then serves on the inherited socket (or idles)
/// until a signal ends it.
fn worker(opts: &ServeOptions, listen_fd: Option<i32>) -> Result<(), Error> {
    let pid = std::process::id();
    // Filled with a non-zero byte so every page is really resident, not the shared zero page.
    let held = vec![0x5a_u8; (opts.worker_mb as usize) << 20];
    let cpu_start = process_cpu_time();
    while process_cpu_time().saturating_sub(cpu_start) < opts.worker_cpu {
        std::hint::black_box(held.len());
    }
    say(&format!(
        "demo: worker PID {pid} holds {} MiB",
        held.len() >> 20
    ));
    match listen_fd {
        Some(fd) => {
            // SAFETY: the descriptor was left open for this process by its main demo process,
            // which made it a listening socket; nothing else here uses it.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            accept_loop(listener, Arc::new(AtomicU64::new(0)), pid);
        }
        None => loop {
            thread::park();
        },
    }
    std::hint::black_box(&held);
    Ok(())
}

/// CPU time this process has used (CLOCK_PROCESS_CPUTIME_ID).
fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// `demo: served 3 requests, up 12 s` (or `demo: up 12 s` when not listening).
fn status_line(served: Option<u64>, up: Duration) -> String {
    let secs = up.as_secs();
    match served {
        Some(1) => format!("demo: served 1 request, up {secs} s"),
        Some(n) => format!("demo: served {n} requests, up {secs} s"),
        None => format!("demo: up {secs} s"),
    }
}

/// Prints one line and flushes it, so it reaches tend's log file at once. A failed write is
/// ignored: a demo server must not die because its log went away.
fn say(line: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn accept_loop(listener: TcpListener, served: Arc<AtomicU64>, pid: u32) {
    for stream in listener.incoming() {
        // A failed accept (EMFILE, a reset before accept) is not fatal: keep accepting.
        let Ok(stream) = stream else { continue };
        served.fetch_add(1, Ordering::Relaxed);
        let _ = thread::Builder::new()
            .name("demo-conn".into())
            .spawn(move || answer(stream, pid));
    }
}

/// Answers any connection with `200 OK` and "tend demo server <pid>", then closes it.
fn answer(mut stream: TcpStream, pid: u32) -> io::Result<()> {
    // Read the request first (up to its blank line): closing a socket with unread input sends
    // a reset, and the client might then lose the answer. tend's port checks connect and close
    // without a word, which ends this read at once.
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while request.len() < 16 * 1024 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    if request.is_empty() {
        return Ok(());
    }
    stream.write_all(response(pid).as_bytes())?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)
}

fn response(pid: u32) -> String {
    let body = format!("tend demo server {pid}\n");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_count_requests_and_seconds() {
        assert_eq!(
            status_line(Some(3), Duration::from_millis(12_400)),
            "demo: served 3 requests, up 12 s"
        );
        assert_eq!(
            status_line(Some(1), Duration::ZERO),
            "demo: served 1 request, up 0 s"
        );
        assert_eq!(status_line(None, Duration::from_secs(5)), "demo: up 5 s");
    }

    #[test]
    fn connections_get_a_200_naming_the_pid() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&served);
        thread::spawn(move || accept_loop(listener, counter, 4242));

        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with("\r\n\r\ntend demo server 4242\n"),
            "{answer}"
        );
        assert!(answer.contains("Content-Length: 22\r\n"), "{answer}");
        assert_eq!(served.load(Ordering::Relaxed), 1);
    }
}
