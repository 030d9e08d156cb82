//! A JSON POST over plain HTTP/1.1 with a deadline, and the retries around it: all a webhook
//! or an Alertmanager needs. (The CLI's client in `client.rs` speaks to tend itself, with its
//! own timeouts and messages; this one speaks to anyone and must never outlive its deadline.)

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::alerts::HttpUrl;

/// First wait before a retry; it doubles after each failed try.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Tries at most (the first and the retries).
pub const MAX_TRIES: u32 = 5;

/// Sends `body` and returns the answer's status. Connecting, writing and reading the status
/// line all end by `deadline`. (Resolving a host name uses the system resolver, which has its
/// own timeout: an IP address avoids it.)
pub fn post_json(url: &HttpUrl, body: &str, deadline: Instant) -> Result<u16, String> {
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_string())
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{}': {e}", url.host))?
        .collect();
    let mut last_error = format!("'{}' has no address", url.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = describe(&e),
        }
    }
    let stream = stream.ok_or(last_error)?;
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(|e| describe(&e))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tend/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let mut writer = &stream;
    writer
        .write_all(head.as_bytes())
        .and_then(|()| writer.write_all(body.as_bytes()))
        .and_then(|()| writer.flush())
        .map_err(|e| describe(&e))?;
    stream
        .set_read_timeout(Some(remaining()?))
        .map_err(|e| describe(&e))?;
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    let read = io::Read::take(&mut reader, 1024)
        .read_line(&mut line)
        .map_err(|e| describe(&e))?;
    if read == 0 {
        return Err("the connection closed without an answer".to_string());
    }
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(format!("not an HTTP answer: {:?}", line.trim_end())),
    }
}

fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".to_string(),
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => error.to_string(),
    }
}

/// Posts until a 2xx answer, a refusal that a retry cannot fix (a 4xx other than 408 and 429),
/// [`MAX_TRIES`] tries or `deadline`, waiting [`FIRST_RETRY`], then twice as long, between
/// tries. `Ok`/`Err` carry what a person reads: "HTTP 200", "HTTP 500, HTTP 500, then HTTP 200".
pub fn post_with_retries(url: &HttpUrl, body: &str, deadline: Instant) -> Result<String, String> {
    let mut tries: Vec<String> = Vec::new();
    let mut wait = FIRST_RETRY;
    loop {
        let result = post_json(url, body, deadline);
        let (done, ok) = match &result {
            Ok(status) if (200..300).contains(status) => (true, true),
            Ok(status) => (
                (400..500).contains(status) && *status != 408 && *status != 429,
                false,
            ),
            Err(_) => (false, false),
        };
        tries.push(match result {
            Ok(status) => format!("HTTP {status}"),
            Err(why) => why,
        });
        let out_of_time = Instant::now() + wait >= deadline;
        if ok || done || tries.len() as u32 >= MAX_TRIES || out_of_time {
            let text = match tries.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, earlier)) => format!("{}, then {last}", earlier.join(", ")),
                None => String::new(),
            };
            return if ok { Ok(text) } else { Err(text) };
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
}
