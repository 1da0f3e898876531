//! Changes made to local origins behind the mount's back (another process,
//! an FTP server), as the one origin watcher (`crate::watch`) reports them:
//! turned into the post onPut / onDelete events of the buckets that have
//! them, except the engine's own changes (the self-change registry).
//!
//! A directory created or moved into an origin is walked and each entry in
//! it fires onPut (inotify reports only the directory). An event-queue
//! overflow reconciles the notify origins (`detect.rs`). Everything handled
//! here is noted in the engine's `Seen`, so a reconcile does not fire it
//! again.

use std::ffi::OsString;
use std::path::Path;

use notify::event::{
    AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode,
};

use super::dispatch::Engine;
use crate::bucket::store::TMP_PREFIX;
use crate::item::gone_stat;
use crate::sink::Ev;

impl Engine {
    /// The bucket paths of an absolute path inside notify-watched local
    /// origins.
    fn bucket_paths(&self, abs: &Path) -> Vec<(usize, Vec<OsString>)> {
        let mut out = Vec::new();
        for (b, br) in self.buckets.iter().enumerate() {
            if !self.watches(b) {
                continue;
            }
            for (m, o) in br.state.origins.iter().enumerate() {
                if self.watch_mode(b, m) != super::detect::Effective::Notify {
                    continue;
                }
                if let Some(rel) = o.as_local().and_then(|l| l.rel_of(abs)) {
                    if rel.is_empty() {
                        continue;
                    }
                    let mut path = br.state.tree.mounts[m].point.clone();
                    path.extend(rel);
                    out.push((b, path));
                }
            }
        }
        out
    }

    /// lstat of a path the watcher reported, resolved beneath the local
    /// origin that holds it (never by the absolute path: a client may have
    /// swapped a directory on the way for a symlink since).
    fn lstat_watched(&self, abs: &Path) -> Option<libc::stat> {
        self.buckets.iter().find_map(|br| {
            br.state.origins.iter().find_map(|o| {
                let l = o.as_local()?;
                let rel = l.rel_of(abs)?;
                l.lstat(&rel).ok()
            })
        })
    }

    /// One entry inotify reported: onPut unless it is storgate's own or
    /// was fired in this very state already (a new directory's walk).
    fn found_put(&self, abs: &Path, st: &libc::stat, paths: &[(usize, Vec<OsString>)]) {
        if self.seen_put(abs, st) {
            return;
        }
        self.detection.seen.put(abs, st);
        if self.self_changes().is_own_put(abs, Some(st)) {
            return;
        }
        for (b, path) in paths {
            if self.timing(*b, Ev::Put).is_some() {
                self.post(*b, Ev::Put, path, st);
            }
        }
    }

    /// One change in a local origin seen by the watcher.
    pub fn origin_event(&self, event: &notify::Event) {
        if event.need_rescan() {
            self.reconcile_notify_origins();
            return;
        }
        enum Change {
            Put,
            Delete { dir: bool },
        }
        let change = match &event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Put,
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Change::Put,
            EventKind::Create(CreateKind::Folder) => Change::Put,
            // A new file is reported when its writer closes it; only other
            // kinds (symlinks, nodes) are complete at creation.
            EventKind::Create(_) => {
                let Some(p) = event.paths.first() else { return };
                match self.lstat_watched(p) {
                    Some(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG => Change::Put,
                    _ => return,
                }
            }
            EventKind::Remove(RemoveKind::Folder) => Change::Delete { dir: true },
            EventKind::Remove(_) => Change::Delete { dir: false },
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Change::Delete { dir: false },
            _ => return,
        };
        let Some(abs) = event.paths.first() else {
            return;
        };
        // The watcher also serves the kernel caches of polled origins; their
        // changes are the pollers' (and their own-change records theirs to
        // consume).
        let paths = self.bucket_paths(abs);
        if paths.is_empty() {
            return;
        }
        if abs
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes()))
        {
            return;
        }
        let selfc = self.self_changes();
        match change {
            Change::Put => {
                let st = self.lstat_watched(abs);
                // Gone again already: nothing to process.
                let Some(st) = st else { return };
                self.found_put(abs, &st, &paths);
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    self.walk_new_dir(abs);
                }
            }
            Change::Delete { dir } => {
                self.detection.seen.deleted(abs);
                if selfc.is_own_delete(abs) {
                    return;
                }
                let st = gone_stat(dir);
                for (b, path) in &paths {
                    if self.timing(*b, Ev::Delete).is_some() {
                        self.post(*b, Ev::Delete, path, &st);
                    }
                }
            }
        }
    }
}
