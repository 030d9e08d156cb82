//! Starting a child without copying tend: `clone(CLONE_VM | CLONE_VFORK)` on a small stack of
//! its own, the way glibc's and musl's `posix_spawn` work inside. std's `Command` has to fork
//! (copy tend's page tables, then tear them down at exec) as soon as it has a `pre_exec`, and a
//! fork costs more the bigger tend is: at 10,000 servers half of a start-all went to it
//! (docs/NOTES.md "Processes"). posix_spawn itself cannot give back the descriptor limit tend
//! raised or mark inherited descriptors close-on-exec, so this module does what it does by hand.
//!
//! Everything the child needs (argv, envp, the paths to try, its descriptors) is built in the
//! parent before the clone. The child shares tend's memory until it execs, so between clone and
//! exec it only makes system calls on that data: no allocation, no lock, no panic path, and the
//! libc wrappers it uses are the thin ones (prlimit64, rt_sigaction and rt_sigprocmask go to the
//! kernel directly: musl's setrlimit may fall back to signalling every thread, and its sigaction
//! takes a lock for SIGABRT). The calling thread sleeps until the child has exec'd or exited.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Held by every spawn and by the reaper around `waitpid(-1)`, so a child whose exec failed is
/// reaped by its spawn (which must say why it failed) and never by the reaper, and so a caller
/// can route a child's exit elsewhere before the reaper can see it (`reaper::claim`). It also
/// owns the child stack, which only one spawn at a time may use.
pub static SPAWN_LOCK: Mutex<ChildStack> = Mutex::new(ChildStack::UNMAPPED);

/// The child runs a few system calls in one shallow frame; 64 KiB is glibc's own floor for
/// posix_spawn's stack. A guard page below it turns an overflow into a crash of the child.
const STACK_SIZE: usize = 64 * 1024;

/// The stack the child runs on between clone and exec, mapped at the first spawn and reused:
/// the calling thread sleeps until the child no longer needs it (CLONE_VFORK).
pub struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is only touched by the thread holding SPAWN_LOCK (and the child it
// clones, while that thread sleeps), so moving the owner between threads is sound.
unsafe impl Send for ChildStack {}

impl ChildStack {
    const UNMAPPED: ChildStack = ChildStack {
        base: std::ptr::null_mut(),
        len: 0,
    };

    /// The highest address of the stack (it grows down), mapping it on first use.
    fn top(&mut self) -> io::Result<*mut libc::c_void> {
        if self.base.is_null() {
            // SAFETY: sysconf takes a constant and touches no memory.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            let len = STACK_SIZE + page;
            // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the lowest page of the mapping we just made becomes the guard page.
            if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
                let error = io::Error::last_os_error();
                // SAFETY: unmaps exactly the mapping made above, which nothing uses.
                unsafe { libc::munmap(base, len) };
                return Err(error);
            }
            self.base = base;
            self.len = len;
        }
        // SAFETY: base + len is one past the end of our mapping, the top of a downward stack.
        Ok(unsafe { self.base.cast::<u8>().add(self.len).cast() })
    }
}

/// Where a spawn failed; the error text names it (see `process::describe_spawn_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Building argv, envp or the descriptors in tend, or the clone itself.
    Prepare,
    Setsid,
    Stdio,
    Chdir,
    /// The program could not be run: not found, not executable, …
    Exec,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::Prepare,
        Step::Setsid,
        Step::Stdio,
        Step::Chdir,
        Step::Exec,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Step::Prepare => "preparing the process",
            Step::Setsid => "starting a session",
            Step::Stdio => "connecting stdin, stdout and stderr",
            Step::Chdir => "entering the working directory",
            Step::Exec => "running the program",
        }
    }
}

#[derive(Debug)]
pub struct SpawnError {
    pub step: Step,
    pub error: io::Error,
}

impl SpawnError {
    fn prepare(error: io::Error) -> SpawnError {
        SpawnError {
            step: Step::Prepare,
            error,
        }
    }
}

/// A started child. It is not waited for here: the reaper collects its exit.
#[derive(Debug)]
pub struct Child {
    pub pid: u32,
    /// The write end of the child's stdin, when it was asked for with [`Stdin::Piped`].
    pub stdin: Option<File>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    Null,
    Piped,
}

/// A command to start in a session of its own (see `process::session_command`): the program is
/// looked up like `execvp` does, in the PATH of the child's environment.
#[derive(Debug)]
pub struct SessionCommand {
    program: OsString,
    argv: Vec<OsString>,
    /// Changes to tend's environment: `None` removes the variable.
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
    stdin: Stdin,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// The soft RLIMIT_NOFILE the child gets (0: tend's own).
    nofile: u64,
}

impl SessionCommand {
    /// `argv[0]` is `program` as given; stdin, stdout and stderr are /dev/null until set.
    pub fn new(program: impl AsRef<OsStr>, nofile: u64) -> SessionCommand {
        let program = program.as_ref().to_os_string();
        SessionCommand {
            argv: vec![program.clone()],
            program,
            env: BTreeMap::new(),
            cwd: None,
            stdin: Stdin::Null,
            stdout: None,
            stderr: None,
            nofile,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.argv.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        );
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self.env(key, value);
        }
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_os_string(), None);
        self
    }

    pub fn stdin(&mut self, stdin: Stdin) -> &mut Self {
        self.stdin = stdin;
        self
    }

    pub fn stdout(&mut self, fd: impl Into<OwnedFd>) -> &mut Self {
        self.stdout = Some(fd.into());
        self
    }

    pub fn stderr(&mut self, fd: impl Into<OwnedFd>) -> &mut Self {
        self.stderr = Some(fd.into());
        self
    }

    /// Starts the child and, still holding SPAWN_LOCK, calls `while_locked` with its PID (the
    /// reaper cannot reap it before that returns). tend's copies of the child's descriptors
    /// are closed when this returns. An exec that fails is reported with its errno, and that
    /// child has been reaped here.
    pub fn spawn(self, while_locked: impl FnOnce(u32)) -> Result<Child, SpawnError> {
        let mut prepared = Prepared::new(self).map_err(SpawnError::prepare)?;
        let mut stack = SPAWN_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let top = stack.top().map_err(SpawnError::prepare)?;
        let plan = prepared.plan();
        let pid = clone_child(&plan, top).map_err(SpawnError::prepare)?;
        let failure = plan.failure.load(Ordering::Acquire);
        if failure != 0 {
            reap(pid);
            drop(stack);
            let step = Step::ALL
                .get((failure >> 32) as usize)
                .copied()
                .unwrap_or(Step::Exec);
            let errno = (failure & 0xffff_ffff) as i32;
            return Err(SpawnError {
                step,
                error: io::Error::from_raw_os_error(errno),
            });
        }
        while_locked(pid as u32);
        drop(stack);
        Ok(Child {
            pid: pid as u32,
            stdin: prepared.stdin_writer.take(),
        })
    }
}

/// Everything the child reads, owned by the parent and alive until the child has exec'd.
struct Prepared {
    /// The owners of the C strings the pointer arrays below point into.
    _strings: Vec<CString>,
    candidates: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    script_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// The descriptors to become 0, 1 and 2; all above 2 and close-on-exec in tend.
    stdio: [OwnedFd; 3],
    stdin_writer: Option<File>,
    /// The child's RLIMIT_NOFILE (`cur` 0: left as tend's).
    nofile: Rlimit64,
    /// How far the close-on-exec fallback loop goes: the child's soft limit.
    fallback_limit: libc::c_int,
}

/// The shell that runs a script without a `#!` line, as `execvp` does.
const SHELL: &CStr = c"/bin/sh";

/// Where `execvp` looks when the environment has no PATH (glibc's `_CS_PATH`).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

impl Prepared {
    fn new(command: SessionCommand) -> io::Result<Prepared> {
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (key, value) in &command.env {
            match value {
                Some(value) => env.insert(key.clone(), value.clone()),
                None => env.remove(key),
            };
        }
        let mut strings = Vec::new();
        let mut keep = |bytes: Vec<u8>| -> io::Result<*const libc::c_char> {
            let text = CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nul byte found in provided data",
                )
            })?;
            let pointer = text.as_ptr();
            strings.push(text);
            Ok(pointer)
        };
        let program = command.program.as_bytes();
        if program.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let mut candidates = Vec::new();
        if program.contains(&b'/') {
            candidates.push(keep(program.to_vec())?);
        } else {
            let path = env
                .get(OsStr::new("PATH"))
                .map_or(DEFAULT_PATH, |p| p.as_bytes());
            for dir in path.split(|&b| b == b':') {
                // An empty entry is the current directory, as in execvp.
                let mut full = dir.to_vec();
                if !full.is_empty() {
                    full.push(b'/');
                }
                full.extend_from_slice(program);
                candidates.push(keep(full)?);
            }
        }
        candidates.push(std::ptr::null());
        let mut argv = Vec::with_capacity(command.argv.len() + 1);
        for arg in &command.argv {
            argv.push(keep(arg.as_bytes().to_vec())?);
        }
        argv.push(std::ptr::null());
        // `/bin/sh <the candidate> argv[1..]`; the child fills in the candidate.
        let mut script_argv = vec![SHELL.as_ptr(), std::ptr::null()];
        script_argv.extend_from_slice(&argv[1..]);
        let mut envp = Vec::with_capacity(env.len() + 1);
        for (key, value) in env {
            let mut pair = key.into_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            envp.push(keep(pair)?);
        }
        envp.push(std::ptr::null());
        let cwd = match &command.cwd {
            Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nul byte found in provided data",
                )
            })?),
            None => None,
        };

        let null = || File::options().read(true).write(true).open("/dev/null");
        let (stdin, stdin_writer) = match command.stdin {
            Stdin::Null => (OwnedFd::from(null()?), None),
            Stdin::Piped => {
                let (read, write) = pipe()?;
                (read, Some(File::from(write)))
            }
        };
        let output = |fd: Option<OwnedFd>| match fd {
            Some(fd) => Ok(fd),
            None => null().map(OwnedFd::from),
        };
        let stdio = [
            above_stdio(stdin)?,
            above_stdio(output(command.stdout)?)?,
            above_stdio(output(command.stderr)?)?,
        ];
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into our local struct.
        let (nofile, soft) = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            let nofile = Rlimit64 {
                cur: command.nofile,
                max: limit.rlim_max,
            };
            let soft = if command.nofile == 0 {
                limit.rlim_cur
            } else {
                command.nofile
            };
            (nofile, soft)
        } else {
            (Rlimit64 { cur: 0, max: 0 }, 1024)
        };
        Ok(Prepared {
            _strings: strings,
            candidates,
            argv,
            script_argv,
            envp,
            cwd,
            stdio,
            stdin_writer,
            nofile,
            fallback_limit: soft.min(65_536) as libc::c_int,
        })
    }

    fn plan(&mut self) -> Plan {
        Plan {
            candidates: self.candidates.as_ptr(),
            argv: self.argv.as_ptr(),
            script_argv: self.script_argv.as_mut_ptr(),
            envp: self.envp.as_ptr(),
            cwd: self.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            stdio: [
                self.stdio[0].as_raw_fd(),
                self.stdio[1].as_raw_fd(),
                self.stdio[2].as_raw_fd(),
            ],
            nofile: self.nofile,
            fallback_limit: self.fallback_limit,
            failure: AtomicU64::new(0),
        }
    }
}

/// A descriptor the child can dup2 onto 0, 1 or 2 without overwriting another source: if tend
/// was started with a standard descriptor closed, a file it opens may itself be 0, 1 or 2.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor (≥ 3) we own from here on.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` was just created and is owned only here.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// A pipe whose ends are both close-on-exec in tend.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors; each is owned once, here.
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// The kernel's `struct rlimit64`, for prlimit64(2).
#[derive(Clone, Copy)]
#[repr(C)]
struct Rlimit64 {
    cur: u64,
    max: u64,
}

/// What the child reads: raw pointers into [`Prepared`] and plain numbers. `failure` is the
/// one field it writes (step << 32 | errno), in memory it shares with the parent.
struct Plan {
    candidates: *const *const libc::c_char,
    argv: *const *const libc::c_char,
    script_argv: *mut *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    nofile: Rlimit64,
    fallback_limit: libc::c_int,
    failure: AtomicU64,
}

/// Clones the child with every signal blocked, so no handler of tend's runs on the child's
/// stack (the child unblocks after resetting them). Returns once the child has exec'd or exited.
fn clone_child(plan: &Plan, stack_top: *mut libc::c_void) -> io::Result<libc::pid_t> {
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both 8-byte locals (the kernel's
    // sigset size). The raw call blocks libc's internal signals too, as posix_spawn does.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    // SAFETY: `child_main` runs on `stack_top`, which nothing else uses while SPAWN_LOCK is held,
    // and reads `plan`, which outlives the call: with CLONE_VFORK this thread sleeps until the
    // child has exec'd or exited, after which the child no longer touches our memory.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack_top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (plan as *const Plan).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: as above; puts back the mask saved in `old`.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if pid < 0 {
        return Err(clone_error);
    }
    Ok(pid)
}

/// Waits for a child whose exec failed; it has exited or is about to (it called `_exit`).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, into a local; SPAWN_LOCK keeps the reaper off it.
        let done = unsafe { libc::waitpid(pid, &mut status, 0) };
        if done >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// The child, from clone to exec, on the child stack with every signal blocked.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Plan` the parent passed to clone, alive while the parent sleeps.
    let plan = unsafe { &*arg.cast::<Plan>() };
    // SAFETY: we are the freshly cloned child, which is what `run_child` requires.
    unsafe { run_child(plan) }
}

/// # Safety
/// Only in a child cloned with CLONE_VM | CLONE_VFORK, before exec: it changes the session,
/// descriptors, signal state and working directory of the calling process.
unsafe fn run_child(plan: &Plan) -> libc::c_int {
    // Only system calls from here on: the parent's heap, its locks and its errno are shared.
    // SAFETY: each call takes plain numbers or pointers into `plan`, which the parent built and
    // keeps alive; none allocates, locks or can unwind.
    unsafe {
        if libc::setsid() < 0 {
            fail(plan, Step::Setsid);
        }
        if plan.nofile.cur != 0 {
            // As with std's pre_exec before: a limit that cannot be set is left as it is.
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                libc::RLIMIT_NOFILE,
                &plan.nofile as *const Rlimit64,
                std::ptr::null_mut::<Rlimit64>(),
            );
        }
        mark_inherited_close_on_exec(plan.fallback_limit);
        // Every source is above 2, so no dup2 overwrites another's source, and dup2 clears
        // close-on-exec on the copy.
        for (source, target) in plan.stdio.iter().zip([0, 1, 2]) {
            if libc::dup2(*source, target) < 0 {
                fail(plan, Step::Stdio);
            }
        }
        if !plan.cwd.is_null() && libc::chdir(plan.cwd) < 0 {
            fail(plan, Step::Chdir);
        }
        // Dispositions: ignored signals (Rust ignores SIGPIPE) would survive exec, and a handler
        // of tend's must not run here once signals are unblocked. A zeroed kernel sigaction is
        // SIG_DFL with no flags and an empty mask; 32 bytes cover it with or without sa_restorer.
        let default = [0u64; 4];
        for signal in 1..=64 {
            // SIGKILL and SIGSTOP refuse (EINVAL): they are always default anyway.
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        exec(plan)
    }
}

/// `execvp`'s search over the prepared candidates: the first that runs wins; EACCES anywhere
/// is what is reported if none does; a file that is no executable format (no `#!`) is run by
/// /bin/sh, as glibc does.
///
/// # Safety
/// As [`run_child`]; never returns.
unsafe fn exec(plan: &Plan) -> ! {
    let mut saw_eacces = false;
    let mut candidate = plan.candidates;
    // SAFETY: `candidates` is a NULL-terminated array of C strings, and so are argv, envp and
    // script_argv, whose second slot is ours to fill; execve only returns on failure.
    unsafe {
        while !(*candidate).is_null() {
            libc::execve(*candidate, plan.argv, plan.envp);
            let mut errno = last_errno();
            if errno == libc::ENOEXEC {
                *plan.script_argv.add(1) = *candidate;
                libc::execve(SHELL.as_ptr(), plan.script_argv.cast_const(), plan.envp);
                errno = last_errno();
            }
            match errno {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail_with(plan, Step::Exec, errno),
            }
            candidate = candidate.add(1);
        }
        let errno = if saw_eacces {
            libc::EACCES
        } else {
            libc::ENOENT
        };
        fail_with(plan, Step::Exec, errno)
    }
}

/// Marks every descriptor above stderr close-on-exec. tend opens its own close-on-exec, but it
/// may have inherited others from whoever started it (a shell's stray fd, a CI runner's pipe),
/// and a child must get only its stdin and output (docs/DESIGN.md §8).
///
/// # Safety
/// As [`run_child`].
unsafe fn mark_inherited_close_on_exec(fallback_limit: libc::c_int) {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11) only sets flags, and only in
    // the child's own copy of the descriptor table (no CLONE_FILES).
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return;
    }
    // Older kernels: one fcntl per possible descriptor, bounded by the child's soft limit
    // (descriptors tend inherited lie below the limit it was started with).
    for fd in 3..fallback_limit {
        // SAFETY: F_SETFD on a descriptor that may not exist just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

fn last_errno() -> libc::c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot (in the child, the
    // spawning thread's, which sleeps until we exec or exit and does not read it).
    unsafe { *libc::__errno_location() }
}

/// # Safety
/// As [`run_child`]; never returns.
unsafe fn fail(plan: &Plan, step: Step) -> ! {
    // SAFETY: as the caller's.
    unsafe { fail_with(plan, step, last_errno()) }
}

/// Tells the parent why through the shared `failure` word and exits 127, as a shell does for
/// a command it cannot run. The parent reaps this child itself.
///
/// # Safety
/// As [`run_child`]; never returns.
unsafe fn fail_with(plan: &Plan, step: Step, errno: libc::c_int) -> ! {
    let errno = if errno == 0 { libc::EIO } else { errno };
    plan.failure.store(
        ((step as u64) << 32) | errno as u32 as u64,
        Ordering::Release,
    );
    // SAFETY: _exit ends the child at once, without running anything of the parent's.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    // The child a `SessionCommand` starts, read back from /proc. This test binary has no reaper,
    // so each test reaps its own children with waitpid(2) (std's waits are off limits: clippy.toml).

    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::CommandSpec;
    use crate::os::process::describe_spawn_error;
    use crate::test_support::{TempDir, reap_child, wait_until};

    /// Writes `text` to `dir/name` with `mode`.
    fn script(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn status_field(pid: u32, name: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
            .trim()
            .to_string()
    }

    /// Runs `command` with its stdout and stderr on a pipe; returns what it wrote and its status.
    fn run_to_end(mut command: SessionCommand) -> (String, i32) {
        let (read, write) = pipe().unwrap();
        let write_err = write.try_clone().unwrap();
        command.stdout(write).stderr(write_err);
        // The spawn closes this process's copies of the write end: the read ends with the child.
        let child = command.spawn(|_| ()).expect("spawned");
        let mut out = String::new();
        File::from(read).read_to_string(&mut out).unwrap();
        (out, reap_child(child.pid, false))
    }

    fn sh(script: &str) -> SessionCommand {
        let mut command = SessionCommand::new("/bin/sh", 0);
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn the_child_leads_its_own_session_with_every_signal_default_and_none_blocked() {
        // What tend's child would otherwise inherit: Rust's runtime ignores SIGPIPE, and this
        // thread blocks SIGUSR1 (tend blocks every signal around the clone itself).
        assert_ne!(
            u64::from_str_radix(&status_field(std::process::id(), "SigIgn"), 16).unwrap()
                & (1 << (libc::SIGPIPE - 1)),
            0,
            "the fixture: this process ignores SIGPIPE"
        );
        // SAFETY: an empty set plus SIGUSR1, applied to this test thread only and undone below.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let mut sleep = SessionCommand::new("sleep", 0);
        sleep.arg("30");
        let child = sleep.spawn(|_| ()).expect("sleep starts");
        // SAFETY: as above, undoing the block.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        // The spawn returns once the exec is past its point of no return (the kernel lets the
        // parent go when the child drops tend's memory); the new name comes a moment later.
        wait_until(
            "the child to become sleep",
            || status_field(child.pid, "Name"),
            |name| name == "sleep",
        );
        for field in ["SigBlk", "SigIgn", "SigCgt"] {
            assert_eq!(
                status_field(child.pid, field),
                "0000000000000000",
                "{field} of the child"
            );
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.pid)).unwrap();
        let after_comm: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Fields 5 and 6 of stat: process group and session, both the child's own PID.
        assert_eq!(after_comm[2], child.pid.to_string(), "pgrp: {stat}");
        assert_eq!(after_comm[3], child.pid.to_string(), "session: {stat}");
        reap_child(child.pid, true);
    }

    #[test]
    fn the_child_gets_the_descriptor_limit_it_was_given() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into our local struct.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(got, 0);
        let wanted = limit.rlim_max.min(limit.rlim_cur) - 7;
        let mut command = SessionCommand::new("sleep", wanted);
        command.arg("30");
        let child = command.spawn(|_| ()).expect("sleep starts");
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.pid)).unwrap();
        let open_files = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let words: Vec<&str> = open_files.split_whitespace().collect();
        assert_eq!(words[3], wanted.to_string(), "{open_files}");
        assert_eq!(
            words[4],
            limit.rlim_max.to_string(),
            "hard limit: {open_files}"
        );
        reap_child(child.pid, true);
    }

    #[test]
    fn cwd_environment_stdin_and_descriptors_are_what_was_asked() {
        let dir = TempDir::new("cwd-env");
        // Any variable of ours stands in for TEND_TOKEN: removing it must keep it from the child.
        let (removed, _) = std::env::vars()
            .find(|(k, _)| k != "PATH")
            .expect("the test process has an environment variable besides PATH");
        let mut command = sh(
            "pwd; echo \"A=$A\"; env | cut -d= -f1; echo stdin:; cat; echo; ls /proc/self/fd; \
             readlink /proc/self/fd/0",
        );
        command
            .current_dir(dir.path())
            .env("A", "a value")
            .env_remove(&removed);
        let (out, status) = run_to_end(command);
        assert_eq!(status, 0, "{out}");
        let mut lines = out.lines();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(lines.next().map(Path::new), Some(cwd.as_path()), "{out}");
        assert_eq!(lines.next(), Some("A=a value"), "{out}");
        let names: Vec<&str> = lines.by_ref().take_while(|l| *l != "stdin:").collect();
        assert!(names.contains(&"PATH"), "{out}");
        assert!(
            !names.contains(&removed.as_str()),
            "{removed} reached the child:\n{out}"
        );
        assert_eq!(lines.next(), Some(""), "stdin was not empty:\n{out}");
        // 0, 1, 2 and ls's own listing; nothing else of this test process's.
        let fds: Vec<&str> = lines.by_ref().take(4).collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
        assert_eq!(lines.next(), Some("/dev/null"), "stdin:\n{out}");
    }

    #[test]
    fn a_program_is_looked_up_in_the_path_the_child_gets_as_execvp_does() {
        let dir = TempDir::new("path");
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        // Not executable in the first folder: skipped for the executable one in the second.
        std::fs::write(first.join("tend-probe"), "#!/bin/sh\necho first\n").unwrap();
        let probe = second.join("tend-probe");
        std::fs::write(&probe, "#!/bin/sh\necho \"second $1\"\n").unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        // No `#!` line: run by /bin/sh, with its arguments.
        script(&dir, "second/tend-bare", "echo \"bare $1\"\n", 0o755);
        let path = format!("{}:{}", first.display(), second.display());
        for (program, want) in [("tend-probe", "second x\n"), ("tend-bare", "bare x\n")] {
            let mut command = SessionCommand::new(program, 0);
            command.arg("x").env("PATH", &path);
            assert_eq!(run_to_end(command), (want.to_string(), 0), "{program}");
        }
    }

    /// Children of this process that are zombies and never exec'd (they still carry our name).
    fn unexeced_zombies() -> Vec<u32> {
        let me = std::process::id();
        let name = status_field(me, "Name");
        let mut found = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{me}/task"))
            .unwrap()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if status.contains(&format!("Name:\t{name}\n")) && status.contains("State:\tZ") {
                    found.push(pid);
                }
            }
        }
        found
    }

    #[test]
    fn an_exec_that_fails_says_why_and_leaves_no_zombie() {
        let dir = TempDir::new("exec-fails");
        let not_executable = script(&dir, "plain", "#!/bin/sh\n", 0o644);
        let not_executable = not_executable.to_string_lossy().to_string();
        for (program, why) in [
            ("/nonexistent/tend-program", "not found"),
            ("tend-no-such-program-on-any-path", "not found"),
            (not_executable.as_str(), "permission denied"),
        ] {
            let want = format!("cannot run '{program}': {why}");
            let spec = CommandSpec::Exec(vec![program.to_string()]);
            let error = crate::os::process::session_command(&spec)
                .spawn(|pid| panic!("PID {pid} was started"))
                .expect_err("the exec fails");
            assert_eq!(error.step, Step::Exec);
            assert_eq!(describe_spawn_error(&spec, &error), want);
        }
        let mut missing_cwd = sh("true");
        missing_cwd.current_dir(dir.path().join("gone"));
        let error = missing_cwd.spawn(|_| ()).expect_err("chdir fails");
        assert_eq!(error.step, Step::Chdir);
        let spec = CommandSpec::Shell("true".into());
        assert!(
            describe_spawn_error(&spec, &error)
                .starts_with("cannot run '/bin/sh': entering the working directory: "),
            "{error:?}"
        );
        // Holding the lock, no other test's spawn is between its failed child's exit and its reap.
        let _no_spawn = SPAWN_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        assert_eq!(unexeced_zombies(), Vec::<u32>::new());
    }

    #[test]
    fn spawns_from_many_threads_at_once_each_start_their_own_child() {
        let threads: Vec<_> = (0..6)
            .map(|thread| {
                std::thread::spawn(move || {
                    for round in 0..40 {
                        let code = (thread * 40 + round) % 120 + 1;
                        if round % 5 == 0 {
                            let error = SessionCommand::new("/nonexistent/tend-program", 0)
                                .spawn(|_| ())
                                .expect_err("no such program");
                            assert_eq!(error.error.kind(), io::ErrorKind::NotFound);
                            continue;
                        }
                        let mut claimed = None;
                        let child = sh(&format!("exit {code}"))
                            .spawn(|pid| claimed = Some(pid))
                            .expect("sh starts");
                        assert_eq!(claimed, Some(child.pid));
                        let status = reap_child(child.pid, false);
                        assert!(libc::WIFEXITED(status), "{status}");
                        assert_eq!(libc::WEXITSTATUS(status), code);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a spawning thread panicked");
        }
    }
}
