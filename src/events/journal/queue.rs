//! The journal's in-memory state, guarded by one mutex: every live event,
//! the queue of pending ones, the key index used for coalescing, the buffer
//! of records not yet written and the log positions of group commit.

use std::collections::{BTreeMap, HashMap};
use std::io;

use super::record::{RecordOut, encode};
use super::{JournalOptions, JournalStats, Key, PostEvent};

pub(super) struct Entry {
    pub(super) ev: PostEvent,
    /// Queue position: smaller runs first.
    pub(super) seq: u64,
    /// The event may be handed out once the log is synced up to here.
    pub(super) ready_lsn: u64,
    pub(super) taken: bool,
}

#[derive(Default)]
pub(super) struct Inner {
    /// Every live event: pending or taken.
    pub(super) entries: HashMap<u64, Entry>,
    /// Pending, not taken: seq → id.
    pub(super) queue: BTreeMap<u64, u64>,
    /// Pending, not taken: key → id.
    pub(super) index: HashMap<Key, u64>,
    pub(super) next_id: u64,
    pub(super) next_seq: u64,

    /// Serialised records not yet written.
    pub(super) buf: Vec<u8>,
    /// Sequence number of the last record put in `buf`.
    pub(super) lsn: u64,
    /// Last record that must be synced before its caller goes on.
    pub(super) sync_lsn: u64,
    pub(super) written_lsn: u64,
    pub(super) durable_lsn: u64,
    /// Someone is writing the log (a group-commit leader or a compaction).
    pub(super) writer_busy: bool,
    pub(super) broken: Option<(io::ErrorKind, String)>,
    pub(super) stats: JournalStats,
}

impl Inner {
    pub(super) fn push(&mut self, rec: &RecordOut<'_>, needs_sync: bool) -> io::Result<u64> {
        let line = encode(rec)?;
        Ok(self.push_line(&line, needs_sync))
    }

    pub(super) fn push_line(&mut self, line: &[u8], needs_sync: bool) -> u64 {
        self.buf.extend_from_slice(line);
        self.lsn += 1;
        if needs_sync {
            self.sync_lsn = self.lsn;
        }
        self.stats.log_records += 1;
        self.lsn
    }

    pub(super) fn check_broken(&self) -> io::Result<()> {
        match &self.broken {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!("event journal unusable after a write error: {msg}"),
            )),
        }
    }

    pub(super) fn should_compact(&self, opts: &JournalOptions) -> bool {
        let records = self.stats.log_records;
        records >= opts.compact_min_records.max(1) && (self.entries.len() as u64) * 2 < records
    }

    /// Removes a live event from every structure; returns it.
    pub(super) fn remove(&mut self, id: u64) -> Option<Entry> {
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

    pub(super) fn take(&mut self) -> Option<PostEvent> {
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

    pub(super) fn refresh_counts(&mut self) {
        self.stats.pending = self.queue.len();
        self.stats.in_flight = self.entries.len() - self.queue.len();
        self.stats.broken = self.broken.is_some();
    }
}
