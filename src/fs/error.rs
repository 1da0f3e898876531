//! The error type of the file-system core. The kernel only ever gets the
//! errno; the message and the source are for the one log line the FUSE glue
//! writes about a failed request (and for tests that ask why).
//!
//! Origins still answer with a bare [`Errno`]; `From<Errno>` lets `?` lift
//! those into an [`FsError`], and `PartialEq<Errno>` keeps comparisons such
//! as `e == Errno::ENOENT` reading as before.

use std::borrow::Cow;
use std::fmt;

use crate::error::Errno;

/// Any error that can explain an [`FsError`]: a workflow's reason, a store
/// failure, an I/O error of the daemon's own files.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How bad a failed request is, which decides the level it is logged at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// An answer POSIX programs expect and handle (ENOENT for a probe,
    /// EEXIST for O_EXCL, ENOTEMPTY for rmdir …): debug.
    Expected,
    /// The request could not be done for a reason worth telling an operator
    /// (EIO from a backend, a pre workflow that aborted): warn.
    Failure,
    /// The daemon's own machinery failed and data may be at risk (a staged
    /// write that cannot be published or kept): error.
    Fault,
}

/// A failed file-system operation: the errno for the kernel, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.display_text())]
pub struct FsError {
    errno: Errno,
    message: Option<Cow<'static, str>>,
    #[source]
    source: Option<BoxError>,
    fault: bool,
}

/// The core's result type.
pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn new(errno: Errno) -> FsError {
        FsError {
            errno,
            message: None,
            source: None,
            fault: false,
        }
    }

    /// An error with a message, e.g. `FsError::msg(Errno::EIO, "…")`.
    pub fn msg(errno: Errno, message: impl Into<Cow<'static, str>>) -> FsError {
        FsError::new(errno).context(message)
    }

    /// Adds what was being done; an earlier message becomes its tail
    /// (`outer: inner`).
    pub fn context(mut self, message: impl Into<Cow<'static, str>>) -> FsError {
        let message = message.into();
        self.message = Some(match self.message.take() {
            Some(inner) => format!("{message}: {inner}").into(),
            None => message,
        });
        self
    }

    /// Adds the error behind this one.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> FsError {
        self.source = Some(source.into());
        self
    }

    /// Marks the error as a failure of the daemon's own machinery.
    pub fn fault(mut self) -> FsError {
        self.fault = true;
        self
    }

    pub fn errno(&self) -> Errno {
        self.errno
    }

    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// How the FUSE glue logs this error. An errno POSIX callers routinely
    /// get is expected, unless the core explained it (a message or a source
    /// means something went wrong on the daemon's side).
    pub fn severity(&self) -> Severity {
        if self.fault {
            Severity::Fault
        } else if self.message.is_none() && self.source.is_none() && expected(self.errno) {
            Severity::Expected
        } else {
            Severity::Failure
        }
    }

    /// The whole story for a log line: message, errno, then every source.
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }

    fn display_text(&self) -> String {
        match &self.message {
            Some(m) => m.to_string(),
            None => self.errno.to_string(),
        }
    }
}

/// Errnos that are ordinary answers to ordinary requests.
fn expected(e: Errno) -> bool {
    [
        libc::ENOENT,
        libc::EEXIST,
        libc::ENOTEMPTY,
        libc::ENOTDIR,
        libc::EISDIR,
        libc::EACCES,
        libc::EPERM,
        libc::EROFS,
        libc::EXDEV,
        libc::EBUSY,
        libc::EINVAL,
        libc::ENAMETOOLONG,
        libc::ENODATA,
        libc::ENOTSUP,
        libc::ENOSYS,
        libc::ERANGE,
        libc::E2BIG,
        libc::ELOOP,
        libc::EMLINK,
        libc::ENXIO,
        libc::EBADF,
        libc::ESTALE,
        libc::EFBIG,
        libc::EOVERFLOW,
        libc::ETXTBSY,
        libc::EAGAIN,
        libc::EINTR,
    ]
    .contains(&e.0)
}

impl From<Errno> for FsError {
    fn from(e: Errno) -> Self {
        FsError::new(e)
    }
}

/// Only the errno of an I/O error is kept: callers that want the error
/// itself in the log attach it with [`FsError::with_source`].
impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError::new(Errno::from(e))
    }
}

impl From<nix::errno::Errno> for FsError {
    fn from(e: nix::errno::Errno) -> Self {
        FsError::new(Errno::from(e))
    }
}

impl PartialEq<Errno> for FsError {
    fn eq(&self, other: &Errno) -> bool {
        self.errno == *other
    }
}

impl PartialEq<FsError> for Errno {
    fn eq(&self, other: &FsError) -> bool {
        *self == other.errno
    }
}

/// See [`FsError::report`].
pub struct Report<'a>(&'a FsError);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        match &e.message {
            Some(m) => write!(f, "{m} ({})", e.errno)?,
            None => write!(f, "{}", e.errno)?,
        }
        let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = next {
            write!(f, ": {s}")?;
            next = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message_or_the_errno() {
        assert_eq!(
            FsError::new(Errno::ENOENT).to_string(),
            Errno::ENOENT.to_string()
        );
        let e = FsError::msg(Errno::EINVAL, "--bucket x: no enabled bucket has that name");
        assert_eq!(e.to_string(), "--bucket x: no enabled bucket has that name");
        assert_eq!(
            e.context("outer").to_string(),
            "outer: --bucket x: no enabled bucket has that name"
        );
    }

    #[test]
    fn report_carries_the_sources() {
        let e = FsError::msg(Errno::EIO, "pre onPut workflow aborted")
            .with_source("task resize: exit status 1");
        let r = e.report().to_string();
        assert!(r.starts_with("pre onPut workflow aborted ("), "{r}");
        assert!(r.ends_with("): task resize: exit status 1"), "{r}");
        assert_eq!(e, Errno::EIO);
    }

    #[test]
    fn severity_by_errno_and_explanation() {
        assert_eq!(FsError::new(Errno::ENOENT).severity(), Severity::Expected);
        assert_eq!(
            FsError::new(Errno::ENOTEMPTY).severity(),
            Severity::Expected
        );
        assert_eq!(FsError::new(Errno::EIO).severity(), Severity::Failure);
        assert_eq!(FsError::new(Errno::ETIMEDOUT).severity(), Severity::Failure);
        assert_eq!(
            FsError::msg(Errno::EACCES, "cannot create a staging file").severity(),
            Severity::Failure
        );
        assert_eq!(FsError::new(Errno::EIO).fault().severity(), Severity::Fault);
        let io = std::io::Error::from_raw_os_error(libc::EEXIST);
        assert_eq!(FsError::from(io).severity(), Severity::Expected);
    }
}
