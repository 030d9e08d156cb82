//! The command line (docs/DESIGN.md §1): argv → a typed [`Cli`]; the `--help` texts are in
//! [`help`].
//!
//! Hand-rolled (no clap) to keep the binary small. Runs on the main thread before anything
//! else; it only parses. It never reads files, the environment or the network, and never
//! prints: `main` decides what to do with the result, so every rule here is table-tested.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::groups::Selector;
pub use crate::model::Action;

mod help;
mod journal;

pub use help::help_text;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// `--url`: where a running tend listens (client commands).
    pub url: Option<String>,
    /// `--config`: the config file (otherwise `./tend.json`, else `./Procfile`).
    pub config: Option<PathBuf>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `tend up`: run the supervisor in the foreground.
    Up(UpOptions),
    /// `tend check`: validate the config.
    Check,
    /// `tend status [ID|@GROUP…]` (alias `ps`); `only` empty: every server.
    Status { json: bool, only: Selector },
    /// `tend status --url URL --url URL…` or `tend status --hosts FILE`: one table over many
    /// tends (docs/DESIGN.md §12 "Fleet"). `urls` in the order given, after the file's hosts.
    FleetStatus {
        json: bool,
        urls: Vec<String>,
        hosts_file: Option<PathBuf>,
    },
    /// `tend start|stop|restart ID...|--all [--wait] [--timeout S] [--no-wait]`.
    Act {
        action: Action,
        target: Target,
        /// How long to wait for each server to get where it was sent (running, or stopped);
        /// `None` (`--no-wait`): return once tend has acted.
        wait: Option<Duration>,
    },
    /// `tend logs [ID|@GROUP…] [-n N] [-f]`: one id prints its lines as they are; anything else
    /// (nothing: every server) merges them, each with its server.
    Logs {
        targets: Selector,
        lines: usize,
        follow: bool,
    },
    /// `tend kill-orphan ID`.
    /// `tend events [-n N] [-f] [ID]`: the history of timeline events, as a journal.
    Events {
        id: Option<String>,
        lines: usize,
        follow: bool,
    },
    /// `tend alerts test`: a test alert through every alert rule.
    AlertsTest,
    /// `tend kill-orphan ID`.
    KillOrphan { id: String },
    /// `tend adopt ID`.
    Adopt { id: String },
    /// `tend reload`: apply the changed config to the running tend.
    Reload,
    /// `tend export systemd [--user] [--out DIR]`, `tend export procfile`.
    Export(ExportFormat),
    /// `tend version`, `tend --version`.
    Version,
    /// `tend help [COMMAND]`, `tend COMMAND --help`. `topic` is a canonical command name.
    Help { topic: Option<String> },
    /// `tend serve-demo`: the hidden demo server used by the built-in demo and by tests.
    Serve(ServeOptions),
}

/// Options of `tend up`; command-line values win over the config file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpOptions {
    pub listen: Option<SocketAddr>,
    pub state: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    /// The base `PORT` handed to Procfile entries.
    pub port: Option<u16>,
}

/// Which servers an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    /// Never empty; in the order given.
    Ids(Vec<String>),
    /// At least one `@group`, maybe with ids: one request, in dependency order.
    Selected(Selector),
}

/// `@name` is a group, anything else an id (ids cannot start with `@`).
fn add_target(selector: &mut Selector, word: String, command: &str) -> Result<(), Error> {
    match word.strip_prefix('@') {
        Some("") => Err(usage(format!(
            "'@' needs a group name, as in `tend {command} @backend`; see `tend help {command}`"
        ))),
        Some(group) => {
            selector.groups.push(group.to_string());
            Ok(())
        }
        None => {
            selector.ids.push(word);
            Ok(())
        }
    }
}

/// What `tend export` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFormat {
    /// systemd units; `user`: for `systemctl --user`; `out`: write files there, else stdout.
    Systemd {
        user: bool,
        out: Option<PathBuf>,
    },
    Procfile,
}

/// Options of the hidden `tend serve-demo` program (see `demo.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Listen on 127.0.0.1:PORT; `None` only prints.
    pub port: Option<u16>,
    /// Exit with `exit_code` after this long.
    pub crash_after: Option<Duration>,
    /// How often to print a line; zero never prints.
    pub print_every: Duration,
    pub exit_code: i32,
    /// Ignore SIGTERM, so that a stop needs SIGKILL.
    pub ignore_term: bool,
    /// Worker processes to start, sharing the listening socket (a prefork server such as
    /// nginx or gunicorn, so that tests and the demo show a process group).
    pub workers: u32,
    /// Memory each worker holds resident, in MiB.
    pub worker_mb: u64,
    /// CPU time each worker spends when it starts.
    pub worker_cpu: Duration,
    pub role: DemoRole,
}

/// Whether a `serve-demo` process is the one a person (or tend) started, or one of its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRole {
    Main,
    /// Started by a main demo process; serves on the listening descriptor it inherited, if any.
    Worker {
        listen_fd: Option<i32>,
    },
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            port: None,
            crash_after: None,
            print_every: Duration::from_millis(1000),
            exit_code: 1,
            ignore_term: false,
            workers: 0,
            worker_mb: 0,
            worker_cpu: Duration::ZERO,
            role: DemoRole::Main,
        }
    }
}

/// Default of `tend logs -n`, the same as the API's.
pub const DEFAULT_LOG_LINES: usize = 200;
/// Default of `tend events -n`.
pub const DEFAULT_EVENT_LINES: usize = 50;

/// Default of `tend start|stop|restart --timeout`: above the default `start_timeout_ms` (30 s,
/// after which a server that has not opened its ports is `unhealthy`, a failure) and the default
/// `stop_timeout_ms` (5 s), so the common failures are named by tend rather than by the clock.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The commands `tend help` lists (and accepts as topics), with their aliases.
const COMMANDS: [&str; 15] = [
    "up",
    "check",
    "status",
    "start",
    "stop",
    "restart",
    "logs",
    "events",
    "alerts",
    "kill-orphan",
    "adopt",
    "reload",
    "export",
    "version",
    "help",
];

/// Parses the arguments after argv[0].
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, Error> {
    let words = args
        .into_iter()
        .map(|arg| {
            arg.into_string().map_err(|bad| {
                usage(format!(
                    "argument '{}' is not valid UTF-8; see `tend help`",
                    bad.to_string_lossy()
                ))
            })
        })
        .collect::<Result<Vec<String>, Error>>()?;
    Parser {
        words,
        pos: 0,
        urls: Vec::new(),
        config: None,
        only_positionals: false,
    }
    .parse()
}

fn usage(message: String) -> Error {
    Error::Usage(message)
}

/// Maps a command word (or alias) to its canonical name; the hidden `serve-demo` included.
fn canonical_command(word: &str) -> Option<&'static str> {
    match word {
        "ps" => Some("status"),
        "serve-demo" => Some("serve-demo"),
        _ => COMMANDS.iter().copied().find(|&name| name == word),
    }
}

/// The state of one parse: the words, a cursor, and the global options seen so far.
struct Parser {
    words: Vec<String>,
    pos: usize,
    /// Every `--url`, in order: several only make sense to `tend status`.
    urls: Vec<String>,
    config: Option<PathBuf>,
    /// After `--` every word is positional (an id can then never pass for an option).
    only_positionals: bool,
}

/// One word after the command, once the global options are taken out.
enum Arg {
    /// `--name` or `-n`, with the value of `--name=value` if written that way.
    Flag {
        name: String,
        inline: Option<String>,
    },
    Positional(String),
}

impl Parser {
    fn parse(mut self) -> Result<Cli, Error> {
        // Global options may come before the command: take them until the first other word.
        let word = loop {
            let Some(word) = self.next_word() else {
                return self.finish(Command::Help { topic: None });
            };
            match word.as_str() {
                "-h" | "--help" => return self.finish(Command::Help { topic: None }),
                "-V" | "--version" => return self.finish(Command::Version),
                _ => {}
            }
            if !self.take_global(&word)? {
                if word.starts_with('-') {
                    return Err(usage(format!("unknown option '{word}'; see `tend help`")));
                }
                break word;
            }
        };
        let Some(name) = canonical_command(&word) else {
            return Err(usage(format!("unknown command '{word}'; see `tend help`")));
        };
        // `tend COMMAND --help` wins over any other mistake on the line: whoever asks for help
        // should get it, not an error about the words they have not fixed yet.
        let rest = &self.words[self.pos..];
        let end = rest.iter().position(|w| w == "--").unwrap_or(rest.len());
        if rest[..end].iter().any(|w| w == "-h" || w == "--help") {
            return self.finish(Command::Help {
                topic: Some(name.to_string()),
            });
        }
        let command = match name {
            "up" => self.parse_up()?,
            "check" => {
                self.no_more_args(name)?;
                Command::Check
            }
            "status" => self.parse_status()?,
            "start" => self.parse_act(Action::Start)?,
            "stop" => self.parse_act(Action::Stop)?,
            "restart" => self.parse_act(Action::Restart)?,
            "logs" => self.parse_logs()?,
            "events" => self.parse_events()?,
            "alerts" => self.parse_alerts()?,
            "kill-orphan" => self.parse_kill_orphan()?,
            "adopt" => self.parse_adopt()?,
            "reload" => {
                self.no_more_args(name)?;
                Command::Reload
            }
            "export" => self.parse_export()?,
            "version" => {
                self.no_more_args(name)?;
                Command::Version
            }
            "help" => self.parse_help()?,
            "serve-demo" => self.parse_serve()?,
            other => unreachable!("canonical_command returned unknown '{other}'"),
        };
        self.finish(command)
    }

    fn finish(mut self, command: Command) -> Result<Cli, Error> {
        let several = self.urls.len() > 1;
        let command = match command {
            Command::Status { json, ref only } if several && only.is_empty() => {
                Command::FleetStatus {
                    json,
                    urls: std::mem::take(&mut self.urls),
                    hosts_file: None,
                }
            }
            Command::FleetStatus {
                json, hosts_file, ..
            } => Command::FleetStatus {
                json,
                urls: std::mem::take(&mut self.urls),
                hosts_file,
            },
            // Control stays per host: one tend is acted on at a time, never a fleet by accident.
            Command::Help { .. } => command,
            _ if several => {
                return Err(usage(format!(
                    "'--url' is given {} times, but only `tend status` reads several tends; \
                     act on one at a time (`tend restart web --url URL`)",
                    self.urls.len()
                )));
            }
            _ => command,
        };
        Ok(Cli {
            url: self.urls.pop(),
            config: self.config,
            command,
        })
    }

    fn next_word(&mut self) -> Option<String> {
        let word = self.words.get(self.pos)?.clone();
        self.pos += 1;
        Some(word)
    }

    /// Takes `--url`/`--config` (and their `=` forms); false if `word` is not one of them.
    fn take_global(&mut self, word: &str) -> Result<bool, Error> {
        let (name, inline) = split_flag(word);
        match name {
            "--url" => {
                let value = self.value(name, inline)?;
                self.urls.push(value);
                Ok(true)
            }
            "--config" => {
                let value = self.value(name, inline)?;
                self.config = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The value of an option: the part after `=`, else the next word.
    fn value(&mut self, name: &str, inline: Option<String>) -> Result<String, Error> {
        if let Some(value) = inline {
            return Ok(value);
        }
        match self.next_word() {
            Some(value) => Ok(value),
            None => Err(usage(format!(
                "option '{name}' needs a value; see `tend help`"
            ))),
        }
    }

    /// The next word after the command, with global options taken out; `None` at the end.
    fn next_arg(&mut self) -> Result<Option<Arg>, Error> {
        loop {
            let Some(word) = self.next_word() else {
                return Ok(None);
            };
            if self.only_positionals {
                return Ok(Some(Arg::Positional(word)));
            }
            if word == "--" {
                self.only_positionals = true;
                continue;
            }
            if self.take_global(&word)? {
                continue;
            }
            if word.starts_with('-') && word.len() > 1 {
                let (name, inline) = split_flag(&word);
                return Ok(Some(Arg::Flag {
                    name: name.to_string(),
                    inline,
                }));
            }
            return Ok(Some(Arg::Positional(word)));
        }
    }

    fn no_more_args(&mut self, command: &str) -> Result<(), Error> {
        match self.next_arg()? {
            None => Ok(()),
            Some(arg) => Err(unexpected(command, arg)),
        }
    }

    fn parse_up(&mut self) -> Result<Command, Error> {
        let mut options = UpOptions::default();
        while let Some(arg) = self.next_arg()? {
            let Arg::Flag { name, inline } = arg else {
                return Err(unexpected("up", arg));
            };
            match name.as_str() {
                "--listen" => {
                    let value = self.value(&name, inline)?;
                    let addr = value.parse::<SocketAddr>().map_err(|_| {
                        usage(format!(
                            "invalid --listen address '{value}': expected IP:PORT such as \
                             127.0.0.1:7070; see `tend help up`"
                        ))
                    })?;
                    options.listen = Some(addr);
                }
                "--state" => options.state = Some(PathBuf::from(self.value(&name, inline)?)),
                "--log-dir" => options.log_dir = Some(PathBuf::from(self.value(&name, inline)?)),
                "--port" => {
                    let value = self.value(&name, inline)?;
                    options.port = Some(parse_number(&name, &value)?);
                }
                _ => return Err(unexpected("up", Arg::Flag { name, inline })),
            }
        }
        Ok(Command::Up(options))
    }

    fn parse_status(&mut self) -> Result<Command, Error> {
        let mut json = false;
        let mut hosts_file = None;
        let mut only = Selector::default();
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Flag {
                    ref name,
                    inline: None,
                } if name == "--json" => json = true,
                Arg::Flag { name, inline } if name == "--hosts" => {
                    hosts_file = Some(PathBuf::from(self.value(&name, inline)?));
                }
                Arg::Positional(word) if hosts_file.is_none() => {
                    add_target(&mut only, word, "status")?
                }
                other => return Err(unexpected("status", other)),
            }
        }
        if hosts_file.is_some() && !only.is_empty() {
            return Err(usage(
                "`tend status --hosts` shows whole tends; ids and @groups are for one tend".into(),
            ));
        }
        Ok(match hosts_file {
            None => Command::Status { json, only },
            Some(file) => Command::FleetStatus {
                json,
                urls: Vec::new(),
                hosts_file: Some(file),
            },
        })
    }

    fn parse_act(&mut self, action: Action) -> Result<Command, Error> {
        let command = action.as_str();
        let mut all = false;
        let mut named = Selector::default();
        let mut no_wait = false;
        let mut timeout = None;
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Flag { name, inline } => match name.as_str() {
                    "--all" | "-a" if inline.is_none() => all = true,
                    // Waiting is the default; `--wait` is accepted for scripts that say so.
                    "--wait" if inline.is_none() => {}
                    "--no-wait" if inline.is_none() => no_wait = true,
                    "--timeout" => {
                        let value = self.value(&name, inline)?;
                        timeout = Some(parse_seconds(&name, &value, command)?);
                    }
                    _ => return Err(unexpected(command, Arg::Flag { name, inline })),
                },
                Arg::Positional(word) => add_target(&mut named, word, command)?,
            }
        }
        if no_wait && timeout.is_some() {
            return Err(usage(format!(
                "`tend {command}` takes --no-wait or --timeout, not both; see \
                 `tend help {command}`"
            )));
        }
        let wait = (!no_wait).then(|| timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT));
        let target = match (all, named.is_empty()) {
            (true, true) => Target::All,
            (false, false) if named.groups.is_empty() => Target::Ids(named.ids),
            (false, false) => Target::Selected(named),
            (true, false) => {
                return Err(usage(format!(
                    "`tend {command}` takes server ids and @groups, or --all, not both; see \
                     `tend help {command}`"
                )));
            }
            (false, true) => {
                return Err(usage(format!(
                    "`tend {command}` needs at least one server id or @group, or --all; see \
                     `tend help {command}`"
                )));
            }
        };
        Ok(Command::Act {
            action,
            target,
            wait,
        })
    }

    fn parse_logs(&mut self) -> Result<Command, Error> {
        let mut targets = Selector::default();
        let mut lines = DEFAULT_LOG_LINES;
        let mut follow = false;
        while let Some(arg) = self.next_arg()? {
            match self.tail_flag(arg, &mut lines, &mut follow)? {
                None => {}
                Some(Arg::Positional(word)) => add_target(&mut targets, word, "logs")?,
                Some(flag) => return Err(unexpected("logs", flag)),
            }
        }
        Ok(Command::Logs {
            targets,
            lines,
            follow,
        })
    }

    /// The flags `logs` and `events` share, as tail(1) spells them: `-n N`, `--lines N`, `-nN`
    /// and `-f`/`--follow`. Gives back any other argument.
    fn tail_flag(
        &mut self,
        arg: Arg,
        lines: &mut usize,
        follow: &mut bool,
    ) -> Result<Option<Arg>, Error> {
        let Arg::Flag { name, inline } = arg else {
            return Ok(Some(arg));
        };
        match name.as_str() {
            "-n" | "--lines" => {
                let value = self.value(&name, inline)?;
                *lines = parse_number(&name, &value)?;
            }
            "-f" | "--follow" if inline.is_none() => *follow = true,
            short if short.starts_with("-n") && inline.is_none() => {
                *lines = parse_number("-n", &short[2..])?;
            }
            _ => return Ok(Some(Arg::Flag { name, inline })),
        }
        Ok(None)
    }

    fn parse_kill_orphan(&mut self) -> Result<Command, Error> {
        let mut id = None;
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Positional(word) if id.is_none() => id = Some(word),
                other => return Err(unexpected("kill-orphan", other)),
            }
        }
        match id {
            Some(id) => Ok(Command::KillOrphan { id }),
            None => Err(usage(
                "`tend kill-orphan` needs a server id; see `tend help kill-orphan`".into(),
            )),
        }
    }

    fn parse_adopt(&mut self) -> Result<Command, Error> {
        let mut id = None;
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Positional(word) if id.is_none() => id = Some(word),
                other => return Err(unexpected("adopt", other)),
            }
        }
        match id {
            Some(id) => Ok(Command::Adopt { id }),
            None => Err(usage(
                "`tend adopt` needs a server id; see `tend help adopt`".into(),
            )),
        }
    }

    fn parse_export(&mut self) -> Result<Command, Error> {
        let mut format = None;
        let mut user = false;
        let mut out = None;
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Positional(word) if format.is_none() => match word.as_str() {
                    "systemd" | "procfile" => format = Some(word),
                    _ => {
                        return Err(usage(format!(
                            "unknown export format '{word}': expected systemd or procfile; \
                             see `tend help export`"
                        )));
                    }
                },
                Arg::Flag { name, inline } => match name.as_str() {
                    "--user" if inline.is_none() => user = true,
                    "--out" => out = Some(PathBuf::from(self.value(&name, inline)?)),
                    _ => return Err(unexpected("export", Arg::Flag { name, inline })),
                },
                other => return Err(unexpected("export", other)),
            }
        }
        match format.as_deref() {
            Some("systemd") => Ok(Command::Export(ExportFormat::Systemd { user, out })),
            Some(_) if user || out.is_some() => Err(usage(
                "--user and --out are options of `tend export systemd`; see `tend help export`"
                    .into(),
            )),
            Some(_) => Ok(Command::Export(ExportFormat::Procfile)),
            None => Err(usage(
                "`tend export` needs a format: systemd or procfile; see `tend help export`".into(),
            )),
        }
    }

    fn parse_help(&mut self) -> Result<Command, Error> {
        let mut topic = None;
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Positional(word) if topic.is_none() => topic = Some(word),
                other => return Err(unexpected("help", other)),
            }
        }
        let topic = match topic {
            None => None,
            Some(word) => match canonical_command(&word) {
                Some(name) => Some(name.to_string()),
                None => {
                    return Err(usage(format!(
                        "no help for '{word}': it is not a tend command; see `tend help`"
                    )));
                }
            },
        };
        Ok(Command::Help { topic })
    }

    fn parse_serve(&mut self) -> Result<Command, Error> {
        let mut options = ServeOptions::default();
        while let Some(arg) = self.next_arg()? {
            let Arg::Flag { name, inline } = arg else {
                return Err(unexpected("serve-demo", arg));
            };
            match name.as_str() {
                "--port" => {
                    let value = self.value(&name, inline)?;
                    options.port = Some(parse_number(&name, &value)?);
                }
                "--crash-after-ms" => {
                    let value = self.value(&name, inline)?;
                    options.crash_after = Some(Duration::from_millis(parse_number(&name, &value)?));
                }
                "--print-every-ms" => {
                    let value = self.value(&name, inline)?;
                    options.print_every = Duration::from_millis(parse_number(&name, &value)?);
                }
                "--exit-code" => {
                    let value = self.value(&name, inline)?;
                    let code: u8 = parse_number(&name, &value)?;
                    options.exit_code = i32::from(code);
                }
                "--ignore-term" if inline.is_none() => options.ignore_term = true,
                "--workers" => {
                    let value = self.value(&name, inline)?;
                    options.workers = parse_number(&name, &value)?;
                }
                "--worker-mb" => {
                    let value = self.value(&name, inline)?;
                    options.worker_mb = parse_number(&name, &value)?;
                }
                "--worker-cpu-ms" => {
                    let value = self.value(&name, inline)?;
                    options.worker_cpu = Duration::from_millis(parse_number(&name, &value)?);
                }
                // Internal: how a demo master starts its workers.
                "--worker" if inline.is_none() => {
                    options.role = DemoRole::Worker { listen_fd: None };
                }
                "--worker-fd" => {
                    let value = self.value(&name, inline)?;
                    let listen_fd = Some(parse_number(&name, &value)?);
                    options.role = DemoRole::Worker { listen_fd };
                }
                _ => return Err(unexpected("serve-demo", Arg::Flag { name, inline })),
            }
        }
        Ok(Command::Serve(options))
    }
}

/// Splits `--name=value` into its name and value; other words come back whole.
fn split_flag(word: &str) -> (&str, Option<String>) {
    match word.split_once('=') {
        Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
        _ => (word, None),
    }
}

fn parse_number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, Error> {
    value.parse::<T>().map_err(|_| {
        usage(format!(
            "invalid value '{value}' for {option}: expected a whole number in range; see \
             `tend help`"
        ))
    })
}

/// A positive number of seconds, whole or not (`30`, `2.5`), up to a day.
fn parse_seconds(option: &str, value: &str, command: &str) -> Result<Duration, Error> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(usage(format!(
            "invalid value '{value}' for {option}: expected seconds above 0 (such as 30 or \
             2.5), at most a day; see `tend help {command}`"
        ))),
    }
}

/// The error for a word a command does not take.
fn unexpected(command: &str, arg: Arg) -> Error {
    match arg {
        Arg::Flag { name, inline: None } => usage(format!(
            "unknown option '{name}' for `tend {command}`; see `tend help {command}`"
        )),
        Arg::Flag {
            name,
            inline: Some(_),
        } => usage(format!(
            "option '{name}' of `tend {command}` takes no value; see `tend help {command}`"
        )),
        Arg::Positional(word) => usage(format!(
            "unexpected argument '{word}' for `tend {command}`; see `tend help {command}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Cli, Error> {
        parse(line.split_whitespace().map(OsString::from))
    }

    fn command(line: &str) -> Command {
        match parse_words(line) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{line:?} should parse, got: {e}"),
        }
    }

    fn usage_error(line: &str) -> String {
        match parse_words(line) {
            Err(Error::Usage(message)) => message,
            other => panic!("{line:?} should be a usage error, got {other:?}"),
        }
    }

    fn one(id: &str) -> Selector {
        Selector {
            groups: Vec::new(),
            ids: vec![id.to_string()],
        }
    }

    fn ids(list: &[&str]) -> Target {
        Target::Ids(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn commands_parse_to_their_typed_form() {
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let table: Vec<(&str, Command)> = vec![
            ("", Command::Help { topic: None }),
            ("up", Command::Up(UpOptions::default())),
            (
                "up --listen 127.0.0.1:9000 --state s.json --log-dir=logs --port 5000",
                Command::Up(UpOptions {
                    listen: Some(listen),
                    state: Some("s.json".into()),
                    log_dir: Some("logs".into()),
                    port: Some(5000),
                }),
            ),
            ("check", Command::Check),
            (
                "status",
                Command::Status {
                    json: false,
                    only: Selector::default(),
                },
            ),
            (
                "ps",
                Command::Status {
                    json: false,
                    only: Selector::default(),
                },
            ),
            (
                "status --json",
                Command::Status {
                    json: true,
                    only: Selector::default(),
                },
            ),
            (
                "start web",
                Command::Act {
                    action: Action::Start,
                    target: ids(&["web"]),
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            (
                "stop web db",
                Command::Act {
                    action: Action::Stop,
                    target: ids(&["web", "db"]),
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            (
                "restart --all",
                Command::Act {
                    action: Action::Restart,
                    target: Target::All,
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            (
                "restart --all --timeout 2.5",
                Command::Act {
                    action: Action::Restart,
                    target: Target::All,
                    wait: Some(Duration::from_millis(2500)),
                },
            ),
            (
                "start web --wait --timeout=10",
                Command::Act {
                    action: Action::Start,
                    target: ids(&["web"]),
                    wait: Some(Duration::from_secs(10)),
                },
            ),
            (
                "start web --no-wait",
                Command::Act {
                    action: Action::Start,
                    target: ids(&["web"]),
                    wait: None,
                },
            ),
            (
                "stop -a",
                Command::Act {
                    action: Action::Stop,
                    target: Target::All,
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            (
                "logs web",
                Command::Logs {
                    targets: one("web"),
                    lines: 200,
                    follow: false,
                },
            ),
            (
                "logs -n 5 web -f",
                Command::Logs {
                    targets: one("web"),
                    lines: 5,
                    follow: true,
                },
            ),
            (
                "logs web --lines=7",
                Command::Logs {
                    targets: one("web"),
                    lines: 7,
                    follow: false,
                },
            ),
            (
                "logs web -n50",
                Command::Logs {
                    targets: one("web"),
                    lines: 50,
                    follow: false,
                },
            ),
            (
                "logs --follow web",
                Command::Logs {
                    targets: one("web"),
                    lines: 200,
                    follow: true,
                },
            ),
            (
                "restart @backend web",
                Command::Act {
                    action: Action::Restart,
                    target: Target::Selected(Selector {
                        groups: vec!["backend".into()],
                        ids: vec!["web".into()],
                    }),
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            (
                "logs",
                Command::Logs {
                    targets: Selector::default(),
                    lines: 200,
                    follow: false,
                },
            ),
            (
                "logs @backend web -f",
                Command::Logs {
                    targets: Selector {
                        groups: vec!["backend".into()],
                        ids: vec!["web".into()],
                    },
                    lines: 200,
                    follow: true,
                },
            ),
            (
                "status @workers",
                Command::Status {
                    json: false,
                    only: Selector {
                        groups: vec!["workers".into()],
                        ids: Vec::new(),
                    },
                },
            ),
            (
                "events",
                Command::Events {
                    id: None,
                    lines: DEFAULT_EVENT_LINES,
                    follow: false,
                },
            ),
            (
                "events -f db -n20",
                Command::Events {
                    id: Some("db".into()),
                    lines: 20,
                    follow: true,
                },
            ),
            ("alerts test", Command::AlertsTest),
            ("kill-orphan web", Command::KillOrphan { id: "web".into() }),
            ("adopt web", Command::Adopt { id: "web".into() }),
            ("reload", Command::Reload),
            (
                "export systemd",
                Command::Export(ExportFormat::Systemd {
                    user: false,
                    out: None,
                }),
            ),
            (
                "export --user systemd --out=units",
                Command::Export(ExportFormat::Systemd {
                    user: true,
                    out: Some("units".into()),
                }),
            ),
            ("export procfile", Command::Export(ExportFormat::Procfile)),
            ("version", Command::Version),
            ("--version", Command::Version),
            ("-V", Command::Version),
            ("help", Command::Help { topic: None }),
            ("--help", Command::Help { topic: None }),
            ("-h", Command::Help { topic: None }),
            (
                "help up",
                Command::Help {
                    topic: Some("up".into()),
                },
            ),
            (
                "help ps",
                Command::Help {
                    topic: Some("status".into()),
                },
            ),
            (
                "up --help",
                Command::Help {
                    topic: Some("up".into()),
                },
            ),
            (
                "start -h",
                Command::Help {
                    topic: Some("start".into()),
                },
            ),
            // Help wins over the mistakes on the rest of the line.
            (
                "logs --bogus --help",
                Command::Help {
                    topic: Some("logs".into()),
                },
            ),
            (
                "start -- --help",
                Command::Act {
                    action: Action::Start,
                    target: ids(&["--help"]),
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            (
                "stop -- -x",
                Command::Act {
                    action: Action::Stop,
                    target: ids(&["-x"]),
                    wait: Some(DEFAULT_WAIT_TIMEOUT),
                },
            ),
            ("serve-demo", Command::Serve(ServeOptions::default())),
            (
                "serve-demo --port 8000 --crash-after-ms 300 --print-every-ms=0 --exit-code 3 \
                 --ignore-term",
                Command::Serve(ServeOptions {
                    port: Some(8000),
                    crash_after: Some(Duration::from_millis(300)),
                    print_every: Duration::ZERO,
                    exit_code: 3,
                    ignore_term: true,
                    ..ServeOptions::default()
                }),
            ),
            (
                "serve-demo --port 8000 --workers 2 --worker-mb 64 --worker-cpu-ms 300",
                Command::Serve(ServeOptions {
                    port: Some(8000),
                    workers: 2,
                    worker_mb: 64,
                    worker_cpu: Duration::from_millis(300),
                    ..ServeOptions::default()
                }),
            ),
            (
                "serve-demo --worker-fd 3 --worker-mb 1",
                Command::Serve(ServeOptions {
                    worker_mb: 1,
                    role: DemoRole::Worker { listen_fd: Some(3) },
                    ..ServeOptions::default()
                }),
            ),
        ];
        for (line, expected) in table {
            assert_eq!(command(line), expected, "argv: {line:?}");
        }
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let table = [
            "--url http://h:1 --config c.json status",
            "--url=http://h:1 status --config=c.json",
            "status --url http://h:1 --config c.json",
            "--config c.json status --url=http://h:1",
        ];
        for line in table {
            let cli = parse_words(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(cli.url.as_deref(), Some("http://h:1"), "{line}");
            assert_eq!(
                cli.config.as_deref(),
                Some(std::path::Path::new("c.json")),
                "{line}"
            );
            assert_eq!(
                cli.command,
                Command::Status {
                    json: false,
                    only: Selector::default()
                },
                "{line}"
            );
        }
        let cli = parse_words("up --config tend.json --listen 127.0.0.1:1").unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("tend.json")));
        let cli = parse_words("start web --url h:2 db").unwrap();
        assert_eq!(cli.url.as_deref(), Some("h:2"));
        assert_eq!(
            cli.command,
            Command::Act {
                action: Action::Start,
                target: ids(&["web", "db"]),
                wait: Some(DEFAULT_WAIT_TIMEOUT),
            }
        );
    }

    #[test]
    fn status_reads_several_tends_and_control_stays_per_host() {
        let fleet = |urls: &[&str], hosts_file: Option<&str>, json: bool| Command::FleetStatus {
            json,
            urls: urls.iter().map(|u| u.to_string()).collect(),
            hosts_file: hosts_file.map(PathBuf::from),
        };
        let table = [
            (
                "--url h:1 status --url h:2",
                fleet(&["h:1", "h:2"], None, false),
            ),
            (
                "ps --json --url=h:1 --url h:2 --url h:3",
                fleet(&["h:1", "h:2", "h:3"], None, true),
            ),
            (
                "status --hosts ~/.config/tend/hosts",
                fleet(&[], Some("~/.config/tend/hosts"), false),
            ),
            (
                "status --hosts=f --url h:9 --json",
                fleet(&["h:9"], Some("f"), true),
            ),
        ];
        for (line, expected) in table {
            let cli = parse_words(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(cli.command, expected, "{line}");
            assert_eq!(cli.url, None, "{line}: the URLs belong to the command");
        }
        // One --url is the one tend, as before.
        let cli = parse_words("status --url h:1").unwrap();
        assert_eq!(
            cli.command,
            Command::Status {
                json: false,
                only: Selector::default()
            }
        );
        assert_eq!(cli.url.as_deref(), Some("h:1"));

        for line in [
            "restart web --url h:1 --url h:2",
            "--url h:1 --url h:2 logs web",
        ] {
            let message = usage_error(line);
            assert!(
                message.contains("given 2 times") && message.contains("tend restart web --url URL"),
                "{line}: {message}"
            );
        }
        assert_eq!(
            command("--url h:1 --url h:2 status --help"),
            Command::Help {
                topic: Some("status".into())
            }
        );
        assert!(usage_error("status --hosts").contains("'--hosts' needs a value"));
    }

    #[test]
    fn mistakes_are_usage_errors_naming_the_bad_word() {
        let table: [(&str, &[&str]); 34] = [
            ("frobnicate", &["'frobnicate'", "tend help"]),
            ("--bogus status", &["'--bogus'", "tend help"]),
            ("status --bogus", &["'--bogus'", "tend help status"]),
            ("status --hosts h extra", &["'extra'", "tend help status"]),
            ("status --json=yes", &["'--json'", "no value"]),
            ("start", &["at least one server id", "--all"]),
            ("stop web --all", &["not both"]),
            ("start web --no-wait --timeout 5", &["not both"]),
            ("start web --timeout 0", &["'0'", "seconds"]),
            ("start web --timeout soon", &["'soon'", "seconds"]),
            ("restart web --timeout", &["'--timeout' needs a value"]),
            ("stop web --no-wait=yes", &["'--no-wait'", "no value"]),
            ("stop @", &["'@' needs a group name"]),
            ("status --hosts h @web", &["'@web'"]),
            ("logs web -n", &["'-n' needs a value"]),
            ("logs web -n many", &["'many'", "-n"]),
            ("logs web -n -3", &["'-3'"]),
            ("kill-orphan", &["needs a server id"]),
            ("adopt", &["needs a server id"]),
            ("up --listen localhost", &["'localhost'", "IP:PORT"]),
            ("up --port 70000", &["'70000'"]),
            ("up web", &["'web'"]),
            ("--url", &["'--url' needs a value"]),
            ("help nope", &["'nope'", "tend help"]),
            ("serve-demo --exit-code 300", &["'300'"]),
            ("check now", &["'now'"]),
            ("export", &["needs a format"]),
            ("export yaml", &["'yaml'", "systemd or procfile"]),
            ("export procfile --user", &["--user"]),
            ("export systemd --out", &["'--out' needs a value"]),
            ("events web db", &["'db'", "tend help events"]),
            ("events -n soon", &["'soon'"]),
            ("alerts", &["`tend alerts test`", "tend help alerts"]),
            ("alerts test now", &["'now'", "tend help alerts"]),
        ];
        for (line, needles) in table {
            let message = usage_error(line);
            // `main` adds no hint of its own: each message carries exactly one (issue 10).
            assert_eq!(
                message.matches("tend help").count(),
                1,
                "{line:?}: {message:?} should point at help once"
            );
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{line:?}: {message:?} lacks {needle:?}"
                );
            }
        }
    }

    #[test]
    fn non_utf8_arguments_are_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("start"),
            OsString::from_vec(vec![b'w', 0xff]),
        ];
        match parse(args) {
            Err(Error::Usage(message)) => assert!(message.contains("UTF-8"), "{message}"),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn action_names_are_the_api_spelling() {
        assert_eq!(Action::Start.as_str(), "start");
        assert_eq!(Action::Stop.as_str(), "stop");
        assert_eq!(Action::Restart.as_str(), "restart");
    }
}
