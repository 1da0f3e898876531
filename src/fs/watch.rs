//! Keeps the kernel's caches true to local origins changed behind the
//! mount's back (another process, an FTP server): the events of the origin
//! watcher (`crate::watch`, which the daemon subscribes [`invalidate`] to)
//! turned into FUSE cache invalidations for the nodes the kernel may hold. Inotify does not see changes made on other
//! NFS clients; for those, the attribute TTL bounds how stale a view can be.

use std::ffi::OsString;

use notify::Event;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};

use super::Core;
use super::inodes::Ino;

/// What the watcher tells the kernel. Implemented for fuser's `Notifier`;
/// tests record the calls instead.
pub trait KernelCache: Send + Sync + 'static {
    /// Forget the cached lookup of `name` in directory `parent`.
    fn inval_entry(&self, parent: Ino, name: &std::ffi::OsStr);
    /// Forget cached attributes, and cached data too unless `attrs_only`.
    fn inval_inode(&self, ino: Ino, attrs_only: bool);
}

impl KernelCache for fuser::Notifier {
    fn inval_entry(&self, parent: Ino, name: &std::ffi::OsStr) {
        // ENOENT just means the kernel holds nothing to invalidate.
        let _ = fuser::Notifier::inval_entry(self, fuser::INodeNo(parent), name);
    }

    fn inval_inode(&self, ino: Ino, attrs_only: bool) {
        let offset = if attrs_only { -1 } else { 0 };
        let _ = fuser::Notifier::inval_inode(self, fuser::INodeNo(ino), offset, 0);
    }
}

/// How much of the kernel's view an origin event makes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staleness {
    /// Reads and opens change nothing.
    None,
    /// Size/times changed while a writer is still writing.
    Attrs,
    /// Content final (close after write) or metadata changed.
    Inode,
    /// A name appeared, vanished or moved.
    Entry,
}

fn staleness(kind: &EventKind) -> Staleness {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Staleness::Inode,
        EventKind::Access(_) => Staleness::None,
        EventKind::Modify(ModifyKind::Data(_)) => Staleness::Attrs,
        EventKind::Modify(ModifyKind::Metadata(_)) => Staleness::Inode,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
            Staleness::Entry
        }
        _ => Staleness::Entry,
    }
}

/// Applies one origin event to the kernel's caches.
pub fn invalidate(core: &Core, cache: &dyn KernelCache, event: &Event) {
    let level = staleness(&event.kind);
    if level == Staleness::None {
        return;
    }
    for abs in &event.paths {
        for (bucket, path) in core.bucket_paths_of(abs) {
            invalidate_path(core, cache, bucket, &path, level);
        }
    }
}

fn invalidate_path(
    core: &Core,
    cache: &dyn KernelCache,
    bucket: usize,
    path: &[OsString],
    level: Staleness,
) {
    let Some(root) = core.bucket_root_ino(bucket) else {
        return;
    };
    let (node, parent) = {
        let inodes = core.inodes_read();
        let node = inodes.find(root, path);
        let parent = match path.split_last() {
            Some((_, dir)) => inodes.find(root, dir),
            None => None,
        };
        (node, parent)
    };
    if let Some(ino) = node {
        cache.inval_inode(ino, level == Staleness::Attrs);
    }
    if level == Staleness::Entry
        && let (Some(parent), Some(name)) = (parent, path.last())
    {
        cache.inval_entry(parent, name);
        cache.inval_inode(parent, true);
    }
}
