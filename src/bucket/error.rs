//! The one error type of the bucket layer: building buckets from the config,
//! and the workflow store's reads and writes. Each carries the errno a
//! caller may act on and the message a user sees.

use crate::error::Errno;

/// What a bucket-layer operation failed with.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The config names something that cannot be built (EINVAL).
    #[error("{message}")]
    Config { message: String },
    /// An origin call failed with `errno`.
    #[error("{message}")]
    Origin { errno: Errno, message: String },
    /// A local file (temporary file, output) could not be read or written.
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// The caller's producer of an output failed; its message is kept as is.
    #[error(transparent)]
    Produce(Box<dyn std::error::Error + Send + Sync>),
}

/// What a producer of an output returns (see [`crate::bucket::store::Store::write`]).
pub type ProduceResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

impl BucketError {
    pub fn config(message: impl Into<String>) -> BucketError {
        BucketError::Config {
            message: message.into(),
        }
    }

    /// `what path: errno`, the form of every origin failure message.
    pub fn origin(what: &str, path: &str, errno: Errno) -> BucketError {
        BucketError::Origin {
            errno,
            message: format!("{what} {path:?}: {errno}"),
        }
    }

    pub fn io(message: impl Into<String>, source: std::io::Error) -> BucketError {
        BucketError::Io {
            message: message.into(),
            source,
        }
    }

    pub fn errno(&self) -> Errno {
        match self {
            BucketError::Config { .. } => Errno::EINVAL,
            BucketError::Origin { errno, .. } => *errno,
            BucketError::Io { source, .. } => Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            BucketError::Produce(_) => Errno::EIO,
        }
    }
}
