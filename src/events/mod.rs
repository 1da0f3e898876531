//! The event engine (SPEC §4): the journal of post events and the engine
//! that dispatches pre events inline and post events to its workers. It
//! implements [`crate::sink::EventSink`] for the file-system core.

pub mod dispatch;
pub mod journal;
