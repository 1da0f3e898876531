//! A local directory (often an NFS share) as an origin: every operation is the
//! matching syscall on `root/rel`, and its errno comes back unchanged
//! (SPEC §3.2). Symlinks are never followed except where POSIX says so.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Errno, FsResult, check};

/// One entry of a directory listing, as the origin reports it.
#[derive(Debug, Clone)]
pub struct OriginDirEntry {
    pub name: OsString,
    /// `libc::DT_*` of the entry (DT_UNKNOWN when the file system doesn't say).
    pub d_type: u8,
}

/// A time to set with `utimens`.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    Omit,
    Now,
    At(i64, i64),
}

impl SetTime {
    pub(crate) fn timespec(self) -> libc::timespec {
        match self {
            SetTime::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            SetTime::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            SetTime::At(s, ns) => libc::timespec {
                tv_sec: s,
                tv_nsec: ns,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalOrigin {
    root: PathBuf,
}

impl LocalOrigin {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalOrigin { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel` in this origin.
    pub fn path_of(&self, rel: &[OsString]) -> PathBuf {
        let mut p = self.root.clone();
        for c in rel {
            p.push(c);
        }
        p
    }

    fn c_path(&self, rel: &[OsString]) -> FsResult<CString> {
        to_cstring(&self.path_of(rel))
    }

    /// Inverse of `path_of`: the components of `abs` below the root, if any.
    pub fn rel_of(&self, abs: &Path) -> Option<Vec<OsString>> {
        let rest = abs.strip_prefix(&self.root).ok()?;
        Some(rest.iter().map(OsStr::to_os_string).collect())
    }

    pub fn lstat(&self, rel: &[OsString]) -> FsResult<libc::stat> {
        lstat_path(&self.path_of(rel))
    }

    /// Opens an existing entry. `flags` are the client's open flags minus
    /// the ones that only make sense to the kernel.
    pub fn open(&self, rel: &[OsString], flags: i32) -> FsResult<File> {
        self.open_raw(rel, flags, 0)
    }

    /// Creates (or, without O_EXCL, opens) a regular file.
    pub fn create(&self, rel: &[OsString], flags: i32, mode: u32) -> FsResult<File> {
        self.open_raw(rel, flags | libc::O_CREAT, mode)
    }

    fn open_raw(&self, rel: &[OsString], flags: i32, mode: u32) -> FsResult<File> {
        let p = self.c_path(rel)?;
        let flags = (flags & !(libc::O_NOCTTY | libc::O_DIRECT)) | libc::O_CLOEXEC;
        // SAFETY: valid C string; the returned fd is owned by the File below.
        let fd = check(unsafe { libc::open(p.as_ptr(), flags, mode as libc::c_uint) })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    pub fn mkdir(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        let p = self.c_path(rel)?;
        // SAFETY: valid C string.
        check(unsafe { libc::mkdir(p.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    pub fn mknod(&self, rel: &[OsString], mode: u32, rdev: u32) -> FsResult<()> {
        let p = self.c_path(rel)?;
        // SAFETY: valid C string.
        check(unsafe { libc::mknod(p.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
            .map(drop)
    }

    pub fn rmdir(&self, rel: &[OsString]) -> FsResult<()> {
        let p = self.c_path(rel)?;
        // SAFETY: valid C string.
        check(unsafe { libc::rmdir(p.as_ptr()) }).map(drop)
    }

    pub fn unlink(&self, rel: &[OsString]) -> FsResult<()> {
        let p = self.c_path(rel)?;
        // SAFETY: valid C string.
        check(unsafe { libc::unlink(p.as_ptr()) }).map(drop)
    }

    pub fn symlink(&self, target: &OsStr, rel: &[OsString]) -> FsResult<()> {
        let t = to_cstring(Path::new(target))?;
        let p = self.c_path(rel)?;
        // SAFETY: valid C strings.
        check(unsafe { libc::symlink(t.as_ptr(), p.as_ptr()) }).map(drop)
    }

    pub fn readlink(&self, rel: &[OsString]) -> FsResult<Vec<u8>> {
        let target = std::fs::read_link(self.path_of(rel)).map_err(Errno::from)?;
        Ok(target.into_os_string().into_vec())
    }

    pub fn link(&self, from: &[OsString], to: &[OsString]) -> FsResult<()> {
        let f = self.c_path(from)?;
        let t = self.c_path(to)?;
        // SAFETY: valid C strings; flags 0 = don't follow a symlink source.
        check(unsafe { libc::linkat(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), 0) })
            .map(drop)
    }

    /// `renameat2` with the client's flags (RENAME_NOREPLACE, RENAME_EXCHANGE).
    pub fn rename(&self, from: &[OsString], to: &[OsString], flags: u32) -> FsResult<()> {
        let f = self.c_path(from)?;
        let t = self.c_path(to)?;
        // SAFETY: valid C strings.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                flags as libc::c_uint,
            )
        })
        .map(drop)
    }

    pub fn chmod(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        let p = self.c_path(rel)?;
        // SAFETY: valid C string. Linux has no lchmod: chmod of a symlink path
        // reaches its target, as the kernel itself would do.
        check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// `lchown`; `None` leaves that id unchanged.
    pub fn chown(&self, rel: &[OsString], uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let p = self.c_path(rel)?;
        let uid = uid.unwrap_or(u32::MAX);
        let gid = gid.unwrap_or(u32::MAX);
        // SAFETY: valid C string; u32::MAX is (uid_t)-1 = unchanged.
        check(unsafe { libc::lchown(p.as_ptr(), uid, gid) }).map(drop)
    }

    pub fn truncate(&self, rel: &[OsString], size: u64) -> FsResult<()> {
        let p = self.c_path(rel)?;
        let size = i64::try_from(size).map_err(|_| Errno(libc::EFBIG))?;
        // SAFETY: valid C string.
        check(unsafe { libc::truncate(p.as_ptr(), size) }).map(drop)
    }

    pub fn utimens(&self, rel: &[OsString], atime: SetTime, mtime: SetTime) -> FsResult<()> {
        let p = self.c_path(rel)?;
        let times = [atime.timespec(), mtime.timespec()];
        // SAFETY: valid C string and a two-element timespec array.
        check(unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                p.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(drop)
    }

    pub fn statvfs(&self, rel: &[OsString]) -> FsResult<libc::statvfs> {
        let p = self.c_path(rel)?;
        let mut st = MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: valid C string and an output buffer.
        check(unsafe { libc::statvfs(p.as_ptr(), st.as_mut_ptr()) })?;
        // SAFETY: statvfs returned 0.
        Ok(unsafe { st.assume_init() })
    }

    /// The names in directory `rel`, without `.` and `..`.
    pub fn read_dir(&self, rel: &[OsString]) -> FsResult<Vec<OriginDirEntry>> {
        let rd = std::fs::read_dir(self.path_of(rel)).map_err(Errno::from)?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(Errno::from)?;
            let d_type = match entry.file_type() {
                Ok(t) => d_type_of(t),
                Err(_) => libc::DT_UNKNOWN,
            };
            out.push(OriginDirEntry {
                name: entry.file_name(),
                d_type,
            });
        }
        Ok(out)
    }

    pub fn getxattr(&self, rel: &[OsString], name: &OsStr, size: usize) -> FsResult<Vec<u8>> {
        let p = self.c_path(rel)?;
        let n = to_cstring(Path::new(name))?;
        let mut buf = vec![0u8; size];
        // SAFETY: valid C strings and a buffer of `size` bytes (NULL-safe when 0).
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            return Err(Errno::last());
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// The size an xattr value needs, for the kernel's size probe.
    pub fn getxattr_size(&self, rel: &[OsString], name: &OsStr) -> FsResult<usize> {
        let p = self.c_path(rel)?;
        let n = to_cstring(Path::new(name))?;
        // SAFETY: a NULL buffer of size 0 asks for the size only.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(Errno::last());
        }
        Ok(len as usize)
    }

    pub fn listxattr(&self, rel: &[OsString], size: usize) -> FsResult<Vec<u8>> {
        let p = self.c_path(rel)?;
        let mut buf = vec![0u8; size];
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: valid C string and a buffer of `size` bytes or NULL for a probe.
        let len = unsafe { libc::llistxattr(p.as_ptr(), ptr, size) };
        if len < 0 {
            return Err(Errno::last());
        }
        if size == 0 {
            return Ok(vec![0; len as usize]);
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    pub fn setxattr(
        &self,
        rel: &[OsString],
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        let p = self.c_path(rel)?;
        let n = to_cstring(Path::new(name))?;
        // SAFETY: valid C strings and a value buffer.
        check(unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
        .map(drop)
    }

    pub fn removexattr(&self, rel: &[OsString], name: &OsStr) -> FsResult<()> {
        let p = self.c_path(rel)?;
        let n = to_cstring(Path::new(name))?;
        // SAFETY: valid C strings.
        check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }).map(drop)
    }
}

/// fstat of an open file.
pub fn fstat(file: &File) -> FsResult<libc::stat> {
    use std::os::fd::AsRawFd;
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: an open fd and an output buffer.
    check(unsafe { libc::fstat(file.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0.
    Ok(unsafe { st.assume_init() })
}

/// lstat of an absolute path.
pub fn lstat_path(path: &Path) -> FsResult<libc::stat> {
    let p = to_cstring(path)?;
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid C string and a stat buffer the call fills on success.
    check(unsafe { libc::lstat(p.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: lstat returned 0, so it initialised the buffer.
    Ok(unsafe { st.assume_init() })
}

fn to_cstring(p: &Path) -> FsResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn d_type_of(t: std::fs::FileType) -> u8 {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        libc::DT_DIR
    } else if t.is_file() {
        libc::DT_REG
    } else if t.is_symlink() {
        libc::DT_LNK
    } else if t.is_fifo() {
        libc::DT_FIFO
    } else if t.is_socket() {
        libc::DT_SOCK
    } else if t.is_char_device() {
        libc::DT_CHR
    } else if t.is_block_device() {
        libc::DT_BLK
    } else {
        libc::DT_UNKNOWN
    }
}

/// io::Error for an errno, for callers outside the core.
pub fn io_error(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.0)
}
