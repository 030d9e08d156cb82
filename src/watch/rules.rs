//! Which files a server's `watch` covers, and which folders must be watched to see them: its
//! `paths` and `ignore` patterns resolved against the server's cwd, plus tend's own files,
//! which never count. Pure path arithmetic; the folders are listed by [`super`].
//!
//! Patterns: a component `*` matches any run of characters but `/`, `?` one character, `**`
//! any number of folders. A `paths` entry without a glob is a file, or a folder with
//! everything below it; a glob covers the files it matches and everything below the folders
//! it matches. An `ignore` entry without a `/` is a name, ignored at any depth; one with a `/`
//! is a path from the cwd.

use std::path::{Component, Path, PathBuf};

use crate::config::watch::WatchSpec;

/// Ignored whatever the config says: version control's own folders, tend's folder, and the
/// temporary files editors write beside the one being saved (vim's `4913` probe, swap files,
/// backups, emacs lock files).
pub const ALWAYS_IGNORED: &[&str] = &[
    ".git", ".hg", ".svn", ".tend", "*.swp", "*.swx", "*~", ".#*", "4913",
];

/// tend's own files, which must never restart a server: the log folder, and files tend writes
/// elsewhere (the state file, the history), each with what tend keeps beside it under its name
/// (`.lock`, `.tmp`, `.corrupt-…`): any file in the same folder whose name begins with theirs.
#[derive(Debug, Clone, Default)]
pub struct OwnFiles {
    pub log_dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// One `paths` entry: the folder or file it starts from, and the glob below it (empty when
/// the entry has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub base: PathBuf,
    pattern: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Rules {
    cwd: PathBuf,
    pub roots: Vec<Root>,
    names: Vec<String>,
    anchored: Vec<Vec<String>>,
    own: OwnFiles,
}

impl Rules {
    pub fn new(cwd: &Path, spec: &WatchSpec, own: &OwnFiles) -> Rules {
        let cwd = normalize(cwd);
        let roots = spec
            .paths
            .iter()
            .map(|entry| {
                let full = normalize(&cwd.join(entry));
                let comps = components(&full);
                let literal = comps.iter().take_while(|c| !is_glob(c)).count();
                let base: PathBuf = std::iter::once("/".to_string())
                    .chain(comps[..literal].iter().cloned())
                    .collect();
                Root {
                    base,
                    pattern: comps[literal..].to_vec(),
                }
            })
            .collect();
        let mut names: Vec<String> = ALWAYS_IGNORED.iter().map(|s| s.to_string()).collect();
        let mut anchored = Vec::new();
        for entry in &spec.ignore {
            let trimmed = entry.trim_end_matches('/');
            if trimmed.contains('/') {
                anchored.push(components(&normalize(
                    &cwd.join(trimmed.trim_start_matches("./")),
                )));
            } else {
                names.push(trimmed.to_string());
            }
        }
        Rules {
            cwd,
            roots,
            names,
            anchored,
            own: OwnFiles {
                log_dir: normalize(&own.log_dir),
                files: own.files.iter().map(|f| normalize(f)).collect(),
            },
        }
    }

    /// tend's own file, or ignored by the config.
    pub fn is_ignored(&self, path: &Path) -> bool {
        if self.is_own(path) {
            return true;
        }
        let relative = self.relative(path);
        if relative
            .iter()
            .any(|c| self.names.iter().any(|n| segment_matches(n, c)))
        {
            return true;
        }
        let full = components(path);
        self.anchored.iter().any(|p| matches_or_parent(p, &full))
    }

    fn is_own(&self, path: &Path) -> bool {
        if self.own.log_dir != Path::new("/") && path.starts_with(&self.own.log_dir) {
            return true;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        self.own.files.iter().any(|own| {
            own.parent() == Some(dir)
                && own.file_name().is_some_and(|own_name| {
                    name.as_encoded_bytes()
                        .starts_with(own_name.as_encoded_bytes())
                })
        })
    }

    /// A change to `path` (a file, or a folder that went) is one the server restarts for.
    pub fn matches(&self, path: &Path) -> bool {
        !self.is_ignored(path)
            && self
                .roots
                .iter()
                .any(|root| match path.strip_prefix(&root.base) {
                    Ok(_) if root.pattern.is_empty() => true,
                    Ok(rest) => matches_or_parent(&root.pattern, &components(rest)),
                    Err(_) => false,
                })
    }

    /// Files in `dir` may match: it is watched (with what is below it, as far as this holds).
    pub fn wants_dir(&self, dir: &Path) -> bool {
        !self.is_ignored(dir)
            && self
                .roots
                .iter()
                .any(|root| match dir.strip_prefix(&root.base) {
                    Ok(_) if root.pattern.is_empty() => true,
                    Ok(rest) => {
                        let rest = components(rest);
                        matches_or_parent(&root.pattern, &rest)
                            || could_contain(&root.pattern, &rest)
                    }
                    Err(_) => false,
                })
    }

    /// `dir` is on the way to a root that does not exist yet: its creation is worth a look.
    pub fn leads_to_a_root(&self, dir: &Path) -> bool {
        self.roots
            .iter()
            .any(|root| root.base.starts_with(dir) && root.base != dir)
    }

    /// How the timeline names a file: from the cwd when it is below it.
    pub fn describe(&self, path: &Path) -> String {
        match path.strip_prefix(&self.cwd) {
            Ok(rest) if !rest.as_os_str().is_empty() => rest.display().to_string(),
            _ => path.display().to_string(),
        }
    }

    /// The components a name-only ignore is tried on: below the cwd, or else below the root
    /// the path is in, so the folders above a project never make it ignored.
    fn relative(&self, path: &Path) -> Vec<String> {
        if let Ok(rest) = path.strip_prefix(&self.cwd) {
            return components(rest);
        }
        self.roots
            .iter()
            .filter_map(|root| path.strip_prefix(&root.base).ok())
            .map(components)
            .min_by_key(Vec::len)
            .unwrap_or_else(|| components(path))
    }
}

/// `.` and `..` resolved without touching the filesystem (a root may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn components(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(c) => Some(c.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

fn is_glob(component: &str) -> bool {
    component.contains(['*', '?'])
}

/// `*` and `?` within one name.
pub fn segment_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it has taken: the classic one-star
    // backtracking, linear enough for names.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn full_match(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            full_match(rest, path) || (!path.is_empty() && full_match(pattern, &path[1..]))
        }
        Some((first, rest)) => {
            !path.is_empty() && segment_matches(first, &path[0]) && full_match(rest, &path[1..])
        }
    }
}

/// The pattern matches the path or one of the folders it is in.
fn matches_or_parent(pattern: &[String], path: &[String]) -> bool {
    (1..=path.len()).any(|k| full_match(pattern, &path[..k]))
}

/// Something below the folder `dir` could match the pattern.
fn could_contain(pattern: &[String], dir: &[String]) -> bool {
    match (pattern.split_first(), dir.split_first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some((first, _)), Some(_)) if first == "**" => true,
        (Some((first, rest)), Some((name, below))) => {
            segment_matches(first, name) && could_contain(rest, below)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rules(paths: &[&str], ignore: &[&str]) -> Rules {
        let spec = WatchSpec {
            paths: paths.iter().map(|s| s.to_string()).collect(),
            ignore: ignore.iter().map(|s| s.to_string()).collect(),
            debounce: Duration::from_millis(300),
        };
        let own = OwnFiles {
            log_dir: PathBuf::from("/app/.tend/logs"),
            files: vec![
                PathBuf::from("/app/state.json"),
                PathBuf::from("/app/history.json"),
            ],
        };
        Rules::new(Path::new("/app"), &spec, &own)
    }

    #[test]
    fn names_match_with_stars_and_question_marks() {
        let table = [
            ("*.tmp", "a.tmp", true),
            ("*.tmp", "a.tmp.x", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("?.rs", "a.rs", true),
            ("?.rs", "ab.rs", false),
            (".#*", ".#main.rs", true),
            ("node_modules", "node_modules", true),
            ("node_modules", "node_modules2", false),
        ];
        for (pattern, name, want) in table {
            assert_eq!(segment_matches(pattern, name), want, "{pattern} / {name}");
        }
    }

    #[test]
    fn what_a_change_restarts_for() {
        let r = rules(
            &[
                "src",
                "config/*.toml",
                "lib/**/*.rs",
                "package.json",
                "../shared",
            ],
            &["*.tmp", "node_modules", "src/generated"],
        );
        let table = [
            ("/app/src/main.rs", true),
            ("/app/src/deep/er/x.js", true),
            ("/app/src/x.tmp", false),
            ("/app/src/node_modules/a/b.js", false),
            ("/app/src/generated/api.rs", false),
            ("/app/src/.git/index", false),
            ("/app/src/.main.rs.swp", false),
            ("/app/src/main.rs~", false),
            ("/app/src/4913", false),
            ("/app/config/app.toml", true),
            ("/app/config/app.json", false),
            ("/app/config/sub/app.toml", false),
            ("/app/lib/a.rs", true),
            ("/app/lib/a/b/c.rs", true),
            ("/app/lib/a/b/c.js", false),
            ("/app/package.json", true),
            ("/app/package-lock.json", false),
            ("/app/README.md", false),
            ("/shared/util.js", true),
            // tend's own files, whatever the patterns say.
            ("/app/state.json", false),
            ("/app/state.json.lock", false),
            ("/app/.tend/logs/web.log", false),
        ];
        for (path, want) in table {
            assert_eq!(r.matches(Path::new(path)), want, "{path}");
        }
        let own = rules(&["."], &[]);
        assert!(!own.matches(Path::new("/app/.tend/logs/web.log")));
        assert!(!own.matches(Path::new("/app/.tend/process-state.json")));
        assert!(!own.matches(Path::new("/app/state.json.tmp")));
        assert!(!own.matches(Path::new("/app/history.json")));
        assert!(!own.matches(Path::new("/app/history.json.corrupt-1")));
        assert!(own.matches(Path::new("/app/history.md")));
        assert!(own.matches(Path::new("/app/other/state.json")));
        assert!(own.matches(Path::new("/app/server.js")));
    }

    #[test]
    fn which_folders_are_watched() {
        let r = rules(&["src", "config/*.toml", "lib/**/*.rs"], &["node_modules"]);
        let table = [
            ("/app/src", true),
            ("/app/src/a/b", true),
            ("/app/src/node_modules", false),
            ("/app/config", true),
            ("/app/config/sub", false),
            ("/app/lib", true),
            ("/app/lib/a/b", true),
            ("/app", false),
            ("/app/other", false),
            ("/app/.tend/logs", false),
        ];
        for (dir, want) in table {
            assert_eq!(r.wants_dir(Path::new(dir)), want, "{dir}");
        }
        assert!(r.leads_to_a_root(Path::new("/app")));
        assert!(!r.leads_to_a_root(Path::new("/app/src")));
        assert_eq!(r.describe(Path::new("/app/src/a.rs")), "src/a.rs");
        assert_eq!(r.roots[1].base, PathBuf::from("/app/config"));
    }
}
