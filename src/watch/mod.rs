//! Change detection (SPEC §4.5): how storgate finds changes made directly
//! in its origins, not through it — an FTP server on another host writing
//! the NFS share, an upload straight into the S3 bucket.
//!
//! - [`inotify`]: the one inotify watcher of local origins (mode `notify`);
//! - [`poll`]: the periodic reconcile of an origin against its snapshot
//!   (mode `poll`; for `notify` origins at start and after an overflow);
//! - [`snapshot`]: the on-disk snapshot, streamed in key order;
//! - [`walk`]: a local origin listed through directory fds;
//! - [`fstype`]: which file systems other hosts write (mode `auto`).
//!
//! This module finds changes; what they fire is the event engine's business
//! (`events::origin`), which hands the poller a [`poll::Sink`].

pub mod fstype;
pub mod inotify;
pub mod poll;
pub mod snapshot;
pub mod walk;

pub use inotify::{OriginWatcher, Subscriber};
