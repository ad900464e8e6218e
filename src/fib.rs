//! The Fibonacci service, built on the generic transport: exact Fibonacci numbers by fast
//! doubling on `BigUint` ([`fib`], [`fib_decimal`]), a fast decimal conversion
//! ([`to_decimal`]), the [`FibonacciHandler`] that serves them (request parsing with
//! [`parse_n`], a bounded result cache) and the typed [`FibonacciRpcClient`].
//!
//! Nothing in the transport (`client`, `server`, `wire`) depends on this module.

mod base10;
mod cache;
mod client;
mod decimal;
mod doubling;
mod handler;
mod ntt;
mod parallel;

pub use cache::{CacheStats, DEFAULT_CACHE_BYTES};
pub use client::{FibonacciRpcClient, PendingFib};
pub use doubling::{fib, fib_decimal, to_decimal};
pub use handler::{parse_n, FibonacciHandler, DEFAULT_MAX_N};

#[cfg(test)]
pub(crate) use client::check_decimal_reply;

/// Numbers for tests of the arithmetic.
#[cfg(test)]
pub(crate) mod test_numbers {
    use num_bigint::BigUint;

    /// Deterministic pseudo-random numbers of `bits` bits (top bit set), from a 64-bit LCG.
    pub(crate) fn random(bits: u64, seed: u64) -> BigUint {
        let mut state = seed;
        let words: Vec<u32> = (0..bits.div_ceil(32))
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 32) as u32
            })
            .collect();
        let x = BigUint::new(words) >> (bits.div_ceil(32) * 32 - bits);
        x | (BigUint::from(1u8) << (bits - 1))
    }
}
