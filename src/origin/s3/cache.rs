//! The `metadataTtl` caches of an S3 origin: directory listings by prefix
//! and single lookups by key. An entry lives exactly `ttl` after it was
//! stored (S3 may change behind us), writes and deletes through the origin
//! forget what they touch, and both caches are bounded (`moka`), so a long
//! crawl cannot grow memory without end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::keys::Listed;
use super::origin::Found;

/// A directory listing: entry name → what it is.
pub(crate) type Listing = Arc<BTreeMap<String, Listed>>;

/// Upper bound of the listing cache, in listed entries (a listing weighs its
/// entry count). One entry costs roughly 200 bytes (name, key, ETag, tree
/// node), so this caps the listings held at about 40 MiB however many
/// directories are browsed within one `metadataTtl`.
const LISTED_ENTRIES_MAX: u64 = 200_000;
/// Upper bound of the lookup cache, in keys: about 200 bytes each (key plus
/// attributes and ETag), so about 20 MiB at most.
const LOOKUPS_MAX: u64 = 100_000;
/// moka panics on a TTL over 1000 years; a `metadataTtl` that long means
/// "forever", which a century is in practice.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) struct TtlCaches {
    /// `metadataTtl: 0` caches nothing.
    enabled: bool,
    dirs: Cache<String, Listing>,
    /// `None` = known absent.
    lookups: Cache<String, Option<Found>>,
}

impl TtlCaches {
    pub(crate) fn new(ttl: Duration) -> TtlCaches {
        Self::with_capacity(ttl, LISTED_ENTRIES_MAX, LOOKUPS_MAX)
    }

    fn with_capacity(ttl: Duration, listed_entries: u64, lookups: u64) -> TtlCaches {
        let ttl = ttl.min(CENTURY);
        TtlCaches {
            enabled: !ttl.is_zero(),
            dirs: Cache::builder()
                .max_capacity(listed_entries)
                .weigher(|_, l: &Listing| u32::try_from(l.len()).unwrap_or(u32::MAX).max(1))
                .time_to_live(ttl)
                .build(),
            lookups: Cache::builder()
                .max_capacity(lookups)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The fresh listing of directory prefix `prefix`, if cached.
    pub(crate) fn listing(&self, prefix: &str) -> Option<Listing> {
        self.dirs.get(prefix)
    }

    pub(crate) fn store_listing(&self, prefix: &str, listing: Listing) {
        if self.enabled {
            self.dirs.insert(prefix.to_string(), listing);
        }
    }

    /// The fresh lookup of `key`, if cached (`Some(None)`: known absent).
    pub(crate) fn lookup(&self, key: &str) -> Option<Option<Found>> {
        self.lookups.get(key)
    }

    pub(crate) fn store_lookup(&self, key: String, found: Option<Found>) {
        if self.enabled {
            self.lookups.insert(key, found);
        }
    }

    /// Forgets what is cached about `key`: its lookup, its listing as a
    /// directory (`key/`) and the listing of its parent (`parent`).
    pub(crate) fn forget(&self, key: &str, parent: &str) {
        self.lookups.invalidate(key);
        self.dirs.invalidate(&format!("{key}/"));
        self.dirs.invalidate(parent);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::origin::s3::meta::Attrs;

    fn dir() -> Option<Found> {
        Some(Found::Dir(Attrs::new(libc::S_IFDIR | 0o755)))
    }

    fn listing(n: usize) -> Listing {
        Arc::new((0..n).map(|i| (format!("f{i}"), Listed::Dir)).collect())
    }

    #[test]
    fn forget_drops_the_key_its_listing_and_its_parent() {
        let c = TtlCaches::new(Duration::from_secs(3600));
        c.store_lookup("a/b".into(), dir());
        c.store_lookup("a/c".into(), None);
        c.store_listing("a/", listing(2));
        c.store_listing("a/b/", listing(1));
        c.store_listing("x/", listing(1));
        assert!(c.lookup("a/b").is_some());
        assert!(matches!(c.lookup("a/c"), Some(None)), "absence is cached");
        c.forget("a/b", "a/");
        assert!(c.lookup("a/b").is_none());
        assert!(c.listing("a/").is_none());
        assert!(c.listing("a/b/").is_none());
        assert!(c.lookup("a/c").is_some(), "a sibling stays");
        assert!(c.listing("x/").is_some(), "another directory stays");
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = TtlCaches::new(Duration::ZERO);
        c.store_lookup("k".into(), dir());
        c.store_listing("", listing(1));
        assert!(c.lookup("k").is_none());
        assert!(c.listing("").is_none());
    }

    #[test]
    fn huge_ttl_is_accepted() {
        let c = TtlCaches::new(Duration::from_secs(u64::MAX));
        c.store_lookup("k".into(), dir());
        assert!(c.lookup("k").is_some());
    }

    /// An entry is served until `ttl` has passed and not after: polled with
    /// a generous deadline, never a fixed sleep.
    #[test]
    fn entries_expire_after_the_ttl() {
        let ttl = Duration::from_millis(200);
        let c = TtlCaches::new(ttl);
        let stored = Instant::now();
        c.store_lookup("k".into(), dir());
        if c.lookup("k").is_none() {
            assert!(stored.elapsed() >= ttl, "gone before the TTL");
        }
        let deadline = stored + Duration::from_secs(30);
        while c.lookup("k").is_some() {
            assert!(Instant::now() < deadline, "still cached long after the TTL");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(stored.elapsed() >= ttl, "expired before the TTL");
    }

    #[test]
    fn capacity_is_bounded() {
        let c = TtlCaches::with_capacity(Duration::from_secs(3600), 50, 10);
        for i in 0..1000 {
            c.store_lookup(format!("k{i}"), None);
            c.store_listing(&format!("d{i}/"), listing(5));
        }
        c.lookups.run_pending_tasks();
        c.dirs.run_pending_tasks();
        assert!(c.lookups.entry_count() <= 10, "{}", c.lookups.entry_count());
        assert!(c.dirs.weighted_size() <= 50, "{}", c.dirs.weighted_size());
    }
}
