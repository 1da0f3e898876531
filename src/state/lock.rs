//! Exclusive lock files under `stateDir` (`File::try_lock`, an `flock` on
//! Linux): held while the handle lives, released by the kernel when the
//! process dies, so a crash never leaves a stale lock.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use super::error::StateError;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock on `path` (creating the file), or
    /// [`StateError::Busy`] when someone else holds it.
    pub fn try_acquire(path: &Path) -> Result<LockFile, StateError> {
        let file = super::private::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StateError::io("cannot open", path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(LockFile {
                _file: file,
                path: path.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(StateError::Busy {
                path: path.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(StateError::io("cannot lock", path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.lock");
        let held = LockFile::try_acquire(&p).expect("first");
        assert!(matches!(
            LockFile::try_acquire(&p),
            Err(StateError::Busy { .. })
        ));
        drop(held);
        LockFile::try_acquire(&p).expect("after release");
    }
}
