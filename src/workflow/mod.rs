//! Running one item through one workflow — see SPEC §5.

pub mod functions;
pub mod template;
