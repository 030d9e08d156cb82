//! The two managers under test, each started fresh in its own temp folder and stopped by PID
//! when dropped (also on a panic): `tend up` and `supervisord -n`.
//!
//! Neither is put in a process group of its own, so a Ctrl-C at the terminal reaches them too
//! and each stops its children itself. On drop: SIGTERM to the manager, a bounded wait, then
//! SIGKILL to the process group of every child it still has (each child leads its own group
//! under both managers) and to the manager.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;
use crate::procs;

/// One supervised program, described once for both managers.
#[derive(Clone)]
pub struct Program {
    pub name: String,
    pub argv: Vec<String>,
    pub port: Option<u16>,
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tend-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Stops a manager and whatever it left behind; used by both Drop impls.
fn stop_manager(child: &mut Child, dir: &Path, grace: Duration) {
    let pid = child.id();
    let kids = procs::children_of(pid);
    // SAFETY: signals only the manager this bench started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for kid in kids {
        if procs::stat(kid).is_some() {
            procs::kill_group(kid, libc::SIGKILL);
        }
    }
    if !exited {
        procs::kill9(pid);
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A running `tend up`.
pub struct TendRun {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub pid: u32,
}

impl TendRun {
    /// `RUST_LOG` is `log` (tend's log goes to `<dir>/tend.log`).
    pub fn start(tend: &Path, name: &str, config: &serde_json::Value, log: &str) -> TendRun {
        let dir = temp_dir(&format!("tend-{name}"));
        let mut config = config.clone();
        config["listen"] = "127.0.0.1:0".into();
        config["auth_token"] = "none".into();
        config["max_sse_clients"] = 1000.into();
        config["max_connections"] = 2000.into();
        std::fs::write(dir.join("tend.json"), config.to_string()).expect("config");
        let mut child = Command::new(tend)
            .args(["up", "--config"])
            .arg(dir.join("tend.json"))
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("tend.log")).expect("log"))
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
        let pid = child.id();
        TendRun {
            child,
            port,
            dir,
            pid,
        }
    }

    pub fn config(programs: &[Program], autostart: bool) -> serde_json::Value {
        let servers: Vec<serde_json::Value> = programs
            .iter()
            .map(|p| {
                let mut s = serde_json::json!({
                    "id": p.name,
                    "command": p.argv,
                    "autostart": autostart,
                    "stop_timeout_ms": 5000,
                });
                if let Some(port) = p.port {
                    s["ports"] = serde_json::json!([port]);
                }
                s
            })
            .collect();
        serde_json::json!({ "health_interval_ms": 3000, "servers": servers })
    }

    /// [`TendRun::config`] for a phase that measures an idle window: a 5 s start grace
    /// (`start_timeout_ms`) makes each listener's one start-grace check (a wake-up each, 30 s
    /// after the start by default) fall before the window.
    pub fn idle_config(programs: &[Program], autostart: bool) -> serde_json::Value {
        let mut config = TendRun::config(programs, autostart);
        for server in config["servers"].as_array_mut().into_iter().flatten() {
            server["start_timeout_ms"] = 5000.into();
        }
        config
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let reply = http::request(self.port, "GET", path, None).expect("GET");
        serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("tend.log")).unwrap_or_default()
    }

    /// SIGTERM and wait; the exit status, if it came within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signals only the tend this bench started.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for TendRun {
    fn drop(&mut self) {
        stop_manager(&mut self.child, &self.dir, Duration::from_secs(20));
    }
}

/// A running `supervisord -n` with an inet XML-RPC server on 127.0.0.1.
pub struct SupdRun {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub pid: u32,
}

/// The settings every supervisord program gets, chosen to match tend's behaviour: restart on
/// any death at once (`startsecs=0` counts the process as started the moment it is spawned, as
/// tend does for a server without ports), SIGTERM to the whole group with 5 s before SIGKILL
/// (tend's `stop_timeout_ms` 5000, which also signals the group), one log file per program.
pub const SUPD_PROGRAM_SETTINGS: &str = "autorestart=true\nstartsecs=0\nstartretries=10\n\
stopsignal=TERM\nstopwaitsecs=5\nstopasgroup=true\nkillasgroup=true\nredirect_stderr=true\n";

impl SupdRun {
    pub fn start(supervisord: &Path, name: &str, programs: &[Program], autostart: bool) -> SupdRun {
        let dir = temp_dir(&format!("supd-{name}"));
        std::fs::create_dir_all(dir.join("logs")).expect("logs");
        let port = free_port();
        let d = dir.display();
        let mut conf = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
childlogdir={d}/logs\nminfds=8192\nloglevel=info\n\n\
[inet_http_server]\nport=127.0.0.1:{port}\n\n\
[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        );
        for p in programs {
            conf.push_str(&format!(
                "[program:{}]\ncommand={}\nautostart={autostart}\n{SUPD_PROGRAM_SETTINGS}stdout_logfile={d}/logs/{}.log\n\n",
                p.name,
                p.argv.join(" "),
                p.name
            ));
        }
        std::fs::write(dir.join("supervisord.conf"), conf).expect("conf");
        let child = Command::new(supervisord)
            .args(["-n", "-c"])
            .arg(dir.join("supervisord.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("stderr"))
            .spawn()
            .expect("start supervisord");
        let pid = child.id();
        let mut run = SupdRun {
            child,
            port,
            dir,
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(reply) = http::xmlrpc(port, "supervisor.getState", "")
                && reply.body.contains("RUNNING")
            {
                break;
            }
            assert!(
                run.is_alive(),
                "supervisord exited: see {}",
                run.dir.display()
            );
            assert!(Instant::now() < deadline, "supervisord did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        run
    }

    pub fn rpc(&self, method: &str, params: &str) -> http::Reply {
        http::xmlrpc(self.port, method, params).expect("XML-RPC")
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for SupdRun {
    fn drop(&mut self) {
        stop_manager(&mut self.child, &self.dir, Duration::from_secs(60));
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `count` consecutive free loopback ports below the ephemeral range, from `from` up.
pub fn free_port_range(from: u16, count: u16) -> u16 {
    let mut base = from;
    loop {
        let taken = (base..base + count)
            .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        match taken {
            Some(port) => base = port + 1,
            None => return base,
        }
    }
}
