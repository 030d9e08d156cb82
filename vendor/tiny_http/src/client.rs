use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // tend patch: the bounds of a request head, and the first byte of the next request once
    // `wait_for_request` has read it.
    limits: HeadLimits,
    first_byte: Option<u8>,
}

/// tend patch: the bounds of a request head, set by the program that serves the connection.
/// tiny_http 0.12 reads a head of any size, for any time.
#[derive(Clone, Copy)]
pub struct HeadLimits {
    /// The longest request line (414 past it).
    pub max_request_line: usize,
    /// The most bytes of all header lines, each counted with its CRLF (431 past it).
    pub max_header_bytes: usize,
    /// The longest time from the first byte of a request to the end of its head (408 past it),
    /// so a client that drips one byte at a time cannot hold its thread for ever.
    pub head_deadline: Duration,
    /// The whole answer (status line, headers, body) to each error tiny_http answers itself:
    /// 400, 408, 414, 417, 431, 505. The connection closes after it.
    pub refusal: fn(u16) -> Vec<u8>,
}

impl Default for HeadLimits {
    fn default() -> HeadLimits {
        HeadLimits {
            max_request_line: usize::MAX,
            max_header_bytes: usize::MAX,
            head_deadline: Duration::MAX,
            refusal: |status| format!("HTTP/1.1 {status} \r\nContent-Length: 0\r\n\r\n").into_bytes(),
        }
    }
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    /// tend patch: the request line is over `max_request_line`.
    UriTooLong,
    /// tend patch: the headers are over `max_header_bytes`.
    HeadTooLarge,
    /// tend patch: the head did not arrive within `head_deadline` (or the socket timed out).
    HeadTimeout,
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits: HeadLimits::default(),
            first_byte: None,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// tend patch: fails with `InvalidData` past `max` bytes and with `TimedOut` after
    /// `deadline`.
    fn read_next_line(&mut self, max: usize, deadline: Instant) -> IoResult<AsciiString> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            if buf.len() > max {
                return Err(IoError::new(ErrorKind::InvalidData, "line too long"));
            }
            if Instant::now() > deadline {
                return Err(IoError::new(ErrorKind::TimedOut, "request head too slow"));
            }
            let byte = match self.first_byte.take() {
                Some(first) => Some(Ok(first)),
                None => self.next_header_source.by_ref().bytes().next(),
            };

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // tend patch: the head must arrive within a deadline and a size.
        let limits = self.limits;
        let deadline = Instant::now()
            .checked_add(limits.head_deadline)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
        let head_error = |e: IoError, too_long: fn() -> ReadError| match e.kind() {
            ErrorKind::InvalidData => too_long(),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => ReadError::HeadTimeout,
            _ => ReadError::ReadIoError(e),
        };
        let mut header_bytes = 0;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self
                    .read_next_line(limits.max_request_line, deadline)
                    .map_err(|e| head_error(e, || ReadError::UriTooLong))?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self
                        .read_next_line(limits.max_header_bytes, deadline)
                        .map_err(|e| head_error(e, || ReadError::HeadTooLarge))?;

                    if line.is_empty() {
                        break;
                    };
                    header_bytes += line.len() + 2;
                    if header_bytes > limits.max_header_bytes {
                        return Err(ReadError::HeadTooLarge);
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            // tend patch: peer_addr fails (ENOTCONN) for a client that reset the connection
            // before its first request was read; upstream unwrapped it and panicked.
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                // tend patch: every error tiny_http answers itself is answered with the bytes
                // the serving program gave (`HeadLimits::refusal`), then the connection closes
                // (we don't know where the next request would start).
                Err(ReadError::UriTooLong) => return self.refuse(414),
                Err(ReadError::HeadTooLarge) => return self.refuse(431),
                Err(ReadError::HeadTimeout) => return self.refuse(408),
                Err(ReadError::WrongRequestLine) | Err(ReadError::WrongHeader(_)) => {
                    return self.refuse(400)
                }
                Err(ReadError::ExpectationFailed(_)) => return self.refuse(417),
                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                drop(rq);
                return self.refuse(505);
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

impl ClientConnection {
    /// tend patch: writes the serving program's answer to an error tiny_http found itself, and
    /// ends the connection.
    fn refuse(&mut self, status: u16) -> Option<Request> {
        use std::io::Write;
        self.no_more_requests = true;
        if let Some(mut writer) = self.sink.next() {
            let answer = (self.limits.refusal)(status);
            writer.write_all(&answer).and_then(|()| writer.flush()).ok();
        }
        None
    }
}

/// tend patch: the requests of one connection, read by the thread that serves it. tiny_http's
/// `Server` hands connections to a shared pool of threads; a program that gives each connection
/// a thread of its own (so no connection can delay another) reads them through this.
pub struct RequestStream {
    connection: ClientConnection,
}

impl RequestStream {
    /// Reads requests from `stream` within `limits`. The stream's socket timeouts are the
    /// caller's: `wait_for_request` waits at most its read timeout.
    /// Fails only when the socket cannot be duplicated for its read half (out of descriptors).
    pub fn new(stream: std::net::TcpStream, limits: HeadLimits) -> IoResult<RequestStream> {
        use crate::connection::Connection;
        let read_half = stream.try_clone()?;
        let (read, write) =
            RefinedTcpStream::from_halves(Connection::from(read_half), Connection::from(stream));
        let mut connection = ClientConnection::new(write, read);
        connection.limits = limits;
        Ok(RequestStream { connection })
    }

    /// Waits for the first byte of the next request (a pipelined one may already be buffered).
    /// False when none comes: the client closed the connection, asked for it to close after the
    /// last request, or stayed silent for the socket's read timeout.
    pub fn wait_for_request(&mut self) -> bool {
        let connection = &mut self.connection;
        if connection.no_more_requests {
            return false;
        }
        if connection.first_byte.is_some() {
            return true;
        }
        let mut byte = [0u8];
        loop {
            match connection.next_header_source.read(&mut byte) {
                Ok(1) => {
                    connection.first_byte = Some(byte[0]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => return false,
            }
        }
    }

    /// Reads the rest of the next request's head. None when the connection must end; an error
    /// in the head has then been answered with `HeadLimits::refusal`.
    pub fn next_request(&mut self) -> Option<Request> {
        self.connection.next()
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
