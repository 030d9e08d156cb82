//! The supervisor's transitions and timers against a scripted host ([`FakeHost`]): no process is
//! spawned and no clock is waited on, so each test runs in milliseconds and says exactly which
//! signal went to which group at which moment. The integration tests (tests/it) cover the same
//! behaviour against real processes; these pin down the timing rules they cannot see
//! precisely (backoff steps, escalation at the stop timeout, dependency order).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, unbounded};

use super::host::Host;
use super::reload::{ConfigSource, KnownIds};
use super::server::ServerIndex;
use super::{Control, ControlError, Outputs, ServerOrchestrator};
use crate::cli::UpOptions;
use crate::config::{self, ServerConfig};
use crate::groups::ActTarget;
use crate::logs::rotate;
use crate::model::{Action, ServerView, Status};
use crate::monitor::{MonitorCmd, Slot};
use crate::os::process::{SignalError, Spawned};
use crate::os::procfs::ProcStat;
use crate::os::reaper::{Exit, ExitStatus};
use crate::store::{ProcessStateStore, StateFile, StoredProcess};
use crate::test_support::TempDir;

const BOOT_ID: &str = "boot-under-test";

/// What the scripted host did and what it pretends exists.
#[derive(Default)]
struct Machine {
    /// How far the fake clock has moved since the test began.
    elapsed: Duration,
    next_pid: u32,
    /// (server id, pid, when) for every spawn, in order.
    spawns: Vec<(String, u32, Duration)>,
    /// (process group, signal, when) for every signal sent, in order.
    signals: Vec<(u32, i32, Duration)>,
    /// Process groups with a process left in them.
    live_groups: HashSet<u32>,
    /// Processes from before a restart of tend: pid → start ticks.
    old_processes: HashMap<u32, u64>,
    /// Pids whose exit is watched by pidfd.
    watched: Vec<u32>,
}

struct FakeHost {
    start: Instant,
    machine: Arc<Mutex<Machine>>,
}

impl Host for FakeHost {
    fn now(&self) -> Instant {
        self.start + self.machine.lock().unwrap().elapsed
    }

    fn wall_clock(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.machine.lock().unwrap().elapsed
    }

    fn spawn(&mut self, config: &ServerConfig, _: &Path, _: &Path) -> Result<Spawned, String> {
        let mut machine = self.machine.lock().unwrap();
        machine.next_pid += 1;
        let pid = 1000 + machine.next_pid;
        let at = machine.elapsed;
        machine.spawns.push((config.id.clone(), pid, at));
        machine.live_groups.insert(pid);
        Ok(Spawned {
            pid,
            start_ticks: u64::from(pid) * 10,
            env_file_text: None,
        })
    }

    fn file_len(&self, _: &Path) -> u64 {
        0
    }

    fn signal_group(&mut self, pgid: u32, signal: i32) -> Result<(), SignalError> {
        let mut machine = self.machine.lock().unwrap();
        let at = machine.elapsed;
        machine.signals.push((pgid, signal, at));
        if machine.live_groups.contains(&pgid) {
            Ok(())
        } else {
            Err(SignalError::Gone)
        }
    }

    fn group_exists(&self, pgid: u32, _: bool) -> bool {
        self.machine.lock().unwrap().live_groups.contains(&pgid)
    }

    fn is_signallable(&self, pid: u32) -> bool {
        pid > 1
    }

    fn start_ticks(&self, pid: u32) -> Option<u64> {
        self.machine
            .lock()
            .unwrap()
            .old_processes
            .get(&pid)
            .copied()
    }

    fn read_stat(&self, pid: u32) -> Option<ProcStat> {
        let start_ticks = self.start_ticks(pid)?;
        Some(ProcStat {
            pid,
            comm: "sleep".into(),
            state: 'S',
            ppid: 1,
            pgrp: pid,
            session: pid,
            utime: 0,
            stime: 0,
            start_ticks,
            rss_pages: 0,
        })
    }

    fn is_same_process_alive(&self, pid: u32, start_ticks: u64) -> bool {
        self.start_ticks(pid) == Some(start_ticks)
    }

    fn watch_exit(&mut self, pid: u32) -> bool {
        self.machine.lock().unwrap().watched.push(pid);
        true
    }
}

/// A supervisor on a scripted host, driven one message at a time as its loop would.
struct Harness {
    supervisor: ServerOrchestrator,
    machine: Arc<Mutex<Machine>>,
    /// Kept so the supervisor's messages to the monitor have somewhere to go.
    _monitor: Receiver<MonitorCmd>,
    /// The config's folder and the state file's; removed with the harness.
    _dir: TempDir,
}

impl Harness {
    /// `servers`: the JSON of the config's `servers` array.
    fn new(servers: &str) -> Harness {
        Harness::with_machine(servers, Machine::default())
    }

    fn with_machine(servers: &str, machine: Machine) -> Harness {
        let dir = TempDir::new("supervisor");
        let text = format!(r#"{{"servers": {servers}}}"#);
        let path = dir.join("tend.json");
        let config = config::parse(&text, &path, &dir).expect("the test's config is valid");
        let (monitor, monitor_rx) = unbounded();
        let outputs = Outputs {
            monitor,
            demand: Arc::new(crate::monitor::demand::Demand::default()),
            store: ProcessStateStore::spawn(dir.join("state.json")).unwrap(),
            known_ids: Arc::new(KnownIds::of(&config)),
            log_limits: Arc::new(rotate::Limits::new(0, 0)),
            watch: crate::watch::WatchHandle::unattended(),
        };
        let machine = Arc::new(Mutex::new(machine));
        let host = FakeHost {
            start: Instant::now(),
            machine: Arc::clone(&machine),
        };
        let source = ConfigSource::new(&path, &UpOptions::default(), &dir);
        let supervisor = ServerOrchestrator::new(
            &config,
            outputs,
            Box::new(host),
            PathBuf::from("/nonexistent/tend"),
            BOOT_ID.into(),
            source,
        );
        Harness {
            supervisor,
            machine,
            _monitor: monitor_rx,
            _dir: dir,
        }
    }

    fn boot(&mut self, stored: Option<StateFile>) {
        self.supervisor.boot(stored);
    }

    /// Sends an action as the API would (`None`: every server); returns where its answer
    /// will arrive.
    fn act(
        &mut self,
        action: Action,
        id: Option<&str>,
    ) -> Receiver<Result<Vec<ServerView>, ControlError>> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let target = match id {
            Some(id) => ActTarget::One(id.to_string()),
            None => ActTarget::All,
        };
        self.supervisor.on_control(Control::Act {
            action,
            target,
            reply,
        });
        self.supervisor.end_turn();
        answer
    }

    /// The process `pid` ended (its whole group with it unless `group_lingers`).
    fn exit(&mut self, pid: u32, status: ExitStatus, group_lingers: bool) {
        if !group_lingers {
            self.machine.lock().unwrap().live_groups.remove(&pid);
        }
        self.supervisor.on_exit(Exit { pid, status });
        self.supervisor.end_turn();
    }

    /// Moves the clock on in small steps, firing every timer that falls due on the way, as
    /// the loop's timeout would.
    fn advance(&mut self, by: Duration) {
        let step = Duration::from_millis(10);
        let mut moved = Duration::ZERO;
        while moved < by {
            let next = step.min(by - moved);
            self.machine.lock().unwrap().elapsed += next;
            moved += next;
            self.supervisor.on_timers();
            self.supervisor.end_turn();
        }
    }

    fn status(&self, id: &str) -> Status {
        let index = self.supervisor.index_of[id];
        self.supervisor.servers[index].status
    }

    fn pid(&self, id: &str) -> Option<u32> {
        let index = self.supervisor.index_of[id];
        self.supervisor.servers[index].pid
    }

    fn spawns(&self) -> Vec<(String, u32, Duration)> {
        self.machine.lock().unwrap().spawns.clone()
    }

    fn signals(&self) -> Vec<(u32, i32, Duration)> {
        self.machine.lock().unwrap().signals.clone()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_stop_escalates_to_sigkill_of_the_group_at_the_stop_timeout() {
    let mut h =
        Harness::new(r#"[{"id": "web", "command": ["sleep", "1000"], "stop_timeout_ms": 2000}]"#);
    h.boot(None);
    let pid = h.pid("web").expect("autostart spawned it");
    assert_eq!(h.status("web"), Status::Running);

    let answer = h.act(Action::Stop, Some("web"));
    assert_eq!(h.status("web"), Status::Stopping);
    // SIGCONT after the stop signal: a group stopped with SIGSTOP would never act on SIGTERM.
    assert_eq!(
        h.signals(),
        [(pid, libc::SIGTERM, ms(0)), (pid, libc::SIGCONT, ms(0))]
    );

    // The process ignores SIGTERM: nothing more until the timeout, then SIGKILL to the group.
    h.advance(ms(1990));
    assert_eq!(h.signals().len(), 2, "no SIGKILL before the timeout");
    h.advance(ms(20));
    let signals = h.signals();
    assert_eq!(signals.len(), 3, "{signals:?}");
    assert_eq!((signals[2].0, signals[2].1), (pid, libc::SIGKILL));
    assert!(
        signals[2].2 >= ms(2000) && signals[2].2 <= ms(2010),
        "{signals:?}"
    );
    assert!(
        answer.try_recv().is_err(),
        "answered only once the server is down"
    );

    h.exit(pid, ExitStatus::Signal(libc::SIGKILL), false);
    assert_eq!(h.status("web"), Status::Stopped);
    let views = answer.try_recv().expect("answered").expect("stopped");
    assert_eq!(views[0].status, Status::Stopped);
}

#[test]
fn a_stop_waits_for_the_rest_of_the_group_after_the_leader_exits() {
    let mut h = Harness::new(r#"[{"id": "web", "command": ["sleep", "1000"]}]"#);
    h.boot(None);
    let pid = h.pid("web").unwrap();
    let _answer = h.act(Action::Stop, Some("web"));
    // The leader dies of SIGTERM but a child of it is still in the group.
    h.exit(pid, ExitStatus::Signal(libc::SIGTERM), true);
    assert_eq!(
        h.status("web"),
        Status::Stopping,
        "a member still holds the group"
    );
    h.machine.lock().unwrap().live_groups.remove(&pid);
    h.advance(ms(50));
    assert_eq!(h.status("web"), Status::Stopped);
}

#[test]
fn failed_restarts_back_off_exponentially_then_park_as_fatal() {
    let mut h = Harness::new(
        r#"[{"id": "worker", "command": ["false"], "restart": "on-failure",
             "max_restarts": 4, "backoff_ms": 100, "retry_fatal_ms": 0}]"#,
    );
    h.boot(None);
    // Each process fails at once; the waits before the restarts are 0, 100, 200, 400 ms.
    for expected_wait in [0, 100, 200, 400] {
        let (_, pid, spawned_at) = h.spawns().last().cloned().unwrap();
        h.exit(pid, ExitStatus::Code(1), false);
        if expected_wait > 0 {
            assert_eq!(h.status("worker"), Status::Backoff);
            h.advance(ms(expected_wait - 10));
            assert_eq!(
                h.spawns().last().unwrap().1,
                pid,
                "not restarted before {expected_wait} ms"
            );
            h.advance(ms(20));
        }
        let (_, next_pid, next_at) = h.spawns().last().cloned().unwrap();
        assert_ne!(next_pid, pid, "restarted after {expected_wait} ms");
        let waited = next_at - spawned_at;
        assert!(
            waited >= ms(expected_wait) && waited <= ms(expected_wait + 10),
            "waited {waited:?}, expected {expected_wait} ms"
        );
    }
    // The fifth failure in a row is past max_restarts.
    let (_, pid, _) = h.spawns().last().cloned().unwrap();
    h.exit(pid, ExitStatus::Code(1), false);
    assert_eq!(h.status("worker"), Status::Fatal);
    h.advance(ms(60_000));
    assert_eq!(
        h.spawns().len(),
        5,
        "a fatal server stays down (retry_fatal_ms: 0)"
    );
}

#[test]
fn a_clean_exit_under_on_failure_is_not_restarted() {
    let mut h = Harness::new(r#"[{"id": "job", "command": ["true"], "restart": "on-failure"}]"#);
    h.boot(None);
    let pid = h.pid("job").unwrap();
    h.exit(pid, ExitStatus::Code(0), false);
    assert_eq!(h.status("job"), Status::Exited);
    h.advance(ms(5_000));
    assert_eq!(h.spawns().len(), 1);
}

#[test]
fn dependencies_start_first_and_stop_last() {
    let mut h = Harness::new(
        r#"[{"id": "web", "command": ["sleep", "1"], "depends_on": ["api"], "autostart": false},
            {"id": "api", "command": ["sleep", "1"], "depends_on": ["db"], "autostart": false},
            {"id": "db", "command": ["sleep", "1"], "autostart": false}]"#,
    );
    h.boot(None);
    assert!(h.spawns().is_empty());
    let started = h.act(Action::Start, Some("web"));
    let order: Vec<String> = h.spawns().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(order, ["db", "api", "web"]);
    assert!(started.try_recv().unwrap().is_ok());

    let (db, api, web) = (
        h.pid("db").unwrap(),
        h.pid("api").unwrap(),
        h.pid("web").unwrap(),
    );
    // Stopping all goes from the top: api only once web is down, db only once api is.
    let _stopped = h.act(Action::Stop, None);
    let terms = |h: &Harness| -> Vec<u32> {
        let signals = h.signals().into_iter();
        signals
            .filter(|s| s.1 == libc::SIGTERM)
            .map(|s| s.0)
            .collect()
    };
    assert_eq!(terms(&h), [web]);
    h.exit(web, ExitStatus::Signal(libc::SIGTERM), false);
    assert_eq!(terms(&h), [web, api]);
    h.exit(api, ExitStatus::Signal(libc::SIGTERM), false);
    assert_eq!(terms(&h), [web, api, db]);
    h.exit(db, ExitStatus::Signal(libc::SIGTERM), false);
    for id in ["web", "api", "db"] {
        assert_eq!(h.status(id), Status::Stopped, "{id}");
    }
}

#[test]
fn a_group_stops_its_own_dependents_first_and_leaves_outside_ones_running() {
    let mut h = Harness::new(
        r#"[{"id": "web", "command": ["sleep", "1"], "depends_on": ["api"]},
            {"id": "api", "command": ["sleep", "1"], "depends_on": ["db"], "group": "backend"},
            {"id": "db", "command": ["sleep", "1"], "group": "backend"}]"#,
    );
    h.boot(None);
    let (db, api, web) = (
        h.pid("db").unwrap(),
        h.pid("api").unwrap(),
        h.pid("web").unwrap(),
    );
    let (reply, answer) = crossbeam_channel::bounded(1);
    let selector = crate::groups::Selector {
        groups: vec!["backend".into()],
        ids: Vec::new(),
    };
    h.supervisor.on_control(Control::Act {
        action: Action::Stop,
        target: ActTarget::Selected(selector),
        reply,
    });
    h.supervisor.end_turn();
    let terms = |h: &Harness| -> Vec<u32> {
        let signals = h.signals().into_iter();
        signals
            .filter(|s| s.1 == libc::SIGTERM)
            .map(|s| s.0)
            .collect()
    };
    // api at once (web is not being stopped: not waited for), db once api is down.
    assert_eq!(terms(&h), [api]);
    h.exit(api, ExitStatus::Signal(libc::SIGTERM), false);
    assert_eq!(terms(&h), [api, db]);
    h.exit(db, ExitStatus::Signal(libc::SIGTERM), false);
    let views = answer.try_recv().unwrap().unwrap();
    let ids: Vec<&str> = views.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["api", "db"], "the answer is the servers acted on");
    assert_eq!(h.pid("web"), Some(web));
    assert_eq!(h.status("db"), Status::Stopped);
}

#[test]
fn a_process_from_before_a_restart_of_tend_is_adopted_only_if_its_start_time_matches() {
    let mut machine = Machine::default();
    machine.old_processes.insert(4242, 777);
    machine.old_processes.insert(4343, 999);
    machine.live_groups.insert(4242);
    let mut h = Harness::with_machine(
        r#"[{"id": "same", "command": ["sleep", "1000"]},
            {"id": "reused", "command": ["sleep", "1000"]}]"#,
        machine,
    );
    let mut state = StateFile::empty(BOOT_ID);
    let stored = |pid, ticks| StoredProcess {
        pid,
        pgid: pid,
        command: "sleep 1000".into(),
        start_time: 1_700_000_000_000,
        proc_start_ticks: ticks,
        ports: Vec::new(),
    };
    state.insert("same", stored(4242, 777));
    // PID 4343 is alive but started at another time: another program got the PID.
    state.insert("reused", stored(4343, 555));
    h.boot(Some(state));

    assert_eq!(h.pid("same"), Some(4242), "taken over, not spawned again");
    assert_eq!(h.status("same"), Status::Running);
    assert_eq!(
        h.machine.lock().unwrap().watched,
        [4242],
        "its exit is watched by pidfd"
    );
    let spawned: Vec<String> = h.spawns().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(
        spawned,
        ["reused"],
        "the reused PID is left alone and the server started"
    );
    assert!(h.signals().is_empty(), "nothing signalled");

    // The adopted process dies: its exit status is unknown, which counts as a failure.
    h.exit(4242, ExitStatus::Unknown, false);
    assert_eq!(
        h.spawns().last().unwrap().0,
        "same",
        "restarted under on-failure"
    );
}

#[test]
fn a_state_file_from_another_boot_adopts_nothing() {
    let mut machine = Machine::default();
    machine.old_processes.insert(4242, 777);
    let mut h = Harness::with_machine(r#"[{"id": "web", "command": ["sleep", "1000"]}]"#, machine);
    let mut state = StateFile::empty("an-earlier-boot");
    state.insert(
        "web",
        StoredProcess {
            pid: 4242,
            pgid: 4242,
            command: "sleep 1000".into(),
            start_time: 0,
            proc_start_ticks: 777,
            ports: Vec::new(),
        },
    );
    h.boot(Some(state));
    assert_ne!(h.pid("web"), Some(4242));
    assert_eq!(h.spawns().len(), 1);
}

// ---- planned restarts (issue 18) ---------------------------------------------------------------

#[test]
fn restart_every_stops_through_the_stop_path_on_time_and_is_never_a_failure() {
    let mut h = Harness::new(
        r#"[{"id": "leaky", "command": ["sleep", "1000"], "restart_every": "1s",
             "max_restarts": 1, "backoff_ms": 100}]"#,
    );
    h.boot(None);
    for round in 1..=3u64 {
        let (_, pid, spawned_at) = h.spawns().last().cloned().unwrap();
        let due = spawned_at + ms(1000);
        let index = h.supervisor.index_of["leaky"];
        let planned = h.supervisor.servers[index].view(h.supervisor.host.wall_clock());
        assert!(planned.planned_restart.is_some(), "round {round}");
        let elapsed = h.machine.lock().unwrap().elapsed;
        h.advance(due - elapsed - ms(10));
        assert!(
            !h.signals().iter().any(|s| s.0 == pid),
            "round {round}: nothing before it is due"
        );
        h.advance(ms(20));
        let signals = h.signals();
        let (group, signal, at) = signals[signals.len() - 2];
        assert_eq!((group, signal), (pid, libc::SIGTERM), "round {round}");
        assert!(at >= due && at <= due + ms(10), "round {round}: {at:?}");
        assert_eq!(h.status("leaky"), Status::Stopping);
        h.exit(pid, ExitStatus::Signal(libc::SIGTERM), false);
        assert_eq!(h.status("leaky"), Status::Running, "round {round}");
        assert_eq!(h.spawns().len() as u64, round + 1);
    }
    // Three planned restarts with max_restarts 1: a real crash is still restarted.
    let (_, pid, _) = h.spawns().last().cloned().unwrap();
    h.exit(pid, ExitStatus::Code(1), false);
    assert_ne!(h.status("leaky"), Status::Fatal);
    assert_eq!(
        h.spawns().len(),
        5,
        "restarted at once after the first failure"
    );
}

#[test]
fn a_schedule_is_skipped_while_a_person_has_the_server_stopped() {
    let mut h =
        Harness::new(r#"[{"id": "leaky", "command": ["sleep", "1000"], "restart_every": "1s"}]"#);
    h.boot(None);
    let pid = h.pid("leaky").unwrap();
    h.advance(ms(500));
    let _answer = h.act(Action::Stop, Some("leaky"));
    h.exit(pid, ExitStatus::Signal(libc::SIGTERM), false);
    assert_eq!(h.status("leaky"), Status::Stopped);
    h.advance(ms(3000));
    assert_eq!(h.status("leaky"), Status::Stopped);
    assert_eq!(h.spawns().len(), 1, "never started by its schedule");
    // Started again by a person, it is due a second after that start, not before.
    let _answer = h.act(Action::Start, Some("leaky"));
    let pid = h.pid("leaky").unwrap();
    h.advance(ms(990));
    assert!(
        !h.signals()
            .iter()
            .any(|s| s.0 == pid && s.1 == libc::SIGTERM)
    );
    h.advance(ms(20));
    assert!(
        h.signals()
            .iter()
            .any(|s| s.0 == pid && s.1 == libc::SIGTERM)
    );
}

fn changed(h: &mut Harness, file: &str) {
    h.supervisor
        .on_watch_report(crate::watch::WatchReport::Changed {
            slot: Slot(0),
            file: file.into(),
            more: 0,
        });
    h.supervisor.end_turn();
}

#[test]
fn file_changes_restart_a_running_server_queue_one_more_mid_restart_and_revive_a_fatal_one() {
    let mut h = Harness::new(
        r#"[{"id": "dev", "command": ["node", "app.js"], "watch": {"paths": ["src"]},
             "restart": "on-failure", "max_restarts": 0, "retry_fatal_ms": 0}]"#,
    );
    h.boot(None);
    let first = h.pid("dev").unwrap();
    changed(&mut h, "src/a.js");
    assert_eq!(h.status("dev"), Status::Stopping);
    // Three changes while it stops: one more restart, not three.
    for file in ["src/b.js", "src/c.js", "src/d.js"] {
        changed(&mut h, file);
    }
    h.exit(first, ExitStatus::Signal(libc::SIGTERM), false);
    let second = h.pid("dev").unwrap();
    h.advance(ms(10));
    assert_eq!(h.status("dev"), Status::Stopping, "the queued restart");
    h.exit(second, ExitStatus::Signal(libc::SIGTERM), false);
    let third = h.pid("dev").unwrap();
    h.advance(ms(100));
    assert_eq!(h.status("dev"), Status::Running, "nothing more queued");
    assert_eq!(h.spawns().len(), 3);
    assert_eq!(h.supervisor.servers[ServerIndex(0)].restarts, 2);

    // It crashes (max_restarts 0: fatal at once); a change, maybe the fix, starts it again.
    h.exit(third, ExitStatus::Code(1), false);
    assert_eq!(h.status("dev"), Status::Fatal);
    changed(&mut h, "src/fix.js");
    assert_eq!(h.status("dev"), Status::Running);
    assert_eq!(h.spawns().len(), 4);

    // Stopped by a person: changes do nothing.
    let fourth = h.pid("dev").unwrap();
    let _answer = h.act(Action::Stop, Some("dev"));
    changed(&mut h, "src/during-stop.js");
    h.exit(fourth, ExitStatus::Signal(libc::SIGTERM), false);
    changed(&mut h, "src/after-stop.js");
    h.advance(ms(100));
    assert_eq!(h.status("dev"), Status::Stopped);
    assert_eq!(h.spawns().len(), 4);
}

#[test]
fn a_long_schedule_looks_at_the_wall_clock_on_the_way_and_restarts_on_time() {
    let mut h =
        Harness::new(r#"[{"id": "leaky", "command": ["sleep", "1000"], "restart_every": "25m"}]"#);
    h.boot(None);
    let pid = h.pid("leaky").unwrap();
    // Two looks on the way (at 10 and 20 minutes) re-arm it; neither restarts it.
    let next_look = |h: &Harness| {
        let planned = h.supervisor.servers[ServerIndex(0)]
            .planned
            .as_ref()
            .unwrap();
        planned.at - h.supervisor.host.now()
    };
    assert_eq!(next_look(&h), Duration::from_secs(600));
    h.advance(Duration::from_secs(601));
    assert_eq!(
        next_look(&h),
        Duration::from_secs(599),
        "looked at 10 minutes"
    );
    h.advance(Duration::from_secs(25 * 60 - 601) - ms(10));
    assert_eq!(next_look(&h), ms(10), "the last stretch is the rest");
    assert!(h.signals().is_empty(), "{:?}", h.signals());
    h.advance(ms(20));
    assert_eq!(h.signals()[0].0, pid);
    assert_eq!(h.signals()[0].1, libc::SIGTERM);
}
