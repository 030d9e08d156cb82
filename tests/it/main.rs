//! The integration crate: every test here runs the real `tend` binary against real processes,
//! sockets and files. One test binary, one module per area; `support` holds the harness
//! (temporary directories, a tend process that cleans up after itself, a raw HTTP client, an SSE
//! reader, port-holding fixtures).

// clippy.toml forbids `Command::output/status/wait` because inside tend the reaper alone may
// wait for children. This crate is not tend: it spawns tend, the CLI and fixtures itself, and
// must reap them itself.
#![allow(clippy::disallowed_methods)]

mod adopt;
mod alerts;
mod cli;
mod connections;
mod export;
mod fleet;
mod groups;
mod health;
mod history;
mod http;
mod idle;
mod lifecycle;
mod logs;
mod metrics;
mod openapi;
mod orphans;
mod procfile;
mod program;
mod reload;
mod restart;
mod security;
mod spawn;
mod sse;
mod state;
mod stop;
mod support;
mod wait;
mod watch;
