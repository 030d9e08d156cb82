//! The OpenAPI document at `/api/openapi.json` (issue 4, item 8), kept true against a running
//! tend: every (path, method, status) it documents has a recipe here that makes a live tend
//! answer exactly that, and every route tend answers is documented. A status added to the
//! document without a recipe, or a recipe whose status the document lost, fails the test, so the
//! two stay in step.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Listener, LookAlike, RawResponse, SseReader, TempDir, Tend, demo_cmd, free_port, header,
    http_request, wait_until,
};

const TOKEN: &str = "openapi-secret-0123456789";
const EVIL: (&str, &str) = ("Host", "evil.example");
const CROSS_SITE: (&str, &str) = ("Origin", "http://evil.example");
const JSON: (&str, &str) = ("Content-Type", "application/json");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What the recipes run against.
struct Ctx {
    /// Token auth on; servers `run` (running), `idle` (stopped, an orphan holds its port) and
    /// `broken` (its cwd does not exist).
    tend: Tend,
    /// Token auth on, `max_connections` 2 and `max_sse_clients` 1, for the 503s.
    busy: Tend,
    _orphan: Listener,
    _dirs: (TempDir, TempDir),
}

type Recipe = (&'static str, &'static str, u16, fn(&Ctx) -> RawResponse);

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// A request without any token.
fn anon(c: &Ctx, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    http_request(&c.tend.url, method, path, headers, body)
}

/// A request with the token (the harness adds it).
fn authed(c: &Ctx, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    c.tend.request_raw(method, path, headers, body)
}

/// An event-stream request, as a response: the head, and the error body when it is not 200.
fn events(url: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut reader = SseReader::connect_with(url, path, headers);
    let status = reader.status();
    let body = if status == 200 {
        Vec::new()
    } else {
        reader.body().into_bytes()
    };
    (status, reader.headers().to_vec(), body)
}

fn big_body() -> Vec<u8> {
    let mut body = vec![b' '; 64 * 1024 + 1];
    body[..2].copy_from_slice(b"{}");
    body
}

/// A request whose body never finishes: its connection's thread waits for the rest, answering
/// it, so the connection is never closed to make room. (tiny_http reads bodies of up to 1 KiB
/// before it hands the request over, so the body announced is larger.)
fn held_request(tend: &Tend) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", tend.port)).unwrap();
    let head = format!(
        "POST /api/servers?action=bogus HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{",
        tend.port,
        bearer()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// With `busy`'s two connections held by requests being answered, a POST to `path` is refused
/// for too many connections. Probes use `action=bogus`, so one that gets through changes
/// nothing. A probe that arrives while a held request's head is still being read closes that
/// connection to make room (the rule at the limit) and gets through: a new held request
/// replaces it, until both are being answered.
fn past_connection_cap(c: &Ctx, path: &str) -> RawResponse {
    let mut held = vec![held_request(&c.busy), held_request(&c.busy)];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = c.busy.request_raw("POST", path, &[], b"");
        if response.0 == 503 || Instant::now() >= deadline {
            return response;
        }
        held.push(held_request(&c.busy));
    }
}

/// With one event stream open on `busy` (`max_sse_clients` 1), another is refused.
fn past_sse_cap(c: &Ctx) -> RawResponse {
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    let _first = SseReader::connect_with(&c.busy.url, "/api/events", &headers);
    events(&c.busy.url, "/api/events", &headers)
}

fn kill(c: &Ctx, body: Value) -> RawResponse {
    authed(
        c,
        "DELETE",
        "/api/kill",
        &[JSON],
        body.to_string().as_bytes(),
    )
}

/// One recipe per documented status, run in this order (the POST 200s stop and then start
/// `run`; the kill 200 kills the orphan).
fn recipes() -> Vec<Recipe> {
    vec![
        ("/", "get", 200, |c| authed(c, "GET", "/", &[], b"")),
        ("/", "get", 303, |c| {
            anon(c, "GET", &format!("/?token={TOKEN}"), &[], b"")
        }),
        ("/", "get", 401, |c| {
            anon(c, "GET", "/?token=wrong", &[], b"")
        }),
        ("/", "get", 403, |c| authed(c, "GET", "/", &[EVIL], b"")),
        ("/app.js", "get", 200, |c| {
            authed(c, "GET", "/app.js", &[], b"")
        }),
        ("/app.js", "get", 401, |c| {
            anon(c, "GET", "/app.js", &[], b"")
        }),
        ("/app.js", "get", 403, |c| {
            authed(c, "GET", "/app.js", &[EVIL], b"")
        }),
        ("/app.css", "get", 200, |c| {
            authed(c, "GET", "/app.css", &[], b"")
        }),
        ("/app.css", "get", 401, |c| {
            anon(c, "GET", "/app.css", &[], b"")
        }),
        ("/app.css", "get", 403, |c| {
            authed(c, "GET", "/app.css", &[EVIL], b"")
        }),
        ("/healthz", "get", 200, |c| {
            anon(c, "GET", "/healthz", &[], b"")
        }),
        ("/healthz", "get", 403, |c| {
            anon(c, "GET", "/healthz", &[EVIL], b"")
        }),
        ("/metrics", "get", 200, |c| {
            authed(c, "GET", "/metrics", &[], b"")
        }),
        ("/metrics", "get", 401, |c| {
            anon(c, "GET", "/metrics", &[], b"")
        }),
        ("/metrics", "get", 403, |c| {
            authed(c, "GET", "/metrics", &[EVIL], b"")
        }),
        ("/api/openapi.json", "get", 200, |c| {
            authed(c, "GET", "/api/openapi.json", &[], b"")
        }),
        ("/api/openapi.json", "get", 401, |c| {
            anon(c, "GET", "/api/openapi.json", &[], b"")
        }),
        ("/api/openapi.json", "get", 403, |c| {
            authed(c, "GET", "/api/openapi.json", &[EVIL], b"")
        }),
        ("/api/servers", "get", 200, |c| {
            authed(c, "GET", "/api/servers", &[], b"")
        }),
        ("/api/servers", "get", 401, |c| {
            anon(c, "GET", "/api/servers", &[], b"")
        }),
        ("/api/servers", "get", 403, |c| {
            authed(c, "GET", "/api/servers", &[EVIL], b"")
        }),
        ("/api/servers", "post", 200, |c| {
            authed(c, "POST", "/api/servers?action=stop", &[], b"")
        }),
        ("/api/servers", "post", 400, |c| {
            authed(c, "POST", "/api/servers?action=bogus", &[], b"")
        }),
        ("/api/servers", "post", 401, |c| {
            anon(c, "POST", "/api/servers?action=stop", &[], b"")
        }),
        ("/api/servers", "post", 403, |c| {
            authed(c, "POST", "/api/servers?action=stop", &[CROSS_SITE], b"")
        }),
        ("/api/servers", "post", 404, |c| {
            authed(c, "POST", "/api/servers?action=stop&group=nope", &[], b"")
        }),
        ("/api/servers", "post", 413, |c| {
            authed(c, "POST", "/api/servers?action=stop", &[JSON], &big_body())
        }),
        ("/api/servers", "post", 415, |c| {
            let plain = ("Content-Type", "text/plain");
            authed(c, "POST", "/api/servers?action=stop", &[plain], b"stop")
        }),
        ("/api/servers", "post", 503, |c| {
            past_connection_cap(c, "/api/servers?action=bogus")
        }),
        ("/api/servers/{id}", "get", 200, |c| {
            authed(c, "GET", "/api/servers/run", &[], b"")
        }),
        ("/api/servers/{id}", "get", 401, |c| {
            anon(c, "GET", "/api/servers/run", &[], b"")
        }),
        ("/api/servers/{id}", "get", 403, |c| {
            authed(c, "GET", "/api/servers/run", &[EVIL], b"")
        }),
        ("/api/servers/{id}", "get", 404, |c| {
            authed(c, "GET", "/api/servers/nope", &[], b"")
        }),
        ("/api/servers/{id}", "post", 200, |c| {
            authed(c, "POST", "/api/servers/run?action=restart", &[], b"")
        }),
        ("/api/servers/{id}", "post", 400, |c| {
            authed(c, "POST", "/api/servers/run?action=bogus", &[], b"")
        }),
        ("/api/servers/{id}", "post", 401, |c| {
            anon(c, "POST", "/api/servers/run?action=stop", &[], b"")
        }),
        ("/api/servers/{id}", "post", 403, |c| {
            authed(
                c,
                "POST",
                "/api/servers/run?action=stop",
                &[CROSS_SITE],
                b"",
            )
        }),
        ("/api/servers/{id}", "post", 404, |c| {
            authed(c, "POST", "/api/servers/nope?action=start", &[], b"")
        }),
        ("/api/servers/{id}", "post", 409, |c| {
            authed(c, "POST", "/api/servers/idle?action=stop", &[], b"")
        }),
        ("/api/servers/{id}", "post", 413, |c| {
            authed(
                c,
                "POST",
                "/api/servers/run?action=stop",
                &[JSON],
                &big_body(),
            )
        }),
        ("/api/servers/{id}", "post", 415, |c| {
            let plain = ("Content-Type", "text/plain");
            authed(c, "POST", "/api/servers/run?action=stop", &[plain], b"stop")
        }),
        ("/api/servers/{id}", "post", 500, |c| {
            authed(c, "POST", "/api/servers/broken?action=start", &[], b"")
        }),
        ("/api/servers/{id}", "post", 503, |c| {
            past_connection_cap(c, "/api/servers/run?action=bogus")
        }),
        ("/api/servers/{id}/logs", "get", 200, |c| {
            authed(c, "GET", "/api/servers/run/logs?lines=5", &[], b"")
        }),
        ("/api/servers/{id}/logs", "get", 400, |c| {
            authed(c, "GET", "/api/servers/run/logs?lines=many", &[], b"")
        }),
        ("/api/servers/{id}/logs", "get", 401, |c| {
            anon(c, "GET", "/api/servers/run/logs", &[], b"")
        }),
        ("/api/servers/{id}/logs", "get", 403, |c| {
            authed(c, "GET", "/api/servers/run/logs", &[EVIL], b"")
        }),
        ("/api/servers/{id}/logs", "get", 404, |c| {
            authed(c, "GET", "/api/servers/nope/logs", &[], b"")
        }),
        ("/api/logs", "get", 200, |c| {
            authed(c, "GET", "/api/logs?id=run&id=idle&lines=5", &[], b"")
        }),
        ("/api/logs", "get", 400, |c| {
            authed(c, "GET", "/api/logs?lines=many", &[], b"")
        }),
        ("/api/logs", "get", 401, |c| {
            anon(c, "GET", "/api/logs", &[], b"")
        }),
        ("/api/logs", "get", 403, |c| {
            authed(c, "GET", "/api/logs", &[EVIL], b"")
        }),
        ("/api/logs", "get", 404, |c| {
            authed(c, "GET", "/api/logs?group=nope", &[], b"")
        }),
        ("/api/kill", "delete", 200, |c| {
            kill(c, json!({"id": "idle"}))
        }),
        ("/api/kill", "delete", 400, |c| kill(c, json!({"pid": 0}))),
        ("/api/kill", "delete", 401, |c| {
            anon(c, "DELETE", "/api/kill", &[JSON], br#"{"pid": 1}"#)
        }),
        ("/api/kill", "delete", 403, |c| kill(c, json!({"pid": 1}))),
        ("/api/kill", "delete", 404, |c| {
            kill(c, json!({"id": "nope"}))
        }),
        ("/api/kill", "delete", 409, |c| {
            kill(c, json!({"id": "run"}))
        }),
        ("/api/kill", "delete", 413, |c| {
            authed(c, "DELETE", "/api/kill", &[JSON], &big_body())
        }),
        ("/api/kill", "delete", 415, |c| {
            let plain = ("Content-Type", "text/plain");
            authed(c, "DELETE", "/api/kill", &[plain], b"pid=1")
        }),
        ("/api/reload", "post", 200, |c| {
            authed(c, "POST", "/api/reload", &[], b"")
        }),
        ("/api/reload", "post", 400, |c| {
            authed(c, "POST", "/api/reload", &[JSON], b"{")
        }),
        ("/api/reload", "post", 401, |c| {
            anon(c, "POST", "/api/reload", &[], b"")
        }),
        ("/api/reload", "post", 403, |c| {
            authed(c, "POST", "/api/reload", &[CROSS_SITE], b"")
        }),
        ("/api/reload", "post", 413, |c| {
            authed(c, "POST", "/api/reload", &[JSON], &big_body())
        }),
        ("/api/reload", "post", 415, |c| {
            let plain = ("Content-Type", "text/plain");
            authed(c, "POST", "/api/reload", &[plain], b"now")
        }),
        ("/api/reload", "post", 503, |c| {
            past_connection_cap(c, "/api/reload")
        }),
        ("/api/history", "get", 200, |c| {
            authed(c, "GET", "/api/history?limit=5&server=run", &[], b"")
        }),
        ("/api/history", "get", 400, |c| {
            authed(c, "GET", "/api/history?limit=many", &[], b"")
        }),
        ("/api/history", "get", 401, |c| {
            anon(c, "GET", "/api/history", &[], b"")
        }),
        ("/api/history", "get", 403, |c| {
            authed(c, "GET", "/api/history", &[EVIL], b"")
        }),
        ("/api/history", "get", 404, |c| {
            authed(c, "GET", "/api/history?server=nope", &[], b"")
        }),
        ("/api/alerts/test", "post", 200, |c| {
            authed(c, "POST", "/api/alerts/test", &[], b"")
        }),
        ("/api/alerts/test", "post", 400, |c| {
            authed(c, "POST", "/api/alerts/test", &[JSON], b"{")
        }),
        ("/api/alerts/test", "post", 401, |c| {
            anon(c, "POST", "/api/alerts/test", &[], b"")
        }),
        ("/api/alerts/test", "post", 403, |c| {
            authed(c, "POST", "/api/alerts/test", &[CROSS_SITE], b"")
        }),
        ("/api/alerts/test", "post", 409, |c| {
            let auth = bearer();
            let headers = [("Authorization", auth.as_str())];
            http_request(&c.busy.url, "POST", "/api/alerts/test", &headers, b"")
        }),
        ("/api/alerts/test", "post", 415, |c| {
            let plain = ("Content-Type", "text/plain");
            authed(c, "POST", "/api/alerts/test", &[plain], b"now")
        }),
        ("/api/events", "get", 200, |c| {
            let auth = bearer();
            events(&c.tend.url, "/api/events", &[("Authorization", &auth)])
        }),
        ("/api/events", "get", 401, |c| {
            events(&c.tend.url, "/api/events", &[])
        }),
        ("/api/events", "get", 403, |c| {
            let auth = bearer();
            events(
                &c.tend.url,
                "/api/events",
                &[("Authorization", &auth), EVIL],
            )
        }),
        ("/api/events", "get", 404, |c| {
            let auth = bearer();
            events(
                &c.tend.url,
                "/api/events?logs=nope",
                &[("Authorization", &auth)],
            )
        }),
        ("/api/events", "get", 503, past_sse_cap),
    ]
}

/// The document as a tend without auth serves it.
fn fetch_document() -> Value {
    let dir = TempDir::new("openapi_doc");
    let tend = Tend::start(&dir, &json!({"servers": []}));
    let (status, headers, body) = tend.request_raw("GET", "/api/openapi.json", &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let content_type = header(&headers, "Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "/api/openapi.json is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })
}

/// Every (path, method, status) the document lists.
fn documented(doc: &Value) -> BTreeSet<(String, String, u16)> {
    let mut out = BTreeSet::new();
    let paths = doc["paths"].as_object().expect("paths is an object");
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (method, operation) in item {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} has no responses"));
            for status in responses.keys() {
                let code = status
                    .parse::<u16>()
                    .unwrap_or_else(|_| panic!("{method} {path}: status {status:?} is not a code"));
                out.insert((path.clone(), method.clone(), code));
            }
        }
    }
    out
}

/// `#/a/b` looked up in the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("an external $ref: {reference}"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} points nowhere"))
        }
        None => value,
    }
}

/// Every `$ref` in `value`.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn openapi_document_is_openapi_3_with_resolvable_refs() {
    let doc = fetch_document();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi {version:?}");
    assert!(doc["info"]["title"].is_string(), "no info.title");
    assert!(doc["info"]["version"].is_string(), "no info.version");
    assert!(doc["paths"].is_object(), "no paths");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').unwrap_or("");
        assert!(
            !pointer.is_empty() && doc.pointer(pointer).is_some(),
            "$ref {reference} points nowhere"
        );
    }
}

#[test]
fn every_route_tend_answers_is_documented() {
    let doc = fetch_document();
    let routes = [
        ("get", "/"),
        ("get", "/app.js"),
        ("get", "/app.css"),
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/api/openapi.json"),
        ("get", "/api/servers"),
        ("post", "/api/servers"),
        ("get", "/api/servers/{id}"),
        ("post", "/api/servers/{id}"),
        ("get", "/api/servers/{id}/logs"),
        ("get", "/api/logs"),
        ("delete", "/api/kill"),
        ("post", "/api/reload"),
        ("get", "/api/history"),
        ("post", "/api/alerts/test"),
        ("get", "/api/events"),
    ];
    let missing: Vec<String> = routes
        .iter()
        .filter(|(method, path)| doc["paths"][path][method].is_null())
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(missing.is_empty(), "undocumented routes: {missing:?}");
    // And nothing documented that is not one of them (a recipe proves each one answers).
    let extra: Vec<String> = documented(&doc)
        .into_iter()
        .map(|(path, method, _)| (method, path))
        .filter(|(method, path)| !routes.contains(&(method.as_str(), path.as_str())))
        .map(|(method, path)| format!("{} {path}", method.to_uppercase()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        extra.is_empty(),
        "documented routes this test does not know: {extra:?}"
    );
}

fn start_ctx() -> Ctx {
    let dir = TempDir::new("openapi_recipes");
    let port = free_port();
    let orphan = Listener::start(port);
    let config = json!({
        "auth_token": null,
        "servers": [
            {"id": "run", "command": ["sleep", "1000"], "restart": "no"},
            {"id": "idle", "command": demo_cmd(&["--port", &port.to_string()]), "ports": [port],
             "autostart": false},
            {"id": "broken", "command": ["sleep", "1"], "cwd": "/nonexistent/tend-openapi",
             "autostart": false, "restart": "no"},
        ],
        "alerts": [{"on": ["fatal"], "exec": ["true"]}]
    });
    let tend = Tend::start_with(&dir, &config, &[], &[("TEND_TOKEN", TOKEN)]);
    tend.wait_status("run", "running");
    tend.wait_server("idle", "orphaned", |s| s["orphanedPid"] == orphan.pid);

    let busy_dir = TempDir::new("openapi_busy");
    let busy_config = json!({
        "auth_token": null, "max_connections": 2, "max_sse_clients": 1,
        "servers": [{"id": "run", "command": ["sleep", "1000"], "restart": "no"}]
    });
    let busy = Tend::start_with(&busy_dir, &busy_config, &[], &[("TEND_TOKEN", TOKEN)]);
    busy.wait_status("run", "running");
    Ctx {
        tend,
        busy,
        _orphan: orphan,
        _dirs: (dir, busy_dir),
    }
}

/// The media types the document gives for one response (empty: no body documented).
fn media_types(doc: &Value, path: &str, method: &str, status: u16) -> (Vec<String>, bool) {
    let response = resolve(
        doc,
        &doc["paths"][path][method]["responses"][status.to_string()],
    );
    let content = response["content"].as_object();
    let types = content
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let is_error = content.is_some_and(|c| {
        c.values()
            .any(|m| m["schema"]["$ref"] == "#/components/schemas/Error")
    });
    (types, is_error)
}

#[test]
fn every_documented_status_is_produced_by_a_live_tend() {
    let doc = fetch_document();
    let documented = documented(&doc);
    let recipes = recipes();
    let with_recipe: BTreeSet<(String, String, u16)> = recipes
        .iter()
        .map(|(p, m, s, _)| (p.to_string(), m.to_string(), *s))
        .collect();
    assert_eq!(
        with_recipe.len(),
        recipes.len(),
        "two recipes for one status"
    );
    let no_recipe: Vec<_> = documented.difference(&with_recipe).collect();
    assert!(
        no_recipe.is_empty(),
        "documented statuses without a recipe in this test: {no_recipe:?}"
    );
    let not_documented: Vec<_> = with_recipe.difference(&documented).collect();
    assert!(
        not_documented.is_empty(),
        "recipes for statuses the document no longer lists: {not_documented:?}"
    );

    let ctx = start_ctx();
    let mut failures = Vec::new();
    for (path, method, want, recipe) in &recipes {
        let (status, headers, body) = recipe(&ctx);
        let what = format!("{} {path} → {want}", method.to_uppercase());
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>();
        if status != *want {
            failures.push(format!("{what}: got {status}: {shown}"));
            continue;
        }
        let (types, is_error) = media_types(&doc, path, method, *want);
        if types.is_empty() {
            continue;
        }
        let content_type = header(&headers, "Content-Type").unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !types.iter().any(|t| t == media) {
            failures.push(format!(
                "{what}: Content-Type {content_type:?}, documented {types:?}"
            ));
        }
        if is_error {
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !(json["error"].is_string() && json["code"].is_string()) {
                failures.push(format!("{what}: not the Error shape: {shown}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documented statuses were not produced as documented:\n{}",
        failures.len(),
        recipes.len(),
        failures.join("\n")
    );
    // The kill recipe's orphan really is gone.
    wait_until(
        "the killed orphan's flag to clear",
        Duration::from_secs(10),
        || (ctx.tend.server("idle")["orphaned"] == false).then_some(()),
    );
}

/// `action=adopt` shares its route with start, stop and restart: each status it answers is
/// one the document lists for that route, with the documented body, on a live tend whose
/// `lost` server has an adoptable orphan (a look-alike of its lost process) and whose `forged`
/// server has one that only sets `TEND_SERVER_ID`.
#[test]
fn adopt_answers_only_documented_statuses() {
    let doc = fetch_document();
    let dir = TempDir::new("openapi_adopt");
    let (lost_port, forged_port) = (free_port(), free_port());
    let argv = |port: u16, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--port".to_string(), port.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        demo_cmd(&args)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let lost = LookAlike::start("lost", &argv(lost_port, &[]), &dir.path, lost_port);
    let forged = LookAlike::start(
        "forged",
        &argv(forged_port, &["--print-every-ms", "9"]),
        &dir.path,
        forged_port,
    );
    let config = json!({
        "auth_token": null,
        "servers": [
            {"id": "run", "command": ["sleep", "1000"], "restart": "no"},
            {"id": "lost", "command": demo_cmd(&["--port", &lost_port.to_string()]),
             "ports": [lost_port], "autostart": false},
            {"id": "forged", "command": demo_cmd(&["--port", &forged_port.to_string()]),
             "ports": [forged_port], "autostart": false},
        ]
    });
    let tend = Tend::start_with(&dir, &config, &[], &[("TEND_TOKEN", TOKEN)]);
    tend.wait_status("run", "running");
    tend.wait_server("lost", "adoptable", |s| s["adoptable"]["pid"] == lost.pid);
    tend.wait_server("forged", "judged", |s| {
        s["orphanedPid"] == forged.pid && s["notAdoptable"].is_string()
    });

    let post = |path: &str, headers: &[(&str, &str)], auth: bool| {
        if auth {
            tend.request_raw("POST", path, headers, b"")
        } else {
            http_request(&tend.url, "POST", path, headers, b"")
        }
    };
    let cases: Vec<(&str, u16, RawResponse)> = vec![
        (
            "another user's request",
            401,
            post("/api/servers/lost?action=adopt", &[], false),
        ),
        (
            "a cross-site one",
            403,
            post("/api/servers/lost?action=adopt", &[CROSS_SITE], true),
        ),
        (
            "no such server",
            404,
            post("/api/servers/nope?action=adopt", &[], true),
        ),
        (
            "a forged orphan",
            409,
            post("/api/servers/forged?action=adopt", &[], true),
        ),
        (
            "a running server",
            409,
            post("/api/servers/run?action=adopt", &[], true),
        ),
        (
            "the lost process",
            200,
            post("/api/servers/lost?action=adopt", &[], true),
        ),
    ];
    let all = tend.request_raw("POST", "/api/servers?action=adopt", &[], b"");
    for (what, want, (status, _, body)) in cases.iter().chain([&("adopt on all", 400, all)]) {
        let shown = String::from_utf8_lossy(body);
        assert_eq!(status, want, "{what}: {shown}");
        let path = if *what == "adopt on all" {
            "/api/servers"
        } else {
            "/api/servers/{id}"
        };
        let (types, is_error) = media_types(&doc, path, "post", *want);
        assert!(
            !types.is_empty(),
            "{what}: {want} is not documented for POST {path}"
        );
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if is_error {
            assert!(
                json["error"].is_string() && json["code"].is_string(),
                "{what}: {shown}"
            );
        }
        if *want == 409 {
            assert_eq!(json["code"], "not_adoptable", "{what}: {shown}");
        }
        if *want == 200 {
            assert_eq!(json["pid"], lost.pid, "{shown}");
            assert_eq!(json["adopted"], true, "{shown}");
            assert!(json["adoptable"].is_null(), "{shown}");
        }
    }
}
