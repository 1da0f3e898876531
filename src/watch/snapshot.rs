//! The poller's snapshot of one origin, kept in `stateDir/watch/`: one line
//! per entry, in the order the origin's listing comes in, read and written
//! as a stream so that a round never holds two listings in memory (SPEC
//! §4.5: a million-entry origin is reconciled in bounded memory).
//!
//! File format (text, one record per line, fields separated by a tab):
//! `KEY KIND SIZE MTIME_S MTIME_NS ID FIRED`, after a header line
//! `storgate-watch 1 ORDER ORIGIN`. KEY is the path below the origin root
//! with `/` between components, other bytes below 0x21, `%` and bytes from
//! 0x7f escaped as `%XX`. FIRED is 1 once the entry's current state has
//! been fired (or was the baseline), 0 while it waits to settle.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MAGIC: &str = "storgate-watch 1";

/// How keys of an origin are ordered in its listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// Component by component (a local walk with each directory's names
    /// sorted): `/` sorts below every other byte.
    Components,
    /// Plain byte order (S3 ListObjectsV2 returns keys in UTF-8 binary order).
    Bytes,
}

impl KeyOrder {
    fn name(self) -> &'static str {
        match self {
            KeyOrder::Components => "components",
            KeyOrder::Bytes => "bytes",
        }
    }

    pub fn cmp(self, a: &[u8], b: &[u8]) -> Ordering {
        match self {
            KeyOrder::Bytes => a.cmp(b),
            KeyOrder::Components => {
                let rank = |c: u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
                a.iter().map(|&c| rank(c)).cmp(b.iter().map(|&c| rank(c)))
            }
        }
    }
}

/// What kind of entry a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    /// FIFO, socket, device.
    Other,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Link => 'l',
            Kind::Other => 'o',
        }
    }

    fn of_letter(c: &str) -> Option<Kind> {
        Some(match c {
            "f" => Kind::File,
            "d" => Kind::Dir,
            "l" => Kind::Link,
            "o" => Kind::Other,
            _ => return None,
        })
    }

    pub fn of_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Link,
            _ => Kind::Other,
        }
    }
}

/// One entry as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    pub mtime: (i64, i64),
    /// Identity of the content: the inode number (local) or the ETag (S3).
    pub id: String,
}

impl Entry {
    /// Whether `self` and `other` show the same content. A directory's size
    /// and mtime change with its children; only its identity counts.
    pub fn same(&self, other: &Entry) -> bool {
        if self.kind != other.kind || self.id != other.id {
            return false;
        }
        self.kind == Kind::Dir || (self.size == other.size && self.mtime == other.mtime)
    }
}

/// One line of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub entry: Entry,
    /// The entry's current state was fired (or is the baseline).
    pub fired: bool,
    /// An earlier state of the same entry was fired (its removal fires
    /// onDelete even while the current state waits to settle).
    pub before: bool,
}

/// A snapshot file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {what}")]
    Corrupt {
        path: PathBuf,
        line: u64,
        what: &'static str,
    },
}

fn escape(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        if b <= 0x20 || b == b'%' || b >= 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Reads a snapshot record by record.
pub struct SnapshotReader {
    path: PathBuf,
    input: BufReader<File>,
    line: u64,
    order: KeyOrder,
    last: Option<Vec<u8>>,
    buf: Vec<u8>,
}

impl SnapshotReader {
    /// Opens the snapshot at `path` if there is one for `origin` in `order`.
    /// `Ok(None)`: no snapshot yet (or one of another origin: a fresh start).
    pub fn open(
        path: &Path,
        origin: &str,
        order: KeyOrder,
    ) -> Result<Option<SnapshotReader>, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut input = BufReader::new(file);
        let mut header = Vec::new();
        input.read_until(b'\n', &mut header).map_err(io)?;
        let mut want = format!("{MAGIC} {} ", order.name()).into_bytes();
        escape(origin.as_bytes(), &mut want);
        want.push(b'\n');
        if header != want {
            return Ok(None);
        }
        Ok(Some(SnapshotReader {
            path: path.to_path_buf(),
            input,
            line: 1,
            order,
            last: None,
            buf: Vec::new(),
        }))
    }

    /// The next record, in key order; `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| SnapshotError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let corrupt = |what| SnapshotError::Corrupt {
            path: self.path.clone(),
            line: self.line,
            what,
        };
        let Some(body) = self.buf.strip_suffix(b"\n") else {
            return Err(corrupt("truncated line"));
        };
        let fields: Vec<&[u8]> = body.split(|&b| b == b'\t').collect();
        let [key, kind, size, secs, nanos, id, fired] = fields[..] else {
            return Err(corrupt("wrong number of fields"));
        };
        let text = |f: &[u8]| std::str::from_utf8(f).ok().map(str::to_string);
        let num = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<i64>().ok();
        let record = (|| {
            Some(Record {
                key: unescape(key)?,
                entry: Entry {
                    kind: Kind::of_letter(std::str::from_utf8(kind).ok()?)?,
                    size: u64::try_from(num(size)?).ok()?,
                    mtime: (num(secs)?, num(nanos)?),
                    id: text(&unescape(id)?)?,
                },
                fired: match fired {
                    b"1" => true,
                    b"0" | b"2" => false,
                    _ => return None,
                },
                before: fired == b"2",
            })
        })()
        .ok_or_else(|| corrupt("unreadable field"))?;
        if let Some(last) = &self.last
            && self.order.cmp(last, &record.key) != Ordering::Less
        {
            return Err(corrupt("keys out of order"));
        }
        self.last = Some(record.key.clone());
        Ok(Some(record))
    }
}

/// Writes a new snapshot next to the old one; [`SnapshotWriter::commit`]
/// replaces the old one atomically (a crash leaves the old snapshot, so the
/// round is redone and its events fire again: at least once).
pub struct SnapshotWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    line: Vec<u8>,
}

impl SnapshotWriter {
    pub fn create(path: &Path, origin: &str, order: KeyOrder) -> std::io::Result<SnapshotWriter> {
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut header = format!("{MAGIC} {} ", order.name()).into_bytes();
        escape(origin.as_bytes(), &mut header);
        header.push(b'\n');
        out.write_all(&header)?;
        Ok(SnapshotWriter {
            path: path.to_path_buf(),
            tmp,
            out,
            line: Vec::new(),
        })
    }

    pub fn push(&mut self, r: &Record) -> std::io::Result<()> {
        let l = &mut self.line;
        l.clear();
        escape(&r.key, l);
        l.push(b'\t');
        l.push(r.entry.kind.letter() as u8);
        l.extend_from_slice(
            format!(
                "\t{}\t{}\t{}\t",
                r.entry.size, r.entry.mtime.0, r.entry.mtime.1
            )
            .as_bytes(),
        );
        escape(r.entry.id.as_bytes(), l);
        l.extend_from_slice(match (r.fired, r.before) {
            (true, _) => b"\t1\n",
            (false, true) => b"\t2\n",
            (false, false) => b"\t0\n",
        });
        self.out.write_all(l)
    }

    /// Makes the new snapshot durable and the current one.
    pub fn commit(self) -> std::io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Drops the half-written snapshot (the round failed).
    pub fn abandon(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &[u8], fired: bool) -> Record {
        Record {
            key: key.to_vec(),
            entry: Entry {
                kind: Kind::File,
                size: 7,
                mtime: (1_700_000_000, 5),
                id: "\"etag with space\"".into(),
            },
            fired,
            before: false,
        }
    }

    #[test]
    fn component_order_matches_a_sorted_walk() {
        let o = KeyOrder::Components;
        assert_eq!(o.cmp(b"a", b"a/x"), Ordering::Less);
        assert_eq!(o.cmp(b"a/x", b"a-b"), Ordering::Less);
        assert_eq!(o.cmp(b"a-b", b"a/x"), Ordering::Greater);
        assert_eq!(KeyOrder::Bytes.cmp(b"a/x", b"a-b"), Ordering::Greater);
    }

    #[test]
    fn round_trip_with_hostile_names() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("snap");
        let keys: [&[u8]; 4] = [b"a\tb", b"a\nb/%41", b"a\xff/z", b"b c"];
        let mut w = SnapshotWriter::create(&p, "/srv/x", KeyOrder::Components).expect("create");
        for (i, k) in keys.iter().enumerate() {
            w.push(&rec(k, i % 2 == 0)).expect("push");
        }
        w.commit().expect("commit");
        let mut r = SnapshotReader::open(&p, "/srv/x", KeyOrder::Components)
            .expect("open")
            .expect("same origin");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(r.next_record().expect("read"), Some(rec(k, i % 2 == 0)));
        }
        assert_eq!(r.next_record().expect("end"), None);
        // Another origin's (or another order's) snapshot is no snapshot.
        assert!(
            SnapshotReader::open(&p, "/srv/y", KeyOrder::Components)
                .expect("open")
                .is_none()
        );
        assert!(
            SnapshotReader::open(&p, "/srv/x", KeyOrder::Bytes)
                .expect("open")
                .is_none()
        );
    }

    #[test]
    fn corrupt_and_unordered_snapshots_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("snap");
        let mut w = SnapshotWriter::create(&p, "o", KeyOrder::Bytes).expect("create");
        w.push(&rec(b"b", true)).expect("push");
        w.push(&rec(b"a", true)).expect("push");
        w.commit().expect("commit");
        let mut r = SnapshotReader::open(&p, "o", KeyOrder::Bytes)
            .expect("open")
            .expect("snapshot");
        assert!(r.next_record().expect("first").is_some());
        let e = r.next_record().expect_err("out of order");
        assert!(e.to_string().contains("line 3: keys out of order"), "{e}");
        let mut text = std::fs::read(&p).expect("read");
        text.truncate(text.len() - 3);
        std::fs::write(&p, &text).expect("write");
        let mut r = SnapshotReader::open(&p, "o", KeyOrder::Bytes)
            .expect("open")
            .expect("snapshot");
        assert!(r.next_record().expect("first").is_some());
        assert!(r.next_record().is_err());
    }
}
