//! The batch scan of SPEC §6: lists an `onBatch` `path` of one bucket in a
//! deterministic order, applies the §4.3 filter, and hands out the matching
//! items in chunks that resume strictly after a persisted [`Marker`].
//!
//! Two orders:
//! - **Tree** (local origins, merged root mounts, paths spanning several
//!   mounts): directories listed as the client sees them (union of the root
//!   mounts, first declared wins a name; mount points and synthetic parents
//!   added; shadowed names removed), entries sorted by raw name bytes.
//!   `traverse: depth` is depth-first pre-order, i.e. the order of the
//!   component sequences; `traverse: breadth` orders by (depth, component
//!   sequence) and is walked as one depth-limited pass per level, so memory
//!   stays one sorted sibling list per level of the current path, never the
//!   whole tree (at the price of re-listing upper levels once per level).
//! - **S3** (the path lies inside one S3 origin with no mount below it): key
//!   order, read page by page from `StartAfter` = the marker's key
//!   ([`crate::origin::s3::flat`]); `traverse` does not apply.
//!
//! Resuming never re-lists what lies wholly before the marker: a tree walk
//! lists only the directories on the marker's path and what follows them, an
//! S3 listing starts after the marker's key. A `Scan` also keeps its walk
//! between calls, so the next chunk after the last one it returned costs no
//! listing again; the price is that a name added meanwhile to a directory
//! already listed is seen by the next run, not this one (a scan restarted
//! from a persisted marker lists afresh).
//!
//! Hidden mounts are scanned when the scan path lies inside them (workflows
//! may point a scan there); a hidden mount below the scan path stays
//! invisible, as for clients. Symlinks are never followed.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::BatchError;
use crate::bucket::BucketState;
use crate::bucket::resolve::{self, Located, Stat, View};
use crate::config::model::Traverse;
use crate::error::{Errno, FsResult};
use crate::filter::CompiledFilter;
use crate::item::{candidate, path_text};
use crate::origin::Backend;
use crate::origin::s3::S3Origin;
use crate::origin::s3::flat::{FlatListing, MAX_PAGE};
use crate::tree::{BucketTree, Place, split_path};

/// One matching item of a scan.
pub struct ScanItem {
    /// Bucket path components.
    pub path: Vec<OsString>,
    pub st: libc::stat,
    /// 1 = directly in the scan path.
    pub depth: u32,
}

/// Where the previous chunk ended: the last item's position. Serialisable
/// (serde) so the caller can persist it as JSON; names that are not UTF-8
/// are kept as byte arrays, so a marker always names exactly one path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// The item's bucket path components.
    #[serde(with = "names")]
    pub path: Vec<OsString>,
    /// Whether the item was a directory: in key order a directory sits at
    /// `key/`, not at `key`.
    #[serde(default)]
    pub dir: bool,
}

/// A scan of one path of one bucket. See the module documentation.
pub struct Scan<'a> {
    bucket: &'a BucketState,
    /// The bucket's layout as this scan sees it: hidden mounts that contain
    /// the scan path count as exposed.
    tree: BucketTree,
    base: Vec<OsString>,
    filter: &'a CompiledFilter,
    traverse: Traverse,
    /// Set when the whole scan path lies in one S3 origin: that origin and
    /// the path inside it.
    s3: Option<(Arc<S3Origin>, Vec<OsString>)>,
    /// The stat of directories made up by the layout (SPEC §3.1 rule 3).
    synthetic: libc::stat,
    page_size: usize,
    /// Where the last chunk stopped and how to go on from there, for a
    /// follow-up call whose marker is that chunk's last item.
    resume: Option<(Marker, Cursor)>,
}

enum Cursor {
    Tree(Walk),
    S3(Box<FlatListing>),
    End,
}

/// Where a marker puts the resumption, relative to the scan path.
enum Position {
    Start,
    After(Vec<OsString>),
    End,
}

/// A depth-first walk in progress (for breadth-first: one pass of it).
struct Walk {
    /// The directories being listed, outermost first.
    stack: Vec<Frame>,
    /// Breadth-first: the depth whose items this pass yields.
    level: Option<u32>,
    /// This pass started from a marker, so it saw only part of its level.
    partial: bool,
    /// This pass met a directory at `level` whose entries may match.
    deeper: bool,
}

struct Frame {
    /// Bucket path of the directory.
    dir: Vec<OsString>,
    depth: u32,
    /// Resuming: only names after this one (the marker's component here).
    after: Option<OsString>,
    /// Entries still to visit, largest first (so `pop` gives the next);
    /// `None` until first needed, so a chunk that ends before it lists
    /// nothing more.
    todo: Option<Vec<Child>>,
    /// The directory's path inside its origin(s).
    rel: Vec<OsString>,
}

impl Frame {
    fn new(dir: Vec<OsString>, depth: u32, after: Option<OsString>) -> Frame {
        Frame {
            dir,
            depth,
            after,
            todo: None,
            rel: Vec::new(),
        }
    }
}

struct Child {
    name: OsString,
    d_type: u8,
    /// The origin that listed it; `None` for a name the layout adds.
    mount: Option<usize>,
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl<'a> Scan<'a> {
    /// A scan of bucket path `base` (e.g. "/image_landing") of `bucket` with
    /// `filter` and `traverse`. Fails when `base` is not an existing
    /// directory of the bucket.
    pub fn new(
        bucket: &'a BucketState,
        base: &str,
        filter: &'a CompiledFilter,
        traverse: Traverse,
    ) -> Result<Scan<'a>, BatchError> {
        let bname = bucket.name.to_string_lossy();
        let base_path = split_path(base);
        if base_path.iter().any(|c| c == "..") {
            return Err(BatchError::scan(
                Errno::EINVAL,
                format!("scan path {base} of bucket {bname}: `..` is not allowed"),
            ));
        }
        let tree = bucket.tree.seen_from(&base_path);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // SAFETY: libc::stat is plain old data; all-zero is a valid value.
        let mut synthetic: libc::stat = unsafe { std::mem::zeroed() };
        synthetic.st_mode = libc::S_IFDIR | 0o555;
        synthetic.st_nlink = 2;
        synthetic.st_mtime = now;
        synthetic.st_atime = now;
        synthetic.st_ctime = now;
        let mut scan = Scan {
            bucket,
            tree,
            base: base_path,
            filter,
            traverse,
            s3: None,
            synthetic,
            page_size: MAX_PAGE,
            resume: None,
        };
        match scan.locate(&scan.base) {
            Ok(st) if is_dir(&st) => {}
            Ok(_) => {
                return Err(BatchError::scan(
                    Errno::ENOTDIR,
                    format!("scan path {base} of bucket {bname} is not a directory"),
                ));
            }
            Err(e) if e == Errno::ENOENT => {
                return Err(BatchError::scan(
                    e,
                    format!("scan path {base} of bucket {bname} does not exist"),
                ));
            }
            Err(e) => {
                return Err(BatchError::scan(
                    e,
                    format!("scan path {base} of bucket {bname}: {e}"),
                ));
            }
        }
        scan.s3 = scan.single_s3();
        Ok(scan)
    }

    /// Keys per S3 listing request (default and most: 1000). Tests use
    /// small pages to cross page boundaries with few objects.
    pub fn with_page_size(mut self, keys: usize) -> Self {
        self.page_size = keys.clamp(1, MAX_PAGE);
        self
    }

    /// Up to `n` matching items strictly after `after` (None = from the
    /// beginning), in scan order, and the count of entries examined. Never
    /// returns an item ≤ `after`. Fewer than `n` items: the scan is complete.
    /// Blocks on file-system calls and S3 requests (these run on the shared
    /// I/O runtime): call it from a plain thread or `spawn_blocking`.
    pub fn next_chunk(
        &mut self,
        after: Option<&Marker>,
        n: usize,
    ) -> Result<(Vec<ScanItem>, u64), BatchError> {
        let now = SystemTime::now();
        // Dropped on error: the next call starts again from its marker.
        let kept = self.resume.take();
        let mut cursor = match (after, kept) {
            (Some(a), Some((m, c))) if *a == m => c,
            _ => self.start(after)?,
        };
        let mut items = Vec::new();
        let mut examined = 0;
        while items.len() < n {
            match self.advance(&mut cursor, now, &mut examined)? {
                Some(item) => items.push(item),
                None => {
                    cursor = Cursor::End;
                    break;
                }
            }
        }
        let position = match items.last() {
            Some(last) => Some(self.marker_of(last)),
            None => after.cloned(),
        };
        self.resume = position.map(|m| (m, cursor));
        Ok((items, examined))
    }

    pub fn marker_of(&self, item: &ScanItem) -> Marker {
        Marker {
            path: item.path.clone(),
            dir: is_dir(&item.st),
        }
    }

    /// The S3 origin and path inside it when everything below the scan path
    /// lives in that one origin (no mount point below it, no merge).
    fn single_s3(&self) -> Option<(Arc<S3Origin>, Vec<OsString>)> {
        let nested = self.tree.mounts.iter().any(|m| {
            !m.is_root && m.point.len() > self.base.len() && m.point.starts_with(&self.base)
        });
        if nested {
            return None;
        }
        let (mount, rel) = match self.tree.place(&self.base, true) {
            Place::Mount { mount, rel } => (mount, rel),
            Place::Root { rel } => {
                let mut roots = self.tree.root_mounts();
                match (roots.next(), roots.next()) {
                    (Some(r), None) => (r, rel),
                    _ => return None,
                }
            }
            Place::Hidden => return None,
        };
        match self.bucket.origins.get(mount) {
            Some(Backend::S3(o)) => Some((o.clone(), rel)),
            _ => None,
        }
    }

    fn position(&self, m: &Marker) -> Position {
        if m.path.starts_with(&self.base) {
            let rel = &m.path[self.base.len()..];
            if rel.is_empty() {
                Position::Start
            } else {
                Position::After(rel.to_vec())
            }
        } else if m.path < self.base {
            // Before every item (or an ancestor of the scan path): the
            // marker of another path, e.g. after a config change.
            Position::Start
        } else {
            Position::End
        }
    }

    fn start(&self, after: Option<&Marker>) -> Result<Cursor, BatchError> {
        let (rel, dir) = match after.map(|m| (self.position(m), m.dir)) {
            None | Some((Position::Start, _)) => (None, false),
            Some((Position::After(rel), dir)) => (Some(rel), dir),
            Some((Position::End, _)) => return Ok(Cursor::End),
        };
        match &self.s3 {
            Some((origin, inside)) => {
                // Only direct entries can match: list with a delimiter, so
                // whatever lies deeper is never read.
                let children_only = !self.filter.descend(1);
                origin
                    .list_flat(
                        inside,
                        rel.as_deref().map(|r| (r, dir)),
                        children_only,
                        self.page_size,
                    )
                    .map(|l| Cursor::S3(Box::new(l)))
                    .map_err(|e| self.fail("cannot start the S3 listing", e))
            }
            None => Ok(Cursor::Tree(self.start_walk(rel.as_deref()))),
        }
    }

    fn fail(&self, what: &str, e: Errno) -> BatchError {
        let message = format!(
            "scan of {} in bucket {}: {what}: {e}",
            path_text(&self.base),
            self.bucket.name.to_string_lossy()
        );
        BatchError::scan(e, message)
    }

    /// The next matching item, or `None` at the end.
    fn advance(
        &self,
        cursor: &mut Cursor,
        now: SystemTime,
        examined: &mut u64,
    ) -> Result<Option<ScanItem>, BatchError> {
        match cursor {
            Cursor::End => Ok(None),
            Cursor::Tree(walk) => Ok(self.step(walk, now, examined)),
            Cursor::S3(listing) => loop {
                let before = listing.examined();
                let next = listing.next_entry();
                *examined += listing.examined() - before;
                let Some(e) = next.map_err(|e| self.fail("S3 listing failed", e))? else {
                    return Ok(None);
                };
                let depth = e.rel.len() as u32;
                let Some(name) = e.rel.last() else {
                    continue;
                };
                if self
                    .filter
                    .matches_scan(&candidate(name, &e.st, depth), now)
                {
                    let mut path = self.base.clone();
                    path.extend(e.rel);
                    return Ok(Some(ScanItem {
                        path,
                        st: e.st,
                        depth,
                    }));
                }
            },
        }
    }

    /// A walk from the beginning, or from just after `after` (a path below
    /// the scan path): only the directories on its path are listed, each
    /// from the marker's component on.
    fn start_walk(&self, after: Option<&[OsString]>) -> Walk {
        let level = match self.traverse {
            Traverse::Depth => None,
            Traverse::Breadth => Some(after.map_or(1, |r| r.len() as u32)),
        };
        let first = after.and_then(|r| r.first()).cloned();
        let mut stack = vec![Frame::new(self.base.clone(), 0, first)];
        if let Some(m) = after {
            let mut path = self.base.clone();
            for (i, name) in m.iter().enumerate() {
                let depth = i as u32 + 1;
                // Depth-first, the marker's own entries come after it;
                // breadth-first they belong to the next pass.
                if level.is_some_and(|l| depth >= l) || !self.filter.descend(depth) {
                    break;
                }
                path.push(name.clone());
                match self.locate(&path) {
                    Ok(st) if is_dir(&st) => {}
                    _ => break,
                }
                stack.push(Frame::new(path.clone(), depth, m.get(i + 1).cloned()));
            }
        }
        Walk {
            stack,
            level,
            partial: after.is_some(),
            deeper: false,
        }
    }

    fn step(&self, walk: &mut Walk, now: SystemTime, examined: &mut u64) -> Option<ScanItem> {
        loop {
            let Some(top) = walk.stack.last_mut() else {
                // A breadth-first pass is over: the next level, if any
                // directory may hold one.
                match walk.level {
                    Some(l) if (walk.deeper || walk.partial) && self.filter.descend(l) => {
                        walk.level = Some(l + 1);
                        walk.partial = false;
                        walk.deeper = false;
                        walk.stack.push(Frame::new(self.base.clone(), 0, None));
                        continue;
                    }
                    _ => return None,
                }
            };
            if top.todo.is_none() {
                let (rel, todo) = self.list(&top.dir, top.after.as_deref());
                top.rel = rel;
                top.todo = Some(todo);
            }
            let Some(child) = top.todo.as_mut().and_then(Vec::pop) else {
                walk.stack.pop();
                continue;
            };
            *examined += 1;
            let depth = top.depth + 1;
            let above_level = walk.level.is_some_and(|l| depth < l);
            // Above the level of a breadth-first pass only directories
            // matter; the listing's type saves a stat for everything else.
            if above_level && child.d_type != libc::DT_DIR && child.d_type != libc::DT_UNKNOWN {
                continue;
            }
            let mut path = top.dir.clone();
            path.push(child.name);
            let stat = match child.mount {
                Some(m) => {
                    let mut rel = top.rel.clone();
                    rel.extend(path.last().cloned());
                    self.bucket.origins[m].lstat_listed(&rel).map(|(st, _)| st)
                }
                None => self.locate(&path),
            };
            let st = match stat {
                Ok(st) => st,
                // Gone since the listing (or its parent replaced): not an error.
                Err(e) if e == Errno::ENOENT || e == Errno::ENOTDIR => continue,
                Err(e) => {
                    tracing::warn!(bucket = %self.bucket.name.to_string_lossy(),
                        path = %path_text(&path), error = %e,
                        "batch scan: cannot stat an entry; skipped");
                    continue;
                }
            };
            let descend = is_dir(&st) && self.filter.descend(depth);
            match walk.level {
                Some(_) if above_level => {
                    if descend {
                        walk.stack.push(Frame::new(path, depth, None));
                    }
                    continue;
                }
                Some(_) => walk.deeper |= descend,
                None => {
                    if descend {
                        walk.stack.push(Frame::new(path.clone(), depth, None));
                    }
                }
            }
            let name = path.last().map(OsString::as_os_str).unwrap_or_default();
            if self.filter.matches_scan(&candidate(name, &st, depth), now) {
                return Some(ScanItem { path, st, depth });
            }
        }
    }

    fn view(&self) -> View<'_> {
        View {
            tree: &self.tree,
            origins: &self.bucket.origins,
            for_client: true,
        }
    }

    /// The entries of directory `dir` (bucket path) after `after`, largest
    /// name first, and the directory's path inside its origin(s). An
    /// unreadable directory is logged and yields nothing.
    fn list(&self, dir: &[OsString], after: Option<&OsStr>) -> (Vec<OsString>, Vec<Child>) {
        let wanted = |name: &OsStr| after.is_none_or(|a| name.as_bytes() > a.as_bytes());
        let listing = match resolve::merged_listing(self.view(), dir, &wanted) {
            Ok(l) => l,
            Err(_) => return (Vec::new(), Vec::new()),
        };
        for (_, e) in &listing.failed {
            tracing::warn!(bucket = %self.bucket.name.to_string_lossy(),
                path = %path_text(dir), error = %e,
                "batch scan: cannot list a directory; skipped");
        }
        let mut out: Vec<Child> = listing
            .entries
            .into_iter()
            .map(|e| Child {
                name: e.name,
                d_type: e.d_type,
                mount: e.mount,
            })
            .collect();
        // Names are unique (the merge keeps the first declared root
        // mount's); largest first so that `pop` gives the next.
        out.sort_unstable_by(|a, b| b.name.as_bytes().cmp(a.name.as_bytes()));
        (listing.rel, out)
    }

    /// The stat of bucket path `path` as the scan sees it (the merge rules'
    /// lookup; layout directories get a synthetic stat).
    fn locate(&self, path: &[OsString]) -> FsResult<libc::stat> {
        match resolve::locate(self.view(), path, Stat::Listed)? {
            Located::Origin { st, .. } => Ok(st),
            Located::Synthetic => Ok(self.synthetic),
        }
    }
}

mod names;
#[cfg(test)]
mod tests;
