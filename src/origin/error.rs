//! The one error type of the origin layer: [`OriginError`] carries the errno
//! the file system answers with, the S3 error code when a server sent one
//! (`NoSuchKey`, `SlowDown`, …), a message with the context (operation,
//! bucket, key) and the underlying error as its source. The local origin's
//! syscall path keeps a bare [`Errno`] (that is all a syscall says); the
//! S3 side returns an `OriginError`, so whoever handles a failure can log it
//! once with what it was about, and `?` turns it into an `Errno` at the
//! file-system boundary.

use crate::error::Errno;

type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed origin operation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OriginError {
    errno: Errno,
    code: Option<String>,
    message: String,
    #[source]
    source: Option<BoxedSource>,
}

pub type OriginResult<T> = Result<T, OriginError>;

impl OriginError {
    pub fn new(errno: Errno, message: impl Into<String>) -> OriginError {
        OriginError {
            errno,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    /// The S3 error code the server answered with.
    pub fn with_code(mut self, code: Option<&str>) -> OriginError {
        self.code = code.map(str::to_string);
        self
    }

    pub fn with_source(mut self, source: impl Into<BoxedSource>) -> OriginError {
        self.source = Some(source.into());
        self
    }

    /// The same failure answered with another errno (e.g. a failed
    /// `If-None-Match: *` means "exists").
    pub fn with_errno(mut self, errno: Errno) -> OriginError {
        self.errno = errno;
        self
    }

    /// The message prefixed with what was being done: `"{what}: {message}"`.
    pub fn context(mut self, what: impl std::fmt::Display) -> OriginError {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// What the file system answers with.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// The S3 error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<OriginError> for Errno {
    fn from(e: OriginError) -> Errno {
        e.errno
    }
}

/// An errno from below (path checks, the local side) where nothing more is
/// known: the message is the errno's text.
impl From<Errno> for OriginError {
    fn from(errno: Errno) -> OriginError {
        OriginError::new(errno, errno.to_string())
    }
}

impl From<std::io::Error> for OriginError {
    fn from(e: std::io::Error) -> OriginError {
        let errno = Errno(e.raw_os_error().unwrap_or(libc::EIO));
        OriginError::new(errno, e.to_string()).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_errno_code_message_and_source() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = OriginError::new(Errno::EIO, "PutObject b/k: SlowDown")
            .with_code(Some("SlowDown"))
            .with_source(io);
        assert_eq!(e.errno(), Errno::EIO);
        assert_eq!(e.code(), Some("SlowDown"));
        assert_eq!(e.to_string(), "PutObject b/k: SlowDown");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(Errno::from(e), Errno::EIO);
    }

    #[test]
    fn from_io_keeps_the_os_errno() {
        let e = OriginError::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.errno(), Errno(libc::ENOSPC));
        let e = OriginError::from(std::io::Error::other("no errno"));
        assert_eq!(e.errno(), Errno::EIO);
        assert_eq!(OriginError::from(Errno::ENOENT).errno(), Errno::ENOENT);
    }
}
