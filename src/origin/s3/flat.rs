//! Key-order listings of everything below one directory of an S3 origin, for
//! batch scans (SPEC §6, "S3: key order"): ListObjectsV2 pages read one at a
//! time from a `StartAfter` position, with the §3.3 key rules applied to
//! every key (`keys`), so a scan sees the same names and kinds a mount shows.
//!
//! Each entry has a *position* in key order: a file's is its key, a
//! directory's is its key plus `/` (where its `dir/` marker would sort, just
//! before everything inside it). Entries come out in strictly increasing
//! position, so a scan can resume after any entry with `StartAfter` = that
//! position. Directories without a marker (implied by deeper keys) are
//! reported at their position too, once, right before their first content.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::Arc;

use super::client::ObjectMeta;
use super::keys;
use super::meta::{self, Attrs, DEFAULT_FILE_MODE};
use super::origin::S3Origin;
use crate::error::{Errno, FsResult};

/// The most keys one ListObjectsV2 page may hold.
pub const MAX_PAGE: usize = 1000;

/// How many listed keys may be held while deciding whether a file key `a`
/// is hidden by a directory `a/` further on (keys such as `a-1`, `a.b`
/// sort between them). Past this, one `LIST a/` (one key) answers instead,
/// so a pathological bucket cannot make the listing hold everything.
const LOOKAHEAD_LIMIT: usize = 10_000;

/// One entry of a flat listing.
#[derive(Clone)]
pub struct FlatEntry {
    /// Components below the listed directory (one = directly in it).
    pub rel: Vec<OsString>,
    /// From the listing alone (size, LastModified) or from attributes
    /// storgate stored itself; never a HEAD per object.
    pub st: libc::stat,
}

impl FlatEntry {
    pub fn is_dir(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// One position of a page: an object, or a common prefix (object `None`).
struct Listed {
    pos: String,
    object: Option<ObjectMeta>,
}

/// A listing in progress. Pages are requested only as entries are taken.
pub struct FlatListing {
    origin: Arc<S3Origin>,
    /// Key prefix of the listed directory.
    prefix: String,
    /// `true`: entries directly in the directory only (delimiter `/`), so a
    /// non-recursive scan never reads what lies deeper.
    children_only: bool,
    page: i32,
    start_after: Option<String>,
    token: Option<String>,
    more: bool,
    buf: VecDeque<Listed>,
    /// Position of the last entry handed out or passed over; nothing at or
    /// before it is handed out again (servers may repeat a common prefix
    /// after `StartAfter`).
    last: Option<String>,
    ready: VecDeque<FlatEntry>,
    examined: u64,
}

impl S3Origin {
    /// Lists directory `dir` (origin path) recursively in key order, from
    /// just after the entry `after` = (path below `dir`, is a directory)
    /// when given. `children_only` lists its direct entries only. `page` is
    /// the number of keys per request (at most [`MAX_PAGE`]).
    pub fn list_flat(
        self: &Arc<Self>,
        dir: &[OsString],
        after: Option<(&[OsString], bool)>,
        children_only: bool,
        page: usize,
    ) -> FsResult<FlatListing> {
        let prefix = keys::dir_prefix(self.root(), dir)?;
        let start_after = match after {
            Some((rel, is_dir)) if !rel.is_empty() => {
                let full: Vec<OsString> = dir.iter().chain(rel).cloned().collect();
                let mut key = self.key(&full)?;
                if is_dir {
                    key.push('/');
                }
                Some(key)
            }
            _ => None,
        };
        Ok(FlatListing {
            origin: self.clone(),
            prefix,
            children_only,
            page: page.clamp(1, MAX_PAGE) as i32,
            last: start_after.clone(),
            start_after,
            token: None,
            more: true,
            buf: VecDeque::new(),
            ready: VecDeque::new(),
            examined: 0,
        })
    }
}

impl FlatListing {
    /// The next entry in key order; `None` at the end.
    pub fn next_entry(&mut self) -> FsResult<Option<FlatEntry>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            match self.buf.pop_front() {
                Some(item) => {
                    self.examined += 1;
                    self.consider(item)?;
                }
                None if self.more => self.fetch()?,
                None => return Ok(None),
            }
        }
    }

    /// How many keys and common prefixes have been looked at so far.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    fn fetch(&mut self) -> FsResult<()> {
        let delimiter = self.children_only.then_some("/");
        // A continuation token carries the position on its own.
        let start_after = match self.token {
            None => self.start_after.as_deref(),
            Some(_) => None,
        };
        let page = self.origin.run(self.origin.client.list_page(
            &self.prefix,
            delimiter,
            start_after,
            self.token.clone(),
            Some(self.page),
        ))?;
        let mut items: Vec<Listed> = page
            .objects
            .into_iter()
            .map(|o| Listed {
                pos: o.key.clone(),
                object: Some(o),
            })
            .chain(page.prefixes.into_iter().map(|p| Listed {
                pos: p,
                object: None,
            }))
            .collect();
        // Objects and common prefixes come as two sorted lists.
        items.sort_by(|a, b| a.pos.cmp(&b.pos));
        self.buf.extend(items);
        match page.next {
            Some(next) if self.token.as_ref() == Some(&next) => {
                tracing::warn!(prefix = %self.prefix, "ListObjectsV2: the server repeated a continuation token");
                return Err(Errno::EIO);
            }
            Some(next) => self.token = Some(next),
            None => self.more = false,
        }
        Ok(())
    }

    /// Turns one listed position into entries (its implied parent
    /// directories first, then itself), applying the §3.3 rules.
    fn consider(&mut self, item: Listed) -> FsResult<()> {
        if self.last.as_ref().is_some_and(|l| item.pos <= *l) {
            return Ok(());
        }
        let Some(rest) = item.pos.strip_prefix(&self.prefix) else {
            self.last = Some(item.pos);
            return Ok(());
        };
        let (body, is_dir) = match rest.strip_suffix('/') {
            Some(b) => (b, true),
            None => (rest, false),
        };
        // Empty body: the listed directory's own marker.
        if body.is_empty() {
            self.last = Some(item.pos);
            return Ok(());
        }
        let comps: Vec<&str> = body.split('/').collect();
        let valid = comps
            .iter()
            .take_while(|c| keys::valid_component(c))
            .count();
        // Directories on the way are shown (as in a mount) up to the first
        // component no path could name.
        let parents = valid.min(comps.len() - 1);
        for j in 1..=parents {
            let dpos = format!("{}{}/", self.prefix, comps[..j].join("/"));
            if self.last.as_ref().is_none_or(|l| dpos > *l) {
                self.ready.push_back(FlatEntry {
                    rel: to_rel(&comps[..j]),
                    st: self.origin.default_dir_attrs().stat(0, 0),
                });
                self.last = Some(dpos);
            }
        }
        if valid == comps.len() {
            if is_dir {
                let attrs = match &item.object {
                    Some(o) => self
                        .origin
                        .known_attrs(&o.key, &o.etag)
                        .unwrap_or_else(|| Attrs {
                            mtime: meta::unix_time(o.last_modified),
                            ..self.origin.default_dir_attrs()
                        }),
                    None => self.origin.default_dir_attrs(),
                };
                self.ready.push_back(FlatEntry {
                    rel: to_rel(&comps),
                    st: attrs.stat(0, 0),
                });
            } else if let Some(o) = &item.object
                // When a key `a` and a prefix `a/` both exist, the directory wins.
                && !self.has_children(&item.pos)?
            {
                let attrs = self.origin.known_attrs(&o.key, &o.etag).unwrap_or_else(|| {
                    Attrs::from_user(&Default::default(), DEFAULT_FILE_MODE, o.last_modified)
                });
                self.ready.push_back(FlatEntry {
                    rel: to_rel(&comps),
                    st: attrs.stat(o.size, 0),
                });
            }
        }
        self.last = Some(item.pos);
        Ok(())
    }

    /// Whether anything exists below `key/`, looking ahead in the listing
    /// (the answer lies at the first position at or after `key/`).
    fn has_children(&mut self, key: &str) -> FsResult<bool> {
        let dir = format!("{key}/");
        let mut i = 0;
        loop {
            while let Some(item) = self.buf.get(i) {
                if item.pos >= dir {
                    return Ok(item.pos.starts_with(&dir));
                }
                i += 1;
            }
            if !self.more {
                return Ok(false);
            }
            if self.buf.len() >= LOOKAHEAD_LIMIT {
                let below = self.origin.run(self.origin.client.list_page(
                    &dir,
                    None,
                    None,
                    None,
                    Some(1),
                ))?;
                return Ok(!below.objects.is_empty() || !below.prefixes.is_empty());
            }
            self.fetch()?;
        }
    }
}

fn to_rel(comps: &[&str]) -> Vec<OsString> {
    comps.iter().map(OsString::from).collect()
}
