//! The checks every request passes before any handler sees it (docs/DESIGN.md §8): its size, its Host
//! (DNS rebinding), its token (a header or the dashboard's cookie), and for requests that change
//! something, its Origin (CSRF). Loopback is not a boundary: any page the user visits and any
//! local user can reach tend, so each rule holds on every route, the event stream included.
//! Pure functions over [`ApiRequest`]; no I/O.

use std::net::{IpAddr, SocketAddr};

use crate::http::auth::constant_time_eq;
use crate::http::{ApiRequest, Reply};

/// Total size of the request line's URL and of all headers (docs/DESIGN.md §8: 8 KiB).
pub const MAX_HEAD: usize = 8 * 1024;
/// The cookie the dashboard's `/?token=…` link sets.
pub const COOKIE: &str = "tend_token";

/// What the guard knows of this tend.
#[derive(Debug, Clone)]
pub struct Policy {
    pub token: Option<String>,
    pub listen: SocketAddr,
    /// Lower-case host names (brackets stripped from IPv6 literals).
    pub allowed_hosts: Vec<String>,
}

impl Policy {
    pub fn new(token: Option<String>, listen: SocketAddr, allowed_hosts: &[String]) -> Policy {
        let allowed_hosts = allowed_hosts
            .iter()
            .map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .collect();
        Policy {
            token,
            listen,
            allowed_hosts,
        }
    }
}

/// Ok: hand the request to the router. Err: answer with this instead.
pub fn check(request: &ApiRequest, policy: &Policy) -> Result<(), Reply> {
    if request.url_len > MAX_HEAD {
        return Err(uri_too_long());
    }
    if request.head_len > MAX_HEAD {
        return Err(headers_too_large());
    }
    check_host(request, policy)?;
    if let Some(token) = &policy.token {
        check_token(request, token)?;
    }
    if is_unsafe_method(&request.method) {
        check_origin(request)?;
    }
    Ok(())
}

/// The answer to a URL over the limit, from the guard or from tiny_http's reading of the head.
pub fn uri_too_long() -> Reply {
    Reply::error(
        414,
        "uri_too_long",
        format!("the URL is over {MAX_HEAD} bytes"),
    )
}

/// The answer to headers over the limit, from the guard or from tiny_http's reading of the head.
pub fn headers_too_large() -> Reply {
    Reply::error(
        431,
        "headers_too_large",
        format!("the request headers are over {MAX_HEAD} bytes"),
    )
}

fn is_unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// A page on another site can make a browser send requests here under a name it controls
/// (DNS rebinding); only names that mean this machine, or that a person listed, are served.
fn check_host(request: &ApiRequest, policy: &Policy) -> Result<(), Reply> {
    let Some(host) = request.host.as_deref() else {
        return Err(Reply::error(
            400,
            "bad_request",
            "the request has no Host header",
        ));
    };
    let name = host_name(host).to_ascii_lowercase();
    let allowed = name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || (ip == policy.listen.ip() && !ip.is_unspecified()))
        || policy.allowed_hosts.contains(&name);
    if allowed {
        Ok(())
    } else {
        Err(Reply::error(
            403,
            "forbidden_host",
            format!(
                "Host '{host}' is not this machine's loopback name; add it to \"allowed_hosts\" \
                 in the config to serve it"
            ),
        ))
    }
}

/// The host of a Host header value, without port or IPv6 brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn check_token(request: &ApiRequest, token: &str) -> Result<(), Reply> {
    let presented = bearer(request).or_else(|| cookie(request, COOKIE));
    let valid = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()));
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["healthz"]) => Ok(()),
        ("GET", []) => match request.query("token") {
            // The link `tend up` prints: trade it for a cookie and drop it from the address bar.
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                Err(sign_in(token))
            }
            Some(_) => Err(login_page(401, "That token is not right.")),
            None if valid => Ok(()),
            None => Err(login_page(200, "")),
        },
        _ if valid => Ok(()),
        _ => Err(Reply::error(
            401,
            "unauthorized",
            "missing or wrong token: send `Authorization: Bearer <token>` (the token is in the \
             `token` file beside the state file, or TEND_TOKEN)",
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"tend\"".into())),
    }
}

fn bearer(request: &ApiRequest) -> Option<&str> {
    let value = request.authorization.as_deref()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

fn cookie<'a>(request: &'a ApiRequest, name: &str) -> Option<&'a str> {
    request.cookie.as_deref()?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

fn sign_in(token: &str) -> Reply {
    Reply::bytes(303, "text/plain; charset=utf-8", b"Signed in\n".to_vec())
        .with_header("Location", "/".into())
        .with_header(
            "Set-Cookie",
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
        )
}

/// A self-contained page (no script, no style: the CSP allows neither inline) with a form that
/// submits the token the same way the printed link does.
fn login_page(status: u16, problem: &str) -> Reply {
    let problem = if problem.is_empty() {
        String::new()
    } else {
        format!("<p><strong>{problem}</strong></p>\n")
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>tend: sign in</title></head>\n<body>\n<h1>tend</h1>\n{problem}\
         <p>Open the dashboard URL that <code>tend up</code> printed, or paste the token from \
         the <code>token</code> file beside the state file (<code>.tend/token</code> by \
         default).</p>\n<form method=\"get\" action=\"/\">\n<label for=\"token\">Token</label>\n\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n</body></html>\n"
    );
    Reply::bytes(status, "text/html; charset=utf-8", html.into_bytes())
}

/// A state-changing request from a page must come from this dashboard: its Origin (or, without
/// one, its Referer) must name exactly the host the request was sent to. Requests with neither
/// come from programs such as the CLI, which no web page can impersonate.
fn check_origin(request: &ApiRequest) -> Result<(), Reply> {
    let claimed = match (&request.origin, &request.referer) {
        (Some(origin), _) => origin.as_str(),
        (None, Some(referer)) => referer.as_str(),
        (None, None) => return Ok(()),
    };
    let host = request.host.as_deref().unwrap_or_default();
    match origin_authority(claimed) {
        Some(authority) if same_authority(authority, host) => Ok(()),
        _ => Err(Reply::error(
            403,
            "forbidden_origin",
            format!("requests from '{claimed}' may not change anything here"),
        )),
    }
}

/// `http://host:port` of an Origin or Referer, parsed, not prefix-matched; only plain http (tend
/// serves nothing else).
fn origin_authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

fn same_authority(origin: &str, host: &str) -> bool {
    let normalize = |a: &str| {
        let a = a.to_ascii_lowercase();
        a.strip_suffix(":80").map(str::to_string).unwrap_or(a)
    };
    normalize(origin) == normalize(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(token: Option<&str>) -> Policy {
        Policy::new(
            token.map(str::to_string),
            "127.0.0.1:7070".parse().unwrap(),
            &["tend.lan".into(), "[fd00::1]".into()],
        )
    }

    fn request(method: &str, url: &str) -> ApiRequest {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        ApiRequest {
            method: method.into(),
            path: path.into(),
            query: crate::http::parse_query(query),
            host: Some("127.0.0.1:7070".into()),
            ..ApiRequest::default()
        }
    }

    fn status(result: Result<(), Reply>) -> u16 {
        result.err().map_or(0, |r| r.status)
    }

    #[test]
    fn hosts_that_are_not_this_machine_are_refused() {
        let p = policy(None);
        #[rustfmt::skip]
        let cases = [
            ("127.0.0.1:7070", 0), ("localhost:7070", 0), ("LOCALHOST", 0), ("[::1]:7070", 0),
            ("127.1.2.3", 0), ("app.localhost:7070", 0), ("tend.lan:7070", 0), ("[fd00::1]:7070", 0),
            ("evil.example:7070", 403), ("localhost.evil.example", 403), ("10.0.0.5:7070", 403),
            ("127.0.0.1.nip.io", 403), ("[fd00::2]:7070", 403),
        ];
        for (host, expected) in cases {
            let mut r = request("GET", "/api/servers");
            r.host = Some(host.into());
            assert_eq!(status(check(&r, &p)), expected, "Host: {host}");
        }
        let mut r = request("GET", "/api/servers");
        r.host = None;
        assert_eq!(status(check(&r, &p)), 400);
    }

    #[test]
    fn tokens_open_the_api_and_nothing_else_does() {
        let p = policy(Some("s3cret"));
        let mut r = request("GET", "/api/servers");
        assert_eq!(status(check(&r, &p)), 401);
        r.authorization = Some("Bearer s3cret".into());
        assert_eq!(status(check(&r, &p)), 0);
        r.authorization = Some("Bearer s3creT".into());
        assert_eq!(status(check(&r, &p)), 401);
        r.authorization = None;
        r.cookie = Some("other=1; tend_token=s3cret".into());
        assert_eq!(status(check(&r, &p)), 0);
        r.cookie = Some("tend_token=nope".into());
        assert_eq!(status(check(&r, &p)), 401);
        assert_eq!(status(check(&request("GET", "/healthz"), &p)), 0);
        assert_eq!(status(check(&request("GET", "/app.js"), &p)), 401);
        assert_eq!(status(check(&request("GET", "/no/such/path"), &p)), 401);
        let login = check(&request("GET", "/"), &p).unwrap_err();
        assert_eq!(login.status, 200);
        assert!(String::from_utf8_lossy(&login.body).contains("<form"));
        assert_eq!(status(check(&request("GET", "/?token=wrong"), &p)), 401);
        let signed_in = check(&request("GET", "/?token=s3cret"), &p).unwrap_err();
        assert_eq!(signed_in.status, 303);
        let cookie = &signed_in
            .headers
            .iter()
            .find(|(k, _)| *k == "Set-Cookie")
            .unwrap()
            .1;
        assert!(
            cookie.contains("tend_token=s3cret")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
        );
    }

    #[test]
    fn changes_from_other_origins_are_refused() {
        let p = policy(None);
        #[rustfmt::skip]
        let cases = [
            (Some("http://127.0.0.1:7070"), None, 0),
            (None, Some("http://127.0.0.1:7070/dashboard"), 0),
            (None, None, 0),
            (Some("http://evil.example"), None, 403),
            (Some("http://127.0.0.1:7070.evil.example"), None, 403),
            (Some("http://127.0.0.1:7071"), None, 403),
            (Some("https://127.0.0.1:7070"), None, 403),
            (Some("null"), None, 403),
            (None, Some("http://evil.example/?u=http://127.0.0.1:7070"), 403),
            (Some("http://user@127.0.0.1:7070"), None, 403),
        ];
        for (origin, referer, expected) in cases {
            let mut r = request("POST", "/api/servers/web?action=stop");
            r.origin = origin.map(str::to_string);
            r.referer = referer.map(str::to_string);
            assert_eq!(status(check(&r, &p)), expected, "{origin:?} {referer:?}");
        }
        let mut read = request("GET", "/api/servers");
        read.origin = Some("http://evil.example".into());
        assert_eq!(
            status(check(&read, &p)),
            0,
            "reads are not refused by Origin (CORS keeps the answer from the page)"
        );
    }

    #[test]
    fn oversized_heads_are_refused() {
        let p = policy(None);
        let mut r = request("GET", "/api/servers");
        r.head_len = MAX_HEAD + 1;
        assert_eq!(status(check(&r, &p)), 431);
        r.head_len = 10;
        r.url_len = MAX_HEAD + 1;
        assert_eq!(status(check(&r, &p)), 414);
    }
}
