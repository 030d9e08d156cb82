//! Reads of the servers' figures (`GET /api/servers`, one server, `/metrics`) and who looks at
//! them (docs/DESIGN.md §12 "Idle"). The monitor samples CPU and memory only while someone
//! looks ([`Demand`](crate::monitor::demand::Demand)), so a read may come when the last figures
//! are older than a round: it then asks the monitor for a sample on demand and waits for it
//! without holding up the loop (the reply is kept and answered when the sample arrives, at
//! most [`SAMPLE_WAIT`] later). A read never gets old figures presented as current: figures
//! older than [`READ_ROUNDS`] rounds are dropped (`null`) before anything is answered with them.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::http::metrics;
use crate::model::ServerView;
use crate::monitor::MonitorCmd;
use crate::monitor::demand::READ_ROUNDS;

use super::protocol::Reply;
use super::{LOG, ServerOrchestrator};

/// The longest a read waits for a sample on demand. The monitor answers within milliseconds
/// unless a batch of HTTP health probes holds it (up to their timeout); past this the read
/// is answered with what there is, stale figures left out.
pub(super) const SAMPLE_WAIT: Duration = Duration::from_millis(500);

/// A read waiting for fresh figures.
pub(super) enum Reader {
    List(Sender<Vec<u8>>),
    Get {
        id: String,
        reply: Reply<ServerView>,
    },
    Metrics(Sender<metrics::Snapshot>),
}

#[derive(Default)]
pub(super) struct Readers {
    waiting: Vec<Reader>,
    /// A sample on demand was asked for and has not come yet; answer `waiting` by then anyway.
    deadline: Option<Instant>,
    /// When the monitor last sampled every running server.
    complete_at: Option<Instant>,
}

impl Readers {
    /// When the supervisor must wake for readers that waited long enough.
    pub(super) fn due(&self) -> Option<Instant> {
        self.deadline
    }
}

impl ServerOrchestrator {
    /// Answers a read at once when the figures are at most a round old, else after a sample on
    /// demand.
    pub(super) fn read(&mut self, reader: Reader) {
        self.outputs.demand.read();
        if self.figures_current() {
            return self.answer(reader);
        }
        self.readers.waiting.push(reader);
        self.ask_for_sample();
    }

    /// A new SSE client: its snapshot goes out now (without figures older than a round or
    /// two), and a sample follows at once as a `stats` event instead of a round later.
    pub(super) fn on_subscribe(&mut self) {
        // Counted before the monitor hears of it: it decides from this whether to keep
        // sampling once the sample asked for below is done.
        self.outputs
            .demand
            .set_sse_clients(self.hub.subscriber_count() + 1);
        if !self.figures_current() {
            self.drop_stale_figures();
            self.ask_for_sample();
        }
    }

    /// After every turn: the monitor samples while an SSE client is connected.
    pub(super) fn note_subscribers(&self) {
        self.outputs
            .demand
            .set_sse_clients(self.hub.subscriber_count());
    }

    /// The monitor sampled every running server.
    pub(super) fn on_complete_sample(&mut self) {
        self.readers.complete_at = Some(self.host.now());
        self.readers.deadline = None;
        for reader in std::mem::take(&mut self.readers.waiting) {
            self.answer(reader);
        }
    }

    /// Readers whose sample did not come within [`SAMPLE_WAIT`] get what there is.
    pub(super) fn answer_late_readers(&mut self) {
        if self.readers.deadline.is_none_or(|at| at > self.host.now()) {
            return;
        }
        self.readers.deadline = None;
        log::debug!(target: LOG, "No sample within {} ms: answering {} reads without stale figures",
            SAMPLE_WAIT.as_millis(), self.readers.waiting.len());
        self.drop_stale_figures();
        for reader in std::mem::take(&mut self.readers.waiting) {
            self.answer(reader);
        }
    }

    fn ask_for_sample(&mut self) {
        if self.readers.deadline.is_none() {
            self.readers.deadline = Some(self.host.now() + SAMPLE_WAIT);
            let _ = self.outputs.monitor.send(MonitorCmd::SampleNow);
        }
    }

    /// Every running server was sampled within the last round (or none runs).
    fn figures_current(&self) -> bool {
        let now = self.host.now();
        let fresh = self
            .readers
            .complete_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.health_interval);
        fresh || self.servers.iter().all(|s| s.pid.is_none())
    }

    /// Forgets figures older than [`READ_ROUNDS`] rounds, so nothing shows them as current.
    fn drop_stale_figures(&mut self) {
        let oldest = self.health_interval * READ_ROUNDS;
        let now = self.host.now();
        for index in self.servers.indices() {
            let server = &mut self.servers[index];
            if server
                .sample
                .as_ref()
                .is_some_and(|s| now.saturating_duration_since(s.taken) > oldest)
            {
                server.sample = None;
                self.list_json.forget(index.0);
            }
        }
    }

    fn answer(&mut self, reader: Reader) {
        match reader {
            Reader::List(reply) => {
                let _ = reply.send(self.list_json());
            }
            Reader::Get { id, reply } => {
                let result = self.find(&id).map(|index| self.view(index));
                let _ = reply.send(result);
            }
            Reader::Metrics(reply) => {
                let _ = reply.send(self.metrics());
            }
        }
    }
}
