//! The event engine (SPEC §4): the journal of post events and the engine
//! that dispatches pre events inline and post events to its workers. It
//! implements [`crate::sink::EventSink`] for the file-system core.
//!
//! - `dispatch`: the engine: rules, pre and post events, workers, webhooks.
//! - `origin`: changes behind the mount's back, from the origin watcher.
//! - `detect`: change detection per mount (pollers, reconcilers, their sink).
//! - `deferred`: the retry timer and the webhook pool (no thread per request).
//! - `journal`: the durable queue of post events.
//! - `error`: [`EventError`].

mod deferred;
pub mod detect;
pub mod dispatch;
pub mod error;
pub mod journal;
mod origin;

pub use error::EventError;
