//! Parallel TCP connect checks: "does something answer on this address?" for a whole round.
//!
//! Owns: the non-blocking connect + poll() round (docs/DESIGN.md §7, docs/NOTES.md "Ports"). Used by the
//! monitor thread (ProcessMonitor), once per health round, with every configured port at once.
//!
//! Must never: take longer than one timeout for the round however many targets hang (one shared
//! deadline, not one per target); block on a single target; leak a descriptor (every socket is
//! an `OwnedFd`); use select()/FD_SETSIZE (tend may check thousands of ports); send or read any
//! data — a check only opens and closes a connection.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, warn};

const LOG: &str = "ProcessMonitor";

/// Tries a TCP connect to every target at once; `result[i]` is true iff `targets[i]` accepted
/// the connection before the deadline.
///
/// All connects start together and share one deadline, `timeout` after the start: a round with
/// any number of unanswering targets takes one `timeout`, not one each. A refused connect is
/// false at once, without waiting. Connections that succeed are closed straight away.
///
/// Only if tend runs out of descriptors (EMFILE) do later targets wait for earlier ones to
/// finish; each of those then gets its own `timeout` from its own start.
pub fn probe_all(targets: &[SocketAddr], timeout: Duration) -> Vec<bool> {
    probe_windowed(targets, timeout, usize::MAX)
}

/// A connect in flight: the socket, which target it is for, and when to give up on it.
struct Pending {
    fd: OwnedFd,
    index: usize,
    deadline: Instant,
}

/// How a connect started.
pub(crate) enum Started {
    /// Connected inside connect(); the socket is handed back for a caller that goes on with it.
    Connected(OwnedFd),
    /// The connect failed at once, with this errno.
    Failed(i32),
    InProgress(OwnedFd),
    /// No descriptor to be had (EMFILE, ENFILE, ENOBUFS, ENOMEM): try again once others close.
    NoDescriptor,
}

/// `probe_all` with at most `max_in_flight` connects pending at once (tests use a small window
/// to drive the path that running out of descriptors takes).
fn probe_windowed(targets: &[SocketAddr], timeout: Duration, max_in_flight: usize) -> Vec<bool> {
    let mut result = vec![false; targets.len()];
    // `pending[i]` and `polls[i]` describe the same socket; both shrink with swap_remove.
    let mut pending: Vec<Pending> = Vec::new();
    let mut polls: Vec<libc::pollfd> = Vec::new();
    let mut next = 0;
    let max_in_flight = max_in_flight.max(1);
    loop {
        while next < targets.len() && pending.len() < max_in_flight {
            match start_connect(&targets[next]) {
                Started::Connected(_) => result[next] = true,
                Started::Failed(_) => {}
                Started::InProgress(fd) => {
                    polls.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    });
                    pending.push(Pending {
                        fd,
                        index: next,
                        deadline: Instant::now() + timeout,
                    });
                }
                Started::NoDescriptor if !pending.is_empty() => break, // retry `next` later
                Started::NoDescriptor => {
                    warn_out_of_descriptors(targets.len());
                }
            }
            next += 1;
        }
        if pending.is_empty() {
            if next >= targets.len() {
                return result;
            }
            continue;
        }

        let earliest = pending
            .iter()
            .map(|p| p.deadline)
            .min()
            .expect("pending is not empty");
        if let Err(e) = poll_until(&mut polls, earliest) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue; // The deadlines stand; the next wait is computed from them.
            }
            // Cannot happen with valid arguments (EFAULT, EINVAL) short of ENOMEM: give up on
            // what is in flight rather than spin.
            warn!(target: LOG, "poll() failed during a port check: {e}");
            pending.clear();
            polls.clear();
            continue;
        }
        let now = Instant::now();
        for i in (0..pending.len()).rev() {
            let revents = polls[i].revents;
            if revents != 0 {
                // Writable with no pending error means the handshake completed; a refused or
                // reset connect is writable too, with SO_ERROR set (connect(2), EINPROGRESS).
                result[pending[i].index] =
                    revents & libc::POLLOUT != 0 && socket_error(&pending[i].fd) == 0;
            } else if now < pending[i].deadline {
                continue;
            }
            pending.swap_remove(i); // Drops the OwnedFd: the socket is closed.
            polls.swap_remove(i);
        }
    }
}

fn warn_out_of_descriptors(targets: usize) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let e = io::Error::last_os_error();
    if WARNED.swap(true, Ordering::Relaxed) {
        debug!(target: LOG, "no descriptor for a port check of {targets} targets: {e}");
    } else {
        warn!(
            target: LOG,
            "no descriptor for a port check of {targets} targets ({e}); raise the open-files \
             limit (ulimit -n)"
        );
    }
}

/// Opens a non-blocking socket and starts a connect to `addr`.
/// One `poll()` over `polls`, waiting at most until `earliest` (rounded up to the next
/// millisecond: a 0 ms poll for a 0.4 ms wait would spin until the deadline). The caller owns
/// every descriptor in `polls`; an interrupted wait is `ErrorKind::Interrupted`.
pub(crate) fn poll_until(polls: &mut [libc::pollfd], earliest: Instant) -> io::Result<()> {
    let wait = earliest.saturating_duration_since(Instant::now());
    let wait_ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `polls` is a live, exclusively borrowed array of exactly polls.len() pollfds, each
    // holding a descriptor the caller owns for the duration of the call.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, wait_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn start_connect(addr: &SocketAddr) -> Started {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                Started::NoDescriptor
            }
            _ => {
                debug!(target: LOG, "socket() for a port check of {addr} failed: {e}");
                Started::Failed(e.raw_os_error().unwrap_or(libc::EIO))
            }
        };
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns; OwnedFd closes it
    // exactly once, when dropped.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let rc = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain integers; all-zero is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: `sa` is a live sockaddr_in and the length passed is its size.
            unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in).cast(),
                    mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain integers; all-zero is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_scope_id = a.scope_id();
            // SAFETY: `sa` is a live sockaddr_in6 and the length passed is its size.
            unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast(),
                    mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc == 0 {
        return Started::Connected(fd);
    }
    match io::Error::last_os_error().raw_os_error() {
        // EINTR on a non-blocking connect: the attempt goes on asynchronously, like EINPROGRESS
        // (connect(2)); its outcome arrives through poll and SO_ERROR all the same.
        Some(libc::EINPROGRESS | libc::EINTR) => Started::InProgress(fd),
        // ECONNREFUSED, ENETUNREACH, EADDRNOTAVAIL, ...: a definite no, without waiting.
        errno => Started::Failed(errno.unwrap_or(libc::EIO)),
    }
}

/// The pending error of a socket (`SO_ERROR`), 0 if none; an unreadable one counts as an error.
pub(crate) fn socket_error(fd: &OwnedFd) -> libc::c_int {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live locals; `len` holds the size of `err`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 { libc::EIO } else { err }
}

#[cfg(test)]
mod tests {
    use std::mem;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use crate::monitor::probe::{probe_all, probe_windowed};

    /// A loopback listener with backlog 0 whose accept queue is already full: one connection
    /// was made and never accepted, so the kernel drops further SYNs and a connect to it hangs
    /// (until SYN retransmits give up, far longer than any test timeout).
    struct Hung {
        _listener: TcpListener,
        _filler: TcpStream,
        addr: SocketAddr,
    }

    fn hung_target() -> Hung {
        // std's TcpListener::bind has no backlog parameter, so listen(0) by hand.
        // SAFETY: socket() takes no pointers; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_in is plain integers; all-zero is a valid value.
        let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        // SAFETY: `sa` is a live sockaddr_in and the length passed is its size; `fd` is open.
        let rc = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&sa as *const libc::sockaddr_in).cast(),
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        // SAFETY: listen() takes no pointers; `fd` is an open, bound socket.
        let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 0) };
        assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
        let listener = TcpListener::from(fd);
        let addr = listener.local_addr().expect("local_addr");
        // Backlog 0 admits one queued connection (the queue is full when it holds more than
        // the backlog); this one completes and is never accepted.
        let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("filler");
        wait_until(Duration::from_secs(5), || {
            accept_queue_len(addr.port()) >= 1
        });
        Hung {
            _listener: listener,
            _filler: filler,
            addr,
        }
    }

    /// The accept-queue length of the loopback listener on `port`: for a LISTEN row,
    /// /proc/net/tcp prints it as rx_queue. The server side of the filler's handshake may land
    /// a moment after the client's connect() returns, so tests wait for it.
    fn accept_queue_len(port: u16) -> u32 {
        let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            let local_port = cols[1].rsplit(':').next().expect("port");
            if cols[3] == "0A" && u16::from_str_radix(local_port, 16) == Ok(port) {
                let rx = cols[4].split(':').nth(1).expect("rx_queue");
                return u32::from_str_radix(rx, 16).expect("hex");
            }
        }
        panic!("no listener on port {port} in /proc/net/tcp");
    }

    fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "condition not met within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A loopback port that refuses connections: bound, then closed.
    fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("local_addr")
    }

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[test]
    fn open_listener_is_true() {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind");
        let v6 = TcpListener::bind("[::1]:0").expect("bind [::1]");
        let targets = [
            v4.local_addr().expect("addr"),
            v6.local_addr().expect("addr"),
        ];
        assert_eq!(probe_all(&targets, TIMEOUT), [true, true]);
    }

    #[test]
    fn closed_port_is_false_without_waiting() {
        let closed = closed_port();
        let start = Instant::now();
        let got = probe_all(&[closed], Duration::from_secs(10));
        assert_eq!(got, [false]);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn no_targets_is_empty() {
        assert!(probe_all(&[], TIMEOUT).is_empty());
    }

    #[test]
    fn hung_target_is_false_after_the_timeout() {
        let hung = hung_target();
        let start = Instant::now();
        let got = probe_all(&[hung.addr], TIMEOUT);
        let took = start.elapsed();
        assert_eq!(got, [false]);
        assert!(took >= TIMEOUT, "gave up early: {took:?}");
        assert!(took < 3 * TIMEOUT, "{took:?}");
    }

    #[test]
    fn many_hung_targets_cost_one_timeout() {
        let hung: Vec<Hung> = (0..50).map(|_| hung_target()).collect();
        let open = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut targets: Vec<SocketAddr> = hung.iter().map(|h| h.addr).collect();
        targets.insert(25, open.local_addr().expect("addr"));
        targets.push(closed_port());
        let start = Instant::now();
        let got = probe_all(&targets, TIMEOUT);
        let took = start.elapsed();
        let mut want = vec![false; targets.len()];
        want[25] = true;
        assert_eq!(got, want);
        assert!(took >= TIMEOUT, "gave up early: {took:?}");
        assert!(
            took < 3 * TIMEOUT,
            "50 hung targets took {took:?}, not one timeout"
        );
    }

    #[test]
    fn results_keep_target_order() {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = TcpListener::bind("[::1]:0").expect("bind [::1]");
        let hung = hung_target();
        let targets = [
            closed_port(),
            a.local_addr().expect("addr"),
            hung.addr,
            b.local_addr().expect("addr"),
            closed_port(),
        ];
        assert_eq!(
            probe_all(&targets, TIMEOUT),
            [false, true, false, true, false]
        );
    }

    #[test]
    fn thousands_of_targets() {
        // One listener with a deep backlog (std uses 128 on Linux, which 2000 connects would
        // overflow into hangs) takes 2000 of them, a refused port the other 1000: 3000 targets
        // in one round.
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        // Re-listen the std listener with a 4096 backlog (listen() on a listening socket only
        // changes its backlog).
        // SAFETY: listen() takes no pointers; the descriptor is an open listening socket.
        let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&std_listener), 4096) };
        assert_eq!(rc, 0);
        let open = std_listener.local_addr().expect("addr");
        let closed = closed_port();
        let targets: Vec<SocketAddr> = (0..3000)
            .map(|i| if i % 3 == 0 { closed } else { open })
            .collect();
        let got = probe_all(&targets, Duration::from_secs(5));
        for (i, ok) in got.iter().enumerate() {
            assert_eq!(*ok, i % 3 != 0, "target {i}");
        }
    }

    #[test]
    fn a_narrow_window_still_probes_everything() {
        let open = TcpListener::bind("127.0.0.1:0").expect("bind");
        let hung = hung_target();
        let mut targets = vec![open.local_addr().expect("addr"); 20];
        targets[7] = closed_port();
        targets[13] = hung.addr;
        let got = probe_windowed(&targets, TIMEOUT, 3);
        let want: Vec<bool> = (0..20).map(|i| i != 7 && i != 13).collect();
        assert_eq!(got, want);
    }
}
