//! Synchronous remote procedure calls over RabbitMQ, wire-compatible with RabbitMQ's
//! tutorial six (`FibonacciRpcClient` / `rpc_server`), done properly: typed errors, deadlines,
//! one client shared by many threads, a multi-threaded server that survives bad input and
//! broker restarts. No async runtime: the client runs one reader thread, the server a
//! supervisor and a few worker threads.
//!
//! The crate has two layers.
//!
//! # The RPC transport: bytes in, bytes out
//!
//! [`RpcServer`] runs a [`Handler`] (any `Fn(&Request) -> Result<Vec<u8>, RemoteError>`) on
//! worker threads; [`RpcClient`] sends a request body and waits for the reply. A handler sees
//! the caller's deadline, headers and correlation id through its [`Request`].
//!
//! ```no_run
//! use fib_rpc::{ClientOptions, Error, RemoteError, Request, RpcClient, RpcServer, ServerOptions};
//!
//! let url = "amqp://guest:guest@localhost:5672/%2f";
//! let server = RpcServer::start(
//!     url,
//!     ServerOptions::default().queue("shout"),
//!     |req: &Request| -> Result<Vec<u8>, RemoteError> {
//!         if req.body().is_empty() {
//!             return Err(RemoteError::bad_request("nothing to shout"));
//!         }
//!         Ok(req.body().to_ascii_uppercase())
//!     },
//! )?;
//!
//! let client = RpcClient::connect_with(url, ClientOptions::default().queue("shout"))?;
//! assert_eq!(client.call(b"hello")?, b"HELLO");
//! match client.call(b"") {
//!     Err(Error::Remote(refusal)) => println!("refused: {}", refusal.message),
//!     Err(Error::NoServer { queue, .. }) => println!("nobody serves {queue}"),
//!     other => println!("{other:?}"),
//! }
//! server.stop()?;
//! # Ok::<(), fib_rpc::Error>(())
//! ```
//!
//! # The Fibonacci service on top
//!
//! [`FibonacciHandler`] serves fib(n) by fast doubling on [`BigUint`] (re-exported, so nothing
//! else is needed in `Cargo.toml`); [`FibonacciRpcClient`] calls it, or the tutorial's Python
//! server, and returns the exact number.
//!
//! ```no_run
//! use fib_rpc::{ClientOptions, FibonacciHandler, FibonacciRpcClient, RpcServer, ServerOptions};
//!
//! let url = "amqp://guest:guest@localhost:5672/%2f";
//! let server = RpcServer::start(url, ServerOptions::default(), FibonacciHandler::default())?;
//! let client = FibonacciRpcClient::connect_with(url, ClientOptions::default())?;
//! let value: fib_rpc::BigUint = client.call(90)?;
//! assert_eq!(value.to_string(), "2880067194370816120");
//! # drop(server);
//! # Ok::<(), fib_rpc::Error>(())
//! ```
//!
//! # Errors
//!
//! Every failure is an [`Error`]; [`Error::is_transient`] and [`Error::request_unsent`]
//! answer whether to try again. The wire format, including error replies and the deadline
//! header, is the tutorial's plus two headers ([`ERROR_HEADER`], [`DEADLINE_HEADER`]).

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(rustdoc::broken_intra_doc_links)]

// The transport: generic over bytes, knows nothing of Fibonacci.
mod client;
mod connect;
mod error;
mod metrics;
mod reconnect;
mod server;
mod util;
mod wire;

// The Fibonacci service, on top of the transport.
mod fib;

#[cfg(test)]
mod fuzz;

pub use client::{
    CallOptions, ClientOptions, ClientStats, PendingReply, QueueStatus, ReplyTo, RpcClient,
    DEFAULT_TIMEOUT,
};
pub use connect::{
    redact as redact_url, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEARTBEAT_SECS, DEFAULT_URL,
};
pub use error::{BrokerError, BrokerErrorKind, Error, NoServerReason, Result};
pub use metrics::LatencyHistogram;
pub use reconnect::Backoff;
pub use server::{
    quiet_handler_panics, Handler, QueueKind, ReplyBody, Request, RpcServer, ServerOptions,
    ServerStats, StatsHandle, StopHandle, DEFAULT_DEADLINE_GRACE, DEFAULT_PREFETCH,
    DEFAULT_STOP_TIMEOUT,
};
pub use wire::{
    ErrorCode, HeaderValue, RemoteError, TraceParent, DEADLINE_HEADER, DEFAULT_QUEUE, ERROR_HEADER,
    TRACEPARENT_HEADER,
};

pub use fib::{
    fib, fib_decimal, parse_n, to_decimal, CacheStats, FibonacciHandler, FibonacciRpcClient,
    PendingFib, DEFAULT_CACHE_BYTES, DEFAULT_MAX_N,
};
/// The arbitrary-precision unsigned integer the Fibonacci API returns (num-bigint's), so a
/// program can name it without depending on num-bigint itself.
pub use num_bigint::BigUint;

/// Compiles the README's examples as doc tests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
