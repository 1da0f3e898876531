//! Writes under a pre onPut (SPEC §4.2): the client writes into a staging
//! file under `stateDir/prestage/`; at `close` (FUSE flush) the workflow
//! runs on the staged file, and only when it completes is the data
//! published at the real path in one step (temp file + rename on a local
//! origin, one upload on S3). When it aborts, `close` fails with EIO, the
//! staged data is kept in `stateDir/quarantine/BUCKET/PATH.UNIXMS`, and the
//! real path keeps what it had before (a file created for this write is
//! removed again).
//!
//! Concurrency: no lock is held while a workflow runs, data is copied or
//! published. Each writing handle has its own staging file, so writers of
//! the same path never share one; each publishes with one atomic step
//! (`Store::write`: temp file + rename, or one upload), and the last
//! publish wins, as the last rename would on a local file system. Within
//! one handle (closes of duplicated descriptors, from several threads),
//! settles run one at a time: a close claims the handle's turn under a
//! short mutex, releases the mutex, does the work, and hands the turn back
//! ([`Turn`]); a close that finds the turn taken waits on a condition
//! variable (which holds no lock while it waits) and then looks again, so
//! a content already published by the other close is not run twice.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::FsResult;
use super::events::fingerprint;
use super::{Core, FsError};
use crate::bucket::store::Store;
use crate::bucket::{PRESTAGE_DIR, QUARANTINE_DIR};
use crate::config::model::{Timing, WhenExist};
use crate::error::Errno;
use crate::item::Source;
use crate::item::path_text;
use crate::origin::OpenFile;
use crate::sink::Ev;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The settle state of one staged handle (see the module docs).
#[derive(Default)]
struct Settle {
    /// Fingerprint of the staged file when last published (or refused);
    /// at open, the staged file as it started.
    done: Option<[i64; 5]>,
    /// A close is running the workflow or publishing now.
    running: bool,
}

/// The right to settle a staged handle, given back (and waiters woken) when
/// dropped, also when the settle panics.
struct Turn<'a>(&'a Staged);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.settle_state().running = false;
        self.0.turn_free.notify_all();
    }
}

impl Staged {
    fn settle_state(&self) -> MutexGuard<'_, Settle> {
        self.settle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this handle's turn to settle a file with fingerprint `fp`;
    /// None when that content is settled already.
    fn claim_turn(&self, fp: [i64; 5], releasing: bool) -> Option<Turn<'_>> {
        let mut st = self.settle_state();
        while st.running {
            st = self.turn_free.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let untouched = self.untouched.load(Ordering::Relaxed);
        if st.done == Some(fp) && !(untouched && releasing) {
            return None;
        }
        self.untouched.store(false, Ordering::Relaxed);
        st.done = Some(fp);
        st.running = true;
        Some(Turn(self))
    }
}

/// A handle whose writes are staged.
pub struct Staged {
    pub bucket: usize,
    pub mount: usize,
    pub rel: Vec<OsString>,
    pub staging: PathBuf,
    /// The real file was created empty for this write (so that it can be
    /// looked up meanwhile): remove it if nothing is ever published.
    pub placeholder: bool,
    /// Mode and owner the published file gets.
    pub mode: u32,
    pub owner: (u32, u32),
    /// What was settled last, and whether a settle runs now.
    settle: Mutex<Settle>,
    /// Signalled when a running settle hands its turn back.
    turn_free: Condvar,
    /// Nothing settled yet, and nothing written: a close now is a shell
    /// closing a duplicate before writing (`>` redirections), not the end
    /// of the write; it is settled at release.
    untouched: std::sync::atomic::AtomicBool,
    published: std::sync::atomic::AtomicBool,
    /// The placeholder was removed after a refusal.
    placeholder_gone: std::sync::atomic::AtomicBool,
    /// The quarantine copy failed: the staging file is the only copy left.
    keep: std::sync::atomic::AtomicBool,
}

impl Core {
    /// Whether writes in `bucket` go through a pre onPut.
    pub(crate) fn stages_puts(&self, bucket: usize) -> bool {
        self.engine(bucket)
            .is_some_and(|(e, eb)| e.timing(eb, Ev::Put) == Some(Timing::Pre))
    }

    /// Opens a staging file for a write to `mount`/`rel`, holding the
    /// current content unless `truncate`.
    pub(crate) fn open_staged(
        &self,
        bucket: usize,
        mount: usize,
        rel: &[OsString],
        truncate: bool,
        placeholder: bool,
        st: &libc::stat,
    ) -> FsResult<(OpenFile, Staged)> {
        let (engine, _) = self.engine(bucket).ok_or(Errno::EIO)?;
        let staging = engine.state_dir().join(PRESTAGE_DIR).join(format!(
            "{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = crate::state::private::file_options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staging)
            .map_err(|e| {
                FsError::from(Errno::from(&e))
                    .context(format!(
                        "cannot create a staging file {}",
                        staging.display()
                    ))
                    .with_source(e)
                    .fault()
            })?;
        let staged = Staged {
            bucket,
            mount,
            rel: rel.to_vec(),
            staging: staging.clone(),
            placeholder,
            mode: st.st_mode & 0o7777,
            owner: (st.st_uid, st.st_gid),
            settle: Mutex::new(Settle::default()),
            turn_free: Condvar::new(),
            untouched: std::sync::atomic::AtomicBool::new(true),
            published: std::sync::atomic::AtomicBool::new(false),
            keep: std::sync::atomic::AtomicBool::new(false),
            placeholder_gone: std::sync::atomic::AtomicBool::new(false),
        };
        if !truncate && st.st_size > 0 {
            let src = self.origin(bucket, mount).open(rel, libc::O_RDONLY)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0u64;
            loop {
                let n = src.read_at(&mut buf, off)?;
                if n == 0 {
                    break;
                }
                std::os::unix::fs::FileExt::write_all_at(&file, &buf[..n], off)?;
                off += n as u64;
            }
            src.release();
        }
        if let Ok(st) = crate::origin::local::fstat(&file) {
            staged.settle_state().done = Some(fingerprint(&st));
        }
        Ok((OpenFile::Local(file), staged))
    }

    /// At close: run the workflow on what was staged since the last close
    /// and publish it, or quarantine it and fail with EIO.
    pub(crate) fn settle_staged(
        &self,
        file: &OpenFile,
        s: &Staged,
        ino: u64,
        releasing: bool,
    ) -> FsResult<()> {
        let st = file.stat()?;
        let fp = fingerprint(&st);
        let Some(_turn) = s.claim_turn(fp, releasing) else {
            return Ok(());
        };
        let (engine, eb) = self.engine(s.bucket).ok_or(Errno::EIO)?;
        let path = match self.target(ino) {
            Ok(super::Target::Path { path, .. }) => path,
            _ => {
                // Renamed over or removed while open: nothing to publish to.
                return Ok(());
            }
        };
        let mut item_st = st;
        item_st.st_mode = libc::S_IFREG | s.mode;
        item_st.st_uid = s.owner.0;
        item_st.st_gid = s.owner.1;
        if let Err(e) = engine.pre(
            eb,
            Ev::Put,
            &path,
            &item_st,
            Source::File(s.staging.clone()),
        ) {
            self.quarantine(engine.state_dir(), s, &path);
            self.drop_placeholder(s);
            return Err(FsError::msg(
                Errno::EIO,
                format!(
                    "pre onPut workflow aborted on {}; the write is not published and close fails with EIO",
                    path_text(&path)
                ),
            )
            .with_source(e));
        }
        let store = Store {
            bucket: &self.buckets[s.bucket],
            selfc: engine.self_changes(),
            tmp_dir: engine.tmp_dir(),
        };
        let shown = path_text(&path);
        let staging = &s.staging;
        // The client's file keeps the client's mode (the output-mode rule is
        // for files the daemon makes from an item) without setuid, setgid
        // and sticky: the owner is given back best effort, and a root-owned
        // setuid file must never be what a failed chown leaves (the kernel
        // clears these bits at a client's write too).
        let mode = s.mode & 0o777;
        let published = store.write(&path, &shown, WhenExist::Overwrite, mode, &|tmp| {
            std::fs::copy(staging, tmp).map_err(|e| format!("copy staged data: {e}"))?;
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("set mode: {e}"))?;
            // Owner as the client left it; best effort, like cp -p.
            let _ = std::os::unix::fs::chown(tmp, Some(s.owner.0), Some(s.owner.1));
            Ok(())
        });
        match published {
            Ok(_) => {
                s.published.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.quarantine(engine.state_dir(), s, &path);
                self.drop_placeholder(s);
                Err(FsError::msg(
                    Errno::EIO,
                    format!("cannot publish a staged write to {shown}"),
                )
                .with_source(e)
                .fault())
            }
        }
    }

    fn quarantine(&self, state_dir: &std::path::Path, s: &Staged, path: &[OsString]) {
        let mut dest = state_dir
            .join(QUARANTINE_DIR)
            .join(&self.buckets[s.bucket].name);
        for c in &path[..path.len().saturating_sub(1)] {
            dest.push(c);
        }
        let mut name = path.last().cloned().unwrap_or_default();
        name.push(format!(".{}", crate::state::now_ms()));
        dest.push(name);
        // 0700 directories, and the copy keeps the staging file's 0600: a
        // refused upload is for root to look at, not for other clients.
        let copied = dest
            .parent()
            .map_or(Ok(()), crate::state::private::create_dir)
            .and_then(|()| std::fs::copy(&s.staging, &dest).map(drop));
        match copied {
            Ok(()) => tracing::warn!(file = %dest.display(), "refused write kept in quarantine"),
            Err(e) => {
                s.keep.store(true, Ordering::Relaxed);
                tracing::error!(file = %dest.display(), staging = %s.staging.display(), error = %e,
                    "cannot quarantine a refused write; it stays in the staging file")
            }
        }
    }

    /// At release: settle what the last close did not, drop the staging
    /// file, and take back a placeholder nothing was published to. A
    /// settle that fails here is returned for the log only: the kernel
    /// has no one left to tell.
    pub(crate) fn release_staged(&self, file: &OpenFile, s: &Staged, ino: u64) -> FsResult<()> {
        let settled = self.settle_staged(file, s, ino, true);
        if !s.keep.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(&s.staging);
        }
        self.drop_placeholder(s);
        settled
    }

    /// Removes the empty file created for a write that was never published
    /// (once; a later successful close publishes it again).
    fn drop_placeholder(&self, s: &Staged) {
        if !s.placeholder
            || s.published.load(Ordering::Relaxed)
            || s.placeholder_gone.swap(true, Ordering::Relaxed)
        {
            return;
        }
        if let (Some((engine, _)), Some(abs)) = (
            self.engine(s.bucket),
            self.local_abs(s.bucket, s.mount, &s.rel),
        ) {
            engine.self_changes().deleting(&abs);
        }
        match self.origin(s.bucket, s.mount).unlink(&s.rel) {
            Ok(()) => {}
            Err(e) if e == Errno::ENOENT => {}
            Err(e) => {
                tracing::warn!(path = ?s.rel, error = %e, "cannot remove the placeholder of a refused write")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn staged() -> Staged {
        Staged {
            bucket: 0,
            mount: 0,
            rel: Vec::new(),
            staging: PathBuf::from("/nonexistent"),
            placeholder: false,
            mode: 0o644,
            owner: (0, 0),
            settle: Mutex::new(Settle::default()),
            turn_free: Condvar::new(),
            untouched: AtomicBool::new(false),
            published: AtomicBool::new(false),
            placeholder_gone: AtomicBool::new(false),
            keep: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_content_is_settled_once() {
        let s = staged();
        let fp = [1, 2, 3, 4, 5];
        assert!(s.claim_turn(fp, false).is_some());
        assert!(s.claim_turn(fp, false).is_none(), "same content again");
        assert!(
            s.claim_turn([9, 2, 3, 4, 5], false).is_some(),
            "new content"
        );
    }

    #[test]
    fn an_untouched_handle_settles_at_release() {
        let s = staged();
        s.untouched.store(true, Ordering::Relaxed);
        let fp = [1, 2, 3, 4, 5];
        s.settle_state().done = Some(fp);
        assert!(
            s.claim_turn(fp, false).is_none(),
            "a close before any write"
        );
        assert!(s.claim_turn(fp, true).is_some(), "the release settles it");
        assert!(s.claim_turn(fp, true).is_none(), "and only once");
    }

    /// A second close waits for the running settle without the mutex being
    /// held meanwhile, then finds the content settled.
    #[test]
    fn a_second_close_waits_for_the_turn_without_the_lock() {
        let s = staged();
        let fp = [1, 2, 3, 4, 5];
        let turn = s.claim_turn(fp, false).expect("first close settles");
        let s = &s;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            scope.spawn(move || {
                let again = s.claim_turn(fp, false).is_some();
                tx.send(again).expect("send");
            });
            // The waiter must not sit on the state: it stays lockable while
            // the first settle "runs".
            std::thread::sleep(Duration::from_millis(50));
            let lockable = (0..1000).any(|_| {
                let ok = s.settle.try_lock().is_ok();
                if !ok {
                    std::thread::sleep(Duration::from_millis(1));
                }
                ok
            });
            assert!(lockable, "the settle state is locked while a close waits");
            assert!(
                rx.try_recv().is_err(),
                "the waiter returned while the turn was taken"
            );
            drop(turn);
            let again = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the waiter wakes when the turn is handed back");
            assert!(!again, "the content was settled by the first close");
        });
        assert!(!s.settle_state().running);
    }
}
