//! `item.hits` (SPEC §5.2): how many onGet events were recorded for a path
//! since it was last written, kept in `stateDir/hits.jsonl`.
//!
//! The file is a log of JSON lines `{"b":BUCKET,"p":PATH,"n":COUNT}`; the
//! last line for a key wins, `n: 0` forgets it. `PATH` is the lossless text
//! of [`crate::name`] (callers pass `item::path_text`), so names that differ
//! in a byte count apart; a file of an earlier version (lossy text) still
//! loads, its non-UTF-8 keys simply no longer match. It is appended without
//! fsync (a count is a statistic: losing the last increments to a power cut
//! is acceptable, losing all of them to a restart is not) and rewritten with
//! only the live counts when it grows to four times their number.
//!
//! The mutex guards only the in-memory counts: a hit updates them and hands
//! the line to one writer thread, which appends in batches and compacts —
//! so no caller ever waits for the disk, and no lock is held across a write
//! or an fsync. Lines carry a sequence number so that a compaction (a
//! snapshot of the counts) is not followed by older lines already queued.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::atomic::{clean_stale, write_atomic};
use super::jsonl::{JsonlFile, encode, lines};

const FILE: &str = "hits.jsonl";
const MIN_COMPACT: u64 = 1024;

#[derive(Serialize, Deserialize)]
struct Line {
    b: String,
    p: String,
    n: u64,
}

type Counts = FxHashMap<(String, String), u64>;

struct Inner {
    counts: Counts,
    /// Sequence number of the last line handed to the writer.
    seq: u64,
}

pub struct HitStore {
    inner: Arc<Mutex<Inner>>,
    /// To the writer thread; None when the store cannot be written.
    tx: Option<Sender<(u64, Line)>>,
    writer: Option<JoinHandle<()>>,
}

impl HitStore {
    /// Opens (or creates) the store under `state_dir`. A store that cannot
    /// be written still counts in memory; the problem is logged once.
    pub fn open(state_dir: &Path) -> HitStore {
        let path = state_dir.join(FILE);
        let mut counts = FxHashMap::default();
        let mut n_lines = 0;
        if let Ok(data) = std::fs::read(&path) {
            for (_, line) in lines(&data).0 {
                n_lines += 1;
                match serde_json::from_slice::<Line>(line) {
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
        let _ = clean_stale(state_dir, FILE);
        let inner = Arc::new(Mutex::new(Inner { counts, seq: 0 }));
        let mut file = JsonlFile::new(state_dir, FILE);
        // Open now, so a store that cannot be written says so once, at start.
        let (tx, writer) = match file.append(b"", false) {
            Ok(()) => {
                let (tx, rx) = channel();
                let w = Writer {
                    dir: state_dir.to_path_buf(),
                    path,
                    file,
                    lines: n_lines,
                    inner: inner.clone(),
                };
                match std::thread::Builder::new()
                    .name("storgate-hits".into())
                    .spawn(move || w.run(rx))
                {
                    Ok(h) => (Some(tx), Some(h)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the hit-count writer; counting in memory only");
                        (None, None)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write hit counts; counting in memory only");
                (None, None)
            }
        };
        HitStore { inner, tx, writer }
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
        let key = (bucket.to_string(), path.to_string());
        let c = g.counts.entry(key).or_insert(0);
        *c += 1;
        let n = *c;
        self.record(&mut g, bucket, path, n);
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
        self.record(&mut g, bucket, path, 0);
    }

    /// Queues the line under the lock, so the queue's order is the order of
    /// the changes; sending never blocks.
    fn record(&self, g: &mut Inner, bucket: &str, path: &str, n: u64) {
        let Some(tx) = &self.tx else { return };
        g.seq += 1;
        let line = Line {
            b: bucket.to_string(),
            p: path.to_string(),
            n,
        };
        let _ = tx.send((g.seq, line));
    }
}

impl Drop for HitStore {
    /// Writes what is still queued before the store goes away.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The one thread that writes `hits.jsonl`.
struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: JsonlFile,
    /// Lines in the file.
    lines: u64,
    inner: Arc<Mutex<Inner>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<(u64, Line)>) {
        // Lines numbered up to here are already in the compacted file.
        let mut snapshot_seq = 0u64;
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            buf.clear();
            let mut batch = 0u64;
            for (seq, line) in std::iter::once(first).chain(rx.try_iter()) {
                if seq <= snapshot_seq {
                    continue;
                }
                if let Ok(l) = encode(&line) {
                    buf.extend_from_slice(&l);
                    batch += 1;
                }
            }
            if let Err(e) = self.file.append(&buf, false) {
                tracing::warn!(error = %e, "cannot record hit counts");
            }
            self.lines += batch;
            let live = self.inner.lock().map_or(0, |g| g.counts.len()) as u64;
            if self.lines >= MIN_COMPACT && self.lines > 4 * live {
                snapshot_seq = self.compact().unwrap_or(snapshot_seq);
            }
        }
    }

    /// Rewrites the file with the live counts; returns the sequence number
    /// the snapshot covers.
    fn compact(&mut self) -> Option<u64> {
        let (snapshot, seq) = {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            (g.counts.clone(), g.seq)
        };
        let mut data = Vec::new();
        for ((b, p), n) in snapshot {
            if let Ok(l) = encode(&Line { b, p, n }) {
                data.extend_from_slice(&l);
            }
        }
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(FILE);
        match write_atomic(&self.dir, name, &data) {
            Ok(f) => {
                self.file.replace(f);
                self.lines = lines(&data).0.len() as u64;
                Some(seq)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot compact hit counts");
                None
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
