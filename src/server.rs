//! The serving side: a generic [`RpcServer`] that runs a [`Handler`] on worker threads. It
//! moves bytes and knows nothing of any service; a handler sees each request as a
//! [`Request`] (body, deadline, headers) and returns the reply body or a
//! [`RemoteError`](crate::RemoteError).
//!
//! # Threads
//!
//! A supervisor thread (`fib-rpc-server`) owns the AMQP connection and one consumer of the
//! queue, with a prefetch window of workers × prefetch. The worker threads
//! (`fib-rpc-worker-N`) all take requests from that consumer: an idle worker takes the next,
//! a busy one takes none, so a slow request holds up no other while a worker is idle. Each
//! worker publishes its replies on its own channel. The broker spreads requests across server
//! processes on the same queue.
//!
//! # Per request
//!
//! The worker runs the handler, publishes the reply to `reply_to` with the request's
//! `correlation_id`, and the request is acked only once the broker confirms the reply, so a server that dies mid-request leaves the request
//! to be redelivered to another server: at least once, and the client drops a second answer.
//! Refusals and handler panics become error replies (see the `wire` module), acked
//! like answers, so nothing is requeued in a loop. A request whose caller's deadline has
//! passed is acked and dropped without running the handler. Acks are batched: one ack covers
//! a run of answered requests, never one still being answered; an idle server has acked all it
//! answered within milliseconds. A redelivered request runs alone, so that a request whose
//! reply breaks the connection can be told from the others (see `redeliveries`); if other
//! handlers are still running after a few seconds, it runs beside them instead.
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
mod panics;
mod redeliveries;
mod request;
mod supervisor;
mod turns;
mod worker;

pub use handle::{RpcServer, ServerStats, StatsHandle, StopHandle};
pub use options::{
    QueueKind, ServerOptions, DEFAULT_DEADLINE_GRACE, DEFAULT_PREFETCH, DEFAULT_STOP_TIMEOUT,
};
pub use panics::quiet_handler_panics;
pub use request::{Handler, ReplyBody, Request};
