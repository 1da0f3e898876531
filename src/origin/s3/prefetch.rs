//! Per-handle read-ahead for one S3 object pinned to one ETag.
//!
//! A [`Prefetcher`] serves the reads of one open handle. Sequential reads (at
//! the offset where the last read ended, or inside what is already queued)
//! keep a read-ahead window in flight: it starts at [`INITIAL_WINDOW`] and
//! doubles each time the reader has consumed half of what was fetched ahead,
//! up to [`MAX_WINDOW`] (see [`refill`]); the window is fetched as
//! parallel ranged GETs of at most [`PART_SIZE`] bytes, running in the
//! background on the tokio runtime. A read anywhere else drops the queue and
//! does one ranged GET of just the bytes asked for (a following sequential
//! read starts the window again).
//!
//! Every GET carries `If-Match: <pinned ETag>`: once the object is
//! overwritten, reads of bytes not yet fetched fail with ESTALE; a read never
//! mixes bytes of two versions. Memory per handle is bounded by the window
//! plus a part behind the reader ([`MAX_WINDOW`] + [`PART_SIZE`] +
//! [`RETAIN_BEHIND`] + one read).
//!
//! FUSE threads call `runtime.block_on(prefetcher.read(..))`; nothing here
//! blocks a thread.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::client::{MIB, S3Client};
use crate::error::Errno;
use crate::origin::{OriginError, OriginResult};

/// The first read-ahead window after a (re)start.
pub const INITIAL_WINDOW: u64 = MIB;
/// The largest read-ahead window.
pub const MAX_WINDOW: u64 = 64 * MIB;
/// The largest single GET of the read-ahead.
pub const PART_SIZE: u64 = 8 * MIB;
/// Bytes kept behind the last read, so slightly reordered reads (the kernel's
/// parallel read-ahead) are still served from memory.
pub const RETAIN_BEHIND: u64 = MIB;

/// Counters for tests and debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefetchStats {
    /// The current window.
    pub window: u64,
    /// The largest window used so far.
    pub peak_window: u64,
    /// GET requests issued.
    pub requests: u64,
    /// Reads that were not sequential (each reset the window).
    pub random_reads: u64,
}

pub struct Prefetcher {
    client: Arc<S3Client>,
    key: Arc<str>,
    etag: Arc<str>,
    size: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher")
            .field("key", &self.key)
            .field("etag", &self.etag)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// One queued range: fetched, or being fetched in the background.
struct Segment {
    range: Range<u64>,
    data: Option<Bytes>,
    task: Option<JoinHandle<OriginResult<Bytes>>>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct State {
    /// Contiguous, ascending; they cover `front.start..fetched_until`.
    queue: VecDeque<Segment>,
    fetched_until: u64,
    /// Where the next sequential read starts.
    next: u64,
    window: u64,
    stats: PrefetchStats,
}

impl Prefetcher {
    /// Reads of `key` pinned to `etag` (the ETag the handle was opened with;
    /// empty = not pinned), of an object of `size` bytes.
    pub fn new(client: Arc<S3Client>, key: String, etag: String, size: u64) -> Self {
        Prefetcher {
            client,
            key: Arc::from(key),
            etag: Arc::from(etag),
            size,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                fetched_until: 0,
                next: 0,
                window: INITIAL_WINDOW,
                stats: PrefetchStats {
                    window: INITIAL_WINDOW,
                    ..PrefetchStats::default()
                },
            }),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }

    pub async fn stats(&self) -> PrefetchStats {
        self.state.lock().await.stats
    }

    /// Up to `len` bytes at `offset`; short at the end of the object, empty
    /// past it. ESTALE when the object changed since the handle was opened.
    pub async fn read(&self, offset: u64, len: u32) -> OriginResult<Vec<u8>> {
        if len == 0 || offset >= self.size {
            return Ok(Vec::new());
        }
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        let mut st = self.state.lock().await;
        let res = self.read_locked(&mut st, offset, end).await;
        if res.is_err() {
            // Start over on the next read (which sees the error again if it
            // lasts, e.g. ESTALE).
            st.queue.clear();
            st.fetched_until = 0;
        }
        res
    }

    async fn read_locked(&self, st: &mut State, offset: u64, end: u64) -> OriginResult<Vec<u8>> {
        let queued = st
            .queue
            .front()
            .is_some_and(|s| s.range.start <= offset && offset <= st.fetched_until);
        let sequential = queued || (offset == st.next && st.queue.is_empty());
        if sequential {
            if st.queue.is_empty() {
                st.fetched_until = offset;
            }
            while st
                .queue
                .front()
                .is_some_and(|s| s.range.end.saturating_add(RETAIN_BEHIND) <= offset)
            {
                st.queue.pop_front();
            }
            // Only forward progress moves the window (a re-read of queued
            // bytes behind the reader does not).
            let forward = offset >= st.next || end > st.fetched_until;
            let plan = refill(st.fetched_until, end, self.size, st.window).filter(|_| forward);
            if let Some((range, window)) = plan {
                for part in split(range, PART_SIZE) {
                    let seg = self.spawn_fetch(part);
                    st.queue.push_back(seg);
                    st.stats.requests += 1;
                }
                st.fetched_until = st.queue.back().map_or(st.fetched_until, |s| s.range.end);
                st.stats.peak_window = st.stats.peak_window.max(st.window);
                st.window = window;
                st.stats.window = window;
            }
        } else {
            st.queue.clear();
            st.window = INITIAL_WINDOW;
            st.stats.window = INITIAL_WINDOW;
            st.stats.random_reads += 1;
            st.stats.requests += 1;
            let data = self.fetch(offset..end).await?;
            st.queue.push_back(Segment {
                range: offset..end,
                data: Some(data),
                task: None,
            });
            st.fetched_until = end;
        }
        let data = self.assemble(st, offset, end).await?;
        st.next = if sequential { st.next.max(end) } else { end };
        Ok(data)
    }

    /// Copies `offset..end` out of the queue, waiting for pending parts.
    async fn assemble(&self, st: &mut State, offset: u64, end: u64) -> OriginResult<Vec<u8>> {
        let mut out = Vec::with_capacity((end - offset) as usize);
        for seg in st.queue.iter_mut() {
            if seg.range.end <= offset {
                continue;
            }
            if seg.range.start >= end {
                break;
            }
            if seg.data.is_none() {
                let data = match seg.task.take() {
                    Some(task) => match task.await {
                        Ok(res) => res?,
                        Err(e) => {
                            tracing::warn!(key = %self.key, error = %e, "S3 read-ahead task failed");
                            let msg = format!("S3 read-ahead of {}: task failed: {e}", self.key);
                            return Err(OriginError::new(Errno::EIO, msg).with_source(e));
                        }
                    },
                    None => return Err(self.uncovered(offset, end)),
                };
                seg.data = Some(data);
            }
            let data = seg
                .data
                .as_ref()
                .ok_or_else(|| self.uncovered(offset, end))?;
            let from = offset.max(seg.range.start) - seg.range.start;
            let to = end.min(seg.range.end) - seg.range.start;
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        if out.len() as u64 != end - offset {
            return Err(self.uncovered(offset, end));
        }
        Ok(out)
    }

    /// A bug, not a server answer: the queue lost bytes of the read.
    fn uncovered(&self, offset: u64, end: u64) -> OriginError {
        tracing::warn!(key = %self.key, offset, end, "S3 read-ahead: queue does not cover the read");
        OriginError::new(
            Errno::EIO,
            format!(
                "S3 read-ahead of {}: queue does not cover {offset}..{end}",
                self.key
            ),
        )
    }

    fn spawn_fetch(&self, range: Range<u64>) -> Segment {
        let (client, key, etag) = (self.client.clone(), self.key.clone(), self.etag.clone());
        let r = range.clone();
        let task = tokio::spawn(async move { fetch(&client, &key, &etag, r).await });
        Segment {
            range,
            data: None,
            task: Some(task),
        }
    }

    async fn fetch(&self, range: Range<u64>) -> OriginResult<Bytes> {
        fetch(&self.client, &self.key, &self.etag, range).await
    }
}

/// One pinned ranged GET that must return exactly `range`: the size is
/// fixed with the ETag, so fewer bytes mean the object changed.
async fn fetch(client: &S3Client, key: &str, etag: &str, range: Range<u64>) -> OriginResult<Bytes> {
    let pin = (!etag.is_empty()).then_some(etag);
    let data = client.get_range(key, range.clone(), pin).await?;
    if data.len() as u64 != range.end - range.start {
        tracing::warn!(
            bucket = client.bucket(),
            key,
            ?range,
            got = data.len(),
            "S3 read: short answer; the object changed"
        );
        return Err(OriginError::new(
            Errno::ESTALE,
            format!(
                "GetObject {}/{key}: {} bytes for {range:?}: the object changed",
                client.bucket(),
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// What a sequential read ending at `end` should queue, with `fetched_until`
/// already queued and `window` the current window: `None` while at least a
/// quarter of the window (half of the previous, undoubled one) lies ahead of
/// the reader; else the range up to `end + window` (within the object) and
/// the window for next time (doubled, up to [`MAX_WINDOW`]). So the window
/// doubles each time the reader has consumed half of what was fetched ahead.
pub fn refill(fetched_until: u64, end: u64, size: u64, window: u64) -> Option<(Range<u64>, u64)> {
    let target = end.saturating_add(window).min(size);
    let ahead = fetched_until.saturating_sub(end);
    if fetched_until >= size || ahead >= window / 4 || target <= fetched_until {
        return None;
    }
    Some((
        fetched_until..target,
        window.saturating_mul(2).min(MAX_WINDOW),
    ))
}

/// `range` cut into consecutive pieces of at most `part` bytes.
pub fn split(range: Range<u64>, part: u64) -> Vec<Range<u64>> {
    let part = part.max(1);
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let next = at.saturating_add(part).min(range.end);
        out.push(at..next);
        at = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_into_parts() {
        assert!(split(5..5, 8).is_empty());
        assert_eq!(split(0..20, 8), vec![0..8, 8..16, 16..20]);
        assert_eq!(split(3..5, 8), vec![3..5]);
    }

    #[test]
    fn refill_tops_up_when_little_is_ahead() {
        // Nothing queued: fetch a window past the read.
        assert_eq!(
            refill(0, 128, 100 * MIB, MIB),
            Some((0..MIB + 128, 2 * MIB))
        );
        // Plenty ahead: nothing to do.
        assert_eq!(refill(2 * MIB, MIB, 100 * MIB, 2 * MIB), None);
        assert_eq!(refill(2 * MIB, MIB + MIB / 2, 100 * MIB, 2 * MIB), None);
        // Less than a quarter of the window ahead: top up and double.
        let end = 2 * MIB - MIB / 4;
        assert_eq!(
            refill(2 * MIB, end, 100 * MIB, 2 * MIB),
            Some((2 * MIB..end + 2 * MIB, 4 * MIB))
        );
        // Never past the end, nothing once all is queued.
        assert_eq!(refill(0, 10, 100, MIB), Some((0..100, 2 * MIB)));
        assert_eq!(refill(100, 100, 100, MIB), None);
        // The window stops growing at the maximum.
        assert_eq!(
            refill(0, 0, u64::MAX, MAX_WINDOW).map(|r| r.1),
            Some(MAX_WINDOW)
        );
    }

    /// A sequential reader in 128 KiB steps over 1 GiB: the window grows to
    /// the maximum, every byte is fetched exactly once, in parts of at most
    /// PART_SIZE, and what is queued ahead never exceeds the bound.
    #[test]
    fn sequential_window_grows_and_stays_bounded() {
        let size = 1024 * MIB;
        let step = 128 * 1024;
        let (mut fetched, mut window, mut peak, mut requests) = (0u64, INITIAL_WINDOW, 0, 0);
        let mut offset = 0;
        while offset < size {
            let end = (offset + step).min(size);
            if let Some((range, next)) = refill(fetched, end, size, window) {
                assert_eq!(range.start, fetched, "contiguous");
                for p in split(range.clone(), PART_SIZE) {
                    assert!(p.end - p.start <= PART_SIZE);
                    requests += 1;
                }
                fetched = range.end;
                peak = peak.max(window);
                window = next;
            }
            assert!(fetched >= end, "the read is covered");
            assert!(fetched - offset <= MAX_WINDOW + step, "bounded read-ahead");
            offset = end;
        }
        assert_eq!(fetched, size);
        assert_eq!(peak, MAX_WINDOW);
        // Far fewer requests than reads (8192 reads of 128 KiB).
        assert!(requests < 200, "{requests} requests");
    }
}
