//! Reading processes out of `/proc`: pure parsers for `/proc/PID/stat`, plus thin readers.
//!
//! Owns: the format of `/proc/PID/stat`, `/proc/PID/fd` socket links and the boot id; nothing
//! else in tend parses `/proc` for processes. Used by the monitor thread (ProcessMonitor: liveness,
//! CPU, RSS, who holds a port) and by the supervisor/store for process identity (docs/DESIGN.md §6:
//! boot id + pid + start ticks).
//!
//! Must never: signal, wait for or otherwise touch a process; cache anything that a process can
//! change (only sysconf values are cached); fail loudly on a process that vanished mid-read —
//! a process can exit between any two reads, so a vanished one is simply `None`/absent.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::sync::OnceLock;

/// One snapshot of `/proc/PID/stat` (proc(5)), the fields tend uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// The command name (at most 15 bytes in the kernel; may hold spaces and parentheses).
    pub comm: String,
    /// `R`, `S`, `D`, `Z`, `T`, `t`, `X`, `I`, ...
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// User-mode CPU time, in clock ticks (field 14).
    pub utime: u64,
    /// Kernel-mode CPU time, in clock ticks (field 15).
    pub stime: u64,
    /// Start time after boot, in clock ticks (field 22). With the pid and boot id it names a
    /// process for good: a reused pid gets a new start time (docs/NOTES.md "Processes").
    pub start_ticks: u64,
    /// Resident set size in pages (field 24).
    pub rss_pages: u64,
}

impl ProcStat {
    /// A zombie (`Z`) or dead (`X`) process still has a /proc entry and answers `kill(pid, 0)`,
    /// but it runs nothing and holds no descriptors.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`.
///
/// The comm field sits in parentheses and may itself contain spaces and parentheses, so the
/// numeric fields are taken after the LAST `)` (proc(5); docs/NOTES.md "Processes"). Returns `None` for
/// text that does not have that shape.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    // Field n of proc(5) (1-based) is rest[n - 3]: fields 1 and 2 are pid and comm.
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n)?.parse::<u64>().ok();
    let mut state_chars = field(3)?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        utime: num(14)?,
        stime: num(15)?,
        start_ticks: num(22)?,
        // rss is printed signed (%ld); a negative value would be a kernel accounting glitch.
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Reads `/proc/PID/stat` into `buf` (cleared first). The comm may hold any bytes
/// (prctl(PR_SET_NAME)), so the text is converted lossily instead of failing on non-UTF-8.
fn read_stat_with(pid: u32, buf: &mut Vec<u8>) -> Option<ProcStat> {
    buf.clear();
    let mut file = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    file.read_to_end(buf).ok()?;
    parse_stat(&String::from_utf8_lossy(buf))
}

/// `/proc/PID/stat` of `pid`, or `None` when the process is gone or unreadable.
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    if pid == 0 {
        return None;
    }
    read_stat_with(pid, &mut Vec::with_capacity(512))
}

/// Reads `/proc/PID/stat` of watched processes every round through descriptors kept open:
/// one `pread` a process instead of open, read and close (a third of the syscalls, which were
/// most of a health round's cost at 1000 servers). A descriptor of `/proc/PID` stays bound to
/// the process it was opened for: once that process is gone, reads fail, so a reused PID is
/// never read through an old descriptor.
#[derive(Default)]
pub struct StatReader {
    files: HashMap<u32, fs::File>,
    buf: Vec<u8>,
}

impl StatReader {
    pub fn read(&mut self, pid: u32) -> Option<ProcStat> {
        use std::os::unix::fs::FileExt;
        if pid == 0 {
            return None;
        }
        let file = match self.files.entry(pid) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(fs::File::open(format!("/proc/{pid}/stat")).ok()?)
            }
        };
        self.buf.resize(1024, 0);
        match file.read_at(&mut self.buf, 0) {
            Ok(n) if n > 0 => parse_stat(&String::from_utf8_lossy(&self.buf[..n])),
            _ => {
                self.files.remove(&pid);
                None
            }
        }
    }

    /// Closes the descriptors of processes no longer asked about.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.files.retain(|pid, _| keep(*pid));
    }
}

/// True if `pid` exists and is neither a zombie nor dead.
///
/// `kill(pid, 0)` is not enough: it succeeds on a zombie, and PID 1 reaps reparented zombies
/// late (1–3 s seen; docs/NOTES.md "Processes").
pub fn is_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|s| !s.is_dead())
}

/// The start time of `pid` in clock ticks after boot (field 22), or `None` if it is gone.
pub fn start_ticks(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_ticks)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), trimmed. A stored pid is only
/// meaningful under the boot id it was recorded with (docs/DESIGN.md §6).
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// When the system booted, in seconds since the Unix epoch (`btime` in `/proc/stat`).
pub fn boot_time() -> Option<u64> {
    parse_boot_time(&fs::read_to_string("/proc/stat").ok()?)
}

/// The `btime` line of `/proc/stat` text (proc(5)).
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of utime, stime and starttime. Cached.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value; it has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // 100 is USER_HZ on every Linux architecture; it is only a fallback for an odd libc.
        if v > 0 { v as u64 } else { 100 }
    })
}

/// `sysconf(_SC_PAGESIZE)`: the unit of the rss field. Cached.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value; it has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 { v as u64 } else { 4096 }
    })
}

/// CPU time used so far (user + system), in clock ticks.
pub fn cpu_time_ticks(stat: &ProcStat) -> u64 {
    stat.utime.saturating_add(stat.stime)
}

/// Resident set size in bytes.
pub fn rss_bytes(stat: &ProcStat) -> u64 {
    stat.rss_pages.saturating_mul(page_size())
}

/// Every process id listed in `/proc` (thread-group leaders only; threads are hidden there).
/// Empty if `/proc` cannot be read.
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The inode in a `/proc/PID/fd` link target of the form `socket:[12345]`.
fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let inner = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// Calls `f` with the inode of every socket `pid` holds open. `f` returns false to stop early.
/// Unreadable directories or links (another user's process, a process that just exited, an fd
/// closed mid-scan) are skipped: non-root cannot read other users' fds (docs/NOTES.md "Ports").
fn for_each_socket_inode(pid: u32, mut f: impl FnMut(u64) -> bool) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return;
    };
    for entry in dir.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if let Some(inode) = parse_socket_link(target.as_os_str().as_bytes()) {
            if !f(inode) {
                return;
            }
        }
    }
}

/// Inodes of the sockets `pid` holds (`socket:[N]` links in `/proc/PID/fd`). Empty if the
/// process is gone or its fds are unreadable.
#[cfg(test)]
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for_each_socket_inode(pid, |inode| {
        out.push(inode);
        true
    });
    out
}

/// Live (not zombie) processes grouped by session id, for the sessions asked about, from one
/// scan of `/proc/*/stat`. tend starts each server with `setsid`, so a server's process tree is
/// its session (docs/DESIGN.md §7). Sessions with no live member are absent from the map.
pub fn session_members(sessions: &HashSet<u32>) -> HashMap<u32, Vec<u32>> {
    let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
    if sessions.is_empty() {
        return out;
    }
    let mut buf = Vec::with_capacity(512);
    for pid in all_pids() {
        let Some(stat) = read_stat_with(pid, &mut buf) else {
            continue;
        };
        if !stat.is_dead() && sessions.contains(&stat.session) {
            out.entry(stat.session).or_default().push(pid);
        }
    }
    out
}

/// Which of `pids` holds each socket inode in `inodes`: the first pid found per inode (a socket
/// shared across fork is held by several). Stops as soon as every inode is found. Inodes held
/// by none of `pids` (or by processes whose fds are unreadable) are absent from the map.
pub fn find_socket_owners(
    inodes: &HashSet<u64>,
    pids: impl IntoIterator<Item = u32>,
) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    if inodes.is_empty() {
        return owners;
    }
    for pid in pids {
        for_each_socket_inode(pid, |inode| {
            if inodes.contains(&inode) {
                owners.entry(inode).or_insert(pid);
            }
            owners.len() < inodes.len()
        });
        if owners.len() == inodes.len() {
            break;
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::TcpListener;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped with waitpid below: std's waits are off limits
    fn a_kept_descriptor_reads_its_process_and_never_a_successor() {
        let mut reader = super::StatReader::default();
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let first = reader.read(pid).expect("alive");
        assert_eq!(first.pid, pid);
        assert_eq!(
            reader.read(pid).map(|s| s.start_ticks),
            Some(first.start_ticks)
        );
        // SAFETY: signals and reaps our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        assert!(reader.read(pid).is_none(), "a gone process reads as gone");
        assert!(reader.files.is_empty(), "its descriptor is closed");
    }
    use std::os::unix::fs::MetadataExt;

    use crate::os::procfs::{
        ProcStat, all_pids, boot_id, boot_time, clock_ticks_per_second, cpu_time_ticks,
        find_socket_owners, is_alive, page_size, parse_boot_time, parse_socket_link, parse_stat,
        read_stat, rss_bytes, session_members, socket_inodes, start_ticks,
    };

    // A real line from `cat /proc/self/stat` (kernel 6.x), 52 fields.
    const CAT: &str = "4242 (cat) R 4100 4242 4100 34816 4242 4194304 98 0 0 0 1 2 0 0 20 0 1 \
        0 8812345 5738496 226 18446744073709551615 94000000000000 94000000016000 \
        140720000000000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94000000030000 94000000031000 \
        94000001000000 140720000001000 140720000001020 140720000001020 140720000003000 0\n";

    #[test]
    fn boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 12 0\nctxt 99\nbtime 1764150000\n\
                    processes 4242\n";
        assert_eq!(parse_boot_time(text), Some(1_764_150_000));
        assert_eq!(parse_boot_time("cpu 1 2\nbtimex 5\n"), None);
        // This machine's: after 2001, and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let boot = boot_time().expect("/proc/stat has btime");
        assert!(boot > 1_000_000_000 && boot <= now, "{boot}");
    }

    #[test]
    fn parses_a_plain_stat_line() {
        let s = parse_stat(CAT).expect("valid line");
        assert_eq!(
            s,
            ProcStat {
                pid: 4242,
                comm: "cat".into(),
                state: 'R',
                ppid: 4100,
                pgrp: 4242,
                session: 4100,
                utime: 1,
                stime: 2,
                start_ticks: 8812345,
                rss_pages: 226,
            }
        );
        assert_eq!(cpu_time_ticks(&s), 3);
        assert_eq!(rss_bytes(&s), 226 * page_size());
    }

    #[test]
    fn comm_with_spaces_and_parentheses_is_taken_up_to_the_last_paren() {
        let line = CAT.replacen("(cat)", "(a) (b c))", 1);
        let s = parse_stat(&line).expect("valid line");
        assert_eq!(s.comm, "a) (b c)");
        assert_eq!(s.state, 'R');
        assert_eq!(s.ppid, 4100);
        assert_eq!(s.start_ticks, 8812345);
        assert_eq!(s.rss_pages, 226);
    }

    #[test]
    fn comm_that_looks_like_fields_does_not_shift_them() {
        let line = CAT.replacen("(cat)", "(x) Z 1 2 3 (y)", 1);
        let s = parse_stat(&line).expect("valid line");
        assert_eq!(s.comm, "x) Z 1 2 3 (y");
        assert_eq!((s.state, s.ppid, s.session), ('R', 4100, 4100));
    }

    #[test]
    fn zombie_and_dead_states_are_dead() {
        for (state, dead) in [("Z", true), ("X", true), ("S", false), ("D", false)] {
            let line = CAT.replacen(") R ", &format!(") {state} "), 1);
            let s = parse_stat(&line).expect("valid line");
            assert_eq!(s.is_dead(), dead, "state {state}");
        }
    }

    #[test]
    fn malformed_lines_are_none() {
        for bad in [
            "",
            "4242",
            "4242 (cat",
            "4242 cat) R 1",
            ") 4242 (cat",
            "x (cat) R 1 1 1",
            "4242 (cat) R 1 1 1",
            "4242 (cat) RR 4100 4242 4100 0 0 0 0 0 0 0 1 2 0 0 20 0 1 0 8 9 10",
            // 21 fields: rss (24) missing.
            "4242 (cat) R 4100 4242 4100 0 0 0 0 0 0 0 1 2 0 0 20 0 1 0 8812345 9",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        // Exactly 24 fields is enough.
        let min = "4242 (cat) R 4100 4242 4100 0 0 0 0 0 0 0 1 2 0 0 20 0 1 0 8812345 9 7";
        assert_eq!(parse_stat(min).map(|s| s.rss_pages), Some(7));
    }

    #[test]
    fn socket_links_are_parsed() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"pipe:[12345]"), None);
        assert_eq!(parse_socket_link(b"/dev/null"), None);
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"socket:[12x]"), None);
    }

    #[test]
    fn reads_its_own_stat() {
        let me = std::process::id();
        let s = read_stat(me).expect("own /proc/PID/stat");
        let via_self = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        let via_self = parse_stat(&via_self).expect("parse /proc/self/stat");
        assert_eq!(s.pid, me);
        assert_eq!(via_self.pid, me);
        assert_eq!(s.start_ticks, via_self.start_ticks);
        assert_eq!(start_ticks(me), Some(s.start_ticks));
        // SAFETY: getppid/getpgrp/getsid(0) only read the caller's ids.
        let (ppid, pgrp, sid) = unsafe { (libc::getppid(), libc::getpgrp(), libc::getsid(0)) };
        assert_eq!(s.ppid, ppid as u32);
        assert_eq!(s.pgrp, pgrp as u32);
        assert_eq!(s.session, sid as u32);
        assert!(s.rss_pages > 0);
        assert!(is_alive(me));
        assert!(all_pids().contains(&me));
        let members = session_members(&HashSet::from([s.session]));
        assert!(members[&s.session].contains(&me));
        assert!(clock_ticks_per_second() >= 1);
        assert!(page_size() >= 4096);
    }

    #[test]
    fn gone_pids_are_not_alive() {
        assert!(!is_alive(0));
        assert_eq!(read_stat(0), None);
        // pid_max is at most 2^22; this pid can never exist.
        assert!(!is_alive(u32::MAX - 1));
        assert_eq!(start_ticks(u32::MAX - 1), None);
        assert!(socket_inodes(u32::MAX - 1).is_empty());
    }

    #[test]
    fn boot_id_is_a_uuid() {
        let id = boot_id().expect("boot_id");
        assert_eq!(id.len(), 36, "{id:?}");
        assert_eq!(id.matches('-').count(), 4, "{id:?}");
        assert_eq!(boot_id().expect("boot_id"), id);
    }

    #[test]
    fn finds_its_own_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let inode = std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&listener)
        ))
        .expect("stat socket fd")
        .ino();
        let me = std::process::id();
        assert!(socket_inodes(me).contains(&inode));
        let owners = find_socket_owners(&HashSet::from([inode]), [u32::MAX - 1, me]);
        assert_eq!(owners.get(&inode), Some(&me));
        let none = find_socket_owners(&HashSet::from([inode]), [u32::MAX - 1]);
        assert!(none.is_empty());
        drop(listener);
    }
}
