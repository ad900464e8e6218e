//! Settings for the server.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::connect::{check_settings, ConnectSettings};
use crate::error::{Error, Result};
use crate::reconnect::BackoffSettings;
use crate::wire::{self, DEFAULT_QUEUE};

/// How long a stop waits for requests in flight and the broker's close, unless told
/// otherwise ([`ServerOptions::stop_timeout`]).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How late past its caller's deadline a request may arrive and still be served, unless told
/// otherwise ([`ServerOptions::deadline_grace`]).
pub const DEFAULT_DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// What kind of queue the server declares when the queue does not exist yet. An existing
/// queue is always used as it is, whatever its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueKind {
    /// Classic, non-durable: what the tutorial declares.
    #[default]
    Classic,
    /// Durable quorum queue: survives broker restarts and, in a cluster, node failures.
    DurableQuorum,
}

/// Settings for [`RpcServer`](crate::RpcServer).
///
/// ```
/// use fib_rpc::{QueueKind, ServerOptions};
///
/// let options = ServerOptions::default()
///     .queue("fib_requests")
///     .workers(4)
///     .prefetch(8)
///     .declare_as(QueueKind::DurableQuorum);
/// ```
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub(super) queue: String,
    pub(super) workers: usize,
    pub(super) prefetch: u16,
    pub(super) declare_as: QueueKind,
    pub(super) connect: ConnectSettings,
    pub(super) stop_timeout: Duration,
    pub(super) max_reply_bytes: usize,
    pub(super) backoff: BackoffSettings,
    pub(super) deadline_grace: Duration,
    pub(super) lazy_start: bool,
    pub(super) publisher_confirms: bool,
}

/// Unacknowledged requests the broker may push to a server ahead of time, per worker: the
/// server's one consumer has a window of workers × prefetch, shared by its workers.
///
/// Measured (`examples/prefetch_bench.rs`, docs/performance.md): a window of 1 leaves a worker
/// idle for a broker round trip after every reply; throughput on one server grows up to ~16 per
/// worker, but each slot is also a request a slow server can park behind its own work while
/// another server idles, and from 32 up a slow server on the same queue hoards nearly
/// everything. Part of the window holds requests already answered and waiting for their ack
/// (acks are batched), so 12 gives the throughput of a window of 8 with a consumer per worker,
/// while still bounding what a slow server hoards.
pub const DEFAULT_PREFETCH: u16 = 12;

impl Default for ServerOptions {
    /// Queue [`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE) (declared classic if absent), one worker
    /// per CPU, [`DEFAULT_PREFETCH`],
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT),
    /// [`DEFAULT_HEARTBEAT_SECS`](crate::DEFAULT_HEARTBEAT_SECS), [`DEFAULT_STOP_TIMEOUT`],
    /// [`DEFAULT_DEADLINE_GRACE`], replies of at most 64 MiB, reconnection backoff from
    /// 100 ms doubling up to 5 s, `start` connecting before it returns, and publisher confirms
    /// on replies.
    fn default() -> Self {
        ServerOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            workers: std::thread::available_parallelism().map_or(2, NonZeroUsize::get),
            prefetch: DEFAULT_PREFETCH,
            declare_as: QueueKind::Classic,
            connect: ConnectSettings::named("fib-rpc server"),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            max_reply_bytes: 64 << 20,
            backoff: BackoffSettings::default(),
            deadline_grace: DEFAULT_DEADLINE_GRACE,
            lazy_start: false,
            publisher_confirms: true,
        }
    }
}

impl ServerOptions {
    /// The queue to serve (default `rpc_queue`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Number of worker threads, each running one request at a time and publishing its replies
    /// on its own channel (default: number of CPUs). They take requests from one shared
    /// consumer, so an idle worker takes the next request while others are busy.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Prefetch per worker (default [`DEFAULT_PREFETCH`]): the server's window is
    /// workers × prefetch (at most 65,535), shared by its workers.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The kind of queue to declare if the queue does not exist (default classic).
    pub fn declare_as(mut self, kind: QueueKind) -> Self {
        self.declare_as = kind;
        self
    }

    /// Bound on connecting (TCP and AMQP handshake), default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect.timeout = timeout;
        self
    }

    /// AMQP heartbeat interval in seconds (default 15, at least 1).
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.connect.heartbeat_secs = seconds;
        self
    }

    /// How long [`RpcServer::stop`](crate::RpcServer::stop) and dropping a server wait for
    /// in-flight requests and the broker's close before leaving the threads to finish on their
    /// own (default [`DEFAULT_STOP_TIMEOUT`]).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Largest reply the server publishes (default 64 MiB). A larger reply is replaced by an
    /// `internal` error reply: publishing it could exceed the broker's `max_message_size`, which
    /// closes the channel and requeues the request to fail again.
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes;
        self
    }

    /// Wait between reconnection rounds after the broker went away: `initial` after the
    /// first failure, doubling up to `max`, each wait jittered between half and all of its
    /// step (default 100 ms to 5 s). A round tries every broker URL once.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = BackoffSettings { initial, max };
        self
    }

    /// How late past its caller's deadline ([`DEADLINE_HEADER`](crate::DEADLINE_HEADER)) a request
    /// may arrive and still be served (default [`DEFAULT_DEADLINE_GRACE`]). The deadline is the
    /// client's wall clock, so this is the clock difference between machines the server tolerates
    /// before it starts dropping requests someone still waits for.
    pub fn deadline_grace(mut self, grace: Duration) -> Self {
        self.deadline_grace = grace;
        self
    }

    /// Name shown for the connection in RabbitMQ's tools.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connect.name = name.into();
        self
    }

    /// When `true`, [`RpcServer::start`](crate::RpcServer::start) returns at once and the
    /// server connects in the background, waiting with backoff (and logging why) for a broker
    /// that is down or unreachable, so a service can start before its broker at boot.
    /// [`RpcServer::wait_ready`](crate::RpcServer::wait_ready) says when it consumes. It gives
    /// up, ending with the error that [`RpcServer::wait`](crate::RpcServer::wait) returns, only
    /// when refused on its first connection: every broker refuses the credentials or vhost, or
    /// the one it reached refuses to set up the queue or its consumers (permissions). Waiting
    /// would not fix that. A broker that is down, or fails the TLS handshake, is waited for.
    /// Default `false`: `start` returns [`Error::Connect`](crate::Error::Connect)
    /// when no broker can be reached on the first round, which is what a misconfigured URL
    /// wants to hear.
    pub fn lazy_start(mut self, lazy: bool) -> Self {
        self.lazy_start = lazy;
        self
    }

    /// Whether a request is acked only once the broker confirms its reply (default `true`).
    ///
    /// With confirms, a reply lost in a broker or cluster-node failure leaves its request
    /// unacked, so it comes back and is answered again; replies are pipelined, so the cost is
    /// one small confirm frame per batch of replies. Without them a request is acked right
    /// after its reply is published, and such a reply is lost without a trace (the caller
    /// waits until its deadline).
    pub fn publisher_confirms(mut self, confirms: bool) -> Self {
        self.publisher_confirms = confirms;
        self
    }

    /// Refuses settings the server cannot work with, before anything connects.
    pub(super) fn check(&self) -> Result<()> {
        check_settings(&self.connect)?;
        self.backoff.check()?;
        wire::check_queue_name(&self.queue)?;
        if self.workers == 0 {
            return Err(Error::InvalidArgument("workers must be at least 1".into()));
        }
        if self.prefetch == 0 {
            return Err(Error::InvalidArgument(
                "prefetch must be at least 1 (0 would mean unlimited)".into(),
            ));
        }
        Ok(())
    }
}
