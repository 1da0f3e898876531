//! S3 origins. `client` is the async S3 layer (requests with errno
//! semantics, multipart upload and copy, parallel downloads); `prefetch` is the
//! per-handle sequential read-ahead on top of it.

pub mod client;
pub mod prefetch;
