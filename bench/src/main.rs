//! `make bench`: drives the real tend binary from outside and prints what it measured.
//!
//! Figures so far: crash → restarted latency (kill -9 a child, until tend reports the new PID,
//! which is alive by then), state change → SSE event latency with many clients connected, and
//! tend's RSS with the built-in demo running. Every process started here is stopped by PID or
//! process group; all traffic goes to 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tend = tend_binary();
    println!(
        "tend binary: {} ({} bytes)",
        tend.display(),
        file_size(&tend)
    );
    let quick = args.iter().any(|a| a == "--quick");
    let trials = if quick { 10 } else { 20 };

    let restart = crash_to_restart(&tend, trials);
    report("crash -> restarted (first failure)", &restart, "ms");

    let clients = 100;
    let sse = sse_latency(&tend, clients, if quick { 20 } else { 100 });
    report(
        &format!("state change -> SSE event, {clients} clients"),
        &sse,
        "ms",
    );

    let rss = demo_rss(&tend);
    println!(
        "tend RSS with the demo running: {:.2} MiB",
        rss as f64 / 1048576.0
    );
}

fn tend_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TEND_BIN") {
        return PathBuf::from(path);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../target/release/tend")
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn report(what: &str, samples: &[f64], unit: &str) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        println!("{what}: no samples");
        return;
    }
    let median = sorted[sorted.len() / 2];
    println!(
        "{what}: median {median:.3} {unit} (min {:.3}, max {:.3}, n = {})",
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
}

/// A running `tend up` in its own process group, stopped on drop.
struct Tend {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Tend {
    fn start(tend: &Path, name: &str, config: &serde_json::Value) -> Tend {
        let dir = std::env::temp_dir().join(format!("tend-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut config = config.clone();
        config["listen"] = "127.0.0.1:0".into();
        config["auth_token"] = "none".into();
        config["max_sse_clients"] = 1000.into();
        config["max_connections"] = 2000.into();
        std::fs::write(dir.join("tend.json"), config.to_string()).expect("config");
        let mut child = Command::new(tend)
            .args(["up", "--config"])
            .arg(dir.join("tend.json"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("tend.log")).expect("log"))
            .process_group(0)
            .spawn()
            .expect("start tend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("url");
        let port = line
            .trim()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        Tend { child, port, dir }
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    fn wait_all_running(&self, count: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = self.get("/api/servers");
            let pids: Vec<u32> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["status"] == "running")
                .filter_map(|s| s["pid"].as_u64().map(|p| p as u32))
                .collect();
            if pids.len() == count {
                return pids;
            }
            assert!(Instant::now() < deadline, "servers did not all start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tend {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signals only the tend we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: the group is the one we created for this tend.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn sleepers(count: usize) -> serde_json::Value {
    let servers: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "id": format!("s{i}"),
                "command": ["sleep", "100000"],
                "backoff_ms": 5000,
            })
        })
        .collect();
    serde_json::json!({ "health_interval_ms": 3000, "servers": servers })
}

/// A raw SSE client on its own thread; sends (event name, data, arrival time) per event.
fn sse_client(port: u16) -> mpsc::Receiver<(String, String, Instant)> {
    let (tx, rx) = mpsc::channel();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect sse");
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .expect("send");
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if tx
                    .send((event.clone(), data.to_string(), Instant::now()))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

fn wait_event(rx: &mpsc::Receiver<(String, String, Instant)>, name: &str, id: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (event, data, at) = rx.recv_timeout(left).expect("event in time");
        if event == name && data.contains(&format!("\"id\":\"{id}\"")) {
            return at;
        }
    }
}

fn kill9(pid: u32) -> Instant {
    let at = Instant::now();
    // SAFETY: `pid` is a child of the tend this bench started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    at
}

/// kill -9 a child whose restart streak is zero, until tend reports the replacement's PID.
fn crash_to_restart(tend: &Path, trials: usize) -> Vec<f64> {
    let tend = Tend::start(tend, "restart", &sleepers(trials));
    let pids = tend.wait_all_running(trials);
    let events = sse_client(tend.port);
    let list = tend.get("/api/servers");
    let mut samples = Vec::new();
    for (i, server) in list.as_array().expect("list").iter().enumerate() {
        let id = server["id"].as_str().expect("id");
        let pid = server["pid"].as_u64().expect("pid") as u32;
        debug_assert!(pids.contains(&pid));
        let killed = kill9(pid);
        let restarted = wait_event(&events, "serverStarted", id);
        samples.push(restarted.duration_since(killed).as_secs_f64() * 1000.0);
        let _ = i;
    }
    samples
}

/// One kill -9 per server; each death's `processDied` timed at every client.
fn sse_latency(tend: &Path, clients: usize, events_wanted: usize) -> Vec<f64> {
    let tend = Tend::start(tend, "sse", &sleepers(events_wanted));
    tend.wait_all_running(events_wanted);
    let readers: Vec<_> = (0..clients).map(|_| sse_client(tend.port)).collect();
    for reader in &readers {
        // Each has its snapshot before the first change.
        let (event, _, _) = reader
            .recv_timeout(Duration::from_secs(10))
            .expect("snapshot");
        assert_eq!(event, "servers");
    }
    let list = tend.get("/api/servers");
    let mut samples = Vec::new();
    for server in list.as_array().expect("list") {
        let id = server["id"].as_str().expect("id");
        let pid = server["pid"].as_u64().expect("pid") as u32;
        let killed = kill9(pid);
        for reader in &readers {
            let at = wait_event(reader, "processDied", id);
            samples.push(at.duration_since(killed).as_secs_f64() * 1000.0);
        }
    }
    samples
}

/// tend's resident memory with the demo config's kind of servers running.
fn demo_rss(tend: &Path) -> u64 {
    let demo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.json"),
    )
    .expect("demo config");
    let mut config: serde_json::Value = serde_json::from_str(&demo).expect("demo json");
    // Move the demo's ports so a running `make run` does not collide.
    let text = config.to_string().replace("708", "718");
    config = serde_json::from_str(&text).expect("json");
    config.as_object_mut().expect("object").remove("state_file");
    config.as_object_mut().expect("object").remove("log_dir");
    let running = Tend::start(tend, "demo", &config);
    running.wait_all_running(4);
    std::thread::sleep(Duration::from_secs(2));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", running.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
