//! The calling side: a byte-level [`RpcClient`] and the typed [`FibonacciRpcClient`] on top.
//!
//! # How a call travels
//!
//! amiquip's channel and consumer cannot be shared between threads, so one **reader thread**
//! (`fib-rpc-client`) owns the connection, the channel, the reply consumer (of an exclusive
//! reply queue, or of direct reply-to: see [`ReplyTo`]) and the listener for returned
//! (unroutable) messages. A caller:
//!
//! 1. makes a fresh `correlation_id` (a UUID v4, never repeated within the client) and a
//!    one-slot reply channel,
//! 2. hands `(correlation_id, body, deadline, reply sender)` to the reader over a crossbeam
//!    channel; the reader publishes the request and files the sender under the id,
//! 3. waits on its reply channel until its deadline.
//!
//! The reader matches each reply by `correlation_id` and hands it to exactly that caller.
//! Replies nobody waits for (unknown ids, duplicates, answers after a timeout) are dropped and
//! counted in [`ClientStats::discarded_replies`].
//!
//! # When the connection drops
//!
//! Calls already published fail at once with [`Error::ConnectionLost`]: the server may or may
//! not have run them. The reader then reconnects, trying each broker URL in turn with capped,
//! jittered exponential backoff between rounds, and sets up a new reply consumer (and reply
//! queue) **before** it publishes anything on the new connection. Calls made meanwhile wait
//! for it within their own deadlines; one whose deadline passes first fails with
//! [`Error::NotConnected`] and was never sent.

mod call;
mod handle;
mod options;
mod reader;
mod stats;

pub use handle::{PendingReply, RpcClient};
pub use options::{ClientOptions, ReplyTo, DEFAULT_TIMEOUT};
pub use stats::ClientStats;
