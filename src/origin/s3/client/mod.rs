//! The async S3 layer under an S3 origin: one [`S3Client`] per `aws_s3`
//! endpoint, wrapping `aws_sdk_s3::Client` with
//!
//! * errno semantics: every call fails with an [`OriginError`] whose errno
//!   is 404 → ENOENT, 403 → EACCES, 412 → ESTALE, timeouts → ETIMEDOUT,
//!   anything else → EIO, with the S3 error code and the SDK error as its
//!   source; the failure is logged once where it happens (`tracing::warn!`,
//!   with bucket and key — never credentials; ENOENT and ESTALE, being
//!   answers, at `debug`) — see `failure`;
//! * bounded time: every request ends within the endpoint's `timeout`, the
//!   SDK's retries included, and a response body must keep coming (no pause
//!   of `timeout`) (`deadline`); once a request got no answer the endpoint counts as
//!   silent: later requests fail at once, but for one probe now and then,
//!   until the server answers again (`health`). So a dead or hung server
//!   fails a client's call within about `timeout`, not once per request;
//! * the multi-request operations: paged listing to the end, parallel ranged
//!   download into a file, multipart upload (parallel parts, aborted on
//!   failure) and multipart server-side copy above 5 GiB;
//! * conditional writes (`If-None-Match: *`, `If-Match`) for leases.
//!
//! The code is split by what it owns: `objects` (HEAD, GET, PUT, DELETE),
//! `listing`, `multipart` (uploads and copies in parts), `timeouts` (the
//! SDK's timeout and retry policy), `deadline` and `health` (the bound of
//! each request) and `failure` (error mapping).
//!
//! ETags are kept exactly as the server sends them (with their quotes), so an
//! ETag from [`S3Client::head`] or a listing can be passed back as `If-Match`.

mod deadline;
mod failure;
mod health;
mod listing;
mod multipart;
mod objects;
#[cfg(test)]
mod tests;
mod timeouts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

pub use failure::{classify, errno_for};
pub use multipart::{copy_source, part_size, plan_parts};
pub use objects::parse_content_range;

use crate::config::S3Endpoint;
use crate::error::Errno;
use crate::origin::{OriginError, OriginResult};

pub const MIB: u64 = 1 << 20;
/// Objects up to this size are uploaded with one PutObject.
pub const SINGLE_PUT_MAX: u64 = 8 * MIB;
/// Smallest part of a multipart upload (S3's own minimum is 5 MiB).
pub const MIN_UPLOAD_PART: u64 = 8 * MIB;
/// S3's limit on the number of parts of one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// Part requests (upload, copy, download) in flight per operation.
pub const PARTS_IN_FLIGHT: usize = 8;
/// Objects above this size are copied part by part (S3's CopyObject limit).
pub const COPY_SINGLE_MAX: u64 = 5 * 1024 * MIB;
/// Smallest part of a multipart copy.
pub const MIN_COPY_PART: u64 = 512 * MIB;
/// Range size of the parallel parts of [`S3Client::get_to_file`].
pub const DOWNLOAD_PART: u64 = 8 * MIB;
/// Used when an endpoint's `timeout` is zero.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The precondition of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond<'a> {
    /// Unconditional.
    Always,
    /// Only if the key does not exist (`If-None-Match: *`); else EEXIST.
    Absent,
    /// Only if the object has this ETag (`If-Match`); else ESTALE.
    Match(&'a str),
}

impl Cond<'_> {
    /// `(If-Match, If-None-Match)`
    fn headers(self) -> (Option<String>, Option<String>) {
        match self {
            Cond::Always => (None, None),
            Cond::Absent => (None, Some("*".to_string())),
            Cond::Match(etag) => (Some(etag.to_string()), None),
        }
    }

    /// A failed precondition of `Absent` means "exists".
    fn errno(self, e: OriginError) -> OriginError {
        if self == Cond::Absent && e.errno() == Errno::ESTALE {
            e.with_errno(Errno::EEXIST)
        } else {
            e
        }
    }
}

/// One object, from HEAD or from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// As the server sends it, quotes included.
    pub etag: String,
    pub last_modified: SystemTime,
    /// `x-amz-meta-*` headers: names lower-case, without the prefix. Always
    /// empty in listings (S3 does not list user metadata).
    pub user: HashMap<String, String>,
}

/// One page of ListObjectsV2 (or all pages, from [`S3Client::list_all`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes (with their trailing delimiter), when a delimiter was given.
    pub prefixes: Vec<String>,
    /// Continuation token of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// An S3 bucket reached through one `aws_s3` endpoint. Cheap to clone (the
/// SDK client is reference-counted inside).
#[derive(Clone)]
pub struct S3Client {
    inner: aws_sdk_s3::Client,
    bucket: String,
    timeout: Duration,
    /// The endpoint URL (or `AWS S3 (REGION)`), for messages.
    url: String,
    /// Shared by the clones: one endpoint, one state.
    health: Arc<health::Health>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("bucket", &self.bucket)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// Builds the client for `ep`. Credentials: the explicit keys, else the
    /// named profile, else the SDK's default chain (environment, profile,
    /// instance role). With an `endpoint` and no `region`, the region is
    /// `us-east-1`. Makes no request.
    pub async fn connect(ep: &S3Endpoint) -> OriginResult<S3Client> {
        let timeout = if ep.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            ep.timeout
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts::timeout_config(timeout))
            .retry_config(timeouts::retry_config(timeout));
        let region = ep
            .region
            .clone()
            .or_else(|| ep.endpoint.as_ref().map(|_| "us-east-1".to_string()));
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = &ep.endpoint {
            // S3-compatible servers often reject the SDK's default trailing
            // checksums (aws-chunked bodies); ask for checksums only where
            // the operation requires them.
            loader = loader
                .endpoint_url(url.clone())
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        match (&ep.access_key_id, &ep.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.expose(),
                    secret.expose(),
                    None,
                    None,
                    "storgate-config",
                ));
            }
            (None, None) => {
                if let Some(profile) = &ep.profile {
                    loader = loader.profile_name(profile.clone());
                }
            }
            _ => {
                return Err(OriginError::new(
                    Errno::EINVAL,
                    format!(
                        "aws_s3 {:?}: accessKeyId and secretAccessKey must be given together",
                        ep.name
                    ),
                ));
            }
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(OriginError::new(
                Errno::EINVAL,
                format!(
                    "aws_s3 {:?}: no region (set \"region\", AWS_REGION or a profile region)",
                    ep.name
                ),
            ));
        }
        let url = match &ep.endpoint {
            Some(u) => u.clone(),
            None => format!(
                "AWS S3 ({})",
                shared.region().map(|r| r.as_ref()).unwrap_or("?")
            ),
        };
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(ep.force_path_style)
            .build();
        Ok(S3Client {
            inner: aws_sdk_s3::Client::from_conf(conf),
            bucket: ep.bucket.clone(),
            timeout,
            url,
            health: Arc::new(health::Health::default()),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The per-request timeout this client was built with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoint URL, or `AWS S3 (REGION)`.
    pub fn url(&self) -> &str {
        &self.url
    }
}
