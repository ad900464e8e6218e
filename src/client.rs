//! The calling side: a byte-level [`RpcClient`] and the typed [`FibonacciRpcClient`] on top.
//!
//! # How a call travels
//!
//! One **reader thread** (`fib-rpc-client`) owns the connection: it opens the channels, the
//! reply consumer (of an exclusive reply queue, or of direct reply-to: see [`ReplyTo`]) and
//! the listeners for confirms and returned (unroutable) messages, and sets them up again after
//! a loss. A caller:
//!
//! 1. makes a fresh `correlation_id` (a UUID v4, never repeated within the client) and a
//!    one-slot reply channel,
//! 2. files `(correlation_id, body, deadline, reply sender)` with the client's outbox; with
//!    nobody else waiting, it publishes the request itself, on a channel kept for requests,
//!    behind a lock; when others wait, it hands the call to the reader, which is awake for
//!    their replies anyway and publishes all the calls it finds at once (with direct reply-to
//!    the broker wants requests on the channel that consumes replies, which only the reader
//!    may touch, so there the reader publishes every request),
//! 3. waits on its reply channel until its deadline.
//!
//! Replies are matched by `correlation_id` and each is handed to exactly its caller. The
//! reader does that whenever several callers wait, taking many replies per wake-up; a caller
//! waiting alone takes replies off the consumer itself, which spares a thread hand-off per
//! call. Replies nobody waits for (unknown ids, duplicates, answers after a timeout) are
//! dropped and counted in [`ClientStats::discarded_replies`].
//!
//! # Confirms and retries
//!
//! With publisher confirms (the default, [`ClientOptions::publisher_confirms`]) the broker
//! tells the reader whether it took each request; for a quorum queue, "took" means a majority
//! of its replicas hold it. A request the broker refuses fails at once with
//! [`Error::RequestRefused`] instead of waiting out its deadline, and a call that times out
//! unconfirmed says so ([`Error::Unconfirmed`]).
//!
//! An **idempotent** call ([`CallOptions::idempotent`], [`ClientOptions::idempotent`]) is
//! sent again, with the same `correlation_id`, when its request may have been lost: after a
//! connection loss (on the next connection) and after a refusal (after a short pause), always
//! within its deadline. Should both the first request and the retry be answered, the second
//! reply is dropped like any duplicate. [`ClientStats::retries`] counts them.
//!
//! Two refusals in a row with no request taken in between make the reader replace its
//! connection (after letting the calls in flight finish, for up to 2 s): RabbitMQ 3.10 can
//! leave a channel refusing every publish to a quorum queue whose leader was down when the
//! channel first published to it.
//!
//! # When the connection drops
//!
//! Calls already published and not idempotent fail at once with [`Error::ConnectionLost`]:
//! the server may or may not have run them. The reader then reconnects, trying each broker URL in turn with capped,
//! jittered exponential backoff between rounds, and sets up a new reply consumer (and reply
//! queue) **before** it publishes anything on the new connection. Calls made meanwhile wait
//! for it within their own deadlines; one whose deadline passes first fails with
//! [`Error::NotConnected`] and was never sent.

mod call;
mod confirms;
mod handle;
mod options;
mod outbox;
mod probe;
mod reader;
mod replies;
mod stats;

pub use handle::{PendingReply, RpcClient};
pub use options::{CallOptions, ClientOptions, ReplyTo, DEFAULT_TIMEOUT};
pub use probe::QueueStatus;
pub use stats::ClientStats;
