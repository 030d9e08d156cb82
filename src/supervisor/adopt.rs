//! Adoptable orphans (docs/DESIGN.md §12): whether a process outside tend that holds a server's port
//! is provably that server's own lost process, so tend may take it over instead of killing it.
//!
//! Every process tend starts leads its own session (setsid) and carries `TEND_SERVER_ID` in its
//! environment. A process is the server's when all of these hold for the leader of the holder's
//! session: it runs as tend's user, its environment names the server, its argv is the one
//! tend's spawn gives the server's command (after the exec rule of `shell.rs`), and its working
//! folder is the server's `cwd`. An environment variable alone proves nothing (anyone can set
//! it); a command and a folder alone prove nothing either; together, under the same user, they
//! are what tend itself would have started. Anything tend cannot read is not proof: not ours.
//!
//! Reads /proc only; the supervisor calls it when an orphan first shows and again right before
//! adopting (the start time is compared, so a PID reused in between is refused).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{CommandSpec, ServerConfig};
use crate::os::procfs;
use crate::os::shell::{self, ArgWord};

/// A process that is provably a server's: the leader of the orphan's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoptable {
    pub pid: u32,
    pub start_ticks: u64,
    pub started_at: SystemTime,
    /// What was checked, for people: "same id, command and folder; started 3 h ago".
    pub evidence: String,
}

/// What /proc says of one process; each read may fail on its own (another user's process,
/// one that exited between reads).
pub struct Facts {
    pub pid: u32,
    pub uid: io::Result<u32>,
    pub environ: io::Result<Vec<u8>>,
    pub cmdline: io::Result<Vec<u8>>,
    pub cwd: io::Result<PathBuf>,
}

impl Facts {
    pub fn read(pid: u32) -> Facts {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        Facts {
            pid,
            uid: fs::metadata(&dir).map(|m| m.uid()),
            environ: fs::read(dir.join("environ")),
            cmdline: fs::read(dir.join("cmdline")),
            cwd: fs::read_link(dir.join("cwd")),
        }
    }
}

/// Whether the process holding a port of `server` (`holder`) is that server's lost process;
/// `Err` says why not, in words for the warning, the API and the CLI.
pub fn examine(server: &ServerConfig, holder: u32) -> Result<Adoptable, String> {
    let stat = procfs::read_stat(holder)
        .filter(|s| !s.is_dead())
        .ok_or_else(|| format!("PID {holder} is gone"))?;
    // tend stops a server by its process group, and everything it starts leads its own
    // session: so the candidate is the holder's session leader, which must lead its group too.
    let leader = stat.session;
    let leader_stat = if leader == holder {
        stat
    } else {
        procfs::read_stat(leader)
            .filter(|s| !s.is_dead())
            .ok_or_else(|| {
                format!("PID {holder}'s session leader (PID {leader}) is gone, so no process tend could adopt leads it")
            })?
    };
    if leader == 0 || leader_stat.pgrp != leader {
        return Err(format!(
            "PID {holder} is not in a process group of its own session leader, as every process \
             tend starts is"
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let our_uid = unsafe { libc::geteuid() };
    judge(
        server,
        &Facts::read(leader),
        our_uid,
        &resolved(&server.cwd),
    )
    .map_err(|why| {
        if leader == holder {
            why
        } else {
            // The reason names the leader: say how it relates to the PID the person sees.
            format!("PID {holder} is in the session of PID {leader}, which tend would adopt: {why}")
        }
    })?;
    let started_at = started_at(leader_stat.start_ticks);
    let ago = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default();
    Ok(Adoptable {
        pid: leader,
        start_ticks: leader_stat.start_ticks,
        started_at,
        evidence: format!("same id, command and folder; started {} ago", human(ago)),
    })
}

/// `now` (judged right before adopting) is the very process `seen` was when the orphan showed:
/// same PID and same start time, so a PID the kernel gave to another process in between is
/// never taken for the one that was judged.
pub fn same_process(seen: &Adoptable, now: &Adoptable) -> Result<(), String> {
    if seen.pid == now.pid && seen.start_ticks == now.start_ticks {
        return Ok(());
    }
    Err(format!(
        "PID {} is not the process seen when the orphan showed (its start time changed: the PID \
         was reused); the next health round judges the new one",
        seen.pid
    ))
}

/// Checks that must all pass; pure, so each refusal is unit-tested with made-up facts.
pub fn judge(server: &ServerConfig, facts: &Facts, our_uid: u32, cwd: &Path) -> Result<(), String> {
    let pid = facts.pid;
    let why = |what: &str, e: &io::Error| format!("tend cannot read PID {pid}'s {what}: {e}");
    let uid = facts.uid.as_ref().map_err(|e| why("owner", e))?;
    if *uid != our_uid {
        return Err(format!(
            "PID {pid} belongs to user {uid}, not to tend's user ({our_uid})"
        ));
    }
    let environ = facts.environ.as_ref().map_err(|e| why("environment", e))?;
    let id = environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"TEND_SERVER_ID="));
    match id {
        None => {
            return Err(format!(
                "PID {pid} has no TEND_SERVER_ID in its environment"
            ));
        }
        Some(id) if id != server.id.as_bytes() => {
            return Err(format!(
                "PID {pid}'s TEND_SERVER_ID is '{}', not '{}'",
                String::from_utf8_lossy(id),
                server.id
            ));
        }
        Some(_) => {}
    }
    let cmdline = facts.cmdline.as_ref().map_err(|e| why("command line", e))?;
    let argv: Vec<String> = cmdline
        .strip_suffix(&[0])
        .unwrap_or(cmdline)
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if !command_matches(&server.command, &argv, environ) {
        return Err(format!(
            "PID {pid} runs `{}`, not the command of '{}' (`{}`)",
            argv.join(" "),
            server.id,
            server.command.display()
        ));
    }
    let folder = facts.cwd.as_ref().map_err(|e| why("working folder", e))?;
    if folder != cwd {
        return Err(format!(
            "PID {pid} runs in {}, not in the folder of '{}' ({})",
            folder.display(),
            server.id,
            cwd.display()
        ));
    }
    Ok(())
}

/// The argv tend's spawn gives `command`: an array as it is; a string that keeps its shell as
/// `/bin/sh -c LINE`; one that is exec'd as its words, `$NAME` and `${NAME}` taken from the
/// process's own environment (where the shell took them from when it ran).
fn command_matches(command: &CommandSpec, argv: &[String], environ: &[u8]) -> bool {
    match command {
        CommandSpec::Exec(expected) => argv == expected.as_slice(),
        CommandSpec::Shell(line) => {
            let under_shell = |script: &str| argv == ["/bin/sh", "-c", script];
            if under_shell(line) || under_shell(&shell::script_for(line)) {
                return true;
            }
            let Some(words) = shell::exec_argv(line) else {
                return false;
            };
            words.len() == argv.len()
                && words
                    .iter()
                    .zip(argv)
                    .all(|(word, arg)| word_matches(word, arg, environ))
        }
    }
}

fn word_matches(word: &ArgWord, arg: &str, environ: &[u8]) -> bool {
    // A glob's matches depend on the folder's files then, not now: never proof.
    if word.is_pattern {
        return false;
    }
    if !word.expands {
        return word.text == arg;
    }
    expand(&word.text, environ).is_some_and(|text| text == arg)
}

/// `$NAME` and `${NAME}` replaced from `environ`; `None` for any other expansion.
fn expand(text: &str, environ: &[u8]) -> Option<String> {
    let lookup = |name: &str| -> String {
        environ
            .split(|&b| b == 0)
            .find_map(|entry| {
                entry
                    .strip_prefix(name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
            })
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}')?;
            let name = &inner[..end];
            if name.is_empty()
                || !name.chars().all(is_name)
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return None;
            }
            out.push_str(&lookup(name));
            rest = &inner[end + 1..];
        } else {
            let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            out.push_str(&lookup(&after[..len]));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Some(out)
}

/// The folder as the kernel shows a process's cwd (symlinks and `..` resolved).
fn resolved(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn started_at(start_ticks: u64) -> SystemTime {
    let boot = procfs::boot_time().unwrap_or_default();
    let ticks = procfs::clock_ticks_per_second().max(1);
    UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(start_ticks * 1000 / ticks)
}

/// "40 s", "12 min", "3 h", "2 days".
fn human(ago: Duration) -> String {
    let s = ago.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(command: CommandSpec) -> ServerConfig {
        let text = r#"{"servers": [{"id": "web", "command": "x", "cwd": "/srv/web"}]}"#;
        let config = crate::config::parse(text, Path::new("tend.json"), Path::new("/"))
            .unwrap_or_else(|e| panic!("{e}"));
        ServerConfig {
            command,
            ..config.servers[0].clone()
        }
    }

    fn facts(environ: &str, argv: &[&str], cwd: &str) -> Facts {
        Facts {
            pid: 42,
            uid: Ok(1000),
            environ: Ok(environ.replace(' ', "\0").into_bytes()),
            cmdline: Ok(argv
                .iter()
                .flat_map(|a| [a.as_bytes(), b"\0"])
                .flatten()
                .copied()
                .collect()),
            cwd: Ok(PathBuf::from(cwd)),
        }
    }

    fn check(command: CommandSpec, facts: &Facts) -> Result<(), String> {
        judge(&server(command), facts, 1000, Path::new("/srv/web"))
    }

    #[test]
    fn the_same_id_command_and_folder_is_ours() {
        let array = CommandSpec::Exec(vec!["python3".into(), "-m".into(), "http.server".into()]);
        let f = facts(
            "A=1 TEND_SERVER_ID=web",
            &["python3", "-m", "http.server"],
            "/srv/web",
        );
        assert_eq!(check(array, &f), Ok(()));
        // Exec'd string command: its words, `$PORT` from the process's own environment.
        let line = CommandSpec::Shell("PYTHONUNBUFFERED=1 python3 -m http.server \"$PORT\"".into());
        let f = facts(
            "PORT=8123 TEND_SERVER_ID=web",
            &["python3", "-m", "http.server", "8123"],
            "/srv/web",
        );
        assert_eq!(check(line.clone(), &f), Ok(()));
        let f = facts(
            "PORT=9 TEND_SERVER_ID=web",
            &["python3", "-m", "http.server", "8123"],
            "/srv/web",
        );
        assert!(
            check(line, &f)
                .unwrap_err()
                .contains("not the command of 'web'")
        );
        // Kept under its shell: /bin/sh -c LINE.
        let piped = CommandSpec::Shell("serve | tee out".into());
        let f = facts(
            "TEND_SERVER_ID=web",
            &["/bin/sh", "-c", "serve | tee out"],
            "/srv/web",
        );
        assert_eq!(check(piped, &f), Ok(()));
    }

    #[test]
    fn a_forged_id_with_another_command_or_folder_is_not() {
        let array = CommandSpec::Exec(vec!["server".into()]);
        let other = facts("TEND_SERVER_ID=web", &["nc", "-l", "8000"], "/srv/web");
        let error = check(array.clone(), &other).unwrap_err();
        assert_eq!(
            error,
            "PID 42 runs `nc -l 8000`, not the command of 'web' (`server`)"
        );
        let elsewhere = facts("TEND_SERVER_ID=web", &["server"], "/tmp");
        let error = check(array.clone(), &elsewhere).unwrap_err();
        assert_eq!(
            error,
            "PID 42 runs in /tmp, not in the folder of 'web' (/srv/web)"
        );
        let no_id = facts("A=1", &["server"], "/srv/web");
        assert!(
            check(array.clone(), &no_id)
                .unwrap_err()
                .contains("no TEND_SERVER_ID")
        );
        let other_id = facts("TEND_SERVER_ID=api", &["server"], "/srv/web");
        assert_eq!(
            check(array, &other_id).unwrap_err(),
            "PID 42's TEND_SERVER_ID is 'api', not 'web'"
        );
        // A glob's matches cannot be repeated: never proof.
        let glob = CommandSpec::Shell("serve *.conf".into());
        let f = facts("TEND_SERVER_ID=web", &["serve", "a.conf"], "/srv/web");
        assert!(check(glob, &f).is_err());
    }

    #[test]
    fn what_tend_cannot_read_or_another_users_process_is_not() {
        let array = CommandSpec::Exec(vec!["server".into()]);
        let mut f = facts("TEND_SERVER_ID=web", &["server"], "/srv/web");
        f.environ = Err(io::Error::from_raw_os_error(libc::EACCES));
        let error = check(array.clone(), &f).unwrap_err();
        assert!(
            error.starts_with("tend cannot read PID 42's environment: "),
            "{error}"
        );
        let mut f = facts("TEND_SERVER_ID=web", &["server"], "/srv/web");
        f.uid = Ok(0);
        assert_eq!(
            check(array, &f).unwrap_err(),
            "PID 42 belongs to user 0, not to tend's user (1000)"
        );
    }

    #[test]
    fn a_pid_reused_since_it_was_seen_is_not() {
        let seen = Adoptable {
            pid: 42,
            start_ticks: 1000,
            started_at: UNIX_EPOCH,
            evidence: String::new(),
        };
        assert_eq!(same_process(&seen, &seen.clone()), Ok(()));
        let reused = Adoptable {
            start_ticks: 2000,
            ..seen.clone()
        };
        let error = same_process(&seen, &reused).unwrap_err();
        assert!(error.contains("PID was reused"), "{error}");
        let other = Adoptable {
            pid: 43,
            ..seen.clone()
        };
        assert!(same_process(&seen, &other).is_err());
    }

    #[test]
    fn expansions_tend_can_repeat() {
        let env = b"A=x\0B=y\0";
        assert_eq!(expand("$A-${B}/$C", env).as_deref(), Some("x-y/"));
        assert_eq!(expand("${A:-z}", env), None);
        assert_eq!(expand("$1", env), None);
        assert_eq!(human(Duration::from_secs(3 * 3600 + 5)), "3 h");
    }
}
