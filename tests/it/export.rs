//! Issue 6, items 4 and 5, against the real tools: `tend export systemd` checked by
//! `systemd-analyze verify` (installed by tests/tools/debian-package.sh when missing),
//! `tend export procfile` run through `sh`, `tend status` colours through a pipe and with
//! `CLICOLOR_FORCE`, and `tend logs -f` across a restart of the server and of tend itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    TempDir, Tend, ensure_debian_package, free_port, send_signal, tend_bin, wait_until,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tend --config CONFIG ARGS…`, which must succeed; its stdout.
fn tend_ok(config: &Path, args: &[&str]) -> String {
    let out = Command::new(tend_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tend");
    assert!(
        out.status.success(),
        "tend {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

// ---------------------------------------------------------------------------------------------
// systemd

/// systemd-analyze, installed (Debian's `systemd` package) once per test run.
/// Its full path: the environment test reads which libsystemd-shared it links.
fn systemd_analyze() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        ensure_debian_package("systemd", &["systemd-analyze"]);
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|folder| folder.join("systemd-analyze"))
            .find(|path| path.is_file())
            .expect("systemd-analyze on PATH after installing it")
    })
}

/// Runs `systemd-analyze [--user] verify FILES…` and returns (success, everything it said).
///
/// No systemd runs as PID 1 in a container, and `verify` needs none: it loads the files with a
/// private manager in test mode (it adds the files' folder to the unit search path, so the
/// target finds its services). A `--user` manager needs a runtime folder, which a container has
/// not, so it gets a private `XDG_RUNTIME_DIR`. No `--root` or `--man=no` is needed: our units
/// carry no `Documentation=` for `--man` to check.
fn verify(files: &[PathBuf], user: bool, runtime: &Path) -> (bool, String) {
    let mut command = Command::new(systemd_analyze());
    if user {
        command.arg("--user");
        std::fs::create_dir_all(runtime).unwrap();
        command.env("XDG_RUNTIME_DIR", runtime);
    }
    let out = command
        .arg("verify")
        .args(files)
        .env("SYSTEMD_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze verify");
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// The unit files in `dir`, sorted.
fn unit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "service" || e == "target")
        })
        .collect();
    files.sort();
    files
}

/// The arguments of the tricky project's `db` program.
const DB_ARGS: [&str; 17] = [
    "it's",
    "say \"hi\"",
    "$HOME",
    "${HOME}/x",
    "100%",
    "%n",
    "back\\slash",
    ";",
    "",
    "two  spaces",
    "tab\there",
    "new\nline",
    "bell\u{7}",
    "ünï",
    "`tick`",
    "a'b\"c",
    "$$",
];

/// The shell command of the tricky project's `web` server.
const WEB_COMMAND: &str =
    "echo \"it's $HOME\" 100% \\\\ 'single' ; printf '%s\\n' a; exec sleep 1000";

/// A project whose commands, paths and env values hold everything systemd quoting must get
/// right: quotes of both kinds, `$`, `%`, spaces, backslashes, `;`, a program in a folder with a
/// space, `$` and `%` in its name, a relative program found through PATH, a chain of depends_on.
struct Tricky {
    dir: TempDir,
    config: PathBuf,
    /// The program whose path systemd must unquote exactly to find it.
    program: PathBuf,
}

fn tricky_project(name: &str) -> Tricky {
    let dir = TempDir::new(name);
    let project = "my shop";
    let program = dir.join(&format!("{project}/bin dir/run $x 100%.sh"));
    dir.write(
        &format!("{project}/bin dir/run $x 100%.sh"),
        "#!/bin/sh\nexec sleep 1000\n",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.write(&format!("{project}/work dir/.keep"), "");
    dir.write(
        &format!("{project}/app env"),
        "# for the web server\nFROM_FILE=\"a b\"\nexport EXPORTED='from an export line'\n\
         GREETING=overridden by env\n",
    );
    let mut db_command = vec![json!(program)];
    db_command.extend(DB_ARGS.iter().map(|a| json!(a)));
    let config = json!({"servers": [
        {"id": "db", "command": db_command,
         "restart": "always", "stop_signal": "SIGINT", "stop_timeout_ms": 2500},
        {"id": "web", "command": WEB_COMMAND,
         "cwd": "work dir", "depends_on": ["db"], "env_file": "app env",
         "env": {"GREETING": "hello \"world\" it's", "PCT": "100% $HOME \\ done",
                 "PADDED": "  padded  ", "LINES": "one\ntwo"},
         "ports": [18080], "backoff_ms": 250, "max_restarts": 3},
        {"id": "worker", "command": ["sh", "-c", "echo \"$1\"; exec sleep 1000", "worker", "$$"],
         "depends_on": ["web", "db"], "restart": "no"},
        {"id": "manual", "command": ["./bin dir/run $x 100%.sh"], "autostart": false}
    ]});
    let config_path = dir.write(
        &format!("{project}/tend.json"),
        &serde_json::to_string_pretty(&config).unwrap(),
    );
    Tricky {
        dir,
        config: config_path,
        program,
    }
}

/// Lines of verify's output about our units (they name our files or our unit names).
fn about_our_units<'a>(said: &'a str, out_dir: &Path) -> Vec<&'a str> {
    said.lines()
        .filter(|l| l.contains("tend-my-shop") || l.contains(&*out_dir.to_string_lossy()))
        .collect()
}

/// `systemd-analyze verify` at debug level: its stdout, where it dumps every unit it loaded.
fn dump_units(files: &[PathBuf]) -> String {
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .args(files)
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze verify");
    text(&out.stdout)
}

/// The dump of one unit: from its `-> Unit NAME:` line to the next unit's.
fn unit_section<'a>(dump: &'a str, unit: &str) -> &'a str {
    let marker = format!("-> Unit {unit}:");
    let start = dump.find(&marker).unwrap_or_else(|| {
        panic!("systemd-analyze dumped no {unit} (has its debug output changed?)")
    });
    let rest = &dump[start + marker.len()..];
    &rest[..rest.find("-> Unit ").unwrap_or(rest.len())]
}

/// Splits a command line as systemd dumps it (its `quote_command_line`): plain words bare,
/// others in double quotes with backslash before `"`, `\`, `$` and `` ` ``, and C escapes for
/// control characters.
fn split_dumped_command_line(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            i += 1;
            continue;
        }
        let mut word = String::new();
        if chars[i] == '"' {
            i += 1;
            while chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                    match chars[i] {
                        'n' => word.push('\n'),
                        't' => word.push('\t'),
                        'r' => word.push('\r'),
                        'a' => word.push('\u{7}'),
                        'b' => word.push('\u{8}'),
                        'f' => word.push('\u{c}'),
                        'v' => word.push('\u{b}'),
                        'x' => {
                            let hex: String = chars[i + 1..i + 3].iter().collect();
                            word.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                            i += 2;
                        }
                        other => word.push(other),
                    }
                } else {
                    word.push(chars[i]);
                }
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ' ' {
                word.push(chars[i]);
                i += 1;
            }
        }
        words.push(word);
    }
    words
}

#[test]
fn exported_system_and_user_units_pass_systemd_analyze_verify() {
    let project = tricky_project("export_verify");
    for user in [false, true] {
        let out_dir = project
            .dir
            .join(if user { "units-user" } else { "units-system" });
        let mut args = vec!["export", "systemd", "--out"];
        let out_text = out_dir.to_string_lossy().into_owned();
        args.push(&out_text);
        if user {
            args.push("--user");
        }
        let printed = tend_ok(&project.config, &args);
        assert!(printed.contains("systemctl"), "{printed}");
        let files = unit_files(&out_dir);
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "tend-my-shop-db.service",
                "tend-my-shop-manual.service",
                "tend-my-shop-web.service",
                "tend-my-shop-worker.service",
                "tend-my-shop.target",
            ]
        );
        let (ok, said) = verify(&files, user, &project.dir.join("runtime"));
        let ours = about_our_units(&said, &out_dir);
        assert!(
            ok && ours.is_empty(),
            "systemd-analyze {}verify complained (success: {ok}):\n{said}",
            if user { "--user " } else { "" }
        );

        let db = project.dir.read(&format!(
            "{}/tend-my-shop-db.service",
            out_dir.file_name().unwrap().to_string_lossy()
        ));
        let target = std::fs::read_to_string(out_dir.join("tend-my-shop.target")).unwrap();
        if user {
            assert!(!db.contains("User="), "{db}");
            assert!(target.contains("WantedBy=default.target"), "{target}");
        } else {
            assert!(db.contains("\nUser="), "{db}");
            assert!(target.contains("WantedBy=multi-user.target"), "{target}");
        }
        assert!(
            !target.contains("manual"),
            "manual is not autostart: {target}"
        );
    }

    // The quoting as written, for the record of what verify accepted.
    let web =
        std::fs::read_to_string(project.dir.join("units-system/tend-my-shop-web.service")).unwrap();
    for line in [
        "ExecStart=/bin/sh -c \"echo \\\"it's $$HOME\\\" 100%% \\\\\\\\ 'single' ; printf '%%s\\\\n' a; exec sleep 1000\"",
        "After=tend-my-shop-db.service",
        "Requires=tend-my-shop-db.service",
        "RestartSec=250ms",
        "StartLimitBurst=4",
    ] {
        assert!(web.contains(line), "web unit lacks {line}:\n{web}");
    }
    // One source of environment: the env file written beside the unit (issue 10).
    let env_file = project.dir.join("units-system/tend-my-shop-web.env");
    assert!(
        web.contains(&format!("EnvironmentFile={}\n", env_file.display())),
        "{web}"
    );
    assert!(!web.contains("Environment="), "{web}");
    // What systemd itself made of the quoting: verify at debug level dumps each loaded unit,
    // with every command line re-quoted by systemd and every Environment= entry as parsed.
    let files = unit_files(&project.dir.join("units-system"));
    let dump = dump_units(&files);
    // `$$` is still doubled in the dump: systemd turns it into `$` when it runs the command.
    let argv = |unit: &str| -> Vec<String> {
        let section = unit_section(&dump, unit);
        let line = section
            .lines()
            .find_map(|l| l.trim().strip_prefix("Command Line: "))
            .unwrap_or_else(|| panic!("no command line for {unit} in:\n{section}"));
        split_dumped_command_line(line)
            .into_iter()
            .map(|arg| arg.replace("$$", "$"))
            .collect()
    };
    let mut expected = vec![project.program.to_string_lossy().into_owned()];
    expected.extend(DB_ARGS.iter().map(|a| a.to_string()));
    assert_eq!(argv("tend-my-shop-db.service"), expected);
    assert_eq!(
        argv("tend-my-shop-web.service"),
        ["/bin/sh", "-c", WEB_COMMAND]
    );
    let worker = argv("tend-my-shop-worker.service");
    assert!(
        worker[0].starts_with('/') && worker[0].ends_with("/sh"),
        "{worker:?}"
    );
    assert_eq!(
        worker[1..],
        ["-c", "echo \"$1\"; exec sleep 1000", "worker", "$$"]
    );
    assert_eq!(
        argv("tend-my-shop-manual.service"),
        [project.program.to_string_lossy().into_owned()]
    );
    let env = systemd_environment(&dump, "tend-my-shop-web.service");
    for (key, value) in [
        ("GREETING", "hello \"world\" it's"),
        ("PCT", "100% $HOME \\ done"),
        ("PADDED", "  padded  "),
        ("LINES", "one\ntwo"),
        ("TEND_SERVER_ID", "web"),
        ("FROM_FILE", "a b"),
        ("EXPORTED", "from an export line"),
    ] {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "systemd's reading of {key} in {env:#?}"
        );
    }
    let web = unit_section(&dump, "tend-my-shop-web.service");
    for setting in [
        format!(
            "WorkingDirectory: {}\n",
            project.dir.join("my shop/work dir").display()
        ),
        format!("EnvironmentFile: {}\n", env_file.display()),
        "KillMode: control-group\n".to_string(),
        "RestartSec: 250ms\n".to_string(),
        "Restart: on-failure\n".to_string(),
    ] {
        assert!(
            web.contains(&setting),
            "systemd read no {setting:?} in:\n{web}"
        );
    }
    // The dump rounds times to the second above one second (2500ms shows as 2s).
    let db = unit_section(&dump, "tend-my-shop-db.service");
    for setting in [
        "KillSignal: SIGINT\n",
        "Restart: always\n",
        "TimeoutStopSec: 2s\n",
    ] {
        assert!(
            db.contains(setting),
            "systemd read no {setting:?} in:\n{db}"
        );
    }

    // The check is live: verify passed because systemd unquoted the program's path (space, `$`
    // and `%` in it) to exactly our file. Without the file, it names our unit.
    std::fs::remove_file(&project.program).unwrap();
    let files = unit_files(&project.dir.join("units-system"));
    let (ok, said) = verify(&files, false, &project.dir.join("runtime"));
    assert!(
        !ok && said.contains("tend-my-shop-db.service") && said.contains("not executable"),
        "verify should miss the program now (success: {ok}):\n{said}"
    );
}

// ---------------------------------------------------------------------------------------------
// The environment systemd gives a unit, read by systemd's own code

/// systemd's reader of `EnvironmentFile=`, taken from libsystemd-shared (the private library
/// systemd-analyze and the service manager link): `load_env_file`, then
/// `strv_env_clean_with_callback`, the two calls systemd's executor makes on each file
/// (src/core/execute.c, `exec_context_load_environment`, systemd 252). No systemd runs here to
/// start a unit, so this is the closest thing to it: the very code, not a re-implementation.
///
/// The library is loaded in a child process (python3's ctypes), never into this test process:
/// its constructors and global state have no business in a harness whose threads share
/// descriptors and signals with every other test.
struct SystemdEnvReader {
    library: String,
}

/// Reads one env file with systemd's functions and prints the assignments as a JSON list.
const READ_ENV_FILE: &str = r#"
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
strv = ctypes.POINTER(ctypes.c_char_p)
lib.load_env_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(strv)]
lib.load_env_file.restype = ctypes.c_int
lib.strv_env_clean_with_callback.argtypes = [strv, ctypes.c_void_p, ctypes.c_void_p]
lib.strv_env_clean_with_callback.restype = strv
lib.strv_free.argtypes = [strv]
lib.strv_free.restype = strv
found = strv()
rc = lib.load_env_file(None, sys.argv[2].encode(), ctypes.byref(found))
if rc < 0:
    sys.exit("systemd cannot read %s: error %d" % (sys.argv[2], rc))
found = lib.strv_env_clean_with_callback(found, None, None)
out, at = [], 0
while found and found[at] is not None:
    out.append(found[at].decode())
    at += 1
lib.strv_free(found)
print(json.dumps(out))
"#;

impl SystemdEnvReader {
    /// Finds the library systemd-analyze links (with `ldd`, so its path is the distribution's,
    /// whatever it is).
    fn get() -> &'static SystemdEnvReader {
        static READER: OnceLock<SystemdEnvReader> = OnceLock::new();
        READER.get_or_init(|| {
            let out = Command::new("ldd")
                .arg(systemd_analyze())
                .output()
                .expect("run ldd");
            let listing = text(&out.stdout);
            let library = listing
                .lines()
                .find(|l| l.contains("libsystemd-shared"))
                .and_then(|l| l.split("=> ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| {
                    panic!("systemd-analyze links no libsystemd-shared:\n{listing}")
                });
            SystemdEnvReader {
                library: library.to_string(),
            }
        })
    }

    /// The assignments systemd takes from one env file, in its order.
    fn read(&self, path: &Path) -> Vec<String> {
        let out = Command::new("python3")
            .arg("-c")
            .arg(READ_ENV_FILE)
            .arg(&self.library)
            .arg(path)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "reading {} with systemd's code failed: {}",
            path.display(),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "systemd's reading of {}: {e}: {}",
                path.display(),
                text(&out.stdout)
            )
        })
    }
}

/// The environment a unit gives its process, as systemd builds it: the unit's `Environment=`
/// entries, then each `EnvironmentFile=` on top (files win, whatever the order in the unit),
/// read from systemd-analyze's dump of the unit and systemd's own env file reader. The
/// variables the service manager adds itself (HOME, INVOCATION_ID, …) come before both and are
/// none of tend's business.
fn systemd_environment(dump: &str, unit: &str) -> std::collections::BTreeMap<String, String> {
    let section = unit_section(dump, unit);
    let mut env = std::collections::BTreeMap::new();
    let mut put = |assignment: &str| {
        let (key, value) = assignment.split_once('=').unwrap();
        env.insert(key.to_string(), value.to_string());
    };
    for line in section.lines() {
        if let Some(assignment) = line.trim().strip_prefix("Environment: ") {
            put(assignment);
        }
    }
    for line in section.lines() {
        if let Some(file) = line.trim().strip_prefix("EnvironmentFile: ") {
            for assignment in SystemdEnvReader::get().read(Path::new(file)) {
                put(&assignment);
            }
        }
    }
    env
}

/// The environment of a running process, from /proc/PID/environ.
fn process_environment(pid: u64) -> std::collections::BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let entry = String::from_utf8(entry.to_vec()).ok()?;
            let (key, value) = entry.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// An env file with every kind of line systemd and tend could read differently.
const TRICKY_DOT_ENV: &str = r#"# comment line
PLAIN=value
export EXPORTED=from an export line
export   SECRET_TOKEN="s3cr3t with spaces"
SPACED = padded value   
TRAIL=bare # a comment after a bare value
HASH=a#b
HASH_FIRST=#x
SINGLE='literal \n $HOME # kept "dq"'
DOUBLE="line\nnext\ttab \"q\" back\\slash \$x \d"
DOLLAR=$HOME/x
BACKTICK="`not run` $(nor this)"
EMPTY=
EQ=a=b
QUOTE=it's
LEADING="  two spaces  "
PORT=15000
BOTH=from .env
DUP=first
DUP=second
"#;

// See: issue 10 (the unit had `EnvironmentFile=.env` and `Environment="PORT=15100"`: under
// systemd the file won and its `export` lines were skipped, so the worker got another PORT).
#[test]
fn exported_units_give_the_environment_tend_gives() {
    let dir = TempDir::new("export_environment");
    dir.write(".env", TRICKY_DOT_ENV);
    let config = json!({"servers": [
        {"id": "web", "command": ["sleep", "1000"], "env_file": ".env",
         "env": {"PORT": "15100", "BOTH": "from env", "GREETING": "hello \"world\" it's",
                 "PCT": "100% $HOME \\ done", "LINES": "one\ntwo", "HASHY": "# not a comment",
                 "TICKS": "`x` $(y) ${Z}", "TRAILING_BACKSLASH": "end\\"}},
        {"id": "bare", "command": ["sleep", "1000"]},
    ]});
    let tend = Tend::start(&dir, &config);
    let out_dir = dir.join("units");
    tend_ok(
        &tend.config_path,
        &["export", "systemd", "--out", out_dir.to_str().unwrap()],
    );
    let files = unit_files(&out_dir);
    let dump = dump_units(&files);
    let inherited: std::collections::BTreeMap<String, String> = std::env::vars().collect();

    for id in ["web", "bare"] {
        let unit = format!(
            "tend-{}-{id}.service",
            dir.path.file_name().unwrap().to_string_lossy()
        );
        let unit_text = std::fs::read_to_string(out_dir.join(&unit))
            .unwrap_or_else(|e| panic!("{unit}: {e}; files: {files:?}"));
        assert!(
            !unit_text.contains("Environment="),
            "one source:\n{unit_text}"
        );
        let env_file = out_dir.join(unit.replace(".service", ".env"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} may hold secrets", env_file.display());

        let server = tend.wait_status(id, "running");
        let from_tend = process_environment(server["pid"].as_u64().unwrap());
        let from_systemd = systemd_environment(&dump, &unit);
        // Everything the unit gives, the server has under tend, with the same value.
        for (key, value) in &from_systemd {
            assert_eq!(
                from_tend.get(key),
                Some(value),
                "{id}: {key} under systemd is {value:?}, under tend {:?}",
                from_tend.get(key)
            );
        }
        // Everything tend gives beyond what it inherited itself is in the unit. (tend's own
        // environment is the shell's that ran it: a unit carries only its PATH.)
        for (key, value) in &from_tend {
            if inherited.get(key) == Some(value) {
                continue;
            }
            assert_eq!(
                from_systemd.get(key),
                Some(value),
                "{id}: {key} under tend is {value:?}, under systemd {:?}",
                from_systemd.get(key)
            );
        }
        assert_eq!(
            from_systemd.get("TEND_SERVER_ID").map(String::as_str),
            Some(id)
        );
    }

    // The values that were wrong before, spelled out.
    let web = systemd_environment(
        &dump,
        &format!(
            "tend-{}-web.service",
            dir.path.file_name().unwrap().to_string_lossy()
        ),
    );
    for (key, value) in [
        ("PORT", "15100"),
        ("BOTH", "from env"),
        ("EXPORTED", "from an export line"),
        ("SECRET_TOKEN", "s3cr3t with spaces"),
        ("SPACED", "padded value"),
        ("TRAIL", "bare"),
        ("SINGLE", "literal \\n $HOME # kept \"dq\""),
        ("DOUBLE", "line\nnext\ttab \"q\" back\\slash $x \\d"),
        ("DOLLAR", "$HOME/x"),
        ("BACKTICK", "`not run` $(nor this)"),
        ("DUP", "second"),
        ("LEADING", "  two spaces  "),
        ("TRAILING_BACKSLASH", "end\\"),
    ] {
        assert_eq!(web.get(key).map(String::as_str), Some(value), "{key}");
    }
}

#[test]
fn export_systemd_to_stdout_separates_units_and_says_what_is_not_replicated() {
    let project = tricky_project("export_stdout");
    let printed = tend_ok(&project.config, &["export", "systemd"]);
    let separators: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("# ---- "))
        .collect();
    assert_eq!(
        separators,
        [
            "# ---- tend-my-shop-db.service ----",
            "# ---- tend-my-shop-db.env ----",
            "# ---- tend-my-shop-web.service ----",
            "# ---- tend-my-shop-web.env ----",
            "# ---- tend-my-shop-worker.service ----",
            "# ---- tend-my-shop-worker.env ----",
            "# ---- tend-my-shop-manual.service ----",
            "# ---- tend-my-shop-manual.env ----",
            "# ---- tend-my-shop.target ----",
        ]
    );
    // On stdout the units name their env files where `--out .` would write them (tend_ok runs
    // tend in this process's working directory).
    let cwd = std::fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
    assert!(
        printed.contains(&format!(
            "EnvironmentFile={}\n",
            cwd.join("tend-my-shop-web.env").display()
        )),
        "{printed}"
    );
    for needle in ["Generated by tend", "orphan detection", "port health"] {
        assert_eq!(printed.matches(needle).count(), 5, "{needle} in every unit");
    }
    // A relative program name was resolved through PATH at export time.
    let worker = printed
        .split("# ---- ")
        .find(|u| u.starts_with("tend-my-shop-worker.service"))
        .unwrap();
    let exec = worker
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    assert!(exec.starts_with("ExecStart=/"), "{exec}");
    assert!(exec.contains("/sh -c "), "{exec}");
}

#[test]
fn export_refuses_a_program_it_cannot_find_and_names_the_server() {
    let dir = TempDir::new("export_missing_program");
    let config = dir.write(
        "tend.json",
        r#"{"servers": [{"id": "ghost", "command": ["no-such-program-for-tend-tests"]}]}"#,
    );
    let out = Command::new(tend_bin())
        .args(["--config"])
        .arg(&config)
        .args(["export", "systemd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("server 'ghost'") && stderr.contains("no-such-program-for-tend-tests"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing half-written to stdout");
}

// ---------------------------------------------------------------------------------------------
// Procfile

#[test]
fn export_procfile_lines_run_in_sh_give_back_the_same_arguments() {
    let dir = TempDir::new("export_procfile");
    let args = [
        "it's",
        "say \"hi\"",
        "$HOME",
        "back\\slash",
        "two  spaces",
        "",
        "100%",
        "*",
    ];
    let mut command = vec![json!("printf"), json!("[%s]\\n")];
    command.extend(args.iter().map(|a| json!(a)));
    let config = dir.write(
        "tend.json",
        &json!({"servers": [
            {"id": "echo", "command": command},
            {"id": "web", "command": "exec sleep 1000", "ports": [8000], "depends_on": ["echo"]}
        ]})
        .to_string(),
    );
    let procfile = tend_ok(&config, &["export", "procfile"]);
    assert!(
        procfile.contains("# web: ports 8000; depends_on echo"),
        "{procfile}"
    );
    assert!(procfile.contains("web: exec sleep 1000\n"), "{procfile}");
    let line = procfile
        .lines()
        .find_map(|l| l.strip_prefix("echo: "))
        .unwrap_or_else(|| panic!("no echo line in:\n{procfile}"));
    // foreman and honcho run each entry with `sh -c`.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .current_dir(&dir.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}: {}", text(&out.stderr));
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(text(&out.stdout), expected, "line: {line}");
}

// ---------------------------------------------------------------------------------------------
// tend status colours

fn status_output(tend: &Tend, env: &[(&str, &str)]) -> Output {
    let mut command = tend.cli_command(&["status"]);
    command.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    for (k, v) in env {
        command.env(k, v);
    }
    command.stdout(Stdio::piped()).output().unwrap()
}

#[test]
fn status_is_plain_through_a_pipe_and_coloured_when_forced() {
    let dir = TempDir::new("status_colours");
    let tend = Tend::start(
        &dir,
        &json!({"servers": [
            {"id": "up", "command": "exec sleep 1000"},
            {"id": "a-long-name", "command": "exec sleep 1000", "autostart": false}
        ]}),
    );
    tend.wait_status("up", "running");

    let plain = text(&status_output(&tend, &[]).stdout);
    assert!(!plain.contains('\x1b'), "a pipe gets no colour:\n{plain}");
    assert!(plain.contains("running"), "{plain}");

    let forced = text(&status_output(&tend, &[("CLICOLOR_FORCE", "1")]).stdout);
    assert!(forced.contains("\x1b[32mrunning\x1b[0m"), "{forced:?}");
    assert!(forced.contains("\x1b[2mstopped\x1b[0m"), "{forced:?}");
    // Alignment counts visible text: without the codes each line is the plain table's, at
    // least through the PID column (the uptime may tick between the two runs).
    let stripped = forced
        .replace("\x1b[32m", "")
        .replace("\x1b[2m", "")
        .replace("\x1b[0m", "");
    let through_pid = plain.lines().next().unwrap().find("PID").unwrap() + "PID".len();
    let prefixes = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.chars().take(through_pid).collect())
            .collect()
    };
    assert_eq!(prefixes(&stripped), prefixes(&plain), "{stripped}\n{plain}");

    let refused = text(&status_output(&tend, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).stdout);
    assert!(!refused.contains('\x1b'), "NO_COLOR wins:\n{refused}");
}

// ---------------------------------------------------------------------------------------------
// tend logs -f across restarts

/// A running `tend logs ID -f` whose stdout lines arrive on a channel; killed by PID on drop.
struct Follow {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follow {
    fn start(tend: &Tend, id: &str) -> Follow {
        let mut child = tend
            .cli_command(&["logs", id, "-f", "-n", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tend logs -f");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `needle`; panics with all lines seen after `timeout`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.seen.iter().any(|l| l.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "logs -f printed no line with {needle:?} within {timeout:?}; it printed:\n{}",
                    self.seen.join("\n")
                );
            }
            if let Ok(line) = self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                self.seen.push(line);
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        send_signal(self.child.id() as i32, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A server that prints its own PID every 50 ms, so each line says which process wrote it.
fn ticker() -> Value {
    json!({"servers": [{"id": "tick",
        "command": "i=0; while :; do echo \"pid $$ tick $i\"; i=$((i+1)); sleep 0.05; done"}]})
}

fn pid_of(tend: &Tend, id: &str) -> u64 {
    let server = tend.wait_server(id, "a pid", |s| s["pid"].is_u64());
    server["pid"].as_u64().unwrap()
}

#[test]
fn logs_follow_keeps_streaming_across_a_restart_of_the_server() {
    let dir = TempDir::new("logs_follow_server_restart");
    let tend = Tend::start(&dir, &ticker());
    let first = pid_of(&tend, "tick");
    let mut follow = Follow::start(&tend, "tick");
    follow.wait_for(&format!("pid {first} tick"), Duration::from_secs(10));

    let (status, body) = tend.act("tick", "restart");
    assert_eq!(status, 200, "{body}");
    let second = body["pid"].as_u64().expect("the restarted server's pid");
    assert_ne!(first, second);
    follow.wait_for(&format!("pid {second} tick"), Duration::from_secs(10));
}

#[test]
fn logs_follow_reconnects_when_tend_itself_restarts() {
    let dir = TempDir::new("logs_follow_tend_restart");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut tend = Tend::start_with_args(&dir, &ticker(), &["--listen", &listen]);
    let first = pid_of(&tend, "tick");
    let mut follow = Follow::start(&tend, "tick");
    follow.wait_for(&format!("pid {first} tick"), Duration::from_secs(10));

    // tend stops its servers on exit; the next one starts a new process on the same log file.
    assert!(tend.terminate().success());
    let tend = Tend::start_with_args(&dir, &ticker(), &["--listen", &listen]);
    let second = pid_of(&tend, "tick");
    assert_ne!(first, second);
    // The client waits the stream's `retry` (2 s), then backs off up to 5 s between tries.
    follow.wait_for(&format!("pid {second} tick"), Duration::from_secs(20));
    wait_until(
        "the follower to be still running",
        Duration::from_secs(1),
        || {
            follow
                .child
                .try_wait()
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    );
}
