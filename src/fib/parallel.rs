//! Two-way parallelism for big-number arithmetic: the two squarings of a doubling step, the two
//! halves of a transform (see `ntt`) and of a decimal conversion run on two threads.

use std::sync::{Mutex, OnceLock};

/// How many threads a computation may use: the cores this process may run on.
///
/// Cached, because `available_parallelism` reads cgroup files on Linux; only asked once numbers
/// are large, so small requests never pay for it.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Threads one big computation may use at most. Two take most of the gain (the work splits in
/// halves well, in quarters less so), and a server already runs one worker per core: more per
/// request would multiply the threads of a loaded server.
pub(crate) const THREADS: usize = 2;

/// Runs `a` and `b` and returns both results: `b` on a scoped helper thread if `parallel`.
///
/// If the thread cannot be spawned, `b` runs on the caller's thread after `a`, so a box out
/// of threads still gets its answer. A panic in `b` is passed on to the caller.
pub(crate) fn join<A, B, FA, FB>(parallel: bool, a: FA, b: FB) -> (A, B)
where
    FA: FnOnce() -> A,
    FB: FnOnce() -> B + Send,
    B: Send,
{
    if !parallel {
        let ra = a();
        return (ra, b());
    }
    // Shared so that `b` can be taken back if the spawn fails.
    let b = Mutex::new(Some(b));
    let take = || b.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("fib-rpc-bignum".into())
            .spawn_scoped(scope, || take().map(|b| b()));
        let ra = a();
        let rb = match helper {
            Ok(helper) => helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        };
        // `None` only if the helper never ran `b`.
        (ra, rb.unwrap_or_else(|| take().expect("b not run yet")()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_runs_both_sides() {
        assert_eq!(join(true, || 1, || 2), (1, 2));
        assert_eq!(join(false, || "a", || "b"), ("a", "b"));
    }
}
