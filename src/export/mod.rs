//! `tend export systemd|procfile`: the loaded config written out for another supervisor.
//!
//! Runs on the main thread of a short-lived `tend` process. It reads the config and the servers'
//! env files and writes text; it never starts, signals or talks to anything. `systemd.rs` makes
//! the units and their env files, `procfile.rs` the Procfile; this file writes them out.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::ExportFormat;
use crate::config::Config;
use crate::error::{Context, Error};
use crate::print_stdout;

mod procfile;
mod systemd;

pub use procfile::procfile;
use procfile::shell_quote;
pub use systemd::{SystemdExport, systemd};

/// One generated file: its name (`tend-shop-web.service`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub name: String,
    pub text: String,
}

/// What the export needs to know about the machine it runs on, gathered once so the
/// generators are plain functions of their input (and testable).
#[derive(Debug, Clone)]
pub struct Host {
    /// `PATH` at export time: program names are resolved with it, and it is carried into the
    /// units, since tend's children inherit it and systemd's services get a minimal one.
    pub path: Option<String>,
    /// The tend binary, for `TEND_BIN` (which tend gives every child).
    pub tend_bin: PathBuf,
    /// The user that system units run as (`User=`): the one who exports.
    pub user: String,
}

impl Host {
    pub fn current() -> Host {
        Host {
            path: std::env::var("PATH").ok(),
            tend_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tend")),
            user: current_user(),
        }
    }
}

/// Runs `tend export …`: units to `--out DIR` or to stdout, a Procfile to stdout.
pub fn run(config: &Config, format: &ExportFormat) -> Result<ExitCode, Error> {
    let host = Host::current();
    match format {
        ExportFormat::Procfile => print_stdout(&procfile(config)),
        ExportFormat::Systemd { user, out } => {
            // The env files' absolute path goes into the units: where --out writes them, or,
            // on stdout, where `--out .` would.
            let dir = out.clone().unwrap_or_else(|| PathBuf::from("."));
            if out.is_some() {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let env_dir = absolute(&dir)?;
            let export = systemd(config, *user, &host, &env_dir)?;
            match out {
                None => {
                    let mut text = String::new();
                    for (n, unit) in export.files().enumerate() {
                        if n > 0 {
                            text.push('\n');
                        }
                        let _ = writeln!(text, "# ---- {} ----", unit.name);
                        text.push_str(&unit.text);
                    }
                    print_stdout(&text);
                }
                Some(dir) => write_units(dir, &export, *user)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dir` made absolute without resolving symlinks (the folder exists when it matters).
fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    if let Ok(real) = std::fs::canonicalize(dir) {
        return Ok(real);
    }
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    Ok(cwd.join(dir))
}

fn write_units(dir: &Path, export: &SystemdExport, user: bool) -> Result<(), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut text = String::new();
    for unit in &export.units {
        let path = dir.join(&unit.name);
        std::fs::write(&path, &unit.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let _ = writeln!(text, "wrote {}", path.display());
    }
    // An env file may hold secrets from .env: readable by its owner only (systemd reads it as
    // root for a system unit, as the user's manager for a user unit). Set on an existing file
    // too, before the new text goes in.
    for env in &export.env_files {
        let path = dir.join(&env.name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                file.write_all(env.text.as_bytes())
            });
        written.with_context(|| format!("cannot write {}", path.display()))?;
        let _ = writeln!(text, "wrote {}", path.display());
    }
    let target = export
        .units
        .iter()
        .find(|u| u.name.ends_with(".target"))
        .map_or("", |u| u.name.as_str());
    let flag = if user { " --user" } else { "" };
    // `systemctl link` wants absolute paths.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let _ = writeln!(
        text,
        "install: systemctl{flag} link {dir}/*.service {dir}/{target} && \
         systemctl{flag} enable --now {target}",
        dir = shell_quote(&dir.to_string_lossy())
    );
    print_stdout(&text);
    Ok(())
}

/// The config file's absolute path (`config.path` is as given on the command line).
pub(super) fn config_file(config: &Config) -> PathBuf {
    match config.path.file_name() {
        Some(name) => config.base_dir.join(name),
        None => config.path.clone(),
    }
}

/// Text safe inside a `#` comment: one line.
pub(super) fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The name of the effective user, or its number when it has no passwd entry (systemd's
/// `User=` takes either).
fn current_user() -> String {
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of this plain C struct (null pointers, zero
    // ids); getpwuid_r fills it in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of ours with the length given; on success
    // `result` points at `pwd`, whose strings point into `buf`, which outlives their use here.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name is a NUL-terminated string inside `buf` (see above).
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        if let Ok(name) = name.to_str() {
            if !name.is_empty() {
                return name.to_string();
            }
        }
    }
    uid.to_string()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn config(json: &str) -> Config {
        crate::config::parse(
            json,
            Path::new("/srv/shop/tend.json"),
            Path::new("/srv/shop"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn host() -> Host {
        Host {
            path: Some("/usr/bin:/bin".to_string()),
            tend_bin: PathBuf::from("/usr/local/bin/tend"),
            user: "alice".to_string(),
        }
    }
}
