//! Where the core fires events (SPEC §4.1): the glue between file-system
//! operations and the event engine. Every hook is a no-op without an engine
//! or when the bucket has no such event, so a mount without events pays
//! nothing but a branch.
//!
//! Besides firing, the hooks tell the engine's self-change registry what
//! the mount itself is doing to local origins, so that the origin watcher
//! does not report those changes a second time.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Core;
use super::{FsError, FsResult};
use crate::config::model::Timing;
use crate::error::Errno;
use crate::item::Source;
use crate::sink::{Ev, EventSink};

/// The event sink and, per core bucket, its index in the sink.
pub(crate) struct Wiring {
    pub engine: Arc<dyn EventSink>,
    pub index: Vec<Option<usize>>,
}

/// What a handle that may write remembers, to fire onPut at its release.
pub struct PutWatch {
    pub bucket: usize,
    /// The origin file, when it is local (for the self-change registry).
    pub abs: Option<PathBuf>,
    /// (mtime, ctime, size) at open: a passthrough write never reaches the
    /// daemon, but it changes these.
    pub before: Option<[i64; 5]>,
    /// Created, truncated at open or resized through the handle.
    pub changed: AtomicBool,
    /// The file's fingerprint when onPut last fired for this handle.
    fired: std::sync::Mutex<Option<[i64; 5]>>,
}

pub(crate) fn fingerprint(st: &libc::stat) -> [i64; 5] {
    [
        st.st_mtime,
        st.st_mtime_nsec,
        st.st_ctime,
        st.st_ctime_nsec,
        st.st_size,
    ]
}

impl Core {
    /// Connects the event engine; events fire from then on.
    pub fn set_engine(&self, engine: Arc<dyn EventSink>) {
        let index = self
            .buckets
            .iter()
            .map(|b| engine.bucket_index(&b.name))
            .collect();
        let _ = self.events.set(Wiring { engine, index });
    }

    /// The engine and its bucket index, if `bucket` has any event.
    pub(crate) fn engine(&self, bucket: usize) -> Option<(&dyn EventSink, usize)> {
        let w = self.events.get()?;
        let eb = w.index.get(bucket).copied().flatten()?;
        Some((w.engine.as_ref(), eb))
    }

    fn timing(&self, bucket: usize, ev: Ev) -> Option<(&dyn EventSink, usize, Timing)> {
        let (engine, eb) = self.engine(bucket)?;
        engine.timing(eb, ev).map(|t| (engine, eb, t))
    }

    pub(crate) fn local_abs(
        &self,
        bucket: usize,
        mount: usize,
        rel: &[OsString],
    ) -> Option<PathBuf> {
        self.origin(bucket, mount)
            .as_local()
            .map(|l| l.path_of(rel))
    }

    /// Before a read-open: the pre onGet workflow (EIO when it aborts).
    /// True when a workflow ran: it may have rewritten the file, so the
    /// kernel's cached size must not clip what this open reads.
    pub(crate) fn before_get(
        &self,
        bucket: usize,
        path: &[OsString],
        st: &libc::stat,
    ) -> FsResult<bool> {
        match self.timing(bucket, Ev::Get) {
            Some((engine, eb, Timing::Pre)) => engine
                .pre(eb, Ev::Get, path, st, Source::Bucket(path.to_vec()))
                .map_err(|e| pre_failed("onGet", path, e)),
            _ => Ok(false),
        }
    }

    /// After a successful read-open: the post onGet event.
    pub(crate) fn after_get(&self, bucket: usize, path: &[OsString], st: &libc::stat) {
        if let Some((engine, eb, Timing::Post)) = self.timing(bucket, Ev::Get) {
            engine.post(eb, Ev::Get, path, st);
        }
    }

    /// A watch for a handle that may write `rel`, or None when no one cares.
    pub(crate) fn put_watch(
        &self,
        bucket: usize,
        mount: usize,
        rel: &[OsString],
        st: Option<libc::stat>,
        changed: bool,
    ) -> Option<PutWatch> {
        let (engine, _) = self.engine(bucket)?;
        let abs = self.local_abs(bucket, mount, rel);
        if let Some(abs) = &abs {
            engine.self_changes().writer_opened(abs);
        }
        Some(PutWatch {
            bucket,
            abs,
            before: st.as_ref().map(fingerprint),
            changed: AtomicBool::new(changed),
            fired: std::sync::Mutex::new(None),
        })
    }

    /// At a close (FUSE flush) of a handle with a watch: the post onPut,
    /// journaled before `close` returns, if the content changed since the
    /// open and since the last close. A close before any write (a shell
    /// closing the duplicate of a `>` redirection) fires nothing; the
    /// release catches a created or truncated file nobody wrote to.
    pub(crate) fn flushed_writer(&self, watch: &PutWatch, wrote: bool, ino: u64, now: &libc::stat) {
        let Some((engine, eb)) = self.engine(watch.bucket) else {
            return;
        };
        let fp = fingerprint(now);
        let content_changed = wrote || watch.before.is_some_and(|b| b != fp);
        if !content_changed {
            return;
        }
        {
            let mut fired = watch.fired.lock().unwrap_or_else(|e| e.into_inner());
            if *fired == Some(fp) {
                return;
            }
            *fired = Some(fp);
        }
        if let Ok(super::Target::Path { path, .. }) = self.target(ino) {
            engine.written(eb, &path);
            if engine.timing(eb, Ev::Put) == Some(Timing::Post) {
                engine.post(eb, Ev::Put, &path, now);
            }
        }
    }

    /// At the release of a handle with a watch: the post onPut event if the
    /// handle modified the file (`now` is its stat before the close).
    pub(crate) fn released_writer(
        &self,
        watch: &PutWatch,
        wrote: bool,
        path: Option<Vec<OsString>>,
        now: Option<libc::stat>,
    ) {
        let Some((engine, eb)) = self.engine(watch.bucket) else {
            return;
        };
        if let Some(abs) = &watch.abs {
            engine.self_changes().writer_closed(abs, now.as_ref());
        }
        let modified = wrote
            || watch.changed.load(Ordering::Relaxed)
            || match (&watch.before, &now) {
                (Some(b), Some(n)) => *b != fingerprint(n),
                _ => true,
            };
        if !modified {
            return;
        }
        let (Some(path), Some(st)) = (path, now) else {
            return;
        };
        if *watch.fired.lock().unwrap_or_else(|e| e.into_inner()) == Some(fingerprint(&st)) {
            return;
        }
        engine.written(eb, &path);
        if engine.timing(eb, Ev::Put).is_some() {
            engine.post(eb, Ev::Put, &path, &st);
        }
    }

    /// Before an entry at `path` (origin `mount`/`rel`) is removed or
    /// renamed away: the pre onDelete workflow, and the stat for the post
    /// event fired by [`Core::after_delete`].
    pub(crate) fn before_delete(
        &self,
        bucket: usize,
        path: &[OsString],
        mount: usize,
        rel: &[OsString],
    ) -> FsResult<Option<libc::stat>> {
        let Some((engine, _)) = self.engine(bucket) else {
            return Ok(None);
        };
        let st = match self.timing(bucket, Ev::Delete) {
            Some((engine, eb, timing)) => {
                let st = self.origin(bucket, mount).lstat(rel)?;
                if timing == Timing::Pre {
                    engine
                        .pre(eb, Ev::Delete, path, &st, Source::Bucket(path.to_vec()))
                        .map_err(|e| pre_failed("onDelete", path, e))?;
                }
                Some(st)
            }
            None => None,
        };
        if let Some(abs) = self.local_abs(bucket, mount, rel) {
            engine.self_changes().deleting(&abs);
        }
        Ok(st)
    }

    pub(crate) fn after_delete(&self, bucket: usize, path: &[OsString], st: Option<libc::stat>) {
        if let (Some(st), Some((engine, eb, Timing::Post))) = (st, self.timing(bucket, Ev::Delete))
        {
            engine.post(eb, Ev::Delete, path, &st);
        }
    }

    /// Before the mount creates a directory, symlink or node.
    pub(crate) fn before_create(&self, bucket: usize, mount: usize, rel: &[OsString]) {
        if let (Some((engine, _)), Some(abs)) =
            (self.engine(bucket), self.local_abs(bucket, mount, rel))
        {
            engine.self_changes().creating(&abs);
        }
    }

    /// After something appeared at `path` (mkdir, symlink, truncate, the new
    /// name of a rename): onPut. Pre timing runs the workflow now; when it
    /// aborts, `undo` takes the change back and the call fails with EIO.
    pub(crate) fn after_put(
        &self,
        bucket: usize,
        path: &[OsString],
        st: &libc::stat,
        undo: impl FnOnce(),
    ) -> FsResult<()> {
        if let Some((engine, eb)) = self.engine(bucket) {
            engine.written(eb, path);
        }
        match self.timing(bucket, Ev::Put) {
            Some((engine, eb, Timing::Post)) => {
                engine.post(eb, Ev::Put, path, st);
                Ok(())
            }
            Some((engine, eb, Timing::Pre)) => {
                match engine.pre(eb, Ev::Put, path, st, Source::Bucket(path.to_vec())) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        undo();
                        Err(pre_failed("onPut", path, e))
                    }
                }
            }
            None => Ok(()),
        }
    }

    /// Before a rename of `from` (origin `mount`/`rel`) to `to`
    /// (`rel2`): pre onDelete of the old name and pre onPut of the new
    /// name, run on the file still at its old place.
    pub(crate) fn before_rename(
        &self,
        bucket: usize,
        from: &[OsString],
        to: &[OsString],
        mount: usize,
        rel: &[OsString],
        rel2: &[OsString],
    ) -> FsResult<Option<libc::stat>> {
        let Some((engine, _)) = self.engine(bucket) else {
            return Ok(None);
        };
        let st = self.origin(bucket, mount).lstat(rel)?;
        self.before_delete(bucket, from, mount, rel)?;
        if let Some((engine, eb, Timing::Pre)) = self.timing(bucket, Ev::Put) {
            engine
                .pre(eb, Ev::Put, to, &st, Source::Bucket(from.to_vec()))
                .map_err(|e| pre_failed("onPut", to, e))?;
        }
        if let Some(abs) = self.local_abs(bucket, mount, rel2) {
            engine.self_changes().wrote(&abs, &st);
        }
        Ok(Some(st))
    }

    /// After a rename: post onDelete of the old name, post onPut of the new.
    pub(crate) fn after_rename(
        &self,
        bucket: usize,
        from: &[OsString],
        to: &[OsString],
        st: Option<libc::stat>,
    ) {
        let Some(st) = st else { return };
        if let Some((engine, eb)) = self.engine(bucket) {
            engine.written(eb, to);
        }
        self.after_delete(bucket, from, Some(st));
        if let Some((engine, eb, Timing::Post)) = self.timing(bucket, Ev::Put) {
            engine.post(eb, Ev::Put, to, &st);
        }
    }
}

/// A pre workflow aborted: the operation fails with EIO. Not logged here:
/// the caller (the FUSE glue) logs the returned error once, inside the
/// request's span.
pub(crate) fn pre_failed(
    event: &'static str,
    path: &[OsString],
    reason: impl Into<super::error::BoxError>,
) -> FsError {
    FsError::msg(
        Errno::EIO,
        format!(
            "pre {event} workflow aborted on {}; the operation fails with EIO",
            crate::item::path_text(path)
        ),
    )
    .with_source(reason)
}
