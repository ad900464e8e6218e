//! Settings for the client.

use crate::wire::TraceParent;
use std::time::{Duration, Instant};

use crate::connect::{check_settings, ConnectSettings};
use crate::error::{Error, Result};
use crate::reconnect::BackoffSettings;
use crate::wire::{self, DEFAULT_QUEUE};

/// How long a call waits for its reply unless told otherwise ([`ClientOptions::timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for [`RpcClient`](crate::RpcClient) and
/// [`FibonacciRpcClient`](crate::FibonacciRpcClient).
///
/// ```
/// use fib_rpc::ClientOptions;
/// use std::time::Duration;
///
/// let options = ClientOptions::default()
///     .queue("fib_requests")
///     .timeout(Duration::from_secs(5))
///     .heartbeat(5)
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(super) queue: String,
    pub(super) timeout: Duration,
    pub(super) connect: ConnectSettings,
    pub(super) backoff: BackoffSettings,
    pub(super) lazy_connect: bool,
    pub(super) max_request_bytes: usize,
    pub(super) reply_to: ReplyTo,
    /// `None`: the layer's default (the byte-level client: no; the Fibonacci client: yes).
    pub(super) idempotent: Option<bool>,
    pub(super) publisher_confirms: bool,
    pub(super) require_server: bool,
}

/// Where a client receives its replies; see [`ClientOptions::reply_to`].
///
/// ```
/// use fib_rpc::{ClientOptions, ReplyTo};
///
/// let options = ClientOptions::default().reply_to(ReplyTo::Direct);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyTo {
    /// An exclusive, server-named queue declared on each connection, as in the tutorial.
    /// The broker deletes it when the connection closes.
    #[default]
    ExclusiveQueue,
    /// RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): replies go straight to this
    /// client's channel without a queue, so nothing is declared or deleted per connection.
    /// RabbitMQ-only; a reply to a client that has gone is dropped by the broker.
    Direct,
}

/// The pseudo-queue a client consumes (no-ack) to use direct reply-to.
pub(super) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

impl Default for ClientOptions {
    /// The tutorial's queue ([`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE)), a
    /// [`DEFAULT_TIMEOUT`] call timeout, a
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT), heartbeats every
    /// [`DEFAULT_HEARTBEAT_SECS`](crate::DEFAULT_HEARTBEAT_SECS), reconnection backoff from
    /// 100 ms doubling up to 5 s, connecting before `connect` returns, requests of at most
    /// 16 MiB, publisher confirms on, calls not idempotent (except on a
    /// [`FibonacciRpcClient`](crate::FibonacciRpcClient)) and not requiring a server.
    fn default() -> Self {
        ClientOptions {
            queue: DEFAULT_QUEUE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect: ConnectSettings::named("fib-rpc client"),
            backoff: BackoffSettings::default(),
            lazy_connect: false,
            max_request_bytes: 16 << 20,
            reply_to: ReplyTo::default(),
            idempotent: None,
            publisher_confirms: true,
            require_server: false,
        }
    }
}

impl ClientOptions {
    /// The server queue requests are routed to (default `rpc_queue`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// How long [`RpcClient::call`](crate::RpcClient::call) waits for a reply (default
    /// [`DEFAULT_TIMEOUT`]). Per-call deadlines are
    /// available through [`RpcClient::call_deadline`](crate::RpcClient::call_deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on each connection attempt (TCP and AMQP handshake) and on closing (default
    /// 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect.timeout = timeout;
        self
    }

    /// AMQP heartbeat interval in seconds (default 15, at least 1). A silently dead TCP path
    /// is noticed after about two intervals; the client then reconnects.
    pub fn heartbeat(mut self, seconds: u16) -> Self {
        self.connect.heartbeat_secs = seconds;
        self
    }

    /// Wait between reconnection rounds: `initial` after the first failure, doubling up to
    /// `max`, each wait jittered between half and all of its step (default 100 ms to 5 s).
    /// A round tries every broker URL once.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = BackoffSettings { initial, max };
        self
    }

    /// When `true`, [`RpcClient::connect`](crate::RpcClient::connect) returns at once and the
    /// client connects in the background, retrying with backoff; calls wait for the connection
    /// within their deadlines. For services that may start before the broker. Default `false`:
    /// `connect` returns [`Error::Connect`](crate::Error::Connect) when no broker can be reached on
    /// the first round, which is what a script or a misconfigured URL wants to hear.
    pub fn lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy_connect = lazy;
        self
    }

    /// Name shown for the connection in RabbitMQ's tools (the `information` client property).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connect.name = name.into();
        self
    }

    /// Largest request body a call may send (default 16 MiB). Larger calls fail with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) before anything is sent: a message
    /// above the broker's
    /// `max_message_size` would make it close the channel that every caller shares.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Where replies come back (default [`ReplyTo::ExclusiveQueue`]). Both work with any
    /// tutorial-style server.
    pub fn reply_to(mut self, reply_to: ReplyTo) -> Self {
        self.reply_to = reply_to;
        self
    }

    /// Whether calls are idempotent unless a call says otherwise
    /// ([`CallOptions::idempotent`]): safe to run twice, so the client may send one again,
    /// with the same `correlation_id`, when its request may have been lost (a connection
    /// loss, a refusal by the broker), within the call's deadline. Default `false` on an
    /// [`RpcClient`](crate::RpcClient), which cannot know; `true` on a
    /// [`FibonacciRpcClient`](crate::FibonacciRpcClient), since computing fib(n) twice does no
    /// harm.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Whether the broker confirms taking each request (default `true`). With confirms, a
    /// request the broker refuses fails at once ([`Error::RequestRefused`], or is sent again
    /// if idempotent) and a call that times out says whether the broker ever took its request
    /// ([`Error::Unconfirmed`]). Confirms are pipelined: calls never wait for them.
    ///
    /// [`Error::RequestRefused`]: crate::Error::RequestRefused
    /// [`Error::Unconfirmed`]: crate::Error::Unconfirmed
    pub fn publisher_confirms(mut self, confirms: bool) -> Self {
        self.publisher_confirms = confirms;
        self
    }

    /// Whether a call fails at once, unsent, with [`Error::NoServer`] (reason
    /// [`NoServerReason::NoConsumer`]) when its queue exists but no server consumes it
    /// (default `false`). Without it, such a request waits in the queue until a server comes
    /// or its deadline passes ([`Error::Timeout`], which then says that no server was
    /// consuming).
    ///
    /// Off by default because waiting is often right for a library: a server that is
    /// restarting (a deploy, a crash loop, a node failing over) leaves its queue without a
    /// consumer for a few seconds, and a request in a durable queue is served as soon as it
    /// is back. Turn it on where an immediate "nobody is there" is worth more than riding out
    /// a restart: interactive tools, health checks, callers with their own fallback. The
    /// `fib-rpc call` and `bench` commands turn it on (`--wait-for-server` turns it off).
    ///
    /// It costs nothing on a healthy queue: a reply within the last second proves a server,
    /// and otherwise the client asks the broker for the queue's consumer count (a passive
    /// declare on a side channel, a fraction of a millisecond, shared by all callers asking at
    /// the same moment). It keeps an answer that found a server for a second, and one that
    /// found none for only a tenth of a second, so only the failure path asks again. It also
    /// asks once as it connects, so a first call finds the answer ready. So a server that stops
    /// is noticed within about a second, and one that starts (say, after the client has
    /// reconnected to a restarted broker before the server has) within a tenth of a second.
    /// Calls made while reconnecting are not checked: they wait for the connection as usual. A queue that does not exist fails with reason
    /// [`NoServerReason::NoQueue`] either way.
    ///
    /// ```
    /// use fib_rpc::ClientOptions;
    ///
    /// // A command-line tool: say at once that no server is running.
    /// let options = ClientOptions::default().require_server(true);
    /// ```
    ///
    /// [`Error::NoServer`]: crate::Error::NoServer
    /// [`Error::Timeout`]: crate::Error::Timeout
    /// [`NoServerReason::NoConsumer`]: crate::NoServerReason::NoConsumer
    /// [`NoServerReason::NoQueue`]: crate::NoServerReason::NoQueue
    pub fn require_server(mut self, require: bool) -> Self {
        self.require_server = require;
        self
    }

    /// For a client whose calls are idempotent by nature: idempotent unless the user said.
    pub(crate) fn idempotent_by_default(mut self) -> Self {
        self.idempotent.get_or_insert(true);
        self
    }

    /// Refuses settings the client cannot work with, before anything connects.
    pub(super) fn check(&self) -> Result<()> {
        check_settings(&self.connect)?;
        self.backoff.check()?;
        if self.timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "call timeout must be above zero".into(),
            ));
        }
        wire::check_queue_name(&self.queue)
    }
}

/// Settings for one call, for [`RpcClient::call_with`](crate::RpcClient::call_with) and
/// [`RpcClient::send_with`](crate::RpcClient::send_with). What is not set comes from the
/// client's [`ClientOptions`].
///
/// ```no_run
/// use fib_rpc::{CallOptions, RpcClient};
/// use std::time::Duration;
///
/// let client = RpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
/// // A read: safe to send again if the request may have been lost.
/// let options = CallOptions::new()
///     .timeout(Duration::from_secs(2))
///     .idempotent(true);
/// let reply = client.call_with(b"42", options)?;
/// # Ok::<(), fib_rpc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    pub(super) deadline: Option<Instant>,
    pub(super) idempotent: Option<bool>,
    pub(super) require_server: Option<bool>,
    pub(super) traceparent: Option<TraceParent>,
}

impl CallOptions {
    /// The client's defaults.
    pub fn new() -> Self {
        CallOptions::default()
    }

    /// The call gives up `timeout` from now (default: the client's
    /// [`ClientOptions::timeout`] from when the call starts).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.deadline(crate::connect::deadline_after(timeout))
    }

    /// The call gives up at `deadline`.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Whether this call may be sent again when its request may have been lost (default: the
    /// client's [`ClientOptions::idempotent`]).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Whether this call fails at once, unsent, when no server consumes its queue (default:
    /// the client's [`ClientOptions::require_server`]).
    pub fn require_server(mut self, require: bool) -> Self {
        self.require_server = Some(require);
        self
    }

    /// Sends the caller's W3C trace context with the request (in the
    /// [`TRACEPARENT_HEADER`](crate::TRACEPARENT_HEADER)), so the server's handler and logs
    /// can tie the request to the caller's trace (default: none).
    ///
    /// ```no_run
    /// use fib_rpc::{CallOptions, RpcClient, TraceParent};
    ///
    /// let client = RpcClient::connect("amqp://guest:guest@localhost:5672/%2f")?;
    /// let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
    /// let reply = client.call_with(b"42", CallOptions::new().traceparent(parent))?;
    /// # Ok::<(), fib_rpc::Error>(())
    /// ```
    pub fn traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }
}
