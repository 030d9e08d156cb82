//! The machine's time zone, through libc's `localtime_r` and `mktime` (tend has no time-zone
//! crate): `TZ` and `/etc/localtime` as every other program reads them. For
//! [`crate::schedule`], and for the local times people read (tend's log, `tend events`).

use crate::schedule::{Civil, LocalTime};

/// The zone tend runs in.
pub struct System;

impl LocalTime for System {
    fn civil(&self, t: i64) -> Civil {
        let tm = broken_down(t);
        Civil {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
        }
    }

    fn instants(&self, civil: Civil) -> Vec<i64> {
        // mktime reads an ambiguous or skipped time by the `tm_isdst` it is given; asking both
        // ways and keeping what reads back as the same wall clock finds every instant.
        let mut found = Vec::new();
        for isdst in [0, 1] {
            // SAFETY: a zeroed tm is a valid value; mktime only reads and normalizes it.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = civil.year - 1900;
            tm.tm_mon = civil.month as i32 - 1;
            tm.tm_mday = civil.day as i32;
            tm.tm_hour = civil.hour as i32;
            tm.tm_min = civil.minute as i32;
            tm.tm_isdst = isdst;
            // SAFETY: `tm` is ours and fully initialized.
            let t = unsafe { libc::mktime(&mut tm) };
            if t != -1 && self.civil(t) == civil && !found.contains(&t) {
                found.push(t);
            }
        }
        found.sort_unstable();
        found
    }
}

fn broken_down(t: i64) -> libc::tm {
    try_broken_down(t).unwrap_or_else(|| {
        // SAFETY: a zeroed tm is a valid value.
        unsafe { std::mem::zeroed() }
    })
}

/// `None` when the C library cannot represent `t` in local time.
fn try_broken_down(t: i64) -> Option<libc::tm> {
    // The libc crate marks musl's time_t deprecated because its width changed on 32-bit
    // targets (musl 1.2); on the 64-bit targets tend builds for it is i64 with any C library.
    #[allow(deprecated)]
    let t = t as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which we own; a zeroed tm is a valid value.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&t, &mut tm).is_null()).then_some(tm)
    }
}

/// "2026-12-07 04:00:59" in local time (seconds since the epoch in, to the second), or
/// `None` when the C library cannot place `t`.
pub fn format_seconds(t: i64) -> Option<String> {
    let tm = try_broken_down(t)?;
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}

/// "2026-12-07 04:00" in local time, for logs and messages.
pub fn format(t: i64) -> String {
    let c = System.civil(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minute_of_a_day_reads_back() {
        // Whatever zone the machine has: a wall-clock minute found for an instant maps back
        // to that instant (to the minute).
        let start = 1_790_000_000 - 1_790_000_000 % 60;
        for step in 0..(24 * 60) {
            let t = start + step * 60;
            let civil = System.civil(t);
            assert!(System.instants(civil).contains(&t), "{civil:?}");
        }
    }
}
