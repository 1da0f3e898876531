//! The one-shot commands beside the daemon: `storgate batch run` and
//! `storgate workflow run`. They build the same bucket layer the daemon
//! does and print to the writers they are given.

pub mod batch_run;
pub mod workflow_run;

// The agreement test drives the mount core, batch scans and the workflow
// store together; only the top layer may name all three.
#[cfg(test)]
mod merge_agree;
