//! Open S3 files. Readers stream the object through the prefetcher, pinned
//! to the ETag seen at open. Writers stage the whole file in a local file
//! under `stateDir/staging` (downloaded first unless truncated), and upload
//! it at `close`/`fsync` — before the call returns. A failed upload is
//! EIO and the staged file stays where it is, logged with its path.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::meta::{self, Attrs};
use super::origin::{Found, S3Origin};
use super::prefetch::Prefetcher;
use crate::error::{Errno, FsResult};

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
    /// umask 0, and the bytes are a client's. Kept (not deleted on drop):
    /// the upload path removes it once the object is in the bucket, and a
    /// failed upload leaves it for the user to find.
    fn new_file(origin: &S3Origin) -> FsResult<(PathBuf, File)> {
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!("{}-", origin.name()))
            .suffix(".part")
            .tempfile_in(&origin.staging)
            .and_then(|t| t.keep().map_err(|e| e.error))
            .map_err(|e| {
                tracing::error!(dir = %origin.staging.display(), error = %e, "cannot create staging file");
                Errno::from(e)
            })?;
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
            state: Mutex::new(WriteState {
                dirty: truncated,
                attrs,
                explicit_mtime: false,
                orphaned: false,
                upload_failed: false,
                finished: false,
            }),
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
            state: Mutex::new(WriteState {
                dirty: true,
                attrs,
                explicit_mtime: false,
                orphaned: false,
                upload_failed: false,
                finished: false,
            }),
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
        self.file.write_all_at(data, offset).map_err(Errno::from)?;
        self.state().explicit_mtime = false;
        self.touch();
        Ok(())
    }

    pub(crate) fn set_len(&self, size: u64) -> FsResult<()> {
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
        let keep = (st.dirty || st.upload_failed) && !st.orphaned;
        drop(st);
        if keep {
            // One more try: a release without a successful close.
            if self.upload_now().is_ok() {
                let _ = std::fs::remove_file(&self.path);
            }
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
