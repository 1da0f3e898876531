//! A local directory (often an NFS share) as an origin: every operation is the
//! matching `*at()` syscall on `rel` resolved beneath the origin's open root
//! (SPEC §9.1, see [`super::beneath`]), and its errno comes back unchanged
//! (SPEC §3.2). Symlinks inside the origin are never followed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

use super::beneath::{Dir, Root};
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

/// A local directory origin. Every call resolves its path beneath the
/// origin's open root directory (see [`super::beneath`]); the root is opened
/// at first use, so an origin whose directory appears after start-up (a
/// share mounted late) starts working once it is there.
#[derive(Debug, Clone)]
pub struct LocalOrigin {
    path: PathBuf,
    root: Arc<OnceLock<Root>>,
}

/// Flags every open of an origin entry carries: the final component is never
/// followed (the kernel resolves symlinks of the mount itself, so a symlink
/// here is one swapped in behind its back) and no fd leaks into children.
const OPEN_ALWAYS: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl LocalOrigin {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalOrigin {
            path: root.into(),
            root: Arc::new(OnceLock::new()),
        }
    }

    /// The configured directory: for messages, registry keys and inotify
    /// watches — nothing is opened by a path joined to it.
    pub fn root(&self) -> &Path {
        &self.path
    }

    /// The open root (opened now if this is the first call to succeed).
    pub fn at(&self) -> FsResult<&Root> {
        if let Some(r) = self.root.get() {
            return Ok(r);
        }
        let opened = Root::open(&self.path)?;
        Ok(self.root.get_or_init(|| opened))
    }

    /// The name `rel` would have below the configured directory, for keys and
    /// messages only (see [`LocalOrigin::root`]).
    pub fn path_of(&self, rel: &[OsString]) -> PathBuf {
        let mut p = self.path.clone();
        for c in rel {
            p.push(c);
        }
        p
    }

    /// Inverse of `path_of`: the components of `abs` below the root, if any.
    pub fn rel_of(&self, abs: &Path) -> Option<Vec<OsString>> {
        let rest = abs.strip_prefix(&self.path).ok()?;
        Some(rest.iter().map(OsStr::to_os_string).collect())
    }

    fn parent(&self, rel: &[OsString]) -> FsResult<(Dir<'_>, CString)> {
        self.at()?.parent(rel)
    }

    pub fn lstat(&self, rel: &[OsString]) -> FsResult<libc::stat> {
        let (dir, name) = self.parent(rel)?;
        Ok(fstatat(
            &dir,
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
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
        let (dir, name) = self.parent(rel)?;
        let flags = (flags & !(libc::O_NOCTTY | libc::O_DIRECT)) | OPEN_ALWAYS;
        // SAFETY: a directory fd and a valid C string; the returned fd is
        // owned by the File below.
        let fd = check(unsafe {
            libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint)
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens the regular file `rel` for reading, and its stat — for a
    /// workflow reading its item. The entry is looked at first through an
    /// `O_PATH | O_NOFOLLOW` fd and only a regular file is then opened (a
    /// FIFO or device swapped in is never opened, a symlink never followed);
    /// the re-open through `/proc/self/fd` reaches exactly that inode.
    pub fn open_regular(&self, rel: &[OsString]) -> FsResult<(File, libc::stat)> {
        let fd = self.handle(rel)?;
        let st = fstat(&fd)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFLNK => return Err(Errno(libc::ELOOP)),
            libc::S_IFDIR => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let p = proc_fd_path(&fd);
        // SAFETY: valid C string; the returned fd is owned by the File below.
        let f = check(unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
        // SAFETY: just opened, owned by nobody else.
        Ok((unsafe { File::from_raw_fd(f) }, st))
    }

    /// An `O_PATH` fd of the entry itself (a symlink stays a symlink): for
    /// the calls that have no `*at()` form.
    fn handle(&self, rel: &[OsString]) -> FsResult<OwnedFd> {
        let (dir, name) = self.parent(rel)?;
        Ok(openat(
            &dir,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?)
    }

    pub fn mkdir(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(mkdirat(&dir, name.as_c_str(), mode_of(mode))?)
    }

    pub fn mknod(&self, rel: &[OsString], mode: u32, rdev: u32) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        // SAFETY: a directory fd and a valid C string.
        check(unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                name.as_ptr(),
                mode as libc::mode_t,
                rdev as libc::dev_t,
            )
        })
        .map(drop)
    }

    pub fn rmdir(&self, rel: &[OsString]) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(unlinkat(&dir, name.as_c_str(), UnlinkatFlags::RemoveDir)?)
    }

    pub fn unlink(&self, rel: &[OsString]) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(unlinkat(&dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir)?)
    }

    pub fn symlink(&self, target: &OsStr, rel: &[OsString]) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(symlinkat(target, &dir, name.as_c_str())?)
    }

    pub fn readlink(&self, rel: &[OsString]) -> FsResult<Vec<u8>> {
        let (dir, name) = self.parent(rel)?;
        Ok(readlinkat(&dir, name.as_c_str())?.into_vec())
    }

    pub fn link(&self, from: &[OsString], to: &[OsString]) -> FsResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        // No AT_SYMLINK_FOLLOW: a symlink source is linked as itself.
        Ok(linkat(
            &fdir,
            fname.as_c_str(),
            &tdir,
            tname.as_c_str(),
            AtFlags::empty(),
        )?)
    }

    /// `renameat2` with the client's flags (RENAME_NOREPLACE, RENAME_EXCHANGE).
    pub fn rename(&self, from: &[OsString], to: &[OsString], flags: u32) -> FsResult<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        // SAFETY: directory fds and valid C strings.
        check(unsafe {
            libc::renameat2(
                fdir.as_raw_fd(),
                fname.as_ptr(),
                tdir.as_raw_fd(),
                tname.as_ptr(),
                flags as libc::c_uint,
            )
        })
        .map(drop)
    }

    /// chmod of the entry itself. The kernel resolves a client's chmod of a
    /// symlink to its target before asking us, so a symlink here was swapped
    /// in: it is refused (EOPNOTSUPP, as `fchmodat(AT_SYMLINK_NOFOLLOW)`
    /// answers for symlinks), never followed.
    pub fn chmod(&self, rel: &[OsString], mode: u32) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(fchmodat(
            &dir,
            name.as_c_str(),
            mode_of(mode),
            FchmodatFlags::NoFollowSymlink,
        )?)
    }

    /// `lchown`; `None` leaves that id unchanged (both `None` still updates
    /// ctime, as the kernel's file systems do for `chown(-1, -1)`).
    pub fn chown(&self, rel: &[OsString], uid: Option<u32>, gid: Option<u32>) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(fchownat(
            &dir,
            name.as_c_str(),
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?)
    }

    /// truncate by path, on the entry itself: `truncate(2)` of its
    /// `/proc/self/fd` link reaches exactly the inode the `O_PATH` fd holds
    /// (opening it for writing instead would look like a client's write to
    /// an inotify watcher, and could block on a FIFO).
    pub fn truncate(&self, rel: &[OsString], size: u64) -> FsResult<()> {
        let size = i64::try_from(size).map_err(|_| Errno(libc::EFBIG))?;
        let fd = self.handle(rel)?;
        let st = fstat(&fd)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let p = proc_fd_path(&fd);
        // SAFETY: valid C string.
        check(unsafe { libc::truncate(p.as_ptr(), size) }).map(drop)
    }

    pub fn utimens(&self, rel: &[OsString], atime: SetTime, mtime: SetTime) -> FsResult<()> {
        let (dir, name) = self.parent(rel)?;
        let times = [atime.timespec(), mtime.timespec()];
        // SAFETY: a directory fd, a valid C string and a two-element array.
        check(unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(drop)
    }

    pub fn statvfs(&self, rel: &[OsString]) -> FsResult<libc::statvfs> {
        let fd = self.handle(rel)?;
        let mut st = MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: an open fd (O_PATH fds allow fstatfs) and an output buffer.
        check(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
        // SAFETY: fstatvfs returned 0.
        Ok(unsafe { st.assume_init() })
    }

    /// The names in directory `rel`, without `.` and `..`.
    pub fn read_dir(&self, rel: &[OsString]) -> FsResult<Vec<OriginDirEntry>> {
        let (dir, name) = self.parent(rel)?;
        let mut d = nix::dir::Dir::openat(
            &dir,
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut out = Vec::new();
        for entry in d.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push(OriginDirEntry {
                name: OsStr::from_bytes(name).to_os_string(),
                d_type: d_type_of(entry.file_type()),
            });
        }
        Ok(out)
    }

    /// The path the xattr calls take: `/proc/self/fd/PARENT/NAME` walks from
    /// exactly the parent directory resolved beneath the root to one final
    /// name, which the `l*xattr` calls do not follow (Linux before 6.13 has no
    /// `*xattrat()` calls).
    fn xattr_path(&self, rel: &[OsString]) -> FsResult<(Dir<'_>, CString)> {
        let (dir, name) = self.parent(rel)?;
        let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name.as_bytes());
        let p = CString::new(p).map_err(|_| Errno::EINVAL)?;
        Ok((dir, p))
    }

    pub fn getxattr(&self, rel: &[OsString], name: &OsStr, size: usize) -> FsResult<Vec<u8>> {
        let (_dir, p) = self.xattr_path(rel)?;
        let n = to_cstring(name)?;
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
        let (_dir, p) = self.xattr_path(rel)?;
        let n = to_cstring(name)?;
        // SAFETY: a NULL buffer of size 0 asks for the size only.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(Errno::last());
        }
        Ok(len as usize)
    }

    pub fn listxattr(&self, rel: &[OsString], size: usize) -> FsResult<Vec<u8>> {
        let (_dir, p) = self.xattr_path(rel)?;
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
        let (_dir, p) = self.xattr_path(rel)?;
        let n = to_cstring(name)?;
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
        let (_dir, p) = self.xattr_path(rel)?;
        let n = to_cstring(name)?;
        // SAFETY: valid C strings.
        check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }).map(drop)
    }
}

/// `/proc/self/fd/N` of an open fd.
fn proc_fd_path(fd: &impl AsRawFd) -> CString {
    // Digits only: never contains a NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

fn mode_of(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode as libc::mode_t)
}

/// fstat of an open file (or `O_PATH` fd).
pub fn fstat(file: &impl AsFd) -> FsResult<libc::stat> {
    Ok(nix::sys::stat::fstat(file.as_fd())?)
}

fn to_cstring(p: &OsStr) -> FsResult<CString> {
    CString::new(p.as_bytes()).map_err(|_| Errno::EINVAL)
}

fn d_type_of(t: Option<nix::dir::Type>) -> u8 {
    use nix::dir::Type;
    match t {
        Some(Type::Directory) => libc::DT_DIR,
        Some(Type::File) => libc::DT_REG,
        Some(Type::Symlink) => libc::DT_LNK,
        Some(Type::Fifo) => libc::DT_FIFO,
        Some(Type::Socket) => libc::DT_SOCK,
        Some(Type::CharacterDevice) => libc::DT_CHR,
        Some(Type::BlockDevice) => libc::DT_BLK,
        None => libc::DT_UNKNOWN,
    }
}

/// io::Error for an errno, for callers outside the core.
pub fn io_error(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn comps(s: &str) -> Vec<OsString> {
        s.split('/').map(OsString::from).collect()
    }

    /// An origin whose `up/d` is a symlink to a directory outside it holding
    /// `x` (a secret), and whose `up/l` is a symlink to the secret itself —
    /// what a client leaves after swapping names behind the daemon's back.
    fn swapped() -> (tempfile::TempDir, tempfile::TempDir, LocalOrigin) {
        let origin = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::write(outside.path().join("x"), b"secret").expect("write");
        std::fs::set_permissions(
            outside.path().join("x"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        std::fs::create_dir(origin.path().join("up")).expect("mkdir");
        symlink(outside.path(), origin.path().join("up/d")).expect("symlink");
        symlink(outside.path().join("x"), origin.path().join("up/l")).expect("symlink");
        let o = LocalOrigin::new(origin.path());
        (origin, outside, o)
    }

    #[test]
    fn no_operation_goes_through_a_swapped_in_directory_symlink() {
        let (_origin, outside, o) = swapped();
        let before = std::fs::metadata(outside.path().join("x")).expect("secret");
        let x = comps("up/d/x");
        let y = comps("up/d/y");
        let loops = |r: FsResult<()>, what: &str| {
            assert_eq!(r.err(), Some(Errno(libc::ELOOP)), "{what}");
        };
        loops(o.lstat(&x).map(drop), "lstat");
        loops(o.open(&x, libc::O_RDONLY).map(drop), "open");
        loops(o.open_regular(&x).map(drop), "open_regular");
        loops(o.create(&y, libc::O_WRONLY, 0o644).map(drop), "create");
        loops(o.mkdir(&y, 0o755), "mkdir");
        loops(o.mknod(&y, libc::S_IFIFO | 0o644, 0), "mknod");
        loops(o.unlink(&x), "unlink");
        loops(o.rmdir(&x), "rmdir");
        loops(o.symlink(OsStr::new("t"), &y), "symlink");
        loops(o.readlink(&x).map(drop), "readlink");
        loops(o.link(&x, &comps("up/z")), "link from");
        loops(o.rename(&x, &comps("up/z"), 0), "rename from");
        std::fs::write(_origin.path().join("up/mine"), b"m").expect("write");
        loops(o.rename(&comps("up/mine"), &x, 0), "rename onto");
        loops(o.chmod(&x, 0o666), "chmod");
        loops(o.chown(&x, Some(65534), None), "chown");
        loops(o.truncate(&x, 0), "truncate");
        loops(
            o.utimens(&x, SetTime::At(1, 0), SetTime::At(1, 0)),
            "utimens",
        );
        loops(o.statvfs(&x).map(drop), "statvfs");
        // The link itself as the directory to list: not a directory.
        let listed = o.read_dir(&comps("up/d")).map(drop).err();
        assert!(
            matches!(listed, Some(Errno(libc::ELOOP | libc::ENOTDIR))),
            "read_dir: {listed:?}"
        );
        loops(
            o.getxattr(&x, OsStr::new("user.a"), 16).map(drop),
            "getxattr",
        );
        loops(o.setxattr(&x, OsStr::new("user.a"), b"v", 0), "setxattr");
        let meta = std::fs::metadata(outside.path().join("x")).expect("secret still there");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), 0);
        assert_eq!(
            (
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec()
            ),
            (
                before.mtime(),
                before.mtime_nsec(),
                before.ctime(),
                before.ctime_nsec()
            ),
            "secret untouched (times)"
        );
        assert_eq!(
            std::fs::read(outside.path().join("x")).expect("read"),
            b"secret"
        );
        assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_final_symlink_is_the_link_itself_never_its_target() {
        let (_origin, outside, o) = swapped();
        let l = comps("up/l");
        let st = o.lstat(&l).expect("lstat");
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(o.open(&l, libc::O_RDONLY).err(), Some(Errno(libc::ELOOP)));
        assert_eq!(
            o.open(&l, libc::O_WRONLY | libc::O_TRUNC).err(),
            Some(Errno(libc::ELOOP))
        );
        assert_eq!(o.open_regular(&l).err(), Some(Errno(libc::ELOOP)));
        assert!(o.chmod(&l, 0o666).is_err(), "chmod of a symlink is refused");
        assert_eq!(o.truncate(&l, 0).err(), Some(Errno::EINVAL));
        o.chown(&l, Some(65534), Some(65534))
            .expect("lchown of the link");
        o.utimens(&l, SetTime::At(5, 0), SetTime::At(5, 0))
            .expect("utimens of the link");
        let secret = outside.path().join("x");
        let meta = std::fs::metadata(&secret).expect("secret");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "target's owner untouched");
        assert_ne!(meta.mtime(), 5, "target's times untouched");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&secret).expect("read"), b"secret");
        o.unlink(&l).expect("unlink the link");
        assert!(secret.exists(), "unlinking the link leaves its target");
    }

    #[test]
    fn xattrs_and_statvfs_work_on_entries_and_the_root() {
        let origin = tempfile::tempdir().expect("tmp");
        std::fs::write(origin.path().join("f"), b"x").expect("write");
        let o = LocalOrigin::new(origin.path());
        let f = comps("f");
        match o.setxattr(&f, OsStr::new("user.k"), b"v", 0) {
            // tmpfs without user xattrs: nothing more to check here.
            Err(e) if e == Errno::ENOTSUP || e == Errno::EPERM => {}
            r => {
                r.expect("setxattr");
                assert_eq!(o.getxattr(&f, OsStr::new("user.k"), 8).expect("get"), b"v");
                assert_eq!(o.getxattr_size(&f, OsStr::new("user.k")).expect("size"), 1);
                assert!(o.listxattr(&f, 64).expect("list").starts_with(b"user.k"));
                o.removexattr(&f, OsStr::new("user.k")).expect("remove");
            }
        }
        o.statvfs(&[]).expect("statvfs of the root");
        o.statvfs(&f).expect("statvfs of a file");
        assert_eq!(o.read_dir(&[]).expect("ls root").len(), 1);
        o.truncate(&f, 0).expect("truncate");
        assert_eq!(o.lstat(&f).expect("lstat").st_size, 0);
    }
}
