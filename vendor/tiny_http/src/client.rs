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
}

// tend patch: bounds on a request head. tiny_http 0.12 reads a head of any size, for any time.
/// The longest request line or header line accepted (414 or 431 past it).
const MAX_LINE: usize = 8 * 1024;
/// The most bytes of one request head (request line and headers; 431 past it).
const MAX_HEAD: usize = 16 * 1024;
/// The longest time a client may take to send a whole request head (408 past it), so a client
/// that drips one byte at a time cannot hold its thread for ever.
pub(crate) const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    /// tend patch: the request line is over MAX_LINE.
    UriTooLong,
    /// tend patch: a header line, or the head, is over MAX_LINE / MAX_HEAD.
    HeadTooLarge,
    /// tend patch: the head did not arrive within HEAD_DEADLINE (or the socket timed out).
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
            let byte = self.next_header_source.by_ref().bytes().next();

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
        let deadline = Instant::now() + HEAD_DEADLINE;
        let head_error = |e: IoError, too_long: fn() -> ReadError| match e.kind() {
            ErrorKind::InvalidData => too_long(),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => ReadError::HeadTimeout,
            _ => ReadError::ReadIoError(e),
        };
        let mut head_bytes = 0;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self
                    .read_next_line(MAX_LINE, deadline)
                    .map_err(|e| head_error(e, || ReadError::UriTooLong))?;
                head_bytes += line.len();

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self
                        .read_next_line(MAX_LINE, deadline)
                        .map_err(|e| head_error(e, || ReadError::HeadTooLarge))?;

                    if line.is_empty() {
                        break;
                    };
                    head_bytes += line.len() + 2;
                    if head_bytes > MAX_HEAD {
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
            *self.remote_addr.as_ref().unwrap(),
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
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                // tend patch: answer an oversized or too slow head, then close.
                Err(ReadError::UriTooLong) => return self.refuse(414),
                Err(ReadError::HeadTooLarge) => return self.refuse(431),
                Err(ReadError::HeadTimeout) => return self.refuse(408),
                // tend patch: every error tiny_http answers itself carries tend's security
                // headers (see `refuse`); the connection then closes, as upstream did.
                Err(ReadError::WrongRequestLine) | Err(ReadError::WrongHeader(_)) => {
                    return self.refuse(400)
                }
                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    return self.refuse(408)
                }
                Err(ReadError::ExpectationFailed(_)) => return self.refuse(417),
                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
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
            // tend patch: one request per connection. tend answers every request with
            // `Connection: close`; without this, the connection's pool thread would wait for a
            // second request the client will not send, pinned until the client hangs up, and
            // new connections could queue behind such threads and never be read.
            self.no_more_requests = true;

            // returning the request
            return Some(rq);
        }
    }
}

impl ClientConnection {
    /// tend patch: writes an empty error response with tend's security headers (DESIGN §8:
    /// headers on every response) and ends the connection.
    fn refuse(&mut self, status: u16) -> Option<Request> {
        use crate::{Response, StatusCode};
        const HEADERS: &[&str] = &[
            "Content-Type: text/plain",
            "Connection: close",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "X-Frame-Options: DENY",
            "Referrer-Policy: no-referrer",
            "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'",
        ];
        if let Some(writer) = self.sink.next() {
            let mut response = Response::new_empty(StatusCode(status));
            for header in HEADERS {
                if let Ok(header) = header.parse::<crate::Header>() {
                    response.add_header(header);
                }
            }
            response.raw_print(writer, HTTPVersion(1, 1), &[], false, None).ok();
        }
        None
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
