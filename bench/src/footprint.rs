//! What tend holds, by kind, for `make soak`: every open descriptor named by what it points at
//! (readlink of /proc/PID/fd/N, sockets looked up in tend's own /proc/PID/net tables), every
//! thread by name, and RSS; and a quiet moment in which two such figures are comparable.
//!
//! A total descriptor count is not comparable between two moments: tend keeps one
//! /proc/PID/stat open per running server (opened on the first sample after a start), and
//! request connections and their threads come and go. Counted by kind, at moments that are
//! alike (see [`settle`]), each kind should come back to the same number, and a kind that grew
//! names the leak.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::managers::TendRun;
use crate::procs;

pub const KEPT_STAT: &str = "kept /proc/PID/stat (one per running server)";
pub const SSE: &str = "socket: SSE client connection";
pub const LISTENER: &str = "socket: TCP listener";
pub const OTHER_TCP: &str = "socket: other TCP connection (a request, keep-alive)";

/// How long a quiet moment must last. tend answers each connection on its own thread, which
/// ends with the connection (and the quiet moment has none but the SSE clients'); 8 s also
/// outlasts the idle workers of a thread pool that keeps them 5 s (tiny_http's own `Server`),
/// should tend answer through one again.
const QUIET: Duration = Duration::from_secs(8);
/// How long to wait for a quiet moment: tend closes an idle keep-alive connection after 10 s,
/// and starting every server again after churn takes a few seconds.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Footprint {
    /// Descriptors by kind (see [`kind_of`]).
    pub fds: BTreeMap<String, usize>,
    /// Threads by name (/proc/PID/task/TID/comm; unnamed threads carry the process's name).
    pub threads: BTreeMap<String, usize>,
    pub rss: u64,
    /// The PIDs whose /proc/PID/stat tend holds open.
    pub stat_pids: BTreeSet<u32>,
    /// Distinct connections (a descriptor may be duplicated; a connection is one socket inode).
    pub sse_connections: usize,
    pub other_connections: usize,
    pub listeners: usize,
}

impl Footprint {
    pub fn fd_total(&self) -> usize {
        self.fds.values().sum()
    }

    pub fn thread_total(&self) -> usize {
        self.threads.values().sum()
    }

    /// Every kind at its smallest over both: what was held throughout. A descriptor held only
    /// for a moment (the state file being written, a netlink socket during a port round) drops
    /// out; a leaked one stays.
    fn least(&self, other: &Footprint) -> Footprint {
        let least = |a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>| {
            a.iter()
                .map(|(k, &n)| (k.clone(), n.min(b.get(k).copied().unwrap_or(0))))
                .filter(|&(_, n)| n > 0)
                .collect()
        };
        Footprint {
            fds: least(&self.fds, &other.fds),
            threads: least(&self.threads, &other.threads),
            rss: self.rss.min(other.rss),
            stat_pids: &self.stat_pids & &other.stat_pids,
            sse_connections: self.sse_connections.min(other.sse_connections),
            other_connections: self.other_connections.min(other.other_connections),
            listeners: self.listeners.min(other.listeners),
        }
    }
}

/// A TCP socket as tend's network namespace lists it.
#[derive(Clone, Copy)]
struct Tcp {
    local_port: u16,
    remote_port: u16,
    listening: bool,
}

/// The inodes of a /proc/PID/net table, the inode being field `column` (0-based) of each row.
fn inodes(path: &str, column: usize) -> HashSet<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(column)?.parse().ok())
        .collect()
}

fn tcp_sockets(pid: u32) -> HashMap<u64, Tcp> {
    let port = |address: &str| {
        u16::from_str_radix(address.rsplit(':').next().unwrap_or_default(), 16).unwrap_or(0)
    };
    let mut sockets = HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(inode) = f.get(9).and_then(|i| i.parse::<u64>().ok()) else {
                continue;
            };
            sockets.insert(
                inode,
                Tcp {
                    local_port: port(f[1]),
                    remote_port: port(f[2]),
                    listening: f[3] == "0A",
                },
            );
        }
    }
    sockets
}

/// The kind of one descriptor from its readlink target. Paths under tend's folder are shown
/// relative to it; digits in /proc paths become `PID`, so one kind covers every process.
fn kind_of(
    target: &str,
    dir: &str,
    tcp: &HashMap<u64, Tcp>,
    other_sockets: &[(&str, &HashSet<u64>)],
    port: u16,
    sse_ports: &HashSet<u16>,
) -> String {
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse::<u64>().ok())
    {
        return match tcp.get(&inode) {
            Some(t) if t.listening => LISTENER.into(),
            Some(t) if t.local_port == port && sse_ports.contains(&t.remote_port) => SSE.into(),
            Some(_) => OTHER_TCP.into(),
            None => other_sockets
                .iter()
                .find(|(_, set)| set.contains(&inode))
                .map_or("socket: other".into(), |(name, _)| {
                    format!("socket: {name}")
                }),
        };
    }
    if target.starts_with("pipe:[") {
        return "pipe".into();
    }
    if let Some(anon) = target.strip_prefix("anon_inode:") {
        return anon.trim_matches(['[', ']']).to_string();
    }
    if let Some(rest) = target.strip_prefix("/proc/") {
        let rest: String = rest.trim_start_matches(|c: char| c.is_ascii_digit()).into();
        return if rest == "/stat" {
            KEPT_STAT.into()
        } else {
            format!("/proc/PID{rest}")
        };
    }
    match target.strip_prefix(dir) {
        Some(inside) => format!("<tend folder>{inside}"),
        None => target.to_string(),
    }
}

/// tend's descriptors, threads and RSS now. `dir` is tend's folder, `port` its HTTP port,
/// `sse_ports` the local ports of the SSE clients' connections.
pub fn take(pid: u32, dir: &Path, port: u16, sse_ports: &HashSet<u16>) -> Footprint {
    let tcp = tcp_sockets(pid);
    let unix = inodes(&format!("/proc/{pid}/net/unix"), 6);
    let netlink = inodes(&format!("/proc/{pid}/net/netlink"), 9);
    let udp: HashSet<u64> = ["udp", "udp6"]
        .iter()
        .flat_map(|t| inodes(&format!("/proc/{pid}/net/{t}"), 9))
        .collect();
    let others = [("unix", &unix), ("netlink", &netlink), ("UDP", &udp)];
    let dir = dir.display().to_string();
    let mut footprint = Footprint::default();
    let mut sse = HashSet::new();
    let mut other = HashSet::new();
    let mut listeners = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
    {
        let Ok(entry) = entry else { continue };
        // A descriptor closed between the listing and the readlink was not held: skip it.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.display().to_string();
        let kind = kind_of(&target, &dir, &tcp, &others, port, sse_ports);
        if kind == KEPT_STAT {
            let digits = target.trim_start_matches("/proc/").split('/').next();
            if let Some(held) = digits.and_then(|d| d.parse().ok()) {
                footprint.stat_pids.insert(held);
            }
        }
        let inode = target.clone();
        match kind.as_str() {
            SSE => sse.insert(inode),
            OTHER_TCP => other.insert(inode),
            LISTENER => listeners.insert(inode),
            _ => false,
        };
        *footprint.fds.entry(kind).or_default() += 1;
    }
    footprint.sse_connections = sse.len();
    footprint.other_connections = other.len();
    footprint.listeners = listeners.len();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            *footprint
                .threads
                .entry(name.trim_end().to_string())
                .or_default() += 1;
        }
    }
    footprint.rss = procs::rss_pss(pid).map_or(0, |(rss, _)| rss);
    footprint
}

/// The servers' PIDs once every one of them runs; after `limit`, Err names those that did not.
pub fn all_running(
    tend: &TendRun,
    servers: usize,
    limit: Duration,
) -> Result<BTreeSet<u32>, String> {
    let deadline = Instant::now() + limit;
    loop {
        let list = tend.get("/api/servers");
        let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.len() == servers && list.iter().all(|s| s["status"] == "running") {
            return Ok(list
                .iter()
                .filter_map(|s| s["pid"].as_u64().map(|p| p as u32))
                .collect());
        }
        if Instant::now() > deadline {
            let late: Vec<String> = list
                .iter()
                .filter(|s| s["status"] != "running")
                .map(|s| {
                    format!(
                        "{} {} (pid {}, restarts {}, exit {} {}, ports {}, orphaned {}, last error {})",
                        s["id"], s["status"], s["pid"], s["restarts"], s["exitCode"],
                        s["exitSignal"], s["ports"], s["orphaned"], s["lastError"]
                    )
                })
                .collect();
            return Err(format!(
                "{} of {servers} servers listed, not running after {} s: {}",
                list.len(),
                limit.as_secs(),
                late.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What keeps a figure from being comparable, or None when it is: every server's
/// /proc/PID/stat held (and no other), every SSE client connected, the listener open, and no
/// other connection (so no request and no request thread).
fn unlike(now: &Footprint, pids: &BTreeSet<u32>, clients: usize) -> Option<String> {
    if now.stat_pids != *pids {
        let missing = pids.difference(&now.stat_pids).count();
        let extra = now.stat_pids.difference(pids).count();
        return Some(format!(
            "kept /proc/PID/stat: {missing} running servers without one, {extra} of other processes"
        ));
    }
    if now.sse_connections != clients {
        return Some(format!(
            "{} SSE connections of {clients}",
            now.sse_connections
        ));
    }
    if now.listeners != 1 {
        return Some(format!("{} listeners", now.listeners));
    }
    if now.other_connections > 0 {
        return Some(format!(
            "{} other TCP connections still open",
            now.other_connections
        ));
    }
    None
}

/// Brings tend to a moment comparable with any other taken the same way, and measures it:
/// every server started and running, then (without another request) polled until every
/// running server's /proc/PID/stat is held, all `clients` SSE connections are open and no other
/// connection is; then each kind at its smallest over [`QUIET`] seconds in which that stayed
/// true. `sse_ports` gives the SSE clients' current local ports. Err says what never settled.
pub fn settle(
    tend: &TendRun,
    servers: usize,
    clients: usize,
    sse_ports: impl Fn() -> HashSet<u16>,
) -> Result<Footprint, String> {
    let _ = crate::http::request(tend.port, "POST", "/api/servers?action=start", None);
    let pids = all_running(tend, servers, SETTLE_LIMIT)?;
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut quiet: Option<(Instant, Footprint)> = None;
    loop {
        let now = take(tend.pid, &tend.dir, tend.port, &sse_ports());
        match unlike(&now, &pids, clients) {
            Some(reason) => {
                quiet = None;
                if Instant::now() > deadline {
                    return Err(format!("not settled within 60 s: {reason}"));
                }
            }
            None => {
                let (since, least) = match quiet.take() {
                    None => (Instant::now(), now),
                    Some((since, least)) => (since, least.least(&now)),
                };
                if since.elapsed() >= QUIET {
                    return Ok(least);
                }
                quiet = Some((since, least));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The kinds (or names) that grew from `before` to `after`, as "kind a → b".
pub fn grown(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(kind, &n)| {
            let was = before.get(kind).copied().unwrap_or(0);
            (n > was).then(|| format!("{kind} {was} → {n}"))
        })
        .collect()
}

/// A table of every kind over the given figures (one column each).
pub fn table(title: &str, columns: &[(&str, &BTreeMap<String, usize>)]) -> String {
    let kinds: BTreeSet<&String> = columns.iter().flat_map(|(_, m)| m.keys()).collect();
    let width = kinds
        .iter()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.len());
    let mut out = format!("{title:<width$}");
    for (name, _) in columns {
        out.push_str(&format!(" {name:>9}"));
    }
    out.push('\n');
    for kind in kinds {
        out.push_str(&format!("{kind:<width$}"));
        for (_, m) in columns {
            out.push_str(&format!(" {:>9}", m.get(kind).copied().unwrap_or(0)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn descriptors_are_named_by_what_they_point_at() {
        let tcp = HashMap::from([
            (
                1,
                Tcp {
                    local_port: 7070,
                    remote_port: 0,
                    listening: true,
                },
            ),
            (
                2,
                Tcp {
                    local_port: 7070,
                    remote_port: 50001,
                    listening: false,
                },
            ),
            (
                3,
                Tcp {
                    local_port: 7070,
                    remote_port: 50002,
                    listening: false,
                },
            ),
        ]);
        let netlink = HashSet::from([4]);
        let others = [("netlink", &netlink)];
        let sse = HashSet::from([50001]);
        let kind = |t: &str| kind_of(t, "/tmp/t", &tcp, &others, 7070, &sse);
        assert_eq!(kind("socket:[1]"), LISTENER);
        assert_eq!(kind("socket:[2]"), SSE);
        assert_eq!(kind("socket:[3]"), OTHER_TCP);
        assert_eq!(kind("socket:[4]"), "socket: netlink");
        assert_eq!(kind("socket:[5]"), "socket: other");
        assert_eq!(kind("anon_inode:[pidfd]"), "pidfd");
        assert_eq!(kind("anon_inode:inotify"), "inotify");
        assert_eq!(kind("pipe:[123]"), "pipe");
        assert_eq!(kind("/proc/4242/stat"), KEPT_STAT);
        assert_eq!(kind("/proc/4242/fd"), "/proc/PID/fd");
        assert_eq!(kind("/tmp/t/tend.log"), "<tend folder>/tend.log");
        assert_eq!(kind("/dev/null"), "/dev/null");
    }

    #[test]
    fn a_kind_that_grew_names_itself_and_one_that_appeared_counts_from_zero() {
        let before = map(&[("pipe", 6), (KEPT_STAT, 100)]);
        let after = map(&[("pipe", 6), (KEPT_STAT, 100), ("pidfd", 3)]);
        assert_eq!(grown(&before, &after), vec!["pidfd 0 → 3"]);
        assert!(grown(&after, &before).is_empty());
    }

    #[test]
    fn the_least_of_two_figures_drops_what_was_held_for_a_moment() {
        let a = Footprint {
            fds: map(&[("pipe", 6), ("socket: netlink", 1)]),
            threads: map(&[("tend", 10)]),
            rss: 5,
            ..Footprint::default()
        };
        let b = Footprint {
            fds: map(&[("pipe", 6)]),
            threads: map(&[("tend", 9)]),
            rss: 7,
            ..Footprint::default()
        };
        let least = a.least(&b);
        assert_eq!(least.fds, map(&[("pipe", 6)]));
        assert_eq!(least.threads, map(&[("tend", 9)]));
        assert_eq!(least.rss, 5);
    }
}
