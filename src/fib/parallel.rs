//! Two-way parallelism for big-number arithmetic: `num-bigint` runs on one core, so the large
//! products in [`fib`](crate::fib()) and the decimal formatting are split in two by hand.

use std::sync::{Mutex, OnceLock};

use num_bigint::BigUint;

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

/// Products whose shorter factor is shorter than this are not split: splitting saves about a
/// quarter of the product, which pays for a thread (about 20 µs) from about 1,000 limbs.
const SPLIT_MUL_BITS: u64 = 1 << 16;

/// Returns `a · b`, as two half-size products on two threads if `parallel` and the factors
/// are long enough to gain from it.
///
/// The longer factor is cut in two at a limb boundary, so each thread multiplies the shorter
/// factor by one half: about 0.7 of the time of the whole product at `num-bigint`'s Toom-3
/// sizes, and the same result.
pub(crate) fn mul(a: &BigUint, b: &BigUint, parallel: bool) -> BigUint {
    let (short, long) = if a.bits() <= b.bits() { (a, b) } else { (b, a) };
    if !parallel || short.bits() < SPLIT_MUL_BITS {
        return a * b;
    }
    let cut = long.bits() / 128 * 64;
    let high = long >> cut;
    let low = long - (&high << cut);
    let (low_product, high_product) = join(true, || short * &low, || short * &high);
    low_product + (high_product << cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_runs_both_sides() {
        assert_eq!(join(true, || 1, || 2), (1, 2));
        assert_eq!(join(false, || "a", || "b"), ("a", "b"));
    }

    #[test]
    fn split_product_equals_product() {
        let a = (BigUint::from(3u8) << 170_000u32) - 12_345u32;
        let b = (BigUint::from(7u8) << 150_001u32) + 1u8;
        assert_eq!(mul(&a, &b, true), &a * &b);
        assert_eq!(mul(&b, &a, true), &a * &b);
        assert_eq!(mul(&a, &BigUint::ZERO, true), BigUint::ZERO);
        assert_eq!(mul(&a, &BigUint::from(5u8), true), &a * 5u8);
    }
}
