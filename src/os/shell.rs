//! Whether a string command needs its shell (docs/DESIGN.md §12). A string command runs as
//! `/bin/sh -c COMMAND`, and Debian's `/bin/sh` (dash) does not exec the last command of a `-c`
//! script: the shell stays as the program's parent, so the PID, CPU and memory tend would show
//! are the shell's (docs/NOTES.md "Measured in the second round"). bash execs it; dash
//! does not.
//!
//! So a string that is one simple command runs with `exec` placed before its program
//! (`A=1 prog "$PORT"` becomes `A=1 exec prog "$PORT"`): the shell still does all the quoting,
//! word splitting, `$VAR` expansion and globbing exactly as before, then replaces itself with
//! the program. Anything that needs the shell to stay (pipes, lists, `&`, redirections,
//! subshells, command substitution, keywords, builtins, several lines) runs as written.
//!
//! This is a deliberately small reader of POSIX shell syntax (XCU 2.2-2.4, 2.9.1): it only has
//! to tell "certainly one simple command" from "anything else", and says "anything else"
//! whenever it is unsure. Pure: no I/O; used by the ProcessManager when it spawns, and by
//! `tend check` and `tend export` to say which way each server runs.

use crate::config::CommandSpec;

/// How a string command is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// One simple command: `/bin/sh -c SCRIPT`, where the script execs the program (the
    /// command with `exec` before its program word, or as written if it already has it).
    Exec { script: String },
    /// Run as written under `/bin/sh -c`; `reason` says what needs the shell.
    Shell { reason: String },
}

/// Keywords that start compound commands (XCU 2.4), and bash's few extra ones: never a
/// program name.
const KEYWORDS: &[&str] = &[
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then",
    "until", "while", "[[", "]]", "function", "select", "time", "coproc",
];

/// dash's builtins (dash(1)) and bash's: `exec cd /tmp` would fail where `cd /tmp` works, and
/// `exec echo` would run /bin/echo instead of the builtin. A server is never one of these, so
/// they keep their shell.
const BUILTINS: &[&str] = &[
    ":",
    ".",
    "[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "cd",
    "chdir",
    "command",
    "compgen",
    "complete",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

/// One word of the command, as far as the plan needs it.
#[derive(Debug, Default)]
struct Word {
    /// Byte offset of its first character in the script.
    start: usize,
    /// The word with its quotes removed (expansions left as written).
    text: String,
    /// Has an unquoted or double-quoted `$NAME`/`${…}`: its value is only known to the shell.
    expands: bool,
    /// Has an unquoted `*`, `?` or `[`: a pattern the shell expands.
    is_pattern: bool,
}

/// Decides how `script` (a string command) runs.
pub fn plan(script: &str) -> Plan {
    let words = match split_words(script) {
        Ok(words) => words,
        Err(reason) => {
            return Plan::Shell {
                reason: reason.to_string(),
            };
        }
    };
    let Some(program) = words.iter().find(|w| !is_assignment(&script[w.start..])) else {
        let reason = if words.is_empty() {
            "has no command"
        } else {
            "only assigns variables"
        };
        return Plan::Shell {
            reason: reason.to_string(),
        };
    };
    let shell = |reason: String| Plan::Shell { reason };
    if program.expands {
        return shell("its program name comes from an expansion".to_string());
    }
    if program.is_pattern {
        return shell("its program name is a glob pattern".to_string());
    }
    let name = program.text.as_str();
    if name == "exec" {
        return Plan::Exec {
            script: script.to_string(),
        };
    }
    if KEYWORDS.contains(&name) {
        return shell(format!("'{name}' is a shell keyword"));
    }
    if BUILTINS.contains(&name) {
        return shell(format!("'{name}' is a shell builtin"));
    }
    // Assignments before `exec` reach the program's environment in dash and bash, as they do
    // before any program (checked in tests/it/lifecycle.rs).
    let (before, after) = script.split_at(program.start);
    Plan::Exec {
        script: format!("{before}exec {after}"),
    }
}

/// `runs directly (exec)` or `runs under /bin/sh -c: contains a pipe`: what `tend check` and
/// `tend export` say of a server's command.
pub fn describe(command: &CommandSpec) -> String {
    match command {
        CommandSpec::Exec(_) => "runs directly (array command, no shell)".to_string(),
        CommandSpec::Shell(line) => match plan(line) {
            Plan::Exec { .. } => "runs directly (exec)".to_string(),
            Plan::Shell { reason } => format!("runs under /bin/sh -c: {reason}"),
        },
    }
}

/// The script `/bin/sh -c` gets for a string command.
pub fn script_for(line: &str) -> String {
    match plan(line) {
        Plan::Exec { script } => script,
        Plan::Shell { .. } => line.to_string(),
    }
}

/// One word of the argv a string command's program is exec'd with, as far as tend can know it
/// without running a shell: `expands` words still hold their `$NAME`/`${…}` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgWord {
    pub text: String,
    pub expands: bool,
    pub is_pattern: bool,
}

/// For a string command that runs by `exec` ([`Plan::Exec`]), the words its program receives
/// as argv (assignments and an `exec` of its own left out); `None` when it keeps its shell.
/// Used to recognise a running process as this command's (`adopt.rs`).
pub fn exec_argv(line: &str) -> Option<Vec<ArgWord>> {
    if !matches!(plan(line), Plan::Exec { .. }) {
        return None;
    }
    let words = split_words(line).ok()?;
    let mut rest = words
        .into_iter()
        .skip_while(|w| is_assignment(&line[w.start..]))
        .peekable();
    if rest.peek().is_some_and(|w| w.text == "exec") {
        rest.next();
    }
    Some(
        rest.map(|w| ArgWord {
            text: w.text,
            expands: w.expands,
            is_pattern: w.is_pattern,
        })
        .collect(),
    )
}

/// `NAME=` at the start of a word's source text, NAME a shell name (XCU 2.9.1: a word before
/// the command name that looks like this is an assignment). A quoted `=` or name is not.
fn is_assignment(source: &str) -> bool {
    let name_len = source
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    name_len > 0
        && !source.as_bytes()[0].is_ascii_digit()
        && source.as_bytes().get(name_len) == Some(&b'=')
}

/// Splits a script into words, or says which shell syntax it uses beyond one simple command.
/// Works on bytes: every character the shell treats specially is ASCII, and UTF-8 never uses
/// ASCII bytes inside a multi-byte character.
fn split_words(script: &str) -> Result<Vec<Word>, &'static str> {
    let bytes = script.as_bytes();
    let mut words = Vec::new();
    let mut word: Option<Word> = None;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b' ' | b'\t' => {
                words.extend(word.take());
                i += 1;
                continue;
            }
            b'\n' => {
                // A trailing newline ends the command; anything after one is another command.
                if !script[i..].trim().is_empty() {
                    return Err("contains a newline (several commands)");
                }
                break;
            }
            b'#' if word.is_none() => {
                // A comment runs to the end of its line.
                i = script[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'|' if bytes.get(i + 1) == Some(&b'|') => return Err("contains a list (||)"),
            b'|' => return Err("contains a pipe"),
            b'&' if bytes.get(i + 1) == Some(&b'&') => return Err("contains a list (&&)"),
            b'&' => return Err("runs in the background (&)"),
            b';' => return Err("contains a list (;)"),
            b'<' | b'>' => return Err("contains a redirection"),
            b'(' | b')' => return Err("contains a subshell or a function"),
            b'`' => return Err("contains a command substitution"),
            _ => {}
        }
        let current = word.get_or_insert_with(|| Word {
            start: i,
            ..Word::default()
        });
        match byte {
            b'\\' => match bytes.get(i + 1) {
                // Backslash-newline joins lines (XCU 2.2.1).
                Some(b'\n') => i += 2,
                Some(_) => {
                    let c = next_char(script, i + 1);
                    current.text.push(c);
                    i += 1 + c.len_utf8();
                }
                None => {
                    current.text.push('\\');
                    i += 1;
                }
            },
            b'\'' => {
                let Some(end) = script[i + 1..].find('\'') else {
                    return Err("contains an unterminated quote");
                };
                current.text.push_str(&script[i + 1..i + 1 + end]);
                i += end + 2;
            }
            b'"' => i = double_quoted(script, i + 1, current)?,
            b'$' => i = dollar(script, i, current)?,
            b'*' | b'?' | b'[' => {
                current.is_pattern = true;
                current.text.push(byte as char);
                i += 1;
            }
            _ => {
                let c = next_char(script, i);
                current.text.push(c);
                i += c.len_utf8();
            }
        }
    }
    words.extend(word);
    Ok(words)
}

fn next_char(script: &str, at: usize) -> char {
    script[at..].chars().next().expect("at is a char boundary")
}

/// Reads a double-quoted part starting after its `"`; returns the index after the closing `"`.
fn double_quoted(script: &str, mut i: usize, word: &mut Word) -> Result<usize, &'static str> {
    let bytes = script.as_bytes();
    loop {
        match bytes.get(i) {
            None => return Err("contains an unterminated quote"),
            Some(b'"') => return Ok(i + 1),
            Some(b'`') => return Err("contains a command substitution"),
            Some(b'$') => i = dollar(script, i, word)?,
            // Inside double quotes a backslash escapes only $ ` " \ and newline (XCU 2.2.3).
            Some(b'\\') => match bytes.get(i + 1) {
                Some(b'\n') => i += 2,
                Some(&b @ (b'$' | b'`' | b'"' | b'\\')) => {
                    word.text.push(b as char);
                    i += 2;
                }
                _ => {
                    word.text.push('\\');
                    i += 1;
                }
            },
            Some(_) => {
                let c = next_char(script, i);
                word.text.push(c);
                i += c.len_utf8();
            }
        }
    }
}

/// Reads a `$…` at `i`; returns the index after it. Parameter expansions are the shell's
/// business and are fine; command substitution and arithmetic run code and are not.
fn dollar(script: &str, i: usize, word: &mut Word) -> Result<usize, &'static str> {
    let bytes = script.as_bytes();
    match bytes.get(i + 1) {
        Some(b'(') => Err("contains a command substitution"),
        Some(b'{') => {
            let Some(len) = script[i + 2..].find('}') else {
                return Err("contains an unterminated ${");
            };
            let inner = &script[i + 2..i + 2 + len];
            if inner.contains(['`', '$', '"', '\'', '\\', '{']) {
                return Err("contains a nested parameter expansion");
            }
            word.expands = true;
            word.text.push_str(&script[i..i + 3 + len]);
            Ok(i + 3 + len)
        }
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {
            let len = 1 + bytes[i + 1..]
                .iter()
                .skip(1)
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            word.expands = true;
            word.text.push_str(&script[i..i + 1 + len]);
            Ok(i + 1 + len)
        }
        Some(b) if b.is_ascii_digit() || b"@*#?$!-".contains(b) => {
            word.expands = true;
            word.text.push_str(&script[i..i + 2]);
            Ok(i + 2)
        }
        // A `$` before anything else is an ordinary character.
        _ => {
            word.text.push('$');
            Ok(i + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_script(script: &str) -> String {
        match plan(script) {
            Plan::Exec { script } => script,
            Plan::Shell { reason } => panic!("{script:?} kept its shell: {reason}"),
        }
    }

    fn reason(script: &str) -> String {
        match plan(script) {
            Plan::Shell { reason } => reason,
            Plan::Exec { script } => panic!("{script:?} was exec'd"),
        }
    }

    #[test]
    fn one_simple_command_is_execd_with_its_words_untouched() {
        for (given, expected) in [
            ("redis-server --port 6380", "exec redis-server --port 6380"),
            ("sleep 1000", "exec sleep 1000"),
            (
                "gunicorn app:app --bind 0.0.0.0:$PORT",
                "exec gunicorn app:app --bind 0.0.0.0:$PORT",
            ),
            (
                "  python3 -m http.server ${PORT}",
                "  exec python3 -m http.server ${PORT}",
            ),
            (
                "'/opt/my app/run' \"a b\" c\\ d",
                "exec '/opt/my app/run' \"a b\" c\\ d",
            ),
            (
                "PORT=8000 FOO='a b' ./serve",
                "PORT=8000 FOO='a b' exec ./serve",
            ),
            ("ls *.txt ~/x [ab]", "exec ls *.txt ~/x [ab]"),
            (
                "prog --flag \\\n  --other",
                "exec prog --flag \\\n  --other",
            ),
            (
                "prog arg # a comment | not a pipe",
                "exec prog arg # a comment | not a pipe",
            ),
            ("prog a#b 100%", "exec prog a#b 100%"),
            (
                "prog \"$HOME/x\" \"${A:-b}\" $1 $@",
                "exec prog \"$HOME/x\" \"${A:-b}\" $1 $@",
            ),
            (
                "prog 'it''s' \"say \\\"hi\\\"\"",
                "exec prog 'it''s' \"say \\\"hi\\\"\"",
            ),
            ("prog ünïcode ✓\n", "exec prog ünïcode ✓\n"),
            ("prog =x a=b", "exec prog =x a=b"),
            ("\"A=1\" prog", "exec \"A=1\" prog"),
            ("exec redis-server", "exec redis-server"),
            ("A=1 exec prog", "A=1 exec prog"),
            ("prog $", "exec prog $"),
        ] {
            assert_eq!(exec_script(given), expected, "{given:?}");
        }
    }

    #[test]
    fn shell_syntax_keeps_the_shell_and_says_why() {
        for (given, why) in [
            ("cat log | grep x", "contains a pipe"),
            ("a || b", "contains a list (||)"),
            ("a && b", "contains a list (&&)"),
            ("a; b", "contains a list (;)"),
            ("sleep 1 &", "runs in the background (&)"),
            ("prog > out.log", "contains a redirection"),
            ("prog 2>&1", "contains a redirection"),
            ("prog <<EOF", "contains a redirection"),
            ("(cd x && prog)", "contains a subshell or a function"),
            ("f() { prog; }", "contains a subshell or a function"),
            ("prog $(cat args)", "contains a command substitution"),
            ("prog \"$(cat args)\"", "contains a command substitution"),
            ("prog `cat args`", "contains a command substitution"),
            ("prog $((1+2))", "contains a command substitution"),
            ("a\nb", "contains a newline (several commands)"),
            ("prog 'open", "contains an unterminated quote"),
            ("prog \"open", "contains an unterminated quote"),
            ("prog ${A", "contains an unterminated ${"),
            ("prog ${A:-$B}", "contains a nested parameter expansion"),
            ("cd /srv", "'cd' is a shell builtin"),
            ("'cd' /srv", "'cd' is a shell builtin"),
            ("A=1 export B", "'export' is a shell builtin"),
            ("echo hi", "'echo' is a shell builtin"),
            ("if", "'if' is a shell keyword"),
            ("{ prog", "'{' is a shell keyword"),
            ("! prog", "'!' is a shell keyword"),
            ("$CMD --flag", "its program name comes from an expansion"),
            ("$HOME/bin/prog", "its program name comes from an expansion"),
            ("./run*", "its program name is a glob pattern"),
            ("A=1 B=2", "only assigns variables"),
            ("", "has no command"),
            ("   # just a comment", "has no command"),
        ] {
            assert_eq!(reason(given), why, "{given:?}");
        }
    }

    #[test]
    fn describe_names_the_way_each_command_runs() {
        assert_eq!(
            describe(&CommandSpec::Shell("redis-server".into())),
            "runs directly (exec)"
        );
        assert_eq!(
            describe(&CommandSpec::Shell("a | b".into())),
            "runs under /bin/sh -c: contains a pipe"
        );
        assert_eq!(
            describe(&CommandSpec::Exec(vec!["redis-server".into()])),
            "runs directly (array command, no shell)"
        );
        assert_eq!(script_for("a | b"), "a | b");
        assert_eq!(script_for("prog x"), "exec prog x");
    }

    /// The rewritten script does what the original did, through the real /bin/sh: same words,
    /// same environment.
    #[test]
    #[allow(clippy::zombie_processes)] // reaped with waitpid below: std's waits are off limits
    fn the_exec_script_gives_the_program_the_same_arguments_and_environment() {
        // Reaped by its own PID, never through std's waits: those race a `waitpid(-1)` reaper
        // (docs/NOTES.md "Processes"), which clippy.toml forbids everywhere.
        let run = |script: &str| {
            use std::io::Read;
            let mut child = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .env("TEND_SHELL_TEST", "x y")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run /bin/sh");
            let mut out = String::new();
            child
                .stdout
                .take()
                .expect("piped stdout")
                .read_to_string(&mut out)
                .expect("read /bin/sh's output");
            let mut status = 0;
            // SAFETY: waits for our own child, into a local.
            unsafe { libc::waitpid(child.id() as i32, &mut status, 0) };
            out
        };
        for original in [
            "printf '[%s]' a 'b c' \"$TEND_SHELL_TEST\" $TEND_SHELL_TEST \\$x \"\\\"\"",
            "A='1 2' env",
        ] {
            // printf and env as programs: /usr/bin/printf is what exec finds.
            let original = original.replacen("printf", "/usr/bin/printf", 1);
            let rewritten = exec_script(&original);
            assert_eq!(run(&rewritten), run(&original), "{original:?}");
        }
    }
}
