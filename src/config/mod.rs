//! The config file (docs/DESIGN.md §2): `tend.json` parsed, validated and resolved into [`Config`].
//! Every problem is reported at once with file, line and column. Runs on the main thread at
//! start-up (and for `tend check`); it never spawns or signals anything.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub mod alerts;
mod check;
mod cycles;
pub mod envfile;
pub mod health;
mod positions;
pub mod procfile;
mod servers;
mod suggest;
pub mod watch;

use check::{Checker, quoted};
pub use envfile::parse_env_file;
use positions::{Positions, syntax_error};

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
    /// Take over, on `tend up`, the orphans that are provably this config's lost processes
    /// (see `adopt.rs`) instead of leaving them to be killed.
    pub adopt_orphans: bool,
    /// Who is told of what (`alerts`), in file order; every server id in them exists.
    pub alerts: Vec<alerts::AlertRule>,
    /// In file order; ids are unique and dependencies acyclic.
    pub servers: Vec<ServerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub id: String,
    pub command: CommandSpec,
    /// Absolute; defaults to the config's folder. Not checked to exist here (a missing cwd is a
    /// spawn error, docs/DESIGN.md §8a).
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
    /// The named set of servers this one belongs to (`tend restart @backend`); validated like
    /// an id. `None`: in no group.
    pub group: Option<String>,
    /// Group RSS (bytes) over which, two rounds in a row, the server is restarted.
    pub max_memory: Option<u64>,
    /// How tend knows the server answers, beyond its ports.
    pub health: Option<health::HealthCheck>,
    /// Restart on file changes (`watch`); `None`: off.
    pub watch: Option<watch::WatchSpec>,
    /// Planned restarts: this long after each start (`restart_every`), and at the times of a
    /// cron expression (`restart_at`, local time).
    pub restart_every: Option<Duration>,
    pub restart_at: Option<crate::schedule::Cron>,
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

impl Config {
    /// A config with every docs/DESIGN.md §2 default and no servers; `base_dir` (absolute) is where
    /// the state file and log folder go.
    fn defaults(path: &Path, base_dir: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            state_file: base_dir.join(".tend/process-state.json"),
            log_dir: base_dir.join(".tend/logs"),
            health_interval: Duration::from_millis(3000),
            auth: AuthSetting::Default,
            allowed_hosts: Vec::new(),
            on_exit: OnExit::Stop,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 3,
            max_connections: 256,
            max_sse_clients: 64,
            adopt_orphans: false,
            alerts: Vec::new(),
            servers: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// A server with every docs/DESIGN.md §2 default, running `command` in `cwd`.
    fn defaults(id: &str, command: CommandSpec, cwd: &Path, line: usize) -> ServerConfig {
        ServerConfig {
            id: id.to_string(),
            command,
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
            env_file: None,
            ports: Vec::new(),
            autostart: true,
            restart: RestartPolicy::OnFailure,
            max_restarts: 10,
            backoff: Duration::from_millis(500),
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_millis(5000),
            start_timeout: Duration::from_millis(30000),
            retry_fatal: Some(Duration::from_millis(300_000)),
            depends_on: Vec::new(),
            group: None,
            max_memory: None,
            health: None,
            watch: None,
            restart_every: None,
            restart_at: None,
            line,
        }
    }
}

/// The files `locate` tries, in order, relative to the working directory (docs/DESIGN.md §1).
const CONFIG_CANDIDATES: &[&str] = &["tend.json", "Procfile"];

/// Reads, parses, validates and resolves a config file: a Procfile when its name says so (see
/// [`procfile::is_procfile`]), else JSON. Relative paths in it resolve against the file's
/// folder, made absolute from the working directory when `path` is relative.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    if procfile::is_procfile(path) {
        return procfile::load(path, None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_error(path, format!("cannot read the config file: {e}")))?;
    let base_dir = base_dir_of(path).map_err(|e| {
        file_error(
            path,
            format!("cannot resolve the config file's folder: {e}"),
        )
    })?;
    parse(&text, path, &base_dir)
}

/// A problem with a whole file (it cannot be read), reported at line 0, column 0.
fn file_error(path: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
    }])
}

/// Parses config text as if read from `path`; `base_dir` (absolute) is where relative paths
/// in it resolve. `load` without the I/O.
pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let root: Value = match serde_json::from_slice(text.as_bytes()) {
        Ok(root) => root,
        Err(e) => return Err(ConfigErrors(vec![syntax_error(text, path, &e)])),
    };
    let index = Positions::scan(text);
    let mut checker = Checker {
        index: &index,
        base_dir,
        problems: Vec::new(),
    };
    for duplicate in &index.duplicates {
        checker.fail(
            duplicate.at,
            format!(
                "key {} appears twice in this object (first at {}:{}); only the last one would count",
                quoted(&duplicate.key),
                duplicate.first.line,
                duplicate.first.column
            ),
        );
    }
    let config = checker.config(&root, path);
    if checker.problems.is_empty() {
        return Ok(config);
    }
    // Stable, so problems found at one spot keep the order they were found in.
    checker.problems.sort_by_key(|problem| problem.at);
    Err(ConfigErrors(
        checker
            .problems
            .into_iter()
            .map(|problem| ConfigError {
                file: path.to_path_buf(),
                line: problem.at.line,
                column: problem.at.column,
                message: problem.message,
            })
            .collect(),
    ))
}

/// Finds the config file: `explicit` (from `--config`) if given, else the first candidate
/// that exists in the working directory.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    locate_in(Path::new("."), explicit)
}

fn locate_in(dir: &Path, explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        // Not checked here: `load` reports a missing file with its path and the OS reason.
        return Ok(path.to_path_buf());
    }
    let candidates: Vec<PathBuf> = CONFIG_CANDIDATES
        .iter()
        .map(|name| dir.join(name))
        .collect();
    if let Some(found) = candidates.iter().find(|candidate| candidate.exists()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(format!(
        "no config: looked for {} (give one with --config FILE)",
        looked.join(", ")
    ))
}

/// The absolute folder a config file's relative paths resolve against. Lexical only: `..`
/// and symlinks are left for the OS, so a symlinked folder keeps the name the user gave.
fn base_dir_of(path: &Path) -> io::Result<PathBuf> {
    let parent = path.parent().unwrap_or(Path::new(""));
    let dir = if parent.is_absolute() {
        parent.to_path_buf()
    } else {
        std::env::current_dir()?.join(parent)
    };
    // Collecting components drops `.` segments and trailing slashes.
    Ok(dir.components().collect())
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{base_dir_of, load, locate_in};
    use crate::test_support::TempDir;

    #[test]
    fn load_reads_the_file_and_resolves_against_its_folder() {
        let dir = TempDir::new("config-load");
        let file = dir.path().join("tend.json");
        std::fs::write(
            &file,
            r#"{"state_file": "st.json", "servers": [{"id": "a", "command": "x", "cwd": "sub"}]}"#,
        )
        .expect("write config");
        let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.path, file);
        assert_eq!(config.base_dir, dir.path());
        assert_eq!(config.state_file, dir.path().join("st.json"));
        assert_eq!(config.servers[0].cwd, dir.path().join("sub"));
    }

    #[test]
    fn load_reports_a_missing_file_at_line_zero() {
        let dir = TempDir::new("config-missing");
        let file = dir.path().join("nope.json");
        let errors = load(&file).expect_err("missing file");
        assert_eq!(errors.0.len(), 1);
        let error = &errors.0[0];
        assert_eq!((error.line, error.column), (0, 0));
        assert_eq!(error.file, file);
        assert!(
            error.message.starts_with("cannot read the config file: "),
            "{}",
            error.message
        );
        assert_eq!(
            errors.to_string(),
            format!("{}:0:0: {}", file.display(), error.message)
        );
    }

    #[test]
    fn relative_config_paths_get_an_absolute_base_dir() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(base_dir_of(Path::new("tend.json")).expect("base"), cwd);
        assert_eq!(
            base_dir_of(Path::new("./conf/tend.json")).expect("base"),
            cwd.join("conf")
        );
        assert_eq!(
            base_dir_of(Path::new("/etc/tend/tend.json")).expect("base"),
            Path::new("/etc/tend")
        );
    }

    #[test]
    fn locate_prefers_explicit_then_tend_json_then_procfile() {
        // docs/DESIGN.md §1: --config, else ./tend.json, else ./Procfile, else an error naming both.
        let dir = TempDir::new("config-locate");
        let given = Path::new("elsewhere/x.json");
        assert_eq!(locate_in(dir.path(), Some(given)), Ok(given.to_path_buf()));
        assert_eq!(
            locate_in(dir.path(), None),
            Err(format!(
                "no config: looked for {}, {} (give one with --config FILE)",
                dir.path().join("tend.json").display(),
                dir.path().join("Procfile").display()
            ))
        );
        std::fs::write(dir.path().join("Procfile"), "web: run").expect("write");
        assert_eq!(locate_in(dir.path(), None), Ok(dir.path().join("Procfile")));
        std::fs::write(dir.path().join("tend.json"), "{}").expect("write");
        assert_eq!(
            locate_in(dir.path(), None),
            Ok(dir.path().join("tend.json"))
        );
    }

    #[test]
    fn locate_looks_in_the_working_directory() {
        // Whether the test's working directory holds a config is not ours to decide.
        let expected = if Path::new("tend.json").exists() {
            Ok(PathBuf::from("./tend.json"))
        } else if Path::new("Procfile").exists() {
            Ok(PathBuf::from("./Procfile"))
        } else {
            Err(
                "no config: looked for ./tend.json, ./Procfile (give one with --config FILE)"
                    .to_string(),
            )
        };
        assert_eq!(super::locate(None), expected);
    }

    #[test]
    fn load_reads_a_procfile_by_its_name_with_the_env_file_beside_it() {
        let dir = TempDir::new("config-load-procfile");
        let file = dir.path().join("Procfile.dev");
        std::fs::write(&file, "web: run\nworker: work\n").expect("write Procfile");
        std::fs::write(dir.path().join(".env"), "A=1\n").expect("write .env");
        let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.base_dir, dir.path());
        assert_eq!(
            config.state_file,
            dir.path().join(".tend/process-state.json")
        );
        let ids: Vec<&str> = config.servers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["web", "worker"]);
        assert_eq!(config.servers[1].env_file, Some(dir.path().join(".env")));
        // A broken .env is reported at its own line and column.
        std::fs::write(dir.path().join(".env"), "A=1\nB=\"x\n").expect("write .env");
        assert_eq!(
            load(&file).expect_err("bad .env").to_string(),
            format!(
                "{}:2:3: unterminated double quote",
                dir.path().join(".env").display()
            )
        );
    }
}
