//! The HTTP front's connections (docs/DESIGN.md §12, README "Security"): one thread per connection, so
//! no connection can delay another's request, whatever it does; HTTP/1.1 keep-alive with
//! pipelining, idle close and `Connection: close`/HTTP/1.0 honoured; and at `max_connections`,
//! idle connections make room before ones that are mid-request.
//!
//! "Promptly" is [`PROMPT`]: far below the 10 s a stalled connection could impose (its head
//! deadline, its idle timeout, its write timeout), so a request that waited behind a stalled
//! connection fails instead of passing late. Stalled clients are added one at a time with a
//! probe after each: one stalled client proved nothing when four were needed to starve the old
//! pool.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, demo_cmd, free_port, try_http_request, wait_until};

/// How long a probe may take: requests here take a millisecond, the suite runs in parallel.
const PROMPT: Duration = Duration::from_secs(3);

/// One stopped demo server and the given top-level settings.
fn config(extra: Value) -> Value {
    let port = free_port();
    let mut config = json!({"servers": [{"id": "web", "command": demo_cmd(&["--port", &port.to_string()]),
                            "ports": [port], "autostart": false}]});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

/// A fresh connection's `GET /healthz` must be answered within [`PROMPT`].
fn probe(tend: &Tend, after: &str) {
    let started = Instant::now();
    match try_http_request(&tend.url, "GET", "/healthz", &[], b"", PROMPT) {
        Ok((200, _, _)) => {}
        Ok((status, _, body)) => panic!(
            "after {after}: /healthz answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(e) => panic!(
            "after {after}: /healthz not answered in {:?}: {e}",
            started.elapsed()
        ),
    }
}

/// A client connection that reads answers one at a time (keep-alive).
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    host: String,
}

/// One answer: status, headers (lower-case names), body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

impl Client {
    fn connect(tend: &Tend) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", tend.port)).expect("connect");
        stream.set_read_timeout(Some(PROMPT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client {
            stream,
            reader,
            host: format!("127.0.0.1:{}", tend.port),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn get_request(&self, path: &str, extra_headers: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra_headers}\r\n",
            self.host
        )
    }

    /// Reads one answer; `head_only` for the answer to a HEAD request (no body follows).
    fn answer(&mut self, head_only: bool) -> std::io::Result<Answer> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::other("closed before an answer"));
        }
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length: usize = header(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
        let mut body = vec![0; if head_only { 0 } else { length }];
        self.reader.read_exact(&mut body)?;
        Ok((status, headers, body))
    }

    fn get(&mut self, path: &str) -> Answer {
        let request = self.get_request(path, "");
        self.send(request.as_bytes());
        self.answer(false)
            .unwrap_or_else(|e| panic!("GET {path} on a kept connection: {e}"))
    }

    /// True once the server closed this connection: a read sees its end (or a reset, which a
    /// close can also be). False when `wait` passed with the connection still open; panics on
    /// bytes the server should not have sent.
    fn closed_within(&mut self, wait: Duration) -> bool {
        use std::io::ErrorKind;
        let deadline = Instant::now() + wait;
        let mut byte = [0u8];
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.reader.read(&mut byte) {
                Ok(0) => break true,
                Ok(_) => panic!("a byte after the last answer: {:?}", byte[0] as char),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false;
                }
                Err(e) => {
                    // Shown with a failing test: a reset where an orderly close was expected.
                    eprintln!("the connection ended with an error: {e} ({:?})", e.kind());
                    break true;
                }
            }
        };
        self.stream.set_read_timeout(Some(PROMPT)).unwrap();
        closed
    }

    /// True while the server keeps this connection open: nothing to read, no end.
    fn still_open(&mut self) -> bool {
        self.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8];
        let open = matches!(self.reader.read(&mut byte), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).unwrap();
        open
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The ways a client can sit on a connection.
#[derive(Debug, Clone, Copy)]
enum Stall {
    /// Half a request head, then silence.
    Head,
    /// A whole head announcing a body that never comes to its end.
    Body,
    /// Pipelined requests for answers it never reads, until tend's writes block.
    Unread,
    /// One request answered, then an idle keep-alive connection.
    Idle,
}

const STALLS: [Stall; 4] = [Stall::Head, Stall::Body, Stall::Unread, Stall::Idle];

fn stall(tend: &Tend, kind: Stall) -> Client {
    let mut client = Client::connect(tend);
    let host = client.host.clone();
    match kind {
        Stall::Head => {
            client.send(format!("GET /api/servers HTTP/1.1\r\nHost: {host}\r\n").as_bytes())
        }
        Stall::Body => client.send(
            format!(
                "POST /api/servers?action=bogus HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{"
            )
            .as_bytes(),
        ),
        Stall::Unread => {
            // 26 KiB an answer: 400 of them are far more than loopback's socket buffers hold.
            let request = client.get_request("/app.js", "");
            for _ in 0..400 {
                if client.stream.write_all(request.as_bytes()).is_err() {
                    break;
                }
            }
        }
        Stall::Idle => {
            let (status, _, _) = client.get("/healthz");
            assert_eq!(status, 200);
        }
    }
    client
}

/// The gauge `tend_http_connections{state=…}` in a /metrics text: (idle, reading, answering).
fn connection_states(metrics: &[u8]) -> (u64, u64, u64) {
    let text = String::from_utf8_lossy(metrics).into_owned();
    let value = |state: &str| {
        let prefix = format!("tend_http_connections{{state=\"{state}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
    };
    (value("idle"), value("reading"), value("answering"))
}

fn counter(metrics: &[u8], name: &str) -> u64 {
    String::from_utf8_lossy(metrics)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// /metrics on a fresh connection, which it then closes (and tend with it, before the close
/// is seen: the scrape is no longer counted once this returns).
fn scrape(tend: &Tend) -> Vec<u8> {
    let (status, _, body) =
        try_http_request(&tend.url, "GET", "/metrics", &[], b"", PROMPT).expect("GET /metrics");
    assert_eq!(status, 200);
    body
}

/// A kept connection that watches the others through /metrics: at the limit a fresh scrape
/// would itself make room. Between its scrapes it is the newest idle connection; while it
/// scrapes, it is the one answering.
struct Watcher(Client);

impl Watcher {
    fn new(tend: &Tend) -> Watcher {
        Watcher(Client::connect(tend))
    }

    /// Waits until the connections other than this one are (idle, reading, answering).
    fn wait_for(&mut self, others: (u64, u64, u64)) {
        let mut last = (0, 0, 0);
        let deadline = Instant::now() + PROMPT;
        while Instant::now() < deadline {
            let (status, _, body) = self.0.get("/metrics");
            assert_eq!(status, 200);
            let (idle, reading, answering) = connection_states(&body);
            last = (idle, reading, answering.saturating_sub(1));
            if last == others {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("other connections (idle, reading, answering): {last:?}, not {others:?}");
    }

    /// Turns this connection into an event stream: answering for as long as it lives.
    fn stream_events(&mut self) {
        let request = self.0.get_request("/api/events", "");
        self.0.send(request.as_bytes());
        let mut status_line = String::new();
        self.0
            .reader
            .read_line(&mut status_line)
            .expect("the event stream's head");
        assert!(status_line.contains(" 200 "), "{status_line}");
    }
}

#[test]
fn no_stalled_client_delays_a_request_up_to_max_connections_minus_one() {
    let dir = TempDir::new("conn_stalls");
    let limit = 32;
    let tend = Tend::start(&dir, &config(json!({"max_connections": limit})));
    let mut held = Vec::new();
    for n in 1..limit {
        let kind = STALLS[n % STALLS.len()];
        held.push(stall(&tend, kind));
        probe(&tend, &format!("{n} stalled clients (the last: {kind:?})"));
    }
    // None was closed to make room: the scrape is the 32nd connection. (Counting the open ones
    // would race their own timeouts on a slow machine: an idle one closes after 10 s.)
    let metrics = scrape(&tend);
    assert_eq!(counter(&metrics, "tend_http_connections_evicted_total"), 0);
    assert_eq!(counter(&metrics, "tend_http_connections_refused_total"), 0);
}

#[test]
fn no_half_sent_head_delays_a_request_up_to_the_default_limit() {
    let dir = TempDir::new("conn_default_limit");
    let tend = Tend::start(&dir, &config(json!({})));
    let mut held = Vec::new();
    for n in 1..256 {
        held.push(stall(&tend, Stall::Head));
        probe(&tend, &format!("{n} half-sent heads"));
    }
    // The scrape is the 256th connection. The last head may not have been read yet: wait
    // for every one to count as mid-request.
    let metrics = wait_until("255 connections mid-request", PROMPT, || {
        let metrics = scrape(&tend);
        (connection_states(&metrics) == (0, 255, 1)).then_some(metrics)
    });
    assert_eq!(counter(&metrics, "tend_http_connections_evicted_total"), 0);
}

#[test]
fn at_the_limit_the_longest_idle_connection_makes_room_before_any_mid_request() {
    let dir = TempDir::new("conn_evict_idle");
    let tend = Tend::start(&dir, &config(json!({"max_connections": 6})));
    let mut watcher = Watcher::new(&tend);
    let mut heads = [stall(&tend, Stall::Head), stall(&tend, Stall::Head)];
    watcher.wait_for((0, 2, 0));
    let mut oldest_idle = stall(&tend, Stall::Idle);
    watcher.wait_for((1, 2, 0));
    let mut idle = [stall(&tend, Stall::Idle), stall(&tend, Stall::Idle)];
    // Six: the watcher, two mid-request, three idle. The probe makes a seventh.
    watcher.wait_for((3, 2, 0));
    probe(&tend, "the limit reached");
    assert!(
        oldest_idle.closed_within(PROMPT),
        "the longest idle connection made room"
    );
    for other in idle.iter_mut().chain(&mut heads) {
        assert!(other.still_open(), "one connection closed was enough");
    }
    let metrics = scrape(&tend);
    assert_eq!(counter(&metrics, "tend_http_connections_evicted_total"), 1);
}

#[test]
fn at_the_limit_without_idle_connections_the_longest_mid_request_makes_room() {
    let dir = TempDir::new("conn_evict_head");
    let tend = Tend::start(&dir, &config(json!({"max_connections": 4})));
    let mut watcher = Watcher::new(&tend);
    let mut oldest = stall(&tend, Stall::Head);
    watcher.wait_for((0, 1, 0));
    let mut newer = [stall(&tend, Stall::Head), stall(&tend, Stall::Head)];
    watcher.wait_for((0, 3, 0));
    // The watcher would be the idle one to go: it becomes an event stream, answering.
    watcher.stream_events();
    probe(
        &tend,
        "the limit reached with every other connection mid-request",
    );
    assert!(
        oldest.closed_within(PROMPT),
        "the oldest mid-request connection made room"
    );
    for other in &mut newer {
        assert!(other.still_open(), "one connection closed was enough");
    }
}

#[test]
fn at_the_limit_with_every_connection_answering_a_newcomer_gets_503() {
    let dir = TempDir::new("conn_refuse");
    let tend = Tend::start(&dir, &config(json!({"max_connections": 3})));
    let mut watcher = Watcher::new(&tend);
    // Two handlers wait for bodies that never end.
    let _bodies = [stall(&tend, Stall::Body), stall(&tend, Stall::Body)];
    watcher.wait_for((0, 0, 2));
    watcher.stream_events();
    let (status, _, body) = try_http_request(&tend.url, "GET", "/healthz", &[], b"", PROMPT)
        .expect("an answer past the limit");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
}

#[test]
fn a_thousand_requests_ride_one_keep_alive_connection() {
    let dir = TempDir::new("conn_thousand");
    let tend = Tend::start(&dir, &config(json!({})));
    let mut client = Client::connect(&tend);
    for n in 0..1000 {
        let (status, headers, body) = client.get("/api/servers/web");
        assert_eq!(status, 200, "request {n}");
        assert_eq!(
            header(&headers, "connection"),
            Some("keep-alive"),
            "request {n}"
        );
        let server: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(server["id"], "web");
    }
    assert!(client.still_open());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = TempDir::new("conn_pipeline");
    let tend = Tend::start(&dir, &config(json!({})));
    let mut client = Client::connect(&tend);
    let paths = [
        "/api/servers/web",
        "/healthz",
        "/nope",
        "/api/servers/web/logs?lines=1",
        "/healthz",
    ];
    let mut all = Vec::new();
    for path in paths {
        all.extend_from_slice(client.get_request(path, "").as_bytes());
    }
    // A HEAD in the middle: its answer has no body, so the next answer must start right
    // after its headers.
    all.extend_from_slice(
        format!("HEAD /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", client.host).as_bytes(),
    );
    all.extend_from_slice(client.get_request("/api/servers/web", "").as_bytes());
    client.send(&all);
    let mut got = Vec::new();
    for _ in paths {
        got.push(client.answer(false).expect("a pipelined answer"));
    }
    let (head_status, head_headers, _) = client.answer(true).expect("the HEAD answer");
    let last = client.answer(false).expect("the answer after HEAD");
    let statuses: Vec<u16> = got.iter().map(|(status, _, _)| *status).collect();
    assert_eq!(statuses, [200, 200, 404, 200, 200]);
    let server: Value = serde_json::from_slice(&got[0].2).unwrap();
    assert_eq!(server["id"], "web");
    assert_eq!(
        serde_json::from_slice::<Value>(&got[1].2).unwrap()["status"],
        "ok"
    );
    assert!(String::from_utf8_lossy(&got[2].2).contains("not_found"));
    assert_eq!(
        head_status, 200,
        "HEAD is GET without a body: {head_headers:?}"
    );
    assert_eq!(last.0, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&last.2).unwrap()["id"],
        "web"
    );
}

#[test]
fn connection_close_and_http_1_0_are_honoured() {
    let dir = TempDir::new("conn_close");
    let tend = Tend::start(&dir, &config(json!({})));

    let mut close = Client::connect(&tend);
    let request = close.get_request("/healthz", "Connection: close\r\n");
    close.send(request.as_bytes());
    let (status, headers, _) = close.answer(false).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert!(
        close.closed_within(PROMPT),
        "closed after `Connection: close`"
    );

    let mut old = Client::connect(&tend);
    old.send(format!("GET /healthz HTTP/1.0\r\nHost: {}\r\n\r\n", old.host).as_bytes());
    let (_, headers, _) = old.answer(false).unwrap();
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert!(
        old.closed_within(PROMPT),
        "HTTP/1.0 without keep-alive closes"
    );

    let mut old_kept = Client::connect(&tend);
    let request = format!(
        "GET /healthz HTTP/1.0\r\nHost: {}\r\nConnection: Keep-Alive\r\n\r\n",
        old_kept.host
    );
    for _ in 0..3 {
        old_kept.send(request.as_bytes());
        let (status, headers, _) = old_kept.answer(false).unwrap();
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "connection"), Some("keep-alive"));
        assert_eq!(header(&headers, "keep-alive"), Some("timeout=10"));
    }
    assert!(old_kept.still_open());
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_10_s_not_before() {
    let dir = TempDir::new("conn_idle_close");
    let tend = Tend::start(&dir, &config(json!({})));
    let mut client = Client::connect(&tend);
    // tend's idle time starts between these two instants (after it read the request, before
    // the answer arrived), so they bound it from both sides whatever the scheduler does.
    let sent = Instant::now();
    let (status, _, _) = client.get("/healthz");
    assert_eq!(status, 200);
    let answered = Instant::now();
    assert!(
        client.closed_within(Duration::from_secs(30)),
        "an idle keep-alive connection was never closed"
    );
    let (most, least) = (sent.elapsed(), answered.elapsed());
    assert!(
        most >= Duration::from_secs(10),
        "closed after at most {most:?} of idleness, before 10 s"
    );
    assert!(
        least < Duration::from_secs(20),
        "closed only after {least:?} of idleness, not 10 s"
    );
}

#[test]
fn a_body_announced_over_64_kib_is_refused_at_once_and_tend_lives() {
    // tiny_http 0.12 drained an unread body into one buffer of the announced size: 100 TB
    // aborted the process.
    let dir = TempDir::new("conn_huge_body");
    let tend = Tend::start(&dir, &config(json!({})));
    let mut client = Client::connect(&tend);
    client.send(
        format!(
            "POST /api/servers/web?action=stop HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 100000000000000\r\n\r\n{}",
            client.host,
            "x".repeat(4000)
        )
        .as_bytes(),
    );
    let (status, headers, body) = client.answer(false).expect("an answer before the body");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "connection"), Some("close"));
    probe(&tend, "a 100 TB body was announced");
}
