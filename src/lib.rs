//! storgate: one FUSE file system merging local directories and S3 buckets,
//! with workflows fired by file-system events and cron-scheduled batch scans.

pub mod batch;
pub mod config;
pub mod daemon;
pub mod error;
pub mod events;
pub mod fs;
pub mod fuse;
pub mod origin;
pub mod tree;
pub mod workflow;
