//! The client's counters: updated by callers and the reader, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use crate::error::{Error, Result};
use crate::metrics::{LatencyHistogram, LatencyRecorder};
use crate::util::bump;

/// A snapshot of a client's counters, from [`RpcClient::stats`](crate::RpcClient::stats). Every
/// counter only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls started. A call given up by dropping its [`PendingReply`](crate::PendingReply)
    /// unwaited is counted here and in no outcome below.
    pub calls: u64,
    /// Calls that returned a reply.
    pub ok: u64,
    /// Calls answered with an error reply.
    pub remote_errors: u64,
    /// Calls that were sent but got no reply by their deadline ([`Error::Timeout`](crate::Error::Timeout),
    /// [`Error::Unconfirmed`](crate::Error::Unconfirmed)).
    pub timeouts: u64,
    /// Calls that found no server ([`Error::NoServer`](crate::Error::NoServer)): no such queue
    /// (the broker returned the request), or nobody consuming it with
    /// [`require_server`](crate::ClientOptions::require_server) on.
    pub no_server: u64,
    /// Calls that failed because the connection dropped while they were pending (outcome
    /// unknown) or because the client was closed.
    pub connection_lost: u64,
    /// Calls never sent because the client was reconnecting until their deadline.
    pub not_connected: u64,
    /// Calls that failed otherwise (invalid reply, invalid argument, refused by the broker).
    pub other_errors: u64,
    /// Replies that matched no waiting call (late after a timeout, unknown id, or a
    /// duplicate) and were dropped.
    pub discarded_replies: u64,
    /// Requests the broker returned as unroutable (`basic.return`), whether or not their
    /// caller still waited.
    pub returns: u64,
    /// Times the client connected again after losing its connection.
    pub reconnects: u64,
    /// Requests sent again (same `correlation_id`) because an idempotent call's request may
    /// have been lost: after a connection loss or a refusal by the broker.
    pub retries: u64,
    /// Requests the broker refused to take (publisher `basic.nack`), retried or not.
    pub refusals: u64,
    /// How long calls that got a reply ([`ok`](Self::ok) and
    /// [`remote_errors`](Self::remote_errors)) took, from the call to its reply in the
    /// caller's hands.
    pub latency: LatencyHistogram,
}

/// The live counters behind [`ClientStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) calls: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) remote_errors: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) no_server: AtomicU64,
    pub(super) connection_lost: AtomicU64,
    pub(super) not_connected: AtomicU64,
    pub(super) other_errors: AtomicU64,
    pub(super) discarded_replies: AtomicU64,
    pub(super) returns: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) refusals: AtomicU64,
    pub(super) latency: LatencyRecorder,
}

impl Counters {
    /// Counts a call's outcome; `took` is how long it waited, recorded for calls that got
    /// a reply.
    pub(super) fn record<T>(&self, result: &Result<T>, took: Duration) {
        match result {
            Ok(_) => bump(&self.ok),
            Err(err) => self.record_error(err),
        }
        if matches!(result, Ok(_) | Err(Error::Remote(_))) {
            self.latency.record(took);
        }
    }

    pub(super) fn record_error(&self, err: &Error) {
        bump(match err {
            Error::Remote(_) => &self.remote_errors,
            Error::Timeout { .. } | Error::Unconfirmed { .. } => &self.timeouts,
            Error::NoServer { .. } => &self.no_server,
            Error::ConnectionLost { .. } | Error::Closed => &self.connection_lost,
            Error::NotConnected { .. } => &self.not_connected,
            _ => &self.other_errors,
        });
    }

    pub(super) fn snapshot(&self) -> ClientStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClientStats {
            calls: get(&self.calls),
            ok: get(&self.ok),
            remote_errors: get(&self.remote_errors),
            timeouts: get(&self.timeouts),
            no_server: get(&self.no_server),
            connection_lost: get(&self.connection_lost),
            not_connected: get(&self.not_connected),
            other_errors: get(&self.other_errors),
            discarded_replies: get(&self.discarded_replies),
            returns: get(&self.returns),
            reconnects: get(&self.reconnects),
            retries: get(&self.retries),
            refusals: get(&self.refusals),
            latency: self.latency.snapshot(),
        }
    }
}
