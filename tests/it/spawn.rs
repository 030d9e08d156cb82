//! Spawning under load (src/os/spawn.rs): the supervisor's spawns and the alert threads' run at
//! once while the reaper collects exits; every exit reaches whoever waits for it, once. The
//! child's own state (session, signals, descriptor limit, PATH) is checked in the unit tests
//! beside the code; here a real tend runs it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TempDir, Tend, wait_until};

const CRASHERS: usize = 6;
const MAX_RESTARTS: usize = 5;
const RULES: usize = 3;

#[test]
fn supervisor_and_alert_spawns_at_once_lose_no_exit_and_reap_none_twice() {
    let dir = TempDir::new("spawn-concurrent");
    let mut servers: Vec<Value> = (0..CRASHERS)
        .map(|i| {
            json!({"id": format!("crash{i}"),
                   "command": format!("echo run >> runs-crash{i}; exit 3"),
                   "backoff_ms": 10, "max_restarts": MAX_RESTARTS, "retry_fatal_ms": 0})
        })
        .collect();
    // Exec failures: each spawn reaps its own failed child while the reaper drains the others.
    for i in 0..2 {
        servers.push(json!({"id": format!("missing{i}"),
                            "command": ["/nonexistent/tend-it-spawn"],
                            "backoff_ms": 10, "max_restarts": MAX_RESTARTS, "retry_fatal_ms": 0}));
    }
    // Each rule has a thread of its own: three alert commands per death, beside the restarts.
    let alerts: Vec<Value> = (0..RULES)
        .map(|rule| {
            json!({"on": ["processDied"], "repeat_ms": 0,
                   "exec": format!("echo \"$TEND_SERVER\" >> {}",
                                   dir.join(&format!("alerts-{rule}")).display())})
        })
        .collect();
    let tend = Tend::start(&dir, &json!({"servers": servers, "alerts": alerts}));

    let runs = MAX_RESTARTS + 1;
    for i in 0..CRASHERS {
        let id = format!("crash{i}");
        // A lost exit would leave the server `running` (or its restart never scheduled).
        let server = tend.wait_server_for(&id, "fatal", Duration::from_secs(60), |s| {
            s["status"] == "fatal"
        });
        assert_eq!(server["restarts"], MAX_RESTARTS, "{server:#}");
        assert_eq!(dir.read(&format!("runs-crash{i}")).lines().count(), runs);
    }
    for i in 0..2 {
        let id = format!("missing{i}");
        let server = tend.wait_server_for(&id, "fatal", Duration::from_secs(60), |s| {
            s["status"] == "fatal"
        });
        assert!(
            server["lastError"].as_str().is_some_and(
                |e| e.starts_with("cannot run '/nonexistent/tend-it-spawn': not found")
            ),
            "{server:#}"
        );
    }
    // Every alert command's exit came back to its rule (a claimed exit taken by the supervisor
    // instead would end the delivery as a timeout), each death once per rule.
    let deaths = CRASHERS * runs;
    let sent = wait_until(
        "every alert command's outcome",
        Duration::from_secs(60),
        || {
            let outcomes = tend.alert_outcomes();
            let crash_outcomes: Vec<&Value> = outcomes
                .iter()
                .filter(|o| o["id"].as_str().is_some_and(|id| id.starts_with("crash")))
                .collect();
            (crash_outcomes.len() >= deaths * RULES).then_some(outcomes)
        },
    );
    let not_sent: Vec<&Value> = sent.iter().filter(|o| o["result"] != "sent").collect();
    assert!(not_sent.is_empty(), "{not_sent:#?}");
    for rule in 0..RULES {
        let text = dir.read(&format!("alerts-{rule}"));
        for i in 0..CRASHERS {
            let id = format!("crash{i}");
            let count = text.lines().filter(|l| *l == id).count();
            assert_eq!(count, runs, "rule {rule}, {id}:\n{text}");
        }
    }
}
