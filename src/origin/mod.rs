//! Backends that hold a bucket's data, behind one interface: `Backend` (one
//! origin of a mount) and `OpenFile` (an open file of an origin). Local
//! directories (`local`) are plain syscalls; everything S3-specific lives
//! in `s3`. The file-system core only ever talks to these two types.

pub mod beneath;
mod error;
pub mod local;
pub mod s3;

pub use error::{OriginError, OriginResult};

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub use local::{LocalOrigin, OriginDirEntry, SetTime};

use std::sync::Arc;

pub use s3::{S3File, S3Origin};

use crate::error::{Errno, FsResult};

/// Where an origin records the changes this process makes to it, so that
/// the change detector does not take them for external ones (implemented by
/// the self-change registry, `bucket::selfchange`).
pub trait ChangeLog: Send + Sync {
    /// `path` now holds the entry whose identity is `st`.
    fn wrote(&self, path: &std::path::Path, st: &libc::stat);
    /// `path` is about to be removed.
    fn deleting(&self, path: &std::path::Path);
}

/// The origin of one mount.
#[derive(Clone)]
pub enum Backend {
    Local(LocalOrigin),
    S3(Arc<S3Origin>),
}

impl Backend {
    /// The local directory behind this origin, if it is one.
    pub fn as_local(&self) -> Option<&LocalOrigin> {
        match self {
            Backend::Local(l) => Some(l),
            Backend::S3(_) => None,
        }
    }

    /// How long the kernel may cache attributes from this origin.
    pub fn attr_ttl(&self, default: std::time::Duration) -> std::time::Duration {
        match self {
            Backend::Local(_) => default,
            Backend::S3(o) => default.min(o.metadata_ttl()),
        }
    }

    /// Whether the kernel may read and write files of this origin directly.
    pub fn allows_passthrough(&self) -> bool {
        matches!(self, Backend::Local(_))
    }

    pub fn lstat(&self, rel: &[OsString]) -> FsResult<libc::stat> {
        match self {
            Backend::Local(l) => l.lstat(rel),
            Backend::S3(o) => o.lstat(rel),
        }
    }

    /// lstat for an entry of a listing just taken; false = the attributes
    /// are approximate and must not be cached by the kernel.
    pub fn lstat_listed(&self, rel: &[OsString]) -> FsResult<(libc::stat, bool)> {
        match self {
            Backend::Local(l) => l.lstat(rel).map(|st| (st, true)),
            Backend::S3(o) => o.lstat_listed(rel),
        }
    }

    pub fn read_dir(&self, rel: &[OsString]) -> FsResult<Vec<OriginDirEntry>> {
        match self {
            Backend::Local(l) => l.read_dir(rel),
            Backend::S3(o) => o.read_dir(rel),
        }
    }

    pub fn open(&self, rel: &[OsString], flags: i32) -> FsResult<OpenFile> {
        match self {
            Backend::Local(l) => l.open(rel, flags).map(OpenFile::Local),
            Backend::S3(o) => o.open(rel, flags).map(OpenFile::S3),
        }
    }

    pub fn create(&self, rel: &[OsString], flags: i32, mode: u32) -> FsResult<OpenFile> {
        match self {
            Backend::Local(l) => l.create(rel, flags, mode).map(OpenFile::Local),
            Backend::S3(o) => o.create(rel, flags, mode).map(OpenFile::S3),
        }
    }

    pub fn mkdir(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.mkdir(rel, mode),
            Backend::S3(o) => o.mkdir(rel, mode),
        }
    }

    pub fn mknod(&self, rel: &[OsString], mode: u32, rdev: u32) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.mknod(rel, mode, rdev),
            // Objects can't be devices, FIFOs or sockets.
            Backend::S3(_) => Err(Errno::EPERM),
        }
    }

    pub fn rmdir(&self, rel: &[OsString]) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.rmdir(rel),
            Backend::S3(o) => o.rmdir(rel),
        }
    }

    pub fn unlink(&self, rel: &[OsString]) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.unlink(rel),
            Backend::S3(o) => o.unlink(rel),
        }
    }

    pub fn symlink(&self, target: &OsStr, rel: &[OsString]) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.symlink(target, rel),
            Backend::S3(o) => o.symlink(target, rel),
        }
    }

    pub fn readlink(&self, rel: &[OsString]) -> FsResult<Vec<u8>> {
        match self {
            Backend::Local(l) => l.readlink(rel),
            Backend::S3(o) => o.readlink(rel),
        }
    }

    pub fn link(&self, from: &[OsString], to: &[OsString]) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.link(from, to),
            Backend::S3(_) => Err(Errno::EPERM),
        }
    }

    pub fn rename(&self, from: &[OsString], to: &[OsString], flags: u32) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.rename(from, to, flags),
            Backend::S3(o) => o.rename(from, to, flags),
        }
    }

    pub fn chmod(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.chmod(rel, mode),
            Backend::S3(o) => o.chmod(rel, mode),
        }
    }

    pub fn chown(&self, rel: &[OsString], uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.chown(rel, uid, gid),
            Backend::S3(o) => o.chown(rel, uid, gid),
        }
    }

    pub fn truncate(&self, rel: &[OsString], size: u64) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.truncate(rel, size),
            Backend::S3(o) => o.truncate(rel, size),
        }
    }

    pub fn utimens(&self, rel: &[OsString], atime: SetTime, mtime: SetTime) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.utimens(rel, atime, mtime),
            Backend::S3(o) => o.utimens(rel, atime, mtime),
        }
    }

    pub fn statvfs(&self, rel: &[OsString]) -> FsResult<libc::statvfs> {
        match self {
            Backend::Local(l) => l.statvfs(rel),
            Backend::S3(o) => Ok(o.statvfs()),
        }
    }

    pub fn getxattr(&self, rel: &[OsString], name: &OsStr, size: usize) -> FsResult<Vec<u8>> {
        match self {
            Backend::Local(l) => l.getxattr(rel, name, size),
            Backend::S3(_) => Err(Errno::ENOTSUP),
        }
    }

    pub fn getxattr_size(&self, rel: &[OsString], name: &OsStr) -> FsResult<usize> {
        match self {
            Backend::Local(l) => l.getxattr_size(rel, name),
            Backend::S3(_) => Err(Errno::ENOTSUP),
        }
    }

    pub fn listxattr(&self, rel: &[OsString], size: usize) -> FsResult<Vec<u8>> {
        match self {
            Backend::Local(l) => l.listxattr(rel, size),
            Backend::S3(_) => Err(Errno::ENOTSUP),
        }
    }

    pub fn setxattr(
        &self,
        rel: &[OsString],
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.setxattr(rel, name, value, flags),
            Backend::S3(_) => Err(Errno::ENOTSUP),
        }
    }

    pub fn removexattr(&self, rel: &[OsString], name: &OsStr) -> FsResult<()> {
        match self {
            Backend::Local(l) => l.removexattr(rel, name),
            Backend::S3(_) => Err(Errno::ENOTSUP),
        }
    }
}

/// An open file of an origin.
pub enum OpenFile {
    Local(File),
    S3(S3File),
}

impl OpenFile {
    /// The local file behind this handle (for passthrough and fd-only calls).
    pub fn as_local(&self) -> Option<&File> {
        match self {
            OpenFile::Local(f) => Some(f),
            OpenFile::S3(_) => None,
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; short only at end of file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        match self {
            OpenFile::Local(f) => {
                let mut done = 0;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(done)
            }
            OpenFile::S3(f) => f.read_at(buf, offset),
        }
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> FsResult<()> {
        match self {
            OpenFile::Local(f) => f.write_all_at(data, offset).map_err(Errno::from),
            OpenFile::S3(f) => f.write_at(data, offset),
        }
    }

    pub fn stat(&self) -> FsResult<libc::stat> {
        match self {
            OpenFile::Local(f) => local::fstat(f),
            OpenFile::S3(f) => f.stat(),
        }
    }

    pub fn set_len(&self, size: u64) -> FsResult<()> {
        match self {
            OpenFile::Local(f) => f.set_len(size).map_err(Errno::from),
            OpenFile::S3(f) => f.set_len(size),
        }
    }

    pub fn sync(&self, datasync: bool) -> FsResult<()> {
        match self {
            OpenFile::Local(f) if datasync => f.sync_data().map_err(Errno::from),
            OpenFile::Local(f) => f.sync_all().map_err(Errno::from),
            // Durable in S3 means uploaded.
            OpenFile::S3(f) => f.flush(),
        }
    }

    /// The handle is closed for good (after the last flush).
    pub fn release(&self) {
        if let OpenFile::S3(f) = self {
            f.release();
        }
    }

    /// Makes what was written durable in the origin before `close` returns.
    pub fn flush(&self) -> FsResult<()> {
        match self {
            OpenFile::Local(_) => Ok(()),
            OpenFile::S3(f) => f.flush(),
        }
    }
}
