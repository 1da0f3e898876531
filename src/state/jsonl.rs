//! Append-only JSON-lines files under `stateDir` (the journal, dead letters,
//! hit counts): one record per line, appended; read back in order, where a
//! last line without its `\n` (a write cut off by a crash) is not a record.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::atomic::sync_dir;
use super::error::StateError;

/// One record as a line (with its `\n`).
pub fn encode<T: Serialize + ?Sized>(rec: &T) -> io::Result<Vec<u8>> {
    let mut line =
        serde_json::to_vec(rec).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    line.push(b'\n');
    Ok(line)
}

/// The complete lines of `data`, each with its 1-based line number, and
/// the length of `data` up to the end of the last complete line (what is
/// beyond it is a torn write).
pub fn lines(data: &[u8]) -> (Vec<(usize, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut no = 0usize;
    while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
        no += 1;
        out.push((no, &data[pos..pos + nl]));
        pos += nl + 1;
    }
    (out, pos)
}

/// An append-only JSONL file, opened lazily at its first record.
#[derive(Debug)]
pub struct JsonlFile {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

impl JsonlFile {
    pub fn new(dir: &Path, name: &str) -> JsonlFile {
        JsonlFile {
            dir: dir.to_path_buf(),
            path: dir.join(name),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines` (complete lines) in one write; with `sync`, they
    /// are on disk when this returns.
    pub fn append(&mut self, lines: &[u8], sync: bool) -> Result<(), StateError> {
        if self.file.is_none() {
            let existed = self.path.exists();
            let f = super::private::file_options()
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(|e| StateError::io("cannot open", &self.path, e))?;
            if !existed {
                // The new name must survive a power cut with its content.
                sync_dir(&self.dir).map_err(|e| StateError::io("cannot sync", &self.dir, e))?;
            }
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.write_all(lines)
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| StateError::io("cannot append to", &self.path, e))
    }

    /// From now on, appends go to `file` (the file that replaced this one
    /// by [`super::atomic::write_atomic`]).
    pub fn replace(&mut self, file: File) {
        self.file = Some(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_last_line_is_not_a_record() {
        let (l, valid) = lines(b"{\"a\":1}\n\n{\"b\":2}\n{\"c\"");
        assert_eq!(l.len(), 3);
        assert_eq!(l[2], (3, &b"{\"b\":2}"[..]));
        assert_eq!(valid, 17);
    }

    #[test]
    fn appends_lines() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut f = JsonlFile::new(d.path(), "x.jsonl");
        f.append(&encode(&serde_json::json!({"a": 1})).expect("enc"), true)
            .expect("append");
        f.append(b"{\"b\":2}\n", false).expect("append");
        let data = std::fs::read(f.path()).expect("read");
        assert_eq!(lines(&data).0.len(), 2);
    }
}
