//! tend: a tiny process supervisor with a live browser dashboard. `main` only parses the command
//! line, runs the command and turns its outcome into an exit code.

mod alerts;
mod cli;
mod client;
mod config;
mod demo;
mod error;
mod export;
#[cfg(test)]
mod fuzz_tests;
mod groups;
mod history;
mod http;
mod logger;
mod logs;
mod model;
mod monitor;
mod os;
mod recorder;
mod regex;
mod schedule;
mod store;
mod supervisor;
#[cfg(test)]
mod test_support;
mod up;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use cli::Command;
use error::{Error, report};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(Error::Config(errors)) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
        Err(error) => {
            // A usage error's message already says which help to read.
            eprintln!("tend: {}", report(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

fn run() -> Result<ExitCode, Error> {
    let cli = cli::parse(std::env::args_os().skip(1))?;
    match &cli.command {
        Command::Up(options) => {
            logger::init();
            up::abort_on_panic();
            up::up(cli.config.as_deref(), options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let config = up::load_config(cli.config.as_deref(), None)?;
            let mut text = format!(
                "{}: OK ({} servers)\n",
                config.path.display(),
                config.servers.len()
            );
            // Whether tend's PID and figures will be the program's or its shell's.
            for server in &config.servers {
                let how = os::shell::describe(&server.command);
                text.push_str(&format!("  {}: {how}\n", server.id));
            }
            print_stdout(&text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Help { topic } => {
            print_stdout(&cli::help_text(topic.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            print_stdout(&format!("tend {}\n", env!("CARGO_PKG_VERSION")));
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(format) => {
            let config = up::load_config(cli.config.as_deref(), None)?;
            export::run(&config, format)
        }
        Command::Serve(options) => {
            demo::run(options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { .. }
        | Command::FleetStatus { .. }
        | Command::Act { .. }
        | Command::Logs { .. }
        | Command::Events { .. }
        | Command::AlertsTest
        | Command::KillOrphan { .. }
        | Command::Adopt { .. }
        | Command::Reload => client::run(&cli),
    }
}

/// Prints to stdout; a closed pipe (`tend help | head -1`, `tend export systemd | head`) is
/// not an error.
pub(crate) fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
