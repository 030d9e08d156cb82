//! A small regular-expression engine for `health.log` (a server is ready once a line of its
//! output matches). tend's runtime dependencies are fixed, so no regex crate: this is the
//! subset readiness lines need, matched in time linear in the line (a Thompson NFA run as a
//! Pike VM: every alternative advances in step, so no pattern can backtrack exponentially).
//!
//! Supported: literals; `.` (any character); classes `[abc]`, `[a-z0-9_]`, `[^…]` (with `\d`,
//! `\w`, `\s` and escapes inside); `\d \w \s` and their negations `\D \W \S`; `\` before any
//! punctuation for itself (`\.`, `\(`, `\[`, `\\`), `\t`, `\n`, `\r`; `*`, `+`, `?` (greedy or
//! not makes no difference to whether a line matches); anchors `^` and `$`; groups `( … )`; and
//! `|`. Not supported (a config error says so): counted repetition `{m,n}`, backreferences,
//! lookaround, `(?…)` flags, named classes `[:alpha:]`. Matching is case-sensitive and finds
//! the pattern anywhere in the line unless anchored.

use std::fmt;

/// The longest pattern accepted: readiness lines are short, and a bound keeps the program small.
pub const MAX_PATTERN: usize = 256;

/// A compiled pattern; compares equal by its source text.
#[derive(Clone)]
pub struct Regex {
    source: String,
    program: Vec<Inst>,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.source == other.source
    }
}

impl Eq for Regex {}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.source)
    }
}

impl fmt::Display for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a pattern was refused, and at which character (0-based) of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (at character {} of the pattern)",
            self.message,
            self.at + 1
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
    Quest(Box<Node>),
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE: &[(char, char)] = &[('\t', '\r'), (' ', ' ')];

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.is_empty() {
            return Err(PatternError {
                at: 0,
                message: "the pattern is empty (it would match every line)".to_string(),
            });
        }
        if chars.len() > MAX_PATTERN {
            return Err(PatternError {
                at: MAX_PATTERN,
                message: format!("the pattern is longer than {MAX_PATTERN} characters"),
            });
        }
        let mut parser = Parser { chars, at: 0 };
        let node = parser.alternation()?;
        if parser.at < parser.chars.len() {
            // Only an unopened `)` stops the top level early.
            return Err(parser.error("unmatched ')'"));
        }
        let mut program = Vec::new();
        emit(&node, &mut program);
        program.push(Inst::Match);
        Ok(Regex {
            source: pattern.to_string(),
            program,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches anywhere in `line`.
    pub fn is_match(&self, line: &str) -> bool {
        let chars: Vec<char> = line.chars().collect();
        let mut current: Vec<usize> = Vec::with_capacity(self.program.len());
        let mut next: Vec<usize> = Vec::with_capacity(self.program.len());
        // `seen[pc] == step` marks a thread already in the list for that step.
        let mut seen = vec![usize::MAX; self.program.len()];
        for at in 0..=chars.len() {
            // A thread starts at every position: the pattern may begin anywhere.
            if self.add(&mut current, 0, at, chars.len(), &mut seen) {
                return true;
            }
            let Some(&c) = chars.get(at) else { break };
            next.clear();
            for &pc in &current {
                let advances = match &self.program[pc] {
                    Inst::Char(want) => *want == c,
                    Inst::Any => true,
                    Inst::Class(class) => class.matches(c),
                    _ => false,
                };
                if advances && self.add(&mut next, pc + 1, at + 1, chars.len(), &mut seen) {
                    return true;
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds the thread at `pc` (following jumps, splits and anchors) to the list for position
    /// `at`; true as soon as one reaches `Match`.
    fn add(
        &self,
        list: &mut Vec<usize>,
        pc: usize,
        at: usize,
        len: usize,
        seen: &mut [usize],
    ) -> bool {
        if seen[pc] == at {
            return false;
        }
        seen[pc] = at;
        match &self.program[pc] {
            Inst::Match => true,
            Inst::Jmp(to) => self.add(list, *to, at, len, seen),
            Inst::Split(a, b) => {
                let (a, b) = (*a, *b);
                self.add(list, a, at, len, seen) || self.add(list, b, at, len, seen)
            }
            Inst::Start => at == 0 && self.add(list, pc + 1, at, len, seen),
            Inst::End => at == len && self.add(list, pc + 1, at, len, seen),
            _ => {
                list.push(pc);
                false
            }
        }
    }
}

fn emit(node: &Node, out: &mut Vec<Inst>) {
    match node {
        Node::Char(c) => out.push(Inst::Char(*c)),
        Node::Any => out.push(Inst::Any),
        Node::Class(class) => out.push(Inst::Class(class.clone())),
        Node::Start => out.push(Inst::Start),
        Node::End => out.push(Inst::End),
        Node::Concat(items) => items.iter().for_each(|item| emit(item, out)),
        Node::Alt(options) => {
            // Split to each option in turn; every option jumps to the end.
            let mut jumps = Vec::new();
            for (i, option) in options.iter().enumerate() {
                let last = i + 1 == options.len();
                let split = out.len();
                if !last {
                    out.push(Inst::Split(split + 1, 0));
                }
                emit(option, out);
                if !last {
                    jumps.push(out.len());
                    out.push(Inst::Jmp(0));
                    let after = out.len();
                    out[split] = Inst::Split(split + 1, after);
                }
            }
            let end = out.len();
            for jump in jumps {
                out[jump] = Inst::Jmp(end);
            }
        }
        Node::Star(inner) => {
            let split = out.len();
            out.push(Inst::Split(split + 1, 0));
            emit(inner, out);
            out.push(Inst::Jmp(split));
            let end = out.len();
            out[split] = Inst::Split(split + 1, end);
        }
        Node::Plus(inner) => {
            let start = out.len();
            emit(inner, out);
            let split = out.len();
            out.push(Inst::Split(start, split + 1));
        }
        Node::Quest(inner) => {
            let split = out.len();
            out.push(Inst::Split(split + 1, 0));
            emit(inner, out);
            let end = out.len();
            out[split] = Inst::Split(split + 1, end);
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn error(&self, message: &str) -> PatternError {
        PatternError {
            at: self.at.min(self.chars.len().saturating_sub(1)),
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn alternation(&mut self) -> Result<Node, PatternError> {
        let mut options = vec![self.concatenation()?];
        while self.peek() == Some('|') {
            self.at += 1;
            options.push(self.concatenation()?);
        }
        Ok(if options.len() == 1 {
            options.pop().expect("one option")
        } else {
            Node::Alt(options)
        })
    }

    fn concatenation(&mut self) -> Result<Node, PatternError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.repetition(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn repetition(&mut self, mut atom: Node) -> Result<Node, PatternError> {
        while let Some(c) = self.peek() {
            if matches!(atom, Node::Start | Node::End) && matches!(c, '*' | '+' | '?') {
                return Err(self.error("an anchor cannot be repeated"));
            }
            atom = match c {
                '*' => Node::Star(Box::new(atom)),
                '+' => Node::Plus(Box::new(atom)),
                '?' => Node::Quest(Box::new(atom)),
                '{' => {
                    return Err(self.error(
                        "counted repetition {m,n} is not supported (write the item out, or \
                         use * + ?; a literal '{' is written \\{)",
                    ));
                }
                _ => break,
            };
            self.at += 1;
        }
        Ok(atom)
    }

    fn atom(&mut self) -> Result<Node, PatternError> {
        let c = self.peek().expect("called with a character left");
        let start = self.at;
        self.at += 1;
        match c {
            '.' => Ok(Node::Any),
            '^' => Ok(Node::Start),
            '$' => Ok(Node::End),
            '*' | '+' | '?' => {
                self.at = start;
                Err(self.error(&format!("'{c}' has nothing before it to repeat")))
            }
            '{' => {
                self.at = start;
                Err(self.error(
                    "counted repetition {m,n} is not supported (a literal '{' is written \\{)",
                ))
            }
            '(' => {
                if self.peek() == Some('?') {
                    return Err(self.error("(?…) groups and flags are not supported"));
                }
                let inner = self.alternation()?;
                if self.peek() != Some(')') {
                    self.at = start;
                    return Err(self.error("unclosed group: '(' without ')'"));
                }
                self.at += 1;
                Ok(inner)
            }
            '[' => self.class(start),
            '\\' => self.escape(false).map(|e| match e {
                Escaped::Char(c) => Node::Char(c),
                Escaped::Class(class) => Node::Class(class),
            }),
            c => Ok(Node::Char(c)),
        }
    }

    fn class(&mut self, start: usize) -> Result<Node, PatternError> {
        let mut class = Class {
            negated: false,
            ranges: Vec::new(),
        };
        if self.peek() == Some('^') {
            class.negated = true;
            self.at += 1;
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                self.at = start;
                return Err(self.error("unclosed class: '[' without ']'"));
            };
            if c == ']' && !first {
                self.at += 1;
                break;
            }
            first = false;
            if c == '[' && self.chars.get(self.at + 1) == Some(&':') {
                return Err(self.error("named classes such as [:alpha:] are not supported"));
            }
            self.at += 1;
            let low = if c == '\\' {
                match self.escape(true)? {
                    Escaped::Char(c) => c,
                    Escaped::Class(inner) => {
                        class.ranges.extend(inner.ranges);
                        continue;
                    }
                }
            } else {
                c
            };
            // `a-z`; a '-' first, last or after a range is itself.
            if self.peek() == Some('-') && self.chars.get(self.at + 1).is_some_and(|&n| n != ']') {
                self.at += 1;
                let high_char = self.peek().expect("checked above");
                self.at += 1;
                let high = if high_char == '\\' {
                    match self.escape(true)? {
                        Escaped::Char(c) => c,
                        Escaped::Class(_) => {
                            return Err(self.error("a range cannot end in a class such as \\d"));
                        }
                    }
                } else {
                    high_char
                };
                if high < low {
                    return Err(self.error(&format!("the range {low}-{high} is backwards")));
                }
                class.ranges.push((low, high));
            } else {
                class.ranges.push((low, low));
            }
        }
        Ok(Node::Class(class))
    }

    /// After a `\`: an escaped character or a class. `in_class`: negated classes (`\D`) are not
    /// allowed inside `[…]`.
    fn escape(&mut self, in_class: bool) -> Result<Escaped, PatternError> {
        let Some(c) = self.peek() else {
            return Err(self.error("a trailing '\\' escapes nothing"));
        };
        self.at += 1;
        let class = |ranges: &[(char, char)], negated: bool| {
            Escaped::Class(Class {
                negated,
                ranges: ranges.to_vec(),
            })
        };
        Ok(match c {
            'd' => class(DIGIT, false),
            'w' => class(WORD, false),
            's' => class(SPACE, false),
            'D' | 'W' | 'S' if in_class => {
                self.at -= 1;
                return Err(self.error(&format!("\\{c} is not supported inside [...]")));
            }
            'D' => class(DIGIT, true),
            'W' => class(WORD, true),
            'S' => class(SPACE, true),
            't' => Escaped::Char('\t'),
            'n' => Escaped::Char('\n'),
            'r' => Escaped::Char('\r'),
            c if c.is_ascii_punctuation() || c == ' ' => Escaped::Char(c),
            c => {
                self.at -= 1;
                return Err(self.error(&format!(
                    "unknown escape \\{c} (escape only punctuation, or use \\d \\w \\s \\t \\n \\r)"
                )));
            }
        })
    }
}

enum Escaped {
    Char(char),
    Class(Class),
}

#[cfg(test)]
mod tests {
    use super::Regex;

    fn matches(pattern: &str, line: &str) -> bool {
        Regex::new(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(line)
    }

    #[test]
    fn the_subset_matches_as_regexes_do() {
        #[rustfmt::skip]
        let cases = [
            ("ready", "server ready now", true),
            ("ready", "server Ready", false),
            ("^ready", "ready!", true),
            ("^ready", "not ready", false),
            ("ready$", "is ready", true),
            ("ready$", "ready?", false),
            ("^$", "", true),
            ("r.ady", "rXady", true),
            ("listening on port \\d+", "listening on port 8080", true),
            ("listening on port \\d+", "listening on port x", false),
            ("\\w+@\\w+", "user@host", true),
            ("a\\sb", "a\tb", true),
            ("\\S+", "   ", false),
            ("[abc]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[^0-9]", "123", false),
            ("[^0-9]", "12a", true),
            ("[-a]", "-", true),
            ("[a-]", "-", true),
            ("[]]", "]", true),
            ("[\\d.]+ ms", "took 1.5 ms", true),
            ("colou?r", "color", true),
            ("colou?r", "colour", true),
            ("ab*c", "ac", true),
            ("ab+c", "ac", false),
            ("ab+c", "abbbc", true),
            ("(ready|started)$", "server started", true),
            ("(ready|started)$", "server stopped", false),
            ("^(ab)+$", "ababab", true),
            ("^(ab)+$", "ababa", false),
            ("a|b|c", "zzc", true),
            ("\\(1\\)", "(1)", true),
            ("\\.", "x", false),
            ("\\[ok\\]", "[ok] up", true),
            ("a.*b", "a-----b", true),
            ("((a*)*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false),
            ("(a|)+x", "aax", true),
            ("é+", "caféé", true),
        ];
        for (pattern, line, expected) in cases {
            assert_eq!(matches(pattern, line), expected, "/{pattern}/ on {line:?}");
        }
    }

    #[test]
    fn a_pathological_pattern_stays_linear() {
        let pattern = format!("^{}{}$", "a?".repeat(40), "a".repeat(40));
        let line = "a".repeat(40);
        let started = std::time::Instant::now();
        assert!(matches(&pattern, &line));
        assert!(!matches("(x+x+)+y", &"x".repeat(5000)));
        // Backtracking would take ages here; the NFA takes microseconds. Generous bound.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn unsupported_and_broken_patterns_say_what_and_where() {
        for (pattern, message) in [
            (
                "",
                "the pattern is empty (it would match every line) (at character 1 of the pattern)",
            ),
            (
                "(ready",
                "unclosed group: '(' without ')' (at character 1 of the pattern)",
            ),
            ("ready)", "unmatched ')' (at character 6 of the pattern)"),
            (
                "[a-",
                "unclosed class: '[' without ']' (at character 1 of the pattern)",
            ),
            (
                "*x",
                "'*' has nothing before it to repeat (at character 1 of the pattern)",
            ),
            (
                "a{2}",
                "counted repetition {m,n} is not supported (write the item out, or use * + ?; a literal '{' is written \\{) (at character 2 of the pattern)",
            ),
            (
                "(?i)x",
                "(?…) groups and flags are not supported (at character 2 of the pattern)",
            ),
            (
                "x\\q",
                "unknown escape \\q (escape only punctuation, or use \\d \\w \\s \\t \\n \\r) (at character 3 of the pattern)",
            ),
            (
                "x\\",
                "a trailing '\\' escapes nothing (at character 2 of the pattern)",
            ),
            (
                "[z-a]",
                "the range z-a is backwards (at character 5 of the pattern)",
            ),
            (
                "[\\D]",
                "\\D is not supported inside [...] (at character 3 of the pattern)",
            ),
            (
                "[[:alpha:]]",
                "named classes such as [:alpha:] are not supported (at character 2 of the pattern)",
            ),
            (
                "^*",
                "an anchor cannot be repeated (at character 2 of the pattern)",
            ),
        ] {
            let error = Regex::new(pattern).expect_err(pattern);
            assert_eq!(error.to_string(), message, "{pattern}");
        }
        assert!(Regex::new(&"a".repeat(300)).is_err());
    }
}
