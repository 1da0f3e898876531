//! The async S3 layer under an S3 origin: one [`S3Client`] per `aws_s3`
//! endpoint, wrapping `aws_sdk_s3::Client` with
//!
//! * errno semantics: every call fails with an [`Errno`] (404 → ENOENT,
//!   403 → EACCES, 412 → ESTALE, timeouts → ETIMEDOUT, anything else → EIO);
//!   the underlying error is logged once (`tracing::warn!`, with bucket and
//!   key — never credentials; ENOENT and ESTALE, being answers, at `debug`);
//! * bounded time: the endpoint's `timeout` is the SDK's operation timeout and
//!   also bounds reading a response body, retries are few and short, so a dead
//!   or hung server fails a call within about `timeout`;
//! * the multi-request operations: paged listing to the end, parallel ranged
//!   download into a file, multipart upload (parallel parts, aborted on
//!   failure) and multipart server-side copy above 5 GiB;
//! * conditional writes (`If-None-Match: *`, `If-Match`) for leases.
//!
//! ETags are kept exactly as the server sends them (with their quotes), so an
//! ETag from [`S3Client::head`] or a listing can be passed back as `If-Match`.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::config::S3Endpoint;
use crate::error::Errno;

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
    fn errno(self, e: Errno) -> Errno {
        if self == Cond::Absent && e == Errno::ESTALE {
            Errno::EEXIST
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
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("bucket", &self.bucket)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// Builds the client for `ep`. Credentials: the explicit keys, else the
    /// named profile, else the SDK's default chain (environment, profile,
    /// instance role). With an `endpoint` and no `region`, the region is
    /// `us-east-1`. Makes no request.
    pub async fn connect(ep: &S3Endpoint) -> Result<S3Client, String> {
        let timeout = if ep.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            ep.timeout
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeout_config(timeout))
            .retry_config(retry_config(timeout));
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
                return Err(format!(
                    "aws_s3 {:?}: accessKeyId and secretAccessKey must be given together",
                    ep.name
                ));
            }
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(format!(
                "aws_s3 {:?}: no region (set \"region\", AWS_REGION or a profile region)",
                ep.name
            ));
        }
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(ep.force_path_style)
            .build();
        Ok(S3Client {
            inner: aws_sdk_s3::Client::from_conf(conf),
            bucket: ep.bucket.clone(),
            timeout,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The per-request timeout this client was built with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// HeadObject. `Ok(None)` when the object does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, Errno> {
        self.head_if(key, None).await
    }

    /// HeadObject with an optional `If-Match` (mismatch → ESTALE).
    pub async fn head_if(
        &self,
        key: &str,
        if_match: Option<&str>,
    ) -> Result<Option<ObjectMeta>, Errno> {
        let res = self
            .inner
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: to_size(out.content_length()),
                etag: out.e_tag().unwrap_or_default().to_string(),
                last_modified: to_system_time(out.last_modified()),
                user: user_meta(out.metadata()),
            })),
            Err(err) if classify(&err) == Errno::ENOENT => Ok(None),
            Err(err) => Err(self.fail("HeadObject", key, err)),
        }
    }

    /// One ListObjectsV2 request.
    pub async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, Errno> {
        let out = self
            .inner
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_start_after(start_after.map(str::to_string))
            .set_continuation_token(token)
            .set_max_keys(max_keys)
            .send()
            .await
            .map_err(|e| self.fail("ListObjectsV2", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: o.key()?.to_string(),
                    size: to_size(o.size()),
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    last_modified: to_system_time(o.last_modified()),
                    user: HashMap::new(),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_string))
            .collect();
        let next = if out.is_truncated() == Some(true) {
            match out.next_continuation_token() {
                Some(t) if !t.is_empty() => Some(t.to_string()),
                _ => {
                    tracing::warn!(bucket = %self.bucket, prefix,
                        "ListObjectsV2: truncated page without a continuation token");
                    return Err(Errno::EIO);
                }
            }
        } else {
            None
        };
        Ok(ListPage {
            objects,
            prefixes,
            next,
        })
    }

    /// All pages of a listing, following the continuation tokens to the end.
    pub async fn list_all(&self, prefix: &str, delimiter: Option<&str>) -> Result<ListPage, Errno> {
        let mut all = ListPage::default();
        let mut token = None;
        loop {
            let page = self
                .list_page(prefix, delimiter, None, token.clone(), None)
                .await?;
            all.objects.extend(page.objects);
            all.prefixes.extend(page.prefixes);
            match page.next {
                Some(next) if token.as_ref() == Some(&next) => {
                    tracing::warn!(bucket = %self.bucket, prefix,
                        "ListObjectsV2: the server repeated a continuation token");
                    return Err(Errno::EIO);
                }
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The bytes `range` of an object (shorter at the end of the object; empty
    /// for an empty range or one starting at or past the end). With `if_match`,
    /// a different ETag on the server gives ESTALE.
    pub async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, Errno> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let res = self
            .inner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            // 416: the range starts at or past the end of the object.
            Err(err) if status_of(&err) == Some(416) => return Ok(Bytes::new()),
            Err(err) => return Err(self.fail("GetObject", key, err)),
        };
        let content_range = out.content_range().map(str::to_string);
        let body = self.collect("GetObject", key, out.body).await?;
        match content_range.as_deref().and_then(parse_content_range) {
            Some((start, _, _)) if start != range.start => {
                tracing::warn!(bucket = %self.bucket, key, ?content_range, ?range,
                    "GetObject: the server answered a different range");
                Err(Errno::EIO)
            }
            Some(_) if body.len() as u64 > range.end - range.start => {
                tracing::warn!(bucket = %self.bucket, key, len = body.len(), ?range,
                    "GetObject: more bytes than requested");
                Err(Errno::EIO)
            }
            Some(_) => Ok(body),
            // No Content-Range: the server ignored the Range header and sent
            // the whole object.
            None => {
                let len = body.len() as u64;
                let start = range.start.min(len) as usize;
                let end = range.end.min(len) as usize;
                Ok(body.slice(start..end))
            }
        }
    }

    /// The whole object into `file` from offset 0 (the file is truncated to
    /// the object's size), with parallel ranged GETs all pinned to one ETag.
    /// With `if_match`, a different ETag on the server gives ESTALE.
    /// Returns the size.
    pub async fn get_to_file(
        &self,
        key: &str,
        file: &std::fs::File,
        if_match: Option<&str>,
    ) -> Result<u64, Errno> {
        self.get_to_file_with(key, file, if_match, DOWNLOAD_PART)
            .await
    }

    /// [`get_to_file`](Self::get_to_file) with the part size as a parameter.
    pub async fn get_to_file_with(
        &self,
        key: &str,
        file: &std::fs::File,
        if_match: Option<&str>,
        part: u64,
    ) -> Result<u64, Errno> {
        let meta = self.head_if(key, if_match).await?.ok_or(Errno::ENOENT)?;
        let etag: Option<Arc<str>> = (!meta.etag.is_empty()).then(|| Arc::from(meta.etag.as_str()));
        let file = Arc::new(file.try_clone().map_err(Errno::from)?);
        let key_arc: Arc<str> = Arc::from(key);
        let mut parts = plan_parts(meta.size, part.max(1)).into_iter();
        let mut set = JoinSet::new();
        loop {
            while set.len() < PARTS_IN_FLIGHT {
                let Some(range) = parts.next() else { break };
                let (client, key, etag, file) =
                    (self.clone(), key_arc.clone(), etag.clone(), file.clone());
                set.spawn(async move {
                    let data = client
                        .get_range(&key, range.clone(), etag.as_deref())
                        .await?;
                    if data.len() as u64 != range.end - range.start {
                        tracing::warn!(bucket = %client.bucket, key = %key, ?range, got = data.len(),
                            "GetObject: short part; the object changed");
                        return Err(Errno::ESTALE);
                    }
                    let at = range.start;
                    blocking(move || file.write_all_at(&data, at)).await
                });
            }
            match set.join_next().await {
                None => break,
                Some(res) => join_result(res)?,
            }
        }
        let size = meta.size;
        blocking(move || file.set_len(size)).await?;
        Ok(size)
    }

    /// PutObject of `body` with user metadata `meta`. Returns the new ETag.
    pub async fn put_bytes(
        &self,
        key: &str,
        body: Vec<u8>,
        meta: &HashMap<String, String>,
    ) -> Result<String, Errno> {
        self.put_bytes_if(key, body, meta, Cond::Always).await
    }

    /// A conditional PutObject (S3 conditional writes, e.g. for leases):
    /// [`Cond::Absent`] fails with EEXIST when the key exists,
    /// [`Cond::Match`] with ESTALE when its ETag differs (ENOENT when it is
    /// gone). Returns the new ETag.
    pub async fn put_bytes_if(
        &self,
        key: &str,
        body: Vec<u8>,
        meta: &HashMap<String, String>,
        cond: Cond<'_>,
    ) -> Result<String, Errno> {
        let (if_match, if_none_match) = cond.headers();
        let out = self
            .inner
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_metadata(Some(meta.clone()))
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .send()
            .await
            .map_err(|e| cond.errno(self.fail("PutObject", key, e)))?;
        self.etag_or_head(key, out.e_tag()).await
    }

    /// Uploads the file at `path` as `key` with user metadata `meta`: one
    /// PutObject up to 8 MiB, else a multipart upload (parts of at least
    /// 8 MiB, bigger to stay within 10,000 parts, up to 8 in flight; aborted on
    /// failure). The file must not change meanwhile. Returns the new ETag.
    pub async fn upload_file(
        &self,
        key: &str,
        path: &Path,
        meta: &HashMap<String, String>,
    ) -> Result<String, Errno> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| self.io_fail("upload", key, path, e))?
            .len();
        if size <= SINGLE_PUT_MAX {
            let body = tokio::fs::read(path)
                .await
                .map_err(|e| self.io_fail("upload", key, path, e))?;
            return self.put_bytes(key, body, meta).await;
        }
        let part = part_size(size, MIN_UPLOAD_PART);
        let upload_id = self.create_multipart(key, meta).await?;
        let res = self
            .upload_parts(key, path, &upload_id, plan_parts(size, part))
            .await;
        self.finish_multipart(key, &upload_id, res).await
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        upload_id: &str,
        parts: Vec<Range<u64>>,
    ) -> Result<Vec<CompletedPart>, Errno> {
        let path: Arc<Path> = Arc::from(path);
        let (key, upload_id): (Arc<str>, Arc<str>) = (Arc::from(key), Arc::from(upload_id));
        self.run_parts(parts, move |client, number, range| {
            let (path, key, upload_id) = (path.clone(), key.clone(), upload_id.clone());
            async move {
                let body = ByteStream::read_from()
                    .path(&*path)
                    .offset(range.start)
                    .length(Length::Exact(range.end - range.start))
                    .build()
                    .await
                    .map_err(|e| {
                        tracing::warn!(bucket = %client.bucket, key = %key, path = %path.display(),
                            error = %DisplayErrorContext(&e), "UploadPart: cannot read the file");
                        Errno::EIO
                    })?;
                let out = client
                    .inner
                    .upload_part()
                    .bucket(&client.bucket)
                    .key(&*key)
                    .upload_id(&*upload_id)
                    .part_number(number)
                    .content_length((range.end - range.start) as i64)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| client.fail("UploadPart", &key, e))?;
                Ok(out.e_tag().map(str::to_string))
            }
        })
        .await
    }

    /// Server-side copy of `src` to `dst`. `Some(meta)` replaces the user
    /// metadata (MetadataDirective REPLACE); `None` keeps the source's.
    /// The source is HEADed first: its size picks single or multipart copy
    /// (above 5 GiB, UploadPartCopy, up to 8 parts in flight, aborted on
    /// failure), its ETag pins the copy (`x-amz-copy-source-if-match`: a
    /// concurrent overwrite gives ESTALE). Returns the new ETag.
    pub async fn copy(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&HashMap<String, String>>,
    ) -> Result<String, Errno> {
        self.copy_with(src, dst, meta, COPY_SINGLE_MAX, MIN_COPY_PART)
            .await
    }

    /// [`copy`](Self::copy) with the single-copy threshold and the smallest
    /// part size as parameters (S3 needs parts of at least 5 MiB).
    pub async fn copy_with(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&HashMap<String, String>>,
        threshold: u64,
        min_part: u64,
    ) -> Result<String, Errno> {
        let src_meta = self.head(src).await?.ok_or(Errno::ENOENT)?;
        let source = copy_source(&self.bucket, src);
        let src_etag = (!src_meta.etag.is_empty()).then(|| src_meta.etag.clone());
        if src_meta.size <= threshold {
            let mut req = self
                .inner
                .copy_object()
                .bucket(&self.bucket)
                .key(dst)
                .copy_source(source)
                .set_copy_source_if_match(src_etag);
            if let Some(meta) = meta {
                req = req
                    .metadata_directive(MetadataDirective::Replace)
                    .set_metadata(Some(meta.clone()));
            }
            let out = req
                .send()
                .await
                .map_err(|e| self.fail("CopyObject", src, e))?;
            let etag = out.copy_object_result().and_then(|r| r.e_tag());
            return self.etag_or_head(dst, etag).await;
        }
        // Multipart copy does not carry metadata over: pass it explicitly.
        let meta = meta.cloned().unwrap_or_else(|| src_meta.user.clone());
        let upload_id = self.create_multipart(dst, &meta).await?;
        let parts = plan_parts(src_meta.size, part_size(src_meta.size, min_part));
        let (dst_arc, upload_arc, source): (Arc<str>, Arc<str>, Arc<str>) = (
            Arc::from(dst),
            Arc::from(upload_id.as_str()),
            Arc::from(source.as_str()),
        );
        let src_etag: Option<Arc<str>> = src_etag.map(|e| Arc::from(e.as_str()));
        let res = self
            .run_parts(parts, move |client, number, range| {
                let (dst, upload_id, source, src_etag) = (
                    dst_arc.clone(),
                    upload_arc.clone(),
                    source.clone(),
                    src_etag.clone(),
                );
                async move {
                    let out = client
                        .inner
                        .upload_part_copy()
                        .bucket(&client.bucket)
                        .key(&*dst)
                        .upload_id(&*upload_id)
                        .part_number(number)
                        .copy_source(&*source)
                        .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
                        .set_copy_source_if_match(src_etag.as_deref().map(str::to_string))
                        .send()
                        .await
                        .map_err(|e| client.fail("UploadPartCopy", &dst, e))?;
                    Ok(out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .map(str::to_string))
                }
            })
            .await;
        self.finish_multipart(dst, &upload_id, res).await
    }

    /// DeleteObject. Deleting a missing object succeeds (as on S3).
    pub async fn delete(&self, key: &str) -> Result<(), Errno> {
        match self
            .inner
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if classify(&err) == Errno::ENOENT => Ok(()),
            Err(err) => Err(self.fail("DeleteObject", key, err)),
        }
    }

    /// DeleteObject only if the object still has ETag `etag`: ESTALE when it
    /// differs, ENOENT when the object is gone.
    pub async fn delete_if(&self, key: &str, etag: &str) -> Result<(), Errno> {
        self.inner
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await
            .map_err(|e| self.fail("DeleteObject", key, e))?;
        Ok(())
    }

    // ---- helpers ----

    async fn create_multipart(
        &self,
        key: &str,
        meta: &HashMap<String, String>,
    ) -> Result<String, Errno> {
        let out = self
            .inner
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(meta.clone()))
            .send()
            .await
            .map_err(|e| self.fail("CreateMultipartUpload", key, e))?;
        match out.upload_id() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => {
                tracing::warn!(bucket = %self.bucket, key,
                    "CreateMultipartUpload: no upload id in the answer");
                Err(Errno::EIO)
            }
        }
    }

    /// Completes the upload with `parts`, or aborts it when they failed.
    async fn finish_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Result<Vec<CompletedPart>, Errno>,
    ) -> Result<String, Errno> {
        let res = match parts {
            Ok(parts) => self
                .inner
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.fail("CompleteMultipartUpload", key, e)),
            Err(e) => Err(e),
        };
        match res {
            Ok(out) => self.etag_or_head(key, out.e_tag()).await,
            Err(errno) => {
                if let Err(err) = self
                    .inner
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(bucket = %self.bucket, key, upload_id,
                        error = %DisplayErrorContext(&err),
                        "AbortMultipartUpload failed; the bucket's lifecycle rules must clean up");
                }
                Err(errno)
            }
        }
    }

    /// Runs `op(client, part_number, range)` for every part, at most
    /// [`PARTS_IN_FLIGHT`] at a time; the first failure cancels the rest.
    async fn run_parts<F, Fut>(
        &self,
        parts: Vec<Range<u64>>,
        op: F,
    ) -> Result<Vec<CompletedPart>, Errno>
    where
        F: Fn(S3Client, i32, Range<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, Errno>> + Send + 'static,
    {
        let mut done = Vec::with_capacity(parts.len());
        let mut todo = parts.into_iter().enumerate();
        let mut set = JoinSet::new();
        loop {
            while set.len() < PARTS_IN_FLIGHT {
                let Some((i, range)) = todo.next() else { break };
                let number = i32::try_from(i + 1).map_err(|_| Errno::EINVAL)?;
                let fut = op(self.clone(), number, range);
                set.spawn(async move { fut.await.map(|etag| (number, etag)) });
            }
            match set.join_next().await {
                None => break,
                Some(res) => {
                    let (number, etag) = join_result(res)?;
                    let Some(etag) = etag.filter(|e| !e.is_empty()) else {
                        tracing::warn!(bucket = %self.bucket, part = number,
                            "multipart: a part came back without an ETag");
                        return Err(Errno::EIO);
                    };
                    done.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .e_tag(etag)
                            .build(),
                    );
                }
            }
        }
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    async fn etag_or_head(&self, key: &str, etag: Option<&str>) -> Result<String, Errno> {
        match etag {
            Some(e) if !e.is_empty() => Ok(e.to_string()),
            _ => Ok(self.head(key).await?.map(|m| m.etag).unwrap_or_default()),
        }
    }

    /// A response body, within the timeout.
    async fn collect(&self, op: &str, key: &str, body: ByteStream) -> Result<Bytes, Errno> {
        match tokio::time::timeout(self.timeout, body.collect()).await {
            Ok(Ok(data)) => Ok(data.into_bytes()),
            Ok(Err(err)) => {
                tracing::warn!(bucket = %self.bucket, key, op,
                    error = %DisplayErrorContext(&err), "S3 response body failed");
                Err(Errno::EIO)
            }
            Err(_) => {
                tracing::warn!(bucket = %self.bucket, key, op, timeout = ?self.timeout,
                    "S3 response body timed out");
                Err(Errno::ETIMEDOUT)
            }
        }
    }

    /// Maps an SDK error to an errno and logs it once (`warn`; `debug` for
    /// ENOENT and ESTALE, which are answers rather than failures).
    fn fail<E>(&self, op: &str, key: &str, err: SdkError<E>) -> Errno
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let errno = classify(&err);
        if errno == Errno::ENOENT || errno == Errno::ESTALE {
            // Answers, not failures: the caller decides what they mean.
            tracing::debug!(bucket = %self.bucket, key, op, errno = %errno, "S3: not found or precondition failed");
        } else {
            tracing::warn!(bucket = %self.bucket, key, op, errno = %errno,
                error = %DisplayErrorContext(&err), "S3 request failed");
        }
        errno
    }

    fn io_fail(&self, op: &str, key: &str, path: &Path, err: std::io::Error) -> Errno {
        tracing::warn!(bucket = %self.bucket, key, op, path = %path.display(), error = %err,
            "local file error");
        Errno::from(err)
    }
}

fn timeout_config(timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build()
}

/// Few, short retries: the operation timeout bounds the whole call anyway.
fn retry_config(timeout: Duration) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff((timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)))
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

fn status_of<E>(err: &SdkError<E>) -> Option<u16> {
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

/// The part size of a multipart operation on `total` bytes: at least `min`,
/// and big enough (rounded up to MiB) for at most [`MAX_PARTS`] parts.
pub fn part_size(total: u64, min: u64) -> u64 {
    let needed = total.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(min).max(1)
}

/// `0..total` cut into consecutive ranges of `part` bytes (the last shorter).
pub fn plan_parts(total: u64, part: u64) -> Vec<Range<u64>> {
    let part = part.max(1);
    (0..total.div_ceil(part))
        .map(|i| i * part..((i + 1) * part).min(total))
        .collect()
}

/// `x-amz-copy-source`: `bucket/key`, the key URL-encoded (`/` kept).
pub fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    out.push_str(bucket);
    out.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` → `(first, last + 1, total)`.
pub fn parse_content_range(s: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = s.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    if last < first {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, last.checked_add(1)?, total))
}

fn to_size(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn to_system_time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(UNIX_EPOCH)
}

fn user_meta(m: Option<&HashMap<String, String>>) -> HashMap<String, String> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

/// Runs blocking file I/O off the async workers.
async fn blocking<F>(f: F) -> Result<(), Errno>
where
    F: FnOnce() -> std::io::Result<()> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res.map_err(|e| {
            tracing::warn!(error = %e, "S3 download: local file error");
            Errno::from(e)
        }),
        Err(_) => Err(Errno::EIO),
    }
}

fn join_result<T>(res: Result<Result<T, Errno>, tokio::task::JoinError>) -> Result<T, Errno> {
    match res {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "S3 part task failed");
            Err(Errno::EIO)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_for(404, Some("NoSuchKey")), Errno::ENOENT);
        assert_eq!(errno_for(404, None), Errno::ENOENT);
        assert_eq!(errno_for(404, Some("NoSuchBucket")), Errno::EIO);
        assert_eq!(errno_for(403, Some("AccessDenied")), Errno::EACCES);
        assert_eq!(errno_for(403, None), Errno::EACCES);
        assert_eq!(errno_for(412, Some("PreconditionFailed")), Errno::ESTALE);
        assert_eq!(errno_for(412, None), Errno::ESTALE);
        assert_eq!(
            errno_for(409, Some("ConditionalRequestConflict")),
            Errno::ESTALE
        );
        assert_eq!(Cond::Absent.errno(Errno::ESTALE), Errno::EEXIST);
        assert_eq!(Cond::Match("\"e\"").errno(Errno::ESTALE), Errno::ESTALE);
        assert_eq!(Cond::Absent.errno(Errno::EIO), Errno::EIO);
        assert_eq!(errno_for(400, Some("RequestTimeout")), Errno::ETIMEDOUT);
        assert_eq!(errno_for(504, None), Errno::ETIMEDOUT);
        assert_eq!(errno_for(500, Some("InternalError")), Errno::EIO);
        assert_eq!(errno_for(503, Some("SlowDown")), Errno::EIO);
        assert_eq!(errno_for(200, None), Errno::EIO);
    }

    #[test]
    fn multipart_part_sizing() {
        assert_eq!(part_size(20 * MIB, MIN_UPLOAD_PART), 8 * MIB);
        assert_eq!(part_size(0, MIN_UPLOAD_PART), 8 * MIB);
        // 10,000 parts of 8 MiB: exactly the limit.
        assert_eq!(part_size(10_000 * 8 * MIB, MIN_UPLOAD_PART), 8 * MIB);
        // One byte more needs 9 MiB parts.
        assert_eq!(part_size(10_000 * 8 * MIB + 1, MIN_UPLOAD_PART), 9 * MIB);
        // 5 TiB, S3's largest object.
        let five_tib = 5 * 1024 * 1024 * MIB;
        let p = part_size(five_tib, MIN_UPLOAD_PART);
        assert!(five_tib.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % MIB, 0);
        assert!(p <= 5 * 1024 * MIB, "S3's largest part is 5 GiB");
        assert_eq!(part_size(6 * 1024 * MIB, MIN_COPY_PART), 512 * MIB);
    }

    #[test]
    fn part_planning() {
        assert!(plan_parts(0, 8).is_empty());
        assert_eq!(plan_parts(8, 8), vec![0..8]);
        assert_eq!(plan_parts(20, 8), vec![0..8, 8..16, 16..20]);
        let parts = plan_parts(20 * MIB + 3, 8 * MIB);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.last().map(|r| r.end), Some(20 * MIB + 3));
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn copy_source_encoding() {
        assert_eq!(copy_source("b", "a/b.txt"), "b/a/b.txt");
        assert_eq!(copy_source("b", "a b/ü+%?"), "b/a%20b/%C3%BC%2B%25%3F");
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 6, None)));
        assert_eq!(parse_content_range("bytes 9-5/100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
        assert_eq!(parse_content_range("bytes x-9/100"), None);
    }
}
