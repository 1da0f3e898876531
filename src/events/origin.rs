//! Changes made to local origins behind the mount's back (another process,
//! an FTP server), as the one origin watcher (`crate::watch`) reports them:
//! turned into the post onPut / onDelete events of the buckets that have
//! them, except the engine's own changes (the self-change registry).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::event::{
    AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode,
};

use super::dispatch::Engine;
use crate::bucket::store::TMP_PREFIX;
use crate::item::gone_stat;
use crate::sink::Ev;

impl Engine {
    /// The local origins of buckets with onPut or onDelete: what the origin
    /// watcher must watch for the engine.
    pub fn watch_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        for (b, br) in self.buckets.iter().enumerate() {
            if !self.watches(b) {
                continue;
            }
            roots.extend(
                br.state
                    .origins
                    .iter()
                    .filter_map(|o| o.as_local().map(|l| l.root().to_path_buf())),
            );
        }
        roots.sort();
        roots.dedup();
        roots
    }

    /// The bucket paths of an absolute path inside local origins.
    fn bucket_paths(&self, abs: &Path) -> Vec<(usize, Vec<OsString>)> {
        let mut out = Vec::new();
        for (b, br) in self.buckets.iter().enumerate() {
            if !self.watches(b) {
                continue;
            }
            for (m, o) in br.state.origins.iter().enumerate() {
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

    /// One change in a local origin seen by the watcher.
    pub fn origin_event(&self, event: &notify::Event) {
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
                if selfc.is_own_put(abs, st.as_ref()) {
                    return;
                }
                let Some(st) = st else { return };
                for (b, path) in self.bucket_paths(abs) {
                    if self.timing(b, Ev::Put).is_some() {
                        self.post(b, Ev::Put, &path, &st);
                    }
                }
            }
            Change::Delete { dir } => {
                if selfc.is_own_delete(abs) {
                    return;
                }
                let st = gone_stat(dir);
                for (b, path) in self.bucket_paths(abs) {
                    if self.timing(b, Ev::Delete).is_some() {
                        self.post(b, Ev::Delete, &path, &st);
                    }
                }
            }
        }
    }
}
