//! Logging setup (docs/DESIGN.md §9): env_logger with tend's own format,
//! `2025-11-04 12:00:00 INFO  ProcessManager Process 'web' started (PID: 12345)`, where the
//! component is the log target. `RUST_LOG` sets the level; the default is info. Timestamps come
//! from libc's localtime_r because env_logger without its default features has none.

use std::io::Write;

pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|out, record| {
            writeln!(
                out,
                "{} {:<5} {} {}",
                local_timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .init();
}

fn local_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::os::localtime::format_seconds(now).unwrap_or_default()
}
