//! inotify, and the eventfd that wakes a thread blocked on it: what the log rotation thread
//! ([`crate::logs::rotate`]) and the file watcher ([`crate::watch`]) ask of the kernel.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// A buffer for [`Inotify::read`]: room for one event with the longest name (16 + 256 bytes)
/// many times over, typically a hundred events. A burst larger than that is read in more
/// calls; a larger buffer would be resident for tend's life in every thread that watches.
pub const READ_BUFFER: usize = 4096;

/// One inotify instance.
pub struct Inotify {
    fd: OwnedFd,
}

/// One event as the kernel reported it; `name` is empty for events about the watched folder
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub wd: i32,
    pub mask: u32,
    pub name: OsString,
}

/// Where the per-user watch limit lives, for messages.
pub const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

impl Inotify {
    /// A new instance; `nonblocking` for a thread that polls it with other descriptors.
    pub fn new(nonblocking: bool) -> io::Result<Inotify> {
        let flags = libc::IN_CLOEXEC | if nonblocking { libc::IN_NONBLOCK } else { 0 };
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Inotify { fd })
    }

    /// Watches `path` for `mask`; the same folder watched twice gives the same descriptor.
    /// `ENOSPC` means the per-user watch limit ([`MAX_USER_WATCHES`]) is reached.
    pub fn add_watch(&self, path: &Path, mask: u32) -> io::Result<i32> {
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL"))?;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Stops a watch; the kernel then reports `IN_IGNORED` for it.
    pub fn rm_watch(&self, wd: i32) {
        // SAFETY: a plain syscall on our descriptor; a stale `wd` only gives EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    /// Reads what events there are into `buf` (at least [`READ_BUFFER`] bytes; blocking unless the instance is nonblocking:
    /// then an empty list when there are none).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Vec<Event>> {
        loop {
            // SAFETY: reads into our own buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(parse(&buf[..n as usize]));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(Vec::new()),
                _ => return Err(error),
            }
        }
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The events in what one `read` returned: each a header and a NUL-padded name.
fn parse(bytes: &[u8]) -> Vec<Event> {
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut events = Vec::new();
    let mut offset = 0;
    while offset + header <= bytes.len() {
        // SAFETY: the kernel wrote a whole inotify_event at `offset`; read_unaligned copes with
        // the byte buffer's alignment.
        let event: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(bytes[offset..].as_ptr().cast()) };
        let name_start = offset + header;
        let name_end = name_start + event.len as usize;
        if name_end > bytes.len() {
            break;
        }
        let name = &bytes[name_start..name_end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        events.push(Event {
            wd: event.wd,
            mask: event.mask,
            name: OsStr::from_bytes(name).to_os_string(),
        });
        offset = name_end;
    }
    events
}

/// The per-user watch limit, when /proc says: the system's, or a user namespace's own
/// (`user.max_inotify_watches`, a container's) when that is lower.
pub fn max_user_watches() -> Option<u64> {
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    [MAX_USER_WATCHES, "/proc/sys/user/max_inotify_watches"]
        .into_iter()
        .filter_map(read)
        .min()
}

/// An eventfd another thread writes to wake a thread blocked in [`wait`].
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes an initial value and flags and returns a descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to our eventfd; a full counter only gives EAGAIN,
        // and then a wake-up is pending anyway.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wake-ups.
    pub fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a local from our nonblocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Blocks until one of `fds` is readable or `timeout` passes (`None`: no timeout); says which
/// are readable.
pub fn wait(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up: a timeout rounded down to 0 ms would spin until the deadline.
    let ms = timeout.map_or(-1, |t| {
        t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    loop {
        // SAFETY: `polls` is our own array of the given length.
        let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(polls.iter().map(|p| p.revents != 0).collect());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_file_and_a_waker_wakes() {
        let dir = std::env::temp_dir().join(format!("tend-inotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let inotify = Inotify::new(true).unwrap();
        let wd = inotify.add_watch(&dir, libc::IN_CLOSE_WRITE).unwrap();
        assert_eq!(inotify.add_watch(&dir, libc::IN_CLOSE_WRITE).unwrap(), wd);
        std::fs::write(dir.join("a.txt"), "x").unwrap();
        let ready = wait(&[inotify.as_raw_fd()], Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, vec![true]);
        let mut buf = vec![0u8; 4096];
        let events = inotify.read(&mut buf).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].wd, wd);
        assert_eq!(events[0].name, "a.txt");
        assert!(inotify.read(&mut buf).unwrap().is_empty(), "nonblocking");

        let waker = Waker::new().unwrap();
        assert_eq!(
            wait(&[waker.as_raw_fd()], Some(Duration::ZERO)).unwrap(),
            vec![false]
        );
        waker.wake();
        assert_eq!(wait(&[waker.as_raw_fd()], None).unwrap(), vec![true]);
        waker.drain();
        assert_eq!(
            wait(&[waker.as_raw_fd()], Some(Duration::ZERO)).unwrap(),
            vec![false]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
