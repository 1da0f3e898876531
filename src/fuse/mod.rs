//! The `fuser::Filesystem` glue: each method calls the core and turns its
//! `FsResult` into a reply. No file-system logic lives here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::error::Errno;
use crate::fs::{Core, Ctx, Entry, SetAttr, XattrReply};
use crate::origin::local::SetTime;

pub struct FuseFs {
    core: Arc<Core>,
    /// Asked for by the mount options; `active` once the kernel agreed.
    want_passthrough: bool,
    passthrough: AtomicBool,
    backing: Mutex<BackingCache>,
}

impl FuseFs {
    pub fn new(core: Arc<Core>, want_passthrough: bool) -> Self {
        FuseFs {
            core,
            want_passthrough,
            passthrough: AtomicBool::new(false),
            backing: Mutex::new(BackingCache::default()),
        }
    }

    /// The kernel's backing id for the file behind handle `fh`: one per
    /// inode at a time (the kernel refuses two different backing files for
    /// one inode), held by every open handle of it.
    fn backing_for(
        &self,
        ino: u64,
        fh: u64,
        register: impl FnOnce(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> std::io::Result<Arc<BackingId>> {
        let mut cache = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        let id = match cache.by_inode.get(&ino).and_then(Weak::upgrade) {
            Some(id) => id,
            None => {
                let h = self
                    .core
                    .handles
                    .file(fh)
                    .map_err(|e| std::io::Error::from_raw_os_error(e.0))?;
                let file = h
                    .file
                    .as_local()
                    .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOTSUP))?;
                let id = Arc::new(register(file)?);
                cache.by_inode.insert(ino, Arc::downgrade(&id));
                id
            }
        };
        cache.by_handle.insert(fh, id.clone());
        Ok(id)
    }

    fn drop_backing(&self, fh: u64) {
        let mut cache = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        if cache.by_handle.remove(&fh).is_some() {
            cache.by_inode.retain(|_, w| w.strong_count() > 0);
        }
    }
}

/// Backing ids of open files in passthrough mode.
#[derive(Default)]
struct BackingCache {
    by_handle: HashMap<u64, Arc<BackingId>>,
    by_inode: HashMap<u64, Weak<BackingId>>,
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn reply_entry(reply: ReplyEntry, r: Result<Entry, Errno>) {
    match r {
        Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => SetTime::At(d.as_secs() as i64, i64::from(d.subsec_nanos())),
            // fuser 0.18 turns the kernel's (secs < 0, nsec) into
            // EPOCH - (|secs| s + nsec ns); undo exactly that.
            Err(before) => {
                let d = before.duration();
                SetTime::At(-(d.as_secs() as i64), i64::from(d.subsec_nanos()))
            }
        },
    })
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger requests for sequential I/O; ignore what the kernel refuses.
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        // O_TRUNC reaches open (no separate truncate first: an S3 object is
        // not downloaded just to be emptied), and lookups in one directory
        // run in parallel.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // Passthrough: the kernel reads and writes local origin files
        // directly, at native speed; the daemon still sees open and release.
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        tracing::info!(
            passthrough = self.passthrough.load(Ordering::Relaxed),
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.core.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(e) => reply.attr(&e.ttl, &e.attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            fh: fh.map(|f| f.0),
        };
        match self.core.setattr(ino.0, s) {
            Ok(e) => reply.attr(&e.ttl, &e.attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.core.mknod(parent.0, name, mode, umask, rdev, ctx(req)),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.core.mkdir(parent.0, name, mode, umask, ctx(req)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.core.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.core.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.core
                .symlink(parent.0, link_name, target.as_os_str(), ctx(req)),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.core
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.core.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fh = match self.core.open(ino.0, flags.0) {
            Ok(fh) => fh,
            Err(e) => return reply.error(errno(e)),
        };
        if self.core.handle_direct(fh) {
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
        }
        if self.passthrough.load(Ordering::Relaxed) {
            match self.backing_for(ino.0, fh, |f| reply.open_backing(f)) {
                Ok(id) => {
                    return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "passthrough refused; serving reads and writes")
                }
            }
        }
        reply.opened(FileHandle(fh), FopenFlags::empty())
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.core.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.core.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.core.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.drop_backing(fh.0);
        reply_empty(reply, self.core.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.core.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.core.readdir(ino.0, fh.0, offset) {
            Ok(entries) => {
                for (next, e) in entries {
                    if reply.add(INodeNo(e.ino), next, e.kind, &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.core.readdir(ino.0, fh.0, offset) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        for (next, e) in entries {
            let dot = e.name == "." || e.name == "..";
            // Each entry but the dots counts as a kernel lookup.
            let entry = if dot {
                self.core.getattr(e.ino, None)
            } else {
                self.core.lookup_listed(ino.0, &e.name)
            };
            let Ok(entry) = entry else {
                // Gone since opendir: leave it out, as a fresh listing would.
                continue;
            };
            if reply.add(
                entry.attr.ino,
                next,
                &e.name,
                &entry.ttl,
                &entry.attr,
                Generation(0),
            ) {
                if !dot {
                    self.core.forget(entry.attr.ino.0, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.core.statfs(ino.0) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.core.setxattr(ino.0, name, value, flags));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.core.getxattr(ino.0, name, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.core.listxattr(ino.0, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.core.removexattr(ino.0, name));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (default_permissions); this
        // only answers whether the entry exists.
        reply_empty(reply, self.core.getattr(ino.0, None).map(drop));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .core
            .create(parent.0, name, mode, umask, flags, ctx(req))
        {
            Ok((e, fh)) => {
                if self.passthrough.load(Ordering::Relaxed) {
                    match self.backing_for(e.attr.ino.0, fh, |f| reply.open_backing(f)) {
                        Ok(id) => {
                            return reply.created_passthrough(
                                &e.ttl,
                                &e.attr,
                                Generation(0),
                                FileHandle(fh),
                                FopenFlags::empty(),
                                &id,
                            );
                        }
                        Err(err) => {
                            tracing::debug!(error = %err, "passthrough refused; serving reads and writes")
                        }
                    }
                }
                reply.created(
                    &e.ttl,
                    &e.attr,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.core.fallocate(fh.0, offset, length, mode));
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.core.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// How long the kernel may trust attributes when nothing invalidates them.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);
