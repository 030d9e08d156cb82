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
    // SAFETY: time(NULL) has no preconditions; localtime_r writes only into `tm`, which we own.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
