//! The top-level error of start-up and the CLI. `Display` prints only this layer; `source()`
//! returns the cause, and [`report`] joins the chain (like anyhow's `{:#}`).

use std::fmt;
use std::io;

use crate::config::ConfigErrors;

#[derive(Debug)]
pub enum Error {
    /// An I/O step failed; `what` says which.
    Io { what: String, source: io::Error },
    /// The config file is invalid (exit code 1).
    Config(ConfigErrors),
    /// The command line is wrong (exit code 2, usage printed).
    Usage(String),
    /// The running tend answered with an error (its message, its HTTP status).
    Api { status: u16, message: String },
    /// Anything else, said in words.
    Other(String),
}

impl Error {
    pub fn other(message: impl Into<String>) -> Error {
        Error::Other(message.into())
    }

    /// The process exit code: 2 for usage and for tend failing (an API 5xx), 1 otherwise (a bad
    /// config, a refused request).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Api { status, .. } if *status >= 500 => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, .. } => f.write_str(what),
            Error::Config(errors) => write!(f, "{errors}"),
            Error::Usage(message) => f.write_str(message),
            Error::Api { message, .. } => f.write_str(message),
            Error::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigErrors> for Error {
    fn from(errors: ConfigErrors) -> Error {
        Error::Config(errors)
    }
}

/// Adds a description of the failed step to an `io::Result`.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, Error>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, io::Error> {
    fn context(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            what: what.into(),
            source,
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            what: what().into(),
            source,
        })
    }
}

/// The whole error chain on one line: "reading config: No such file or directory (os error 2)".
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_joins_the_chain_once() {
        let error = Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "gone"))
            .context("reading tend.json")
            .unwrap_err();
        assert_eq!(report(&error), "reading tend.json: gone");
    }
}
