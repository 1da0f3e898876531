//! storgate's integration tests, as one test binary (`cargo test --test it`)
//! so that the suite links once. One module per area; test names read
//! `AREA::TEST` (`cargo test --test it batch::` runs one area,
//! `cargo test --test it -- --exact events::publish_on_upload` one test).
//!
//! All tests share one process and run in parallel on the default number of
//! test threads, so a test must not change process-wide state (environment,
//! umask, current directory, signal dispositions) and must name its own
//! scratch directories, buckets and ports. Shared pieces:
//! - `common`: the mount harness ([`common::Mount`]), errno and command
//!   helpers, the loopback HTTP server ([`common::http`]), the moto S3 server
//!   shared by the whole binary ([`common::s3`]), a `bindfs` share for the
//!   change-detection tests ([`common::bindfs`]), and CPU load for the
//!   throttling test ([`common::cpu`]). Every harness deadline is scaled by
//!   `STORGATE_TEST_TIME_FACTOR` (default 3, [`common::time_factor`]), so
//!   the suite passes on a busy machine.
//!
//! The data of `config_check` stays in `tests/bad-configs/` and
//! `tests/good-configs/`.

mod common;

mod batch;
mod batch_scan_s3;
mod config_check;
mod differential;
mod events;
mod hostile;
mod journal_crash;
mod mount_access;
mod mount_cli;
mod mount_merge;
mod s3_client;
mod s3_mount;
mod s3_timeouts;
mod tools;
mod watch;
mod watch_hostile;
