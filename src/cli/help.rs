//! The `--help` texts: `tend help` and one per command.

use super::{canonical_command, usage};
use crate::error::Error;

/// The help text for `tend help` (`None`) or one command; an unknown topic is a usage error.
pub fn help_text(topic: Option<&str>) -> Result<String, Error> {
    let Some(topic) = topic else {
        return Ok(GENERAL_HELP.to_string());
    };
    let text = match canonical_command(topic) {
        Some("up") => HELP_UP,
        Some("check") => HELP_CHECK,
        Some("status") => HELP_STATUS,
        Some("start" | "stop" | "restart") => HELP_ACT,
        Some("logs") => HELP_LOGS,
        Some("events") => HELP_EVENTS,
        Some("alerts") => HELP_ALERTS,
        Some("kill-orphan") => HELP_KILL_ORPHAN,
        Some("adopt") => HELP_ADOPT,
        Some("reload") => HELP_RELOAD,
        Some("export") => HELP_EXPORT,
        Some("version") => HELP_VERSION,
        Some("help") => HELP_HELP,
        Some("serve-demo") => HELP_SERVE_DEMO,
        _ => {
            return Err(usage(format!(
                "no help for '{topic}': it is not a tend command; see `tend help`"
            )));
        }
    };
    Ok(text.to_string())
}

const GENERAL_HELP: &str = "\
tend: a tiny process supervisor with a live browser dashboard

Usage: tend [--url URL] [--config FILE] COMMAND [OPTIONS]

Commands:
  up [--listen ADDR] [--state FILE] [--log-dir DIR] [--port N]
                          run the supervisor in the foreground
  check                   validate the config (tend.json, or a Procfile and its .env);
                          exit 1 with file:line:col and reason
  status [--json] [ID|@GROUP...]
                          show every server, or those named (alias: ps)
  status --url URL --url URL… | --hosts FILE
                          one table over several tends, with a host column
  start ID|@GROUP...|--all [--timeout S] [--no-wait]
                          start servers; waits until they are running
  stop ID|@GROUP...|--all [--timeout S] [--no-wait]
                          stop servers; waits until they are stopped
  restart ID|@GROUP...|--all [--timeout S] [--no-wait]
                          restart servers (a stopped one is started); waits as start
  logs [ID|@GROUP...] [-n N] [-f]
                          print the last N log lines (default 200) of a server, or of several
                          (default: all) merged with a name on each line; -f follows
  events [-n N] [-f] [ID] print the last N timeline events (default 50), also from
                          before tend restarted; -f follows
  alerts test             send a test alert through every alert rule; print each result
  kill-orphan ID          kill the orphan process that holds ID's port
  adopt ID                take over ID's orphan when it is provably ID's own lost process
  reload                  apply the changed config: only the servers that changed move
  export systemd [--user] [--out DIR] | export procfile
                          write the config as systemd units or as a Procfile
  version                 print tend's version
  help [COMMAND]          print this help, or a command's

Global options (before or after the command):
  --url URL               the running tend (default: $TEND_URL, else the config's listen)
  --config FILE           config file (default: ./tend.json, else ./Procfile); a file named
                          Procfile, Procfile.* or *.procfile is read as a Procfile
  -h, --help              print help

Environment:
  TEND_URL                where the running tend listens, e.g. http://127.0.0.1:7070
  TEND_TOKEN              the API token (default: the `token` file beside the state file)
  NO_COLOR                no colours in `tend status` and `tend logs` (CLICOLOR_FORCE=1
                          forces them)
  RUST_LOG                log level of `tend up` (default: info)
";

const HELP_UP: &str = "\
Usage: tend up [--config FILE] [--listen ADDR] [--state FILE] [--log-dir DIR] [--port N]

Runs the supervisor in the foreground and prints the dashboard URL. SIGINT or SIGTERM
stops every server (unless the config says \"on_exit\": \"keep\") and exits.

Options:
  --config FILE     config file (default: ./tend.json, else ./Procfile with ./.env)
  --listen ADDR     address of the API and dashboard, IP:PORT (default: 127.0.0.1:7070)
  --state FILE      state file (default: .tend/process-state.json beside the config)
  --log-dir DIR     folder of the servers' log files (default: .tend/logs)
  --port N          Procfile only: the first entry's PORT; each next one gets 100 more
                    (default: PORT in .env, else $PORT, else 5000, as foreman does)

A Procfile (foreman's `name: command` lines, as a file named Procfile, Procfile.* or
*.procfile) runs each entry through /bin/sh -c in the Procfile's folder with the .env
beside it and its PORT, and tend checks that port.
";

const HELP_CHECK: &str = "\
Usage: tend check [--config FILE]

Validates the config file (tend.json, or a Procfile and the .env beside it) and exits;
every problem is printed as file:line:col: reason, and the exit code is 1 if there is any.
";

const HELP_STATUS: &str = "\
Usage: tend status [--json] [ID|@GROUP...]      (alias: tend ps)
       tend status [--json] --url URL --url URL…
       tend status [--json] --hosts FILE [--url URL…]

Shows every server of the running tend (or only the ids and @groups named; an unknown
group is an error that lists the known ones): status, PID, uptime, restarts, ports (✓ open,
✗ closed, !PID held by an orphan), CPU, memory and notes. Statuses are coloured when stdout
is a terminal, unless NO_COLOR is set; CLICOLOR_FORCE=1 colours them anyway.

With several tends (--url more than once, or --hosts) it reads them all at once and prints
one table with a HOST column. A tend that cannot be read is a row saying why (unreachable,
refused, error); the exit code is then 1, after the whole table.

A hosts file (for example ~/.config/tend/hosts) has one tend per line:
  [NAME] http://HOST:PORT [TOKEN_FILE]
NAME is the HOST column (default HOST:PORT); TOKEN_FILE holds that tend's token (`~/` is
the home folder; a relative path is taken from the file's folder). Without one, TEND_TOKEN
is sent. Blank lines and words from `#` on are ignored.

Options:
  --json            print the API's JSON array instead of a table; with several tends, a
                    list of {\"host\", \"url\", \"servers\"} (or \"error\" instead of servers)
  --url URL         the running tend (default: $TEND_URL, else the config's listen);
                    repeat it to read several
  --hosts FILE      read the tends listed in FILE
";

const HELP_ACT: &str = "\
Usage: tend start ID|@GROUP...|--all [--wait] [--timeout S] [--no-wait]
       tend stop ID|@GROUP...|--all [--wait] [--timeout S] [--no-wait]
       tend restart ID|@GROUP...|--all [--wait] [--timeout S] [--no-wait]

Acts on the named servers in the order given, stopping at the first error, or on all of
them (in dependency order) with --all. @NAME is every server whose \"group\" is NAME: with a
group on the command line (`tend restart @backend web`) the members and ids are acted on
together as --all does, in dependency order, skipping those already there; an unknown
group is an error that lists the known ones. Restarting a stopped server starts it.

By default each command waits, as supervisorctl and systemctl do, so that
`tend restart db && psql …` works: start and restart return once the server is running
(alive, and every configured port open), stop once it is stopped. It exits non-zero,
saying why, if the server crashed, went fatal, exited or unhealthy (a port still closed
after start_timeout_ms) first, or if the timeout passed. Prints one line per server.
Exits non-zero with the API's error if tend refuses the action.

Options:
  -a, --all         act on every server
  --wait            wait (the default)
  --timeout S       how long to wait for each server, in seconds (default 60; 2.5 is fine)
  --no-wait         return as soon as tend has acted (the server may still be starting)
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_LOGS: &str = "\
Usage: tend logs [ID|@GROUP...] [-n N] [-f]

Prints the last N lines of a server's log, oldest first. With no id, several ids or a
@group, the logs are merged foreman's way: each line starts with its server's name, padded
and coloured on a terminal (plain when piped or NO_COLOR is set), and -n counts lines over
all of them. Lines are merged by when tend first saw each one in its file, which is never
before it was written and, while tend runs, right after it (README \"Groups and merged
logs\" says exactly what that guarantees).

Options:
  -n, --lines N     how many lines (default 200, at most 10000)
  -f, --follow      keep printing new lines as they are written (Ctrl-C to stop)
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_EVENTS: &str = "\
Usage: tend events [-n N] [-f] [ID]

Prints what happened, oldest first, one event a line: starts, stops, deaths, status changes,
orphans, health changes, reloads, alerts, and tend's own starts and stops. tend keeps the last
1000 events in history.json beside its state file, so they survive a restart of tend.

Options:
  -n, --lines N     how many events (default 50, at most 1000)
  -f, --follow      keep printing new events as they happen (Ctrl-C to stop)
  ID                only this server's events
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_ALERTS: &str = "\
Usage: tend alerts test

Sends a test alert (event \"test\") through every rule of the config's \"alerts\" and prints
each rule's result: sent, or why it failed. Exits 1 when any rule failed. The rules' \"on\",
\"servers\" and \"repeat_ms\" do not apply to a test.

Options:
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_KILL_ORPHAN: &str = "\
Usage: tend kill-orphan ID

Kills the orphan process that holds one of ID's configured ports from outside its own
process tree: SIGTERM, then SIGKILL after 1 s. Managed servers are stopped with `tend stop`.

Options:
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_ADOPT: &str = "\
Usage: tend adopt ID

Takes over the orphan that holds one of ID's ports when it is provably ID's own process,
lost when tend's state was: it leads its own session, runs as tend's user, has
TEND_SERVER_ID=ID in its environment, runs ID's command (as tend would have run it) in ID's
cwd, and is still the process seen when the orphan showed (same start time). tend then
watches, stops and restarts it like any server it adopted. Refused (exit status 1, with the
reason) when a check fails or ID has a process of its own. `\"adopt_orphans\": true` in the
config does this on `tend up` for every such orphan.

Options:
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_RELOAD: &str = "\
Usage: tend reload

Makes the running tend read its config again (the file it was started with) and apply what
changed, server by server: added servers appear (and start if autostart), removed ones are
stopped and dropped, a server whose process settings changed (command, cwd, env, env_file or
its contents, ports, stop_signal, depends_on) is restarted with the servers that depend on it,
one whose supervision settings changed keeps its process, and the rest are not touched.
An invalid config changes nothing: every problem is printed and the exit status is 1.
SIGHUP to `tend up` does the same.

Options:
  --url URL         the running tend (default: $TEND_URL, else the config's listen)
";

const HELP_EXPORT: &str = "\
Usage: tend export systemd [--user] [--out DIR]
       tend export procfile

Writes the config for another supervisor; nothing is started.

systemd: one tend-<folder>-<id>.service per server and a tend-<folder>.target that wants
the autostart ones (<folder> is the config's folder name). Program names are resolved
through PATH now, since a unit needs an absolute path. Each service reads its whole
environment from one tend-<folder>-<id>.env beside it (mode 0600): what tend gives the
server, merged in tend's order (PATH as it is now, TEND_SERVER_ID, TEND_BIN, the env_file
with its `export` lines, then env), read now: export again after editing them. Without
--out the units and env files go to stdout, each after a `# ---- NAME ----` line, naming
the env files as `--out .` would write them. Install with `systemctl link` (see README).

procfile: `id: command` lines for foreman, honcho or tend; what a Procfile cannot carry
(restart policy, ports, depends_on, cwd, env) is kept as comments.

Options:
  --user            units for `systemctl --user` (no User=, wanted by default.target)
  --out DIR         write one file per unit and env file into DIR (created if missing)
  --config FILE     config file (default: ./tend.json)
";

const HELP_VERSION: &str = "\
Usage: tend version

Prints tend's version.
";

const HELP_HELP: &str = "\
Usage: tend help [COMMAND]

Prints the list of commands, or one command's help (same as `tend COMMAND --help`).
";

const HELP_SERVE_DEMO: &str = "\
Usage: tend serve-demo [--port N] [--crash-after-ms N] [--print-every-ms N] [--exit-code N]
                       [--ignore-term] [--workers N [--worker-mb N] [--worker-cpu-ms N]]

A tiny demo server for the built-in demo and tests: answers HTTP on 127.0.0.1:PORT, prints
a line every --print-every-ms (default 1000, 0 = never), exits with --exit-code (default 1)
after --crash-after-ms, and with --ignore-term ignores SIGTERM. --workers starts N worker
processes that share the listening socket (as nginx or gunicorn do); each holds --worker-mb
MiB of memory and first spends --worker-cpu-ms of CPU time.
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::COMMANDS;

    #[test]
    fn help_lists_every_command_and_option_but_not_the_demo() {
        let text = help_text(None).unwrap();
        for word in [
            "up",
            "check",
            "status",
            "ps",
            "start",
            "stop",
            "restart",
            "logs",
            "kill-orphan",
            "adopt",
            "reload",
            "export",
            "systemd",
            "procfile",
            "NO_COLOR",
            "version",
            "help",
            "--url",
            "--config",
            "--listen",
            "--state",
            "--log-dir",
            "--port",
            "--json",
            "--all",
            "-n N",
            "-f",
            "TEND_URL",
            "TEND_TOKEN",
        ] {
            assert!(text.contains(word), "general help lacks {word:?}");
        }
        assert!(!text.contains("serve-demo"));
        for topic in COMMANDS.iter().chain(["ps", "serve-demo"].iter()) {
            let text = help_text(Some(topic)).unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert!(text.starts_with("Usage: tend"), "{topic}");
        }
        assert!(matches!(help_text(Some("nope")), Err(Error::Usage(_))));
    }

    #[test]
    fn help_texts_fit_in_100_columns() {
        for topic in std::iter::once(None).chain(COMMANDS.iter().map(|t| Some(*t))) {
            for line in help_text(topic).unwrap().lines() {
                assert!(line.chars().count() <= 100, "{topic:?}: {line}");
            }
        }
    }
}
