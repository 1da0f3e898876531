//! Durable files under `stateDir`: `item.hits` counters (`hits`), and the
//! clock every record is stamped with.

pub mod hits;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
