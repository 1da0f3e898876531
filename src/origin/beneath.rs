//! Resolving a path inside a local origin without ever leaving it (SPEC
//! §9.1): the origin's root is held open as a directory fd, and every
//! operation names its target as (an fd of the parent directory, one final
//! name). The parent is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so a client that swaps a directory for a symlink
//! between two requests gets `ELOOP` instead of steering the daemon (root)
//! outside the origin; the final name is then used with the `*at()` call and
//! `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`.
//!
//! Paths are never joined with the origin's root into one string, so the
//! root's own length does not count against `PATH_MAX`; a relative path
//! longer than `PATH_MAX` (a client deep inside the mount) is resolved in
//! pieces, each piece beneath the directory the previous one opened.
//!
//! Kernels without `openat2` (older than 5.6, or a seccomp filter that
//! refuses it) get the same guarantee from a walk of one `openat(O_NOFOLLOW |
//! O_DIRECTORY)` per component.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::Mode;

use crate::error::{Errno, FsResult};

/// Longest piece of a relative path handed to one `openat2`: below
/// `PATH_MAX` (4096 with its NUL) with room to spare.
const PIECE_MAX: usize = 4000;

/// Set once the kernel has answered ENOSYS to `openat2`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The open root directory of a local origin.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    fd: Arc<OwnedFd>,
}

/// A directory fd to resolve a final name against: the root itself
/// (borrowed) or a directory opened beneath it.
pub enum Dir<'a> {
    Root(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for Dir<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Root(fd) => fd.as_fd(),
            Dir::Opened(fd) => fd.as_fd(),
        }
    }
}

impl AsRawFd for Dir<'_> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Root {
    /// Opens `path` (symlinks in the configured path itself are followed:
    /// the operator chose it) as the root every later call stays beneath.
    pub fn open(path: impl Into<PathBuf>) -> FsResult<Root> {
        let path = path.into();
        let fd = open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            path,
            fd: Arc::new(fd),
        })
    }

    /// The configured path of the root: for messages, registry keys and
    /// inotify — never to open anything below it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory `comps` beneath the root, opened `O_PATH` (enough to be
    /// the `dirfd` of `*at()` calls and for `fstat`/`fstatfs`).
    pub fn dir(&self, comps: &[OsString]) -> FsResult<Dir<'_>> {
        if comps.is_empty() {
            return Ok(Dir::Root(self.fd()));
        }
        for c in comps {
            check_name(c)?;
        }
        let mut dir: Option<OwnedFd> = None;
        let mut start = 0;
        while start < comps.len() {
            let (piece, next) = piece(comps, start);
            let base = dir.as_ref().map_or(self.fd(), |d| d.as_fd());
            let opened = open_beneath(base, &piece, &comps[start..next])?;
            dir = Some(opened);
            start = next;
        }
        Ok(dir.map_or(Dir::Root(self.fd()), Dir::Opened))
    }

    /// The parent directory of `rel` and its final name, for a `*at()` call.
    /// The root itself is (root, `.`).
    pub fn parent(&self, rel: &[OsString]) -> FsResult<(Dir<'_>, CString)> {
        match rel.split_last() {
            None => Ok((Dir::Root(self.fd()), c".".to_owned())),
            Some((name, dirs)) => {
                let name = check_name(name)?;
                Ok((self.dir(dirs)?, name))
            }
        }
    }
}

/// A final name as a C string: one component, never `.`/`..`, no `/` or NUL.
/// The kernel hands FUSE only such names; workflow paths are checked here
/// again because templates render them from hostile input.
pub fn check_name(name: &OsStr) -> FsResult<CString> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    CString::new(b).map_err(|_| Errno::EINVAL)
}

/// Components `start..next` joined with `/`, at most [`PIECE_MAX`] bytes
/// (always at least one component; a single overlong one fails in the kernel
/// with ENAMETOOLONG, as it would on the origin itself).
fn piece(comps: &[OsString], start: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut next = start;
    while next < comps.len() {
        let c = comps[next].as_bytes();
        let extra = c.len() + usize::from(!out.is_empty());
        if !out.is_empty() && out.len() + extra > PIECE_MAX {
            break;
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
        next += 1;
    }
    (out, next)
}

/// Opens directory `piece` (the components `comps`) beneath `base`.
fn open_beneath(base: BorrowedFd<'_>, piece: &[u8], comps: &[OsString]) -> FsResult<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new().flags(flags).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        match openat2(base, piece, how) {
            Ok(fd) => return Ok(fd),
            Err(nix::errno::Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // EAGAIN: a concurrent rename somewhere on the file system made
            // the kernel unsure the walk stayed beneath; the walk below is
            // exact whatever renames happen.
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    walk_beneath(base, comps)
}

/// The fallback of [`open_beneath`]: one `openat(O_NOFOLLOW | O_DIRECTORY)`
/// per component (names are checked, so none is `..`).
fn walk_beneath(base: BorrowedFd<'_>, comps: &[OsString]) -> FsResult<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let mut dir: Option<OwnedFd> = None;
    for c in comps {
        let at = dir.as_ref().map_or(base, |d| d.as_fd());
        dir = Some(openat(at, c.as_os_str(), flags, Mode::empty())?);
    }
    dir.ok_or(Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn comps(s: &str) -> Vec<OsString> {
        s.split('/').map(OsString::from).collect()
    }

    #[test]
    fn a_symlinked_directory_is_never_followed() {
        let root = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(root.path().join("real")).expect("mkdir");
        symlink(outside.path(), root.path().join("link")).expect("symlink");
        symlink("/", root.path().join("abs")).expect("symlink");
        symlink("..", root.path().join("up")).expect("symlink");
        let r = Root::open(root.path()).expect("root");
        assert!(r.dir(&comps("real")).is_ok());
        for bad in ["link", "abs", "up", "real/../link"] {
            let err = r.dir(&comps(bad)).err();
            assert!(
                matches!(err, Some(Errno(libc::ELOOP)) | Some(Errno(libc::EINVAL))),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(r.parent(&comps("x/..")).err(), Some(Errno::EINVAL));
        assert_eq!(r.parent(&comps("a/b\0c")).err(), Some(Errno::EINVAL));
    }

    #[test]
    fn paths_longer_than_path_max_resolve_in_pieces() {
        let root = tempfile::tempdir().expect("tmp");
        let r = Root::open(root.path()).expect("root");
        let name = "d".repeat(200);
        let mut rel = Vec::new();
        // 30 × 201 bytes ≈ 6 KB: more than PATH_MAX below the root.
        for _ in 0..30 {
            let (dir, _) = r.parent(&rel).expect("parent");
            rel.push(OsString::from(&name));
            let (parent, last) = r.parent(&rel).expect("parent");
            drop(dir);
            nix::sys::stat::mkdirat(parent.as_fd(), last.as_c_str(), Mode::S_IRWXU)
                .expect("mkdirat");
        }
        let (piece0, next) = piece(&rel, 0);
        assert!(piece0.len() <= PIECE_MAX && next < rel.len());
        let deep = r.dir(&rel).expect("deep dir");
        let st = nix::sys::stat::fstat(deep.as_fd()).expect("fstat");
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    }

    #[test]
    fn the_component_walk_refuses_symlinks_too() {
        let root = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join("a/b")).expect("mkdir");
        symlink(outside.path(), root.path().join("a/l")).expect("symlink");
        let r = Root::open(root.path()).expect("root");
        let fd = r.fd();
        assert!(open_beneath(fd, b"a/b", &comps("a/b")).is_ok());
        assert!(walk_beneath(fd, &comps("a/b")).is_ok());
        assert_eq!(
            walk_beneath(fd, &comps("a/l")).err(),
            Some(Errno(libc::ENOTDIR))
        );
    }
}
