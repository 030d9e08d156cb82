//! The event hub: numbers outbound events, frames them once for SSE, keeps a bounded replay
//! buffer and fans frames out to subscribers. Owned by the supervisor thread (no lock): a
//! subscription is taken together with a snapshot in one supervisor turn, so no event can fall
//! between the snapshot and the stream (process-compose's state_broadcaster does the same under
//! a lock).
//!
//! A subscriber whose bounded queue is full is dropped rather than waited for: one client that
//! does not read must never slow the supervisor (docs/NOTES.md). It reconnects with
//! Last-Event-ID and gets the missed events from the buffer, or a fresh snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde::Serialize;

use crate::model::{Event, ServerView};
use crate::recorder::Recorder;

/// State events kept for Last-Event-ID replay.
pub const REPLAY_CAPACITY: usize = 4096;
/// ...and at most this many bytes of them. A `server` frame is a whole server view (~600
/// bytes), so 4096 of them were 2.5 MB held for tend's life once 1,000 servers had started.
/// A client that missed more than this gets a snapshot instead, which is then about as many
/// bytes (1,000 servers list in ~500 KB) and leaves it in the same state; the dashboard also
/// fetches the timeline events it missed from the history after any gap.
pub const REPLAY_BYTES: usize = 512 * 1024;
/// Frames a subscriber may have queued before it counts as not reading.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// One encoded SSE frame, shared by every subscriber.
pub type Frame = Arc<str>;

#[derive(Default)]
pub struct EventHub {
    last_id: u64,
    replay: VecDeque<(u64, Frame)>,
    /// The frames' bytes in `replay`.
    replay_bytes: usize,
    subscribers: Vec<Sender<Frame>>,
    /// Hands timeline events on to history and alerts (see `recorder`).
    recorder: Recorder,
}

/// What a new SSE client gets: frames to write first, then the live queue.
pub struct Subscription {
    pub initial: Vec<Frame>,
    pub frames: Receiver<Frame>,
}

impl EventHub {
    /// A hub whose first event id is `first_id`. tend passes its start time in microseconds,
    /// so ids keep growing across its own restarts: a client resuming with an id from an
    /// earlier run is always behind the buffer and gets a fresh snapshot, never another run's
    /// events that happen to share its numbers.
    pub fn starting_at(first_id: u64) -> EventHub {
        EventHub {
            last_id: first_id.saturating_sub(1),
            ..EventHub::default()
        }
    }

    /// From now on, every timeline event is also handed to `recorder`, with its id.
    pub fn record_to(&mut self, recorder: Recorder) {
        self.recorder = recorder;
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    #[cfg(test)]
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Subscribes a client. With a `last_event_id` still covered by the replay buffer, the
    /// client gets exactly the missed events; otherwise a `servers` snapshot.
    pub fn subscribe(
        &mut self,
        last_event_id: Option<u64>,
        snapshot: impl FnOnce() -> Vec<ServerView>,
    ) -> Subscription {
        let (sender, frames) = bounded(SUBSCRIBER_QUEUE);
        let mut initial = vec![Frame::from("retry: 2000\n\n")];
        match last_event_id.filter(|&id| self.can_replay_from(id)) {
            Some(id) => initial.extend(
                self.replay
                    .iter()
                    .filter(|(n, _)| *n > id)
                    .map(|(_, f)| Frame::clone(f)),
            ),
            None => initial.push(encode(Some(self.last_id), "servers", &snapshot())),
        }
        self.subscribers.push(sender);
        Subscription { initial, frames }
    }

    fn can_replay_from(&self, id: u64) -> bool {
        if id > self.last_id {
            // From another tend run (ids restart at 0): the client's view is unrelated.
            return false;
        }
        match self.replay.front() {
            Some((oldest, _)) => id + 1 >= *oldest,
            None => id == self.last_id,
        }
    }

    /// Numbers, frames and sends an event. Stats are samples: they go out without an id and
    /// are not replayed, since an id on them would move a client's resume point past state
    /// events it may not have seen. (Log lines are samples too; each log stream reads its own
    /// file, see `http::sse`.)
    pub fn publish(&mut self, event: &Event) {
        let frame = match event {
            Event::Stats(stats) => return self.fan_out(&encode(None, "stats", stats)),
            Event::Servers(views) => {
                let id = self.next_id();
                encode(Some(id), "servers", views)
            }
            Event::Server(view) => {
                let id = self.next_id();
                encode(Some(id), "server", view)
            }
            Event::Timeline(timeline) => {
                let id = self.next_id();
                self.recorder.record(id, timeline);
                encode(Some(id), timeline.name(), timeline)
            }
        };
        // Room first: a deque pushed past its capacity doubles it.
        while self.replay.len() >= REPLAY_CAPACITY
            || (!self.replay.is_empty() && self.replay_bytes + frame.len() > REPLAY_BYTES)
        {
            self.drop_oldest();
        }
        if frame.len() <= REPLAY_BYTES {
            self.replay_bytes += frame.len();
            self.replay.push_back((self.last_id, Frame::clone(&frame)));
        }
        self.fan_out(&frame);
    }

    fn drop_oldest(&mut self) {
        if let Some((_, frame)) = self.replay.pop_front() {
            self.replay_bytes -= frame.len();
        }
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn fan_out(&mut self, frame: &Frame) {
        self.subscribers.retain(
            |subscriber| match subscriber.try_send(Frame::clone(frame)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    log::warn!(target: "Http", "Dropped an SSE client that stopped reading");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        );
    }
}

/// Encodes one SSE frame. JSON never contains a raw newline, so one `data:` line suffices.
pub fn encode(id: Option<u64>, event: &str, data: &impl Serialize) -> Frame {
    let json = serde_json::to_string(data).expect("event data serializes");
    let frame = match id {
        Some(id) => format!("id: {id}\nevent: {event}\ndata: {json}\n\n"),
        None => format!("event: {event}\ndata: {json}\n\n"),
    };
    Frame::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timeline;

    fn started(n: u32) -> Event {
        Event::Timeline(Timeline::ServerStarted {
            id: format!("s{n}"),
            pid: n,
        })
    }

    #[test]
    fn frames_have_increasing_ids_and_one_data_line() {
        let mut hub = EventHub::default();
        let sub = hub.subscribe(None, Vec::new);
        hub.publish(&started(1));
        hub.publish(&started(2));
        let first = sub.frames.try_recv().unwrap();
        let second = sub.frames.try_recv().unwrap();
        assert_eq!(
            &*first,
            "id: 1\nevent: serverStarted\ndata: {\"id\":\"s1\",\"pid\":1}\n\n"
        );
        assert!(second.starts_with("id: 2\n"));
        assert_eq!(sub.initial[0].as_ref(), "retry: 2000\n\n");
        assert!(sub.initial[1].starts_with("id: 0\nevent: servers\ndata: []"));
    }

    #[test]
    fn resume_replays_missed_events_or_sends_a_snapshot() {
        let mut hub = EventHub::default();
        for n in 1..=5 {
            hub.publish(&started(n));
        }
        let resumed = hub.subscribe(Some(3), || panic!("no snapshot when replay covers it"));
        assert_eq!(resumed.initial.len(), 3);
        assert!(resumed.initial[1].starts_with("id: 4\n"));
        assert!(resumed.initial[2].starts_with("id: 5\n"));

        let future = hub.subscribe(Some(99), Vec::new);
        assert!(future.initial[1].contains("event: servers"));

        let mut next_run = EventHub::starting_at(1_000_000);
        next_run.publish(&started(1));
        let from_last_run = next_run.subscribe(Some(5), Vec::new);
        assert!(from_last_run.initial[1].contains("event: servers"));
        assert!(from_last_run.initial[1].starts_with("id: 1000000\n"));

        for n in 0..REPLAY_CAPACITY as u32 {
            hub.publish(&started(n));
        }
        let too_old = hub.subscribe(Some(2), Vec::new);
        assert!(too_old.initial[1].contains("event: servers"));
    }

    fn failed(n: u32, error: &str) -> Event {
        Event::Timeline(Timeline::ProcessError {
            id: format!("s{n}"),
            error: error.to_string(),
        })
    }

    #[test]
    fn the_replay_keeps_at_most_its_bytes_and_a_client_that_missed_more_gets_a_snapshot() {
        let mut hub = EventHub::default();
        let error = "x".repeat(1000);
        let count = (REPLAY_BYTES / 1000) as u32 + 10;
        for n in 1..=count {
            hub.publish(&failed(n, &error));
        }
        assert!(
            hub.replay_bytes <= REPLAY_BYTES,
            "{} bytes kept",
            hub.replay_bytes
        );
        assert_eq!(
            hub.replay_bytes,
            hub.replay.iter().map(|(_, f)| f.len()).sum::<usize>()
        );
        let kept = hub.replay.len() as u64;
        assert!(kept > 400, "only {kept} frames kept");
        // The newest `kept` are replayed exactly; one more missed and it is a snapshot.
        let recent = hub.subscribe(Some(hub.last_id() - kept), || panic!("replayable"));
        assert_eq!(recent.initial.len() as u64, 1 + kept);
        assert!(recent.initial[1].starts_with(&format!("id: {}\n", hub.last_id() - kept + 1)));
        let too_old = hub.subscribe(Some(hub.last_id() - kept - 1), Vec::new);
        assert!(too_old.initial[1].contains("event: servers"));

        // A frame larger than the whole buffer is sent but not kept, and nothing older is
        // replayed across it.
        hub.publish(&failed(0, &"y".repeat(REPLAY_BYTES)));
        assert!(hub.replay.is_empty());
        let before_it = hub.subscribe(Some(hub.last_id() - 1), Vec::new);
        assert!(before_it.initial[1].contains("event: servers"));
        let after_it = hub.subscribe(Some(hub.last_id()), || panic!("nothing missed"));
        assert_eq!(after_it.initial.len(), 1);
        hub.publish(&started(1));
        assert_eq!(hub.replay.len(), 1);
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_dropped_and_others_keep_receiving() {
        let mut hub = EventHub::default();
        let stalled = hub.subscribe(None, Vec::new);
        let reader = hub.subscribe(None, Vec::new);
        for n in 0..(SUBSCRIBER_QUEUE as u32 + 10) {
            hub.publish(&started(n));
            while reader.frames.try_recv().is_ok() {}
        }
        assert_eq!(hub.subscriber_count(), 1);
        drop(stalled);
        drop(reader);
        hub.publish(&started(0));
        assert_eq!(hub.subscriber_count(), 0);
    }

    #[test]
    fn samples_carry_no_id() {
        let mut hub = EventHub::default();
        let sub = hub.subscribe(None, Vec::new);
        hub.publish(&Event::Stats(vec![]));
        let frame = sub.frames.try_recv().unwrap();
        assert_eq!(&*frame, "event: stats\ndata: []\n\n");
        assert_eq!(hub.last_id(), 0);
    }
}
