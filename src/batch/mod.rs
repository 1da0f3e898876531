//! Batch scans (`onBatch`, SPEC §6): `scan` lists a bucket path in a
//! deterministic, resumable order and cuts it into chunks of matching items;
//! `job` runs one scan's chunks through the trigger's workflow with a cursor
//! and webhooks; `scheduler` starts scans at their cron ticks in the daemon.

pub mod error;
pub mod job;
pub mod scan;
pub mod scheduler;

pub use error::BatchError;
