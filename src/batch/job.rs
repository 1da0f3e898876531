//! One run of an `onBatch` scan (SPEC §6): the scan cut into chunks of
//! `chunkSize` matching items, each chunk's items run through the trigger's
//! workflow by a pool of workers (the same runner as file-system events),
//! the chunk and item webhooks, and the cursor.
//!
//! Cursor (`stateDir/cursors/BUCKET.INDEX.json`):
//! - `continue`: after each completed chunk the marker of its last item is
//!   written (temp file + rename + fsync); the next chunk, a restarted daemon
//!   or the next tick starts after it; reaching the end removes the file.
//!   An interrupted chunk runs again, so only its items can run twice.
//! - `reset`: every chunk is extracted from the beginning, skipping what this
//!   run already handled (so an item that stays, or keeps failing, cannot
//!   make the run loop); nothing is persisted.
//!
//! A run holds `stateDir/cursors/BUCKET.INDEX.lock` (`File::try_lock`), so the daemon's
//! schedule and `storgate batch run` never run the same scan at once.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::BatchError;
use super::scan::{Marker, Scan, ScanItem};
use crate::bucket::BucketState;
use crate::config::model::{BatchEvent, CursorPolicy, Webhook, Workflow};
use crate::filter::CompiledFilter;
use crate::item::Source;
use crate::item::{item_of, path_text};
use crate::state::StateError;
use crate::state::atomic::{clean_stale, write_atomic};
use crate::state::hits::HitStore;
use crate::state::lock::LockFile;
use crate::state::now_ms;
use crate::throttle::CpuGate;
use crate::workflow::runner::{Outcome, Runner};
use crate::workflow::webhook::{WebhookCaller, WebhookEnv};

/// Counters of a run, also shown while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub examined: AtomicU64,
    pub matched: AtomicU64,
    pub completed: AtomicU64,
    pub aborted: AtomicU64,
    pub skipped: AtomicU64,
    pub chunks: AtomicU64,
}

/// What a finished (or stopped) run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub examined: u64,
    pub matched: u64,
    pub completed: u64,
    pub aborted: u64,
    pub skipped: u64,
    pub chunks: u64,
    pub elapsed: Duration,
    /// Stopped before the end (shutdown): the cursor stays.
    pub interrupted: bool,
}

#[derive(Serialize, Deserialize)]
struct CursorFile {
    batch: String,
    seq: u64,
    marker: Marker,
}

/// Everything a run needs.
pub struct Job<'a> {
    pub bucket: &'a BucketState,
    pub bucket_name: &'a str,
    pub index: usize,
    pub event: &'a BatchEvent,
    pub workflow: &'a Workflow,
    pub runner: &'a Runner,
    pub webhooks: &'a WebhookCaller,
    pub gate: &'a CpuGate,
    /// `item.hits` (SPEC §5.2): onGet counts kept by the event engine.
    pub hits: &'a HitStore,
    pub state_dir: &'a Path,
    pub workers: usize,
    pub stop: &'a AtomicBool,
    pub progress: &'a Progress,
}

impl Job<'_> {
    fn cursor_path(&self) -> PathBuf {
        self.state_dir
            .join("cursors")
            .join(format!("{}.{}.json", self.bucket_name, self.index))
    }

    fn load_cursor(&self) -> Option<CursorFile> {
        let text = std::fs::read_to_string(self.cursor_path()).ok()?;
        match serde_json::from_str(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %self.cursor_path().display(), error = %e,
                    "unreadable scan cursor; starting from the beginning");
                None
            }
        }
    }

    /// Writes the cursor atomically (temp file, sync, rename, directory
    /// sync), so a crash leaves the old cursor or the new one.
    fn save_cursor(&self, c: &CursorFile) -> Result<(), StateError> {
        let path = self.cursor_path();
        let text = serde_json::to_vec(c)
            .map_err(|e| StateError::io("cannot encode", &path, std::io::Error::other(e)))?;
        let dir = path.parent().unwrap_or(self.state_dir);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        write_atomic(dir, name, &text).map(drop)
    }

    fn clear_cursor(&self) {
        match std::fs::remove_file(self.cursor_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %self.cursor_path().display(), error = %e, "cannot clear the scan cursor")
            }
        }
    }

    /// Takes the scan's lock ([`StateError::Busy`] when another run holds
    /// it), and removes the temp files of an interrupted cursor write.
    fn lock(&self) -> Result<LockFile, StateError> {
        let dir = self.state_dir.join("cursors");
        crate::state::private::own_dir(&dir)
            .map_err(|e| StateError::io("cannot create", &dir, e))?;
        let lock =
            LockFile::try_acquire(&dir.join(format!("{}.{}.lock", self.bucket_name, self.index)))?;
        let cursor = format!("{}.{}.json", self.bucket_name, self.index);
        let _ = clean_stale(&dir, &cursor);
        Ok(lock)
    }

    fn hook(
        &self,
        which: &'static str,
        hook: &Option<Webhook>,
        path: &str,
        payload: serde_json::Value,
    ) {
        let Some(hook) = hook else { return };
        let env = WebhookEnv {
            event: "onBatch",
            bucket: self.bucket_name,
            path,
            hook: which,
        };
        // Failures are logged and counted by the caller; never fatal.
        let _ = self.webhooks.call(hook, &payload, &env);
    }

    fn payload(
        &self,
        which: &str,
        item: Option<&crate::item::Item>,
        outcome: Option<&Outcome>,
        chunk: (&str, u64, usize),
    ) -> serde_json::Value {
        serde_json::json!({
            "event": "onBatch",
            "hook": which,
            "bucket": self.bucket_name,
            "workflow": self.workflow.name,
            "item": item,
            "outputs": outcome.map(|o| o.outputs.clone()).unwrap_or_default(),
            "error": outcome.and_then(|o| o.error.clone()),
            "chunk": {"batch": chunk.0, "seq": chunk.1, "size": chunk.2},
        })
    }

    /// Runs the scan to its end (or until `stop`).
    pub fn run(&self) -> Result<Summary, BatchError> {
        let started = Instant::now();
        let _lock = self.lock()?;
        let filter =
            CompiledFilter::new(self.event.filter.as_ref()).map_err(|e| BatchError::Filter {
                message: e.to_string(),
            })?;
        let mut scan = Scan::new(self.bucket, &self.event.path, &filter, self.event.traverse)?;
        let continuing = self.event.cursor == CursorPolicy::Continue;
        let (batch, mut seq, mut after) = match self.load_cursor().filter(|_| continuing) {
            Some(c) => {
                tracing::info!(bucket = self.bucket_name, index = self.index, batch = %c.batch, seq = c.seq,
                    "resuming the scan after its last completed chunk");
                (c.batch, c.seq, Some(c.marker))
            }
            None => (format!("{}-{}", self.bucket_name, now_ms()), 0, None),
        };
        let chunk_size = usize::try_from(self.event.chunk_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut handled: HashSet<Vec<OsString>> = HashSet::new();
        let mut interrupted = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            let chunk = if continuing {
                let (items, examined) = scan.next_chunk(after.as_ref(), chunk_size)?;
                self.progress
                    .examined
                    .fetch_add(examined, Ordering::Relaxed);
                items
            } else {
                self.fresh_chunk(&mut scan, &handled, chunk_size)?
            };
            let Some(last) = chunk.last() else { break };
            let last_marker = scan.marker_of(last);
            seq += 1;
            let size = chunk.len();
            self.progress
                .matched
                .fetch_add(size as u64, Ordering::Relaxed);
            self.hook(
                "onChunkExtracted",
                &self.event.webhooks.on_chunk_extracted,
                &self.event.path,
                self.payload("onChunkExtracted", None, None, (&batch, seq, size)),
            );
            let finished = self.run_chunk(&chunk, (&batch, seq, size));
            if !continuing {
                handled.extend(chunk.iter().map(|i| i.path.clone()));
            }
            if !finished {
                interrupted = true;
                break;
            }
            self.progress.chunks.fetch_add(1, Ordering::Relaxed);
            self.hook(
                "onChunkCompleted",
                &self.event.webhooks.on_chunk_completed,
                &self.event.path,
                self.payload("onChunkCompleted", None, None, (&batch, seq, size)),
            );
            if continuing {
                self.save_cursor(&CursorFile {
                    batch: batch.clone(),
                    seq,
                    marker: last_marker.clone(),
                })?;
                after = Some(last_marker);
            }
        }
        if !interrupted && continuing {
            self.clear_cursor();
        }
        let p = self.progress;
        Ok(Summary {
            examined: p.examined.load(Ordering::Relaxed),
            matched: p.matched.load(Ordering::Relaxed),
            completed: p.completed.load(Ordering::Relaxed),
            aborted: p.aborted.load(Ordering::Relaxed),
            skipped: p.skipped.load(Ordering::Relaxed),
            chunks: p.chunks.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            interrupted,
        })
    }

    /// `reset`: the first `n` items from the beginning that this run has
    /// not handled yet.
    fn fresh_chunk(
        &self,
        scan: &mut Scan,
        handled: &HashSet<Vec<OsString>>,
        n: usize,
    ) -> Result<Vec<ScanItem>, BatchError> {
        let mut out = Vec::new();
        let mut after: Option<Marker> = None;
        loop {
            let (items, examined) = scan.next_chunk(after.as_ref(), n)?;
            self.progress
                .examined
                .fetch_add(examined, Ordering::Relaxed);
            let Some(last) = items.last() else {
                return Ok(out);
            };
            after = Some(scan.marker_of(last));
            for item in items {
                if !handled.contains(&item.path) {
                    out.push(item);
                    if out.len() == n {
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// Runs every item of a chunk; false when stopped before all ran.
    fn run_chunk(&self, chunk: &[ScanItem], info: (&str, u64, usize)) -> bool {
        let next = Mutex::new(0usize);
        let all_ran = AtomicBool::new(true);
        std::thread::scope(|s| {
            for _ in 0..self.workers.clamp(1, chunk.len().max(1)) {
                s.spawn(|| {
                    loop {
                        if self.stop.load(Ordering::Relaxed) {
                            all_ran.store(false, Ordering::Relaxed);
                            return;
                        }
                        let i = {
                            let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
                            let i = *g;
                            *g += 1;
                            i
                        };
                        let Some(item) = chunk.get(i) else { return };
                        // With the item in hand: a pass of a throttling pause
                        // (one per period) is never spent on an empty chunk.
                        self.gate.wait_ready(self.stop);
                        if self.stop.load(Ordering::Relaxed) {
                            all_ran.store(false, Ordering::Relaxed);
                            return;
                        }
                        self.run_item(item, info);
                    }
                });
            }
        });
        all_ran.load(Ordering::Relaxed)
    }

    fn run_item(&self, scanned: &ScanItem, info: (&str, u64, usize)) {
        let text = path_text(&scanned.path);
        let item = item_of(
            &scanned.path,
            &scanned.st,
            self.hits.get(self.bucket_name, &text),
        );
        let outcome = self.runner.run(
            self.bucket,
            self.workflow,
            &item,
            &Source::Listed(scanned.path.clone(), scanned.st),
            &self.event.path,
        );
        if outcome.gone {
            // Gone since it was listed (moved or deleted by someone else).
            self.progress.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(bucket = self.bucket_name, path = ?text, "batch item gone before it ran");
            return;
        }
        let (which, hook) = match &outcome.error {
            None => {
                self.progress.completed.fetch_add(1, Ordering::Relaxed);
                ("onItemCompleted", &self.event.webhooks.on_item_completed)
            }
            Some(e) => {
                self.progress.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(bucket = self.bucket_name, path = ?text, error = %e, "batch item aborted");
                ("onItemAborted", &self.event.webhooks.on_item_aborted)
            }
        };
        self.hook(
            which,
            hook,
            &text,
            self.payload(which, Some(&item), Some(&outcome), info),
        );
    }
}

/// Shared by the scheduler's runs: a handle that stops them.
pub type StopFlag = Arc<AtomicBool>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Config;

    struct Setup {
        dir: tempfile::TempDir,
        cfg: Config,
        buckets: Vec<BucketState>,
        runner: Runner,
        hits: HitStore,
    }

    /// 25 files `in/dNN/fNN` and a scan of `/in` with `chunk` items per
    /// chunk, `cursor`, and `workflow` (JSON).
    fn setup(chunk: u64, cursor: &str, workflow: serde_json::Value) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for i in 0..25 {
            let d = root.join(format!("in/d{:02}", i / 10));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join(format!("f{i:02}")), format!("{i}")).expect("write");
        }
        std::fs::create_dir_all(root.join("out")).expect("mkdir");
        let text = serde_json::json!({
            "stateDir": root.join("state"),
            "throttling": {"enable": false},
            "buckets": [{"meta": {"name": "b"},
                "mounts": [
                    {"mountPoint": "/in", "originPath": root.join("in")},
                    {"mountPoint": "/out", "originPath": root.join("out"), "expose": false}],
                "events": {"onBatch": [{"enable": true, "chunkSize": chunk, "path": "/in",
                    "cursor": cursor, "schedule": "0 0 1 1 *", "filter": {"recursive": true},
                    "trigger": {"workflow": "w"}}]},
                "workflows": [workflow]}]
        })
        .to_string();
        let cfg = crate::config::load_str(&text)
            .unwrap_or_else(|e| panic!("config: {e:?}"))
            .config;
        let buckets = crate::bucket::build_buckets(&cfg).expect("buckets");
        let tmp = root.join("state/tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        let runner = Runner::new(Default::default(), tmp, None);
        let hits = HitStore::open(&root.join("state"));
        Setup {
            dir,
            cfg,
            buckets,
            runner,
            hits,
        }
    }

    fn run(s: &Setup, stop: &AtomicBool, progress: &Progress, workers: usize) -> Summary {
        let b = &s.cfg.buckets[0];
        let gate = CpuGate::disabled();
        let webhooks = WebhookCaller::new();
        let job = Job {
            bucket: &s.buckets[0],
            bucket_name: "b",
            index: 0,
            event: &b.events.on_batch[0],
            workflow: &b.workflows[0],
            runner: &s.runner,
            webhooks: &webhooks,
            gate: &gate,
            hits: &s.hits,
            state_dir: &s.cfg.state_dir,
            workers,
            stop,
            progress,
        };
        job.run().expect("scan runs")
    }

    fn outputs(s: &Setup) -> usize {
        std::fs::read_dir(s.dir.path().join("out"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    #[test]
    fn continue_resumes_after_the_last_completed_chunk() {
        let s = setup(
            10,
            "continue",
            serde_json::json!({"name": "w", "tasks": [{
                "function": {"exec": ["sh", "-c", "sleep 0.05; cat"]},
                "savePath": "/out/{{ item.filename }}"}]}),
        );
        let stop = AtomicBool::new(false);
        let progress = Progress::default();
        // Stop once the first chunk completed: the second is cut short.
        let first = std::thread::scope(|sc| {
            sc.spawn(|| {
                while progress.chunks.load(Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                stop.store(true, Ordering::Relaxed);
            });
            run(&s, &stop, &progress, 1)
        });
        assert!(first.interrupted);
        assert_eq!(first.chunks, 1);
        let cursor = s.cfg.state_dir.join("cursors/b.0.json");
        let saved: CursorFile =
            serde_json::from_str(&std::fs::read_to_string(&cursor).expect("cursor kept"))
                .expect("cursor parses");
        assert_eq!(saved.seq, 1);
        assert_eq!(
            saved
                .marker
                .path
                .last()
                .map(|n| n.to_string_lossy().into_owned()),
            Some("f09".to_string())
        );
        // A new run starts after f09: 15 items, the same batch, seq 2 and 3.
        let second = run(&s, &AtomicBool::new(false), &Progress::default(), 4);
        assert!(!second.interrupted);
        assert_eq!(
            (second.matched, second.completed, second.chunks),
            (15, 15, 2)
        );
        assert_eq!(outputs(&s), 25);
        assert!(!cursor.exists(), "a finished scan clears its cursor");
        // The next run starts from the beginning again.
        let third = run(&s, &AtomicBool::new(false), &Progress::default(), 4);
        assert_eq!(third.matched, 25);
    }

    #[test]
    fn reset_terminates_when_items_stay_or_fail() {
        // onComplete none: every item stays; reset must not loop.
        let s = setup(
            7,
            "reset",
            serde_json::json!({"name": "w", "tasks": [{"savePath": "/out/{{ item.filename }}"}]}),
        );
        let r = run(&s, &AtomicBool::new(false), &Progress::default(), 3);
        assert_eq!((r.matched, r.completed, r.chunks), (25, 25, 4));
        assert!(!s.cfg.state_dir.join("cursors/b.0.json").exists());

        let s = setup(
            7,
            "reset",
            serde_json::json!({"name": "w", "tasks": [{
                "function": {"exec": ["false"]}, "savePath": "/out/x"}]}),
        );
        let r = run(&s, &AtomicBool::new(false), &Progress::default(), 3);
        assert_eq!((r.matched, r.aborted, r.completed), (25, 25, 0));
    }

    #[test]
    fn reset_with_delete_moves_everything() {
        let s = setup(
            6,
            "reset",
            serde_json::json!({"name": "w",
                "tasks": [{"savePath": "/out/{{ item.filename }}"}],
                "onComplete": {"src": {"op": "delete"}}}),
        );
        let r = run(&s, &AtomicBool::new(false), &Progress::default(), 2);
        assert_eq!((r.matched, r.completed, r.chunks), (25, 25, 5));
        assert_eq!(outputs(&s), 25);
        let left = walk_files(&s.dir.path().join("in"));
        assert_eq!(left, 0, "sources deleted");
    }

    fn walk_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk_files(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}
