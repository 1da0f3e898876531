//! storgate: one FUSE file system merging local directories and S3 buckets,
//! with workflows fired by file-system events and cron-scheduled batch scans.
//!
//! Layers, each naming only the ones listed after it (see
//! `doc/ARCHITECTURE.md`; `scripts/check-layers.py` fails CI on a cycle):
//! `cli`, `daemon`, `fuse`, `fs`, `batch`, `events`, `workflow`, `sink`,
//! `bucket`, `origin`, `tree`, `item`, `filter`, `state`, `proc`, `throttle`,
//! `config`, `name`, `error`.

pub mod batch;
pub mod bucket;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod events;
pub mod filter;
pub mod fs;
pub mod fuse;
pub mod item;
pub mod name;
pub mod origin;
pub mod proc;
pub mod sink;
pub mod state;
pub mod throttle;
pub mod tree;
pub mod watch;
pub mod workflow;
