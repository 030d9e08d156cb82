//! The systemd units of a config. The quoting rules
//! are systemd's own (systemd.service(5) "Command lines", systemd.exec(5) `EnvironmentFile=`,
//! systemd.unit(5) specifiers), checked against `systemd-analyze verify` and systemd's own env
//! file parser in tests/it/export.rs.
//!
//! Environment: each unit gets one env file beside it (`tend-shop-web.env`) holding the whole
//! environment tend would give the server, merged in tend's order, and no `Environment=` line
//! (issue 10). Two sources in a unit would differ from tend: systemd lets `EnvironmentFile=`
//! win over `Environment=` whatever their order, and it skips `export KEY=…` lines, which tend
//! reads.
//!
//! Names: the units of a config in folder `shop` are `tend-shop-<id>.service` and one
//! `tend-shop.target` that wants the autostart ones. The folder name keeps two projects that
//! both have a `web` server from overwriting each other's units.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{Host, UnitFile, comment_text, config_file};
use crate::config::health::{HealthCheck, Probe};
use crate::config::{CommandSpec, Config, RestartPolicy, ServerConfig, parse_env_file};
use crate::error::Error;
use crate::model::signal_name;
use crate::os::shell;

/// tend's "a run that stays up 10 s resets the failure count" (docs/DESIGN.md §2, src/supervisor/policy.rs).
const RESET_AFTER: Duration = Duration::from_secs(10);

/// The units of one config and their env files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdExport {
    /// One service per server, in config order, then the target.
    pub units: Vec<UnitFile>,
    /// One env file per service, in the same order, named after it (`tend-shop-web.env`).
    pub env_files: Vec<UnitFile>,
}

impl SystemdExport {
    /// Every file, each service followed by its env file, then the target (stdout's order).
    pub fn files(&self) -> impl Iterator<Item = &UnitFile> {
        let services = self.units.len().saturating_sub(1);
        self.units[..services]
            .iter()
            .zip(&self.env_files)
            .flat_map(|(unit, env)| [unit, env])
            .chain(self.units.get(services))
    }
}

/// The unit-name stem of a config: `tend-<folder name>`, reduced to what a unit name may hold.
pub fn unit_prefix(config: &Config) -> String {
    let dir = std::fs::canonicalize(&config.base_dir).unwrap_or_else(|_| config.base_dir.clone());
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut clean = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            c
        } else {
            '-'
        };
        if !(c == '-' && clean.ends_with('-')) {
            clean.push(c);
        }
    }
    let clean: String = clean
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(64)
        .collect();
    if clean.is_empty() {
        "tend-app".to_string()
    } else {
        format!("tend-{clean}")
    }
}

/// Generates one `.service` per server, each with its env file (which the unit names in
/// `env_dir`), and a `.target` that wants the autostart ones. `user`: units for
/// `systemctl --user` (no `User=`, the target wanted by default.target).
pub fn systemd(
    config: &Config,
    user: bool,
    host: &Host,
    env_dir: &Path,
) -> Result<SystemdExport, Error> {
    let prefix = unit_prefix(config);
    let target = format!("{prefix}.target");
    let service_name = |id: &str| format!("{prefix}-{id}.service");
    let mut units = Vec::new();
    let mut env_files = Vec::new();
    let mut problems = Vec::new();
    for server in &config.servers {
        let env_name = format!("{prefix}-{}.env", server.id);
        let env_path = env_dir.join(&env_name);
        let made = env_file(config, server, host, &service_name(&server.id)).and_then(|env| {
            let unit = service_unit(
                config,
                server,
                user,
                host,
                &target,
                &service_name,
                &env_path,
            )?;
            Ok((unit, env))
        });
        match made {
            Ok((text, env)) => {
                units.push(UnitFile {
                    name: service_name(&server.id),
                    text,
                });
                env_files.push(UnitFile {
                    name: env_name,
                    text: env,
                });
            }
            Err(problem) => problems.push(format!("server '{}': {problem}", server.id)),
        }
    }
    if !problems.is_empty() {
        return Err(Error::other(format!(
            "cannot export {} as systemd units: {}",
            config.path.display(),
            problems.join("; ")
        )));
    }
    let mut text = header(config, user);
    text.push_str("[Unit]\n");
    let _ = writeln!(
        text,
        "Description={}",
        line_value(&format!(
            "tend servers of {}",
            config_file(config).display()
        ))
        .map_err(Error::Other)?
    );
    for server in config.servers.iter().filter(|s| s.autostart) {
        let _ = writeln!(text, "Wants={}", service_name(&server.id));
    }
    text.push_str("\n[Install]\n");
    let _ = writeln!(
        text,
        "WantedBy={}",
        if user {
            "default.target"
        } else {
            "multi-user.target"
        }
    );
    units.push(UnitFile { name: target, text });
    Ok(SystemdExport { units, env_files })
}

/// The comment at the top of every unit: where it came from, and what systemd does not do.
fn header(config: &Config, user: bool) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Generated by tend {} ({} unit); edit the config and export again. Config:\n# {}",
        env!("CARGO_PKG_VERSION"),
        if user { "user" } else { "system" },
        comment_text(&config_file(config).display().to_string()),
    );
    text.push_str(
        "# Not replicated by systemd: orphan detection (a process outside the unit holding a\n\
         # server's port), port health (a unit is active once its program started, ports open or\n\
         # not; start_timeout_ms has no equivalent), exponential backoff (RestartSec stays\n\
         # backoff_ms), retry_fatal_ms (a unit that hit its start limit stays failed until\n\
         # `systemctl reset-failed`), tend's log files (output goes to the journal), and the\n\
         # dashboard and API.\n",
    );
    text
}

/// What of tend's planned restarts (issue 18) a unit does not do: systemd restarts on no
/// file change, and a schedule needs a timer unit of its own.
fn planned_restart_note(server: &ServerConfig) -> String {
    let mut text = String::new();
    if let Some(watch) = &server.watch {
        let _ = writeln!(
            text,
            "# Not done by systemd: tend's restart on changes to {}.",
            comment_text(&watch.paths.join(", "))
        );
    }
    let every = server
        .restart_every
        .map(|every| format!("every {}", crate::schedule::format_every(every)));
    let at = server
        .restart_at
        .as_ref()
        .map(|cron| format!("at \"{}\"", cron.text));
    let plan: Vec<String> = every.into_iter().chain(at).collect();
    if !plan.is_empty() {
        let _ = writeln!(
            text,
            "# Not done by this unit: tend's planned restart {}; a timer unit running\n\
             # `systemctl restart` would do it.",
            comment_text(&plan.join(" and "))
        );
    }
    text
}

/// One server's `.service` text; its environment is all in `env_path`.
fn service_unit(
    config: &Config,
    server: &ServerConfig,
    user: bool,
    host: &Host,
    target: &str,
    service_name: &dyn Fn(&str) -> String,
    env_path: &Path,
) -> Result<String, String> {
    let mut text = header(config, user);
    if !server.ports.is_empty() {
        let ports: Vec<String> = server.ports.iter().map(u16::to_string).collect();
        let _ = writeln!(text, "# Ports tend would check: {}.", ports.join(", "));
    }
    let _ = writeln!(
        text,
        "# The command {}.",
        comment_text(&shell::describe(&server.command))
    );
    if let Some(HealthCheck {
        probe: Probe::Http(http),
        ..
    }) = &server.health
    {
        let _ = writeln!(
            text,
            "# Not checked by systemd: tend's health check (GET http://{}{}, expecting {}-{});\n\
             # the unit is active once its program started, answering or not.",
            http.addr,
            comment_text(&http.path),
            http.expect.0,
            http.expect.1
        );
    }
    if let Some(HealthCheck {
        probe: Probe::Log(regex),
        ..
    }) = &server.health
    {
        let _ = writeln!(
            text,
            "# Not checked by systemd: tend's readiness line /{}/; the unit is active once its\n\
             # program started.",
            comment_text(regex.as_str())
        );
    }
    text.push_str(&planned_restart_note(server));

    text.push_str("[Unit]\n");
    let _ = writeln!(
        text,
        "Description={}",
        line_value(&format!(
            "tend server {} ({})",
            server.id,
            config_file(config).display()
        ))?
    );
    // PartOf: stopping or restarting the target stops or restarts every server, as stopping
    // tend does.
    let _ = writeln!(text, "PartOf={target}");
    for dep in &server.depends_on {
        let _ = writeln!(text, "After={}", service_name(dep));
        let _ = writeln!(text, "Requires={}", service_name(dep));
    }
    if server.restart != RestartPolicy::No {
        // tend gives up after max_restarts failed restarts in a row (max_restarts + 1 runs), and
        // a run that stays up 10 s resets the count. systemd counts starts in a window instead:
        // the window holds max_restarts + 1 runs of under 10 s each, with RestartSec between.
        let runs = u64::from(server.max_restarts) + 1;
        let window = (RESET_AFTER + server.backoff).as_millis() as u64 * runs;
        let _ = writeln!(text, "StartLimitIntervalSec={}", window.div_ceil(1000));
        let _ = writeln!(text, "StartLimitBurst={runs}");
    }

    text.push_str("\n[Service]\n");
    // exec: the unit counts as started once the program was exec'd, so a missing binary fails
    // the start (and dependents wait for it), as a spawn error does in tend.
    text.push_str("Type=exec\n");
    let _ = writeln!(text, "ExecStart={}", exec_start(server, host)?);
    let _ = writeln!(text, "WorkingDirectory={}", path_value(&server.cwd)?);
    if !user {
        let _ = writeln!(text, "User={}", line_value(&host.user)?);
    }
    let _ = writeln!(text, "SyslogIdentifier={}", server.id);
    // The whole environment, merged in tend's order, in one file and nothing in Environment=
    // (see the module header). It is a copy: tend reads env_file at every start.
    text.push_str(
        "# The environment tend gives this server, merged at export (PATH, TEND_SERVER_ID,\n\
         # TEND_BIN, then env_file, then env); export again after changing them.\n",
    );
    let _ = writeln!(text, "EnvironmentFile={}", path_value(env_path)?);
    let _ = writeln!(
        text,
        "Restart={}",
        match server.restart {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    );
    let _ = writeln!(text, "RestartSec={}ms", server.backoff.as_millis());
    text.push_str("KillMode=control-group\n");
    let _ = writeln!(text, "KillSignal={}", kill_signal(server.stop_signal));
    let _ = writeln!(text, "TimeoutStopSec={}ms", server.stop_timeout.as_millis());
    if let Some(limit) = server.max_memory {
        // A hard cap where tend restarts after two rounds over: the kernel's OOM killer ends the
        // unit at the limit, and Restart= brings it back (for any restart policy but "no").
        text.push_str(
            "# max_memory: the kernel kills the unit when its cgroup reaches MemoryMax (page\n\
             # cache counts there, not in tend's RSS figure), where tend restarts it after two\n\
             # rounds over the limit.\n",
        );
        let _ = writeln!(text, "MemoryMax={limit}");
    }

    text.push_str("\n[Install]\n");
    if server.autostart {
        let _ = writeln!(text, "WantedBy={target}");
    } else {
        text.push_str("# autostart is false: not wanted by the target; start it by hand.\n");
    }
    Ok(text)
}

/// `KillSignal=`: the name systemd knows, or the number for one without a name (realtime).
fn kill_signal(signal: i32) -> String {
    let name = signal_name(signal);
    if name == format!("SIG{signal}") {
        signal.to_string()
    } else {
        name
    }
}

/// The environment tend gives a server's process (`os::process::spawn`), in tend's order with
/// later assignments replacing earlier ones in place: tend's own environment is not carried
/// (it is the shell's that ran `tend up`, and may hold `TEND_TOKEN`), except `PATH` as it is
/// now, since commands are found through it; then `TEND_SERVER_ID` and `TEND_BIN`, which tend
/// adds; then the server's `env_file` (read now, `export` lines included); then its `env`.
/// A Procfile entry's `PORT` is in its `env`, so it wins over `.env`'s as it does under tend.
fn environment(server: &ServerConfig, host: &Host) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    };
    if let Some(path) = &host.path {
        set("PATH", path);
    }
    set("TEND_SERVER_ID", &server.id);
    set("TEND_BIN", &path_text(&host.tend_bin)?);
    if let Some(file) = &server.env_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read env_file {}: {e}", file.display()))?;
        let pairs =
            parse_env_file(&text).map_err(|e| format!("env_file {}: {e}", file.display()))?;
        for (key, value) in &pairs {
            set(key, value);
        }
    }
    for (key, value) in &server.env {
        set(key, value);
    }
    Ok(env)
}

/// The text of a server's env file: a comment saying where it came from, then one
/// `KEY="value"` line per variable.
fn env_file(
    config: &Config,
    server: &ServerConfig,
    host: &Host,
    service: &str,
) -> Result<String, String> {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Environment of {service}, generated by tend {} from\n# {}",
        env!("CARGO_PKG_VERSION"),
        comment_text(&config_file(config).display().to_string())
    );
    text.push_str("# in tend's order: PATH at export, TEND_SERVER_ID, TEND_BIN, ");
    if let Some(file) = &server.env_file {
        let _ = write!(
            text,
            "then env_file\n# {}, ",
            comment_text(&file.display().to_string())
        );
    }
    text.push_str("then env. Export again after changing them.\n");
    for (key, value) in environment(server, host)? {
        text.push_str(&env_file_line(&key, &value)?);
        text.push('\n');
    }
    Ok(text)
}

/// `ExecStart=`: a string through `/bin/sh -c`, an array with its program resolved to an
/// absolute path (systemd.service(5): "the first argument must be an absolute path" on older
/// systemd, a fixed search path on newer ones — never the user's PATH).
fn exec_start(server: &ServerConfig, host: &Host) -> Result<String, String> {
    let script = match &server.command {
        CommandSpec::Shell(line) => shell::script_for(line),
        CommandSpec::Exec(_) => String::new(),
    };
    let (program, args): (PathBuf, Vec<&str>) = match &server.command {
        // The same script tend runs: one simple command execs its program, so the unit's
        // MainPID is the program's, as tend's PID is.
        CommandSpec::Shell(_) => (PathBuf::from("/bin/sh"), vec!["-c", script.as_str()]),
        CommandSpec::Exec(argv) => (
            resolve_program(&argv[0], server, host)?,
            argv[1..].iter().map(String::as_str).collect(),
        ),
    };
    let mut line = exec_path(&path_text(&program)?)?;
    for arg in args {
        line.push(' ');
        line.push_str(&exec_arg(arg)?);
    }
    Ok(line)
}

/// Finds an array command's program as tend's spawn would: a name with a `/` relative to the
/// server's cwd, a bare name through the server's `PATH` (from `env`, else tend's).
fn resolve_program(program: &str, server: &ServerConfig, host: &Host) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = Path::new(program);
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            server.cwd.join(path)
        };
        return Ok(full
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect());
    }
    let search = server
        .env
        .get("PATH")
        .map(String::as_str)
        .or(host.path.as_deref())
        .unwrap_or("");
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = server.cwd.join(dir).join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect());
        }
    }
    Err(format!(
        "program '{program}' is not in PATH here, and a unit needs its absolute path; write \
         the path in the config"
    ))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn path_text(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()))
}

/// The executable of `ExecStart=`. systemd unquotes and unescapes it, resolves `%`
/// specifiers, does no `$` expansion on it, and then refuses quotes, backslashes and control
/// characters in it ("Executable name contains special characters").
pub fn exec_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("program path '{path}' is not absolute"));
    }
    if let Some(bad) = path
        .chars()
        .find(|&c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(format!(
            "program path {path:?} holds {bad:?}, which systemd refuses in an executable path"
        ));
    }
    let escaped = path.replace('%', "%%");
    Ok(if escaped.chars().any(char::is_whitespace) {
        format!("\"{escaped}\"")
    } else {
        escaped
    })
}

/// One argument after the executable in `ExecStart=` (systemd.service(5) "Command lines"):
/// bare when it is plain, else double-quoted with C escapes; `%` doubled (specifiers) and `$`
/// doubled (systemd expands `$VAR` and `${VAR}` in arguments).
pub fn exec_arg(arg: &str) -> Result<String, String> {
    if arg.contains('\0') {
        return Err("an argument holds a NUL byte, which no program can receive".to_string());
    }
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%$".contains(c));
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if plain {
        return Ok(escaped);
    }
    Ok(format!("\"{}\"", c_escape(&escaped)))
}

/// One line of an env file as systemd's `EnvironmentFile=` parser reads it (systemd.exec(5);
/// src/basic/env-file.c): `KEY="value"`, where inside double quotes a backslash escapes `"`,
/// `\\`, `` ` `` and `$` and keeps any other character, and everything else (newlines, tabs,
/// `#`, quotes of the other kind) is taken as it is. No `%` specifiers and no `$` expansion
/// apply in the file. systemd drops a variable whose name is not shell-like, so such a name is
/// an error here rather than a variable lost without a word.
pub fn env_file_line(key: &str, value: &str) -> Result<String, String> {
    let valid_name = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!(
            "env name '{key}' is not one systemd accepts (letters, digits and _, not first a \
             digit)"
        ));
    }
    let mut line = String::with_capacity(key.len() + value.len() + 3);
    line.push_str(key);
    line.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            line.push('\\');
        }
        line.push(c);
    }
    line.push('"');
    Ok(line)
}

/// C escapes for a double-quoted systemd word: `\\`, `\"`, and control characters.
fn c_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A value systemd takes as the rest of the line, unquoted (`Description=`,
/// `WorkingDirectory=`, `EnvironmentFile=`, `User=`): `%` doubled; what a line cannot hold
/// (control characters, a trailing backslash that would join the next line, whitespace at
/// either end that the parser strips) is an error.
pub fn line_value(text: &str) -> Result<String, String> {
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{text:?} holds {bad:?}, which a unit file line cannot hold"
        ));
    }
    if text.ends_with('\\') || text.trim() != text {
        return Err(format!(
            "{text:?} ends in a backslash or has whitespace at an end, which a unit file \
             line cannot hold"
        ));
    }
    Ok(text.replace('%', "%%"))
}

fn path_value(path: &Path) -> Result<String, String> {
    line_value(&path_text(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::{config, host};

    #[test]
    fn exec_arguments_follow_systemds_command_line_rules() {
        // (argument, as written after ExecStart=), per systemd.service(5) "Command lines".
        let table = [
            ("plain", "plain"),
            ("--port=8000", "--port=8000"),
            ("", "\"\""),
            ("two words", "\"two words\""),
            ("it's", "\"it's\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("100%", "100%%"),
            ("%n", "%%n"),
            ("$HOME", "$$HOME"),
            ("${HOME}/x", "\"$${HOME}/x\""),
            (";", "\";\""),
            ("a;b", "\"a;b\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("tab\there", "\"tab\\there\""),
            ("bell\x07", "\"bell\\x07\""),
            ("ünï", "\"ünï\""),
            ("#not a comment", "\"#not a comment\""),
            ("trailing\\", "\"trailing\\\\\""),
        ];
        for (arg, expected) in table {
            assert_eq!(exec_arg(arg).unwrap(), expected, "argument {arg:?}");
        }
        assert!(exec_arg("nul\0").is_err());
    }

    #[test]
    fn exec_paths_escape_specifiers_but_not_dollars() {
        let table = [
            ("/bin/sh", "/bin/sh"),
            ("/opt/my app/run", "\"/opt/my app/run\""),
            ("/opt/100%/run", "/opt/100%%/run"),
            ("/opt/$x/run", "/opt/$x/run"),
        ];
        for (path, expected) in table {
            assert_eq!(exec_path(path).unwrap(), expected, "path {path:?}");
        }
        for bad in ["bin/sh", "/opt/it's", "/opt/a\"b", "/opt/a\\b", "/opt/a\nb"] {
            assert!(exec_path(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn env_file_lines_are_double_quoted_with_systemds_four_escapes() {
        // (key, value, line); tests/it/export.rs reads such lines with systemd's own parser.
        let table = [
            ("A", "1", r#"A="1""#),
            ("GREETING", "hello world", r#"GREETING="hello world""#),
            ("Q", "it's \"quoted\"", r#"Q="it's \"quoted\"""#),
            ("P", "100% $HOME `x`", r#"P="100% \$HOME \`x\`""#),
            ("B", "a\\b\\", r#"B="a\\b\\""#),
            ("H", "# not a comment", r##"H="# not a comment""##),
            ("N", "two\nlines", "N=\"two\nlines\""),
            ("_x9", "", r#"_x9="""#),
        ];
        for (key, value, expected) in table {
            assert_eq!(
                env_file_line(key, value).unwrap(),
                expected,
                "{key}={value:?}"
            );
        }
        for key in ["9A", "A.B", "A-B", "", "A B"] {
            assert!(env_file_line(key, "x").is_err(), "name {key:?}");
        }
    }

    #[test]
    fn line_values_double_percent_and_refuse_what_a_line_cannot_hold() {
        assert_eq!(line_value("/srv/my app").unwrap(), "/srv/my app");
        assert_eq!(line_value("50% off").unwrap(), "50%% off");
        assert_eq!(line_value("it's \"x\" $y").unwrap(), "it's \"x\" $y");
        for bad in ["/a\\", "/a\nb", " lead", "trail "] {
            assert!(line_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_service_carries_every_mapped_setting() {
        let config = config(
            r#"{"servers": [
                {"id": "db", "command": ["/usr/bin/env", "x"], "restart": "always",
                 "autostart": false, "stop_signal": "SIGINT", "stop_timeout_ms": 2500},
                {"id": "web", "command": "echo \"$HOME\" 100%", "depends_on": ["db"],
                 "env": {"MSG": "hi there"}, "backoff_ms": 250, "max_restarts": 3,
                 "ports": [8000], "cwd": "site"}
            ]}"#,
        );
        let export = systemd(&config, false, &host(), Path::new("/etc/tend")).unwrap();
        let names: Vec<&str> = export.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tend-shop-db.service",
                "tend-shop-web.service",
                "tend-shop.target"
            ]
        );
        let web = &export.units[1].text;
        for line in [
            "PartOf=tend-shop.target\n",
            "After=tend-shop-db.service\n",
            "Requires=tend-shop-db.service\n",
            "StartLimitIntervalSec=41\n",
            "StartLimitBurst=4\n",
            "Type=exec\n",
            "ExecStart=/bin/sh -c \"echo \\\"$$HOME\\\" 100%%\"\n",
            "WorkingDirectory=/srv/shop/site\n",
            "User=alice\n",
            "EnvironmentFile=/etc/tend/tend-shop-web.env\n",
            "Restart=on-failure\n",
            "RestartSec=250ms\n",
            "KillMode=control-group\n",
            "KillSignal=SIGTERM\n",
            "TimeoutStopSec=5000ms\n",
            "WantedBy=tend-shop.target\n",
            "# Ports tend would check: 8000.\n",
        ] {
            assert!(web.contains(line), "web lacks {line:?}:\n{web}");
        }
        let db = &export.units[0].text;
        for line in [
            "ExecStart=/usr/bin/env x\n",
            "Restart=always\n",
            "KillSignal=SIGINT\n",
            "TimeoutStopSec=2500ms\n",
        ] {
            assert!(db.contains(line), "db lacks {line:?}:\n{db}");
        }
        assert!(!db.contains("WantedBy="), "db is not autostart:\n{db}");
        assert!(
            !web.contains("Environment="),
            "one source of environment:\n{web}"
        );
        let env_names: Vec<&str> = export.env_files.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(env_names, ["tend-shop-db.env", "tend-shop-web.env"]);
        let lines: Vec<&str> = export.env_files[1]
            .text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            lines,
            [
                r#"PATH="/usr/bin:/bin""#,
                r#"TEND_SERVER_ID="web""#,
                r#"TEND_BIN="/usr/local/bin/tend""#,
                r#"MSG="hi there""#,
            ]
        );
        let files: Vec<&str> = export.files().map(|u| u.name.as_str()).collect();
        assert_eq!(
            files,
            [
                "tend-shop-db.service",
                "tend-shop-db.env",
                "tend-shop-web.service",
                "tend-shop-web.env",
                "tend-shop.target"
            ]
        );
        let target = &export.units[2].text;
        assert!(target.contains("Wants=tend-shop-web.service\n"), "{target}");
        assert!(!target.contains("tend-shop-db.service"), "{target}");
        assert!(target.contains("WantedBy=multi-user.target\n"), "{target}");
        for unit in &export.units {
            assert!(
                unit.text.starts_with("# Generated by tend"),
                "{}",
                unit.text
            );
            assert!(unit.text.contains("orphan detection"), "{}", unit.text);
        }
    }

    #[test]
    fn user_units_have_no_user_and_hang_off_default_target() {
        let config = config(r#"{"servers": [{"id": "a", "command": "true"}]}"#);
        let export = systemd(&config, true, &host(), Path::new("/e")).unwrap();
        assert!(!export.units[0].text.contains("User="));
        assert!(export.units[1].text.contains("WantedBy=default.target\n"));
    }

    #[test]
    fn restart_no_sets_no_start_limit_and_realtime_signals_are_numbers() {
        let config = config(
            r#"{"servers": [{"id": "a", "command": "true", "restart": "no",
                             "stop_signal": 40}]}"#,
        );
        let text = &systemd(&config, false, &host(), Path::new("/e"))
            .unwrap()
            .units[0]
            .text;
        assert!(text.contains("Restart=no\n"), "{text}");
        assert!(!text.contains("StartLimit"), "{text}");
        assert!(text.contains("KillSignal=40\n"), "{text}");
    }

    #[test]
    fn watch_and_schedules_are_named_as_what_a_unit_does_not_do() {
        let config = config(
            r#"{"servers": [{"id": "web", "command": "run", "watch": {"paths": ["src"]},
                             "restart_every": "1h30m", "restart_at": "0 4 * * *"}]}"#,
        );
        let text = &systemd(&config, false, &host(), Path::new("/e"))
            .unwrap()
            .units[0]
            .text;
        assert!(
            text.contains("# Not done by systemd: tend's restart on changes to src.\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "# Not done by this unit: tend's planned restart every 1h30m and at \"0 4 * * *\";"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_health_check_is_named_as_what_systemd_cannot_check() {
        let config = config(
            r#"{"servers": [{"id": "a", "command": "true", "ports": [8000],
                             "health": {"http": "/healthz"}}]}"#,
        );
        let text = &systemd(&config, false, &host(), Path::new("/e"))
            .unwrap()
            .units[0]
            .text;
        assert!(
            text.contains("# Not checked by systemd: tend's health check (GET http://127.0.0.1:8000/healthz, expecting 200-399);\n"),
            "{text}"
        );
    }

    #[test]
    fn max_memory_becomes_memory_max_in_bytes() {
        let config = config(
            r#"{"servers": [{"id": "a", "command": "true", "max_memory": "256M"},
                            {"id": "b", "command": "true"}]}"#,
        );
        let export = systemd(&config, false, &host(), Path::new("/e")).unwrap();
        let with = &export.units[0].text;
        assert!(with.contains("\nMemoryMax=268435456\n"), "{with}");
        assert!(with.contains("# max_memory: the kernel kills"), "{with}");
        assert!(!export.units[1].text.contains("MemoryMax"));
    }

    #[test]
    fn programs_resolve_through_path_and_cwd() {
        let config = config(
            r#"{"servers": [
                {"id": "a", "command": ["sh", "-c", "true"]},
                {"id": "b", "command": ["./bin/run"], "cwd": "/opt/b"},
                {"id": "c", "command": ["no-such-program-anywhere"]}
            ]}"#,
        );
        let host = host();
        let a = resolve_program("sh", &config.servers[0], &host).unwrap();
        assert!(a.is_absolute() && a.ends_with("sh"), "{}", a.display());
        assert_eq!(
            resolve_program("./bin/run", &config.servers[1], &host).unwrap(),
            PathBuf::from("/opt/b/bin/run")
        );
        let error = systemd(&config, false, &host, Path::new("/e"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("server 'c'") && error.contains("no-such-program-anywhere"),
            "{error}"
        );
    }

    #[test]
    fn unsupported_env_names_are_an_error_naming_the_server() {
        let config =
            config(r#"{"servers": [{"id": "a", "command": "true", "env": {"a.b": "1"}}]}"#);
        let error = systemd(&config, false, &host(), Path::new("/e"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("server 'a'") && error.contains("'a.b'"),
            "{error}"
        );
    }

    #[test]
    fn unit_prefixes_come_from_the_folder_name() {
        let mut config = config(r#"{"servers": [{"id": "a", "command": "true"}]}"#);
        for (dir, prefix) in [
            ("/srv/shop", "tend-shop"),
            ("/srv/My Shop!", "tend-My-Shop"),
            ("/srv/a.b_c", "tend-a.b_c"),
            ("/", "tend-app"),
            ("/srv/***", "tend-app"),
        ] {
            config.base_dir = PathBuf::from(dir);
            assert_eq!(unit_prefix(&config), prefix, "{dir}");
        }
    }
}
