//! Batch scans (`onBatch`, SPEC §6): `scan` lists a bucket path in a
//! deterministic, resumable order and cuts it into chunks of matching items.

pub mod scan;
