//! The HTTP front (DESIGN §4, §7): a tiny_http listener, a few receiving threads that answer
//! quick requests themselves and give long ones (event streams, actions, kills) a thread of their
//! own, routing, and the response writer. Handlers never touch server state: they send a [`Control`] to the
//! supervisor and wait for its reply.
//!
//! Every answer is written through `into_writer` with `Connection: close` and a Content-Length,
//! and the connection then closes: tend's tiny_http is patched (vendor/tiny_http/PATCHES.md) to
//! serve one request per connection, with socket timeouts and a bounded request head. Stock
//! tiny_http 0.12 keeps a keep-alive connection's pool thread waiting for a next request, and a
//! burst of them can leave new connections queued behind pinned threads, never read
//! (../shared/NOTES.md: 46 of 50 unanswered). SSE streams are written through `into_writer` too,
//! since a tiny_http `Response` body is buffered in 8 KiB chunks.

pub mod api;
pub mod assets;
pub mod guard;
pub mod sse;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::supervisor::Control;

pub(crate) const LOG: &str = "Http";

/// Largest request body accepted (DESIGN §8).
pub const MAX_BODY: usize = 64 * 1024;

/// What handlers share: the way to the supervisor and the read-only facts they need.
pub struct Shared {
    pub control: Sender<Control>,
    pub log_dir: PathBuf,
    pub server_ids: HashSet<String>,
    pub max_connections: usize,
    pub heartbeat: Duration,
    pub policy: guard::Policy,
    in_flight: AtomicUsize,
}

impl Shared {
    pub fn new(
        control: Sender<Control>,
        log_dir: PathBuf,
        server_ids: HashSet<String>,
        max_connections: usize,
        policy: guard::Policy,
    ) -> Shared {
        Shared {
            control,
            log_dir,
            server_ids,
            max_connections,
            heartbeat: Duration::from_secs(15),
            policy,
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// A request as the router sees it: no sockets, so handlers are testable as plain functions.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub last_event_id: Option<String>,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub referer: Option<String>,
    pub authorization: Option<String>,
    pub cookie: Option<String>,
    /// Bytes of all header names and values, and of the URL, for the size limits.
    pub head_len: usize,
    pub url_len: usize,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers (Location, Set-Cookie, WWW-Authenticate).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        let body = serde_json::to_vec(value).expect("reply serializes");
        Reply {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn error(status: u16, code: &str, message: impl std::fmt::Display) -> Reply {
        Reply::json(
            status,
            &serde_json::json!({ "error": message.to_string(), "code": code }),
        )
    }
}

/// Starts listening and the accept thread; returns the bound address (port 0 resolved).
pub fn start(listen: SocketAddr, shared: Arc<Shared>) -> Result<SocketAddr, String> {
    // Connections still sending their request are capped inside tiny_http (patched), requests
    // being handled (event streams included) by `dispatch`: each side by max_connections.
    let server = tiny_http::Server::http_with_limit(listen, shared.max_connections)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("cannot listen on {listen}: not an IP address"))?;
    let server = Arc::new(server);
    for _ in 0..RECEIVERS {
        let server = Arc::clone(&server);
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                loop {
                    match server.recv() {
                        Ok(request) => dispatch(request, &shared),
                        // The patched accept loop never ends; a receive error is one request's.
                        Err(e) => log::warn!(target: LOG, "Receiving a request failed: {e}"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the HTTP threads: {e}"))?;
    }
    Ok(bound)
}

/// Threads that take requests from tiny_http and answer the quick ones themselves. Each quick
/// request then costs no thread of its own and no hand-over between threads; two per core.
const RECEIVERS: usize = 4;

/// Requests that may hold their thread for long: event streams live for hours, actions wait
/// for stops and dependency chains, an orphan kill waits up to seconds.
fn is_long(request: &tiny_http::Request) -> bool {
    let path = request.url().split('?').next().unwrap_or_default();
    !matches!(request.method(), tiny_http::Method::Get)
        || path.trim_end_matches('/') == "/api/events"
}

fn dispatch(request: tiny_http::Request, shared: &Arc<Shared>) {
    if shared.in_flight.load(Ordering::Relaxed) >= shared.max_connections {
        write_reply(
            request,
            Reply::error(503, "too_many_connections", "too many open connections"),
        );
        return;
    }
    let guard = InFlight::enter(shared);
    if !is_long(&request) {
        handle(request, shared);
        return;
    }
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("http-long".into())
        .spawn(move || {
            let _guard = guard;
            handle(request, &shared);
        });
    if let Err(e) = spawned {
        log::error!(target: LOG, "Cannot start a handler thread: {e}");
    }
}

/// Counts a handler while it lives, even when it panics (rouille's in-flight counter).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn handle(mut request: tiny_http::Request, shared: &Shared) {
    let api_request = match read_request(&mut request) {
        Ok(r) => r,
        Err(reply) => return write_reply(request, reply),
    };
    let method = api_request.method.clone();
    let path = api_request.path.clone();
    if let Err(reply) = guard::check(&api_request, &shared.policy) {
        log::debug!(target: LOG, "{method} {path} -> {} (refused)", reply.status);
        return write_reply(request, reply);
    }
    // A panic in a handler must cost one request, never the process (panic = "unwind").
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        api::route(&api_request, shared)
    }));
    match outcome {
        Ok(api::Outcome::Reply(reply)) => {
            log::debug!(target: LOG, "{method} {path} -> {}", reply.status);
            write_reply(request, reply);
        }
        Ok(api::Outcome::Events(params)) => sse::serve(request, params, shared),
        Err(_) => {
            log::error!(target: LOG, "Handler for {method} {path} panicked");
            write_reply(request, Reply::error(500, "internal", "internal error"));
        }
    }
}

fn read_request(request: &mut tiny_http::Request) -> Result<ApiRequest, Reply> {
    let url = request.url().to_string();
    let url_len = url.len();
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path.to_string(), parse_query(query)),
        None => (url, Vec::new()),
    };
    let head_len = request
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    let mut api_request = ApiRequest {
        method: request.method().as_str().to_string(),
        path,
        query,
        content_type: header("Content-Type"),
        last_event_id: header("Last-Event-ID"),
        host: header("Host"),
        origin: header("Origin"),
        referer: header("Referer"),
        authorization: header("Authorization"),
        cookie: header("Cookie"),
        head_len,
        url_len,
        body: Vec::new(),
    };
    // A body is only read once the head has passed the size limits: no point reading 64 KiB
    // behind a head that will be refused anyway.
    if head_len <= guard::MAX_HEAD && url_len <= guard::MAX_HEAD {
        request
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut api_request.body)
            .map_err(|_| Reply::error(400, "bad_request", "could not read the request body"))?;
    }
    if api_request.body.len() > MAX_BODY {
        return Err(Reply::error(
            413,
            "too_large",
            format!("request body over {MAX_BODY} bytes"),
        ));
    }
    Ok(api_request)
}

/// Splits `a=1&b=x%20y` into decoded pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, other) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Headers every response carries (DESIGN §8).
pub const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\n\
Referrer-Policy: no-referrer\r\n\
Content-Security-Policy: default-src 'self'; img-src 'self' data:; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'self'\r\n";

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

pub fn write_reply(request: tiny_http::Request, reply: Reply) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\n{}",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        SECURITY_HEADERS,
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = request.into_writer();
    let _ = writer
        .write_all(head.as_bytes())
        .and_then(|()| writer.write_all(&reply.body))
        .and_then(|()| writer.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_decoded() {
        assert_eq!(
            parse_query("action=start&lines=20&x=a%20b+c&bad=%zz&flag"),
            [
                ("action".to_string(), "start".to_string()),
                ("lines".to_string(), "20".to_string()),
                ("x".to_string(), "a b c".to_string()),
                ("bad".to_string(), "%zz".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_query("a=%4"), [("a".to_string(), "%4".to_string())]);
    }
}
