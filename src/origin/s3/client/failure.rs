//! How S3 requests fail: SDK errors mapped to an [`OriginError`] (errno,
//! S3 error code, message, source) and logged once where they happen, plus
//! the failures of the local side of a transfer (files, tasks).

use std::path::Path;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::S3Client;

/// A body that failed after waiting this long for its next chunk was
/// stalled (a reset or a broken stream fails at once).
const STALL: std::time::Duration = std::time::Duration::from_secs(1);
use crate::error::Errno;
use crate::origin::{OriginError, OriginResult};

impl S3Client {
    /// A response body that must keep coming: a pause of `timeout` between
    /// two chunks is a server that stopped answering (ETIMEDOUT). Not a
    /// bound on the whole body, so a big part over a slow but live link
    /// still arrives.
    pub(super) async fn collect(
        &self,
        op: &str,
        key: &str,
        mut body: ByteStream,
    ) -> OriginResult<Bytes> {
        let mut out = bytes::BytesMut::new();
        loop {
            let waiting = tokio::time::Instant::now();
            let next = waiting + self.timeout;
            match self.finish_by(op, key, next, body.next()).await? {
                None => return Ok(out.freeze()),
                Some(Ok(chunk)) => out.extend_from_slice(&chunk),
                Some(Err(err)) => {
                    tracing::warn!(bucket = %self.bucket, key, op,
                        error = %DisplayErrorContext(&err), "S3 response body failed");
                    // Failing after a long wait for the next chunk is the
                    // SDK's stalled-stream guard: the server stopped answering.
                    let stalled = waiting.elapsed() >= STALL;
                    if stalled {
                        self.stalled();
                    }
                    let errno = if stalled {
                        Errno::ETIMEDOUT
                    } else {
                        Errno::EIO
                    };
                    return Err(OriginError::new(
                        errno,
                        format!("{op} {}/{key}: response body failed: {err}", self.bucket),
                    )
                    .with_source(err));
                }
            }
        }
    }

    /// Maps an SDK error to an [`OriginError`] and logs it once (`warn`;
    /// `debug` for ENOENT and ESTALE, which are answers rather than failures).
    pub(super) fn fail<E>(&self, op: &str, key: &str, err: SdkError<E>) -> OriginError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let errno = classify(&err);
        let code = err.code().map(str::to_string);
        let detail = DisplayErrorContext(&err).to_string();
        if errno == Errno::ENOENT || errno == Errno::ESTALE {
            // Answers, not failures: the caller decides what they mean.
            tracing::debug!(bucket = %self.bucket, key, op, errno = %errno, code = ?code,
                "S3: not found or precondition failed");
        } else {
            tracing::warn!(bucket = %self.bucket, key, op, errno = %errno, code = ?code,
                error = %detail, "S3 request failed");
        }
        let what = code.as_deref().unwrap_or("request failed");
        OriginError::new(
            errno,
            format!("{op} {}/{key}: {what}: {detail}", self.bucket),
        )
        .with_code(code.as_deref())
        .with_source(err)
    }

    /// The server answered something unusable (a broken page, a wrong
    /// range): logged, EIO.
    pub(super) fn broken(&self, op: &str, key: &str, what: &str) -> OriginError {
        tracing::warn!(bucket = %self.bucket, key, op, "{op}: {what}");
        OriginError::new(Errno::EIO, format!("{op} {}/{key}: {what}", self.bucket))
    }

    /// The object is not there (a HEAD said so before a transfer).
    pub(super) fn missing(&self, op: &str, key: &str) -> OriginError {
        OriginError::new(
            Errno::ENOENT,
            format!("{op} {}/{key}: no such object", self.bucket),
        )
    }

    pub(super) fn io_fail(
        &self,
        op: &str,
        key: &str,
        path: &Path,
        err: std::io::Error,
    ) -> OriginError {
        tracing::warn!(bucket = %self.bucket, key, op, path = %path.display(), error = %err,
            "local file error");
        let errno = Errno(err.raw_os_error().unwrap_or(libc::EIO));
        OriginError::new(
            errno,
            format!(
                "{op} {}/{key}: local file {}: {err}",
                self.bucket,
                path.display()
            ),
        )
        .with_source(err)
    }
}

/// The errno of an SDK error.
pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Errno {
    match err {
        SdkError::TimeoutError(_) => Errno::ETIMEDOUT,
        SdkError::DispatchFailure(d) if d.is_timeout() => Errno::ETIMEDOUT,
        SdkError::DispatchFailure(_) => Errno::EIO,
        SdkError::ServiceError(s) => errno_for(s.raw().status().as_u16(), s.err().code()),
        SdkError::ResponseError(r) => errno_for(r.raw().status().as_u16(), None),
        _ => Errno::EIO,
    }
}

pub(super) fn status_of<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The errno of an S3 error answer (HTTP status and S3 error code).
pub fn errno_for(status: u16, code: Option<&str>) -> Errno {
    match code {
        // A missing bucket is a configuration problem, not a missing file.
        Some("NoSuchBucket") => return Errno::EIO,
        Some("NoSuchKey" | "NotFound") => return Errno::ENOENT,
        Some("AccessDenied" | "Forbidden" | "AllAccessDisabled") => return Errno::EACCES,
        // A conditional write raced with another one.
        Some("PreconditionFailed" | "ConditionalRequestConflict") => return Errno::ESTALE,
        Some("RequestTimeout") => return Errno::ETIMEDOUT,
        _ => {}
    }
    match status {
        404 => Errno::ENOENT,
        401 | 403 => Errno::EACCES,
        412 => Errno::ESTALE,
        408 | 504 => Errno::ETIMEDOUT,
        _ => Errno::EIO,
    }
}

/// Runs blocking file I/O off the async workers.
pub(super) async fn blocking<F>(f: F) -> OriginResult<()>
where
    F: FnOnce() -> std::io::Result<()> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res.map_err(|e| {
            tracing::warn!(error = %e, "S3 download: local file error");
            OriginError::from(e)
        }),
        Err(e) => Err(join_failed(e)),
    }
}

pub(super) fn join_result<T>(
    res: Result<OriginResult<T>, tokio::task::JoinError>,
) -> OriginResult<T> {
    res.unwrap_or_else(|e| Err(join_failed(e)))
}

fn join_failed(e: tokio::task::JoinError) -> OriginError {
    tracing::warn!(error = %e, "S3 part task failed");
    OriginError::new(Errno::EIO, format!("S3 part task failed: {e}")).with_source(e)
}
