//! HTTP health probes (a server's `health.http`): a GET on loopback, judged by the status line.
//!
//! Owns: one batch of probes driven together on non-blocking sockets with poll(), as
//! [`crate::monitor::probe`] does for connects: every probe starts at once and each gives up at its own
//! `timeout` from the start, so a batch takes as long as its slowest timeout however many
//! servers hang, and a server that accepts and never answers costs its timeout and nothing
//! else. No thread per probe, no async runtime.
//!
//! Must never: read more than [`MAX_ANSWER`] bytes of an answer (only the status line matters,
//! and a server may send anything); follow redirects or resolve names (targets are loopback
//! addresses, validated in the config); block on one socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::monitor::probe::{self, Started};

const LOG: &str = "ProcessMonitor";

/// The most of an answer a probe reads: enough for any status line (and the start of the
/// headers), never the body.
pub const MAX_ANSWER: usize = 1024;

/// One probe to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub addr: SocketAddr,
    pub path: String,
    pub timeout: Duration,
}

/// What came of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The status code of the answer's status line.
    Status(u16),
    /// The connect failed at once (nothing listens: "connection refused").
    ConnectFailed(String),
    /// No status line within the timeout (or the connect hung that long).
    TimedOut,
    /// The server closed the connection, or reset it, before a whole status line.
    Closed,
    /// Something other than an HTTP status line came back.
    NotHttp,
}

/// One probe's outcome and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub took: Duration,
}

enum Stage {
    Connecting,
    /// Sending the request; `usize` bytes of it are sent.
    Writing(usize),
    Reading,
}

struct InFlight {
    fd: OwnedFd,
    index: usize,
    stage: Stage,
    request: Vec<u8>,
    answer: Vec<u8>,
    started: Instant,
    deadline: Instant,
}

/// Makes every probe at once; `result[i]` answers `probes[i]`.
pub fn probe_all(probes: &[HttpProbe]) -> Vec<Answer> {
    let started = Instant::now();
    let mut results: Vec<Option<Answer>> = vec![None; probes.len()];
    let mut flying: Vec<InFlight> = Vec::with_capacity(probes.len());
    for (index, target) in probes.iter().enumerate() {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tend-health/{}\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n",
            target.path,
            target.addr,
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
        let stage = match probe::start_connect(&target.addr) {
            Started::InProgress(fd) => (fd, Stage::Connecting),
            Started::Connected(fd) => (fd, Stage::Writing(0)),
            Started::Failed(errno) => {
                let outcome = Outcome::ConnectFailed(connect_error(errno));
                results[index] = Some(answer(outcome, started));
                continue;
            }
            Started::NoDescriptor => {
                let outcome = Outcome::ConnectFailed("no file descriptor left".to_string());
                results[index] = Some(answer(outcome, started));
                continue;
            }
        };
        flying.push(InFlight {
            fd: stage.0,
            index,
            stage: stage.1,
            request,
            answer: Vec::new(),
            started,
            deadline: started + target.timeout,
        });
    }
    let mut polls: Vec<libc::pollfd> = Vec::with_capacity(flying.len());
    while !flying.is_empty() {
        polls.clear();
        polls.extend(flying.iter().map(|f| libc::pollfd {
            fd: f.fd.as_raw_fd(),
            events: match f.stage {
                Stage::Connecting | Stage::Writing(_) => libc::POLLOUT,
                Stage::Reading => libc::POLLIN,
            },
            revents: 0,
        }));
        let earliest = flying.iter().map(|f| f.deadline).min().expect("not empty");
        // Every descriptor in `polls` is owned by the matching `flying` entry.
        if let Err(e) = probe::poll_until(&mut polls, earliest) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::warn!(target: LOG, "poll() failed during HTTP probes: {e}");
            for f in flying.drain(..) {
                results[f.index] = Some(answer(Outcome::TimedOut, f.started));
            }
            break;
        }
        let now = Instant::now();
        for i in (0..flying.len()).rev() {
            let revents = polls[i].revents;
            let done = if revents != 0 {
                advance(&mut flying[i], revents)
            } else {
                None
            };
            let done = done.or_else(|| (now >= flying[i].deadline).then_some(Outcome::TimedOut));
            if let Some(outcome) = done {
                let f = flying.swap_remove(i);
                results[f.index] = Some(answer(outcome, f.started));
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every probe ends with an answer"))
        .collect()
}

fn answer(outcome: Outcome, started: Instant) -> Answer {
    Answer {
        outcome,
        took: started.elapsed(),
    }
}

/// "connection refused", or the system's words for another errno.
fn connect_error(errno: i32) -> String {
    if errno == libc::ECONNREFUSED {
        "connection refused".to_string()
    } else {
        io::Error::from_raw_os_error(errno).to_string()
    }
}

/// Moves one probe on after poll() said its socket is ready; `Some` once it is over.
fn advance(f: &mut InFlight, revents: libc::c_short) -> Option<Outcome> {
    loop {
        match f.stage {
            Stage::Connecting => {
                let error = probe::socket_error(&f.fd);
                if error != 0 {
                    return Some(Outcome::ConnectFailed(connect_error(error)));
                }
                if revents & libc::POLLOUT == 0 {
                    return Some(Outcome::Closed);
                }
                f.stage = Stage::Writing(0);
            }
            Stage::Writing(sent) => {
                let rest = &f.request[sent..];
                // SAFETY: writes from a live slice of exactly rest.len() bytes to a socket `f`
                // owns. MSG_NOSIGNAL: a reset peer gives EPIPE here, never SIGPIPE.
                let n = unsafe {
                    libc::send(
                        f.fd.as_raw_fd(),
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    return match io::Error::last_os_error().kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                        _ => Some(Outcome::Closed),
                    };
                }
                let sent = sent + n as usize;
                if sent < f.request.len() {
                    f.stage = Stage::Writing(sent);
                    return None;
                }
                f.stage = Stage::Reading;
                return None;
            }
            Stage::Reading => {
                let mut buf = [0u8; MAX_ANSWER];
                let room = MAX_ANSWER - f.answer.len();
                // SAFETY: reads into a live local buffer of at least `room` bytes from a socket
                // `f` owns.
                let n = unsafe { libc::recv(f.fd.as_raw_fd(), buf.as_mut_ptr().cast(), room, 0) };
                if n < 0 {
                    return match io::Error::last_os_error().kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                        _ => Some(Outcome::Closed),
                    };
                }
                if n == 0 {
                    return Some(parse_status(&f.answer).unwrap_or(Outcome::Closed));
                }
                f.answer.extend_from_slice(&buf[..n as usize]);
                if f.answer.contains(&b'\n') || f.answer.len() >= MAX_ANSWER {
                    return Some(parse_status(&f.answer).unwrap_or(Outcome::NotHttp));
                }
                return None;
            }
        }
    }
}

/// The status of `HTTP/1.x SSS reason` once a whole first line is there; `None` before that.
/// A first line that is not a status line is [`Outcome::NotHttp`].
fn parse_status(answer: &[u8]) -> Option<Outcome> {
    let end = answer.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&answer[..end]);
    let mut words = line.trim_end_matches('\r').split(' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Some(Outcome::NotHttp);
    }
    Some(match code.parse::<u16>() {
        Ok(status) if (100..=999).contains(&status) => Outcome::Status(status),
        _ => Outcome::NotHttp,
    })
}

/// What a person reads about a probe: "HTTP 503 from /healthz", "timed out after 1000 ms".
pub fn describe(outcome: &Outcome, path: &str, timeout: Duration) -> String {
    match outcome {
        Outcome::Status(status) => format!("HTTP {status} from {path}"),
        Outcome::ConnectFailed(reason) => format!("{reason} ({path})"),
        Outcome::TimedOut => format!("timed out after {} ms ({path})", timeout.as_millis()),
        Outcome::Closed => format!("closed without an answer ({path})"),
        Outcome::NotHttp => format!("not an HTTP answer ({path})"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{HttpProbe, Outcome, parse_status, probe_all};

    /// A loopback server that answers each connection with `answer` after reading the request
    /// head, or (`None`) accepts and never says a word.
    fn server(answer: Option<&'static [u8]>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            match answer {
                Some(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                None => {
                    // Hold the connection until the prober gives up and closes it.
                    let _ = stream.read(&mut buf);
                }
            }
            request
        });
        (addr, handle)
    }

    fn probe(addr: SocketAddr, timeout_ms: u64) -> HttpProbe {
        HttpProbe {
            addr,
            path: "/healthz".to_string(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn a_batch_reads_each_status_and_a_silent_server_costs_only_its_timeout() {
        let (ok, ok_server) = server(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        let (bad, _bad_server) = server(Some(b"HTTP/1.0 503 Service Unavailable\r\n\r\n"));
        let (silent, _silent_server) = server(None);
        let (junk, _junk_server) = server(Some(b"SSH-2.0-OpenSSH\r\n"));
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let answers = probe_all(&[
            probe(ok, 5000),
            probe(bad, 5000),
            probe(silent, 300),
            probe(junk, 5000),
            probe(closed, 5000),
        ]);
        let outcomes: Vec<&Outcome> = answers.iter().map(|a| &a.outcome).collect();
        assert_eq!(
            outcomes,
            [
                &Outcome::Status(200),
                &Outcome::Status(503),
                &Outcome::TimedOut,
                &Outcome::NotHttp,
                &Outcome::ConnectFailed("connection refused".to_string()),
            ]
        );
        // The silent server held the batch for its own timeout, not the others' 5 s.
        assert!(started.elapsed() < Duration::from_millis(3000));
        assert!(answers[2].took >= Duration::from_millis(300));
        let request = String::from_utf8(ok_server.join().unwrap()).unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:"),
            "{request}"
        );
        assert!(request.contains("Connection: close\r\n"), "{request}");
    }

    #[test]
    fn an_endless_answer_is_read_only_up_to_the_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let line = vec![b'x'; 64 * 1024];
            let _ = stream.write_all(&line);
        });
        let answers = probe_all(&[probe(addr, 2000)]);
        assert_eq!(answers[0].outcome, Outcome::NotHttp);
    }

    #[test]
    fn status_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_status(b"HTTP/1.1 204 No Content\r\n"),
            Some(Outcome::Status(204))
        );
        assert_eq!(parse_status(b"HTTP/1.0 500\n"), Some(Outcome::Status(500)));
        assert_eq!(parse_status(b"HTTP/1.1 2000 x\r\n"), Some(Outcome::NotHttp));
        assert_eq!(parse_status(b"hello\r\n"), Some(Outcome::NotHttp));
        assert_eq!(parse_status(b"HTTP/1.1 200"), None);
    }
}
