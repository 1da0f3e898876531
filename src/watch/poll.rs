//! The reconcile of one origin against its snapshot (SPEC §4.5, mode
//! `poll`; also the reconcile of `notify` origins at start, periodically
//! and after an inotify overflow).
//!
//! A round lists the origin in key order (local: [`super::walk`]; S3:
//! ListObjectsV2 pages) and merges the listing with the previous snapshot,
//! streaming both, while it writes the next snapshot:
//! - a key only in the listing is new, one only in the snapshot vanished,
//!   one in both changed if its entry differs;
//! - new and changed entries fire onPut, vanished ones onDelete, through a
//!   [`Sink`] (the event engine), unless the sink says the change is
//!   storgate's own;
//! - a local file whose mtime is within `interval` of now, or that changed
//!   since it was last seen, has not settled: it is recorded as pending and
//!   re-checked alone when its mtime is `interval` old, so that a
//!   half-uploaded file is never processed and a finished one fires about
//!   `interval` after its last write. S3 objects appear whole (a PUT is
//!   atomic), so they fire at the first round that lists them;
//! - the first round of a fresh snapshot is the baseline (fires nothing)
//!   unless `initial` is `fire`.
//!
//! The new snapshot replaces the old one only once the round is complete;
//! its events are journaled (durable) before that, so a crash repeats
//! events, never loses them.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::snapshot::{
    Entry, KeyOrder, Kind, Record, SnapshotError, SnapshotReader, SnapshotWriter,
};
use super::walk::{Walk, key_comps, stat_key};
use crate::bucket::store::TMP_PREFIX;
use crate::config::WatchInitial;
use crate::error::Errno;
use crate::origin::s3::client::ObjectMeta;
use crate::origin::{LocalOrigin, OriginError, S3Origin};

/// Most files waiting to settle that are re-checked alone; past this, the
/// rest wait for the next round (memory stays bounded during a flood).
const MAX_PENDING: usize = 100_000;

/// The shortest wait before a file that just changed is looked at again.
const MIN_SETTLE: Duration = Duration::from_secs(1);

/// The origin a poller lists.
#[derive(Clone)]
pub enum Source {
    Local(LocalOrigin),
    S3(Arc<S3Origin>),
}

impl Source {
    fn order(&self) -> KeyOrder {
        match self {
            Source::Local(_) => KeyOrder::Components,
            Source::S3(_) => KeyOrder::Bytes,
        }
    }

    /// What the snapshot header names (a snapshot of another origin is
    /// not used).
    fn describe(&self) -> String {
        match self {
            Source::Local(l) => l.root().display().to_string(),
            Source::S3(o) => o.describe(),
        }
    }

    /// The self-change registry's path and identity of an entry.
    fn own_key(&self, key: &[u8], entry: &Entry, st: &libc::stat) -> (PathBuf, libc::stat) {
        match self {
            Source::Local(l) => (l.path_of(&key_comps(key)), *st),
            Source::S3(o) => (
                o.change_path(&o.full_key(&String::from_utf8_lossy(key))),
                S3Origin::change_identity(&entry.id),
            ),
        }
    }

    fn own_path(&self, key: &[u8]) -> PathBuf {
        match self {
            Source::Local(l) => l.path_of(&key_comps(key)),
            Source::S3(o) => o.change_path(&o.full_key(&String::from_utf8_lossy(key))),
        }
    }

    /// The origin path of a key (an S3 directory marker `d/` is `d`).
    fn rel(&self, key: &[u8]) -> Vec<OsString> {
        match self {
            Source::Local(_) => key_comps(key),
            Source::S3(_) => key_comps(key.strip_suffix(b"/").unwrap_or(key)),
        }
    }
}

/// Where a poller's findings go: the event engine, for one mount.
pub trait Sink: Send + Sync {
    /// `rel` (below the origin root) appeared or changed; `st` is its stat.
    fn put(&self, rel: &[OsString], st: &libc::stat);
    /// `rel` vanished.
    fn delete(&self, rel: &[OsString], dir: bool);
    /// Whether storgate made (or already fired) the state `id` of `path`.
    fn is_own_put(&self, path: &Path, id: &libc::stat) -> bool;
    /// Whether storgate removed `path` (or already fired its removal).
    fn is_own_delete(&self, path: &Path) -> bool;
    /// A round starts; the value comes back to [`Sink::round_done`].
    fn round_start(&self) -> u64 {
        0
    }
    /// The round that started with `started` committed its snapshot.
    fn round_done(&self, _started: u64) {}
}

/// One poller's settings.
pub struct Spec {
    /// For logs: bucket, mount and origin.
    pub label: String,
    pub source: Source,
    /// The snapshot file (its directory exists, 0700).
    pub snapshot: PathBuf,
    /// Settling time of a local file; also the poll interval in mode `poll`.
    pub interval: Duration,
    pub initial: WatchInitial,
    /// Time between two rounds.
    pub period: Duration,
    /// One more round when stopped (a notify origin's reconcile: the
    /// snapshot then holds what inotify fired, and the next start does not
    /// fire it again).
    pub final_round: bool,
}

/// A round that could not finish; the old snapshot stays.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("cannot list the origin: {0}")]
    Walk(Errno),
    #[error("cannot list the origin: {0}")]
    S3(#[from] OriginError),
    #[error("the listing is not in key order at {0:?}")]
    Order(String),
    #[error("snapshot {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("cannot write the snapshot: {0}")]
    Io(#[from] std::io::Error),
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundStats {
    pub entries: u64,
    pub fired: u64,
    pub pending: u64,
    /// Directories not entered (too deep).
    pub too_deep: u64,
    /// The listing failed part-way (the rest of the snapshot was kept).
    pub listing_error: Option<String>,
    /// Directories that could not be read: their entries keep their
    /// snapshot records (they neither fire nor look deleted).
    pub unreadable: u64,
}

struct Pending {
    seen: Entry,
    due: Instant,
}

/// The poller's state between rounds.
pub struct Poller {
    spec: Spec,
    sink: Arc<dyn Sink>,
    pending: HashMap<Vec<u8>, Pending>,
    /// Pending files fired by a re-check since the last round, with the
    /// state they were fired in.
    fired_between: HashMap<Vec<u8>, Entry>,
    failing: bool,
    /// The depth / unreadable warnings were given (once per origin).
    warned_deep: bool,
    warned_unreadable: bool,
}

fn wall_now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

fn nanos((s, ns): (i64, i64)) -> i128 {
    i128::from(s) * 1_000_000_000 + i128::from(ns)
}

fn entry_of_stat(st: &libc::stat) -> Entry {
    Entry {
        kind: Kind::of_mode(st.st_mode),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: (st.st_mtime, st.st_mtime_nsec),
        id: st.st_ino.to_string(),
    }
}

/// The stat the engine sees for an S3 object of a listing.
fn stat_of_object(o: &ObjectMeta, dir: bool) -> libc::stat {
    // SAFETY: all-zero is a valid libc::stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_mode = if dir {
        libc::S_IFDIR | 0o755
    } else {
        libc::S_IFREG | 0o644
    };
    st.st_nlink = 1;
    st.st_size = i64::try_from(o.size).unwrap_or(i64::MAX);
    let t = o
        .last_modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    st.st_mtime = t.as_secs() as i64;
    st.st_mtime_nsec = i64::from(t.subsec_nanos());
    st.st_ctime = st.st_mtime;
    st.st_atime = st.st_mtime;
    st
}

/// The origin listed in key order.
enum Lister<'a> {
    Local(Walk),
    S3 {
        origin: &'a Arc<S3Origin>,
        page: VecDeque<ObjectMeta>,
        token: Option<String>,
        started: bool,
        last: Option<Vec<u8>>,
    },
}

impl Lister<'_> {
    /// Whether `key` lies in a directory the listing could not read.
    fn unreadable(&self, key: &[u8]) -> bool {
        match self {
            Lister::Local(walk) => walk.covers_unreadable(key),
            Lister::S3 { .. } => false,
        }
    }

    fn open(source: &Source) -> Result<Lister<'_>, PollError> {
        Ok(match source {
            Source::Local(l) => {
                let root = l.at().map_err(PollError::Walk)?;
                Lister::Local(Walk::new(root, &[]).map_err(PollError::Walk)?)
            }
            Source::S3(origin) => Lister::S3 {
                origin,
                page: VecDeque::new(),
                token: None,
                started: false,
                last: None,
            },
        })
    }

    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Entry, libc::stat)>, PollError> {
        match self {
            Lister::Local(walk) => Ok(walk
                .next_entry()
                .map_err(PollError::Walk)?
                .map(|(k, st)| (k, entry_of_stat(&st), st))),
            Lister::S3 {
                origin,
                page,
                token,
                started,
                last,
            } => loop {
                if let Some(o) = page.pop_front() {
                    let key = o.key.as_bytes().to_vec();
                    if let Some(l) = last.as_ref()
                        && l.as_slice() >= key.as_slice()
                    {
                        return Err(PollError::Order(o.key));
                    }
                    *last = Some(key.clone());
                    let dir = o.key.ends_with('/');
                    let path = o.key.strip_suffix('/').unwrap_or(&o.key);
                    // Keys no path can name are not in the tree (SPEC §3.3).
                    let named = path.split('/').all(|c| {
                        crate::origin::s3::keys::valid_component(c) && !c.starts_with(TMP_PREFIX)
                    });
                    if !named {
                        continue;
                    }
                    let st = stat_of_object(&o, dir);
                    let entry = Entry {
                        kind: if dir { Kind::Dir } else { Kind::File },
                        size: o.size,
                        mtime: (st.st_mtime, st.st_mtime_nsec),
                        id: o.etag.clone(),
                    };
                    return Ok(Some((key, entry, st)));
                }
                if *started && token.is_none() {
                    return Ok(None);
                }
                *started = true;
                let (objects, next) = origin.poll_page(token.take())?;
                page.extend(objects);
                *token = next;
            },
        }
    }
}

impl Poller {
    pub fn new(spec: Spec, sink: Arc<dyn Sink>) -> Poller {
        Poller {
            spec,
            sink,
            pending: HashMap::new(),
            fired_between: HashMap::new(),
            failing: false,
            warned_deep: false,
            warned_unreadable: false,
        }
    }

    /// Whether a local file has not settled yet: written within `interval`
    /// (an mtime further in the future than that is a server's clock, not
    /// a write in progress).
    fn recent(&self, e: &Entry) -> bool {
        if e.kind != Kind::File || matches!(self.spec.source, Source::S3(_)) {
            return false;
        }
        let age = nanos(wall_now()) - nanos(e.mtime);
        let window = self.spec.interval.as_nanos() as i128;
        age < window && age > -window
    }

    /// When a file seen as `e` now is to be looked at again.
    fn due(&self, e: &Entry) -> Instant {
        let left = nanos(e.mtime) + self.spec.interval.as_nanos() as i128 - nanos(wall_now());
        let left = Duration::from_nanos(u64::try_from(left.max(0)).unwrap_or(u64::MAX));
        Instant::now() + left.clamp(MIN_SETTLE, self.spec.interval.max(MIN_SETTLE))
    }

    fn wait(&mut self, key: &[u8], e: &Entry) {
        if self.pending.len() < MAX_PENDING || self.pending.contains_key(key) {
            let due = self.due(e);
            self.pending.insert(
                key.to_vec(),
                Pending {
                    seen: e.clone(),
                    due,
                },
            );
        }
    }

    fn own_put(&self, key: &[u8], e: &Entry, st: &libc::stat) -> bool {
        if let Source::S3(o) = &self.spec.source
            && o.writing(&o.full_key(&String::from_utf8_lossy(key)))
        {
            return true;
        }
        let (path, id) = self.spec.source.own_key(key, e, st);
        self.sink.is_own_put(&path, &id)
    }

    /// Fires a new state unless it is storgate's own; true when it fired.
    fn fire_put(&self, key: &[u8], e: &Entry, st: &libc::stat) -> bool {
        if self.own_put(key, e, st) {
            return false;
        }
        self.sink.put(&self.spec.source.rel(key), st);
        true
    }

    fn vanished(&mut self, r: &Record, stats: &mut RoundStats) {
        self.pending.remove(&r.key);
        // A re-check since the last round may have fired it (the snapshot
        // still says pending).
        let refired = self.fired_between.remove(&r.key).is_some();
        if !r.fired && !r.before && !refired {
            // Never fired: whoever put it there and took it away again did
            // not leave a file to process.
            return;
        }
        if self.sink.is_own_delete(&self.spec.source.own_path(&r.key)) {
            return;
        }
        self.sink
            .delete(&self.spec.source.rel(&r.key), r.entry.kind == Kind::Dir);
        stats.fired += 1;
    }

    /// A state seen for the first time (new key, or a changed entry):
    /// fired now, or recorded as pending. Returns `fired` for the snapshot.
    fn appeared(
        &mut self,
        key: &[u8],
        e: &Entry,
        st: &libc::stat,
        changed: bool,
        stats: &mut RoundStats,
    ) -> bool {
        if self.own_put(key, e, st) {
            return true;
        }
        if self.recent(e) || (changed && e.kind == Kind::File && self.is_local()) {
            self.wait(key, e);
            stats.pending += 1;
            return false;
        }
        if self.fire_put(key, e, st) {
            stats.fired += 1;
        }
        true
    }

    fn is_local(&self) -> bool {
        matches!(self.spec.source, Source::Local(_))
    }

    /// One entry present in both the snapshot and the listing.
    fn compare(
        &mut self,
        r: &Record,
        key: &[u8],
        e: &Entry,
        st: &libc::stat,
        stats: &mut RoundStats,
    ) -> bool {
        // Fired by a re-check since the last round, in exactly this state
        // (whatever state the last round recorded).
        if self.fired_between.get(key) == Some(e) {
            self.pending.remove(key);
            return true;
        }
        if r.entry.same(e) {
            if r.fired {
                return true;
            }
            // Pending and unchanged since the last look: settled unless
            // its mtime is still recent.
            if self.recent(e) && !self.own_put(key, e, st) {
                if !self.pending.contains_key(key) {
                    self.wait(key, e);
                }
                stats.pending += 1;
                return false;
            }
            self.pending.remove(key);
            if self.fire_put(key, e, st) {
                stats.fired += 1;
            }
            return true;
        }
        if r.entry.kind != e.kind || (e.kind == Kind::Dir && r.entry.id != e.id) {
            // Another entry under the same name: the old one went.
            self.vanished(r, stats);
            return self.appeared(key, e, st, false, stats);
        }
        self.appeared(key, e, st, true, stats)
    }

    /// One reconcile round.
    pub fn round(&mut self) -> Result<RoundStats, PollError> {
        let source = self.spec.source.clone();
        let order = source.order();
        let origin = source.describe();
        let started = self.sink.round_start();
        let mut old = match SnapshotReader::open(&self.spec.snapshot, &origin, order) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(origin = %self.spec.label, error = %e,
                    "the change snapshot is unreadable; starting a new one (this round fires nothing)");
                None
            }
        };
        let baseline = old.is_none() && self.spec.initial == WatchInitial::Baseline;
        let mut out = SnapshotWriter::create(&self.spec.snapshot, &origin, order)?;
        let result = self.merge(&source, &mut old, baseline, &mut out);
        match result {
            Ok(stats) => {
                out.commit()?;
                self.fired_between.clear();
                self.sink.round_done(started);
                Ok(stats)
            }
            Err(e) => {
                out.abandon();
                if let PollError::Snapshot(_) = e {
                    // Unusable from here on: the next round starts afresh.
                    let _ = std::fs::remove_file(&self.spec.snapshot);
                }
                Err(e)
            }
        }
    }

    fn merge(
        &mut self,
        source: &Source,
        old: &mut Option<SnapshotReader>,
        baseline: bool,
        out: &mut SnapshotWriter,
    ) -> Result<RoundStats, PollError> {
        let order = source.order();
        let mut stats = RoundStats::default();
        let mut list = Lister::open(source)?;
        let next_old = |old: &mut Option<SnapshotReader>| match old {
            Some(r) => r.next_record(),
            None => Ok(None),
        };
        let mut o = next_old(old)?;
        // A listing that fails part-way keeps the rest of the old snapshot
        // as it was: what was fired so far is not fired again, the rest is
        // looked at by the next round.
        macro_rules! listed {
            () => {
                match list.next_entry() {
                    Ok(n) => n,
                    Err(e) => {
                        if let Some(r) = o.take() {
                            out.push(&r)?;
                        }
                        while let Some(r) = next_old(old)? {
                            out.push(&r)?;
                        }
                        self.note_listing(&list, &mut stats);
                        stats.listing_error = Some(e.to_string());
                        return Ok(stats);
                    }
                }
            };
        }
        let mut n = listed!();
        loop {
            let step = match (&o, &n) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(r), Some((k, _, _))) => order.cmp(&r.key, k),
            };
            match step {
                Ordering::Less => {
                    if let Some(r) = o.take() {
                        if list.unreadable(&r.key) {
                            out.push(&r)?;
                        } else {
                            self.vanished(&r, &mut stats);
                        }
                    }
                    o = next_old(old)?;
                }
                Ordering::Greater => {
                    if let Some((key, e, st)) = n.take() {
                        stats.entries += 1;
                        let fired = baseline || self.appeared(&key, &e, &st, false, &mut stats);
                        out.push(&Record {
                            key,
                            entry: e,
                            fired,
                            before: false,
                        })?;
                    }
                    n = listed!();
                }
                Ordering::Equal => {
                    if let (Some(r), Some((key, e, st))) = (o.take(), n.take()) {
                        stats.entries += 1;
                        let fired = self.compare(&r, &key, &e, &st, &mut stats);
                        // Same entry (not replaced by another kind or
                        // directory): what was fired of it still counts.
                        let same_entry =
                            r.entry.kind == e.kind && (e.kind != Kind::Dir || r.entry.id == e.id);
                        let before = !fired && same_entry && (r.fired || r.before);
                        out.push(&Record {
                            key,
                            entry: e,
                            fired,
                            before,
                        })?;
                    }
                    o = next_old(old)?;
                    n = listed!();
                }
            }
        }
        self.note_listing(&list, &mut stats);
        Ok(stats)
    }

    fn note_listing(&self, list: &Lister<'_>, stats: &mut RoundStats) {
        if let Lister::Local(walk) = list {
            stats.too_deep = walk.too_deep;
            stats.unreadable = walk.unreadable_count();
        }
    }

    /// A directory that appeared in a notify origin: its entries fire
    /// onPut, those still being written once they settle.
    fn walk_dir(&mut self, key: &[u8]) {
        let Source::Local(local) = self.spec.source.clone() else {
            return;
        };
        let walked = local.at().and_then(|root| {
            let mut walk = Walk::new(root, &key_comps(key))?;
            while let Some((k, st)) = walk.next_entry()? {
                let e = entry_of_stat(&st);
                if self.recent(&e) {
                    self.wait(&k, &e);
                } else {
                    self.fire_put(&k, &e, &st);
                }
            }
            Ok(())
        });
        if let Err(e) = walked {
            tracing::debug!(origin = %self.spec.label, dir = ?String::from_utf8_lossy(key), error = %e,
                "cannot list a new directory (gone again?); the next reconcile looks again");
        }
    }

    /// The earliest time a pending file is due.
    fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    /// Looks again at the pending files that are due (local origins only).
    pub fn recheck_due(&mut self) -> u64 {
        let Source::Local(local) = self.spec.source.clone() else {
            return 0;
        };
        let Ok(root) = local.at() else { return 0 };
        let now = Instant::now();
        let due: Vec<Vec<u8>> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut fired = 0;
        for key in due {
            let st = match stat_key(root, &key) {
                Ok(st) => st,
                Err(_) => {
                    // Gone or unreachable: the next round decides.
                    self.pending.remove(&key);
                    continue;
                }
            };
            let e = entry_of_stat(&st);
            let settled =
                self.pending.get(&key).is_some_and(|p| p.seen.same(&e)) && !self.recent(&e);
            if !settled {
                self.wait(&key, &e);
                continue;
            }
            self.pending.remove(&key);
            if self.fire_put(&key, &e, &st) {
                fired += 1;
            }
            self.fired_between.insert(key, e);
        }
        fired
    }

    /// Runs a round and logs it (once per failure streak at WARN).
    fn logged_round(&mut self) {
        let t = Instant::now();
        match self.round() {
            Ok(s) => {
                if s.too_deep > 0 && !self.warned_deep {
                    self.warned_deep = true;
                    tracing::warn!(origin = %self.spec.label, directories = s.too_deep,
                        limit = super::walk::MAX_DEPTH,
                        "directories nested deeper than the limit are not watched");
                }
                if s.unreadable > 0 && !self.warned_unreadable {
                    self.warned_unreadable = true;
                    tracing::warn!(origin = %self.spec.label, directories = s.unreadable,
                        "directories that cannot be read are not watched (their entries keep their last state)");
                }
                if let Some(e) = &s.listing_error {
                    tracing::warn!(origin = %self.spec.label, error = %e,
                        "the poll round's listing failed part-way; the rest waits for the next round");
                }
                if self.failing {
                    tracing::info!(origin = %self.spec.label, "change detection works again");
                    self.failing = false;
                }
                tracing::debug!(target: "storgate::watch", origin = %self.spec.label,
                    entries = s.entries, fired = s.fired, pending = s.pending,
                    elapsed_ms = t.elapsed().as_millis() as u64, "poll round");
            }
            Err(e) => {
                if self.failing {
                    tracing::debug!(origin = %self.spec.label, error = %e, "poll round failed again");
                } else {
                    tracing::warn!(origin = %self.spec.label, error = %e,
                        "poll round failed; changes made outside storgate wait for a round that succeeds");
                    self.failing = true;
                }
            }
        }
    }
}

#[derive(Default)]
struct Flags {
    trigger: bool,
    stop: bool,
    /// New directories to walk, and when (a moment after inotify reported
    /// them, so that `notify` has put its watch on them first).
    walks: Vec<(Vec<u8>, Instant)>,
}

/// How long after inotify reports a new directory it is walked.
const WALK_DELAY: Duration = Duration::from_millis(200);
/// How long a stop waits for the pollers' last rounds.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A running poller thread.
pub struct Handle {
    wake: Arc<(Mutex<Flags>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Handle {
    /// Asks for a round now (an inotify overflow).
    pub fn trigger(&self) {
        let (m, cv) = &*self.wake;
        m.lock().unwrap_or_else(|e| e.into_inner()).trigger = true;
        cv.notify_all();
    }

    /// Walks directory `key` (relative to the origin root) soon.
    pub fn walk_later(&self, key: Vec<u8>) {
        let (m, cv) = &*self.wake;
        let mut f = m.lock().unwrap_or_else(|e| e.into_inner());
        if f.walks.len() < MAX_PENDING {
            f.walks.push((key, Instant::now() + WALK_DELAY));
        } else {
            // A flood of new directories: one reconcile covers them all.
            f.trigger = true;
        }
        cv.notify_all();
    }

    /// Asks the thread to stop after its current round (and its final
    /// round, if it has one).
    pub fn request_stop(&self) {
        let (m, cv) = &*self.wake;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_all();
    }

    /// Waits for the thread until `deadline`; one still running then (a
    /// hung NFS server) is left behind so that the daemon can exit.
    pub fn join_until(&self, deadline: Instant) -> bool {
        let mut slot = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = slot.take() else { return true };
        while !t.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = t.join();
        true
    }

    /// Stops the thread and waits for it (at most [`STOP_WAIT`]).
    pub fn stop(&self) {
        self.request_stop();
        self.join_until(Instant::now() + STOP_WAIT);
    }
}

/// Starts a poller thread: a first round now, then one every `period`
/// (or when triggered), with due re-checks in between.
pub fn start(spec: Spec, sink: Arc<dyn Sink>) -> std::io::Result<Handle> {
    let wake: Arc<(Mutex<Flags>, Condvar)> = Arc::default();
    let w = wake.clone();
    let mut poller = Poller::new(spec, sink);
    let thread = std::thread::Builder::new()
        .name("storgate-poll".into())
        .spawn(move || {
            let mut next_round = Instant::now();
            loop {
                let (m, cv) = &*w;
                let mut flags = m.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if flags.stop || flags.trigger {
                        break;
                    }
                    let now = Instant::now();
                    let mut until = poller.next_due().map_or(next_round, |d| d.min(next_round));
                    if let Some(w) = flags.walks.iter().map(|(_, t)| *t).min() {
                        until = until.min(w);
                    }
                    if until <= now {
                        break;
                    }
                    flags = cv
                        .wait_timeout(flags, until - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                if flags.stop {
                    drop(flags);
                    if poller.spec.final_round {
                        poller.logged_round();
                    }
                    return;
                }
                let triggered = std::mem::take(&mut flags.trigger);
                let now = Instant::now();
                let (walks, later): (Vec<_>, Vec<_>) = std::mem::take(&mut flags.walks)
                    .into_iter()
                    .partition(|(_, t)| *t <= now);
                flags.walks = later;
                drop(flags);
                for (key, _) in walks {
                    poller.walk_dir(&key);
                }
                if triggered || Instant::now() >= next_round {
                    poller.logged_round();
                    next_round = Instant::now() + poller.spec.period;
                }
                poller.recheck_due();
            }
        })?;
    Ok(Handle {
        wake,
        thread: Mutex::new(Some(thread)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[derive(Default)]
    struct Recorder {
        puts: Mutex<Vec<String>>,
        deletes: Mutex<Vec<String>>,
        own: Mutex<BTreeSet<PathBuf>>,
    }

    fn text(rel: &[OsString]) -> String {
        rel.iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }

    impl Sink for Recorder {
        fn put(&self, rel: &[OsString], _st: &libc::stat) {
            self.puts.lock().expect("lock").push(text(rel));
        }
        fn delete(&self, rel: &[OsString], _dir: bool) {
            self.deletes.lock().expect("lock").push(text(rel));
        }
        fn is_own_put(&self, path: &Path, _id: &libc::stat) -> bool {
            self.own.lock().expect("lock").contains(path)
        }
        fn is_own_delete(&self, path: &Path) -> bool {
            self.own.lock().expect("lock").contains(path)
        }
    }

    impl Recorder {
        fn take(&self) -> (Vec<String>, Vec<String>) {
            (
                std::mem::take(&mut *self.puts.lock().expect("lock")),
                std::mem::take(&mut *self.deletes.lock().expect("lock")),
            )
        }
    }

    /// Writes `path` with an mtime a minute ago (a finished upload).
    fn old_file(path: &Path, body: &[u8]) {
        std::fs::write(path, body).expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        f.set_modified(SystemTime::now() - Duration::from_secs(60))
            .expect("set mtime");
    }

    fn poller(origin: &Path, state: &Path, initial: WatchInitial) -> (Poller, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let spec = Spec {
            label: "test".into(),
            source: Source::Local(LocalOrigin::new(origin)),
            snapshot: state.join("snap"),
            interval: Duration::from_secs(2),
            initial,
            period: Duration::from_secs(2),
            final_round: false,
        };
        (Poller::new(spec, rec.clone()), rec)
    }

    #[test]
    fn baseline_then_new_changed_and_deleted_files() {
        let o = tempfile::tempdir().expect("tempdir");
        let s = tempfile::tempdir().expect("tempdir");
        old_file(&o.path().join("before"), b"1");
        let (mut p, rec) = poller(o.path(), s.path(), WatchInitial::Baseline);
        let st = p.round().expect("baseline");
        assert_eq!((st.entries, st.fired), (1, 0));
        assert_eq!(rec.take(), (vec![], vec![]));

        std::fs::create_dir(o.path().join("d")).expect("mkdir");
        old_file(&o.path().join("d/new"), b"2");
        p.round().expect("round");
        assert_eq!(rec.take().0, ["d", "d/new"]);

        // Changed since the last look: it waits for one more look.
        old_file(&o.path().join("before"), b"longer");
        let st = p.round().expect("round");
        assert_eq!((st.fired, st.pending), (0, 1));
        assert_eq!(rec.take(), (vec![], vec![]));
        p.pending.values_mut().for_each(|w| w.due = Instant::now());
        assert_eq!(p.recheck_due(), 1);
        assert_eq!(rec.take().0, ["before"]);
        p.round().expect("round");
        assert_eq!(rec.take(), (vec![], vec![]), "fired once");

        // Fired by a re-check, then deleted before the next round: the
        // snapshot still says pending, the delete fires all the same.
        old_file(&o.path().join("before"), b"changed again");
        p.round().expect("round");
        p.pending.values_mut().for_each(|w| w.due = Instant::now());
        assert_eq!(p.recheck_due(), 1);
        assert_eq!(rec.take().0, ["before"]);
        std::fs::remove_file(o.path().join("before")).expect("rm");
        p.round().expect("round");
        assert_eq!(rec.take(), (vec![], vec!["before".to_string()]));

        std::fs::remove_file(o.path().join("d/new")).expect("rm");
        p.round().expect("round");
        assert_eq!(rec.take(), (vec![], vec!["d/new".to_string()]));
    }

    #[test]
    fn a_growing_file_fires_once_it_settles() {
        let o = tempfile::tempdir().expect("tempdir");
        let s = tempfile::tempdir().expect("tempdir");
        let (mut p, rec) = poller(o.path(), s.path(), WatchInitial::Baseline);
        p.round().expect("baseline");
        std::fs::write(o.path().join("upload"), b"part").expect("write");
        let st = p.round().expect("round");
        assert_eq!(st.pending, 1, "a fresh mtime waits");
        // Still recent at the re-check: waits again.
        p.pending.values_mut().for_each(|w| w.due = Instant::now());
        assert_eq!(p.recheck_due(), 0);
        assert_eq!(rec.take(), (vec![], vec![]));
        // Vanishing before it settled fires nothing at all.
        std::fs::remove_file(o.path().join("upload")).expect("rm");
        p.round().expect("round");
        assert_eq!(rec.take(), (vec![], vec![]));
        assert!(p.pending.is_empty());
    }

    #[test]
    fn own_changes_fire_nothing_and_restarts_catch_up() {
        let o = tempfile::tempdir().expect("tempdir");
        let s = tempfile::tempdir().expect("tempdir");
        let (mut p, rec) = poller(o.path(), s.path(), WatchInitial::Baseline);
        p.round().expect("baseline");
        old_file(&o.path().join("mine"), b"m");
        rec.own.lock().expect("lock").insert(o.path().join("mine"));
        p.round().expect("round");
        assert_eq!(rec.take(), (vec![], vec![]));
        drop(p);
        // While "stopped": an external file arrives, ours goes.
        old_file(&o.path().join("theirs"), b"t");
        std::fs::remove_file(o.path().join("mine")).expect("rm");
        let (mut p, rec2) = poller(o.path(), s.path(), WatchInitial::Baseline);
        rec2.own.lock().expect("lock").insert(o.path().join("mine"));
        p.round().expect("first round after start");
        assert_eq!(rec2.take(), (vec!["theirs".to_string()], vec![]));
    }

    #[test]
    fn initial_fire_and_an_unreadable_snapshot() {
        let o = tempfile::tempdir().expect("tempdir");
        let s = tempfile::tempdir().expect("tempdir");
        old_file(&o.path().join("a"), b"1");
        let (mut p, rec) = poller(o.path(), s.path(), WatchInitial::Fire);
        p.round().expect("round");
        assert_eq!(rec.take().0, ["a"]);
        std::fs::write(s.path().join("snap"), b"garbage\n").expect("write");
        let (mut p, rec) = poller(o.path(), s.path(), WatchInitial::Baseline);
        p.round().expect("fresh start");
        assert_eq!(rec.take(), (vec![], vec![]));
        old_file(&o.path().join("b"), b"2");
        p.round().expect("round");
        assert_eq!(rec.take().0, ["b"]);
    }
}
