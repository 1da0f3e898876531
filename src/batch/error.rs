//! The one error type of batch scans and runs: what stopped a scan, with
//! the errno behind it and the message the user sees.

use crate::error::Errno;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The scan's lock is held by another run (the daemon or another
    /// `storgate batch run`).
    #[error("already running")]
    Busy,
    /// The scan path or its listing failed with `errno`.
    #[error("{message}")]
    Scan { errno: Errno, message: String },
    /// A file of the run under `stateDir` (cursor, lock) failed.
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// The config does not name what the run needs.
    #[error("{message}")]
    Config { message: String },
    /// The event's filter does not compile.
    #[error("{message}")]
    Filter { message: String },
}

impl BatchError {
    pub fn scan(errno: Errno, message: impl Into<String>) -> BatchError {
        BatchError::Scan {
            errno,
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> BatchError {
        BatchError::Config {
            message: message.into(),
        }
    }

    pub fn io(message: impl Into<String>, source: std::io::Error) -> BatchError {
        BatchError::Io {
            message: message.into(),
            source,
        }
    }

    pub fn errno(&self) -> Errno {
        match self {
            BatchError::Busy => Errno::EBUSY,
            BatchError::Scan { errno, .. } => *errno,
            BatchError::Io { source, .. } => Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            BatchError::Config { .. } | BatchError::Filter { .. } => Errno::EINVAL,
        }
    }
}

/// A state file's failure as the run reports it: a held lock is
/// [`BatchError::Busy`], anything else an I/O error with its message.
impl From<crate::state::StateError> for BatchError {
    fn from(e: crate::state::StateError) -> BatchError {
        match e {
            crate::state::StateError::Busy { .. } => BatchError::Busy,
            crate::state::StateError::Io { ref source, .. } => {
                let source = std::io::Error::new(source.kind(), source.to_string());
                BatchError::io(e.to_string(), source)
            }
        }
    }
}
