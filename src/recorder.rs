//! The recorder: where timeline events leave the supervisor for the threads that remember them
//! (`history`) and tell people of them (`alerts`). The event hub hands it every timeline event
//! it publishes, numbered; the recorder stamps the time and offers one shared copy to each
//! queue with `try_send`. A full queue drops the event and counts it: the supervisor never
//! waits for a disk or an alert target.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};

use crate::history::Record;
use crate::model::Timeline;

/// Events the history queue had no room for.
pub static HISTORY_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Events the alert queue had no room for (also counted as `dropped` alerts).
pub static ALERTS_DROPPED: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
pub struct Recorder {
    history: Option<Sender<Arc<Record>>>,
    alerts: Option<Sender<Arc<Record>>>,
}

impl Recorder {
    pub fn new(
        history: Option<Sender<Arc<Record>>>,
        alerts: Option<Sender<Arc<Record>>>,
    ) -> Recorder {
        Recorder { history, alerts }
    }

    pub fn record(&self, id: u64, event: &Timeline) {
        if self.history.is_none() && self.alerts.is_none() {
            return;
        }
        let record = Arc::new(Record {
            id,
            at_ms: now_ms(),
            event: event.clone(),
        });
        if let Some(history) = &self.history {
            offer(history, &record, &HISTORY_DROPPED, "history");
        }
        // Only what an alert rule can be about: the alert thread never sees its own outcomes.
        if let Some(alerts) = &self.alerts {
            if !matches!(event, Timeline::Alert(_)) {
                offer(alerts, &record, &ALERTS_DROPPED, "alerts");
            }
        }
    }
}

fn offer(queue: &Sender<Arc<Record>>, record: &Arc<Record>, dropped: &AtomicU64, name: &str) {
    match queue.try_send(Arc::clone(record)) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            // The first of a run is logged; the count is in /metrics.
            if dropped.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                log::warn!(target: "Recorder",
                    "The {name} queue is full: dropped a {} event (see /metrics)", record.event.name());
            }
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    #[test]
    fn a_full_queue_drops_without_waiting_and_alert_outcomes_skip_the_alert_queue() {
        let (history, history_rx) = bounded(1);
        let (alerts, alerts_rx) = bounded(8);
        let recorder = Recorder::new(Some(history), Some(alerts));
        let before = HISTORY_DROPPED.load(Ordering::Relaxed);
        let started = Timeline::TendStarted {
            pid: 1,
            version: "0".into(),
        };
        recorder.record(1, &started);
        recorder.record(2, &started);
        assert_eq!(HISTORY_DROPPED.load(Ordering::Relaxed) - before, 1);
        assert_eq!(history_rx.len(), 1);
        assert_eq!(alerts_rx.len(), 2);
        recorder.record(
            3,
            &Timeline::Alert(crate::model::AlertOutcome {
                id: None,
                rule: 1,
                target: "exec".into(),
                alert: "tendStarted".into(),
                result: "sent".into(),
                detail: String::new(),
            }),
        );
        assert_eq!(alerts_rx.len(), 2);
        assert_eq!(alerts_rx.recv().unwrap().id, 1);
    }
}
