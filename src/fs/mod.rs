//! The file-system core: everything a FUSE request does, callable without a
//! kernel. It turns inode numbers into bucket paths (`inodes`), asks `tree`
//! which origin holds a path, runs the operation on that origin and answers
//! with attributes or an [`FsError`] (the errno, and why: see `error`).
//! The `fuse` module only translates, and logs a failure once.
//!
//! Lock order: `inodes` before `handles`; neither is held across an origin
//! call that can block for long.

mod dir;
pub mod error;
mod events;
pub mod handles;
pub mod inodes;
mod io;
mod namespace;
mod prestage;
#[cfg(test)]
mod tests;
pub mod watch;
mod xattr;

use std::ffi::{OsStr, OsString};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use crate::bucket::resolve::{self, Stat};
use crate::bucket::{BucketState, build_buckets};
use crate::config::Config;
use crate::error::Errno;
use crate::origin::Backend;

pub use dir::DirEntry;
pub use error::{FsError, FsResult};
pub use events::PutWatch;
pub use handles::HandleTable;
use inodes::{Identity, Ino, InodeTable, Kind, NodePath, ROOT_INO};
pub use namespace::SetAttr;
pub use xattr::XattrReply;

/// Mount-wide options from the command line (`-o`).
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub read_only: bool,
    /// Owner shown for every entry (`-o uid=`), instead of the origin's.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// How long the kernel may cache attributes and entries.
    pub attr_ttl: Duration,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: false,
            uid: None,
            gid: None,
            attr_ttl: Duration::from_secs(1),
        }
    }
}

/// Who is asking: the caller's ids, from the FUSE request.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
}

/// An answer to lookup/create/mkdir: attributes and how long to trust them.
#[derive(Debug, Clone)]
pub struct Entry {
    pub attr: FileAttr,
    pub ttl: Duration,
}

/// Where an existing bucket path lives.
#[derive(Debug, Clone)]
pub(crate) enum Located {
    /// A directory made up by the layout (rule 3) or a bucket root without
    /// a root mount: read-only, owned by no origin.
    Synthetic,
    /// An entry of origin `mount` at `rel`, with its current stat.
    Origin {
        mount: usize,
        rel: Vec<OsString>,
        st: Box<libc::stat>,
        /// How long the kernel may cache what this origin said.
        ttl: Duration,
    },
}

/// What an inode number stands for.
pub(crate) enum Target {
    MountRoot,
    Path { bucket: usize, path: Vec<OsString> },
}

pub struct Core {
    pub(crate) buckets: Vec<BucketState>,
    /// `Some(i)`: bucket `i` is the mount root (`--bucket`).
    pub(crate) single: Option<usize>,
    pub(crate) inodes: RwLock<InodeTable>,
    pub(crate) handles: HandleTable,
    pub(crate) opts: FsOptions,
    started: SystemTime,
    /// Last attributes of removed directories the kernel still knows.
    tombstones: std::sync::Mutex<rustc_hash::FxHashMap<Ino, libc::stat>>,
    /// The event engine, once connected.
    events: std::sync::OnceLock<events::Wiring>,
}

impl Core {
    /// Builds the core for the enabled buckets of `config` (exposed ones only,
    /// unless `only` names one bucket to serve at the root).
    pub fn new(config: &Config, only: Option<&str>, opts: FsOptions) -> FsResult<Core> {
        // The bucket layer's message is the whole story (a config problem).
        let all = build_buckets(config).map_err(|e| FsError::msg(Errno::EINVAL, e.to_string()))?;
        Core::with_buckets(config, &all, only, opts)
    }

    /// Like [`Core::new`], sharing the origins of `all` (from
    /// [`build_buckets`]) with other users such as the event engine.
    pub fn with_buckets(
        config: &Config,
        all: &[BucketState],
        only: Option<&str>,
        opts: FsOptions,
    ) -> FsResult<Core> {
        let mut buckets = Vec::new();
        for b in &config.buckets {
            if !b.meta.enable {
                continue;
            }
            match only {
                Some(name) if b.meta.name != name => continue,
                None if !b.meta.expose => continue,
                _ => {}
            }
            if let Some(state) = all.iter().find(|s| s.name == OsStr::new(&b.meta.name)) {
                buckets.push(state.clone());
            }
        }
        if let Some(name) = only
            && buckets.is_empty()
        {
            return Err(FsError::msg(
                Errno::EINVAL,
                format!("--bucket {name}: no enabled bucket has that name"),
            ));
        }
        let single = only.map(|_| 0);
        Ok(Core {
            buckets,
            single,
            inodes: RwLock::new(InodeTable::new(single)),
            handles: HandleTable::default(),
            opts,
            started: SystemTime::now(),
            tombstones: Default::default(),
            events: Default::default(),
        })
    }

    pub(crate) fn inodes_read(&self) -> std::sync::RwLockReadGuard<'_, InodeTable> {
        self.inodes.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn inodes_write(&self) -> std::sync::RwLockWriteGuard<'_, InodeTable> {
        self.inodes.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn target(&self, ino: Ino) -> FsResult<Target> {
        match self.inodes_read().path(ino) {
            Some(NodePath::MountRoot) => Ok(Target::MountRoot),
            Some(NodePath::Bucket { bucket, path }) => Ok(Target::Path { bucket, path }),
            None => Err(Errno::ENOENT.into()),
        }
    }

    /// The bucket and path of `name` inside directory `parent`.
    pub(crate) fn child_path(&self, parent: Ino, name: &OsStr) -> FsResult<(usize, Vec<OsString>)> {
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG.into());
        }
        // The kernel resolves `.`/`..` and never sends `/`; refuse them
        // anyway so no name can climb out of an origin.
        if name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/') {
            return Err(Errno::EINVAL.into());
        }
        match self.target(parent)? {
            Target::MountRoot => Err(Errno::EACCES.into()),
            Target::Path { bucket, mut path } => {
                path.push(name.to_os_string());
                Ok((bucket, path))
            }
        }
    }

    /// Finds the origin entry behind a bucket path, as a client sees it.
    pub(crate) fn locate(&self, bucket: usize, path: &[OsString]) -> FsResult<Located> {
        self.locate_with(bucket, path, false)
    }

    /// `listed`: attributes for a listing (readdirplus); an origin may then
    /// answer from its listing alone.
    pub(crate) fn locate_with(
        &self,
        bucket: usize,
        path: &[OsString],
        listed: bool,
    ) -> FsResult<Located> {
        let b = &self.buckets[bucket];
        // Approximate attributes (LIST only) are cached like exact ones: a
        // listing must not cost one request per entry.
        let how = if listed { Stat::Listed } else { Stat::Exact };
        Ok(match resolve::locate(b.view(true), path, how)? {
            resolve::Located::Synthetic => Located::Synthetic,
            resolve::Located::Origin { mount, rel, st } => Located::Origin {
                ttl: b.origins[mount].attr_ttl(self.opts.attr_ttl),
                mount,
                rel,
                st: Box::new(st),
            },
        })
    }

    pub(crate) fn origin(&self, bucket: usize, mount: usize) -> &Backend {
        &self.buckets[bucket].origins[mount]
    }

    fn synthetic_attr(&self, ino: Ino) -> FileAttr {
        let t = self.started;
        FileAttr {
            ino: INodeNo(ino),
            size: 4096,
            blocks: 8,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.opts.uid.unwrap_or(0),
            gid: self.opts.gid.unwrap_or(0),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    pub(crate) fn attr_from_stat(&self, ino: Ino, st: &libc::stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: system_time(st.st_atime, st.st_atime_nsec),
            mtime: system_time(st.st_mtime, st.st_mtime_nsec),
            ctime: system_time(st.st_ctime, st.st_ctime_nsec),
            crtime: system_time(st.st_ctime, st.st_ctime_nsec),
            kind: file_type(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: self.opts.uid.unwrap_or(st.st_uid),
            gid: self.opts.gid.unwrap_or(st.st_gid),
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
            flags: 0,
        }
    }

    /// Attributes for a located entry, and how long the kernel may keep them.
    /// Files with several hard links get no caching: the kernel knows each
    /// link as its own inode and could not see a change made through another.
    pub(crate) fn entry_for(&self, ino: Ino, loc: &Located) -> Entry {
        match loc {
            Located::Synthetic => Entry {
                attr: self.synthetic_attr(ino),
                ttl: self.opts.attr_ttl,
            },
            Located::Origin { st, ttl, .. } => self.entry_with_ttl(ino, st, *ttl),
        }
    }

    pub(crate) fn entry_from_stat(&self, ino: Ino, st: &libc::stat) -> Entry {
        self.entry_with_ttl(ino, st, self.opts.attr_ttl)
    }

    fn entry_with_ttl(&self, ino: Ino, st: &libc::stat, ttl: Duration) -> Entry {
        let attr = self.attr_from_stat(ino, st);
        let ttl = if attr.kind != FileType::Directory && attr.nlink > 1 {
            Duration::ZERO
        } else {
            ttl
        };
        Entry { attr, ttl }
    }

    /// Which bucket is called `name` at the root of a multi-bucket mount.
    fn bucket_by_name(&self, name: &OsStr) -> Option<usize> {
        self.buckets.iter().position(|b| b.name == name)
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        self.lookup_with(parent, name, false)
    }

    /// A lookup for an entry of a listing being returned (readdirplus).
    pub fn lookup_listed(&self, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        self.lookup_with(parent, name, true)
    }

    fn lookup_with(&self, parent: Ino, name: &OsStr, listed: bool) -> FsResult<Entry> {
        if let Target::MountRoot = self.target(parent)? {
            let bucket = self.bucket_by_name(name).ok_or(Errno::ENOENT)?;
            let loc = self.locate(bucket, &[])?;
            let ino =
                self.inodes_write()
                    .entry(ROOT_INO, name, Kind::Dir, Some(bucket), true, None);
            return Ok(self.entry_for(ino, &loc));
        }
        let (bucket, path) = self.child_path(parent, name)?;
        let loc = self.locate_with(bucket, &path, listed)?;
        let identity = match &loc {
            Located::Origin { mount, st, .. } => self.link_identity(bucket, *mount, st),
            Located::Synthetic => None,
        };
        let ino = self
            .inodes_write()
            .entry(parent, name, kind_of(&loc), None, true, identity);
        Ok(self.entry_for(ino, &loc))
    }

    /// The identity under which names of a multi-link file share one node,
    /// after making sure a node recorded for it still leads to that file
    /// (origins reuse inode numbers of deleted files).
    pub(crate) fn link_identity(
        &self,
        bucket: usize,
        mount: usize,
        st: &libc::stat,
    ) -> Option<Identity> {
        if st.st_nlink <= 1 || st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return None;
        }
        let id = (bucket, mount, st.st_dev, st.st_ino);
        let recorded = self.inodes_read().by_identity(&id);
        if let Some(node) = recorded {
            let same_file = match self.target(node) {
                Ok(Target::Path { bucket: b, path }) => matches!(
                    self.locate(b, &path),
                    Ok(Located::Origin { st: s, .. }) if s.st_dev == st.st_dev && s.st_ino == st.st_ino
                ),
                _ => false,
            };
            if !same_file {
                self.inodes_write().drop_identity(&id);
            }
        }
        Some(id)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        if self.inodes_write().forget(ino, n) {
            self.tombstones().remove(&ino);
        }
    }

    pub(crate) fn tombstones(
        &self,
    ) -> std::sync::MutexGuard<'_, rustc_hash::FxHashMap<Ino, libc::stat>> {
        self.tombstones.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn getattr(&self, ino: Ino, fh: Option<u64>) -> FsResult<Entry> {
        if let Some(st) = fh.and_then(|fh| self.handles.fstat(fh)) {
            return Ok(self.entry_from_stat(ino, &st?));
        }
        match self.target(ino) {
            Ok(Target::MountRoot) => Ok(Entry {
                attr: self.synthetic_attr(ino),
                ttl: self.opts.attr_ttl,
            }),
            Ok(Target::Path { bucket, path }) => {
                let loc = self.locate(bucket, &path)?;
                Ok(self.entry_for(ino, &loc))
            }
            // Unlinked but still open somewhere: answer from the open file.
            Err(e) => match self.handles.fstat_any(ino) {
                Some(st) => Ok(self.entry_from_stat(ino, &st?)),
                None => {
                    let tomb = self.tombstones().get(&ino).copied();
                    tomb.map(|st| self.entry_from_stat(ino, &st)).ok_or(e)
                }
            },
        }
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        match self.target(ino)? {
            Target::MountRoot => Err(Errno::EINVAL.into()),
            Target::Path { bucket, path } => match self.locate(bucket, &path)? {
                Located::Synthetic => Err(Errno::EINVAL.into()),
                Located::Origin { mount, rel, .. } => {
                    Ok(self.origin(bucket, mount).readlink(&rel)?)
                }
            },
        }
    }

    /// statfs of the origin behind `ino` (the first origin for layout dirs).
    pub fn statfs(&self, ino: Ino) -> FsResult<libc::statvfs> {
        let located = match self.target(ino)? {
            Target::Path { bucket, path } => match self.locate(bucket, &path)? {
                Located::Origin { mount, .. } => Some((bucket, mount)),
                Located::Synthetic => None,
            },
            Target::MountRoot => None,
        };
        let (bucket, mount) = located
            .or_else(|| {
                self.buckets
                    .iter()
                    .position(|b| !b.origins.is_empty())
                    .map(|b| (b, 0))
            })
            .ok_or(Errno::ENOSYS)?;
        Ok(self.origin(bucket, mount).statvfs(&[])?)
    }

    /// Calls `f` for every node the kernel may have cached for `abs`, a path
    /// inside a local origin: (bucket root ino, bucket path).
    pub(crate) fn bucket_paths_of(&self, abs: &std::path::Path) -> Vec<(usize, Vec<OsString>)> {
        let mut out = Vec::new();
        for (bi, b) in self.buckets.iter().enumerate() {
            for (mi, o) in b.origins.iter().enumerate() {
                if let Some(rel) = o.as_local().and_then(|l| l.rel_of(abs)) {
                    let mut path = b.tree.mounts[mi].point.clone();
                    path.extend(rel);
                    out.push((bi, path));
                }
            }
        }
        out
    }

    pub(crate) fn bucket_root_ino(&self, bucket: usize) -> Option<Ino> {
        self.inodes_read()
            .bucket_root(bucket, &self.buckets[bucket].name)
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn local_roots(&self) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = self
            .buckets
            .iter()
            .flat_map(|b| {
                b.origins
                    .iter()
                    .filter_map(|o| o.as_local().map(|l| l.root().to_path_buf()))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

pub(crate) fn kind_of(loc: &Located) -> Kind {
    match loc {
        Located::Synthetic => Kind::Dir,
        Located::Origin { st, .. } => kind_of_mode(st.st_mode),
    }
}

pub(crate) fn kind_of_mode(mode: libc::mode_t) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG => Kind::File,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn file_type(mode: libc::mode_t) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

/// Shared handle for the FUSE glue and the watcher.
pub type SharedCore = Arc<Core>;
