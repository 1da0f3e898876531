//! The error of the event engine: what could not be set up, with the cause.

use std::io;
use std::path::PathBuf;

use crate::error::Errno;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A state directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The journal could not be opened (in use, unreadable, too new).
    #[error("cannot open the journal in {}: {source}", state_dir.display())]
    Journal {
        state_dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An event's filter does not compile.
    #[error("bucket {bucket} {event}: filter: {message}")]
    Filter {
        bucket: String,
        event: &'static str,
        message: String,
    },
}

impl EventError {
    pub fn errno(&self) -> Errno {
        match self {
            EventError::CreateDir { source, .. } | EventError::Journal { source, .. } => {
                Errno(source.raw_os_error().unwrap_or(libc::EIO))
            }
            EventError::Filter { .. } => Errno::EINVAL,
        }
    }
}
