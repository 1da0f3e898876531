//! The errno, as the kernel wants it: the value every layer's error carries
//! (the file-system core wraps it in `fs::FsError` with a message and a
//! source). Origins answer with a bare `Errno` through [`FsResult`].

use std::fmt;
use std::io;

/// A POSIX error number. Every failed operation ends in one of these, and
/// the FUSE glue hands it to the kernel unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// The result of an origin call (the core's own is `fs::FsResult`).
pub type FsResult<T> = Result<T, Errno>;

impl Errno {
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOTSUP: Errno = Errno(libc::ENOTSUP);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

    /// The errno of the last failed libc call on this thread.
    pub fn last() -> Errno {
        Errno::from(io::Error::last_os_error())
    }
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Self {
        Errno::from(&e)
    }
}

/// An I/O error that is not an OS error (a short write, bad data) is EIO.
impl From<&io::Error> for Errno {
    fn from(e: &io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<nix::errno::Errno> for Errno {
    fn from(e: nix::errno::Errno) -> Self {
        Errno(e as i32)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Turns the `-1` convention of libc calls into a `FsResult`.
pub fn check(ret: libc::c_int) -> FsResult<libc::c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}
