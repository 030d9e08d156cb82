//! The HTTP front (docs/DESIGN.md §4, §7): connections (one thread each, see [`connections`]), the
//! reading of a request, the checks of [`guard`], routing to [`api`] and the answer's bytes.
//! Handlers never touch server state: they send a [`Control`] to the supervisor and wait for
//! its reply.
//!
//! Every answer is written through tiny_http's `into_writer` with its own head (a tiny_http
//! `Response` drops `Connection` headers and buffers bodies in 8 KiB chunks, which would hold
//! event streams back). tiny_http is patched (vendor/tiny_http/PATCHES.md) to read one
//! connection's requests on a thread of tend's, within head limits that come from here.

pub mod api;
pub mod assets;
pub mod auth;
pub mod connections;
pub mod guard;
mod gzip;
pub mod metrics;
pub mod sse;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::supervisor::Control;
use crate::supervisor::reload::KnownIds;
use connections::KeepAlive;

pub(crate) const LOG: &str = "Http";

/// Largest request body accepted (docs/DESIGN.md §8).
pub const MAX_BODY: usize = 64 * 1024;

/// What handlers share: the way to the supervisor and the read-only facts they need.
pub struct Shared {
    /// Boxed: the queue's slots are allocated (and touched) when it is made, 16 bytes each
    /// instead of a whole `Control`.
    pub control: Sender<Box<Control>>,
    pub log_dir: PathBuf,
    pub server_ids: Arc<KnownIds>,
    pub max_connections: usize,
    pub heartbeat: Duration,
    pub policy: guard::Policy,
    pub connections: Arc<connections::Registry>,
    /// The last timeline events (`GET /api/history`).
    pub history: Arc<crate::history::Journal>,
    /// The alert thread, when the config has alert rules (`POST /api/alerts/test`).
    pub alerts: Option<crate::alerts::AlertsHandle>,
}

impl Shared {
    pub fn new(
        control: Sender<Box<Control>>,
        log_dir: PathBuf,
        server_ids: Arc<KnownIds>,
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
            connections: Arc::default(),
            history: Arc::default(),
            alerts: None,
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
    pub accept_encoding: Option<String>,
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

    /// Every value of a key that may repeat, each also split at commas (`group=a&group=b` or
    /// `group=a,b`; ids and group names cannot hold a comma). Empty pieces are dropped.
    pub fn query_list(&self, key: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .filter(|piece| !piece.is_empty())
            .map(str::to_string)
            .collect()
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
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let limits = connections::Limits {
        max_connections: shared.max_connections,
        io_timeout: IO_TIMEOUT,
        stack_size: CONNECTION_STACK,
    };
    let registry = Arc::clone(&shared.connections);
    let handler = Arc::new(move |request, socket: &TcpStream| handle(request, socket, &shared));
    connections::serve(listener, registry, limits, head_limits(), handler)
        .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
    Ok(bound)
}

/// Silence allowed on a connection: before a request (an idle keep-alive is closed after it),
/// within a request head, and while an answer waits to be read (docs/DESIGN.md §8: 10 s).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Each connection thread's stack: 256 connections cost 64 MiB of address space, and only
/// the pages a handler touches count as memory.
const CONNECTION_STACK: usize = 256 * 1024;

/// The bounds tiny_http keeps while it reads a head, from the same limits the guard applies,
/// so one change moves both. The request line has room for a method and version beside a URL
/// of the guard's limit; the guard then answers a URL or headers over the limit precisely.
pub fn head_limits() -> tiny_http::HeadLimits {
    tiny_http::HeadLimits {
        max_request_line: guard::MAX_HEAD + 32,
        max_header_bytes: guard::MAX_HEAD,
        head_deadline: IO_TIMEOUT,
        refusal,
    }
}

/// The whole answer to an error tiny_http finds in a head, or to a connection past the limit:
/// tend's error shape and headers, like every answer.
fn refusal(status: u16) -> Vec<u8> {
    let reply = match status {
        408 => Reply::error(
            408,
            "request_timeout",
            format!("the request head took over {} s", IO_TIMEOUT.as_secs()),
        ),
        414 => guard::uri_too_long(),
        417 => Reply::error(
            417,
            "expectation_failed",
            "only Expect: 100-continue is known",
        ),
        431 => guard::headers_too_large(),
        503 => Reply::error(503, "too_many_connections", "too many open connections"),
        505 => Reply::error(505, "http_version", "only HTTP/1.0 and HTTP/1.1 are served"),
        _ => Reply::error(400, "bad_request", "malformed request"),
    };
    let mut answer = reply_head(&reply, false).into_bytes();
    answer.extend_from_slice(&reply.body);
    answer
}

/// Reads, checks, routes and answers one request; says whether its connection may carry
/// another.
fn handle(mut request: tiny_http::Request, socket: &TcpStream, shared: &Shared) -> KeepAlive {
    let client_keeps_alive = wants_keep_alive(&request);
    // A HEAD answer has a GET answer's headers and no body; a body would be read as the start
    // of the next answer on a kept connection.
    let head_only = *request.method() == tiny_http::Method::Head;
    let (api_request, body_read) = match read_request(&mut request) {
        Ok(read) => read,
        Err(reply) => return write_reply_closing(request, socket, reply, head_only),
    };
    let keep_alive = client_keeps_alive && body_read;
    let method = api_request.method.clone();
    let path = api_request.path.clone();
    if let Err(reply) = guard::check(&api_request, &shared.policy) {
        log::debug!(target: LOG, "{method} {path} -> {} (refused)", reply.status);
        return finish(request, socket, reply, keep_alive, head_only);
    }
    match api::route(&api_request, shared) {
        api::Outcome::Reply(reply) => {
            log::debug!(target: LOG, "{method} {path} -> {}", reply.status);
            finish(request, socket, reply, keep_alive, head_only)
        }
        api::Outcome::Events(params) => {
            sse::serve(request, params, shared);
            false
        }
    }
}

fn finish(
    request: tiny_http::Request,
    socket: &TcpStream,
    reply: Reply,
    keep_alive: KeepAlive,
    head_only: bool,
) -> KeepAlive {
    if !keep_alive {
        return write_reply_closing(request, socket, reply, head_only);
    }
    write_answer(request, &reply, true, head_only).is_ok()
}

/// HTTP/1.1 keeps a connection unless the client says `close`; HTTP/1.0 only when it asks
/// for `keep-alive` (RFC 9112 §9.3).
fn wants_keep_alive(request: &tiny_http::Request) -> bool {
    let connection = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Connection"))
        .map(|h| h.value.as_str().to_ascii_lowercase());
    let says = |token: &str| {
        connection
            .as_deref()
            .is_some_and(|value| value.split(',').any(|t| t.trim() == token))
    };
    match request.http_version() {
        tiny_http::HTTPVersion(1, 1) => !says("close") && !says("upgrade"),
        tiny_http::HTTPVersion(1, 0) => says("keep-alive"),
        _ => false,
    }
}

/// The request as the router sees it, and whether its body was read to its end (so the
/// connection is at the start of the next request and may carry one). A chunked body's end
/// is not trusted for that: tiny_http's decoder may leave its last CRLF unread.
fn read_request(request: &mut tiny_http::Request) -> Result<(ApiRequest, bool), Reply> {
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
        accept_encoding: header("Accept-Encoding"),
        head_len,
        url_len,
        body: Vec::new(),
    };
    let chunked = header("Transfer-Encoding").is_some();
    // A body announced over the limit is refused before a byte of it is read: it may be
    // terabytes, or never come.
    if request
        .body_length()
        .is_some_and(|length| length > MAX_BODY)
    {
        return Err(body_too_large());
    }
    let mut body_read = !chunked && request.body_length().unwrap_or(0) == 0;
    // A body is only read once the head has passed the size limits: no point reading 64 KiB
    // behind a head that will be refused anyway.
    if head_len <= guard::MAX_HEAD && url_len <= guard::MAX_HEAD {
        request
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut api_request.body)
            .map_err(|_| Reply::error(400, "bad_request", "could not read the request body"))?;
        body_read = !chunked && api_request.body.len() <= MAX_BODY;
    }
    if api_request.body.len() > MAX_BODY {
        return Err(body_too_large());
    }
    Ok((api_request, body_read))
}

fn body_too_large() -> Reply {
    Reply::error(
        413,
        "too_large",
        format!("request body over {MAX_BODY} bytes"),
    )
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

/// Headers every response carries (docs/DESIGN.md §8).
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
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The status line and headers of an answer. A kept connection says so, as HTTP/1.0 clients
/// (`ab -k`) need, and how long it stays open idle.
fn reply_head(reply: &Reply, keep_alive: KeepAlive) -> String {
    let connection = if keep_alive {
        format!("keep-alive\r\nKeep-Alive: timeout={}", IO_TIMEOUT.as_secs())
    } else {
        "close".to_string()
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\
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
    head
}

/// Writes an answer on a connection that stays open.
fn write_answer(
    request: tiny_http::Request,
    reply: &Reply,
    keep_alive: KeepAlive,
    head_only: bool,
) -> std::io::Result<()> {
    let head = reply_head(reply, keep_alive);
    let mut writer = request.into_writer();
    writer.write_all(head.as_bytes())?;
    if !head_only {
        writer.write_all(&reply.body)?;
    }
    writer.flush()
}

/// Writes an answer with `Connection: close`; the connection ends after it. Whatever is left
/// of the request body is not read: the socket's reading side is shut first, so tiny_http's
/// drain of the body ends at once instead of waiting for bytes a client may never send.
fn write_reply_closing(
    request: tiny_http::Request,
    socket: &TcpStream,
    reply: Reply,
    head_only: bool,
) -> KeepAlive {
    let _ = socket.shutdown(std::net::Shutdown::Read);
    let _ = write_answer(request, &reply, false, head_only);
    false
}

/// Answers a request whose connection ends after the answer (an event stream's refusal).
pub fn write_reply(request: tiny_http::Request, reply: Reply) {
    let _ = write_answer(request, &reply, false, false);
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
