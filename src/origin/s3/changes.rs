//! What the change detector needs from an S3 origin (SPEC §4.5): the
//! origin's objects page by page for the poller, and a record of every
//! object this process writes or deletes, so that the poller does not fire
//! for storgate's own changes (SPEC §4.1: no loops, nothing twice).
//!
//! An S3 change is known by a path of its own (`s3:ENDPOINT/BUCKET/KEY`,
//! never a local path: local registry paths are absolute) and an identity
//! made of the ETag, which changes with the content and with nothing else.

use std::path::PathBuf;
use std::sync::Arc;

use super::client::ObjectMeta;
use super::origin::{S3Origin, runtime};
use crate::origin::{ChangeLog, OriginResult};

/// A write of this process in progress ([`S3Origin::writing_now`]).
pub(crate) struct InFlight<'a> {
    origin: &'a S3Origin,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = self
            .origin
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// The `st_dev` of an S3 identity (no device has it: "S3" in ASCII).
const S3_DEV: u64 = 0x5333_0000_0000_5333;

impl S3Origin {
    /// Records this process's changes in `log` from now on.
    pub fn attach_changes(&self, log: Arc<dyn ChangeLog>) {
        let _ = self.changes.set(log);
    }

    /// The registry path of object `key` (a full key, root prefix included).
    pub fn change_path(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3:{}/{}/{key}", self.name(), self.client.bucket()))
    }

    /// The registry identity of an object with `etag`.
    pub fn change_identity(etag: &str) -> libc::stat {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        etag.trim_matches('"').hash(&mut h);
        // SAFETY: all-zero is a valid libc::stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_dev = S3_DEV;
        st.st_ino = h.finish();
        st
    }

    /// `key` now holds the object with `etag`, written by this process.
    pub(crate) fn own_wrote(&self, key: &str, etag: &str) {
        if let Some(log) = self.changes.get() {
            log.wrote(&self.change_path(key), &Self::change_identity(etag));
        }
    }

    /// This process is about to delete `key`.
    pub(crate) fn own_deleting(&self, key: &str) {
        if let Some(log) = self.changes.get() {
            log.deleting(&self.change_path(key));
        }
    }

    /// Whether a file open through this process will (re)write `key`, or
    /// a request of this process is writing it right now.
    pub fn writing(&self, key: &str) -> bool {
        self.writer(key).is_some()
            || self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(key)
    }

    /// Marks `key` as being written by this process until the guard goes:
    /// a poll round listing it between the response and [`Self::own_wrote`]
    /// must not take it for someone else's.
    pub(crate) fn writing_now(&self, key: &str) -> InFlight<'_> {
        *self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_insert(0) += 1;
        InFlight {
            origin: self,
            key: key.to_string(),
        }
    }

    /// The full key of a key relative to the origin root.
    pub fn full_key(&self, rel_key: &str) -> String {
        format!("{}{rel_key}", self.root())
    }

    /// One page of every object below the origin root, keys relative to the
    /// root, in the server's (byte) order; `token` continues a listing.
    pub fn poll_page(
        &self,
        token: Option<String>,
    ) -> OriginResult<(Vec<ObjectMeta>, Option<String>)> {
        let root = self.root().to_string();
        let page =
            runtime().block_on(
                self.client
                    .list_page(&root, None, None, token.clone(), None),
            )?;
        if page.next.is_some() && page.next == token {
            return Err(crate::origin::OriginError::new(
                crate::error::Errno::EIO,
                format!(
                    "{}: the server repeated a continuation token",
                    self.describe()
                ),
            ));
        }
        let objects = page
            .objects
            .into_iter()
            .filter_map(|mut o| {
                o.key = o.key.strip_prefix(&root)?.to_string();
                (!o.key.is_empty()).then_some(o)
            })
            .collect();
        Ok((objects, page.next))
    }
}
