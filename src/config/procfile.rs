//! Procfiles (docs/DESIGN.md §1): foreman's `name: command` format and the `.env` beside it, read into
//! an ordinary [`Config`] whose servers have the docs/DESIGN.md §2 defaults. Like the JSON reader it
//! runs on the main thread at start-up and for `tend check`, reports every problem at once as
//! file:line:col, and never spawns or signals anything.
//!
//! What foreman and honcho do, and tend follows: one process per `name: command` line, run by
//! `/bin/sh -c` in the Procfile's folder; `PORT` = base + 100 × the entry's index in the file,
//! the base being `--port`, else `PORT` in `.env`, else `PORT` in tend's own environment, else
//! 5000 (foreman's `base_port`; honcho's `expand_processes` steps by 100 the same way). `.env`
//! wins over the inherited environment and `PORT` wins over `.env`, as in honcho's
//! `os.environ.copy().update(env)` followed by `env['PORT'] = …`.
//!
//! Which ports are checked, as on Heroku: only the `web` process type is expected to bind
//! `$PORT` (it stays `starting` until it does); every other type (`worker`, `clock`, …) gets a
//! `PORT` too but is `running` once alive, since nothing asked it to open one.
//!
//! Where tend is stricter: foreman and honcho skip any line their regex does not match, so a
//! typo silently drops a process; here it is an error, as unknown JSON keys are.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

use super::check::quoted;
use super::envfile::{EnvEntry, parse_env_entries};
use super::servers::is_valid_id;
use super::{
    CommandSpec, Config, ConfigError, ConfigErrors, ServerConfig, base_dir_of, file_error,
};

/// The `PORT` of the first entry when nothing else sets it (foreman and honcho).
pub const DEFAULT_BASE_PORT: u16 = 5000;

/// How far apart the entries' ports are (foreman and honcho).
pub const PORT_STEP: u32 = 100;

/// The one process type whose `PORT` is checked (Heroku routes HTTP only to `web`).
pub const WEB: &str = "web";

/// The env file read beside a Procfile.
pub const ENV_FILE_NAME: &str = ".env";

/// Whether `path` names a Procfile rather than a JSON config, by its file name alone:
/// `Procfile`, `Procfile.<anything>` (`Procfile.dev`) or `<anything>.procfile`, but never a name
/// ending in `.json`. The name decides, not the content, so a JSON config with a syntax error
/// gets a JSON error instead of a baffling Procfile one.
pub fn is_procfile(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.ends_with(".json")
        && (name == "Procfile" || name.starts_with("Procfile.") || name.ends_with(".procfile"))
}

/// Reads the Procfile at `path` and the `.env` beside it (if any). `port` is `tend up --port`.
pub fn load(path: &Path, port: Option<u16>) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_error(path, format!("cannot read the Procfile: {e}")))?;
    let base_dir = base_dir_of(path)
        .map_err(|e| file_error(path, format!("cannot resolve the Procfile's folder: {e}")))?;
    // Named like the Procfile was (relative stays relative), so messages read the same.
    let env_path = path.with_file_name(ENV_FILE_NAME);
    let env_text = match std::fs::read_to_string(&env_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(file_error(
                &env_path,
                format!("cannot read the env file: {e}"),
            ));
        }
    };
    let ports = PortSources {
        flag: port,
        inherited: std::env::var("PORT").ok(),
    };
    let dotenv = env_text.as_deref().map(|text| (env_path.as_path(), text));
    parse(&text, path, &base_dir, dotenv, &ports)
}

/// Where the base `PORT` may come from, besides `.env` (foreman's order: the flag, `.env`,
/// tend's own environment, 5000).
#[derive(Debug, Clone, Default)]
pub struct PortSources {
    /// `tend up --port N`.
    pub flag: Option<u16>,
    /// `PORT` in tend's own environment.
    pub inherited: Option<String>,
}

/// Parses Procfile text as if read from `path`, with `dotenv` the `.env` beside it (its path
/// and text). `load` without the I/O.
pub fn parse(
    text: &str,
    path: &Path,
    base_dir: &Path,
    dotenv: Option<(&Path, &str)>,
    ports: &PortSources,
) -> Result<Config, ConfigErrors> {
    let mut problems: Vec<ConfigError> = Vec::new();
    let env_entries = match dotenv {
        Some((env_path, env_text)) => match parse_env_entries(env_text) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(ConfigError {
                    file: env_path.to_path_buf(),
                    line: e.line,
                    column: e.column,
                    message: e.message,
                });
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let fail = |line: usize, column: usize, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let base = match base_port(ports, &env_entries) {
        Ok(base) => base,
        Err(BadPort::InEnvFile { entry, message }) => {
            let env_path = dotenv.map(|(p, _)| p).unwrap_or(path);
            problems.push(ConfigError {
                file: env_path.to_path_buf(),
                line: entry.line,
                column: entry.column,
                message,
            });
            DEFAULT_BASE_PORT
        }
        Err(BadPort::Inherited(message)) => {
            problems.push(fail(0, 0, message));
            DEFAULT_BASE_PORT
        }
    };

    let mut config = Config::defaults(path, base_dir);
    let mut first_line: HashMap<String, usize> = HashMap::new();
    // Procfile lines end in "\n" or "\r\n"; `lines` takes both.
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let (name, command) = match parse_line(line) {
            Line::Skip => continue,
            Line::Bad { column, message } => {
                problems.push(fail(number, column, message));
                continue;
            }
            Line::Entry { name, command } => (name, command),
        };
        if let Some(&earlier) = first_line.get(name) {
            problems.push(fail(
                number,
                1,
                format!(
                    "duplicate process name {}: lines {earlier} and {number} both use it",
                    quoted(name)
                ),
            ));
            continue;
        }
        first_line.insert(name.to_string(), number);
        if !is_valid_id(name) {
            problems.push(fail(
                number,
                1,
                format!(
                    "{} cannot be a tend server id (use 1 to 64 letters, digits, '_' or '-', \
                     starting with a letter or digit)",
                    quoted(name)
                ),
            ));
            continue;
        }
        // The index counts every entry, as foreman's and honcho's do.
        let port = u32::from(base) + PORT_STEP * (first_line.len() as u32 - 1);
        let Ok(port) = u16::try_from(port) else {
            problems.push(fail(
                number,
                1,
                format!(
                    "process {} would get PORT {port} (base {base} + {PORT_STEP} for each \
                     entry before it), past 65535; give a lower base with --port",
                    quoted(name)
                ),
            ));
            continue;
        };
        let mut server = ServerConfig::defaults(
            name,
            CommandSpec::Shell(command.to_string()),
            base_dir,
            number,
        );
        server.env = BTreeMap::from([("PORT".to_string(), port.to_string())]);
        // Read again at every start, like a JSON server's env_file, so edits apply on restart.
        server.env_file = dotenv.map(|_| base_dir.join(ENV_FILE_NAME));
        if name == WEB {
            server.ports = vec![port];
        }
        config.servers.push(server);
    }
    if first_line.is_empty() && problems.is_empty() {
        problems.push(fail(
            0,
            0,
            "no processes: a Procfile needs at least one 'name: command' line".to_string(),
        ));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        // Stable: the .env problem (if any) and each file's own problems keep their order.
        problems.sort_by(|a, b| {
            (a.file != path, a.line, a.column).cmp(&(b.file != path, b.line, b.column))
        });
        Err(ConfigErrors(problems))
    }
}

enum Line<'a> {
    /// Blank, or a `#` comment.
    Skip,
    Entry {
        name: &'a str,
        command: &'a str,
    },
    /// 1-based character column.
    Bad {
        column: usize,
        message: String,
    },
}

/// One Procfile line: foreman's and honcho's `^([A-Za-z0-9_-]+):\s*(.+)$`, with an error where
/// they would skip the line.
fn parse_line(line: &str) -> Line<'_> {
    let trimmed = line.trim_start();
    if trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
        return Line::Skip;
    }
    if trimmed.len() != line.len() {
        // foreman and honcho skip an indented line, so its process would silently not run.
        return Line::Bad {
            column: 1,
            message: "a process line must start with its name, not with white space".to_string(),
        };
    }
    let name_len = line
        .bytes()
        .take_while(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        .count();
    // The name is ASCII, so its byte length is its length in characters.
    let after_name = name_len + 1;
    let name = &line[..name_len];
    let Some(rest) = line[name_len..].strip_prefix(':') else {
        let found = match line[name_len..].chars().next() {
            Some(c) => format!("found {}", quoted(&c.to_string())),
            None => "found the end of the line".to_string(),
        };
        let message = if name_len == 0 {
            format!("expected 'name: command' (a name of letters, digits, '_' or '-'), {found}")
        } else {
            format!(
                "expected ':' after the process name {} ('name: command'), {found}",
                quoted(name)
            )
        };
        return Line::Bad {
            column: after_name,
            message,
        };
    };
    if name_len == 0 {
        return Line::Bad {
            column: 1,
            message: "the process name before ':' is empty".to_string(),
        };
    }
    let command = rest.trim();
    if command.is_empty() {
        return Line::Bad {
            column: after_name + 1,
            message: format!("process {} has an empty command", quoted(name)),
        };
    }
    Line::Entry { name, command }
}

enum BadPort<'a> {
    InEnvFile {
        entry: &'a EnvEntry,
        message: String,
    },
    Inherited(String),
}

/// The first entry's PORT: `--port`, else `PORT` in `.env` (its last line wins), else `PORT` in
/// tend's environment, else 5000 (foreman's `base_port`).
fn base_port<'a>(ports: &PortSources, env: &'a [EnvEntry]) -> Result<u16, BadPort<'a>> {
    if let Some(port) = ports.flag {
        return Ok(port);
    }
    let why = |value: &str, place: &str| {
        format!(
            "PORT {place} must be a port number from 1 to 65535 (it sets the base PORT of the \
             Procfile's entries), found {}",
            quoted(value)
        )
    };
    if let Some(entry) = env.iter().rev().find(|e| e.key == "PORT") {
        return parse_port(&entry.value).ok_or_else(|| BadPort::InEnvFile {
            entry,
            message: why(&entry.value, "in .env"),
        });
    }
    match ports.inherited.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => {
            parse_port(value).ok_or_else(|| BadPort::Inherited(why(value, "in tend's environment")))
        }
        _ => Ok(DEFAULT_BASE_PORT),
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|&port| port > 0)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{PortSources, is_procfile, parse};
    use crate::config::{CommandSpec, Config};

    const FILE: &str = "/app/Procfile";
    const ENV: &str = "/app/.env";

    fn parse_with(
        text: &str,
        dotenv: Option<&str>,
        ports: &PortSources,
    ) -> Result<Config, Vec<String>> {
        parse(
            text,
            Path::new(FILE),
            Path::new("/app"),
            dotenv.map(|t| (Path::new(ENV), t)),
            ports,
        )
        .map_err(|errors| {
            errors
                .0
                .iter()
                .map(|e| {
                    let file = e.file.file_name().unwrap().to_string_lossy();
                    format!("{file}:{}:{}: {}", e.line, e.column, e.message)
                })
                .collect()
        })
    }

    fn ok(text: &str) -> Config {
        parse_with(text, None, &PortSources::default()).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_with(text, None, &PortSources::default()) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(errors) => errors,
        }
    }

    /// (id, command, PORT) of each server.
    fn entries(config: &Config) -> Vec<(String, String, u16)> {
        config
            .servers
            .iter()
            .map(|s| {
                let CommandSpec::Shell(command) = &s.command else {
                    panic!("a Procfile command runs through the shell: {:?}", s.command)
                };
                let port: u16 = s.env["PORT"].parse().unwrap();
                if s.id == "web" {
                    assert_eq!(s.ports, [port], "web's PORT is its checked port");
                } else {
                    assert!(s.ports.is_empty(), "only web's PORT is checked");
                }
                (s.id.clone(), command.clone(), port)
            })
            .collect()
    }

    fn triples(list: &[(&str, &str, u16)]) -> Vec<(String, String, u16)> {
        list.iter()
            .map(|&(a, b, p)| (a.to_string(), b.to_string(), p))
            .collect()
    }

    #[test]
    fn procfiles_are_known_by_name() {
        for name in [
            "Procfile",
            "dir/Procfile",
            "Procfile.dev",
            "Procfile.test",
            "app.procfile",
        ] {
            assert!(is_procfile(Path::new(name)), "{name}");
        }
        for name in ["tend.json", "Procfile.json", "procfile", "MyProcfile", ""] {
            assert!(!is_procfile(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn lines_parse_like_foreman() {
        let text = "\
# a comment
   # an indented comment

web: bundle exec rails s -p $PORT
worker-2:bundle exec sidekiq   
clock_x:\t  ruby clock.rb # the shell reads this comment
a:b: c
";
        assert_eq!(
            entries(&ok(text)),
            triples(&[
                ("web", "bundle exec rails s -p $PORT", 5000),
                ("worker-2", "bundle exec sidekiq", 5100),
                (
                    "clock_x",
                    "ruby clock.rb # the shell reads this comment",
                    5200
                ),
                ("a", "b: c", 5300),
            ])
        );
        let config = ok(text);
        let web = &config.servers[0];
        assert_eq!(web.line, 4);
        assert_eq!(web.cwd, Path::new("/app"));
        assert_eq!(web.env_file, None, "no .env, no env_file");
        assert_eq!(web.env.len(), 1);
        assert_eq!(
            config.state_file,
            Path::new("/app/.tend/process-state.json")
        );
        assert_eq!(config.log_dir, Path::new("/app/.tend/logs"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.path, Path::new(FILE));
    }

    #[test]
    fn a_procfile_server_has_the_design_defaults() {
        let config = ok("web: run\n");
        let mut expected = crate::config::ServerConfig::defaults(
            "web",
            CommandSpec::Shell("run".into()),
            Path::new("/app"),
            1,
        );
        expected.env.insert("PORT".into(), "5000".into());
        expected.ports = vec![5000];
        assert_eq!(config.servers, [expected]);
        // And the top level is exactly a JSON config's defaults.
        let json =
            crate::config::parse("{\"servers\": []}", Path::new(FILE), Path::new("/app")).unwrap();
        assert_eq!(
            Config {
                servers: Vec::new(),
                ..config
            },
            json
        );
    }

    #[test]
    fn crlf_line_ends_are_taken() {
        assert_eq!(
            entries(&ok("# c\r\nweb: run it\r\n\r\nworker: go\r\n")),
            triples(&[("web", "run it", 5000), ("worker", "go", 5100)])
        );
    }

    #[test]
    fn ports_step_by_100_from_the_base() {
        let ports = |dotenv: Option<&str>, flag: Option<u16>, inherited: Option<&str>| {
            let sources = PortSources {
                flag,
                inherited: inherited.map(str::to_string),
            };
            let config = parse_with("a: x\nb: x\n# gap\n\nc: x\n", dotenv, &sources)
                .unwrap_or_else(|e| panic!("{e:#?}"));
            entries(&config)
                .into_iter()
                .map(|e| e.2)
                .collect::<Vec<u16>>()
        };
        assert_eq!(ports(None, None, None), [5000, 5100, 5200]);
        assert_eq!(ports(None, Some(3000), None), [3000, 3100, 3200]);
        // foreman's order: --port, then PORT in .env, then tend's own PORT, then 5000.
        assert_eq!(
            ports(Some("PORT=6000\n"), None, Some("7000")),
            [6000, 6100, 6200]
        );
        assert_eq!(
            ports(Some("PORT=6000\n"), Some(3000), Some("7000")),
            [3000, 3100, 3200]
        );
        assert_eq!(ports(Some("X=1\n"), None, Some("7000")), [7000, 7100, 7200]);
        assert_eq!(ports(None, None, Some(" ")), [5000, 5100, 5200]);
        assert_eq!(
            ports(Some("PORT=1\nPORT=8000\n"), None, None),
            [8000, 8100, 8200]
        );
    }

    #[test]
    fn dotenv_values_come_through_the_env_file_and_port_wins() {
        let config = parse_with(
            "web: run\n",
            Some("PORT=6000\nSECRET=x\n"),
            &PortSources::default(),
        )
        .unwrap();
        let web = &config.servers[0];
        // `.env` is read again at every start (like env_file); PORT in `env` wins over it, as
        // honcho's PORT wins over .env's.
        assert_eq!(web.env_file, Some(PathBuf::from(ENV)));
        assert_eq!(web.env["PORT"], "6000");
        assert_eq!(web.env.len(), 1);
    }

    #[test]
    fn malformed_lines_are_errors_with_line_and_column() {
        let cases: &[(&str, &[&str])] = &[
            (
                "web: ok\nweb rails s\n",
                &[
                    "Procfile:2:4: expected ':' after the process name 'web' ('name: command'), found ' '",
                ],
            ),
            (
                "justaword",
                &[
                    "Procfile:1:10: expected ':' after the process name 'justaword' ('name: command'), found the end of the line",
                ],
            ),
            (
                "web.1: run",
                &[
                    "Procfile:1:4: expected ':' after the process name 'web' ('name: command'), found '.'",
                ],
            ),
            (
                "$x: run",
                &[
                    "Procfile:1:1: expected 'name: command' (a name of letters, digits, '_' or '-'), found '$'",
                ],
            ),
            (
                ": run",
                &["Procfile:1:1: the process name before ':' is empty"],
            ),
            (
                "web:",
                &["Procfile:1:5: process 'web' has an empty command"],
            ),
            (
                "web:   \t",
                &["Procfile:1:5: process 'web' has an empty command"],
            ),
            (
                "  web: run",
                &["Procfile:1:1: a process line must start with its name, not with white space"],
            ),
            (
                "-web: run",
                &[
                    "Procfile:1:1: '-web' cannot be a tend server id (use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit)",
                ],
            ),
            (
                "web: a\nworker: b\n\nweb: c\nweb: d",
                &[
                    "Procfile:4:1: duplicate process name 'web': lines 1 and 4 both use it",
                    "Procfile:5:1: duplicate process name 'web': lines 1 and 5 both use it",
                ],
            ),
            (
                "# only comments\n\n",
                &["Procfile:0:0: no processes: a Procfile needs at least one 'name: command' line"],
            ),
            (
                // Every problem at once, in file order; é counts as one column.
                "ok: run\nbad é\nalso bad\n",
                &[
                    "Procfile:2:4: expected ':' after the process name 'bad' ('name: command'), found ' '",
                    "Procfile:3:5: expected ':' after the process name 'also' ('name: command'), found ' '",
                ],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(errors(text), *expected, "{text:?}");
        }
        let long = "x".repeat(65);
        assert_eq!(
            errors(&format!("{long}: run")),
            [format!(
                "Procfile:1:1: '{long}' cannot be a tend server id (use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit)"
            )]
        );
    }

    #[test]
    fn a_port_past_65535_is_an_error_at_its_entry() {
        let sources = PortSources {
            flag: Some(65500),
            inherited: None,
        };
        assert_eq!(
            parse_with("a: x\nb: x\n", None, &sources).unwrap_err(),
            [
                "Procfile:2:1: process 'b' would get PORT 65600 (base 65500 + 100 for each entry before it), past 65535; give a lower base with --port"
            ]
        );
    }

    #[test]
    fn env_file_and_port_problems_point_at_their_file() {
        let none = PortSources::default();
        assert_eq!(
            parse_with("web: run\n", Some("A=1\n\n  B='open\n"), &none).unwrap_err(),
            [".env:3:5: unterminated single quote"]
        );
        assert_eq!(
            parse_with("web: run\nbad\n", Some("X=1\nPORT = nope # c\n"), &none).unwrap_err(),
            [
                "Procfile:2:4: expected ':' after the process name 'bad' ('name: command'), found the end of the line",
                ".env:2:8: PORT in .env must be a port number from 1 to 65535 (it sets the base PORT of the Procfile's entries), found 'nope'",
            ]
        );
        let inherited = PortSources {
            flag: None,
            inherited: Some("0".into()),
        };
        assert_eq!(
            parse_with("web: run\n", None, &inherited).unwrap_err(),
            [
                "Procfile:0:0: PORT in tend's environment must be a port number from 1 to 65535 (it sets the base PORT of the Procfile's entries), found '0'"
            ]
        );
        // --port wins, so a bad PORT elsewhere does not matter.
        let flag = PortSources {
            flag: Some(4000),
            inherited: Some("junk".into()),
        };
        assert!(parse_with("web: run\n", Some("PORT=junk\n"), &flag).is_ok());
    }
}
