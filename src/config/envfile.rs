//! The `.env` file format (`KEY=value` lines): read for a server's `env_file` at each spawn and
//! for a Procfile's `.env`. Errors say the line and character column.

use super::check::quoted;
/// Parses an env file (`KEY=value` lines) into ordered pairs; an error is `line N: reason`.
///
/// Blank lines and `#` comments are skipped and `export ` is optional. A value is bare
/// (trailing space and a ` #` comment dropped), single-quoted (literal) or double-quoted
/// (`\n`, `\t`, `\r`, `\"`, `\\` and `\$` escapes; any other backslash is kept, as in sh).
/// Later pairs win when applied in order. README "For Procfile users" lists where this reads
/// a line differently from honcho, and why.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    parse_env_entries(text)
        .map(|entries| entries.into_iter().map(|e| (e.key, e.value)).collect())
        .map_err(|e| format!("line {}: {}", e.line, e.message))
}

/// One `KEY=value` line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// 1-based line and character column of the value, for messages about it.
    pub line: usize,
    pub column: usize,
}

/// The first problem in an env file: 1-based line and character column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// [`parse_env_file`] with positions, for `tend check` (file:line:col).
pub fn parse_env_entries(text: &str) -> Result<Vec<EnvEntry>, EnvFileError> {
    let mut entries = Vec::new();
    for (number, full) in text.lines().enumerate() {
        let number = number + 1;
        // Character column of a byte offset into `full`.
        let column = |at: usize| full[..at].chars().count() + 1;
        let fail = |at: usize, message: String| EnvFileError {
            line: number,
            column: column(at),
            message,
        };
        let line = full.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let line_at = full.len() - line.len();
        let Some((key, raw)) = line.split_once('=') else {
            return Err(fail(
                line_at,
                "expected KEY=value, found no '='".to_string(),
            ));
        };
        let key = key.trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('\0') {
            return Err(fail(
                line_at,
                format!("{} is not a valid variable name", quoted(key)),
            ));
        }
        let raw_at = line_at + line.len() - raw.len();
        let value_at = raw_at + (raw.len() - raw.trim_start().len());
        let value = env_value(raw).map_err(|(at, why)| fail(raw_at + at, why))?;
        if value.contains('\0') {
            return Err(fail(value_at, "the value contains a NUL byte".to_string()));
        }
        entries.push(EnvEntry {
            key: key.to_string(),
            value,
            line: number,
            column: column(value_at),
        });
    }
    Ok(entries)
}

/// The value part of one env-file line (everything after the first `=`). An error carries
/// the byte offset in `raw` it is about.
fn env_value(raw: &str) -> Result<String, (usize, String)> {
    let rest = raw.trim_start();
    let rest_at = raw.len() - rest.len();
    let (value, after) = if let Some(body) = rest.strip_prefix('\'') {
        let Some(end) = body.find('\'') else {
            return Err((rest_at, "unterminated single quote".to_string()));
        };
        (body[..end].to_string(), &body[end + 1..])
    } else if let Some(body) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, e @ ('"' | '\\' | '$'))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                },
                c => value.push(c),
            }
        }
        let Some(end) = end else {
            return Err((rest_at, "unterminated double quote".to_string()));
        };
        (value, &body[end..])
    } else {
        // A `#` starts a comment only after whitespace, so `a#b` and URLs with fragments stay.
        let bytes = raw.as_bytes();
        let cut = (0..bytes.len())
            .find(|&i| bytes[i] == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace())
            .unwrap_or(raw.len());
        return Ok(raw[..cut].trim().to_string());
    };
    let trimmed = after.trim_start();
    if !trimmed.is_empty() && !trimmed.starts_with('#') {
        let at = raw.len() - trimmed.len();
        return Err((
            at,
            format!(
                "unexpected text after the closing quote: {}",
                quoted(trimmed)
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::{parse_env_entries, parse_env_file};

    #[test]
    fn env_files_parse() {
        let text = "\
# a comment
  # an indented comment

PLAIN=value
export EXPORTED=yes
SPACED = padded value   
TRAIL=bare # comment
HASH=a#b
HASH_FIRST=#x
EMPTY=
EMPTY_COMMENT= # nothing
SINGLE='literal \\n $HOME # kept'
DOUBLE=\"line\\nnext\\ttab \\\"q\\\" back\\\\slash \\$x \\d\" # comment
URL=http://x/#frag
EQ=a=b
exported=lower
";
        let expected = [
            ("PLAIN", "value"),
            ("EXPORTED", "yes"),
            ("SPACED", "padded value"),
            ("TRAIL", "bare"),
            ("HASH", "a#b"),
            ("HASH_FIRST", "#x"),
            ("EMPTY", ""),
            ("EMPTY_COMMENT", ""),
            ("SINGLE", "literal \\n $HOME # kept"),
            ("DOUBLE", "line\nnext\ttab \"q\" back\\slash $x \\d"),
            ("URL", "http://x/#frag"),
            ("EQ", "a=b"),
            ("exported", "lower"),
        ];
        let pairs = parse_env_file(text).unwrap_or_else(|e| panic!("{e}"));
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, expected);
        assert_eq!(
            parse_env_file("A=1\r\nB=2\r\n"),
            Ok(vec![("A".into(), "1".into()), ("B".into(), "2".into())])
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let cases = [
            (
                "A=1\nJUSTAWORD\n",
                "line 2: expected KEY=value, found no '='",
            ),
            ("export FOO\n", "line 1: expected KEY=value, found no '='"),
            ("=x", "line 1: '' is not a valid variable name"),
            ("MY KEY=x", "line 1: 'MY KEY' is not a valid variable name"),
            ("\n\nA='open", "line 3: unterminated single quote"),
            ("A=\"open\\\"", "line 1: unterminated double quote"),
            (
                "A='x' y",
                "line 1: unexpected text after the closing quote: 'y'",
            ),
            (
                "A=\"x\"y",
                "line 1: unexpected text after the closing quote: 'y'",
            ),
            ("A=a\0b", "line 1: the value contains a NUL byte"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_env_file(text), Err(expected.to_string()), "{text:?}");
        }
    }

    #[test]
    fn env_file_errors_and_values_have_columns() {
        // For `tend check` on a Procfile's .env: file:line:col like the JSON config's errors.
        let cases = [
            ("A=1\n  JUSTAWORD\n", (2, 3)),
            ("export  FOO\n", (1, 9)),
            ("  =x", (1, 3)),
            ("A= 'open", (1, 4)),
            ("é=\"open", (1, 3)),
            ("A='x'  y", (1, 8)),
            ("A=é\0", (1, 3)),
        ];
        for (text, (line, column)) in cases {
            let error = parse_env_entries(text).expect_err(text);
            assert_eq!(
                (error.line, error.column),
                (line, column),
                "{text:?}: {error:?}"
            );
        }
        let entries = parse_env_entries("# c\n  export A = 'v'\nB=\n").expect("parses");
        let found: Vec<(&str, &str, usize, usize)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line, e.column))
            .collect();
        assert_eq!(found, [("A", "v", 2, 14), ("B", "", 3, 3)]);
    }
}
