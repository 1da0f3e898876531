//! Reading and writing bucket paths on behalf of workflows (SPEC §5.1,
//! §5.3): where an existing path lives (hidden mounts included), where a new
//! one goes, atomic output writes with `whenExist`, removal and moves.
//!
//! Workflows talk to origins directly, never through the mount: access
//! rules do not apply to them and their writes fire no events. On local
//! origins every change is announced to [`SelfChanges`] first, so the origin
//! watcher does not mistake it for a change made behind the mount's back.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use crate::bucket::BucketState;
use crate::bucket::error::{BucketError, ProduceResult};
use crate::bucket::resolve::{self, Located, NewFor, Stat};
use crate::bucket::selfchange::SelfChanges;
use crate::bucket::temps::OriginTemp;
use crate::config::model::WhenExist;
use crate::error::{Errno, FsResult};
use crate::origin::{Backend, LocalOrigin};

/// Prefix of the temporary files outputs are written to before the rename
/// that publishes them; the watcher ignores these names.
pub const TMP_PREFIX: &str = ".storgate.tmp.";

/// A new, empty temporary file in `dir` named with [`TMP_PREFIX`] (so crash
/// cleanup and the watcher know it), removed when the path is dropped.
fn temp_in(dir: &Path, mode: u32) -> Result<TempPath, BucketError> {
    tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map(|f| f.into_temp_path())
        .map_err(|e| BucketError::io(format!("temporary file in {}: {e}", dir.display()), e))
}

/// What writing one output did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Written,
    /// `whenExist: skip` and the path existed.
    Skipped,
    /// `whenExist: diff` and the content was the same.
    Unchanged,
}

impl WriteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStatus::Written => "written",
            WriteStatus::Skipped => "skipped",
            WriteStatus::Unchanged => "unchanged",
        }
    }
}

/// A source materialised as a local file for the tasks to read.
pub struct LocalSource {
    /// What tasks open: a downloaded temp file, a pre-put staging file, or
    /// `/proc/self/fd/N` of the origin file opened below (re-opening that
    /// reaches the same inode, whatever happens to its name meanwhile).
    pub path: PathBuf,
    /// The stat of the file the tasks read, when it was opened in a local
    /// origin (the identity the runner checks against the event's).
    pub st: Option<libc::stat>,
    /// Keeps the origin file open while tasks read it by `path`.
    _file: Option<File>,
    /// Downloaded into the temporary directory: removed when dropped.
    _owned: Option<TempPath>,
}

impl LocalSource {
    pub fn borrowed(path: PathBuf) -> LocalSource {
        LocalSource {
            path,
            st: None,
            _file: None,
            _owned: None,
        }
    }

    fn owned(temp: TempPath) -> LocalSource {
        LocalSource {
            path: temp.to_path_buf(),
            st: None,
            _file: None,
            _owned: Some(temp),
        }
    }

    fn opened(file: File, st: libc::stat) -> LocalSource {
        LocalSource {
            path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            st: Some(st),
            _file: Some(file),
            _owned: None,
        }
    }
}

/// The mode of an output made from a source of mode `source`: its
/// permission bits without write for group and others (umask 022) and
/// without setuid/setgid/sticky — the output belongs to the daemon (root),
/// and a client's setuid file must not become a root-owned one.
pub fn output_mode(source: u32) -> u32 {
    source & 0o777 & !0o022
}

/// The workflow view of one bucket.
pub struct Store<'a> {
    pub bucket: &'a BucketState,
    pub selfc: &'a SelfChanges,
    /// For downloads and S3-bound outputs (`stateDir/tmp`).
    pub tmp_dir: &'a Path,
}

impl Store<'_> {
    fn origin(&self, mount: usize) -> &Backend {
        &self.bucket.origins[mount]
    }

    /// The key of `rel` in the self-change registry (a name, never opened).
    fn abs(&self, mount: usize, rel: &[OsString]) -> Option<PathBuf> {
        self.origin(mount).as_local().map(|l| l.path_of(rel))
    }

    /// Where the existing entry at bucket path `comps` lives (hidden mounts
    /// included; layout directories are no entry).
    pub fn find(&self, comps: &[OsString]) -> FsResult<(usize, Vec<OsString>, libc::stat)> {
        match resolve::locate(self.bucket.view(false), comps, Stat::Exact)? {
            Located::Origin { mount, rel, st } => Ok((mount, rel, st)),
            Located::Synthetic => Err(Errno::ENOENT),
        }
    }

    /// Where a new entry at `comps` goes: where it exists already, else where
    /// rule 5 puts it; and whether it exists.
    fn target(&self, comps: &[OsString]) -> FsResult<(usize, Vec<OsString>, bool)> {
        let p = resolve::new_place(self.bucket.view(false), comps, NewFor::Output)?;
        Ok((p.mount, p.rel, p.exists))
    }

    /// The entry at `mount`/`rel` as a local file: local origins directly,
    /// S3 objects downloaded into the temporary directory.
    pub fn materialize(&self, mount: usize, rel: &[OsString]) -> Result<LocalSource, BucketError> {
        if let Some(l) = self.origin(mount).as_local() {
            let (file, st) = l.open_regular(rel).map_err(|errno| BucketError::Origin {
                errno,
                message: format!("open source: {errno}"),
            })?;
            return Ok(LocalSource::opened(file, st));
        }
        let origin = self.origin(mount);
        let file = origin
            .open(rel, libc::O_RDONLY)
            .map_err(|errno| BucketError::Origin {
                errno,
                message: format!("open source: {errno}"),
            })?;
        let result = (|| {
            let src = LocalSource::owned(temp_in(self.tmp_dir, 0o600)?);
            let shown = src.path.display().to_string();
            let mut out =
                File::create(&src.path).map_err(|e| BucketError::io(format!("{shown}: {e}"), e))?;
            let mut buf = vec![0u8; 8 << 20];
            let mut off = 0u64;
            loop {
                let n = file
                    .read_at(&mut buf, off)
                    .map_err(|errno| BucketError::Origin {
                        errno,
                        message: format!("read source: {errno}"),
                    })?;
                if n == 0 {
                    break;
                }
                std::io::Write::write_all(&mut out, &buf[..n])
                    .map_err(|e| BucketError::io(format!("{shown}: {e}"), e))?;
                off += n as u64;
            }
            Ok(src)
        })();
        file.release();
        result
    }

    /// Creates the missing parent directories of `rel` in `mount`; returns
    /// the ones it created, outermost first.
    fn make_parents(&self, mount: usize, rel: &[OsString]) -> FsResult<Vec<Vec<OsString>>> {
        let origin = self.origin(mount);
        let mut made = Vec::new();
        for i in 1..rel.len() {
            let dir = &rel[..i];
            match origin.lstat(dir) {
                Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => continue,
                Ok(_) => return Err(Errno::ENOTDIR),
                Err(e) if e == Errno::ENOENT => {}
                Err(e) => return Err(e),
            }
            if let Some(abs) = self.abs(mount, dir) {
                self.selfc.creating(&abs);
            }
            match origin.mkdir(dir, 0o755) {
                Ok(()) => made.push(dir.to_vec()),
                Err(e) if e == Errno::EEXIST => {}
                Err(e) => return Err(e),
            }
        }
        Ok(made)
    }

    /// Takes back directories [`Store::make_parents`] created for an output
    /// that was then not written (while they are still empty).
    fn remove_made(&self, mount: usize, made: &[Vec<OsString>]) {
        for dir in made.iter().rev() {
            if let Some(abs) = self.abs(mount, dir) {
                self.selfc.deleting(&abs);
            }
            if self.origin(mount).rmdir(dir).is_err() {
                break;
            }
        }
    }

    /// Writes the output at bucket path `comps` (text `shown` for messages):
    /// `produce` fills a temporary file, which then replaces the path in one
    /// step (rename on local origins, one upload on S3).
    /// `mode` is the output's mode (see [`output_mode`]).
    pub fn write(
        &self,
        comps: &[OsString],
        shown: &str,
        when: WhenExist,
        mode: u32,
        produce: &dyn Fn(&Path) -> ProduceResult,
    ) -> Result<WriteStatus, BucketError> {
        let (mount, rel, exists) = self
            .target(comps)
            .map_err(|e| BucketError::origin("cannot place output", shown, e))?;
        if exists && when == WhenExist::Skip {
            return Ok(WriteStatus::Skipped);
        }
        match self.origin(mount).as_local() {
            Some(l) => self.write_local(l, mount, &rel, exists, when, mode, produce, shown),
            None => {
                let made = self.make_parents(mount, &rel).map_err(|e| {
                    BucketError::origin("cannot create the directories of", shown, e)
                })?;
                let result = self.write_remote(mount, &rel, exists, when, mode, produce, shown);
                if !matches!(result, Ok(WriteStatus::Written)) {
                    self.remove_made(mount, &made);
                }
                result
            }
        }
    }

    /// The output is produced in the nearest existing directory on its way
    /// (same file system, so the final rename is atomic), and its missing
    /// directories are only created once it exists: an output that fails
    /// leaves no directory behind, even while other items write beside it.
    /// Every step is beneath the origin's root fd (SPEC §9.1): a directory
    /// swapped for a symlink fails the write instead of redirecting it.
    #[allow(clippy::too_many_arguments)]
    fn write_local(
        &self,
        local: &LocalOrigin,
        mount: usize,
        rel: &[OsString],
        exists: bool,
        when: WhenExist,
        mode: u32,
        produce: &dyn Fn(&Path) -> ProduceResult,
        shown: &str,
    ) -> Result<WriteStatus, BucketError> {
        let origin = self.origin(mount);
        let existing = (0..rel.len())
            .rev()
            .find(|&i| {
                origin
                    .lstat(&rel[..i])
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            })
            .unwrap_or(0);
        let root = local
            .at()
            .map_err(|e| BucketError::origin("cannot open the origin of", shown, e))?;
        // Removed when dropped unless published.
        let tmp = OriginTemp::create(root, &rel[..existing], self.tmp_dir, mode)
            .map_err(|e| BucketError::io(format!("temporary file for {shown:?}: {e}"), e))?;
        produce(&tmp.path()).map_err(BucketError::Produce)?;
        // A producer that copies permissions (std::fs::copy) must not widen them.
        tmp.file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| BucketError::io(format!("chmod output {shown:?}: {e}"), e))?;
        if exists
            && when == WhenExist::Diff
            && let Ok(current) = local.open(rel, libc::O_RDONLY | libc::O_NONBLOCK)
            && same_content(tmp.file(), &current)
        {
            return Ok(WriteStatus::Unchanged);
        }
        self.make_parents(mount, rel)
            .map_err(|e| BucketError::origin("cannot create the directories of", shown, e))?;
        let st = crate::origin::local::fstat(tmp.file())
            .map_err(|e| BucketError::origin("stat output", shown, e))?;
        if let Some(abs) = self.abs(mount, rel) {
            self.selfc.wrote(&abs, &st);
        }
        let (dir, name) = root
            .parent(rel)
            .map_err(|e| BucketError::origin("cannot open the directory of", shown, e))?;
        tmp.publish(&dir, &name)
            .map_err(|e| BucketError::origin("publish", shown, e))?;
        Ok(WriteStatus::Written)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_remote(
        &self,
        mount: usize,
        rel: &[OsString],
        exists: bool,
        when: WhenExist,
        mode: u32,
        produce: &dyn Fn(&Path) -> ProduceResult,
        shown: &str,
    ) -> Result<WriteStatus, BucketError> {
        let tmp = temp_in(self.tmp_dir, 0o600)?;
        produce(&tmp).map_err(BucketError::Produce)?;
        if exists && when == WhenExist::Diff {
            let current = self.materialize(mount, rel)?;
            if let (Ok(a), Ok(b)) = (File::open(&tmp), File::open(&current.path))
                && same_content(&a, &b)
            {
                return Ok(WriteStatus::Unchanged);
            }
        }
        let origin = self.origin(mount);
        let out = origin
            .create(rel, libc::O_WRONLY | libc::O_TRUNC, mode)
            .map_err(|e| BucketError::origin("create output", shown, e))?;
        let io = |e: std::io::Error| BucketError::io(format!("{shown:?}: {e}"), e);
        let result = (|| {
            let mut f = File::open(&tmp).map_err(io)?;
            let mut buf = vec![0u8; 8 << 20];
            let mut off = 0u64;
            loop {
                let n = f.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                out.write_at(&buf[..n], off)
                    .map_err(|e| BucketError::origin("write output", shown, e))?;
                off += n as u64;
            }
            out.flush()
                .map_err(|e| BucketError::origin("upload output", shown, e))
        })();
        out.release();
        result.map(|()| WriteStatus::Written)
    }

    /// Removes the entry at `comps` (a directory only when empty).
    ///
    /// `processed` is the (device, inode) of the local file a workflow just
    /// processed: an `onComplete` must not remove an upload that replaced it
    /// since (that one's own event processes it), so a different file at the
    /// path is kept and the call fails with ESTALE.
    pub fn remove(
        &self,
        comps: &[OsString],
        shown: &str,
        processed: Option<(u64, u64)>,
    ) -> Result<(), BucketError> {
        let (mount, rel, st) = self
            .find(comps)
            .map_err(|e| BucketError::origin("cannot find", shown, e))?;
        self.check_processed(mount, &st, processed, shown)?;
        if let Some(abs) = self.abs(mount, &rel) {
            self.selfc.deleting(&abs);
        }
        let origin = self.origin(mount);
        let r = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            origin.rmdir(&rel)
        } else {
            origin.unlink(&rel)
        };
        r.map_err(|e| BucketError::origin("cannot remove", shown, e))
    }

    /// See [`Store::remove`] for `processed`.
    fn check_processed(
        &self,
        mount: usize,
        st: &libc::stat,
        processed: Option<(u64, u64)>,
        shown: &str,
    ) -> Result<(), BucketError> {
        match processed {
            Some(id) if self.origin(mount).as_local().is_some() && (st.st_dev, st.st_ino) != id => {
                Err(BucketError::Origin {
                    errno: Errno::ESTALE,
                    message: format!(
                        "{shown:?} was replaced after it was processed: kept for its own event"
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// Moves the entry at `from` to `to` (rename within an origin, else copy
    /// and remove). See [`Store::remove`] for `processed`.
    pub fn rename(
        &self,
        from: &[OsString],
        to: &[OsString],
        shown_from: &str,
        shown_to: &str,
        processed: Option<(u64, u64)>,
    ) -> Result<(), BucketError> {
        let (fm, frel, st) = self
            .find(from)
            .map_err(|e| BucketError::origin("cannot find", shown_from, e))?;
        self.check_processed(fm, &st, processed, shown_from)?;
        let (tm, trel, _) = self
            .target(to)
            .map_err(|e| BucketError::origin("cannot place", shown_to, e))?;
        let made = self
            .make_parents(tm, &trel)
            .map_err(|e| BucketError::origin("cannot create the directories of", shown_to, e))?;
        if fm == tm {
            if let Some(abs) = self.abs(fm, &frel) {
                self.selfc.deleting(&abs);
            }
            if let Some(abs) = self.abs(tm, &trel) {
                self.selfc.wrote(&abs, &st);
            }
            match self.origin(fm).rename(&frel, &trel, 0) {
                Ok(()) => return Ok(()),
                Err(e) if e == Errno::EXDEV => {}
                Err(errno) => {
                    self.remove_made(tm, &made);
                    return Err(BucketError::Origin {
                        errno,
                        message: format!("move {shown_from:?} to {shown_to:?}: {errno}"),
                    });
                }
            }
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(BucketError::Origin {
                errno: Errno::EXDEV,
                message: format!(
                    "move {shown_from:?} to {shown_to:?}: only files move across origins"
                ),
            });
        }
        let src = self.materialize(fm, &frel)?;
        let mode = output_mode(st.st_mode);
        self.write(to, shown_to, WhenExist::Overwrite, mode, &|tmp| {
            std::fs::copy(&src.path, tmp)
                .map(drop)
                .map_err(|e| format!("copy {shown_from:?}: {e}").into())
        })?;
        drop(src);
        self.remove(from, shown_from, Some((st.st_dev, st.st_ino)))
    }
}

/// Whether two open files have the same bytes.
pub fn same_content(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
        _ => return false,
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let Ok(na) = read_full_at(a, &mut ba, off) else {
            return false;
        };
        let Ok(nb) = read_full_at(b, &mut bb, off) else {
            return false;
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
        off += na as u64;
    }
}

fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
