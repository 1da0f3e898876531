//! S3 origins. `client` is the async S3 layer (requests with errno
//! semantics, multipart upload and copy, parallel downloads); `prefetch` is the
//! per-handle sequential read-ahead on top of it; `keys` maps object keys to
//! paths; `meta` keeps POSIX attributes in s3fs-compatible user metadata;
//! `origin` is the bucket as an origin (lookups, listings, cache, namespace
//! operations) and `file` its open files (streamed reads, staged writes);
//! `flat` lists a whole subtree in key order for batch scans.

pub mod client;
mod file;
pub mod flat;
pub mod keys;
pub mod meta;
mod origin;
pub mod prefetch;

pub use file::S3File;
pub use origin::{S3Origin, runtime};
