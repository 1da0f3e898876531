//! Single-object requests: HEAD, ranged GET (and a parallel download into a
//! file), PUT (plain and conditional), DELETE.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::failure::{blocking, classify, join_result, status_of};
use super::multipart::plan_parts;
use super::{Cond, DOWNLOAD_PART, ObjectMeta, PARTS_IN_FLIGHT, S3Client};
use crate::error::Errno;
use crate::origin::{OriginError, OriginResult};

impl S3Client {
    /// HeadObject. `Ok(None)` when the object does not exist.
    pub async fn head(&self, key: &str) -> OriginResult<Option<ObjectMeta>> {
        self.head_if(key, None).await
    }

    /// HeadObject with an optional `If-Match` (mismatch → ESTALE).
    pub async fn head_if(
        &self,
        key: &str,
        if_match: Option<&str>,
    ) -> OriginResult<Option<ObjectMeta>> {
        let req = self
            .inner
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match.map(str::to_string))
            .send();
        match self
            .bounded("HeadObject", key, self.deadline(), req)
            .await?
        {
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

    /// The bytes `range` of an object (shorter at the end of the object; empty
    /// for an empty range or one starting at or past the end). With `if_match`,
    /// a different ETag on the server gives ESTALE.
    pub async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> OriginResult<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let req = self
            .inner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_string))
            .send();
        let out = match self.bounded("GetObject", key, self.deadline(), req).await? {
            Ok(out) => out,
            // 416: the range starts at or past the end of the object.
            Err(err) if status_of(&err) == Some(416) => return Ok(Bytes::new()),
            Err(err) => return Err(self.fail("GetObject", key, err)),
        };
        let content_range = out.content_range().map(str::to_string);
        let body = self.collect("GetObject", key, out.body).await?;
        match content_range.as_deref().and_then(parse_content_range) {
            Some((start, _, _)) if start != range.start => {
                let what = format!("asked for {range:?}, the server answered {content_range:?}");
                Err(self.broken("GetObject", key, &what))
            }
            Some(_) if body.len() as u64 > range.end - range.start => {
                let what = format!("{} bytes for {range:?}", body.len());
                Err(self.broken("GetObject", key, &what))
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
    ) -> OriginResult<u64> {
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
    ) -> OriginResult<u64> {
        let meta = self
            .head_if(key, if_match)
            .await?
            .ok_or_else(|| self.missing("GetObject", key))?;
        let etag: Option<Arc<str>> = (!meta.etag.is_empty()).then(|| Arc::from(meta.etag.as_str()));
        let file = Arc::new(file.try_clone()?);
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
                        return Err(OriginError::new(
                            Errno::ESTALE,
                            format!(
                                "GetObject {}/{key}: {} bytes for {range:?}: the object changed",
                                client.bucket,
                                data.len()
                            ),
                        ));
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
    ) -> OriginResult<String> {
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
    ) -> OriginResult<String> {
        let (if_match, if_none_match) = cond.headers();
        let req = self
            .inner
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_metadata(Some(meta.clone()))
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .send();
        let out = self
            .bounded("PutObject", key, self.deadline(), req)
            .await?
            .map_err(|e| cond.errno(self.fail("PutObject", key, e)))?;
        self.etag_or_head(key, out.e_tag()).await
    }

    /// DeleteObject. Deleting a missing object succeeds (as on S3).
    pub async fn delete(&self, key: &str) -> OriginResult<()> {
        let req = self
            .inner
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send();
        match self
            .bounded("DeleteObject", key, self.deadline(), req)
            .await?
        {
            Ok(_) => Ok(()),
            Err(err) if classify(&err) == Errno::ENOENT => Ok(()),
            Err(err) => Err(self.fail("DeleteObject", key, err)),
        }
    }

    /// DeleteObject only if the object still has ETag `etag`: ESTALE when it
    /// differs, ENOENT when the object is gone.
    pub async fn delete_if(&self, key: &str, etag: &str) -> OriginResult<()> {
        let req = self
            .inner
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(etag)
            .send();
        self.bounded("DeleteObject", key, self.deadline(), req)
            .await?
            .map_err(|e| self.fail("DeleteObject", key, e))?;
        Ok(())
    }

    pub(super) async fn etag_or_head(&self, key: &str, etag: Option<&str>) -> OriginResult<String> {
        match etag {
            Some(e) if !e.is_empty() => Ok(e.to_string()),
            _ => Ok(self.head(key).await?.map(|m| m.etag).unwrap_or_default()),
        }
    }
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

pub(super) fn to_size(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

pub(super) fn to_system_time(t: Option<&DateTime>) -> SystemTime {
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
