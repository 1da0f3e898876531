//! Open S3 files. Readers stream the object through the prefetcher, pinned
//! to the ETag seen at open. Writers stage the whole file in a local file
//! under `stateDir/staging` (downloaded first unless truncated), and upload
//! it at `close`/`fsync` — before the call returns. A failed upload is
//! EIO; at release a staging file whose upload failed is kept for the
//! operator (renamed `*.failed`, logged with its path), every other one is
//! removed, on every path (`Drop`).
//!
//! A file being staged (`*.part`, 0600 in the 0700 staging directory) is
//! `flock`ed by its handle for as long as it lives, so [`clean_staging`]
//! at the daemon's start removes exactly those a crash left behind, never
//! one another process (a `batch run`) is writing.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::client::{MAX_PARTS, MIB};
use super::meta::{self, Attrs};
use super::origin::{Found, S3Origin};
use super::prefetch::Prefetcher;
use crate::error::{Errno, FsResult};

/// The directory under `stateDir` where writes are staged.
pub(crate) const STAGING_DIR: &str = "staging";
/// Suffix of a file being staged; unlocked, it is a crash's leftover.
const PART_SUFFIX: &str = ".part";
/// Suffix of a staging file kept because its upload failed.
const FAILED_SUFFIX: &str = ".failed";
/// The largest object S3 holds: 10,000 parts of at most 5 GiB. Larger sizes
/// are EFBIG at once, before a byte is staged or sent.
pub const MAX_OBJECT_SIZE: u64 = MAX_PARTS * 5 * 1024 * MIB;

/// Removes the staging files (`*.part` in `stateDir/staging`) that a crashed
/// daemon or run left: those nobody holds a lock on and that were last
/// written before this call. Kept failed uploads (`*.failed`) stay. Returns
/// how many were removed. Called once at the daemon's start.
pub fn clean_staging(state_dir: &Path) -> usize {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = state_dir.join(STAGING_DIR);
    let started = SystemTime::now();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let is_part = e
            .file_name()
            .as_encoded_bytes()
            .ends_with(PART_SUFFIX.as_bytes());
        if !is_part || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        // Locked: a live handle's. Written since we started: one made just
        // now, before its maker could lock it.
        let stale = f.try_lock().is_ok()
            && f.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < started);
        if stale && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed staging files left by a crash");
    }
    removed
}

/// EFBIG for a size no S3 object can have.
pub(super) fn check_size(size: u64) -> FsResult<()> {
    if size > MAX_OBJECT_SIZE {
        return Err(Errno(libc::EFBIG));
    }
    Ok(())
}

pub enum S3File {
    Reader {
        origin: Arc<S3Origin>,
        size: u64,
        attrs: Attrs,
        prefetcher: Box<Prefetcher>,
    },
    Writer(Arc<Staged>),
    /// Opened for reading while this daemon has the file open for writing:
    /// reads see the staged data, as they would on a local file system.
    View(Arc<Staged>),
}

impl S3File {
    pub(crate) fn reader(
        origin: Arc<S3Origin>,
        key: String,
        size: u64,
        etag: String,
        attrs: Attrs,
    ) -> S3File {
        let prefetcher = Box::new(Prefetcher::new(origin.client.clone(), key, etag, size));
        S3File::Reader {
            origin,
            size,
            attrs,
            prefetcher,
        }
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        match self {
            S3File::Reader {
                origin, prefetcher, ..
            } => {
                let len = u32::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
                let data = origin.run(prefetcher.read(offset, len))?;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(n)
            }
            S3File::Writer(s) | S3File::View(s) => s.read_at(buf, offset),
        }
    }

    pub fn write_at(&self, data: &[u8], offset: u64) -> FsResult<()> {
        match self {
            S3File::Reader { .. } | S3File::View(_) => Err(Errno::EBADF),
            S3File::Writer(s) => s.write_at(data, offset),
        }
    }

    pub fn stat(&self) -> FsResult<libc::stat> {
        match self {
            S3File::Reader { size, attrs, .. } => Ok(attrs.stat(*size, 0)),
            S3File::Writer(s) | S3File::View(s) => match s.found()? {
                Found::File { size, attrs, .. } => Ok(attrs.stat(size, 0)),
                Found::Dir(a) => Ok(a.stat(0, 0)),
            },
        }
    }

    pub fn set_len(&self, size: u64) -> FsResult<()> {
        match self {
            S3File::Reader { .. } | S3File::View(_) => Err(Errno::EBADF),
            S3File::Writer(s) => s.set_len(size),
        }
    }

    /// close/fsync: the staged file is uploaded if it changed.
    pub fn flush(&self) -> FsResult<()> {
        match self {
            S3File::Reader { .. } | S3File::View(_) => Ok(()),
            S3File::Writer(s) => s.upload_now(),
        }
    }

    /// The handle is gone: a cleanly uploaded staging file is removed; one
    /// that could not be uploaded stays for the operator.
    pub fn release(&self) {
        if let S3File::Writer(s) = self {
            s.finish();
        }
    }
}

struct WriteState {
    dirty: bool,
    attrs: Attrs,
    /// An explicit mtime (utimens) wins over the time of the last write.
    explicit_mtime: bool,
    /// The path was unlinked while open: nothing is to be uploaded.
    orphaned: bool,
    upload_failed: bool,
    /// The writing handle was released: changes go to the object itself.
    finished: bool,
    /// The file was kept (renamed) after a failed upload: not removed on drop.
    kept: bool,
}

impl WriteState {
    fn new(dirty: bool, attrs: Attrs) -> WriteState {
        WriteState {
            dirty,
            attrs,
            explicit_mtime: false,
            orphaned: false,
            upload_failed: false,
            finished: false,
            kept: false,
        }
    }
}

pub struct Staged {
    origin: Arc<S3Origin>,
    key: String,
    rel: Vec<OsString>,
    path: PathBuf,
    file: File,
    append: bool,
    state: Mutex<WriteState>,
    /// Held while uploading, so a metadata change made through the object
    /// waits for an upload in flight instead of being overwritten by it.
    uploading: Mutex<()>,
}

impl Staged {
    /// A new staging file in `stateDir/staging`: an unpredictable name made
    /// with `O_EXCL` and mode 0600 (tempfile), so neither another local user
    /// nor a racing writer can open or pre-create it — the daemon runs with
    /// umask 0, and the bytes are a client's — locked at once (see
    /// [`clean_staging`]). Removed when the `Staged` is dropped, unless a
    /// failed upload kept it.
    fn new_file(origin: &S3Origin) -> FsResult<(PathBuf, File)> {
        let fail = |e: std::io::Error| {
            tracing::error!(dir = %origin.staging.display(), error = %e, "cannot create staging file");
            Errno::from(e)
        };
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!("{}-", origin.name()))
            .suffix(PART_SUFFIX)
            .tempfile_in(&origin.staging)
            .and_then(|t| t.keep().map_err(|e| e.error))
            .map_err(fail)?;
        if let Err(e) = file.try_lock() {
            let _ = std::fs::remove_file(&path);
            return Err(fail(std::io::Error::other(format!(
                "cannot lock {}: {e}",
                path.display()
            ))));
        }
        Ok((path, file))
    }

    /// A staged copy of an existing object (downloaded unless `etag` is
    /// `None`, which means the open truncated it).
    pub(crate) fn open(
        origin: Arc<S3Origin>,
        key: String,
        rel: Vec<OsString>,
        attrs: Attrs,
        append: bool,
        etag: Option<String>,
    ) -> FsResult<Arc<Staged>> {
        let (path, file) = Self::new_file(&origin)?;
        let truncated = etag.is_none();
        if let Some(etag) = etag {
            let client = origin.client.clone();
            let got =
                super::origin::runtime().block_on(client.get_to_file(&key, &file, Some(&etag)));
            if let Err(e) = got {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
        }
        Ok(Arc::new(Staged {
            origin,
            key,
            rel,
            path,
            file,
            append,
            state: Mutex::new(WriteState::new(truncated, attrs)),
            uploading: Mutex::new(()),
        }))
    }

    /// A new, empty file: uploaded at its first close even if nothing is written.
    pub(crate) fn create(
        origin: Arc<S3Origin>,
        key: String,
        rel: Vec<OsString>,
        attrs: Attrs,
        append: bool,
    ) -> FsResult<Arc<Staged>> {
        let (path, file) = Self::new_file(&origin)?;
        Ok(Arc::new(Staged {
            origin,
            key,
            rel,
            path,
            file,
            append,
            state: Mutex::new(WriteState::new(true, attrs)),
            uploading: Mutex::new(()),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        let mut st = self.state();
        st.dirty = true;
        if !st.explicit_mtime {
            st.attrs.mtime = meta::now();
        }
    }

    pub(crate) fn found(&self) -> FsResult<Found> {
        let size = self.file.metadata().map_err(Errno::from)?.len();
        Ok(Found::File {
            size,
            etag: String::new(),
            attrs: self.state().attrs,
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> FsResult<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> FsResult<()> {
        let offset = if self.append {
            self.file.metadata().map_err(Errno::from)?.len()
        } else {
            offset
        };
        check_size(offset.saturating_add(data.len() as u64))?;
        self.file.write_all_at(data, offset).map_err(Errno::from)?;
        self.state().explicit_mtime = false;
        self.touch();
        Ok(())
    }

    pub(crate) fn set_len(&self, size: u64) -> FsResult<()> {
        check_size(size)?;
        self.file.set_len(size).map_err(Errno::from)?;
        self.touch();
        Ok(())
    }

    /// Applies a metadata change to the pending upload. Returns false when
    /// nothing is pending (already uploaded, or the handle is finished): the
    /// caller then changes the object itself — after `wait_upload`.
    pub(crate) fn update_pending_attrs(&self, change: &dyn Fn(&mut Attrs)) -> bool {
        let mut st = self.state();
        let before = st.attrs.mtime;
        change(&mut st.attrs);
        if st.attrs.mtime != before {
            st.explicit_mtime = true;
        }
        st.dirty && !st.finished
    }

    /// Waits for an upload in flight to end.
    pub(crate) fn wait_upload(&self) -> std::sync::MutexGuard<'_, ()> {
        self.uploading.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn forget_target(&self) {
        self.state().orphaned = true;
    }

    /// Uploads the staged file if it changed since the last upload.
    pub(crate) fn upload_now(&self) -> FsResult<()> {
        let _uploading = self.wait_upload();
        let attrs = {
            let st = self.state();
            if !st.dirty || st.orphaned {
                return Ok(());
            }
            st.attrs
        };
        let client = self.origin.client.clone();
        let _writing = self.origin.writing_now(&self.key);
        let result = super::origin::runtime().block_on(client.upload_file(
            &self.key,
            &self.path,
            &attrs.to_user(),
        ));
        match result {
            Ok(etag) => {
                let mut st = self.state();
                st.dirty = false;
                st.upload_failed = false;
                drop(st);
                self.origin.own_wrote(&self.key, &etag);
                self.origin.remember_attrs(&self.key, &etag, attrs);
                self.origin.invalidate(&self.rel);
                Ok(())
            }
            Err(e) => {
                self.state().upload_failed = true;
                tracing::error!(
                    key = %self.key,
                    staging = %self.path.display(),
                    error = %e,
                    "upload failed; the data stays in the staging file"
                );
                Err(Errno::EIO)
            }
        }
    }

    fn finish(&self) {
        let mut st = self.state();
        st.finished = true;
        let pending = (st.dirty || st.upload_failed) && !st.orphaned;
        drop(st);
        // One more try: a release without a successful close.
        if pending && self.upload_now().is_err() {
            self.keep();
        }
    }

    /// Keeps the staging file of a failed upload for the operator, renamed
    /// `*.failed` so that the start-up cleanup leaves it alone.
    fn keep(&self) {
        // Our own names (`ENDPOINT-RANDOM.part`) are UTF-8.
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(PART_SUFFIX).unwrap_or(&name);
        let kept = self.path.with_file_name(format!("{stem}{FAILED_SUFFIX}"));
        match std::fs::rename(&self.path, &kept) {
            Ok(()) => tracing::error!(key = %self.key, kept = %kept.display(),
                "upload failed; the data is kept in this staging file"),
            Err(e) => tracing::error!(key = %self.key, staging = %self.path.display(), error = %e,
                "upload failed; the data stays in the staging file (cannot rename it, so the next start removes it)"),
        }
        self.state().kept = true;
    }
}

impl Drop for Staged {
    /// Every way out — a clean upload, an orphaned file, a failed truncate
    /// or open — removes the staging file, but for a kept failed upload.
    fn drop(&mut self) {
        if !self.state().kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
