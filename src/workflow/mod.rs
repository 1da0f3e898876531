//! Running one item through one workflow — see SPEC §5: templates, the
//! functions that produce outputs, the runner that ties them together and
//! writes outputs through the bucket layer's store, and the webhooks that
//! report each item. Errors are [`error::WorkflowError`].

pub mod error;
pub mod functions;
pub mod runner;
pub mod template;
#[cfg(test)]
pub(crate) mod test_http;
pub mod webhook;
