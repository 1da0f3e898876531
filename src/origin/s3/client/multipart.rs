//! The multi-request writes: file upload (one PUT or a multipart upload,
//! parts in parallel, aborted on failure) and server-side copy (one
//! CopyObject, or UploadPartCopy parts above 5 GiB).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use tokio::task::JoinSet;

use super::failure::join_result;
use super::{
    COPY_SINGLE_MAX, MAX_PARTS, MIB, MIN_COPY_PART, MIN_UPLOAD_PART, PARTS_IN_FLIGHT, S3Client,
    SINGLE_PUT_MAX,
};
use crate::error::Errno;
use crate::origin::{OriginError, OriginResult};

impl S3Client {
    /// Uploads the file at `path` as `key` with user metadata `meta`: one
    /// PutObject up to 8 MiB, else a multipart upload (parts of at least
    /// 8 MiB, bigger to stay within 10,000 parts, up to 8 in flight; aborted on
    /// failure). The file must not change meanwhile. Returns the new ETag.
    pub async fn upload_file(
        &self,
        key: &str,
        path: &Path,
        meta: &HashMap<String, String>,
    ) -> OriginResult<String> {
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
    ) -> OriginResult<Vec<CompletedPart>> {
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
                        OriginError::new(
                            Errno::EIO,
                            format!(
                                "UploadPart {}/{key}: cannot read {}: {e}",
                                client.bucket,
                                path.display()
                            ),
                        )
                        .with_source(e)
                    })?;
                let req = client
                    .inner
                    .upload_part()
                    .bucket(&client.bucket)
                    .key(&*key)
                    .upload_id(&*upload_id)
                    .part_number(number)
                    .content_length((range.end - range.start) as i64)
                    .body(body)
                    .send();
                let out = client
                    .bounded("UploadPart", &key, client.deadline(), req)
                    .await?
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
    ) -> OriginResult<String> {
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
    ) -> OriginResult<String> {
        let src_meta = self
            .head(src)
            .await?
            .ok_or_else(|| self.missing("CopyObject", src))?;
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
            let out = self
                .bounded("CopyObject", src, self.deadline(), req.send())
                .await?
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
                    let req = client
                        .inner
                        .upload_part_copy()
                        .bucket(&client.bucket)
                        .key(&*dst)
                        .upload_id(&*upload_id)
                        .part_number(number)
                        .copy_source(&*source)
                        .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
                        .set_copy_source_if_match(src_etag.as_deref().map(str::to_string))
                        .send();
                    let out = client
                        .bounded("UploadPartCopy", &dst, client.deadline(), req)
                        .await?
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

    async fn create_multipart(
        &self,
        key: &str,
        meta: &HashMap<String, String>,
    ) -> OriginResult<String> {
        let req = self
            .inner
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(meta.clone()))
            .send();
        let out = self
            .bounded("CreateMultipartUpload", key, self.deadline(), req)
            .await?
            .map_err(|e| self.fail("CreateMultipartUpload", key, e))?;
        match out.upload_id() {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(self.broken("CreateMultipartUpload", key, "no upload id in the answer")),
        }
    }

    /// Completes the upload with `parts`, or aborts it when they failed.
    async fn finish_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: OriginResult<Vec<CompletedPart>>,
    ) -> OriginResult<String> {
        let res = match parts {
            Ok(parts) => {
                let req = self
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
                    .send();
                match self
                    .bounded("CompleteMultipartUpload", key, self.deadline(), req)
                    .await
                {
                    Ok(res) => res.map_err(|e| self.fail("CompleteMultipartUpload", key, e)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(out) => self.etag_or_head(key, out.e_tag()).await,
            Err(err) if err.errno() == Errno::ETIMEDOUT => {
                // The server does not answer: the caller must not wait for
                // the abort too. It goes on in the background.
                let (client, key, upload_id) =
                    (self.clone(), key.to_string(), upload_id.to_string());
                tokio::spawn(async move { client.abort_multipart(&key, &upload_id).await });
                Err(err)
            }
            Err(err) => {
                self.abort_multipart(key, upload_id).await;
                Err(err)
            }
        }
    }

    /// AbortMultipartUpload, best effort (logged when it fails).
    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let req = self
            .inner
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send();
        let failed = match self
            .bounded("AbortMultipartUpload", key, self.deadline(), req)
            .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(DisplayErrorContext(&err).to_string()),
            Err(err) => Some(err.to_string()),
        };
        if let Some(error) = failed {
            tracing::warn!(bucket = %self.bucket, key, upload_id, error,
                "AbortMultipartUpload failed; the bucket's lifecycle rules must clean up");
        }
    }

    /// Runs `op(client, part_number, range)` for every part, at most
    /// [`PARTS_IN_FLIGHT`] at a time; the first failure cancels the rest.
    async fn run_parts<F, Fut>(
        &self,
        parts: Vec<Range<u64>>,
        op: F,
    ) -> OriginResult<Vec<CompletedPart>>
    where
        F: Fn(S3Client, i32, Range<u64>) -> Fut,
        Fut: std::future::Future<Output = OriginResult<Option<String>>> + Send + 'static,
    {
        let mut done = Vec::with_capacity(parts.len());
        let mut todo = parts.into_iter().enumerate();
        let mut set = JoinSet::new();
        loop {
            while set.len() < PARTS_IN_FLIGHT {
                let Some((i, range)) = todo.next() else { break };
                let number = i32::try_from(i + 1).map_err(|_| {
                    OriginError::new(Errno::EINVAL, format!("multipart: {} parts", i + 1))
                })?;
                let fut = op(self.clone(), number, range);
                set.spawn(async move { fut.await.map(|etag| (number, etag)) });
            }
            match set.join_next().await {
                None => break,
                Some(res) => {
                    let (number, etag) = join_result(res)?;
                    let Some(etag) = etag.filter(|e| !e.is_empty()) else {
                        let what = format!("part {number} came back without an ETag");
                        return Err(self.broken("multipart", "", &what));
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
