//! `tend up`: loads the config, starts every thread of docs/DESIGN.md §7 in the order that keeps their
//! promises (the reaper before the first spawn, the store before the supervisor's first
//! snapshot), prints the dashboard URL and runs the supervisor on the main thread until a
//! shutdown signal has been honoured.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Sender, bounded, unbounded};

use crate::alerts::{self, AlertsHandle, AlertsThread};
use crate::history::{self, HistoryWriter, Journal, Record};
use crate::model::Timeline;
use crate::recorder::Recorder;

use crate::cli::UpOptions;
use crate::config::{self, Config};
use crate::error::{Context, Error};
use crate::http;
use crate::http::auth::TOKEN_VAR;
use crate::http::auth::{self, Auth, TokenSource};
use crate::logs::paths::ensure_private_dir;
use crate::logs::rotate;
use crate::monitor;
use crate::os::pidwatch::PidWatcher;
use crate::os::procfs;
use crate::os::reaper;
use crate::store::{self, LoadOutcome, ProcessStateStore};
use crate::supervisor::host::RealHost;
use crate::supervisor::reload::{ConfigSource, KnownIds};
use crate::supervisor::{Inbox, Outputs, ServerOrchestrator};
use crate::watch;

const LOG: &str = "tend";

/// Loads the config named on the command line (or found in the working directory). `port` is
/// `tend up --port`: the base PORT of a Procfile's entries, refused for a JSON config.
pub fn load_config(explicit: Option<&Path>, port: Option<u16>) -> Result<Config, Error> {
    let path = config::locate(explicit).map_err(Error::Other)?;
    if !config::procfile::is_procfile(&path) {
        if port.is_some() {
            return Err(Error::Usage(format!(
                "--port sets the base PORT of Procfile entries, and {} is not a Procfile \
                 (a JSON config gives each server its ports itself); see `tend help up`",
                path.display()
            )));
        }
        return Ok(config::load(&path)?);
    }
    Ok(config::procfile::load(&path, port)?)
}

/// Makes every panic end tend at once, in every build: the release profile has `panic =
/// "abort"`, and a debug build, which unwinds, would otherwise lose just the panicking thread
/// while the rest carried on — a dead monitor means no health checks, a dead reaper no exits
/// seen, a dead store no state written, under a dashboard that still looks fine. Ending is the
/// honest outcome and a safe one: servers run in sessions of their own and keep running, the
/// state file is always whole (written by rename), and the next `tend up` adopts them. The
/// default hook still prints the thread, the place and the message to stderr, tend's log.
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
}

pub fn up(explicit_config: Option<&Path>, options: &UpOptions) -> Result<(), Error> {
    let mut config = load_config(explicit_config, options.port)?;
    // A reload reads the same file with the same options (`--port` is taken by load_config;
    // the options' paths resolve against the working directory).
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let source = ConfigSource::new(&config.path, options, &cwd);
    source.apply(&mut config);
    let state_dir = config
        .state_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    ensure_private_dir(&state_dir)
        .with_context(|| format!("cannot create the state folder {}", state_dir.display()))?;
    ensure_private_dir(&config.log_dir)
        .with_context(|| format!("cannot create the log folder {}", config.log_dir.display()))?;
    let _lock = lock_state(&config.state_file)?;
    crate::os::process::raise_descriptor_limit();
    limit_malloc_retention();
    let auth = auth::resolve(
        &config.auth,
        std::env::var(TOKEN_VAR).ok(),
        config.listen,
        &config.state_file,
    )
    .map_err(Error::Other)?;
    let boot_id = procfs::boot_id().context("cannot read /proc/sys/kernel/random/boot_id")?;
    let tend_bin: PathBuf = std::env::current_exe().context("cannot find tend's own binary")?;

    let stored = match store::load(&config.state_file)
        .with_context(|| format!("cannot read the state file {}", config.state_file.display()))?
    {
        LoadOutcome::Missing => None,
        LoadOutcome::Loaded(state) => Some(state),
        LoadOutcome::Corrupt { moved_to, reason } => {
            log::error!(target: "ProcessStateStore",
                "State file {} is corrupt ({}); moved it to {} and starting empty",
                config.state_file.display(), reason, moved_to.display());
            None
        }
    };

    let (exits_tx, exits_rx) = unbounded();
    let (signals_tx, signals_rx) = unbounded();
    let (control_tx, control_rx) = bounded(4096);
    let (monitor_tx, monitor_rx) = unbounded();
    let (reports_tx, reports_rx) = unbounded();
    let (timeline_tx, timeline_rx) = bounded(1024);

    reaper::start(exits_tx.clone(), signals_tx).context("cannot start the reaper")?;
    let pidwatch = PidWatcher::start(exits_tx).context("cannot start the pid watcher")?;
    let store =
        ProcessStateStore::spawn(config.state_file.clone()).context("cannot start the store")?;
    store.tell_failures_to(timeline_tx.clone());
    let recording = Recording::start(&config, timeline_tx.clone())?;
    let log_limits = Arc::new(rotate::Limits::new(config.log_max_bytes, config.log_keep));
    rotate::start(config.log_dir.clone(), Arc::clone(&log_limits))
        .context("cannot watch the log folder")?;
    let demand = Arc::new(monitor::demand::Demand::default());
    monitor::start(
        config.health_interval,
        monitor_rx,
        reports_tx,
        Arc::clone(&demand),
    )
    .context("cannot start the monitor")?;
    let (watch_tx, watch_rx) = unbounded();
    let own_files = watch::OwnFiles {
        log_dir: config.log_dir.clone(),
        files: vec![
            config.state_file.clone(),
            history::path_beside(&config.state_file),
        ],
    };
    let watch = watch::start(own_files, watch_tx).context("cannot start the file watcher")?;

    let known_ids = Arc::new(KnownIds::of(&config));
    let policy = http::guard::Policy::new(
        auth.token().map(str::to_string),
        config.listen,
        &config.allowed_hosts,
    );
    let mut shared = http::Shared::new(
        control_tx,
        config.log_dir.clone(),
        Arc::clone(&known_ids),
        config.max_connections,
        policy,
    );
    shared.history = Arc::clone(&recording.journal);
    shared.alerts = recording.alerts_handle.clone();
    let shared = Arc::new(shared);
    let bound = http::start(config.listen, shared).map_err(Error::Other)?;
    log::info!(target: LOG, "Config {} with {} servers", config.path.display(), config.servers.len());
    // A wildcard address is no place to open: the printed link goes to loopback, which the
    // Host check accepts, where `http://0.0.0.0:…/` would be refused as a foreign host.
    let reachable = std::net::SocketAddr::new(crate::model::reachable_ip(bound.ip()), bound.port());
    let url = match auth.token() {
        Some(token) => format!("http://{reachable}/?token={token}"),
        None => format!("http://{reachable}/"),
    };
    match &auth {
        Auth::Off => {
            log::warn!(target: LOG, "Auth is off (\"auth_token\": \"none\"): any local user or web page can use the API")
        }
        Auth::On {
            source: TokenSource::File(path),
            ..
        } => {
            log::info!(target: LOG, "API token in {} (clients read it from there)", path.display())
        }
        Auth::On { .. } => {}
    }
    println!("tend: dashboard at {url}");
    let _ = std::io::stdout().flush();

    let outputs = Outputs {
        monitor: monitor_tx,
        demand,
        store,
        known_ids,
        log_limits,
        watch,
    };
    let mut supervisor = ServerOrchestrator::new(
        &config,
        outputs,
        Box::new(RealHost { pidwatch }),
        tend_bin,
        boot_id,
        source,
    );
    // Every server now holds its own config, and a reload reads the file again: the parsed
    // list would be a second copy of all of them for tend's whole life (~630 bytes a server).
    drop(std::mem::take(&mut config.servers));
    supervisor.record_to(Recorder::new(
        Some(recording.history_queue),
        recording.alerts_queue,
    ));
    supervisor.boot(stored);
    supervisor.run(Inbox {
        control: control_rx,
        exits: exits_rx,
        reports: reports_rx,
        signals: signals_rx,
        watch: watch_rx,
        timeline: timeline_rx,
    });
    // The supervisor is gone, and with it the recorder: the history's last write and the
    // alerts in flight (a `tendStopping`) finish now. Held until here, `timeline_tx` kept the
    // supervisor's timeline channel from ever disconnecting.
    recording.history.join();
    if let Some(alerts) = recording.alerts {
        alerts.join();
    }
    drop(timeline_tx);
    Ok(())
}

/// The history and alert threads, and what the supervisor and HTTP handlers use of them.
struct Recording {
    journal: Arc<Journal>,
    history_queue: Sender<Arc<Record>>,
    history: HistoryWriter,
    alerts_queue: Option<Sender<Arc<Record>>>,
    alerts_handle: Option<AlertsHandle>,
    alerts: Option<AlertsThread>,
}

impl Recording {
    fn start(config: &Config, timeline: Sender<Box<Timeline>>) -> Result<Recording, Error> {
        let path = history::path_beside(&config.state_file);
        let journal = Arc::new(
            history::load(&path)
                .with_context(|| format!("cannot read the history file {}", path.display()))?,
        );
        let (history_queue, history) = HistoryWriter::start(path, Arc::clone(&journal))
            .context("cannot start the history thread")?;
        let (alerts_queue, alerts_handle, alerts) = if config.alerts.is_empty() {
            (None, None, None)
        } else {
            let (queue, handle, thread) = alerts::start(config.alerts.clone(), timeline)
                .context("cannot start the alert thread")?;
            (Some(queue), Some(handle), Some(thread))
        };
        Ok(Recording {
            journal,
            history_queue,
            history,
            alerts_queue,
            alerts_handle,
            alerts,
        })
    }
}

/// Holds `<state file>.lock` for tend's lifetime: two tends on one state file would adopt the
/// same processes and overwrite each other's state. The descriptor is CLOEXEC (std's default),
/// so a child never keeps the lock after tend is gone.
fn lock_state(state_file: &Path) -> Result<std::fs::File, Error> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    let mut path = state_file.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is shared.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        let who = if holder.is_empty() {
            String::new()
        } else {
            format!(" (PID {holder})")
        };
        return Err(Error::other(format!(
            "another tend{who} is already running with the state file {}",
            state_file.display()
        )));
    }
    file.set_len(0).context("cannot write the lock file")?;
    writeln!(file, "{}", std::process::id()).context("cannot write the lock file")?;
    Ok(file)
}

/// Keeps the allocator from holding memory tend no longer uses. glibc gives each thread that
/// allocates its own arena and keeps what was freed there, and after the first large buffer is
/// freed it raises its mmap threshold, so later large buffers (a 400 KB list of 1000 servers)
/// come from the arenas and stay. Measured with 1000 servers over 2000 list requests: RSS grew
/// from 6.8 to 10.6 MiB by default, to 7.7 MiB with two arenas and a fixed 128 KiB threshold.
/// The price is an mmap per list of more than ~300 servers; small lists are unaffected.
/// musl's allocator (the static build's, see `make static`) keeps no per-thread arenas and has
/// no such knobs.
#[cfg(target_env = "gnu")]
fn limit_malloc_retention() {
    // SAFETY: mallopt only changes the allocator's tuning; it is called before the threads that
    // allocate are started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(target_env = "gnu"))]
fn limit_malloc_retention() {}
