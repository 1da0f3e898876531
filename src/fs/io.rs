//! Opening, reading, writing and closing files. Reads and writes go straight
//! to the origin's open file (pread/pwrite), so O_APPEND, holes and
//! concurrent writers behave as on the origin itself.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;

use super::FsResult;
use super::inodes::Ino;
use super::namespace::Need;
use super::{Core, Ctx, Entry, Located, Target};
use crate::error::Errno;

/// Open flags the origin must not see: the kernel has handled them.
const KERNEL_ONLY_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY;

fn wants_read(flags: i32) -> bool {
    matches!(flags & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
}

fn wants_write(flags: i32) -> bool {
    matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR) || flags & libc::O_TRUNC != 0
}

impl Core {
    /// Access rules for an open with `flags` in `bucket`.
    fn allow_open(&self, bucket: usize, flags: i32) -> FsResult<()> {
        if wants_read(flags) {
            self.allow(bucket, Need::Get)?;
        }
        if wants_write(flags) {
            self.allow(bucket, Need::Put)?;
        }
        Ok(())
    }

    pub fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        let Target::Path { bucket, path } = self.target(ino)? else {
            return Err(Errno::EISDIR.into());
        };
        self.allow_open(bucket, flags)?;
        let Located::Origin { mount, rel, st, .. } = self.locate(bucket, &path)? else {
            return Err(Errno::EISDIR.into());
        };
        let reads = wants_read(flags) && st.st_mode & libc::S_IFMT == libc::S_IFREG;
        let direct = reads && self.before_get(bucket, &path, &st)?;
        if wants_write(flags)
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && self.stages_puts(bucket)
        {
            let (file, staged) =
                self.open_staged(bucket, mount, &rel, flags & libc::O_TRUNC != 0, false, &st)?;
            if reads {
                self.after_get(bucket, &path, &st);
            }
            return Ok(self.handles.insert_staged(ino, file, staged));
        }
        let file = self
            .origin(bucket, mount)
            .open(&rel, flags & !KERNEL_ONLY_FLAGS)?;
        let put = if wants_write(flags) {
            let now = file.stat().ok();
            self.put_watch(bucket, mount, &rel, now, flags & libc::O_TRUNC != 0)
        } else {
            None
        };
        if reads {
            self.after_get(bucket, &path, &st);
        }
        let fh = self.handles.insert_file(ino, file, put);
        if direct && let Ok(h) = self.handles.file(fh) {
            h.direct.store(true, Ordering::Relaxed);
        }
        Ok(fh)
    }

    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: Ctx,
    ) -> FsResult<(Entry, u64)> {
        let (bucket, mount, rel) = self.prepare_new(parent, name)?;
        if wants_read(flags) {
            self.allow(bucket, Need::Get)?;
        }
        if self.stages_puts(bucket) {
            return self.create_staged(
                parent,
                name,
                bucket,
                mount,
                &rel,
                mode & !umask & 0o7777,
                flags,
                ctx,
            );
        }
        let file = self.origin(bucket, mount).create(
            &rel,
            flags & !(libc::O_CREAT | libc::O_NOCTTY),
            mode & !umask & 0o7777,
        )?;
        let put = self.put_watch(bucket, mount, &rel, file.stat().ok(), true);
        self.give_to_caller(bucket, mount, &rel, ctx);
        let entry = self.finish_new(parent, name, bucket, mount, &rel)?;
        let fh = self.handles.insert_file(entry.attr.ino.0, file, put);
        Ok((entry, fh))
    }

    /// create under a pre onPut: an empty placeholder at the real path (so
    /// the name exists while the client writes) and a staged handle.
    #[allow(clippy::too_many_arguments)]
    fn create_staged(
        &self,
        parent: Ino,
        name: &OsStr,
        bucket: usize,
        mount: usize,
        rel: &[std::ffi::OsString],
        mode: u32,
        flags: i32,
        ctx: Ctx,
    ) -> FsResult<(Entry, u64)> {
        self.before_create(bucket, mount, rel);
        let placeholder = self.origin(bucket, mount).create(
            rel,
            (flags & libc::O_EXCL) | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )?;
        let made = placeholder.flush();
        placeholder.release();
        made?;
        self.give_to_caller(bucket, mount, rel, ctx);
        let entry = self.finish_new(parent, name, bucket, mount, rel)?;
        let st = self.origin(bucket, mount).lstat(rel)?;
        let (file, staged) = self.open_staged(bucket, mount, rel, true, true, &st)?;
        let fh = self.handles.insert_staged(entry.attr.ino.0, file, staged);
        // The name may vanish again if the pre workflow refuses the write:
        // the kernel must ask before trusting it.
        let entry = Entry {
            ttl: std::time::Duration::ZERO,
            ..entry
        };
        Ok((entry, fh))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handles.file(fh)?;
        let mut buf = vec![0u8; size as usize];
        let done = h.file.read_at(&mut buf, offset)?;
        buf.truncate(done);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handles.file(fh)?;
        h.wrote.store(true, Ordering::Relaxed);
        h.file.write_at(data, offset)?;
        Ok(data.len() as u32)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let h = self.handles.file(fh)?;
        Ok(h.file.sync(datasync)?)
    }

    /// A `close` of the handle (one per close of a duplicate, too): data
    /// written must be in the origin before it returns.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let h = self.handles.file(fh)?;
        if let Some(staged) = &h.staged {
            return self.settle_staged(&h.file, staged, h.ino, false);
        }
        h.file.flush()?;
        if let Some(watch) = &h.put
            && let Ok(now) = h.file.stat()
        {
            self.flushed_writer(watch, h.wrote.load(Ordering::Relaxed), h.ino, &now);
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        if let Some(super::handles::Handle::File(f)) = self.handles.remove(fh) {
            if let Some(staged) = &f.staged {
                return self.release_staged(&f.file, staged, f.ino);
            }
            let Some(watch) = &f.put else {
                f.file.release();
                return Ok(());
            };
            // Taken before the close, so the watcher cannot see the close
            // before the registry knows the write is ours.
            let now = f.file.stat().ok();
            let path = match self.target(f.ino) {
                Ok(Target::Path { path, .. }) => Some(path),
                _ => None,
            };
            f.file.release();
            self.released_writer(watch, f.wrote.load(Ordering::Relaxed), path, now);
        }
        Ok(())
    }

    /// fallocate on an open file (posix_fallocate and friends).
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let h = self.handles.file(fh)?;
        // Unknown mode bits go to the kernel as they came: it answers them.
        let mode = nix::fcntl::FallocateFlags::from_bits_retain(mode);
        nix::fcntl::fallocate(
            local_file(&h.file)?,
            mode,
            offset as libc::off_t,
            length as libc::off_t,
        )?;
        Ok(())
    }

    /// lseek for SEEK_DATA/SEEK_HOLE on an open file (the shared offset is
    /// not used by pread/pwrite, so moving it disturbs nothing).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        use nix::unistd::Whence;
        let h = self.handles.file(fh)?;
        let whence = match whence {
            libc::SEEK_SET => Whence::SeekSet,
            libc::SEEK_CUR => Whence::SeekCur,
            libc::SEEK_END => Whence::SeekEnd,
            libc::SEEK_DATA => Whence::SeekData,
            libc::SEEK_HOLE => Whence::SeekHole,
            _ => return Err(Errno::EINVAL.into()),
        };
        Ok(nix::unistd::lseek(local_file(&h.file)?, offset, whence)?)
    }

    /// copy_file_range between two open handles of this mount. Files of
    /// local origins are copied by the origin's kernel (reflinks and
    /// server-side copies included); anything else answers EXDEV, on which
    /// the FUSE kernel copies through read and write itself.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        offset_in: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
        flags: u64,
    ) -> FsResult<u32> {
        // No flags are defined; the kernel refuses others before asking.
        if flags != 0 {
            return Err(Errno::EINVAL.into());
        }
        let h_in = self.handles.file(fh_in)?;
        let h_out = self.handles.file(fh_out)?;
        let (Some(src), Some(dst)) = (h_in.file.as_local(), h_out.file.as_local()) else {
            return Err(Errno::EXDEV.into());
        };
        // A copy into the handle is a write of it (onPut at release).
        h_out.wrote.store(true, Ordering::Relaxed);
        Ok(copy_range(src, offset_in, dst, offset_out, len)?)
    }

    /// Whether reads and writes of `fh` must bypass the kernel's caches
    /// (a pre onGet workflow may just have rewritten the file).
    pub fn handle_direct(&self, fh: u64) -> bool {
        self.handles
            .file(fh)
            .is_ok_and(|h| h.direct.load(Ordering::Relaxed))
    }

    /// Size of an open file, for callers that need it after writes.
    pub fn handle_size(&self, fh: u64) -> FsResult<u64> {
        let h = self.handles.file(fh)?;
        Ok(h.file.stat()?.st_size as u64)
    }
}

/// A handle's local file; other origins don't do fd-only calls.
fn local_file(f: &crate::origin::OpenFile) -> FsResult<&std::fs::File> {
    Ok(f.as_local().ok_or(Errno::ENOTSUP)?)
}

/// The most one reply can report: FUSE answers a copy with a 32-bit count,
/// and the kernel caps every read and write at this (`MAX_RW_COUNT`).
const MAX_COPY: u64 = 0x7fff_f000;

/// One `copy_file_range(2)` from `src` at `offset_in` to `dst` at
/// `offset_out`, of at most `len` bytes (short at end of file, as the call
/// itself). The files' own offsets are not used or moved.
pub fn copy_range(
    src: &std::fs::File,
    offset_in: u64,
    dst: &std::fs::File,
    offset_out: u64,
    len: u64,
) -> Result<u32, Errno> {
    use std::os::fd::AsRawFd;
    let mut off_in = libc::loff_t::try_from(offset_in).map_err(|_| Errno::EINVAL)?;
    let mut off_out = libc::loff_t::try_from(offset_out).map_err(|_| Errno::EINVAL)?;
    let len = len.min(MAX_COPY) as usize;
    loop {
        // SAFETY: two open fds owned by the `File`s borrowed for the call,
        // and two offsets that live across it.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                len,
                0,
            )
        };
        if n >= 0 {
            // At most MAX_COPY, which fits.
            return Ok(n as u32);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Errno::from(e));
        }
    }
}
