//! Durable files under `stateDir`, written one way: atomic replacement
//! (`atomic`), append-only JSON lines tolerant of a torn last line
//! (`jsonl`), and lock files (`lock`). On top of them: the `item.hits`
//! counters (`hits`), and the clock every record is stamped with. The event
//! journal and the batch cursors use the same helpers.

pub mod atomic;
pub mod error;
pub mod hits;
pub mod jsonl;
pub mod lock;
pub mod private;

pub use error::StateError;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
