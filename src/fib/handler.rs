//! The Fibonacci service's handler: the request is `n` in decimal, the reply fib(n) in
//! decimal.

use std::sync::Arc;

use super::cache::{CacheStats, ResultCache, DEFAULT_CACHE_BYTES, MIN_CACHED_N};
use super::doubling::fib_ascii;
use crate::server::{Handler, ReplyBody, Request};
use crate::wire::{preview, RemoteError};

/// The largest `n` the Fibonacci service computes unless told otherwise.
///
/// fib(1,000,000) has 208,988 digits and takes a worker a few milliseconds (a third of the
/// time GMP takes to compute and print it, on one core or two); a limit keeps one request
/// from occupying a worker for long (fib(10⁷): 40 times as long, and a 2 MB reply).
pub const DEFAULT_MAX_N: u64 = 1_000_000;

/// The tutorial's service: the request is `n` in decimal, the reply fib(n) in decimal.
///
/// Results for `n` of 1,000 and up are kept in a bounded LRU cache
/// ([`DEFAULT_CACHE_BYTES`] unless set with
/// [`cache_bytes`](Self::cache_bytes)), so a request redelivered after a server died, or
/// asked again, is not computed twice. Requests for the same `n` that arrive while it is being
/// computed (on other workers) wait for that result instead of computing it too, also when
/// the cache is off. Clones share the cache.
///
/// ```
/// use fib_rpc::{FibonacciHandler, Handler, Request};
///
/// let service = FibonacciHandler::new(100_000);
/// assert_eq!(service.handle(&Request::new("30")).unwrap(), b"832040");
/// assert!(service.handle(&Request::new("100001")).is_err());
/// let first = service.handle(&Request::new("50000")).unwrap();
/// assert_eq!(service.handle(&Request::new("50000")).unwrap(), first);
/// assert_eq!(service.cache_stats().hits, 1);
/// ```
///
/// Served with [`RpcServer`](crate::RpcServer):
///
/// ```no_run
/// use fib_rpc::{FibonacciHandler, RpcServer, ServerOptions};
///
/// let server = RpcServer::start(
///     "amqp://guest:guest@localhost:5672/%2f",
///     ServerOptions::default(),
///     FibonacciHandler::default(),
/// )?;
/// server.wait()?;
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FibonacciHandler {
    max_n: u64,
    cache: ResultCache,
}

impl FibonacciHandler {
    /// A handler that refuses `n` above `max_n` with an `out_of_range` error reply.
    pub fn new(max_n: u64) -> Self {
        FibonacciHandler {
            max_n,
            cache: ResultCache::new(DEFAULT_CACHE_BYTES),
        }
    }

    /// Bounds the result cache to `bytes` of decimal digits; 0 turns it off.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache = ResultCache::new(bytes);
        self
    }

    /// The largest `n` this handler computes.
    pub fn max_n(&self) -> u64 {
        self.max_n
    }

    /// How the result cache is doing.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl Default for FibonacciHandler {
    /// Limited to [`DEFAULT_MAX_N`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_N)
    }
}

impl Handler for FibonacciHandler {
    /// fib(n) in decimal, copied out of the cache if it was there; the server calls
    /// [`reply`](Self::reply) instead, which shares it.
    fn handle(&self, request: &Request) -> Result<Vec<u8>, RemoteError> {
        self.reply(request).map(ReplyBody::into_vec)
    }

    /// fib(n) in decimal, written once: a cached result is shared with the cache, not copied.
    fn reply(&self, request: &Request) -> Result<ReplyBody, RemoteError> {
        let n = parse_n(request.body(), self.max_n)?;
        if n < MIN_CACHED_N {
            return Ok(fib_ascii(n).into());
        }
        let digits = self.cache.get_or_compute(n, || Arc::new(fib_ascii(n)));
        Ok(ReplyBody::shared(digits))
    }
}

/// Reads the Fibonacci request body: `n` in ASCII decimal, surrounding ASCII whitespace
/// allowed (so `"30\n"` from a shell works), nothing else.
///
/// Every malformed body gets its own message, because the sender is often a person.
///
/// ```
/// use fib_rpc::{parse_n, ErrorCode};
/// assert_eq!(parse_n(b"30", 1000), Ok(30));
/// assert_eq!(parse_n(b"-5", 1000).unwrap_err().code, ErrorCode::BadRequest);
/// assert_eq!(parse_n(b"1001", 1000).unwrap_err().code, ErrorCode::OutOfRange);
/// ```
pub fn parse_n(body: &[u8], max_n: u64) -> Result<u64, RemoteError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(RemoteError::bad_request(format!(
            "request is not UTF-8 text (got {}); expected n as a non-negative decimal integer",
            preview(body)
        )));
    };
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if text.is_empty() {
        return Err(RemoteError::bad_request(
            "empty request; expected n as a non-negative decimal integer",
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        let why = if text.starts_with('-') && is_number_like(&text[1..]) {
            "n must not be negative"
        } else if is_number_like(text) && text.contains(['.', 'e', 'E']) {
            "n must be a whole number"
        } else {
            "expected n as a non-negative decimal integer"
        };
        return Err(RemoteError::bad_request(format!(
            "{why}, got {}",
            preview(text.as_bytes())
        )));
    }
    let n: u64 = text.parse().map_err(|_| {
        RemoteError::out_of_range(format!(
            "n = {} does not fit in 64 bits (largest is {})",
            preview(text.as_bytes()),
            u64::MAX
        ))
    })?;
    if n > max_n {
        return Err(RemoteError::out_of_range(format!(
            "n = {n} is above this server's limit of {max_n}"
        )));
    }
    Ok(n)
}

/// True for text made only of what numbers are written with, so `"1.5"` and `"1e3"` get a
/// more helpful message than `"abc"`.
fn is_number_like(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ErrorCode;

    fn code(body: &[u8]) -> ErrorCode {
        parse_n(body, 1_000_000).unwrap_err().code
    }

    #[test]
    fn accepts_decimal_with_surrounding_whitespace() {
        assert_eq!(parse_n(b"0", 10), Ok(0));
        assert_eq!(parse_n(b" 30\n", 100), Ok(30));
        assert_eq!(parse_n(b"007", 100), Ok(7));
        assert_eq!(parse_n(b"18446744073709551615", u64::MAX), Ok(u64::MAX));
    }

    #[test]
    fn refuses_every_malformed_body_with_a_reason() {
        for body in [
            &b""[..],
            b"   ",
            b"abc",
            b"-5",
            b"1.5",
            b"1e3",
            b"+5",
            b"3 4",
            b"\xff\xfe",
            b"0x10",
        ] {
            assert_eq!(code(body), ErrorCode::BadRequest, "{body:?}");
        }
        assert!(parse_n(b"-5", 10).unwrap_err().message.contains("negative"));
        assert!(parse_n(b"1.5", 10).unwrap_err().message.contains("whole"));
        assert!(parse_n(b"\xff", 10).unwrap_err().message.contains("UTF-8"));
    }

    /// A cached result goes out as the cache's own bytes, never copied; `handle` copies them.
    #[test]
    fn cached_replies_share_the_cached_bytes() {
        let service = FibonacciHandler::new(100_000);
        let request = Request::new("54321");
        let first = service.reply(&request).unwrap();
        let second = service.reply(&request).unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(*first, *fib_ascii(54_321));
        assert_eq!(service.handle(&request).unwrap(), *first);
        assert_eq!(service.cache_stats().hits, 2);
        // Uncached sizes are the handler's own bytes.
        assert_eq!(&*service.reply(&Request::new("30")).unwrap(), b"832040");
    }

    #[test]
    fn refuses_out_of_range() {
        assert_eq!(code(b"18446744073709551616"), ErrorCode::OutOfRange);
        assert_eq!(code(b"1000001"), ErrorCode::OutOfRange);
        assert_eq!(parse_n(b"1000000", 1_000_000), Ok(1_000_000));
    }
}
