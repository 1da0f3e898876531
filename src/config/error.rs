//! The one error type of the configuration layer: a problem located by its
//! JSON path (or `line L, column C` for syntax errors, or the file name when
//! it cannot be read).

use crate::error::Errno;

/// One problem found in a configuration. `Display` gives `{path}: {message}`
/// (just the message when the path is empty: the whole document, or a value
/// checked before the validator knows where it sits — see [`ConfigError::at`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", located(path, message))]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

fn located(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

impl ConfigError {
    /// A problem of one value, not yet placed (the small parsers return
    /// these; the validator places them with [`ConfigError::at`]).
    pub fn value(message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: String::new(),
            message: message.into(),
        }
    }

    /// The same problem, located at `path`.
    pub fn at(self, path: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: self.message,
        }
    }

    /// A configuration problem is always an invalid argument.
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}

/// For callers that still pass errors on as text (the CLI edge; the batch
/// job until it has its own error type).
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}
