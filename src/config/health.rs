//! A server's `max_memory` and `health` keys (docs/DESIGN.md §12): what "it works" means beyond a live
//! PID and open ports. Kept apart from the rest of the server keys because each is a small
//! language of its own (sizes, loopback URLs, status ranges, a regex subset).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Map, Value};

use super::check::{Checker, DAY_MS, Field, TIB, quoted};
use super::positions::child_path;
use super::suggest::closest;
use crate::regex::Regex;

/// A server's `health` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Restart a server that has been `unhealthy` this long; `None`: never (the default).
    pub restart_unhealthy_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http(HttpCheck),
    /// `health.log`: ready once a line of the server's output matches.
    Log(Regex),
}

/// `health.http`: a GET on loopback whose status must be in `expect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Always a loopback address: a config can never make tend probe another host.
    pub addr: SocketAddr,
    /// The request target: starts with `/`, printable ASCII without spaces.
    pub path: String,
    /// The statuses that count as healthy, inclusive.
    pub expect: (u16, u16),
    pub timeout: Duration,
    /// Failed probes in a row (after the first success) that make the server `unhealthy`.
    pub failures: u32,
    /// `None`: every `health_interval_ms`.
    pub interval: Option<Duration>,
}

const HEALTH_KEYS: &[&str] = &[
    "http",
    "log",
    "expect",
    "timeout_ms",
    "failures",
    "interval_ms",
    "restart_unhealthy_after_ms",
];

/// The longest probe timeout: an answer slower than this is no answer.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// The smallest `max_memory`: below this any process would be restarted at once, so a smaller
/// value is almost surely a unit left out (`256` for `"256M"`).
pub const MIN_MAX_MEMORY: u64 = 1 << 20;
/// The largest `max_memory`: 64 TiB, past any machine tend runs on.
pub const MAX_MAX_MEMORY: u64 = 64 * TIB;

/// Parses a size as `max_memory` takes it: whole bytes, or a whole number with a binary unit
/// `K`, `M`, `G` or `T` (1024-based, as PM2's `max_memory_restart` and systemd's `MemoryMax=`
/// read them), optionally followed by `B` or `iB`, case-insensitive: `"256M"`, `"1G"`,
/// `"512MiB"`. `Err` says what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a size such as \"256M\" or \"1G\"".to_string());
    }
    let unit = unit.trim_start();
    let lower = unit.to_ascii_lowercase();
    let shift = match lower.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown unit {} (use K, M, G or T, as in \"256M\")",
                quoted(unit)
            ));
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| "the number is too large".to_string())?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| "the number is too large".to_string())
}

/// A size in the largest unit that keeps it whole ("256 MiB", "1 GiB", "1536 KiB").
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Memory as people read it in a status line: whole MiB ("310 MiB"), or KiB below one MiB.
pub fn format_memory(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", (bytes + (1 << 19)) >> 20)
    } else {
        format!("{} KiB", (bytes + 512) >> 10)
    }
}

/// Where `health.http` points: a path on the server's first port, or a full loopback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpTarget {
    FirstPort { path: String },
    Url { addr: SocketAddr, path: String },
}

/// Parses `health.http`: `"/healthz"`, or `http://HOST[:PORT]/path` where HOST is `127.x.x.x`,
/// `localhost` or `[::1]`. Anything else is refused: tend's probes never leave the machine.
pub fn parse_http_target(text: &str) -> Result<HttpTarget, String> {
    if text.starts_with('/') {
        check_request_path(text)?;
        return Ok(HttpTarget::FirstPort {
            path: text.to_string(),
        });
    }
    let Some(rest) = text.strip_prefix("http://") else {
        if text.starts_with("https://") {
            return Err("tend probes plain HTTP on loopback; https is not supported".to_string());
        }
        return Err(
            "expected a path such as \"/healthz\" or a URL such as \"http://127.0.0.1:8080/healthz\""
                .to_string(),
        );
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 host needs its closing ']'".to_string())?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {} after the host", quoted(after)))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => host
            .parse()
            .map_err(|_| format!("{} is not a loopback address: tend probes only 127.0.0.1, [::1] or localhost, never another host", quoted(host)))?,
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{} is not a loopback address: tend probes only 127.0.0.1, [::1] or localhost, never another host",
            quoted(host)
        ));
    }
    let port = match port {
        None => 80,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("{} is not a port (1 to 65535)", quoted(text))),
        },
    };
    check_request_path(path)?;
    Ok(HttpTarget::Url {
        addr: SocketAddr::new(ip, port),
        path: path.to_string(),
    })
}

/// A request target must fit in a request line: visible ASCII, no spaces, no fragment.
fn check_request_path(path: &str) -> Result<(), String> {
    if let Some(bad) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the path must be visible ASCII without spaces (percent-encode {})",
            quoted(&bad.to_string())
        ));
    }
    if path.contains('#') {
        return Err("the path must not contain a '#' fragment (it is never sent)".to_string());
    }
    Ok(())
}

/// Parses `health.expect`: a status (`200`) or an inclusive range (`"200-399"`).
pub fn parse_expect(value: &Value) -> Result<(u16, u16), String> {
    let status = |n: u64| -> Result<u16, String> {
        if (100..=599).contains(&n) {
            Ok(n as u16)
        } else {
            Err(format!("{n} is not an HTTP status (100 to 599)"))
        }
    };
    match value {
        Value::Number(n) => {
            let code = status(
                n.as_u64()
                    .ok_or_else(|| format!("{n} is not an HTTP status"))?,
            )?;
            Ok((code, code))
        }
        Value::String(text) => {
            let (low, high) = text.split_once('-').unwrap_or((text, text));
            let parse = |part: &str| -> Result<u16, String> {
                status(part.trim().parse::<u64>().map_err(|_| {
                    format!(
                        "expected a status or a range such as \"200-399\", found {}",
                        quoted(text)
                    )
                })?)
            };
            let (low, high) = (parse(low)?, parse(high)?);
            if low > high {
                return Err(format!(
                    "the range {} is empty (write the lower status first)",
                    quoted(text)
                ));
            }
            Ok((low, high))
        }
        other => Err(format!(
            "expected a status or a range such as \"200-399\", found {}",
            super::check::kind(other)
        )),
    }
}

impl Checker<'_> {
    /// `health`: how tend knows the server answers. `ports` (the server's) serve a path-only
    /// `http`, which is probed on the first of them.
    pub(super) fn health(
        &mut self,
        field: &Field,
        value: &Value,
        ports: &[u16],
    ) -> Option<HealthCheck> {
        let Value::Object(object) = value else {
            return self.wrong_type(field, "an object such as {\"http\": \"/healthz\"}", value);
        };
        let sub = |key: &str| Field {
            path: child_path(&field.path, key),
            name: format!("{}.{key}", field.name),
            place: field.place.clone(),
        };
        for key in object.keys() {
            if !HEALTH_KEYS.contains(&key.as_str()) {
                self.unknown_health_key(field, key);
            }
        }
        let restart_unhealthy_after = object.get("restart_unhealthy_after_ms").and_then(|v| {
            self.integer(&sub("restart_unhealthy_after_ms"), v, 0, DAY_MS)
                .map(Duration::from_millis)
        });
        let probe = match (object.get("log"), object.get("http")) {
            (Some(_), Some(_)) => {
                let at = self.key_at(&child_path(&field.path, "log"));
                self.fail(
                    at,
                    format!(
                        "{}{}: give \"http\" or \"log\", not both",
                        field.name, field.place
                    ),
                );
                None
            }
            (Some(pattern), None) => self.log_check(field, object, pattern).map(Probe::Log),
            (None, http) => self.http_check(field, object, http, ports).map(Probe::Http),
        }?;
        Some(HealthCheck {
            probe,
            restart_unhealthy_after,
        })
    }

    /// `health.log`: a pattern of the supported subset (see [`crate::regex`]); the options of
    /// an HTTP check do not apply.
    fn log_check(
        &mut self,
        field: &Field,
        object: &Map<String, Value>,
        pattern: &Value,
    ) -> Option<Regex> {
        let log_field = Field {
            path: child_path(&field.path, "log"),
            name: format!("{}.log", field.name),
            place: field.place.clone(),
        };
        let mut ok = true;
        for key in ["expect", "timeout_ms", "failures", "interval_ms"] {
            if object.contains_key(key) {
                let at = self.key_at(&child_path(&field.path, key));
                self.fail(
                    at,
                    format!(
                        "{}.{key}{}: applies to \"http\" checks only (a \"log\" check is \
                         passed once, by the first matching line)",
                        field.name, field.place
                    ),
                );
                ok = false;
            }
        }
        let text = self.string(&log_field, pattern)?;
        match Regex::new(text) {
            Ok(regex) => ok.then_some(regex),
            Err(problem) => {
                self.fail_field(&log_field, format!("{problem}: {}", quoted(text)));
                None
            }
        }
    }

    fn unknown_health_key(&mut self, field: &Field, key: &str) {
        let mut message = format!(
            "unknown key {} in {}{}",
            quoted(key),
            field.name,
            field.place
        );
        match closest(key, HEALTH_KEYS.iter().copied()) {
            Some(near) => message.push_str(&format!("; did you mean '{near}'?")),
            None => message.push_str(&format!(" (allowed keys: {})", HEALTH_KEYS.join(", "))),
        }
        let at = self.key_at(&child_path(&field.path, key));
        self.fail(at, message);
    }

    fn http_check(
        &mut self,
        field: &Field,
        object: &Map<String, Value>,
        http: Option<&Value>,
        ports: &[u16],
    ) -> Option<HttpCheck> {
        let sub = |key: &str| Field {
            path: child_path(&field.path, key),
            name: format!("{}.{key}", field.name),
            place: field.place.clone(),
        };
        let mut ok = true;
        let mut check = HttpCheck {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            path: String::new(),
            expect: (200, 399),
            timeout: Duration::from_millis(1000),
            failures: 2,
            interval: None,
        };
        let http_field = sub("http");
        let Some(http) = http else {
            self.fail_field(field, "give \"http\" (a path or a loopback URL to GET)");
            // The other keys are still checked, so every problem is reported at once.
            return self.http_options(field, object, &mut check).and(None);
        };
        match self.string(&http_field, http).map(parse_http_target) {
            Some(Ok(HttpTarget::Url { addr, path })) => {
                check.addr = addr;
                check.path = path;
            }
            Some(Ok(HttpTarget::FirstPort { path })) => match ports.first() {
                Some(&port) => {
                    check.addr.set_port(port);
                    check.path = path;
                }
                None => {
                    self.fail_field(
                        &http_field,
                        format!(
                            "{} is probed on the server's first port, but the server has no \
                             'ports'; list its port or give a URL such as \
                             \"http://127.0.0.1:8080{}\"",
                            quoted(&path),
                            path
                        ),
                    );
                    ok = false;
                }
            },
            Some(Err(problem)) => {
                self.fail_field(&http_field, problem);
                ok = false;
            }
            None => ok = false,
        }
        let options = self.http_options(field, object, &mut check);
        (ok && options.is_some()).then_some(check)
    }

    /// The keys of `health` beside `http`, into `check`; `None` if any is wrong.
    fn http_options(
        &mut self,
        field: &Field,
        object: &Map<String, Value>,
        check: &mut HttpCheck,
    ) -> Option<()> {
        let sub = |key: &str| Field {
            path: child_path(&field.path, key),
            name: format!("{}.{key}", field.name),
            place: field.place.clone(),
        };
        let mut ok = true;
        if let Some(value) = object.get("expect") {
            match parse_expect(value) {
                Ok(range) => check.expect = range,
                Err(problem) => {
                    self.fail_field(&sub("expect"), problem);
                    ok = false;
                }
            }
        }
        if let Some(value) = object.get("timeout_ms") {
            match self.integer(&sub("timeout_ms"), value, 1, MAX_TIMEOUT_MS) {
                Some(ms) => check.timeout = Duration::from_millis(ms),
                None => ok = false,
            }
        }
        if let Some(value) = object.get("failures") {
            match self.integer(&sub("failures"), value, 1, 1000) {
                Some(n) => check.failures = n as u32,
                None => ok = false,
            }
        }
        if let Some(value) = object.get("interval_ms") {
            match self.integer(&sub("interval_ms"), value, 100, DAY_MS) {
                Some(ms) => check.interval = Some(Duration::from_millis(ms)),
                None => ok = false,
            }
        }
        ok.then_some(())
    }

    /// `max_memory`: bytes as a number, or a size string.
    pub(super) fn max_memory(&mut self, field: &Field, value: &Value) -> Option<u64> {
        let bytes = match value {
            Value::Null => return None,
            Value::Number(_) => self.integer(field, value, 0, u64::MAX)?,
            Value::String(text) => match parse_size(text) {
                Ok(bytes) => bytes,
                Err(problem) => {
                    self.fail_field(field, format!("{problem}, found {}", quoted(text)));
                    return None;
                }
            },
            other => return self.wrong_type(field, "a size such as \"256M\" or bytes", other),
        };
        if bytes < MIN_MAX_MEMORY {
            let hint = match value {
                Value::Number(_) => format!(" (a number is bytes: did you mean \"{bytes}M\"?)"),
                _ => String::new(),
            };
            self.fail_field(
                field,
                format!("must be at least 1M (1048576 bytes), found {bytes}{hint}"),
            );
            return None;
        }
        if bytes > MAX_MAX_MEMORY {
            self.fail_field(field, "must be at most 64T");
            return None;
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::{format_memory, format_size, parse_size};

    #[test]
    fn sizes_take_binary_units_in_any_case() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("256M", 256 << 20),
            ("256m", 256 << 20),
            ("256MB", 256 << 20),
            ("256MiB", 256 << 20),
            ("1G", 1 << 30),
            ("1 G", 1 << 30),
            ("512k", 512 << 10),
            ("2T", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, problem) in [
            ("", "expected a size"),
            ("M", "expected a size"),
            ("1.5G", "unknown unit '.5G'"),
            ("256X", "unknown unit 'X'"),
            ("256iB", "unknown unit 'iB'"),
            ("99999999999999999999", "too large"),
            ("99999999999T", "too large"),
        ] {
            let error = parse_size(text).expect_err(text);
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn sizes_print_in_their_largest_whole_unit() {
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(format_memory(310 << 20), "310 MiB");
        assert_eq!(format_memory((310 << 20) + 600_000), "311 MiB");
        assert_eq!(format_memory(4096), "4 KiB");
    }
}

#[cfg(test)]
mod log_tests {
    use std::path::Path;

    use super::Probe;
    use crate::config::parse;

    fn parse_server(server_json: &str) -> Result<Option<Probe>, Vec<String>> {
        let text = format!("{{\"servers\": [\n{server_json}\n]}}");
        match parse(&text, Path::new("/p/tend.json"), Path::new("/p")) {
            Ok(config) => Ok(config.servers[0].health.clone().map(|h| h.probe)),
            Err(errors) => Err(errors
                .0
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect()),
        }
    }

    #[test]
    fn a_log_pattern_is_compiled_at_load() {
        let probe =
            parse_server(r#"{"id": "w", "command": "x", "health": {"log": "^ready on \\d+$"}}"#)
                .unwrap()
                .unwrap();
        let Probe::Log(regex) = probe else {
            panic!("{probe:?}")
        };
        assert_eq!(regex.as_str(), "^ready on \\d+$");
        assert!(regex.is_match("ready on 8080"));
    }

    #[test]
    fn log_checks_refuse_bad_patterns_and_http_options() {
        let errors = parse_server(
            r#"{"id": "w", "command": "x", "health": {"log": "(ready", "timeout_ms": 5}},
{"id": "v", "command": "x", "health": {"log": "a{2}", "http": "/"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "2:47: health.log in server 'w': unclosed group: '(' without ')' (at character 1 of the pattern): '(ready'",
                "2:57: health.timeout_ms in server 'w': applies to \"http\" checks only (a \"log\" check is passed once, by the first matching line)",
                "3:40: health in server 'v': give \"http\" or \"log\", not both",
            ]
        );
    }
}

#[cfg(test)]
mod health_tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::Duration;

    use super::{HealthCheck, HttpCheck, HttpTarget, Probe, parse_http_target};
    use crate::config::parse;

    fn health_of(server_json: &str) -> Result<Option<HealthCheck>, Vec<String>> {
        let text = format!("{{\"servers\": [\n{server_json}\n]}}");
        match parse(&text, Path::new("/p/tend.json"), Path::new("/p")) {
            Ok(config) => Ok(config.servers[0].health.clone()),
            Err(errors) => Err(errors
                .0
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect()),
        }
    }

    #[test]
    fn a_path_is_probed_on_the_first_port_with_the_defaults() {
        let health = health_of(
            r#"{"id": "web", "command": "x", "ports": [8080, 9090], "health": {"http": "/healthz"}}"#,
        );
        let expected = HealthCheck {
            probe: Probe::Http(HttpCheck {
                addr: "127.0.0.1:8080".parse().unwrap(),
                path: "/healthz".to_string(),
                expect: (200, 399),
                timeout: Duration::from_millis(1000),
                failures: 2,
                interval: None,
            }),
            restart_unhealthy_after: None,
        };
        assert_eq!(health, Ok(Some(expected)));
    }

    #[test]
    fn every_http_key_is_read() {
        let health = health_of(
            r#"{"id": "web", "command": "x", "health": {"http": "http://[::1]:9000/ready?deep=1",
                "expect": 204, "timeout_ms": 250, "failures": 5, "interval_ms": 500,
                "restart_unhealthy_after_ms": 10000}}"#,
        )
        .unwrap()
        .unwrap();
        let Probe::Http(http) = &health.probe else {
            panic!("{health:?}")
        };
        assert_eq!(http.addr, "[::1]:9000".parse::<SocketAddr>().unwrap());
        assert_eq!(http.path, "/ready?deep=1");
        assert_eq!(http.expect, (204, 204));
        assert_eq!(http.timeout, Duration::from_millis(250));
        assert_eq!(http.failures, 5);
        assert_eq!(http.interval, Some(Duration::from_millis(500)));
        assert_eq!(
            health.restart_unhealthy_after,
            Some(Duration::from_millis(10_000))
        );
    }

    #[test]
    fn urls_are_loopback_only() {
        for (text, addr, path) in [
            (
                "http://127.0.0.1:8080/healthz",
                "127.0.0.1:8080",
                "/healthz",
            ),
            ("http://localhost:81", "127.0.0.1:81", "/"),
            ("http://127.0.0.2/x", "127.0.0.2:80", "/x"),
            ("http://[::1]/", "[::1]:80", "/"),
        ] {
            assert_eq!(
                parse_http_target(text),
                Ok(HttpTarget::Url {
                    addr: addr.parse().unwrap(),
                    path: path.to_string()
                }),
                "{text}"
            );
        }
        for (text, problem) in [
            (
                "http://10.0.0.1:80/",
                "'10.0.0.1' is not a loopback address",
            ),
            (
                "http://example.com/",
                "'example.com' is not a loopback address",
            ),
            ("http://[2001:db8::1]:80/", "is not a loopback address"),
            ("https://127.0.0.1/", "https is not supported"),
            ("healthz", "expected a path"),
            ("http://127.0.0.1:0/", "'0' is not a port"),
            ("http://127.0.0.1:99999/", "'99999' is not a port"),
            ("http://[::1/", "closing ']'"),
            ("/a b", "visible ASCII"),
            ("/a#b", "fragment"),
        ] {
            let error = parse_http_target(text).expect_err(text);
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn health_errors_are_reported_where_they_are_written() {
        let errors = health_of(
            r#"{"id": "web", "command": "x", "health": {"http": "/healthz", "expect": "399-200",
  "timeout_ms": 0, "failures": 0, "interval_ms": 5, "restart_unhealthy_after_ms": -1, "timeout": 1}}"#,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "2:50: health.http in server 'web': '/healthz' is probed on the server's first port, but the server has no 'ports'; list its port or give a URL such as \"http://127.0.0.1:8080/healthz\"",
                "2:72: health.expect in server 'web': the range '399-200' is empty (write the lower status first)",
                "3:17: health.timeout_ms in server 'web': must be at least 1, found 0",
                "3:32: health.failures in server 'web': must be at least 1, found 0",
                "3:50: health.interval_ms in server 'web': must be at least 100, found 5",
                "3:83: health.restart_unhealthy_after_ms in server 'web': must not be negative, found -1",
                "3:87: unknown key 'timeout' in health in server 'web' (allowed keys: http, log, expect, timeout_ms, failures, interval_ms, restart_unhealthy_after_ms)",
            ]
        );
        let errors = health_of(
            r#"{"id": "web", "command": "x", "health": {"expect": 999}}, {"id": "b", "command": "x", "health": "/x"}"#,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "2:41: health in server 'web': give \"http\" (a path or a loopback URL to GET)",
                "2:52: health.expect in server 'web': 999 is not an HTTP status (100 to 599)",
                "2:97: health in server 'b': expected an object such as {\"http\": \"/healthz\"}, found a string",
            ]
        );
    }
}
