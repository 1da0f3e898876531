//! ListObjectsV2: one page, or all pages to the end.

use std::collections::HashMap;

use super::objects::{to_size, to_system_time};
use super::{ListPage, ObjectMeta, S3Client};
use crate::origin::OriginResult;

impl S3Client {
    /// One ListObjectsV2 request.
    pub async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> OriginResult<ListPage> {
        let req = self
            .inner
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_start_after(start_after.map(str::to_string))
            .set_continuation_token(token)
            .set_max_keys(max_keys)
            .send();
        let out = self
            .bounded("ListObjectsV2", prefix, self.deadline(), req)
            .await?
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
                    return Err(self.broken(
                        "ListObjectsV2",
                        prefix,
                        "truncated page without a continuation token",
                    ));
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
    pub async fn list_all(&self, prefix: &str, delimiter: Option<&str>) -> OriginResult<ListPage> {
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
                    return Err(self.broken(
                        "ListObjectsV2",
                        prefix,
                        "the server repeated a continuation token",
                    ));
                }
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}
