//! The config file (docs/DESIGN.md §2): `tend.json` parsed, validated and resolved into [`Config`].
//! Every problem is reported at once with file, line and column. Runs on the main thread at
//! start-up (and for `tend check`); it never spawns or signals anything.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::model::parse_signal;

pub mod alerts;
pub mod health;
pub mod procfile;

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
            line,
        }
    }
}

/// The longest a `*_ms` value may be: anything longer is almost surely a unit mistake.
const DAY_MS: u64 = 86_400_000;

/// The largest `log_max_bytes`: past this a log is not bounded in any useful sense.
const TIB: u64 = 1 << 40;

const TOP_KEYS: &[&str] = &[
    "listen",
    "state_file",
    "log_dir",
    "health_interval_ms",
    "auth_token",
    "allowed_hosts",
    "on_exit",
    "log_max_bytes",
    "log_keep",
    "max_connections",
    "max_sse_clients",
    "adopt_orphans",
    "alerts",
    "servers",
];

const SERVER_KEYS: &[&str] = &[
    "id",
    "command",
    "cwd",
    "env",
    "env_file",
    "ports",
    "autostart",
    "restart",
    "max_restarts",
    "backoff_ms",
    "stop_signal",
    "stop_timeout_ms",
    "start_timeout_ms",
    "retry_fatal_ms",
    "depends_on",
    "group",
    "max_memory",
    "health",
];

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
    let root: Value = match serde_json::from_str(text) {
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

/// Parses an env file (`KEY=value` lines) into ordered pairs; an error is `line N: reason`.
///
/// Blank lines and `#` comments are skipped and `export ` is optional. A value is bare
/// (trailing space and a ` #` comment dropped), single-quoted (literal) or double-quoted
/// (`\n`, `\t`, `\r`, `\"`, `\\` and `\$` escapes; any other backslash is kept, as in sh).
/// Later pairs win when applied in order. README "For Procfile users" lists where this reads
/// a line differently from honcho, and why.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    parse_env_entries(text)
        .map(|entries| entries.into_iter().map(|e| (e.key, e.value)).collect())
        .map_err(|e| format!("line {}: {}", e.line, e.message))
}

/// One `KEY=value` line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// 1-based line and character column of the value, for messages about it.
    pub line: usize,
    pub column: usize,
}

/// The first problem in an env file: 1-based line and character column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// [`parse_env_file`] with positions, for `tend check` (file:line:col).
pub fn parse_env_entries(text: &str) -> Result<Vec<EnvEntry>, EnvFileError> {
    let mut entries = Vec::new();
    for (number, full) in text.lines().enumerate() {
        let number = number + 1;
        // Character column of a byte offset into `full`.
        let column = |at: usize| full[..at].chars().count() + 1;
        let fail = |at: usize, message: String| EnvFileError {
            line: number,
            column: column(at),
            message,
        };
        let line = full.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let line_at = full.len() - line.len();
        let Some((key, raw)) = line.split_once('=') else {
            return Err(fail(
                line_at,
                "expected KEY=value, found no '='".to_string(),
            ));
        };
        let key = key.trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('\0') {
            return Err(fail(
                line_at,
                format!("{} is not a valid variable name", quoted(key)),
            ));
        }
        let raw_at = line_at + line.len() - raw.len();
        let value_at = raw_at + (raw.len() - raw.trim_start().len());
        let value = env_value(raw).map_err(|(at, why)| fail(raw_at + at, why))?;
        if value.contains('\0') {
            return Err(fail(value_at, "the value contains a NUL byte".to_string()));
        }
        entries.push(EnvEntry {
            key: key.to_string(),
            value,
            line: number,
            column: column(value_at),
        });
    }
    Ok(entries)
}

/// The value part of one env-file line (everything after the first `=`). An error carries
/// the byte offset in `raw` it is about.
fn env_value(raw: &str) -> Result<String, (usize, String)> {
    let rest = raw.trim_start();
    let rest_at = raw.len() - rest.len();
    let (value, after) = if let Some(body) = rest.strip_prefix('\'') {
        let Some(end) = body.find('\'') else {
            return Err((rest_at, "unterminated single quote".to_string()));
        };
        (body[..end].to_string(), &body[end + 1..])
    } else if let Some(body) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, e @ ('"' | '\\' | '$'))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                },
                c => value.push(c),
            }
        }
        let Some(end) = end else {
            return Err((rest_at, "unterminated double quote".to_string()));
        };
        (value, &body[end..])
    } else {
        // A `#` starts a comment only after whitespace, so `a#b` and URLs with fragments stay.
        let bytes = raw.as_bytes();
        let cut = (0..bytes.len())
            .find(|&i| bytes[i] == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace())
            .unwrap_or(raw.len());
        return Ok(raw[..cut].trim().to_string());
    };
    let trimmed = after.trim_start();
    if !trimmed.is_empty() && !trimmed.starts_with('#') {
        let at = raw.len() - trimmed.len();
        return Err((
            at,
            format!(
                "unexpected text after the closing quote: {}",
                quoted(trimmed)
            ),
        ));
    }
    Ok(value)
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

fn syntax_error(text: &str, path: &Path, error: &serde_json::Error) -> ConfigError {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full);
    ConfigError {
        file: path.to_path_buf(),
        line: error.line(),
        column: char_column(text, error.line(), error.column()),
        message: format!("invalid JSON: {reason}"),
    }
}

/// serde_json counts columns in bytes; editors count characters.
fn char_column(text: &str, line: usize, byte_column: usize) -> usize {
    if line == 0 || byte_column == 0 {
        return byte_column;
    }
    let Some(line_text) = text.split('\n').nth(line - 1) else {
        return byte_column;
    };
    let bytes = line_text.as_bytes();
    let before = &bytes[..(byte_column - 1).min(bytes.len())];
    before.iter().filter(|&&b| !is_continuation(b)).count() + 1
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// A 1-based line and character column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: usize,
    column: usize,
}

struct DuplicateKey {
    key: String,
    at: Pos,
    first: Pos,
}

/// Where each key and value starts, by JSON path (`servers[1].ports[0]`), because
/// `serde_json::Value` keeps no positions. Built only from text serde_json accepted, so the
/// scanner can be simple; on anything unexpected it stops and the index is just shorter.
#[derive(Default)]
struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    /// serde_json silently keeps the last of repeated keys; a typo-proof config should not.
    duplicates: Vec<DuplicateKey>,
}

impl Positions {
    fn scan(text: &str) -> Positions {
        let mut scanner = Scanner {
            text,
            at: 0,
            pos: Pos { line: 1, column: 1 },
            out: Positions::default(),
        };
        let _ = scanner.value(String::new());
        scanner.out
    }
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
    pos: Pos,
    out: Positions,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn bump(&mut self) {
        let Some(byte) = self.peek() else { return };
        self.at += 1;
        if byte == b'\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else if !is_continuation(byte) {
            self.pos.column += 1;
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.bump())
    }

    fn value(&mut self, path: String) -> Option<()> {
        self.skip_whitespace();
        let start = self.pos;
        let byte = self.peek()?;
        let result = match byte {
            b'{' => self.object(&path),
            b'[' => self.array(&path),
            b'"' => self.string().map(drop),
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.bump();
                }
                Some(())
            }
        };
        self.out.values.insert(path, start);
        result
    }

    fn object(&mut self, path: &str) -> Option<()> {
        self.bump();
        self.skip_whitespace();
        if self.expect(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            let key_at = self.pos;
            let key = self.string()?;
            let child = child_path(path, &key);
            if let Some(&first) = self.out.keys.get(&child) {
                self.out.duplicates.push(DuplicateKey {
                    key,
                    at: key_at,
                    first,
                });
            }
            self.out.keys.insert(child.clone(), key_at);
            self.skip_whitespace();
            self.expect(b':')?;
            self.value(child)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.bump(),
                b'}' => return self.expect(b'}'),
                _ => return None,
            }
        }
    }

    fn array(&mut self, path: &str) -> Option<()> {
        self.bump();
        self.skip_whitespace();
        if self.expect(b']').is_some() {
            return Some(());
        }
        for index in 0.. {
            self.value(format!("{path}[{index}]"))?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.bump(),
                b']' => return self.expect(b']'),
                _ => return None,
            }
        }
        None
    }

    /// Consumes a string literal and returns it decoded, so keys match serde_json's.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => {
                    self.bump();
                    self.bump();
                }
                b'"' => {
                    self.bump();
                    break;
                }
                _ => self.bump(),
            }
        }
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A value being checked: where it is, and how messages name it.
struct Field {
    /// The JSON path, for looking up positions.
    path: String,
    /// The key as the user wrote it, with any index: `ports[1]`.
    name: String,
    /// Where it lives, for messages: "" at the top level, " in server 'web'".
    place: String,
}

impl Field {
    fn new(parent: &str, key: &str, place: &str) -> Field {
        Field {
            path: child_path(parent, key),
            name: key.to_string(),
            place: place.to_string(),
        }
    }

    fn index(&self, index: usize) -> Field {
        Field {
            path: format!("{}[{index}]", self.path),
            name: format!("{}[{index}]", self.name),
            place: self.place.clone(),
        }
    }

    fn label(&self) -> String {
        format!("{}{}", self.name, self.place)
    }
}

struct Problem {
    at: Pos,
    message: String,
}

/// A server as far as it could be read, kept for the checks across servers.
struct Draft {
    config: ServerConfig,
    at: Pos,
    /// Where each `depends_on` entry is written, beside `config.depends_on`: a bad entry is
    /// reported at itself, not at its server (issue 10).
    depends_at: Vec<Pos>,
    /// "server 'web'", or "servers[2]" when the id is missing or unusable.
    name: String,
    has_valid_id: bool,
}

enum Integer {
    Whole(u64),
    Negative,
    Fraction,
    TooLarge,
}

fn classify(number: &serde_json::Number) -> Integer {
    if let Some(n) = number.as_u64() {
        return Integer::Whole(n);
    }
    if number.is_i64() {
        return Integer::Negative;
    }
    let f = number.as_f64().unwrap_or(f64::NAN);
    if f < 0.0 {
        Integer::Negative
    } else if f.fract() != 0.0 {
        Integer::Fraction
    } else if f >= u64::MAX as f64 {
        Integer::TooLarge
    } else {
        // `5.0` or `1e3`: whole, so take it rather than nag.
        Integer::Whole(f as u64)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A user's text in a message, quoted, with control characters escaped so a message stays
/// one line.
fn quoted(text: &str) -> String {
    format!("'{}'", text.escape_debug())
}

fn is_valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

/// Optimal string alignment distance, so a swapped pair ("prots") costs one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The candidate a typo most likely meant, if any is close enough to be worth suggesting.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

fn join_choices(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

struct Checker<'a> {
    index: &'a Positions,
    base_dir: &'a Path,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn value_at(&self, path: &str) -> Pos {
        self.index.values.get(path).copied().unwrap_or_default()
    }

    fn key_at(&self, path: &str) -> Pos {
        self.index.keys.get(path).copied().unwrap_or_default()
    }

    fn fail(&mut self, at: Pos, message: String) {
        self.problems.push(Problem { at, message });
    }

    fn fail_field(&mut self, field: &Field, problem: impl std::fmt::Display) {
        let at = self.value_at(&field.path);
        self.fail(at, format!("{}: {problem}", field.label()));
    }

    fn wrong_type<T>(&mut self, field: &Field, expected: &str, value: &Value) -> Option<T> {
        self.fail_field(field, format!("expected {expected}, found {}", kind(value)));
        None
    }

    fn config(&mut self, root: &Value, path: &Path) -> Config {
        let mut config = Config::defaults(path, self.base_dir);
        let Some(object) = root.as_object() else {
            let at = self.value_at("");
            self.fail(
                at,
                format!("the config must be a JSON object, found {}", kind(root)),
            );
            return config;
        };
        let mut alert_rules = Vec::new();
        for (key, value) in object {
            let field = Field::new("", key, "");
            match key.as_str() {
                "alerts" => alert_rules = self.alerts(&field, value),
                "listen" => {
                    if let Some(addr) = self.listen(&field, value) {
                        config.listen = addr;
                    }
                }
                "state_file" => {
                    if let Some(file) = self.path(&field, value) {
                        config.state_file = file;
                    }
                }
                "log_dir" => {
                    if let Some(dir) = self.path(&field, value) {
                        config.log_dir = dir;
                    }
                }
                "health_interval_ms" => {
                    if let Some(ms) = self.integer(&field, value, 100, DAY_MS) {
                        config.health_interval = Duration::from_millis(ms);
                    }
                }
                "auth_token" => {
                    if let Some(auth) = self.auth(&field, value) {
                        config.auth = auth;
                    }
                }
                "allowed_hosts" => {
                    if let Some(hosts) = self.allowed_hosts(&field, value) {
                        config.allowed_hosts = hosts;
                    }
                }
                "on_exit" => match self.choice(&field, value, &["stop", "keep"]) {
                    Some("keep") => config.on_exit = OnExit::Keep,
                    Some(_) => config.on_exit = OnExit::Stop,
                    None => {}
                },
                "log_max_bytes" => {
                    if let Some(bytes) = self.integer(&field, value, 4096, TIB) {
                        config.log_max_bytes = bytes;
                    }
                }
                "log_keep" => {
                    if let Some(keep) = self.integer(&field, value, 1, 100) {
                        config.log_keep = keep as u32;
                    }
                }
                "max_connections" => {
                    if let Some(n) = self.integer(&field, value, 1, 65536) {
                        config.max_connections = n as usize;
                    }
                }
                "max_sse_clients" => {
                    if let Some(n) = self.integer(&field, value, 1, 65536) {
                        config.max_sse_clients = n as usize;
                    }
                }
                "adopt_orphans" => {
                    if let Some(adopt) = self.boolean(&field, value) {
                        config.adopt_orphans = adopt;
                    }
                }
                "servers" => config.servers = self.servers(&field, value),
                _ => self.unknown_key(&field.path, key, "", TOP_KEYS),
            }
        }
        let ids: Vec<&str> = config.servers.iter().map(|s| s.id.as_str()).collect();
        self.check_alert_servers(&alert_rules, &ids);
        config.alerts = alert_rules.into_iter().map(|draft| draft.rule).collect();
        if !object.contains_key("servers") {
            let at = self.value_at("");
            self.fail(
                at,
                "missing required key 'servers' (an array of server objects; it may be empty)"
                    .to_string(),
            );
        }
        config
    }

    fn unknown_key(&mut self, path: &str, key: &str, place: &str, allowed: &[&str]) {
        let mut message = format!("unknown key {}{place}", quoted(key));
        if place.is_empty() && SERVER_KEYS.contains(&key) {
            message.push_str(&format!(
                "; '{key}' belongs inside a server object in 'servers'"
            ));
        } else if let Some(suggestion) = closest(key, allowed.iter().copied()) {
            message.push_str(&format!("; did you mean '{suggestion}'?"));
        } else {
            message.push_str(&format!(" (allowed keys: {})", allowed.join(", ")));
        }
        let at = self.key_at(path);
        self.fail(at, message);
    }

    fn integer(&mut self, field: &Field, value: &Value, min: u64, max: u64) -> Option<u64> {
        let Value::Number(number) = value else {
            let hint = match value {
                Value::String(s) if s.trim().parse::<u64>().is_ok() => {
                    format!(" (write {} without quotes)", s.trim())
                }
                _ => String::new(),
            };
            self.fail_field(
                field,
                format!("expected an integer, found {}{hint}", kind(value)),
            );
            return None;
        };
        let limit = match max {
            DAY_MS => format!("{max} (one day)"),
            TIB => format!("{max} (1 TiB)"),
            _ => max.to_string(),
        };
        let problem = match classify(number) {
            Integer::Whole(n) if n < min => format!("must be at least {min}, found {n}"),
            Integer::Whole(n) if n > max => format!("must be at most {limit}, found {n}"),
            Integer::Whole(n) => return Some(n),
            Integer::Negative => format!("must not be negative, found {number}"),
            Integer::Fraction => format!("must be a whole number, found {number}"),
            // Past u64 serde_json keeps only an f64, whose rendering would not be what was written.
            Integer::TooLarge => format!("must be at most {limit}"),
        };
        self.fail_field(field, problem);
        None
    }

    fn string<'v>(&mut self, field: &Field, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) if s.contains('\0') => {
                self.fail_field(field, "must not contain a NUL character");
                None
            }
            Value::String(s) => Some(s),
            other => self.wrong_type(field, "a string", other),
        }
    }

    fn boolean(&mut self, field: &Field, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => self.wrong_type(field, "true or false", other),
        }
    }

    fn choice<'c>(&mut self, field: &Field, value: &Value, choices: &[&'c str]) -> Option<&'c str> {
        let text = self.string(field, value)?;
        if let Some(&choice) = choices.iter().find(|&&c| c == text) {
            return Some(choice);
        }
        self.fail_field(
            field,
            format!("must be {}, found {}", join_choices(choices), quoted(text)),
        );
        None
    }

    /// A path from the file, resolved against the file's folder.
    fn path(&mut self, field: &Field, value: &Value) -> Option<PathBuf> {
        let text = self.string(field, value)?;
        if text.is_empty() {
            self.fail_field(field, "must not be empty");
            return None;
        }
        Some(self.base_dir.join(text).components().collect())
    }

    fn listen(&mut self, field: &Field, value: &Value) -> Option<SocketAddr> {
        let text = self.string(field, value)?;
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.fail_field(
                    field,
                    format!(
                        "must be an IP address and port such as \"127.0.0.1:7070\" or \
                         \"[::1]:7070\" (host names are not accepted), found {}",
                        quoted(text)
                    ),
                );
                None
            }
        }
    }

    fn auth(&mut self, field: &Field, value: &Value) -> Option<AuthSetting> {
        let token = match value {
            Value::Null => return Some(AuthSetting::Default),
            Value::String(token) => token,
            other => return self.wrong_type(field, "a string or null", other),
        };
        let problem = if token == "none" {
            return Some(AuthSetting::Disabled);
        } else if token.is_empty() {
            "must not be empty (use null for a generated token, or \"none\" to turn auth off)"
        } else if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
            // The token travels in an Authorization header and a cookie.
            "must not contain spaces or control characters"
        } else {
            return Some(AuthSetting::Token(token.clone()));
        };
        self.fail_field(field, problem);
        None
    }

    fn allowed_hosts(&mut self, field: &Field, value: &Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            return self.wrong_type(field, "an array of host names", value);
        };
        let mut hosts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(host) = self.string(&entry, item) else {
                continue;
            };
            let problem = if host.is_empty() || host.contains(char::is_whitespace) {
                "must be a host name without spaces, such as \"example.com\"".to_string()
            } else if host.contains("://") {
                format!("is a URL; give only its host name, found {}", quoted(host))
            } else if host.contains('/') {
                format!("must be a host name without '/', found {}", quoted(host))
            } else if let Some(inner) = host.strip_prefix('[') {
                match inner.strip_suffix(']') {
                    Some(ip) if ip.parse::<Ipv6Addr>().is_ok() => {
                        hosts.push(host.to_string());
                        continue;
                    }
                    _ => format!(
                        "must be a bracketed IPv6 address such as \"[::1]\", without a port, \
                         found {}",
                        quoted(host)
                    ),
                }
            } else if host.parse::<Ipv6Addr>().is_ok() {
                format!("write an IPv6 address in brackets, as in the Host header: \"[{host}]\"")
            } else if host.contains(':') {
                format!("must be a host name without a port, found {}", quoted(host))
            } else {
                hosts.push(host.to_string());
                continue;
            };
            self.fail_field(&entry, problem);
        }
        Some(hosts)
    }

    fn servers(&mut self, field: &Field, value: &Value) -> Vec<ServerConfig> {
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of server objects", value);
            return Vec::new();
        };
        let drafts: Vec<Draft> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.server(&field.index(i), item))
            .collect();
        self.check_ids(&drafts);
        self.check_ports(&drafts);
        self.check_dependencies(&drafts);
        drafts.into_iter().map(|draft| draft.config).collect()
    }

    fn server(&mut self, field: &Field, value: &Value) -> Option<Draft> {
        let at = self.value_at(&field.path);
        let Value::Object(object) = value else {
            return self.wrong_type(field, "a server object", value);
        };
        let (name, has_valid_id) = match object.get("id") {
            Some(Value::String(id)) if is_valid_id(id) => (format!("server '{id}'"), true),
            _ => (field.name.clone(), false),
        };
        let place = format!(" in {name}");
        let mut config = ServerConfig::defaults(
            "",
            CommandSpec::Shell(String::new()),
            self.base_dir,
            at.line,
        );
        let mut depends_at = Vec::new();
        let mut health = None;
        for (key, value) in object {
            let f = Field::new(&field.path, key, &place);
            match key.as_str() {
                "id" => {
                    if let Some(id) = self.string(&f, value) {
                        if is_valid_id(id) {
                            config.id = id.to_string();
                        } else {
                            // An id problem concerns the whole server (docs/DESIGN.md §2).
                            self.fail(
                                at,
                                format!(
                                    "{}: {} is not a valid id (use 1 to 64 letters, digits, \
                                     '.', '_' or '-', starting with a letter or digit)",
                                    f.label(),
                                    quoted(id)
                                ),
                            );
                        }
                    }
                }
                "command" => {
                    if let Some(command) = self.command(&f, value) {
                        config.command = command;
                    }
                }
                "cwd" => {
                    if let Some(cwd) = self.path(&f, value) {
                        config.cwd = cwd;
                    }
                }
                "env" => config.env = self.env(&f, value),
                "env_file" => {
                    if !value.is_null() {
                        config.env_file = self.path(&f, value);
                    }
                }
                "ports" => config.ports = self.ports(&f, value),
                "autostart" => {
                    if let Some(autostart) = self.boolean(&f, value) {
                        config.autostart = autostart;
                    }
                }
                "restart" => match self.choice(&f, value, &["no", "on-failure", "always"]) {
                    Some("no") => config.restart = RestartPolicy::No,
                    Some("always") => config.restart = RestartPolicy::Always,
                    Some(_) => config.restart = RestartPolicy::OnFailure,
                    None => {}
                },
                "max_restarts" => {
                    if let Some(n) = self.integer(&f, value, 0, u64::from(u32::MAX)) {
                        config.max_restarts = n as u32;
                    }
                }
                "backoff_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.backoff = Duration::from_millis(ms);
                    }
                }
                "stop_signal" => {
                    if let Some(signal) = self.signal(&f, value) {
                        config.stop_signal = signal;
                    }
                }
                "stop_timeout_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.stop_timeout = Duration::from_millis(ms);
                    }
                }
                "start_timeout_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.start_timeout = Duration::from_millis(ms);
                    }
                }
                "retry_fatal_ms" => {
                    if let Some(ms) = self.integer(&f, value, 0, DAY_MS) {
                        config.retry_fatal = (ms > 0).then(|| Duration::from_millis(ms));
                    }
                }
                "depends_on" => {
                    (config.depends_on, depends_at) = self.depends_on(&f, value).into_iter().unzip()
                }
                "group" => config.group = self.group(&f, value),
                "max_memory" => config.max_memory = self.max_memory(&f, value),
                // Read once the ports are known: a path is probed on the first one.
                "health" => health = Some((f, value)),
                _ => self.unknown_key(&f.path, key, &place, SERVER_KEYS),
            }
        }
        if let Some((f, value)) = health {
            config.health = self.health(&f, value, &config.ports);
        }
        for required in ["id", "command"] {
            if !object.contains_key(required) {
                self.fail(at, format!("{name}: missing required key '{required}'"));
            }
        }
        Some(Draft {
            config,
            at,
            depends_at,
            name,
            has_valid_id,
        })
    }

    fn command(&mut self, field: &Field, value: &Value) -> Option<CommandSpec> {
        let items = match value {
            Value::String(_) => {
                let line = self.string(field, value)?;
                if line.trim().is_empty() {
                    self.fail_field(field, "must not be empty");
                    return None;
                }
                return Some(CommandSpec::Shell(line.to_string()));
            }
            Value::Array(items) => items,
            other => return self.wrong_type(field, "a string or an array of strings", other),
        };
        if items.is_empty() {
            self.fail_field(
                field,
                "must not be an empty array (give at least the program)",
            );
            return None;
        }
        let mut argv = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            match self.string(&entry, item) {
                Some("") if i == 0 => self.fail_field(&entry, "the program must not be empty"),
                Some(arg) => argv.push(arg.to_string()),
                None => {}
            }
        }
        (argv.len() == items.len()).then_some(CommandSpec::Exec(argv))
    }

    fn env(&mut self, field: &Field, value: &Value) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Value::Object(object) = value else {
            self.wrong_type::<()>(field, "an object of names to strings", value);
            return env;
        };
        for (name, value) in object {
            let entry = Field {
                path: child_path(&field.path, name),
                name: format!("{}.{name}", field.name),
                place: field.place.clone(),
            };
            if !is_env_name(name) {
                let at = self.key_at(&entry.path);
                self.fail(
                    at,
                    format!(
                        "{}: {} is not a valid variable name (it must be non-empty, without \
                         '=' or NUL)",
                        field.label(),
                        quoted(name)
                    ),
                );
                continue;
            }
            match value {
                Value::Number(_) | Value::Bool(_) => self.fail_field(
                    &entry,
                    format!(
                        "expected a string, found {} (write \"{value}\")",
                        kind(value)
                    ),
                ),
                _ => {
                    if let Some(text) = self.string(&entry, value) {
                        env.insert(name.clone(), text.to_string());
                    }
                }
            }
        }
        env
    }

    fn ports(&mut self, field: &Field, value: &Value) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::new();
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of port numbers", value);
            return ports;
        };
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(port) = self.integer(&entry, item, 1, 65535) else {
                continue;
            };
            let port = port as u16;
            if ports.contains(&port) {
                self.fail_field(&entry, format!("port {port} is listed twice"));
            } else {
                ports.push(port);
            }
        }
        ports
    }

    fn signal(&mut self, field: &Field, value: &Value) -> Option<i32> {
        let text = match value {
            Value::Number(_) => self.integer(field, value, 1, 64)?.to_string(),
            Value::String(name) => name.clone(),
            other => return self.wrong_type(field, "a signal name or number", other),
        };
        let signal = parse_signal(&text);
        if signal.is_none() {
            self.fail_field(
                field,
                format!(
                    "unknown signal {} (use a name such as \"SIGTERM\" or \"TERM\", or a \
                     number from 1 to 64)",
                    quoted(&text)
                ),
            );
        }
        signal
    }

    /// A group name: the same rule as ids, so `@name` on a command line and `group=name` in a
    /// URL never need quoting.
    fn group(&mut self, field: &Field, value: &Value) -> Option<String> {
        let name = self.string(field, value)?;
        if is_valid_id(name) {
            return Some(name.to_string());
        }
        self.fail_field(
            field,
            format!(
                "{} is not a valid group name (use 1 to 64 letters, digits, '.', '_' or '-', \
                 starting with a letter or digit)",
                quoted(name)
            ),
        );
        None
    }

    /// The ids of `depends_on`, each with where it is written.
    fn depends_on(&mut self, field: &Field, value: &Value) -> Vec<(String, Pos)> {
        let mut ids: Vec<(String, Pos)> = Vec::new();
        let Value::Array(items) = value else {
            self.wrong_type::<()>(field, "an array of server ids", value);
            return ids;
        };
        for (i, item) in items.iter().enumerate() {
            let entry = field.index(i);
            let Some(id) = self.string(&entry, item) else {
                continue;
            };
            if ids.iter().any(|(known, _)| known == id) {
                self.fail_field(&entry, format!("{} is listed twice", quoted(id)));
            } else {
                ids.push((id.to_string(), self.value_at(&entry.path)));
            }
        }
        ids
    }

    fn check_ids(&mut self, drafts: &[Draft]) {
        let mut first: HashMap<&str, &Draft> = HashMap::new();
        for draft in drafts.iter().filter(|d| d.has_valid_id) {
            if let Some(earlier) = first.get(draft.config.id.as_str()) {
                let message = format!(
                    "duplicate id '{}': servers on lines {} and {} both use it",
                    draft.config.id, earlier.at.line, draft.at.line
                );
                self.fail(draft.at, message);
            } else {
                first.insert(&draft.config.id, draft);
            }
        }
    }

    fn check_ports(&mut self, drafts: &[Draft]) {
        let mut owners: HashMap<u16, &Draft> = HashMap::new();
        for draft in drafts {
            for &port in &draft.config.ports {
                if let Some(owner) = owners.get(&port) {
                    let message = format!(
                        "port {port} is claimed by {} (line {}) and {} (line {})",
                        owner.name, owner.at.line, draft.name, draft.at.line
                    );
                    self.fail(draft.at, message);
                } else {
                    owners.insert(port, draft);
                }
            }
        }
    }

    fn check_dependencies(&mut self, drafts: &[Draft]) {
        // The first server with an id is the node; a later duplicate is already an error.
        let mut node_of: HashMap<&str, usize> = HashMap::new();
        for (i, draft) in drafts.iter().enumerate().filter(|(_, d)| d.has_valid_id) {
            node_of.entry(draft.config.id.as_str()).or_insert(i);
        }
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
        for (i, draft) in drafts.iter().enumerate() {
            for (dep, &at) in draft.config.depends_on.iter().zip(&draft.depends_at) {
                if draft.has_valid_id && *dep == draft.config.id {
                    self.fail(at, format!("{} depends on itself", draft.name));
                } else if let Some(&target) = node_of.get(dep.as_str()) {
                    if node_of.get(draft.config.id.as_str()) == Some(&i) {
                        edges[i].push(target);
                    }
                } else {
                    let mut message = format!(
                        "{} depends on {}, which is not a server in this file",
                        draft.name,
                        quoted(dep)
                    );
                    if let Some(near) = closest(dep, node_of.keys().copied()) {
                        message.push_str(&format!("; did you mean '{near}'?"));
                    }
                    self.fail(at, message);
                }
            }
        }
        for cycle in find_cycles(&edges) {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| drafts[i].config.id.as_str())
                .collect();
            let lines: Vec<String> = cycle
                .iter()
                .map(|&i| drafts[i].at.line.to_string())
                .collect();
            let message = format!(
                "dependency cycle: {} -> {} (servers on lines {})",
                names.join(" -> "),
                names[0],
                lines.join(", ")
            );
            // At the entry that leads into the cycle from its first server.
            let first = &drafts[cycle[0]];
            let next = names[1 % names.len()];
            let at = first
                .config
                .depends_on
                .iter()
                .position(|dep| dep == next)
                .map_or(first.at, |k| first.depends_at[k]);
            self.fail(at, message);
        }
    }
}

/// One cycle per back edge a depth-first search meets (so each is distinct), rotated to start
/// at its earliest node. Iterative, so a long dependency chain cannot overflow the stack.
fn find_cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; edges.len()];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for start in 0..edges.len() {
        if state[start] != NEW {
            continue;
        }
        state[start] = ON_PATH;
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(&(node, next)) = path.last() {
            let Some(&to) = edges[node].get(next) else {
                state[node] = DONE;
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            match state[to] {
                NEW => {
                    state[to] = ON_PATH;
                    path.push((to, 0));
                }
                ON_PATH => {
                    let Some(from) = path.iter().position(|&(n, _)| n == to) else {
                        continue;
                    };
                    let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                    let earliest = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
                    cycle.rotate_left(earliest);
                    cycles.push(cycle);
                }
                _ => {}
            }
        }
    }
    cycles
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
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{
        AuthSetting, CommandSpec, Config, OnExit, Positions, RestartPolicy, ServerConfig,
        base_dir_of, closest, load, locate_in, parse, parse_env_entries, parse_env_file,
    };

    const FILE: &str = "/project/tend.json";

    fn parse_ok(text: &str) -> Config {
        parse(text, Path::new(FILE), Path::new("/project")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each error as `line:column: message`.
    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new(FILE), Path::new("/project")) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(errors) => {
                for error in &errors.0 {
                    assert_eq!(error.file, Path::new(FILE));
                }
                errors
                    .0
                    .iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect()
            }
        }
    }

    /// A folder under the system temp dir, removed on drop unless the test failed.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join("tend-tests")
                .join(format!("config-{name}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn server_defaults(id: &str, line: usize) -> ServerConfig {
        ServerConfig {
            id: id.to_string(),
            command: CommandSpec::Shell("run".to_string()),
            cwd: PathBuf::from("/project"),
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
            line,
        }
    }

    #[test]
    fn group_is_optional_and_kept_per_server() {
        let config = parse_ok(
            r#"{"servers": [{"id": "a", "command": "run", "group": "backend"},
                            {"id": "b", "command": "run"}]}"#,
        );
        assert_eq!(config.servers[0].group.as_deref(), Some("backend"));
        assert_eq!(config.servers[1].group, None);
    }

    #[test]
    fn max_memory_takes_sizes_and_bytes_and_says_what_is_wrong() {
        let config = parse_ok(
            r#"{"servers": [{"id": "a", "command": "run", "max_memory": "256M"},
                            {"id": "b", "command": "run", "max_memory": 1073741824},
                            {"id": "c", "command": "run"}]}"#,
        );
        let limits: Vec<Option<u64>> = config.servers.iter().map(|s| s.max_memory).collect();
        assert_eq!(limits, [Some(256 << 20), Some(1 << 30), None]);
        assert_eq!(
            errors(
                "{\"servers\": [\n  {\"id\": \"a\", \"command\": \"run\", \"max_memory\": \"256X\"},\n  \
                 {\"id\": \"b\", \"command\": \"run\", \"max_memory\": 256},\n  \
                 {\"id\": \"c\", \"command\": \"run\", \"max_memory\": true},\n  \
                 {\"id\": \"d\", \"command\": \"run\", \"max_memory\": \"65T\"}\n]}"
            ),
            [
                "2:47: max_memory in server 'a': unknown unit 'X' (use K, M, G or T, as in \"256M\"), found '256X'",
                "3:47: max_memory in server 'b': must be at least 1M (1048576 bytes), found 256 (a number is bytes: did you mean \"256M\"?)",
                "4:47: max_memory in server 'c': expected a size such as \"256M\" or bytes, found a boolean",
                "5:47: max_memory in server 'd': must be at most 64T",
            ]
        );
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let config =
            parse_ok("{\n  \"servers\": [\n    {\"id\": \"web\", \"command\": \"run\"}\n  ]\n}");
        let expected = Config {
            path: PathBuf::from(FILE),
            base_dir: PathBuf::from("/project"),
            listen: "127.0.0.1:7070".parse().expect("literal"),
            state_file: PathBuf::from("/project/.tend/process-state.json"),
            log_dir: PathBuf::from("/project/.tend/logs"),
            health_interval: Duration::from_millis(3000),
            auth: AuthSetting::Default,
            allowed_hosts: Vec::new(),
            on_exit: OnExit::Stop,
            log_max_bytes: 10_485_760,
            log_keep: 3,
            max_connections: 256,
            max_sse_clients: 64,
            adopt_orphans: false,
            alerts: Vec::new(),
            servers: vec![server_defaults("web", 3)],
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn every_key_is_read_and_paths_resolve_against_the_config_folder() {
        let config = parse_ok(
            r#"{
  "listen": "[::1]:9000",
  "state_file": "state/s.json",
  "log_dir": "/var/log/tend",
  "health_interval_ms": 250,
  "auth_token": "s3cret",
  "allowed_hosts": ["dev.example.com", "[::1]"],
  "on_exit": "keep",
  "log_max_bytes": 4096,
  "log_keep": 100,
  "max_connections": 1,
  "max_sse_clients": 2,
  "servers": [
    {
      "id": "web.1_a-B",
      "command": ["python3", "-m", "http.server"],
      "cwd": "./web/../site",
      "env": {"PYTHONUNBUFFERED": "1", "EMPTY": ""},
      "env_file": ".env",
      "ports": [8000, 65535, 1],
      "autostart": false,
      "restart": "always",
      "max_restarts": 0,
      "backoff_ms": 0,
      "stop_signal": "int",
      "stop_timeout_ms": 86400000,
      "start_timeout_ms": 0,
      "retry_fatal_ms": 0,
      "depends_on": ["db"]
    },
    {"id": "db", "command": "pg", "restart": "no", "stop_signal": 9, "retry_fatal_ms": 1000}
  ],
  "adopt_orphans": true
}"#,
        );
        assert_eq!(config.listen, "[::1]:9000".parse().expect("literal"));
        assert_eq!(config.state_file, Path::new("/project/state/s.json"));
        assert_eq!(config.log_dir, Path::new("/var/log/tend"));
        assert_eq!(config.health_interval, Duration::from_millis(250));
        assert_eq!(config.auth, AuthSetting::Token("s3cret".to_string()));
        assert_eq!(config.allowed_hosts, ["dev.example.com", "[::1]"]);
        assert_eq!(config.on_exit, OnExit::Keep);
        assert_eq!(config.log_max_bytes, 4096);
        assert_eq!(config.log_keep, 100);
        assert_eq!(config.max_connections, 1);
        assert_eq!(config.max_sse_clients, 2);
        assert!(config.adopt_orphans);
        let web = &config.servers[0];
        let expected_web = ServerConfig {
            id: "web.1_a-B".to_string(),
            command: CommandSpec::Exec(vec!["python3".into(), "-m".into(), "http.server".into()]),
            // Lexical: `..` is kept for the OS, which knows about symlinks.
            cwd: PathBuf::from("/project/web/../site"),
            env: BTreeMap::from([
                ("EMPTY".to_string(), String::new()),
                ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
            ]),
            env_file: Some(PathBuf::from("/project/.env")),
            ports: vec![8000, 65535, 1],
            autostart: false,
            restart: RestartPolicy::Always,
            max_restarts: 0,
            backoff: Duration::ZERO,
            stop_signal: libc::SIGINT,
            stop_timeout: Duration::from_millis(86_400_000),
            start_timeout: Duration::ZERO,
            retry_fatal: None,
            depends_on: vec!["db".to_string()],
            group: None,
            max_memory: None,
            health: None,
            line: 14,
        };
        assert_eq!(*web, expected_web);
        let db = &config.servers[1];
        assert_eq!(db.command, CommandSpec::Shell("pg".to_string()));
        assert_eq!(db.restart, RestartPolicy::No);
        assert_eq!(db.stop_signal, libc::SIGKILL);
        assert_eq!(db.retry_fatal, Some(Duration::from_millis(1000)));
        assert_eq!(db.line, 31);
    }

    #[test]
    fn auth_token_settings() {
        let cases = [
            ("null", AuthSetting::Default),
            ("\"none\"", AuthSetting::Disabled),
            ("\"None\"", AuthSetting::Token("None".to_string())),
            ("\"t0k-en\"", AuthSetting::Token("t0k-en".to_string())),
        ];
        for (value, expected) in cases {
            let config = parse_ok(&format!("{{\"auth_token\": {value}, \"servers\": []}}"));
            assert_eq!(config.auth, expected, "auth_token {value}");
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        let cases = [
            ("\"SIGTERM\"", libc::SIGTERM),
            ("\"TERM\"", libc::SIGTERM),
            ("\"sighup\"", libc::SIGHUP),
            ("\"9\"", libc::SIGKILL),
            ("10", 10),
        ];
        for (value, expected) in cases {
            let text = format!(
                "{{\"servers\": [{{\"id\": \"a\", \"command\": \"x\", \"stop_signal\": {value}}}]}}"
            );
            assert_eq!(parse_ok(&text).servers[0].stop_signal, expected, "{value}");
        }
    }

    #[test]
    fn whole_numbers_written_as_floats_are_accepted() {
        let config =
            parse_ok("{\"health_interval_ms\": 2.5e3, \"log_keep\": 7.0, \"servers\": []}");
        assert_eq!(config.health_interval, Duration::from_millis(2500));
        assert_eq!(config.log_keep, 7);
    }

    #[test]
    fn bad_top_level_values_point_at_the_value() {
        // The value of KEY starts at line 3, column len(KEY) + 7.
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "listen",
                "\"localhost:7070\"",
                &[
                    "3:13: listen: must be an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\" (host names are not accepted), found 'localhost:7070'",
                ],
            ),
            (
                "listen",
                "\"127.0.0.1\"",
                &[
                    "3:13: listen: must be an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\" (host names are not accepted), found '127.0.0.1'",
                ],
            ),
            (
                "listen",
                "7070",
                &["3:13: listen: expected a string, found a number"],
            ),
            (
                "state_file",
                "\"\"",
                &["3:17: state_file: must not be empty"],
            ),
            (
                "state_file",
                "3",
                &["3:17: state_file: expected a string, found a number"],
            ),
            (
                "log_dir",
                "[]",
                &["3:14: log_dir: expected a string, found an array"],
            ),
            (
                "log_dir",
                "\"a\\u0000b\"",
                &["3:14: log_dir: must not contain a NUL character"],
            ),
            (
                "health_interval_ms",
                "99",
                &["3:25: health_interval_ms: must be at least 100, found 99"],
            ),
            (
                "health_interval_ms",
                "86400001",
                &["3:25: health_interval_ms: must be at most 86400000 (one day), found 86400001"],
            ),
            (
                "health_interval_ms",
                "\"3000\"",
                &[
                    "3:25: health_interval_ms: expected an integer, found a string (write 3000 without quotes)",
                ],
            ),
            (
                "health_interval_ms",
                "\"soon\"",
                &["3:25: health_interval_ms: expected an integer, found a string"],
            ),
            (
                "health_interval_ms",
                "1500.5",
                &["3:25: health_interval_ms: must be a whole number, found 1500.5"],
            ),
            (
                "health_interval_ms",
                "-1",
                &["3:25: health_interval_ms: must not be negative, found -1"],
            ),
            (
                "health_interval_ms",
                "-2.5",
                &["3:25: health_interval_ms: must not be negative, found -2.5"],
            ),
            (
                "health_interval_ms",
                "18446744073709551616",
                &["3:25: health_interval_ms: must be at most 86400000 (one day)"],
            ),
            (
                "health_interval_ms",
                "null",
                &["3:25: health_interval_ms: expected an integer, found null"],
            ),
            (
                "health_interval_ms",
                "true",
                &["3:25: health_interval_ms: expected an integer, found a boolean"],
            ),
            (
                "auth_token",
                "\"\"",
                &[
                    "3:17: auth_token: must not be empty (use null for a generated token, or \"none\" to turn auth off)",
                ],
            ),
            (
                "auth_token",
                "\"a b\"",
                &["3:17: auth_token: must not contain spaces or control characters"],
            ),
            (
                "auth_token",
                "5",
                &["3:17: auth_token: expected a string or null, found a number"],
            ),
            (
                "allowed_hosts",
                "\"a.com\"",
                &["3:20: allowed_hosts: expected an array of host names, found a string"],
            ),
            (
                "allowed_hosts",
                "[\"a.com:80\"]",
                &["3:21: allowed_hosts[0]: must be a host name without a port, found 'a.com:80'"],
            ),
            (
                "allowed_hosts",
                "[\"ok\", \"http://a.com\"]",
                &[
                    "3:27: allowed_hosts[1]: is a URL; give only its host name, found 'http://a.com'",
                ],
            ),
            (
                "allowed_hosts",
                "[\"a.com/x\"]",
                &["3:21: allowed_hosts[0]: must be a host name without '/', found 'a.com/x'"],
            ),
            (
                "allowed_hosts",
                "[\"::1\"]",
                &[
                    "3:21: allowed_hosts[0]: write an IPv6 address in brackets, as in the Host header: \"[::1]\"",
                ],
            ),
            (
                "allowed_hosts",
                "[\"[::1]:80\"]",
                &[
                    "3:21: allowed_hosts[0]: must be a bracketed IPv6 address such as \"[::1]\", without a port, found '[::1]:80'",
                ],
            ),
            (
                "allowed_hosts",
                "[\"\"]",
                &[
                    "3:21: allowed_hosts[0]: must be a host name without spaces, such as \"example.com\"",
                ],
            ),
            (
                "allowed_hosts",
                "[1]",
                &["3:21: allowed_hosts[0]: expected a string, found a number"],
            ),
            (
                "on_exit",
                "\"kep\"",
                &["3:14: on_exit: must be \"stop\" or \"keep\", found 'kep'"],
            ),
            (
                "on_exit",
                "true",
                &["3:14: on_exit: expected a string, found a boolean"],
            ),
            (
                "log_max_bytes",
                "4095",
                &["3:20: log_max_bytes: must be at least 4096, found 4095"],
            ),
            (
                "log_max_bytes",
                "1099511627777",
                &[
                    "3:20: log_max_bytes: must be at most 1099511627776 (1 TiB), found 1099511627777",
                ],
            ),
            (
                "log_keep",
                "0",
                &["3:15: log_keep: must be at least 1, found 0"],
            ),
            (
                "log_keep",
                "101",
                &["3:15: log_keep: must be at most 100, found 101"],
            ),
            (
                "max_connections",
                "0",
                &["3:22: max_connections: must be at least 1, found 0"],
            ),
            (
                "max_sse_clients",
                "0",
                &["3:22: max_sse_clients: must be at least 1, found 0"],
            ),
            (
                "max_sse_clients",
                "65537",
                &["3:22: max_sse_clients: must be at most 65536, found 65537"],
            ),
            (
                "adopt_orphans",
                "\"yes\"",
                &["3:20: adopt_orphans: expected true or false, found a string"],
            ),
        ];
        for (key, value, expected) in cases {
            let text = format!("{{\n  \"servers\": [],\n  \"{key}\": {value}\n}}");
            assert_eq!(errors(&text), *expected, "{key}: {value}");
        }
    }

    #[test]
    fn bad_server_values_point_at_the_value() {
        // The value of KEY starts at line 6, column len(KEY) + 11; the server's `{` is at 3:5.
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "cwd",
                "\"\"",
                &["6:14: cwd in server 'web': must not be empty"],
            ),
            (
                "cwd",
                "1",
                &["6:14: cwd in server 'web': expected a string, found a number"],
            ),
            (
                "env",
                "[]",
                &[
                    "6:14: env in server 'web': expected an object of names to strings, found an array",
                ],
            ),
            (
                "env",
                "{\"A=B\": \"x\"}",
                &[
                    "6:15: env in server 'web': 'A=B' is not a valid variable name (it must be non-empty, without '=' or NUL)",
                ],
            ),
            (
                "env",
                "{\"\": \"x\"}",
                &[
                    "6:15: env in server 'web': '' is not a valid variable name (it must be non-empty, without '=' or NUL)",
                ],
            ),
            (
                "env",
                "{\"N\": 1}",
                &["6:20: env.N in server 'web': expected a string, found a number (write \"1\")"],
            ),
            (
                "env",
                "{\"N\": null}",
                &["6:20: env.N in server 'web': expected a string, found null"],
            ),
            (
                "env_file",
                "1",
                &["6:19: env_file in server 'web': expected a string, found a number"],
            ),
            (
                "env_file",
                "\"\"",
                &["6:19: env_file in server 'web': must not be empty"],
            ),
            (
                "ports",
                "\"80\"",
                &["6:16: ports in server 'web': expected an array of port numbers, found a string"],
            ),
            (
                "ports",
                "[0]",
                &["6:17: ports[0] in server 'web': must be at least 1, found 0"],
            ),
            (
                "ports",
                "[65536]",
                &["6:17: ports[0] in server 'web': must be at most 65535, found 65536"],
            ),
            (
                "ports",
                "[80, 80]",
                &["6:21: ports[1] in server 'web': port 80 is listed twice"],
            ),
            (
                "ports",
                "[80.5]",
                &["6:17: ports[0] in server 'web': must be a whole number, found 80.5"],
            ),
            (
                "autostart",
                "\"yes\"",
                &["6:20: autostart in server 'web': expected true or false, found a string"],
            ),
            (
                "restart",
                "\"sometimes\"",
                &[
                    "6:18: restart in server 'web': must be \"no\", \"on-failure\" or \"always\", found 'sometimes'",
                ],
            ),
            (
                "max_restarts",
                "-1",
                &["6:23: max_restarts in server 'web': must not be negative, found -1"],
            ),
            (
                "max_restarts",
                "4294967296",
                &[
                    "6:23: max_restarts in server 'web': must be at most 4294967295, found 4294967296",
                ],
            ),
            (
                "backoff_ms",
                "86400001",
                &[
                    "6:21: backoff_ms in server 'web': must be at most 86400000 (one day), found 86400001",
                ],
            ),
            (
                "backoff_ms",
                "\"500\"",
                &[
                    "6:21: backoff_ms in server 'web': expected an integer, found a string (write 500 without quotes)",
                ],
            ),
            (
                "stop_signal",
                "\"SIGFOO\"",
                &[
                    "6:22: stop_signal in server 'web': unknown signal 'SIGFOO' (use a name such as \"SIGTERM\" or \"TERM\", or a number from 1 to 64)",
                ],
            ),
            (
                "stop_signal",
                "0",
                &["6:22: stop_signal in server 'web': must be at least 1, found 0"],
            ),
            (
                "stop_signal",
                "65",
                &["6:22: stop_signal in server 'web': must be at most 64, found 65"],
            ),
            (
                "stop_signal",
                "true",
                &[
                    "6:22: stop_signal in server 'web': expected a signal name or number, found a boolean",
                ],
            ),
            (
                "stop_timeout_ms",
                "-5",
                &["6:26: stop_timeout_ms in server 'web': must not be negative, found -5"],
            ),
            (
                "start_timeout_ms",
                "1.5",
                &["6:27: start_timeout_ms in server 'web': must be a whole number, found 1.5"],
            ),
            (
                "retry_fatal_ms",
                "86400001",
                &[
                    "6:25: retry_fatal_ms in server 'web': must be at most 86400000 (one day), found 86400001",
                ],
            ),
            (
                "depends_on",
                "\"db\"",
                &[
                    "6:21: depends_on in server 'web': expected an array of server ids, found a string",
                ],
            ),
            (
                "depends_on",
                "[1]",
                &["6:22: depends_on[0] in server 'web': expected a string, found a number"],
            ),
            (
                "group",
                "\"back end\"",
                &[
                    "6:16: group in server 'web': 'back end' is not a valid group name (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)",
                ],
            ),
            (
                "group",
                "[\"backend\"]",
                &["6:16: group in server 'web': expected a string, found an array"],
            ),
            (
                "depends_on",
                "[\"x\", \"x\"]",
                &[
                    "6:22: server 'web' depends on 'x', which is not a server in this file",
                    "6:27: depends_on[1] in server 'web': 'x' is listed twice",
                ],
            ),
        ];
        for (key, value, expected) in cases {
            let text = format!(
                "{{\n  \"servers\": [\n    {{\n      \"id\": \"web\",\n      \"command\": \"run\",\n      \"{key}\": {value}\n    }}\n  ]\n}}"
            );
            assert_eq!(errors(&text), *expected, "{key}: {value}");
        }
    }

    #[test]
    fn bad_ids_and_commands() {
        let long_id = "a".repeat(65);
        let max_id = "a".repeat(64);
        // The server object opens at 1:14 in every case.
        let cases: Vec<(String, Vec<String>)> = vec![
            (r#"{"command": "x"}"#.into(), vec!["1:14: servers[0]: missing required key 'id'".into()]),
            (r#"{"id": "a"}"#.into(), vec!["1:14: server 'a': missing required key 'command'".into()]),
            (r#"{"id": 5, "command": "x"}"#.into(), vec![
                "1:21: id in servers[0]: expected a string, found a number".into(),
            ]),
            (r#"{"id": "my web", "command": "x"}"#.into(), vec![
                "1:14: id in servers[0]: 'my web' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)".into(),
            ]),
            (r#"{"id": "-a", "command": "x"}"#.into(), vec![
                "1:14: id in servers[0]: '-a' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)".into(),
            ]),
            (r#"{"id": "", "command": "x"}"#.into(), vec![
                "1:14: id in servers[0]: '' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)".into(),
            ]),
            (format!(r#"{{"id": "{long_id}", "command": "x"}}"#), vec![format!(
                "1:14: id in servers[0]: '{long_id}' is not a valid id (use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)"
            )]),
            (r#"{"id": "a", "command": ""}"#.into(), vec!["1:37: command in server 'a': must not be empty".into()]),
            (r#"{"id": "a", "command": "  "}"#.into(), vec!["1:37: command in server 'a': must not be empty".into()]),
            (r#"{"id": "a", "command": []}"#.into(), vec![
                "1:37: command in server 'a': must not be an empty array (give at least the program)".into(),
            ]),
            (r#"{"id": "a", "command": ["", "x"]}"#.into(), vec![
                "1:38: command[0] in server 'a': the program must not be empty".into(),
            ]),
            (r#"{"id": "a", "command": ["x", 1]}"#.into(), vec![
                "1:43: command[1] in server 'a': expected a string, found a number".into(),
            ]),
            (r#"{"id": "a", "command": {}}"#.into(), vec![
                "1:37: command in server 'a': expected a string or an array of strings, found an object".into(),
            ]),
            (r#"5"#.into(), vec!["1:14: servers[0]: expected a server object, found a number".into()]),
        ];
        for (server, expected) in cases {
            let text = format!(r#"{{"servers": [{server}]}}"#);
            assert_eq!(errors(&text), expected, "{server}");
        }
        let ok = parse_ok(&format!(
            r#"{{"servers": [{{"id": "{max_id}", "command": "x"}}]}}"#
        ));
        assert_eq!(ok.servers[0].id, max_id);
        // An empty argument after the program is legitimate.
        let ok = parse_ok(r#"{"servers": [{"id": "a", "command": ["x", ""]}]}"#);
        assert_eq!(
            ok.servers[0].command,
            CommandSpec::Exec(vec!["x".into(), String::new()])
        );
    }

    #[test]
    fn all_problems_are_reported_at_once_in_file_order() {
        // Keys out of alphabetical order, so map order and file order differ.
        let text = r#"{
  "servers": [
    {"id": "web", "command": "run", "ports": [0]}
  ],
  "listen": "nowhere",
  "health_interval_ms": 5
}"#;
        assert_eq!(
            errors(text),
            [
                "3:47: ports[0] in server 'web': must be at least 1, found 0",
                "5:13: listen: must be an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\" (host names are not accepted), found 'nowhere'",
                "6:25: health_interval_ms: must be at least 100, found 5",
            ]
        );
    }

    #[test]
    fn the_root_must_be_an_object_with_servers() {
        assert_eq!(
            errors("[]"),
            ["1:1: the config must be a JSON object, found an array"]
        );
        assert_eq!(
            errors("\n  {}"),
            ["2:3: missing required key 'servers' (an array of server objects; it may be empty)"]
        );
        assert_eq!(
            errors("{\"servers\": {}}"),
            ["1:13: servers: expected an array of server objects, found an object"]
        );
        assert!(parse_ok("{\"servers\": []}").servers.is_empty());
    }

    #[test]
    fn syntax_errors_give_line_and_character_column() {
        let cases = [
            (
                "{\n  \"servers\": [],\n}",
                "3:1: invalid JSON: trailing comma",
            ),
            (
                "{\"servers\": [",
                "1:13: invalid JSON: EOF while parsing a list",
            ),
            ("", "1:0: invalid JSON: EOF while parsing a value"),
            // `é` is two bytes; the column counts it once.
            (
                "{\n  \"é\": [1,, 2]\n}",
                "2:11: invalid JSON: expected value",
            ),
            ("{\"a\" 1}", "1:6: invalid JSON: expected `:`"),
        ];
        for (text, expected) in cases {
            assert_eq!(errors(text), [expected], "{text:?}");
        }
    }

    #[test]
    fn duplicate_ids_name_both_lines() {
        let text = r#"{"servers": [
  {"id": "web", "command": "a"},
  {"id": "db", "command": "b"},
    {"id": "web", "command": "c"}
]}"#;
        assert_eq!(
            errors(text),
            ["4:5: duplicate id 'web': servers on lines 2 and 4 both use it"]
        );
    }

    #[test]
    fn dependency_problems_point_at_the_entry() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"{"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["a"]}"#,
                &["2:46: dependency cycle: a -> b -> a (servers on lines 2, 3)"],
            ),
            (
                // The cycle is named from the server that comes first in the file.
                r#"{"id": "c", "command": "x", "depends_on": ["a"]},
  {"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["c"]}"#,
                &["2:46: dependency cycle: c -> a -> b -> c (servers on lines 2, 3, 4)"],
            ),
            (
                // Entered from outside at `b`, still named from `a`, the first in the file.
                r#"{"id": "x", "command": "x", "depends_on": ["b"]},
  {"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["a"]}"#,
                &["3:46: dependency cycle: a -> b -> a (servers on lines 3, 4)"],
            ),
            (
                // Without an id there is no "itself" to depend on.
                r#"{"command": "x", "depends_on": [""]}"#,
                &[
                    "2:3: servers[0]: missing required key 'id'",
                    "2:35: servers[0] depends on '', which is not a server in this file",
                ],
            ),
            (
                r#"{"id": "a", "command": "x", "depends_on": ["a"]}"#,
                &["2:46: server 'a' depends on itself"],
            ),
            (
                r#"{"id": "db", "command": "x"},
  {"id": "web", "command": "x", "depends_on": ["dbb"]}"#,
                &[
                    "3:48: server 'web' depends on 'dbb', which is not a server in this file; did you mean 'db'?",
                ],
            ),
            (
                r#"{"id": "web", "command": "x", "depends_on": ["cache"]}"#,
                &["2:48: server 'web' depends on 'cache', which is not a server in this file"],
            ),
            (
                // Two cycles sharing a server are both named.
                r#"{"id": "a", "command": "x", "depends_on": ["b"]},
  {"id": "b", "command": "x", "depends_on": ["a", "c"]},
  {"id": "c", "command": "x", "depends_on": ["b"]}"#,
                &[
                    "2:46: dependency cycle: a -> b -> a (servers on lines 2, 3)",
                    "3:51: dependency cycle: b -> c -> b (servers on lines 3, 4)",
                ],
            ),
        ];
        for (servers, expected) in cases {
            let text = format!("{{\"servers\": [\n  {servers}\n]}}");
            assert_eq!(errors(&text), *expected, "{servers}");
        }
    }

    #[test]
    fn a_dependency_diamond_is_not_a_cycle() {
        let config = parse_ok(
            r#"{"servers": [
  {"id": "app", "command": "x", "depends_on": ["api", "worker"]},
  {"id": "api", "command": "x", "depends_on": ["db"]},
  {"id": "worker", "command": "x", "depends_on": ["db"]},
  {"id": "db", "command": "x"}
]}"#,
        );
        assert_eq!(config.servers[0].depends_on, ["api", "worker"]);
    }

    #[test]
    fn a_port_claimed_twice_names_both_servers() {
        let text = r#"{"servers": [
  {"id": "web", "command": "a", "ports": [8000, 8001]},
  {"id": "api", "command": "b", "ports": [9000, 8001]}
]}"#;
        assert_eq!(
            errors(text),
            ["3:3: port 8001 is claimed by server 'web' (line 2) and server 'api' (line 3)"]
        );
    }

    #[test]
    fn unknown_keys_suggest_or_list() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"servers": [], "lisen": "x"}"#,
                "1:17: unknown key 'lisen'; did you mean 'listen'?",
            ),
            (
                r#"{"servers": [{"id": "web", "command": "x", "prots": [80]}]}"#,
                "1:44: unknown key 'prots' in server 'web'; did you mean 'ports'?",
            ),
            (
                r#"{"servers": [{"id": "web", "command": "x", "Autostart": true}]}"#,
                "1:44: unknown key 'Autostart' in server 'web'; did you mean 'autostart'?",
            ),
            (
                r#"{"servers": [{"id": "web", "command": "x", "xyz": 1}]}"#,
                "1:44: unknown key 'xyz' in server 'web' (allowed keys: id, command, cwd, env, env_file, ports, autostart, restart, max_restarts, backoff_ms, stop_signal, stop_timeout_ms, start_timeout_ms, retry_fatal_ms, depends_on, group, max_memory, health)",
            ),
            (
                r#"{"servers": [], "zzz": 1}"#,
                "1:17: unknown key 'zzz' (allowed keys: listen, state_file, log_dir, health_interval_ms, auth_token, allowed_hosts, on_exit, log_max_bytes, log_keep, max_connections, max_sse_clients, adopt_orphans, alerts, servers)",
            ),
            (
                r#"{"servers": [], "command": "x"}"#,
                "1:17: unknown key 'command'; 'command' belongs inside a server object in 'servers'",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(errors(text), [*expected], "{text}");
        }
    }

    #[test]
    fn closest_needs_a_near_match() {
        assert_eq!(closest("prots", ["ports", "env"]), Some("ports"));
        assert_eq!(closest("cw", ["cwd", "id"]), Some("cwd"));
        assert_eq!(closest("command", ["cwd", "id"]), None);
    }

    #[test]
    fn a_repeated_key_is_an_error() {
        assert_eq!(
            errors("{\"servers\": [],\n \"log_keep\": 2,\n \"log_keep\": 3}"),
            [
                "3:2: key 'log_keep' appears twice in this object (first at 2:2); only the last one would count"
            ]
        );
    }

    #[test]
    fn positions_follow_escapes_nesting_and_wide_characters() {
        let text = "{\"a\\\"b\": {\"c\": [1, {\"d\\\\\": \"x\\\"}\"}]},\n \"é\": [[], [true]]}";
        let index = Positions::scan(text);
        let value = |path: &str| index.values.get(path).map(|p| (p.line, p.column));
        let key = |path: &str| index.keys.get(path).map(|p| (p.line, p.column));
        assert_eq!(value(""), Some((1, 1)));
        assert_eq!(key("a\"b"), Some((1, 2)));
        assert_eq!(value("a\"b"), Some((1, 10)));
        assert_eq!(value("a\"b.c"), Some((1, 16)));
        assert_eq!(value("a\"b.c[0]"), Some((1, 17)));
        assert_eq!(value("a\"b.c[1]"), Some((1, 20)));
        assert_eq!(key("a\"b.c[1].d\\"), Some((1, 21)));
        assert_eq!(value("a\"b.c[1].d\\"), Some((1, 28)));
        assert_eq!(key("é"), Some((2, 2)));
        assert_eq!(value("é"), Some((2, 7)));
        assert_eq!(value("é[0]"), Some((2, 8)));
        assert_eq!(value("é[1][0]"), Some((2, 13)));
        assert!(index.duplicates.is_empty());
    }

    #[test]
    fn server_line_is_the_line_of_its_brace() {
        let config = parse_ok(
            "{\"servers\": [\n\n  {\"id\": \"a\", \"command\": \"x\"},\n  {\n    \"id\": \"b\", \"command\": \"x\"}]}",
        );
        let lines: Vec<usize> = config.servers.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 4]);
    }

    #[test]
    fn load_reads_the_file_and_resolves_against_its_folder() {
        let dir = TempDir::new("load");
        let file = dir.0.join("tend.json");
        std::fs::write(
            &file,
            r#"{"state_file": "st.json", "servers": [{"id": "a", "command": "x", "cwd": "sub"}]}"#,
        )
        .expect("write config");
        let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.path, file);
        assert_eq!(config.base_dir, dir.0);
        assert_eq!(config.state_file, dir.0.join("st.json"));
        assert_eq!(config.servers[0].cwd, dir.0.join("sub"));
    }

    #[test]
    fn load_reports_a_missing_file_at_line_zero() {
        let dir = TempDir::new("missing");
        let file = dir.0.join("nope.json");
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
        let dir = TempDir::new("locate");
        let given = Path::new("elsewhere/x.json");
        assert_eq!(locate_in(&dir.0, Some(given)), Ok(given.to_path_buf()));
        assert_eq!(
            locate_in(&dir.0, None),
            Err(format!(
                "no config: looked for {}, {} (give one with --config FILE)",
                dir.0.join("tend.json").display(),
                dir.0.join("Procfile").display()
            ))
        );
        std::fs::write(dir.0.join("Procfile"), "web: run").expect("write");
        assert_eq!(locate_in(&dir.0, None), Ok(dir.0.join("Procfile")));
        std::fs::write(dir.0.join("tend.json"), "{}").expect("write");
        assert_eq!(locate_in(&dir.0, None), Ok(dir.0.join("tend.json")));
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
        let dir = TempDir::new("load-procfile");
        let file = dir.0.join("Procfile.dev");
        std::fs::write(&file, "web: run\nworker: work\n").expect("write Procfile");
        std::fs::write(dir.0.join(".env"), "A=1\n").expect("write .env");
        let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.base_dir, dir.0);
        assert_eq!(config.state_file, dir.0.join(".tend/process-state.json"));
        let ids: Vec<&str> = config.servers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["web", "worker"]);
        assert_eq!(config.servers[1].env_file, Some(dir.0.join(".env")));
        // A broken .env is reported at its own line and column.
        std::fs::write(dir.0.join(".env"), "A=1\nB=\"x\n").expect("write .env");
        assert_eq!(
            load(&file).expect_err("bad .env").to_string(),
            format!(
                "{}:2:3: unterminated double quote",
                dir.0.join(".env").display()
            )
        );
    }

    #[test]
    fn env_files_parse() {
        let text = "\
# a comment
  # an indented comment

PLAIN=value
export EXPORTED=yes
SPACED = padded value   
TRAIL=bare # comment
HASH=a#b
HASH_FIRST=#x
EMPTY=
EMPTY_COMMENT= # nothing
SINGLE='literal \\n $HOME # kept'
DOUBLE=\"line\\nnext\\ttab \\\"q\\\" back\\\\slash \\$x \\d\" # comment
URL=http://x/#frag
EQ=a=b
exported=lower
";
        let expected = [
            ("PLAIN", "value"),
            ("EXPORTED", "yes"),
            ("SPACED", "padded value"),
            ("TRAIL", "bare"),
            ("HASH", "a#b"),
            ("HASH_FIRST", "#x"),
            ("EMPTY", ""),
            ("EMPTY_COMMENT", ""),
            ("SINGLE", "literal \\n $HOME # kept"),
            ("DOUBLE", "line\nnext\ttab \"q\" back\\slash $x \\d"),
            ("URL", "http://x/#frag"),
            ("EQ", "a=b"),
            ("exported", "lower"),
        ];
        let pairs = parse_env_file(text).unwrap_or_else(|e| panic!("{e}"));
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, expected);
        assert_eq!(
            parse_env_file("A=1\r\nB=2\r\n"),
            Ok(vec![("A".into(), "1".into()), ("B".into(), "2".into())])
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let cases = [
            (
                "A=1\nJUSTAWORD\n",
                "line 2: expected KEY=value, found no '='",
            ),
            ("export FOO\n", "line 1: expected KEY=value, found no '='"),
            ("=x", "line 1: '' is not a valid variable name"),
            ("MY KEY=x", "line 1: 'MY KEY' is not a valid variable name"),
            ("\n\nA='open", "line 3: unterminated single quote"),
            ("A=\"open\\\"", "line 1: unterminated double quote"),
            (
                "A='x' y",
                "line 1: unexpected text after the closing quote: 'y'",
            ),
            (
                "A=\"x\"y",
                "line 1: unexpected text after the closing quote: 'y'",
            ),
            ("A=a\0b", "line 1: the value contains a NUL byte"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_env_file(text), Err(expected.to_string()), "{text:?}");
        }
    }

    #[test]
    fn env_file_errors_and_values_have_columns() {
        // For `tend check` on a Procfile's .env: file:line:col like the JSON config's errors.
        let cases = [
            ("A=1\n  JUSTAWORD\n", (2, 3)),
            ("export  FOO\n", (1, 9)),
            ("  =x", (1, 3)),
            ("A= 'open", (1, 4)),
            ("é=\"open", (1, 3)),
            ("A='x'  y", (1, 8)),
            ("A=é\0", (1, 3)),
        ];
        for (text, (line, column)) in cases {
            let error = parse_env_entries(text).expect_err(text);
            assert_eq!(
                (error.line, error.column),
                (line, column),
                "{text:?}: {error:?}"
            );
        }
        let entries = parse_env_entries("# c\n  export A = 'v'\nB=\n").expect("parses");
        let found: Vec<(&str, &str, usize, usize)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line, e.column))
            .collect();
        assert_eq!(found, [("A", "v", 2, 14), ("B", "", 3, 3)]);
    }
}
