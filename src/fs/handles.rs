//! Open file and directory handles. A file handle owns the origin's open
//! file, so reads and writes keep working after the path is unlinked or
//! renamed; a directory handle owns the listing taken at `opendir`, so
//! offsets stay consistent while the directory changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::FsResult;
use super::dir::DirEntry;
use super::inodes::Ino;
use crate::error::Errno;
use crate::origin::OpenFile;

pub struct FileHandle {
    pub ino: Ino,
    pub file: OpenFile,
    /// Set by the first write the daemon serves (passthrough writes never
    /// reach it; `put` catches those).
    pub wrote: AtomicBool,
    /// Set for handles that may write, when the bucket has events: how to
    /// tell at release whether the file was modified.
    pub put: Option<super::PutWatch>,
    /// Writes staged for a pre onPut.
    pub staged: Option<super::prestage::Staged>,
    /// Served with FOPEN_DIRECT_IO.
    pub direct: AtomicBool,
}

pub struct DirHandle {
    pub entries: Vec<DirEntry>,
}

pub enum Handle {
    File(Arc<FileHandle>),
    Dir(Arc<DirHandle>),
}

#[derive(Default)]
pub struct HandleTable {
    map: Mutex<HashMap<u64, Handle>>,
    next: AtomicU64,
}

impl HandleTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, h: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(fh, h);
        fh
    }

    pub fn insert_file(&self, ino: Ino, file: OpenFile, put: Option<super::PutWatch>) -> u64 {
        self.insert(Handle::File(Arc::new(FileHandle {
            ino,
            file,
            wrote: AtomicBool::new(false),
            put,
            staged: None,
            direct: AtomicBool::new(false),
        })))
    }

    pub fn insert_staged(&self, ino: Ino, file: OpenFile, staged: super::prestage::Staged) -> u64 {
        self.insert(Handle::File(Arc::new(FileHandle {
            ino,
            file,
            wrote: AtomicBool::new(false),
            put: None,
            staged: Some(staged),
            direct: AtomicBool::new(false),
        })))
    }

    pub fn insert_dir(&self, entries: Vec<DirEntry>) -> u64 {
        self.insert(Handle::Dir(Arc::new(DirHandle { entries })))
    }

    pub fn file(&self, fh: u64) -> FsResult<Arc<FileHandle>> {
        match self.lock().get(&fh) {
            Some(Handle::File(f)) => Ok(f.clone()),
            _ => Err(Errno::EBADF.into()),
        }
    }

    pub fn dir(&self, fh: u64) -> FsResult<Arc<DirHandle>> {
        match self.lock().get(&fh) {
            Some(Handle::Dir(d)) => Ok(d.clone()),
            _ => Err(Errno::EBADF.into()),
        }
    }

    pub fn remove(&self, fh: u64) -> Option<Handle> {
        self.lock().remove(&fh)
    }

    /// fstat through handle `fh`, if it is an open file.
    pub fn fstat(&self, fh: u64) -> Option<FsResult<libc::stat>> {
        let f = self.file(fh).ok()?;
        Some(f.file.stat().map_err(Into::into))
    }

    /// fstat through any open handle of `ino` (for an unlinked, open file).
    pub fn fstat_any(&self, ino: Ino) -> Option<FsResult<libc::stat>> {
        let f = self.lock().values().find_map(|h| match h {
            Handle::File(f) if f.ino == ino => Some(f.clone()),
            _ => None,
        })?;
        Some(f.file.stat().map_err(Into::into))
    }

    /// Any open file of `ino`, for operations on an unlinked file.
    pub fn any_file(&self, ino: Ino) -> Option<Arc<FileHandle>> {
        self.lock().values().find_map(|h| match h {
            Handle::File(f) if f.ino == ino => Some(f.clone()),
            _ => None,
        })
    }
}
