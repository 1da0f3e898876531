//! Atomic replacement of a state file: the new content goes to a temporary
//! file in the same directory (named by `tempfile`), is synced, renamed over
//! the old file, and the directory is synced — so after a crash the file is
//! either the old one or the new one, both complete.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use super::error::StateError;

/// Prefix and suffix of the temporary files of `name`, so a crash's leftovers
/// can be found and removed ([`clean_stale`]).
fn temp_affixes(name: &str) -> (String, &'static str) {
    (format!(".{name}."), ".tmp")
}

/// Replaces `dir/name` with `data`, atomically and durably. Returns the new
/// file, open for writing at its end (the journal keeps appending to it).
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<File, StateError> {
    let file = rename_into_place(dir, name, data)?;
    sync_dir(dir)
        .map_err(|e| StateError::io("cannot sync the directory of", &dir.join(name), e))?;
    Ok(file)
}

/// [`write_atomic`] without the final directory sync, for a caller that
/// must tell a failure before the rename (the old file is intact) from one
/// after it (the journal then stops trusting the file).
pub fn rename_into_place(dir: &Path, name: &str, data: &[u8]) -> Result<File, StateError> {
    let path = dir.join(name);
    let (prefix, suffix) = temp_affixes(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| StateError::io("cannot create a temporary file for", &path, e))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_data())
        .map_err(|e| StateError::io("cannot write", &path, e))?;
    let file = tmp
        .persist(&path)
        .map_err(|e| StateError::io("cannot rename into place", &path, e.error))?;
    Ok(file)
}

/// Removes the temporary files [`write_atomic`] of `dir/name` left behind
/// when a process died mid-write. Returns how many it removed.
pub fn clean_stale(dir: &Path, name: &str) -> io::Result<usize> {
    let (prefix, suffix) = temp_affixes(name);
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(suffix) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Makes the entries of `dir` (a create or a rename) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_cleans() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut f = write_atomic(d.path(), "x.json", b"one").expect("write");
        f.write_all(b"+").expect("append");
        write_atomic(d.path(), "y.json", b"y").expect("write");
        assert_eq!(
            std::fs::read(d.path().join("x.json")).expect("read"),
            b"one+"
        );
        write_atomic(d.path(), "x.json", b"two").expect("write");
        assert_eq!(
            std::fs::read(d.path().join("x.json")).expect("read"),
            b"two"
        );
        std::fs::write(d.path().join(".x.json.abc.tmp"), b"torn").expect("write");
        assert_eq!(clean_stale(d.path(), "x.json").expect("clean"), 1);
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 2);
    }
}
