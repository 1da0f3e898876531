//! File-system events (SPEC §4): filters, the journal of post events, the
//! engine that dispatches pre and post events, webhooks, `item.hits`, and
//! the registry of storgate's own changes that keeps workflows from
//! triggering themselves.

pub mod dispatch;
pub mod filter;
pub mod hits;
pub mod item;
pub mod journal;
pub mod selfchange;
pub mod webhook;
