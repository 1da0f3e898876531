//! Group commit, dead letters and compaction: the code that holds the
//! writer role and touches the log file (see "Durability and group commit"
//! and "Compaction" in the journal's module doc).

use std::fs::File;
use std::io::{self, Write};
use std::sync::MutexGuard;

use super::queue::{Entry, Inner};
use super::record::{RecordOut, encode};
use super::{DeadLetter, FORMAT_VERSION, Journal, LOG_FILE, PostEvent};
use crate::state::atomic::{rename_into_place, sync_dir};
use crate::state::jsonl;
use crate::state::now_ms;

impl Journal {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn wait<'a>(&'a self, g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        self.flushed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the log is written (`durable`: and synced) up to `lsn`,
    /// leading batches while no one else does.
    pub(super) fn wait_for<'a>(
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
    pub(super) fn write_batch<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
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

    pub(super) fn write_dead_letter(&self, event: PostEvent, error: &str) -> io::Result<()> {
        let letter = DeadLetter {
            event,
            error: error.to_string(),
            dead_at: now_ms(),
        };
        let line = jsonl::encode(&letter)?;
        self.dead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&line, true)?;
        tracing::warn!(id = letter.event.id, path = ?letter.event.path, error, "event given up (dead letter)");
        Ok(())
    }

    pub(super) fn maybe_compact(&self) {
        if !self.lock().should_compact(&self.opts) {
            return;
        }
        if let Err(e) = self.compact_inner(false) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "journal compaction failed");
        }
    }

    /// Rewrites the log with the live events, if `force` or it is due.
    pub(super) fn compact_inner(&self, force: bool) -> io::Result<bool> {
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
            ser_res = encode(&RecordOut::add(&e.ev)).map(|l| out.extend_from_slice(&l));
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

    /// Writes `data` as the new log (see [`rename_into_place`]), then syncs
    /// the directory. Returns the new log opened for appending, or the error
    /// and whether it came after the rename (the log on disk may then be
    /// either).
    pub(super) fn rewrite(&self, data: &[u8]) -> Result<File, (io::Error, bool)> {
        let f = rename_into_place(&self.dir, LOG_FILE, data).map_err(|e| (e.into(), false))?;
        sync_dir(&self.dir).map_err(|e| (e, true))?;
        Ok(f)
    }
}
