//! A bounded, least-recently-used cache of Fibonacci results, so a redelivered or repeated
//! request for a big `n` is answered without computing it again; and single flight, so
//! concurrent requests for the same `n` share one computation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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
    /// Cacheable requests that had to be computed (not counted while the cache is off).
    pub misses: u64,
    /// Requests answered by waiting for the same `n` while another request computed it,
    /// instead of computing it a second time (counted whether or not the cache holds results).
    pub shared: u64,
    /// Results held now.
    pub entries: usize,
    /// Bytes of results held now (at most the cache's capacity).
    pub bytes: usize,
}

/// A thread-safe LRU cache from `n` to fib(n) in decimal, bounded by the total size of the
/// results, that also tracks the results being computed right now. Cloning shares the cache.
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
    /// Results being computed now, for requests that want the same `n` meanwhile.
    in_flight: HashMap<u64, Arc<Flight>>,
    hits: u64,
    misses: u64,
    shared: u64,
}

/// One computation in progress, which any number of requests may wait for.
#[derive(Debug, Default)]
struct Flight {
    outcome: Mutex<Outcome>,
    landed: Condvar,
}

#[derive(Debug, Default)]
enum Outcome {
    #[default]
    Running,
    Done(Arc<Vec<u8>>),
    /// The computation panicked; a waiter computes the result itself.
    Abandoned,
}

/// Ends a [`Flight`] as abandoned unless it landed: the computation panicked.
struct Landing<'a> {
    cache: &'a ResultCache,
    n: u64,
    flight: Arc<Flight>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.cache.lock().in_flight.remove(&self.n);
        let mut outcome = lock(&self.flight.outcome);
        if matches!(*outcome, Outcome::Running) {
            *outcome = Outcome::Abandoned;
        }
        self.flight.landed.notify_all();
    }
}

#[derive(Debug)]
struct Entry {
    digits: Arc<Vec<u8>>,
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

    fn lock(&self) -> MutexGuard<'_, Lru> {
        lock(&self.inner)
    }

    /// The result for `n`: from the cache, or from a computation of the same `n` already
    /// running for another request (waiting for it), or from `compute`, run here and kept.
    ///
    /// The wait has no bound of its own: it is one computation of the same size as the one
    /// this request would otherwise run itself. If that computation panics, one waiter runs
    /// `compute` instead.
    pub(crate) fn get_or_compute(
        &self,
        n: u64,
        compute: impl FnOnce() -> Arc<Vec<u8>>,
    ) -> Arc<Vec<u8>> {
        let flight = loop {
            let mut lru = self.lock();
            if let Some(digits) = lru.hit(n) {
                return digits;
            }
            let Some(running) = lru.in_flight.get(&n).map(Arc::clone) else {
                if lru.capacity > 0 {
                    lru.misses += 1;
                }
                let flight = Arc::new(Flight::default());
                lru.in_flight.insert(n, Arc::clone(&flight));
                break flight;
            };
            drop(lru);
            if let Some(digits) = running.wait() {
                self.lock().shared += 1;
                return digits;
            }
        };
        let landing = Landing {
            cache: self,
            n,
            flight,
        };
        let digits = compute();
        self.insert(n, Arc::clone(&digits));
        *lock(&landing.flight.outcome) = Outcome::Done(Arc::clone(&digits));
        drop(landing); // out of flight, waiters woken
        digits
    }

    /// The cached result for `n`, marked as just used; counts a hit or a miss.
    #[cfg(test)]
    fn get(&self, n: u64) -> Option<Arc<Vec<u8>>> {
        let mut lru = self.lock();
        let digits = lru.hit(n);
        if digits.is_none() && lru.capacity > 0 {
            lru.misses += 1;
        }
        digits
    }

    /// Keeps `digits` as the result for `n`, evicting the least recently used results to make
    /// room. A result larger than the whole cache is not kept.
    pub(crate) fn insert(&self, n: u64, digits: Arc<Vec<u8>>) {
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
            shared: lru.shared,
            entries: lru.entries.len(),
            bytes: lru.bytes,
        }
    }
}

impl Lru {
    /// The cached result for `n`, marked as just used and counted as a hit.
    fn hit(&mut self, n: u64) -> Option<Arc<Vec<u8>>> {
        self.clock += 1;
        let now = self.clock;
        let entry = self.entries.get_mut(&n)?;
        let previous = std::mem::replace(&mut entry.last_used, now);
        let digits = Arc::clone(&entry.digits);
        self.by_age.remove(&previous);
        self.by_age.insert(now, n);
        self.hits += 1;
        Some(digits)
    }
}

impl Flight {
    /// Waits until the computation ends: its result, or `None` if it panicked.
    fn wait(&self) -> Option<Arc<Vec<u8>>> {
        let mut outcome = lock(&self.outcome);
        loop {
            match &*outcome {
                Outcome::Running => {
                    outcome = self.landed.wait(outcome).unwrap_or_else(|e| e.into_inner())
                }
                Outcome::Done(digits) => return Some(Arc::clone(digits)),
                Outcome::Abandoned => return None,
            }
        }
    }
}

/// Locks `mutex`, also after a panic elsewhere: every update here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(len: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![b'7'; len])
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

    /// Runs `get_or_compute(n)` on a thread whose computation starts, then waits to be let
    /// go, then returns `result` (or panics if `result` is `None`).
    fn blocked_computation(
        cache: &ResultCache,
        n: u64,
        result: Option<Arc<Vec<u8>>>,
    ) -> (
        std::thread::JoinHandle<Arc<Vec<u8>>>,
        crossbeam_channel::Sender<()>,
    ) {
        let (started_tx, started_rx) = crossbeam_channel::bounded(0);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let cache = cache.clone();
        let thread = std::thread::spawn(move || {
            cache.get_or_compute(n, move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                result.expect("the computation panics, as asked")
            })
        });
        started_rx.recv().unwrap();
        (thread, release_tx)
    }

    /// Waits until `waiters` other requests wait for the computation of `n`.
    fn wait_for_waiters(cache: &ResultCache, n: u64, waiters: usize) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // The map and the computing request hold the flight too.
        while cache.lock().in_flight.get(&n).map(Arc::strong_count) != Some(waiters + 2) {
            assert!(std::time::Instant::now() < until, "no waiter came");
            std::thread::yield_now();
        }
    }

    #[test]
    fn concurrent_requests_for_the_same_n_share_one_computation() {
        for capacity in [0, 1000] {
            let cache = ResultCache::new(capacity);
            let (computing, release) = blocked_computation(&cache, 5, Some(digits(10)));
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let cache = cache.clone();
                    std::thread::spawn(move || {
                        cache.get_or_compute(5, || panic!("computed a second time"))
                    })
                })
                .collect();
            wait_for_waiters(&cache, 5, 3);
            // Another n is not held up.
            assert_eq!(&*cache.get_or_compute(6, || digits(2)), b"77");
            release.send(()).unwrap();
            let result = computing.join().unwrap();
            for waiter in waiters {
                assert!(Arc::ptr_eq(&waiter.join().unwrap(), &result));
            }
            let stats = cache.stats();
            assert_eq!(stats.shared, 3);
            let misses = if capacity == 0 { 0 } else { 2 };
            assert_eq!((stats.hits, stats.misses), (0, misses));
            assert!(cache.lock().in_flight.is_empty());
        }
    }

    #[test]
    fn a_waiter_computes_when_the_running_computation_panics() {
        let cache = ResultCache::new(1000);
        let (computing, release) = blocked_computation(&cache, 5, None);
        let waiter = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get_or_compute(5, || digits(3)))
        };
        wait_for_waiters(&cache, 5, 1);
        release.send(()).unwrap();
        assert!(computing.join().is_err(), "the computation panicked");
        assert_eq!(&*waiter.join().unwrap(), b"777");
        assert!(cache.lock().in_flight.is_empty());
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.shared, stats.entries), (2, 0, 1));
        assert_eq!(&*cache.get_or_compute(5, || panic!("cached")), b"777");
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = ResultCache::new(0);
        cache.insert(1, digits(1));
        assert!(cache.get(1).is_none());
        assert_eq!(cache.stats(), CacheStats::default());
    }
}
