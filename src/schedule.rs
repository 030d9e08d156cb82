//! Planned restarts (README "Restart on a schedule"): `restart_every` durations ("24h", "1h30m")
//! and `restart_at` cron expressions (five fields, local time), and when each is next due.
//!
//! Pure: the calendar arithmetic works on civil (wall-clock) times, and the one question that
//! needs the time zone — which instants show a given wall-clock minute — goes through
//! [`LocalTime`], so the daylight-saving rules are tested on a made-up zone. tend's own zone is
//! [`crate::os::localtime::System`].
//!
//! Daylight saving, as README says: a minute the clocks skip (02:30 when they jump from 02:00
//! to 03:00) is due at the jump itself, the first wall-clock minute that exists after it; a
//! minute the clocks show twice (01:30 when they fall back) is due once, the first time.

use std::fmt;
use std::time::Duration;

/// A wall-clock minute: what a person reads on the clock, no zone attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i32,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
}

/// The time zone, as far as a schedule needs it.
pub trait LocalTime {
    /// The wall-clock minute at `t` (seconds since the Unix epoch).
    fn civil(&self, t: i64) -> Civil;
    /// The instants (whole seconds since the epoch) whose wall clock shows `civil` at second 0:
    /// none when the clocks skip it, two when they show it twice; ascending.
    fn instants(&self, civil: Civil) -> Vec<i64>;
}

/// A parsed five-field cron expression: minute, hour, day of month, month, day of week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// As written, for messages and the dashboard.
    pub text: String,
    minutes: u64,
    hours: u32,
    /// Bits 1–31.
    days: u32,
    /// Bits 1–12.
    months: u16,
    /// Bits 0–6, Sunday 0.
    weekdays: u8,
    /// Whether the day-of-month and day-of-week fields were restricted (not `*`): when both
    /// are, a day matching either is a match (cron's long-standing rule).
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// What is wrong with a cron expression, and where (a character offset into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    // 7 is Sunday too, as in Vixie cron; folded onto 0 below.
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

/// The shorthands most crons accept.
const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// How far ahead a match is looked for: every valid day/month combination recurs within eight
/// years (29 February at worst, across a century year that is not leap).
const SEARCH_YEARS: i32 = 8;

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let trimmed = text.trim();
        if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            let Some((_, expansion)) = MACROS.iter().find(|(name, _)| *name == lower) else {
                let known: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
                return Err(CronError {
                    offset: text.len() - text.trim_start().len(),
                    message: format!(
                        "unknown shorthand '{trimmed}' (known: {})",
                        known.join(", ")
                    ),
                });
            };
            let mut cron = Cron::parse(expansion).expect("the shorthands are valid");
            cron.text = trimmed.to_string();
            return Ok(cron);
        }
        let fields = split_fields(text);
        if fields.len() != 5 {
            return Err(CronError {
                offset: fields.get(5).map_or(text.len(), |f| f.0),
                message: format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    fields.len()
                ),
            });
        }
        let mut sets = [0u64; 5];
        for (i, (offset, field)) in fields.iter().enumerate() {
            sets[i] = parse_field(field, &FIELDS[i]).map_err(|(at, message)| CronError {
                offset: offset + at,
                message: format!("{} field: {message}", FIELDS[i].name),
            })?;
        }
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] & !(1 << 7)) | 1;
        }
        let cron = Cron {
            text: fields.iter().map(|(_, f)| *f).collect::<Vec<_>>().join(" "),
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: sets[4] as u8,
            days_restricted: !fields[2].1.starts_with('*'),
            weekdays_restricted: !fields[4].1.starts_with('*'),
        };
        let from = Civil {
            year: 2000,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
        };
        if cron.next_match(from).is_none() {
            return Err(CronError {
                offset: fields[2].0,
                message: "never happens: no month has that day".to_string(),
            });
        }
        Ok(cron)
    }

    fn day_matches(&self, civil: Civil) -> bool {
        let by_day = self.days & (1 << civil.day) != 0;
        let by_weekday = self.weekdays & (1 << weekday(civil)) != 0;
        if self.days_restricted && self.weekdays_restricted {
            by_day || by_weekday
        } else {
            by_day && by_weekday
        }
    }

    /// The first wall-clock minute after `after` that the expression names.
    pub fn next_match(&self, after: Civil) -> Option<Civil> {
        let mut c = add_minutes(after, 1);
        let limit = after.year + SEARCH_YEARS;
        while c.year <= limit {
            if self.months & (1 << c.month) == 0 {
                c = first_of_next_month(c);
            } else if !self.day_matches(c) {
                c = next_day(c);
            } else if self.hours & (1 << c.hour) == 0 {
                c = add_minutes(Civil { minute: 0, ..c }, 60);
            } else if self.minutes & (1 << c.minute) == 0 {
                c = add_minutes(c, 1);
            } else {
                return Some(c);
            }
        }
        None
    }

    /// When the expression is next due after `now` (seconds since the epoch), in `zone`.
    pub fn next_after(&self, now: i64, zone: &impl LocalTime) -> Option<i64> {
        let mut civil = zone.civil(now);
        // A few rounds at most: a match whose instants are all past (the clocks fell back
        // behind it) is stepped over.
        for _ in 0..4 {
            civil = self.next_match(civil)?;
            let instants = zone.instants(civil);
            if let Some(&at) = instants.iter().find(|&&t| t > now) {
                return Some(at);
            }
            if instants.is_empty() {
                // Skipped by the clocks: due at the jump, the first minute that exists after.
                let mut later = civil;
                for _ in 0..24 * 60 {
                    later = add_minutes(later, 1);
                    if let Some(&at) = zone.instants(later).iter().find(|&&t| t > now) {
                        return Some(at);
                    }
                }
                return None;
            }
        }
        None
    }
}

/// The whitespace-separated fields of `text`, each with its character offset.
fn split_fields(text: &str) -> Vec<(usize, &str)> {
    let mut fields = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                fields.push((text[..s].chars().count(), &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    fields
}

/// One field as a bit set; an error carries the offset of the bad part within the field.
fn parse_field(field: &str, spec: &FieldSpec) -> Result<u64, (usize, String)> {
    let mut set = 0u64;
    let mut offset = 0;
    for part in field.split(',') {
        set |= parse_part(part, spec).map_err(|(at, m)| (offset + at, m))?;
        offset += part.chars().count() + 1;
    }
    Ok(set)
}

fn parse_part(part: &str, spec: &FieldSpec) -> Result<u64, (usize, String)> {
    if part.is_empty() {
        return Err((0, "an empty list entry".to_string()));
    }
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => {
            let at = range.chars().count() + 1;
            let step: u32 = step.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                (
                    at,
                    format!("the step after '/' must be a whole number above 0, found '{step}'"),
                )
            })?;
            (range, step)
        }
        None => (part, 1),
    };
    let (low, high) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let low = value(a, spec).map_err(|m| (0, m))?;
        let high = value(b, spec).map_err(|m| (a.chars().count() + 1, m))?;
        if high < low {
            return Err((0, format!("the range {range} runs backwards")));
        }
        (low, high)
    } else {
        let single = value(range, spec).map_err(|m| (0, m))?;
        // "5/15" means from 5 to the end, every 15, as in Vixie cron.
        (single, if part.contains('/') { spec.max } else { single })
    };
    let mut set = 0u64;
    let mut v = low;
    while v <= high {
        set |= 1 << v;
        v += step;
    }
    Ok(set)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|&n| n == lower) {
        return Ok(i as u32 + if spec.min == 1 { 1 } else { 0 });
    }
    let n: u32 = text.parse().map_err(|_| {
        let names = if spec.names.is_empty() {
            String::new()
        } else {
            format!(" or a name such as '{}'", spec.names[0])
        };
        format!("expected a number{names}, found '{text}'")
    })?;
    if n < spec.min || n > spec.max {
        return Err(format!("{n} is out of range ({}–{})", spec.min, spec.max));
    }
    Ok(n)
}

/// Parses a `restart_every` duration: whole numbers with units `d`, `h`, `m`, `s`, largest
/// first, as in "24h", "30m", "1h30m", "90s".
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("expected a duration such as \"24h\" or \"30m\"".to_string());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = u64::MAX;
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "unknown unit '{c}' (use d, h, m or s, as in \"24h\" or \"1h30m\")"
                ));
            }
        };
        if digits.is_empty() {
            return Err(format!("expected a number before '{c}'"));
        }
        if unit >= last_unit {
            return Err("give the units largest first, each once, as in \"1h30m\"".to_string());
        }
        last_unit = unit;
        let n: u64 = digits
            .parse()
            .map_err(|_| "the number is too large".to_string())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| "the number is too large".to_string())?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "'{digits}' needs a unit (d, h, m or s): did you mean \"{digits}s\"?"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A duration as `restart_every` takes it, shortest form: "1d", "1h30m", "45s".
pub fn format_every(every: Duration) -> String {
    let mut secs = every.as_secs();
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

// ---- the calendar ----------------------------------------------------------------------------

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (Howard Hinnant's days_from_civil).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// 0 for Sunday.
fn weekday(c: Civil) -> u32 {
    // 1970-01-01 was a Thursday.
    (days_from_civil(c.year, c.month, c.day) + 4).rem_euclid(7) as u32
}

fn next_day(c: Civil) -> Civil {
    let (year, month, day) = civil_from_days(days_from_civil(c.year, c.month, c.day) + 1);
    Civil {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
    }
}

fn first_of_next_month(c: Civil) -> Civil {
    let (year, month) = if c.month == 12 {
        (c.year + 1, 1)
    } else {
        (c.year, c.month + 1)
    };
    Civil {
        year,
        month,
        day: 1,
        hour: 0,
        minute: 0,
    }
}

fn add_minutes(c: Civil, minutes: u32) -> Civil {
    let total = c.hour * 60 + c.minute + minutes;
    if total < 24 * 60 {
        return Civil {
            hour: total / 60,
            minute: total % 60,
            ..c
        };
    }
    let mut next = next_day(c);
    let rest = total - 24 * 60;
    next.hour = rest / 60;
    next.minute = rest % 60;
    debug_assert!(c.day <= days_in_month(c.year, c.month));
    next
}

/// The wall-clock minute of a UTC-based count of seconds (for zones built on an offset).
#[cfg(test)]
fn civil_from_epoch(t: i64) -> Civil {
    let (year, month, day) = civil_from_days(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400) as u32;
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs % 3600 / 60,
    }
}

/// Seconds since the epoch of a wall-clock minute read as UTC.
#[cfg(test)]
fn epoch_from_civil(c: Civil) -> i64 {
    days_from_civil(c.year, c.month, c.day) * 86_400 + i64::from(c.hour * 3600 + c.minute * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zone given by its UTC offset changes: `(from, offset)`, ascending.
    struct Zone(Vec<(i64, i64)>);

    impl Zone {
        fn offset(&self, t: i64) -> i64 {
            self.0
                .iter()
                .rev()
                .find(|(from, _)| t >= *from)
                .map_or(self.0[0].1, |(_, o)| *o)
        }
    }

    impl LocalTime for Zone {
        fn civil(&self, t: i64) -> Civil {
            civil_from_epoch(t + self.offset(t))
        }
        fn instants(&self, civil: Civil) -> Vec<i64> {
            let local = epoch_from_civil(civil);
            let mut offsets: Vec<i64> = self.0.iter().map(|(_, o)| *o).collect();
            offsets.dedup();
            let mut found: Vec<i64> = offsets
                .into_iter()
                .map(|o| local - o)
                .filter(|&t| self.offset(t) + t == local)
                .collect();
            found.sort();
            found.dedup();
            found
        }
    }

    fn utc() -> Zone {
        Zone(vec![(i64::MIN, 0)])
    }

    fn at(text: &str) -> Civil {
        // "2026-03-29 01:30"
        let n = |r: std::ops::Range<usize>| text[r].parse::<u32>().unwrap();
        Civil {
            year: n(0..4) as i32,
            month: n(5..7),
            day: n(8..10),
            hour: n(11..13),
            minute: n(14..16),
        }
    }

    fn show(c: Civil) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute
        )
    }

    #[test]
    fn next_match_table() {
        let table = [
            ("0 4 * * *", "2026-12-06 01:48", "2026-12-06 04:00"),
            ("0 4 * * *", "2026-12-06 04:00", "2026-12-07 04:00"),
            ("*/15 * * * *", "2026-12-06 01:48", "2026-12-06 02:00"),
            ("5/20 * * * *", "2026-12-06 01:48", "2026-12-06 02:05"),
            ("30 2 1 * *", "2026-12-06 01:48", "2027-01-01 02:30"),
            ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
            ("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00"),
            // Day of month OR day of week when both are restricted: the 13th or a Friday.
            ("0 9 13 * fri", "2026-12-06 00:00", "2026-12-11 09:00"),
            ("0 9 13 * 5", "2026-12-11 09:00", "2026-12-13 09:00"),
            // Only the weekday restricted: every Sunday (7 is Sunday too).
            ("0 0 * * 7", "2026-12-06 00:00", "2026-12-13 00:00"),
            ("0 0 * * sun", "2026-12-05 23:59", "2026-12-06 00:00"),
            (
                "0 12 * jan-mar mon-fri",
                "2026-12-06 00:00",
                "2027-01-01 12:00",
            ),
            ("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"),
            ("0,30 8-9 * * *", "2026-12-06 08:30", "2026-12-06 09:00"),
            ("@hourly", "2026-12-06 01:48", "2026-12-06 02:00"),
            ("@weekly", "2026-12-06 01:48", "2026-12-13 00:00"),
        ];
        for (expr, from, want) in table {
            let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let got = cron.next_match(at(from)).map(show);
            assert_eq!(got.as_deref(), Some(want), "{expr} after {from}");
        }
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        let table = [
            ("0 4 * *", 7, "expected 5 fields"),
            ("0 4 * * * *", 10, "expected 5 fields"),
            ("60 4 * * *", 0, "minute field: 60 is out of range (0–59)"),
            ("0 24 * * *", 2, "hour field: 24 is out of range (0–23)"),
            (
                "0 4 0 * *",
                4,
                "day of month field: 0 is out of range (1–31)",
            ),
            ("0 4 * 13 *", 6, "month field: 13 is out of range (1–12)"),
            ("0 4 * * 8", 8, "day of week field: 8 is out of range (0–7)"),
            (
                "0 4 * foo *",
                6,
                "month field: expected a number or a name such as 'jan', found 'foo'",
            ),
            (
                "*/0 * * * *",
                2,
                "minute field: the step after '/' must be a whole number above 0",
            ),
            ("0 5-2 * * *", 2, "hour field: the range 5-2 runs backwards"),
            ("0,,5 * * * *", 2, "minute field: an empty list entry"),
            ("0 0 31 2 *", 4, "never happens"),
            ("0 0 30 feb *", 4, "never happens"),
            ("@often", 0, "unknown shorthand '@often'"),
        ];
        for (expr, offset, message) in table {
            let error = Cron::parse(expr).expect_err(expr);
            assert!(
                error.message.starts_with(message),
                "{expr}: {}",
                error.message
            );
            assert_eq!(error.offset, offset, "{expr}: {}", error.message);
        }
    }

    #[test]
    fn next_after_in_utc() {
        let zone = utc();
        let cron = Cron::parse("0 4 * * *").unwrap();
        let now = epoch_from_civil(at("2026-12-06 01:48")) + 17;
        assert_eq!(
            cron.next_after(now, &zone),
            Some(epoch_from_civil(at("2026-12-06 04:00")))
        );
        // Exactly at the minute: the next day, never the same instant again.
        let now = epoch_from_civil(at("2026-12-06 04:00"));
        assert_eq!(
            cron.next_after(now, &zone),
            Some(epoch_from_civil(at("2026-12-07 04:00")))
        );
    }

    /// A zone at UTC+1 that springs forward to UTC+2 at 02:00 local on 2026-03-29 and falls
    /// back at 03:00 local on 2026-10-25 (central Europe's rules).
    fn europe() -> Zone {
        let spring = epoch_from_civil(at("2026-03-29 01:00"));
        let autumn = epoch_from_civil(at("2026-10-25 01:00"));
        Zone(vec![(i64::MIN, 3600), (spring, 7200), (autumn, 3600)])
    }

    #[test]
    fn a_skipped_minute_is_due_at_the_jump() {
        let zone = europe();
        let cron = Cron::parse("30 2 * * *").unwrap();
        let now = epoch_from_civil(at("2026-03-29 00:00")); // 01:00 local
        let due = cron.next_after(now, &zone).unwrap();
        assert_eq!(show(zone.civil(due)), "2026-03-29 03:00");
        // And the day after, 02:30 exists again.
        let next = cron.next_after(due, &zone).unwrap();
        assert_eq!(show(zone.civil(next)), "2026-03-30 02:30");
    }

    #[test]
    fn a_repeated_minute_is_due_once_the_first_time() {
        let zone = europe();
        let cron = Cron::parse("30 2 * * *").unwrap();
        let now = epoch_from_civil(at("2026-10-24 23:00")); // 01:00 local, summer time
        let first = cron.next_after(now, &zone).unwrap();
        assert_eq!(show(zone.civil(first)), "2026-10-25 02:30");
        assert_eq!(
            first,
            epoch_from_civil(at("2026-10-25 00:30")),
            "the summer-time 02:30"
        );
        let next = cron.next_after(first, &zone).unwrap();
        assert_eq!(
            show(zone.civil(next)),
            "2026-10-26 02:30",
            "not again an hour later"
        );
        // A schedule every quarter hour goes on through the repeated hour without a double.
        let quarter = Cron::parse("*/15 * * * *").unwrap();
        let at_0245 = epoch_from_civil(at("2026-10-25 00:45"));
        let after = quarter.next_after(at_0245, &zone).unwrap();
        assert_eq!(show(zone.civil(after)), "2026-10-25 03:00");
    }

    #[test]
    fn every_parses_units_largest_first() {
        let ok = [
            ("24h", 86_400),
            ("30m", 1_800),
            ("1h30m", 5_400),
            ("90s", 90),
            ("2d", 172_800),
            ("1d2h3m4s", 93_784),
        ];
        for (text, secs) in ok {
            assert_eq!(parse_every(text), Ok(Duration::from_secs(secs)), "{text}");
            assert_eq!(
                parse_every(&format_every(Duration::from_secs(secs))),
                Ok(Duration::from_secs(secs))
            );
        }
        let bad = [
            ("", "expected a duration"),
            ("24", "'24' needs a unit"),
            ("5x", "unknown unit 'x'"),
            ("h", "expected a number before 'h'"),
            ("30m1h", "give the units largest first"),
            ("99999999999999999999d", "the number is too large"),
        ];
        for (text, message) in bad {
            let error = parse_every(text).expect_err(text);
            assert!(error.starts_with(message), "{text}: {error}");
        }
        assert_eq!(format_every(Duration::from_secs(5_400)), "1h30m");
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-800_000, -1, 0, 1, 10_957, 20_793, 3_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(weekday(at("2026-12-06 00:00")), 0, "a Sunday");
    }
}
