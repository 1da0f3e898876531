//! S3 origins. `client` is the async S3 layer (requests failing with an
//! [`OriginError`](crate::origin::OriginError), multipart upload and copy,
//! parallel downloads); `prefetch` is the
//! per-handle sequential read-ahead on top of it; `keys` maps object keys to
//! paths; `meta` keeps POSIX attributes in s3fs-compatible user metadata;
//! `origin` is the bucket as an origin (lookups, listings, namespace
//! operations) with `cache` its bounded `metadataTtl` caches, and `file` its
//! open files (streamed reads, staged writes);
//! `flat` lists a whole subtree in key order for batch scans; `changes`
//! serves the change detector (poll pages, own-change records).

mod cache;
mod changes;
pub mod client;
mod file;
pub mod flat;
pub mod keys;
pub mod meta;
mod origin;
pub mod prefetch;

pub use file::{MAX_OBJECT_SIZE, S3File, clean_staging};
pub use origin::{S3Origin, runtime};
