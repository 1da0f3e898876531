//! Merge rules (SPEC §3.1), hidden mounts and local-origin behaviour (§3.2).
mod common;
use common::*;

#[test]
fn harness_smoke() {
    require_fuse();
}
