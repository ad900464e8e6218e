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
