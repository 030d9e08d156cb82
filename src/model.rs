//! Plain data shared by every component: statuses, the server object of the API (docs/DESIGN.md §4),
//! and the events the supervisor broadcasts (docs/DESIGN.md §5). No behaviour and no I/O lives here.

use serde::Serialize;

/// A server's lifecycle status (docs/DESIGN.md §3). Flags such as `orphaned` are kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Stopped,
    Starting,
    Running,
    Unhealthy,
    Stopping,
    Exited,
    Crashed,
    Backoff,
    Fatal,
}

impl Status {
    /// Every status, in the order of docs/DESIGN.md §3 (for `/metrics`, which shows one series each).
    pub const ALL: [Status; 9] = [
        Status::Stopped,
        Status::Starting,
        Status::Running,
        Status::Unhealthy,
        Status::Stopping,
        Status::Exited,
        Status::Crashed,
        Status::Backoff,
        Status::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stopped => "stopped",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Unhealthy => "unhealthy",
            Status::Stopping => "stopping",
            Status::Exited => "exited",
            Status::Crashed => "crashed",
            Status::Backoff => "backoff",
            Status::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person can ask of a server: the API's `?action=` and the CLI's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    /// The API's spelling (`?action=start`), which is also the command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        [Action::Start, Action::Stop, Action::Restart]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

/// One configured port as the last health round saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    pub port: u16,
    /// A TCP connect to it succeeded in the last round.
    pub open: bool,
    /// The process that holds the listening socket, when tend could find it.
    pub owner_pid: Option<u32>,
}

/// The server object of the API (docs/DESIGN.md §4). Never carries a child's environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    pub id: String,
    /// The config's `group`; `None` (null) for a server in no group.
    pub group: Option<String>,
    pub command: String,
    pub status: Status,
    pub running: bool,
    pub healthy: bool,
    pub pid: Option<u32>,
    /// Milliseconds since the Unix epoch.
    pub start_time: Option<u64>,
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    /// A signal name such as "SIGKILL".
    pub exit_signal: Option<String>,
    pub ports: Vec<PortView>,
    pub orphaned: bool,
    pub orphaned_pid: Option<u32>,
    pub adopted: bool,
    /// The orphan is provably this server's own lost process (`tend adopt` takes it over).
    pub adoptable: Option<AdoptableView>,
    /// Why the orphan is not adoptable, when tend could look at it.
    pub not_adoptable: Option<String>,
    /// CPU of the server's whole process group (every live process of its session), in % of
    /// one core over the last health round.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the whole process group, summed.
    pub rss_bytes: Option<u64>,
    /// Live processes in the group (the main process and everything it forked).
    pub processes: Option<u32>,
    /// The main process's own share (the PID above): a master's, without its workers.
    pub main_cpu_percent: Option<f64>,
    pub main_rss_bytes: Option<u64>,
    pub last_error: Option<String>,
    /// The last health check of the running process (`health` in the config); `None` without
    /// one, or before its first result.
    pub health: Option<HealthView>,
    /// The file watch (`watch` in the config); `None` without one.
    pub watch: Option<WatchView>,
    /// The next restart `restart_every` or `restart_at` plans for the running process.
    pub planned_restart: Option<PlannedView>,
}

/// A server's file watch as the dashboard shows it: "watching 12 paths".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchView {
    /// Folders watched (each covers the files in it).
    pub paths: usize,
    /// Why the watch is incomplete (the kernel's watch limit), if it is.
    pub error: Option<String>,
}

/// The next planned restart: when, and which key plans it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedView {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// "restart_every 24h" or "restart_at 0 4 * * *".
    pub by: String,
}

/// The last health check's result, as the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    pub ok: bool,
    /// What a person reads: "HTTP 503 from /healthz", "timed out after 1000 ms (/healthz)".
    pub detail: String,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at: u64,
    pub duration_ms: u64,
    /// Failed checks in a row (0 after a success).
    pub failures: u32,
    /// The check has passed at least once for this process (readiness).
    pub ready: bool,
}

/// An adoptable orphan: the process tend would take over, and what proves it is the server's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdoptableView {
    pub pid: u32,
    /// "same id, command and folder; started 3 h ago" (the age as of when it was seen).
    pub evidence: String,
    /// When the process started, in milliseconds since the Unix epoch.
    pub start_time: u64,
}

/// CPU and memory of one running server, sent once per health round (docs/DESIGN.md §5 `stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsEntry {
    pub id: String,
    /// The whole process group's, as in [`ServerView`].
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub processes: u32,
}

/// Outbound events (docs/DESIGN.md §5). The supervisor creates them; the event hub numbers and frames
/// them for SSE clients.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The whole list, after a config reload added, removed or reordered servers: a client
    /// replaces its rows with these.
    Servers(Vec<ServerView>),
    /// One server changed (status, pid, ports, flags or restarts).
    Server(Box<ServerView>),
    /// CPU and memory of running servers after a health round.
    Stats(Vec<StatsEntry>),
    /// A named timeline event.
    Timeline(Timeline),
}

/// The named timeline events of docs/DESIGN.md §5.
#[derive(Debug, Clone, PartialEq, Serialize)]
/// Serialized without a tag: the SSE `event:` line names it.
#[serde(untagged)]
pub enum Timeline {
    #[serde(rename_all = "camelCase")]
    ServerStarted { id: String, pid: u32 },
    #[serde(rename_all = "camelCase")]
    ServerStopped {
        id: String,
        pid: Option<u32>,
        /// Set when the stop signal was not enough and SIGKILL ended it.
        forced: bool,
    },
    #[serde(rename_all = "camelCase")]
    ProcessDied {
        id: String,
        pid: u32,
        exit_code: Option<i32>,
        exit_signal: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ProcessError { id: String, error: String },
    #[serde(rename_all = "camelCase")]
    StatusChange {
        id: String,
        pid: Option<u32>,
        from: Status,
        to: Status,
    },
    #[serde(rename_all = "camelCase")]
    OrphanDetected {
        id: String,
        pid: Option<u32>,
        port: u16,
    },
    /// An orphan warning that no longer holds: the port is free, or held by the server itself.
    #[serde(rename_all = "camelCase")]
    OrphanCleared {
        id: String,
        /// The orphan that was reported.
        pid: Option<u32>,
        port: u16,
    },
    #[serde(rename_all = "camelCase")]
    OrphanKilled {
        id: String,
        pid: u32,
        signal: String,
    },
    /// A config reload was applied; carries its plan.
    ConfigReloaded(ReloadPlan),
    /// The health check started failing, passing again, or failing differently.
    #[serde(rename_all = "camelCase")]
    HealthChanged {
        id: String,
        pid: u32,
        ok: bool,
        detail: String,
    },
    /// The server's process group stayed over its `max_memory`; a restart follows.
    #[serde(rename_all = "camelCase")]
    MemoryExceeded {
        id: String,
        pid: u32,
        rss_bytes: u64,
        limit_bytes: u64,
    },
    /// tend restarts the server on its own plan, not for a failure: a watched file changed
    /// (`trigger` "watch", `file` the first of the burst) or its schedule came due
    /// ("restart_every", "restart_at").
    #[serde(rename_all = "camelCase")]
    PlannedRestart {
        id: String,
        pid: Option<u32>,
        trigger: &'static str,
        /// "src/app.js and 49 more changed", "restart_every 24h".
        detail: String,
        file: Option<String>,
    },
    /// tend itself started (after its state was read and before the first spawn): the mark in
    /// the history where one run of tend ends and the next begins.
    #[serde(rename_all = "camelCase")]
    TendStarted { pid: u32, version: String },
    /// tend was asked to shut down (SIGINT or SIGTERM).
    #[serde(rename_all = "camelCase")]
    TendStopping { signal: String },
    /// The state file could not be written (the first failure of a streak; the store retries).
    #[serde(rename_all = "camelCase")]
    StateWriteFailed { error: String },
    /// An alert rule's delivery: sent, failed, held back (rate limit) or dropped (queue full).
    Alert(AlertOutcome),
}

/// What became of one alert (the `alert` timeline event, see `alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertOutcome {
    /// The server the alert is about, if any (`tendStarted` has none).
    pub id: Option<String>,
    /// 1-based position of the rule in `alerts`.
    pub rule: usize,
    /// "exec", "webhook" or "alertmanager".
    pub target: String,
    /// The alert's event name (`processDied`, `fatal`, …), or `resolved` for an Alertmanager
    /// resolution.
    pub alert: String,
    /// "sent", "failed", "heldBack" or "dropped".
    pub result: String,
    /// What a person reads: "HTTP 500 twice, then 200", "timed out after 10000 ms".
    pub detail: String,
}

impl Timeline {
    /// The SSE event name (`event:` line).
    pub fn name(&self) -> &'static str {
        match self {
            Timeline::ServerStarted { .. } => "serverStarted",
            Timeline::ServerStopped { .. } => "serverStopped",
            Timeline::ProcessDied { .. } => "processDied",
            Timeline::ProcessError { .. } => "processError",
            Timeline::StatusChange { .. } => "statusChange",
            Timeline::OrphanDetected { .. } => "orphanDetected",
            Timeline::OrphanCleared { .. } => "orphanCleared",
            Timeline::OrphanKilled { .. } => "orphanKilled",
            Timeline::ConfigReloaded(_) => "configReloaded",
            Timeline::MemoryExceeded { .. } => "memoryExceeded",
            Timeline::HealthChanged { .. } => "healthChanged",
            Timeline::PlannedRestart { .. } => "plannedRestart",
            Timeline::TendStarted { .. } => "tendStarted",
            Timeline::TendStopping { .. } => "tendStopping",
            Timeline::StateWriteFailed { .. } => "stateWriteFailed",
            Timeline::Alert(_) => "alert",
        }
    }

    /// The server the event is about; `None` for tend's own events and reloads.
    pub fn server(&self) -> Option<&str> {
        match self {
            Timeline::ServerStarted { id, .. }
            | Timeline::ServerStopped { id, .. }
            | Timeline::ProcessDied { id, .. }
            | Timeline::ProcessError { id, .. }
            | Timeline::StatusChange { id, .. }
            | Timeline::OrphanDetected { id, .. }
            | Timeline::OrphanCleared { id, .. }
            | Timeline::OrphanKilled { id, .. }
            | Timeline::HealthChanged { id, .. }
            | Timeline::MemoryExceeded { id, .. }
            | Timeline::PlannedRestart { id, .. } => Some(id),
            Timeline::Alert(outcome) => outcome.id.as_deref(),
            Timeline::ConfigReloaded(_)
            | Timeline::TendStarted { .. }
            | Timeline::TendStopping { .. }
            | Timeline::StateWriteFailed { .. } => None,
        }
    }
}

/// What a config reload did, by server id (the answer of `POST /api/reload`, the
/// `configReloaded` event). Each id is in exactly one of the five lists; README "Changing the
/// config" says what each means.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadPlan {
    /// The config file read again.
    pub config: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Why each restarted or updated server is: "command, env changed", "follows 'db'".
    pub changes: std::collections::BTreeMap<String, String>,
    /// Top-level keys that changed but take effect only when tend itself is restarted; tend
    /// keeps their old values.
    pub needs_tend_restart: Vec<String>,
}

/// Where to reach something bound to `bound`: its own address, or loopback for a wildcard
/// (`0.0.0.0`, `::`), which accepts on every address but is no address to connect to.
pub fn reachable_ip(bound: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match bound {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Returns the name of a signal number ("SIGTERM"), or "SIG<n>" for one without a name here.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        other => return format!("SIG{other}"),
    };
    name.to_string()
}

/// Parses a signal name as written in config ("SIGTERM", "TERM", case-insensitive) or a number.
pub fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    (1..=31).find(|&n| signal_name(n) == full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_status_once() {
        for status in Status::ALL {
            // A new variant breaks this match: the reminder to add it to ALL too.
            let position = match status {
                Status::Stopped => 0,
                Status::Starting => 1,
                Status::Running => 2,
                Status::Unhealthy => 3,
                Status::Stopping => 4,
                Status::Exited => 5,
                Status::Crashed => 6,
                Status::Backoff => 7,
                Status::Fatal => 8,
            };
            assert_eq!(Status::ALL[position], status);
        }
    }

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        assert_eq!(
            reachable_ip("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            reachable_ip("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            reachable_ip("127.0.0.2".parse().unwrap()),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn signal_names_round_trip() {
        for sig in [
            libc::SIGTERM,
            libc::SIGKILL,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR2,
        ] {
            assert_eq!(parse_signal(&signal_name(sig)), Some(sig));
        }
        assert_eq!(parse_signal("term"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("0"), None);
    }

    #[test]
    fn server_view_uses_camel_case_and_lowercase_status() {
        let view = ServerView {
            id: "web".into(),
            group: Some("backend".into()),
            command: "sleep 1".into(),
            status: Status::Backoff,
            running: false,
            healthy: false,
            pid: None,
            start_time: None,
            uptime_ms: None,
            restarts: 2,
            exit_code: Some(1),
            exit_signal: None,
            ports: vec![PortView {
                port: 8000,
                open: false,
                owner_pid: Some(7),
            }],
            orphaned: true,
            orphaned_pid: Some(7),
            adopted: false,
            adoptable: None,
            not_adoptable: None,
            cpu_percent: None,
            rss_bytes: None,
            processes: None,
            main_cpu_percent: None,
            main_rss_bytes: None,
            last_error: None,
            health: None,
            watch: None,
            planned_restart: None,
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "backoff");
        assert_eq!(json["group"], "backend");
        assert_eq!(json["orphanedPid"], 7);
        assert_eq!(json["ports"][0]["ownerPid"], 7);
        assert!(json.get("uptimeMs").is_some());
        assert!(json.get("mainRssBytes").is_some());
        assert!(json["health"].is_null());
    }

    #[test]
    fn timeline_events_carry_their_name() {
        let event = Timeline::ProcessDied {
            id: "a".into(),
            pid: 3,
            exit_code: None,
            exit_signal: Some("SIGKILL".into()),
        };
        assert_eq!(event.name(), "processDied");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["exitSignal"], "SIGKILL");
    }
}
