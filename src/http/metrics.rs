//! `GET /metrics` (docs/DESIGN.md §4, issue 6 item 2): tend's numbers in the Prometheus text exposition
//! format, version 0.0.4 (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Pure: [`render`] turns a [`Snapshot`] into text and does no I/O. The supervisor fills the
//! snapshot from what it owns when it is asked (one pass over the servers, nothing kept per
//! event beyond two counters and the [`Histogram`]); the HTTP handler adds the figures that
//! belong to no thread (log rotation counters, tend's own `/proc/self`). It must never read a
//! clock or a file itself, so its output is fully determined by the snapshot and testable.

use std::fmt::Write;
use std::time::Duration;

use crate::model::Status;
use crate::store::StoreStats;

/// The `Content-Type` of the text format (the exposition format's own name for version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the health-round histogram: a round of a few local ports takes
/// around 0.1 ms, a thousand ports some tens of ms (docs/DESIGN.md §11: < 50 ms), and one that waits
/// for unreachable ports up to its shared probe timeout (at most 1 s).
pub const HEALTH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A Prometheus histogram: counts per bucket (not cumulative here; [`render`] accumulates them),
/// plus the sum and count of every observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `counts[i]` observations fell in `(bounds[i-1], bounds[i]]`; the last slot is past every
    /// bound (`+Inf`).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must grow");
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        // `le` is inclusive: a value equal to a bound belongs to that bound's bucket.
        let slot = self.bounds.partition_point(|&bound| bound < seconds);
        self.counts[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// `(upper bound, observations at or below it)`, ending with `(+Inf, count)`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.counts)
            .map(|(bound, n)| {
                total += n;
                (bound, total)
            })
            .collect()
    }
}

/// One server as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSample {
    pub id: String,
    /// The config's `group`: a `group` label beside `server` on every per-server series.
    pub group: Option<String>,
    pub status: Status,
    /// A process of this server runs (whatever its health).
    pub is_up: bool,
    pub restarts: u32,
    /// Since the running process started; `None` while none runs.
    pub uptime: Option<Duration>,
    /// CPU time (user + system) of the running process group, once the monitor has sampled it.
    pub cpu_time: Option<Duration>,
    /// Resident memory of the running process group.
    pub rss_bytes: Option<u64>,
    /// Live processes in the group.
    pub processes: Option<u32>,
    /// Each configured port and whether the last health round could connect to it.
    pub ports: Vec<(u16, bool)>,
    pub orphaned: bool,
    /// Restarts because the group's memory stayed over `max_memory`, since tend started.
    pub memory_restarts: u64,
    /// The HTTP health check's counts, for a server that has one.
    pub probes: Option<ProbeCounts>,
}

/// A server's health probes since tend started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeCounts {
    pub total: u64,
    pub failures: u64,
    /// How long the last probe took.
    pub last_duration: Option<Duration>,
}

/// tend's own process, from `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// Seconds since the Unix epoch.
    pub start_time: f64,
    pub rss_bytes: u64,
}

/// The HTTP front's connections, from its registry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HttpSample {
    /// Open connections between requests (idle keep-alive, or not a byte sent yet).
    pub idle: usize,
    /// Open connections whose request head is arriving.
    pub reading: usize,
    /// Open connections whose request is being answered (event streams included).
    pub answering: usize,
    /// Connections closed to make room at `max_connections`.
    pub evicted: u64,
    /// Connections answered 503 at `max_connections` (every open one was being answered).
    pub refused: u64,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub servers: Vec<ServerSample>,
    pub spawn_successes: u64,
    pub spawn_failures: u64,
    pub health_rounds: Histogram,
    pub store: StoreStats,
    pub sse_clients: usize,
    pub http: HttpSample,
    pub log_rotations: u64,
    pub log_bytes_lost: u64,
    pub alerts: AlertCounts,
    /// Timeline events the history queue had no room for.
    pub history_dropped: u64,
    pub process: Option<ProcessSample>,
}

/// `tend_alerts_total{result}`: alert deliveries by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub sent: u64,
    pub failed: u64,
    pub held_back: u64,
    pub dropped: u64,
}

impl Snapshot {
    pub fn new(servers: Vec<ServerSample>, health_rounds: Histogram) -> Snapshot {
        Snapshot {
            servers,
            spawn_successes: 0,
            spawn_failures: 0,
            health_rounds,
            store: StoreStats::default(),
            sse_clients: 0,
            http: HttpSample::default(),
            log_rotations: 0,
            log_bytes_lost: 0,
            alerts: AlertCounts::default(),
            history_dropped: 0,
            process: None,
        }
    }
}

/// Renders a scrape. Every family has HELP and TYPE lines, also when it has no sample right now
/// (no server running), so a dashboard sees the same names on every scrape.
pub fn render(snapshot: &Snapshot) -> String {
    let mut w = Writer::default();
    let servers = &snapshot.servers;
    w.groups = servers
        .iter()
        .filter_map(|s| Some((s.id.clone(), s.group.clone()?)))
        .collect();

    w.family(
        "tend_server_up",
        "gauge",
        "1 if a process of the server runs, else 0.",
    );
    for s in servers {
        w.sample("tend_server_up", &[("server", &s.id)], u8::from(s.is_up));
    }

    w.family(
        "tend_server_status",
        "gauge",
        "The server's status: 1 for the current one, 0 for the others.",
    );
    for s in servers {
        for status in Status::ALL {
            let value = u8::from(s.status == status);
            let labels = [("server", s.id.as_str()), ("status", status.as_str())];
            w.sample("tend_server_status", &labels, value);
        }
    }

    w.family(
        "tend_server_restarts_total",
        "counter",
        "Restarts since a person (or autostart) last started the server.",
    );
    for s in servers {
        w.sample(
            "tend_server_restarts_total",
            &[("server", &s.id)],
            s.restarts,
        );
    }

    w.family(
        "tend_server_memory_restarts_total",
        "counter",
        "Restarts because the server's process group stayed over its max_memory, since tend \
         started.",
    );
    for s in servers {
        w.sample(
            "tend_server_memory_restarts_total",
            &[("server", &s.id)],
            s.memory_restarts,
        );
    }

    w.family(
        "tend_server_health_probes_total",
        "counter",
        "HTTP health probes of the server (its health.http), since tend started.",
    );
    for s in servers {
        if let Some(probes) = &s.probes {
            let labels = [("server", s.id.as_str())];
            w.sample("tend_server_health_probes_total", &labels, probes.total);
        }
    }

    w.family(
        "tend_server_health_probe_failures_total",
        "counter",
        "HTTP health probes that failed (a status outside expect, a timeout, a refused \
         connection), since tend started.",
    );
    for s in servers {
        if let Some(probes) = &s.probes {
            let labels = [("server", s.id.as_str())];
            w.sample(
                "tend_server_health_probe_failures_total",
                &labels,
                probes.failures,
            );
        }
    }

    w.family(
        "tend_server_health_probe_duration_seconds",
        "gauge",
        "How long the server's last HTTP health probe took (a timeout counts its timeout).",
    );
    for s in servers {
        if let Some(took) = s.probes.and_then(|p| p.last_duration) {
            let labels = [("server", s.id.as_str())];
            w.sample(
                "tend_server_health_probe_duration_seconds",
                &labels,
                seconds(took),
            );
        }
    }

    w.family(
        "tend_server_uptime_seconds",
        "gauge",
        "Seconds since the server's running process started (absent while none runs).",
    );
    for s in servers {
        if let Some(uptime) = s.uptime {
            let value = seconds(uptime);
            w.sample("tend_server_uptime_seconds", &[("server", &s.id)], value);
        }
    }

    w.family(
        "tend_server_cpu_seconds_total",
        "counter",
        "CPU time (user and system) used by the server's process group (its main process and \
         every process it started) since the main process started.",
    );
    for s in servers {
        if let Some(cpu) = s.cpu_time {
            let value = seconds(cpu);
            w.sample("tend_server_cpu_seconds_total", &[("server", &s.id)], value);
        }
    }

    w.family(
        "tend_server_resident_memory_bytes",
        "gauge",
        "Resident memory of the server's process group, summed over its live processes.",
    );
    for s in servers {
        if let Some(rss) = s.rss_bytes {
            w.sample(
                "tend_server_resident_memory_bytes",
                &[("server", &s.id)],
                rss,
            );
        }
    }

    w.family(
        "tend_server_processes",
        "gauge",
        "Live processes in the server's process group (absent while none runs).",
    );
    for s in servers {
        if let Some(processes) = s.processes {
            w.sample("tend_server_processes", &[("server", &s.id)], processes);
        }
    }

    w.family(
        "tend_server_port_open",
        "gauge",
        "1 if the last health round could connect to the configured port, else 0.",
    );
    for s in servers {
        for &(port, open) in &s.ports {
            let port = port.to_string();
            let labels = [("server", s.id.as_str()), ("port", port.as_str())];
            w.sample("tend_server_port_open", &labels, u8::from(open));
        }
    }

    w.family(
        "tend_server_orphaned",
        "gauge",
        "1 if a process outside the server's own process tree holds one of its ports.",
    );
    for s in servers {
        w.sample(
            "tend_server_orphaned",
            &[("server", &s.id)],
            u8::from(s.orphaned),
        );
    }

    w.family(
        "tend_build_info",
        "gauge",
        "Always 1; the version label names the running tend.",
    );
    w.sample(
        "tend_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    let name = "tend_health_check_duration_seconds";
    w.family(
        name,
        "histogram",
        "How long one full health round (ports, PIDs, CPU and memory) took.",
    );
    let bucket = format!("{name}_bucket");
    for (bound, count) in snapshot.health_rounds.cumulative() {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        w.sample(&bucket, &[("le", &le)], count);
    }
    w.sample(&format!("{name}_sum"), &[], snapshot.health_rounds.sum);
    w.sample(&format!("{name}_count"), &[], snapshot.health_rounds.count);

    w.family(
        "tend_spawns_total",
        "counter",
        "Processes spawned (success), and spawns that failed at once (failure: exec error, \
         missing cwd, an orphan on the port).",
    );
    let spawns = [
        ("success", snapshot.spawn_successes),
        ("failure", snapshot.spawn_failures),
    ];
    for (result, count) in spawns {
        w.sample("tend_spawns_total", &[("result", result)], count);
    }

    w.family(
        "tend_orphans",
        "gauge",
        "Servers whose ports an orphan holds now.",
    );
    let orphans = servers.iter().filter(|s| s.orphaned).count();
    w.sample("tend_orphans", &[], orphans);

    w.family(
        "tend_state_file_bytes",
        "gauge",
        "Size of the state file tend last wrote (0 before its first write).",
    );
    w.sample("tend_state_file_bytes", &[], snapshot.store.last_bytes);
    w.family(
        "tend_state_writes_total",
        "counter",
        "Successful writes of the state file.",
    );
    w.sample("tend_state_writes_total", &[], snapshot.store.writes);
    w.family(
        "tend_state_write_failures_total",
        "counter",
        "Failed writes of the state file (each is retried).",
    );
    w.sample(
        "tend_state_write_failures_total",
        &[],
        snapshot.store.failures,
    );

    w.family("tend_sse_clients", "gauge", "Open live event streams.");
    w.sample("tend_sse_clients", &[], snapshot.sse_clients);

    let http = &snapshot.http;
    w.family(
        "tend_http_connections",
        "gauge",
        "Open HTTP connections by state: idle (between requests), reading (a request head \
         arriving), answering (a request being answered, event streams included).",
    );
    for (state, count) in [
        ("idle", http.idle),
        ("reading", http.reading),
        ("answering", http.answering),
    ] {
        w.sample("tend_http_connections", &[("state", state)], count);
    }
    w.family(
        "tend_http_connections_evicted_total",
        "counter",
        "HTTP connections closed to make room at max_connections (the longest idle first).",
    );
    w.sample("tend_http_connections_evicted_total", &[], http.evicted);
    w.family(
        "tend_http_connections_refused_total",
        "counter",
        "HTTP connections answered 503 at max_connections, every open one being answered.",
    );
    w.sample("tend_http_connections_refused_total", &[], http.refused);

    w.family(
        "tend_log_rotations_total",
        "counter",
        "Server log files rotated.",
    );
    w.sample("tend_log_rotations_total", &[], snapshot.log_rotations);
    w.family(
        "tend_log_bytes_lost_total",
        "counter",
        "Log bytes lost by rotations that had to copy and truncate.",
    );
    w.sample("tend_log_bytes_lost_total", &[], snapshot.log_bytes_lost);

    w.family(
        "tend_alerts_total",
        "counter",
        "Alerts by result: sent, failed (after retries or at the timeout), held_back (repeat_ms), \
         dropped (a full queue).",
    );
    let alerts = snapshot.alerts;
    for (result, value) in [
        ("sent", alerts.sent),
        ("failed", alerts.failed),
        ("held_back", alerts.held_back),
        ("dropped", alerts.dropped),
    ] {
        w.sample("tend_alerts_total", &[("result", result)], value);
    }
    w.family(
        "tend_history_events_dropped_total",
        "counter",
        "Timeline events not kept in the history because its queue was full.",
    );
    w.sample(
        "tend_history_events_dropped_total",
        &[],
        snapshot.history_dropped,
    );

    if let Some(process) = snapshot.process {
        w.family(
            "tend_process_start_time_seconds",
            "gauge",
            "When tend itself started, in seconds since the Unix epoch.",
        );
        w.sample("tend_process_start_time_seconds", &[], process.start_time);
        w.family(
            "tend_process_resident_memory_bytes",
            "gauge",
            "Resident memory of tend itself.",
        );
        w.sample("tend_process_resident_memory_bytes", &[], process.rss_bytes);
    }
    w.out
}

/// Seconds with millisecond precision: more digits would only be noise from the clock.
fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

#[derive(Default)]
struct Writer {
    out: String,
    /// Server id → group, for servers in one: every sample with a `server` label gets a
    /// `group` label right after it, so no per-server family can forget it.
    groups: std::collections::HashMap<String, String>,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line. Values are integers or f64 printed by Rust's `Display`, which never
    /// uses an exponent and prints whole floats without a fraction: both are valid Go floats,
    /// which is what the format asks for.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(text));
                if *label == "server" {
                    if let Some(group) = self.groups.get(*text) {
                        let _ = write!(self.out, ",group=\"{}\"", escape_label(group));
                    }
                }
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// HELP text escapes backslash and line feed (the format's rule for docstrings).
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// Label values escape backslash, double quote and line feed. Server ids cannot hold any of
/// them today (src/config), but the format must not depend on that.
fn escape_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str, status: Status) -> ServerSample {
        ServerSample {
            id: id.into(),
            group: None,
            status,
            is_up: false,
            restarts: 0,
            uptime: None,
            cpu_time: None,
            rss_bytes: None,
            processes: None,
            ports: Vec::new(),
            orphaned: false,
            memory_restarts: 0,
            probes: None,
        }
    }

    fn running(id: &str) -> ServerSample {
        ServerSample {
            is_up: true,
            restarts: 3,
            uptime: Some(Duration::from_millis(12_345)),
            cpu_time: Some(Duration::from_millis(1_230)),
            rss_bytes: Some(4_096_000),
            processes: Some(3),
            ports: vec![(8000, true), (8001, false)],
            ..server(id, Status::Running)
        }
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .collect()
    }

    #[test]
    fn every_family_has_help_then_type_and_samples_follow_their_family() {
        let mut snapshot = Snapshot::new(
            vec![running("web"), server("db", Status::Stopped)],
            Histogram::new(HEALTH_BUCKETS),
        );
        snapshot.process = Some(ProcessSample {
            start_time: 1_764_150_000.5,
            rss_bytes: 2_000_000,
        });
        let text = render(&snapshot);
        assert!(text.ends_with('\n'));
        let mut current: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_string()), "{name} twice");
                let kind = lines[i + 1].strip_prefix(&format!("# TYPE {name} "));
                assert!(kind.is_some(), "no TYPE after HELP of {name}");
                current = Some(name.to_string());
            } else if !line.starts_with('#') {
                let family = current.as_deref().expect("a sample before any HELP");
                let metric = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric.strip_suffix(s).filter(|b| *b == family))
                    .unwrap_or(metric);
                assert_eq!(base, family, "{line}");
            }
        }
        for name in [
            "tend_server_up",
            "tend_server_status",
            "tend_server_restarts_total",
            "tend_server_memory_restarts_total",
            "tend_server_health_probes_total",
            "tend_server_health_probe_failures_total",
            "tend_server_health_probe_duration_seconds",
            "tend_server_uptime_seconds",
            "tend_server_cpu_seconds_total",
            "tend_server_resident_memory_bytes",
            "tend_server_processes",
            "tend_server_port_open",
            "tend_server_orphaned",
            "tend_build_info",
            "tend_health_check_duration_seconds",
            "tend_spawns_total",
            "tend_orphans",
            "tend_state_file_bytes",
            "tend_state_writes_total",
            "tend_state_write_failures_total",
            "tend_sse_clients",
            "tend_http_connections",
            "tend_http_connections_evicted_total",
            "tend_http_connections_refused_total",
            "tend_log_rotations_total",
            "tend_log_bytes_lost_total",
            "tend_alerts_total",
            "tend_history_events_dropped_total",
            "tend_process_start_time_seconds",
            "tend_process_resident_memory_bytes",
        ] {
            assert!(seen.contains(name), "{name} missing");
        }
        assert_eq!(seen.len(), 30);
    }

    #[test]
    fn server_values_and_the_status_enum() {
        let mut orphaned = server("db", Status::Crashed);
        orphaned.orphaned = true;
        orphaned.ports = vec![(5432, true)];
        let snapshot = Snapshot::new(
            vec![running("web"), orphaned],
            Histogram::new(HEALTH_BUCKETS),
        );
        let text = render(&snapshot);
        assert_eq!(
            lines_of(&text, "tend_server_up"),
            [
                "tend_server_up{server=\"web\"} 1",
                "tend_server_up{server=\"db\"} 0"
            ]
        );
        let status = lines_of(&text, "tend_server_status");
        assert_eq!(status.len(), 2 * Status::ALL.len());
        let ones: Vec<&&str> = status.iter().filter(|l| l.ends_with(" 1")).collect();
        assert_eq!(
            ones,
            [
                &"tend_server_status{server=\"web\",status=\"running\"} 1",
                &"tend_server_status{server=\"db\",status=\"crashed\"} 1"
            ]
        );
        assert_eq!(
            lines_of(&text, "tend_server_uptime_seconds"),
            ["tend_server_uptime_seconds{server=\"web\"} 12.345"],
            "no sample for a server without a process"
        );
        assert_eq!(
            lines_of(&text, "tend_server_cpu_seconds_total"),
            ["tend_server_cpu_seconds_total{server=\"web\"} 1.23"]
        );
        assert_eq!(
            lines_of(&text, "tend_server_resident_memory_bytes"),
            ["tend_server_resident_memory_bytes{server=\"web\"} 4096000"]
        );
        assert_eq!(
            lines_of(&text, "tend_server_processes"),
            ["tend_server_processes{server=\"web\"} 3"]
        );
        assert_eq!(
            lines_of(&text, "tend_server_restarts_total"),
            [
                "tend_server_restarts_total{server=\"web\"} 3",
                "tend_server_restarts_total{server=\"db\"} 0"
            ]
        );
        assert_eq!(
            lines_of(&text, "tend_server_port_open"),
            [
                "tend_server_port_open{server=\"web\",port=\"8000\"} 1",
                "tend_server_port_open{server=\"web\",port=\"8001\"} 0",
                "tend_server_port_open{server=\"db\",port=\"5432\"} 1"
            ]
        );
        assert_eq!(
            lines_of(&text, "tend_server_orphaned"),
            [
                "tend_server_orphaned{server=\"web\"} 0",
                "tend_server_orphaned{server=\"db\"} 1"
            ]
        );
        assert_eq!(lines_of(&text, "tend_orphans"), ["tend_orphans 1"]);
        let version = format!(
            "tend_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(lines_of(&text, "tend_build_info"), [version.as_str()]);
    }

    #[test]
    fn tend_counters() {
        let mut snapshot = Snapshot::new(Vec::new(), Histogram::new(HEALTH_BUCKETS));
        snapshot.spawn_successes = 7;
        snapshot.spawn_failures = 2;
        snapshot.store = StoreStats {
            writes: 5,
            failures: 1,
            last_bytes: 321,
        };
        snapshot.sse_clients = 4;
        snapshot.log_rotations = 9;
        snapshot.log_bytes_lost = 17;
        snapshot.alerts.held_back = 13;
        let text = render(&snapshot);
        for line in [
            "tend_alerts_total{result=\"held_back\"} 13",
            "tend_alerts_total{result=\"dropped\"} 0",
            "tend_spawns_total{result=\"success\"} 7",
            "tend_spawns_total{result=\"failure\"} 2",
            "tend_state_file_bytes 321",
            "tend_state_writes_total 5",
            "tend_state_write_failures_total 1",
            "tend_sse_clients 4",
            "tend_log_rotations_total 9",
            "tend_log_bytes_lost_total 17",
            "tend_orphans 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        // Without /proc/self figures, those families are left out entirely.
        assert!(!text.contains("tend_process_"));
        // A family without samples still has its HELP and TYPE.
        assert!(text.contains("# TYPE tend_server_up gauge\n# HELP tend_server_status"));
    }

    #[test]
    fn servers_in_a_group_carry_a_group_label_on_every_series() {
        let mut web = running("web");
        web.group = Some("front".into());
        let snapshot = Snapshot::new(
            vec![web, server("db", Status::Stopped)],
            Histogram::new(HEALTH_BUCKETS),
        );
        let text = render(&snapshot);
        let per_server: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("server=\"web\""))
            .collect();
        assert!(per_server.len() >= 8, "{per_server:?}");
        for line in per_server {
            assert!(line.contains("{server=\"web\",group=\"front\""), "{line}");
        }
        assert!(text.contains("tend_server_up{server=\"db\"} 0\n"));
        assert!(
            !text
                .lines()
                .any(|l| l.contains("server=\"db\"") && l.contains("group="))
        );
    }

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("line\nbreak"), r"line\nbreak");
        assert_eq!(escape_label("plain-id_1.x"), "plain-id_1.x");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let snapshot = Snapshot::new(
            vec![server("we\"ird\\id\n", Status::Stopped)],
            Histogram::new(HEALTH_BUCKETS),
        );
        let text = render(&snapshot);
        assert!(
            text.contains("tend_server_up{server=\"we\\\"ird\\\\id\\n\"} 0\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| !l.is_empty()), "a raw newline leaked");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_le_is_inclusive() {
        let mut h = Histogram::new(HEALTH_BUCKETS);
        for micros in [50, 100, 101, 900, 3_000, 3_000, 2_000_000] {
            h.observe(Duration::from_micros(micros));
        }
        let buckets = h.cumulative();
        assert_eq!(buckets.len(), HEALTH_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets[0], (0.0001, 2), "0.05 ms and exactly 0.1 ms");
        assert_eq!(buckets[1], (0.00025, 3));
        assert_eq!(buckets[3], (0.001, 4));
        assert_eq!(buckets[5], (0.005, 6));
        assert_eq!(buckets[12], (1.0, 6));
        assert_eq!(buckets[13], (f64::INFINITY, 7), "+Inf counts everything");

        let mut snapshot = Snapshot::new(Vec::new(), h);
        snapshot.health_rounds.observe(Duration::ZERO);
        let text = render(&snapshot);
        let lines = lines_of(&text, "tend_health_check_duration_seconds_bucket");
        assert_eq!(lines.len(), 14);
        assert_eq!(
            lines[0],
            "tend_health_check_duration_seconds_bucket{le=\"0.0001\"} 3"
        );
        assert_eq!(
            lines[1],
            "tend_health_check_duration_seconds_bucket{le=\"0.00025\"} 4"
        );
        assert_eq!(
            lines[12],
            "tend_health_check_duration_seconds_bucket{le=\"1\"} 7"
        );
        assert_eq!(
            lines[13],
            "tend_health_check_duration_seconds_bucket{le=\"+Inf\"} 8"
        );
        assert!(text.contains("\ntend_health_check_duration_seconds_count 8\n"));
        let sum = lines_of(&text, "tend_health_check_duration_seconds_sum")[0];
        let sum: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 2.007151).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn an_empty_histogram_has_zero_buckets() {
        let snapshot = Snapshot::new(Vec::new(), Histogram::new(HEALTH_BUCKETS));
        let text = render(&snapshot);
        assert!(text.contains("tend_health_check_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("tend_health_check_duration_seconds_sum 0\n"));
        assert!(text.contains("tend_health_check_duration_seconds_count 0\n"));
    }

    #[test]
    fn floats_are_printed_without_exponents() {
        let mut snapshot = Snapshot::new(Vec::new(), Histogram::new(HEALTH_BUCKETS));
        snapshot.process = Some(ProcessSample {
            start_time: 1_764_150_000.25,
            rss_bytes: 1,
        });
        let text = render(&snapshot);
        assert!(text.contains("tend_process_start_time_seconds 1764150000.25\n"));
        assert!(!text.contains("e-"), "{text}");
    }
}
