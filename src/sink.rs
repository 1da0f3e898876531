//! How the file-system core reports what it does (SPEC §4.1) without knowing
//! the event engine: `fs` holds an [`EventSink`], the engine implements it.
//! This keeps `fs` above nothing but the bucket layer, and lets the S3
//! gateway report the same events the same way.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::bucket::selfchange::SelfChanges;
use crate::config::model::Timing;
use crate::item::Source;

/// The three file-system events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    Get,
    Put,
    Delete,
}

impl Ev {
    pub fn name(self) -> &'static str {
        match self {
            Ev::Get => "onGet",
            Ev::Put => "onPut",
            Ev::Delete => "onDelete",
        }
    }

    pub fn from_name(s: &str) -> Option<Ev> {
        match s {
            "onGet" => Some(Ev::Get),
            "onPut" => Some(Ev::Put),
            "onDelete" => Some(Ev::Delete),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a pre event refused the operation: its workflow aborted. The
/// operation fails with [`PreRefusal::errno`]; `Display` is the workflow's
/// error as it is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PreRefusal {
    pub message: String,
}

impl PreRefusal {
    pub fn errno(&self) -> crate::error::Errno {
        crate::error::Errno::EIO
    }
}

/// The receiver of a mount's events; `b` is the sink's own bucket index,
/// found once with [`EventSink::bucket_index`].
pub trait EventSink: Send + Sync {
    /// The sink's index of the bucket called `name`, if it has any event.
    fn bucket_index(&self, name: &OsStr) -> Option<usize>;
    /// Whether bucket `b` has event `ev`, and when it runs.
    fn timing(&self, b: usize, ev: Ev) -> Option<Timing>;
    /// `path` was written (resets its `item.hits`).
    fn written(&self, b: usize, path: &[OsString]);
    /// Records a post event; it is durable when this returns.
    fn post(&self, b: usize, ev: Ev, path: &[OsString], st: &libc::stat);
    /// Runs a pre event while the caller waits: Ok(false) when no filter
    /// matches, Ok(true) when the workflow completed, Err when it aborted.
    fn pre(
        &self,
        b: usize,
        ev: Ev,
        path: &[OsString],
        st: &libc::stat,
        source: Source,
    ) -> Result<bool, PreRefusal>;
    /// The registry the core tells about its own changes to local origins.
    fn self_changes(&self) -> &SelfChanges;
    /// `stateDir`.
    fn state_dir(&self) -> &Path;
    /// `stateDir/tmp`, for temporary files of workflow outputs.
    fn tmp_dir(&self) -> &Path;
}
