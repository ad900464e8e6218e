//! A bounded, least-recently-used cache of Fibonacci results, so a redelivered or repeated
//! request for a big `n` is answered without computing it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// How many bytes of results [`FibonacciHandler`](crate::FibonacciHandler) keeps by default:
/// 16 MiB, about 80 answers the size of fib(10⁶) (209 KB each), while the server's own
/// footprint stays a few MiB when nothing big is asked.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// Results for `n` below this are not cached: computing them takes about as long as a lookup.
pub(crate) const MIN_CACHED_N: u64 = 1_000;

/// What a cache holds and how well it does; from
/// [`FibonacciHandler::cache_stats`](crate::FibonacciHandler::cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Cacheable requests that had to be computed.
    pub misses: u64,
    /// Results held now.
    pub entries: usize,
    /// Bytes of results held now (at most the cache's capacity).
    pub bytes: usize,
}

/// A thread-safe LRU cache from `n` to fib(n) in decimal, bounded by the total size of the
/// results. Cloning shares the cache.
#[derive(Debug, Clone)]
pub(crate) struct ResultCache {
    inner: Arc<Mutex<Lru>>,
}

#[derive(Debug, Default)]
struct Lru {
    capacity: usize,
    bytes: usize,
    /// Bumped on every use; orders the entries by recency.
    clock: u64,
    entries: HashMap<u64, Entry>,
    /// Last use → n, oldest first: what to evict.
    by_age: BTreeMap<u64, u64>,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Entry {
    digits: Arc<[u8]>,
    last_used: u64,
}

impl ResultCache {
    /// A cache holding at most `capacity` bytes of results; 0 turns caching off.
    pub(crate) fn new(capacity: usize) -> Self {
        ResultCache {
            inner: Arc::new(Mutex::new(Lru {
                capacity,
                ..Lru::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result for `n`, marked as just used; counts a hit or a miss.
    pub(crate) fn get(&self, n: u64) -> Option<Arc<[u8]>> {
        let mut lru = self.lock();
        if lru.capacity == 0 {
            return None;
        }
        lru.clock += 1;
        let now = lru.clock;
        let Some(entry) = lru.entries.get_mut(&n) else {
            lru.misses += 1;
            return None;
        };
        let previous = std::mem::replace(&mut entry.last_used, now);
        let digits = Arc::clone(&entry.digits);
        lru.by_age.remove(&previous);
        lru.by_age.insert(now, n);
        lru.hits += 1;
        Some(digits)
    }

    /// Keeps `digits` as the result for `n`, evicting the least recently used results to make
    /// room. A result larger than the whole cache is not kept.
    pub(crate) fn insert(&self, n: u64, digits: Arc<[u8]>) {
        let mut lru = self.lock();
        if digits.len() > lru.capacity || lru.entries.contains_key(&n) {
            return;
        }
        while lru.bytes + digits.len() > lru.capacity {
            let Some((_, oldest)) = lru.by_age.pop_first() else {
                break;
            };
            if let Some(evicted) = lru.entries.remove(&oldest) {
                lru.bytes -= evicted.digits.len();
            }
        }
        lru.clock += 1;
        let now = lru.clock;
        lru.bytes += digits.len();
        lru.by_age.insert(now, n);
        lru.entries.insert(
            n,
            Entry {
                digits,
                last_used: now,
            },
        );
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let lru = self.lock();
        CacheStats {
            hits: lru.hits,
            misses: lru.misses,
            entries: lru.entries.len(),
            bytes: lru.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(len: usize) -> Arc<[u8]> {
        vec![b'7'; len].into()
    }

    #[test]
    fn evicts_the_least_recently_used_to_stay_within_capacity() {
        let cache = ResultCache::new(100);
        cache.insert(1, digits(40));
        cache.insert(2, digits(40));
        assert!(cache.get(1).is_some()); // 2 is now the oldest
        cache.insert(3, digits(40));
        assert!(cache.get(2).is_none());
        assert!(cache.get(1).is_some() && cache.get(3).is_some());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (2, 80));
        assert_eq!((stats.hits, stats.misses), (3, 1));
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let cache = ResultCache::new(1000);
        for n in 0..500u64 {
            cache.insert(n, digits((n as usize * 37) % 300 + 1));
            if n % 3 == 0 {
                let _ = cache.get(n / 2);
            }
            assert!(cache.stats().bytes <= 1000);
        }
        cache.insert(9999, digits(1001));
        assert!(cache.get(9999).is_none(), "larger than the whole cache");
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = ResultCache::new(0);
        cache.insert(1, digits(1));
        assert!(cache.get(1).is_none());
        assert_eq!(cache.stats(), CacheStats::default());
    }
}
