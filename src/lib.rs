//! Synchronous remote procedure calls over RabbitMQ, wire-compatible with RabbitMQ's
//! tutorial six (`FibonacciRpcClient` / `rpc_server`), done properly: typed errors, deadlines,
//! one client shared by many threads, and a multi-threaded server that survives bad input.
//!
//! No async runtime: the client runs one reader thread, the server a few worker threads.
//!
//! # Calling
//!
//! ```no_run
//! use fib_rpc::FibonacciRpcClient;
//!
//! let client = FibonacciRpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
//! println!("fib(30) = {}", client.call(30)?);
//! # Ok::<(), fib_rpc::Error>(())
//! ```
//!
//! # Serving
//!
//! ```no_run
//! use fib_rpc::{FibonacciHandler, RpcServer, ServerOptions};
//!
//! let server = RpcServer::start(
//!     "amqp://guest:guest@localhost:5672/%2f",
//!     ServerOptions::default(),
//!     FibonacciHandler::default(),
//! )?;
//! server.wait()?;
//! # Ok::<(), fib_rpc::Error>(())
//! ```
//!
//! # Your own functions
//!
//! [`RpcClient`] and [`RpcServer`] move bytes; any `Fn(&[u8]) -> Result<Vec<u8>, RemoteError>`
//! is a [`Handler`]. The Fibonacci service is built on them.
//!
//! The wire format, including error replies, is described in [`wire`].

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(rustdoc::broken_intra_doc_links)]

mod broker;
mod cache;
pub mod client;
mod decimal;
mod error;
pub mod fib;
mod parallel;
mod reconnect;
pub mod server;
mod util;
pub mod wire;

pub use broker::{redact as redact_url, DEFAULT_URL};
pub use cache::{CacheStats, DEFAULT_CACHE_BYTES};
pub use client::{
    ClientOptions, ClientStats, FibonacciRpcClient, PendingFib, PendingReply, ReplyTo, RpcClient,
};
pub use error::{Error, Result};
pub use reconnect::Backoff;
pub use server::{
    FibonacciHandler, Handler, QueueKind, RpcServer, ServerOptions, ServerStats, StopHandle,
    DEFAULT_MAX_N, DEFAULT_PREFETCH,
};
pub use wire::{ErrorCode, RemoteError};

/// Compiles the README's examples as doc tests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
