//! Backends that hold a bucket's data. Today: local directories (`local`).
//! S3 origins arrive with their own issue and implement the same operations.

pub mod local;

pub use local::LocalOrigin;
