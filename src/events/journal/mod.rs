//! The durable journal of post events (SPEC §4.2).
//!
//! A post event is written here *before* the client's call returns, and a
//! worker pool runs it afterwards. After a crash or `kill -9`, [`Journal::open`]
//! hands back every event that was appended and not yet marked done: post
//! events are at-least-once.
//!
//! # Files (all under the journal directory, e.g. `stateDir/journal/`)
//! - `journal.log`: JSON lines, one record each, appended only:
//!   - `{"t":"meta","v":2,"next_id":N}`: first line of a compacted log; keeps
//!     ids growing across compactions. A log of a newer format is refused.
//!   - `{"t":"add","v":2,"ev":{…PostEvent…}}`: a new pending event, at the
//!     back of the queue. `v` is the format of its names (see below).
//!   - `{"t":"upd","v":2,"ev":{…}}`: a coalesced event: replaces the pending
//!     event with the same id, keeping its place in the queue.
//!   - `{"t":"retry","id":N,"attempts":K}`: a failed event put back at the back
//!     of the queue.
//!   - `{"t":"done","id":N}`, `{"t":"dead","id":N}`: the event is finished
//!     (completed, superseded or dead-lettered).
//! - `.journal.log.*.tmp`: a compaction in progress (a `tempfile` name, see
//!   [`crate::state::atomic`]); deleted at open.
//! - `dead.jsonl`: one line per event given up on: the event, `error`, `dead_at`.
//! - `journal.lock`: locked ([`crate::state::lock`]) while a process has the
//!   journal open.
//!
//! Replay reads the log in order. A last line without its `\n` (a write cut
//! off by a crash) is ignored and truncated away; any other line that does
//! not parse is skipped with a warning. Neither panics.
//!
//! # Durability and group commit
//! Records are serialised into an in-memory buffer under the state lock, so
//! the buffer's order is the order of the state changes. A caller that needs
//! its record on disk waits until the log's written (or synced) position
//! reaches its record; if no one is writing, it becomes the *leader*: it takes
//! the whole buffer, and with the lock released writes it and calls
//! `fdatasync` once. Callers arriving meanwhile append to a fresh buffer and
//! wait; when the leader finishes, one of them leads the next batch, covering
//! all of them with one `fdatasync`. So with many FUSE threads appending,
//! the cost is one sync per batch, not per event.
//!
//! Only `add`/`upd` records need `fdatasync` before the caller goes on.
//! `done`/`retry`/`dead` records are written (so they survive `kill -9`) but
//! only synced with the next batch that needs it or by [`Journal::sync`]:
//! losing one to a power cut replays an event once more, which
//! at-least-once allows.
//!
//! An event is handed to a worker only once its `add` record is synced, so a
//! workflow never runs for an event whose `append` then failed. After a write
//! or sync error the journal is *broken* (the file's state is unknown): every
//! later append fails, while events already in memory are still handed out.
//!
//! # Names
//! An event's `path` is the lossless text form of the exact name bytes
//! ([`crate::name`]; a UTF-8 name as it is): two names differing in any byte
//! are two keys, never coalesced. Records of format 1 (no `v`: lossy text
//! plus the item's `__raw_path`) are converted as they are read.
//!
//! # Coalescing
//! At most one event per `(bucket, workflow, path)` waits for a worker. An
//! append for a key that has one gets [`Appended::Coalesced`]: the waiting
//! event takes the new `event` and `item` (and keeps its id, place, first
//! `enqueued_at` and `attempts`). Once a worker has taken it, a new append is a
//! new event. At replay, an in-flight event and a newer pending one for the
//! same key are merged into the newer one; a retried event whose key has a
//! newer pending event is dropped in its favour ([`Failed::Superseded`]).
//!
//! # Compaction
//! When the log holds at least `compact_min_records` records and fewer than
//! half of them are live events, it is rewritten with only the live events
//! (pending and in flight): written with [`crate::state::atomic::write_atomic`]
//! (temp file synced, renamed over `journal.log`, directory synced) — before any record goes into
//! the new file. A crash at any point leaves either the old or the new log,
//! both complete. Appenders wait while it runs.
//!
//! Lock order: `inner`, then (never while holding `inner`) `file` or `dead`.
//! Only the one thread holding the writer role (`Inner::writer_busy`) touches
//! `file`.

//!
//! # Files of this module
//! - `mod.rs`: the public types and the [`Journal`] API (open, append, take,
//!   done, failed).
//! - `queue.rs`: the in-memory state: live events, the queue, the key index,
//!   the log positions.
//! - `commit.rs`: group commit (the writer role), dead letters, compaction.
//! - `record.rs`: the log's records, and parsing a log at open.

mod commit;
mod queue;
mod record;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::StateError;
use crate::state::atomic::{clean_stale, sync_dir};
use crate::state::jsonl::JsonlFile;
use crate::state::lock::LockFile;
use crate::state::now_ms;
use queue::{Entry, Inner};
use record::{RecordOut, encode, parse_log};

/// The log file, under the journal directory.
pub const LOG_FILE: &str = "journal.log";
/// The dead-letter file, under the journal directory.
pub const DEAD_FILE: &str = "dead.jsonl";
/// The temporary file of compactions before they used `tempfile` names;
/// still removed at open.
const LEGACY_TMP_FILE: &str = "journal.log.tmp";
const LOCK_FILE: &str = "journal.lock";
/// 2: names in the lossless text form of [`crate::name`] (1: lossy text
/// plus the item's `__raw_path`; still read, see `record.rs`).
const FORMAT_VERSION: u32 = 2;

/// One post event: a workflow to run on one item after the client's call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostEvent {
    /// Assigned by [`Journal::append`]; unique within a journal.
    pub id: u64,
    pub bucket: String,
    pub workflow: String,
    /// `onGet`, `onPut` or `onDelete`.
    pub event: String,
    /// Bucket path of the item, in the lossless text form of
    /// [`crate::name`] (exact bytes: `crate::name::split_path` gives them
    /// back).
    pub path: String,
    /// Snapshot of the item (SPEC §5.2) when the event fired.
    pub item: serde_json::Value,
    /// Unix time in milliseconds when the event was first enqueued.
    pub enqueued_at: i64,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
}

impl PostEvent {
    /// A new event enqueued now (id 0 until appended, no attempts).
    pub fn new(
        bucket: impl Into<String>,
        workflow: impl Into<String>,
        event: impl Into<String>,
        path: impl Into<String>,
        item: serde_json::Value,
    ) -> PostEvent {
        PostEvent {
            id: 0,
            bucket: bucket.into(),
            workflow: workflow.into(),
            event: event.into(),
            path: path.into(),
            item,
            enqueued_at: now_ms(),
            attempts: 0,
        }
    }

    fn key(&self) -> Key {
        (
            self.bucket.clone(),
            self.workflow.clone(),
            self.path.clone(),
        )
    }
}

/// What [`Journal::append`] did; either way the event is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// A new pending event with this id.
    Added(u64),
    /// Merged into the pending (not yet taken) event with this id.
    Coalesced(u64),
}

impl Appended {
    pub fn id(self) -> u64 {
        match self {
            Appended::Added(id) | Appended::Coalesced(id) => id,
        }
    }
}

/// What [`Journal::failed`] did with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Back at the end of the queue, `attempts` + 1.
    Requeued,
    /// Dropped: a newer pending event (this id) for the same key will run.
    Superseded(u64),
    /// Given up: written to `dead.jsonl` and dropped.
    Dead,
    /// No such live event.
    Unknown,
}

/// One line of `dead.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub event: PostEvent,
    pub error: String,
    /// Unix time in milliseconds.
    pub dead_at: i64,
}

/// Tuning; the defaults suit the daemon.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Compact once the log holds at least this many records and fewer than
    /// half of them are live events.
    pub compact_min_records: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            compact_min_records: 10_000,
        }
    }
}

/// Counters for metrics and `storgate status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Waiting for a worker.
    pub pending: usize,
    /// Taken by a worker, not yet done.
    pub in_flight: usize,
    /// Since open: new events, coalesced appends, events done, requeued,
    /// superseded by a newer event, dead-lettered.
    pub appended: u64,
    pub coalesced: u64,
    pub completed: u64,
    pub retried: u64,
    pub superseded: u64,
    pub dead: u64,
    /// Records in the log (written or buffered), and bytes written to it.
    pub log_records: u64,
    pub log_bytes: u64,
    /// Batches written and `fdatasync` calls since open.
    pub writes: u64,
    pub syncs: u64,
    pub compactions: u64,
    /// A write or sync failed: appends fail from now on.
    pub broken: bool,
}

type Key = (String, String, String);

/// The journal. Share it with `Arc`; every method takes `&self`.
pub struct Journal {
    dir: PathBuf,
    opts: JournalOptions,
    inner: Mutex<Inner>,
    /// The writer role was released (the log positions moved on).
    flushed: Condvar,
    /// An event may have become available to `take`.
    work: Condvar,
    file: Mutex<File>,
    dead: Mutex<JsonlFile>,
    /// Held while the journal is open.
    _lock: LockFile,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating it if needed) the journal in `dir`, and returns it
    /// with the replay set: every event appended and not finished, in queue
    /// order. Those events are also queued in the journal — `take` hands them
    /// out — so the returned list is for logging, not for running them.
    pub fn open(dir: &Path) -> io::Result<(Journal, Vec<PostEvent>)> {
        Journal::open_with(dir, JournalOptions::default())
    }

    pub fn open_with(dir: &Path, opts: JournalOptions) -> io::Result<(Journal, Vec<PostEvent>)> {
        crate::state::private::own_dir(dir)?;
        let lock = match LockFile::try_acquire(&dir.join(LOCK_FILE)) {
            Ok(l) => l,
            Err(StateError::Busy { .. }) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "event journal {} is in use by another process",
                        dir.display()
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        // A compaction cut short: the log it was to replace is still whole.
        let mut stale = clean_stale(dir, LOG_FILE)?;
        match fs::remove_file(dir.join(LEGACY_TMP_FILE)) {
            Ok(()) => stale += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if stale > 0 {
            tracing::info!(dir = %dir.display(), "journal: removed an unfinished compaction");
        }

        let log_path = dir.join(LOG_FILE);
        let (data, existed) = match fs::read(&log_path) {
            Ok(d) => (d, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(e),
        };
        let parsed = parse_log(&data, &log_path)?;
        let file = crate::state::private::file_options()
            .append(true)
            .create(true)
            .open(&log_path)?;
        if parsed.valid_len < data.len() {
            tracing::warn!(
                file = %log_path.display(),
                bytes = data.len() - parsed.valid_len,
                "journal: ignoring a record cut off by a crash"
            );
            file.set_len(parsed.valid_len as u64)?;
            file.sync_all()?;
        }
        if !existed {
            sync_dir(dir)?;
        }

        let mut inner = Inner {
            next_id: parsed.next_id,
            ..Inner::default()
        };
        inner.stats.log_records = parsed.records;
        inner.stats.log_bytes = parsed.valid_len as u64;
        // Queue order, and one pending event per key: a newer event for a key
        // (higher id: appended after the older one was taken) wins.
        let mut live = parsed.live.into_values().collect::<Vec<_>>();
        live.sort_by_key(|(seq, _)| *seq);
        let mut dropped = Vec::new();
        for (_, ev) in live {
            let key = ev.key();
            if let Some(&other) = inner.index.get(&key) {
                let keep_new = ev.id > other;
                let drop_id = if keep_new { other } else { ev.id };
                dropped.push(drop_id);
                if keep_new {
                    inner.remove(other);
                } else {
                    continue;
                }
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.queue.insert(seq, ev.id);
            inner.index.insert(key, ev.id);
            inner.entries.insert(
                ev.id,
                Entry {
                    ev,
                    seq,
                    ready_lsn: 0,
                    taken: false,
                },
            );
        }
        for &id in &dropped {
            inner.push(&RecordOut::Done { id }, false)?;
        }
        inner.stats.superseded += dropped.len() as u64;
        let replay: Vec<PostEvent> = inner
            .queue
            .values()
            .map(|id| inner.entries[id].ev.clone())
            .collect();

        let journal = Journal {
            dir: dir.to_path_buf(),
            opts,
            inner: Mutex::new(inner),
            flushed: Condvar::new(),
            work: Condvar::new(),
            file: Mutex::new(file),
            dead: Mutex::new(JsonlFile::new(dir, DEAD_FILE)),
            _lock: lock,
        };
        if !dropped.is_empty() {
            tracing::info!(
                count = dropped.len(),
                "journal: merged replayed events of the same path and workflow"
            );
            let g = journal.lock();
            let lsn = g.lsn;
            journal.wait_for(g, lsn, false)?;
        }
        if let Err(e) = journal.compact_inner(false) {
            tracing::warn!(error = %e, "journal: compaction at open failed");
        }
        tracing::info!(dir = %dir.display(), pending = replay.len(), "journal opened");
        Ok((journal, replay))
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Journals `ev` (its `id` is assigned here), or coalesces it into the
    /// pending event for the same key. Returns once the record is synced.
    pub fn append(&self, ev: PostEvent) -> io::Result<Appended> {
        let mut g = self.lock();
        g.check_broken()?;
        let key = ev.key();
        let (res, lsn) = if let Some(&id) = g.index.get(&key) {
            let e = g
                .entries
                .get_mut(&id)
                .expect("index points at a live event");
            e.ev.event = ev.event;
            e.ev.item = ev.item;
            let line = encode(&RecordOut::upd(&e.ev))?;
            let lsn = g.push_line(&line, true);
            g.stats.coalesced += 1;
            (Appended::Coalesced(id), lsn)
        } else {
            let id = g.next_id;
            let mut ev = ev;
            ev.id = id;
            let lsn = g.push(&RecordOut::add(&ev), true)?;
            g.next_id += 1;
            let seq = g.next_seq;
            g.next_seq += 1;
            g.queue.insert(seq, id);
            g.index.insert(key, id);
            g.entries.insert(
                id,
                Entry {
                    ev,
                    seq,
                    ready_lsn: lsn,
                    taken: false,
                },
            );
            g.stats.appended += 1;
            (Appended::Added(id), lsn)
        };
        self.wait_for(g, lsn, true)?;
        Ok(res)
    }

    /// Hands the oldest pending event to a worker, if any is ready. Until
    /// `done`/`failed`, it stays journaled: a crash makes it pending again.
    pub fn take(&self) -> Option<PostEvent> {
        self.lock().take()
    }

    /// Like `take`, waiting up to `timeout` for an event.
    pub fn take_blocking(&self, timeout: Duration) -> Option<PostEvent> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            if let Some(ev) = g.take() {
                return Some(ev);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self
                .work
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The event ran to completion: it will not be replayed. Returns false
    /// if `id` is not a live event.
    pub fn done(&self, id: u64) -> io::Result<bool> {
        let mut g = self.lock();
        if g.remove(id).is_none() {
            return Ok(false);
        }
        let lsn = g.push(&RecordOut::Done { id }, false)?;
        g.stats.completed += 1;
        self.wait_for(g, lsn, false)?;
        self.maybe_compact();
        Ok(true)
    }

    /// The event failed with `error`. With `retry`, it goes back to the end
    /// of the queue with `attempts` + 1 (or is dropped if a newer event for
    /// the same key is pending); otherwise it is recorded in `dead.jsonl`
    /// and dropped.
    pub fn failed(&self, id: u64, retry: bool, error: &str) -> io::Result<Failed> {
        let mut g = self.lock();
        let Some(e) = g.entries.get(&id) else {
            return Ok(Failed::Unknown);
        };
        if !retry {
            let mut ev = e.ev.clone();
            drop(g);
            ev.attempts += 1;
            self.write_dead_letter(ev, error)?;
            let mut g = self.lock();
            if g.remove(id).is_none() {
                return Ok(Failed::Unknown);
            }
            let lsn = g.push(&RecordOut::Dead { id }, false)?;
            g.stats.dead += 1;
            self.wait_for(g, lsn, false)?;
            self.maybe_compact();
            return Ok(Failed::Dead);
        }
        let key = e.ev.key();
        if let Some(&newer) = g.index.get(&key)
            && newer != id
        {
            g.remove(id);
            let lsn = g.push(&RecordOut::Done { id }, false)?;
            g.stats.superseded += 1;
            self.wait_for(g, lsn, false)?;
            self.maybe_compact();
            return Ok(Failed::Superseded(newer));
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        let inner = &mut *g;
        let e = inner.entries.get_mut(&id).expect("checked above");
        e.ev.attempts += 1;
        let attempts = e.ev.attempts;
        if !e.taken {
            inner.queue.remove(&e.seq);
        }
        e.taken = false;
        e.seq = seq;
        inner.queue.insert(seq, id);
        inner.index.insert(key, id);
        let lsn = g.push(&RecordOut::Retry { id, attempts }, false)?;
        g.stats.retried += 1;
        self.work.notify_one();
        self.wait_for(g, lsn, false)?;
        Ok(Failed::Requeued)
    }

    /// Events waiting for a worker.
    pub fn pending_len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn stats(&self) -> JournalStats {
        let mut g = self.lock();
        g.refresh_counts();
        g.stats.clone()
    }

    /// Writes and syncs every record so far (shutdown).
    pub fn sync(&self) -> io::Result<()> {
        let mut g = self.lock();
        let lsn = g.lsn;
        if g.durable_lsn >= lsn {
            return Ok(());
        }
        g.sync_lsn = lsn;
        self.wait_for(g, lsn, true)
    }

    /// Rewrites the log with only the live events, now.
    pub fn compact(&self) -> io::Result<()> {
        self.compact_inner(true).map(|_| ())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "journal: final sync failed");
        }
    }
}
