//! The "watch" thread (README "Restart on file changes"): one inotify instance for every
//! server with a `watch` key. It keeps the folders each server's [`Rules`] want watched (new
//! subfolders as they appear, a folder that went and came back), gathers a burst of changes
//! per server and, once the server's debounce has passed without another, tells the
//! supervisor which file changed. The supervisor decides what a change does; this thread
//! never signals anything.
//!
//! It blocks in poll(2) on the inotify descriptor and an eventfd the supervisor's commands
//! wake it with, so a server without `watch` costs nothing, and one with it costs nothing
//! between changes.

pub mod rules;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};

use crate::config::watch::WatchSpec;
use crate::monitor::Slot;
use crate::os::inotify::{self, Inotify, Waker};

pub use self::rules::{OwnFiles, Rules};

const LOG: &str = "Watch";

/// What a folder is watched for: files written, created, removed, renamed or touched, and the
/// folder itself going away.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_EXCL_UNLINK;

/// From the supervisor: what to watch for a server (by its monitor [`Slot`], which a reload never
/// moves); `spec: None` stops watching for it.
#[derive(Debug)]
pub struct WatchCmd {
    pub slot: Slot,
    pub id: String,
    pub cwd: PathBuf,
    pub spec: Option<WatchSpec>,
}

/// To the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchReport {
    /// A burst of changes is over: `file` changed first, `more` other files with it.
    Changed { slot: Slot, file: String, more: u32 },
    /// How many folders are watched for the server now, and what keeps the watch incomplete.
    Watching {
        slot: Slot,
        folders: usize,
        error: Option<String>,
    },
}

/// The supervisor's end: commands go in, and the thread wakes to read them.
#[derive(Clone)]
pub struct WatchHandle {
    commands: Sender<WatchCmd>,
    waker: Arc<Waker>,
}

impl WatchHandle {
    /// A handle no thread reads, for supervisor tests that run no watcher.
    #[cfg(test)]
    pub fn unattended() -> WatchHandle {
        let (commands, _) = unbounded();
        WatchHandle {
            commands,
            waker: Arc::new(Waker::new().expect("an eventfd")),
        }
    }

    pub fn set(&self, command: WatchCmd) {
        if self.commands.send(command).is_ok() {
            self.waker.wake();
        }
    }
}

/// Starts the "watch" thread. The inotify instance is made when the first server asks for a
/// watch, so a config without `watch` takes none of the user's instances.
pub fn start(own: OwnFiles, reports: Sender<WatchReport>) -> io::Result<WatchHandle> {
    let waker = Arc::new(Waker::new()?);
    let (commands, inbox) = unbounded();
    let thread_waker = Arc::clone(&waker);
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let mut watcher = Watcher {
                inotify: None,
                own,
                trees: HashMap::new(),
                dirs: HashMap::new(),
                wd_of: HashMap::new(),
                reports,
                limit_warned: false,
            };
            watcher.run(&thread_waker, &inbox);
        })?;
    Ok(WatchHandle { commands, waker })
}

struct Dir {
    path: PathBuf,
    /// The slots of the servers that want this folder.
    users: BTreeSet<Slot>,
}

/// One server's watch.
struct Tree {
    id: String,
    rules: Rules,
    debounce: Duration,
    folders: BTreeSet<PathBuf>,
    error: Option<String>,
    burst: Option<Burst>,
    reported: Option<(usize, Option<String>)>,
}

struct Burst {
    file: String,
    /// The other files changed in the burst (a file saved is several events: one name).
    others: HashSet<String>,
    last: Instant,
}

/// A burst this large is reported as "and 10000 more" without remembering more names.
const MAX_NAMES: usize = 10_000;

struct Watcher {
    inotify: Option<Inotify>,
    own: OwnFiles,
    trees: HashMap<Slot, Tree>,
    dirs: HashMap<i32, Dir>,
    wd_of: HashMap<PathBuf, i32>,
    reports: Sender<WatchReport>,
    /// The watch limit is logged once per tend, not once per folder.
    limit_warned: bool,
}

impl Watcher {
    fn run(&mut self, waker: &Waker, inbox: &Receiver<WatchCmd>) {
        let mut buf = vec![0u8; inotify::READ_BUFFER];
        loop {
            let now = Instant::now();
            let due = self
                .trees
                .values()
                .filter_map(|t| t.burst.as_ref().map(|b| b.last + t.debounce))
                .min();
            let mut fds = vec![waker.as_raw_fd()];
            if let Some(inotify) = &self.inotify {
                fds.push(inotify.as_raw_fd());
            }
            let ready = match inotify::wait(&fds, due.map(|d| d.saturating_duration_since(now))) {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!(target: LOG, "File watch stopped: {e}");
                    return;
                }
            };
            if ready[0] {
                waker.drain();
                loop {
                    match inbox.try_recv() {
                        Ok(command) => self.apply(command),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
            }
            if ready.get(1) == Some(&true) {
                self.read_events(&mut buf);
            }
            self.fire_due();
            self.report_folders();
        }
    }

    fn apply(&mut self, command: WatchCmd) {
        let WatchCmd {
            slot,
            id,
            cwd,
            spec,
        } = command;
        let Some(spec) = spec else {
            if let Some(tree) = self.trees.remove(&slot) {
                for folder in tree.folders {
                    self.release(slot, &folder);
                }
                // A server that is gone or no longer watched is told it watches nothing.
                let _ = self.reports.send(WatchReport::Watching {
                    slot,
                    folders: 0,
                    error: None,
                });
            }
            return;
        };
        let rules = Rules::new(&cwd, &spec, &self.own);
        let tree = self.trees.entry(slot).or_insert_with(|| Tree {
            id: id.clone(),
            rules: rules.clone(),
            debounce: spec.debounce,
            folders: BTreeSet::new(),
            error: None,
            burst: None,
            reported: None,
        });
        tree.id = id;
        tree.rules = rules;
        tree.debounce = spec.debounce;
        self.resync(slot);
    }

    /// Makes the watched folders of `slot` what its rules want now.
    fn resync(&mut self, slot: Slot) {
        let Some(tree) = self.trees.get(&slot) else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for root in &tree.rules.roots {
            match std::fs::metadata(&root.base) {
                Ok(meta) if meta.is_dir() => {
                    walk(&tree.rules, &root.base, &mut wanted, &mut Vec::new());
                }
                Ok(_) => {
                    if let Some(parent) = root.base.parent() {
                        wanted.insert(parent.to_path_buf());
                    }
                }
                // Not there (yet): watch the nearest folder on the way, to see it come.
                Err(_) => {
                    if let Some(ancestor) = root.base.ancestors().skip(1).find(|a| a.is_dir()) {
                        wanted.insert(ancestor.to_path_buf());
                    }
                }
            }
        }
        let had = tree.folders.clone();
        for gone in had.difference(&wanted) {
            self.release(slot, gone);
        }
        let mut error = None;
        for folder in wanted.difference(&had) {
            if let Err(problem) = self.watch_folder(slot, folder) {
                error = Some(problem);
                break;
            }
        }
        if let Some(tree) = self.trees.get_mut(&slot) {
            tree.error = error;
        }
    }

    /// Adds `folder` for `slot`; `Err` when no more can be added (the kernel's limit).
    fn watch_folder(&mut self, slot: Slot, folder: &Path) -> Result<(), String> {
        if self.inotify.is_none() {
            match Inotify::new(true) {
                Ok(inotify) => self.inotify = Some(inotify),
                Err(e) => {
                    let message = format!(
                        "cannot watch files: {e} (the limit of inotify instances per user is \
                         fs.inotify.max_user_instances)"
                    );
                    log::warn!(target: LOG, "{message}; tend keeps supervising without file watching");
                    return Err(message);
                }
            }
        }
        let inotify = self.inotify.as_ref().expect("made above");
        match inotify.add_watch(folder, MASK) {
            Ok(wd) => {
                let dir = self.dirs.entry(wd).or_insert_with(|| Dir {
                    path: folder.to_path_buf(),
                    users: BTreeSet::new(),
                });
                dir.users.insert(slot);
                self.wd_of.insert(folder.to_path_buf(), wd);
                if let Some(tree) = self.trees.get_mut(&slot) {
                    tree.folders.insert(folder.to_path_buf());
                }
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                let limit = inotify::max_user_watches()
                    .map_or_else(|| "its".to_string(), |n| n.to_string());
                let message = format!(
                    "the kernel's limit of {limit} inotify watches per user is reached \
                     (fs.inotify.max_user_watches); raise it with `sysctl -w \
                     fs.inotify.max_user_watches=524288`"
                );
                if !std::mem::replace(&mut self.limit_warned, true) {
                    let id = self.trees.get(&slot).map_or("", |t| t.id.as_str());
                    log::warn!(target: LOG, "Cannot watch {} for '{}': {}; tend keeps supervising, \
                        and changes in folders it could not watch go unnoticed",
                        folder.display(), id, message);
                }
                Err(message)
            }
            Err(e) => {
                // Gone since it was listed, or not readable: nothing to watch there.
                log::debug!(target: LOG, "Cannot watch {}: {e}", folder.display());
                Ok(())
            }
        }
    }

    /// `slot` no longer wants `folder`; the watch goes when nobody does.
    fn release(&mut self, slot: Slot, folder: &Path) {
        if let Some(tree) = self.trees.get_mut(&slot) {
            tree.folders.remove(folder);
        }
        let Some(&wd) = self.wd_of.get(folder) else {
            return;
        };
        let Some(dir) = self.dirs.get_mut(&wd) else {
            return;
        };
        dir.users.remove(&slot);
        if dir.users.is_empty() {
            self.dirs.remove(&wd);
            self.wd_of.remove(folder);
            if let Some(inotify) = &self.inotify {
                inotify.rm_watch(wd);
            }
        }
    }

    /// The kernel dropped a watch (the folder went): forget it and look again.
    fn forget(&mut self, wd: i32) {
        let Some(dir) = self.dirs.remove(&wd) else {
            return;
        };
        self.wd_of.remove(&dir.path);
        for &slot in &dir.users {
            if let Some(tree) = self.trees.get_mut(&slot) {
                tree.folders.remove(&dir.path);
            }
        }
        for slot in dir.users {
            self.resync(slot);
        }
    }

    fn read_events(&mut self, buf: &mut [u8]) {
        loop {
            let events = match self.inotify.as_ref().map(|i| i.read(buf)) {
                Some(Ok(events)) if !events.is_empty() => events,
                Some(Err(e)) => {
                    log::error!(target: LOG, "Cannot read file changes: {e}");
                    return;
                }
                _ => return,
            };
            for event in events {
                self.on_event(&event);
            }
        }
    }

    fn on_event(&mut self, event: &inotify::Event) {
        if event.mask & libc::IN_Q_OVERFLOW != 0 {
            // Changes were lost: each watched server restarts, and every tree is listed anew.
            log::warn!(target: LOG, "Too many file changes at once: the kernel dropped some");
            let slots: Vec<Slot> = self.trees.keys().copied().collect();
            for slot in slots {
                self.changed(
                    slot,
                    "(many files: the kernel's event queue overflowed)".into(),
                );
                self.resync(slot);
            }
            return;
        }
        if event.mask & libc::IN_IGNORED != 0 {
            self.forget(event.wd);
            return;
        }
        let Some(dir) = self.dirs.get(&event.wd) else {
            return;
        };
        if event.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            // A moved folder keeps its watch under a path tend no longer knows: drop it.
            if let Some(inotify) = &self.inotify {
                inotify.rm_watch(event.wd);
            }
            self.forget(event.wd);
            return;
        }
        let path = dir.path.join(&event.name);
        let users: Vec<Slot> = dir.users.iter().copied().collect();
        let is_dir = event.mask & libc::IN_ISDIR != 0;
        for slot in users {
            let Some(tree) = self.trees.get(&slot) else {
                continue;
            };
            if tree.rules.is_ignored(&path) {
                continue;
            }
            if !is_dir {
                if tree.rules.matches(&path) {
                    let file = tree.rules.describe(&path);
                    self.changed(slot, file);
                }
                continue;
            }
            if event.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                let is_root = tree.rules.roots.iter().any(|r| r.base == path);
                let on_the_way = tree.rules.leads_to_a_root(&path);
                if tree.rules.wants_dir(&path) {
                    self.add_new_folder(slot, &path);
                }
                if is_root || on_the_way {
                    // A root (back): the folder watched while it was missing is let go.
                    self.resync(slot);
                }
            } else if event.mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 {
                let below: Vec<PathBuf> = tree
                    .folders
                    .iter()
                    .filter(|f| f.starts_with(&path))
                    .cloned()
                    .collect();
                let counts = tree.rules.matches(&path);
                let file = tree.rules.describe(&path);
                for folder in below {
                    self.release(slot, &folder);
                }
                if counts {
                    self.changed(slot, file);
                }
            }
        }
    }

    /// A folder appeared where the server watches: watch it and what is below it. Files
    /// already in it were created before the watch could see them, so they count as changes.
    fn add_new_folder(&mut self, slot: Slot, path: &Path) {
        let Some(tree) = self.trees.get(&slot) else {
            return;
        };
        let mut folders = BTreeSet::new();
        let mut files = Vec::new();
        walk(&tree.rules, path, &mut folders, &mut files);
        let files: Vec<String> = files
            .iter()
            .filter(|f| tree.rules.matches(f))
            .map(|f| tree.rules.describe(f))
            .collect();
        for folder in folders {
            if let Err(problem) = self.watch_folder(slot, &folder) {
                if let Some(tree) = self.trees.get_mut(&slot) {
                    tree.error = Some(problem);
                }
                break;
            }
        }
        for file in files {
            self.changed(slot, file);
        }
    }

    fn changed(&mut self, slot: Slot, file: String) {
        let Some(tree) = self.trees.get_mut(&slot) else {
            return;
        };
        let now = Instant::now();
        match &mut tree.burst {
            Some(burst) => {
                if file != burst.file && burst.others.len() < MAX_NAMES {
                    burst.others.insert(file);
                }
                burst.last = now;
            }
            None => {
                tree.burst = Some(Burst {
                    file,
                    others: HashSet::new(),
                    last: now,
                })
            }
        }
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        for (&slot, tree) in &mut self.trees {
            if tree
                .burst
                .as_ref()
                .is_some_and(|b| b.last + tree.debounce <= now)
            {
                let burst = tree.burst.take().expect("checked above");
                let more = burst.others.len() as u32;
                log::debug!(target: LOG, "'{}': {} changed ({} more)", tree.id, burst.file, more);
                let _ = self.reports.send(WatchReport::Changed {
                    slot,
                    file: burst.file,
                    more,
                });
            }
        }
    }

    fn report_folders(&mut self) {
        for (&slot, tree) in &mut self.trees {
            let now = (tree.folders.len(), tree.error.clone());
            if tree.reported.as_ref() != Some(&now) {
                tree.reported = Some(now.clone());
                let _ = self.reports.send(WatchReport::Watching {
                    slot,
                    folders: now.0,
                    error: now.1,
                });
            }
        }
    }
}

/// The folders at and below `dir` the rules want (symlinks are not followed, so a link loop
/// cannot trap the walk), and the files in them.
fn walk(rules: &Rules, dir: &Path, folders: &mut BTreeSet<PathBuf>, files: &mut Vec<PathBuf>) {
    if !rules.wants_dir(dir) || !folders.insert(dir.to_path_buf()) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(rules, &entry.path(), folders, files);
        } else {
            files.push(entry.path());
        }
    }
}
