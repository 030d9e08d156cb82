//! The API token (docs/DESIGN.md §8): where it comes from (`TEND_TOKEN`, the config's `auth_token`, or a
//! token generated once and kept in `token` beside the state file), whether tend may listen
//! where it was asked to, and a constant-time comparison. Runs on the main thread at start-up
//! and on HTTP threads (comparison). It never logs a token.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::AuthSetting;
use crate::logs::paths::ensure_private_dir;

/// The environment variable children must never inherit: it carries tend's API token.
pub const TOKEN_VAR: &str = "TEND_TOKEN";

/// Where the token of a run came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Environment,
    Config,
    File(PathBuf),
}

/// The outcome of resolving auth for one `tend up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `"auth_token": "none"` on a loopback address.
    Off,
    On {
        token: String,
        source: TokenSource,
    },
}

impl Auth {
    pub fn token(&self) -> Option<&str> {
        match self {
            Auth::Off => None,
            Auth::On { token, .. } => Some(token),
        }
    }
}

/// The token file of a state file: `token` in the same folder (docs/DESIGN.md §8a).
pub fn token_path(state_file: &Path) -> PathBuf {
    state_file.with_file_name("token")
}

/// Decides auth for a run. `env_token` is `TEND_TOKEN` (it wins over the config). A non-loopback
/// listen needs a token someone chose (config or environment): a generated one would sit in a
/// file the remote user cannot read, and "none" would open a remote shell to the network.
pub fn resolve(
    setting: &AuthSetting,
    env_token: Option<String>,
    listen: SocketAddr,
    state_file: &Path,
) -> Result<Auth, String> {
    let loopback = listen.ip().is_loopback();
    if let Some(token) = env_token.filter(|t| !t.is_empty()) {
        check_token(&token).map_err(|e| format!("{TOKEN_VAR}: {e}"))?;
        return Ok(Auth::On {
            token,
            source: TokenSource::Environment,
        });
    }
    match setting {
        AuthSetting::Token(token) => Ok(Auth::On {
            token: token.clone(),
            source: TokenSource::Config,
        }),
        AuthSetting::Disabled if loopback => Ok(Auth::Off),
        AuthSetting::Disabled | AuthSetting::Default if !loopback => Err(format!(
            "refusing to listen on {listen} without a token: anyone who can reach that address \
             could start, stop and kill processes as this user. Set \"auth_token\" in the config \
             or {TOKEN_VAR} in the environment to a long random secret (e.g. `head -c 32 \
             /dev/urandom | base64`), or listen on 127.0.0.1"
        )),
        AuthSetting::Disabled | AuthSetting::Default => {
            let path = token_path(state_file);
            let token = load_or_create(&path).map_err(|e| {
                format!(
                    "cannot read or create the token file {}: {e}",
                    path.display()
                )
            })?;
            Ok(Auth::On {
                token,
                source: TokenSource::File(path),
            })
        }
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token must not contain spaces or control characters".into());
    }
    if token.len() > 512 {
        return Err("the token is longer than 512 bytes".into());
    }
    Ok(())
}

/// Reads the token file, or creates it (mode 0600) with a fresh random token, so the dashboard
/// URL stays the same across restarts.
fn load_or_create(path: &Path) -> io::Result<String> {
    match std::fs::File::open(path) {
        Ok(mut file) => {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            let token = text.trim().to_string();
            if token.is_empty() || check_token(&token).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the file holds no valid token (delete it to get a new one)",
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                ensure_private_dir(dir)?;
            }
            let token = random_token()?;
            // create_new: two tends racing never overwrite each other's token.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(file, "{token}")?;
            file.sync_all()?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// 32 random bytes from the kernel, hex-encoded.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most `len - filled` bytes into our buffer at `filled`.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without an early exit, so the time taken says nothing about how much matched.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, &byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        difference |= usize::from(byte ^ other);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret-and-more", b"secret"));
        assert!(!constant_time_eq(b"sec", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn token_comes_from_env_then_config_then_a_file_made_once() {
        let dir = TempDir::new("auth-sources");
        // Not there yet: resolving makes the folder.
        let state = dir.join("tend").join("state.json");
        let local: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let config = AuthSetting::Token("from-config".into());
        let auth = resolve(&config, Some("from-env".into()), local, &state).unwrap();
        assert_eq!(auth.token(), Some("from-env"));
        let auth = resolve(&config, None, local, &state).unwrap();
        assert_eq!(auth.token(), Some("from-config"));

        let first = resolve(&AuthSetting::Default, None, local, &state).unwrap();
        let second = resolve(&AuthSetting::Default, None, local, &state).unwrap();
        assert_eq!(first, second, "the generated token survives restarts");
        assert_eq!(first.token().unwrap().len(), 64);
        let path = token_path(&state);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn no_auth_only_on_loopback_and_network_needs_a_chosen_token() {
        let dir = TempDir::new("auth-network");
        // Not there yet: resolving makes the folder.
        let state = dir.join("tend").join("state.json");
        let local: SocketAddr = "[::1]:7070".parse().unwrap();
        let open: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(
            resolve(&AuthSetting::Disabled, None, local, &state),
            Ok(Auth::Off)
        );
        let refused = resolve(&AuthSetting::Disabled, None, open, &state).unwrap_err();
        assert!(
            refused.contains("auth_token") && refused.contains("TEND_TOKEN"),
            "{refused}"
        );
        assert!(resolve(&AuthSetting::Default, None, open, &state).is_err());
        let chosen = resolve(&AuthSetting::Default, Some("s3cret".into()), open, &state).unwrap();
        assert_eq!(chosen.token(), Some("s3cret"));
        assert!(resolve(&AuthSetting::Default, Some("a b".into()), local, &state).is_err());
        assert!(
            !token_path(&state).exists(),
            "nothing generated for a refused start"
        );
    }
}
