//! Server-Sent Events (docs/DESIGN.md §5): one stream per handler thread, written straight to the socket
//! with a flush after every frame (tiny_http's `Response` would hold events in an 8 KiB buffer,
//! docs/NOTES.md). Frames come from the supervisor's event hub through a bounded queue; a
//! `?logs=ID[,ID…]` stream also follows those servers' log files. A heartbeat comment every 15 s finds
//! clients that went away, and a failed write ends the thread.

use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::http::api::{self, EventsParams};
use crate::http::{LOG, SECURITY_HEADERS, Shared, write_reply};
use crate::logs::merge::Followers;
use crate::supervisor::Control;
use crate::supervisor::events;

/// How often a log-following stream looks for new lines in the file.
const LOG_POLL: Duration = Duration::from_millis(100);

pub fn serve(request: tiny_http::Request, params: EventsParams, shared: &Shared) {
    let subscription = match api::ask(shared, Duration::from_secs(5), |reply| Control::Subscribe {
        last_event_id: params.last_event_id,
        reply,
    }) {
        Ok(Ok(subscription)) => subscription,
        Ok(Err(error)) => return write_reply(request, api::error_reply(&error)),
        Err(reply) => return write_reply(request, reply),
    };
    let mut followers = Followers::new(&shared.log_dir, &params.logs);
    let mut writer = request.into_writer();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-store\r\n\
         Connection: close\r\nX-Accel-Buffering: no\r\n{SECURITY_HEADERS}\r\n"
    );
    if send(&mut writer, head.as_bytes()).is_err() {
        return;
    }
    for frame in &subscription.initial {
        if send(&mut writer, frame.as_bytes()).is_err() {
            return;
        }
    }
    log::debug!(target: LOG, "SSE client connected (logs: {:?})", params.logs);
    let mut last_write = Instant::now();
    loop {
        let idle = last_write.elapsed();
        if idle >= shared.heartbeat {
            if send(&mut writer, b": heartbeat\n\n").is_err() {
                break;
            }
            last_write = Instant::now();
            continue;
        }
        let until_heartbeat = shared.heartbeat - idle;
        let wait = if !followers.is_empty() {
            until_heartbeat.min(LOG_POLL)
        } else {
            until_heartbeat
        };
        match subscription.frames.recv_timeout(wait) {
            Ok(frame) => {
                if send(&mut writer, frame.as_bytes()).is_err() {
                    break;
                }
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The hub dropped us (we fell behind) or tend is exiting: the client reconnects.
            Err(RecvTimeoutError::Disconnected) => break,
        }
        for line in followers.poll() {
            let frame = events::encode(None, "log", &line);
            if send(&mut writer, frame.as_bytes()).is_err() {
                return;
            }
            last_write = Instant::now();
        }
    }
    log::debug!(target: LOG, "SSE client gone");
}

fn send(writer: &mut Box<dyn Write + Send>, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes)?;
    writer.flush()
}
