//! Connections: an accept thread, and one thread per connection from accept to close, which
//! reads that connection's requests in order (keep-alive, pipelining) and answers each itself.
//! Nothing is shared between connections but the count below, so nothing one connection does
//! (silence, a dripping head, a body that never ends, an answer it never reads, an idle
//! keep-alive) can delay another's request. tiny_http's own `Server` hands connections to a
//! pool of threads where one connection could queue behind another that pinned its thread
//! (docs/ARCHITECTURE.md, "The HTTP front"); tend reads each connection through the patched
//! `tiny_http::RequestStream` instead.
//!
//! At most `max_connections` are open at once. At the limit a new connection makes room: the
//! connection idle the longest (no byte of a next request yet) is closed first, then the one
//! whose request head has been arriving the longest (a slowloris drip never finishes, a real
//! client sends its head in one packet). Connections whose request is being answered (an event
//! stream, an action waiting for a stop) are never closed to make room; when every connection
//! is such, the newcomer gets a 503.

use std::collections::HashMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::http::LOG;
use crate::http::metrics::HttpSample;

/// How the connection threads are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Silence allowed before a request's first byte (an idle keep-alive) and between bytes
    /// of a request or an answer: the socket's read and write timeout.
    pub io_timeout: Duration,
    /// Each connection thread's stack. Handlers keep their data on the heap; the deepest path
    /// (a panic caught while logging a JSON answer) uses a few tens of KiB.
    pub stack_size: usize,
}

/// What a handler says after answering: whether the connection may carry another request.
pub type KeepAlive = bool;

/// Answers one request. The socket is the request's connection, for the handler that must
/// close it early (a refused body that should not be read).
pub type Handler = dyn Fn(tiny_http::Request, &TcpStream) -> KeepAlive + Send + Sync;

/// Starts the accept thread on `listener`; `registry` counts its connections.
pub fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    limits: Limits,
    head: tiny_http::HeadLimits,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accept(stream, &registry, limits, head, &handler);
                    }
                    // A client that reset before accept, or no descriptor left (a flood):
                    // one connection's failure, not the server's. The pause keeps a lasting
                    // EMFILE from spinning.
                    Err(e) => {
                        log::warn!(target: LOG, "Accepting a connection failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })
        .map(drop)
}

fn accept(
    stream: TcpStream,
    registry: &Arc<Registry>,
    limits: Limits,
    head: tiny_http::HeadLimits,
    handler: &Arc<Handler>,
) {
    let prepared = stream
        .set_read_timeout(Some(limits.io_timeout))
        .and_then(|()| stream.set_write_timeout(Some(limits.io_timeout)))
        // Small answers and events go out at once instead of waiting for more (Nagle).
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.try_clone());
    let handle = match prepared {
        Ok(handle) => handle,
        Err(e) => {
            log::debug!(target: LOG, "Cannot prepare a connection: {e}");
            return;
        }
    };
    let Some(slot) = Registry::admit(registry, handle, limits.max_connections) else {
        log::debug!(target: LOG, "Connection limit reached and every connection busy: 503");
        registry.refused.fetch_add(1, Ordering::Relaxed);
        refuse(&stream, (head.refusal)(503));
        return;
    };
    let handler = Arc::clone(handler);
    let refused = stream.try_clone();
    let spawned = std::thread::Builder::new()
        .name("http-conn".into())
        .stack_size(limits.stack_size)
        .spawn(move || serve_connection(stream, slot, head, &*handler));
    if let Err(e) = spawned {
        log::error!(target: LOG, "Cannot start a connection thread: {e}");
        if let Ok(stream) = refused {
            refuse(&stream, (head.refusal)(503));
        }
    }
}

/// Answers and closes a connection that cannot be served. The request that may already have
/// arrived is read (without waiting) before the close: closing with unread bytes would send
/// the client a reset, which can make it drop the answer unread.
fn refuse(mut stream: &TcpStream, answer: Vec<u8>) {
    use std::io::{Read, Write};
    let _ = stream.write_all(&answer);
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
    }
}

/// The life of one connection: wait for a request, read its head, answer it, again.
fn serve_connection(stream: TcpStream, slot: Slot, head: tiny_http::HeadLimits, handler: &Handler) {
    let socket = match stream.try_clone() {
        Ok(socket) => socket,
        Err(_) => return,
    };
    let mut requests = match tiny_http::RequestStream::new(stream, head) {
        Ok(requests) => requests,
        Err(e) => {
            log::warn!(target: LOG, "Closing a new connection: {e}");
            return;
        }
    };
    loop {
        slot.enter(Phase::Idle);
        if !requests.wait_for_request() {
            break;
        }
        slot.enter(Phase::Reading);
        let Some(request) = requests.next_request() else {
            break;
        };
        slot.enter(Phase::Answering);
        if !handler(request, &socket) {
            break;
        }
    }
    // The place is given up before the socket closes: a client that saw the close may count
    // on it (at the limit, its next connection must not find this one still counted).
    drop(slot);
    drop(requests);
    let _ = socket.shutdown(Shutdown::Both);
}

/// Where a connection is in its request cycle; at the limit, the lower phases make room first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Between requests: no byte of the next one yet.
    Idle,
    /// A request head is arriving.
    Reading,
    /// A request is being answered.
    Answering,
}

struct Entry {
    phase: Phase,
    since: Instant,
    /// A handle on the socket, to close it when it must make room.
    socket: TcpStream,
}

/// The open connections.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

impl Registry {
    /// The connections by phase, and what the limit did, for /metrics.
    pub fn sample(&self) -> HttpSample {
        let mut sample = HttpSample {
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            ..HttpSample::default()
        };
        for entry in self.lock().values() {
            match entry.phase {
                Phase::Idle => sample.idle += 1,
                Phase::Reading => sample.reading += 1,
                Phase::Answering => sample.answering += 1,
            }
        }
        sample
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // A connection thread cannot panic while holding the lock (no code in it panics), but
        // if one did, the map is still consistent: every change is a single insert or remove.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, closing others to make room; None when all are answering.
    fn admit(registry: &Arc<Registry>, socket: TcpStream, limit: usize) -> Option<Slot> {
        let mut open = registry.lock();
        while open.len() >= limit.max(1) {
            let victim = open
                .iter()
                .filter(|(_, entry)| entry.phase < Phase::Answering)
                .min_by_key(|(_, entry)| (entry.phase, entry.since))
                .map(|(id, _)| *id)?;
            if let Some(entry) = open.remove(&victim) {
                log::debug!(
                    target: LOG,
                    "Connection limit reached: closing a connection {:?} for {:?}",
                    entry.phase,
                    entry.since.elapsed()
                );
                let _ = entry.socket.shutdown(Shutdown::Both);
                registry.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        open.insert(
            id,
            Entry {
                phase: Phase::Idle,
                since,
                socket,
            },
        );
        Some(Slot {
            id,
            registry: Arc::clone(registry),
        })
    }
}

/// A connection's place in the registry, given up when its thread ends.
struct Slot {
    id: u64,
    registry: Arc<Registry>,
}

impl Slot {
    fn enter(&self, phase: Phase) {
        if let Some(entry) = self.registry.lock().get_mut(&self.id) {
            entry.phase = phase;
            entry.since = Instant::now();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// True when the server's end of `client` has been closed: a read sees the end at once
    /// (an open one would time out).
    fn closed(client: &TcpStream) -> bool {
        use std::io::Read;
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        matches!((&*client).read(&mut [0u8]), Ok(0))
    }

    #[test]
    fn at_the_limit_the_longest_idle_makes_room_before_any_reading() {
        let registry = Arc::new(Registry::default());
        let (reading_client, reading) = socket_pair();
        let (idle_old_client, idle_old) = socket_pair();
        let (idle_new_client, idle_new) = socket_pair();
        let reading = Registry::admit(&registry, reading, 3).unwrap();
        reading.enter(Phase::Reading);
        let _idle_old = Registry::admit(&registry, idle_old, 3).unwrap();
        let _idle_new = Registry::admit(&registry, idle_new, 3).unwrap();

        let (_, newcomer) = socket_pair();
        let _newcomer = Registry::admit(&registry, newcomer, 3).expect("room was made");
        assert!(
            closed(&idle_old_client),
            "the longest idle connection was closed"
        );
        assert_eq!(registry.lock().len(), 3);
        assert!(registry.lock().contains_key(&reading.id));
        drop((reading_client, idle_new_client));
    }

    #[test]
    fn without_idle_connections_the_longest_reading_makes_room() {
        let registry = Arc::new(Registry::default());
        let (old_client, old) = socket_pair();
        let (new_client, new) = socket_pair();
        let old = Registry::admit(&registry, old, 2).unwrap();
        old.enter(Phase::Reading);
        let new = Registry::admit(&registry, new, 2).unwrap();
        new.enter(Phase::Reading);

        let (_, newcomer) = socket_pair();
        let _newcomer = Registry::admit(&registry, newcomer, 2).expect("room was made");
        assert!(closed(&old_client));
        assert!(registry.lock().contains_key(&new.id));
        drop(new_client);
    }

    #[test]
    fn connections_being_answered_never_make_room() {
        let registry = Arc::new(Registry::default());
        let (_client, busy) = socket_pair();
        let busy = Registry::admit(&registry, busy, 1).unwrap();
        busy.enter(Phase::Answering);
        let (_, newcomer) = socket_pair();
        assert!(Registry::admit(&registry, newcomer, 1).is_none());
        drop(busy);
        let (_, newcomer) = socket_pair();
        assert!(
            Registry::admit(&registry, newcomer, 1).is_some(),
            "a closed connection frees its place"
        );
    }
}
