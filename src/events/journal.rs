//! The durable journal of post events (SPEC §4.2).
//!
//! A post event is written here *before* the client's call returns, and a
//! worker pool runs it afterwards. After a crash or `kill -9`, [`Journal::open`]
//! hands back every event that was appended and not yet marked done: post
//! events are at-least-once.
//!
//! # Files (all under the journal directory, e.g. `stateDir/journal/`)
//! - `journal.log`: JSON lines, one record each, appended only:
//!   - `{"t":"meta","v":1,"next_id":N}`: first line of a compacted log; keeps
//!     ids growing across compactions.
//!   - `{"t":"add","ev":{…PostEvent…}}`: a new pending event, at the back of
//!     the queue.
//!   - `{"t":"upd","ev":{…}}`: a coalesced event: replaces the pending event
//!     with the same id, keeping its place in the queue.
//!   - `{"t":"retry","id":N,"attempts":K}`: a failed event put back at the back
//!     of the queue.
//!   - `{"t":"done","id":N}`, `{"t":"dead","id":N}`: the event is finished
//!     (completed, superseded or dead-lettered).
//! - `journal.log.tmp`: a compaction in progress; deleted at open.
//! - `dead.jsonl`: one line per event given up on: the event, `error`, `dead_at`.
//! - `journal.lock`: `flock`ed while a process has the journal open.
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
//! (pending and in flight): `journal.log.tmp` is written and synced, renamed
//! over `journal.log`, and the directory synced — before any record goes into
//! the new file. A crash at any point leaves either the old or the new log,
//! both complete. Appenders wait while it runs.
//!
//! Lock order: `inner`, then (never while holding `inner`) `file` or `dead`.
//! Only the one thread holding the writer role (`Inner::writer_busy`) touches
//! `file`.

use crate::state::now_ms;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The log file, under the journal directory.
pub const LOG_FILE: &str = "journal.log";
/// The dead-letter file, under the journal directory.
pub const DEAD_FILE: &str = "dead.jsonl";
const TMP_FILE: &str = "journal.log.tmp";
const LOCK_FILE: &str = "journal.lock";
const FORMAT_VERSION: u32 = 1;

/// One post event: a workflow to run on one item after the client's call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostEvent {
    /// Assigned by [`Journal::append`]; unique within a journal.
    pub id: u64,
    pub bucket: String,
    pub workflow: String,
    /// `onGet`, `onPut` or `onDelete`.
    pub event: String,
    /// Bucket path of the item.
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

/// A log record, as written (borrowing) ...
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum RecordOut<'a> {
    Meta { v: u32, next_id: u64 },
    Add { ev: &'a PostEvent },
    Upd { ev: &'a PostEvent },
    Retry { id: u64, attempts: u32 },
    Done { id: u64 },
    Dead { id: u64 },
}

/// ... and as read.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum RecordIn {
    Meta { v: u32, next_id: u64 },
    Add { ev: PostEvent },
    Upd { ev: PostEvent },
    Retry { id: u64, attempts: u32 },
    Done { id: u64 },
    Dead { id: u64 },
}

struct Entry {
    ev: PostEvent,
    /// Queue position: smaller runs first.
    seq: u64,
    /// The event may be handed out once the log is synced up to here.
    ready_lsn: u64,
    taken: bool,
}

#[derive(Default)]
struct Inner {
    /// Every live event: pending or taken.
    entries: HashMap<u64, Entry>,
    /// Pending, not taken: seq → id.
    queue: BTreeMap<u64, u64>,
    /// Pending, not taken: key → id.
    index: HashMap<Key, u64>,
    next_id: u64,
    next_seq: u64,

    /// Serialised records not yet written.
    buf: Vec<u8>,
    /// Sequence number of the last record put in `buf`.
    lsn: u64,
    /// Last record that must be synced before its caller goes on.
    sync_lsn: u64,
    written_lsn: u64,
    durable_lsn: u64,
    /// Someone is writing the log (a group-commit leader or a compaction).
    writer_busy: bool,
    broken: Option<(io::ErrorKind, String)>,
    stats: JournalStats,
}

impl Inner {
    fn push(&mut self, rec: &RecordOut<'_>, needs_sync: bool) -> io::Result<u64> {
        let line = encode(rec)?;
        Ok(self.push_line(&line, needs_sync))
    }

    fn push_line(&mut self, line: &[u8], needs_sync: bool) -> u64 {
        self.buf.extend_from_slice(line);
        self.lsn += 1;
        if needs_sync {
            self.sync_lsn = self.lsn;
        }
        self.stats.log_records += 1;
        self.lsn
    }

    fn check_broken(&self) -> io::Result<()> {
        match &self.broken {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!("event journal unusable after a write error: {msg}"),
            )),
        }
    }

    fn should_compact(&self, opts: &JournalOptions) -> bool {
        let records = self.stats.log_records;
        records >= opts.compact_min_records.max(1) && (self.entries.len() as u64) * 2 < records
    }

    /// Removes a live event from every structure; returns it.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        if !e.taken {
            self.queue.remove(&e.seq);
            let key = e.ev.key();
            if self.index.get(&key) == Some(&id) {
                self.index.remove(&key);
            }
        }
        Some(e)
    }

    fn take(&mut self) -> Option<PostEvent> {
        let (_, &id) = self.queue.first_key_value()?;
        let durable = self.durable_lsn;
        let broken = self.broken.is_some();
        let e = self.entries.get_mut(&id)?;
        // Not synced yet: its appender is leading or waiting for a batch.
        if e.ready_lsn > durable && !broken {
            return None;
        }
        e.taken = true;
        let ev = e.ev.clone();
        self.queue.pop_first();
        let key = ev.key();
        if self.index.get(&key) == Some(&id) {
            self.index.remove(&key);
        }
        Some(ev)
    }

    fn refresh_counts(&mut self) {
        self.stats.pending = self.queue.len();
        self.stats.in_flight = self.entries.len() - self.queue.len();
        self.stats.broken = self.broken.is_some();
    }
}

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
    dead: Mutex<Option<File>>,
    /// Holds the `flock` on `journal.lock`.
    _lock: File,
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
        fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        // A compaction cut short: the log it was to replace is still whole.
        match fs::remove_file(dir.join(TMP_FILE)) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "journal: removed an unfinished compaction")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }

        let log_path = dir.join(LOG_FILE);
        let (data, existed) = match fs::read(&log_path) {
            Ok(d) => (d, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(e),
        };
        let parsed = parse_log(&data, &log_path)?;
        let file = OpenOptions::new()
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
            dead: Mutex::new(None),
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
            let line = encode(&RecordOut::Upd { ev: &e.ev })?;
            let lsn = g.push_line(&line, true);
            g.stats.coalesced += 1;
            (Appended::Coalesced(id), lsn)
        } else {
            let id = g.next_id;
            let mut ev = ev;
            ev.id = id;
            let lsn = g.push(&RecordOut::Add { ev: &ev }, true)?;
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&'a self, g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        self.flushed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the log is written (`durable`: and synced) up to `lsn`,
    /// leading batches while no one else does.
    fn wait_for<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        lsn: u64,
        durable: bool,
    ) -> io::Result<()> {
        loop {
            let reached = if durable {
                g.durable_lsn
            } else {
                g.written_lsn
            };
            if reached >= lsn {
                return Ok(());
            }
            g.check_broken()?;
            if g.writer_busy {
                g = self.wait(g);
            } else {
                g = self.write_batch(g);
            }
        }
    }

    /// Group-commit leader: writes everything buffered, syncing if any of it
    /// needs it.
    fn write_batch<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        g.writer_busy = true;
        let batch = std::mem::take(&mut g.buf);
        let batch_lsn = g.lsn;
        let sync = g.sync_lsn > g.durable_lsn;
        drop(g);

        let res = {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&batch)
                .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        };

        let mut g = self.lock();
        g.writer_busy = false;
        match res {
            Ok(()) => {
                g.written_lsn = batch_lsn;
                g.stats.log_bytes += batch.len() as u64;
                g.stats.writes += 1;
                if sync {
                    g.durable_lsn = batch_lsn;
                    g.stats.syncs += 1;
                    self.work.notify_all();
                }
                if g.buf.is_empty() {
                    // Keep the allocation for the next batch.
                    let mut batch = batch;
                    batch.clear();
                    g.buf = batch;
                }
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "journal write failed; appends will fail from now on");
                g.broken = Some((e.kind(), e.to_string()));
                // Take can no longer wait for a sync that will not come.
                self.work.notify_all();
            }
        }
        self.flushed.notify_all();
        g
    }

    fn write_dead_letter(&self, event: PostEvent, error: &str) -> io::Result<()> {
        let letter = DeadLetter {
            event,
            error: error.to_string(),
            dead_at: now_ms(),
        };
        let mut line = serde_json::to_vec(&letter).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        if dead.is_none() {
            let path = self.dir.join(DEAD_FILE);
            let existed = path.exists();
            *dead = Some(OpenOptions::new().append(true).create(true).open(&path)?);
            if !existed {
                sync_dir(&self.dir)?;
            }
        }
        let f = dead.as_mut().expect("opened above");
        f.write_all(&line)?;
        f.sync_data()?;
        tracing::warn!(id = letter.event.id, path = %letter.event.path, error, "event given up (dead letter)");
        Ok(())
    }

    fn maybe_compact(&self) {
        if !self.lock().should_compact(&self.opts) {
            return;
        }
        if let Err(e) = self.compact_inner(false) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "journal compaction failed");
        }
    }

    /// Rewrites the log with the live events, if `force` or it is due.
    fn compact_inner(&self, force: bool) -> io::Result<bool> {
        let mut g = self.lock();
        loop {
            g.check_broken()?;
            if !g.writer_busy {
                break;
            }
            g = self.wait(g);
        }
        if !force && !g.should_compact(&self.opts) {
            return Ok(false);
        }
        g.writer_busy = true;

        // Snapshot under the lock; records buffered so far are folded into it.
        let mut live: Vec<&Entry> = g.entries.values().collect();
        live.sort_by_key(|e| e.seq);
        let mut out = Vec::with_capacity(128 * (live.len() + 1));
        let mut ser_res = encode(&RecordOut::Meta {
            v: FORMAT_VERSION,
            next_id: g.next_id,
        })
        .map(|l| out.extend_from_slice(&l));
        for e in &live {
            if ser_res.is_err() {
                break;
            }
            ser_res = encode(&RecordOut::Add { ev: &e.ev }).map(|l| out.extend_from_slice(&l));
        }
        let snap_records = live.len() as u64 + 1;
        let snap_lsn = g.lsn;
        let snap_buf_len = g.buf.len();
        let records_at_snap = g.stats.log_records;
        if let Err(e) = ser_res {
            g.writer_busy = false;
            self.flushed.notify_all();
            return Err(e);
        }
        drop(g);

        let res = self.rewrite(&out);

        let mut g = self.lock();
        g.writer_busy = false;
        let ret = match res {
            Ok(new_file) => {
                *self.file.lock().unwrap_or_else(|e| e.into_inner()) = new_file;
                g.buf.drain(..snap_buf_len);
                g.written_lsn = g.written_lsn.max(snap_lsn);
                g.durable_lsn = g.durable_lsn.max(snap_lsn);
                g.stats.log_records = snap_records + (g.stats.log_records - records_at_snap);
                g.stats.log_bytes = out.len() as u64;
                g.stats.compactions += 1;
                tracing::debug!(
                    live = snap_records - 1,
                    bytes = out.len(),
                    "journal compacted"
                );
                self.work.notify_all();
                Ok(true)
            }
            Err((e, fatal)) => {
                if fatal {
                    tracing::error!(dir = %self.dir.display(), error = %e, "journal compaction failed after the rename; appends will fail from now on");
                    g.broken = Some((e.kind(), e.to_string()));
                    self.work.notify_all();
                }
                Err(e)
            }
        };
        self.flushed.notify_all();
        ret
    }

    /// Writes `data` as the new log: temp file, sync, rename, directory sync.
    /// Returns the new log opened for appending, or the error and whether it
    /// came after the rename (the log on disk may then be either).
    fn rewrite(&self, data: &[u8]) -> Result<File, (io::Error, bool)> {
        let tmp = self.dir.join(TMP_FILE);
        let before = |e: io::Error| (e, false);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(before(e)),
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&tmp)
            .map_err(before)?;
        f.write_all(data).map_err(before)?;
        f.sync_all().map_err(before)?;
        fs::rename(&tmp, self.dir.join(LOG_FILE)).map_err(before)?;
        sync_dir(&self.dir).map_err(|e| (e, true))?;
        Ok(f)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "journal: final sync failed");
        }
    }
}

/// One record as a log line.
fn encode(rec: &RecordOut<'_>) -> io::Result<Vec<u8>> {
    let mut line =
        serde_json::to_vec(rec).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    line.push(b'\n');
    Ok(line)
}

struct Parsed {
    /// id → (queue position, event)
    live: HashMap<u64, (u64, PostEvent)>,
    next_id: u64,
    records: u64,
    /// Bytes up to the end of the last complete line.
    valid_len: usize,
}

fn parse_log(data: &[u8], path: &Path) -> io::Result<Parsed> {
    let mut p = Parsed {
        live: HashMap::new(),
        next_id: 1,
        records: 0,
        valid_len: 0,
    };
    let mut seq = 0u64;
    let mut pos = 0usize;
    let mut line_no = 0usize;
    while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
        let line = &data[pos..pos + nl];
        pos += nl + 1;
        p.valid_len = pos;
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let rec: RecordIn = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    line = line_no,
                    error = %e,
                    text = %String::from_utf8_lossy(&line[..line.len().min(120)]),
                    "journal: skipping a corrupt record"
                );
                continue;
            }
        };
        p.records += 1;
        seq += 1;
        match rec {
            RecordIn::Meta { v, next_id } => {
                if v > FORMAT_VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: journal format {v} is newer than this storgate ({FORMAT_VERSION})",
                            path.display()
                        ),
                    ));
                }
                p.next_id = p.next_id.max(next_id);
            }
            RecordIn::Add { ev } => {
                p.next_id = p.next_id.max(ev.id + 1);
                p.live.insert(ev.id, (seq, ev));
            }
            RecordIn::Upd { ev } => {
                p.next_id = p.next_id.max(ev.id + 1);
                match p.live.get_mut(&ev.id) {
                    Some(slot) => slot.1 = ev,
                    None => {
                        // Its `add` was lost to corruption: keep the event.
                        tracing::warn!(
                            id = ev.id,
                            "journal: update of an unknown event, keeping it"
                        );
                        p.live.insert(ev.id, (seq, ev));
                    }
                }
            }
            RecordIn::Retry { id, attempts } => {
                if let Some(slot) = p.live.get_mut(&id) {
                    slot.0 = seq;
                    slot.1.attempts = attempts;
                }
            }
            RecordIn::Done { id } | RecordIn::Dead { id } => {
                p.live.remove(&id);
            }
        }
    }
    Ok(p)
}

fn lock_dir(dir: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "event journal {} is in use by another process",
                    dir.display()
                ),
            ));
        }
        return Err(e);
    }
    Ok(f)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn ev(path: &str, v: u64) -> PostEvent {
        PostEvent::new("b", "wf", "onPut", path, json!({ "path": path, "v": v }))
    }

    fn version(e: &PostEvent) -> u64 {
        e.item["v"].as_u64().unwrap()
    }

    fn opts(compact_min_records: u64) -> JournalOptions {
        JournalOptions {
            compact_min_records,
        }
    }

    fn ids(evs: &[PostEvent]) -> Vec<u64> {
        evs.iter().map(|e| e.id).collect()
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(LOG_FILE)
    }

    #[test]
    fn append_take_done_and_replay() {
        let d = tempfile::tempdir().unwrap();
        let (j, replay) = Journal::open(d.path()).unwrap();
        assert!(replay.is_empty());
        let a = j.append(ev("/a", 1)).unwrap();
        let b = j.append(ev("/b", 1)).unwrap();
        let c = j.append(ev("/c", 1)).unwrap();
        assert_eq!(
            (a, b, c),
            (Appended::Added(1), Appended::Added(2), Appended::Added(3))
        );
        assert_eq!(j.pending_len(), 3);

        let t = j.take().unwrap();
        assert_eq!((t.id, t.path.as_str()), (1, "/a"));
        assert_eq!(j.pending_len(), 2);
        assert!(j.done(1).unwrap());
        assert!(!j.done(1).unwrap(), "done twice");
        let t = j.take().unwrap();
        assert_eq!(t.id, 2); // taken, never done: replayed
        let s = j.stats();
        assert_eq!(
            (s.pending, s.in_flight, s.appended, s.completed),
            (1, 1, 3, 1)
        );
        drop(j);

        let (j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2, 3]);
        assert_eq!(replay[0], ev_with("/b", 1, 2, replay[0].enqueued_at));
        // Ids keep growing.
        assert_eq!(j.append(ev("/d", 1)).unwrap(), Appended::Added(4));
        assert_eq!(ids(&drain(&j)), vec![2, 3, 4]);
    }

    fn ev_with(path: &str, v: u64, id: u64, at: i64) -> PostEvent {
        PostEvent {
            id,
            enqueued_at: at,
            ..ev(path, v)
        }
    }

    fn drain(j: &Journal) -> Vec<PostEvent> {
        std::iter::from_fn(|| j.take()).collect()
    }

    #[test]
    fn coalesces_pending_events_of_one_key() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        let first = ev("/x", 1);
        let at = first.enqueued_at;
        assert_eq!(j.append(first).unwrap(), Appended::Added(1));
        assert_eq!(j.append(ev("/y", 1)).unwrap(), Appended::Added(2));
        assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Coalesced(1));
        let mut del = ev("/x", 3);
        del.event = "onDelete".into();
        assert_eq!(j.append(del).unwrap(), Appended::Coalesced(1));
        // Another workflow or bucket is another key.
        let mut other = ev("/x", 9);
        other.workflow = "wf2".into();
        assert_eq!(j.append(other).unwrap(), Appended::Added(3));
        assert_eq!(j.pending_len(), 3);
        assert_eq!(j.stats().coalesced, 2);
        drop(j);

        let (j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![1, 2, 3]);
        let x = &replay[0];
        assert_eq!(
            (version(x), x.event.as_str(), x.enqueued_at),
            (3, "onDelete", at)
        );
        // Still coalescing after replay.
        assert_eq!(j.append(ev("/x", 4)).unwrap(), Appended::Coalesced(1));
        assert_eq!(version(&j.take().unwrap()), 4);
    }

    #[test]
    fn taken_event_is_not_coalesced_and_replay_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/x", 1)).unwrap();
        assert_eq!(j.take().unwrap().id, 1);
        assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Added(2));
        assert_eq!(j.append(ev("/x", 3)).unwrap(), Appended::Coalesced(2));
        drop(j); // crash with 1 in flight and 2 pending

        // Both are live at replay; one pending event per key: the newer.
        let (j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2]);
        assert_eq!(version(&replay[0]), 3);
        assert_eq!(j.stats().superseded, 1);
        drop(j);
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2], "the merge was journaled");
    }

    #[test]
    fn taken_then_done_leaves_only_the_new_event() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/x", 1)).unwrap();
        let t = j.take().unwrap();
        assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Added(2));
        j.done(t.id).unwrap();
        drop(j);
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2]);
    }

    #[test]
    fn failed_with_retry_requeues_at_the_back() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/a", 1)).unwrap();
        j.append(ev("/b", 1)).unwrap();
        let a = j.take().unwrap();
        assert_eq!(j.failed(a.id, true, "timeout").unwrap(), Failed::Requeued);
        assert_eq!(j.pending_len(), 2);
        // Requeued: coalescing applies to it again.
        assert_eq!(j.append(ev("/a", 2)).unwrap(), Appended::Coalesced(1));
        drop(j);

        let (j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2, 1]);
        assert_eq!((replay[1].attempts, version(&replay[1])), (1, 2));
        assert_eq!(j.take().unwrap().id, 2);
        let a = j.take().unwrap();
        assert_eq!(j.failed(a.id, true, "again").unwrap(), Failed::Requeued);
        assert_eq!(j.take().unwrap().attempts, 2);
        assert_eq!(j.failed(99, true, "x").unwrap(), Failed::Unknown);
        assert_eq!(j.stats().retried, 1);
    }

    #[test]
    fn failed_with_retry_is_superseded_by_a_newer_pending_event() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/x", 1)).unwrap();
        let t = j.take().unwrap();
        assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Added(2));
        assert_eq!(j.failed(t.id, true, "boom").unwrap(), Failed::Superseded(2));
        assert_eq!(j.pending_len(), 1);
        assert_eq!(j.stats().in_flight, 0);
        drop(j);
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2]);
    }

    #[test]
    fn failed_without_retry_goes_to_dead_letters() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/a", 1)).unwrap();
        j.append(ev("/b", 1)).unwrap();
        let a = j.take().unwrap();
        assert_eq!(
            j.failed(a.id, false, "exit status 3\nstderr: nope")
                .unwrap(),
            Failed::Dead
        );
        assert_eq!(j.failed(a.id, false, "again").unwrap(), Failed::Unknown);
        assert_eq!(j.stats().dead, 1);
        drop(j);

        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![2]);
        let text = fs::read_to_string(d.path().join(DEAD_FILE)).unwrap();
        let letters: Vec<DeadLetter> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].error, "exit status 3\nstderr: nope");
        assert_eq!((letters[0].event.id, letters[0].event.attempts), (1, 1));
        assert_eq!(letters[0].event.path, "/a");
    }

    #[test]
    fn torn_last_record_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        for i in 1..=3 {
            j.append(ev(&format!("/f{i}"), i)).unwrap();
        }
        drop(j);
        let full = fs::read(log_path(d.path())).unwrap();
        // Cut the last record in the middle.
        let cut = full.len() - 20;
        fs::OpenOptions::new()
            .write(true)
            .open(log_path(d.path()))
            .unwrap()
            .set_len(cut as u64)
            .unwrap();

        let (j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![1, 2]);
        // The torn tail is gone, so new records start on a line of their own.
        let now = fs::read(log_path(d.path())).unwrap();
        assert_eq!(now.last(), Some(&b'\n'));
        assert_eq!(j.append(ev("/f4", 4)).unwrap(), Appended::Added(3));
        drop(j);
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![1, 2, 3]);
        assert_eq!(replay[2].path, "/f4");
    }

    /// Builds a log with every kind of record, then opens every prefix of it:
    /// no panic, and a prefix cut mid-line replays like the prefix cut at
    /// the line's start.
    #[test]
    fn every_truncation_point_replays_cleanly() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/a", 1)).unwrap();
        j.append(ev("/b", 1)).unwrap();
        j.append(ev("/a", 2)).unwrap(); // upd
        let a = j.take().unwrap();
        j.failed(a.id, true, "x").unwrap(); // retry
        let b = j.take().unwrap();
        j.done(b.id).unwrap();
        j.append(ev("/c", 1)).unwrap();
        let a = j.take().unwrap();
        j.failed(a.id, false, "y").unwrap(); // dead
        j.append(ev("/d", 1)).unwrap();
        drop(j);
        let full = fs::read(log_path(d.path())).unwrap();

        let replay_of = |bytes: &[u8]| {
            let d = tempfile::tempdir().unwrap();
            fs::write(log_path(d.path()), bytes).unwrap();
            let (_j, replay) = Journal::open(d.path()).unwrap();
            let on_disk = fs::read(log_path(d.path())).unwrap();
            assert!(on_disk.is_empty() || on_disk.ends_with(b"\n"));
            replay
                .into_iter()
                .map(|e| (e.id, version(&e), e.attempts))
                .collect::<Vec<_>>()
        };
        let mut line_start = 0;
        let mut at_start = replay_of(&[]);
        for len in 0..=full.len() {
            if len > 0 && full[len - 1] == b'\n' {
                line_start = len;
                at_start = replay_of(&full[..len]);
            } else if len != line_start {
                assert_eq!(replay_of(&full[..len]), at_start, "cut at {len}");
            }
        }
        assert_eq!(at_start, vec![(3, 1, 0), (4, 1, 0)]);
    }

    #[test]
    fn corrupt_lines_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/a", 1)).unwrap();
        drop(j);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(log_path(d.path()))
            .unwrap();
        f.write_all(b"{\"t\":\"add\",\"ev\":{\"id\":7\n").unwrap();
        f.write_all(b"\0\0\0\0\0\0\n\n").unwrap();
        f.write_all(b"{\"t\":\"frobnicate\",\"id\":1}\n").unwrap();
        f.write_all(b"[1,2,3]\n").unwrap();
        drop(f);
        let (j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![1]);
        j.append(ev("/b", 1)).unwrap();
        drop(j);
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![1, 2]);
    }

    #[test]
    fn newer_format_is_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            log_path(d.path()),
            b"{\"t\":\"meta\",\"v\":99,\"next_id\":1}\n",
        )
        .unwrap();
        let e = Journal::open(d.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn unfinished_compaction_is_discarded() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        j.append(ev("/a", 1)).unwrap();
        drop(j);
        // A crash before the rename: the temp file is half written.
        fs::write(
            d.path().join(TMP_FILE),
            b"{\"t\":\"meta\",\"v\":1,\"next_id\":5}\n{\"t\":\"ad",
        )
        .unwrap();
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(ids(&replay), vec![1]);
        assert!(!d.path().join(TMP_FILE).exists());
    }

    #[test]
    fn compaction_keeps_pending_and_in_flight_events() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open_with(d.path(), opts(100)).unwrap();
        for i in 0..300 {
            j.append(ev(&format!("/f{i}"), i)).unwrap();
        }
        // Finish 250, keep 20 in flight and 30 pending.
        for _ in 0..250 {
            let t = j.take().unwrap();
            j.done(t.id).unwrap();
        }
        let in_flight: Vec<u64> = (0..20).map(|_| j.take().unwrap().id).collect();
        let s = j.stats();
        assert!(s.compactions >= 1, "{s:?}");
        assert!(s.log_records < 200, "{s:?}");
        assert_eq!((s.pending, s.in_flight), (30, 20));
        j.compact().unwrap();
        let s = j.stats();
        assert_eq!(s.log_records, 51); // meta + 50 live
        assert_eq!(
            fs::read_to_string(log_path(d.path()))
                .unwrap()
                .lines()
                .count(),
            51
        );
        // The journal keeps working on the new file.
        assert_eq!(j.append(ev("/new", 1)).unwrap(), Appended::Added(301));
        j.done(in_flight[0]).unwrap();
        drop(j);

        let (j, replay) = Journal::open_with(d.path(), opts(100)).unwrap();
        let got = ids(&replay);
        let want: Vec<u64> = (251..=301).filter(|&id| id != in_flight[0]).collect();
        let got_set: HashSet<u64> = got.iter().copied().collect();
        assert_eq!(got_set, want.iter().copied().collect::<HashSet<_>>());
        assert_eq!(got.len(), want.len());
        assert!(
            replay
                .iter()
                .all(|e| version(e) == e.id - 1 || e.path == "/new")
        );
        // Ids continue after the compacted log's meta record, even with
        // nothing live.
        for e in drain(&j) {
            j.done(e.id).unwrap();
        }
        j.compact().unwrap();
        drop(j);
        let (j, replay) = Journal::open(d.path()).unwrap();
        assert!(replay.is_empty());
        assert_eq!(j.append(ev("/z", 1)).unwrap(), Appended::Added(302));
    }

    #[test]
    fn compaction_runs_at_open_when_due() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open_with(d.path(), opts(1_000_000)).unwrap();
        for i in 0..100 {
            j.append(ev(&format!("/f{i}"), i)).unwrap();
            let t = j.take().unwrap();
            j.done(t.id).unwrap();
        }
        j.append(ev("/left", 1)).unwrap();
        assert_eq!(j.stats().compactions, 0);
        drop(j);
        let (j, replay) = Journal::open_with(d.path(), opts(50)).unwrap();
        assert_eq!(ids(&replay), vec![101]);
        let s = j.stats();
        assert_eq!((s.compactions, s.log_records), (1, 2));
    }

    #[test]
    fn a_second_open_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        let e = Journal::open(d.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(j);
        Journal::open(d.path()).unwrap();
    }

    #[test]
    fn take_blocking_waits_for_an_append() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        let j = Arc::new(j);
        assert!(j.take_blocking(Duration::from_millis(20)).is_none());
        let j2 = j.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            j2.append(ev("/late", 1)).unwrap();
        });
        let got = j.take_blocking(Duration::from_secs(10)).unwrap();
        assert_eq!(got.path, "/late");
        t.join().unwrap();
    }

    /// 8 threads × 2,000 events with distinct keys: every id replayed once.
    #[test]
    fn concurrent_appenders_distinct_keys() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        let j = Arc::new(j);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    (0..2000)
                        .map(|i| match j.append(ev(&format!("/t{t}/f{i}"), i)).unwrap() {
                            Appended::Added(id) => id,
                            c => panic!("coalesced {c:?}"),
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let s = j.stats();
        assert!(s.syncs < 16_000, "group commit shared syncs: {s:?}");
        drop(j);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 16_000);

        let (_j, replay) = Journal::open(d.path()).unwrap();
        let mut got = ids(&replay);
        assert_eq!(got.len(), 16_000);
        got.sort_unstable();
        assert_eq!(got, all);
        let keys: HashSet<&str> = replay.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(keys.len(), 16_000);
    }

    /// 8 threads × 2,000 events over a few keys each (and some keys shared
    /// by all threads): one pending event per key, carrying the last snapshot.
    #[test]
    fn concurrent_appenders_coalescing() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        let j = Arc::new(j);
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        j.append(ev(&format!("/t{t}/k{}", i % 50), i)).unwrap();
                        j.append(ev(&format!("/shared{}", i % 5), t * 10_000 + i))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(j.pending_len(), 8 * 50 + 5);
        drop(j);

        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert_eq!(replay.len(), 8 * 50 + 5);
        let keys: HashSet<&str> = replay.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(keys.len(), replay.len());
        for e in &replay {
            if let Some(k) = e.path.rsplit_once("/k") {
                let k: u64 = k.1.parse().unwrap();
                assert_eq!(version(e), 1950 + k, "{}", e.path); // the thread's last write
            } else {
                assert!(version(e) % 10_000 >= 1995, "{e:?}"); // someone's last write
            }
        }
    }

    /// Appenders, workers and compactions at once: everything done exactly
    /// once, nothing left.
    #[test]
    fn concurrent_appenders_and_workers_with_compaction() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open_with(d.path(), opts(500)).unwrap();
        let j = Arc::new(j);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let appenders: Vec<_> = (0..4)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    let mut added = Vec::new();
                    for i in 0..1500 {
                        if let Appended::Added(id) =
                            j.append(ev(&format!("/t{t}/f{}", i % 300), i)).unwrap()
                        {
                            added.push(id);
                        }
                    }
                    added
                })
            })
            .collect();
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let j = j.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut finished = Vec::new();
                    loop {
                        match j.take_blocking(Duration::from_millis(20)) {
                            Some(e) if w == 0 && e.attempts == 0 && e.id % 7 == 0 => {
                                match j.failed(e.id, true, "flaky").unwrap() {
                                    Failed::Requeued => {}
                                    Failed::Superseded(_) => finished.push(e.id),
                                    other => panic!("{other:?}"),
                                }
                            }
                            Some(e) => {
                                assert!(j.done(e.id).unwrap());
                                finished.push(e.id);
                            }
                            None if stop.load(std::sync::atomic::Ordering::SeqCst) => break,
                            None => {}
                        }
                    }
                    finished
                })
            })
            .collect();
        let mut added: Vec<u64> = appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        while j.stats().pending + j.stats().in_flight > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut finished: Vec<u64> = workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        added.sort_unstable();
        finished.sort_unstable();
        assert_eq!(finished, added, "every event finished exactly once");
        let s = j.stats();
        assert!(s.compactions > 0, "{s:?}");
        drop(j);
        let (_j, replay) = Journal::open(d.path()).unwrap();
        assert!(replay.is_empty(), "{replay:?}");
    }

    /// Not a timed assertion: prints events/s for 1 and 8 appending threads,
    /// each run for about a second
    /// (`cargo test --lib journal::tests::throughput -- --nocapture`).
    #[test]
    fn throughput() {
        for threads in [1usize, 8] {
            let d = tempfile::tempdir().unwrap();
            let (j, _) = Journal::open(d.path()).unwrap();
            let j = Arc::new(j);
            let start = Instant::now();
            let deadline = start + Duration::from_secs(1);
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let j = j.clone();
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            j.append(ev(&format!("/t{t}/f{n}"), n)).unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let events: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            let secs = start.elapsed().as_secs_f64();
            let s = j.stats();
            assert_eq!(s.appended, events);
            println!(
                "journal throughput, {threads} thread(s): {:.0} events/s ({events} events, {} fdatasyncs, {:.1} events/sync)",
                events as f64 / secs,
                s.syncs,
                events as f64 / s.syncs.max(1) as f64
            );
        }
    }
}
