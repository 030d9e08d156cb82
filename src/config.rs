//! The config file (DESIGN §2): `tend.json` parsed, validated and resolved into [`Config`].
//! Every problem is reported at once with file, line and column. Runs on the main thread at
//! start-up (and for `tend check`); it never spawns or signals anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a server's command is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    /// Run through `/bin/sh -c`.
    Shell(String),
    /// Exec'd directly, no shell; never empty.
    Exec(Vec<String>),
}

impl CommandSpec {
    /// The command as a person reads it (the API's `command` field).
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Shell(line) => line.clone(),
            CommandSpec::Exec(argv) => argv.join(" "),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Stop every server when tend exits (default).
    Stop,
    /// Leave them running; the next `tend up` re-adopts them.
    Keep,
}

/// The `auth_token` key: absent/null, the literal "none", or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSetting {
    /// Not set: use TEND_TOKEN or a generated token file.
    Default,
    /// `"none"`: no auth (allowed on loopback only).
    Disabled,
    Token(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file as given (for messages).
    pub path: PathBuf,
    /// The folder relative paths in the file resolve against.
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    pub state_file: PathBuf,
    pub log_dir: PathBuf,
    pub health_interval: Duration,
    pub auth: AuthSetting,
    pub allowed_hosts: Vec<String>,
    pub on_exit: OnExit,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub max_connections: usize,
    pub max_sse_clients: usize,
    /// In file order; ids are unique and dependencies acyclic.
    pub servers: Vec<ServerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub id: String,
    pub command: CommandSpec,
    /// Absolute; defaults to the config's folder. Not checked to exist here (a missing cwd is a
    /// spawn error, DESIGN §8a).
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Absolute; read at each spawn so edits apply on restart.
    pub env_file: Option<PathBuf>,
    pub ports: Vec<u16>,
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub max_restarts: u32,
    pub backoff: Duration,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
    /// `None` when `retry_fatal_ms` is 0 (never retry a fatal server).
    pub retry_fatal: Option<Duration>,
    pub depends_on: Vec<String>,
    /// 1-based line of the server's object in the file, for messages.
    pub line: usize,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// All problems found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

pub fn load(_path: &Path) -> Result<Config, ConfigErrors> {
    unimplemented!("config::load")
}

/// Parses an env file (`KEY=value` lines) into ordered pairs.
pub fn parse_env_file(_text: &str) -> Result<Vec<(String, String)>, String> {
    unimplemented!("config::parse_env_file")
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
