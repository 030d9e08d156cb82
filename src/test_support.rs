//! What unit tests share: a temp folder of their own, a wait for a condition with a deadline,
//! and the reaping of a test's own children.
//! Compiled for tests only. The integration tests (tests/it) have their own support module:
//! they are another crate, and tend is a binary, so they cannot import this one.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long [`wait_until`] (and a test's other bounded waits) wait: far above what any condition takes on a loaded machine, so
/// only a real failure reaches it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh folder `temp_dir()/tend-tests/<name>-<pid>-<n>`, removed on drop unless the test
/// failed, so a failure leaves its evidence. Derefs to its path.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join("tend-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        // A leftover from an earlier run with the same pid would confuse the test.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test's temp folder");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `probe` until `ok` accepts its value and returns that value; fails the test, naming
/// `what` and the last value seen, if that takes longer than the deadline. Never a fixed sleep.
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = probe();
        if ok(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last saw {value:?}"
        );
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// Kills (if `kill`) and reaps the test's own child `pid`; returns its wait status. Unit tests
/// run without tend's reaper, so each reaps its children itself, with waitpid(2): std's waits
/// are off limits (clippy.toml), as they would race the reaper in tend.
pub fn reap_child(pid: u32, kill: bool) -> i32 {
    if kill {
        // SAFETY: `pid` is our own unreaped child, so the PID cannot have been reused.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child, into a local.
    let reaped = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(reaped, pid as i32);
    status
}
