//! `item.hits` (SPEC §5.2): how many onGet events were recorded for a path
//! since it was last written, kept in `stateDir/hits.jsonl`.
//!
//! The file is a log of JSON lines `{"b":BUCKET,"p":PATH,"n":COUNT}`; the
//! last line for a key wins, `n: 0` forgets it. It is appended without
//! fsync (a count is a statistic: losing the last increments to a power cut
//! is acceptable, losing all of them to a restart is not) and rewritten with
//! only the live counts when it grows to four times their number.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

const FILE: &str = "hits.jsonl";
const MIN_COMPACT: u64 = 1024;

#[derive(Serialize, Deserialize)]
struct Line {
    b: String,
    p: String,
    n: u64,
}

struct Inner {
    counts: FxHashMap<(String, String), u64>,
    file: Option<File>,
    lines: u64,
}

pub struct HitStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl HitStore {
    /// Opens (or creates) the store under `state_dir`. A store that cannot
    /// be written still counts in memory; the problem is logged once.
    pub fn open(state_dir: &Path) -> HitStore {
        let path = state_dir.join(FILE);
        let mut counts = FxHashMap::default();
        let mut lines = 0;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                lines += 1;
                match serde_json::from_str::<Line>(&line) {
                    Ok(l) if l.n == 0 => {
                        counts.remove(&(l.b, l.p));
                    }
                    Ok(l) => {
                        counts.insert((l.b, l.p), l.n);
                    }
                    Err(_) => {} // a line cut by a crash
                }
            }
        }
        let file = match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write hit counts; counting in memory only");
                None
            }
        };
        HitStore {
            path,
            inner: Mutex::new(Inner {
                counts,
                file,
                lines,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, bucket: &str, path: &str) -> u64 {
        self.lock()
            .counts
            .get(&(bucket.to_string(), path.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Records one onGet of `path`; returns the new count.
    pub fn hit(&self, bucket: &str, path: &str) -> u64 {
        let mut g = self.lock();
        let n = {
            let c = g
                .counts
                .entry((bucket.to_string(), path.to_string()))
                .or_insert(0);
            *c += 1;
            *c
        };
        self.append(&mut g, bucket, path, n);
        n
    }

    /// `path` was written: its count starts again from zero.
    pub fn reset(&self, bucket: &str, path: &str) {
        let mut g = self.lock();
        if g.counts.is_empty()
            || g.counts
                .remove(&(bucket.to_string(), path.to_string()))
                .is_none()
        {
            return;
        }
        self.append(&mut g, bucket, path, 0);
    }

    fn append(&self, g: &mut Inner, bucket: &str, path: &str, n: u64) {
        let line = Line {
            b: bucket.to_string(),
            p: path.to_string(),
            n,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Some(f) = g.file.as_mut()
            && let Err(e) = f.write_all(text.as_bytes())
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot record a hit count");
        }
        g.lines += 1;
        if g.lines >= MIN_COMPACT && g.lines > 4 * g.counts.len() as u64 {
            self.compact(g);
        }
    }

    fn compact(&self, g: &mut Inner) {
        let tmp = self.path.with_extension("jsonl.tmp");
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            let mut buf = String::new();
            for ((b, p), n) in &g.counts {
                if let Ok(s) = serde_json::to_string(&Line {
                    b: b.clone(),
                    p: p.clone(),
                    n: *n,
                }) {
                    buf.push_str(&s);
                    buf.push('\n');
                }
            }
            f.write_all(buf.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
            OpenOptions::new().append(true).open(&self.path)
        };
        match write() {
            Ok(f) => {
                g.file = Some(f);
                g.lines = g.counts.len() as u64;
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot compact hit counts")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_reopen_and_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = HitStore::open(dir.path());
        assert_eq!(s.hit("b", "/a"), 1);
        assert_eq!(s.hit("b", "/a"), 2);
        assert_eq!(s.hit("b", "/c"), 1);
        drop(s);
        let s = HitStore::open(dir.path());
        assert_eq!(s.get("b", "/a"), 2);
        s.reset("b", "/a");
        assert_eq!(s.get("b", "/a"), 0);
        drop(s);
        let s = HitStore::open(dir.path());
        assert_eq!(s.get("b", "/a"), 0);
        assert_eq!(s.get("b", "/c"), 1);
    }

    #[test]
    fn compaction_keeps_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = HitStore::open(dir.path());
        for _ in 0..3000 {
            s.hit("b", "/hot");
        }
        drop(s);
        let text = std::fs::read_to_string(dir.path().join(FILE)).expect("read");
        assert!(text.lines().count() < 1100, "log was compacted");
        assert_eq!(HitStore::open(dir.path()).get("b", "/hot"), 3000);
    }
}
