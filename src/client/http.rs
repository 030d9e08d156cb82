//! The small blocking HTTP/1.1 client the commands use: one request per connection over a
//! `TcpStream`, answers framed by length, chunks or EOF, with bounds on what a wrong server
//! can make it buffer.
//!
//! The only HTTP client in the binary. The integration tests (tests/it/support.rs) and the
//! bench (bench/) have their own: they are separate crates and tend is a binary with no library
//! to import, and theirs must send bytes this one never would (malformed heads, raw frames).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::{Context, Error};

/// A loopback connect either works at once or not at all; 5 s covers a remote `--url`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A stop waits up to the server's `stop_timeout_ms` (default 5 s, often more) before the API
/// answers, and the SSE heartbeat comes every 15 s, so reads get a generous minute.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on what a (possibly wrong) server can make us buffer.
const MAX_HEAD_BYTES: usize = 64 * 1024;

const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The base URL of a running tend: `http://host:port`, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// A name or an IP address; IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Url {
    /// Parses `http://host:port`, `host:port` or `[::1]:port` (a trailing `/` is allowed).
    /// Without a port, 80 (as any http URL).
    pub fn parse(text: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error::other(format!("invalid tend URL '{text}': {why}"));
        let trimmed = text.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "the scheme must be http, not {scheme} (tend speaks no TLS)"
                )));
            }
            None => trimmed,
        };
        let authority = match rest.split_once('/') {
            Some((authority, "")) => authority,
            Some(_) => return Err(bad("a tend URL has no path; give http://HOST:PORT")),
            None => rest,
        };
        if authority.contains('@') || authority.contains('?') || authority.contains('#') {
            return Err(bad("give only http://HOST:PORT"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(bad("missing ']' after the IPv6 address"));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("expected ':PORT' after ']'")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(bad("write an IPv6 address in brackets, as [::1]:7070"));
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad(&format!("'{port}' is not a port number"))),
            },
        };
        Ok(Url {
            host: host.to_string(),
            port,
        })
    }

    /// The URL to reach a `listen` address; a wildcard address is reached on loopback.
    pub fn from_listen(addr: SocketAddr) -> Url {
        let ip = crate::model::reachable_ip(addr.ip());
        Url {
            host: ip.to_string(),
            port: addr.port(),
        }
    }

    /// `host:port` as the `Host` header spells it.
    pub(super) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority())
    }
}

/// Sends one request and reads the whole answer: `(status, body)`. Any status comes back as
/// `Ok`; only a failure to talk HTTP at all is an `Err`.
pub fn request(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, String), Error> {
    let mut response = send(base, method, path, body, token, &[])?;
    let text = response.read_text(base)?;
    Ok((response.status, text))
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved characters pass).
pub(super) fn encode_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// An answer whose head has been read; the body is read on demand.
pub(super) struct Response<R> {
    pub(super) status: u16,
    pub(super) body: Body<R>,
}

impl Response<BufReader<TcpStream>> {
    /// A second handle of the connection, for changing its timeouts while the body is borrowed.
    pub(super) fn socket(&self) -> Result<TcpStream, Error> {
        self.body
            .inner
            .get_ref()
            .try_clone()
            .context("duplicating the connection to tend")
    }
}

impl<R: BufRead> Response<R> {
    /// Reads the whole body (at most `MAX_BODY_BYTES`) as text.
    pub(super) fn read_text(&mut self, base: &Url) -> Result<String, Error> {
        let mut bytes = Vec::new();
        (&mut self.body)
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading the answer of tend at {base}"))?;
        if bytes.len() as u64 > MAX_BODY_BYTES {
            return Err(Error::other(format!(
                "tend at {base} sent an answer over {} MiB",
                MAX_BODY_BYTES / (1024 * 1024)
            )));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Connects, writes the request, and reads the answer's status line and headers.
pub(super) fn send(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Result<Response<BufReader<TcpStream>>, Error> {
    let stream = connect(base)?;
    let sending = || format!("sending {method} {path} to tend at {base}");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .with_context(sending)?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .with_context(sending)?;
    let head = request_head(base, method, path, body, token, extra_headers);
    let mut writer = &stream;
    writer.write_all(head.as_bytes()).with_context(sending)?;
    if let Some(body) = body {
        writer.write_all(body.as_bytes()).with_context(sending)?;
    }
    writer.flush().with_context(sending)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, method)
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::other(format!(
                "tend at {base} did not answer {method} {path} within {} s",
                READ_TIMEOUT.as_secs()
            )),
            _ => Error::Io {
                what: format!("reading the answer of tend at {base}"),
                source: e,
            },
        })
        .map(|(status, body)| Response {
            status,
            body: body.with_reader(reader),
        })
}

pub(super) fn connect(base: &Url) -> Result<TcpStream, Error> {
    let addrs = (base.host.as_str(), base.port)
        .to_socket_addrs()
        .with_context(|| {
            format!(
                "cannot reach tend at {base}: cannot resolve '{}'",
                base.host
            )
        })?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    let error = last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"));
    Err(match error.kind() {
        io::ErrorKind::ConnectionRefused => Error::other(format!(
            "cannot reach tend at {base}: connection refused (is `tend up` running?)"
        )),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::other(format!(
            "cannot reach tend at {base}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        _ => Error::Io {
            what: format!("cannot reach tend at {base}"),
            source: error,
        },
    })
}

fn request_head(
    base: &Url,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tend/{}\r\nConnection: close\r\n",
        base.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    if !extra_headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
    {
        head.push_str("Accept: application/json\r\n");
    }
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match body {
        Some(body) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )),
        // A POST or DELETE without a length makes some servers wait for a body.
        None if method != "GET" && method != "HEAD" => head.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    head.push_str("\r\n");
    head
}

/// How the body of an answer ends, decided from its head (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilEof,
}

impl Framing {
    fn with_reader<R>(self, inner: R) -> Body<R> {
        let kind = match self {
            Framing::Length(remaining) => BodyKind::Length { remaining },
            Framing::Chunked => BodyKind::Chunked {
                remaining: 0,
                done: false,
            },
            Framing::UntilEof => BodyKind::UntilEof,
        };
        Body { inner, kind }
    }
}

/// Reads the status line and headers; returns the status and how the body is framed.
fn read_response<R: BufRead>(reader: &mut R, method: &str) -> io::Result<(u16, Framing)> {
    let mut budget = MAX_HEAD_BYTES;
    let status_line = read_head_line(reader, &mut budget)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed without an answer",
        )
    })?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let status = match code.parse::<u16>() {
        Ok(status) if version.starts_with("HTTP/1.") && (100..1000).contains(&status) => status,
        _ => return Err(invalid(format!("not an HTTP status line: {status_line:?}"))),
    };
    let mut length = None;
    let mut chunked = false;
    loop {
        let line = read_head_line(reader, &mut budget)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside the headers",
            )
        })?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("not an HTTP header: {line:?}")));
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is always the last coding when present (RFC 9112 §6.1).
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            let parsed = value
                .parse::<u64>()
                .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
            length = Some(parsed);
        }
    }
    let framing = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        Framing::UntilEof
    };
    Ok((status, framing))
}

/// One CRLF- (or LF-) terminated line of the head, counted against `budget`; `None` at EOF.
fn read_head_line<R: BufRead>(reader: &mut R, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX).saturating_add(1);
    let read = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(if read > *budget {
            invalid(format!("the head is over {MAX_HEAD_BYTES} bytes"))
        } else {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside a line",
            )
        });
    }
    *budget -= read;
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The body of an answer, decoded from its framing as it is read.
pub(super) struct Body<R> {
    inner: R,
    kind: BodyKind,
}

enum BodyKind {
    Length {
        remaining: u64,
    },
    /// `remaining` bytes are left in the current chunk (0: a size line comes next).
    Chunked {
        remaining: u64,
        done: bool,
    },
    UntilEof,
}

/// Reads what fits in `buf` of the `remaining` bytes the body still owes, counting them off; the
/// connection closing first is an error, said as "the connection closed" and `place`.
fn read_at_most(
    inner: &mut impl Read,
    buf: &mut [u8],
    remaining: &mut u64,
    place: &str,
) -> io::Result<usize> {
    let max = usize::try_from(*remaining)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    let read = inner.read(&mut buf[..max])?;
    if read == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the connection closed {place}"),
        ));
    }
    *remaining -= read as u64;
    Ok(read)
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.kind {
            BodyKind::UntilEof => self.inner.read(buf),
            BodyKind::Length { remaining } => {
                if *remaining == 0 {
                    return Ok(0);
                }
                read_at_most(
                    &mut self.inner,
                    buf,
                    remaining,
                    "before the end of the body",
                )
            }
            BodyKind::Chunked { remaining, done } => {
                if *done {
                    return Ok(0);
                }
                if *remaining == 0 {
                    let size = read_chunk_size(&mut self.inner)?;
                    if size == 0 {
                        skip_trailers(&mut self.inner)?;
                        *done = true;
                        return Ok(0);
                    }
                    *remaining = size;
                }
                let read = read_at_most(&mut self.inner, buf, remaining, "inside a chunk")?;
                if *remaining == 0 {
                    expect_line_end(&mut self.inner)?;
                }
                Ok(read)
            }
        }
    }
}

/// Reads `SIZE[;extensions]\r\n` and returns SIZE.
fn read_chunk_size<R: BufRead>(reader: &mut R) -> io::Result<u64> {
    let mut budget = 1024;
    let line = read_head_line(reader, &mut budget)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before a chunk",
        )
    })?;
    let size = line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))
}

fn expect_line_end<R: BufRead>(reader: &mut R) -> io::Result<()> {
    let mut byte = [0u8; 1];
    reader.read_exact(&mut byte)?;
    if byte[0] == b'\r' {
        reader.read_exact(&mut byte)?;
    }
    if byte[0] == b'\n' {
        Ok(())
    } else {
        Err(invalid("a chunk does not end with CRLF".to_string()))
    }
}

fn skip_trailers<R: BufRead>(reader: &mut R) -> io::Result<()> {
    let mut budget = MAX_HEAD_BYTES;
    // EOF instead of the final empty line is tolerated: the body is complete by then.
    while let Some(line) = read_head_line(reader, &mut budget)? {
        if line.is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn urls_parse_with_or_without_scheme() {
        let table = [
            (
                "http://127.0.0.1:7070",
                "127.0.0.1",
                7070,
                "http://127.0.0.1:7070",
            ),
            ("127.0.0.1:7070", "127.0.0.1", 7070, "http://127.0.0.1:7070"),
            ("http://localhost:9/", "localhost", 9, "http://localhost:9"),
            (
                "HTTP://Tend.local:8080",
                "Tend.local",
                8080,
                "http://Tend.local:8080",
            ),
            ("localhost", "localhost", 80, "http://localhost:80"),
            ("[::1]:7070", "::1", 7070, "http://[::1]:7070"),
            ("http://[::1]:7071/", "::1", 7071, "http://[::1]:7071"),
            (" http://h:1 ", "h", 1, "http://h:1"),
        ];
        for (text, host, port, shown) in table {
            let url = Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((url.host.as_str(), url.port), (host, port), "{text}");
            assert_eq!(url.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        let table = [
            ("https://127.0.0.1:7070", "TLS"),
            ("http://h:1/api", "no path"),
            ("h:99999", "'99999'"),
            ("h:0", "'0'"),
            ("h:", "''"),
            ("::1:7070", "brackets"),
            ("[::1:7070", "']'"),
            ("http://:7070", "host is missing"),
            ("http://user@h:1", "only http://HOST:PORT"),
        ];
        for (text, needle) in table {
            match Url::parse(text) {
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.contains(needle), "{text}: {message}");
                    assert!(message.contains(text.trim()), "{text}: {message}");
                }
                Ok(url) => panic!("{text} should not parse, got {url}"),
            }
        }
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let table = [
            ("0.0.0.0:7070", "http://127.0.0.1:7070"),
            ("[::]:7070", "http://[::1]:7070"),
            ("10.1.2.3:80", "http://10.1.2.3:80"),
            ("127.0.0.1:1", "http://127.0.0.1:1"),
        ];
        for (listen, url) in table {
            assert_eq!(
                Url::from_listen(listen.parse().unwrap()).to_string(),
                url,
                "{listen}"
            );
        }
    }

    #[test]
    fn path_components_are_percent_encoded() {
        assert_eq!(encode_component("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode_component("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    fn parse_answer(raw: &[u8], method: &str) -> io::Result<(u16, String)> {
        let mut reader = Cursor::new(raw.to_vec());
        let (status, framing) = read_response(&mut reader, method)?;
        let mut body = String::new();
        framing.with_reader(reader).read_to_string(&mut body)?;
        Ok((status, body))
    }

    #[test]
    fn answers_are_framed_by_length_chunks_or_eof() {
        let table: [(&[u8], u16, &str); 7] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more",
                200,
                "hello",
            ),
            (
                b"HTTP/1.0 404 Not Found\r\ncontent-length:2\r\n\r\n{}",
                404,
                "{}",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
                200,
                "hello, world",
            ),
            (
                // Chunked wins over a Content-Length beside it (RFC 9112 §6.3).
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  A\r\n0123456789\r\n0\r\n\r\n",
                200,
                "0123456789",
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
                200,
                "until the end",
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\nignored", 204, ""),
            (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, "ok"),
        ];
        for (raw, status, body) in table {
            let text = String::from_utf8_lossy(raw);
            let answer = parse_answer(raw, "GET").unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(answer, (status, body.to_string()), "{text:?}");
        }
        let head = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD").unwrap();
        assert_eq!(head, (200, String::new()));
    }

    #[test]
    fn broken_answers_are_errors_not_panics() {
        let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        huge.extend(b"\r\n\r\n");
        let table: [(&[u8], &str); 9] = [
            (b"", "without an answer"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP status line"),
            (b"HTTP/1.1 abc OK\r\n\r\n", "not an HTTP status line"),
            (
                b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                "not an HTTP header",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "before the end",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
                "CRLF",
            ),
            (&huge, "over"),
        ];
        for (raw, needle) in table {
            match parse_answer(raw, "GET") {
                Err(e) => assert!(e.to_string().contains(needle), "{needle}: {e}"),
                Ok(answer) => panic!("{needle}: parsed as {answer:?}"),
            }
        }
    }
}
