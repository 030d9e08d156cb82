//! Where tend meets the kernel: spawning and signalling process groups, reaping children,
//! watching adopted PIDs, reading `/proc` and the sock_diag listener dump. Nearly all of tend's
//! `libc` calls and `unsafe` blocks live here, each with its reason beside it; the modules above
//! this one see plain functions and data.

pub mod inotify;
pub mod localtime;
pub mod memory;
pub mod pidwatch;
pub mod portfilter;
pub mod process;
pub mod procfs;
pub mod reaper;
pub mod shell;
pub mod sockdiag;
pub mod spawn;
