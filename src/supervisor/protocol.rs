//! The supervisor's messages: what HTTP handlers send it ([`Control`], answered on a [`Reply`]),
//! the channels it listens on ([`Inbox`]: commands, exits from the reaper and pidwatch, monitor
//! reports, signals) and where its outputs go ([`Outputs`]).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::config::ConfigErrors;
use crate::groups::{self, ActTarget};
use crate::http::metrics;
use crate::logs::rotate;
use crate::model::{Action, ReloadPlan, ServerView, Timeline};
use crate::monitor::demand::Demand;
use crate::monitor::{MonitorCmd, Report};
use crate::os::reaper::{Exit, Signal};
use crate::store::StoreHandle;
use crate::supervisor::events::Subscription;
use crate::watch::{WatchHandle, WatchReport};

use super::reload::KnownIds;

/// An orphan an HTTP handler may kill: checked by the supervisor, killed by the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanTarget {
    pub id: String,
    pub pid: u32,
    pub start_ticks: u64,
}

pub type Reply<T> = Sender<Result<T, ControlError>>;

/// Requests to the supervisor; each carries its reply channel.
pub enum Control {
    /// The JSON array of every server object, in config order.
    List { reply: Sender<Vec<u8>> },
    Get {
        id: String,
        reply: Reply<ServerView>,
    },
    Act {
        action: Action,
        target: ActTarget,
        reply: Reply<Vec<ServerView>>,
    },
    FindOrphan {
        id: Option<String>,
        pid: Option<i64>,
        reply: Reply<OrphanTarget>,
    },
    /// An orphan an HTTP handler went after is gone: killed with `signal`, or (`None`) it
    /// exited by itself before any signal, which is no kill to put on the timeline.
    OrphanGone {
        id: String,
        pid: u32,
        signal: Option<i32>,
    },
    Subscribe {
        last_event_id: Option<u64>,
        reply: Reply<Subscription>,
    },
    /// What `/metrics` shows of the servers and of the supervisor's own counters.
    Metrics { reply: Sender<metrics::Snapshot> },
    /// Take over the server's orphan, when it is provably the server's own lost process.
    Adopt {
        id: String,
        reply: Reply<ServerView>,
    },
    /// Read the config again and apply what changed (`None`: SIGHUP, nobody to answer).
    Reload { reply: Option<Reply<ReloadPlan>> },
}

/// Why a command was refused; the HTTP layer maps each to a status code (docs/DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    NotFound(String),
    AlreadyRunning(String),
    NotRunning(String),
    OrphanHoldsPort {
        id: String,
        port: u16,
        pid: Option<u32>,
    },
    SpawnFailed {
        id: String,
        reason: String,
    },
    BadRequest(String),
    /// A PID that tend must not signal, or that is not an orphan.
    Refused(String),
    NoOrphan(String),
    /// `tend adopt` refused: the reason says which check failed.
    NotAdoptable(String),
    TooManyClients,
    ShuttingDown,
    /// A reload found the config invalid; nothing was changed.
    InvalidConfig(ConfigErrors),
    /// `@name` or `group=name` that no server has (the message lists the known groups).
    UnknownGroup(groups::Unknown),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotFound(id) => write!(f, "no server with id '{id}'"),
            ControlError::UnknownGroup(unknown) => write!(f, "{unknown}"),
            ControlError::AlreadyRunning(id) => write!(f, "server '{id}' is already running"),
            ControlError::NotRunning(id) => write!(f, "server '{id}' is already stopped"),
            ControlError::OrphanHoldsPort {
                id,
                port,
                pid: Some(pid),
            } => write!(
                f,
                "port {port} of server '{id}' is held by PID {pid}, which tend does not manage \
                 (kill it with `tend kill-orphan {id}`)"
            ),
            ControlError::OrphanHoldsPort {
                id,
                port,
                pid: None,
            } => write!(
                f,
                "port {port} of server '{id}' is held by a process tend does not manage and \
                 cannot see (another user's?)"
            ),
            ControlError::SpawnFailed { id, reason } => {
                write!(f, "server '{id}' failed to start: {reason}")
            }
            ControlError::BadRequest(message)
            | ControlError::Refused(message)
            | ControlError::NotAdoptable(message) => f.write_str(message),
            ControlError::NoOrphan(id) => {
                write!(f, "no orphan holds a port of server '{id}'")
            }
            ControlError::TooManyClients => f.write_str("too many live event clients"),
            ControlError::ShuttingDown => f.write_str("tend is shutting down"),
            ControlError::InvalidConfig(errors) => {
                write!(f, "the config is invalid; nothing was changed:\n{errors}")
            }
        }
    }
}

/// The channels the supervisor listens on.
pub struct Inbox {
    pub control: Receiver<Box<Control>>,
    pub exits: Receiver<Exit>,
    pub reports: Receiver<Report>,
    pub signals: Receiver<Signal>,
    /// Changes the file watcher saw, and how many folders it watches.
    pub watch: Receiver<WatchReport>,
    /// Timeline events from other threads: alert outcomes, state write failures.
    /// Boxed, like `control`: a queue's slots are allocated when it is made.
    pub timeline: Receiver<Box<Timeline>>,
}

/// Where the supervisor's outputs go.
pub struct Outputs {
    pub monitor: Sender<MonitorCmd>,
    /// Who looks at the figures (told to the monitor) and the health-round times (from it).
    pub demand: Arc<Demand>,
    pub store: StoreHandle,
    /// The ids HTTP handlers check log requests against; replaced on reload.
    pub known_ids: Arc<KnownIds>,
    /// Log rotation's limits; set on reload.
    pub log_limits: Arc<rotate::Limits>,
    /// The file watcher, told each server's `watch` at boot and on reload.
    pub watch: WatchHandle,
}
