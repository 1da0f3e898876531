//! The one error type of the workflow layer: an errno, the message users see
//! (outcomes, webhook payloads and logs carry it verbatim) and the cause.

use std::io;

use crate::error::Errno;
use crate::proc::ProcError;

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a task, a template, an `onComplete` action or a webhook failed.
/// `Display` is the message alone, exactly as before this type existed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WorkflowError {
    errno: Errno,
    message: String,
    #[source]
    source: Option<Cause>,
}

pub type WorkflowResult<T> = Result<T, WorkflowError>;

impl WorkflowError {
    /// A failure with no lower-level cause (bad template, HTTP status…).
    pub fn new(errno: Errno, message: impl Into<String>) -> WorkflowError {
        WorkflowError {
            errno,
            message: message.into(),
            source: None,
        }
    }

    /// `"{message}: {source}"`, keeping the source and its errno.
    pub fn io(message: impl Into<String>, source: io::Error) -> WorkflowError {
        WorkflowError {
            errno: Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            message: format!("{}: {source}", message.into()),
            source: Some(Box::new(source)),
        }
    }

    /// The message, the errno and the cause of a lower layer's error.
    pub fn wrap(
        errno: Errno,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> WorkflowError {
        WorkflowError {
            errno,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The same error with `prefix: ` in front of its message.
    pub fn context(mut self, prefix: impl std::fmt::Display) -> WorkflowError {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    pub fn errno(&self) -> Errno {
        self.errno
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ProcError> for WorkflowError {
    fn from(e: ProcError) -> Self {
        WorkflowError::wrap(e.errno(), e.to_string(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_errno_and_source_are_kept_through_context() {
        let io = io::Error::from_raw_os_error(libc::ENOENT);
        let e = WorkflowError::io("cannot open /x", io).context("task 0");
        assert_eq!(e.errno(), Errno::ENOENT);
        assert!(e.to_string().starts_with("task 0: cannot open /x: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let plain = WorkflowError::new(Errno::EINVAL, "bad");
        assert_eq!(plain.to_string(), "bad");
        assert!(std::error::Error::source(&plain).is_none());
    }
}
