//! Where servers' logs live and the private folders tend writes into (state, logs): the paths
//! and modes, shared by the spawn (which opens the log), the tailers and `tend up`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a server's output goes: `<log_dir>/<id>.log`.
pub fn log_path(log_dir: &Path, id: &str) -> PathBuf {
    // Ids are validated against [A-Za-z0-9][A-Za-z0-9._-]*, so this cannot leave log_dir.
    log_dir.join(format!("{id}.log"))
}

/// Creates a folder tend writes into with mode 0700 (state, logs): other users must not read
/// what children print.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens a server's log for appending, creating it with mode 0640.
pub fn open_log(log_dir: &Path, id: &str) -> io::Result<File> {
    ensure_private_dir(log_dir)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log_path(log_dir, id))
}
