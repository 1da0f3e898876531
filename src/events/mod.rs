//! File-system events: filters, dispatch, journal — see SPEC §4.

pub mod filter;
pub mod journal;
pub mod webhook;
