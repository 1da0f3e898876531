//! Directories and files under `stateDir` that only root may read (SPEC
//! §9.1): the daemon runs with umask 0 (so that client-created entries get
//! exactly the mode the client asked for), which would otherwise leave every
//! state file 0666 in 0777 directories — staged client data, the journal
//! and the log readable and writable by anyone.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory storgate creates under `stateDir`.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file storgate creates under `stateDir`.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents 0700. An existing `dir` that
/// others can enter is tightened to 0700 — it is storgate's own (a
/// subdirectory of `stateDir`); use [`create_dir`] for a directory that an
/// operator may have made for other uses too.
pub fn own_dir(dir: &Path) -> io::Result<()> {
    create_dir(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents 0700 (an existing one is left as
/// it is).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Open options that create a file 0600.
pub fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_private_even_with_umask_0() {
        let d = tempfile::tempdir().expect("tempdir");
        let deep = d.path().join("a/b");
        own_dir(&deep).expect("own_dir");
        for p in [d.path().join("a"), deep.clone()] {
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, DIR_MODE, "{}", p.display());
        }
        let loose = d.path().join("loose");
        std::fs::create_dir(&loose).expect("mkdir");
        std::fs::set_permissions(&loose, Permissions::from_mode(0o777)).expect("chmod");
        own_dir(&loose).expect("own_dir");
        let mode = std::fs::metadata(&loose)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, DIR_MODE);
        let f = deep.join("f");
        file_options()
            .create(true)
            .append(true)
            .open(&f)
            .expect("open");
        let mode = std::fs::metadata(&f).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, FILE_MODE);
    }
}
