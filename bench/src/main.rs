//! `make bench` and `make soak`: drive the real tend binary (and supervisord) from outside.
//!
//! ```text
//! tend-bench [--quick] [--n 100,1000,10000]   the comparison table (bench.rs; 10000: the
//!                                            large tier, idle.rs)
//! tend-bench soak [--seconds 300]         churn over 100 servers, then a verdict (soak.rs)
//! tend-bench child listen|stuck PORT      a workload program (child.rs)
//! ```
//! Environment: `TEND_BIN` (default ../target/static/tend, else ../target/release/tend),
//! `SUPERVISORD` (default ../target/bench-venv/bin/supervisord). Every process started here is
//! stopped by PID or process group; all traffic goes to 127.0.0.1.

mod bench;
mod child;
mod footprint;
mod http;
mod idle;
mod managers;
mod musl;
mod procs;
mod soak;
mod stats;

use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("child") => child::run(&args[1..]),
        Some("soak") => {
            let seconds =
                value(&args, "--seconds").map_or(300, |v| v.parse().expect("--seconds N"));
            let ok = soak::run(&tend_binary(), seconds);
            std::process::exit(if ok { 0 } else { 1 });
        }
        Some("-h" | "--help") => {
            println!("usage: tend-bench [--quick] [--n 100,1000] | soak [--seconds N]");
        }
        _ => run_bench(&args),
    }
}

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tend_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TEND_BIN") {
        return PathBuf::from(path);
    }
    let static_bin = repo().join("target/static/tend");
    if static_bin.exists() {
        return static_bin;
    }
    repo().join("target/release/tend")
}

fn run_bench(args: &[String]) {
    let quick = args.iter().any(|a| a == "--quick");
    // The large tier (10,000 servers) only in the full run: it alone takes minutes.
    let ns: Vec<usize> = value(args, "--n")
        .unwrap_or(if quick { "100,1000" } else { "100,1000,10000" })
        .split(',')
        .map(|n| n.trim().parse().expect("--n 100,1000"))
        .collect();
    let supervisord = std::env::var("SUPERVISORD")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/bench-venv/bin/supervisord"));
    let opts = bench::Opts {
        quick,
        ns,
        tend: std::fs::canonicalize(tend_binary()).expect("tend binary (run make static)"),
        supervisord: std::fs::canonicalize(&supervisord)
            .expect("supervisord (make bench installs it)"),
        me: std::env::current_exe().expect("own path"),
        results: repo().join("bench/results"),
    };
    let header = environment(&opts);
    eprintln!("{header}");
    let report = bench::run(&opts);
    println!("\n{report}");
    let _ = std::fs::create_dir_all(&opts.results);
    let name = format!("{}{}.md", today(), if quick { "-quick" } else { "" });
    let path = opts.results.join(name);
    let text = format!(
        "# `make bench`{}\n\n{header}\n{report}",
        if quick { " --quick" } else { "" }
    );
    match std::fs::write(&path, text) {
        Ok(()) => println!("written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
    update_readme(&path, &header, &report);
}

/// Puts the latest table in README, between its `bench table` markers.
fn update_readme(results: &std::path::Path, header: &str, report: &str) {
    const START: &str = "<!-- bench table: start -->";
    const END: &str = "<!-- bench table: end -->";
    let readme = repo().join("README.md");
    let Ok(text) = std::fs::read_to_string(&readme) else {
        return;
    };
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        return;
    };
    let host = header
        .lines()
        .find(|l| l.starts_with("Host:"))
        .unwrap_or_default();
    let table = report
        .find("| figure")
        .map_or(report, |i| &report[i..])
        .trim_end();
    let name = results
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let block = format!(
        "{START}\nLatest run (`bench/results/{name}`; {}):\n\n{table}\n",
        host.replacen("Host: ", "host: ", 1)
    );
    let updated = format!("{}{block}{}", &text[..a], &text[b..]);
    match std::fs::write(&readme, updated) {
        Ok(()) => println!("table put in {}", readme.display()),
        Err(e) => eprintln!("cannot update {}: {e}", readme.display()),
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn environment(opts: &bench::Opts) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = command_output("uname", &["-r"]);
    let supd = command_output(&opts.supervisord.display().to_string(), &["--version"]);
    let python = command_output(
        &opts
            .supervisord
            .with_file_name("python3")
            .display()
            .to_string(),
        &["--version"],
    );
    let tend_version = command_output(&opts.tend.display().to_string(), &["version"]);
    format!(
        "Host: {cpus} CPUs, Linux {kernel}. tend: {} ({tend_version}). supervisord {supd} ({python}).\n\
Mode: {}. Same workloads for both; children detected the same way for both (a new PID whose \n\
parent is the manager and whose command line is the workload's, polled every 0.1–0.5 ms).\n",
        opts.tend.display(),
        if opts.quick {
            "--quick (3 repeats, 30 s CPU window)"
        } else {
            "full (5 repeats, 60 s CPU window)"
        },
    )
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
