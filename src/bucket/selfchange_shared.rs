//! storgate's own changes shared between processes through `stateDir`, so a
//! daemon does not report the outputs of a `storgate batch run` or
//! `storgate workflow run` on the same config as changes made behind its
//! back.
//!
//! Each announcing process appends one text line per change to a log file
//! of its own in `stateDir/selfchange/` (no lock: one writer per file; the
//! line is written before the change is made, so it is in the page cache
//! before inotify reports the change). The daemon reads every log from
//! where it stopped whenever its own registry does not know a change, and
//! removes logs with nothing newer than the registry's expiry. Lines:
//! `W <unix ms> <dev> <ino> <size> <mtime s> <mtime ns> <hex path>` (wrote),
//! `C <unix ms> <hex path>` (creating), `D <unix ms> <hex path>` (deleting).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

/// The directory of the logs under `stateDir`.
pub const DIR: &str = "selfchange";
/// A writer starts a new log past this size (the old one expires).
const ROTATE_AT: u64 = 8 << 20;

/// One shared record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// (dev, ino, size, mtime s, mtime ns) of the file given to the path.
    Wrote([i64; 5]),
    Created,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub path: PathBuf,
    /// How long ago the change was announced.
    pub age: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Bytes as lowercase hex: any path on one line of a log.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn line(kind: &Kind, path: &Path) -> String {
    let ms = now_ms();
    let p = hex(path.as_os_str().as_bytes());
    match kind {
        Kind::Wrote(id) => format!(
            "W {ms} {} {} {} {} {} {p}\n",
            id[0], id[1], id[2], id[3], id[4]
        ),
        Kind::Created => format!("C {ms} {p}\n"),
        Kind::Deleted => format!("D {ms} {p}\n"),
    }
}

fn parse(line: &str, now: u64) -> Option<Record> {
    let f: Vec<&str> = line.split(' ').collect();
    let ms: u64 = f.get(1)?.parse().ok()?;
    let (kind, p) = match (f[0], f.len()) {
        ("W", 8) => {
            let mut id = [0i64; 5];
            for (i, v) in id.iter_mut().enumerate() {
                *v = f[2 + i].parse().ok()?;
            }
            (Kind::Wrote(id), f[7])
        }
        ("C", 3) => (Kind::Created, f[2]),
        ("D", 3) => (Kind::Deleted, f[2]),
        _ => return None,
    };
    Some(Record {
        kind,
        path: PathBuf::from(OsString::from_vec(unhex(p)?)),
        age: Duration::from_millis(now.saturating_sub(ms)),
    })
}

/// The log of one announcing process.
pub struct Writer {
    dir: PathBuf,
    file: Option<(File, PathBuf)>,
    seq: u32,
}

impl Writer {
    pub fn new(state_dir: &Path) -> Writer {
        Writer {
            dir: state_dir.join(DIR),
            file: None,
            seq: 0,
        }
    }

    /// Our log, reopened when a daemon removed it meanwhile or it grew big.
    fn file(&mut self) -> std::io::Result<&mut File> {
        let fresh = match &self.file {
            Some((f, p)) => match (std::fs::metadata(p), f.metadata()) {
                (Ok(on_disk), Ok(ours)) => {
                    on_disk.ino() != ours.ino()
                        || on_disk.dev() != ours.dev()
                        || ours.len() > ROTATE_AT
                }
                _ => true,
            },
            None => true,
        };
        if fresh {
            crate::state::private::own_dir(&self.dir)?;
            self.seq += 1;
            let path = self.dir.join(format!(
                "{}-{}-{}.log",
                std::process::id(),
                now_ms(),
                self.seq
            ));
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            self.file = Some((f, path));
        }
        match &mut self.file {
            Some((f, _)) => Ok(f),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
    }

    pub fn append(&mut self, kind: &Kind, path: &Path) {
        let text = line(kind, path);
        // One write of one line: a reader sees it whole or not yet.
        if let Err(e) = self.file().and_then(|f| f.write_all(text.as_bytes())) {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "cannot share a change with the daemon; it may report it as an event");
        }
    }
}

struct Tail {
    file: File,
    offset: u64,
    partial: Vec<u8>,
    /// Removed from the directory at: kept open a while for late lines.
    gone: Option<Instant>,
}

/// The daemon's view of every announcing process's log.
pub struct Reader {
    dir: PathBuf,
    keep: Duration,
    tails: FxHashMap<OsString, Tail>,
    last_clean: Option<Instant>,
}

impl Reader {
    pub fn new(state_dir: &Path, keep: Duration) -> Reader {
        Reader {
            dir: state_dir.join(DIR),
            keep,
            tails: FxHashMap::default(),
            last_clean: None,
        }
    }

    /// Records announced since the last call (and not expired).
    /// Keeps announced records at least `keep`.
    pub fn keep_at_least(&mut self, keep: Duration) {
        self.keep = self.keep.max(keep);
    }

    pub fn poll(&mut self) -> Vec<Record> {
        let now = Instant::now();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            let mut present = Vec::new();
            for e in rd.flatten() {
                let name = e.file_name();
                if !name.as_bytes().ends_with(b".log") {
                    continue;
                }
                if !self.tails.contains_key(&name)
                    && let Ok(file) = File::open(e.path())
                {
                    self.tails.insert(
                        name.clone(),
                        Tail {
                            file,
                            offset: 0,
                            partial: Vec::new(),
                            gone: None,
                        },
                    );
                }
                present.push(name);
            }
            for (name, t) in self.tails.iter_mut() {
                if !present.contains(name) {
                    t.gone.get_or_insert(now);
                }
            }
        }
        let wall = now_ms();
        let mut out = Vec::new();
        for t in self.tails.values_mut() {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = t.file.read_at(&mut buf, t.offset) {
                if n == 0 {
                    break;
                }
                t.offset += n as u64;
                t.partial.extend_from_slice(&buf[..n]);
            }
            if let Some(end) = t.partial.iter().rposition(|b| *b == b'\n') {
                let complete: Vec<u8> = t.partial.drain(..=end).collect();
                for l in String::from_utf8_lossy(&complete).lines() {
                    if let Some(r) = parse(l, wall)
                        && r.age < self.keep
                    {
                        out.push(r);
                    }
                }
            }
        }
        let keep = self.keep;
        self.tails
            .retain(|_, t| t.gone.is_none_or(|g| now.duration_since(g) < keep));
        if self
            .last_clean
            .is_none_or(|c| now.duration_since(c) >= keep)
        {
            self.last_clean = Some(now);
            self.clean(now);
        }
        out
    }

    /// Removes logs (just read to their end) written to longer ago than the
    /// expiry; still open here, so a line appended meanwhile is not lost.
    fn clean(&mut self, now: Instant) {
        for (name, t) in self.tails.iter_mut() {
            let stale = t
                .file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= self.keep);
            if t.gone.is_none() && stale {
                let _ = std::fs::remove_file(self.dir.join(name));
                t.gone = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_any_bytes() {
        let p = PathBuf::from(OsString::from_vec(b"/o/a b\n\xff".to_vec()));
        for kind in [Kind::Wrote([1, 2, 3, -4, 5]), Kind::Created, Kind::Deleted] {
            let l = line(&kind, &p);
            let r = parse(l.trim_end(), now_ms()).expect("parses");
            assert_eq!((r.kind, r.path.clone()), (kind, p.clone()));
            assert!(r.age < Duration::from_secs(5));
        }
        assert!(parse("W 1 2", 0).is_none());
        assert!(parse("C 1 zz", 0).is_none());
    }
}
