//! Property tests over everything tend parses from outside (docs/DESIGN.md §8, issue 4): config files,
//! HTTP requests through the guard and the router, query strings, and state files. Each runs
//! 100,000 generated inputs — mutations of valid inputs and random bytes — and asserts that
//! nothing panics and every refusal is a well-formed error. A seeded generator keeps failures
//! reproducible: the failing input is printed.

use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::unbounded;

use crate::groups::ActTarget;
use crate::http::api::{Outcome, route};
use crate::http::guard::{Policy, check};
use crate::http::metrics::{self, Histogram};
use crate::http::{ApiRequest, Shared, parse_query};
use crate::model::ReloadPlan;
use crate::supervisor::reload::KnownIds;
use crate::supervisor::{Control, ControlError};

const CASES: usize = 100_000;

/// xorshift64*: tiny, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Mutates `seed` the ways a fuzzer would: flips, inserts, deletes, splices in JSON tokens,
/// truncates, or replaces a number with something huge, negative or fractional.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"null",
        b"true",
        b"{}",
        b"[]",
        b"\"\"",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"0.5",
        b"\"\\u0000\"",
        b"\"\xff\xfe\"",
        b",",
        b":",
        b"{\"a\":",
        b"]",
        b"}",
        b"\"x\":1",
        b"99999999999999999999999",
        b"\"SIGKILL\"",
        b"\"../../etc/passwd\"",
    ];
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                let end = (at + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let token = rng.pick(TOKENS);
                out.splice(at..at, token.iter().copied());
            }
            4 => out.truncate(at),
            _ => {
                let token = rng.pick(TOKENS);
                let end = (at + rng.below(12)).min(out.len());
                out.splice(at..end, token.iter().copied());
            }
        }
    }
    out
}

const CONFIG: &str = r#"{
  "listen": "127.0.0.1:7070", "health_interval_ms": 3000, "auth_token": null,
  "allowed_hosts": ["tend.lan"], "on_exit": "stop", "log_max_bytes": 10485760, "log_keep": 3,
  "servers": [
    {"id": "db", "command": ["redis-server", "--port", "6380"], "ports": [6380],
     "restart": "always", "stop_signal": "SIGINT", "env": {"A": "1"}},
    {"id": "web", "command": "python3 -m http.server 8000", "cwd": "web", "ports": [8000],
     "env_file": ".env", "depends_on": ["db"], "max_restarts": 3, "backoff_ms": 100,
     "stop_timeout_ms": 500, "start_timeout_ms": 1000, "retry_fatal_ms": 0, "autostart": false}
  ]
}"#;

#[test]
fn config_loading_never_panics_and_always_says_where() {
    let mut rng = Rng(0x7e4d_0001);
    let path = Path::new("/nonexistent/tend.json");
    let base = Path::new("/nonexistent");
    assert!(
        crate::config::parse(CONFIG, path, base).is_ok(),
        "the seed config is valid"
    );
    let mut rejected = 0;
    for case in 0..CASES {
        let input = if case % 10 == 0 {
            rng.bytes(300)
        } else {
            mutate(&mut rng, CONFIG.as_bytes())
        };
        let text = String::from_utf8_lossy(&input);
        let result = std::panic::catch_unwind(|| crate::config::parse(&text, path, base));
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(errors)) => {
                rejected += 1;
                assert!(
                    !errors.0.is_empty(),
                    "an error list is never empty: {text:?}"
                );
                for error in &errors.0 {
                    assert!(!error.message.is_empty(), "every error says what: {text:?}");
                }
            }
            Err(_) => panic!("config::parse panicked on {text:?}"),
        }
    }
    assert!(
        rejected > CASES / 2,
        "the mutations reach the validator ({rejected} rejected)"
    );
}

#[test]
fn env_files_never_panic() {
    let mut rng = Rng(0x7e4d_0002);
    let seed = b"# c\nexport A=1\nB='two words'\nC=\"esc \\n \\\" x\" # note\nD=bare # c\n";
    for _ in 0..CASES {
        let input = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&input);
        if std::panic::catch_unwind(|| crate::config::parse_env_file(&text)).is_err() {
            panic!("parse_env_file panicked on {text:?}");
        }
    }
}

#[test]
fn procfiles_never_panic_and_always_say_where() {
    use crate::config::procfile::{PortSources, parse};
    use std::path::Path;

    let mut rng = Rng(0x7e4d_0004);
    let seed = b"# c\nweb: run -p $PORT\r\nworker-2:go\n\nclock_x: a:b # c\n";
    let env_seed = b"export PORT=6000\nA='x y'\nB=\"q\\n\" # c\n";
    let ports = PortSources::default();
    let mut rejected = 0;
    for _ in 0..CASES {
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed)).into_owned();
        let env = String::from_utf8_lossy(&mutate(&mut rng, env_seed)).into_owned();
        let dotenv = Some((Path::new("/app/.env"), env.as_str()));
        let result = std::panic::catch_unwind(|| {
            parse(
                &text,
                Path::new("/app/Procfile"),
                Path::new("/app"),
                dotenv,
                &ports,
            )
        });
        match result {
            Err(_) => panic!("procfile::parse panicked on {text:?} with .env {env:?}"),
            Ok(Ok(config)) => assert!(!config.servers.is_empty(), "{text:?}"),
            Ok(Err(errors)) => {
                rejected += 1;
                // Only "no processes" and a bad inherited PORT are about a whole file.
                for error in &errors.0 {
                    assert!(
                        error.line > 0 || error.message.starts_with("no processes"),
                        "{error} for {text:?} with .env {env:?}"
                    );
                }
            }
        }
    }
    assert!(
        rejected > CASES / 10,
        "the mutations reach the checks ({rejected} rejected)"
    );
}

#[test]
fn state_files_never_panic() {
    let mut rng = Rng(0x7e4d_0003);
    let seed = br#"{"version":1,"bootId":"b","processes":{"web":{"pid":12,"pgid":12,"command":"x","startTime":1,"procStartTicks":2,"ports":[8000]}}}"#;
    for _ in 0..CASES {
        let input = mutate(&mut rng, seed);
        if std::panic::catch_unwind(|| crate::store::StateFile::from_slice(&input)).is_err() {
            panic!(
                "StateFile::from_slice panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

/// A stand-in supervisor that answers every command the way the real one may.
fn fake_supervisor() -> Shared {
    let (control, inbox) = unbounded::<Box<Control>>();
    std::thread::spawn(move || {
        for message in inbox {
            match *message {
                Control::List { reply } => {
                    let _ = reply.send(Vec::new());
                }
                Control::Get { id, reply } => {
                    let _ = reply.send(Err(ControlError::NotFound(id)));
                }
                Control::Act { target, reply, .. } => {
                    let id = match target {
                        ActTarget::One(id) => id,
                        _ => String::new(),
                    };
                    let _ = reply.send(Err(ControlError::NotRunning(id)));
                }
                Control::FindOrphan { reply, .. } => {
                    let _ = reply.send(Err(ControlError::Refused("not an orphan".into())));
                }
                Control::Subscribe { reply, .. } => {
                    let _ = reply.send(Err(ControlError::TooManyClients));
                }
                Control::OrphanGone { .. } => {}
                Control::Adopt { id, reply } => {
                    let _ = reply.send(Err(ControlError::NoOrphan(id)));
                }
                Control::Metrics { reply } => {
                    let histogram = Histogram::new(metrics::HEALTH_BUCKETS);
                    let _ = reply.send(metrics::Snapshot::new(Vec::new(), histogram));
                }
                Control::Reload { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(ReloadPlan::default()));
                    }
                }
            }
        }
    });
    let ids = Arc::new(KnownIds::new([
        ("web".to_string(), None),
        ("db".to_string(), None),
    ]));
    let policy = Policy::new(
        Some("s3cret".into()),
        "127.0.0.1:7070".parse().expect("addr"),
        &[],
    );
    let log_dir = std::env::temp_dir().join("tend-fuzz-no-logs");
    Shared::new(control, log_dir, ids, 256, policy)
}

#[test]
fn requests_never_panic_and_refusals_are_json_errors() {
    const METHODS: &[&str] = &[
        "GET", "POST", "DELETE", "PUT", "HEAD", "PATCH", "OPTIONS", "GeT", "",
    ];
    const PATHS: &[&str] = &[
        "/",
        "/api/servers",
        "/api/servers/web",
        "/api/servers/web/logs",
        "/api/kill",
        "/api/events",
        "/healthz",
        "/app.js",
        "/api/openapi.json",
        "/metrics",
        "/api/servers/../../etc",
        "/api//servers",
        "/api/servers/web/logs/extra",
        "/%2e%2e/",
        "/api/servers/\u{0}",
    ];
    const QUERIES: &[&str] = &[
        "",
        "action=start",
        "action=stop",
        "action=restart",
        "action=nope",
        "lines=5",
        "lines=-1",
        "lines=99999999999999999999",
        "token=s3cret",
        "token=",
        "logs=web",
        "action",
        "&&&",
        "a=%zz",
        "lines=1e3",
    ];
    const BODIES: &[&[u8]] = &[
        b"",
        b"{}",
        br#"{"id":"web"}"#,
        br#"{"pid":0}"#,
        br#"{"pid":-5}"#,
        br#"{"pid":1}"#,
        br#"{"pid":18446744073709551616}"#,
        br#"{"pid":"12"}"#,
        br#"{"id":"web","extra":1}"#,
        b"[1,2",
        b"\xff\xfe\xfd",
        b"null",
    ];
    let shared = fake_supervisor();
    let mut rng = Rng(0x7e4d_0004);
    let mut routed = 0;
    for _ in 0..CASES {
        let mut request = ApiRequest {
            method: rng.pick(METHODS).to_string(),
            path: rng.pick(PATHS).to_string(),
            query: parse_query(rng.pick(QUERIES)),
            content_type: match rng.below(4) {
                0 => None,
                1 => Some("application/json".into()),
                2 => Some("text/plain".into()),
                _ => Some(String::from_utf8_lossy(&rng.bytes(20)).into_owned()),
            },
            last_event_id: rng
                .below(2)
                .eq(&0)
                .then(|| String::from_utf8_lossy(&rng.bytes(8)).into_owned()),
            host: match rng.below(5) {
                0 => None,
                1 => Some("evil.example".into()),
                2 => Some(String::from_utf8_lossy(&rng.bytes(30)).into_owned()),
                _ => Some("127.0.0.1:7070".into()),
            },
            origin: match rng.below(4) {
                0 => Some("http://evil.example".into()),
                1 => Some(String::from_utf8_lossy(&rng.bytes(30)).into_owned()),
                _ => None,
            },
            referer: rng
                .below(4)
                .eq(&0)
                .then(|| "http://127.0.0.1:7070/x".to_string()),
            authorization: match rng.below(4) {
                0 => None,
                1 => Some("Bearer wrong".into()),
                2 => Some(String::from_utf8_lossy(&rng.bytes(40)).into_owned()),
                _ => Some("Bearer s3cret".into()),
            },
            cookie: rng.below(4).eq(&0).then(|| "tend_token=s3cret".to_string()),
            accept_encoding: match rng.below(3) {
                0 => None,
                1 => Some("gzip, deflate, br".into()),
                _ => Some(String::from_utf8_lossy(&rng.bytes(20)).into_owned()),
            },
            head_len: rng.below(9000),
            url_len: rng.below(9000),
            body: {
                let seed = rng.pick(BODIES);
                if rng.below(3) == 0 {
                    mutate(&mut rng, seed)
                } else {
                    seed.to_vec()
                }
            },
        };
        if rng.below(50) == 0 {
            request.path = String::from_utf8_lossy(&rng.bytes(40)).into_owned();
        }
        let outcome = std::panic::catch_unwind(|| match check(&request, &shared.policy) {
            Err(reply) => Some(reply),
            Ok(()) => match route(&request, &shared) {
                Outcome::Reply(reply) => Some(reply),
                Outcome::Events(_) => None,
            },
        });
        if check(&request, &shared.policy).is_ok() {
            routed += 1;
        }
        let reply = match outcome {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(_) => panic!("the request path panicked on {request:?}"),
        };
        assert!((200..600).contains(&reply.status), "{request:?}");
        if reply.status >= 400 && reply.content_type == "application/json" {
            let body: serde_json::Value = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|_| panic!("an error body is JSON: {request:?}"));
            assert!(
                body["error"].is_string() && body["code"].is_string(),
                "{request:?} -> {body}"
            );
        }
    }
    // Past the guard into the handlers, or this only tested the guard.
    assert!(
        routed > CASES / 20,
        "only {routed} requests reached the router"
    );
}

#[test]
fn query_strings_never_panic() {
    let mut rng = Rng(0x7e4d_0005);
    for _ in 0..CASES {
        let input = rng.bytes(64);
        let text = String::from_utf8_lossy(&input);
        if std::panic::catch_unwind(|| parse_query(&text)).is_err() {
            panic!("parse_query panicked on {text:?}");
        }
    }
}
