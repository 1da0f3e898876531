//! Running one item through one workflow — see SPEC §5: templates, the
//! functions that produce outputs, the bucket store outputs are written to,
//! and the runner that ties them together.

pub mod command;
pub mod functions;
pub mod runner;
pub mod store;
pub mod template;
