//! A server's `max_memory` and `health` keys (DESIGN §12): what "it works" means beyond a live
//! PID and open ports. Kept apart from the rest of the server keys because each is a small
//! language of its own (sizes, loopback URLs, status ranges, a regex subset).

use serde_json::Value;

use super::{Checker, Field, TIB, quoted};

/// The smallest `max_memory`: below this any process would be restarted at once, so a smaller
/// value is almost surely a unit left out (`256` for `"256M"`).
pub const MIN_MAX_MEMORY: u64 = 1 << 20;
/// The largest `max_memory`: 64 TiB, past any machine tend runs on.
pub const MAX_MAX_MEMORY: u64 = 64 * TIB;

/// Parses a size as `max_memory` takes it: whole bytes, or a whole number with a binary unit
/// `K`, `M`, `G` or `T` (1024-based, as PM2's `max_memory_restart` and systemd's `MemoryMax=`
/// read them), optionally followed by `B` or `iB`, case-insensitive: `"256M"`, `"1G"`,
/// `"512MiB"`. `Err` says what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a size such as \"256M\" or \"1G\"".to_string());
    }
    let unit = unit.trim_start();
    let lower = unit.to_ascii_lowercase();
    let shift = match lower.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown unit {} (use K, M, G or T, as in \"256M\")",
                quoted(unit)
            ));
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| "the number is too large".to_string())?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| "the number is too large".to_string())
}

/// A size in the largest unit that keeps it whole ("256 MiB", "1 GiB", "1536 KiB").
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Memory as people read it in a status line: whole MiB ("310 MiB"), or KiB below one MiB.
pub fn format_memory(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", (bytes + (1 << 19)) >> 20)
    } else {
        format!("{} KiB", (bytes + 512) >> 10)
    }
}

impl Checker<'_> {
    /// `max_memory`: bytes as a number, or a size string.
    pub(super) fn max_memory(&mut self, field: &Field, value: &Value) -> Option<u64> {
        let bytes = match value {
            Value::Null => return None,
            Value::Number(_) => self.integer(field, value, 0, u64::MAX)?,
            Value::String(text) => match parse_size(text) {
                Ok(bytes) => bytes,
                Err(problem) => {
                    self.fail_field(field, format!("{problem}, found {}", quoted(text)));
                    return None;
                }
            },
            other => return self.wrong_type(field, "a size such as \"256M\" or bytes", other),
        };
        if bytes < MIN_MAX_MEMORY {
            let hint = match value {
                Value::Number(_) => format!(" (a number is bytes: did you mean \"{bytes}M\"?)"),
                _ => String::new(),
            };
            self.fail_field(
                field,
                format!("must be at least 1M (1048576 bytes), found {bytes}{hint}"),
            );
            return None;
        }
        if bytes > MAX_MAX_MEMORY {
            self.fail_field(field, "must be at most 64T");
            return None;
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::{format_memory, format_size, parse_size};

    #[test]
    fn sizes_take_binary_units_in_any_case() {
        for (text, bytes) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("256M", 256 << 20),
            ("256m", 256 << 20),
            ("256MB", 256 << 20),
            ("256MiB", 256 << 20),
            ("1G", 1 << 30),
            ("1 G", 1 << 30),
            ("512k", 512 << 10),
            ("2T", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, problem) in [
            ("", "expected a size"),
            ("M", "expected a size"),
            ("1.5G", "unknown unit '.5G'"),
            ("256X", "unknown unit 'X'"),
            ("256iB", "unknown unit 'iB'"),
            ("99999999999999999999", "too large"),
            ("99999999999T", "too large"),
        ] {
            let error = parse_size(text).expect_err(text);
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn sizes_print_in_their_largest_whole_unit() {
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(format_memory(310 << 20), "310 MiB");
        assert_eq!(format_memory((310 << 20) + 600_000), "311 MiB");
        assert_eq!(format_memory(4096), "4 KiB");
    }
}
