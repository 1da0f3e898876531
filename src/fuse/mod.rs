//! The `fuser::Filesystem` glue: each method opens one tracing span for the
//! request (op, inode, handle), calls the core, and turns its `FsResult`
//! into a reply. A failed request is logged once, by [`fail!`], inside that
//! span. No file-system logic lives here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, CopyFileRangeFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags, PollNotifier,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use crate::fs::error::Severity;
use crate::fs::{Core, Ctx, Entry, FsError, FsResult, SetAttr, XattrReply};
use crate::origin::local::SetTime;

pub struct FuseFs {
    core: Arc<Core>,
    /// Asked for by the mount options; `active` once the kernel agreed.
    want_passthrough: bool,
    passthrough: AtomicBool,
    backing: Mutex<BackingCache>,
    /// The session's mount, for `destroy` (set by [`mount`]).
    at_end: Arc<Mutex<Option<fuser::SessionUnmounter>>>,
}

impl FuseFs {
    pub fn new(core: Arc<Core>, want_passthrough: bool) -> Self {
        FuseFs {
            core,
            want_passthrough,
            passthrough: AtomicBool::new(false),
            backing: Mutex::new(BackingCache::default()),
            at_end: Arc::default(),
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
        // Held across the registration (one ioctl on /dev/fuse, no backend
        // call): two opens of one inode must not register two files.
        let mut cache = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        let id = match cache.by_inode.get(&ino).and_then(Weak::upgrade) {
            Some(id) => id,
            None => {
                let h = self
                    .core
                    .handles
                    .file(fh)
                    .map_err(|e| std::io::Error::from_raw_os_error(e.errno().0))?;
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

/// The span of one FUSE request, entered until the handler returns, so
/// that everything logged while serving it (here, in the core, in an
/// origin) names the request: `fuse{op=lookup ino=1 name="a"}`.
macro_rules! request_span {
    ($op:literal $(, $($field:tt)+)?) => {
        tracing::info_span!("fuse", op = $op $(, $($field)+)?).entered()
    };
}

/// The one place a failed request becomes a reply: logs the error once,
/// at the level its severity asks for, and replies with its errno.
macro_rules! fail {
    ($reply:expr, $err:expr) => {{
        let e: FsError = $err;
        log_failure(&e);
        $reply.error(fuser::Errno::from_i32(e.errno().0))
    }};
}

/// Debug for answers programs expect (ENOENT of a probe, EEXIST of
/// O_EXCL …: normal operation logs nothing above INFO), warn for a request
/// that failed for a reason an operator should see, error for a fault of
/// the daemon itself.
fn log_failure(e: &FsError) {
    let errno = e.errno().0;
    match e.severity() {
        Severity::Expected => tracing::debug!(errno, error = %e.report(), "request failed"),
        Severity::Failure => tracing::warn!(errno, error = %e.report(), "request failed"),
        Severity::Fault => tracing::error!(errno, error = %e.report(), "request failed"),
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn reply_entry(reply: ReplyEntry, r: FsResult<Entry>) {
    match r {
        Ok(e) => reply.entry(&e.ttl, &e.attr, Generation(0)),
        Err(e) => fail!(reply, e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: FsResult<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => fail!(reply, e),
    }
}

fn reply_attr(reply: ReplyAttr, r: FsResult<Entry>) {
    match r {
        Ok(e) => reply.attr(&e.ttl, &e.attr),
        Err(e) => fail!(reply, e),
    }
}

fn reply_xattr(reply: ReplyXattr, r: FsResult<XattrReply>) {
    match r {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        Err(e) => fail!(reply, e),
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

    /// The session has ended: the kernel closed it after an unmount, ours
    /// (the signal thread's unmounter, which leaves nothing here) or
    /// someone else's (`umount`, `fusermount3 -u`). In that second case
    /// fuser still holds the mount and would unmount it again when the
    /// session drops, warning about the EINVAL of a path that is no longer
    /// a mount point: settle it here, where EINVAL means "already gone".
    fn destroy(&mut self) {
        let unmounter = self.at_end.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut u) = unmounter {
            match u.unmount() {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("the file system was unmounted from outside")
                }
                Err(e) => tracing::warn!(error = %e, "unmount at the end of the session failed"),
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _span = request_span!("lookup", ino = parent.0, name = ?name);
        reply_entry(reply, self.core.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _span = request_span!("forget", ino = ino.0);
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let fh = fh.map(|f| f.0);
        let _span = request_span!("getattr", ino = ino.0, fh);
        reply_attr(reply, self.core.getattr(ino.0, fh));
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
        let fh = fh.map(|f| f.0);
        let _span = request_span!("setattr", ino = ino.0, fh);
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            fh,
        };
        reply_attr(reply, self.core.setattr(ino.0, s));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _span = request_span!("readlink", ino = ino.0);
        match self.core.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => fail!(reply, e),
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
        let _span = request_span!("mknod", ino = parent.0, name = ?name);
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
        let _span = request_span!("mkdir", ino = parent.0, name = ?name);
        reply_entry(
            reply,
            self.core.mkdir(parent.0, name, mode, umask, ctx(req)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _span = request_span!("unlink", ino = parent.0, name = ?name);
        reply_empty(reply, self.core.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _span = request_span!("rmdir", ino = parent.0, name = ?name);
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
        let _span = request_span!("symlink", ino = parent.0, name = ?link_name);
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
        let _span = request_span!(
            "rename",
            ino = parent.0,
            name = ?name,
            new_ino = newparent.0,
            new_name = ?newname
        );
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
        let _span = request_span!("link", ino = ino.0, new_ino = newparent.0, new_name = ?newname);
        reply_entry(reply, self.core.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let span = request_span!("open", ino = ino.0, fh = tracing::field::Empty);
        let fh = match self.core.open(ino.0, flags.0) {
            Ok(fh) => fh,
            Err(e) => return fail!(reply, e),
        };
        span.record("fh", fh);
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
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _span = request_span!("read", ino = ino.0, fh = fh.0, offset, size);
        match self.core.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => fail!(reply, e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _span = request_span!("write", ino = ino.0, fh = fh.0, offset, size = data.len());
        match self.core.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => fail!(reply, e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _span = request_span!("flush", ino = ino.0, fh = fh.0);
        reply_empty(reply, self.core.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _span = request_span!("release", ino = ino.0, fh = fh.0);
        self.drop_backing(fh.0);
        reply_empty(reply, self.core.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _span = request_span!("fsync", ino = ino.0, fh = fh.0);
        reply_empty(reply, self.core.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let span = request_span!("opendir", ino = ino.0, fh = tracing::field::Empty);
        match self.core.opendir(ino.0) {
            Ok(fh) => {
                span.record("fh", fh);
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => fail!(reply, e),
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
        let _span = request_span!("readdir", ino = ino.0, fh = fh.0, offset);
        match self.core.readdir(ino.0, fh.0, offset) {
            Ok(entries) => {
                for (next, e) in entries {
                    if reply.add(INodeNo(e.ino), next, e.kind, &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => fail!(reply, e),
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
        let _span = request_span!("readdirplus", ino = ino.0, fh = fh.0, offset);
        let entries = match self.core.readdir(ino.0, fh.0, offset) {
            Ok(entries) => entries,
            Err(e) => return fail!(reply, e),
        };
        for (next, e) in entries {
            let dot = e.name == "." || e.name == "..";
            // Each entry but the dots counts as a kernel lookup.
            let entry = if dot {
                self.core.getattr(e.ino, None)
            } else {
                self.core.lookup_listed(ino.0, &e.name)
            };
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    // Gone since opendir: leave it out, as a fresh listing
                    // would. Not a failure of this request.
                    tracing::debug!(name = ?e.name, error = %err.report(), "entry left out of the listing");
                    continue;
                }
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
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _span = request_span!("releasedir", ino = ino.0, fh = fh.0);
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _span = request_span!("fsyncdir", ino = ino.0, fh = fh.0);
        // Directory changes are made by syscalls on the origin, which
        // persist them as it does for any client.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let _span = request_span!("statfs", ino = ino.0);
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
            Err(e) => fail!(reply, e),
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
        let _span = request_span!("setxattr", ino = ino.0, name = ?name);
        reply_empty(reply, self.core.setxattr(ino.0, name, value, flags));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _span = request_span!("getxattr", ino = ino.0, name = ?name);
        reply_xattr(reply, self.core.getxattr(ino.0, name, size));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _span = request_span!("listxattr", ino = ino.0);
        reply_xattr(reply, self.core.listxattr(ino.0, size));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _span = request_span!("removexattr", ino = ino.0, name = ?name);
        reply_empty(reply, self.core.removexattr(ino.0, name));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let _span = request_span!("access", ino = ino.0);
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
        let span =
            request_span!("create", ino = parent.0, name = ?name, fh = tracing::field::Empty);
        let (e, fh) = match self
            .core
            .create(parent.0, name, mode, umask, flags, ctx(req))
        {
            Ok(created) => created,
            Err(e) => return fail!(reply, e),
        };
        span.record("fh", fh);
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

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _span = request_span!("fallocate", ino = ino.0, fh = fh.0);
        reply_empty(reply, self.core.fallocate(fh.0, offset, length, mode));
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _span = request_span!(
            "copy_file_range",
            ino = ino_in.0,
            fh = fh_in.0,
            new_ino = ino_out.0,
            new_fh = fh_out.0,
            len
        );
        match self
            .core
            .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len, flags.bits())
        {
            Ok(n) => reply.written(n),
            Err(e) => fail!(reply, e),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let _span = request_span!("ioctl", ino = ino.0, fh = fh.0, cmd);
        // Origin files are not terminals and the daemon (root) must not
        // run a client's ioctl on them: every one gets "not a tty", the
        // answer programs expect (Python's isatty at each open()).
        tracing::debug!(name = ioctl_name(cmd), "ioctl answered ENOTTY");
        reply.error(fuser::Errno::from_i32(libc::ENOTTY));
    }

    fn poll(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let _span = request_span!("poll", ino = ino.0, fh = fh.0);
        // ENOSYS tells the kernel to stop asking: files are always ready.
        tracing::debug!("poll not supported; files read as always ready");
        reply.error(fuser::Errno::ENOSYS);
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _span = request_span!("lseek", ino = ino.0, fh = fh.0);
        match self.core.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => fail!(reply, e),
        }
    }
}

/// Mounts `fs` at `mountpoint`: the session to run. When it ends, the
/// file system's `destroy` settles the mount (see [`FuseFs::destroy`]).
pub fn mount(
    fs: FuseFs,
    mountpoint: &Path,
    config: &fuser::Config,
) -> std::io::Result<fuser::Session<FuseFs>> {
    let slot = fs.at_end.clone();
    let mut session = fuser::Session::new(fs, mountpoint, config)?;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.unmount_callable());
    Ok(session)
}

/// A name for the ioctls programs commonly try on any file, for the debug
/// line that answers them.
fn ioctl_name(cmd: u32) -> &'static str {
    match u64::from(cmd) {
        libc::TCGETS => "TCGETS (isatty)",
        libc::TIOCGWINSZ => "TIOCGWINSZ",
        libc::FIONREAD => "FIONREAD",
        libc::FICLONE => "FICLONE",
        libc::FS_IOC_GETFLAGS => "FS_IOC_GETFLAGS",
        libc::FS_IOC_SETFLAGS => "FS_IOC_SETFLAGS",
        _ => "other",
    }
}

/// How long the kernel may trust attributes when nothing invalidates them.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);
