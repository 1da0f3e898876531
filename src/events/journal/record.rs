//! The records of `journal.log` (see the module doc of the journal), and
//! reading a log back at open.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, PostEvent};
use crate::state::jsonl;

/// A log record, as written (borrowing) ...
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(super) enum RecordOut<'a> {
    Meta { v: u32, next_id: u64 },
    Add { ev: &'a PostEvent },
    Upd { ev: &'a PostEvent },
    Retry { id: u64, attempts: u32 },
    Done { id: u64 },
    Dead { id: u64 },
}

/// ... and as read.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(super) enum RecordIn {
    Meta { v: u32, next_id: u64 },
    Add { ev: PostEvent },
    Upd { ev: PostEvent },
    Retry { id: u64, attempts: u32 },
    Done { id: u64 },
    Dead { id: u64 },
}

/// One record as a log line.
pub(super) fn encode(rec: &RecordOut<'_>) -> io::Result<Vec<u8>> {
    jsonl::encode(rec)
}

pub(super) struct Parsed {
    /// id → (queue position, event)
    pub(super) live: HashMap<u64, (u64, PostEvent)>,
    pub(super) next_id: u64,
    pub(super) records: u64,
    /// Bytes up to the end of the last complete line.
    pub(super) valid_len: usize,
}

pub(super) fn parse_log(data: &[u8], path: &Path) -> io::Result<Parsed> {
    let mut p = Parsed {
        live: HashMap::new(),
        next_id: 1,
        records: 0,
        valid_len: 0,
    };
    let mut seq = 0u64;
    let (lines, valid_len) = jsonl::lines(data);
    p.valid_len = valid_len;
    for (line_no, line) in lines {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let rec: RecordIn = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    line = line_no,
                    error = %e,
                    text = %String::from_utf8_lossy(&line[..line.len().min(120)]),
                    "journal: skipping a corrupt record"
                );
                continue;
            }
        };
        p.records += 1;
        seq += 1;
        match rec {
            RecordIn::Meta { v, next_id } => {
                if v > FORMAT_VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: journal format {v} is newer than this storgate ({FORMAT_VERSION})",
                            path.display()
                        ),
                    ));
                }
                p.next_id = p.next_id.max(next_id);
            }
            RecordIn::Add { ev } => {
                p.next_id = p.next_id.max(ev.id + 1);
                p.live.insert(ev.id, (seq, ev));
            }
            RecordIn::Upd { ev } => {
                p.next_id = p.next_id.max(ev.id + 1);
                match p.live.get_mut(&ev.id) {
                    Some(slot) => slot.1 = ev,
                    None => {
                        // Its `add` was lost to corruption: keep the event.
                        tracing::warn!(
                            id = ev.id,
                            "journal: update of an unknown event, keeping it"
                        );
                        p.live.insert(ev.id, (seq, ev));
                    }
                }
            }
            RecordIn::Retry { id, attempts } => {
                if let Some(slot) = p.live.get_mut(&id) {
                    slot.0 = seq;
                    slot.1.attempts = attempts;
                }
            }
            RecordIn::Done { id } | RecordIn::Dead { id } => {
                p.live.remove(&id);
            }
        }
    }
    Ok(p)
}
