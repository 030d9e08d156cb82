//! Where each key and value of a JSON config starts (line and character column), because
//! `serde_json::Value` keeps no positions; also the column of a syntax error.

use std::collections::HashMap;
use std::path::Path;

use super::ConfigError;

pub(super) fn syntax_error(text: &str, path: &Path, error: &serde_json::Error) -> ConfigError {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full);
    ConfigError {
        file: path.to_path_buf(),
        line: error.line(),
        column: char_column(text, error.line(), error.column()),
        message: format!("invalid JSON: {reason}"),
    }
}

/// serde_json counts columns in bytes; editors count characters.
fn char_column(text: &str, line: usize, byte_column: usize) -> usize {
    if line == 0 || byte_column == 0 {
        return byte_column;
    }
    let Some(line_text) = text.split('\n').nth(line - 1) else {
        return byte_column;
    };
    let bytes = line_text.as_bytes();
    let before = &bytes[..(byte_column - 1).min(bytes.len())];
    before.iter().filter(|&&b| !is_continuation(b)).count() + 1
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// A 1-based line and character column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
}

pub(super) struct DuplicateKey {
    pub(super) key: String,
    pub(super) at: Pos,
    pub(super) first: Pos,
}

/// Where each key and value starts, by JSON path (`servers[1].ports[0]`), because
/// `serde_json::Value` keeps no positions. Built only from text serde_json accepted, so the
/// scanner can be simple; on anything unexpected it stops and the index is just shorter.
#[derive(Default)]
pub(super) struct Positions {
    pub(super) values: HashMap<String, Pos>,
    pub(super) keys: HashMap<String, Pos>,
    /// serde_json silently keeps the last of repeated keys; a typo-proof config should not.
    pub(super) duplicates: Vec<DuplicateKey>,
}

impl Positions {
    pub(super) fn scan(text: &str) -> Positions {
        let mut scanner = Scanner {
            text,
            at: 0,
            pos: Pos { line: 1, column: 1 },
            out: Positions::default(),
        };
        let _ = scanner.value(String::new());
        scanner.out
    }
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
    pos: Pos,
    out: Positions,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn bump(&mut self) {
        let Some(byte) = self.peek() else { return };
        self.at += 1;
        if byte == b'\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else if !is_continuation(byte) {
            self.pos.column += 1;
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.bump())
    }

    fn value(&mut self, path: String) -> Option<()> {
        self.skip_whitespace();
        let start = self.pos;
        let byte = self.peek()?;
        let result = match byte {
            b'{' => self.object(&path),
            b'[' => self.array(&path),
            b'"' => self.string().map(drop),
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.bump();
                }
                Some(())
            }
        };
        self.out.values.insert(path, start);
        result
    }

    fn object(&mut self, path: &str) -> Option<()> {
        self.bump();
        self.skip_whitespace();
        if self.expect(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            let key_at = self.pos;
            let key = self.string()?;
            let child = child_path(path, &key);
            if let Some(&first) = self.out.keys.get(&child) {
                self.out.duplicates.push(DuplicateKey {
                    key,
                    at: key_at,
                    first,
                });
            }
            self.out.keys.insert(child.clone(), key_at);
            self.skip_whitespace();
            self.expect(b':')?;
            self.value(child)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.bump(),
                b'}' => return self.expect(b'}'),
                _ => return None,
            }
        }
    }

    fn array(&mut self, path: &str) -> Option<()> {
        self.bump();
        self.skip_whitespace();
        if self.expect(b']').is_some() {
            return Some(());
        }
        for index in 0.. {
            self.value(format!("{path}[{index}]"))?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.bump(),
                b']' => return self.expect(b']'),
                _ => return None,
            }
        }
        None
    }

    /// Consumes a string literal and returns it decoded, so keys match serde_json's.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => {
                    self.bump();
                    self.bump();
                }
                b'"' => {
                    self.bump();
                    break;
                }
                _ => self.bump(),
            }
        }
        serde_json::from_slice(self.text.get(start..self.at)?.as_bytes()).ok()
    }
}

pub(super) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::Positions;

    #[test]
    fn positions_follow_escapes_nesting_and_wide_characters() {
        let text = "{\"a\\\"b\": {\"c\": [1, {\"d\\\\\": \"x\\\"}\"}]},\n \"é\": [[], [true]]}";
        let index = Positions::scan(text);
        let value = |path: &str| index.values.get(path).map(|p| (p.line, p.column));
        let key = |path: &str| index.keys.get(path).map(|p| (p.line, p.column));
        assert_eq!(value(""), Some((1, 1)));
        assert_eq!(key("a\"b"), Some((1, 2)));
        assert_eq!(value("a\"b"), Some((1, 10)));
        assert_eq!(value("a\"b.c"), Some((1, 16)));
        assert_eq!(value("a\"b.c[0]"), Some((1, 17)));
        assert_eq!(value("a\"b.c[1]"), Some((1, 20)));
        assert_eq!(key("a\"b.c[1].d\\"), Some((1, 21)));
        assert_eq!(value("a\"b.c[1].d\\"), Some((1, 28)));
        assert_eq!(key("é"), Some((2, 2)));
        assert_eq!(value("é"), Some((2, 7)));
        assert_eq!(value("é[0]"), Some((2, 8)));
        assert_eq!(value("é[1][0]"), Some((2, 13)));
        assert!(index.duplicates.is_empty());
    }
}
