//! What storgate itself did to local origins, so that the origin watcher
//! can tell those changes from ones made behind the mount's back (SPEC §4.1:
//! writes made by workflows never fire events, and a write through the mount
//! fires once, at release, not a second time when inotify reports it).
//!
//! inotify does not say which process made a change, so each change is
//! recorded before it happens:
//! - a file open for writing through the mount counts as an open writer of
//!   its path until release; close-after-write events meanwhile are ours;
//! - a finished write records the file's identity (device, inode, size,
//!   mtime to the nanosecond): a later event for the path is ours while the
//!   file still has that identity; any other writer changes the mtime;
//! - a create (mkdir, symlink) or a delete leaves a one-shot token that the
//!   watcher's matching event consumes.
//!
//! Records expire after [`KEEP`], so a lost inotify event cannot make the
//! registry grow without bound or hide a much later external change.
//!
//! `storgate batch run` and `storgate workflow run` announce their changes
//! through `stateDir` ([`SelfChanges::announcing`]); the daemon's registry
//! ([`SelfChanges::watching`]) reads them whenever it does not know a change
//! itself (see [`super::selfchange_shared`]).

use std::path::{Path, PathBuf};

use super::selfchange_shared::{Kind, Reader, Record, Writer};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::FxHashMap;

/// How long a record of our own change stays valid, at least: a poller
/// must look within that time ([`SelfChanges::keep_at_least`]).
const KEEP: Duration = Duration::from_secs(60);
/// Prune expired records when the registry grows past this.
const PRUNE_AT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
}

impl Identity {
    fn of(st: &libc::stat) -> Identity {
        Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
        }
    }
}

/// A directory storgate moved into place: which one, and when.
struct MovedDir {
    dev: u64,
    ino: u64,
    wall: SystemTime,
    at: Instant,
}

struct Inner {
    keep: Duration,
    writers: FxHashMap<PathBuf, u32>,
    written: FxHashMap<PathBuf, (Identity, Instant)>,
    created: FxHashMap<PathBuf, Instant>,
    deleted: FxHashMap<PathBuf, (u32, Instant)>,
    /// Directories storgate renamed into place, with the wall-clock time:
    /// entries below them that are older than that moved with them.
    moved_dirs: FxHashMap<PathBuf, MovedDir>,
    /// Paths storgate removed or renamed away: a poller that finds the
    /// entries below one gone does not fire for them (not consumed).
    deleted_trees: FxHashMap<PathBuf, Instant>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            keep: KEEP,
            writers: FxHashMap::default(),
            written: FxHashMap::default(),
            created: FxHashMap::default(),
            deleted: FxHashMap::default(),
            moved_dirs: FxHashMap::default(),
            deleted_trees: FxHashMap::default(),
        }
    }
}

impl Inner {
    fn prune(&mut self) {
        let size = self.written.len()
            + self.created.len()
            + self.deleted.len()
            + self.moved_dirs.len()
            + self.deleted_trees.len();
        if size < PRUNE_AT {
            return;
        }
        let now = Instant::now();
        let keep = self.keep;
        self.written
            .retain(|_, (_, t)| now.duration_since(*t) < keep);
        self.created.retain(|_, t| now.duration_since(*t) < keep);
        self.deleted
            .retain(|_, (_, t)| now.duration_since(*t) < keep);
        self.moved_dirs
            .retain(|_, d| now.duration_since(d.at) < keep);
        self.deleted_trees
            .retain(|_, t| now.duration_since(*t) < keep);
    }

    /// Whether an ancestor of `path` was moved into place by storgate after
    /// the entry `st` last changed (so the entry came with it).
    fn moved_with_ancestor(&self, path: &Path, st: &libc::stat) -> bool {
        if self.moved_dirs.is_empty() {
            return false;
        }
        let changed = std::time::UNIX_EPOCH
            + Duration::new(
                st.st_ctime.max(0) as u64,
                st.st_ctime_nsec.clamp(0, 999_999_999) as u32,
            );
        path.ancestors().skip(1).any(|a| {
            self.moved_dirs
                .get(a)
                .is_some_and(|d| d.at.elapsed() < self.keep && changed <= d.wall)
        })
    }

    fn deleted_with_ancestor(&self, path: &Path) -> bool {
        !self.deleted_trees.is_empty()
            && path.ancestors().skip(1).any(|a| {
                self.deleted_trees
                    .get(a)
                    .is_some_and(|t| t.elapsed() < self.keep)
            })
    }

    fn ingest(&mut self, records: Vec<Record>) {
        let now = Instant::now();
        for r in records {
            let at = now.checked_sub(r.age).unwrap_or(now);
            match r.kind {
                Kind::Wrote([dev, ino, size, s, ns]) => {
                    let id = Identity {
                        dev: dev as u64,
                        ino: ino as u64,
                        size,
                        mtime: (s, ns),
                    };
                    self.written.insert(r.path, (id, at));
                }
                Kind::Created => {
                    self.created.insert(r.path, at);
                }
                Kind::Deleted => {
                    let e = self.deleted.entry(r.path).or_insert((0, at));
                    e.0 += 1;
                    e.1 = at;
                }
            }
        }
        self.prune();
    }
}

/// Whether (and how) changes are shared with other processes.
#[derive(Default)]
enum Shared {
    #[default]
    No,
    /// This process announces its changes in `stateDir`.
    Announce(Mutex<Writer>),
    /// This process (the daemon) also recognises announced changes.
    Watch(Mutex<Reader>),
}

/// The registry; one per daemon, shared by the core, the workflow runner and
/// the watcher.
#[derive(Default)]
pub struct SelfChanges {
    inner: Mutex<Inner>,
    shared: Shared,
}

impl SelfChanges {
    /// For `storgate batch run` / `workflow run`: every change is also
    /// announced in `state_dir` for a daemon on the same config.
    pub fn announcing(state_dir: &Path) -> SelfChanges {
        SelfChanges {
            shared: Shared::Announce(Mutex::new(Writer::new(state_dir))),
            ..SelfChanges::default()
        }
    }

    /// For the daemon: changes other storgate processes announced in
    /// `state_dir` count as its own.
    pub fn watching(state_dir: &Path) -> SelfChanges {
        SelfChanges {
            shared: Shared::Watch(Mutex::new(Reader::new(state_dir, KEEP))),
            ..SelfChanges::default()
        }
    }

    /// Keeps records at least `keep` (a poller with a long interval looks
    /// only that often).
    pub fn keep_at_least(self, keep: Duration) -> SelfChanges {
        {
            let mut g = self.lock();
            g.keep = g.keep.max(keep);
        }
        if let Shared::Watch(r) = &self.shared {
            r.lock()
                .unwrap_or_else(|e| e.into_inner())
                .keep_at_least(keep);
        }
        self
    }

    fn announce(&self, kind: Kind, path: &Path) {
        if let Shared::Announce(w) = &self.shared {
            w.lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&kind, path);
        }
    }

    /// Reads what other processes announced; false when nothing is shared.
    fn pull(&self) -> bool {
        let Shared::Watch(r) = &self.shared else {
            return false;
        };
        // The log is read without the registry's lock held.
        let records = r.lock().unwrap_or_else(|e| e.into_inner()).poll();
        if records.is_empty() {
            return false;
        }
        self.lock().ingest(records);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle that may write `path` was opened through the mount.
    pub fn writer_opened(&self, path: &Path) {
        *self.lock().writers.entry(path.to_path_buf()).or_insert(0) += 1;
    }

    /// That handle is being released; `st` is the file as it was written.
    pub fn writer_closed(&self, path: &Path, st: Option<&libc::stat>) {
        let mut g = self.lock();
        if let Some(st) = st {
            g.written
                .insert(path.to_path_buf(), (Identity::of(st), Instant::now()));
        }
        if let Some(n) = g.writers.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                g.writers.remove(path);
            }
        }
        g.prune();
    }

    /// storgate is about to give `path` the file whose stat is `st` (by
    /// renaming it into place, or having just written it).
    pub fn wrote(&self, path: &Path, st: &libc::stat) {
        let id = Identity::of(st);
        self.announce(
            Kind::Wrote([
                id.dev as i64,
                id.ino as i64,
                id.size,
                id.mtime.0,
                id.mtime.1,
            ]),
            path,
        );
        let mut g = self.lock();
        g.written.insert(path.to_path_buf(), (id, Instant::now()));
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            g.moved_dirs.insert(
                path.to_path_buf(),
                MovedDir {
                    dev: st.st_dev,
                    ino: st.st_ino,
                    wall: SystemTime::now(),
                    at: Instant::now(),
                },
            );
        }
        g.prune();
    }

    /// storgate is about to create a directory, symlink or node at `path`.
    pub fn creating(&self, path: &Path) {
        self.announce(Kind::Created, path);
        let mut g = self.lock();
        g.created.insert(path.to_path_buf(), Instant::now());
        g.prune();
    }

    /// storgate is about to remove (or rename away) `path`.
    pub fn deleting(&self, path: &Path) {
        self.announce(Kind::Deleted, path);
        let mut g = self.lock();
        let e = g
            .deleted
            .entry(path.to_path_buf())
            .or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
        g.deleted_trees.insert(path.to_path_buf(), Instant::now());
        g.prune();
    }

    /// Whether an event saying `path` was written or appeared is ours.
    /// `st` is the path's current lstat, if it still exists.
    pub fn is_own_put(&self, path: &Path, st: Option<&libc::stat>) -> bool {
        self.own_put_here(path, st) || (self.pull() && self.own_put_here(path, st))
    }

    fn own_put_here(&self, path: &Path, st: Option<&libc::stat>) -> bool {
        let mut g = self.lock();
        let keep = g.keep;
        if g.writers.contains_key(path) {
            return true;
        }
        if let Some(t) = g.created.remove(path)
            && t.elapsed() < keep
        {
            return true;
        }
        if let Some(st) = st {
            // Another directory under the name storgate moved one to (an
            // outside `rm -rf X; mv staging X`): what is below it is not ours.
            // Ancestors are asked about before what is below them.
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                && g.moved_dirs
                    .get(path)
                    .is_some_and(|d| (d.dev, d.ino) != (st.st_dev, st.st_ino))
            {
                g.moved_dirs.remove(path);
            }
            if g.moved_with_ancestor(path, st) {
                return true;
            }
        }
        match (g.written.get(path), st) {
            (Some((id, t)), Some(st)) => t.elapsed() < keep && *id == Identity::of(st),
            // Gone again already: whoever removed it fires the delete.
            (Some((_, t)), None) => t.elapsed() < keep,
            _ => false,
        }
    }

    /// Whether an event saying `path` vanished is ours (consumes the record).
    pub fn is_own_delete(&self, path: &Path) -> bool {
        self.own_delete_here(path) || (self.pull() && self.own_delete_here(path))
    }

    fn own_delete_here(&self, path: &Path) -> bool {
        let mut g = self.lock();
        let keep = g.keep;
        let Some((n, t)) = g.deleted.get_mut(path) else {
            return g.deleted_with_ancestor(path);
        };
        let own = t.elapsed() < keep;
        *n -= 1;
        if *n == 0 {
            g.deleted.remove(path);
        }
        if own {
            g.written.remove(path);
        }
        own
    }
}

/// Origins (S3) record this process's changes here too.
impl crate::origin::ChangeLog for SelfChanges {
    fn wrote(&self, path: &Path, st: &libc::stat) {
        SelfChanges::wrote(self, path, st);
    }

    fn deleting(&self, path: &Path) {
        SelfChanges::deleting(self, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(p: &Path) -> libc::stat {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(p).expect("stat");
        // SAFETY: all-zero is a valid libc::stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_dev = m.dev();
        st.st_ino = m.ino();
        st.st_size = m.size() as i64;
        st.st_mtime = m.mtime();
        st.st_mtime_nsec = m.mtime_nsec();
        st
    }

    #[test]
    fn own_write_then_external_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a");
        std::fs::write(&p, b"mine").expect("write");
        let reg = SelfChanges::default();
        reg.wrote(&p, &stat_of(&p));
        assert!(reg.is_own_put(&p, Some(&stat_of(&p))));
        assert!(reg.is_own_put(&p, Some(&stat_of(&p))), "not consumed");
        std::thread::sleep(Duration::from_millis(5));
        std::fs::write(&p, b"theirs, longer").expect("write");
        assert!(!reg.is_own_put(&p, Some(&stat_of(&p))));
    }

    #[test]
    fn open_writer_covers_events_until_closed() {
        let p = Path::new("/x/y");
        let reg = SelfChanges::default();
        reg.writer_opened(p);
        reg.writer_opened(p);
        assert!(reg.is_own_put(p, None));
        reg.writer_closed(p, None);
        assert!(reg.is_own_put(p, None));
        reg.writer_closed(p, None);
        assert!(!reg.is_own_put(p, None));
    }

    #[test]
    fn delete_and_create_tokens_are_one_shot() {
        let p = Path::new("/x/d");
        let reg = SelfChanges::default();
        assert!(!reg.is_own_delete(p));
        reg.deleting(p);
        assert!(reg.is_own_delete(p));
        assert!(!reg.is_own_delete(p));
        reg.creating(p);
        assert!(reg.is_own_put(p, None));
        assert!(!reg.is_own_put(p, None));
    }

    #[test]
    fn changes_announced_by_another_process_are_own() {
        let state = tempfile::tempdir().expect("tempdir");
        let origin = tempfile::tempdir().expect("tempdir");
        let p = origin.path().join("out");
        std::fs::write(&p, b"mine").expect("write");
        let daemon = SelfChanges::watching(state.path());
        let run = SelfChanges::announcing(state.path());
        assert!(!daemon.is_own_put(&p, Some(&stat_of(&p))));
        run.wrote(&p, &stat_of(&p));
        run.creating(&origin.path().join("d"));
        run.deleting(&origin.path().join("gone"));
        assert!(daemon.is_own_put(&p, Some(&stat_of(&p))));
        assert!(daemon.is_own_put(&origin.path().join("d"), None));
        assert!(
            !daemon.is_own_put(&origin.path().join("d"), None),
            "one-shot"
        );
        assert!(daemon.is_own_delete(&origin.path().join("gone")));
        assert!(!daemon.is_own_delete(&origin.path().join("gone")));
        // Someone else writes the path afterwards: not ours.
        std::thread::sleep(Duration::from_millis(5));
        std::fs::write(&p, b"theirs, longer").expect("write");
        assert!(!daemon.is_own_put(&p, Some(&stat_of(&p))));
        // A registry that shares nothing knows nothing of the other's.
        let other = SelfChanges::default();
        run.creating(&origin.path().join("e"));
        assert!(!other.is_own_put(&origin.path().join("e"), None));
        let log_files = std::fs::read_dir(state.path().join("selfchange"))
            .expect("log dir")
            .count();
        assert_eq!(log_files, 1);
    }
}
