//! The serving side: a generic [`RpcServer`] that runs a [`Handler`] on worker threads. It
//! moves bytes and knows nothing of any service; a handler sees each request as a
//! [`Request`] (body, deadline, headers) and returns the reply body or a
//! [`RemoteError`](crate::RemoteError).
//!
//! # Threads
//!
//! A supervisor thread (`fib-rpc-server`) owns the AMQP connection. Each worker thread
//! (`fib-rpc-worker-N`) owns one channel with its own consumer and prefetch window, so a slow
//! request holds up only its own worker, and the broker spreads requests across workers and
//! across server processes on the same queue.
//!
//! # Per request
//!
//! The worker runs the handler, publishes the reply to `reply_to` with the request's
//! `correlation_id`, and only then acks, so a server that dies mid-request leaves the request
//! to be redelivered to another server: at least once, and the client drops a second answer.
//! Refusals and handler panics become error replies (see the `wire` module), acked
//! like answers, so nothing is requeued in a loop. A request whose caller's deadline has
//! passed is acked and dropped without running the handler. While more requests are already
//! waiting, one ack covers several answered ones (up to half the prefetch window); an idle
//! worker has acked all it answered.
//!
//! # When the broker goes away
//!
//! The supervisor notices when any worker's channel or the connection fails, stops the other
//! workers (their unacked requests go back to the queue), and reconnects with capped,
//! jittered exponential backoff, trying each broker URL in turn. It declares the queue again
//! if the broker lost it, and resumes. Only a stop request ends the server.

mod acks;
mod handle;
mod ledger;
mod options;
mod redeliveries;
mod request;
mod supervisor;
mod turns;
mod worker;

pub use handle::{RpcServer, ServerStats, StopHandle};
pub use options::{
    QueueKind, ServerOptions, DEFAULT_DEADLINE_GRACE, DEFAULT_PREFETCH, DEFAULT_STOP_TIMEOUT,
};
pub use request::{Handler, Request};
