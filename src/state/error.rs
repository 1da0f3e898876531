//! The error of the durable-state layer: what could not be done to which
//! file, with the I/O error underneath.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::Errno;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O call on a state file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A lock file is held by another process (or another open in this one).
    #[error("{} is in use by another process", path.display())]
    Busy { path: PathBuf },
}

impl StateError {
    /// `what` failed on `path` with `source`.
    pub fn io(what: &'static str, path: &Path, source: io::Error) -> StateError {
        StateError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn errno(&self) -> Errno {
        match self {
            StateError::Io { source, .. } => Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            StateError::Busy { .. } => Errno(libc::EWOULDBLOCK),
        }
    }

    /// The `io::ErrorKind` this error maps to (`WouldBlock` when busy).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            StateError::Io { source, .. } => source.kind(),
            StateError::Busy { .. } => io::ErrorKind::WouldBlock,
        }
    }
}

impl From<StateError> for io::Error {
    fn from(e: StateError) -> io::Error {
        io::Error::new(e.kind(), e.to_string())
    }
}
