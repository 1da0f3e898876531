//! The records of `journal.log` (see the module doc of the journal), and
//! reading a log back at open.
//!
//! `add`/`upd` records carry `"v"`, the format of their event's names. From
//! format 2 on, `path` (and the item's `path`, `filename`, `dirname`) is the
//! lossless text form of [`crate::name`]. A record without `"v"` was written
//! by format 1, where a name that is not UTF-8 was lossy text with its exact
//! bytes in the item's `__raw_path`: [`upgrade_legacy`] turns such an event
//! into format 2 as it is read, so old journals replay with exact names.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, PostEvent};
use crate::item::split_text;
use crate::name::to_text;
use crate::state::jsonl;

/// Format 1's item field holding the exact bytes of a name that is not UTF-8.
const LEGACY_RAW_PATH: &str = "__raw_path";

/// A log record, as written (borrowing) ...
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(super) enum RecordOut<'a> {
    Meta { v: u32, next_id: u64 },
    Add { v: u32, ev: &'a PostEvent },
    Upd { v: u32, ev: &'a PostEvent },
    Retry { id: u64, attempts: u32 },
    Done { id: u64 },
    Dead { id: u64 },
}

impl<'a> RecordOut<'a> {
    pub(super) fn add(ev: &'a PostEvent) -> Self {
        RecordOut::Add {
            v: FORMAT_VERSION,
            ev,
        }
    }

    pub(super) fn upd(ev: &'a PostEvent) -> Self {
        RecordOut::Upd {
            v: FORMAT_VERSION,
            ev,
        }
    }
}

fn format_1() -> u32 {
    1
}

/// ... and as read.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(super) enum RecordIn {
    Meta {
        v: u32,
        next_id: u64,
    },
    Add {
        #[serde(default = "format_1")]
        v: u32,
        ev: PostEvent,
    },
    Upd {
        #[serde(default = "format_1")]
        v: u32,
        ev: PostEvent,
    },
    Retry {
        id: u64,
        attempts: u32,
    },
    Done {
        id: u64,
    },
    Dead {
        id: u64,
    },
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
            RecordIn::Add { v, mut ev } => {
                names_format(v, &mut ev, path, line_no)?;
                p.next_id = p.next_id.max(ev.id + 1);
                p.live.insert(ev.id, (seq, ev));
            }
            RecordIn::Upd { v, mut ev } => {
                names_format(v, &mut ev, path, line_no)?;
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

/// Brings an `add`/`upd` event of format `v` to this format; a record of a
/// newer format is refused, like a newer log.
fn names_format(v: u32, ev: &mut PostEvent, path: &Path, line_no: usize) -> io::Result<()> {
    if v > FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: line {line_no}: journal record format {v} is newer than this storgate ({FORMAT_VERSION})",
                path.display()
            ),
        ));
    }
    if v < 2 {
        upgrade_legacy(ev);
    }
    Ok(())
}

/// Turns an event of format 1 into format 2: its path becomes the lossless
/// text of its exact bytes — `__raw_path` when the name was not UTF-8, else
/// the text itself (which differs from its lossless text only when it holds
/// a code point that format 2 uses as an escape) — and so do the item's
/// `path`, `filename` and `dirname`.
pub(super) fn upgrade_legacy(ev: &mut PostEvent) {
    let raw = ev
        .item
        .get(LEGACY_RAW_PATH)
        .and_then(|v| serde_json::from_value::<Vec<u8>>(v.clone()).ok());
    let exact = to_text(raw.as_deref().unwrap_or(ev.path.as_bytes()));
    let serde_json::Value::Object(item) = &mut ev.item else {
        ev.path = exact;
        return;
    };
    let had_raw = item.remove(LEGACY_RAW_PATH).is_some();
    if had_raw || exact != ev.path {
        let (dirname, filename) = split_text(&exact);
        item.insert("path".into(), exact.clone().into());
        item.insert("filename".into(), filename.into());
        item.insert("dirname".into(), dirname.into());
    }
    ev.path = exact;
}
