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

/// Marker paths in JSON: each component a string when it is UTF-8, else an
/// array of its bytes.
mod names {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    #[serde(untagged)]
    enum NameRef<'a> {
        Text(&'a str),
        Bytes(&'a [u8]),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Name {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(path: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(path.iter().map(|c| match c.to_str() {
            Some(t) => NameRef::Text(t),
            None => NameRef::Bytes(c.as_bytes()),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        let names = Vec::<Name>::deserialize(d)?;
        Ok(names
            .into_iter()
            .map(|n| match n {
                Name::Text(t) => OsString::from(t),
                Name::Bytes(b) => OsString::from_vec(b),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{FileType, Filter};
    use crate::config::{Access, Origin};
    use crate::origin::LocalOrigin;
    use crate::tree::TreeMount;
    use std::fs;
    use std::os::unix::ffi::OsStringExt;
    use std::path::Path;

    /// A bucket of local origins: `(mountPoint, expose, origin dir)` each.
    fn bucket(mounts: &[(Option<&str>, bool, &Path)]) -> BucketState {
        let tree = BucketTree {
            name: "b".into(),
            mounts: mounts
                .iter()
                .map(|(p, expose, dir)| {
                    let point = p.map(split_path).unwrap_or_default();
                    TreeMount {
                        is_root: point.is_empty(),
                        point,
                        expose: *expose,
                        origin: Origin::Local(dir.to_path_buf()),
                    }
                })
                .collect(),
        };
        BucketState {
            name: "b".into(),
            tree,
            access: Access::default(),
            origins: mounts
                .iter()
                .map(|(_, _, dir)| Backend::Local(LocalOrigin::new(dir.to_path_buf())))
                .collect(),
        }
    }

    fn filter(f: Filter) -> CompiledFilter {
        CompiledFilter::new(Some(&f)).unwrap()
    }

    /// Everything, everywhere: any kind, hidden names too, unlimited depth.
    fn everything() -> CompiledFilter {
        filter(Filter {
            filetype: FileType::Any,
            recursive: true,
            hidden: true,
            ..Filter::default()
        })
    }

    fn text(path: &[OsString]) -> String {
        path_text(path)
    }

    fn texts(items: &[ScanItem]) -> Vec<String> {
        items.iter().map(|i| text(&i.path)).collect()
    }

    fn touch(p: &Path) {
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(p, b"x").unwrap();
    }

    fn full(b: &BucketState, base: &str, f: &CompiledFilter, t: Traverse) -> Vec<ScanItem> {
        let mut s = Scan::new(b, base, f, t).unwrap();
        let (items, _) = s.next_chunk(None, usize::MAX).unwrap();
        items
    }

    /// The names of the order test, with one that is not UTF-8.
    fn order_tree(root: &Path) -> OsString {
        let odd = OsString::from_vec(b"n\xff".to_vec());
        for f in ["a/x", "a/y/deep", "a-b", "a.b/k", "B", "\u{e9}"] {
            touch(&root.join(f));
        }
        touch(&root.join(&odd));
        odd
    }

    #[test]
    fn depth_first_order_is_name_byte_order() {
        let d = tempfile::tempdir().unwrap();
        order_tree(d.path());
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        let items = full(&b, "/", &f, Traverse::Depth);
        assert_eq!(
            texts(&items),
            [
                "/B",
                "/a",
                "/a/x",
                "/a/y",
                "/a/y/deep",
                "/a-b",
                "/a.b",
                "/a.b/k",
                "/n\u{fffd}",
                "/\u{e9}"
            ]
        );
        assert_eq!(items[8].path[0].as_bytes(), b"n\xff");
        // Pre-order with sorted siblings = order of the component sequences.
        let mut sorted: Vec<_> = items.iter().map(|i| i.path.clone()).collect();
        sorted.sort();
        assert_eq!(
            sorted,
            items.iter().map(|i| i.path.clone()).collect::<Vec<_>>()
        );
        let depths: Vec<u32> = items.iter().map(|i| i.depth).collect();
        assert_eq!(depths, [1, 1, 2, 2, 3, 1, 1, 2, 1, 1]);
    }

    #[test]
    fn breadth_first_order_is_depth_then_names() {
        let d = tempfile::tempdir().unwrap();
        order_tree(d.path());
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        let items = full(&b, "/", &f, Traverse::Breadth);
        assert_eq!(
            texts(&items),
            [
                "/B",
                "/a",
                "/a-b",
                "/a.b",
                "/n\u{fffd}",
                "/\u{e9}",
                "/a/x",
                "/a/y",
                "/a.b/k",
                "/a/y/deep"
            ]
        );
    }

    /// A tree of a few levels with files and directories mixed.
    fn wide_tree(root: &Path) {
        for i in 0..6 {
            touch(&root.join(format!("f{i}")));
            for j in 0..5 {
                touch(&root.join(format!("d{i}/g{j}")));
                if j % 2 == 0 {
                    touch(&root.join(format!("d{i}/s{j}/h")));
                    touch(&root.join(format!("d{i}/s{j}/t/u")));
                }
            }
        }
        fs::create_dir_all(root.join("empty")).unwrap();
    }

    /// All items by chunks of `n`, each chunk resumed from the previous one's
    /// marker; `fresh`: a new scan per chunk, from the marker persisted as
    /// JSON (as after a restart).
    fn chunked(
        b: &BucketState,
        f: &CompiledFilter,
        t: Traverse,
        n: usize,
        fresh: bool,
        limit: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut scan = Scan::new(b, "/", f, t).unwrap();
        let mut marker: Option<Marker> = None;
        loop {
            if fresh {
                scan = Scan::new(b, "/", f, t).unwrap();
                marker = marker.map(|m| {
                    let json = serde_json::to_string(&m).unwrap();
                    serde_json::from_str(&json).unwrap()
                });
            }
            let (items, _) = scan.next_chunk(marker.as_ref(), n).unwrap();
            assert!(items.len() <= n);
            out.extend(texts(&items));
            // A scan that repeats itself must fail here, not loop forever.
            assert!(
                out.len() <= limit,
                "more items than the whole scan: {out:?}"
            );
            match items.last() {
                Some(last) if items.len() == n => marker = Some(scan.marker_of(last)),
                _ => return out,
            }
        }
    }

    #[test]
    fn chunks_cover_every_item_exactly_once() {
        let d = tempfile::tempdir().unwrap();
        wide_tree(d.path());
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        for t in [Traverse::Depth, Traverse::Breadth] {
            let all = texts(&full(&b, "/", &f, t));
            assert_eq!(all.len(), 6 + 6 * (1 + 5 + 3 * 4) + 1);
            for n in [1, 7, 1000] {
                for fresh in [false, true] {
                    assert_eq!(
                        chunked(&b, &f, t, n, fresh, all.len()),
                        all,
                        "{t} n={n} fresh={fresh}"
                    );
                }
            }
        }
    }

    #[test]
    fn resume_from_each_marker_gives_the_suffix() {
        let d = tempfile::tempdir().unwrap();
        wide_tree(d.path());
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        for t in [Traverse::Depth, Traverse::Breadth] {
            let all = full(&b, "/", &f, t);
            let names = texts(&all);
            for (i, item) in all.iter().enumerate() {
                let mut s = Scan::new(&b, "/", &f, t).unwrap();
                let m = s.marker_of(item);
                let (rest, _) = s.next_chunk(Some(&m), usize::MAX).unwrap();
                assert_eq!(texts(&rest), names[i + 1..], "{t} after {}", names[i]);
            }
        }
    }

    #[test]
    fn markers_of_other_paths_and_gone_entries() {
        let d = tempfile::tempdir().unwrap();
        for f in ["m/a", "m/c/x", "m/e"] {
            touch(&d.path().join(f));
        }
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        let after = |path: &str, t: Traverse| {
            let m = Marker {
                path: split_path(path),
                dir: false,
            };
            let mut s = Scan::new(&b, "/m", &f, t).unwrap();
            texts(&s.next_chunk(Some(&m), 100).unwrap().0)
        };
        let t = Traverse::Depth;
        // A marker that no longer exists still places the scan.
        assert_eq!(after("/m/b", t), ["/m/c", "/m/c/x", "/m/e"]);
        assert_eq!(after("/m/c/w", t), ["/m/c/x", "/m/e"]);
        assert_eq!(after("/m/d/zz", t), ["/m/e"]);
        assert_eq!(after("/m/c/x", Traverse::Breadth), Vec::<String>::new());
        assert_eq!(after("/m/b", Traverse::Breadth), ["/m/c", "/m/e", "/m/c/x"]);
        // Before the scan path, or an ancestor of it: everything.
        assert_eq!(after("/a", t).len(), 4);
        assert_eq!(after("/", t).len(), 4);
        assert_eq!(after("/m", t).len(), 4);
        // After the scan path: nothing.
        assert!(after("/n", t).is_empty());
    }

    #[test]
    fn filter_depth_recursive_patterns_filetype() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "a.jpg",
            "b.png",
            ".h.jpg",
            "s/c.jpg",
            "s/t/d.jpg",
            "s/t/u/e.jpg",
        ] {
            touch(&d.path().join(f));
        }
        let b = bucket(&[(None, true, d.path())]);
        let run = |f: Filter| texts(&full(&b, "/", &filter(f), Traverse::Depth));
        // The default: regular files directly in the path, not hidden.
        assert_eq!(run(Filter::default()), ["/a.jpg", "/b.png"]);
        assert_eq!(
            run(Filter {
                recursive: true,
                ..Filter::default()
            }),
            ["/a.jpg", "/b.png", "/s/c.jpg", "/s/t/d.jpg", "/s/t/u/e.jpg"]
        );
        assert_eq!(
            run(Filter {
                recursive: true,
                depth: 2,
                ..Filter::default()
            }),
            ["/a.jpg", "/b.png", "/s/c.jpg"]
        );
        assert_eq!(
            run(Filter {
                recursive: true,
                patterns: vec!["*.jpg".into()],
                hidden: true,
                ..Filter::default()
            }),
            [
                "/.h.jpg",
                "/a.jpg",
                "/s/c.jpg",
                "/s/t/d.jpg",
                "/s/t/u/e.jpg"
            ]
        );
        // Directories are yielded only when the filetype admits them, but
        // traversed either way.
        assert_eq!(
            run(Filter {
                recursive: true,
                filetype: FileType::Directory,
                ..Filter::default()
            }),
            ["/s", "/s/t", "/s/t/u"]
        );
        assert_eq!(
            run(Filter {
                recursive: true,
                depth: 2,
                filetype: FileType::Any,
                ..Filter::default()
            }),
            ["/a.jpg", "/b.png", "/s", "/s/c.jpg", "/s/t"]
        );
    }

    #[test]
    fn no_listing_below_what_the_filter_can_reach() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            touch(&d.path().join(format!("top/f{i}")));
            touch(&d.path().join(format!("sub{i}/deep/x")));
        }
        let b = bucket(&[(None, true, d.path())]);
        let f = CompiledFilter::new(None).unwrap();
        for t in [Traverse::Depth, Traverse::Breadth] {
            let mut s = Scan::new(&b, "/", &f, t).unwrap();
            let (items, examined) = s.next_chunk(None, 100).unwrap();
            assert!(items.is_empty());
            // Only the 21 entries of the scan path itself.
            assert_eq!(examined, 21, "{t}");
        }
    }

    #[test]
    fn symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("real/f"));
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(".", d.path().join("real/loop")).unwrap();
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        let items = full(&b, "/", &f, Traverse::Depth);
        assert_eq!(texts(&items), ["/link", "/real", "/real/f", "/real/loop"]);
        assert_eq!(items[0].st.st_mode & libc::S_IFMT, libc::S_IFLNK);
    }

    #[test]
    fn merged_root_mounts_and_mount_points() {
        let d = tempfile::tempdir().unwrap();
        let (o0, o1, om, oh) = (
            d.path().join("o0"),
            d.path().join("o1"),
            d.path().join("om"),
            d.path().join("oh"),
        );
        touch(&o0.join("both"));
        fs::create_dir_all(&o1).unwrap();
        fs::write(o1.join("both"), b"longer").unwrap();
        touch(&o0.join("d/x"));
        touch(&o1.join("d/y"));
        touch(&o1.join("only1"));
        // Shadowed by the mount point /m.
        touch(&o0.join("m/shadowed"));
        touch(&om.join("in-m"));
        touch(&oh.join("in-h"));
        let b = bucket(&[
            (None, true, &o0),
            (None, true, &o1),
            (Some("/m"), true, &om),
            (Some("/h"), false, &oh),
            (Some("/deep/er"), true, &om),
        ]);
        let f = everything();
        let items = full(&b, "/", &f, Traverse::Depth);
        assert_eq!(
            texts(&items),
            [
                "/both",
                "/d",
                "/d/x",
                "/d/y",
                "/deep",
                "/deep/er",
                "/deep/er/in-m",
                "/m",
                "/m/in-m",
                "/only1"
            ]
        );
        // The first root mount wins a name.
        assert_eq!(items[0].st.st_size, 1);
        // A synthetic parent is a directory.
        assert!(is_dir(&items[4].st));
        // A scan inside a hidden mount sees it.
        let inside = full(&b, "/h", &f, Traverse::Depth);
        assert_eq!(texts(&inside), ["/h/in-h"]);
        assert_eq!(inside[0].depth, 1);
        let inside_m = full(&b, "/m", &f, Traverse::Breadth);
        assert_eq!(texts(&inside_m), ["/m/in-m"]);
    }

    #[test]
    fn vanishing_entries_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a", "b", "c", "d/e", "d/f"] {
            touch(&d.path().join(f));
        }
        let b = bucket(&[(None, true, d.path())]);
        let f = everything();
        let mut s = Scan::new(&b, "/", &f, Traverse::Depth).unwrap();
        let (first, _) = s.next_chunk(None, 1).unwrap();
        assert_eq!(texts(&first), ["/a"]);
        // Listed already (the scan keeps its walk), gone before its stat.
        fs::remove_file(d.path().join("b")).unwrap();
        fs::remove_dir_all(d.path().join("d")).unwrap();
        let m = s.marker_of(&first[0]);
        let (rest, _) = s.next_chunk(Some(&m), 10).unwrap();
        assert_eq!(texts(&rest), ["/c"]);
    }

    #[test]
    fn unreadable_directories_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let o0 = d.path().join("o0");
        touch(&o0.join("a"));
        touch(&o0.join("z"));
        // A second root mount whose listing always fails (ELOOP).
        let looped = d.path().join("loop");
        std::os::unix::fs::symlink("loop", &looped).unwrap();
        let b = bucket(&[(None, true, &o0), (None, true, &looped)]);
        let f = everything();
        assert_eq!(texts(&full(&b, "/", &f, Traverse::Depth)), ["/a", "/z"]);

        // Unreadable by permissions: only meaningful without CAP_DAC_OVERRIDE.
        // SAFETY: plain getter.
        if unsafe { libc::geteuid() } != 0 {
            touch(&o0.join("m/secret"));
            fs::set_permissions(
                o0.join("m"),
                std::os::unix::fs::PermissionsExt::from_mode(0o000),
            )
            .unwrap();
            let got = texts(&full(&b, "/", &f, Traverse::Depth));
            fs::set_permissions(
                o0.join("m"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
            assert_eq!(got, ["/a", "/m", "/z"]);
        }
    }

    #[test]
    fn base_must_be_an_existing_directory() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("file"));
        let b = bucket(&[(None, true, d.path()), (Some("/x/mnt"), true, d.path())]);
        let f = everything();
        let err = Scan::new(&b, "/missing", &f, Traverse::Depth)
            .err()
            .unwrap();
        let err = err.to_string();
        assert!(
            err.contains("/missing") && err.contains("does not exist"),
            "{err}"
        );
        let err = Scan::new(&b, "/file", &f, Traverse::Depth).err().unwrap();
        let err = err.to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert!(Scan::new(&b, "/../etc", &f, Traverse::Depth).is_err());
        // A synthetic parent of a mount point exists.
        let items = full(&b, "/x", &f, Traverse::Depth);
        assert_eq!(texts(&items)[..2], ["/x/mnt", "/x/mnt/file"]);
    }

    #[test]
    fn marker_json_keeps_raw_bytes() {
        let m = Marker {
            path: vec![OsString::from("dir"), OsString::from_vec(b"n\xff".to_vec())],
            dir: true,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"path":["dir",[110,255]],"dir":true}"#);
        assert_eq!(serde_json::from_str::<Marker>(&json).unwrap(), m);
        let old: Marker = serde_json::from_str(r#"{"path":["a"]}"#).unwrap();
        assert!(!old.dir);
    }

    #[test]
    fn large_tree_in_chunks_and_cheap_resume_near_the_end() {
        let d = tempfile::tempdir().unwrap();
        let (dirs, files) = (100, 1000);
        for i in 0..dirs {
            let dir = d.path().join(format!("d{i:03}"));
            fs::create_dir(&dir).unwrap();
            for j in 0..files {
                fs::File::create(dir.join(format!("f{j:04}"))).unwrap();
            }
        }
        let b = bucket(&[(None, true, d.path())]);
        let f = filter(Filter {
            recursive: true,
            ..Filter::default()
        });
        let mut s = Scan::new(&b, "/", &f, Traverse::Depth).unwrap();
        let mut marker = None;
        let mut count = 0;
        let mut last = Vec::new();
        loop {
            let (items, _) = s.next_chunk(marker.as_ref(), 1000).unwrap();
            if let Some(l) = items.last() {
                assert!(l.path > last);
                last = l.path.clone();
                marker = Some(s.marker_of(l));
            }
            count += items.len();
            assert!(count <= dirs * files);
            if items.len() < 1000 {
                break;
            }
        }
        assert_eq!(count, dirs * files);
        // From a persisted marker near the end: only what follows it is
        // examined.
        let m = Marker {
            path: split_path("/d099/f0997"),
            dir: false,
        };
        let mut fresh = Scan::new(&b, "/", &f, Traverse::Depth).unwrap();
        let (rest, examined) = fresh.next_chunk(Some(&m), 10).unwrap();
        assert_eq!(texts(&rest), ["/d099/f0998", "/d099/f0999"]);
        assert_eq!(examined, 2);
    }
}
