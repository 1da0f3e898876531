//! Differential POSIX test (TESTING.md layer 3, SPEC §3.2).
//!
//! The same operation sequence is applied to a bare directory B and to a
//! storgate mount M whose only origin is an (initially empty) local
//! directory. Every result must agree: equal `Ok` values, or the same errno.
//! Every `CHECK_EVERY` operations, and at the end, both trees are walked and
//! compared (structure, types, modes, nlink, owners, sizes, content, symlink
//! targets, and mtimes that were set explicitly).
//!
//! Replay: `STORGATE_DIFF_SEED=<u64> STORGATE_DIFF_OPS=<n> cargo test --test
//! it differential::random_ops -- --exact --nocapture` (or
//! `random_ops_no_passthrough`, which runs half of `STORGATE_DIFF_OPS`).
//! The seed is printed at start and in every failure message. With `STORGATE_DIFF_MINIMIZE=1` a failing
//! run also shrinks the operation sequence (replaying candidates in fresh
//! subdirectories of the same mount) and prints the smallest one found.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Operations between two full tree comparisons.
const CHECK_EVERY: usize = 200;
/// Default number of random operations per run.
const DEFAULT_OPS: usize = 10_000;
/// Open-handle slots kept across operations.
const SLOTS: usize = 4;
/// Names used for paths: small, so operations collide often.
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
/// The umask of the thread driving the operations (differs from a daemon's
/// usual 022, so a daemon that masks the mode a second time is caught).
const OP_UMASK: libc::mode_t = 0o002;

// ---------------------------------------------------------------- PRNG

/// xorshift64* seeded through splitmix64: tiny and reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct`/100.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut b).is_ok() {
            return u64::from_le_bytes(b);
        }
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = if let Some(hex) = v.strip_prefix("0x") {
        u64::from_str_radix(hex, 16)
    } else {
        v.parse()
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a u64")))
}

// ---------------------------------------------------------------- operations

#[derive(Clone, Copy, Debug, PartialEq)]
enum Time {
    Omit,
    Now,
    At(i64, i64),
}

impl Time {
    fn spec(self) -> libc::timespec {
        match self {
            Time::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            Time::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            Time::At(s, ns) => libc::timespec {
                tv_sec: s as libc::time_t,
                tv_nsec: ns as libc::c_long,
            },
        }
    }
    fn explicit(self) -> Option<(i64, i64)> {
        match self {
            Time::At(s, ns) => Some((s, ns)),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// open(O_CREAT|O_WRONLY [|O_EXCL] [|O_TRUNC], mode) + close.
    Create {
        path: String,
        excl: bool,
        trunc: bool,
        mode: u32,
    },
    /// open(O_WRONLY) + pwrite + close.
    Write {
        path: String,
        off: u64,
        len: usize,
        fill: u8,
    },
    /// open(O_WRONLY|O_APPEND) + write + fstat + close: (written, size).
    Append {
        path: String,
        len: usize,
        fill: u8,
    },
    Truncate {
        path: String,
        len: u64,
    },
    /// open(O_WRONLY) + ftruncate + close.
    Ftruncate {
        path: String,
        len: u64,
    },
    /// renameat2(from, to, 0 or RENAME_NOREPLACE).
    Rename {
        from: String,
        to: String,
        noreplace: bool,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Readlink {
        path: String,
    },
    Link {
        from: String,
        to: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    /// chown (follow) or lchown; u32::MAX leaves the id unchanged.
    Chown {
        path: String,
        uid: u32,
        gid: u32,
        follow: bool,
    },
    /// utimensat, then the explicitly set times are read back.
    Utimens {
        path: String,
        atime: Time,
        mtime: Time,
        nofollow: bool,
    },
    /// Sorted (name, d_type) of a directory.
    Readdir {
        path: String,
    },
    Stat {
        path: String,
        follow: bool,
    },
    /// Whole content.
    Read {
        path: String,
    },
    /// open(flags, 0o644) + close.
    Open {
        path: String,
        flags: i32,
    },
    /// open into a slot that stays open (closing what was there).
    FdOpen {
        slot: usize,
        path: String,
        flags: i32,
        mode: u32,
    },
    FdWrite {
        slot: usize,
        off: u64,
        len: usize,
        fill: u8,
    },
    /// write(2) at the file position (O_APPEND handles append).
    FdWriteCur {
        slot: usize,
        len: usize,
        fill: u8,
    },
    FdRead {
        slot: usize,
        off: u64,
        len: usize,
    },
    FdTruncate {
        slot: usize,
        len: u64,
    },
    FdStat {
        slot: usize,
    },
    FdSync {
        slot: usize,
    },
    FdClose {
        slot: usize,
    },
    /// statvfs: the fields that do not move with usage.
    Statfs {
        path: String,
    },
    /// lstat both: whether they are the same inode (hard links).
    SameInode {
        a: String,
        b: String,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Write { .. } => "write",
            Op::Append { .. } => "append",
            Op::Truncate { .. } => "truncate",
            Op::Ftruncate { .. } => "ftruncate",
            Op::Rename {
                noreplace: false, ..
            } => "rename",
            Op::Rename { .. } => "rename_nr",
            Op::Unlink { .. } => "unlink",
            Op::Mkdir { .. } => "mkdir",
            Op::Rmdir { .. } => "rmdir",
            Op::Symlink { .. } => "symlink",
            Op::Readlink { .. } => "readlink",
            Op::Link { .. } => "link",
            Op::Chmod { .. } => "chmod",
            Op::Chown { .. } => "chown",
            Op::Utimens { .. } => "utimens",
            Op::Readdir { .. } => "readdir",
            Op::Stat { .. } => "stat",
            Op::Read { .. } => "read",
            Op::Open { .. } => "open",
            Op::FdOpen { .. } => "fd_open",
            Op::FdWrite { .. } => "fd_pwrite",
            Op::FdWriteCur { .. } => "fd_write",
            Op::FdRead { .. } => "fd_pread",
            Op::FdTruncate { .. } => "fd_trunc",
            Op::FdStat { .. } => "fstat",
            Op::FdSync { .. } => "fsync",
            Op::FdClose { .. } => "close",
            Op::SameInode { .. } => "same_ino",
            Op::Statfs { .. } => "statfs",
        }
    }
}

fn flags_str(flags: i32) -> String {
    let mut s = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY".to_string(),
        libc::O_WRONLY => "O_WRONLY".to_string(),
        _ => "O_RDWR".to_string(),
    };
    for (f, n) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
    ] {
        if flags & f != 0 {
            s.push('|');
            s.push_str(n);
        }
    }
    s
}

/// Paths are shown shortened when they hold a long name.
fn sp(p: &str) -> String {
    p.split('/')
        .map(|c| {
            if c.len() > 16 {
                format!("{}…({})", &c[..4], c.len())
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create {
                path,
                excl,
                trunc,
                mode,
            } => write!(
                f,
                "open({:?}, O_CREAT|O_WRONLY{}{}, {mode:#o}) + close",
                sp(path),
                if *excl { "|O_EXCL" } else { "" },
                if *trunc { "|O_TRUNC" } else { "" }
            ),
            Op::Write {
                path,
                off,
                len,
                fill,
            } => write!(
                f,
                "open({:?}, O_WRONLY); pwrite(len={len}, off={off}, fill={fill}); close",
                sp(path)
            ),
            Op::Append { path, len, fill } => write!(
                f,
                "open({:?}, O_WRONLY|O_APPEND); write(len={len}, fill={fill}); fstat; close",
                sp(path)
            ),
            Op::Truncate { path, len } => write!(f, "truncate({:?}, {len})", sp(path)),
            Op::Ftruncate { path, len } => {
                write!(f, "open({:?}, O_WRONLY); ftruncate({len}); close", sp(path))
            }
            Op::Rename {
                from,
                to,
                noreplace,
            } => write!(
                f,
                "renameat2({:?}, {:?}, {})",
                sp(from),
                sp(to),
                if *noreplace { "RENAME_NOREPLACE" } else { "0" }
            ),
            Op::Unlink { path } => write!(f, "unlink({:?})", sp(path)),
            Op::Mkdir { path, mode } => write!(f, "mkdir({:?}, {mode:#o})", sp(path)),
            Op::Rmdir { path } => write!(f, "rmdir({:?})", sp(path)),
            Op::Symlink { target, path } => {
                write!(f, "symlink({:?}, {:?})", sp(target), sp(path))
            }
            Op::Readlink { path } => write!(f, "readlink({:?})", sp(path)),
            Op::Link { from, to } => write!(f, "link({:?}, {:?})", sp(from), sp(to)),
            Op::Chmod { path, mode } => write!(f, "chmod({:?}, {mode:#o})", sp(path)),
            Op::Chown {
                path,
                uid,
                gid,
                follow,
            } => write!(
                f,
                "{}({:?}, {}, {})",
                if *follow { "chown" } else { "lchown" },
                sp(path),
                *uid as i32,
                *gid as i32
            ),
            Op::Utimens {
                path,
                atime,
                mtime,
                nofollow,
            } => write!(
                f,
                "utimensat({:?}, atime={atime:?}, mtime={mtime:?}{}); stat",
                sp(path),
                if *nofollow {
                    ", AT_SYMLINK_NOFOLLOW"
                } else {
                    ""
                }
            ),
            Op::Readdir { path } => write!(f, "readdir({:?})", sp(path)),
            Op::Stat { path, follow } => write!(
                f,
                "{}({:?})",
                if *follow { "stat" } else { "lstat" },
                sp(path)
            ),
            Op::Read { path } => write!(f, "read_all({:?})", sp(path)),
            Op::Open { path, flags } => {
                write!(
                    f,
                    "open({:?}, {}, 0o644) + close",
                    sp(path),
                    flags_str(*flags)
                )
            }
            Op::FdOpen {
                slot,
                path,
                flags,
                mode,
            } => write!(
                f,
                "fd{slot} = open({:?}, {}, {mode:#o})",
                sp(path),
                flags_str(*flags)
            ),
            Op::FdWrite {
                slot,
                off,
                len,
                fill,
            } => write!(f, "pwrite(fd{slot}, len={len}, off={off}, fill={fill})"),
            Op::FdWriteCur { slot, len, fill } => {
                write!(f, "write(fd{slot}, len={len}, fill={fill})")
            }
            Op::FdRead { slot, off, len } => write!(f, "pread(fd{slot}, len={len}, off={off})"),
            Op::FdTruncate { slot, len } => write!(f, "ftruncate(fd{slot}, {len})"),
            Op::FdStat { slot } => write!(f, "fstat(fd{slot})"),
            Op::FdSync { slot } => write!(f, "fsync(fd{slot})"),
            Op::FdClose { slot } => write!(f, "close(fd{slot})"),
            Op::Statfs { path } => write!(f, "statvfs({:?})", sp(path)),
            Op::SameInode { a, b } => {
                write!(f, "lstat({:?}).st_ino == lstat({:?}).st_ino", sp(a), sp(b))
            }
        }
    }
}

// ---------------------------------------------------------------- results

#[derive(Clone, Copy, PartialEq, Eq)]
struct Errno(i32);

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EACCES => "EACCES",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::EXDEV => "EXDEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::EMLINK => "EMLINK",
            libc::ERANGE => "ERANGE",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::ELOOP => "ELOOP",
            libc::ENOTSUP => "ENOTSUP",
            libc::ESTALE => "ESTALE",
            libc::ENOTCONN => "ENOTCONN",
            libc::ETXTBSY => "ETXTBSY",
            _ => "",
        };
        write!(f, "{name}({})", self.0)
    }
}

fn errno() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The comparable part of a `struct stat`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct St {
    /// 'f', 'd', 'l', or '?'.
    kind: char,
    /// Permission and set-id/sticky bits.
    perm: u32,
    /// Not compared for directories (file-system specific).
    size: Option<i64>,
    nlink: u64,
    uid: u32,
    gid: u32,
    /// Compared only when the bare inode's mtime was set explicitly.
    mtime: Option<(i64, i64)>,
    /// Only used to decide about `mtime`; zeroed before comparison.
    ino: u64,
}

impl fmt::Debug for St {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{{} {:04o} size={} nlink={} uid={} gid={}",
            self.kind,
            self.perm,
            self.size.map_or("-".into(), |s| s.to_string()),
            self.nlink,
            self.uid,
            self.gid
        )?;
        if let Some((s, ns)) = self.mtime {
            write!(f, " mtime={s}.{ns:09}")?;
        }
        write!(f, "}}")
    }
}

fn kind_of(mode: u32) -> char {
    match mode & libc::S_IFMT {
        libc::S_IFREG => 'f',
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        _ => '?',
    }
}

fn st_of(s: &libc::stat) -> St {
    let kind = kind_of(s.st_mode);
    St {
        kind,
        perm: s.st_mode & 0o7777,
        size: if kind == 'd' { None } else { Some(s.st_size) },
        nlink: s.st_nlink,
        uid: s.st_uid,
        gid: s.st_gid,
        mtime: Some((s.st_mtime, s.st_mtime_nsec)),
        ino: s.st_ino,
    }
}

/// File content, printed as length + hash + head.
#[derive(Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: Vec<u8> = self.0.iter().take(12).copied().collect();
        write!(
            f,
            "<{} bytes, fnv={:016x}, head={:?}>",
            self.0.len(),
            fnv(&self.0),
            head
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Unit,
    N(i64),
    /// (written, size after)
    N2(i64, i64),
    Data(Bytes),
    Names(Vec<(String, char)>),
    Stat(St),
    Target(String),
    /// statvfs: bsize, frsize, blocks, files, namemax.
    Fs([u64; 5]),
    /// The explicitly set (atime, mtime) read back after utimensat.
    Times(Option<(i64, i64)>, Option<(i64, i64)>),
}

type Res = Result<Out, Errno>;

// ---------------------------------------------------------------- one side

/// One tree the operations run against, with its open-handle slots.
struct Side {
    root: PathBuf,
    fds: [Option<i32>; SLOTS],
}

fn cpath(root: &Path, rel: &str) -> CString {
    let mut b = root.as_os_str().as_bytes().to_vec();
    if !rel.is_empty() {
        b.push(b'/');
        b.extend_from_slice(rel.as_bytes());
    }
    CString::new(b).expect("path without NUL")
}

fn data(len: usize, fill: u8) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add((i % 251) as u8).wrapping_mul(7) ^ (i >> 8) as u8)
        .collect()
}

fn check(r: libc::c_int) -> Result<(), Errno> {
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn do_stat(p: &CString, follow: bool) -> Result<libc::stat, Errno> {
    // SAFETY: zeroed stat is a valid out-parameter; p is NUL-terminated.
    unsafe {
        let mut s: libc::stat = std::mem::zeroed();
        let r = if follow {
            libc::stat(p.as_ptr(), &mut s)
        } else {
            libc::lstat(p.as_ptr(), &mut s)
        };
        check(r).map(|_| s)
    }
}

fn do_fstat(fd: i32) -> Result<libc::stat, Errno> {
    // SAFETY: zeroed stat is a valid out-parameter.
    unsafe {
        let mut s: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd, &mut s)).map(|_| s)
    }
}

fn open(p: &CString, flags: i32, mode: u32) -> Result<i32, Errno> {
    // SAFETY: plain syscall on a NUL-terminated path.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 { Err(errno()) } else { Ok(fd) }
}

fn close(fd: i32) -> Result<(), Errno> {
    // SAFETY: fd is owned by the caller.
    check(unsafe { libc::close(fd) })
}

fn pwrite(fd: i32, buf: &[u8], off: u64) -> Res {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as libc::off_t) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(Out::N(n as i64))
    }
}

fn write(fd: i32, buf: &[u8]) -> Result<i64, Errno> {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 { Err(errno()) } else { Ok(n as i64) }
}

fn pread(fd: i32, len: usize, off: u64) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        // SAFETY: the destination lies inside buf.
        let n = unsafe {
            libc::pread(
                fd,
                buf[got..].as_mut_ptr().cast(),
                len - got,
                (off + got as u64) as libc::off_t,
            )
        };
        if n < 0 {
            return Err(errno());
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    buf.truncate(got);
    Ok(buf)
}

fn read_all_fd(fd: i32) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(errno());
        }
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// open, run `f` on the fd, close; the first error wins.
fn with_fd<T>(
    p: &CString,
    flags: i32,
    f: impl FnOnce(i32) -> Result<T, Errno>,
) -> Result<T, Errno> {
    let fd = open(p, flags, 0o644)?;
    let r = f(fd);
    let c = close(fd);
    let v = r?;
    c?;
    Ok(v)
}

fn read_link(p: &CString) -> Result<String, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::readlink(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_dir(root: &Path, rel: &str) -> Result<Vec<(String, char)>, Errno> {
    let p = cpath(root, rel);
    let path = Path::new(std::ffi::OsStr::from_bytes(p.as_bytes()));
    let rd = std::fs::read_dir(path).map_err(|e| Errno(e.raw_os_error().unwrap_or(0)))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Errno(e.raw_os_error().unwrap_or(0)))?;
        let t = e
            .file_type()
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(0)))?;
        let k = if t.is_symlink() {
            'l'
        } else if t.is_dir() {
            'd'
        } else if t.is_file() {
            'f'
        } else {
            '?'
        };
        v.push((e.file_name().to_string_lossy().into_owned(), k));
    }
    v.sort();
    Ok(v)
}

impl Side {
    fn new(root: PathBuf) -> Side {
        Side {
            root,
            fds: [None; SLOTS],
        }
    }

    fn p(&self, rel: &str) -> CString {
        cpath(&self.root, rel)
    }

    fn fd(&self, slot: usize) -> i32 {
        // A closed slot gives EBADF on both sides.
        self.fds[slot].unwrap_or(-1)
    }

    fn close_all(&mut self) {
        for s in self.fds.iter_mut() {
            if let Some(fd) = s.take() {
                let _ = close(fd);
            }
        }
    }

    fn apply(&mut self, op: &Op) -> Res {
        match op {
            Op::Create {
                path,
                excl,
                trunc,
                mode,
            } => {
                let mut fl = libc::O_CREAT | libc::O_WRONLY;
                if *excl {
                    fl |= libc::O_EXCL;
                }
                if *trunc {
                    fl |= libc::O_TRUNC;
                }
                let fd = open(&self.p(path), fl, *mode)?;
                close(fd).map(|_| Out::Unit)
            }
            Op::Write {
                path,
                off,
                len,
                fill,
            } => with_fd(&self.p(path), libc::O_WRONLY, |fd| {
                pwrite(fd, &data(*len, *fill), *off)
            }),
            Op::Append { path, len, fill } => {
                with_fd(&self.p(path), libc::O_WRONLY | libc::O_APPEND, |fd| {
                    let n = write(fd, &data(*len, *fill))?;
                    let s = do_fstat(fd)?;
                    Ok(Out::N2(n, s.st_size))
                })
            }
            Op::Truncate { path, len } => {
                // SAFETY: NUL-terminated path.
                check(unsafe { libc::truncate(self.p(path).as_ptr(), *len as libc::off_t) })
                    .map(|_| Out::Unit)
            }
            Op::Ftruncate { path, len } => with_fd(&self.p(path), libc::O_WRONLY, |fd| {
                // SAFETY: fd is open.
                check(unsafe { libc::ftruncate(fd, *len as libc::off_t) }).map(|_| Out::Unit)
            }),
            Op::Rename {
                from,
                to,
                noreplace,
            } => {
                let fl = if *noreplace {
                    libc::RENAME_NOREPLACE
                } else {
                    0
                };
                // SAFETY: NUL-terminated paths.
                check(unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        self.p(from).as_ptr(),
                        libc::AT_FDCWD,
                        self.p(to).as_ptr(),
                        fl,
                    )
                })
                .map(|_| Out::Unit)
            }
            // SAFETY (all below): plain syscalls on NUL-terminated paths.
            Op::Unlink { path } => {
                check(unsafe { libc::unlink(self.p(path).as_ptr()) }).map(|_| Out::Unit)
            }
            Op::Mkdir { path, mode } => {
                check(unsafe { libc::mkdir(self.p(path).as_ptr(), *mode as libc::mode_t) })
                    .map(|_| Out::Unit)
            }
            Op::Rmdir { path } => {
                check(unsafe { libc::rmdir(self.p(path).as_ptr()) }).map(|_| Out::Unit)
            }
            Op::Symlink { target, path } => {
                let t = CString::new(target.as_bytes()).expect("no NUL");
                check(unsafe { libc::symlink(t.as_ptr(), self.p(path).as_ptr()) })
                    .map(|_| Out::Unit)
            }
            Op::Readlink { path } => read_link(&self.p(path)).map(Out::Target),
            Op::Link { from, to } => {
                check(unsafe { libc::link(self.p(from).as_ptr(), self.p(to).as_ptr()) })
                    .map(|_| Out::Unit)
            }
            Op::Chmod { path, mode } => {
                check(unsafe { libc::chmod(self.p(path).as_ptr(), *mode as libc::mode_t) })
                    .map(|_| Out::Unit)
            }
            Op::Chown {
                path,
                uid,
                gid,
                follow,
            } => {
                let p = self.p(path);
                check(unsafe {
                    if *follow {
                        libc::chown(p.as_ptr(), *uid, *gid)
                    } else {
                        libc::lchown(p.as_ptr(), *uid, *gid)
                    }
                })
                .map(|_| Out::Unit)
            }
            Op::Utimens {
                path,
                atime,
                mtime,
                nofollow,
            } => {
                let p = self.p(path);
                let ts = [atime.spec(), mtime.spec()];
                let fl = if *nofollow {
                    libc::AT_SYMLINK_NOFOLLOW
                } else {
                    0
                };
                check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), fl) })?;
                let s = do_stat(&p, !*nofollow)?;
                Ok(Out::Times(
                    atime.explicit().map(|_| (s.st_atime, s.st_atime_nsec)),
                    mtime.explicit().map(|_| (s.st_mtime, s.st_mtime_nsec)),
                ))
            }
            Op::Readdir { path } => read_dir(&self.root, path).map(Out::Names),
            Op::Stat { path, follow } => {
                do_stat(&self.p(path), *follow).map(|s| Out::Stat(st_of(&s)))
            }
            Op::Read { path } => {
                with_fd(&self.p(path), libc::O_RDONLY, read_all_fd).map(|d| Out::Data(Bytes(d)))
            }
            Op::Open { path, flags } => {
                let fd = open(&self.p(path), *flags, 0o644)?;
                close(fd).map(|_| Out::Unit)
            }
            Op::FdOpen {
                slot,
                path,
                flags,
                mode,
            } => {
                if let Some(fd) = self.fds[*slot].take() {
                    let _ = close(fd);
                }
                let fd = open(&self.p(path), *flags, *mode)?;
                self.fds[*slot] = Some(fd);
                Ok(Out::Unit)
            }
            Op::FdWrite {
                slot,
                off,
                len,
                fill,
            } => pwrite(self.fd(*slot), &data(*len, *fill), *off),
            Op::FdWriteCur { slot, len, fill } => {
                write(self.fd(*slot), &data(*len, *fill)).map(Out::N)
            }
            Op::FdRead { slot, off, len } => {
                pread(self.fd(*slot), *len, *off).map(|d| Out::Data(Bytes(d)))
            }
            Op::FdTruncate { slot, len } => {
                check(unsafe { libc::ftruncate(self.fd(*slot), *len as libc::off_t) })
                    .map(|_| Out::Unit)
            }
            Op::FdStat { slot } => do_fstat(self.fd(*slot)).map(|s| Out::Stat(st_of(&s))),
            Op::FdSync { slot } => check(unsafe { libc::fsync(self.fd(*slot)) }).map(|_| Out::Unit),
            Op::FdClose { slot } => match self.fds[*slot].take() {
                Some(fd) => close(fd).map(|_| Out::Unit),
                None => Err(Errno(libc::EBADF)),
            },
            Op::Statfs { path } => {
                // SAFETY: zeroed statvfs is a valid out-parameter.
                let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
                check(unsafe { libc::statvfs(self.p(path).as_ptr(), &mut v) })?;
                Ok(Out::Fs([
                    v.f_bsize as u64,
                    v.f_frsize as u64,
                    v.f_blocks as u64,
                    v.f_files as u64,
                    v.f_namemax as u64,
                ]))
            }
            Op::SameInode { a, b } => {
                let x = do_stat(&self.p(a), false)?;
                let y = do_stat(&self.p(b), false)?;
                Ok(Out::N(
                    ((x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)) as i64,
                ))
            }
        }
    }
}

// ---------------------------------------------------------------- tree walk

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    path: String,
    st: St,
    target: Option<String>,
    content: Option<Bytes>,
    /// For a non-directory with more names: the first path (in walk order)
    /// naming the same inode, so hard links must be one inode on both sides.
    same_as: Option<String>,
}

/// All entries below `root` (not following symlinks), sorted by path.
fn walk(root: &Path) -> Vec<Entry> {
    fn rec(root: &Path, rel: &str, out: &mut Vec<Entry>, inodes: &mut HashMap<(u64, u64), String>) {
        let names = match read_dir(root, rel) {
            Ok(n) => n,
            Err(e) => panic!(
                "walk: readdir {:?} under {}: {e:?}",
                sp(rel),
                root.display()
            ),
        };
        for (name, _) in names {
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let c = cpath(root, &p);
            let s = do_stat(&c, false).unwrap_or_else(|e| {
                panic!("walk: lstat {:?} under {}: {e:?}", sp(&p), root.display())
            });
            let st = st_of(&s);
            let mut e = Entry {
                path: p.clone(),
                st,
                target: None,
                content: None,
                same_as: None,
            };
            if st.kind != 'd' && st.nlink > 1 {
                e.same_as = Some(
                    inodes
                        .entry((s.st_dev, s.st_ino))
                        .or_insert_with(|| p.clone())
                        .clone(),
                );
            }
            match st.kind {
                'l' => e.target = read_link(&c).ok(),
                'f' => {
                    e.content = with_fd(&c, libc::O_RDONLY, read_all_fd).ok().map(Bytes);
                }
                _ => {}
            }
            out.push(e);
            if st.kind == 'd' {
                rec(root, &p, out, inodes);
            }
        }
    }
    let mut out = Vec::new();
    rec(root, "", &mut out, &mut HashMap::new());
    out
}

/// Cheap listing of the bare tree for choosing paths: (path, kind).
fn list(root: &Path) -> Vec<(String, char)> {
    fn rec(root: &Path, rel: &str, out: &mut Vec<(String, char)>) {
        let Ok(names) = read_dir(root, rel) else {
            return;
        };
        for (name, k) in names {
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            out.push((p.clone(), k));
            if k == 'd' {
                rec(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    rec(root, "", &mut out);
    out
}

// ---------------------------------------------------------------- generation

struct Gen {
    rng: Rng,
    /// Bare tree listing, refreshed after mutating operations.
    tree: Vec<(String, char)>,
    /// Slots holding an open handle on the bare side.
    open_slots: Vec<usize>,
}

fn long_name(len: usize) -> String {
    "L".repeat(len)
}

impl Gen {
    fn name(&mut self) -> String {
        match self.rng.below(100) {
            0 => long_name(255),
            1 => long_name(256),
            _ => self.rng.pick(&NAMES).to_string(),
        }
    }

    fn random_path(&mut self) -> String {
        let depth = 1 + self.rng.below(3);
        (0..depth)
            .map(|_| self.name())
            .collect::<Vec<_>>()
            .join("/")
    }

    fn existing(&mut self) -> Option<String> {
        if self.tree.is_empty() {
            None
        } else {
            Some(self.rng.pick(&self.tree).0.clone())
        }
    }

    /// Mostly an existing file or symlink, else any path.
    fn file_path(&mut self) -> String {
        let files: Vec<&String> = self
            .tree
            .iter()
            .filter(|(_, k)| *k != 'd')
            .map(|(p, _)| p)
            .collect();
        if files.is_empty() || self.rng.pct(40) {
            self.path()
        } else {
            self.rng.pick(&files).to_string()
        }
    }

    /// Often an existing directory, else any path.
    fn dir_path(&mut self) -> String {
        let dirs: Vec<&String> = self
            .tree
            .iter()
            .filter(|(_, k)| *k == 'd')
            .map(|(p, _)| p)
            .collect();
        if dirs.is_empty() || self.rng.pct(50) {
            self.path()
        } else {
            self.rng.pick(&dirs).to_string()
        }
    }

    /// Mostly a slot with an open handle.
    fn slot(&mut self) -> usize {
        if self.open_slots.is_empty() || self.rng.pct(10) {
            self.rng.below(SLOTS as u64) as usize
        } else {
            *self.rng.pick(&self.open_slots)
        }
    }

    fn existing_dir(&mut self) -> String {
        let dirs: Vec<&String> = self
            .tree
            .iter()
            .filter(|(p, k)| *k == 'd' && p.matches('/').count() < 3)
            .map(|(p, _)| p)
            .collect();
        if dirs.is_empty() || self.rng.pct(25) {
            String::new()
        } else {
            self.rng.pick(&dirs).to_string()
        }
    }

    fn child_of_dir(&mut self) -> String {
        let d = self.existing_dir();
        let n = self.name();
        if d.is_empty() { n } else { format!("{d}/{n}") }
    }

    /// A path: mostly existing or a new child of an existing directory,
    /// sometimes random (through files, missing parents), rarely odd
    /// (trailing slash, `.`, `..`).
    fn path(&mut self) -> String {
        let r = self.rng.below(100);
        let p = if r < 45 {
            self.existing().unwrap_or_else(|| self.child_of_dir())
        } else if r < 75 {
            self.child_of_dir()
        } else {
            self.random_path()
        };
        match self.rng.below(100) {
            0 => format!("{p}/"),
            1 => format!("{p}/."),
            2 => format!("{p}/.."),
            _ => p,
        }
    }

    /// Symlink targets stay inside the tree: relative, no `..`, each
    /// component a name (or an absolute path under a missing directory, so
    /// creating through the link fails too).
    fn target(&mut self) -> String {
        match self.rng.below(100) {
            0..5 => "/nonexistent-storgate-dir/target".to_string(),
            5..7 => long_name(255),
            _ => {
                let depth = 1 + self.rng.below(2);
                (0..depth)
                    .map(|_| self.rng.pick(&NAMES).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            }
        }
    }

    fn file_mode(&mut self) -> u32 {
        *self.rng.pick(&[
            0o644, 0o600, 0o666, 0o755, 0o777, 0o000, 0o640, 0o4755, 0o2775,
        ])
    }

    fn dir_mode(&mut self) -> u32 {
        *self
            .rng
            .pick(&[0o755, 0o777, 0o700, 0o750, 0o1777, 0o2775, 0o000])
    }

    fn chmod_mode(&mut self) -> u32 {
        if self.rng.pct(25) {
            self.rng.below(0o10000) as u32
        } else {
            self.rng.below(0o1000) as u32
        }
    }

    fn id(&mut self) -> u32 {
        *self.rng.pick(&[0, 0, 1000, 65534, u32::MAX])
    }

    fn offset(&mut self) -> u64 {
        match self.rng.below(100) {
            0..60 => self.rng.below(9000),
            60..97 => self.rng.below(70_000),
            _ => self.rng.below(3 << 20),
        }
    }

    fn len(&mut self) -> usize {
        match self.rng.below(100) {
            0..5 => 0,
            5..80 => self.rng.below(5000) as usize,
            _ => self.rng.below(70_000) as usize,
        }
    }

    fn time(&mut self) -> Time {
        match self.rng.below(100) {
            0..15 => Time::Omit,
            15..25 => Time::Now,
            25..28 => Time::At(
                -(self.rng.below(1 << 31) as i64),
                self.rng.below(1_000_000_000) as i64,
            ),
            28..35 => Time::At(self.rng.below(4_000_000_000) as i64, 0),
            _ => Time::At(
                self.rng.below(2_000_000_000) as i64,
                self.rng.below(1_000_000_000) as i64,
            ),
        }
    }

    fn open_flags(&mut self) -> i32 {
        let mut f = *self
            .rng
            .pick(&[libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR]);
        if self.rng.pct(30) {
            f |= libc::O_CREAT;
            if self.rng.pct(30) {
                f |= libc::O_EXCL;
            }
        }
        if self.rng.pct(20) {
            f |= libc::O_APPEND;
        }
        if self.rng.pct(10) {
            f |= libc::O_TRUNC;
        }
        if self.rng.pct(5) {
            f |= libc::O_DIRECTORY;
        }
        if self.rng.pct(8) {
            f |= libc::O_NOFOLLOW;
        }
        f
    }

    fn op(&mut self) -> Op {
        let slot = self.slot();
        match self.rng.below(1000) {
            0..80 => Op::Create {
                path: self.path(),
                excl: self.rng.pct(40),
                trunc: self.rng.pct(20),
                mode: self.file_mode(),
            },
            80..160 => Op::Write {
                path: self.file_path(),
                off: self.offset(),
                len: self.len(),
                fill: self.rng.next() as u8,
            },
            160..200 => Op::Append {
                path: self.file_path(),
                len: self.len(),
                fill: self.rng.next() as u8,
            },
            200..225 => Op::Truncate {
                path: self.file_path(),
                len: self.offset(),
            },
            225..250 => Op::Ftruncate {
                path: self.file_path(),
                len: self.offset(),
            },
            250..340 => {
                let from = self.path();
                let r = self.rng.below(100);
                let to = if r < 40 {
                    self.existing().unwrap_or_else(|| self.path())
                } else if r < 50 {
                    // Into itself (EINVAL for a directory).
                    format!("{from}/{}", self.name())
                } else {
                    self.path()
                };
                Op::Rename {
                    from,
                    to,
                    noreplace: self.rng.pct(25),
                }
            }
            340..390 => Op::Unlink { path: self.path() },
            390..460 => Op::Mkdir {
                path: if self.rng.pct(50) {
                    self.child_of_dir()
                } else {
                    self.path()
                },
                mode: self.dir_mode(),
            },
            460..500 => Op::Rmdir {
                path: self.dir_path(),
            },
            500..530 => Op::Symlink {
                target: self.target(),
                path: self.path(),
            },
            530..550 => Op::Readlink { path: self.path() },
            550..580 => Op::Link {
                from: self.file_path(),
                to: self.path(),
            },
            580..610 => Op::Chmod {
                path: self.path(),
                mode: self.chmod_mode(),
            },
            610..625 => Op::Chown {
                path: self.path(),
                uid: self.id(),
                gid: self.id(),
                follow: self.rng.pct(60),
            },
            625..660 => Op::Utimens {
                path: self.path(),
                atime: self.time(),
                mtime: self.time(),
                nofollow: self.rng.pct(30),
            },
            660..700 => Op::Readdir {
                path: if self.rng.pct(20) {
                    String::new()
                } else {
                    self.path()
                },
            },
            700..780 => Op::Stat {
                path: self.path(),
                follow: self.rng.pct(50),
            },
            780..830 => Op::Read {
                path: self.file_path(),
            },
            830..850 => Op::Open {
                path: self.path(),
                flags: self.open_flags(),
            },
            850..880 => Op::FdOpen {
                slot,
                path: self.file_path(),
                flags: self.open_flags(),
                mode: self.file_mode(),
            },
            880..910 => Op::FdWrite {
                slot,
                off: self.offset(),
                len: self.len(),
                fill: self.rng.next() as u8,
            },
            910..925 => Op::FdWriteCur {
                slot,
                len: self.len(),
                fill: self.rng.next() as u8,
            },
            925..950 => Op::FdRead {
                slot,
                off: self.offset(),
                len: self.len(),
            },
            950..960 => Op::FdTruncate {
                slot,
                len: self.offset(),
            },
            960..975 => Op::FdStat { slot },
            975..980 => Op::FdSync { slot },
            980..985 => Op::Statfs { path: self.path() },
            _ => Op::FdClose { slot },
        }
    }
}

// ---------------------------------------------------------------- mtime pins

/// Inodes (of the bare tree) whose mtime was set explicitly and has not
/// been touched since: only their mtimes are compared.
#[derive(Default)]
struct Pins(HashSet<u64>);

fn parent(path: &str) -> &str {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => &p[..i],
        None => "",
    }
}

impl Pins {
    fn ino(root: &Path, rel: &str, follow: bool) -> Option<u64> {
        do_stat(&cpath(root, rel), follow).ok().map(|s| s.st_ino)
    }

    /// Before `op` runs on the bare side: forget every inode whose mtime
    /// `op` may change (conservatively).
    fn before(&mut self, bare: &Side, op: &Op) {
        if self.0.is_empty() {
            return;
        }
        let root = &bare.root;
        let mut paths: Vec<(&str, bool)> = Vec::new();
        let mut fds: Vec<usize> = Vec::new();
        match op {
            Op::Mkdir { path, .. }
            | Op::Symlink { path, .. }
            | Op::Unlink { path }
            | Op::Rmdir { path } => {
                paths.push((parent(path), true));
                paths.push((path, false));
                paths.push((path, true));
            }
            Op::Create { path, .. } => {
                if self.creates_through_symlink(root, path) {
                    return;
                }
                paths.push((parent(path), true));
                paths.push((path, true));
            }
            Op::Open { path, flags } | Op::FdOpen { path, flags, .. } => {
                if flags & libc::O_CREAT != 0 && self.creates_through_symlink(root, path) {
                    return;
                }
                if flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
                    paths.push((parent(path), true));
                    paths.push((path, true));
                }
            }
            Op::Write { path, .. }
            | Op::Append { path, .. }
            | Op::Truncate { path, .. }
            | Op::Ftruncate { path, .. } => paths.push((path, true)),
            Op::Rename { from, to, .. } | Op::Link { from, to } => {
                for p in [from, to] {
                    paths.push((parent(p), true));
                    paths.push((p, false));
                    paths.push((p, true));
                }
            }
            Op::Utimens {
                path,
                mtime,
                nofollow,
                ..
            } => {
                if *mtime != Time::Omit {
                    paths.push((path, !*nofollow));
                }
            }
            Op::FdWrite { slot, .. }
            | Op::FdWriteCur { slot, .. }
            | Op::FdTruncate { slot, .. } => fds.push(*slot),
            Op::Readlink { .. }
            | Op::Chmod { .. }
            | Op::Chown { .. }
            | Op::Readdir { .. }
            | Op::Stat { .. }
            | Op::Read { .. }
            | Op::FdRead { .. }
            | Op::FdStat { .. }
            | Op::FdSync { .. }
            | Op::FdClose { .. }
            | Op::Statfs { .. }
            | Op::SameInode { .. } => {}
        }
        for (p, follow) in paths {
            if let Some(ino) = Self::ino(root, p, follow) {
                self.0.remove(&ino);
            }
        }
        for slot in fds {
            if let Some(fd) = bare.fds[slot]
                && let Ok(s) = do_fstat(fd)
            {
                self.0.remove(&s.st_ino);
            }
        }
    }

    /// O_CREAT on a symlink creates its target elsewhere: forget all pins
    /// (rare; simpler than resolving the link).
    fn creates_through_symlink(&mut self, root: &Path, path: &str) -> bool {
        let link = do_stat(&cpath(root, path), false).is_ok_and(|s| kind_of(s.st_mode) == 'l');
        if link {
            self.0.clear();
        }
        link
    }

    /// After `op` succeeded on both sides.
    fn after(&mut self, bare: &Side, op: &Op) {
        if let Op::Utimens {
            path,
            mtime: Time::At(..),
            nofollow,
            ..
        } = op
            && let Some(ino) = Self::ino(&bare.root, path, !*nofollow)
        {
            self.0.insert(ino);
        }
    }

    /// Keep mtimes only for pinned inodes (decided by the bare result).
    fn mask(&self, bare: &mut Res, mnt: &mut Res) {
        let keep = match bare {
            Ok(Out::Stat(s)) => self.0.contains(&s.ino),
            _ => false,
        };
        for r in [bare, mnt] {
            if let Ok(Out::Stat(s)) = r {
                s.ino = 0;
                if !keep {
                    s.mtime = None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- driver

struct Run {
    seed: u64,
    ops: usize,
    bare: Side,
    mnt: Side,
    genr: Gen,
    pins: Pins,
    history: VecDeque<(usize, String, String)>,
    /// Per operation kind: (ok, errors by errno).
    stats: BTreeMap<&'static str, (usize, BTreeMap<i32, usize>)>,
    /// Stat results whose mtime was compared.
    mtimes_compared: usize,
    /// Pause between the two sides (self-check only): every implicit time
    /// then differs, so a pin rule that is too loose shows up.
    skew: std::time::Duration,
    /// The daemon's log, whose tail goes into failure messages.
    log: Option<PathBuf>,
    /// The #[test] and STORGATE_DIFF_OPS to name in the replay hint.
    test: &'static str,
    ops_env: usize,
    /// A fixed sequence, not a seeded one: it goes on after a mismatch and
    /// reports every one at the end.
    scripted: bool,
    /// Collect mismatches instead of panicking at the first.
    collect: bool,
    mismatches: Vec<String>,
}

fn first_diff(a: &[u8], b: &[u8]) -> String {
    let i = a.iter().zip(b).position(|(x, y)| x != y);
    match i {
        Some(i) => format!(
            "first differing byte at offset {i}: bare {} vs mount {}",
            a[i], b[i]
        ),
        None => format!(
            "equal prefix; lengths bare {} vs mount {}",
            a.len(),
            b.len()
        ),
    }
}

impl Run {
    fn new(seed: u64, ops: usize, bare: &Path, mnt: &Path) -> Run {
        Run {
            seed,
            ops,
            bare: Side::new(bare.to_path_buf()),
            mnt: Side::new(mnt.to_path_buf()),
            genr: Gen {
                rng: Rng::new(seed),
                tree: Vec::new(),
                open_slots: Vec::new(),
            },
            pins: Pins::default(),
            history: VecDeque::new(),
            stats: BTreeMap::new(),
            mtimes_compared: 0,
            skew: std::time::Duration::ZERO,
            log: None,
            test: "random_ops",
            ops_env: ops,
            scripted: false,
            collect: false,
            mismatches: Vec::new(),
        }
    }

    fn replay_hint(&self) -> String {
        if self.scripted {
            return "scripted sequence (no seed): rerun this #[test]".to_string();
        }
        format!(
            "replay: STORGATE_DIFF_SEED={} STORGATE_DIFF_OPS={} cargo test --test it differential::{} -- --exact --nocapture",
            self.seed, self.ops_env, self.test
        )
    }

    fn fail(&self, what: String) -> ! {
        let mut s = format!(
            "differential mismatch (seed={}, bare={}, mount={})\n{what}\n{}\n{} operations (bare result):\n",
            self.seed,
            self.bare.root.display(),
            self.mnt.root.display(),
            self.replay_hint(),
            if self.scripted { "all" } else { "last" }
        );
        for (i, op, r) in &self.history {
            s.push_str(&format!("  #{i}: {op} => {r}\n"));
        }
        if let Some(log) = &self.log {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("daemon log tail ({}):\n", log.display()));
            for l in &lines[lines.len().saturating_sub(30)..] {
                s.push_str(&format!("  {l}\n"));
            }
        }
        panic!("{s}");
    }

    fn mismatch(&mut self, what: String) {
        if self.collect {
            self.mismatches.push(what);
        } else {
            self.fail(what);
        }
    }

    fn compare_trees(&mut self, at: usize) {
        let b = walk(&self.bare.root);
        let m = walk(&self.mnt.root);
        let norm = |v: Vec<Entry>| -> Vec<Entry> {
            v.into_iter()
                .map(|mut e| {
                    if !self.pins.0.contains(&e.st.ino) {
                        e.st.mtime = None;
                    }
                    e
                })
                .collect()
        };
        // The mount's mtimes are kept or dropped by the bare inode at the
        // same path.
        let keep: HashMap<String, bool> = b
            .iter()
            .map(|e| (e.path.clone(), self.pins.0.contains(&e.st.ino)))
            .collect();
        let mut b = norm(b);
        let mut m: Vec<Entry> = m
            .into_iter()
            .map(|mut e| {
                if !keep.get(&e.path).copied().unwrap_or(false) {
                    e.st.mtime = None;
                }
                e
            })
            .collect();
        for e in b.iter_mut().chain(m.iter_mut()) {
            e.st.ino = 0;
        }
        if b == m {
            return;
        }
        let bp: Vec<&str> = b.iter().map(|e| e.path.as_str()).collect();
        let mp: Vec<&str> = m.iter().map(|e| e.path.as_str()).collect();
        let mut msg = format!("tree comparison after op #{at} differs:\n");
        for p in bp.iter().filter(|p| !mp.contains(p)) {
            msg.push_str(&format!("  only in bare:  {:?}\n", sp(p)));
        }
        for p in mp.iter().filter(|p| !bp.contains(p)) {
            msg.push_str(&format!("  only in mount: {:?}\n", sp(p)));
        }
        for x in &b {
            if let Some(y) = m.iter().find(|y| y.path == x.path)
                && x != y
            {
                msg.push_str(&format!(
                    "  {:?}: bare {:?} target={:?} content={:?} same_inode_as={:?}\n  {:?}: mount {:?} target={:?} content={:?} same_inode_as={:?}\n",
                    sp(&x.path),
                    x.st,
                    x.target,
                    x.content,
                    x.same_as,
                    sp(&y.path),
                    y.st,
                    y.target,
                    y.content,
                    y.same_as
                ));
                if let (Some(c), Some(d)) = (&x.content, &y.content)
                    && c != d
                {
                    msg.push_str(&format!("    {}\n", first_diff(&c.0, &d.0)));
                }
            }
        }
        self.mismatch(msg);
    }

    fn step(&mut self, i: usize, op: &Op) {
        self.pins.before(&self.bare, op);
        let mut rb = self.bare.apply(op);
        if !self.skew.is_zero() && !self.pins.0.is_empty() {
            std::thread::sleep(self.skew);
        }
        let mut rm = self.mnt.apply(op);
        self.pins.mask(&mut rb, &mut rm);
        if let Ok(Out::Stat(St { mtime: Some(_), .. })) = rb {
            self.mtimes_compared += 1;
        }
        let shown = match &rb {
            Ok(o) => format!("Ok({o:?})"),
            Err(e) => format!("Err({e:?})"),
        };
        self.history.push_back((i, op.to_string(), shown));
        if self.history.len() > 20 && !self.scripted {
            self.history.pop_front();
        }
        if rb != rm {
            let mut msg = format!("op #{i}: {op}\n  bare:  {rb:?}\n  mount: {rm:?}\n");
            if let (Ok(Out::Data(a)), Ok(Out::Data(b))) = (&rb, &rm) {
                msg.push_str(&format!("  {}\n", first_diff(&a.0, &b.0)));
            }
            self.mismatch(msg);
        }
        let st = self.stats.entry(op.kind()).or_default();
        match &rb {
            Ok(_) => {
                st.0 += 1;
                self.pins.after(&self.bare, op);
            }
            Err(e) => *st.1.entry(e.0).or_default() += 1,
        }
        let readonly = matches!(
            op,
            Op::Readlink { .. }
                | Op::Readdir { .. }
                | Op::Stat { .. }
                | Op::Read { .. }
                | Op::FdRead { .. }
                | Op::FdStat { .. }
                | Op::FdSync { .. }
                | Op::SameInode { .. }
                | Op::Statfs { .. }
        );
        if !readonly {
            self.genr.tree = list(&self.bare.root);
        }
        self.genr.open_slots = (0..SLOTS).filter(|&i| self.bare.fds[i].is_some()).collect();
    }

    /// Replays `ops` in fresh subdirectories `min<k>` of both roots; the
    /// mismatches it shows (a panic counts as one).
    fn replay(&self, ops: &[Op], k: usize) -> Vec<String> {
        let name = format!("min{k}");
        let (b, m) = (self.bare.root.join(&name), self.mnt.root.join(&name));
        for d in [&b, &m] {
            if let Err(e) = std::fs::create_dir(d) {
                return vec![format!("mkdir {}: {e}", d.display())];
            }
        }
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut r = Run::new(0, ops.len(), &b, &m);
            r.scripted = true;
            r.collect = true;
            for (i, op) in ops.iter().enumerate() {
                r.step(i, op);
                if !r.mismatches.is_empty() {
                    return r.mismatches.clone();
                }
            }
            for slot in 0..SLOTS {
                if r.bare.fds[slot].is_some() || r.mnt.fds[slot].is_some() {
                    r.step(ops.len() + slot, &Op::FdClose { slot });
                }
            }
            r.compare_trees(ops.len());
            r.mismatches.clone()
        }));
        res.unwrap_or_else(|_| vec!["panic during replay".to_string()])
    }

    /// Shrinks a failing prefix of operations by removing chunks while the
    /// replay still shows a mismatch (STORGATE_DIFF_MINIMIZE=1).
    fn minimize(&self, mut ops: Vec<Op>) -> String {
        let mut k = 0;
        if self.replay(&ops, k).is_empty() {
            return format!(
                "minimize: the {} operations do not fail again when replayed in a fresh directory (timing or state dependent)",
                ops.len()
            );
        }
        let mut chunk = ops.len().div_ceil(2);
        loop {
            let mut removed = false;
            let mut i = 0;
            while i < ops.len() && ops.len() > 1 {
                let end = (i + chunk).min(ops.len());
                let mut cand = ops[..i].to_vec();
                cand.extend_from_slice(&ops[end..]);
                k += 1;
                let got = self.replay(&cand, k);
                if got.iter().any(|m| m.contains("ENOTCONN")) {
                    return format!(
                        "minimize: the mount went away (ENOTCONN) after {k} replays; \
                         raise STORGATE_TEST_MOUNT_TIMEOUT. Last: {got:?}"
                    );
                }
                if k % 25 == 0 {
                    eprintln!("minimize: {k} replays, {} operations left", ops.len());
                }
                if !got.is_empty() {
                    ops = cand;
                    removed = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 && !removed {
                break;
            }
            chunk = (chunk / 2).max(1);
        }
        k += 1;
        let shown = self.replay(&ops, k);
        let mut s = format!("minimized to {} operation(s) ({k} replays):\n", ops.len());
        for (i, op) in ops.iter().enumerate() {
            s.push_str(&format!("  #{i}: {op}\n"));
        }
        s.push_str("which gives:\n");
        for m in shown {
            s.push_str(&m);
            s.push('\n');
        }
        s
    }

    fn run(&mut self) {
        eprintln!(
            "differential: seed={} ops={} ({})",
            self.seed,
            self.ops,
            self.replay_hint()
        );
        let minimize = env_u64("STORGATE_DIFF_MINIMIZE").unwrap_or(0) != 0;
        self.collect = minimize;
        let mut done = Vec::new();
        for i in 0..self.ops {
            let op = self.genr.op();
            self.step(i, &op);
            if minimize {
                done.push(op);
            }
            if (i + 1) % CHECK_EVERY == 0 {
                self.compare_trees(i);
            }
            if !self.mismatches.is_empty() {
                let first = self.mismatches[0].clone();
                eprintln!(
                    "differential: seed={} mismatch at op #{i}, minimizing:\n{first}",
                    self.seed
                );
                let report = self.minimize(done);
                self.collect = false;
                self.fail(format!("{first}\n{report}"));
            }
        }
        // Close every handle, then compare once more.
        for slot in 0..SLOTS {
            let op = Op::FdClose { slot };
            if self.bare.fds[slot].is_some() || self.mnt.fds[slot].is_some() {
                self.step(self.ops + slot, &op);
            }
        }
        self.compare_trees(self.ops);
        let mut s = format!(
            "differential: seed={} passed; {} explicit mtimes compared by stat; results per operation (bare == mount):\n",
            self.seed, self.mtimes_compared
        );
        for (k, (ok, errs)) in &self.stats {
            s.push_str(&format!("  {k:<10} ok={ok:<5}"));
            for (e, n) in errs {
                s.push_str(&format!(" {:?}={n}", Errno(*e)));
            }
            s.push('\n');
        }
        eprint!("{s}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.bare.close_all();
        self.mnt.close_all();
    }
}

// ---------------------------------------------------------------- setup

/// Runs `f` on a thread with its own umask (`unshare(CLONE_FS)`), so other
/// tests and the daemons they start keep theirs.
fn with_umask<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = std::thread::spawn(move || {
        // SAFETY: affects only this thread's fs_struct.
        unsafe {
            assert_eq!(libc::unshare(libc::CLONE_FS), 0, "unshare(CLONE_FS)");
            libc::umask(OP_UMASK);
        }
        f()
    });
    match h.join() {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// A bare directory and a storgate mount of an equal, empty origin, all in
/// one scratch directory (`<root>/bare`, `<root>/origin`, `<root>/mnt`).
struct Pair {
    mount: common::Mount,
}

impl Pair {
    fn start() -> Pair {
        Pair::start_with(&[])
    }

    /// With extra `storgate mount` arguments (e.g. `-o no_passthrough`).
    fn start_with(extra: &[&str]) -> Pair {
        let root = common::scratch();
        let origin = root.path().join("origin");
        let bare = root.path().join("bare");
        for d in [&origin, &bare] {
            std::fs::create_dir(d).expect("mkdir");
            let c = cpath(d, "");
            // SAFETY: NUL-terminated path.
            assert_eq!(unsafe { libc::chmod(c.as_ptr(), 0o755) }, 0);
        }
        let config = serde_json::json!({
            "stateDir": root.path().join("state"),
            "buckets": [{
                "meta": {"name": "b"},
                "mounts": [{"mountPoint": null, "originPath": origin}],
            }],
        });
        let mut args = vec!["--bucket", "b"];
        args.extend_from_slice(extra);
        let mount = common::Mount::start_in(root, &config, &args);
        Pair { mount }
    }

    fn bare(&self) -> PathBuf {
        self.mount.root.path().join("bare")
    }

    fn mnt(&self) -> PathBuf {
        self.mount.mnt.clone()
    }

    fn log(&self) -> PathBuf {
        self.mount.root.path().join("storgate.log")
    }
}

fn ops_from_env() -> usize {
    env_u64("STORGATE_DIFF_OPS").map_or(DEFAULT_OPS, |n| n as usize)
}

// ---------------------------------------------------------------- tests

/// The random differential run against a real mount (default I/O path:
/// FUSE passthrough for local files where the kernel offers it).
#[test]
fn random_ops() {
    random_run("random_ops", &[], 1);
}

/// The same against a mount that serves every read and write in the
/// daemon (`-o no_passthrough`), with half the operations.
#[test]
fn random_ops_no_passthrough() {
    random_run("random_ops_no_passthrough", &["-o", "no_passthrough"], 2);
}

/// Runs `STORGATE_DIFF_OPS / divisor` random operations.
fn random_run(test: &'static str, extra: &[&str], divisor: usize) {
    let ops_env = ops_from_env();
    let ops = ops_env.div_ceil(divisor);
    let seed = env_u64("STORGATE_DIFF_SEED").unwrap_or_else(random_seed);
    let mut pair = Pair::start_with(extra);
    if env_u64("STORGATE_DIFF_MINIMIZE").unwrap_or(0) != 0 {
        // Minimizing replays for a long time: keep the harness's watchdog
        // from killing the daemon meanwhile. Manual debugging mode only.
        // (Not through the environment: other tests of this process read it.)
        pair.mount.extend_watchdog(3600);
    }
    let (bare, mnt, log) = (pair.bare(), pair.mnt(), pair.log());
    with_umask(move || {
        let mut r = Run::new(seed, ops, &bare, &mnt);
        r.log = Some(log);
        r.test = test;
        r.ops_env = ops_env;
        r.run()
    });
    drop(pair);
}

/// The harness itself: two bare directories never differ (no false
/// positives from the comparison rules).
#[test]
fn self_check_bare_vs_bare() {
    let seed = env_u64("STORGATE_DIFF_SEED").unwrap_or_else(random_seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    // STORGATE_DIFF_SKEW_MS (e.g. 10) checks the mtime pin rules.
    let skew = std::time::Duration::from_millis(env_u64("STORGATE_DIFF_SKEW_MS").unwrap_or(0));
    let ops = env_u64("STORGATE_DIFF_SELF_OPS").map_or(3000, |n| n as usize);
    with_umask(move || {
        let mut r = Run::new(seed, ops, &a, &b);
        r.skew = skew;
        r.run()
    });
}

/// A fixed sequence run through the same comparison.
fn scripted(ops: Vec<Op>) {
    let pair = Pair::start();
    let (bare, mnt, log) = (pair.bare(), pair.mnt(), pair.log());
    with_umask(move || {
        let mut r = Run::new(0, ops.len(), &bare, &mnt);
        r.log = Some(log);
        r.scripted = true;
        r.collect = true;
        for (i, op) in ops.iter().enumerate() {
            r.step(i, op);
        }
        r.compare_trees(ops.len());
        if !r.mismatches.is_empty() {
            let all = r.mismatches.join("\n");
            r.fail(format!("{} mismatch(es):\n{all}", r.mismatches.len()));
        }
    });
    drop(pair);
}

fn s(x: &str) -> String {
    x.to_string()
}

fn create(p: &str) -> Op {
    Op::Create {
        path: s(p),
        excl: false,
        trunc: false,
        mode: 0o644,
    }
}

fn write_at(p: &str, off: u64, len: usize, fill: u8) -> Op {
    Op::Write {
        path: s(p),
        off,
        len,
        fill,
    }
}

fn stat(p: &str) -> Op {
    Op::Stat {
        path: s(p),
        follow: false,
    }
}

fn read(p: &str) -> Op {
    Op::Read { path: s(p) }
}

#[test]
fn rename_over_existing_file() {
    scripted(vec![
        create("a"),
        write_at("a", 0, 100, 1),
        create("b"),
        write_at("b", 0, 7, 2),
        Op::FdOpen {
            slot: 0,
            path: s("b"),
            flags: libc::O_RDONLY,
            mode: 0,
        },
        Op::Rename {
            from: s("a"),
            to: s("b"),
            noreplace: false,
        },
        stat("a"),
        stat("b"),
        read("b"),
        // The old "b" stays readable through its handle.
        Op::FdRead {
            slot: 0,
            off: 0,
            len: 100,
        },
        Op::FdStat { slot: 0 },
        Op::FdClose { slot: 0 },
    ]);
}

#[test]
fn rename_noreplace() {
    let nr = |f: &str, t: &str| Op::Rename {
        from: s(f),
        to: s(t),
        noreplace: true,
    };
    scripted(vec![
        create("a"),
        create("b"),
        nr("a", "b"),
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        nr("a", "d"),
        nr("d", "a"),
        nr("a", "c"),
        stat("a"),
        stat("c"),
        nr("missing", "x"),
        read("c"),
    ]);
}

#[test]
fn rename_directories() {
    let mkdir = |p: &str| Op::Mkdir {
        path: s(p),
        mode: 0o755,
    };
    let mv = |f: &str, t: &str| Op::Rename {
        from: s(f),
        to: s(t),
        noreplace: false,
    };
    scripted(vec![
        mkdir("a"),
        mkdir("a/b"),
        create("a/b/f"),
        mkdir("e"),
        mkdir("n"),
        create("n/x"),
        create("file"),
        mv("a", "a/b/c"), // EINVAL: into its own subdirectory
        mv("a", "n"),     // ENOTEMPTY
        mv("a", "file"),  // ENOTDIR
        mv("file", "e"),  // EISDIR
        mv("a", "e"),     // over an empty directory
        stat("e/b/f"),
        stat("a"),
        mv("e/b", "n/x/y"), // ENOTDIR through a file
        mv("e/b", "b"),
        Op::Readdir { path: s("") },
        Op::Readdir { path: s("b") },
        Op::Readdir { path: s("e") },
    ]);
}

#[test]
fn unlink_while_open_then_read() {
    scripted(vec![
        create("a"),
        write_at("a", 0, 5000, 9),
        Op::FdOpen {
            slot: 0,
            path: s("a"),
            flags: libc::O_RDWR,
            mode: 0,
        },
        Op::Unlink { path: s("a") },
        stat("a"),
        Op::FdRead {
            slot: 0,
            off: 0,
            len: 6000,
        },
        Op::FdWrite {
            slot: 0,
            off: 6000,
            len: 10,
            fill: 3,
        },
        Op::FdStat { slot: 0 },
        Op::FdRead {
            slot: 0,
            off: 4990,
            len: 2000,
        },
        Op::Readdir { path: s("") },
        Op::FdClose { slot: 0 },
    ]);
}

#[test]
fn write_to_open_fd_after_rename() {
    scripted(vec![
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        create("d/a"),
        Op::FdOpen {
            slot: 0,
            path: s("d/a"),
            flags: libc::O_WRONLY | libc::O_APPEND,
            mode: 0,
        },
        Op::Rename {
            from: s("d/a"),
            to: s("b"),
            noreplace: false,
        },
        Op::Rename {
            from: s("d"),
            to: s("e"),
            noreplace: false,
        },
        Op::FdWriteCur {
            slot: 0,
            len: 300,
            fill: 5,
        },
        Op::FdStat { slot: 0 },
        read("b"),
        stat("b"),
        Op::FdClose { slot: 0 },
        read("b"),
    ]);
}

#[test]
fn hard_link_chmod_one_stat_other() {
    scripted(vec![
        create("a"),
        write_at("a", 0, 10, 1),
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        Op::Link {
            from: s("a"),
            to: s("d/b"),
        },
        stat("a"),
        stat("d/b"),
        Op::SameInode {
            a: s("a"),
            b: s("d/b"),
        },
        Op::Chmod {
            path: s("a"),
            mode: 0o600,
        },
        stat("d/b"),
        write_at("d/b", 10, 10, 2),
        read("a"),
        stat("a"),
        Op::Utimens {
            path: s("d/b"),
            atime: Time::At(1_000_000_000, 123_456_789),
            mtime: Time::At(1_234_567_890, 987_654_321),
            nofollow: false,
        },
        stat("a"),
        Op::Unlink { path: s("a") },
        stat("d/b"),
        Op::Link {
            from: s("d"),
            to: s("x"),
        }, // EPERM: directory
    ]);
}

#[test]
fn ftruncate_open_handle() {
    scripted(vec![
        create("a"),
        write_at("a", 0, 10_000, 4),
        Op::FdOpen {
            slot: 0,
            path: s("a"),
            flags: libc::O_RDWR,
            mode: 0,
        },
        Op::FdTruncate { slot: 0, len: 100 },
        stat("a"),
        read("a"),
        Op::FdTruncate {
            slot: 0,
            len: 50_000,
        },
        Op::FdStat { slot: 0 },
        read("a"),
        Op::FdOpen {
            slot: 1,
            path: s("a"),
            flags: libc::O_RDONLY,
            mode: 0,
        },
        Op::FdTruncate { slot: 1, len: 1 }, // EINVAL/EBADF on a read-only fd
        Op::FdClose { slot: 0 },
        Op::FdClose { slot: 1 },
    ]);
}

#[test]
fn errno_edges() {
    let long255 = long_name(255);
    let long256 = long_name(256);
    scripted(vec![
        create("f"),
        Op::Create {
            path: s("f"),
            excl: true,
            trunc: false,
            mode: 0o644,
        }, // EEXIST
        create("f/x"),   // ENOTDIR
        stat("f/x"),     // ENOTDIR
        stat("f/"),      // ENOTDIR
        read("missing"), // ENOENT
        Op::Open {
            path: s("missing/x"),
            flags: libc::O_RDONLY,
        },
        create(&long255),
        stat(&long255),
        create(&long256), // ENAMETOOLONG
        stat(&long256),   // ENAMETOOLONG
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        create("d/x"),
        Op::Rmdir { path: s("d") },  // ENOTEMPTY
        Op::Rmdir { path: s("f") },  // ENOTDIR
        Op::Unlink { path: s("d") }, // EISDIR
        Op::Symlink {
            target: s("loop"),
            path: s("loop"),
        },
        stat("loop"),
        Op::Stat {
            path: s("loop"),
            follow: true,
        }, // ELOOP
        Op::Readlink { path: s("f") }, // EINVAL
        Op::Open {
            path: s("loop"),
            flags: libc::O_RDONLY | libc::O_NOFOLLOW,
        }, // ELOOP
        Op::Open {
            path: s("d"),
            flags: libc::O_WRONLY,
        }, // EISDIR
        Op::Open {
            path: s("f"),
            flags: libc::O_RDONLY | libc::O_DIRECTORY,
        }, // ENOTDIR
        Op::Truncate {
            path: s("d"),
            len: 0,
        }, // EISDIR
        Op::Utimens {
            path: s("f"),
            atime: Time::Omit,
            mtime: Time::At(-86_400, 1),
            nofollow: false,
        },
        stat("f"),
    ]);
}

#[test]
fn holes_append_and_truncate() {
    scripted(vec![
        create("a"),
        write_at("a", 1 << 20, 10, 1),
        read("a"),
        Op::Append {
            path: s("a"),
            len: 33,
            fill: 2,
        },
        Op::Truncate {
            path: s("a"),
            len: 5,
        },
        Op::Append {
            path: s("a"),
            len: 3,
            fill: 3,
        },
        read("a"),
        Op::Ftruncate {
            path: s("a"),
            len: 70_000,
        },
        stat("a"),
        read("a"),
    ]);
}

#[test]
fn fstat_directory_fd_after_rmdir() {
    scripted(vec![
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        Op::FdOpen {
            slot: 0,
            path: s("d"),
            flags: libc::O_RDONLY | libc::O_DIRECTORY,
            mode: 0,
        },
        Op::Rmdir { path: s("d") },
        Op::FdStat { slot: 0 },
        Op::Mkdir {
            path: s("d"),
            mode: 0o700,
        },
        Op::FdStat { slot: 0 },
        stat("d"),
        Op::FdClose { slot: 0 },
    ]);
}

#[test]
fn statfs_and_fsync() {
    scripted(vec![
        Op::Statfs { path: s("") },
        create("a"),
        Op::Statfs { path: s("a") },
        Op::Statfs { path: s("missing") },
        Op::FdOpen {
            slot: 0,
            path: s("a"),
            flags: libc::O_RDWR,
            mode: 0,
        },
        Op::FdWrite {
            slot: 0,
            off: 3,
            len: 10,
            fill: 1,
        },
        Op::FdSync { slot: 0 },
        Op::FdClose { slot: 0 },
        read("a"),
    ]);
}

#[test]
fn hard_link_content_coherence() {
    scripted(vec![
        create("a"),
        Op::Link {
            from: s("a"),
            to: s("b"),
        },
        read("b"),
        stat("b"),
        write_at("a", 0, 3000, 7),
        stat("b"),
        read("b"),
        Op::Truncate {
            path: s("a"),
            len: 10,
        },
        stat("b"),
        read("b"),
        Op::Append {
            path: s("b"),
            len: 5,
            fill: 1,
        },
        read("a"),
        // The other direction: write through the new name, look through
        // the old one.
        stat("a"),
        write_at("b", 100, 2000, 3),
        stat("a"),
        read("a"),
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        Op::Link {
            from: s("a"),
            to: s("d/c"),
        },
        stat("a"),
        write_at("d/c", 5000, 10, 4),
        stat("a"),
        stat("b"),
        read("b"),
    ]);
}

#[test]
fn hard_link_write_new_name_stat_old() {
    scripted(vec![
        Op::Mkdir {
            path: s("d"),
            mode: 0o755,
        },
        create("d/e"),
        Op::Link {
            from: s("d/e"),
            to: s("e"),
        },
        write_at("e", 100, 3741, 166),
        stat("d/e"),
        read("d/e"),
    ]);
}
