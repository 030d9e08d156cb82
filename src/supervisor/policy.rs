//! Pure decisions of the supervisor (docs/DESIGN.md §2, §3): which status transitions are allowed, what
//! happens after a process exits (restart now, back off, park as fatal, or stay down), and how a
//! running server's health maps to a status. No I/O, no clocks: callers pass durations in, so
//! every rule is tested as a table.

use std::time::Duration;

use crate::config::RestartPolicy;
use crate::model::Status;

/// A run at least this long counts as a success under `always` and resets the failure streak.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// Backoff never grows beyond this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Every transition the supervisor may make. Anything else is a bug, caught in debug builds.
const ALLOWED: &[(Status, &[Status])] = &[
    (Status::Stopped, &[Status::Starting, Status::Crashed]),
    (
        Status::Starting,
        &[
            Status::Running,
            Status::Unhealthy,
            Status::Stopping,
            Status::Stopped,
            Status::Exited,
            Status::Crashed,
            Status::Backoff,
            Status::Fatal,
            Status::Starting,
        ],
    ),
    (
        Status::Running,
        &[
            Status::Unhealthy,
            Status::Stopping,
            Status::Exited,
            Status::Crashed,
            Status::Backoff,
            Status::Fatal,
            Status::Starting,
        ],
    ),
    (
        Status::Unhealthy,
        &[
            Status::Running,
            Status::Stopping,
            Status::Exited,
            Status::Crashed,
            Status::Backoff,
            Status::Fatal,
            Status::Starting,
        ],
    ),
    (Status::Stopping, &[Status::Stopped, Status::Starting]),
    (
        Status::Exited,
        &[
            Status::Starting,
            Status::Stopped,
            Status::Backoff,
            Status::Fatal,
        ],
    ),
    (
        Status::Crashed,
        &[
            Status::Starting,
            Status::Stopped,
            Status::Backoff,
            Status::Fatal,
        ],
    ),
    (
        Status::Backoff,
        &[Status::Starting, Status::Stopped, Status::Crashed],
    ),
    (Status::Fatal, &[Status::Starting, Status::Stopped]),
];

pub fn is_allowed(from: Status, to: Status) -> bool {
    ALLOWED
        .iter()
        .find(|(state, _)| *state == from)
        .is_some_and(|(_, targets)| targets.contains(&to))
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit code 0.
    Clean,
    /// A non-zero exit code or a signal.
    Failed,
    /// An adopted process died; its status cannot be known, so it counts as a failure.
    Unknown,
}

/// What to do after a process exited on its own (not stopped by a person or by tend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after `delay` (zero: at once). `streak` is the new failure streak.
    Restart { delay: Duration, streak: u32 },
    /// Code 0 and no restart due.
    Exited,
    /// Failed and the policy is `no`.
    Crashed,
    /// `max_restarts` restarts in a row failed: park it.
    Fatal,
}

/// The restart rule of docs/DESIGN.md §2. `streak` counts the consecutive failed runs that were already
/// restarted.
pub fn after_exit(
    policy: RestartPolicy,
    kind: ExitKind,
    ran_for: Duration,
    streak: u32,
    max_restarts: u32,
    backoff: Duration,
) -> AfterExit {
    let stable = ran_for >= STABLE_RUN;
    let streak = if stable { 0 } else { streak };
    let failed = match policy {
        RestartPolicy::Always => kind != ExitKind::Clean || !stable,
        RestartPolicy::OnFailure | RestartPolicy::No => kind != ExitKind::Clean,
    };
    if !failed {
        return match policy {
            RestartPolicy::Always => AfterExit::Restart {
                delay: Duration::ZERO,
                streak: 0,
            },
            RestartPolicy::OnFailure | RestartPolicy::No => AfterExit::Exited,
        };
    }
    if policy == RestartPolicy::No {
        return AfterExit::Crashed;
    }
    if streak >= max_restarts {
        return AfterExit::Fatal;
    }
    let streak = streak + 1;
    AfterExit::Restart {
        delay: backoff_delay(streak, backoff),
        streak,
    }
}

/// The wait before the restart that follows the `streak`-th consecutive failure: none for the
/// first, then `backoff` × 2^(streak−2), capped at [`MAX_BACKOFF`].
pub fn backoff_delay(streak: u32, backoff: Duration) -> Duration {
    if streak <= 1 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(streak - 2).unwrap_or(u32::MAX);
    backoff
        .checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// The status of a live process given what the last health round saw.
///
/// `ports_ok`: every configured port is open and held by the server's own process tree.
/// `opened_once`: they have all been ok at some point since this process started.
pub fn health_status(
    ports_ok: bool,
    opened_once: bool,
    since_spawn: Duration,
    start_timeout: Duration,
) -> Status {
    if ports_ok {
        Status::Running
    } else if !opened_once && since_spawn < start_timeout {
        Status::Starting
    } else {
        Status::Unhealthy
    }
}

/// Where a live process's health check (the config's `health`) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The server has no health check: its ports alone decide.
    Absent,
    /// It has not passed yet for this process.
    NotReady,
    Passing,
    /// It failed `failures` times in a row after having passed.
    Failing,
}

/// [`health_status`] with the health check as well: the server is `running` only when both its
/// ports and its check say so, `starting` while either waits for the first time (within
/// `start_timeout`), and `unhealthy` when either fails.
pub fn server_status(
    ports_ok: bool,
    opened_once: bool,
    since_spawn: Duration,
    start_timeout: Duration,
    check: Check,
) -> Status {
    let by_ports = health_status(ports_ok, opened_once, since_spawn, start_timeout);
    let by_check = match check {
        Check::Absent | Check::Passing => Status::Running,
        Check::NotReady if since_spawn < start_timeout => Status::Starting,
        Check::NotReady | Check::Failing => Status::Unhealthy,
    };
    let rank = |status: Status| match status {
        Status::Running => 0,
        Status::Starting => 1,
        _ => 2,
    };
    if rank(by_check) > rank(by_ports) {
        by_check
    } else {
        by_ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_health_check_gates_running_beside_the_ports() {
        use Check::*;
        use Status::*;
        let timeout = MS(1000);
        #[rustfmt::skip]
        let cases = [
            // ports_ok, opened_once, since, check → status
            (true,  true,  MS(10),   Absent,   Running),
            (true,  true,  MS(10),   NotReady, Starting),
            (true,  true,  MS(2000), NotReady, Unhealthy),
            (true,  true,  MS(10),   Passing,  Running),
            (true,  true,  MS(10),   Failing,  Unhealthy),
            (false, false, MS(10),   Passing,  Starting),
            (false, true,  MS(10),   Passing,  Unhealthy),
            (false, false, MS(10),   NotReady, Starting),
            (false, false, MS(2000), Failing,  Unhealthy),
        ];
        for (ports_ok, opened_once, since, check, expected) in cases {
            assert_eq!(
                server_status(ports_ok, opened_once, since, timeout, check),
                expected,
                "{ports_ok} {opened_once} {since:?} {check:?}"
            );
        }
    }

    #[test]
    fn restart_decisions_follow_the_policy_table() {
        use AfterExit::*;
        use ExitKind::*;
        use RestartPolicy::*;
        let b = MS(500);
        let short = MS(100);
        let long = STABLE_RUN;
        #[rustfmt::skip]
        let cases = [
            // policy,    kind,    ran,   streak, max, expected
            (No,        Clean,   short, 0, 10, Exited),
            (No,        Failed,  short, 0, 10, Crashed),
            (No,        Unknown, long,  0, 10, Crashed),
            (OnFailure, Clean,   short, 3, 10, Exited),
            (OnFailure, Failed,  short, 0, 10, Restart { delay: MS(0), streak: 1 }),
            (OnFailure, Failed,  short, 1, 10, Restart { delay: MS(500), streak: 2 }),
            (OnFailure, Failed,  short, 2, 10, Restart { delay: MS(1000), streak: 3 }),
            (OnFailure, Failed,  short, 3, 10, Restart { delay: MS(2000), streak: 4 }),
            (OnFailure, Unknown, short, 0, 10, Restart { delay: MS(0), streak: 1 }),
            // A run that stayed up 10 s resets the streak: the next failure restarts at once.
            (OnFailure, Failed,  long,  7, 10, Restart { delay: MS(0), streak: 1 }),
            // max_restarts restarts in a row failed: the (max+1)-th failed run is fatal.
            (OnFailure, Failed,  short, 2, 2,  Fatal),
            (OnFailure, Failed,  short, 0, 0,  Fatal),
            (Always,    Clean,   long,  5, 10, Restart { delay: MS(0), streak: 0 }),
            // Under `always`, a short run is a failure whatever its exit code.
            (Always,    Clean,   short, 0, 10, Restart { delay: MS(0), streak: 1 }),
            (Always,    Clean,   short, 1, 10, Restart { delay: MS(500), streak: 2 }),
            (Always,    Failed,  long,  4, 10, Restart { delay: MS(0), streak: 1 }),
            (Always,    Clean,   short, 3, 3,  Fatal),
        ];
        for (policy, kind, ran, streak, max, expected) in cases {
            assert_eq!(
                after_exit(policy, kind, ran, streak, max, b),
                expected,
                "{policy:?} {kind:?} ran {ran:?} streak {streak} max {max}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps_at_thirty_seconds() {
        let b = MS(500);
        let expected = [0, 0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for (streak, ms) in expected.iter().enumerate() {
            assert_eq!(backoff_delay(streak as u32, b), MS(*ms), "streak {streak}");
        }
        assert_eq!(backoff_delay(200, b), MAX_BACKOFF);
        assert_eq!(backoff_delay(40, Duration::from_secs(86_400)), MAX_BACKOFF);
    }

    #[test]
    fn health_maps_ports_to_status() {
        let grace = MS(30_000);
        #[rustfmt::skip]
        let cases = [
            // ports_ok, opened_once, since_spawn, expected
            (true,  false, MS(5),      Status::Running),
            (true,  true,  MS(90_000), Status::Running),
            (false, false, MS(5),      Status::Starting),
            (false, false, MS(30_000), Status::Unhealthy),
            (false, true,  MS(10),     Status::Unhealthy),
        ];
        for (ok, once, since, expected) in cases {
            assert_eq!(
                health_status(ok, once, since, grace),
                expected,
                "{ok} {once} {since:?}"
            );
        }
    }

    #[test]
    fn transitions_table_allows_the_lifecycle_and_refuses_shortcuts() {
        use Status::*;
        for (from, to) in [
            (Stopped, Starting),
            (Starting, Running),
            (Running, Unhealthy),
            (Unhealthy, Running),
            (Running, Stopping),
            (Stopping, Stopped),
            (Running, Backoff),
            (Backoff, Starting),
            (Running, Fatal),
            (Fatal, Starting),
            (Crashed, Stopped),
            // `always` counts a quick clean exit as a failure: it may end fatal.
            (Exited, Fatal),
        ] {
            assert!(is_allowed(from, to), "{from} -> {to} must be allowed");
        }
        for (from, to) in [
            (Stopped, Running),
            (Stopped, Stopping),
            (Stopping, Running),
            (Backoff, Running),
            (Exited, Running),
            (Fatal, Running),
        ] {
            assert!(!is_allowed(from, to), "{from} -> {to} must be refused");
        }
    }
}
