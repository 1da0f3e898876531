//! Change detection wired to the engine (SPEC §4.5): which mounts are
//! watched how, the pollers of `poll` mounts and the reconcilers of
//! `notify` mounts, and the sink through which both fire post events.
//!
//! A `notify` origin also has a snapshot, reconciled at start (what changed
//! while the daemon was down), after an inotify overflow and every
//! [`NOTIFY_RECONCILE_ROUNDS`] intervals (so the snapshot stays current and
//! a restart does not fire again what inotify already fired; a clean stop
//! runs one last reconcile for the same reason). What the
//! inotify side fired since a reconcile started is in [`Seen`], so that
//! the reconcile does not fire it a second time.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::dispatch::Engine;
use crate::config::WatchMode;
use crate::origin::Backend;
use crate::sink::Ev;
use crate::watch::fstype;
use crate::watch::poll::{self, Handle, Sink, Source};

/// A notify origin is reconciled every this many intervals.
const NOTIFY_RECONCILE_ROUNDS: u32 = 10;
/// ... and at least this long apart.
const NOTIFY_RECONCILE_MIN: Duration = Duration::from_secs(300);
/// Most paths [`Seen`] holds between two reconciles; past this, a
/// reconcile may fire some changes again (at least once, never lost).
const SEEN_MAX: usize = 1_000_000;

/// How one mount's origin is watched, `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    Notify,
    Poll,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeenState {
    /// Written: (dev, ino, size, mtime s, mtime ns).
    Put([i64; 5]),
    Deleted,
}

fn identity(st: &libc::stat) -> [i64; 5] {
    // A directory's size and times change with its children; it is the
    // same directory as long as it is the same inode.
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return [st.st_dev as i64, st.st_ino as i64, 0, 0, 0];
    }
    [
        st.st_dev as i64,
        st.st_ino as i64,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
    ]
}

/// What the inotify side handled (fired or found to be storgate's own),
/// by absolute path, with the sequence number of when.
#[derive(Default)]
pub struct Seen {
    seq: AtomicU64,
    map: Mutex<FxHashMap<PathBuf, (SeenState, u64)>>,
}

impl Seen {
    fn record(&self, path: &Path, state: SeenState) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < SEEN_MAX || m.contains_key(path) {
            m.insert(path.to_path_buf(), (state, seq));
        }
    }

    pub fn put(&self, path: &Path, st: &libc::stat) {
        self.record(path, SeenState::Put(identity(st)));
    }

    pub fn deleted(&self, path: &Path) {
        self.record(path, SeenState::Deleted);
    }

    fn is(&self, path: &Path, state: SeenState) -> bool {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.get(path).is_some_and(|(s, _)| *s == state)
    }

    fn now(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Forgets what was recorded before `seq` (a reconcile that started
    /// then has it in its snapshot).
    fn forget_before(&self, seq: u64) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (_, s)| *s >= seq);
    }
}

/// The pollers and reconcilers of one engine.
#[derive(Default)]
pub struct Detection {
    pub(super) seen: Seen,
    /// Each mount's mode, `auto` resolved once (a statfs per origin).
    modes: std::sync::OnceLock<Vec<Vec<Effective>>>,
    /// The reconcilers of notify origins, with their origin.
    reconcilers: Mutex<Vec<(crate::origin::LocalOrigin, Arc<Handle>)>>,
    pollers: Mutex<Vec<Arc<Handle>>>,
}

/// Where one mount's poller fires.
struct MountSink {
    engine: Weak<Engine>,
    bucket: usize,
    point: Vec<OsString>,
    /// The origin, for a notify mount (what it fires goes into [`Seen`]).
    notify: Option<crate::origin::LocalOrigin>,
}

impl MountSink {
    fn with(&self, f: impl FnOnce(&Engine)) {
        if let Some(e) = self.engine.upgrade() {
            f(&e);
        }
    }

    fn path(&self, rel: &[OsString]) -> Vec<OsString> {
        let mut p = self.point.clone();
        p.extend_from_slice(rel);
        p
    }
}

impl Sink for MountSink {
    fn put(&self, rel: &[OsString], st: &libc::stat) {
        self.with(|e| {
            if let Some(l) = &self.notify {
                e.detection.seen.put(&l.path_of(rel), st);
            }
            if e.timing(self.bucket, Ev::Put).is_some() {
                e.post(self.bucket, Ev::Put, &self.path(rel), st);
            }
        });
    }

    fn delete(&self, rel: &[OsString], dir: bool) {
        self.with(|e| {
            if e.timing(self.bucket, Ev::Delete).is_some() {
                e.post(
                    self.bucket,
                    Ev::Delete,
                    &self.path(rel),
                    &crate::item::gone_stat(dir),
                );
            }
        });
    }

    fn is_own_put(&self, path: &Path, id: &libc::stat) -> bool {
        let Some(e) = self.engine.upgrade() else {
            return true;
        };
        (self.notify.is_some() && e.detection.seen.is(path, SeenState::Put(identity(id))))
            || e.self_changes().is_own_put(path, Some(id))
    }

    fn is_own_delete(&self, path: &Path) -> bool {
        let Some(e) = self.engine.upgrade() else {
            return true;
        };
        (self.notify.is_some() && e.detection.seen.is(path, SeenState::Deleted))
            || e.self_changes().is_own_delete(path)
    }

    fn round_start(&self) -> u64 {
        self.engine.upgrade().map_or(0, |e| e.detection.seen.now())
    }

    fn round_done(&self, started: u64) {
        if self.notify.is_some() {
            self.with(|e| e.detection.seen.forget_before(started));
        }
    }
}

/// A file name for the snapshot of `bucket`'s mount `m` at `origin`.
fn snapshot_name(bucket: &str, m: usize, origin: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    origin.hash(&mut h);
    format!("{bucket}.{m}.{:016x}.snap", h.finish())
}

impl Engine {
    /// How mount `m` of bucket `b` is watched (SPEC §4.5 `auto`: notify on
    /// local file systems, poll on shared ones and on S3).
    pub fn watch_mode(&self, b: usize, m: usize) -> Effective {
        let modes = self.detection.modes.get_or_init(|| {
            (0..self.buckets.len())
                .map(|b| {
                    (0..self.buckets[b].state.origins.len())
                        .map(|m| self.resolve_mode(b, m))
                        .collect()
                })
                .collect()
        });
        modes[b][m]
    }

    fn resolve_mode(&self, b: usize, m: usize) -> Effective {
        if !self.watches(b) {
            return Effective::Off;
        }
        let br = &self.buckets[b];
        let spec = br.state.tree.mounts[m].watch;
        match (&br.state.origins[m], spec.mode) {
            (_, WatchMode::Off) => Effective::Off,
            (Backend::S3(_), _) => Effective::Poll,
            (Backend::Local(_), WatchMode::Notify) => Effective::Notify,
            (Backend::Local(_), WatchMode::Poll) => Effective::Poll,
            (Backend::Local(l), WatchMode::Auto) => match fstype::fs_type(l.root()) {
                Ok(t) if fstype::is_shared(t) => Effective::Poll,
                Ok(_) => Effective::Notify,
                Err(e) => {
                    tracing::warn!(origin = %l.root().display(), error = %e,
                        "cannot tell the origin's file system type; watching it with inotify");
                    Effective::Notify
                }
            },
        }
    }

    /// The local roots inotify must watch for the engine (mounts in mode
    /// notify, `auto` resolved).
    pub fn notify_roots(&self) -> Vec<PathBuf> {
        let mut roots = Vec::new();
        for (b, br) in self.buckets.iter().enumerate() {
            for (m, origin) in br.state.origins.iter().enumerate() {
                if let Backend::Local(l) = origin
                    && self.watch_mode(b, m) == Effective::Notify
                {
                    roots.push(l.root().to_path_buf());
                }
            }
        }
        roots.sort();
        roots.dedup();
        roots
    }

    /// Starts the pollers and reconcilers (after inotify watches the notify
    /// roots, so that a reconcile's walk and inotify leave no gap).
    pub fn start_change_detection(self: &Arc<Self>) {
        let dir = self.state_dir().join("watch");
        if let Err(e) = crate::state::private::create_dir(&dir) {
            tracing::error!(dir = %dir.display(), error = %e,
                "cannot create the change-detection directory; changes made outside storgate are not polled");
        }
        for (b, br) in self.buckets.iter().enumerate() {
            for (m, origin) in br.state.origins.iter().enumerate() {
                let mode = self.watch_mode(b, m);
                let mount = &br.state.tree.mounts[m];
                let (source, label) = match origin {
                    Backend::Local(l) => (
                        Source::Local(l.clone()),
                        format!("{}: {}", br.name, l.root().display()),
                    ),
                    Backend::S3(o) => (
                        Source::S3(o.clone()),
                        format!("{}: {}", br.name, o.describe()),
                    ),
                };
                if mode == Effective::Off {
                    continue;
                }
                let notify = mode == Effective::Notify;
                let origin_text = match origin {
                    Backend::Local(l) => l.root().display().to_string(),
                    Backend::S3(o) => o.describe(),
                };
                let interval = mount.watch.interval;
                let period = if notify {
                    (interval * NOTIFY_RECONCILE_ROUNDS).max(NOTIFY_RECONCILE_MIN)
                } else {
                    interval
                };
                let spec = poll::Spec {
                    label: label.clone(),
                    source,
                    snapshot: dir.join(snapshot_name(&br.name, m, &origin_text)),
                    interval,
                    initial: mount.watch.initial,
                    period,
                    final_round: notify,
                };
                let sink = Arc::new(MountSink {
                    engine: Arc::downgrade(self),
                    bucket: b,
                    point: mount.point.clone(),
                    notify: origin.as_local().filter(|_| notify).cloned(),
                });
                match poll::start(spec, sink) {
                    Ok(h) => {
                        let h = Arc::new(h);
                        tracing::info!(origin = %label, mode = if notify { "notify" } else { "poll" },
                            interval = ?interval, "watching for changes made outside storgate");
                        if let (true, Some(l)) = (notify, origin.as_local()) {
                            self.detection
                                .reconcilers
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((l.clone(), h.clone()));
                        }
                        self.detection
                            .pollers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(h);
                    }
                    Err(e) => tracing::error!(origin = %label, error = %e,
                        "cannot start the poller; changes made outside storgate are not found"),
                }
            }
        }
    }

    /// An inotify queue overflow: events were lost, reconcile every notify
    /// origin now.
    pub(super) fn reconcile_notify_origins(&self) {
        tracing::warn!("the inotify event queue overflowed; reconciling the watched origins");
        for h in self
            .detection
            .reconcilers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            h.1.trigger();
        }
    }

    /// A directory appeared at `abs` in a notify origin: each reconciler
    /// of an origin holding it walks it (a moment later, once inotify
    /// watches it too). Its files fire once they have settled, like polled
    /// ones: a directory moved in while a file in it is still being
    /// written (or created, then uploaded into) must not fire half a file.
    pub(super) fn walk_new_dir(&self, abs: &Path) {
        for (origin, h) in self
            .detection
            .reconcilers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if let Some(rel) = origin.rel_of(abs) {
                let key = rel
                    .iter()
                    .map(|c| c.as_encoded_bytes())
                    .collect::<Vec<_>>()
                    .join(&b'/');
                h.walk_later(key);
            }
        }
    }

    /// Whether inotify's side already handled `abs` in exactly the state `st`.
    pub(super) fn seen_put(&self, abs: &Path, st: &libc::stat) -> bool {
        self.detection.seen.is(abs, SeenState::Put(identity(st)))
    }

    /// Stops every poller (at shutdown, before the journal's last sync).
    pub(super) fn stop_change_detection(&self) {
        let all = std::mem::take(
            &mut *self
                .detection
                .pollers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        self.detection
            .reconcilers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        // All stop at once; a hung origin (NFS) cannot hold the exit longer
        // than the wait.
        for h in &all {
            h.request_stop();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for h in &all {
            if !h.join_until(deadline) {
                tracing::warn!(
                    "a poller did not stop in time (origin not answering?); its round is redone at the next start"
                );
            }
        }
    }

    /// The longest poll interval of a watched mount (the self-change
    /// registry keeps records longer than that).
    pub(super) fn longest_interval(buckets: &[crate::bucket::BucketState]) -> Duration {
        buckets
            .iter()
            .flat_map(|b| &b.tree.mounts)
            .map(|m| m.watch.interval)
            .max()
            .unwrap_or_default()
    }
}
