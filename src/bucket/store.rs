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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use crate::bucket::BucketState;
use crate::bucket::error::{BucketError, ProduceResult};
use crate::bucket::resolve::{self, Located, NewFor, Stat};
use crate::bucket::selfchange::SelfChanges;
use crate::config::model::WhenExist;
use crate::error::{Errno, FsResult};
use crate::origin::Backend;

/// Prefix of the temporary files outputs are written to before the rename
/// that publishes them; the watcher ignores these names.
pub const TMP_PREFIX: &str = ".storgate.tmp.";

/// Mode of an output produced in a local origin before its producer sets
/// one (the daemon runs with umask 0: never world-writable).
const OUTPUT_MODE: u32 = 0o644;

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
    pub path: PathBuf,
    /// Downloaded into the temporary directory: removed when dropped.
    _owned: Option<TempPath>,
}

impl LocalSource {
    pub fn borrowed(path: PathBuf) -> LocalSource {
        LocalSource { path, _owned: None }
    }

    fn owned(temp: TempPath) -> LocalSource {
        LocalSource {
            path: temp.to_path_buf(),
            _owned: Some(temp),
        }
    }
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
        if let Some(abs) = self.abs(mount, rel) {
            return Ok(LocalSource::borrowed(abs));
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
    pub fn write(
        &self,
        comps: &[OsString],
        shown: &str,
        when: WhenExist,
        produce: &dyn Fn(&Path) -> ProduceResult,
    ) -> Result<WriteStatus, BucketError> {
        let (mount, rel, exists) = self
            .target(comps)
            .map_err(|e| BucketError::origin("cannot place output", shown, e))?;
        if exists && when == WhenExist::Skip {
            return Ok(WriteStatus::Skipped);
        }
        match self.abs(mount, &rel) {
            Some(abs) => self.write_local(mount, &rel, &abs, exists, when, produce, shown),
            None => {
                let made = self.make_parents(mount, &rel).map_err(|e| {
                    BucketError::origin("cannot create the directories of", shown, e)
                })?;
                let result = self.write_remote(mount, &rel, exists, when, produce, shown);
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
    #[allow(clippy::too_many_arguments)]
    fn write_local(
        &self,
        mount: usize,
        rel: &[OsString],
        abs: &Path,
        exists: bool,
        when: WhenExist,
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
        let dir = self
            .abs(mount, &rel[..existing])
            .ok_or_else(|| BucketError::config(format!("{shown:?}: not a local path")))?;
        // Dropped (removed) unless published.
        let tmp = temp_in(&dir, OUTPUT_MODE)?;
        produce(&tmp).map_err(BucketError::Produce)?;
        if exists && when == WhenExist::Diff && same_content(&tmp, abs) {
            return Ok(WriteStatus::Unchanged);
        }
        self.make_parents(mount, rel)
            .map_err(|e| BucketError::origin("cannot create the directories of", shown, e))?;
        let st = crate::origin::local::lstat_path(&tmp)
            .map_err(|e| BucketError::origin("stat output", shown, e))?;
        self.selfc.wrote(abs, &st);
        tmp.persist(abs)
            .map_err(|e| BucketError::io(format!("publish {shown:?}: {}", e.error), e.error))?;
        Ok(WriteStatus::Written)
    }

    fn write_remote(
        &self,
        mount: usize,
        rel: &[OsString],
        exists: bool,
        when: WhenExist,
        produce: &dyn Fn(&Path) -> ProduceResult,
        shown: &str,
    ) -> Result<WriteStatus, BucketError> {
        let tmp = temp_in(self.tmp_dir, 0o600)?;
        produce(&tmp).map_err(BucketError::Produce)?;
        if exists && when == WhenExist::Diff {
            let current = self.materialize(mount, rel)?;
            if same_content(&tmp, &current.path) {
                return Ok(WriteStatus::Unchanged);
            }
        }
        let origin = self.origin(mount);
        let out = origin
            .create(rel, libc::O_WRONLY | libc::O_TRUNC, 0o644)
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
    pub fn remove(&self, comps: &[OsString], shown: &str) -> Result<(), BucketError> {
        let (mount, rel, st) = self
            .find(comps)
            .map_err(|e| BucketError::origin("cannot find", shown, e))?;
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

    /// Moves the entry at `from` to `to` (rename within an origin, else copy
    /// and remove).
    pub fn rename(
        &self,
        from: &[OsString],
        to: &[OsString],
        shown_from: &str,
        shown_to: &str,
    ) -> Result<(), BucketError> {
        let (fm, frel, st) = self
            .find(from)
            .map_err(|e| BucketError::origin("cannot find", shown_from, e))?;
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
        self.write(to, shown_to, WhenExist::Overwrite, &|tmp| {
            std::fs::copy(&src.path, tmp)
                .map(drop)
                .map_err(|e| format!("copy {shown_from:?}: {e}").into())
        })?;
        drop(src);
        self.remove(from, shown_from)
    }
}

/// Whether two local files have the same bytes.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (File::open(a), File::open(b)) else {
        return false;
    };
    match (fa.metadata(), fb.metadata()) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
        _ => return false,
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let Ok(na) = read_full(&mut fa, &mut ba) else {
            return false;
        };
        let Ok(nb) = read_full(&mut fb, &mut bb) else {
            return false;
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
