//! Alerts (docs/DESIGN.md §12 "Alerts"): tells someone when a server dies, goes fatal or
//! unhealthy, an orphan holds its port, … through a command, a webhook or an Alertmanager.
//!
//! Never in the supervisor's way. The "alerts" thread gets the timeline events from the
//! recorder's bounded queue, turns them into alerts ([`alert::Watch`]), applies each rule's
//! rate limit and hands deliveries to the rule's own worker thread ("alert-N") through another
//! bounded queue. A hung target holds only its own rule's worker, for at most its
//! `timeout_ms`; a full queue drops the alert, counts it (`tend_alerts_total{result="dropped"}`)
//! and says so in the log and the timeline. Each delivery's outcome (sent, failed, held back,
//! dropped) goes back to the supervisor as an `alert` timeline event.

pub mod alert;
mod exec;
mod post;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, Sender, TrySendError, after, bounded, never, select, tick, unbounded,
};
use serde::Serialize;
use serde_json::json;

use crate::config::alerts::{AlertEvent, AlertRule, AlertTarget};
use crate::history::Record;
use crate::model::{AlertOutcome, Timeline};
use crate::recorder;
use alert::{Alert, Change, Key, RateLimit, Verdict, Watch};

const LOG: &str = "Alerts";

/// Events waiting for the alert thread.
pub const EVENT_QUEUE: usize = 1024;
/// Deliveries waiting for one rule's worker.
pub const DELIVERY_QUEUE: usize = 256;
/// Alertmanager forgets an alert that is not posted again before its `endsAt`: firing
/// conditions are posted again this often, each time good for [`FIRING_FOR`] (Prometheus does
/// the same with its resend delay).
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
pub const FIRING_FOR: Duration = Duration::from_secs(240);
/// How long an alert with no condition behind it (tendStarted, recovered, a test) stays in
/// Alertmanager.
pub const ONE_SHOT_FOR: Duration = Duration::from_secs(300);
/// How long tend waits at exit for deliveries still in flight (a `tendStopping` alert).
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// `tend_alerts_total{result}`.
pub static SENT: AtomicU64 = AtomicU64::new(0);
pub static FAILED: AtomicU64 = AtomicU64::new(0);
pub static HELD_BACK: AtomicU64 = AtomicU64::new(0);
/// Deliveries a rule's full queue refused (events the alert thread never got are counted in
/// `recorder::ALERTS_DROPPED`).
static DELIVERIES_DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn dropped_total() -> u64 {
    DELIVERIES_DROPPED.load(Ordering::Relaxed) + recorder::ALERTS_DROPPED.load(Ordering::Relaxed)
}

/// One rule's answer to `tend alerts test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub rule: usize,
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

/// What HTTP handlers may ask of the alert thread.
#[derive(Clone)]
pub struct AlertsHandle {
    tests: Sender<Sender<TestResult>>,
    /// (1-based rule, what it sends to), for answering rules whose worker is silent.
    pub rules: Vec<(usize, String)>,
    /// The longest `timeout_ms` of any rule: how long a test may take.
    pub longest_timeout: Duration,
}

impl AlertsHandle {
    /// Sends a test alert through every rule and waits for each rule's result (a rule whose
    /// result does not come within its timeout is reported as such).
    pub fn test(&self) -> Vec<TestResult> {
        let (results_tx, results) = unbounded();
        let mut answers: Vec<TestResult> = Vec::new();
        if self.tests.send(results_tx).is_ok() {
            let deadline = Instant::now() + self.longest_timeout + Duration::from_secs(2);
            while answers.len() < self.rules.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                match results.recv_timeout(left) {
                    Ok(result) => answers.push(result),
                    Err(_) => break,
                }
            }
        }
        for (rule, target) in &self.rules {
            if !answers.iter().any(|a| a.rule == *rule) {
                answers.push(TestResult {
                    rule: *rule,
                    target: target.clone(),
                    ok: false,
                    detail: "no result in time (tend is stopping, or the rule is busy)".into(),
                });
            }
        }
        answers.sort_by_key(|a| a.rule);
        answers
    }
}

/// The running alert thread.
pub struct AlertsThread {
    thread: JoinHandle<()>,
}

impl AlertsThread {
    /// Waits until the alert thread has finished (after the recorder's sender is gone), which
    /// is at most [`EXIT_GRACE`] after the last event.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts the alert thread and one worker per rule. Returns the queue the recorder feeds,
/// the handle for HTTP handlers and the thread. Outcomes go to `outcomes`.
pub fn start(
    rules: Vec<AlertRule>,
    outcomes: Sender<Box<Timeline>>,
) -> io::Result<(Sender<Arc<Record>>, AlertsHandle, AlertsThread)> {
    let (events_tx, events) = bounded(EVENT_QUEUE);
    let (tests_tx, tests) = unbounded();
    let host = alert::host_name();
    let mut workers = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        workers.push(Worker::start(i + 1, rule.clone(), outcomes.clone())?);
    }
    let handle = AlertsHandle {
        tests: tests_tx,
        rules: rules
            .iter()
            .enumerate()
            .map(|(i, rule)| (i + 1, describe_target(&rule.target)))
            .collect(),
        longest_timeout: rules.iter().map(|r| r.timeout).max().unwrap_or_default(),
    };
    let dispatcher = Dispatcher {
        rules,
        workers,
        watch: Watch::new(host),
        limits: HashMap::new(),
        firing: HashMap::new(),
        recovering: HashMap::new(),
        outcomes,
    };
    let thread = thread::Builder::new()
        .name("alerts".into())
        .spawn(move || dispatcher.run(&events, &tests))?;
    Ok((events_tx, handle, AlertsThread { thread }))
}

/// "exec: notify.sh", "webhook http://…", "alertmanager http://…".
pub fn describe_target(target: &AlertTarget) -> String {
    match target {
        AlertTarget::Exec { command, .. } => format!("exec {}", command.display()),
        AlertTarget::Webhook(url) => format!("webhook {url}"),
        AlertTarget::Alertmanager(url) => format!("alertmanager {url}"),
    }
}

enum Job {
    Fire(Alert),
    /// Alertmanager: the condition behind this alert is over.
    Resolve(Alert),
    /// Alertmanager: these conditions still hold.
    Refresh(Vec<Alert>),
    Test(Alert, Sender<TestResult>),
}

struct Worker {
    queue: Sender<Job>,
    done: Receiver<()>,
}

impl Worker {
    fn start(
        rule_number: usize,
        rule: AlertRule,
        outcomes: Sender<Box<Timeline>>,
    ) -> io::Result<Worker> {
        let (queue, jobs) = bounded::<Job>(DELIVERY_QUEUE);
        let (done_tx, done) = bounded(1);
        thread::Builder::new()
            .name(format!("alert-{rule_number}"))
            .spawn(move || {
                for job in jobs {
                    deliver(rule_number, &rule, job, &outcomes);
                }
                let _ = done_tx.send(());
            })?;
        Ok(Worker { queue, done })
    }
}

struct Dispatcher {
    rules: Vec<AlertRule>,
    workers: Vec<Worker>,
    watch: Watch,
    /// Each rule's rate limit.
    limits: HashMap<usize, RateLimit>,
    /// Alertmanager rules' conditions that hold now, by rule index.
    firing: HashMap<usize, HashMap<Key, Alert>>,
    /// Servers running again after trouble: when their `recovered` is due.
    recovering: HashMap<String, (Instant, Alert)>,
    outcomes: Sender<Box<Timeline>>,
}

impl Dispatcher {
    fn run(mut self, events: &Receiver<Arc<Record>>, tests: &Receiver<Sender<TestResult>>) {
        let refresh = tick(REFRESH_EVERY);
        loop {
            let next_recovery = self.recovering.values().map(|(due, _)| *due).min();
            let recovery = next_recovery.map_or_else(never, |due| {
                after(due.saturating_duration_since(Instant::now()))
            });
            select! {
                recv(events) -> record => match record {
                    Ok(record) => self.on_record(&record),
                    Err(_) => break,
                },
                recv(tests) -> results => {
                    if let Ok(results) = results {
                        self.on_test(&results);
                    }
                },
                recv(refresh) -> _ => self.refresh(),
                recv(recovery) -> _ => self.recover_due(),
            }
        }
        // Deliveries already queued (a `tendStopping` alert) get a little time to go out.
        let deadline = Instant::now() + EXIT_GRACE;
        let workers = std::mem::take(&mut self.workers);
        let done: Vec<Receiver<()>> = workers.into_iter().map(|w| w.done).collect();
        for done in done {
            let _ = done.recv_deadline(deadline);
        }
    }

    fn on_record(&mut self, record: &Record) {
        for change in self.watch.observe(record) {
            match change {
                Change::Fire(event, alert) => {
                    if alert::is_trouble(event) {
                        if let Some(server) = &alert.server {
                            self.recovering.remove(server);
                        }
                    }
                    self.fire(event, &alert);
                }
                Change::Recovering(alert) => {
                    let server = alert.server.clone().unwrap_or_default();
                    let due = Instant::now() + alert::RECOVERY_HOLD;
                    self.recovering.insert(server, (due, alert));
                }
                Change::Clear {
                    server,
                    events,
                    port,
                } => {
                    // Stopped, or running again: a recovery pending from before is moot
                    // (running again brings its own `Recovering` right after this).
                    if events.iter().any(|e| alert::is_trouble(*e)) {
                        self.recovering.remove(&server);
                    }
                    self.clear(&server, events, port);
                }
            }
        }
    }

    /// Sends `recovered` for each server that stayed out of trouble for the hold.
    fn recover_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .recovering
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(server, _)| server.clone())
            .collect();
        for server in due {
            if let Some((_, alert)) = self.recovering.remove(&server) {
                self.fire(AlertEvent::Recovered, &alert);
            }
        }
    }

    fn applies(rule: &AlertRule, event: AlertEvent, server: Option<&str>) -> bool {
        rule.on.contains(&event)
            && (rule.servers.is_empty()
                || server.is_some_and(|id| rule.servers.iter().any(|s| s == id)))
    }

    fn fire(&mut self, event: AlertEvent, alert: &Alert) {
        let now = Instant::now();
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            if !Self::applies(rule, event, alert.server.as_deref()) {
                continue;
            }
            let is_condition = alert::CONDITIONS.contains(&event);
            if let AlertTarget::Alertmanager(_) = rule.target {
                if is_condition {
                    // Alertmanager groups and repeats notifications itself: a condition is
                    // posted when it begins and resolved when it ends, and repeats of it
                    // while it holds change nothing there.
                    let firing = self.firing.entry(index).or_default();
                    if firing.contains_key(&alert.key()) {
                        continue;
                    }
                    firing.insert(alert.key(), alert.clone());
                    self.enqueue(index, Job::Fire(alert.clone()), alert);
                    continue;
                }
            }
            let limit = self.limits.entry(index).or_default();
            match limit.check(alert, rule.repeat, now) {
                Verdict::Send { held_back, since } => {
                    let mut alert = alert.clone();
                    alert::note_held_back(&mut alert, held_back, since);
                    self.enqueue(index, Job::Fire(alert.clone()), &alert);
                }
                Verdict::Hold { first } => {
                    HELD_BACK.fetch_add(1, Ordering::Relaxed);
                    // The first held back says so on the timeline; the count rides on the
                    // next alert sent, so a crash loop does not fill the timeline with these.
                    if first {
                        let detail = format!(
                            "held back: the same alert was sent less than {} ms ago (repeat_ms); \
                             the next one sent says how many were held back",
                            rule.repeat.as_millis()
                        );
                        self.report(index, alert, "heldBack", detail);
                    }
                }
            }
        }
    }

    fn clear(&mut self, server: &str, events: &[AlertEvent], port: Option<u16>) {
        for index in 0..self.rules.len() {
            let Some(firing) = self.firing.get_mut(&index) else {
                continue;
            };
            let over: Vec<Key> = firing
                .keys()
                .filter(|key| {
                    key.server.as_deref() == Some(server)
                        && events.iter().any(|e| e.as_str() == key.event)
                        && (port.is_none() || key.port == port)
                })
                .cloned()
                .collect();
            let resolved: Vec<Alert> = over.iter().filter_map(|key| firing.remove(key)).collect();
            for alert in resolved {
                self.enqueue(index, Job::Resolve(alert.clone()), &alert);
            }
        }
    }

    fn refresh(&mut self) {
        for (index, firing) in &self.firing {
            if firing.is_empty() {
                continue;
            }
            let alerts: Vec<Alert> = firing.values().cloned().collect();
            if let Err(TrySendError::Full(_)) =
                self.workers[*index].queue.try_send(Job::Refresh(alerts))
            {
                log::warn!(target: LOG, "Alert rule {} is busy: its firing alerts were not posted again this minute", index + 1);
            }
        }
    }

    fn on_test(&mut self, results: &Sender<TestResult>) {
        let now_ms = recorder::now_ms();
        for index in 0..self.rules.len() {
            let alert = self.watch.test_alert(index + 1, now_ms);
            let job = Job::Test(alert.clone(), results.clone());
            if self.workers[index].queue.try_send(job).is_err() {
                let _ = results.send(TestResult {
                    rule: index + 1,
                    target: describe_target(&self.rules[index].target),
                    ok: false,
                    detail: format!("its queue is full ({DELIVERY_QUEUE} deliveries waiting)"),
                });
            }
        }
    }

    fn enqueue(&mut self, index: usize, job: Job, alert: &Alert) {
        match self.workers[index].queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                DELIVERIES_DROPPED.fetch_add(1, Ordering::Relaxed);
                log::warn!(target: LOG,
                    "Alert rule {} has {DELIVERY_QUEUE} deliveries waiting: dropped \"{}\"",
                    index + 1, alert.summary);
                let detail = format!("dropped: {DELIVERY_QUEUE} deliveries already waiting");
                self.report(index, alert, "dropped", detail);
            }
        }
    }

    fn report(&self, index: usize, alert: &Alert, result: &str, detail: String) {
        let _ = self.outcomes.send(Box::new(outcome(
            index + 1,
            &self.rules[index],
            alert,
            result,
            detail,
        )));
    }
}

fn outcome(
    rule_number: usize,
    rule: &AlertRule,
    alert: &Alert,
    result: &str,
    detail: String,
) -> Timeline {
    Timeline::Alert(AlertOutcome {
        id: alert.server.clone(),
        rule: rule_number,
        target: rule.target.kind().to_string(),
        alert: alert.event.clone(),
        result: result.to_string(),
        detail,
    })
}

/// Runs one job on rule `rule_number`'s worker thread and reports how it went.
fn deliver(rule_number: usize, rule: &AlertRule, job: Job, outcomes: &Sender<Box<Timeline>>) {
    let deadline = Instant::now() + rule.timeout;
    let (alert, result, test) = match (&rule.target, job) {
        (AlertTarget::Exec { command, cwd }, Job::Fire(alert)) => {
            let result = exec::run(command, cwd, &alert, rule_number, rule.timeout);
            (alert, result, None)
        }
        (AlertTarget::Exec { command, cwd }, Job::Test(alert, reply)) => {
            let result = exec::run(command, cwd, &alert, rule_number, rule.timeout);
            (alert, result, Some(reply))
        }
        (AlertTarget::Webhook(url), Job::Fire(alert)) => {
            let body = serde_json::to_string(&alert).expect("an alert serializes");
            (alert, post::post_with_retries(url, &body, deadline), None)
        }
        (AlertTarget::Webhook(url), Job::Test(alert, reply)) => {
            let body = serde_json::to_string(&alert).expect("an alert serializes");
            (
                alert,
                post::post_with_retries(url, &body, deadline),
                Some(reply),
            )
        }
        (AlertTarget::Alertmanager(base), job) => {
            let url = base.join("/api/v2/alerts");
            let now_ms = recorder::now_ms();
            let (alert, body, test, resolved) = match job {
                Job::Fire(alert) => {
                    let lasts = if alert::CONDITIONS.iter().any(|e| e.as_str() == alert.event) {
                        FIRING_FOR
                    } else {
                        ONE_SHOT_FOR
                    };
                    let body = json!([am_alert(&alert, now_ms + lasts.as_millis() as u64)]);
                    (alert, body, None, false)
                }
                Job::Test(alert, reply) => {
                    let ends = now_ms + ONE_SHOT_FOR.as_millis() as u64;
                    let body = json!([am_alert(&alert, ends)]);
                    (alert, body, Some(reply), false)
                }
                Job::Resolve(alert) => {
                    let body = json!([am_alert(&alert, now_ms)]);
                    (alert, body, None, true)
                }
                Job::Refresh(alerts) => {
                    let ends = now_ms + FIRING_FOR.as_millis() as u64;
                    let body: Vec<_> = alerts.iter().map(|a| am_alert(a, ends)).collect();
                    let result = post::post_with_retries(&url, &json!(body).to_string(), deadline);
                    if let Err(why) = result {
                        FAILED.fetch_add(1, Ordering::Relaxed);
                        log::warn!(target: LOG, "Alert rule {rule_number}: posting {} firing alerts again to {url} failed: {why}", alerts.len());
                    }
                    return;
                }
            };
            let result = post::post_with_retries(&url, &body.to_string(), deadline);
            let mut alert = alert;
            if resolved {
                alert.event = "resolved".to_string();
            }
            (alert, result, test)
        }
        (_, Job::Resolve(_) | Job::Refresh(_)) => return,
    };
    let (result_name, detail, ok) = match &result {
        Ok(detail) => ("sent", detail.clone(), true),
        Err(detail) => ("failed", detail.clone(), false),
    };
    if ok {
        SENT.fetch_add(1, Ordering::Relaxed);
        log::info!(target: LOG, "Alert rule {rule_number} ({}): sent \"{}\" ({detail})", rule.target.kind(), alert.summary);
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
        log::warn!(target: LOG, "Alert rule {rule_number} ({}): \"{}\" failed: {detail}", rule.target.kind(), alert.summary);
    }
    if let Some(reply) = test {
        let _ = reply.send(TestResult {
            rule: rule_number,
            target: describe_target(&rule.target),
            ok,
            detail: detail.clone(),
        });
    }
    let _ = outcomes.send(Box::new(outcome(
        rule_number,
        rule,
        &alert,
        result_name,
        detail,
    )));
}

/// An alert as Alertmanager's v2 API takes it (`POST /api/v2/alerts`).
fn am_alert(alert: &Alert, ends_at_ms: u64) -> serde_json::Value {
    let (name, severity) = match alert.event.as_str() {
        "processDied" => ("TendProcessDied", "warning"),
        "fatal" => ("TendServerFatal", "critical"),
        "unhealthy" => ("TendServerUnhealthy", "warning"),
        "recovered" => ("TendServerRecovered", "info"),
        "orphanDetected" => ("TendOrphanDetected", "warning"),
        "spawnFailed" => ("TendSpawnFailed", "critical"),
        "stateWriteFailed" => ("TendStateWriteFailed", "critical"),
        "tendStarted" => ("TendStarted", "info"),
        "tendStopping" => ("TendStopping", "info"),
        _ => ("TendTestAlert", "info"),
    };
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), name.into());
    labels.insert("instance".into(), alert.host.clone().into());
    labels.insert("job".into(), "tend".into());
    labels.insert("severity".into(), severity.into());
    if let Some(server) = &alert.server {
        labels.insert("server".into(), server.clone().into());
    }
    if let Some(port) = alert.port {
        labels.insert("port".into(), port.to_string().into());
    }
    json!({
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "description": alert.reason,
            "held_back": alert.held_back.to_string(),
        },
        "startsAt": alert.at,
        "endsAt": alert::rfc3339(ends_at_ms.max(alert.at_ms)),
    })
}
